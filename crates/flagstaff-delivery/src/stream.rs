//! The server-side SDK streams (`ld-protocol.md` §4.2, §4.4): `GET /all` and the legacy
//! flags-only `GET /flags`.
//!
//! Most streams are a connection's first request and are served on the lean path, written by
//! the fan-out thread (`raw.rs`, `direct.rs`). The rest (a stream asked for on a reused
//! connection, over TLS, or a relay's) come through the router here. Such a stream is a
//! [`Subscription`] to its environment's broadcast of pre-serialized frames: the
//! per-connection state is a cursor into the broadcast, the credential's fingerprint and a
//! guard that counts it, so an idle stream costs little beyond its socket. The response has no
//! length, so HTTP/1.1 sends it with chunked transfer encoding, which the Python SDK needs
//! (`real-sdk-observations.md` trap 1); every event is written as soon as it is produced.

// Refusals are HTTP responses, built only on the refusal path and returned straight to axum;
// boxing them would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use flagstaff_app::CredentialKind;
use tokio::sync::broadcast::error::RecvError;

use crate::Delivery;
use crate::feed::{EnvFeed, Frame, HEARTBEAT, StreamCredential};
use crate::http::{Authorized, unavailable, with_env_id};

/// Which stream format a subscription speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `/all`: flags and segments under `/flags/` and `/segments/` paths.
    All,
    /// `/flags`: flags only, at `/<key>` paths (pre-segment SDKs).
    FlagsOnly,
    /// `/sdk/stream`: FDv2 (`fdv2.rs`).
    Fdv2,
    /// `/ofrep/v1/events/{id}`: OFREP change notifications, one per change (`ofrep.rs`).
    OfrepEvents,
}

impl Format {
    /// The whole state in this format: the opening `put`, and what a stream too slow to keep
    /// up with the changes is sent instead of them (an FDv2 full transfer).
    pub fn put(self, state: &crate::feed::Published) -> &crate::feed::Framed {
        match self {
            Format::All => state.put_all(),
            Format::FlagsOnly => state.put_flags(),
            Format::Fdv2 => state.fdv2_full(crate::fdv2::Reason::CantCatchup),
            // Nothing to catch up: a notification stream starts (and, when too slow, goes on)
            // with a comment, and the provider re-fetches when it (re)connects.
            Format::OfrepEvents => crate::ofrep::stream_opening(),
        }
    }

    /// Which of a change's framed events this format sends.
    pub fn changes(self, frame: &Frame) -> Option<&crate::feed::Framed> {
        let Frame::Changes {
            all,
            flags,
            fdv2,
            ofrep,
            ..
        } = frame
        else {
            return None;
        };
        Some(match self {
            Format::All => all,
            Format::FlagsOnly => flags,
            Format::Fdv2 => fdv2,
            Format::OfrepEvents => ofrep,
        })
    }
}

/// How a stream starts.
#[derive(Debug)]
pub(crate) enum Opening {
    /// With the whole state in its format.
    Put,
    /// With what an FDv2 SDK's basis asks for (`fdv2.rs`).
    Fdv2(crate::fdv2::Plan),
}

impl Opening {
    /// The first bytes of a stream in `format` that starts from `state`.
    pub fn framed(&self, format: Format, state: &crate::feed::Published) -> crate::feed::Framed {
        match self {
            Opening::Put => format.put(state).clone(),
            Opening::Fdv2(plan) => crate::fdv2::stream_opening(state, plan),
        }
    }
}

/// Counts an open stream and releases its place when dropped, however the stream ends.
pub(crate) struct OpenStream {
    pub delivery: Arc<Delivery>,
    pub feed: Arc<EnvFeed>,
    pub fingerprint: String,
    /// A client-side stream, counted in [`EnvFeed::client_streams`].
    pub client: bool,
}

impl OpenStream {
    /// Whether a `Close` frame ends this stream, which speaks `format` (`None`: a client-side
    /// stream): all streams, those of its credential, or those of its format.
    pub fn is_closed_by(&self, frame: &Frame, format: Option<Format>) -> bool {
        let Frame::Close { fingerprints, only } = frame else {
            return false;
        };
        if only.is_some() && *only != format {
            return false;
        }
        fingerprints
            .as_ref()
            .is_none_or(|closed| closed.contains(&self.fingerprint))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.client {
            self.feed.client_streams.fetch_sub(1, Ordering::Relaxed);
            self.delivery
                .open_client_streams
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.feed.grant_closed(&self.fingerprint);
        self.delivery.open_streams.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("flagstaff_sdk_streams").decrement(1.0);
    }
}

/// One stream's position in its environment's broadcast.
pub(crate) struct Subscription {
    open: OpenStream,
    changes: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    format: Format,
    /// The sequence number of the state this stream has been sent.
    seen: u64,
    /// The opening `put`, until it is sent.
    first: Option<Bytes>,
}

impl Subscription {
    fn put(feed: &EnvFeed, format: Format, opening: &Opening) -> (u64, Bytes) {
        let state = feed.current();
        (state.seq, opening.framed(format, &state).plain)
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
                            continue; // Already in the `put` this stream started with.
                        }
                        self.seen = *seq;
                        if let Some(framed) = self.format.changes(&frame)
                            && !framed.is_empty()
                        {
                            return Some(framed.plain.clone());
                        }
                    }
                    Frame::Heartbeat => {
                        return Some(Bytes::from_static(HEARTBEAT));
                    }
                    Frame::Close { .. } => {
                        if self.open.is_closed_by(&frame, Some(self.format)) {
                            return None;
                        }
                    }
                },
                Err(RecvError::Lagged(missed)) => {
                    // Too slow to keep up with the changes: send the whole state again, which
                    // SDKs apply as a replacement of their store.
                    tracing::debug!(missed, environment = %self.open.feed.id, "slow stream sent a fresh put");
                    let (seq, put) = Self::put(&self.open.feed, self.format, &Opening::Put);
                    self.seen = seq;
                    return Some(put);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

impl Delivery {
    /// Opens a stream for an authorized request, or refuses it when shutting down or full.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        headers: &HeaderMap,
        kind: CredentialKind,
        format: Format,
    ) -> Result<(Arc<EnvFeed>, Subscription), Response> {
        let open = self.open_server_stream(headers, kind).await?;
        let feed = Arc::clone(&open.feed);
        Ok((feed, Subscription::open(open, format, Opening::Put)))
    }

    /// Authorizes and admits a server-side stream, or refuses it when shutting down or full.
    pub(crate) async fn open_server_stream(
        self: &Arc<Self>,
        headers: &HeaderMap,
        kind: CredentialKind,
    ) -> Result<OpenStream, Response> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(unavailable("the server is shutting down"));
        }
        let authorized = self.authorize(headers, kind).await?;
        self.admit(authorized, StreamCredential::Key(kind), false)
    }
}

impl Subscription {
    /// A subscription for an admitted stream, starting as `opening` says.
    pub(crate) fn open(open: OpenStream, format: Format, opening: Opening) -> Subscription {
        // Subscribe first, then read the state: every later change is in the broadcast.
        let changes = open.feed.subscribe();
        let (seen, put) = Subscription::put(&open.feed, format, &opening);
        Subscription {
            open,
            changes,
            format,
            seen,
            first: Some(put),
        }
    }
}

impl Delivery {
    /// Counts a new stream of an authorized request, or refuses it when shutting down or over
    /// the limit (`503`, which SDKs retry with backoff).
    pub(crate) fn admit(
        self: &Arc<Self>,
        authorized: Authorized,
        kind: StreamCredential,
        client: bool,
    ) -> Result<OpenStream, Response> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(unavailable("the server is shutting down"));
        }
        if !self.is_fresh() {
            return Err(unavailable(
                "this server cannot reach its database: its flag data may be out of date",
            ));
        }
        let feed = authorized.feed;
        // Browser and mobile streams have places of their own, in all and per environment, so
        // that a public client-side ID cannot take the places server SDKs need.
        if client {
            let refused = if self.open_client_streams.fetch_add(1, Ordering::Relaxed)
                >= self.config.max_client_streams
            {
                Some("too many browser and mobile streams on this server")
            } else if feed.client_streams.fetch_add(1, Ordering::Relaxed)
                >= self.config.max_client_streams_per_environment
            {
                feed.client_streams.fetch_sub(1, Ordering::Relaxed);
                Some("too many browser and mobile streams in this environment")
            } else {
                None
            };
            if let Some(message) = refused {
                self.open_client_streams.fetch_sub(1, Ordering::Relaxed);
                metrics::counter!("flagstaff_sdk_streams_refused_total", "audience" => "client")
                    .increment(1);
                return Err(unavailable(message));
            }
        } else if self
            .open_streams
            .load(Ordering::Relaxed)
            .saturating_sub(self.open_client_streams.load(Ordering::Relaxed))
            >= self.config.max_streams
        {
            metrics::counter!("flagstaff_sdk_streams_refused_total", "audience" => "server")
                .increment(1);
            return Err(unavailable("too many open streams on this server"));
        }
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("flagstaff_sdk_streams").increment(1.0);
        feed.grant_opened(&authorized.fingerprint, kind, authorized.grant.expires_at);
        Ok(OpenStream {
            delivery: Arc::clone(self),
            feed,
            fingerprint: authorized.fingerprint,
            client,
        })
    }
}

/// The response headers of a stream, for hyper and for `raw.rs` alike.
pub(crate) const STREAM_HEADERS: [(&str, &str); 4] = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-cache, no-store, must-revalidate"),
    // Tells nginx not to buffer the stream (§4.2, §7.2 item 9).
    ("x-accel-buffering", "no"),
];

/// Something that produces the bytes of an SSE response until it ends.
pub(crate) trait EventSource: Send + 'static {
    /// The next bytes to write, or `None` when the stream must end.
    fn next_bytes(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send;
}

impl EventSource for Subscription {
    fn next_bytes(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        self.next()
    }
}

/// An SSE response carrying what `source` produces.
pub(crate) fn sse_response(feed: &EnvFeed, source: impl EventSource) -> Response {
    let body = futures_util::stream::unfold(source, |mut s| async move {
        s.next_bytes()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), s))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    for (name, value) in STREAM_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    with_env_id(response, feed)
}

/// `GET /all`.
pub(crate) async fn all(State(d): State<Arc<Delivery>>, headers: HeaderMap) -> Response {
    match d
        .subscribe(&headers, CredentialKind::Sdk, Format::All)
        .await
    {
        Ok((feed, subscription)) => sse_response(&feed, subscription),
        Err(refusal) => refusal,
    }
}

/// `GET /flags`: the stream of SDKs that predate segments.
pub(crate) async fn flags_only(State(d): State<Arc<Delivery>>, headers: HeaderMap) -> Response {
    match d
        .subscribe(&headers, CredentialKind::Sdk, Format::FlagsOnly)
        .await
    {
        Ok((feed, subscription)) => sse_response(&feed, subscription),
        Err(refusal) => refusal,
    }
}
