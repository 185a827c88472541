//! Differential test: the same random flags, segments and contexts through flagstaff-sdk and
//! through LaunchDarkly's Rust SDK (`launchdarkly-server-sdk` 3.2, streaming from the same
//! peer) give the same value, variation index and reason for every flag and context.
//!
//! The data comes from `generate::Shape::Common`, which keeps to data on which LaunchDarkly's
//! engines agree with each other (see `flagstaff_testkit::generate`). `FLAGSTAFF_DIFF_CASES`
//! sets how many payloads (default 300).

use std::collections::BTreeMap;
use std::time::Duration;

use flagstaff_protocol::{Context, FlagData};
use flagstaff_testkit::generate::{self, Rng, Shape};
use flagstaff_testkit::json_equal;
use flagstaff_testkit::peer::Peer;
use launchdarkly_server_sdk as ld;
use serde_json::json;

use crate::common::{flagstaff_client, launchdarkly_client};

fn cases() -> u64 {
    std::env::var("FLAGSTAFF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn flagstaff_sdk_agrees_with_launchdarkly_rust_sdk() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut evaluations = 0usize;
    let mut reasons = BTreeMap::<String, usize>::new();
    for seed in 0..cases() {
        let mut rng = Rng::new(1_000_000 + seed);
        // Served in canonical form, every property present, as Flagstaff's server serves it:
        // LaunchDarkly's SDK rejects a whole `put` whose flags omit properties it requires.
        let generated = generate::data(&mut rng, Shape::Common);
        let data = serde_json::to_value(FlagData::from_json(generated).unwrap()).unwrap();
        let peer = Peer::start(data.clone());
        let ours = flagstaff_client(&peer.base, true);
        let theirs = launchdarkly_client(&peer.base, true);
        rt.block_on(ours.wait_for_initialization(Duration::from_secs(10)))
            .expect("flagstaff-sdk initializes");
        assert_eq!(
            rt.block_on(theirs.wait_for_initialization(Duration::from_secs(10))),
            Some(true),
            "LaunchDarkly's SDK initializes"
        );
        let keys: Vec<String> = data["flags"]
            .as_object()
            .map(|f| f.keys().cloned().collect())
            .unwrap_or_default();
        for _ in 0..8 {
            let context_json = generate::context(&mut rng);
            let context = Context::from_json(&context_json).unwrap();
            let ld_context: ld::Context = serde_json::from_value(context_json.clone()).unwrap();
            for key in keys.iter().map(String::as_str).chain(["no-such-flag"]) {
                let default = json!("default");
                let a = ours.json_variation_detail(&context, key, default.clone());
                let b = theirs.json_variation_detail(&ld_context, key, default);
                let a = json!([a.value, a.variation_index, a.reason]);
                let b = json!([b.value, b.variation_index, b.reason]);
                assert!(
                    json_equal(&a, &b),
                    "\nflagstaff-sdk: {a}\nLaunchDarkly:  {b}\nseed {seed}, flag {key}\ncontext: {context_json}\ndata: {data}"
                );
                let kind = a[2]["kind"].as_str().unwrap_or("?").to_owned();
                *reasons.entry(kind).or_default() += 1;
                evaluations += 1;
            }
        }
        rt.block_on(ours.close());
        theirs.close();
    }
    println!(
        "differential (SDKs): {evaluations} evaluations agree with launchdarkly-server-sdk 3.2; by reason: {reasons:?}"
    );
    for kind in [
        "OFF",
        "FALLTHROUGH",
        "TARGET_MATCH",
        "RULE_MATCH",
        "PREREQUISITE_FAILED",
        "ERROR",
    ] {
        assert!(
            reasons.get(kind).copied().unwrap_or(0) > 10,
            "too few {kind} results: {reasons:?}"
        );
    }
}
