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

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use flagstaff_app::CredentialKind;
use flagstaff_eval::{Audience, ClientResult};
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

/// Who is asking, by the credential they present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A browser: the client-side ID in the path.
    Browser,
    /// A mobile app: the mobile key in `Authorization`.
    Mobile,
    /// A server: the SDK key in `Authorization` (Relay's evaluation endpoints, §5.11).
    Server,
}

impl Caller {
    pub fn audience(self) -> Audience {
        match self {
            Caller::Browser => Audience::Browser,
            Caller::Mobile => Audience::Mobile,
            Caller::Server => Audience::Server,
        }
    }

    pub fn kind(self) -> CredentialKind {
        match self {
            Caller::Browser => CredentialKind::ClientSide,
            Caller::Mobile => CredentialKind::Mobile,
            Caller::Server => CredentialKind::Sdk,
        }
    }
}

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
fn bad_request(code: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

/// An unknown client-side ID. Browser SDKs report a `404` as "invalid environment ID" (§5.3).
fn unknown_environment() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown_environment",
        "no environment has this client-side ID",
    )
}

/// Checks the caller's credential and loads its environment.
pub(crate) async fn authorize(
    delivery: &Delivery,
    caller: Caller,
    env_id: Option<&str>,
    headers: &HeaderMap,
) -> Result<Authorized, Response> {
    match (caller, env_id) {
        (Caller::Browser, Some(env_id)) => delivery
            .authorize_secret(env_id, CredentialKind::ClientSide)
            .await?
            .ok_or_else(unknown_environment),
        (Caller::Browser, None) => Err(unknown_environment()),
        _ => delivery.authorize(headers, caller.kind()).await,
    }
}

/// Decodes `{ctx}` of a GET path: base64url, with or without padding (§5.2). The standard
/// alphabet is accepted too, since some older SDKs used it.
pub(crate) fn decode_context_path(encoded: &str) -> Result<Context, Response> {
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
                "invalid_context",
                "the context in the path is not base64url-encoded JSON",
            )
        })?;
    parse_context(&bytes)
}

/// Parses context JSON (the new format or a legacy user, §2.7).
pub(crate) fn parse_context(bytes: &[u8]) -> Result<Context, Response> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        bad_request(
            "invalid_context",
            &format!("the context is not valid JSON: {e}"),
        )
    })?;
    Context::from_json(&value).map_err(|e| {
        bad_request(
            "invalid_context",
            &format!("invalid context: {}: {}", e.field, e.message),
        )
    })
}

/// The context of a `REPORT` body. Relay answers `415` for anything but JSON (§5.2).
async fn context_from_body(headers: &HeaderMap, body: Body) -> Result<Context, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the context as JSON with Content-Type: application/json",
        ));
    }
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "a context is limited to 64 KiB",
        )
    })?;
    parse_context(&bytes)
}

/// Secure mode (§5.7): browser requests must carry the context's hash when it is on.
fn check_secure_mode(
    authorized: &Authorized,
    caller: Caller,
    context: &Context,
    hash: Option<&str>,
) -> Result<(), Response> {
    if caller != Caller::Browser {
        return Ok(());
    }
    let Some(secure_mode) = authorized.feed.secure_mode() else {
        return Ok(());
    };
    let accepted = hash.is_some_and(|h| {
        secure_mode.accepts(
            &context.fully_qualified_key(),
            h,
            flagstaff_app::now_millis(),
        )
    });
    if accepted {
        Ok(())
    } else {
        Err(bad_request(
            "secure_mode_hash_mismatch",
            "Environment is in secure mode, and context hash does not match.",
        ))
    }
}

/// Every flag the audience sees, evaluated for one context: the body of §5.3.
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
    audience: Audience,
    context: &Context,
    with_reasons: bool,
) -> Vec<u8> {
    let results = state.snapshot().evaluate_all_for_client(audience, context);
    serde_json::to_vec(&EvaluatedFlags {
        results: &results,
        version: state.data_version,
        with_reasons,
    })
    .unwrap_or_default()
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

/// A polling request: every visible flag evaluated for the context.
async fn poll(
    delivery: &Delivery,
    caller: Caller,
    env_id: Option<&str>,
    source: ContextIn,
    query: &ClientQuery,
    headers: &HeaderMap,
) -> Response {
    let authorized = match authorize(delivery, caller, env_id, headers).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let context = match read_context(source, headers).await {
        Ok(context) => context,
        Err(refusal) => return refusal,
    };
    if let Err(refusal) = check_secure_mode(&authorized, caller, &context, query.h.as_deref()) {
        return refusal;
    }
    let state = authorized.feed.current();
    let body = evaluate_all(&state, caller.audience(), &context, query.with_reasons());
    // The tag is derived from the exact body, so a client that cached these flags for this
    // context gets `304` only when nothing it would receive changed (§5.3 "ETag").
    let response = document(headers, &Payload::new(body));
    with_env_id(response, &authorized.feed)
}

/// `REPORT` is not a method axum routes by name; the REPORT routes take any method and check.
fn require_report(method: &Method) -> Result<(), Response> {
    if method.as_str() == "REPORT" {
        Ok(())
    } else {
        Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint takes REPORT with the context as a JSON body",
        ))
    }
}

/// `GET /sdk/evalx/{clientSideId}/contexts/{ctx}` and `/users/{ctx}`.
pub(crate) async fn browser_get(
    State(d): State<Arc<Delivery>>,
    Path((env_id, context)): Path<(String, String)>,
    Query(query): Query<ClientQuery>,
    headers: HeaderMap,
) -> Response {
    let source = ContextIn::Path(context);
    poll(&d, Caller::Browser, Some(&env_id), source, &query, &headers).await
}

/// `REPORT /sdk/evalx/{clientSideId}/context` (and `/contexts`, `/user`, `/users`).
pub(crate) async fn browser_report(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_report(&method) {
        return refusal;
    }
    let source = ContextIn::Body(body);
    poll(&d, Caller::Browser, Some(&env_id), source, &query, &headers).await
}

/// `GET /msdk/evalx/contexts/{ctx}` (mobile key) and `/sdk/evalx/contexts/{ctx}` (SDK key).
pub(crate) async fn keyed_get(
    caller: Caller,
    State(d): State<Arc<Delivery>>,
    Path(context): Path<String>,
    Query(query): Query<ClientQuery>,
    headers: HeaderMap,
) -> Response {
    poll(&d, caller, None, ContextIn::Path(context), &query, &headers).await
}

/// `REPORT /msdk/evalx/context` (mobile key) and `/sdk/evalx/context` (SDK key).
pub(crate) async fn keyed_report(
    caller: Caller,
    State(d): State<Arc<Delivery>>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_report(&method) {
        return refusal;
    }
    poll(&d, caller, None, ContextIn::Body(body), &query, &headers).await
}

// ----- streams ---------------------------------------------------------------------------------

/// The `ping` event. Its data must not be empty: EventSource implementations drop events
/// without data (§5.5); Relay sends a single space, and so do we.
const PING: &[u8] = b"event: ping\ndata:  \n\n";

/// What a client stream sends.
enum Mode {
    /// `ping` on every change; the SDK polls.
    Ping,
    /// The evaluated flags for this context, then what changes for it.
    Push {
        context: Box<Context>,
        audience: Audience,
        with_reasons: bool,
    },
}

/// One client stream's position in its environment's broadcast.
pub(crate) struct ClientStream {
    open: OpenStream,
    changes: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    /// The sequence number of the state this stream reflects.
    seen: u64,
    mode: Mode,
    first: Option<Bytes>,
}

impl ClientStream {
    /// The opening event: the evaluated flags (`put`) or a `ping` (§5.5 option 1: the SDK
    /// polled before it opened the stream, and polls again on a ping).
    fn opening(&self, state: &Published) -> Bytes {
        match &self.mode {
            Mode::Ping => Bytes::from_static(PING),
            Mode::Push {
                context,
                audience,
                with_reasons,
            } => {
                let data = evaluate_all(state, *audience, context, *with_reasons);
                let mut out = Vec::with_capacity(data.len() + 24);
                sse_event(&mut out, "put", &data);
                Bytes::from(out)
            }
        }
    }

    /// The events a change causes for this stream's context, if any.
    fn changed(&self, frame: &Frame) -> Option<Bytes> {
        let Frame::Changes { client, .. } = frame else {
            return None;
        };
        let Mode::Push {
            context,
            audience,
            with_reasons,
        } = &self.mode
        else {
            return Some(Bytes::from_static(PING));
        };
        let Some(change) = client else {
            // The stream opened while this change was being prepared without client data:
            // send everything again, which SDKs apply as a replacement.
            return Some(self.opening(&self.open.feed.current()));
        };
        let (before, after) = (change.before.snapshot(), change.after.snapshot());
        let version = change.after.data_version;
        let mut out = Vec::new();
        for key in &change.flags {
            let old = before
                .flag_id(key)
                .filter(|id| audience.sees(before.flag(*id).source()))
                .map(|id| before.evaluate_for_client(id, context));
            let new = after
                .flag_id(key)
                .filter(|id| audience.sees(after.flag(*id).source()))
                .map(|id| after.evaluate_for_client(id, context));
            match (old, new) {
                (old, Some(new)) => {
                    if old.is_some_and(|old| old.same_result(&new, *with_reasons)) {
                        continue;
                    }
                    let payload = EvaluatedFlag {
                        key: Some(key),
                        ..new.payload(version, *with_reasons)
                    };
                    sse_event(
                        &mut out,
                        "patch",
                        &serde_json::to_vec(&payload).unwrap_or_default(),
                    );
                }
                (Some(_), None) => {
                    let data = serde_json::json!({"key": key, "version": version});
                    sse_event(
                        &mut out,
                        "delete",
                        &serde_json::to_vec(&data).unwrap_or_default(),
                    );
                }
                (None, None) => {}
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// The next bytes to write, or `None` when the stream must end.
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            match self.changes.recv().await {
                Ok(frame) => match frame.as_ref() {
                    Frame::Changes { seq, .. } => {
                        if *seq <= self.seen {
                            continue;
                        }
                        self.seen = *seq;
                        if let Some(bytes) = self.changed(&frame) {
                            return Some(bytes);
                        }
                    }
                    Frame::Heartbeat => return Some(Bytes::from_static(crate::feed::HEARTBEAT)),
                    Frame::Close { .. } => {
                        if self.open.is_closed_by(&frame) {
                            return None;
                        }
                    }
                },
                Err(RecvError::Lagged(_)) => {
                    let state = self.open.feed.current();
                    self.seen = state.seq;
                    return Some(self.opening(&state));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

impl EventSource for ClientStream {
    fn next_bytes(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        self.next()
    }
}

/// Opens a client stream: authorizes, reads the context, checks secure mode, counts it.
async fn open_client_stream(
    delivery: &Arc<Delivery>,
    caller: Caller,
    env_id: Option<&str>,
    source: Option<ContextIn>,
    query: &ClientQuery,
    headers: &HeaderMap,
) -> Result<(Arc<EnvFeed>, ClientStream), Response> {
    let authorized = authorize(delivery, caller, env_id, headers).await?;
    let mode = match source {
        None => Mode::Ping,
        Some(source) => {
            let context = read_context(source, headers).await?;
            check_secure_mode(&authorized, caller, &context, query.h.as_deref())?;
            Mode::Push {
                context: Box::new(context),
                audience: caller.audience(),
                with_reasons: query.with_reasons(),
            }
        }
    };
    let open = delivery.admit(authorized, caller.kind(), true)?;
    let feed = Arc::clone(&open.feed);
    // Subscribe first, then read the state: every later change is in the broadcast.
    let changes = feed.subscribe();
    let state = feed.current();
    let mut stream = ClientStream {
        open,
        changes,
        seen: state.seq,
        mode,
        first: None,
    };
    stream.first = Some(stream.opening(&state));
    Ok((feed, stream))
}

/// A client stream as an SSE response.
async fn open_stream(
    delivery: &Arc<Delivery>,
    caller: Caller,
    env_id: Option<&str>,
    source: Option<ContextIn>,
    query: &ClientQuery,
    headers: &HeaderMap,
) -> Response {
    match open_client_stream(delivery, caller, env_id, source, query, headers).await {
        Ok((feed, stream)) => sse_response(&feed, stream),
        Err(refusal) => refusal,
    }
}

/// Browser streams without sockets, for the fan-out benchmark (`benches/client_fanout.rs`):
/// the same admission, re-evaluation and serialization as `/eval/{id}/{context}`.
#[doc(hidden)]
pub mod simulation {
    use super::*;

    /// One simulated browser stream.
    pub struct SimulatedStream(ClientStream);

    impl std::fmt::Debug for SimulatedStream {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("SimulatedStream")
        }
    }

    impl SimulatedStream {
        /// The next bytes the stream would write (the first is the `put`).
        pub async fn next(&mut self) -> Option<Bytes> {
            self.0.next().await
        }
    }

    /// Opens a browser stream for `context` with `client_side_id`.
    pub async fn open(
        delivery: &Arc<Delivery>,
        client_side_id: &str,
        context: &serde_json::Value,
    ) -> Result<SimulatedStream, StatusCode> {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(context.to_string());
        open_client_stream(
            delivery,
            Caller::Browser,
            Some(client_side_id),
            Some(ContextIn::Path(encoded)),
            &ClientQuery::default(),
            &HeaderMap::new(),
        )
        .await
        .map(|(_, stream)| SimulatedStream(stream))
        .map_err(|refusal| refusal.status())
    }
}

/// `GET /eval/{clientSideId}/{ctx}`.
pub(crate) async fn browser_stream(
    State(d): State<Arc<Delivery>>,
    Path((env_id, context)): Path<(String, String)>,
    Query(query): Query<ClientQuery>,
    headers: HeaderMap,
) -> Response {
    let source = Some(ContextIn::Path(context));
    open_stream(&d, Caller::Browser, Some(&env_id), source, &query, &headers).await
}

/// `REPORT /eval/{clientSideId}`.
pub(crate) async fn browser_stream_report(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_report(&method) {
        return refusal;
    }
    let source = Some(ContextIn::Body(body));
    open_stream(&d, Caller::Browser, Some(&env_id), source, &query, &headers).await
}

/// `GET /ping/{clientSideId}`.
pub(crate) async fn browser_ping(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let query = ClientQuery::default();
    open_stream(&d, Caller::Browser, Some(&env_id), None, &query, &headers).await
}

/// `GET /meval/{ctx}`.
pub(crate) async fn mobile_stream(
    State(d): State<Arc<Delivery>>,
    Path(context): Path<String>,
    Query(query): Query<ClientQuery>,
    headers: HeaderMap,
) -> Response {
    let source = Some(ContextIn::Path(context));
    open_stream(&d, Caller::Mobile, None, source, &query, &headers).await
}

/// `REPORT /meval`.
pub(crate) async fn mobile_stream_report(
    State(d): State<Arc<Delivery>>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_report(&method) {
        return refusal;
    }
    let source = Some(ContextIn::Body(body));
    open_stream(&d, Caller::Mobile, None, source, &query, &headers).await
}

/// `GET /mping`.
pub(crate) async fn mobile_ping(State(d): State<Arc<Delivery>>, headers: HeaderMap) -> Response {
    let query = ClientQuery::default();
    open_stream(&d, Caller::Mobile, None, None, &query, &headers).await
}

// ----- goals and events --------------------------------------------------------------------------

/// `GET /sdk/goals/{clientSideId}`: Flagstaff has no click or page-view goals yet, and `[]` is
/// what browser SDKs expect then (§5.9).
pub(crate) async fn goals(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match authorize(&d, Caller::Browser, Some(&env_id), &headers).await {
        Ok(authorized) => with_env_id(
            axum::Json(serde_json::json!([])).into_response(),
            &authorized.feed,
        ),
        Err(refusal) => refusal,
    }
}

/// `POST /events/bulk/{clientSideId}` and `/events/diagnostic/{clientSideId}`.
async fn browser_events(
    d: &Delivery,
    env_id: &str,
    headers: &HeaderMap,
    body: Body,
    diagnostic: bool,
) -> Response {
    match authorize(d, Caller::Browser, Some(env_id), headers).await {
        Ok(authorized) => events::accept(d, &authorized.grant, headers, body, diagnostic).await,
        Err(refusal) => refusal,
    }
}

pub(crate) async fn browser_bulk(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    browser_events(&d, &env_id, &headers, body, false).await
}

pub(crate) async fn browser_diagnostic(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    browser_events(&d, &env_id, &headers, body, true).await
}

/// A transparent 1×1 GIF, the answer to the image-beacon event endpoint.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[derive(Debug, serde::Deserialize)]
pub(crate) struct BeaconQuery {
    d: Option<String>,
}

/// `GET /a/{clientSideId}.gif?d=<base64 events>`: the legacy image-beacon events (§5.1). It
/// answers with the image whatever happens, since an image tag cannot report errors anyway;
/// what was accepted is counted.
pub(crate) async fn beacon(
    State(d): State<Arc<Delivery>>,
    Path(file): Path<String>,
    Query(query): Query<BeaconQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(env_id) = file.strip_suffix(".gif") else {
        return unknown_environment();
    };
    let authorized = match authorize(&d, Caller::Browser, Some(env_id), &headers).await {
        Ok(authorized) => authorized,
        Err(refusal) => return refusal,
    };
    if let Some(decoded) = query.d.as_deref().and_then(|data| {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data))
            .ok()
    }) {
        let _ = events::ingest(&d, &authorized.grant, &headers, &decoded, false);
    }
    let mut response = Response::new(Body::from(Bytes::from_static(PIXEL)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /mobile`, `/mobile/events`, `/mobile/events/bulk` (mobile key).
pub(crate) async fn mobile_bulk(
    State(d): State<Arc<Delivery>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match d.authorize(&headers, CredentialKind::Mobile).await {
        Ok(authorized) => events::accept(&d, &authorized.grant, &headers, body, false).await,
        Err(refusal) => refusal,
    }
}

/// `POST /mobile/events/diagnostic` (mobile key).
pub(crate) async fn mobile_diagnostic(
    State(d): State<Arc<Delivery>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match d.authorize(&headers, CredentialKind::Mobile).await {
        Ok(authorized) => events::accept(&d, &authorized.grant, &headers, body, true).await,
        Err(refusal) => refusal,
    }
}

// ----- CORS ------------------------------------------------------------------------------------

/// Request headers browser SDKs send (§5.8).
const ALLOWED_HEADERS: &str = "Cache-Control, Content-Type, Content-Length, Accept-Encoding, \
     If-None-Match, X-LaunchDarkly-User-Agent, X-LaunchDarkly-Payload-ID, X-LaunchDarkly-Wrapper, \
     X-LaunchDarkly-Event-Schema, X-LaunchDarkly-Tags";

/// What OFREP's web provider sends.
const OFREP_ALLOWED_HEADERS: &str =
    "Authorization, X-API-Key, Content-Type, If-None-Match, Cache-Control";

/// CORS for the browser routes (§5.8), on every response including errors, and preflights
/// answered here without authentication (a preflight carries no credential).
pub(crate) async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let path = request.uri().path();
    let (methods, allowed_headers) = if path.starts_with("/ofrep/") {
        // OpenFeature's web provider sends the credential in a header.
        ("GET, POST, OPTIONS", OFREP_ALLOWED_HEADERS)
    } else if path.starts_with("/events/") {
        ("POST, OPTIONS", ALLOWED_HEADERS)
    } else {
        ("GET, REPORT, OPTIONS", ALLOWED_HEADERS)
    };
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    let allow_origin = origin.unwrap_or(HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(allowed_headers),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("false"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("300"),
    );
    // Browser SDKs read `Date` from event responses to bound debug events (§5.8, §6.6).
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Date, ETag"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}
