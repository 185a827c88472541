//! FDv2, LaunchDarkly's second flag delivery protocol (`ld-protocol.md` §10), for server-side
//! SDKs: `GET /sdk/stream` (Server-Sent Events) and `GET /sdk/poll` (`{"events": [...]}`).
//!
//! A transfer is a `server-intent` (`xfer-full`, `xfer-changes` or `none`), then `put-object`
//! and `delete-object` events, then a `payload-transferred` that commits them and names the
//! state the SDK now holds: its *selector*. The SDK sends the selector's `state` back as
//! `?basis=` when it reconnects or polls again.
//!
//! # Selectors
//!
//! A selector's `state` is `fs1.<lineage>.<environment tag>.<position>`: the change-feed
//! position (the store's audit sequence) whose changes the state holds, the environment it
//! belongs to, and what the positions count (`db` for the server's database, shared by every
//! node on it; a random tag for a relay's replica, whose positions start again with every
//! relay process). Its `version` is the position too. Two nodes on one database therefore
//! write the same selector for the same position, and read each other's.
//!
//! # Catching up from a basis
//!
//! LaunchDarkly's own Relay Proxy can only answer "nothing changed" or "here is everything".
//! Flagstaff has an ordered change log, so a basis at position `P` gets exactly the flags and
//! segments that changed after `P` (`xfer-changes`), or `none` when nothing did:
//! - changes this process published after it loaded the environment carry a [`Stamp`]: the
//!   position of the state that published them;
//! - changes before that (a basis from before a restart, or from another node) are read from
//!   the change log, from `P` up to the position read right after the environment was loaded
//!   ([`EnvFeed::settled_at`]), once per `P`, and shared by every SDK reconnecting from it.
//!
//! A full transfer is sent when the basis is missing, is not one of ours, or cannot be caught
//! up: another environment, another lineage, a position the database never reached, more than
//! [`MAX_CATCHUP_RECORDS`] change-log entries ago, an import (which may change anything), or
//! a removal whose tombstone version this process never saw.
//!
//! The fan-out serializes each change once for every FDv2 stream (`Frame::Changes::fdv2` in
//! `feed.rs`): the `put-object`/`delete-object` events and a `payload-transferred` with the new
//! state's selector; without a new `server-intent`, which SDKs read as more changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flagstaff_app::{CredentialKind, ErrorCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Delivery;
use crate::feed::{EnvFeed, EnvironmentId, Framed, Payload, Published, sse_event, to_json};
use crate::http::error;
use crate::stream::{Format, Opening, Subscription, sse_response};

/// The most change-log entries read to catch an SDK up; older bases get a full transfer,
/// which is then smaller than the changes anyway.
pub(crate) const MAX_CATCHUP_RECORDS: usize = 10_000;
/// Change-log entries read per query.
const CATCHUP_BATCH: u32 = 500;
/// Positions kept per environment in [`Catchups`]; more empties it.
const MAX_CACHED_CATCHUPS: usize = 256;

/// What an FDv2 object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Flag,
    Segment,
    /// A flag evaluated for one context, for client-side SDKs (`client_side/fdv2.rs`).
    FlagEval,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Flag => "flag",
            Kind::Segment => "segment",
            Kind::FlagEval => "flag-eval",
        }
    }
}

/// The state an SDK holds after a transfer (`payload-transferred`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Selector {
    pub state: String,
    pub version: u64,
}

/// The start of an environment's selectors: `fs1.<lineage>.<environment tag>.`. The tag is a
/// digest of the project and environment keys, so that a basis sent with another
/// environment's SDK key is recognised as foreign without naming either.
pub(crate) fn selector_prefix(lineage: &str, id: &EnvironmentId) -> String {
    let digest = Sha256::digest(format!("{}/{}", id.project, id.environment).as_bytes());
    format!("fs1.{lineage}.{}.", hex::encode(&digest[..6]))
}

/// The position a basis names, if it is a selector of this environment and lineage.
fn basis_position(prefix: &str, basis: &str) -> Option<u64> {
    let digits = basis.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where events are written: an SSE body, or the JSON array of a polling response.
pub(crate) trait Sink {
    fn event(&mut self, name: &str, data: &[u8]);
}

impl Sink for Vec<u8> {
    fn event(&mut self, name: &str, data: &[u8]) {
        sse_event(self, name, data);
    }
}

/// `{"events":[{"event":"<name>","data":<data>}, ...]}`, written as events come.
pub(crate) struct JsonEvents {
    out: Vec<u8>,
    empty: bool,
}

impl JsonEvents {
    pub fn new() -> JsonEvents {
        JsonEvents {
            out: br#"{"events":["#.to_vec(),
            empty: true,
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"]}");
        self.out
    }
}

impl Sink for JsonEvents {
    fn event(&mut self, name: &str, data: &[u8]) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(br#"{"event":""#);
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(br#"","data":"#);
        self.out.extend_from_slice(data);
        self.out.push(b'}');
    }
}

/// `put-object`: `{"version":…,"kind":…,"key":…,"object":<object>}` around serialized JSON.
pub(crate) fn put_object(out: &mut impl Sink, kind: Kind, key: &str, version: u64, object: &[u8]) {
    let key = to_json(&key);
    let mut data = Vec::with_capacity(object.len() + key.len() + 64);
    data.extend_from_slice(br#"{"version":"#);
    data.extend_from_slice(version.to_string().as_bytes());
    data.extend_from_slice(br#","kind":""#);
    data.extend_from_slice(kind.as_str().as_bytes());
    data.extend_from_slice(br#"","key":"#);
    data.extend_from_slice(&key);
    data.extend_from_slice(br#","object":"#);
    data.extend_from_slice(object);
    data.push(b'}');
    out.event("put-object", &data);
}

/// `delete-object`: a tombstone at `version`.
pub(crate) fn delete_object(out: &mut impl Sink, kind: Kind, key: &str, version: u64) {
    let data = to_json(&serde_json::json!({"version": version, "kind": kind.as_str(), "key": key}));
    out.event("delete-object", &data);
}

/// `payload-transferred`: the commit point, naming the state the SDK now holds.
pub(crate) fn payload_transferred(out: &mut impl Sink, selector: &Selector) {
    out.event("payload-transferred", &to_json(selector));
}

/// Why a transfer is what it is (the intent's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No basis: the SDK has nothing yet.
    PayloadMissing,
    /// A basis that cannot be caught up with changes.
    CantCatchup,
    /// A basis behind the current state: the changes since follow.
    Stale,
    /// A basis as new as the current state.
    UpToDate,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::PayloadMissing => "payload-missing",
            Reason::CantCatchup => "cant-catchup",
            Reason::Stale => "stale",
            Reason::UpToDate => "up-to-date",
        }
    }
}

/// `server-intent` for one payload, the environment's.
pub(crate) fn server_intent(out: &mut impl Sink, code: &str, target: u64, reason: Reason) {
    let data = to_json(&serde_json::json!({"payloads": [{
        "id": "flagstaff",
        "target": target,
        "intentCode": code,
        "reason": reason.as_str(),
    }]}));
    out.event("server-intent", &data);
}

/// Counts a transfer sent, by intent, and the objects it carried (`/metrics`).
pub(crate) fn record(intent: &'static str, objects: usize) {
    metrics::counter!("flagstaff_fdv2_transfers_total", "intent" => intent).increment(1);
    metrics::counter!("flagstaff_fdv2_transfer_objects_total", "intent" => intent)
        .increment(objects as u64);
}

/// Every flag and segment of `state` as `put-object` events, and the closing selector.
fn full_transfer(out: &mut impl Sink, state: &Published, reason: Reason) {
    server_intent(out, "xfer-full", state.data_version, reason);
    for (key, flag) in &state.flags {
        put_object(out, Kind::Flag, key, flag.version, &to_json(flag.as_ref()));
    }
    for (key, segment) in &state.segments {
        put_object(
            out,
            Kind::Segment,
            key,
            segment.version,
            &to_json(segment.as_ref()),
        );
    }
    payload_transferred(out, &state.selector());
}

/// The full transfers of one published state, serialized on first use and shared.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    /// For streams without a basis.
    stream_missing: OnceLock<Framed>,
    /// For streams with an unusable basis, and streams too slow to keep up.
    stream_cant_catchup: OnceLock<Framed>,
    /// For polls without a basis, with its gzip form.
    poll_missing: OnceLock<Payload>,
}

impl Published {
    /// The full transfer of this state for a stream.
    pub fn fdv2_full(&self, reason: Reason) -> &Framed {
        let cell = if reason == Reason::PayloadMissing {
            &self.fdv2.stream_missing
        } else {
            &self.fdv2.stream_cant_catchup
        };
        cell.get_or_init(|| {
            let mut out = Vec::new();
            full_transfer(&mut out, self, reason);
            Framed::new(out)
        })
    }

    /// The full transfer of this state for a poll without a basis.
    fn fdv2_poll_full(&self) -> &Payload {
        self.fdv2.poll_missing.get_or_init(|| {
            let mut out = JsonEvents::new();
            full_transfer(&mut out, self, Reason::PayloadMissing);
            Payload::new(out.finish())
        })
    }
}

/// Flags and segments named by change-log entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Keys {
    pub flags: BTreeSet<String>,
    pub segments: BTreeSet<String>,
}

/// What a connecting SDK is sent first.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Everything.
    Full(Reason),
    /// What changed after position `from`: the stamped items, and `earlier` (read from the
    /// change log) when `from` is before the environment was loaded here.
    Changes {
        from: u64,
        earlier: Option<Arc<Keys>>,
    },
}

/// One catch-up read from the change log: `None` inside when it cannot be narrowed down.
type Catchup = Arc<tokio::sync::OnceCell<Option<Arc<Keys>>>>;

/// Catch-ups read from the change log, by basis position.
#[derive(Debug, Default)]
pub(crate) struct Catchups(Mutex<HashMap<u64, Catchup>>);

impl Catchups {
    fn cell(&self, from: u64) -> Catchup {
        let mut cells = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cells.len() >= MAX_CACHED_CATCHUPS && !cells.contains_key(&from) {
            cells.clear();
        }
        Arc::clone(cells.entry(from).or_default())
    }
}

/// The flags and segments changed after position `from`: those this process stamped since, and
/// `earlier` (read from the change log) when `from` is before the environment was loaded here.
/// What both server-side and client-side catch-ups start from.
pub(crate) fn changed_since(state: &Published, from: u64, earlier: Option<&Keys>) -> Keys {
    let after = |stamps: &std::collections::BTreeMap<String, crate::published::Stamp>| {
        stamps
            .iter()
            .filter(|(_, stamp)| stamp.at > from)
            .map(|(key, _)| key.clone())
            .collect::<BTreeSet<String>>()
    };
    let mut keys = Keys {
        flags: after(&state.flag_stamps),
        segments: after(&state.segment_stamps),
    };
    if let Some(earlier) = earlier {
        keys.flags.extend(earlier.flags.iter().cloned());
        keys.segments.extend(earlier.segments.iter().cloned());
    }
    keys
}

/// Writes the events that take an SDK from position `from` to `state`: `none` when nothing it
/// holds changed, else `xfer-changes` with exactly the changed items. Writes nothing and
/// returns `false` when only a full transfer can (a removal whose tombstone version is unknown
/// here).
fn catch_up(out: &mut impl Sink, state: &Published, from: u64, earlier: Option<&Keys>) -> bool {
    let Keys { flags, segments } = changed_since(state, from, earlier);
    // Every removal must have a known tombstone version before anything is written.
    let removals_known = flags.iter().all(|key| {
        state.flags.contains_key(key)
            || state
                .flag_stamps
                .get(key)
                .is_some_and(|s| s.deleted.is_some())
    }) && segments.iter().all(|key| {
        state.segments.contains_key(key)
            || state
                .segment_stamps
                .get(key)
                .is_some_and(|s| s.deleted.is_some())
    });
    if !removals_known {
        return false;
    }
    if flags.is_empty() && segments.is_empty() {
        record("none", 0);
        server_intent(out, "none", state.data_version, Reason::UpToDate);
        // The SDK's data is current; the new selector saves its next catch-up a longer read.
        payload_transferred(out, &state.selector());
        return true;
    }
    record("xfer-changes", flags.len() + segments.len());
    server_intent(out, "xfer-changes", state.data_version, Reason::Stale);
    for key in &flags {
        match state.flags.get(key) {
            Some(flag) => put_object(out, Kind::Flag, key, flag.version, &to_json(flag.as_ref())),
            None => {
                let version = state.flag_stamps.get(key).and_then(|s| s.deleted);
                delete_object(out, Kind::Flag, key, version.unwrap_or_default());
            }
        }
    }
    for key in &segments {
        match state.segments.get(key) {
            Some(segment) => {
                put_object(
                    out,
                    Kind::Segment,
                    key,
                    segment.version,
                    &to_json(segment.as_ref()),
                );
            }
            None => {
                let version = state.segment_stamps.get(key).and_then(|s| s.deleted);
                delete_object(out, Kind::Segment, key, version.unwrap_or_default());
            }
        }
    }
    payload_transferred(out, &state.selector());
    true
}

/// Counts a full transfer of `state` sent.
fn record_full(state: &Published) {
    record("xfer-full", state.flags.len() + state.segments.len());
}

/// The first bytes of an FDv2 stream that starts from `state`.
pub(crate) fn stream_opening(state: &Published, plan: &Plan) -> Framed {
    let reason = match plan {
        Plan::Full(reason) => *reason,
        Plan::Changes { from, earlier } => {
            let mut out = Vec::new();
            if catch_up(&mut out, state, *from, earlier.as_deref()) {
                return Framed::new(out);
            }
            Reason::CantCatchup
        }
    };
    record_full(state);
    state.fdv2_full(reason).clone()
}

impl Delivery {
    /// Decides how an SDK presenting `basis` is caught up. Reads the change log only for a
    /// basis older than what this process loaded, once per position.
    pub(crate) async fn plan_fdv2(&self, feed: &EnvFeed, basis: Option<&str>) -> Plan {
        let prefix = Arc::clone(&feed.current().selector_prefix);
        self.plan_fdv2_from(feed, &prefix, basis).await
    }

    /// [`Delivery::plan_fdv2`] for selectors that start with `prefix` (a client-side SDK's
    /// name its context too).
    pub(crate) async fn plan_fdv2_from(
        &self,
        feed: &EnvFeed,
        prefix: &str,
        basis: Option<&str>,
    ) -> Plan {
        let Some(basis) = basis.filter(|b| !b.is_empty()) else {
            return Plan::Full(Reason::PayloadMissing);
        };
        let Some(from) = basis_position(prefix, basis) else {
            return Plan::Full(Reason::CantCatchup);
        };
        if from > self.position() && !self.reaches(from).await {
            return Plan::Full(Reason::CantCatchup);
        }
        if from >= feed.settled_at {
            return Plan::Changes {
                from,
                earlier: None,
            };
        }
        let cell = feed.catchups.cell(from);
        let earlier = cell.get_or_try_init(|| self.read_catchup(feed, from)).await;
        match earlier {
            Ok(Some(keys)) => Plan::Changes {
                from,
                earlier: Some(Arc::clone(keys)),
            },
            Ok(None) => Plan::Full(Reason::CantCatchup),
            Err(e) => {
                tracing::warn!(environment = %feed.id, error = %e, "cannot read the change log for an FDv2 catch-up");
                Plan::Full(Reason::CantCatchup)
            }
        }
    }

    /// Waits for this node to publish position `position`, which another node (ahead of this
    /// one on the same database) gave an SDK. `false` if the database never reached it (a
    /// selector from another database) or this node does not get there soon.
    pub(crate) async fn reaches(&self, position: u64) -> bool {
        match self.source.head().await {
            Ok(head) if head >= position => {}
            _ => return false,
        }
        let deadline =
            Instant::now() + self.config.change_poll_interval * 2 + Duration::from_secs(1);
        while self.position() < position {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The flags and segments of `feed`'s environment named by the change log after `from`, up
    /// to what the loaded data holds; `None` when that cannot be narrowed down.
    async fn read_catchup(
        &self,
        feed: &EnvFeed,
        from: u64,
    ) -> Result<Option<Arc<Keys>>, flagstaff_app::AppError> {
        let mut keys = Keys::default();
        let mut after = from;
        let mut read = 0;
        while after < feed.settled_at {
            let records = self.source.changes_after(after, CATCHUP_BATCH).await?;
            let Some(last) = records.last() else {
                break;
            };
            after = last.seq;
            read += records.len();
            if read > MAX_CATCHUP_RECORDS {
                return Ok(None);
            }
            let records: Vec<_> = records
                .into_iter()
                .filter(|r| r.seq <= feed.settled_at)
                .collect();
            let Some(work) = crate::worker::work_for(&records, &feed.id) else {
                return Ok(None);
            };
            keys.flags.extend(work.flags);
            keys.segments.extend(work.segments);
        }
        Ok(Some(Arc::new(keys)))
    }
}

/// The query of `/sdk/stream` and `/sdk/poll`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    /// The SDK's selector state.
    basis: Option<String>,
    /// A payload filter (LaunchDarkly's filtered environments). Flagstaff has none, so it is
    /// ignored and the whole environment is served, as `/all?filter=` is.
    #[allow(dead_code)]
    filter: Option<String>,
}

/// The query's parameters, or the `400` that says what is wrong with it. Only read after the
/// credential is checked: nothing is done for a caller without one. (The refusal is returned
/// straight to axum; boxing it would only add an allocation.)
#[allow(clippy::result_large_err)]
fn params(query: Option<&str>) -> Result<Params, Response> {
    serde_urlencoded::from_str(query.unwrap_or_default()).map_err(|e| {
        error(
            ErrorCode::InvalidQuery,
            &format!("cannot read the query (basis, filter): {e}"),
        )
    })
}

impl Delivery {
    /// How an authorized FDv2 stream of `feed` starts, from its request's query; or the
    /// refusal to send instead (a malformed query, the environment's FDv1 fallback).
    #[allow(clippy::result_large_err)]
    pub(crate) async fn fdv2_opening(
        &self,
        feed: &EnvFeed,
        query: &str,
    ) -> Result<Opening, Response> {
        let params = params(Some(query))?;
        if feed.fdv1_fallback() {
            return Err(fall_back(feed));
        }
        Ok(Opening::Fdv2(
            self.plan_fdv2(feed, params.basis.as_deref()).await,
        ))
    }
}

/// `GET /sdk/stream` on a connection the lean path did not take (`raw.rs` serves most).
pub(crate) async fn stream(
    State(d): State<Arc<Delivery>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let open = match d.open_server_stream(&headers, CredentialKind::Sdk).await {
        Ok(open) => open,
        Err(refusal) => return refusal,
    };
    let feed = Arc::clone(&open.feed);
    match d
        .fdv2_opening(&feed, query.as_deref().unwrap_or_default())
        .await
    {
        Ok(opening) => sse_response(&feed, Subscription::open(open, Format::Fdv2, opening)),
        Err(refusal) => refusal,
    }
}

/// `GET /sdk/poll`: the same transfer as the stream's opening, as one JSON document. Its
/// `ETag` names the state it brings the SDK to, so an SDK holding it gets `304`.
pub(crate) async fn poll(
    State(d): State<Arc<Delivery>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let authorized = match d.authorize(&headers, CredentialKind::Sdk).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let params = match params(query.as_deref()) {
        Ok(params) => params,
        Err(refusal) => return refusal,
    };
    let feed = authorized.feed;
    if feed.fdv1_fallback() {
        return fall_back(&feed);
    }
    let plan = d.plan_fdv2(&feed, params.basis.as_deref()).await;
    let state = feed.current();
    let selector = state.selector();
    let etag = format!("\"{}\"", selector.state);
    let response = if crate::polling::not_modified(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match &plan {
            Plan::Full(Reason::PayloadMissing) => {
                record_full(&state);
                return with_poll_headers(
                    crate::polling::document(&headers, state.fdv2_poll_full()),
                    &etag,
                    &feed,
                );
            }
            Plan::Full(reason) => {
                record_full(&state);
                let mut out = JsonEvents::new();
                full_transfer(&mut out, &state, *reason);
                out.finish()
            }
            Plan::Changes { from, earlier } => {
                let mut out = JsonEvents::new();
                if !catch_up(&mut out, &state, *from, earlier.as_deref()) {
                    record_full(&state);
                    out = JsonEvents::new();
                    full_transfer(&mut out, &state, Reason::CantCatchup);
                }
                out.finish()
            }
        };
        let mut response = Response::new(Body::from(Bytes::from(body)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    with_poll_headers(response, &etag, &feed)
}

/// How long an SDK told to fall back keeps to FDv1 before it tries FDv2 again
/// (`X-LD-FD-Fallback-TTL`, seconds; SDKs that do not read it stay on FDv1 until restarted).
pub(crate) const FALLBACK_TTL_SECONDS: u32 = 3600;

/// The answer of an environment whose FDv1 fallback is on: `503` (an SDK that ignored the
/// header would retry rather than give up for good) with `X-LD-FD-Fallback: true`, which
/// FDv2 SDKs obey by switching to `/all` and `/sdk/latest-all` (§10).
fn fall_back(feed: &EnvFeed) -> Response {
    fall_back_with(
        feed,
        "this environment serves SDKs over FDv1: use /all and /sdk/latest-all",
    )
}

/// [`fall_back`] with the message for the SDK at hand.
pub(crate) fn fall_back_with(feed: &EnvFeed, message: &str) -> Response {
    let mut response = crate::http::fdv2_fallback_response(message);
    response.headers_mut().insert(
        "x-ld-fd-fallback-ttl",
        HeaderValue::from(FALLBACK_TTL_SECONDS),
    );
    crate::http::with_env_id(response, feed)
}

/// The headers of every `/sdk/poll` answer: the state's tag, no shared caching.
fn with_poll_headers(mut response: Response, etag: &str, feed: &EnvFeed) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Accept-Encoding"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    crate::http::with_env_id(response, feed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EnvironmentId {
        EnvironmentId {
            project: "p".into(),
            environment: "production".into(),
        }
    }

    #[test]
    fn a_basis_is_read_only_from_this_environments_selectors() {
        let prefix = selector_prefix("db", &id());
        assert_eq!(basis_position(&prefix, &format!("{prefix}42")), Some(42));
        let other = selector_prefix(
            "db",
            &EnvironmentId {
                project: "p".into(),
                environment: "staging".into(),
            },
        );
        assert_ne!(prefix, other);
        assert_eq!(basis_position(&prefix, &format!("{other}42")), None);
        let relay = selector_prefix("r1a2b3c4", &id());
        assert_eq!(basis_position(&prefix, &format!("{relay}42")), None);
        for junk in [
            "",
            "42",
            "(p:abc:42)",
            &prefix.clone(),
            &format!("{prefix}-1"),
            &format!("{prefix}4 2"),
            &format!("{prefix}99999999999999999999999"),
        ] {
            assert_eq!(basis_position(&prefix, junk), None, "{junk}");
        }
    }
}
