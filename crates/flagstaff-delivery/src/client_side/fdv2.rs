//! Client-side FDv2 (`ld-protocol.md` §10): browser and mobile SDKs whose `dataSystem` speaks
//! LaunchDarkly's second delivery protocol.
//!
//! - `GET /sdk/poll/eval/{ctx}` and `POST`/`REPORT /sdk/poll/eval` (`{"events": [...]}`);
//! - `GET /sdk/stream/eval/{ctx}` and `POST`/`REPORT /sdk/stream/eval` (Server-Sent Events).
//!
//! One set of paths serves browsers and phones alike, so the credential says who is asking:
//! browsers send their client-side ID as `?auth=` (an `EventSource` cannot set headers), mobile
//! SDKs their mobile key in `Authorization`. Each sees what it sees over FDv1 (§5.4): only the
//! flags made available to it, evaluated for its context, as `flag-eval` objects (the §5.3
//! evaluated-flag object without `version`, which the `put-object` carries). Secure mode
//! (`?h=`) and `withReasons` work as on `/sdk/evalx`.
//!
//! # Selectors
//!
//! A client's selector is the environment's (`fdv2.rs`) with a digest of the context, the
//! credential kind and `withReasons` before the position: `fs1.<lineage>.<environment
//! tag>.<context digest>.<position>`. A basis is only ever caught up for the context it was
//! made for; another context (or a server SDK's selector) gets a full transfer.
//!
//! # Catching up
//!
//! From a basis at position `P`, a client gets the flags whose result may have changed since:
//! the flags and segments changed after `P` (the same stamps and change-log reads as server-side
//! catch-ups), the flags that use them through segments and prerequisites, and the flags whose
//! result can change with no change at all (date clauses, big segments;
//! `Published::volatile_flags`), each evaluated for the context now. A flag the client no longer
//! sees is deleted only if it stopped seeing it after `P` (`Stamp::hidden_at`): a flag it never
//! saw is never named to it. When that cannot be told (a basis from before this process loaded
//! the environment, and a flag the client does not see now), the client gets a full transfer.
//!
//! Streams then get, for every change, the flags whose result changed *for this context* (each
//! stream re-evaluates the change's affected flags before and after, as FDv1 push streams do)
//! and a `payload-transferred` with the new selector, so that a reconnect catches up from the
//! latest position.
//!
//! # Fallback
//!
//! With the environment's FDv1 fallback on, a poll is `503` with `X-LD-FD-Fallback: true` (the
//! browser routes expose the header to scripts), and a stream is a `goodbye` carrying
//! `protocolFallbackTTL`, which browser SDKs read in-band because `EventSource` shows them no
//! headers. Open streams get the same `goodbye` when the fallback is turned on.

use std::collections::BTreeSet;

use axum::extract::RawQuery;
use flagstaff_protocol::Reason as EvalReason;
use sha2::{Digest, Sha256};

use super::*;
use crate::fdv2::{
    FALLBACK_TTL_SECONDS, JsonEvents, Keys, Kind, Plan, Reason, Selector, Sink, changed_since,
    delete_object, payload_transferred, put_object, server_intent,
};
use crate::feed::{ClientChange, HEARTBEAT, to_json};
use crate::published::Stamp;
use crate::stream::Format;

/// The query of the client-side FDv2 endpoints.
#[derive(Debug, Default, serde::Deserialize)]
struct EvalQuery {
    /// The credential, as browser SDKs send it: read before the rest (see [`check`]), and
    /// named here so that a second `auth` is refused like any repeated parameter.
    #[allow(dead_code)]
    auth: Option<String>,
    /// The secure-mode hash (§5.7).
    h: Option<String>,
    #[serde(rename = "withReasons")]
    with_reasons: Option<String>,
    /// The SDK's selector state.
    basis: Option<String>,
    /// A payload filter: Flagstaff has none (see `fdv2.rs`).
    #[allow(dead_code)]
    filter: Option<String>,
}

impl EvalQuery {
    fn with_reasons(&self) -> bool {
        self.with_reasons
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// What kind of credential a presented secret is, from the prefix Flagstaff gives its keys.
fn kind_of(secret: &str) -> CredentialKind {
    if secret.starts_with("mob-") {
        CredentialKind::Mobile
    } else if secret.starts_with("sdk-") {
        CredentialKind::Sdk
    } else {
        CredentialKind::ClientSide
    }
}

fn unauthorized(message: &str) -> Response {
    error(ErrorCode::Unauthorized, message)
}

/// The credential of a request: the `Authorization` header, else `?auth=`. Only the public
/// client-side ID is taken from a URL: a secret key there ends up in logs and histories, so it is
/// refused (and should be rotated).
fn credential<'a>(
    headers: &'a HeaderMap,
    auth: Option<&'a str>,
) -> Result<(CredentialKind, &'a str), Response> {
    if let Some(secret) = crate::credentials::presented_key(headers) {
        return Ok((kind_of(secret), secret));
    }
    match auth.filter(|a| !a.is_empty()) {
        Some(secret) if kind_of(secret) != CredentialKind::ClientSide => Err(unauthorized(
            "send a mobile or SDK key in the Authorization header, never in a URL",
        )),
        Some(id) => Ok((CredentialKind::ClientSide, id)),
        None => Err(unauthorized(
            "send the client-side ID as ?auth= or the mobile key in the Authorization header",
        )),
    }
}

/// Who a transfer is for: one context, seen through one credential.
struct Audience {
    context: Box<Context>,
    credential: CredentialKind,
    with_reasons: bool,
    big_segments: Option<Box<BigSegmentMembership>>,
    /// How this audience's selectors start: the environment's prefix and the context digest.
    prefix: String,
}

/// The `flag-eval` object: the evaluated flag of §5.3 without `version`, which the `put-object`
/// around it carries.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct FlagEval<'a> {
    value: Option<&'a serde_json::Value>,
    variation: Option<usize>,
    flag_version: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    track_events: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    track_reason: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a EvalReason<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    debug_events_until_date: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    prerequisites: &'a [&'a str],
}

/// Counts a client-side transfer sent, by intent, and the objects it carried (`/metrics`).
fn record(intent: &'static str, objects: usize) {
    metrics::counter!("flagstaff_fdv2_eval_transfers_total", "intent" => intent).increment(1);
    metrics::counter!("flagstaff_fdv2_eval_transfer_objects_total", "intent" => intent)
        .increment(objects as u64);
}

/// An item of a catch-up.
enum Item<'s> {
    Put(&'s str, ClientResult<'s>),
    Delete(&'s str),
}

impl Audience {
    fn selector(&self, state: &Published) -> Selector {
        Selector {
            state: format!("{}{}", self.prefix, state.data_version),
            version: state.data_version,
        }
    }

    fn put(&self, out: &mut impl Sink, version: u64, key: &str, result: &ClientResult<'_>) {
        let payload = result.payload(version, self.with_reasons);
        let object = FlagEval {
            value: payload.value,
            variation: payload.variation,
            flag_version: payload.flag_version,
            track_events: payload.track_events,
            track_reason: payload.track_reason,
            reason: payload.reason,
            debug_events_until_date: payload.debug_events_until_date,
            prerequisites: payload.prerequisites,
        };
        put_object(out, Kind::FlagEval, key, version, &to_json(&object));
    }

    /// Every flag the credential sees, evaluated for the context.
    fn full(&self, out: &mut impl Sink, state: &Published, reason: Reason) {
        let results = state.snapshot().evaluate_all_for_client_with(
            self.credential,
            &self.context,
            self.big_segments.as_deref(),
        );
        record("xfer-full", results.len());
        server_intent(out, "xfer-full", state.data_version, reason);
        for (key, result) in &results {
            self.put(out, state.data_version, key, result);
        }
        payload_transferred(out, &self.selector(state));
    }

    /// What takes the client from position `from` to `state` (see the module's comment), or
    /// `false` with nothing written when only a full transfer can.
    fn catch_up(
        &self,
        out: &mut impl Sink,
        state: &Published,
        from: u64,
        earlier: Option<&Keys>,
    ) -> bool {
        let Keys { flags, segments } = changed_since(state, from, earlier);
        let mut keys: BTreeSet<String> = state
            .affected_flags(&flags, &segments)
            .into_iter()
            .collect();
        keys.extend(state.volatile_flags().iter().cloned());
        let snapshot = state.snapshot();
        let audience = Stamp::audience(self.credential);
        let mut items = Vec::new();
        for key in &keys {
            let visible = snapshot
                .flag_id(key)
                .filter(|id| self.credential.sees(snapshot.flag(*id).source()));
            match visible {
                Some(id) => items.push(Item::Put(
                    key,
                    snapshot.evaluate_for_client_with(
                        id,
                        &self.context,
                        self.big_segments.as_deref(),
                    ),
                )),
                // What the client saw before this process loaded the environment is unknown.
                None if earlier.is_some() => return false,
                None => {
                    let hidden_since_basis = state
                        .flag_stamps
                        .get(key)
                        .is_some_and(|stamp| stamp.hidden_at[audience] > from);
                    if hidden_since_basis {
                        items.push(Item::Delete(key));
                    }
                }
            }
        }
        let version = state.data_version;
        if items.is_empty() {
            record("none", 0);
            server_intent(out, "none", version, Reason::UpToDate);
            payload_transferred(out, &self.selector(state));
            return true;
        }
        record("xfer-changes", items.len());
        server_intent(out, "xfer-changes", version, Reason::Stale);
        for item in &items {
            match item {
                Item::Put(key, result) => self.put(out, version, key, result),
                Item::Delete(key) => delete_object(out, Kind::FlagEval, key, version),
            }
        }
        payload_transferred(out, &self.selector(state));
        true
    }

    /// The transfer a connecting client is sent first.
    fn opening(&self, out: &mut impl Sink, state: &Published, plan: &Plan) {
        match plan {
            Plan::Full(reason) => self.full(out, state, *reason),
            Plan::Changes { from, earlier } => {
                if !self.catch_up(out, state, *from, earlier.as_deref()) {
                    self.full(out, state, Reason::CantCatchup);
                }
            }
        }
    }

    /// A change as this client sees it: the flags whose result changed for its context, and
    /// the new selector (sent even when nothing changed for it, so that it reconnects from the
    /// newest position).
    fn changed(&self, out: &mut Vec<u8>, change: &ClientChange) {
        let (before, after) = (change.before.snapshot(), change.after.snapshot());
        let version = change.after.data_version;
        let big_segments = self.big_segments.as_deref();
        for key in &change.flags {
            let old = before
                .flag_id(key)
                .filter(|id| self.credential.sees(before.flag(*id).source()))
                .map(|id| before.evaluate_for_client_with(id, &self.context, big_segments));
            let new = after
                .flag_id(key)
                .filter(|id| self.credential.sees(after.flag(*id).source()))
                .map(|id| after.evaluate_for_client_with(id, &self.context, big_segments));
            match (old, new) {
                (Some(old), Some(new)) if old.same_result(&new, self.with_reasons) => {}
                (_, Some(new)) => self.put(out, version, key, &new),
                (Some(_), None) => delete_object(out, Kind::FlagEval, key, version),
                (None, None) => {}
            }
        }
        payload_transferred(out, &self.selector(&change.after));
    }
}

/// `goodbye` telling an SDK to use FDv1 (`protocolFallbackTTL`, seconds): what browser SDKs read
/// instead of the `X-LD-FD-Fallback` header, which an `EventSource` does not show them.
fn goodbye_fallback() -> Bytes {
    let mut out = Vec::new();
    let data = to_json(&serde_json::json!({
        "reason": "fdv1-fallback",
        "protocolFallbackTTL": FALLBACK_TTL_SECONDS,
    }));
    sse_event(&mut out, "goodbye", &data);
    Bytes::from(out)
}

/// A request that passed every check: authorized, its query and context read.
struct Checked {
    authorized: Authorized,
    query: EvalQuery,
    audience: Audience,
}

/// Authorizes the request, then reads its query and context and checks secure mode. Nothing is
/// read or looked up for a caller without a valid credential.
async fn check(
    delivery: &Delivery,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    source: ContextIn,
) -> Result<Checked, Response> {
    let raw_query = raw_query.unwrap_or_default();
    // Read leniently first, for the credential alone; the query is checked once it is known.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw_query).unwrap_or_default();
    let auth = pairs
        .iter()
        .find(|(name, _)| name == "auth")
        .map(|(_, value)| value.as_str());
    let (kind, secret) = credential(headers, auth)?;
    let authorized = delivery
        .authorize_secret(secret, kind)
        .await?
        .ok_or_else(|| unauthorized("unknown or revoked client-side ID, mobile key or SDK key"))?;
    let query: EvalQuery = serde_urlencoded::from_str(raw_query).map_err(|e| {
        error(
            ErrorCode::InvalidQuery,
            &format!("cannot read the query (auth, h, withReasons, basis): {e}"),
        )
    })?;
    let (context, json) = read_context_json(source, headers).await?;
    check_secure_mode(delivery, &authorized, kind, &context, query.h.as_deref())?;
    let with_reasons = query.with_reasons();
    // Maps in `serde_json::Value` are sorted, so the same context always gives the same digest.
    let mut digest = Sha256::new();
    digest.update([Stamp::audience(kind) as u8, u8::from(with_reasons)]);
    digest.update(to_json(&json));
    let prefix = format!(
        "{}{}.",
        authorized.feed.current().selector_prefix,
        hex::encode(&digest.finalize()[..6])
    );
    Ok(Checked {
        authorized,
        query,
        audience: Audience {
            context: Box::new(context),
            credential: kind,
            with_reasons,
            big_segments: None,
            prefix,
        },
    })
}

/// `POST` and `REPORT` carry the context in the body; anything else is refused.
fn require_body_method(method: &Method) -> Result<(), Response> {
    if method == Method::POST || method.as_str() == "REPORT" {
        Ok(())
    } else {
        Err(error(
            ErrorCode::MethodNotAllowed,
            "this endpoint takes POST or REPORT with the context as a JSON body",
        ))
    }
}

/// A poll: the transfer, as one JSON document.
async fn poll(
    delivery: &Delivery,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    source: ContextIn,
) -> Response {
    let Checked {
        authorized,
        query,
        mut audience,
    } = match check(delivery, raw_query, headers, source).await {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    let feed = authorized.feed;
    if feed.fdv1_fallback() {
        return crate::fdv2::fall_back_with(
            &feed,
            "this environment serves SDKs over FDv1: use /sdk/evalx and /eval",
        );
    }
    let plan = delivery
        .plan_fdv2_from(&feed, &audience.prefix, query.basis.as_deref())
        .await;
    let state = feed.current();
    audience.big_segments =
        match big_segment_membership(delivery, &feed, &state, &audience.context).await {
            Ok(membership) => membership.map(Box::new),
            Err(refusal) => return refusal,
        };
    let mut out = JsonEvents::new();
    audience.opening(&mut out, &state, &plan);
    let response = document(headers, &Payload::new(out.finish()));
    with_env_id(response, &feed)
}

/// A client-side FDv2 stream's position in its environment's broadcast.
pub(crate) struct EvalStream {
    open: crate::stream::OpenStream,
    changes: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    /// The sequence number of the state this stream reflects.
    seen: u64,
    audience: Audience,
    first: Option<Bytes>,
    /// The `goodbye` was sent: the stream ends.
    ended: bool,
}

impl EvalStream {
    /// Everything again, from the state now published.
    fn full(&mut self) -> Bytes {
        let state = self.open.feed.current();
        self.seen = state.seq;
        let mut out = Vec::new();
        self.audience.full(&mut out, &state, Reason::CantCatchup);
        Bytes::from(out)
    }

    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.ended {
            return None;
        }
        loop {
            match self.changes.recv().await {
                Ok(frame) => match frame.as_ref() {
                    Frame::Changes { seq, client, .. } => {
                        if *seq <= self.seen {
                            continue;
                        }
                        self.seen = *seq;
                        let Some(change) = client else {
                            // Prepared before any client stream was open: send everything.
                            return Some(self.full());
                        };
                        let mut out = Vec::new();
                        self.audience.changed(&mut out, change);
                        return Some(Bytes::from(out));
                    }
                    Frame::Heartbeat => return Some(Bytes::from_static(HEARTBEAT)),
                    Frame::Close { only, .. } => {
                        if self.open.is_closed_by(&frame, Some(Format::Fdv2)) {
                            if only.is_some() {
                                // The environment's FDv1 fallback was turned on.
                                self.ended = true;
                                return Some(goodbye_fallback());
                            }
                            return None;
                        }
                    }
                },
                Err(RecvError::Lagged(_)) => return Some(self.full()),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

impl EventSource for EvalStream {
    fn next_bytes(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        self.next()
    }
}

/// Opens a stream: the checks, then the opening transfer. `Err` is the response to send
/// instead: a refusal, or for an environment whose FDv1 fallback is on, the `goodbye` that tells
/// the SDK so.
pub(crate) async fn open_eval_stream(
    delivery: &Arc<Delivery>,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    source: ContextIn,
) -> Result<(Arc<EnvFeed>, EvalStream), Response> {
    let Checked {
        authorized,
        query,
        mut audience,
    } = check(delivery, raw_query, headers, source).await?;
    let feed = Arc::clone(&authorized.feed);
    if feed.fdv1_fallback() {
        let mut response = Response::new(Body::from(goodbye_fallback()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert("x-ld-fd-fallback", HeaderValue::from_static("true"));
        headers.insert(
            "x-ld-fd-fallback-ttl",
            HeaderValue::from(FALLBACK_TTL_SECONDS),
        );
        return Err(with_env_id(response, &feed));
    }
    let plan = delivery
        .plan_fdv2_from(&feed, &audience.prefix, query.basis.as_deref())
        .await;
    audience.big_segments =
        big_segment_membership(delivery, &feed, &feed.current(), &audience.context)
            .await?
            .map(Box::new);
    let credential = audience.credential;
    let open = delivery.admit(
        authorized,
        crate::feed::StreamCredential::Key(credential),
        true,
    )?;
    // Subscribe first, then read the state: every later change is in the broadcast.
    let changes = feed.subscribe();
    let state = feed.current();
    let mut first = Vec::new();
    audience.opening(&mut first, &state, &plan);
    let stream = EvalStream {
        open,
        changes,
        seen: state.seq,
        audience,
        first: Some(Bytes::from(first)),
        ended: false,
    };
    Ok((feed, stream))
}

/// A stream through the router (the lean path, `raw.rs`, serves most).
async fn stream(
    delivery: &Arc<Delivery>,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    source: ContextIn,
) -> Response {
    match open_eval_stream(delivery, raw_query, headers, source).await {
        Ok((feed, stream)) => sse_response(&feed, stream),
        Err(response) => response,
    }
}

/// `GET /sdk/poll/eval/{ctx}`.
pub(crate) async fn poll_eval(
    State(d): State<Arc<Delivery>>,
    Path(context): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    poll(&d, query.as_deref(), &headers, ContextIn::Path(context)).await
}

/// `POST` or `REPORT /sdk/poll/eval`.
pub(crate) async fn poll_eval_body(
    State(d): State<Arc<Delivery>>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_body_method(&method) {
        return refusal;
    }
    poll(&d, query.as_deref(), &headers, ContextIn::Body(body)).await
}

/// `GET /sdk/stream/eval/{ctx}`.
pub(crate) async fn stream_eval(
    State(d): State<Arc<Delivery>>,
    Path(context): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    stream(&d, query.as_deref(), &headers, ContextIn::Path(context)).await
}

/// `POST` or `REPORT /sdk/stream/eval`.
pub(crate) async fn stream_eval_body(
    State(d): State<Arc<Delivery>>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_body_method(&method) {
        return refusal;
    }
    stream(&d, query.as_deref(), &headers, ContextIn::Body(body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn the_credential_kind_follows_the_key_and_where_it_was_sent() {
        let none = HeaderMap::new();
        let id = "0123456789abcdef01234567";
        assert_eq!(
            credential(&none, Some(id)).ok(),
            Some((CredentialKind::ClientSide, id))
        );
        let mobile = with_authorization("api_key mob-1");
        assert_eq!(
            credential(&mobile, None).ok(),
            Some((CredentialKind::Mobile, "mob-1"))
        );
        // The header wins over the query.
        assert_eq!(
            credential(&mobile, Some(id)).ok(),
            Some((CredentialKind::Mobile, "mob-1"))
        );
        let sdk = with_authorization("sdk-1");
        assert_eq!(
            credential(&sdk, None).ok(),
            Some((CredentialKind::Sdk, "sdk-1"))
        );
    }

    #[test]
    fn secrets_in_the_url_and_missing_credentials_are_refused() {
        let none = HeaderMap::new();
        for auth in [Some("mob-1"), Some("sdk-1"), Some(""), None] {
            let refusal = credential(&none, auth).expect_err("refused");
            assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        }
    }
}
