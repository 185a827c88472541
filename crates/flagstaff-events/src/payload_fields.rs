//! Reading an event field by field (the path of nearly every event; see [`read_event`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{
    Batch, Counter, Custom, KINDS, MAX_KEY_LEN, Sample, omit_large_data, push_context_keys,
    push_user_key, read_event_contexts, read_event_value, read_owned_context,
};

/// The fields of an event that this module reads, each as its raw JSON text borrowed from the
/// payload: reading an event this way allocates nothing but what is kept. Every other field is
/// skipped. A field of an unexpected type is read as absent (see [`string`], [`integer`]) rather
/// than refusing the event, as `serde_json::Value` lookups would.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    key: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    creation_date: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    version: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    variation: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    reason: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    track_events: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    debug_events_until_date: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    metric_value: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    context: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    user: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    context_keys: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    user_key: Option<&'a RawValue>,
}

/// A field that is present, `null` included (`Option`'s own reading takes `null` as absent,
/// where `serde_json::Value` lookups see a `null` that is there).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

/// A string field, borrowed unless it has escapes.
fn string(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?.get();
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str::<&str>(raw)
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_str::<String>(raw).map(Cow::Owned))
        .ok()
}

/// A key: a string of 1 to [`MAX_KEY_LEN`] bytes.
fn key_text(raw: Option<&RawValue>) -> Option<String> {
    string(raw)
        .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LEN)
        .map(Cow::into_owned)
}

/// An integer field (`Value::as_i64`: not a float, within `i64`).
fn integer(raw: Option<&RawValue>) -> Option<i64> {
    serde_json::from_str(raw?.get()).ok()
}

/// A non-negative integer field (`Value::as_u64`).
fn unsigned(raw: Option<&RawValue>) -> Option<u64> {
    serde_json::from_str(raw?.get()).ok()
}

/// A number field (`Value::as_f64`).
fn number(raw: Option<&RawValue>) -> Option<f64> {
    serde_json::from_str(raw?.get()).ok()
}

/// A boolean field.
fn boolean(raw: Option<&RawValue>) -> Option<bool> {
    serde_json::from_str(raw?.get()).ok()
}

/// A field parsed whole (small ones, or the contexts that are kept).
fn tree(raw: Option<&RawValue>) -> Option<Value> {
    serde_json::from_str(raw?.get()).ok()
}

/// Reads one event, given as its raw text, into the batch; `false` when it was skipped.
///
/// The events SDKs send by the thousand (feature, custom, identify, index, goal events) are
/// read field by field; summaries, migration operations and events that name a field twice
/// (where the last one counts) are parsed whole and read by [`read_event_value`].
pub(super) fn read_event(batch: &mut Batch, text: &str) -> bool {
    if !text.starts_with('{') {
        batch.kinds[KINDS.len() - 1] += 1;
        return false;
    }
    let fields = match serde_json::from_str::<Fields<'_>>(text) {
        Ok(fields) => fields,
        Err(_) => return read_whole(batch, text),
    };
    let kind = string(fields.kind);
    if matches!(kind.as_deref(), Some("summary" | "migration_op")) {
        return read_whole(batch, text);
    }
    let kind = kind.as_deref().unwrap_or("");
    let index = KINDS
        .iter()
        .position(|known| *known == kind)
        .unwrap_or(KINDS.len() - 1);
    batch.kinds[index] += 1;
    match kind {
        "feature" | "debug" => {
            let kind: &'static str = if kind == "feature" {
                "feature"
            } else {
                "debug"
            };
            let Some(flag) = key_text(fields.key) else {
                return false;
            };
            let at = batch.source.time_at(integer(fields.creation_date));
            let first_context = batch.contexts.len();
            read_raw_contexts(batch, &fields, at);
            let variation = unsigned(fields.variation).and_then(|v| u32::try_from(v).ok());
            if kind == "feature" {
                // Most reasons say nothing of experiments: only those that do are parsed.
                let in_experiment = fields
                    .reason
                    .filter(|reason| reason.get().contains("inExperiment"))
                    .and_then(|reason| tree(Some(reason)))
                    .and_then(|reason| reason.get("inExperiment")?.as_bool())
                    == Some(true);
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
                batch.counters.push(Counter {
                    flag: flag.clone(),
                    version: unsigned(fields.version),
                    variation,
                    value: tree(fields.value).unwrap_or(Value::Null),
                    count: 1,
                    at,
                });
                // An unsummarised source sends every evaluation; only those the flag asked
                // to track (or debug) are full events (§6.8).
                let tracked = boolean(fields.track_events) == Some(true)
                    || integer(fields.debug_events_until_date)
                        .is_some_and(|until| until > batch.source.received_at);
                if !tracked {
                    return true;
                }
            }
            keep_sample(batch, kind, flag, at, text);
            true
        }
        "custom" => {
            let Some(key) = key_text(fields.key) else {
                return false;
            };
            let at = batch.source.time_at(integer(fields.creation_date));
            let first_context = batch.contexts.len();
            read_raw_contexts(batch, &fields, at);
            let metric = number(fields.metric_value).filter(|m| m.is_finite());
            crate::experiments::read_outcome(batch, &key, metric, first_context, at);
            batch.custom.push(Custom {
                key: key.clone(),
                metric,
                at,
            });
            keep_sample(batch, "custom", key, at, text);
            true
        }
        "click" | "pageview" => {
            let at = batch.source.time_at(integer(fields.creation_date));
            let first_context = batch.contexts.len();
            read_raw_contexts(batch, &fields, at);
            // A browser goal (§5.9) is a metric event named by the goal's key.
            if let Some(key) = key_text(fields.key) {
                crate::experiments::read_outcome(batch, &key, None, first_context, at);
            }
            true
        }
        "identify" | "index" => {
            let at = batch.source.time_at(integer(fields.creation_date));
            read_raw_contexts(batch, &fields, at);
            true
        }
        // Legacy (§6.4): nothing to aggregate, but a real kind.
        "alias" => true,
        _ => false,
    }
}

/// [`read_event_value`] of an event's text.
pub(super) fn read_whole(batch: &mut Batch, text: &str) -> bool {
    match serde_json::from_str::<Value>(text) {
        Ok(event) => read_event_value(batch, event),
        Err(_) => {
            batch.kinds[KINDS.len() - 1] += 1;
            false
        }
    }
}

/// Keeps a full event as a sample, its contexts without private attributes and a large
/// custom `data` replaced by its size, if the batch still wants one. Only here is the whole
/// event parsed.
fn keep_sample(batch: &mut Batch, kind: &'static str, key: String, at: i64, text: &str) {
    if !batch.wants_sample() {
        return;
    }
    let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    // The contexts were recorded already; this reading only cleans the sample's copy.
    let mut scratch = Batch::new(batch.source.clone());
    read_event_contexts(&mut scratch, &mut event, at);
    if kind == "custom" {
        omit_large_data(&mut event);
    }
    batch.samples.push(Sample {
        kind,
        key,
        at,
        body: Value::Object(event),
    });
}

/// Records the contexts of an event read field by field: [`read_event_contexts`] without
/// building the event's cleaned copy, and taking each context's attributes without copying.
fn read_raw_contexts(batch: &mut Batch, fields: &Fields<'_>, at: i64) {
    for raw in [fields.context, fields.user] {
        let Some(raw) = raw else {
            continue;
        };
        if let Ok(Value::Object(context)) = serde_json::from_str::<Value>(raw.get()) {
            read_owned_context(batch, context, at, Some(raw.get().len()));
        }
        return;
    }
    match tree(fields.context_keys) {
        Some(Value::Object(keys)) => push_context_keys(batch, &keys, at),
        _ => push_user_key(batch, key_text(fields.user_key), at),
    }
}
