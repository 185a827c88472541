//! Analytics and diagnostic events from server-side SDKs (`ld-protocol.md` §6).
//!
//! SDKs stop sending events for good after a `401`, `403` or other 4xx except `400`, `408`,
//! `413` and `429` (§6.3), so this intake accepts everything an SDK may legitimately send:
//! schemas 2 to 4, unknown event kinds, gzip bodies (the Rust SDK compresses) and chunked
//! bodies (Node sends no `Content-Length`). It answers `202 Accepted` once the body is read and
//! parses. What is accepted is counted; storing and aggregating events is a later stage.

use std::io::Read as _;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::CredentialKind;
use serde_json::Value;

use crate::Delivery;
use crate::http::error;

/// Reads a request body up to `limit` bytes, decompressing gzip. `Err` is the response to send.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("event payloads are limited to {limit} bytes"),
        )
    };
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Ok(raw);
    }
    let mut decoded = Vec::new();
    let read = flate2::read::GzDecoder::new(raw.as_ref())
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded);
    match read {
        Ok(n) if n > limit => Err(too_large()),
        Ok(_) => Ok(Bytes::from(decoded)),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_gzip",
            &format!("the body says Content-Encoding: gzip but does not decompress: {e}"),
        )),
    }
}

/// The event schema an SDK declares (`X-LaunchDarkly-Event-Schema`); absent means 1 (§6.2).
fn schema(headers: &HeaderMap) -> u32 {
    headers
        .get("x-launchdarkly-event-schema")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

/// Event kinds of schemas 2 to 4 (§6.4), the only values the kind label of the metric takes.
const KNOWN_KINDS: [&str; 10] = [
    "feature",
    "summary",
    "index",
    "identify",
    "custom",
    "debug",
    "alias",
    "click",
    "pageview",
    "migration_op",
];

/// Reads, checks and counts an authorized events payload.
pub(crate) async fn accept(
    delivery: &Delivery,
    headers: &HeaderMap,
    body: Body,
    diagnostic: bool,
) -> Response {
    let bytes = match read_body(headers, body, delivery.config.max_event_payload_bytes).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal,
    };
    count(headers, &bytes, diagnostic)
}

/// Counts the events of a payload that was read: `202`, or `400` when it is not what the
/// endpoint takes.
pub(crate) fn count(headers: &HeaderMap, bytes: &[u8], diagnostic: bool) -> Response {
    let payload: Value = match serde_json::from_slice(bytes) {
        Ok(payload) => payload,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                &format!("the event payload is not JSON: {e}"),
            );
        }
    };
    if diagnostic {
        metrics::counter!("flagstaff_events_diagnostic_total").increment(1);
    } else {
        let schema = schema(headers).to_string();
        match &payload {
            Value::Array(events) => {
                for event in events {
                    let kind = event
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    // Only known kinds become label values, so a client cannot grow the
                    // metric without bound.
                    let kind: &'static str = KNOWN_KINDS
                        .iter()
                        .find(|known| **known == kind)
                        .copied()
                        .unwrap_or("other");
                    metrics::counter!("flagstaff_events_received_total", "kind" => kind, "schema" => schema.clone())
                        .increment(1);
                }
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    "an analytics payload is a JSON array of events",
                );
            }
        }
    }
    StatusCode::ACCEPTED.into_response()
}

async fn intake(
    delivery: &Delivery,
    headers: &HeaderMap,
    body: Body,
    diagnostic: bool,
) -> Response {
    if let Err(refusal) = delivery.authorize(headers, CredentialKind::Sdk).await {
        return refusal;
    }
    accept(delivery, headers, body, diagnostic).await
}

/// `POST /bulk`: analytics events.
pub(crate) async fn bulk(
    State(d): State<Arc<Delivery>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(&d, &headers, body, false).await
}

/// `POST /diagnostic`: an SDK's diagnostic report (one JSON object).
pub(crate) async fn diagnostic(
    State(d): State<Arc<Delivery>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(&d, &headers, body, true).await
}
