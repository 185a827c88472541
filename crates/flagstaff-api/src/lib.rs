//! The management REST API under `/api/v1`, plus `/health` and `/ready`.
//!
//! Handlers only translate HTTP into calls on [`flagstaff_app::App`] and back; every decision
//! (authorization, validation, versioning, audit) is made there. Conventions:
//! - `Authorization: Bearer <API token>` on every `/api/v1` request.
//! - GET responses carry the resource's `version` in the body and as `ETag: "<version>"`.
//! - Updates and deletes require `If-Match: "<version>"`: a stale version is a 409 with the
//!   current version, and a missing one a 428, so no write ever silently overwrites another.
//! - The reason for a change goes in the `X-Flagstaff-Comment` header and lands in the audit log.
//! - Errors are `{"code", "message", "field"?}` with stable codes (`flagstaff-http`; the
//!   table is `docs/errors.md`, generated from `flagstaff_app::ErrorCode`).
#![forbid(unsafe_code)]
// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

mod extract;
pub mod openapi;
mod routes;

use flagstaff_app::ErrorCode;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::App;
use serde_json::json;

pub use extract::{MAX_PATCH_OPERATIONS, MAX_PATCHED_BYTES, apply_patch};
pub use flagstaff_http::{ApiError, MAX_BODY_BYTES};

type Result<T> = std::result::Result<T, ApiError>;

/// Renders the metrics registry in Prometheus' text format (installed by the binary).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Counts every request by method, matched route and status, and times it. The route is the
/// pattern (`/api/v1/projects/{project}/flags/{key}`), never the concrete path, so that the
/// number of series stays bounded whatever clients send.
async fn record_metrics(request: Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("flagstaff_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("flagstaff_http_request_duration_seconds", "method" => method, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// The router, over an [`App`]; `metrics` serves `GET /metrics` when given.
pub fn router(app: App, metrics: Option<MetricsRender>) -> Router {
    let api = Router::new()
        .merge(routes::projects::routes())
        .merge(routes::environments::routes())
        .merge(routes::flags::routes())
        .merge(routes::metrics::routes())
        .merge(routes::experiments::routes())
        .merge(routes::targeting::routes())
        .merge(routes::segments::routes())
        .merge(routes::big_segments::routes())
        .merge(routes::import::routes())
        .merge(routes::evaluate::routes())
        .merge(routes::insights::routes())
        .merge(routes::audit::routes())
        .merge(routes::members::routes())
        .merge(routes::tokens::routes())
        .merge(routes::roles::routes())
        .merge(routes::workflows::routes())
        .merge(routes::webhooks::routes())
        .merge(routes::relay::routes())
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such API endpoint") });
    let mut router = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .nest("/api/v1", api);
    if let Some(render) = metrics {
        // Request counts and timings only: nothing here reveals flags, rules or keys.
        router = router.route("/metrics", get(move || async move { render() }));
    }
    router
        .route_layer(axum::middleware::from_fn(record_metrics))
        .with_state(Arc::new(app))
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    match app.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}
