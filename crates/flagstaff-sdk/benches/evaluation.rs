//! Per-evaluation cost of flagstaff-sdk and of LaunchDarkly's Rust SDK (`launchdarkly-server-sdk`
//! 3.2), side by side in one run: the same flags, streamed to both from the same peer on
//! 127.0.0.1, the same 1,000 rotating contexts, events on (so each evaluation includes its
//! summary counting, and index-event de-duplication), flushed only at the end.
//!
//! Then memory: each SDK in its own child process (this binary again) loads 10,000 flags, and
//! the growth of its resident set is reported.
//!
//! `cargo bench -p flagstaff-sdk --bench evaluation`; results in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use flagstaff_testkit::peer::Peer;
use launchdarkly_server_sdk as ld;
use serde_json::{Value, json};

/// The flags of the timing run: each a common shape of real targeting.
fn flags() -> Value {
    let bool_flag = |extra: Value| {
        let mut flag = json!({"version": 3, "on": true, "variations": [false, true],
            "offVariation": 0, "fallthrough": {"variation": 0}, "salt": "s"});
        flag.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        flag
    };
    let targets: Vec<String> = (0..100).map(|i| format!("user-{}", i * 7)).collect();
    json!({
        "constant": bool_flag(json!({"key": "constant", "fallthrough": {"variation": 1}})),
        "rule": bool_flag(json!({"key": "rule", "rules": [{"id": "r1", "variation": 1,
            "clauses": [{"attribute": "country", "op": "in", "values": ["NZ", "AU"]}]}]})),
        "rollout": bool_flag(json!({"key": "rollout", "fallthrough": {"rollout": {"variations": [
            {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}})),
        "targets-and-rules": bool_flag(json!({"key": "targets-and-rules",
            "targets": [{"values": targets, "variation": 1}],
            "rules": [{"id": "r1", "variation": 1, "clauses": [
                {"attribute": "email", "op": "endsWith", "values": ["@example.com"]},
                {"attribute": "plan", "op": "in", "values": ["gold", "platinum"]}]}]})),
        "prerequisite": bool_flag(json!({"key": "prerequisite", "fallthrough": {"variation": 1},
            "prerequisites": [{"key": "rule", "variation": 1}]})),
    })
}

/// The payload with every property present, as Flagstaff's server serves it (LaunchDarkly's
/// SDK rejects a `put` whose flags omit properties it requires).
fn canonical(data: Value) -> Value {
    serde_json::to_value(flagstaff_protocol::FlagData::from_json(data).unwrap()).unwrap()
}

fn context_json(i: usize) -> Value {
    let countries = ["NZ", "US", "DE", "AU", "FR"];
    let plans = ["free", "gold", "platinum"];
    json!({"kind": "user", "key": format!("user-{i}"), "country": countries[i % 5],
           "plan": plans[i % 3], "email": format!("u{i}@{}", if i.is_multiple_of(2) { "example.com" } else { "mail.test" })})
}

fn evaluation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let peer = Peer::start(canonical(json!({"flags": flags(), "segments": {}})));
    let ours = common::flagstaff_client(&peer.base, true);
    let theirs = common::launchdarkly_client(&peer.base, true);
    runtime
        .block_on(ours.wait_for_initialization(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        runtime.block_on(theirs.wait_for_initialization(Duration::from_secs(10))),
        Some(true)
    );
    let contexts: Vec<Value> = (0..1000).map(context_json).collect();
    let our_contexts: Vec<flagstaff_sdk::Context> = contexts
        .iter()
        .map(|c| flagstaff_sdk::Context::from_json(c).unwrap())
        .collect();
    let their_contexts: Vec<ld::Context> = contexts
        .iter()
        .map(|c| serde_json::from_value(c.clone()).unwrap())
        .collect();
    // Both SDKs must give the same answers for the benchmark to compare like with like.
    for key in [
        "constant",
        "rule",
        "rollout",
        "targets-and-rules",
        "prerequisite",
    ] {
        for (a, b) in our_contexts.iter().zip(&their_contexts) {
            assert_eq!(
                ours.bool_variation(a, key, false),
                theirs.bool_variation(b, key, false),
                "{key}"
            );
        }
    }
    for key in [
        "constant",
        "rule",
        "rollout",
        "targets-and-rules",
        "prerequisite",
    ] {
        let mut group = c.benchmark_group(format!("bool_variation/{key}"));
        let mut i = 0usize;
        group.bench_function("flagstaff-sdk", |b| {
            b.iter(|| {
                i = (i + 1) % our_contexts.len();
                black_box(ours.bool_variation(&our_contexts[i], black_box(key), false))
            })
        });
        let mut i = 0usize;
        group.bench_function("launchdarkly-server-sdk", |b| {
            b.iter(|| {
                i = (i + 1) % their_contexts.len();
                black_box(theirs.bool_variation(&their_contexts[i], black_box(key), false))
            })
        });
        group.finish();
    }
    let mut group = c.benchmark_group("bool_variation_detail/rule");
    let mut i = 0usize;
    group.bench_function("flagstaff-sdk", |b| {
        b.iter(|| {
            i = (i + 1) % our_contexts.len();
            black_box(ours.bool_variation_detail(&our_contexts[i], "rule", false))
        })
    });
    let mut i = 0usize;
    group.bench_function("launchdarkly-server-sdk", |b| {
        b.iter(|| {
            i = (i + 1) % their_contexts.len();
            black_box(theirs.bool_variation_detail(&their_contexts[i], "rule", false))
        })
    });
    group.finish();
    runtime.block_on(ours.close());
    theirs.close();
}

criterion_group!(benches, evaluation);

/// Resident set size in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// 10,000 flags, each with a rule of two clauses and a 50/50 rollout fallthrough.
fn many_flags() -> Value {
    let mut flags = serde_json::Map::new();
    for i in 0..10_000 {
        let key = format!("flag-{i:05}");
        flags.insert(
            key.clone(),
            json!({"key": key, "version": 1, "on": true, "salt": key,
            "variations": ["control", "treatment", "holdout"], "offVariation": 0,
            "rules": [{"id": format!("r{i}"), "variation": 1, "clauses": [
                {"attribute": "country", "op": "in", "values": ["NZ", "AU", "DE"]},
                {"attribute": "plan", "op": "in", "values": ["gold"]}]}],
            "fallthrough": {"rollout": {"variations": [
                {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}}),
        );
    }
    json!({"flags": flags, "segments": {}})
}

/// In a child process: load 10,000 flags into one SDK and print the resident-set growth.
fn measure_memory(sdk: &str) {
    let data = many_flags();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let peer = Peer::start(canonical(data));
    // Let the peer's and runtime's own allocations settle before the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib();
    let context = context_json(1);
    let grown = match sdk {
        "flagstaff-sdk" => {
            let client = common::flagstaff_client(&peer.base, false);
            runtime
                .block_on(client.wait_for_initialization(Duration::from_secs(60)))
                .unwrap();
            let c = flagstaff_sdk::Context::from_json(&context).unwrap();
            assert!(client.str_variation(&c, "flag-00001", "x").len() > 1);
            std::thread::sleep(Duration::from_millis(500));
            let after = rss_kib();
            drop(client);
            after
        }
        _ => {
            let client = common::launchdarkly_client(&peer.base, false);
            assert_eq!(
                runtime.block_on(client.wait_for_initialization(Duration::from_secs(60))),
                Some(true)
            );
            let c: ld::Context = serde_json::from_value(context).unwrap();
            assert!(client.str_variation(&c, "flag-00001", "x".into()).len() > 1);
            std::thread::sleep(Duration::from_millis(500));
            let after = rss_kib();
            client.close();
            after
        }
    };
    println!(
        "memory: {sdk} with 10,000 flags loaded: resident set grew by {:.1} MiB",
        grown.saturating_sub(before) as f64 / 1024.0
    );
}

fn main() {
    if let Ok(sdk) = std::env::var("FLAGSTAFF_BENCH_MEMORY") {
        measure_memory(&sdk);
        return;
    }
    // Run by `cargo test --all-targets` without `--bench`: nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    let me = std::env::current_exe().unwrap();
    for sdk in ["flagstaff-sdk", "launchdarkly-server-sdk"] {
        let status = std::process::Command::new(&me)
            .env("FLAGSTAFF_BENCH_MEMORY", sdk)
            .status()
            .unwrap();
        assert!(status.success(), "memory measurement for {sdk}");
    }
}
