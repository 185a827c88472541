//! The use-case tier: `flagstaff-app` in process, over real SQLite in a temporary directory, with
//! a manual clock. No HTTP, no sleeping: every case here runs in milliseconds, so the rules of
//! validation, authorization and expiry are covered here and the HTTP tests only prove the wiring.

// A test helper that cannot do its job should panic with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod clock;
mod expiry;
mod flag_settings;
mod metrics;
mod overview;
mod projects;
mod relay_access;
mod scheduling;
mod segment_names;
mod support;
mod validation;
mod workflows;
