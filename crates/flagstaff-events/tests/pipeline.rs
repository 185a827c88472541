//! The pipeline against a real SQLite events database: exact counts after a flush, payload-ID
//! de-duplication, shedding with an accurate count, and a final write on close. Parsing never
//! panics, whatever the bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use flagstaff_events::{
    Limits, Pipeline, PipelineConfig, SdkIdentity, Source, Submitted, parse_analytics,
    parse_analytics_sampling,
};
use flagstaff_store::EventStore;
use flagstaff_store::events::{ContextSearch, Resolution};
use serde_json::{Value, json};

const ENV: &str = "shop/production";

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn source() -> Source {
    Source {
        environment: Arc::from(ENV),
        sdk: SdkIdentity::from_headers(Some("PythonClient/9.1.0"), None, None),
        schema: 4,
        unsummarized: false,
        server_side: true,
        received_at: now(),
    }
}

/// A payload of one summary (true ×`yes`, false ×`no`) and `customs` custom events.
fn payload(yes: u64, no: u64, customs: usize) -> Value {
    let mut events = vec![json!({
        "kind": "summary", "startDate": now() - 1000, "endDate": now(),
        "features": {"checkout": {"default": false, "counters": [
            {"variation": 0, "version": 2, "value": true, "count": yes},
            {"variation": 1, "version": 2, "value": false, "count": no}]}}
    })];
    for i in 0..customs {
        events.push(
            json!({"kind": "custom", "creationDate": now(), "key": "purchase",
            "metricValue": 2.5, "context": {"kind": "user", "key": format!("u{i}"),
            "email": "secret@example.com", "_meta": {"privateAttributes": ["email"]}}}),
        );
    }
    Value::Array(events)
}

fn batch(value: &Value) -> flagstaff_events::Batch {
    parse_analytics(source(), value.to_string().as_bytes()).unwrap()
}

async fn open() -> (tempfile::TempDir, Arc<EventStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    (dir, Arc::new(EventStore::open(&url).await.unwrap()))
}

async fn totals(store: &EventStore) -> (u64, u64) {
    let points = store
        .evaluation_series(ENV, "checkout", Resolution::Day, 0, now() + 86_400_000)
        .await
        .unwrap();
    let sum = |variation| {
        points
            .iter()
            .filter(|p| p.variation == Some(variation))
            .map(|p| p.count)
            .sum()
    };
    (sum(0), sum(1))
}

/// Readers keep only the samples the next write still wants, and every event counts whether it
/// became a sample or not; after the write, a new budget starts.
#[tokio::test]
async fn readers_keep_only_the_samples_the_next_write_wants() {
    let (_dir, store) = open().await;
    let config = PipelineConfig {
        limits: Limits {
            samples_per_environment: 5,
            ..Limits::default()
        },
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(Arc::clone(&store), config);
    let read = |customs: usize| {
        let wanted = pipeline.samples_wanted(ENV);
        let text = payload(0, 0, customs).to_string();
        (
            wanted,
            parse_analytics_sampling(source(), text.as_bytes(), wanted).unwrap(),
        )
    };
    let (wanted, first) = read(3);
    assert_eq!((wanted, first.samples.len(), first.custom.len()), (5, 3, 3));
    pipeline.submit(first, None);
    let (wanted, second) = read(4);
    assert_eq!(
        (wanted, second.samples.len(), second.custom.len()),
        (2, 2, 4)
    );
    pipeline.submit(second, None);
    let (wanted, third) = read(4);
    assert_eq!((wanted, third.samples.len(), third.custom.len()), (0, 0, 4));
    assert_eq!(third.contexts.len(), 4, "contexts are read all the same");
    pipeline.submit(third, None);
    // Another environment has its own budget.
    assert_eq!(pipeline.samples_wanted("shop/staging"), 5);
    pipeline.flush().await;
    assert_eq!(pipeline.samples_wanted(ENV), 5);
    let samples = store.samples(ENV, Some("custom"), None, 100).await.unwrap();
    assert_eq!(samples.len(), 5);
    let custom = store.custom_event_totals(ENV, 0).await.unwrap();
    pipeline.close().await;
    assert_eq!(custom.iter().map(|c| c.count).sum::<u64>(), 11);
}

#[tokio::test]
async fn a_retry_landing_on_another_node_is_counted_once() {
    let (_dir, store) = open().await;
    // Two nodes' pipelines, each with its own in-memory set, on one events database.
    let url = format!("sqlite://{}", _dir.path().join("events.db").display());
    let other = Arc::new(EventStore::open(&url).await.unwrap());
    let a = Pipeline::start(Arc::clone(&store), PipelineConfig::default());
    let b = Pipeline::start(other, PipelineConfig::default());
    let original = payload(5, 2, 0);
    assert_eq!(a.submit(batch(&original), Some("p-1")), Submitted::Queued);
    a.flush().await;
    // The SDK's retry reaches node B, which never saw it: accepted (202), then not counted.
    assert_eq!(b.submit(batch(&original), Some("p-1")), Submitted::Queued);
    assert_eq!(
        b.submit(batch(&payload(1, 0, 0)), Some("p-2")),
        Submitted::Queued
    );
    b.flush().await;
    assert_eq!(totals(&store).await, (6, 2));
    let health = b.health();
    assert_eq!(health.duplicate_payloads, 1);
    assert_eq!(health.accepted_events, 1);
    assert_eq!(health.written_events, 1);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn counts_are_exact_and_retries_are_not_counted_twice() {
    let (_dir, store) = open().await;
    let pipeline = Pipeline::start(Arc::clone(&store), PipelineConfig::default());
    let first = payload(5, 2, 3);
    assert_eq!(
        pipeline.submit(batch(&first), Some("p-1")),
        Submitted::Queued
    );
    // The SDK's retry of the same payload (same ID) is a duplicate.
    assert_eq!(
        pipeline.submit(batch(&first), Some("p-1")),
        Submitted::Duplicate
    );
    assert_eq!(
        pipeline.submit(batch(&payload(1, 0, 0)), Some("p-2")),
        Submitted::Queued
    );
    assert_eq!(
        pipeline.submit(batch(&payload(0, 4, 0)), None),
        Submitted::Queued
    );
    pipeline.flush().await;
    assert_eq!(totals(&store).await, (6, 6));
    let health = pipeline.health();
    assert_eq!(health.accepted_events, 4 + 1 + 1);
    assert_eq!(health.written_events, 6);
    assert_eq!(health.duplicate_payloads, 1);
    assert_eq!(health.dropped_events, 0);
    assert_eq!(health.queue_depth, 0);
    let custom = store.custom_event_totals(ENV, 0).await.unwrap();
    assert_eq!(custom.len(), 1);
    assert_eq!(custom[0].count, 3);
    assert!((custom[0].metric_sum - 7.5).abs() < 1e-9);
    let contexts = store
        .contexts(
            ENV,
            &ContextSearch {
                limit: 100,
                ..ContextSearch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(contexts.len(), 3);
    assert!(contexts.iter().all(|c| c.redacted == ["email"]));
    let samples = store.samples(ENV, Some("custom"), None, 100).await.unwrap();
    assert_eq!(samples.len(), 3);
    let stored = format!("{contexts:?} {samples:?}");
    assert!(!stored.contains("secret@example.com"), "{stored}");
    let sdks = store.flag_sdks(ENV, "checkout").await.unwrap();
    assert_eq!(sdks.len(), 1);
    assert_eq!(sdks[0].sdk, "PythonClient");
    assert_eq!(sdks[0].evaluations, 5 + 2 + 1 + 4);
    pipeline.close().await;
}

#[tokio::test]
async fn a_full_queue_sheds_whole_payloads_and_counts_them_exactly() {
    let (_dir, store) = open().await;
    let config = PipelineConfig {
        queue_capacity: 10,
        // The writer does not drain by itself during the test.
        flush_interval: Duration::from_secs(3600),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(Arc::clone(&store), config);
    // Each payload: 1 summary + 3 custom events = 4 events. Half full (5) wakes the writer,
    // so submit without yielding to it.
    let outcomes: Vec<Submitted> = (0..5)
        .map(|_| pipeline.submit(batch(&payload(1, 1, 3)), None))
        .collect();
    assert_eq!(
        outcomes,
        [
            Submitted::Queued,
            Submitted::Queued,
            Submitted::Shed,
            Submitted::Shed,
            Submitted::Shed
        ]
    );
    let health = pipeline.health();
    assert_eq!(health.accepted_events, 8);
    assert_eq!(health.dropped_events, 12);
    assert_eq!(health.queue_depth, 8);
    pipeline.flush().await;
    assert_eq!(totals(&store).await, (2, 2));
    // Room again once written.
    assert_eq!(
        pipeline.submit(batch(&payload(1, 1, 3)), None),
        Submitted::Queued
    );
    // Closing writes what is still queued.
    pipeline.close().await;
    assert_eq!(totals(&store).await, (3, 3));
    assert_eq!(pipeline.health().written_events, 12);
}

#[tokio::test]
async fn the_queue_is_bounded_in_bytes_as_well_as_events() {
    let (_dir, store) = open().await;
    let one = batch(&payload(1, 1, 3)).bytes;
    assert!(one > 0);
    let config = PipelineConfig {
        queue_capacity: 1_000_000,
        // Room for two payloads of this size, not three.
        queue_bytes: one * 2 + one / 2,
        flush_interval: Duration::from_secs(3600),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(Arc::clone(&store), config);
    let outcomes: Vec<Submitted> = (0..3)
        .map(|_| pipeline.submit(batch(&payload(1, 1, 3)), None))
        .collect();
    assert_eq!(
        outcomes,
        [Submitted::Queued, Submitted::Queued, Submitted::Shed]
    );
    let health = pipeline.health();
    assert_eq!(health.queue_bytes, one * 2);
    assert_eq!(health.dropped_events, 4);
    pipeline.flush().await;
    assert_eq!(
        pipeline.health().queue_bytes,
        0,
        "written payloads free their bytes"
    );
    assert_eq!(
        pipeline.submit(batch(&payload(1, 1, 3)), None),
        Submitted::Queued
    );
    pipeline.close().await;
}

proptest::proptest! {
    #[test]
    fn parsing_never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_analytics(source(), &bytes);
        let _ = flagstaff_events::parse_diagnostic(source(), &bytes);
    }

    #[test]
    fn parsing_never_panics_on_event_shaped_json(
        kind in proptest::sample::select(vec!["summary", "feature", "custom", "identify", "index", "debug", "x"]),
        field in proptest::sample::select(vec!["context", "user", "contextKeys", "features", "key", "counters", "_meta", "privateAttributes", "count", "variation", "version", "endDate", "creationDate", "metricValue"]),
        value in proptest::sample::select(vec![json!(null), json!(-1), json!(1e300), json!(u64::MAX), json!("s"), json!([]), json!({}), json!([1, "a"]), json!({"kind": "multi", "user": 1}), json!({"kind": "user", "key": "k", "_meta": {"privateAttributes": [1, "/", "/a/b"]}}), json!({"f": {"counters": [{"count": 3, "variation": -1, "version": "x"}]}})]),
    ) {
        let event = json!([{ "kind": kind, field: value.clone(), "key": "k",
            "context": {"kind": "user", "key": "u", field: value} }]);
        let _ = parse_analytics(source(), event.to_string().as_bytes());
    }
}

/// One custom event by `key` with `plan`, at `at` (Unix ms).
fn sighting(key: &str, plan: &str, at: i64) -> flagstaff_events::Batch {
    batch(
        &json!([{"kind": "custom", "creationDate": at, "key": "purchase",
        "context": {"kind": "user", "key": key, "plan": plan}}]),
    )
}

#[tokio::test]
async fn a_context_seen_again_unchanged_within_a_minute_is_not_written_again() {
    let (_dir, store) = open().await;
    let clock = flagstaff_store::Clock::manual(now());
    let pipeline = Pipeline::start(
        Arc::clone(&store),
        PipelineConfig {
            clock: clock.clone(),
            ..PipelineConfig::default()
        },
    );
    let stored = || async {
        let found = store
            .contexts(
                ENV,
                &ContextSearch {
                    limit: 10,
                    ..ContextSearch::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        (found[0].last_seen, found[0].attributes["plan"].clone())
    };
    let t = now();
    pipeline.submit(sighting("u", "gold", t), None);
    pipeline.flush().await;
    assert_eq!(stored().await, (t, json!("gold")));
    // The same context, unchanged, a few seconds later: skipped ("last seen" lags).
    pipeline.submit(sighting("u", "gold", t + 5_000), None);
    pipeline.flush().await;
    assert_eq!(stored().await, (t, json!("gold")));
    // Changed attributes are written at once.
    pipeline.submit(sighting("u", "silver", t + 6_000), None);
    pipeline.flush().await;
    assert_eq!(stored().await, (t + 6_000, json!("silver")));
    // A minute after it was written, an unchanged sighting is written again.
    clock.advance(60_001);
    pipeline.submit(sighting("u", "silver", t + 61_000), None);
    pipeline.flush().await;
    assert_eq!(stored().await, (t + 61_000, json!("silver")));
    pipeline.close().await;
}
