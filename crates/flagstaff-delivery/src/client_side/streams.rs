//! Client-side streams (§5.5–5.6): the push model (`/eval`, `/meval`: a `put` of evaluated flags,
//! then only what changed for this context) and the ping model (`/ping`, `/mping`).

use super::*;

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
        credential: CredentialKind,
        with_reasons: bool,
        /// The context's big-segment membership, looked up when the stream opened (a later
        /// upload reaches this stream when it reconnects).
        big_segments: Option<Box<BigSegmentMembership>>,
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
                credential,
                with_reasons,
                big_segments,
            } => {
                let data = evaluate_all(
                    state,
                    *credential,
                    context,
                    *with_reasons,
                    big_segments.as_deref(),
                );
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
            credential,
            with_reasons,
            big_segments,
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
        for (position, key) in change.flags.iter().enumerate() {
            let old = before
                .flag_id(key)
                .filter(|id| credential.sees(before.flag(*id).source()))
                .map(|id| before.evaluate_for_client_with(id, context, big_segments.as_deref()));
            let new = after
                .flag_id(key)
                .filter(|id| credential.sees(after.flag(*id).source()))
                .map(|id| after.evaluate_for_client_with(id, context, big_segments.as_deref()));
            match (old, new) {
                (old, Some(new)) => {
                    if old.is_some_and(|old| old.same_result(&new, *with_reasons)) {
                        continue;
                    }
                    let patch = || {
                        let payload = EvaluatedFlag {
                            key: Some(key),
                            ..new.payload(version, *with_reasons)
                        };
                        let mut event = Vec::new();
                        sse_event(&mut event, "patch", &crate::feed::to_json(&payload));
                        Bytes::from(event)
                    };
                    out.extend_from_slice(&shared_patch(
                        change,
                        position,
                        &new,
                        *with_reasons,
                        patch,
                    ));
                }
                (Some(_), None) => {
                    let data = serde_json::json!({"key": key, "version": version});
                    sse_event(&mut out, "delete", &crate::feed::to_json(&data));
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
                        if self.open.is_closed_by(&frame, None) {
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

/// The `patch` event for `result` of the change's flag at `position`: serialized once per
/// distinct result and shared by every stream that gets it (issue 23, point 5), since most
/// contexts of a change get one of a few results.
fn shared_patch(
    change: &crate::feed::ClientChange,
    position: usize,
    result: &ClientResult<'_>,
    with_reasons: bool,
    serialize: impl FnOnce() -> Bytes,
) -> Bytes {
    // A result without a variation (an error) is rare and not shared.
    let Some(variation) = result.detail.variation_index else {
        return serialize();
    };
    let key = crate::feed::PatchKey {
        flag: position,
        variation,
        experiment: result.experiment,
        reason: (with_reasons || result.experiment)
            .then(|| crate::feed::to_json(&result.detail.reason)),
        prerequisites: result
            .prerequisites
            .iter()
            .map(|p| (*p).to_owned())
            .collect(),
    };
    if let Some(shared) = change
        .patches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return shared.clone();
    }
    // Serialized outside the lock: other streams are not held up meanwhile, and two streams
    // that race here both serialize the same bytes.
    let event = serialize();
    let mut patches = change.patches.lock().unwrap_or_else(|e| e.into_inner());
    if patches.len() < crate::feed::ClientChange::MAX_SHARED_PATCHES {
        patches.insert(key, event.clone());
    }
    event
}

impl EventSource for ClientStream {
    fn next_bytes(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        self.next()
    }
}

/// Opens a client stream: authorizes, reads the context, checks secure mode, counts it.
async fn open_client_stream(
    delivery: &Arc<Delivery>,
    caller: CredentialKind,
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
            check_secure_mode(delivery, &authorized, caller, &context, query.h.as_deref())?;
            let big_segments = big_segment_membership(
                delivery,
                &authorized.feed,
                &authorized.feed.current(),
                &context,
            )
            .await?
            .map(Box::new);
            Mode::Push {
                context: Box::new(context),
                credential: caller,
                with_reasons: query.with_reasons(),
                big_segments,
            }
        }
    };
    let open = delivery.admit(authorized, crate::feed::StreamCredential::Key(caller), true)?;
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
    caller: CredentialKind,
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

/// A client stream request as the lean path (`raw.rs`) reads it from the request line:
/// `GET /eval/{clientSideId}/{context}`, `GET /ping/{clientSideId}`, `GET /meval/{context}`,
/// `GET /mping` or client-side FDv2's `GET /sdk/stream/eval/{context}`. Anything else (a
/// `REPORT`, a percent-encoded segment, a query the routes would refuse) goes to the router.
#[derive(Debug)]
pub(crate) struct LeanRoute {
    caller: CredentialKind,
    env_id: Option<String>,
    context: Option<String>,
    query: ClientQuery,
    /// For `/sdk/stream/eval`: its query, read as that route reads it (`fdv2.rs`).
    fdv2: Option<String>,
}

/// A stream the lean path writes: FDv1's or client-side FDv2's.
pub(crate) enum LeanStream {
    Fdv1(ClientStream),
    Fdv2(super::fdv2::EvalStream),
}

impl EventSource for LeanStream {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        match self {
            LeanStream::Fdv1(stream) => stream.next().await,
            LeanStream::Fdv2(stream) => stream.next_bytes().await,
        }
    }
}

impl LeanRoute {
    /// Reads a request target (`/eval/abc/eyJ…?withReasons=true`).
    pub(crate) fn parse(target: &str) -> Option<LeanRoute> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path.contains('%') {
            return None; // Percent-decoding is the router's.
        }
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let plain = |s: &str| !s.is_empty();
        if let ["sdk", "stream", "eval", context] = segments.as_slice() {
            // The credential may be in the query (`auth`) or the header; `fdv2.rs` reads both.
            return plain(context).then(|| LeanRoute {
                caller: CredentialKind::ClientSide,
                env_id: None,
                context: Some((*context).to_owned()),
                query: ClientQuery::default(),
                fdv2: Some(query.to_owned()),
            });
        }
        let (caller, env_id, context) = match segments.as_slice() {
            ["eval", env, context] if plain(env) && plain(context) => {
                (CredentialKind::ClientSide, Some(*env), Some(*context))
            }
            ["ping", env] if plain(env) => (CredentialKind::ClientSide, Some(*env), None),
            ["meval", context] if plain(context) => (CredentialKind::Mobile, None, Some(*context)),
            ["mping"] => (CredentialKind::Mobile, None, None),
            _ => return None,
        };
        // The ping routes take no query; the others read `withReasons` and `h` as the routes do.
        let query = match context {
            Some(_) => {
                let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
                Query::<ClientQuery>::try_from_uri(&uri).ok()?.0
            }
            None => ClientQuery::default(),
        };
        Some(LeanRoute {
            caller,
            env_id: env_id.map(str::to_owned),
            context: context.map(str::to_owned),
            query,
            fdv2: None,
        })
    }

    /// Whether the response needs the browser routes' CORS headers (client-side FDv2 serves
    /// browsers and phones on one path: it always carries them, as its route does).
    pub(crate) fn is_browser(&self) -> bool {
        self.caller == CredentialKind::ClientSide
    }

    /// Opens the stream exactly as its route would.
    pub(crate) async fn open(
        self,
        delivery: &Arc<Delivery>,
        headers: &HeaderMap,
    ) -> Result<(Arc<EnvFeed>, LeanStream), Response> {
        if let Some(query) = self.fdv2 {
            let context = ContextIn::Path(self.context.unwrap_or_default());
            let opened =
                super::fdv2::open_eval_stream(delivery, Some(&query), headers, context).await;
            return opened.map(|(feed, stream)| (feed, LeanStream::Fdv2(stream)));
        }
        open_client_stream(
            delivery,
            self.caller,
            self.env_id.as_deref(),
            self.context.map(ContextIn::Path),
            &self.query,
            headers,
        )
        .await
        .map(|(feed, stream)| (feed, LeanStream::Fdv1(stream)))
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
            CredentialKind::ClientSide,
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
    open_stream(
        &d,
        CredentialKind::ClientSide,
        Some(&env_id),
        source,
        &query,
        &headers,
    )
    .await
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
    open_stream(
        &d,
        CredentialKind::ClientSide,
        Some(&env_id),
        source,
        &query,
        &headers,
    )
    .await
}

/// `GET /ping/{clientSideId}`.
pub(crate) async fn browser_ping(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let query = ClientQuery::default();
    open_stream(
        &d,
        CredentialKind::ClientSide,
        Some(&env_id),
        None,
        &query,
        &headers,
    )
    .await
}

/// `GET /meval/{ctx}`.
pub(crate) async fn mobile_stream(
    State(d): State<Arc<Delivery>>,
    Path(context): Path<String>,
    Query(query): Query<ClientQuery>,
    headers: HeaderMap,
) -> Response {
    let source = Some(ContextIn::Path(context));
    open_stream(&d, CredentialKind::Mobile, None, source, &query, &headers).await
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
    open_stream(&d, CredentialKind::Mobile, None, source, &query, &headers).await
}

/// `GET /mping`.
pub(crate) async fn mobile_ping(State(d): State<Arc<Delivery>>, headers: HeaderMap) -> Response {
    let query = ClientQuery::default();
    open_stream(&d, CredentialKind::Mobile, None, None, &query, &headers).await
}
