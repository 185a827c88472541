//! Experiment results at SDK scale (issue 21, point 3): an iteration with 1,000,000 exposed
//! contexts (and 110,000 purchases with a value), written through the events database's
//! experiment path in flushes of 10,000 events as the events writer does, then
//! `App::experiment_results` timed by criterion. The goal is under a second; the results read a
//! few rows of sufficient statistics, whatever the number of contexts.
//!
//! Also printed: how fast the write path folds exposures and purchases into those statistics.
//! `cargo bench -p flagstaff-app --bench experiments`.

use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use flagstaff_app::experiments::NewExperiment;
use flagstaff_app::metrics::Metric;
use flagstaff_app::model::FlagDefinition;
use flagstaff_app::{Actor, App, EnvRef};
use flagstaff_events::{Pipeline, PipelineConfig};
use flagstaff_store::events::{EventWrite, ExperimentWrite, ExposureRow, OutcomeRow};
use flagstaff_store::{EventStore, Store};
use serde_json::json;

const EXPOSED: usize = 1_000_000;
const FLUSH: usize = 10_000;

struct Fixture {
    app: App,
    events: Arc<EventStore>,
    iteration: String,
    _dir: tempfile::TempDir,
}

fn env() -> EnvRef<'static> {
    EnvRef {
        project: "default",
        environment: "production",
    }
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let events_url = format!("sqlite://{}", dir.path().join("events.db").display());
        let events = Arc::new(EventStore::open(&events_url).await.expect("events"));
        let pipeline = Pipeline::start(Arc::clone(&events), PipelineConfig::default());
        let app = App::new(Arc::new(Store::open(&url).await.expect("a store")))
            .with_pipeline(pipeline);
        app.initialize().await.expect("first start");
        let system = Actor::system();
        let flag: FlagDefinition = serde_json::from_value(json!({"key": "checkout",
            "name": "Checkout", "kind": "multivariate", "variations": [{"value": "old"}, {"value": "new"}]}))
        .expect("a flag");
        app.create_flag(&system, "default", flag, "")
            .await
            .expect("a flag");
        for metric in [
            json!({"key": "purchased", "name": "Purchased", "kind": "conversion", "eventKey": "purchase"}),
            json!({"key": "revenue", "name": "Revenue", "kind": "numeric", "eventKey": "purchase"}),
        ] {
            let metric: Metric = serde_json::from_value(metric).expect("a metric");
            app.create_metric(&system, "default", metric, "")
                .await
                .expect("a metric");
        }
        let design: NewExperiment = serde_json::from_value(json!({"key": "big", "name": "Big",
            "flag": "checkout", "metrics": ["purchased", "revenue"], "controlVariation": 0,
            "treatmentVariations": [1]}))
        .expect("a design");
        app.create_experiment(&system, env(), design, "")
            .await
            .expect("an experiment");
        let started = app
            .start_experiment(&system, env(), "big", "")
            .await
            .expect("started");
        let iteration = started.value.iterations[0].id.clone();
        Fixture {
            app,
            events,
            iteration,
            _dir: dir,
        }
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let f = fixture(&rt);
    let started = Instant::now();
    let mut purchases = 0;
    rt.block_on(async {
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        for first in (0..EXPOSED).step_by(FLUSH) {
            let mut write = ExperimentWrite::default();
            for i in first..first + FLUSH {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let variation = (seed % 2) as u32;
                let unit = format!("user-{i}");
                write.exposures.push(ExposureRow {
                    iteration: f.iteration.clone(),
                    unit_key: unit.clone(),
                    variation,
                    at: 1_000 + i as i64,
                });
                // About 10 % buy in control, 12 % in treatment.
                if seed % 1000 < 100 + 20 * u64::from(variation) {
                    purchases += 1;
                    write.outcomes.push(OutcomeRow {
                        iteration: f.iteration.clone(),
                        unit_key: unit,
                        event_key: "purchase".into(),
                        value: Some((seed % 10_000) as f64 / 100.0),
                        at: 2_000 + i as i64,
                    });
                }
            }
            f.events
                .write(&EventWrite {
                    experiments: write,
                    ..EventWrite::default()
                })
                .await
                .expect("a write");
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {EXPOSED} exposures and {purchases} purchases in {seconds:.1} s: {:.0} events/s",
        (EXPOSED + purchases) as f64 / seconds
    );
    let results = rt
        .block_on(
            f.app
                .experiment_results(&Actor::system(), env(), "big", None),
        )
        .expect("results");
    let exposed: u64 = results.variations.iter().map(|v| v.exposures).sum();
    assert_eq!(exposed, EXPOSED as u64);
    c.bench_function("experiment_results/1M_exposed", |b| {
        b.iter(|| {
            rt.block_on(
                f.app
                    .experiment_results(&Actor::system(), env(), "big", None),
            )
            .expect("results")
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
