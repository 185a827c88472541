//! The handlers, one module per resource. Each module's `routes()` lists its paths; `router()` in
//! `lib.rs` merges them. Handlers only translate HTTP into `App` calls and back.

use std::sync::Arc;

use axum::extract::State;
use flagstaff_app::App;

pub(crate) mod audit;
pub(crate) mod big_segments;
pub(crate) mod environments;
pub(crate) mod evaluate;
pub(crate) mod experiments;
pub(crate) mod flags;
pub(crate) mod import;
pub(crate) mod insights;
pub(crate) mod members;
pub(crate) mod metrics;
pub(crate) mod projects;
pub(crate) mod relay;
pub(crate) mod roles;
pub(crate) mod segments;
pub(crate) mod targeting;
pub(crate) mod tokens;
pub(crate) mod webhooks;
pub(crate) mod workflows;

/// The state every handler reads.
pub(crate) type AppState = State<Arc<App>>;

/// A list of versioned documents, each with its `version` inside (as `GET` of one shows it).
pub(crate) fn items<T: serde::Serialize>(
    list: Vec<flagstaff_app::Versioned<T>>,
) -> axum::Json<serde_json::Value> {
    let items: Vec<serde_json::Value> = list
        .into_iter()
        .map(|v| {
            let mut value = serde_json::to_value(&v.value).unwrap_or(serde_json::Value::Null);
            value["version"] = serde_json::json!(v.version);
            value
        })
        .collect();
    axum::Json(serde_json::json!({"items": items}))
}
