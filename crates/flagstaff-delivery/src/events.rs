//! Analytics and diagnostic events from server-side SDKs (`ld-protocol.md` §6).
//!
//! SDKs stop sending events for good after a `401`, `403` or other 4xx except `400`, `408`,
//! `413` and `429` (§6.3), so this intake accepts everything an SDK may legitimately send:
//! schemas 2 to 4, unknown event kinds, gzip bodies (the Rust SDK compresses) and chunked
//! bodies (Node sends no `Content-Length`). It answers `202 Accepted` once the body is read and
//! parses, and hands the parsed payload to the events pipeline (`flagstaff-events`), which
//! queues it with a bound and writes it in batches: the request never waits for a database.

use std::io::Read as _;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::intake::{EVENT_KINDS, EventSource, SdkIdentity};
use flagstaff_app::{AppError, CredentialKind, ErrorCode, Grant};

use crate::Source;

use crate::Delivery;
use crate::http::error;

fn too_large(limit: usize) -> Response {
    error(
        ErrorCode::PayloadTooLarge,
        &format!("event payloads are limited to {limit} bytes"),
    )
}

/// Reads a request body up to `limit` bytes, as sent. `Err` is the response to send (`413`,
/// or `408` for a body slower than the body-read timeout; SDKs retry both, §6.3).
async fn read_raw(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    flagstaff_http::read_limited(headers, body, limit)
        .await
        .map_err(|refused| match refused {
            flagstaff_http::BodyRefused::TooLarge { limit } => too_large(limit),
            slow @ flagstaff_http::BodyRefused::TooSlow => {
                flagstaff_http::ApiError::from(slow).into_response()
            }
        })
}

/// Decompresses a gzip body up to `limit` bytes (a gzip bomb is cut off there).
// The refusal is the response itself, built only on the failure path.
#[allow(clippy::result_large_err)]
fn decode(headers: &HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes, Response> {
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
        Ok(n) if n > limit => Err(too_large(limit)),
        Ok(_) => Ok(Bytes::from(decoded)),
        Err(e) => Err(error(
            ErrorCode::InvalidGzip,
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

/// The `schema` label of the events counter: only the schemas SDKs send become label values,
/// anything else is `other`, so that a client cannot grow the metric without bound.
fn schema_label(schema: u32) -> &'static str {
    match schema {
        1 => "1",
        2 => "2",
        3 => "3",
        4 => "4",
        _ => "other",
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Where a payload sent with `grant` came from, as the pipeline needs to know.
fn source(from: &Source, grant: &Grant, headers: &HeaderMap, server_side: bool) -> EventSource {
    EventSource {
        environment: Arc::from(format!("{}/{}", grant.project, grant.environment)),
        sdk: SdkIdentity::from_headers(
            header(headers, "user-agent"),
            header(headers, "x-launchdarkly-user-agent"),
            header(headers, "x-launchdarkly-wrapper"),
        ),
        schema: schema(headers),
        unsummarized: headers.contains_key("x-launchdarkly-unsummarized"),
        server_side,
        received_at: from.now_millis(),
    }
}

/// Reads and queues an authorized events payload: `202` once it is read and parses (§6.3).
pub(crate) async fn accept(
    delivery: &Delivery,
    grant: &Grant,
    headers: &HeaderMap,
    body: Body,
    diagnostic: bool,
    server_side: bool,
) -> Response {
    let limit = delivery.config.max_event_payload_bytes;
    let raw = match read_raw(headers, body, limit).await {
        Ok(raw) => raw,
        Err(refusal) => {
            delivery.source.record_rejected_events();
            return refusal;
        }
    };
    // Decompressing and parsing cost CPU in proportion to what an untrusted client sent: they
    // run on the blocking pool, a few at a time, so that SDK streams and every other request
    // keep the async workers.
    let Ok(_permit) = delivery.events_parsing.acquire().await else {
        return error(ErrorCode::Unavailable, "the server is shutting down");
    };
    let (app, grant, headers) = (delivery.source.clone(), grant.clone(), headers.clone());
    tokio::task::spawn_blocking(move || match decode(&headers, raw, limit) {
        Ok(bytes) => ingest(&app, &grant, &headers, &bytes, diagnostic, server_side),
        Err(refusal) => {
            app.record_rejected_events();
            refusal
        }
    })
    .await
    .unwrap_or_else(|_| error(ErrorCode::Internal, "the payload could not be read"))
}

/// Parses a payload that was read, counts it and hands it to the pipeline: `202`, or `400`
/// when it is not what the endpoint takes.
pub(crate) fn ingest(
    app: &Source,
    grant: &Grant,
    headers: &HeaderMap,
    bytes: &[u8],
    diagnostic: bool,
    server_side: bool,
) -> Response {
    let source = source(app, grant, headers, server_side);
    let schema = source.schema;
    let payload_id = header(headers, "x-launchdarkly-payload-id");
    let counts = match app.ingest_events(source, headers, bytes, diagnostic, payload_id) {
        Ok(counts) => counts,
        Err(e) => {
            let message = match &e {
                AppError::Invalid { message, .. } => message.clone(),
                other => other.to_string(),
            };
            return error(e.code(), &message);
        }
    };
    if diagnostic {
        metrics::counter!("flagstaff_events_diagnostic_total").increment(1);
    } else {
        let schema = schema_label(schema);
        for (kind, count) in EVENT_KINDS.iter().zip(counts) {
            if count > 0 {
                // Only known kinds become label values, so a client cannot grow the metric
                // without bound.
                metrics::counter!("flagstaff_events_received_total", "kind" => *kind, "schema" => schema)
                    .increment(count);
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
    let authorized = match delivery.authorize(headers, CredentialKind::Sdk).await {
        Ok(authorized) => authorized,
        Err(refusal) => return refusal,
    };
    // Server-side SDKs, with the SDK key.
    accept(delivery, &authorized.grant, headers, body, diagnostic, true).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_labels_are_bounded() {
        assert_eq!(schema_label(4), "4");
        assert_eq!(schema_label(1), "1");
        for unknown in [0, 5, 99, u32::MAX] {
            assert_eq!(schema_label(unknown), "other");
        }
    }
}
