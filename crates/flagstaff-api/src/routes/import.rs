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
use flagstaff_http::{ApiError, RawBody, parse_json};

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
    RawBody(body): RawBody,
) -> Result<Json<Value>> {
    // Authorized before the payload is parsed: a caller without the right costs nothing.
    app.authorize_import(&actor, &project, &environment)?;
    let data: Value = parse_json(&body)?;
    let data = FlagData::from_json(data)
        .map_err(|e| ApiError::new(ErrorCode::InvalidField, e.message).with_field(e.path))?;
    let summary = app
        .import_flag_data(&actor, &project, &environment, data, &comment)
        .await?;
    Ok(Json(json!(summary)))
}
