//! What release workflows cost every node, whatever happens: the scheduler's run (every second
//! and at each moment) reads every pending schedule, and the webhook dispatcher reads the new
//! changes behind its cursor and queues their deliveries. Both on SQLite in a temporary
//! directory. `cargo bench -p flagstaff-app --bench workflows`.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use flagstaff_app::model::FlagDefinition;
use flagstaff_app::{Actor, App, NewSchedule, NewWebhook, Target};
use flagstaff_store::Store;
use serde_json::json;

struct Fixture {
    app: App,
    _dir: tempfile::TempDir,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let app = App::new(Arc::new(Store::open(&url).await.expect("a store")))
            .with_webhooks_allow_private(true);
        app.initialize().await.expect("first start");
        Fixture { app, _dir: dir }
    })
}

async fn flag(app: &App, key: &str) {
    let definition: FlagDefinition =
        serde_json::from_value(json!({"key": key, "name": key})).expect("a definition");
    app.create_flag(&Actor::system(), "default", definition, "")
        .await
        .expect("a flag");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("scheduler");
    for pending in [0usize, 100, 1000] {
        let f = fixture(&rt);
        rt.block_on(async {
            for i in 0..pending {
                let key = format!("flag-{}", i % 50);
                if i < 50 {
                    flag(&f.app, &key).await;
                }
                f.app
                    .schedule_change(
                        &Actor::system(),
                        &Target::flag("default", "test", &key),
                        NewSchedule {
                            // Far in the future: the run reads them and executes none.
                            execution_date: Some(4_000_000_000_000 + i as i64),
                            instructions: vec![json!({"kind": "turnFlagOn"})],
                            ..NewSchedule::default()
                        },
                    )
                    .await
                    .expect("a schedule");
            }
        });
        group.bench_function(format!("run_due_schedules/{pending}_pending"), |b| {
            b.iter(|| rt.block_on(f.app.run_due_schedules()).expect("a run"));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("webhooks");
    group.sample_size(20);
    let f = fixture(&rt);
    rt.block_on(async {
        for i in 0..10 {
            f.app
                .create_webhook(
                    &Actor::system(),
                    NewWebhook {
                        name: format!("hook {i}"),
                        url: "http://127.0.0.1:9/".into(),
                        secret: None,
                        on: true,
                        statements: (i % 2 == 0).then(|| {
                            json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/production:flag/*"]}])
                        }),
                    },
                    "",
                )
                .await
                .expect("a webhook");
        }
        flag(&f.app, "busy").await;
        // Leave the cursor at the head, so that each iteration queues only its own changes.
        f.app.fill_webhook_outbox().await.expect("a fill");
    });
    group.bench_function("fill_webhook_outbox/100_changes_10_webhooks", |b| {
        b.iter_batched(
            || {
                rt.block_on(async {
                    for i in 0..100 {
                        let on = i % 2 == 0;
                        let instruction = if on { "turnFlagOn" } else { "turnFlagOff" };
                        f.app
                            .apply_flag_instructions(
                                flagstaff_app::FlagRef {
                                    project: "default",
                                    environment: if i % 4 < 2 { "production" } else { "test" },
                                    key: "busy",
                                },
                                &[json!({"kind": instruction})],
                                None,
                                &Actor::system(),
                                "",
                            )
                            .await
                            .expect("a change");
                    }
                })
            },
            |()| rt.block_on(f.app.fill_webhook_outbox()).expect("a fill"),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
