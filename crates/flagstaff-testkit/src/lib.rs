//! Test support shared by Flagstaff's integration tests. Never a dependency of shipped code.
//!
//! - [`conformance`]: LaunchDarkly's public evaluation vectors, read in place.
//! - [`server`]: `flagstaff serve` as a real process, and a client for its management API.
//! - [`sdk`]: the real LaunchDarkly Python and Node SDKs, driven over a line protocol.
//! - [`generate`]: random flag data and contexts for differential and property tests.
//! - [`peer`]: a minimal LaunchDarkly-protocol server whose answers a test controls.
// A test helper that cannot do its job panics with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod conformance;
pub mod generate;
pub mod peer;
pub mod relay;
pub mod sdk;
pub mod server;
pub mod tls;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Polls `check` every 10 ms until it returns `Some`, and returns that; panics naming `what`
/// when `within` passes first. Tests wait for a condition this way instead of sleeping a fixed
/// time before a positive assertion: fast when the system is fast, and still patient on a
/// loaded CI machine.
pub async fn eventually<T, F, Fut>(within: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// JSON equality in which numbers compare by value (`1` equals `1.0`), since YAML and JSON
/// writers disagree on how to print whole floats.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
