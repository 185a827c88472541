//! The management API end to end, in-process over a real SQLite database.

// A test helper that cannot do its job should panic with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod experiments;
mod flows;
mod hardening;
mod openapi;
mod roles;
mod schemas;
mod schemas_workflows;
mod semantic;
mod support;
mod workflows;
