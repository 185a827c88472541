//! The events database on every backend: counters add up, times merge, searches find, retention
//! removes what it must and nothing else.

use flagstaff_store::EventStore;
use flagstaff_store::events::{
    ContextSearch, CustomEventCount, EvaluationCount, EventSample, EventWrite, FlagSdk, FlagUsage,
    Resolution, Retention, SeenContext,
};
use serde_json::json;

use crate::backends::on_every_backend;

const ENV: &str = "shop/production";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn counter(flag: &str, at: i64, variation: Option<u32>, count: u64) -> Vec<EvaluationCount> {
    Resolution::ALL
        .iter()
        .map(|&resolution| EvaluationCount {
            environment: ENV.into(),
            flag: flag.into(),
            resolution,
            bucket: resolution.bucket(at),
            variation,
            version: Some(3),
            value: json!(variation == Some(0)).to_string(),
            count,
        })
        .collect()
}

fn context(key: &str, attributes: serde_json::Value, at: i64) -> SeenContext {
    SeenContext {
        environment: ENV.into(),
        kind: "user".into(),
        key: key.into(),
        attributes,
        redacted: vec!["email".into()],
        first_seen: at,
        last_seen: at,
    }
}

#[tokio::test]
async fn counters_add_up_and_times_merge() {
    on_every_backend(|t| async move {
        let events = EventStore::open(&t.url).await.unwrap();
        let now = 1_800_000_000_000;
        let mut write = EventWrite::default();
        write
            .evaluations
            .extend(counter("checkout", now, Some(0), 5));
        write
            .evaluations
            .extend(counter("checkout", now, Some(1), 2));
        write.evaluations.extend(counter("checkout", now, None, 1));
        write.usage.push(FlagUsage {
            environment: ENV.into(),
            flag: "checkout".into(),
            first_evaluated: now,
            last_evaluated: now,
            evaluations: 8,
        });
        write.flag_sdks.push(FlagSdk {
            environment: ENV.into(),
            flag: "checkout".into(),
            sdk: "PythonClient".into(),
            sdk_version: "9.1.0".into(),
            last_seen: now,
            evaluations: 8,
        });
        events.write(&write).await.unwrap();
        // The same again, an hour earlier and a minute later: counts add, first/last widen.
        let mut again = write.clone();
        again.evaluations = counter("checkout", now + 60_000, Some(0), 4);
        again.usage[0].first_evaluated = now - HOUR;
        again.usage[0].last_evaluated = now - HOUR;
        again.usage[0].evaluations = 4;
        events.write(&again).await.unwrap();

        let minutes = events
            .evaluation_series(ENV, "checkout", Resolution::Minute, now - DAY, now + DAY)
            .await
            .unwrap();
        let at = |bucket: i64, variation: Option<u32>| {
            minutes
                .iter()
                .find(|p| p.bucket == bucket && p.variation == variation)
                .map(|p| p.count)
        };
        let minute = Resolution::Minute.bucket(now);
        assert_eq!(at(minute, Some(0)), Some(5));
        assert_eq!(at(minute, Some(1)), Some(2));
        assert_eq!(at(minute, None), Some(1));
        assert_eq!(at(minute + 60_000, Some(0)), Some(4));
        assert_eq!(minutes.len(), 4);

        let totals = events.variation_totals("shop", now - DAY).await.unwrap();
        let total = |variation: Option<u32>| {
            totals
                .iter()
                .find(|t| t.variation == variation)
                .map(|t| t.count)
        };
        assert_eq!(total(Some(0)), Some(9));
        assert_eq!(total(Some(1)), Some(2));
        assert_eq!(total(None), Some(1));
        // Another project's prefix does not match (`_` is not a wildcard).
        assert!(
            events
                .variation_totals("sho_", now - DAY)
                .await
                .unwrap()
                .is_empty()
        );

        let usage = events.usage("shop").await.unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].first_evaluated, now - HOUR);
        assert_eq!(usage[0].last_evaluated, now);
        assert_eq!(usage[0].evaluations, 12);
        let sdks = events.flag_sdks(ENV, "checkout").await.unwrap();
        assert_eq!(sdks.len(), 1);
        assert_eq!(sdks[0].evaluations, 16);
        assert_eq!(sdks[0].last_seen, now);
        events.close().await;
        t
    })
    .await;
}

#[tokio::test]
async fn contexts_are_searchable_and_custom_events_counted() {
    on_every_backend(|t| async move {
        let events = EventStore::open(&t.url).await.unwrap();
        let now = 1_800_000_000_000;
        let mut write = EventWrite::default();
        write
            .contexts
            .push(context("ann", json!({"country": "DE"}), now));
        write.contexts.push(context(
            "bob_1",
            json!({"country": "FR", "name": "Bob"}),
            now + 1,
        ));
        write
            .contexts
            .push(context("carl", json!({"country": "de"}), now + 2));
        for (key, metric) in [
            ("purchase", Some(10.5)),
            ("purchase", Some(2.0)),
            ("view", None),
        ] {
            write.custom.push(CustomEventCount {
                environment: ENV.into(),
                event_key: key.into(),
                resolution: Resolution::Hour,
                bucket: Resolution::Hour.bucket(now),
                count: 1,
                metric_count: u64::from(metric.is_some()),
                metric_sum: metric.unwrap_or(0.0),
            });
        }
        events.write(&write).await.unwrap();
        // Seen again with new attributes: updated, not duplicated.
        let mut again = EventWrite::default();
        again
            .contexts
            .push(context("ann", json!({"country": "AT"}), now + 10));
        events.write(&again).await.unwrap();

        let all = events
            .contexts(
                ENV,
                &ContextSearch {
                    limit: 10,
                    ..ContextSearch::default()
                },
            )
            .await
            .unwrap();
        let keys: Vec<&str> = all.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["ann", "carl", "bob_1"], "most recently seen first");
        assert_eq!(all[0].attributes, json!({"country": "AT"}));
        assert_eq!(all[0].first_seen, now);
        assert_eq!(all[0].redacted, ["email"]);
        let search = |text: &str| ContextSearch {
            text: Some(text.into()),
            limit: 10,
            ..ContextSearch::default()
        };
        let found = events.contexts(ENV, &search("\"DE\"")).await.unwrap();
        let keys: Vec<&str> = found.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["carl"], "case-insensitive attribute search");
        let found = events.contexts(ENV, &search("b_")).await.unwrap();
        assert_eq!(found.len(), 1, "`_` is literal: {found:?}");
        assert!(events.contexts(ENV, &search("%")).await.unwrap().is_empty());
        let other_kind = ContextSearch {
            kind: Some("org".into()),
            limit: 10,
            ..ContextSearch::default()
        };
        assert!(events.contexts(ENV, &other_kind).await.unwrap().is_empty());

        let custom = events.custom_event_totals(ENV, now - DAY).await.unwrap();
        assert_eq!(custom.len(), 2);
        assert_eq!(custom[0].event_key, "purchase");
        assert_eq!(custom[0].count, 2);
        assert_eq!(custom[0].metric_count, 2);
        assert!((custom[0].metric_sum - 12.5).abs() < 1e-9);
        assert_eq!(custom[1].event_key, "view");
        assert_eq!(custom[1].metric_count, 0);
        events.close().await;
        t
    })
    .await;
}

#[tokio::test]
async fn retention_removes_old_rows_only() {
    on_every_backend(|t| async move {
        let events = EventStore::open(&t.url).await.unwrap();
        let now = 1_800_000_000_000;
        let mut write = EventWrite::default();
        write
            .evaluations
            .extend(counter("old", now - 3 * DAY, Some(0), 1));
        write.evaluations.extend(counter("new", now, Some(0), 1));
        write
            .contexts
            .push(context("gone", json!({}), now - 40 * DAY));
        write.contexts.push(context("kept", json!({}), now));
        for i in 0..5 {
            write.samples.push(EventSample {
                environment: ENV.into(),
                kind: "custom".into(),
                key: format!("e{i}"),
                at: now - i64::from(i < 2) * 8 * DAY,
                body: json!({"kind": "custom", "key": format!("e{i}")}),
            });
        }
        events.write(&write).await.unwrap();
        let retention = Retention {
            max_samples_per_environment: 2,
            ..Retention::default()
        };
        let pruned = events.prune(&retention, now).await.unwrap();
        // "old": its minute bucket (3 days > 2 days) goes; hour and day buckets stay.
        assert_eq!(pruned.buckets, 1);
        assert_eq!(pruned.contexts, 1);
        // Two are older than 7 days; of the other three the oldest goes to keep two.
        assert_eq!(pruned.samples, 3);
        let samples = events.samples(ENV, None, None, 10).await.unwrap();
        let keys: Vec<&str> = samples.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["e4", "e3"]);
        let only = events
            .samples(ENV, Some("custom"), Some("e3"), 10)
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        let minutes = events
            .evaluation_series(ENV, "old", Resolution::Minute, 0, now + DAY)
            .await
            .unwrap();
        assert!(minutes.is_empty());
        let hours = events
            .evaluation_series(ENV, "old", Resolution::Hour, 0, now + DAY)
            .await
            .unwrap();
        assert_eq!(hours.len(), 1);
        let contexts = events
            .contexts(
                ENV,
                &ContextSearch {
                    limit: 10,
                    ..ContextSearch::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(contexts.len(), 1);
        assert_eq!(contexts[0].key, "kept");
        events.close().await;
        t
    })
    .await;
}

fn migration_row(
    resolution: Resolution,
    at: i64,
    stage: &str,
    totals: flagstaff_store::events::MigrationTotals,
) -> flagstaff_store::events::MigrationOpCount {
    flagstaff_store::events::MigrationOpCount {
        environment: ENV.into(),
        flag: "orders-db".into(),
        resolution,
        bucket: resolution.bucket(at),
        operation: "read".into(),
        stage: stage.into(),
        totals,
    }
}

#[tokio::test]
async fn migration_operations_add_up_keep_the_worst_latency_and_expire() {
    use flagstaff_store::events::{MigrationTotals, OriginTotals};
    on_every_backend(|t| async move {
        let events = EventStore::open(&t.url).await.unwrap();
        let now = 1_800_000_000_000;
        let totals = |operations, latency: f64, inconsistent| {
            let mut old = OriginTotals {
                invoked: operations,
                ..OriginTotals::default()
            };
            old.measure(latency);
            MigrationTotals {
                operations,
                old,
                new: OriginTotals {
                    invoked: operations,
                    errors: 1,
                    ..OriginTotals::default()
                },
                checks: operations,
                inconsistent,
            }
        };
        // Two flushes into the same hour: counts add, the maximum latency is the larger.
        for (operations, latency, inconsistent) in [(3, 40.0, 1), (2, 10.5, 0)] {
            let write = EventWrite {
                migration_ops: vec![
                    migration_row(
                        Resolution::Hour,
                        now,
                        "shadow",
                        totals(operations, latency, inconsistent),
                    ),
                    migration_row(Resolution::Minute, now - 3 * DAY, "live", totals(1, 1.0, 0)),
                ],
                ..EventWrite::default()
            };
            events.write(&write).await.unwrap();
        }
        let rows = events
            .migration_series(ENV, "orders-db", Resolution::Hour, now - DAY, now + DAY)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let got = rows[0].totals;
        assert_eq!(
            (rows[0].operation.as_str(), rows[0].stage.as_str()),
            ("read", "shadow")
        );
        assert_eq!((got.operations, got.checks, got.inconsistent), (5, 5, 1));
        assert_eq!(
            (got.old.invoked, got.new.invoked, got.new.errors),
            (5, 5, 2)
        );
        assert_eq!(got.old.latency_count, 2);
        assert!((got.old.latency_sum_ms - 50.5).abs() < 1e-9);
        assert!((got.old.latency_max_ms - 40.0).abs() < 1e-9);
        // Other flags and environments are not mixed in.
        let other = events
            .migration_series("shop/test", "orders-db", Resolution::Hour, 0, now + DAY)
            .await
            .unwrap();
        assert!(other.is_empty());
        // The three-day-old minute bucket is past its two days; the hour bucket stays.
        let pruned = events.prune(&Retention::default(), now).await.unwrap();
        assert_eq!(pruned.buckets, 1);
        let minutes = events
            .migration_series(ENV, "orders-db", Resolution::Minute, 0, now + DAY)
            .await
            .unwrap();
        assert!(minutes.is_empty());
        t
    })
    .await;
}

#[tokio::test]
async fn a_payload_id_is_claimed_once_across_event_stores_until_pruned() {
    on_every_backend(|t| async move {
        // Two event stores on one database: two nodes' writers.
        let a = EventStore::open(&t.url).await.unwrap();
        let b = EventStore::open(&t.url).await.unwrap();
        let now = 1_800_000_000_000;
        let first = a
            .claim_payloads(&[(ENV, "p1"), ("other/env", "p1"), (ENV, "p2")], now)
            .await
            .unwrap();
        assert_eq!(first, vec![true, true, true], "IDs are per environment");
        let again = b
            .claim_payloads(&[(ENV, "p2"), (ENV, "p3"), (ENV, "p3")], now + 1000)
            .await
            .unwrap();
        assert_eq!(again, vec![false, true, false]);
        // Ten minutes later the IDs are forgotten (no SDK retries that late).
        a.prune(&Retention::default(), now + 600_001 + 1000)
            .await
            .unwrap();
        let later = b
            .claim_payloads(&[(ENV, "p1")], now + 700_000)
            .await
            .unwrap();
        assert_eq!(later, vec![true]);
        a.close().await;
        b.close().await;
        t
    })
    .await;
}
