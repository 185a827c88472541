//! The events pipeline's CPU cost per payload, without HTTP or the database (BENCHMARKS.md,
//! "Events"): parsing a payload, folding it into the aggregate, and turning the aggregate into
//! the rows one write adds.
//!
//! `cargo bench -p flagstaff-events --bench aggregate`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use flagstaff_events::{
    Aggregate, Limits, SdkIdentity, Source, parse_analytics, parse_analytics_sampling,
};
use flagstaff_store::events::Retention;
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000_000;

fn source() -> Source {
    Source {
        environment: Arc::from("shop/production"),
        sdk: SdkIdentity::from_headers(Some("PythonClient/9.1.0"), None, None),
        schema: 4,
        unsummarized: false,
        server_side: true,
        received_at: NOW,
    }
}

/// A server SDK's flush: one summary of `flags` flags with two counters each.
fn summary(flags: usize) -> Vec<u8> {
    let features: serde_json::Map<String, Value> = (0..flags)
        .map(|f| {
            (
                format!("flag-{f}"),
                json!({"default": false, "contextKinds": ["user"], "counters": [
                    {"variation": 0, "version": 4, "value": true, "count": 3},
                    {"variation": 1, "version": 4, "value": false, "count": 2}]}),
            )
        })
        .collect();
    json!([{"kind": "summary", "startDate": NOW - 5000, "endDate": NOW, "features": features}])
        .to_string()
        .into_bytes()
}

/// `events` custom and feature events, each with its own context.
fn raw(events: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..events)
        .map(|i| {
            let context = json!({"kind": "user", "key": format!("user-{i}"), "country": "DE",
                "email": "private@example.com", "_meta": {"privateAttributes": ["email"]}});
            if i % 2 == 0 {
                json!({"kind": "custom", "creationDate": NOW, "key": "purchase", "metricValue": 9.5,
                    "context": context})
            } else {
                json!({"kind": "feature", "creationDate": NOW, "key": format!("flag-{}", i % 20),
                    "version": 3, "variation": 1, "value": true, "default": false, "context": context})
            }
        })
        .collect();
    Value::Array(events).to_string().into_bytes()
}

fn pipeline(c: &mut Criterion) {
    let limits = Limits::default();
    let retention = Retention::default();

    let mut group = c.benchmark_group("summary_400_counters");
    let payload = summary(200);
    group.throughput(Throughput::Elements(400));
    group.bench_function("parse", |b| {
        b.iter(|| parse_analytics(source(), &payload).unwrap())
    });
    group.bench_function("parse_and_aggregate", |b| {
        let mut aggregate = Aggregate::default();
        b.iter(|| aggregate.add(parse_analytics(source(), &payload).unwrap(), limits))
    });
    group.bench_function("aggregate_only", |b| {
        let batch = parse_analytics(source(), &payload).unwrap();
        let mut aggregate = Aggregate::default();
        b.iter_batched(
            || batch.clone(),
            |batch| aggregate.add(batch, limits),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("raw_100_events");
    let payload = raw(100);
    group.throughput(Throughput::Elements(100));
    group.bench_function("parse", |b| {
        b.iter(|| parse_analytics(source(), &payload).unwrap())
    });
    // What the server does once a flush has its samples (nearly every payload under load).
    group.bench_function("parse_keeping_no_samples", |b| {
        b.iter(|| parse_analytics_sampling(source(), &payload, 0).unwrap())
    });
    group.bench_function("parse_and_aggregate", |b| {
        let mut aggregate = Aggregate::default();
        b.iter(|| aggregate.add(parse_analytics(source(), &payload).unwrap(), limits))
    });
    group.finish();

    // One write's rows from a second of summaries: 100 SDK flushes of 200 flags.
    let mut group = c.benchmark_group("into_write");
    let payload = summary(200);
    group.throughput(Throughput::Elements(100 * 400));
    group.bench_function("100_summaries_of_400_counters", |b| {
        b.iter_batched(
            || {
                let mut aggregate = Aggregate::default();
                for _ in 0..100 {
                    aggregate.add(parse_analytics(source(), &payload).unwrap(), limits);
                }
                aggregate
            },
            |aggregate| aggregate.into_write(&retention, NOW),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, pipeline);

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: stay quiet then.
    if std::env::args().any(|a| a == "--bench") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
