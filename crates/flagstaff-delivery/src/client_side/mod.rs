//! Browser and mobile SDKs (`ld-protocol.md` §5): they receive flags evaluated for their own
//! context, never rules, targets or segment membership.
//!
//! - Polling: `GET /sdk/evalx/{clientSideId}/contexts/{ctx}` (and `/users/`), `REPORT
//!   /sdk/evalx/{clientSideId}/context` (and `/contexts`, `/user`, `/users`), the mobile
//!   `/msdk/evalx/...` with the mobile key, and Relay's `/sdk/evalx/contexts/...` with the SDK
//!   key (§5.11). `{ctx}` is base64url context JSON, padded or not (§5.2).
//! - Streams: `/eval/{clientSideId}/{ctx}`, `REPORT /eval/{clientSideId}`, `/meval/{ctx}`,
//!   `REPORT /meval` use the push model of §5.5: a `put` of the evaluated flags, then a
//!   `patch` or `delete` for each flag whose result changed *for this context*. `/ping/...` and
//!   `/mping` send `ping` on every change instead; the SDK then polls.
//! - `GET /sdk/goals/{clientSideId}` (`[]`: Flagstaff has no click or page-view goals), and the
//!   browser and mobile event endpoints (§6.1), counted like server-side events.
//!
//! # Versions
//!
//! Every evaluated flag carries `version` = the environment's data version (the change-feed
//! position of the published state) and `flagVersion` = the flag's own. SDKs apply a `patch`
//! only if its `version` is greater than what they hold, and a segment or prerequisite change
//! alters results without touching the flag's version (§13 pitfall 2); the data version grows
//! with every change.
//!
//! # Re-evaluation on change
//!
//! A change is turned into the list of flags whose result may differ (the changed flags, the
//! flags using a changed segment and their dependents through prerequisites, see
//! `Published::affected_flags`) once, by the change-feed worker. Each open stream then
//! evaluates only those flags for its own context, before and after, in its own task, and sends
//! an event only when its result changed. Nothing is kept per stream but the context: the state
//! before the change is still at hand in the frame.

// Refusals are HTTP responses, built only on the refusal path and returned straight to axum;
// boxing them would only add an allocation.
#![allow(clippy::result_large_err)]

mod cors;
mod evalx;
mod fdv2;
mod intake;
mod streams;

pub(crate) use cors::{cors, stream_cors_headers};
pub(crate) use evalx::{browser_get, browser_report, keyed_get, keyed_report};
pub(crate) use fdv2::{poll_eval, poll_eval_body, stream_eval, stream_eval_body};
pub(crate) use intake::{
    beacon, browser_bulk, browser_diagnostic, goals, mobile_bulk, mobile_diagnostic,
};
pub use streams::simulation;
pub(crate) use streams::{
    LeanRoute, browser_ping, browser_stream, browser_stream_report, mobile_ping, mobile_stream,
    mobile_stream_report,
};

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use flagstaff_app::{CredentialKind, ErrorCode, Grant};
use flagstaff_eval::{BigSegmentMembership, ClientResult};
use flagstaff_protocol::{Context, EvaluatedFlag};
use serde::Serialize;
use serde::ser::SerializeMap;
use tokio::sync::broadcast::error::RecvError;

use crate::Delivery;
use crate::events;
use crate::feed::{EnvFeed, Frame, Payload, Published, sse_event};
use crate::http::{Authorized, error, with_env_id};
use crate::polling::document;
use crate::stream::{EventSource, OpenStream, sse_response};

/// The query parameters client SDKs send (§5.2).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ClientQuery {
    #[serde(rename = "withReasons")]
    with_reasons: Option<String>,
    /// The secure-mode hash (§5.7).
    h: Option<String>,
}

impl ClientQuery {
    fn with_reasons(&self) -> bool {
        self.with_reasons
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// A `400` in the shape client SDKs log (`{"message": ...}`, plus our stable code).
fn bad_request(code: ErrorCode, message: &str) -> Response {
    error(code, message)
}

/// An unknown client-side ID. Browser SDKs report a `404` as "invalid environment ID" (§5.3).
fn unknown_environment() -> Response {
    error(
        ErrorCode::UnknownEnvironment,
        "no environment has this client-side ID",
    )
}

/// Checks the caller's credential and loads its environment.
pub(crate) async fn authorize(
    delivery: &Delivery,
    caller: CredentialKind,
    env_id: Option<&str>,
    headers: &HeaderMap,
) -> Result<Authorized, Response> {
    match (caller, env_id) {
        (CredentialKind::ClientSide, Some(env_id)) => delivery
            .authorize_secret(env_id, CredentialKind::ClientSide)
            .await?
            .ok_or_else(unknown_environment),
        (CredentialKind::ClientSide, None) => Err(unknown_environment()),
        _ => delivery.authorize(headers, caller).await,
    }
}

/// The largest context a browser or mobile request may carry (its JSON). Every flag is
/// evaluated for it on every change while a stream is open, so its size is work the server
/// repeats; real contexts are a few hundred bytes.
pub const MAX_CONTEXT_BYTES: usize = 8 * 1024;

fn context_too_large() -> Response {
    error(
        ErrorCode::PayloadTooLarge,
        &format!("a context is limited to {MAX_CONTEXT_BYTES} bytes of JSON"),
    )
}

/// Decodes `{ctx}` of a GET path: base64url, with or without padding (§5.2). The standard
/// alphabet is accepted too, since some older SDKs used it.
pub(crate) fn decode_context_path(encoded: &str) -> Result<Context, Response> {
    parse_context(&decode_context_bytes(encoded)?)
}

/// The context JSON of a GET path, decoded but not parsed.
fn decode_context_bytes(encoded: &str) -> Result<Vec<u8>, Response> {
    // Base64 makes 4 characters of 3 bytes: refuse a longer path before decoding it.
    if encoded.trim_end_matches('=').len() > MAX_CONTEXT_BYTES.div_ceil(3) * 4 {
        return Err(context_too_large());
    }
    let normalized: String = encoded
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(normalized.as_bytes())
        .map_err(|_| {
            bad_request(
                ErrorCode::InvalidContext,
                "the context in the path is not base64url-encoded JSON",
            )
        })?;
    if bytes.len() > MAX_CONTEXT_BYTES {
        return Err(context_too_large());
    }
    Ok(bytes)
}

/// Parses context JSON (the new format or a legacy user, §2.7).
pub(crate) fn parse_context(bytes: &[u8]) -> Result<Context, Response> {
    parse_context_json(bytes).map(|(context, _)| context)
}

/// [`parse_context`], and the JSON it was read from.
fn parse_context_json(bytes: &[u8]) -> Result<(Context, serde_json::Value), Response> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        bad_request(
            ErrorCode::InvalidContext,
            &format!("the context is not valid JSON: {e}"),
        )
    })?;
    let context = Context::from_json(&value).map_err(|e| {
        bad_request(
            ErrorCode::InvalidContext,
            &format!("invalid context: {}: {}", e.field, e.message),
        )
    })?;
    Ok((context, value))
}

/// The context of a `REPORT` body. Relay answers `415` for anything but JSON (§5.2).
async fn context_from_body(headers: &HeaderMap, body: Body) -> Result<Context, Response> {
    parse_context(&context_body_bytes(headers, body).await?)
}

/// The context JSON of a `REPORT` (or `POST`) body, read but not parsed.
async fn context_body_bytes(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(error(
            ErrorCode::UnsupportedMediaType,
            "send the context as JSON with Content-Type: application/json",
        ));
    }
    flagstaff_http::read_limited(headers, body, MAX_CONTEXT_BYTES)
        .await
        .map_err(|refused| match refused {
            flagstaff_http::BodyRefused::TooLarge { .. } => context_too_large(),
            slow @ flagstaff_http::BodyRefused::TooSlow => {
                flagstaff_http::ApiError::from(slow).into_response()
            }
        })
}

/// Secure mode (§5.7): browser requests must carry the context's hash when it is on.
fn check_secure_mode(
    delivery: &Delivery,
    authorized: &Authorized,
    caller: CredentialKind,
    context: &Context,
    hash: Option<&str>,
) -> Result<(), Response> {
    if caller != CredentialKind::ClientSide {
        return Ok(());
    }
    let Some(secure_mode) = authorized.feed.secure_mode() else {
        return Ok(());
    };
    let accepted = hash.is_some_and(|h| {
        secure_mode.accepts(
            &context.fully_qualified_key(),
            h,
            delivery.source.now_millis(),
        )
    });
    if accepted {
        Ok(())
    } else {
        Err(bad_request(
            ErrorCode::SecureModeHashMismatch,
            "Environment is in secure mode, and context hash does not match.",
        ))
    }
}

/// Every flag the credential sees, evaluated for one context: the body of §5.3.
struct EvaluatedFlags<'a> {
    results: &'a [(&'a str, ClientResult<'a>)],
    version: u64,
    with_reasons: bool,
}

impl Serialize for EvaluatedFlags<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.results.len()))?;
        for (key, result) in self.results {
            map.serialize_entry(key, &result.payload(self.version, self.with_reasons))?;
        }
        map.end()
    }
}

/// The evaluated-flags JSON for a context.
pub(crate) fn evaluate_all(
    state: &Published,
    credential: CredentialKind,
    context: &Context,
    with_reasons: bool,
    big_segments: Option<&BigSegmentMembership>,
) -> Vec<u8> {
    let results = state
        .snapshot()
        .evaluate_all_for_client_with(credential, context, big_segments);
    serde_json::to_vec(&EvaluatedFlags {
        results: &results,
        version: state.data_version,
        with_reasons,
    })
    .unwrap_or_default()
}

/// The context's big-segment membership in the feed's environment, looked up once per request
/// (`None` when the environment has no big segments: no lookup at all).
pub(crate) async fn big_segment_membership(
    delivery: &Delivery,
    feed: &EnvFeed,
    state: &Published,
    context: &Context,
) -> Result<Option<BigSegmentMembership>, Response> {
    delivery
        .source
        .big_segment_membership(&feed.id, state.snapshot(), context)
        .await
        .map_err(|e| {
            tracing::warn!(environment = %feed.id, error = %e, "cannot look up big-segment membership");
            crate::http::unavailable("big-segment membership cannot be read right now")
        })
}

/// Where a request's context is.
enum ContextIn {
    Path(String),
    Body(Body),
}

async fn read_context(source: ContextIn, headers: &HeaderMap) -> Result<Context, Response> {
    match source {
        ContextIn::Path(encoded) => decode_context_path(&encoded),
        ContextIn::Body(body) => context_from_body(headers, body).await,
    }
}

/// [`read_context`], and the context's JSON as read.
async fn read_context_json(
    source: ContextIn,
    headers: &HeaderMap,
) -> Result<(Context, serde_json::Value), Response> {
    match source {
        ContextIn::Path(encoded) => parse_context_json(&decode_context_bytes(&encoded)?),
        ContextIn::Body(body) => parse_context_json(&context_body_bytes(headers, body).await?),
    }
}

/// `REPORT` is not a method axum routes by name; the REPORT routes take any method and check.
fn require_report(method: &Method) -> Result<(), Response> {
    if method.as_str() == "REPORT" {
        Ok(())
    } else {
        Err(error(
            ErrorCode::MethodNotAllowed,
            "this endpoint takes REPORT with the context as a JSON body",
        ))
    }
}
