//! A minimal LaunchDarkly-protocol server over real HTTP on 127.0.0.1, for SDK tests that need
//! to control the peer exactly: serve a given payload (`/all` as SSE, `/sdk/latest-all`), push
//! patches, answer event posts with chosen statuses, and record every event request as it
//! arrived (headers and the decompressed body). Used where the real `flagstaff serve` cannot be
//! told to misbehave (retries, refusals) and to feed two SDKs the same random data.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;

/// One event post as received.
#[derive(Clone, Debug)]
pub struct EventPost {
    /// Request headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when it was sent with `Content-Encoding: gzip`.
    pub body: Value,
}

impl EventPost {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct PeerState {
    data: Mutex<Value>,
    patches: broadcast::Sender<String>,
    events: Mutex<Vec<EventPost>>,
    /// Statuses for the next event posts, in order; then 202.
    event_statuses: Mutex<Vec<u16>>,
    stream_connections: Mutex<u32>,
}

/// The running peer; stops when dropped.
#[derive(Debug)]
pub struct Peer {
    state: Arc<PeerState>,
    /// `http://127.0.0.1:port`.
    pub base: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Peer {
    /// Starts serving `data` (`{"flags": …, "segments": …}`).
    pub fn start(data: Value) -> Peer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(PeerState {
            data: Mutex::new(data),
            patches: broadcast::Sender::new(64),
            events: Mutex::new(Vec::new()),
            event_statuses: Mutex::new(Vec::new()),
            stream_connections: Mutex::new(0),
        });
        let app = Router::new()
            .route("/all", get(stream))
            .route("/sdk/latest-all", get(poll))
            .route("/bulk", post(events))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Peer {
            state,
            base,
            runtime: Some(runtime),
        }
    }

    /// Sends a stream `patch` event to every open stream.
    pub fn patch(&self, path: &str, item: &Value) {
        let data = serde_json::json!({"path": path, "data": item});
        let _ = self
            .state
            .patches
            .send(format!("event: patch\ndata: {data}\n\n"));
    }

    /// Answers the next event posts with these statuses (then 202 again).
    pub fn answer_events_with(&self, statuses: &[u16]) {
        *self.state.event_statuses.lock().unwrap() = statuses.to_vec();
    }

    /// Every event post so far.
    pub fn event_posts(&self) -> Vec<EventPost> {
        self.state.events.lock().unwrap().clone()
    }

    /// How many stream connections were made.
    pub fn stream_connections(&self) -> u32 {
        *self.state.stream_connections.lock().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(100));
        }
    }
}

async fn stream(State(state): State<Arc<PeerState>>) -> Response {
    *state.stream_connections.lock().unwrap() += 1;
    let put = serde_json::json!({"path": "/", "data": *state.data.lock().unwrap()});
    let first = format!("event: put\ndata: {put}\n\n");
    let patches = state.patches.subscribe();
    let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) });
    // Patches as they are pushed, and a heartbeat comment every second in between.
    let rest = futures_util::stream::unfold(patches, |mut patches| async move {
        let item = tokio::select! {
            patch = patches.recv() => patch.ok()?,
            () = tokio::time::sleep(Duration::from_secs(1)) => ":\n".to_owned(),
        };
        Some((Ok(item), patches))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(first.chain(rest)))
        .unwrap()
}

async fn poll(State(state): State<Arc<PeerState>>) -> Response {
    let data = state.data.lock().unwrap().clone();
    (
        [("content-type", "application/json")],
        serde_json::to_vec(&data).unwrap(),
    )
        .into_response()
}

async fn events(
    State(state): State<Arc<PeerState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let raw = if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip")
    {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    state.events.lock().unwrap().push(EventPost {
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
    });
    let status = {
        let mut statuses = state.event_statuses.lock().unwrap();
        if statuses.is_empty() {
            202
        } else {
            statuses.remove(0)
        }
    };
    StatusCode::from_u16(status).unwrap().into_response()
}
