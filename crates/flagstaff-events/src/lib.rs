//! The analytics events pipeline (`ld-protocol.md` §6): what SDKs report becomes flag insights.
//!
//! ```text
//!  HTTP intake (flagstaff-delivery)        this crate                         flagstaff-store
//!  read + gunzip ─▶ payload::parse_* ─▶ Pipeline::submit ─▶ [bounded queue] ─▶ writer task ─▶ EventStore
//!                    (400 if not JSON)   (dedupe, shed)      (events, not       (aggregate,    (its own
//!                                                             payloads)          one txn/tick)  database)
//! ```
//!
//! The request path parses and queues, then answers `202` (§6.3); it never waits for the
//! database. One writer task drains the queue every `flush_interval`, folds everything drained
//! into one [`aggregate::Aggregate`] (summary counters summed per flag, variation, version and
//! minute) and writes it in one transaction. When the queue is full a payload is dropped whole,
//! counted in [`Health::dropped_events`] and logged at most every ten seconds: SDKs are never
//! blocked or refused for it, since a refusal makes them stop sending for good (§6.3).
//! A payload whose `X-LaunchDarkly-Payload-ID` was seen in the last ten minutes for the same
//! environment is a retry of one already accepted and is dropped as a duplicate.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod experiments;
pub mod migration;
pub mod payload;

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagstaff_store::events::Retention;
use flagstaff_store::{Clock, EventStore};
use serde::Serialize;
use tokio::sync::{Notify, watch};

pub use aggregate::{Aggregate, Limits};
pub use experiments::{Registry, RunningIteration};
pub use payload::{
    Batch, KINDS, PayloadError, SdkIdentity, Source, parse_analytics, parse_analytics_sampling,
    parse_diagnostic,
};

/// Tuning of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The most events waiting to be written; payloads beyond it are shed.
    pub queue_capacity: usize,
    /// The most bytes of payloads (decoded JSON, see [`Batch::bytes`]) waiting to be written;
    /// payloads beyond it are shed. Events alone do not bound memory: one event may carry a
    /// context of 16 KiB and a custom event's data of 8 KiB.
    pub queue_bytes: usize,
    /// How often the writer drains the queue.
    pub flush_interval: Duration,
    /// Per-flush caps on contexts and samples.
    pub limits: Limits,
    /// How long rows are kept.
    pub retention: Retention,
    /// How often old rows are removed.
    pub prune_interval: Duration,
    /// What "now" is for buckets, "last written" and retention (the server's clock).
    pub clock: Clock,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_capacity: 100_000,
            queue_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_secs(1),
            limits: Limits::default(),
            retention: Retention::default(),
            prune_interval: Duration::from_secs(3600),
            clock: Clock::system(),
        }
    }
}

/// What became of a submitted payload. All three are answered `202`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for writing.
    Queued,
    /// A retry of a payload already accepted (same payload ID), dropped.
    Duplicate,
    /// The queue was full; dropped and counted.
    Shed,
}

/// Ingestion health, for the API, the dashboard and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Events accepted into the queue since start.
    pub accepted_events: u64,
    /// Events dropped because the queue was full, since start.
    pub dropped_events: u64,
    /// Payloads dropped as retries of accepted ones, since start.
    pub duplicate_payloads: u64,
    /// Payloads refused as malformed (not JSON, wrong shape), since start.
    pub rejected_payloads: u64,
    /// Events inside accepted payloads skipped as meaningless, since start.
    pub skipped_events: u64,
    /// Events written to the database, since start.
    pub written_events: u64,
    /// Events lost because a write failed, since start.
    pub failed_events: u64,
    /// Events waiting in the queue now.
    pub queue_depth: usize,
    /// The queue's capacity in events.
    pub queue_capacity: usize,
    /// Bytes of payloads waiting in the queue now.
    pub queue_bytes: usize,
    /// The queue's capacity in bytes.
    pub queue_bytes_capacity: usize,
    /// Events accepted per second over the last ten seconds.
    pub accepted_per_second: f64,
    /// Events dropped per second over the last ten seconds.
    pub dropped_per_second: f64,
    /// When the last write finished (Unix ms).
    pub last_write_at: Option<i64>,
    /// How long the last write took (ms).
    pub last_write_millis: Option<f64>,
    /// The last write error, if the last write failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Each payload with its payload ID, if it had one.
    batches: VecDeque<(Batch, Option<String>)>,
    events: usize,
    bytes: usize,
    /// Samples queued per environment since the writer last drained the queue.
    samples: HashMap<Arc<str>, usize>,
    /// Batches queued since start; the writer reports how far it has written.
    queued: u64,
}

/// Payload IDs seen recently: two generations of hashes, rotated every ten minutes or when
/// full, so memory stays bounded while a retry (one second after the original, §6.3) is
/// always caught.
#[derive(Debug)]
struct PayloadIds {
    hasher: foldhash::fast::FixedState,
    current: HashSet<u64>,
    previous: HashSet<u64>,
    rotated: Instant,
}

const PAYLOAD_ID_GENERATION: Duration = Duration::from_secs(600);
const PAYLOAD_ID_CAPACITY: usize = 100_000;

impl PayloadIds {
    /// Remembers the ID; `false` if it was already known.
    fn insert(&mut self, environment: &str, id: &str) -> bool {
        let mut hasher = self.hasher.build_hasher();
        environment.hash(&mut hasher);
        id.hash(&mut hasher);
        let hash = hasher.finish();
        if self.current.contains(&hash) || self.previous.contains(&hash) {
            return false;
        }
        if self.current.len() >= PAYLOAD_ID_CAPACITY
            || self.rotated.elapsed() >= PAYLOAD_ID_GENERATION
        {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Instant::now();
        }
        self.current.insert(hash);
        true
    }
}

/// Contexts written in the last minute, each with the attributes it had: most raw events
/// repeat the contexts of the events before them (the same users keep using the application),
/// and upserting each again every flush only moves its "last seen" by a second or two. A
/// context already written with the same attributes less than a minute ago is skipped, so
/// "last seen" may lag by up to a minute; new contexts and changed attributes are written at
/// once.
#[derive(Debug)]
struct RecentContexts {
    hasher: foldhash::fast::FixedState,
    /// Hash of (environment, kind, key, attributes) → when written (Unix ms).
    written: HashMap<u64, i64>,
}

/// How long a written context is not written again for an identical sighting.
const RECENT_CONTEXT_MS: i64 = 60_000;
/// The most contexts remembered; beyond it, older entries are forgotten first, and when none
/// is old enough, new ones are written without being remembered.
const RECENT_CONTEXT_CAPACITY: usize = 200_000;

impl RecentContexts {
    fn keep_news(&mut self, contexts: &mut Vec<flagstaff_store::events::SeenContext>, now: i64) {
        if self.written.len() >= RECENT_CONTEXT_CAPACITY {
            self.written
                .retain(|_, at| now.saturating_sub(*at) < RECENT_CONTEXT_MS);
        }
        contexts.retain(|context| {
            let mut hasher = self.hasher.build_hasher();
            context.environment.hash(&mut hasher);
            context.kind.hash(&mut hasher);
            context.key.hash(&mut hasher);
            // `Null` ("only the key is known") never changes what is stored but "last seen".
            hash_value(&context.attributes, &mut hasher);
            let hash = hasher.finish();
            match self.written.get(&hash) {
                Some(at) if now.saturating_sub(*at) < RECENT_CONTEXT_MS => false,
                _ => {
                    if self.written.len() < RECENT_CONTEXT_CAPACITY {
                        self.written.insert(hash, now);
                    }
                    true
                }
            }
        });
    }
}

/// Hashes a JSON value by its content, without serializing it (which cost a string per
/// context per flush). Objects are ordered maps, so equal values hash alike.
fn hash_value(value: &serde_json::Value, hasher: &mut impl Hasher) {
    use serde_json::Value;
    match value {
        Value::Null => 0_u8.hash(hasher),
        Value::Bool(b) => (1_u8, b).hash(hasher),
        Value::Number(n) => {
            2_u8.hash(hasher);
            (n.as_i64(), n.as_u64(), n.as_f64().map(f64::to_bits)).hash(hasher);
        }
        Value::String(s) => (3_u8, s).hash(hasher),
        Value::Array(items) => {
            (4_u8, items.len()).hash(hasher);
            for item in items {
                hash_value(item, hasher);
            }
        }
        Value::Object(fields) => {
            (5_u8, fields.len()).hash(hasher);
            for (name, item) in fields {
                name.hash(hasher);
                hash_value(item, hasher);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    dropped: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    skipped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug, Default)]
struct WriterState {
    last_write_at: Option<i64>,
    last_write_millis: Option<f64>,
    last_error: Option<String>,
    /// (when, accepted, dropped) once per writer tick over the last minute, for rates.
    samples: VecDeque<(Instant, u64, u64)>,
    /// When the last "shedding" line was logged.
    last_shed_log: Option<Instant>,
}

/// The pipeline of one server process.
#[derive(Debug)]
pub struct Pipeline {
    store: Arc<EventStore>,
    config: PipelineConfig,
    queue: Mutex<Queue>,
    wake: Notify,
    payload_ids: Mutex<PayloadIds>,
    recent_contexts: Mutex<RecentContexts>,
    experiments: Registry,
    counters: Counters,
    state: Mutex<WriterState>,
    /// How many queued batches have been written (or given up on).
    written: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pipeline {
    /// Starts the pipeline's writer task (inside a Tokio runtime).
    pub fn start(store: Arc<EventStore>, config: PipelineConfig) -> Arc<Pipeline> {
        let pipeline = Arc::new(Pipeline {
            store,
            config,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            payload_ids: Mutex::new(PayloadIds {
                hasher: foldhash::fast::FixedState::default(),
                current: HashSet::new(),
                previous: HashSet::new(),
                rotated: Instant::now(),
            }),
            recent_contexts: Mutex::new(RecentContexts {
                hasher: foldhash::fast::FixedState::default(),
                written: HashMap::new(),
            }),
            experiments: Registry::default(),
            counters: Counters::default(),
            state: Mutex::new(WriterState::default()),
            written: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            stopped: watch::Sender::new(false),
        });
        tokio::spawn(writer(Arc::clone(&pipeline)));
        pipeline
    }

    /// The events database.
    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    /// The experiment iterations whose exposures and metric events are kept.
    pub fn experiments(&self) -> &Registry {
        &self.experiments
    }

    /// Queues a parsed payload unless it is a retry of one already accepted or the queue is
    /// full. Never waits.
    pub fn submit(&self, batch: Batch, payload_id: Option<&str>) -> Submitted {
        if let Some(id) = payload_id.filter(|id| !id.is_empty())
            && !lock(&self.payload_ids).insert(&batch.source.environment, id)
        {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("flagstaff_events_duplicate_payloads_total").increment(1);
            return Submitted::Duplicate;
        }
        let events = usize::try_from(batch.events).unwrap_or(usize::MAX);
        let skipped = batch.skipped;
        let bytes = batch.bytes;
        let mut queue = lock(&self.queue);
        if queue.events.saturating_add(events) > self.config.queue_capacity
            || queue.bytes.saturating_add(bytes) > self.config.queue_bytes
        {
            let depth = queue.events;
            drop(queue);
            self.shed(batch.events, depth);
            return Submitted::Shed;
        }
        queue.events += events;
        queue.bytes += bytes;
        queue.queued += 1;
        if !batch.samples.is_empty() {
            *queue
                .samples
                .entry(Arc::clone(&batch.source.environment))
                .or_default() += batch.samples.len();
        }
        queue.batches.push_back((
            batch,
            payload_id.filter(|id| !id.is_empty()).map(str::to_owned),
        ));
        let depth = queue.events;
        let queue_bytes = queue.bytes;
        drop(queue);
        self.counters
            .accepted
            .fetch_add(events as u64, Ordering::Relaxed);
        self.counters.skipped.fetch_add(skipped, Ordering::Relaxed);
        metrics::counter!("flagstaff_events_accepted_total").increment(events as u64);
        metrics::gauge!("flagstaff_events_queue_depth").set(depth as f64);
        metrics::gauge!("flagstaff_events_queue_bytes").set(queue_bytes as f64);
        // Half full: write now rather than at the next tick.
        if depth >= self.config.queue_capacity / 2 || queue_bytes >= self.config.queue_bytes / 2 {
            self.wake.notify_one();
        }
        Submitted::Queued
    }

    fn shed(&self, events: u64, depth: usize) {
        let dropped = self.counters.dropped.fetch_add(events, Ordering::Relaxed) + events;
        metrics::counter!("flagstaff_events_dropped_total").increment(events);
        let mut state = lock(&self.state);
        if state
            .last_shed_log
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            state.last_shed_log = Some(Instant::now());
            tracing::warn!(
                dropped_total = dropped,
                queue_depth = depth,
                queue_capacity = self.config.queue_capacity,
                "events queue full: shedding analytics payloads (SDKs are answered 202 and keep sending)"
            );
        }
    }

    /// How many full events of `environment` the next write still keeps as samples
    /// ([`Limits::samples_per_environment`] less those queued): what a payload's reader
    /// should keep ([`payload::parse_analytics_sampling`]). Payloads read at the same moment
    /// may together keep a few more; the writer's cap drops those.
    pub fn samples_wanted(&self, environment: &str) -> usize {
        let queued = lock(&self.queue)
            .samples
            .get(environment)
            .copied()
            .unwrap_or(0);
        self.config
            .limits
            .samples_per_environment
            .saturating_sub(queued)
    }

    /// Counts a payload refused as malformed.
    pub fn record_rejected(&self) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flagstaff_events_rejected_payloads_total").increment(1);
    }

    /// Writes everything queued before this call, and returns once it is in the database (or
    /// its write failed, which [`Health`] reports).
    pub async fn flush(&self) {
        let target = lock(&self.queue).queued;
        let mut written = self.written.subscribe();
        self.wake.notify_one();
        let _ = written.wait_for(|done| *done >= target).await;
    }

    /// Writes what is queued and stops the writer.
    pub async fn close(&self) {
        let mut stopped = self.stopped.subscribe();
        self.stop.send_replace(true);
        self.wake.notify_one();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    /// The pipeline's health now.
    pub fn health(&self) -> Health {
        let (queue_depth, queue_bytes) = {
            let queue = lock(&self.queue);
            (queue.events, queue.bytes)
        };
        let accepted = self.counters.accepted.load(Ordering::Relaxed);
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        let state = lock(&self.state);
        let window = Duration::from_secs(10);
        let (accepted_per_second, dropped_per_second) = state
            .samples
            .iter()
            .find(|(at, _, _)| at.elapsed() <= window)
            .map_or((0.0, 0.0), |(at, a, d)| {
                let seconds = at.elapsed().as_secs_f64().max(1.0);
                (
                    (accepted - a) as f64 / seconds,
                    (dropped - d) as f64 / seconds,
                )
            });
        Health {
            accepted_events: accepted,
            dropped_events: dropped,
            duplicate_payloads: self.counters.duplicates.load(Ordering::Relaxed),
            rejected_payloads: self.counters.rejected.load(Ordering::Relaxed),
            skipped_events: self.counters.skipped.load(Ordering::Relaxed),
            written_events: self.counters.written.load(Ordering::Relaxed),
            failed_events: self.counters.failed.load(Ordering::Relaxed),
            queue_depth,
            queue_capacity: self.config.queue_capacity,
            queue_bytes,
            queue_bytes_capacity: self.config.queue_bytes,
            accepted_per_second,
            dropped_per_second,
            last_write_at: state.last_write_at,
            last_write_millis: state.last_write_millis,
            last_error: state.last_error.clone(),
        }
    }

    /// Drains the queue, aggregates and writes once.
    async fn write_once(self: &Arc<Self>) {
        let (batches, queued) = {
            let mut queue = lock(&self.queue);
            queue.events = 0;
            queue.bytes = 0;
            queue.samples.clear();
            (std::mem::take(&mut queue.batches), queue.queued)
        };
        metrics::gauge!("flagstaff_events_queue_depth").set(0.0);
        metrics::gauge!("flagstaff_events_queue_bytes").set(0.0);
        if !batches.is_empty() {
            let started = Instant::now();
            let batches = self.first_counts(batches).await;
            // Folding a second's events (a hundred thousand at full load) takes a core for
            // a good part of that second, and freeing them as much again: on the blocking
            // pool, so that the async workers keep answering SDKs and the API meanwhile.
            let drained: u64 = batches.iter().map(|batch| batch.events).sum();
            let pipeline = Arc::clone(self);
            let Ok((write, events)) =
                tokio::task::spawn_blocking(move || pipeline.prepare(batches)).await
            else {
                // Only a panic gets here; the health figures still add up.
                self.counters.failed.fetch_add(drained, Ordering::Relaxed);
                tracing::error!(
                    events = drained,
                    "cannot aggregate analytics events; they are lost"
                );
                lock(&self.state).last_error = Some("aggregating analytics events failed".into());
                self.written.send_replace(queued);
                return;
            };
            let result = self.store.write(&write).await;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let mut state = lock(&self.state);
            state.last_write_millis = Some(elapsed);
            match result {
                Ok(()) => {
                    self.counters.written.fetch_add(events, Ordering::Relaxed);
                    metrics::counter!("flagstaff_events_written_total").increment(events);
                    state.last_write_at = Some(self.config.clock.now_millis());
                    state.last_error = None;
                }
                Err(e) => {
                    // Their contexts were not written after all.
                    lock(&self.recent_contexts).written.clear();
                    self.counters.failed.fetch_add(events, Ordering::Relaxed);
                    metrics::counter!("flagstaff_events_write_failures_total").increment(1);
                    tracing::error!(error = %e, events, "cannot write analytics events; they are lost");
                    state.last_error = Some(e.to_string());
                }
            }
        }
        self.written.send_replace(queued);
        let mut state = lock(&self.state);
        let now = Instant::now();
        state.samples.push_back((
            now,
            self.counters.accepted.load(Ordering::Relaxed),
            self.counters.dropped.load(Ordering::Relaxed),
        ));
        while state
            .samples
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > Duration::from_secs(60))
        {
            state.samples.pop_front();
        }
    }

    /// Folds drained batches into one write: experiment data, aggregate, the contexts not
    /// written in the last minute. Returns the write and how many events it holds. CPU only,
    /// for the blocking pool; the batches are freed here too.
    fn prepare(&self, batches: Vec<Batch>) -> (flagstaff_store::events::EventWrite, u64) {
        let mut aggregate = Aggregate::default();
        let running = self.experiments.snapshot();
        let mut experiments = flagstaff_store::events::ExperimentWrite::default();
        for mut batch in batches {
            experiments::collect(&running, &mut batch, &mut experiments);
            aggregate.add(batch, self.config.limits);
        }
        let events = aggregate.events;
        for (what, over) in [
            ("contexts", aggregate.contexts_over_limit),
            ("samples", aggregate.samples_over_limit),
            ("flags", aggregate.flags_over_limit),
            ("custom_keys", aggregate.custom_over_limit),
            ("migration_flags", aggregate.migration_over_limit()),
        ] {
            if over > 0 {
                metrics::counter!("flagstaff_events_over_limit_total", "what" => what)
                    .increment(over);
            }
        }
        let now = self.config.clock.now_millis();
        let mut write = aggregate.into_write(&self.config.retention, now);
        write.experiments = experiments;
        lock(&self.recent_contexts).keep_news(&mut write.contexts, now);
        (write, events)
    }

    /// The payloads no node has counted yet. The in-memory set in [`Pipeline::submit`] catches
    /// a retry that comes back to this node; behind a load balancer it may land on another,
    /// so each payload ID is also claimed in the events database, which every node shares,
    /// and a payload whose claim another node won is dropped here. When the database cannot
    /// be asked, the payloads are kept: counting a rare retry twice is better than losing
    /// every payload of a flush (whose write would fail anyway if the database is down).
    async fn first_counts(&self, batches: VecDeque<(Batch, Option<String>)>) -> Vec<Batch> {
        let ids: Vec<(&str, &str)> = batches
            .iter()
            .filter_map(|(batch, id)| Some((&*batch.source.environment, id.as_deref()?)))
            .collect();
        let claimed = match self
            .store
            .claim_payloads(&ids, self.config.clock.now_millis())
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check payload IDs across nodes; counting these payloads");
                vec![true; ids.len()]
            }
        };
        let mut claimed = claimed.into_iter();
        let mut first = Vec::with_capacity(batches.len());
        for (batch, id) in batches {
            if id.is_some() && claimed.next() == Some(false) {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flagstaff_events_duplicate_payloads_total").increment(1);
                // Accepted at submission, so no longer: the health figures stay a balance.
                self.counters
                    .accepted
                    .fetch_sub(batch.events, Ordering::Relaxed);
                continue;
            }
            first.push(batch);
        }
        first
    }

    async fn prune(&self) {
        match self
            .store
            .prune(&self.config.retention, self.config.clock.now_millis())
            .await
        {
            Ok(pruned) => tracing::debug!(?pruned, "old analytics removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove old analytics"),
        }
    }
}

async fn writer(pipeline: Arc<Pipeline>) {
    let mut stop = pipeline.stop.subscribe();
    let mut next_prune = Instant::now();
    loop {
        if Instant::now() >= next_prune {
            pipeline.prune().await;
            next_prune = Instant::now() + pipeline.config.prune_interval;
        }
        tokio::select! {
            () = tokio::time::sleep(pipeline.config.flush_interval) => {}
            () = pipeline.wake.notified() => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
        pipeline.write_once().await;
        if *stop.borrow() {
            break;
        }
    }
    pipeline.stopped.send_replace(true);
}
