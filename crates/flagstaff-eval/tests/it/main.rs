//! Integration tests for flagstaff-eval, in one binary so that they link once.

mod conformance;
mod support;
