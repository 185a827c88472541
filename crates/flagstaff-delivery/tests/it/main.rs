//! The delivery plane in-process over real HTTP on 127.0.0.1 and a real SQLite store.

// A test helper that cannot do its job should panic with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_side;
mod events;
mod fdv2;
mod fdv2_eval;
mod freshness;
mod limits;
mod ofrep;
mod polling;
mod streaming;
mod support;
