//! `/projects/{project}/metrics`: what experiments measure (issue 21).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::App;
use flagstaff_app::metrics::Metric;
use serde_json::Value;

use crate::Result;
use crate::extract::{Body, Caller, Comment, IfMatch, Replacement, versioned};
use crate::routes::{AppState, items};

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/projects/{project}/metrics",
            get(list_metrics).post(create_metric),
        )
        .route(
            "/projects/{project}/metrics/{key}",
            get(get_metric).put(update_metric).delete(delete_metric),
        )
}

async fn list_metrics(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    Ok(items(app.list_metrics(&actor, &project).await?))
}

async fn create_metric(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(project): Path<String>,
    Body(metric): Body<Metric>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.create_metric(&actor, &project, metric, &comment)
            .await?,
    ))
}

async fn get_metric(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key)): Path<(String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.metric(&actor, &project, &key).await?,
    ))
}

async fn update_metric(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, key)): Path<(String, String)>,
    Replacement(metric): Replacement<Metric>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.update_metric(&actor, &project, &key, metric, version, &comment)
            .await?,
    ))
}

async fn delete_metric(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, key)): Path<(String, String)>,
) -> Result<StatusCode> {
    app.delete_metric(&actor, &project, &key, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
