//! `/projects/{project}/environments/{environment}/segments/{key}/members`: the members of a
//! big segment (issue 22). `POST` uploads a list — one key per line, or CSV with the key first
//! (`text/plain`, `text/csv`), streamed a batch at a time so that ten million keys never sit in
//! memory; or a JSON array of keys (`application/json`, up to the API's body limit) — to the
//! list and with the operation the query names (`?list=included|excluded&op=add|remove`); the
//! reading is `flagstaff_http::big_segment_list`, shared with the dashboard. `GET` answers how
//! many keys each list holds.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::App;
use flagstaff_http::big_segment_list::{self, ListQuery};
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Caller, Comment};
use crate::routes::AppState;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/projects/{project}/environments/{environment}/segments/{key}/members",
        get(counts).post(upload),
    )
}

async fn counts(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let counts = app
        .big_segment_counts(&actor, (&project, &environment, &key))
        .await?;
    Ok(Json(
        json!({"included": counts.included, "excluded": counts.excluded}),
    ))
}

async fn upload(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>> {
    let (list, remove) = query.parse()?;
    // Authorized before a byte of the list is read.
    let upload = app
        .begin_big_segment_upload(&actor, (&project, &environment, &key), list, remove)
        .await?;
    let summary = big_segment_list::upload(&app, upload, &headers, body, &comment).await?;
    Ok(Json(json!(summary)))
}
