//! Differential test: random flags, segments and contexts evaluated by flagstaff-eval and by
//! LaunchDarkly's own Rust evaluation crate (`launchdarkly-server-sdk-evaluation` 2.2.1) must
//! give the same value, variation index and reason.
//!
//! The data comes from `generate::Shape::Common`, which avoids the corners where LaunchDarkly's
//! Rust crate knowingly departs from the Go reference that our spec follows (see `generate.rs`).
//! Set `FLAGSTAFF_DIFF_CASES` to run more payloads than the default; a failure prints the seed,
//! the payload and the context, enough to turn it into a fixed case in `testdata/eval/`.

use std::collections::HashMap;

#[path = "../../benches/launchdarkly/mod.rs"]
mod launchdarkly;

use flagstaff_eval::Snapshot;
use flagstaff_protocol::{Context, FlagData};
use launchdarkly_server_sdk_evaluation as ld;
use serde_json::Value;

use crate::support::json_equal;
use flagstaff_testkit::generate::{self, Rng, Shape};

/// One result as comparable JSON: `[value, variationIndex, reason]`.
fn ours(snapshot: &Snapshot, key: &str, context: &Context) -> Value {
    let detail = snapshot.evaluate(key, context);
    serde_json::json!([detail.value, detail.variation_index, detail.reason])
}

fn theirs(store: &launchdarkly::LdStore, key: &str, context: &ld::Context) -> Value {
    let flag = &store.flags[key];
    let detail = ld::evaluate(store, flag, context, None);
    serde_json::json!([detail.value, detail.variation_index, detail.reason])
}

fn cases() -> u64 {
    std::env::var("FLAGSTAFF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn agrees_with_launchdarkly_rust_evaluation() {
    let mut evaluations = 0usize;
    let mut reasons = HashMap::<String, usize>::new();
    for seed in 0..cases() {
        let mut rng = Rng::new(seed);
        let data_json = generate::data(&mut rng, Shape::Common);
        let data = FlagData::from_json(data_json.clone()).expect("generated data loads");
        let snapshot = Snapshot::compile(&data);
        let store = launchdarkly::store(&data);
        for _ in 0..8 {
            let context_json = generate::context(&mut rng);
            let context = Context::from_json(&context_json).expect("generated contexts are valid");
            let ld_context: ld::Context = serde_json::from_value(context_json.clone())
                .expect("LaunchDarkly's crate reads the context");
            for key in data.flags.keys() {
                let (a, b) = (
                    ours(&snapshot, key, &context),
                    theirs(&store, key, &ld_context),
                );
                assert!(
                    json_equal(&a, &b),
                    "\nflagstaff:    {a}\nLaunchDarkly: {b}\nseed {seed}, flag {key}\ncontext: {context_json}\ndata: {data_json}"
                );
                *reasons
                    .entry(a[2]["kind"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
                evaluations += 1;
            }
        }
    }
    println!(
        "differential: {evaluations} evaluations agree with launchdarkly-server-sdk-evaluation; by reason: {reasons:?}"
    );
    // The generator must reach every reason, or the comparison proves less than it claims.
    for kind in [
        "OFF",
        "FALLTHROUGH",
        "TARGET_MATCH",
        "RULE_MATCH",
        "PREREQUISITE_FAILED",
        "ERROR",
    ] {
        assert!(
            reasons.get(kind).copied().unwrap_or(0) > 20,
            "too few {kind} results: {reasons:?}"
        );
    }
}
