//! The server-side data payload: every flag and segment of one environment (`ld-protocol.md`
//! §4.2–4.3), as sent in a stream `put` or a `/sdk/latest-all` poll.

use std::collections::BTreeMap;

use std::cell::RefCell;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flag::Flag;
use crate::segment::Segment;

/// All flags and segments of an environment. Both maps are always serialised, even when empty,
/// because the Python SDK rejects a payload without either (§13 pitfall 8). Keys are kept sorted
/// so that output is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagData {
    /// Flags by key.
    #[serde(default)]
    pub flags: BTreeMap<String, Flag>,
    /// Segments by key.
    #[serde(default)]
    pub segments: BTreeMap<String, Segment>,
}

/// Why a payload could not be read, with the JSON path of the offending field.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DataError {
    /// Where the problem is, e.g. `flags.my-flag.rules[0].clauses`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl FlagData {
    /// Reads a payload from JSON text. Accepts the bare `{"flags": …, "segments": …}` object and
    /// the stream `put` wrapper `{"path": "/", "data": {…}}`. A map entry without a `key` takes
    /// the map key, as the Go SDK does; a `key` that differs from its map key is an error, since
    /// SDKs disagree on which one wins (§2.1 rule 5).
    ///
    /// The text is read one item at a time: only one flag or segment exists as a JSON tree at
    /// any moment, never the whole payload, whose tree would take several times the memory of
    /// the flags themselves (an SDK reading 10,000 flags kept that peak in its resident set).
    pub fn from_json_str(text: &str) -> Result<FlagData, DataError> {
        let failure = RefCell::new(None);
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let read = PayloadSeed { failure: &failure }
            .deserialize(&mut deserializer)
            .and_then(|data| deserializer.end().map(|()| data));
        read.map_err(|e| {
            failure.into_inner().unwrap_or_else(|| DataError {
                path: format!("line {} column {}", e.line(), e.column()),
                message: e.to_string(),
            })
        })
    }

    /// Reads a payload from a parsed JSON value (see [`FlagData::from_json_str`]).
    pub fn from_json(mut value: Value) -> Result<FlagData, DataError> {
        let Some(object) = value.as_object_mut() else {
            return Err(DataError {
                path: "(root)".into(),
                message: "expected a JSON object with \"flags\" and \"segments\"".into(),
            });
        };
        if !object.contains_key("flags")
            && !object.contains_key("segments")
            && let Some(data) = object.remove("data")
        {
            value = data;
        }
        for collection in ["flags", "segments"] {
            let Some(Value::Object(items)) = value.get_mut(collection) else {
                continue;
            };
            for (key, item) in items.iter_mut() {
                fill_key(collection, key, item)?;
            }
        }
        serde_path_to_error::deserialize(value).map_err(|e| DataError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}

/// Reads a payload object: `flags`, `segments`, or a stream `put`'s `data` wrapping them.
struct PayloadSeed<'f> {
    failure: &'f RefCell<Option<DataError>>,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = FlagData;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FlagData, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_> {
    type Value = FlagData;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object with \"flags\" and \"segments\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlagData, A::Error> {
        let (mut flags, mut segments, mut wrapped) = (None, None, None);
        while let Some(field) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*field {
                "flags" => {
                    flags = Some(map.next_value_seed(ItemsSeed::new("flags", self.failure))?);
                }
                "segments" => {
                    segments = Some(map.next_value_seed(ItemsSeed::new("segments", self.failure))?);
                }
                "data" => {
                    wrapped = Some(map.next_value_seed(PayloadSeed {
                        failure: self.failure,
                    })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (flags, segments, wrapped) {
            (None, None, Some(wrapped)) => Ok(wrapped),
            (flags, segments, _) => Ok(FlagData {
                flags: flags.unwrap_or_default(),
                segments: segments.unwrap_or_default(),
            }),
        }
    }
}

/// Reads `{"key": item, …}`: each item through a JSON tree of its own (so that a missing `key`
/// takes the map key, as in [`FlagData::from_json`]), then typed, with the first error's path
/// kept in `failure`.
struct ItemsSeed<'f, T> {
    collection: &'static str,
    failure: &'f RefCell<Option<DataError>>,
    item: std::marker::PhantomData<T>,
}

impl<'f, T> ItemsSeed<'f, T> {
    fn new(collection: &'static str, failure: &'f RefCell<Option<DataError>>) -> Self {
        ItemsSeed {
            collection,
            failure,
            item: std::marker::PhantomData,
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> DeserializeSeed<'de> for ItemsSeed<'_, T> {
    type Value = BTreeMap<String, T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Visitor<'de> for ItemsSeed<'_, T> {
    type Value = BTreeMap<String, T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an object of {} by key", self.collection)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut value: Value = map.next_value()?;
            let read = fill_key(self.collection, &key, &mut value).and_then(|()| {
                serde_path_to_error::deserialize(value).map_err(|e| {
                    let inner = e.path().to_string();
                    DataError {
                        path: if inner == "." {
                            format!("{}.{key}", self.collection)
                        } else {
                            format!("{}.{key}.{inner}", self.collection)
                        },
                        message: e.inner().to_string(),
                    }
                })
            });
            match read {
                Ok(item) => {
                    items.insert(key, item);
                }
                Err(error) => {
                    let message = error.to_string();
                    self.failure.replace(Some(error));
                    return Err(serde::de::Error::custom(message));
                }
            }
        }
        Ok(items)
    }
}

/// An item without a `key` (or with `null`) takes its map key; a different `key` is an error,
/// since SDKs disagree on which one wins (§2.1 rule 5).
fn fill_key(collection: &str, key: &str, item: &mut Value) -> Result<(), DataError> {
    let Some(item) = item.as_object_mut() else {
        return Ok(()); // Typed reading reports what is wrong with it.
    };
    match item.get("key") {
        None | Some(Value::Null) => {
            item.insert("key".into(), Value::String(key.to_owned()));
            Ok(())
        }
        Some(Value::String(own)) if own != key => Err(DataError {
            path: format!("{collection}.{key}.key"),
            message: format!("key {own:?} differs from the map key {key:?}"),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bare_and_wrapped_payloads() {
        let bare = json!({"flags": {"f": {"on": true, "version": 3}}, "segments": {}});
        let wrapped = json!({"path": "/", "data": bare.clone()});
        let a = FlagData::from_json(bare).unwrap();
        let b = FlagData::from_json(wrapped).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.flags["f"].key, "f");
        assert_eq!(a.flags["f"].version, 3);
    }

    #[test]
    fn text_is_read_as_the_tree_is() {
        for text in [
            r#"{"flags": {"f": {"on": true, "version": 3}, "g": {"key": null}}, "segments": {"s": {"version": 2}}}"#,
            r#"{"path": "/", "data": {"flags": {"f": {"on": true}}, "segments": {}}}"#,
            r#"{"segments": {}, "extra": [1, {"x": 2}]}"#,
            r#"{}"#,
        ] {
            let tree = FlagData::from_json(serde_json::from_str(text).unwrap()).unwrap();
            assert_eq!(FlagData::from_json_str(text).unwrap(), tree, "{text}");
        }
        let bad = r#"{"flags": {"f": {"rules": [{"clauses": [{"op": 3}]}]}}}"#;
        assert_eq!(
            FlagData::from_json_str(bad).unwrap_err().path,
            "flags.f.rules[0].clauses[0].op"
        );
        let mismatch = r#"{"flags": {"f": {"key": "g"}}}"#;
        assert_eq!(
            FlagData::from_json_str(mismatch).unwrap_err().path,
            "flags.f.key"
        );
        let wrapped = r#"{"data": {"segments": {"s": {"included": 5}}}}"#;
        assert_eq!(
            FlagData::from_json_str(wrapped).unwrap_err().path,
            "segments.s.included"
        );
        for broken in [
            "",
            "[]",
            "{\"flags\": 3}",
            "{\"flags\": {\"f\": []}}",
            "{} x",
            "{\"flags\": {",
        ] {
            assert!(FlagData::from_json_str(broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn errors_carry_the_field_path() {
        let bad = json!({"flags": {"f": {"rules": [{"clauses": [{"op": 3}]}]}}});
        let error = FlagData::from_json(bad).unwrap_err();
        assert_eq!(error.path, "flags.f.rules[0].clauses[0].op");
        let mismatch = json!({"flags": {"f": {"key": "g"}}});
        assert_eq!(
            FlagData::from_json(mismatch).unwrap_err().path,
            "flags.f.key"
        );
    }
}
