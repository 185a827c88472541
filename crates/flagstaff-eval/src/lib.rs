//! The Flagstaff evaluation engine: LaunchDarkly-compatible, pure, and fast.
//!
//! ```
//! use flagstaff_eval::Snapshot;
//! use flagstaff_protocol::{Context, FlagData};
//!
//! let data = FlagData::from_json_str(r#"{"flags": {"dark-mode": {
//!     "on": true, "variations": [false, true], "fallthrough": {"variation": 0},
//!     "rules": [{"id": "staff", "variation": 1, "clauses": [
//!         {"attribute": "email", "op": "endsWith", "values": ["@example.com"]}]}]}}}"#).unwrap();
//! let snapshot = Snapshot::compile(&data);
//! let context = Context::from_json(&serde_json::json!({"kind": "user", "key": "u1", "email": "ann@example.com"})).unwrap();
//! let detail = snapshot.evaluate("dark-mode", &context);
//! assert_eq!(detail.value, Some(&serde_json::json!(true)));
//! assert_eq!(serde_json::to_string(&detail.reason).unwrap(), r#"{"kind":"RULE_MATCH","ruleIndex":0,"ruleId":"staff"}"#);
//! ```
//!
//! A [`Snapshot`] is compiled once from an environment's [`FlagData`](flagstaff_protocol::FlagData)
//! and evaluated many times. The crate implements `ld-protocol.md` §3 and nothing else: no I/O,
//! no clock, no logging, no async. Bad data never panics; it yields the `ERROR` reasons that a
//! LaunchDarkly SDK would report.
#![forbid(unsafe_code)]

mod big_segments;
mod bucket;
mod clause;
mod client_side;
mod evaluate;
mod keyset;
mod semver;
mod snapshot;
mod time;
mod typed;
pub mod values;

pub use big_segments::BigSegmentMembership;
pub use client_side::{BootstrapOptions, ClientResult, is_experiment};
pub use evaluate::{Detail, MAX_DEPTH, Observer, Trace};
pub use snapshot::{CompiledFlag, EvalOptions, FlagId, Snapshot};
pub use time::parse_rfc3339;
pub use typed::{TypedDetail, ValueType};
