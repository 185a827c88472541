//! Reading one events payload (`ld-protocol.md` §6.2, §6.4) into a [`Batch`]: what it adds to
//! the counters, which contexts it shows, which events are worth keeping as samples.
//!
//! SDKs stop sending for good after most 4xx answers (§6.3), so only a payload that is not what
//! the endpoint takes at all (not JSON, not an array) is refused. Inside it everything is
//! lenient: unknown kinds, events without the fields a kind needs and counters with nonsense
//! counts are skipped and counted in [`Batch::skipped`], never a reason to reject the rest.
//!
//! Private attributes never go further than this module. SDKs redact them before sending
//! (§6.5), but an unsummarised source such as the PHP SDK (§6.8) or an older SDK can send a
//! context that still lists `_meta.privateAttributes` or `privateAttributeNames`; those
//! attributes are removed here, and only their names are kept, in `redacted`.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

#[path = "payload_fields.rs"]
mod fields;
use fields::read_event;

#[path = "payload_contexts.rs"]
mod contexts;
use contexts::{
    push_context_keys, push_user_key, read_context, read_event_contexts, read_owned_context,
};

/// How far in the past an SDK's own timestamp is believed (older ones are taken as "when it
/// arrived"): the longest retention of any bucket.
const MAX_PAST_MILLIS: i64 = 400 * 86_400_000;
/// How far in the future an SDK's clock may be before its timestamps are not believed.
const MAX_FUTURE_MILLIS: i64 = 5 * 60_000;
/// Longer flag keys, event keys, context kinds or keys are not kept (no real SDK sends them;
/// they would only bloat the database).
const MAX_KEY_LEN: usize = 512;
/// A context whose attributes serialize to more than this is kept with its key only.
const MAX_ATTRIBUTES_LEN: usize = 16 * 1024;
/// SDK names, versions and wrappers are cut to this many characters.
const MAX_LABEL_LEN: usize = 64;
/// A custom event's `data` that serializes to more than this is not kept in its sample (the
/// event still counts): `track` data is for a glance in the dashboard, and a browser with the
/// public client-side ID must not be able to fill the samples table with megabytes per event.
pub const MAX_CUSTOM_DATA_LEN: usize = 8 * 1024;

/// Which SDK sent a payload, from its headers (§4.1, §6.2) or its diagnostic event (§6.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SdkIdentity {
    /// `PythonClient`, `NodeJSClient`, `JSClient`, ... or `unknown`.
    pub name: String,
    /// Its version, or empty.
    pub version: String,
    /// `X-LaunchDarkly-Wrapper`, e.g. `react-client-sdk/3.0.0`, or empty.
    pub wrapper: String,
}

fn label(text: &str) -> String {
    text.trim().chars().take(MAX_LABEL_LEN).collect()
}

impl SdkIdentity {
    /// Reads the SDK from request headers: `X-LaunchDarkly-User-Agent` (browser SDKs, whose
    /// `User-Agent` is the browser's), else `User-Agent`, each `Name/version`.
    pub fn from_headers(
        user_agent: Option<&str>,
        ld_user_agent: Option<&str>,
        wrapper: Option<&str>,
    ) -> SdkIdentity {
        let agent = ld_user_agent
            .or(user_agent)
            .and_then(|agent| agent.split_whitespace().next())
            // A browser's own agent names the browser, not the SDK.
            .filter(|agent| !agent.starts_with("Mozilla/"));
        let (name, version) = match agent {
            Some(agent) => match agent.split_once('/') {
                Some((name, version)) => (label(name), label(version)),
                None => (label(agent), String::new()),
            },
            None => (String::new(), String::new()),
        };
        SdkIdentity {
            name: if name.is_empty() {
                "unknown".into()
            } else {
                name
            },
            version,
            wrapper: wrapper.map(label).unwrap_or_default(),
        }
    }
}

/// Where a payload came from and how to read it.
#[derive(Clone, Debug)]
pub struct Source {
    /// `project/environment` of the credential it was sent with.
    pub environment: Arc<str>,
    /// The SDK that sent it.
    pub sdk: SdkIdentity,
    /// `X-LaunchDarkly-Event-Schema` (absent = 1).
    pub schema: u32,
    /// `X-LaunchDarkly-Unsummarized` was present (§6.8).
    pub unsummarized: bool,
    /// It came with an SDK key: a server-side SDK. Only those run migrations (§6.4), so
    /// `migration_op` events sent with the public client-side ID or a mobile key are not
    /// counted: anyone could otherwise write a migration's numbers.
    pub server_side: bool,
    /// When it arrived (Unix ms).
    pub received_at: i64,
}

impl Source {
    /// Whether `feature` events must be summarised here because the SDK did not (§6.8: PHP,
    /// and like LaunchDarkly's Relay, any schema below 3).
    fn summarise_features(&self) -> bool {
        self.unsummarized || self.schema < 3
    }

    /// An SDK timestamp, if it is believable; otherwise when the payload arrived.
    fn time(&self, value: Option<&Value>) -> i64 {
        self.time_at(value.and_then(Value::as_i64))
    }

    /// [`Source::time`] of a timestamp already read.
    fn time_at(&self, at: Option<i64>) -> i64 {
        at.filter(|at| {
            *at >= self.received_at - MAX_PAST_MILLIS && *at <= self.received_at + MAX_FUTURE_MILLIS
        })
        .unwrap_or(self.received_at)
    }
}

/// Evaluations counted by an SDK (one summary counter, or one unsummarised feature event).
#[derive(Clone, Debug, PartialEq)]
pub struct Counter {
    /// The flag key.
    pub flag: String,
    /// The flag version, `None` when the flag was unknown to the SDK.
    pub version: Option<u64>,
    /// The variation served, `None` when the SDK served the application's default.
    pub variation: Option<u32>,
    /// The value served.
    pub value: Value,
    /// How many evaluations.
    pub count: u64,
    /// When (the summary's end, or the event's creation; Unix ms).
    pub at: i64,
}

/// A context an event showed, private attributes removed.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextSeen {
    /// Its kind.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Its attributes other than kind and key; `None` when the event named only the key
    /// (`contextKeys`), which must not erase attributes known from earlier events.
    pub attributes: Option<Map<String, Value>>,
    /// Names of attributes that were private (redacted by the SDK or removed here).
    pub redacted: Vec<String>,
    /// When (Unix ms).
    pub at: i64,
}

/// A custom event (`track`).
#[derive(Clone, Debug, PartialEq)]
pub struct Custom {
    /// The event key.
    pub key: String,
    /// Its `metricValue`, if numeric.
    pub metric: Option<f64>,
    /// When (Unix ms).
    pub at: i64,
}

/// A full event worth keeping as a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `feature`, `debug` or `custom`.
    pub kind: &'static str,
    /// The flag or event key.
    pub key: String,
    /// When (Unix ms).
    pub at: i64,
    /// The event, its context with private attributes removed.
    pub body: Value,
}

/// Event kinds of schemas 1 to 4 (§6.4), in the order of [`Batch::kinds`]; anything else
/// counts as `other`.
pub const KINDS: [&str; 11] = [
    "feature",
    "summary",
    "index",
    "identify",
    "custom",
    "debug",
    "alias",
    "click",
    "pageview",
    "migration_op",
    "other",
];

/// What one payload adds.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Where it came from.
    pub source: Source,
    /// How many events it held (diagnostic payloads count as one).
    pub events: u64,
    /// Events or counters skipped because they made no sense.
    pub skipped: u64,
    /// How many events of each kind of [`KINDS`].
    pub kinds: [u64; KINDS.len()],
    /// Counters to add.
    pub counters: Vec<Counter>,
    /// Contexts seen.
    pub contexts: Vec<ContextSeen>,
    /// Custom events.
    pub custom: Vec<Custom>,
    /// Events to keep as samples.
    pub samples: Vec<Sample>,
    /// Migration operations (`migration_op` events).
    pub migration_ops: Vec<crate::migration::MigrationOp>,
    /// Evaluations inside an experiment (feature events with `inExperiment`).
    pub exposures: Vec<crate::experiments::Exposure>,
    /// Events that experiment metrics may count (custom, click, pageview).
    pub outcomes: Vec<crate::experiments::Outcome>,
    /// The SDK as its diagnostic event describes it, with its platform (JSON), if this was one.
    pub diagnostic: Option<(SdkIdentity, String)>,
    /// About how many bytes of memory the batch holds: what the pipeline's queue counts
    /// against its bound in bytes. It is the length of the text of the events that were
    /// objects (what an event keeps, its contexts and perhaps a sample, is a part of it), so
    /// ten megabytes of `[0,0,…]` weigh nothing, as they keep nothing.
    pub bytes: usize,
    /// How many more events may still become samples (see [`parse_analytics_sampling`]).
    samples_wanted: usize,
}

impl Batch {
    fn new(source: Source) -> Batch {
        Batch {
            source,
            events: 0,
            skipped: 0,
            kinds: [0; KINDS.len()],
            counters: Vec::new(),
            contexts: Vec::new(),
            custom: Vec::new(),
            samples: Vec::new(),
            migration_ops: Vec::new(),
            exposures: Vec::new(),
            outcomes: Vec::new(),
            diagnostic: None,
            bytes: 0,
            samples_wanted: usize::MAX,
        }
    }

    /// Whether one more event may be kept as a sample.
    fn wants_sample(&self) -> bool {
        self.samples.len() < self.samples_wanted
    }
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The body is not JSON.
    #[error("the event payload is not JSON: {0}")]
    NotJson(String),
    /// An analytics body that is not an array.
    #[error("an analytics payload is a JSON array of events")]
    NotArray,
    /// A diagnostic body that is not an object.
    #[error("a diagnostic payload is one JSON object")]
    NotObject,
}

/// Reads an analytics payload (a JSON array of events), keeping every full event as a sample.
pub fn parse_analytics(source: Source, bytes: &[u8]) -> Result<Batch, PayloadError> {
    parse_analytics_sampling(source, bytes, usize::MAX)
}

/// Reads an analytics payload (a JSON array of events), keeping at most `samples` full events
/// as samples.
///
/// The writer keeps only the first few samples of each environment in each flush
/// ([`crate::Limits::samples_per_environment`]), so the pipeline asks for only as many as it
/// still wants ([`crate::Pipeline::samples_wanted`]): building a sample's cleaned body is the
/// one step that needs the whole event as a [`serde_json::Value`], and at a hundred thousand
/// events a second nearly all of them would be thrown away.
///
/// The array is read one event at a time, each as its raw text borrowed from `bytes`; only
/// the fields this module reads are looked at ([`Fields`]), and only a context becomes an
/// owned tree. A payload of ten million tiny elements (`[0,0,…]`, which a 10 KB gzip inflates
/// to) therefore never exists as ten million values in memory at once: what stays is the
/// batch, which holds only what it keeps.
pub fn parse_analytics_sampling(
    source: Source,
    bytes: &[u8],
    samples: usize,
) -> Result<Batch, PayloadError> {
    use serde::de::Deserializer as _;
    let mut batch = Batch::new(source);
    batch.samples_wanted = samples;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer
        .deserialize_any(EventsVisitor { batch: &mut batch })
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => PayloadError::NotArray,
            _ => PayloadError::NotJson(e.to_string()),
        })?;
    deserializer
        .end()
        .map_err(|e| PayloadError::NotJson(e.to_string()))?;
    Ok(batch)
}

/// Folds the events of an analytics array into a batch as they are read.
struct EventsVisitor<'b> {
    batch: &'b mut Batch,
}

impl<'de> serde::de::Visitor<'de> for EventsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut events: A) -> Result<(), A::Error> {
        while let Some(event) = events.next_element::<&'de RawValue>()? {
            self.batch.events += 1;
            let text = event.get();
            if text.starts_with('{') {
                // What an event keeps (its contexts, perhaps a sample) is a part of its text.
                self.batch.bytes = self.batch.bytes.saturating_add(text.len());
            }
            if !read_event(self.batch, text) {
                self.batch.skipped += 1;
            }
        }
        Ok(())
    }
}

/// Reads a diagnostic payload (one JSON object, §6.7).
pub fn parse_diagnostic(source: Source, bytes: &[u8]) -> Result<Batch, PayloadError> {
    let payload: Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Value::Object(object) = payload else {
        return Err(PayloadError::NotObject);
    };
    let mut batch = Batch::new(source);
    batch.bytes = bytes.len();
    batch.events = 1;
    if object.get("kind").and_then(Value::as_str) == Some("diagnostic-init") {
        let sdk = object.get("sdk");
        let text = |field: &str| {
            sdk.and_then(|s| s.get(field))
                .and_then(Value::as_str)
                .map(label)
                .unwrap_or_default()
        };
        let wrapper = match (text("wrapperName"), text("wrapperVersion")) {
            (name, _) if name.is_empty() => batch.source.sdk.wrapper.clone(),
            (name, version) if version.is_empty() => name,
            (name, version) => format!("{name}/{version}"),
        };
        let mut identity = SdkIdentity {
            name: text("name"),
            version: text("version"),
            wrapper,
        };
        if identity.name.is_empty() {
            identity.name.clone_from(&batch.source.sdk.name);
            identity.version.clone_from(&batch.source.sdk.version);
        }
        let platform = object
            .get("platform")
            .filter(|p| p.is_object())
            .map(Value::to_string)
            .filter(|p| p.len() <= MAX_ATTRIBUTES_LEN)
            .unwrap_or_default();
        batch.diagnostic = Some((identity, platform));
    }
    Ok(batch)
}

fn short_key(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LEN)
        .map(str::to_owned)
}

/// Reads one event, parsed whole, into the batch; `false` when it was skipped. The path of the
/// kinds [`read_event`] does not read field by field, and of events it cannot.
fn read_event_value(batch: &mut Batch, event: Value) -> bool {
    let Value::Object(mut event) = event else {
        batch.kinds[KINDS.len() - 1] += 1;
        return false;
    };
    let kind = event.get("kind").and_then(Value::as_str).unwrap_or("");
    let index = KINDS
        .iter()
        .position(|known| *known == kind)
        .unwrap_or(KINDS.len() - 1);
    batch.kinds[index] += 1;
    match kind {
        "summary" => {
            let at = batch.source.time(event.get("endDate"));
            let ok = read_summary(batch, &event, at);
            if let Some(context) = event.get("context") {
                read_context(batch, context, at);
            }
            ok
        }
        "feature" | "debug" => {
            let kind: &'static str = if kind == "feature" {
                "feature"
            } else {
                "debug"
            };
            let Some(flag) = short_key(event.get("key")) else {
                return false;
            };
            let at = batch.source.time(event.get("creationDate"));
            let first_context = batch.contexts.len();
            read_event_contexts(batch, &mut event, at);
            if kind == "feature" {
                let in_experiment = event
                    .get("reason")
                    .and_then(|r| r.get("inExperiment"))
                    .and_then(Value::as_bool)
                    == Some(true);
                let variation = event
                    .get("variation")
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok());
                crate::experiments::read_exposure(
                    batch,
                    in_experiment,
                    variation,
                    &flag,
                    first_context,
                    at,
                );
            }
            if batch.source.summarise_features() && kind == "feature" {
                let counter = Counter {
                    flag: flag.clone(),
                    version: event.get("version").and_then(Value::as_u64),
                    variation: event
                        .get("variation")
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok()),
                    value: event.get("value").cloned().unwrap_or(Value::Null),
                    count: 1,
                    at,
                };
                batch.counters.push(counter);
                // An unsummarised source sends every evaluation; only those the flag asked
                // to track (or debug) are full events (§6.8).
                let tracked = event.get("trackEvents").and_then(Value::as_bool) == Some(true)
                    || event
                        .get("debugEventsUntilDate")
                        .and_then(Value::as_i64)
                        .is_some_and(|until| until > batch.source.received_at);
                if !tracked {
                    return true;
                }
            }
            if !batch.wants_sample() {
                return true;
            }
            batch.samples.push(Sample {
                kind,
                key: flag,
                at,
                body: Value::Object(event),
            });
            true
        }
        "custom" => {
            let Some(key) = short_key(event.get("key")) else {
                return false;
            };
            let at = batch.source.time(event.get("creationDate"));
            let first_context = batch.contexts.len();
            read_event_contexts(batch, &mut event, at);
            omit_large_data(&mut event);
            let metric = event
                .get("metricValue")
                .and_then(Value::as_f64)
                .filter(|m| m.is_finite());
            crate::experiments::read_outcome(batch, &key, metric, first_context, at);
            batch.custom.push(Custom {
                key: key.clone(),
                metric,
                at,
            });
            if !batch.wants_sample() {
                return true;
            }
            batch.samples.push(Sample {
                kind: "custom",
                key,
                at,
                body: Value::Object(event),
            });
            true
        }
        "migration_op" => {
            if !batch.source.server_side {
                return false;
            }
            let at = batch.source.time(event.get("creationDate"));
            let Some(op) = crate::migration::read(&event, at, MAX_KEY_LEN) else {
                return false;
            };
            batch.migration_ops.push(op);
            read_event_contexts(batch, &mut event, at);
            true
        }
        "click" | "pageview" => {
            let at = batch.source.time(event.get("creationDate"));
            let first_context = batch.contexts.len();
            read_event_contexts(batch, &mut event, at);
            // A browser goal (§5.9) is a metric event named by the goal's key.
            if let Some(key) = short_key(event.get("key")) {
                crate::experiments::read_outcome(batch, &key, None, first_context, at);
            }
            true
        }
        "identify" | "index" => {
            let at = batch.source.time(event.get("creationDate"));
            read_event_contexts(batch, &mut event, at);
            true
        }
        // Legacy (§6.4): nothing to aggregate, but a real kind.
        "alias" => true,
        _ => false,
    }
}

/// Replaces a custom event's `data` larger than [`MAX_CUSTOM_DATA_LEN`] with the size it had,
/// under `dataOmittedBytes`, so the sample says that something was there.
fn omit_large_data(event: &mut Map<String, Value>) {
    let Some(data) = event.get("data") else {
        return;
    };
    let len = serde_json::to_vec(data).map_or(usize::MAX, |bytes| bytes.len());
    if len > MAX_CUSTOM_DATA_LEN {
        event.remove("data");
        event.insert("dataOmittedBytes".into(), Value::from(len));
    }
}

/// Reads the counters of a summary event.
fn read_summary(batch: &mut Batch, event: &Map<String, Value>, at: i64) -> bool {
    let Some(features) = event.get("features").and_then(Value::as_object) else {
        return false;
    };
    for (flag, feature) in features {
        if flag.is_empty() || flag.len() > MAX_KEY_LEN {
            batch.skipped += 1;
            continue;
        }
        let Some(counters) = feature.get("counters").and_then(Value::as_array) else {
            batch.skipped += 1;
            continue;
        };
        for counter in counters {
            let count = counter.get("count").and_then(Value::as_u64);
            let Some(count) = count.filter(|c| *c > 0) else {
                batch.skipped += 1;
                continue;
            };
            let unknown = counter.get("unknown").and_then(Value::as_bool) == Some(true);
            batch.counters.push(Counter {
                flag: flag.clone(),
                version: if unknown {
                    None
                } else {
                    counter.get("version").and_then(Value::as_u64)
                },
                variation: counter
                    .get("variation")
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok()),
                value: counter.get("value").cloned().unwrap_or(Value::Null),
                count,
                at,
            });
        }
    }
    true
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
