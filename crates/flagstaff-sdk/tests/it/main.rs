//! Integration tests for flagstaff-sdk over real HTTP on 127.0.0.1. The tests against a real
//! `flagstaff serve` live with the binary (`crates/flagstaff/tests/it/rust_sdk.rs`); these use
//! a peer whose answers they control.

// A test helper that cannot do its job should panic with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../benches/common/mod.rs"]
mod common;
mod differential;
mod events;
