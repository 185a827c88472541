//! `/relay/environments`: what a relay with a relay token configures itself from (issue 22):
//! every environment the token may relay (`relayEnvironment`), with credential fingerprints,
//! secure-mode key schedules and client-side IDs, never a plaintext key. Relays poll it with
//! `If-None-Match`; an unchanged configuration costs a `304` and no body.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::App;
use serde_json::json;

use crate::Result;
use crate::extract::Caller;
use crate::routes::AppState;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/relay/environments", get(environments))
}

async fn environments(
    State(app): AppState,
    Caller(actor): Caller,
    headers: HeaderMap,
) -> Result<Response> {
    let environments = app.relay_environments(&actor).await?;
    let body = json!({"environments": environments});
    // The ETag is a digest of the body, so that it changes exactly when the configuration
    // does, whichever node of a cluster answers.
    let text = body.to_string();
    let etag = format!("\"{}\"", &flagstaff_app::fingerprint(&text)[..32]);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(body).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
