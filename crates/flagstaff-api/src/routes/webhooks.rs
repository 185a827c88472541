//! `/webhooks`: receivers of every change, with their delivery logs.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::{App, NewWebhook};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Body, Caller, Comment, IfMatch};
use crate::routes::AppState;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/webhooks/{id}",
            get(get_webhook).put(update_webhook).delete(delete_webhook),
        )
        .route("/webhooks/{id}/deliveries", get(list_deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(redeliver),
        )
}

async fn list_webhooks(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.webhooks(&actor).await?})))
}

async fn create_webhook(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(new): Body<NewWebhook>,
) -> Result<Response> {
    Ok((
        StatusCode::CREATED,
        Json(app.create_webhook(&actor, new, &comment).await?),
    )
        .into_response())
}

async fn get_webhook(
    State(app): AppState,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(json!(app.webhook(&actor, &id).await?)))
}

async fn update_webhook(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(id): Path<String>,
    Body(update): Body<NewWebhook>,
) -> Result<Json<Value>> {
    Ok(Json(json!(
        app.update_webhook(&actor, &id, update, version, &comment)
            .await?
    )))
}

async fn delete_webhook(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    app.delete_webhook(&actor, &id, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    /// At most this many, newest first (1 to 200; default 50).
    #[serde(default)]
    limit: Option<u32>,
}

async fn list_deliveries(
    State(app): AppState,
    Caller(actor): Caller,
    Path(id): Path<String>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Value>> {
    Ok(Json(json!({
        "items": app.webhook_deliveries(&actor, &id, query.limit.unwrap_or(50)).await?
    })))
}

async fn redeliver(
    State(app): AppState,
    Caller(actor): Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<Value>> {
    Ok(Json(json!(app.redeliver(&actor, &id, &delivery).await?)))
}
