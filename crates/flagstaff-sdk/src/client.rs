//! The client: evaluations, events, lifecycle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flagstaff_eval::{
    BootstrapOptions, CompiledFlag, Detail, Observer, Snapshot, TypedDetail, ValueType,
    is_experiment,
};
use flagstaff_protocol::{Context, ErrorKind, Reason};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, DataSourceConfig};
use crate::events::{self, Evaluation, EventProcessor};
use crate::http::Http;
use crate::source::{self, DataSourceState, DataSourceStatus, FlagChange, Shared};

/// A flag value with how it was chosen: what the `*_detail` methods return.
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationDetail<T> {
    /// The value (the caller's default when the flag gave none).
    pub value: T,
    /// The index of the variation served, if one was.
    pub variation_index: Option<usize>,
    /// Why this value (`ld-protocol.md` §3.9): `OFF`, `FALLTHROUGH`, `TARGET_MATCH`,
    /// `RULE_MATCH` with the rule, `PREREQUISITE_FAILED`, or `ERROR` with its kind
    /// (`CLIENT_NOT_READY`, `FLAG_NOT_FOUND`, `WRONG_TYPE`, `MALFORMED_FLAG`).
    pub reason: Reason,
}

/// Why [`Client::wait_for_initialization`] returned without data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitializationError {
    /// No data arrived in time; the client keeps trying in the background.
    #[error("the client did not receive flag data within {0:?}; it keeps trying")]
    Timeout(Duration),
    /// The data source stopped for good (for example, the server refused the SDK key).
    #[error("the data source stopped: {0}")]
    Failed(String),
}

/// An `allFlagsState` result: the document a browser SDK accepts as `bootstrap`
/// (`ld-protocol.md` §5.10).
#[derive(Clone, Debug, PartialEq)]
pub struct AllFlagsState {
    document: Value,
}

impl AllFlagsState {
    /// Whether the client had data (`$valid`); when not, the document has no flags.
    pub fn valid(&self) -> bool {
        self.document["$valid"] == Value::Bool(true)
    }

    /// One flag's value.
    pub fn value(&self, key: &str) -> Option<&Value> {
        if key.starts_with('$') {
            return None;
        }
        self.document.get(key)
    }

    /// The bootstrap document as JSON.
    pub fn as_json(&self) -> &Value {
        &self.document
    }

    /// Consumes into the bootstrap document.
    pub fn into_json(self) -> Value {
        self.document
    }
}

impl serde::Serialize for AllFlagsState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document.serialize(serializer)
    }
}

/// What the events task is asked to do.
#[derive(Debug)]
enum Command {
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    events: Option<Arc<EventProcessor>>,
    commands: Option<mpsc::Sender<Command>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    offline: bool,
    sdk_key: String,
}

/// A Flagstaff client: cheap to clone (clones share everything), evaluates flags in memory.
///
/// Create one per process with [`Client::new`] inside a Tokio runtime, wait for it with
/// [`Client::wait_for_initialization`], evaluate with the `*_variation` methods, and
/// [`Client::close`] it on shutdown so that pending events are delivered.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use flagstaff_sdk::{Client, Config, ContextBuilder};
///
/// let config = Config::builder("sdk-0123").base_uri("http://localhost:8080").build()?;
/// let client = Client::new(config)?;
/// client.wait_for_initialization(std::time::Duration::from_secs(5)).await?;
/// let context = ContextBuilder::new("user-42").set("country", "NZ").build()?;
/// if client.bool_variation(&context, "new-checkout", false) {
///     // the new code path
/// }
/// client.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

static NULL: Value = Value::Null;

impl Client {
    /// Creates the client and starts its data source and event delivery on the current Tokio
    /// runtime. Returns at once; see [`Client::wait_for_initialization`].
    pub fn new(config: Config) -> Result<Client, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let http = Http::new(&config)?;
        let shared = Arc::new(Shared::new());
        let mut tasks = Vec::new();
        let data_task: Option<JoinHandle<()>> = match (&config.data_source, config.offline) {
            (DataSourceConfig::File { paths, reload }, _) => {
                // Read synchronously so that a file-backed client is ready on return.
                match source::file::load(paths) {
                    Ok(data) => shared.replace(data),
                    Err(why) => shared.set_state(DataSourceState::Interrupted, Some(why)),
                }
                reload.map(|every| {
                    runtime.spawn(source::file::run(
                        shared.clone(),
                        paths.clone(),
                        Some(every),
                    ))
                })
            }
            (_, true) => {
                // Offline with no files: nothing will ever arrive, so the client counts as
                // initialized and every evaluation gives the caller's default.
                shared.replace(flagstaff_protocol::FlagData::default());
                None
            }
            (
                DataSourceConfig::Streaming {
                    initial_reconnect_delay,
                    read_timeout,
                },
                false,
            ) => Some(runtime.spawn(source::streaming::run(
                shared.clone(),
                http.clone(),
                *initial_reconnect_delay,
                *read_timeout,
            ))),
            (DataSourceConfig::Polling { interval }, false) => Some(runtime.spawn(
                source::polling::run(shared.clone(), http.clone(), *interval),
            )),
        };
        tasks.extend(data_task);
        let (events, commands) = if config.sends_events() {
            let processor = Arc::new(EventProcessor::new(config.events.clone()));
            let (tx, rx) = mpsc::channel(16);
            tasks.push(runtime.spawn(run_events(processor.clone(), http, rx)));
            (Some(processor), Some(tx))
        } else {
            (None, None)
        };
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                events,
                commands,
                tasks: Mutex::new(tasks),
                closed: AtomicBool::new(false),
                offline: config.offline,
                sdk_key: config.sdk_key.clone(),
            }),
        })
    }

    /// Waits until the first flag data arrived, the data source gave up, or `timeout` passed.
    /// Evaluations before then return the caller's default with `CLIENT_NOT_READY`; after a
    /// timeout the client keeps trying and starts serving flags as soon as data arrives.
    pub async fn wait_for_initialization(
        &self,
        timeout: Duration,
    ) -> Result<(), InitializationError> {
        let shared = &self.inner.shared;
        let wait =
            crate::source::wait_until_initialized(shared.watch_status(), || shared.initialized());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(InitializationError::Failed(why)),
            Err(_) => Err(InitializationError::Timeout(timeout)),
        }
    }

    /// Whether flag data has arrived.
    pub fn initialized(&self) -> bool {
        self.inner.shared.initialized()
    }

    /// The data source's state and last error.
    pub fn data_source_status(&self) -> DataSourceStatus {
        self.inner.shared.status()
    }

    /// Follows the data source's state.
    pub fn watch_data_source_status(&self) -> watch::Receiver<DataSourceStatus> {
        self.inner.shared.watch_status()
    }

    /// Subscribes to flag changes after initialization: one [`FlagChange`] per flag whose
    /// configuration changed, including flags that changed only through a prerequisite or a
    /// segment they use. A receiver that falls more than 1,024 changes behind skips the oldest
    /// ([`broadcast::error::RecvError::Lagged`]); re-read what you need then.
    pub fn flag_changes(&self) -> broadcast::Receiver<FlagChange> {
        self.inner.shared.subscribe_changes()
    }

    /// Evaluates, applies the default and type, and records the analytics events.
    fn evaluate<'a>(
        &self,
        snapshot: &'a Snapshot,
        context: &Context,
        key: &'a str,
        default: &'a Value,
        value_type: ValueType,
        with_reason: bool,
    ) -> TypedDetail<'a> {
        let events = self.inner.events.as_deref();
        if !self.inner.shared.initialized() {
            let detail = TypedDetail {
                value: std::borrow::Cow::Borrowed(default),
                variation_index: None,
                reason: Reason::error(ErrorKind::ClientNotReady),
            };
            if let Some(events) = events {
                record(
                    events,
                    None,
                    key,
                    context,
                    &detail,
                    default,
                    with_reason,
                    false,
                );
            }
            return detail;
        }
        let Some(id) = snapshot.flag_id(key) else {
            let detail = Detail::error(ErrorKind::FlagNotFound).with_default(default, value_type);
            if let Some(events) = events {
                record(
                    events,
                    None,
                    key,
                    context,
                    &detail,
                    default,
                    with_reason,
                    false,
                );
            }
            return detail;
        };
        let flag = snapshot.flag(id);
        let Some(events) = events else {
            return snapshot
                .evaluate_id(id, context)
                .with_default(default, value_type);
        };
        let mut prerequisites = PrerequisiteEvents { events, context };
        let detail = snapshot
            .evaluate_observed(id, context, &mut prerequisites)
            .with_default(default, value_type);
        let experiment = is_experiment(flag.source(), &detail.reason);
        record(
            events,
            Some(flag),
            key,
            context,
            &detail,
            default,
            with_reason,
            experiment,
        );
        detail
    }

    fn typed<T>(
        &self,
        context: &Context,
        key: &str,
        default: Value,
        value_type: ValueType,
        with_reason: bool,
        convert: impl FnOnce(&Value) -> Option<T>,
    ) -> (Option<T>, Option<usize>, Option<Reason>) {
        let snapshot = self.inner.shared.store.snapshot();
        let detail = self.evaluate(&snapshot, context, key, &default, value_type, with_reason);
        let value = convert(&detail.value);
        let reason = with_reason.then(|| detail.reason.to_owned_reason());
        (value, detail.variation_index, reason)
    }

    fn detail<T>(
        &self,
        context: &Context,
        key: &str,
        default: Value,
        value_type: ValueType,
        convert: impl FnOnce(&Value) -> Option<T>,
        fallback: T,
    ) -> EvaluationDetail<T> {
        let (value, variation_index, reason) =
            self.typed(context, key, default, value_type, true, convert);
        EvaluationDetail {
            value: value.unwrap_or(fallback),
            variation_index,
            reason: reason.unwrap_or_else(|| Reason::error(ErrorKind::Exception)),
        }
    }

    /// A boolean flag's value for `context`, or `default` (wrong type, no such flag, not
    /// initialized, off without an off variation).
    pub fn bool_variation(&self, context: &Context, flag_key: &str, default: bool) -> bool {
        let snapshot = self.inner.shared.store.snapshot();
        let default_value = Value::Bool(default);
        let detail = self.evaluate(
            &snapshot,
            context,
            flag_key,
            &default_value,
            ValueType::Bool,
            false,
        );
        detail.value.as_bool().unwrap_or(default)
    }

    /// A string flag's value.
    pub fn str_variation(&self, context: &Context, flag_key: &str, default: &str) -> String {
        self.typed(
            context,
            flag_key,
            Value::String(default.to_owned()),
            ValueType::String,
            false,
            |v| v.as_str().map(str::to_owned),
        )
        .0
        .unwrap_or_else(|| default.to_owned())
    }

    /// A number flag's value truncated toward zero, as LaunchDarkly's `intVariation`.
    pub fn int_variation(&self, context: &Context, flag_key: &str, default: i64) -> i64 {
        self.typed(
            context,
            flag_key,
            Value::from(default),
            ValueType::Int,
            false,
            Value::as_i64,
        )
        .0
        .unwrap_or(default)
    }

    /// A number flag's value.
    pub fn float_variation(&self, context: &Context, flag_key: &str, default: f64) -> f64 {
        self.typed(
            context,
            flag_key,
            Value::from(default),
            ValueType::Double,
            false,
            Value::as_f64,
        )
        .0
        .unwrap_or(default)
    }

    /// A flag's value of any JSON type.
    pub fn json_variation(&self, context: &Context, flag_key: &str, default: Value) -> Value {
        let fallback = default.clone();
        self.typed(context, flag_key, default, ValueType::Any, false, |v| {
            Some(v.clone())
        })
        .0
        .unwrap_or(fallback)
    }

    /// [`Client::bool_variation`] with the variation index and reason.
    pub fn bool_variation_detail(
        &self,
        context: &Context,
        flag_key: &str,
        default: bool,
    ) -> EvaluationDetail<bool> {
        self.detail(
            context,
            flag_key,
            Value::Bool(default),
            ValueType::Bool,
            Value::as_bool,
            default,
        )
    }

    /// [`Client::str_variation`] with the variation index and reason.
    pub fn str_variation_detail(
        &self,
        context: &Context,
        flag_key: &str,
        default: &str,
    ) -> EvaluationDetail<String> {
        self.detail(
            context,
            flag_key,
            Value::String(default.to_owned()),
            ValueType::String,
            |v| v.as_str().map(str::to_owned),
            default.to_owned(),
        )
    }

    /// [`Client::int_variation`] with the variation index and reason.
    pub fn int_variation_detail(
        &self,
        context: &Context,
        flag_key: &str,
        default: i64,
    ) -> EvaluationDetail<i64> {
        self.detail(
            context,
            flag_key,
            Value::from(default),
            ValueType::Int,
            Value::as_i64,
            default,
        )
    }

    /// [`Client::float_variation`] with the variation index and reason.
    pub fn float_variation_detail(
        &self,
        context: &Context,
        flag_key: &str,
        default: f64,
    ) -> EvaluationDetail<f64> {
        self.detail(
            context,
            flag_key,
            Value::from(default),
            ValueType::Double,
            Value::as_f64,
            default,
        )
    }

    /// [`Client::json_variation`] with the variation index and reason.
    pub fn json_variation_detail(
        &self,
        context: &Context,
        flag_key: &str,
        default: Value,
    ) -> EvaluationDetail<Value> {
        let fallback = default.clone();
        self.detail(
            context,
            flag_key,
            default,
            ValueType::Any,
            |v| Some(v.clone()),
            fallback,
        )
    }

    /// Every flag's value for `context`, as the bootstrap document LaunchDarkly's browser SDK
    /// accepts (`ld-protocol.md` §5.10). Sends no analytics events. Before initialization the
    /// result is empty and not [`AllFlagsState::valid`].
    pub fn all_flags_state(&self, context: &Context, options: BootstrapOptions) -> AllFlagsState {
        if !self.initialized() {
            return AllFlagsState {
                document: serde_json::json!({"$flagsState": {}, "$valid": false}),
            };
        }
        AllFlagsState {
            document: self
                .inner
                .shared
                .store
                .snapshot()
                .bootstrap(context, options),
        }
    }

    /// The secure-mode hash of `context` (`ld-protocol.md` §5.7): what a page passes to
    /// LaunchDarkly's browser SDK as `hash` when its environment is in secure mode, so that a
    /// browser cannot ask for another user's flags. Lowercase hex of HMAC-SHA256 keyed with the
    /// SDK key over the context's fully-qualified key.
    pub fn secure_mode_hash(&self, context: &Context) -> String {
        crate::hmac::hmac_sha256_hex(
            self.inner.sdk_key.as_bytes(),
            context.fully_qualified_key().as_bytes(),
        )
    }

    /// Records a custom event (`track`), with optional data and a numeric metric value for
    /// experiments.
    pub fn track(
        &self,
        context: &Context,
        event_key: &str,
        data: Option<Value>,
        metric_value: Option<f64>,
    ) {
        if let Some(events) = &self.inner.events {
            events.record_custom(context, event_key, data, metric_value);
        }
    }

    /// Records an identify event: tells the server about a context (its attributes, minus
    /// private ones) without evaluating anything.
    pub fn identify(&self, context: &Context) {
        if let Some(events) = &self.inner.events {
            events.record_identify(context);
        }
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.inner
            .events
            .as_ref()
            .map_or(0, |e| e.stats.dropped.load(Ordering::Relaxed))
    }

    /// Delivers pending events now and waits for the delivery (including its one retry).
    pub async fn flush(&self) {
        if let Some(commands) = &self.inner.commands {
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Stops the data source, delivers pending events and stops event delivery. Evaluations
    /// afterwards keep answering from the last data, and send no events. Idempotent.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(commands) = &self.inner.commands {
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
        if let Some(events) = &self.inner.events {
            events.disabled.store(true, Ordering::Relaxed);
        }
        if !self.inner.offline {
            self.inner
                .shared
                .set_state(DataSourceState::Off, Some("closed".into()));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last clone is gone without `close`: stop the background tasks (pending events
        // are lost; `close` delivers them).
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    events: &EventProcessor,
    flag: Option<&CompiledFlag>,
    key: &str,
    context: &Context,
    detail: &TypedDetail<'_>,
    default: &Value,
    with_reason: bool,
    experiment: bool,
) {
    events.record_evaluation(&Evaluation {
        flag: flag.map(CompiledFlag::source),
        key,
        context,
        value: &detail.value,
        variation: detail.variation_index,
        default,
        reason: &detail.reason,
        with_reason,
        experiment,
        prereq_of: None,
    });
}

/// Reports prerequisite evaluations as their own events (`prereqOf`, §6.6).
struct PrerequisiteEvents<'a> {
    events: &'a EventProcessor,
    context: &'a Context,
}

impl Observer for PrerequisiteEvents<'_> {
    fn prerequisite_evaluated(
        &mut self,
        parent: &CompiledFlag,
        prerequisite: &CompiledFlag,
        result: &Detail<'_>,
    ) {
        self.events.record_evaluation(&Evaluation {
            flag: Some(prerequisite.source()),
            key: prerequisite.key(),
            context: self.context,
            value: result.value.unwrap_or(&NULL),
            variation: result.variation_index,
            default: &NULL,
            reason: &result.reason,
            with_reason: false,
            experiment: is_experiment(prerequisite.source(), &result.reason),
            prereq_of: Some(parent.key()),
        });
    }
}

/// Flushes every interval and on request; forgets seen contexts periodically.
async fn run_events(
    processor: Arc<EventProcessor>,
    http: Http,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut flush = tokio::time::interval(processor.config().flush_interval);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    flush.tick().await;
    let mut forget = tokio::time::interval(processor.config().context_keys_flush_interval);
    forget.tick().await;
    loop {
        tokio::select! {
            _ = flush.tick() => {
                events::sender::send(&http, &processor, processor.take_payload()).await;
            }
            _ = forget.tick() => processor.forget_contexts(),
            command = commands.recv() => match command {
                Some(Command::Flush(done)) => {
                    events::sender::send(&http, &processor, processor.take_payload()).await;
                    let _ = done.send(());
                }
                Some(Command::Close(done)) => {
                    events::sender::send(&http, &processor, processor.take_payload()).await;
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
        }
    }
}
