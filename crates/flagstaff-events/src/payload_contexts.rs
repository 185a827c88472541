//! The contexts an event shows (`ld-protocol.md` §6.4, §6.5): recorded for insights with their
//! private attributes removed, and cleaned in the copy of an event kept as a sample.

use flagstaff_protocol::AttrRef;
use serde_json::{Map, Value};

use super::{Batch, ContextSeen, MAX_ATTRIBUTES_LEN, MAX_KEY_LEN, short_key};

/// Reads the context of an event (`context`, `contextKeys`, or the legacy `user`/`userKey`)
/// and removes private attributes from the event itself (a context that cannot be read is
/// removed from the event).
pub(super) fn read_event_contexts(batch: &mut Batch, event: &mut Map<String, Value>, at: i64) {
    for field in ["context", "user"] {
        let Some(context) = event.get(field) else {
            continue;
        };
        match read_context(batch, context, at) {
            Some(cleaned) => {
                event.insert(field.into(), cleaned);
            }
            None => {
                event.remove(field);
            }
        }
        return;
    }
    match event.get("contextKeys").and_then(Value::as_object) {
        Some(keys) => push_context_keys(batch, keys, at),
        None => push_user_key(batch, short_key(event.get("userKey")), at),
    }
}

/// Records the contexts of schema 4's `contextKeys` (kind → key): keys only.
pub(super) fn push_context_keys(batch: &mut Batch, keys: &Map<String, Value>, at: i64) {
    for (kind, key) in keys {
        if let Some(key) = short_key(Some(key)).filter(|_| kind.len() <= MAX_KEY_LEN) {
            batch.contexts.push(ContextSeen {
                kind: kind.clone(),
                key,
                attributes: None,
                redacted: Vec::new(),
                at,
            });
        }
    }
}

/// Records the user of a legacy `userKey`: its key only.
pub(super) fn push_user_key(batch: &mut Batch, key: Option<String>, at: i64) {
    if let Some(key) = key {
        batch.contexts.push(ContextSeen {
            kind: "user".into(),
            key,
            attributes: None,
            redacted: Vec::new(),
            at,
        });
    }
}

/// Records the individual contexts of a context object and returns it without private
/// attributes (`None` when it is not a context at all).
pub(super) fn read_context(batch: &mut Batch, context: &Value, at: i64) -> Option<Value> {
    let object = context.as_object()?;
    let first = batch.contexts.len();
    read_owned_context(batch, object.clone(), at, None);
    let seen = &batch.contexts[first..];
    match object.get("kind").and_then(Value::as_str) {
        Some("multi") => {
            let mut cleaned = Map::new();
            cleaned.insert("kind".into(), Value::from("multi"));
            for individual in seen {
                cleaned.insert(individual.kind.clone(), individual_json(individual));
            }
            Some(Value::Object(cleaned))
        }
        Some(kind) => {
            let mut cleaned = individual_json(seen.first()?);
            if let Value::Object(map) = &mut cleaned {
                map.insert("kind".into(), Value::from(kind));
            }
            Some(cleaned)
        }
        None => Some(individual_json(seen.first()?)),
    }
}

/// Records the individual contexts of a context object, taking their attributes.
/// `text_len` is the length of the context's JSON text when it was read from one (see
/// [`finish`]).
pub(super) fn read_owned_context(
    batch: &mut Batch,
    mut context: Map<String, Value>,
    at: i64,
    text_len: Option<usize>,
) {
    match context.get("kind").and_then(Value::as_str) {
        Some("multi") => {
            context.remove("kind");
            for (kind, individual) in context {
                if let Value::Object(individual) = individual
                    && let Some(seen) = clean_individual(&kind, individual, at, text_len)
                {
                    batch.contexts.push(seen);
                }
            }
        }
        Some(kind) => {
            let kind = kind.to_owned();
            if let Some(seen) = clean_individual(&kind, context, at, text_len) {
                batch.contexts.push(seen);
            }
        }
        None => {
            if let Some(seen) = clean_legacy_user(&context, at) {
                batch.contexts.push(seen);
            }
        }
    }
}

/// The stored JSON of one individual context: key, attributes and the names redacted.
fn individual_json(seen: &ContextSeen) -> Value {
    let mut map = seen.attributes.clone().unwrap_or_default();
    map.insert("key".into(), Value::from(seen.key.clone()));
    if !seen.redacted.is_empty() {
        let mut meta = Map::new();
        meta.insert(
            "redactedAttributes".into(),
            Value::from(seen.redacted.clone()),
        );
        map.insert("_meta".into(), Value::Object(meta));
    }
    Value::Object(map)
}

fn strings(value: Option<&Value>) -> impl Iterator<Item = &str> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// One context of a kind: everything but kind, key and `_meta`, with the attributes its own
/// `_meta.privateAttributes` names removed.
fn clean_individual(
    kind: &str,
    mut attributes: Map<String, Value>,
    at: i64,
    text_len: Option<usize>,
) -> Option<ContextSeen> {
    if kind.is_empty() || kind.len() > MAX_KEY_LEN {
        return None;
    }
    let key = short_key(attributes.get("key"))?;
    let meta = attributes.remove("_meta");
    attributes.remove("kind");
    attributes.remove("key");
    let mut redacted: Vec<String> =
        strings(meta.as_ref().and_then(|m| m.get("redactedAttributes")))
            .map(str::to_owned)
            .collect();
    for reference in strings(meta.as_ref().and_then(|m| m.get("privateAttributes"))) {
        if AttrRef::new(reference).remove_from(&mut attributes) {
            redacted.push(reference.to_owned());
        }
    }
    Some(finish(
        kind.to_owned(),
        key,
        attributes,
        redacted,
        at,
        text_len,
    ))
}

/// A pre-context user (schema 2 and 3, §6.4): built-in attributes at the top, the rest under
/// `custom`, private ones named in `privateAttributeNames` (unredacted) or `privateAttrs`
/// (already redacted by the SDK).
fn clean_legacy_user(object: &Map<String, Value>, at: i64) -> Option<ContextSeen> {
    let key = short_key(object.get("key"))?;
    let mut attributes = Map::new();
    for (name, value) in object {
        match name.as_str() {
            "key" | "privateAttributeNames" | "privateAttrs" => {}
            "custom" => {
                if let Some(custom) = value.as_object() {
                    for (name, value) in custom {
                        attributes
                            .entry(name.clone())
                            .or_insert_with(|| value.clone());
                    }
                }
            }
            _ => {
                attributes.insert(name.clone(), value.clone());
            }
        }
    }
    let mut redacted: Vec<String> = strings(object.get("privateAttrs"))
        .map(str::to_owned)
        .collect();
    for name in strings(object.get("privateAttributeNames")) {
        if attributes.remove(name).is_some() {
            redacted.push(name.to_owned());
        }
    }
    Some(finish("user".into(), key, attributes, redacted, at, None))
}

/// A context whose text was at most this long needs no measuring against
/// [`MAX_ATTRIBUTES_LEN`]: its attributes, a part of it, serialize to at most about four
/// times their text (a number such as `9e15` is written out as `9000000000000000.0`; strings
/// only get shorter).
const SURELY_SMALL_CONTEXT: usize = MAX_ATTRIBUTES_LEN / 5;

fn finish(
    kind: String,
    key: String,
    attributes: Map<String, Value>,
    mut redacted: Vec<String>,
    at: i64,
    text_len: Option<usize>,
) -> ContextSeen {
    redacted.sort();
    redacted.dedup();
    redacted.truncate(100);
    // Serializing every context only to measure it was a large part of reading an event.
    let too_large = text_len.is_none_or(|len| len > SURELY_SMALL_CONTEXT)
        && serde_json::to_string(&attributes).map_or(true, |s| s.len() > MAX_ATTRIBUTES_LEN);
    ContextSeen {
        kind,
        key,
        attributes: Some(if too_large { Map::new() } else { attributes }),
        redacted,
        at,
    }
}
