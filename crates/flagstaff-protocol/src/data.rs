//! The server-side data payload: every flag and segment of one environment (`ld-protocol.md`
//! §4.2–4.3), as sent in a stream `put` or a `/sdk/latest-all` poll.

use std::collections::BTreeMap;

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
    pub fn from_json_str(text: &str) -> Result<FlagData, DataError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DataError {
            path: format!("line {} column {}", e.line(), e.column()),
            message: e.to_string(),
        })?;
        FlagData::from_json(value)
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
                let Some(item) = item.as_object_mut() else {
                    continue;
                };
                match item.get("key") {
                    None | Some(Value::Null) => {
                        item.insert("key".into(), Value::String(key.clone()));
                    }
                    Some(Value::String(own)) if own != key => {
                        return Err(DataError {
                            path: format!("{collection}.{key}.key"),
                            message: format!("key {own:?} differs from the map key {key:?}"),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        serde_path_to_error::deserialize(value).map_err(|e| DataError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
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
