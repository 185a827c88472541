//! `GET /audit`: the audit log.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::{App, AuditQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::Caller;
use crate::routes::AppState;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/audit", get(audit))
}

#[derive(Deserialize)]
struct AuditParams {
    kind: Option<String>,
    scope: Option<String>,
    key: Option<String>,
    actor: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    after: Option<u64>,
    limit: Option<u32>,
}

async fn audit(
    State(app): AppState,
    Caller(actor): Caller,
    Query(p): Query<AuditParams>,
) -> Result<Json<Value>> {
    let query = AuditQuery {
        kind: p.kind,
        scope: p.scope,
        key: p.key,
        actor: p.actor,
        since: p.since,
        until: p.until,
        after_seq: p.after,
        limit: p.limit.unwrap_or(100).clamp(1, 1000),
        ..AuditQuery::default()
    };
    let entries = app.audit(&actor, &query).await?;
    let next = (entries.len() == query.limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({"items": entries, "next": next})))
}
