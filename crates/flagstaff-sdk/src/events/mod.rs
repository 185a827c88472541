//! The analytics event processor (`ld-protocol.md` §6.4–6.6).
//!
//! Evaluations report here synchronously and cheaply: one short critical section that bumps a
//! summary counter, and only for flags that ask for it (`trackEvents`, experiments, a debug
//! window) a copy of the context into a bounded queue. Nothing on this path waits for the
//! network, and a full queue drops the event and counts it rather than blocking (summaries keep
//! counting). A background task flushes every `flush_interval`: it turns the counters into one
//! `summary` event, serialises the queued events (redacting private attributes only then, off
//! the evaluation path) and posts them with [`sender`].

pub(crate) mod context;
pub(crate) mod sender;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use flagstaff_protocol::{Context, Flag, Reason};
use serde_json::{Map, Value, json};

use crate::config::EventsConfig;
use context::{Redaction, event_context};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One evaluation, as the client reports it.
#[derive(Debug)]
pub(crate) struct Evaluation<'a> {
    /// The flag, when it exists.
    pub flag: Option<&'a Flag>,
    /// The key asked for.
    pub key: &'a str,
    pub context: &'a Context,
    /// The value returned (the default when there was no variation).
    pub value: &'a Value,
    pub variation: Option<usize>,
    /// The caller's default (`null` for prerequisites).
    pub default: &'a Value,
    pub reason: &'a Reason<&'a str>,
    /// Whether feature events carry the reason (a `*_detail` call or an experiment).
    pub with_reason: bool,
    /// `isExperiment` (§3.10).
    pub experiment: bool,
    /// The flag whose prerequisite this evaluation was.
    pub prereq_of: Option<&'a str>,
}

/// Counters and queue between two flushes.
#[derive(Debug, Default)]
struct Pending {
    summary: HashMap<Box<str>, FlagCounters, foldhash::fast::RandomState>,
    summary_start: u64,
    queue: Vec<QueuedEvent>,
}

#[derive(Debug)]
struct FlagCounters {
    default: Value,
    context_kinds: Vec<Box<str>>,
    counters: Vec<Counter>,
}

#[derive(Debug)]
struct Counter {
    variation: Option<usize>,
    /// `None`: the flag was not found (`"unknown": true`).
    version: Option<u64>,
    value: Value,
    count: u64,
}

/// A full event waiting for the flush, kept in its cheap form: contexts are serialised (and
/// redacted) only when flushed.
#[derive(Debug)]
enum QueuedEvent {
    Feature {
        debug: bool,
        creation_date: u64,
        key: String,
        version: Option<u64>,
        context: Context,
        variation: Option<usize>,
        value: Value,
        default: Value,
        reason: Option<Reason<String>>,
        prereq_of: Option<String>,
        sampling_ratio: Option<i64>,
    },
    Index {
        creation_date: u64,
        context: Context,
    },
    Identify {
        creation_date: u64,
        context: Context,
    },
    Custom {
        creation_date: u64,
        key: String,
        context: Context,
        data: Option<Value>,
        metric_value: Option<f64>,
    },
}

/// What the lock protects: the counters and queue that each flush takes, and the contexts seen,
/// which outlive flushes.
#[derive(Debug, Default)]
struct State {
    pending: Pending,
    seen: SeenContexts,
}

/// Context keys already sent in an `index` or `identify` event, as 64-bit hashes of the
/// fully-qualified key (so evaluations allocate nothing to check). Two generations approximate
/// LaunchDarkly's LRU: a key is "seen" if in either; when the current one is full it becomes the
/// previous one.
#[derive(Debug, Default)]
struct SeenContexts {
    current: std::collections::HashSet<u64, foldhash::fast::RandomState>,
    previous: std::collections::HashSet<u64, foldhash::fast::RandomState>,
}

impl SeenContexts {
    /// Marks `hash` seen; whether it was new.
    fn notice(&mut self, hash: u64, capacity: usize) -> bool {
        if self.current.contains(&hash) || self.previous.contains(&hash) {
            return false;
        }
        if self.current.len() >= capacity.max(1) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(hash);
        true
    }

    fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }
}

/// Counts what happened to events, for diagnostics and tests.
#[derive(Debug, Default)]
pub(crate) struct EventStats {
    pub dropped: AtomicU64,
    pub deduplicated_contexts: AtomicU64,
    pub payloads_sent: AtomicU64,
    pub payloads_failed: AtomicU64,
}

/// The processor's shared state.
#[derive(Debug)]
pub(crate) struct EventProcessor {
    config: EventsConfig,
    /// Everything an evaluation touches, behind one lock so that recording costs one short
    /// critical section.
    state: Mutex<State>,
    hasher: foldhash::fast::FixedState,
    /// The server's clock from the last event post's `Date` header (ms); debug events stop when
    /// either clock passes `debugEventsUntilDate` (§6.6).
    pub(crate) last_server_time: AtomicU64,
    /// Set after an unrecoverable answer (401, 403, 404, other 4xx but 400/408/413/429): no more
    /// events for the client's lifetime (§6.3).
    pub(crate) disabled: AtomicBool,
    pub(crate) stats: EventStats,
}

impl EventProcessor {
    pub(crate) fn new(config: EventsConfig) -> EventProcessor {
        EventProcessor {
            config,
            state: Mutex::new(State::default()),
            hasher: foldhash::fast::FixedState::with_seed(rand::random()),
            last_server_time: AtomicU64::new(0),
            disabled: AtomicBool::new(false),
            stats: EventStats::default(),
        }
    }

    pub(crate) fn config(&self) -> &EventsConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn context_hash(&self, context: &Context) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for individual in context.individuals() {
            individual.kind().as_str().hash(&mut hasher);
            individual.key().hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Queues an `index` event for a context (whose hash is `hash`) not seen recently.
    fn notice_context(&self, context: &Context, hash: u64, state: &mut State) {
        let new = state.seen.notice(hash, self.config.context_keys_capacity);
        if new {
            self.push(
                &mut state.pending,
                QueuedEvent::Index {
                    creation_date: now_ms(),
                    context: context.clone(),
                },
            );
        } else {
            self.stats
                .deduplicated_contexts
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn push(&self, pending: &mut Pending, event: QueuedEvent) {
        if pending.queue.len() >= self.config.capacity {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            pending.queue.push(event);
        }
    }

    /// Records one evaluation (§6.6): counts it in the summary unless the flag says not to,
    /// queues a feature event when the flag tracks events or runs an experiment (sampled), a
    /// debug event while the flag's debug window is open, and an `index` event for a context
    /// not seen recently.
    pub(crate) fn record_evaluation(&self, evaluation: &Evaluation<'_>) {
        if self.disabled.load(Ordering::Relaxed) {
            return;
        }
        let flag = evaluation.flag;
        let full = flag.is_some_and(|f| f.track_events) || evaluation.experiment;
        let debug_until = flag.and_then(|f| f.debug_events_until_date).unwrap_or(0);
        let debug = debug_until > 0 && {
            let now = now_ms();
            debug_until > now && debug_until > self.last_server_time.load(Ordering::Relaxed)
        };
        // The feature event would carry the context inline; without one, an index event tells
        // the server about the context.
        let full = full && sampled(flag.and_then(|f| f.sampling_ratio));
        let hash = (!full).then(|| self.context_hash(evaluation.context));
        let mut state = self.lock();
        if !flag.is_some_and(|f| f.exclude_from_summaries) {
            self.count(&mut state.pending, evaluation);
        }
        match hash {
            None => {
                let event = feature_event(evaluation, false);
                self.push(&mut state.pending, event);
            }
            Some(hash) => self.notice_context(evaluation.context, hash, &mut state),
        }
        if debug {
            let event = feature_event(evaluation, true);
            self.push(&mut state.pending, event);
        }
    }

    fn count(&self, pending: &mut Pending, evaluation: &Evaluation<'_>) {
        if pending.summary.is_empty() {
            pending.summary_start = now_ms();
        }
        let counters = match pending.summary.get_mut(evaluation.key) {
            Some(counters) => counters,
            None => pending
                .summary
                .entry(Box::from(evaluation.key))
                .or_insert_with(|| FlagCounters {
                    default: evaluation.default.clone(),
                    context_kinds: Vec::new(),
                    counters: Vec::new(),
                }),
        };
        for individual in evaluation.context.individuals() {
            let kind = individual.kind().as_str();
            if !counters.context_kinds.iter().any(|k| &**k == kind) {
                counters.context_kinds.push(Box::from(kind));
            }
        }
        let version = evaluation.flag.map(|f| f.version);
        match counters
            .counters
            .iter_mut()
            .find(|c| c.variation == evaluation.variation && c.version == version)
        {
            Some(counter) => counter.count += 1,
            None => counters.counters.push(Counter {
                variation: evaluation.variation,
                version,
                value: evaluation.value.clone(),
                count: 1,
            }),
        }
    }

    /// A custom event (`track`).
    pub(crate) fn record_custom(
        &self,
        context: &Context,
        key: &str,
        data: Option<Value>,
        metric_value: Option<f64>,
    ) {
        if self.disabled.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.lock();
        let event = QueuedEvent::Custom {
            creation_date: now_ms(),
            key: key.to_owned(),
            context: context.clone(),
            data: data.filter(|d| !d.is_null()),
            metric_value,
        };
        self.push(&mut state.pending, event);
    }

    /// An identify event; the context counts as seen afterwards.
    pub(crate) fn record_identify(&self, context: &Context) {
        if self.disabled.load(Ordering::Relaxed) {
            return;
        }
        let hash = self.context_hash(context);
        let mut state = self.lock();
        state.seen.notice(hash, self.config.context_keys_capacity);
        let event = QueuedEvent::Identify {
            creation_date: now_ms(),
            context: context.clone(),
        };
        self.push(&mut state.pending, event);
    }

    /// Forgets the contexts seen (every `context_keys_flush_interval`).
    pub(crate) fn forget_contexts(&self) {
        self.lock().seen.clear();
    }

    /// Takes everything pending and returns the payload to post (empty: nothing to send).
    pub(crate) fn take_payload(&self) -> Vec<Value> {
        let pending = std::mem::take(&mut self.lock().pending);
        let mut out: Vec<Value> = pending
            .queue
            .into_iter()
            .map(|event| self.output(event))
            .collect();
        if !pending.summary.is_empty() {
            let mut features = Map::new();
            let mut summary: Vec<(Box<str>, FlagCounters)> = pending.summary.into_iter().collect();
            summary.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, flag) in summary {
                let counters: Vec<Value> = flag
                    .counters
                    .into_iter()
                    .map(|c| {
                        let mut counter = Map::new();
                        if let Some(variation) = c.variation {
                            counter.insert("variation".into(), json!(variation));
                        }
                        match c.version {
                            Some(version) => counter.insert("version".into(), json!(version)),
                            None => counter.insert("unknown".into(), json!(true)),
                        };
                        counter.insert("value".into(), c.value);
                        counter.insert("count".into(), json!(c.count));
                        Value::Object(counter)
                    })
                    .collect();
                features.insert(
                    key.into(),
                    json!({"default": flag.default, "contextKinds": flag.context_kinds, "counters": counters}),
                );
            }
            out.push(
                json!({"kind": "summary", "startDate": pending.summary_start,
                            "endDate": now_ms().max(pending.summary_start), "features": features}),
            );
        }
        out
    }

    fn output(&self, event: QueuedEvent) -> Value {
        match event {
            QueuedEvent::Feature {
                debug,
                creation_date,
                key,
                version,
                context,
                variation,
                value,
                default,
                reason,
                prereq_of,
                sampling_ratio,
            } => {
                // Debug events always show the whole (privacy-redacted) context (§6.4).
                let redaction = if debug {
                    Redaction::Private
                } else {
                    Redaction::PrivateAndAnonymous
                };
                let mut object = Map::new();
                object.insert(
                    "kind".into(),
                    json!(if debug { "debug" } else { "feature" }),
                );
                object.insert("creationDate".into(), json!(creation_date));
                object.insert("key".into(), json!(key));
                if let Some(version) = version {
                    object.insert("version".into(), json!(version));
                }
                object.insert(
                    "context".into(),
                    event_context(&context, &self.config, redaction),
                );
                if let Some(variation) = variation {
                    object.insert("variation".into(), json!(variation));
                }
                object.insert("value".into(), value);
                object.insert("default".into(), default);
                if let Some(reason) = reason {
                    object.insert("reason".into(), json!(reason));
                }
                if let Some(prereq_of) = prereq_of {
                    object.insert("prereqOf".into(), json!(prereq_of));
                }
                if let Some(ratio) = sampling_ratio.filter(|r| *r != 1) {
                    object.insert("samplingRatio".into(), json!(ratio));
                }
                Value::Object(object)
            }
            QueuedEvent::Index {
                creation_date,
                context,
            } => json!({"kind": "index", "creationDate": creation_date,
                        "context": event_context(&context, &self.config, Redaction::Private)}),
            QueuedEvent::Identify {
                creation_date,
                context,
            } => json!({"kind": "identify", "creationDate": creation_date,
                        "context": event_context(&context, &self.config, Redaction::Private)}),
            QueuedEvent::Custom {
                creation_date,
                key,
                context,
                data,
                metric_value,
            } => {
                let mut object = Map::new();
                object.insert("kind".into(), json!("custom"));
                object.insert("creationDate".into(), json!(creation_date));
                object.insert("key".into(), json!(key));
                object.insert(
                    "context".into(),
                    event_context(&context, &self.config, Redaction::Private),
                );
                if let Some(data) = data {
                    object.insert("data".into(), data);
                }
                if let Some(metric) = metric_value {
                    object.insert("metricValue".into(), json!(metric));
                }
                Value::Object(object)
            }
        }
    }
}

/// `samplingRatio` (§6.6): absent or 1 keeps every event, 0 none, N one in N on average.
fn sampled(ratio: Option<i64>) -> bool {
    match ratio {
        None | Some(1) => true,
        Some(n) if n <= 0 => false,
        Some(n) => rand::random::<u64>().is_multiple_of(n as u64),
    }
}

fn feature_event(evaluation: &Evaluation<'_>, debug: bool) -> QueuedEvent {
    QueuedEvent::Feature {
        debug,
        creation_date: now_ms(),
        key: evaluation.key.to_owned(),
        version: evaluation.flag.map(|f| f.version),
        context: evaluation.context.clone(),
        variation: evaluation.variation,
        value: evaluation.value.clone(),
        default: evaluation.default.clone(),
        reason: (evaluation.with_reason || evaluation.experiment)
            .then(|| evaluation.reason.to_owned_reason()),
        prereq_of: evaluation.prereq_of.map(str::to_owned),
        sampling_ratio: evaluation.flag.and_then(|f| f.sampling_ratio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagstaff_protocol::ReasonKind;

    fn context(key: &str) -> Context {
        Context::from_json(&json!({"kind": "user", "key": key, "email": format!("{key}@x")}))
            .unwrap()
    }

    fn flag(key: &str, version: u64, track: bool) -> Flag {
        Flag {
            key: key.into(),
            version,
            track_events: track,
            ..Flag::default()
        }
    }

    fn evaluate(
        processor: &EventProcessor,
        flag: Option<&Flag>,
        key: &str,
        context: &Context,
        variation: Option<usize>,
    ) {
        let value = json!(variation.unwrap_or(99));
        let reason = Reason::new(ReasonKind::Fallthrough {
            in_experiment: false,
        });
        processor.record_evaluation(&Evaluation {
            flag,
            key,
            context,
            value: &value,
            variation,
            default: &json!("d"),
            reason: &reason,
            with_reason: false,
            experiment: false,
            prereq_of: None,
        });
    }

    #[test]
    fn summaries_count_per_variation_and_version_and_index_contexts_once() {
        let processor = EventProcessor::new(EventsConfig::default());
        let f = flag("f", 3, false);
        for i in 0..5 {
            evaluate(&processor, Some(&f), "f", &context("a"), Some(i % 2));
        }
        evaluate(&processor, None, "missing", &context("b"), None);
        let payload = processor.take_payload();
        let kinds: Vec<&str> = payload
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["index", "index", "summary"]);
        assert_eq!(payload[0]["context"]["key"], json!("a"));
        let summary = &payload[2];
        assert_eq!(
            summary["features"]["f"],
            json!({"default": "d", "contextKinds": ["user"], "counters": [
                {"variation": 0, "version": 3, "value": 0, "count": 3},
                {"variation": 1, "version": 3, "value": 1, "count": 2}]})
        );
        assert_eq!(
            summary["features"]["missing"]["counters"],
            json!([{"unknown": true, "value": 99, "count": 1}])
        );
        assert!(summary["endDate"].as_u64() >= summary["startDate"].as_u64());
        // Nothing pending afterwards; the contexts stay known until forgotten.
        assert!(processor.take_payload().is_empty());
        evaluate(&processor, Some(&f), "f", &context("a"), Some(0));
        assert_eq!(processor.take_payload().len(), 1);
        processor.forget_contexts();
        evaluate(&processor, Some(&f), "f", &context("a"), Some(0));
        assert_eq!(processor.take_payload()[0]["kind"], json!("index"));
    }

    #[test]
    fn tracked_flags_send_feature_events_with_inline_contexts() {
        let processor = EventProcessor::new(EventsConfig {
            private_attributes: vec![flagstaff_protocol::AttrRef::new("email")],
            ..EventsConfig::default()
        });
        let f = flag("t", 8, true);
        evaluate(&processor, Some(&f), "t", &context("a"), Some(1));
        let payload = processor.take_payload();
        assert_eq!(payload.len(), 2, "{payload:?}");
        let feature = &payload[0];
        assert_eq!(feature["kind"], json!("feature"));
        assert_eq!(feature["version"], json!(8));
        assert_eq!(feature["variation"], json!(1));
        assert_eq!(feature["default"], json!("d"));
        assert_eq!(
            feature["context"],
            json!({"kind": "user", "key": "a", "_meta": {"redactedAttributes": ["email"]}})
        );
        assert!(feature.get("reason").is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_but_summaries_go_on() {
        let processor = EventProcessor::new(EventsConfig {
            capacity: 2,
            ..EventsConfig::default()
        });
        let f = flag("t", 1, true);
        for i in 0..10 {
            evaluate(
                &processor,
                Some(&f),
                "t",
                &context(&format!("c{i}")),
                Some(0),
            );
        }
        assert_eq!(processor.stats.dropped.load(Ordering::Relaxed), 8);
        let payload = processor.take_payload();
        assert_eq!(payload.len(), 3);
        assert_eq!(
            payload[2]["features"]["t"]["counters"][0]["count"],
            json!(10)
        );
    }

    #[test]
    fn excluded_flags_are_not_summarised_and_custom_events_carry_data() {
        let processor = EventProcessor::new(EventsConfig::default());
        let mut f = flag("x", 1, false);
        f.exclude_from_summaries = true;
        evaluate(&processor, Some(&f), "x", &context("a"), Some(0));
        processor.record_identify(&context("b"));
        processor.record_custom(
            &context("b"),
            "purchase",
            Some(json!({"sku": 1})),
            Some(9.5),
        );
        let payload = processor.take_payload();
        let kinds: Vec<&str> = payload
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["index", "identify", "custom"]);
        assert_eq!(payload[2]["data"], json!({"sku": 1}));
        assert_eq!(payload[2]["metricValue"], json!(9.5));
    }

    #[test]
    fn sampling_ratio_zero_never_and_one_always() {
        assert!(!sampled(Some(0)));
        assert!(sampled(Some(1)));
        assert!(sampled(None));
        let kept = (0..10_000).filter(|_| sampled(Some(10))).count();
        assert!((700..1300).contains(&kept), "{kept}");
    }
}
