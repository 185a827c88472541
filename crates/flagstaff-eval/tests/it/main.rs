//! Integration tests for flagstaff-eval, in one binary so that they link once.

// A test helper that cannot do its job should panic with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod allocations;
mod cases;
mod conformance;
mod differential;
mod properties;
mod support;
