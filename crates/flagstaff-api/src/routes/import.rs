//! `POST .../environments/{environment}/import`: LaunchDarkly flag data into an environment.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use flagstaff_app::App;
use flagstaff_protocol::FlagData;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Caller, Comment};
use crate::routes::AppState;
use flagstaff_app::ErrorCode;
use flagstaff_http::{ApiError, parse_json, read_limited};

/// The largest import accepted. A LaunchDarkly project of 1,000 flags exports to about 1.9 MB,
/// more than any other request may send (`MAX_BODY_BYTES`, 1 MiB); this leaves room for ten
/// times that. Only writers of the environment reach the read (authorization comes first).
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/projects/{project}/environments/{environment}/import",
        post(import_flag_data),
    )
}

async fn import_flag_data(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>> {
    // Authorized before the payload is even read: a caller without the right costs nothing.
    app.authorize_import(&actor, &project, &environment).await?;
    let body = read_limited(&headers, body, MAX_IMPORT_BYTES)
        .await
        .map_err(ApiError::from)?;
    let data: Value = parse_json(&body)?;
    let data = FlagData::from_json(data)
        .map_err(|e| ApiError::new(ErrorCode::InvalidField, e.message).with_field(e.path))?;
    let summary = app
        .import_flag_data(&actor, &project, &environment, data, &comment)
        .await?;
    Ok(Json(json!(summary)))
}
