//! The flag overview is cached per project and brought forward from the change feed
//! (`overview.rs`). Whatever sequence of changes happens, the cached overview must equal one
//! built from scratch by an app that has never seen it.

use std::sync::Arc;

use flagstaff_app::{Actor, App};
use proptest::prelude::*;
use serde_json::json;

use crate::support::{Fixture, boolean};

#[derive(Clone, Debug)]
enum Step {
    Create(u8),
    Toggle(u8, bool),
    Rename(u8),
    Archive(u8, bool),
    Delete(u8),
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0u8..4;
    prop_oneof![
        key.clone().prop_map(Step::Create),
        (key.clone(), any::<bool>()).prop_map(|(k, p)| Step::Toggle(k, p)),
        key.clone().prop_map(Step::Rename),
        (key.clone(), any::<bool>()).prop_map(|(k, a)| Step::Archive(k, a)),
        key.prop_map(Step::Delete),
    ]
}

/// Applies a step; refusals (a flag that does not exist yet, one that exists already) are part
/// of the sequence and must leave the cache right too.
async fn apply(fixture: &Fixture, step: &Step) {
    let system = Actor::system();
    let app = &fixture.app;
    let key = |k: &u8| format!("f{k}");
    match step {
        Step::Create(k) => {
            let _ = fixture.flag(boolean(&key(k))).await;
        }
        Step::Toggle(k, production) => {
            let environment = if *production { "production" } else { "test" };
            if let Ok(current) = app
                .targeting(&system, "default", environment, &key(k))
                .await
            {
                let _ = fixture
                    .targeting(environment, &key(k), json!({"on": !current.value.on}))
                    .await;
            }
        }
        Step::Rename(k) => {
            if let Ok(current) = app.flag(&system, "default", &key(k)).await {
                let mut definition = current.value.clone();
                definition.name = format!("{} again", definition.name);
                let _ = app
                    .update_flag(&system, "default", &key(k), definition, current.version, "")
                    .await;
            }
        }
        Step::Archive(k, archived) => {
            let _ = app
                .set_archived(&system, "default", &key(k), *archived, "")
                .await;
        }
        Step::Delete(k) => {
            if let Ok(current) = app.flag(&system, "default", &key(k)).await {
                let _ = app
                    .delete_flag(&system, "default", &key(k), current.version, "")
                    .await;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_cached_overview_equals_a_fresh_build_after_any_changes(
        steps in proptest::collection::vec(step(), 1..12)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let fixture = Fixture::new().await;
            let system = Actor::system();
            // Read once first, so that the cache exists and must be brought forward.
            fixture.app.flag_overview(&system, "default").await.expect("overview");
            for step in &steps {
                apply(&fixture, step).await;
                let cached = fixture.app.flag_overview(&system, "default").await.expect("cached");
                let fresh = App::new(Arc::clone(&fixture.store))
                    .flag_overview(&system, "default")
                    .await
                    .expect("fresh");
                assert_eq!(cached, fresh, "after {step:?} in {steps:?}");
            }
        });
    }
}
