//! Evaluation speed of flagstaff-eval against LaunchDarkly's own Rust evaluation crate
//! (`launchdarkly-server-sdk-evaluation` 2.2.1), on the same flags and contexts, in one run.
//!
//! Both engines evaluate a flag that the caller already holds: `Snapshot::evaluate_id` for us,
//! `evaluate(store, &flag, &context, None)` for LaunchDarkly (its store is a `HashMap` that
//! clones on lookup, which is what its trait requires; only prerequisites and segments are
//! looked up during the measured call). Run with `cargo bench -p flagstaff-eval --bench evaluate`;
//! results and the machine are recorded in BENCHMARKS.md.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flagstaff_eval::Snapshot;
use flagstaff_protocol::{Context, FlagData};
use launchdarkly_server_sdk_evaluation as ld;

mod launchdarkly;
#[allow(dead_code)]
mod scenarios;

fn evaluate(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for scenario in scenarios::scenarios() {
        let data = FlagData::from_json(scenario.data.clone()).expect("scenario data loads");
        let snapshot = Snapshot::compile(&data);
        let context = Context::from_json(&scenario.context).expect("scenario context");
        let id = snapshot.flag_id(scenario.flag).expect("scenario flag");

        let store = launchdarkly::store(&data);
        let ld_flag = store.flags[scenario.flag].clone();
        let ld_context: ld::Context =
            serde_json::from_value(scenario.context.clone()).expect("LaunchDarkly context");

        // Same answer from both, or the comparison is meaningless.
        let ours = snapshot.evaluate_id(id, &context);
        let theirs = ld::evaluate(&store, &ld_flag, &ld_context, None);
        assert_eq!(
            ours.variation_index,
            theirs.variation_index.map(|i| i as usize),
            "{}",
            scenario.name
        );

        group.bench_function(BenchmarkId::new("flagstaff", scenario.name), |b| {
            b.iter(|| {
                std::hint::black_box(snapshot.evaluate_id(id, std::hint::black_box(&context)))
            })
        });
        group.bench_function(BenchmarkId::new("flagstaff_by_key", scenario.name), |b| {
            b.iter(|| {
                std::hint::black_box(
                    snapshot.evaluate(scenario.flag, std::hint::black_box(&context)),
                )
            })
        });
        group.bench_function(BenchmarkId::new("launchdarkly", scenario.name), |b| {
            b.iter(|| {
                std::hint::black_box(ld::evaluate(
                    &store,
                    &ld_flag,
                    std::hint::black_box(&ld_context),
                    None,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
