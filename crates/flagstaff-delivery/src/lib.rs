//! Flag delivery: everything LaunchDarkly-compatible server-side SDKs talk to.
//!
//! - `GET /all` (and the legacy `GET /flags`): a Server-Sent Events stream that starts with a
//!   `put` of every flag and segment of the SDK key's environment and then carries a `patch` or
//!   `delete` for each change (`ld-protocol.md` §4.2, §4.4).
//! - `GET /sdk/latest-all` and friends: the same data for polling SDKs, with `ETag`/`304` and
//!   gzip (§4.3, §4.4).
//! - `POST /bulk` and `/diagnostic` (and the browser and mobile event paths): analytics and
//!   diagnostic events, parsed, accepted with `202` so that SDKs never stop sending (§6.3) and
//!   handed to the events pipeline (`flagstaff-events`) that aggregates them for insights.
//! - `/relay/all/{project}/{environment}` and `/relay/bulk/…`: the same stream and intake for
//!   a relay holding a relay token instead of SDK keys (issue 22, `relays.rs`).
//! - `/sdk/stream`, `/sdk/poll`: the same data in LaunchDarkly's newer FDv2 protocol (§10,
//!   `fdv2.rs`), where an SDK that reconnects with its selector gets only what changed since,
//!   read from the change log.
//! - `/sdk/stream/eval`, `/sdk/poll/eval`: FDv2 for browser and mobile SDKs, flags evaluated
//!   for the SDK's context as `flag-eval` objects, caught up from a basis like the server-side
//!   ones (`client_side/fdv2.rs`). The FDv1 browser and mobile endpoints are in `client_side`.
//!
//! # How a change reaches the streams
//!
//! The store's audit log is the change feed: every commit appends exactly one entry naming what
//! changed ([`flagstaff_store::Store::changes_after`]). One task (`worker.rs`) follows the feed,
//! woken by the store right after a local commit and polling its head for commits made by other
//! nodes on the same PostgreSQL database. For each environment that has a [`feed::EnvFeed`] it
//! re-reads only the flags and segments named by the entries, compares versions with what it
//! published, serializes the resulting `patch`/`delete` events **once** and broadcasts the bytes
//! to every open stream of that environment (ARCHITECTURE.md invariants 5 and 6). The database
//! stays the source of truth: a lost wake-up delays a change by at most the poll interval.
//!
//! All of that reads through [`Source`]: the server's database (`Source::App`), or in a relay the
//! [`replica::Replica`] its upstream fills, whose own change log the same worker follows.
#![forbid(unsafe_code)]

mod client_side;
mod credentials;
mod direct;
mod events;
mod fdv2;
mod feed;
mod http;
mod limits;
mod ofrep;
mod polling;
mod published;
mod raw;
#[cfg(feature = "redis")]
pub mod redis_store;
mod relays;
pub mod replica;
mod source;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use flagstaff_app::App;
use tokio::sync::{OnceCell, mpsc};

pub use client_side::{MAX_CONTEXT_BYTES, simulation};
pub use feed::EnvironmentId;
pub use raw::serve;
#[cfg(feature = "tls")]
pub use raw::serve_tls;
pub use source::{RelayedPayload, Source};

/// Tuning of the delivery plane.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// How often every open stream gets a comment line, so that SDKs (5-minute read timeout)
    /// and proxies with idle timeouts keep it open (§4.2: LaunchDarkly sends one every 3 min).
    pub heartbeat_interval: Duration,
    /// How often the change feed is checked for commits made by other processes. Commits made
    /// through this process are seen at once.
    pub change_poll_interval: Duration,
    /// The most server-side SDK streams served at once; more are refused with `503` and
    /// `Retry-After`, which SDKs retry with backoff (§4.5).
    pub max_streams: usize,
    /// The most browser and mobile streams served at once. Counted apart from server streams:
    /// the client-side ID is public, so its streams must never use up the places servers need.
    pub max_client_streams: usize,
    /// The most browser and mobile streams of one environment.
    pub max_client_streams_per_environment: usize,
    /// The largest events payload accepted, after decompression.
    pub max_event_payload_bytes: usize,
    /// Event payloads per second accepted from browsers and phones per environment (the
    /// bucket holds two seconds' worth); more are answered `429` with `Retry-After`.
    pub max_client_event_payloads_per_second: u32,
    /// How long a client may take to send a request's head (the first, and each next one on a
    /// kept-alive connection); slower connections are closed.
    pub header_read_timeout: Duration,
    /// The most connections held at once; more are answered `503` and closed.
    pub max_connections: usize,
    /// The most connections held at once from one client address.
    pub max_connections_per_address: usize,
    /// How long the change feed may go unread (the database does not answer: a partition, an
    /// outage) before this node stops vouching for its data: streams end, and polling and new
    /// streams are answered `503` (SDKs retry, through a load balancer on another node), until
    /// a read succeeds again. `None` serves the last data however old it is, which is what a
    /// relay is for.
    pub stale_after: Option<Duration>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            heartbeat_interval: Duration::from_secs(60),
            change_poll_interval: Duration::from_secs(1),
            max_streams: 50_000,
            // Below `max_connections`, so that servers always find connections left.
            max_client_streams: 10_000,
            max_client_streams_per_environment: 5_000,
            max_event_payload_bytes: 10 * 1024 * 1024,
            // A browser SDK sends at most one payload every two seconds, so this is a few
            // thousand active pages per environment; raise it for bigger sites.
            max_client_event_payloads_per_second: 1_000,
            header_read_timeout: Duration::from_secs(10),
            // Below the 20,000 open files a process may have on common systems, leaving room
            // for the database and logs.
            max_connections: 15_000,
            // Many SDKs may share one address behind a NAT or a proxy.
            max_connections_per_address: 2_000,
            stale_after: Some(Duration::from_secs(15)),
        }
    }
}

/// Event payloads decompressed and parsed at once; more wait for a turn (their bodies are
/// already read and bounded by `max_event_payload_bytes`).
pub const EVENTS_PARSED_AT_ONCE: usize = 2;

type FeedCell = Arc<OnceCell<Arc<feed::EnvFeed>>>;

/// The delivery plane of one server process: the environments SDKs are using, their open
/// streams and the task that follows the change feed.
#[derive(Debug)]
pub struct Delivery {
    source: Source,
    config: DeliveryConfig,
    /// Environments somebody asked for, loaded on first use.
    feeds: Mutex<HashMap<EnvironmentId, FeedCell>>,
    /// What each credential fingerprint granted when last looked up; emptied whenever any
    /// credential may have changed.
    grants: credentials::GrantCache,
    /// Streams open now (for the limit and for `/metrics`).
    open_streams: AtomicUsize,
    /// Of those, browser and mobile streams.
    open_client_streams: AtomicUsize,
    /// The change-feed position the worker is applying or has applied (see `EnvFeed` loading).
    applying: AtomicU64,
    /// The change-feed position whose changes have all been published to the loaded feeds.
    published: AtomicU64,
    /// Feeds loaded while the worker was applying later changes; reloaded by the worker.
    resync: mpsc::UnboundedSender<Arc<feed::EnvFeed>>,
    shutting_down: AtomicBool,
    /// When the change feed was last read successfully, in milliseconds since `started`.
    confirmed_at: AtomicU64,
    /// The feed went unread for longer than `stale_after` (see `worker::watch_freshness`).
    stale: AtomicBool,
    started: std::time::Instant,
    /// Event payloads being decompressed and parsed at once (on the blocking pool).
    events_parsing: tokio::sync::Semaphore,
    /// Connections held, in all and per client address (`limits.rs`).
    connections: Arc<limits::ConnectionLimits>,
    /// Event payloads from browsers and phones, per environment (`limits.rs`).
    client_event_rate: limits::PayloadRate,
}

impl Delivery {
    /// Starts delivery over `app`: spawns the change-feed follower and the heartbeat. Call
    /// [`Delivery::shutdown`] before stopping the HTTP server, or open streams keep it waiting.
    pub async fn start(app: App, config: DeliveryConfig) -> Result<Arc<Delivery>, StartError> {
        Delivery::start_from(Source::App(app), config).await
    }

    /// Starts delivery over any [`Source`]: a relay's replica of its upstream, or the server's
    /// database.
    pub async fn start_from(
        source: Source,
        config: DeliveryConfig,
    ) -> Result<Arc<Delivery>, StartError> {
        let head = source.head().await.map_err(StartError)?;
        let (resync, resync_rx) = mpsc::unbounded_channel();
        let connections = limits::ConnectionLimits::new(
            config.max_connections,
            config.max_connections_per_address,
        );
        let client_event_rate =
            limits::PayloadRate::new(config.max_client_event_payloads_per_second);
        let delivery = Arc::new(Delivery {
            source,
            config,
            client_event_rate,
            connections,
            events_parsing: tokio::sync::Semaphore::new(EVENTS_PARSED_AT_ONCE),
            feeds: Mutex::new(HashMap::new()),
            grants: credentials::GrantCache::default(),
            open_streams: AtomicUsize::new(0),
            open_client_streams: AtomicUsize::new(0),
            applying: AtomicU64::new(head),
            published: AtomicU64::new(head),
            resync,
            shutting_down: AtomicBool::new(false),
            confirmed_at: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            started: std::time::Instant::now(),
        });
        tokio::spawn(worker::follow_changes(
            Arc::clone(&delivery),
            head,
            resync_rx,
        ));
        tokio::spawn(worker::heartbeat(Arc::clone(&delivery)));
        tokio::spawn(worker::watch_freshness(Arc::clone(&delivery)));
        Ok(delivery)
    }

    /// Ends every open stream and refuses new ones (with `503`, which SDKs retry), so that a
    /// graceful shutdown does not wait for streams that never end on their own. SDKs reconnect
    /// to whichever node answers next.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for feed in self.loaded_feeds() {
            feed.close_all();
        }
    }

    /// The change-feed position up to which every change has been published to SDKs (compare
    /// with `App::head`: equal means delivery has caught up).
    pub fn position(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Whether this node vouches for its data: the change feed was read within
    /// [`DeliveryConfig::stale_after`]. `/ready` reports it, so that a load balancer sends SDKs
    /// elsewhere.
    pub fn is_fresh(&self) -> bool {
        !self.stale.load(Ordering::SeqCst)
    }

    /// Records a successful read of the change feed.
    fn confirm(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.confirmed_at.store(now, Ordering::SeqCst);
    }

    /// How long since the change feed was last read successfully.
    fn unconfirmed_for(&self) -> Duration {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.confirmed_at.load(Ordering::SeqCst)))
    }

    /// How many streams are open now.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// The loaded feed of an environment, loading it on first use. Loading failures are not
    /// remembered: the next request tries again.
    async fn feed(
        &self,
        id: &EnvironmentId,
    ) -> Result<Arc<feed::EnvFeed>, flagstaff_app::AppError> {
        let cell = {
            let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(feeds.entry(id.clone()).or_default())
        };
        let mut loaded_now = false;
        let feed = cell
            .get_or_try_init(|| async {
                loaded_now = true;
                // The change-feed position is read before the data, so every change after it
                // is either in the data or applied later by the worker (see below).
                let head = self.source.head().await?;
                let feed = feed::EnvFeed::load(&self.source, id.clone(), head).await?;
                Ok::<_, flagstaff_app::AppError>(Arc::new(feed))
            })
            .await?;
        if loaded_now && self.applying.load(Ordering::SeqCst) > feed.loaded_at() {
            // The worker may have skipped changes for this environment while it was loading,
            // because it was not registered yet. Have the worker compare it again; applying a
            // change twice is harmless because only greater versions are published.
            let _ = self.resync.send(Arc::clone(feed));
        }
        Ok(Arc::clone(feed))
    }

    /// Feeds that finished loading.
    fn loaded_feeds(&self) -> Vec<Arc<feed::EnvFeed>> {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds
            .values()
            .filter_map(|cell| cell.get().cloned())
            .collect()
    }

    /// Forgets the feeds of environments that no longer exist.
    fn drop_feeds(&self, mut gone: impl FnMut(&EnvironmentId) -> bool) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds.retain(|id, _| !gone(id));
    }
}

/// Delivery could not start because the store did not answer.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the change feed: {0}")]
pub struct StartError(flagstaff_app::AppError);

/// The routes SDKs use. Merge them into the server's router.
pub fn router(delivery: Arc<Delivery>) -> Router {
    use flagstaff_app::CredentialKind;
    // Browser routes: the client-side ID is in the path, and every response carries CORS
    // headers (§5.8).
    let browser = Router::new()
        .route(
            "/sdk/evalx/{env}/contexts/{context}",
            get(client_side::browser_get),
        )
        .route(
            "/sdk/evalx/{env}/users/{context}",
            get(client_side::browser_get),
        )
        .route("/sdk/evalx/{env}/context", any(client_side::browser_report))
        .route(
            "/sdk/evalx/{env}/contexts",
            any(client_side::browser_report),
        )
        .route("/sdk/evalx/{env}/user", any(client_side::browser_report))
        .route("/sdk/evalx/{env}/users", any(client_side::browser_report))
        .route("/eval/{env}/{context}", get(client_side::browser_stream))
        .route("/eval/{env}", any(client_side::browser_stream_report))
        .route("/ping/{env}", get(client_side::browser_ping))
        .route("/sdk/goals/{env}", get(client_side::goals))
        .route("/events/bulk/{env}", post(client_side::browser_bulk))
        .route(
            "/events/diagnostic/{env}",
            post(client_side::browser_diagnostic),
        )
        .route("/a/{file}", get(client_side::beacon))
        // Client-side FDv2: browsers (`?auth=<client-side ID>`) and phones (mobile key).
        .route("/sdk/poll/eval/{context}", get(client_side::poll_eval))
        .route("/sdk/poll/eval", any(client_side::poll_eval_body))
        .route("/sdk/stream/eval/{context}", get(client_side::stream_eval))
        .route("/sdk/stream/eval", any(client_side::stream_eval_body))
        .route("/ofrep/v1/evaluate/flags", post(ofrep::evaluate_flags))
        .route("/ofrep/v1/evaluate/flags/{key}", post(ofrep::evaluate_flag))
        .route("/ofrep/v1/configuration", get(ofrep::configuration))
        .route("/ofrep/v1/events/{id}", get(ofrep::events))
        .layer(axum::middleware::from_fn(client_side::cors));
    let mobile_get =
        |caller: CredentialKind| move |s, p, q, h| client_side::keyed_get(caller, s, p, q, h);
    let mobile_report = |caller: CredentialKind| {
        move |s, q, m, h, b| client_side::keyed_report(caller, s, q, m, h, b)
    };
    Router::new()
        .merge(browser)
        .route(
            "/msdk/evalx/contexts/{context}",
            get(mobile_get(CredentialKind::Mobile)),
        )
        .route(
            "/msdk/evalx/users/{context}",
            get(mobile_get(CredentialKind::Mobile)),
        )
        .route(
            "/msdk/evalx/context",
            any(mobile_report(CredentialKind::Mobile)),
        )
        .route(
            "/msdk/evalx/user",
            any(mobile_report(CredentialKind::Mobile)),
        )
        .route(
            "/sdk/evalx/contexts/{context}",
            get(mobile_get(CredentialKind::Sdk)),
        )
        .route(
            "/sdk/evalx/users/{context}",
            get(mobile_get(CredentialKind::Sdk)),
        )
        .route(
            "/sdk/evalx/context",
            any(mobile_report(CredentialKind::Sdk)),
        )
        .route("/sdk/evalx/user", any(mobile_report(CredentialKind::Sdk)))
        .route("/meval/{context}", get(client_side::mobile_stream))
        .route("/meval", any(client_side::mobile_stream_report))
        .route("/mping", get(client_side::mobile_ping))
        .route("/mobile", post(client_side::mobile_bulk))
        .route("/mobile/events", post(client_side::mobile_bulk))
        .route("/mobile/events/bulk", post(client_side::mobile_bulk))
        .route(
            "/mobile/events/diagnostic",
            post(client_side::mobile_diagnostic),
        )
        .route("/all", get(stream::all))
        .route("/flags", get(stream::flags_only))
        .route("/sdk/latest-all", get(polling::latest_all))
        .route("/sdk/latest-flags", get(polling::latest_flags))
        .route("/sdk/latest-flags/{key}", get(polling::latest_flag))
        .route("/sdk/latest-segments", get(polling::latest_segments))
        .route("/sdk/latest-segments/{key}", get(polling::latest_segment))
        // The PHP SDK's endpoints (§4.4): the same documents under older paths.
        .route("/sdk/flags", get(polling::latest_flags))
        .route("/sdk/flags/{key}", get(polling::latest_flag))
        .route("/sdk/segments/{key}", get(polling::latest_segment))
        .route("/bulk", post(events::bulk))
        .route("/diagnostic", post(events::diagnostic))
        .route("/relay/all/{project}/{environment}", get(relays::stream))
        .route("/relay/bulk/{project}/{environment}", post(relays::bulk))
        .route(
            "/relay/diagnostic/{project}/{environment}",
            post(relays::diagnostic),
        )
        .route("/sdk/stream", get(fdv2::stream))
        .route("/sdk/poll", get(fdv2::poll))
        .with_state(delivery)
}
