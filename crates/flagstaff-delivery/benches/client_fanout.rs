//! The re-evaluation and fan-out path of client-side streams without sockets: N simulated
//! browser streams (each its own context) in one process, one flag change through the use-case
//! layer, and the time until the last stream has produced its `patch` (BENCHMARKS.md,
//! "Client-side delivery"). Real SQLite store, real change feed, real per-stream evaluation and
//! serialization; only the socket write is missing.
//!
//! `cargo bench -p flagstaff-delivery --bench client_fanout [-- STREAMS]` (default 50,000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flagstaff_app::model::{FlagDefinition, Targeting};
use flagstaff_app::{Actor, App};
use flagstaff_app::{FlagRef, WriteMeta};
use flagstaff_delivery::{Delivery, DeliveryConfig, simulation};
use flagstaff_store::Store;
use serde_json::json;
use tokio::sync::mpsc;

async fn set_targeting(app: &App, admin: &Actor, change: impl FnOnce(&mut Targeting)) {
    let current = app
        .targeting(admin, "default", "production", "load")
        .await
        .unwrap();
    let mut targeting = current.value.clone();
    change(&mut targeting);
    app.update_targeting(
        FlagRef {
            project: "default",
            environment: "production",
            key: "load",
        },
        targeting,
        WriteMeta {
            actor: admin,
            expected: current.version,
            comment: "",
        },
    )
    .await
    .unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`. `cargo test --all-targets` and nextest (`--list`) run
    // benchmark targets too; there is nothing to test here, so say nothing and stop.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let streams: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(streams));
}

async fn run(streams: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("f.db").display());
    let app = App::new(Arc::new(Store::open(&url).await.unwrap()));
    let init = app.initialize().await.unwrap();
    let admin = app.authenticate(&init.admin_token).await.unwrap();
    let client_side_id = init.environments[0].keys.client_side_id.clone();
    // 50 browser flags; `load` has a rule on country, the others are plain.
    for i in 0..50 {
        let key = if i == 0 {
            "load".to_owned()
        } else {
            format!("f{i}")
        };
        let definition: FlagDefinition = serde_json::from_value(json!({"key": key, "name": key,
            "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": true}}))
        .unwrap();
        app.create_flag(&admin, "default", definition, "")
            .await
            .unwrap();
    }
    let config = DeliveryConfig {
        heartbeat_interval: Duration::from_secs(600),
        max_streams: streams + 10,
        ..DeliveryConfig::default()
    };
    let delivery = Delivery::start(app.clone(), config).await.unwrap();

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (arrival_tx, mut arrival_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let opening = Instant::now();
    for i in 0..streams {
        let country = ["NZ", "CA", "FR"][i % 3];
        let context = json!({"kind": "user", "key": format!("user-{i}"), "country": country});
        let mut stream = simulation::open(&delivery, &client_side_id, &context)
            .await
            .unwrap();
        let (ready, arrivals) = (ready_tx.clone(), arrival_tx.clone());
        tokio::spawn(async move {
            stream.next().await.expect("put");
            let _ = ready.send(());
            while let Some(bytes) = stream.next().await {
                let patches = bytes.windows(12).filter(|w| w == b"event: patch").count();
                let now = Instant::now();
                for _ in 0..patches {
                    let _ = arrivals.send((i, now));
                }
            }
        });
    }
    for _ in 0..streams {
        ready_rx.recv().await.unwrap();
    }
    println!(
        "{streams} simulated browser streams open in {:.1}s",
        opening.elapsed().as_secs_f64()
    );

    // Three changes, twice: on (every result changes), a rule for Canadians (every third
    // context's result changes), off (the others' results change).
    let canadians = (0..streams).filter(|i| i % 3 == 1).count();
    let mut results = Vec::new();
    for round in 0..6 {
        let (what, expected) = match round % 3 {
            0 => ("turn on (true for everyone)", streams),
            1 => ("add a rule: Canadians get false", canadians),
            // Off serves false, which Canadians already get.
            _ => ("turn off", streams - canadians),
        };
        let started = Instant::now();
        match round % 3 {
            0 => {
                set_targeting(&app, &admin, |t| {
                    t.on = true;
                    t.rules.clear();
                    t.fallthrough = serde_json::from_value(json!({"variation": 0})).unwrap();
                })
                .await
            }
            1 => {
                set_targeting(&app, &admin, |t| {
                    t.rules = vec![
                        serde_json::from_value(json!({"id": "ca", "variation": 1,
                        "clauses": [{"attribute": "country", "op": "in", "values": ["CA"]}]}))
                        .unwrap(),
                    ];
                })
                .await
            }
            _ => set_targeting(&app, &admin, |t| t.on = false).await,
        }
        let mut last = started;
        for _ in 0..expected {
            let (_, at) = tokio::time::timeout(Duration::from_secs(30), arrival_rx.recv())
                .await
                .expect("every affected stream gets its patch")
                .unwrap();
            last = last.max(at);
        }
        // Nobody else may get one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let extra = std::iter::from_fn(|| arrival_rx.try_recv().ok()).count();
        let ms = last.duration_since(started).as_secs_f64() * 1000.0;
        println!("{what}: {expected} patches, last after {ms:.0} ms, {extra} unexpected");
        results.push(ms);
    }
    results.sort_by(f64::total_cmp);
    println!(
        "time to the last of {streams} streams: median {:.0} ms, max {:.0} ms",
        results[results.len() / 2],
        results[results.len() - 1]
    );
    drop(delivery);
}
