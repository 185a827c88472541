//! Loads every evaluation in LaunchDarkly's public SDK test-harness data files
//! (`../shared/conformance/launchdarkly-sdk-test-harness/server-side-eval/*.yml`) against
//! the engine, the server and the real SDKs. The files are read in place, never copied (`ld-protocol.md` §11.3); the
//! loader below is our own implementation of the harness's substitution rules (§11.1):
//!
//! - `constants` and `parameters` are read from the raw file first;
//! - `parameters` is a list of objects (one variant each) or a list of lists (the cartesian
//!   product of one choice from each list, later lists varying slowest);
//! - substitution is textual on the raw file: `"<NAME>"` with quotes becomes the value's JSON,
//!   a bare `<NAME>` becomes the string's text (or the JSON of a non-string); constants are
//!   substituted, then parameters, then constants again (parameters may refer to constants);
//! - placeholders with no definition stay as literal text, as in the harness;
//! - in `sdkData`, a missing `key` comes from the map key and a missing or zero `version`
//!   becomes 1, as it does after the harness round-trips data through the Go model.

use std::path::PathBuf;

use flagstaff_eval::{Snapshot, ValueType};
use flagstaff_protocol::Context;
use serde_json::{Map, Value, json};

use crate::workspace_root;

pub fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FLAGSTAFF_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("../shared/conformance/launchdarkly-sdk-test-harness")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    let message = format!("conformance vectors not found at {}", dir.display());
    if std::env::var_os("FLAGSTAFF_REQUIRE_CONFORMANCE").is_some() {
        panic!("{message} (FLAGSTAFF_REQUIRE_CONFORMANCE is set)");
    }
    eprintln!("\n!!! SKIPPING CONFORMANCE: {message}; set FLAGSTAFF_CONFORMANCE_DIR !!!\n");
    None
}

/// Parses YAML (a superset of JSON) into JSON, resolving `<<` merge keys.
fn yaml_to_json(text: &str) -> Result<Value, String> {
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    yaml.apply_merge().map_err(|e| e.to_string())?;
    serde_json::to_value(yaml).map_err(|e| e.to_string())
}

fn substitute(text: &str, values: &Map<String, Value>) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        let json = value.to_string();
        out = out.replace(&format!("\"<{name}>\""), &json);
        let interpolated = value.as_str().map_or(json, str::to_owned);
        out = out.replace(&format!("<{name}>"), &interpolated);
    }
    out
}

fn parameter_sets(parameters: &Value) -> Vec<Map<String, Value>> {
    let Some(items) = parameters.as_array().filter(|items| !items.is_empty()) else {
        return vec![Map::new()];
    };
    if items[0].is_object() {
        return items
            .iter()
            .map(|item| item.as_object().cloned().unwrap_or_default())
            .collect();
    }
    // A list of lists: the cartesian product, the first list varying fastest.
    let lists: Vec<Vec<Map<String, Value>>> = items
        .iter()
        .map(|list| {
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_object().cloned())
                .collect()
        })
        .collect();
    let mut sets = vec![Map::new()];
    for list in lists {
        sets = list
            .iter()
            .flat_map(|choice| {
                sets.iter().map(move |set| {
                    let mut merged = set.clone();
                    merged.extend(choice.clone());
                    merged
                })
            })
            .collect();
    }
    sets
}

/// Expands one data file into its variants (one per parameter set).
fn expand(text: &str) -> Result<Vec<(String, Value)>, String> {
    let raw = yaml_to_json(text)?;
    let constants = raw
        .get("constants")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut variants = Vec::new();
    for params in parameter_sets(raw.get("parameters").unwrap_or(&Value::Null)) {
        let mut expanded = substitute(text, &constants);
        expanded = substitute(&expanded, &params);
        expanded = substitute(&expanded, &constants);
        let suite =
            yaml_to_json(&expanded).map_err(|e| format!("after substitution {params:?}: {e}"))?;
        let label = params
            .get("NAME")
            .map(|n| n.to_string())
            .unwrap_or_else(|| Value::Object(params.clone()).to_string());
        variants.push((label, suite));
    }
    Ok(variants)
}

fn normalise_sdk_data(sdk_data: &Value) -> Value {
    let mut data = sdk_data.clone();
    for collection in ["flags", "segments"] {
        if let Some(Value::Object(items)) = data.get_mut(collection) {
            for (key, item) in items.iter_mut() {
                if let Some(item) = item.as_object_mut() {
                    item.entry("key")
                        .or_insert_with(|| Value::String(key.clone()));
                    if item.get("version").and_then(Value::as_u64).unwrap_or(0) == 0 {
                        item.insert("version".into(), json!(1));
                    }
                }
            }
        }
    }
    data
}

fn value_type(name: Option<&str>) -> ValueType {
    match name {
        Some("bool") => ValueType::Bool,
        Some("int") => ValueType::Int,
        Some("double") => ValueType::Double,
        Some("string") => ValueType::String,
        _ => ValueType::Any,
    }
}

/// The harness's rule for an evaluation without a `default`: the zero value of the type of the
/// flag's first variation.
fn inferred_default(sdk_data: &Value, flag_key: &str) -> Value {
    match sdk_data["flags"][flag_key]["variations"].get(0) {
        Some(Value::Bool(_)) => json!(false),
        Some(Value::Number(_)) => json!(0),
        Some(Value::String(_)) => json!(""),
        _ => Value::Null,
    }
}

/// The harness's rule for an evaluation without a `valueType`: the type of the default (a
/// number is an int only if the file's own default was an integer).
fn inferred_value_type(default: &Value, explicit_default: &Value) -> ValueType {
    match default {
        Value::Bool(_) => ValueType::Bool,
        Value::Number(_) if explicit_default.is_i64() || explicit_default.is_u64() => {
            ValueType::Int
        }
        Value::Number(_) => ValueType::Double,
        Value::String(_) => ValueType::String,
        _ => ValueType::Any,
    }
}

/// One data variant of a conformance file: the flag and segment data and its evaluations.
#[derive(Clone, Debug)]
pub struct Variant {
    /// The file name, e.g. `rule-match.yml`.
    pub file: String,
    /// The variant's parameters (its `NAME` when it has one).
    pub label: String,
    /// `{"flags": ..., "segments": ...}` as the harness gives it to SDKs.
    pub sdk_data: Value,
    /// The evaluations, with defaults and value types worked out.
    pub evaluations: Vec<Evaluation>,
}

/// One evaluation of a conformance file, with the harness's defaults applied.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The evaluation's name in the file.
    pub name: String,
    /// The flag evaluated.
    pub flag_key: String,
    /// The context as JSON (possibly invalid on purpose).
    pub context: Value,
    /// The caller's default value.
    pub default: Value,
    /// The typed variation method the harness calls.
    pub value_type: ValueType,
    /// `{"value", "variationIndex", "reason"}` as the file expects them.
    pub expect: Value,
}

impl Evaluation {
    /// The value type's name in the SDK drivers' protocol.
    pub fn value_type_name(&self) -> &'static str {
        match self.value_type {
            ValueType::Bool => "bool",
            ValueType::Int => "int",
            ValueType::Double => "double",
            ValueType::String => "string",
            ValueType::Any => "any",
        }
    }
}

fn resolve(sdk_data: &Value, evaluation: &Value) -> Evaluation {
    let flag_key = evaluation["flagKey"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let explicit_default = evaluation.get("default").cloned().unwrap_or(Value::Null);
    let default = match &explicit_default {
        Value::Null => inferred_default(sdk_data, &flag_key),
        other => other.clone(),
    };
    let value_type = match evaluation.get("valueType").and_then(Value::as_str) {
        Some(name) => value_type(Some(name)),
        None => inferred_value_type(&default, &explicit_default),
    };
    Evaluation {
        name: evaluation["name"].as_str().unwrap_or_default().to_owned(),
        flag_key,
        context: evaluation.get("context").cloned().unwrap_or(Value::Null),
        default,
        value_type,
        expect: evaluation["expect"].clone(),
    }
}

/// Every variant of every server-side evaluation file, in file order; `None` (after a loud
/// warning) when the vectors are absent and `FLAGSTAFF_REQUIRE_CONFORMANCE` is not set.
pub fn variants() -> Option<Vec<Variant>> {
    let dir = conformance_dir()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("server-side-eval"))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "yml" || e == "yaml" || e == "json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no data files in {}", dir.display());
    let mut variants = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for (label, suite) in expand(&text).unwrap_or_else(|e| panic!("{file}: {e}")) {
            let sdk_data = normalise_sdk_data(&suite["sdkData"]);
            let evaluations = suite["evaluations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|evaluation| resolve(&sdk_data, evaluation))
                .collect();
            variants.push(Variant {
                file: file.clone(),
                label,
                sdk_data,
                evaluations,
            });
        }
    }
    Some(variants)
}

/// Evaluates as an SDK would, with the typed method for `value_type`: an invalid context is
/// `USER_NOT_SPECIFIED` with the default. Returns `(value, variationIndex, reason)` as JSON.
pub fn evaluate(
    snapshot: &Snapshot,
    evaluation: &Evaluation,
    value_type: ValueType,
) -> (Value, Value, Value) {
    match Context::from_json(&evaluation.context) {
        Err(_) => (
            evaluation.default.clone(),
            Value::Null,
            json!({"kind": "ERROR", "errorKind": "USER_NOT_SPECIFIED"}),
        ),
        Ok(context) => {
            let detail = snapshot.variation_detail(
                &evaluation.flag_key,
                &context,
                &evaluation.default,
                value_type,
            );
            (
                detail.value.into_owned(),
                detail.variation_index.map_or(Value::Null, Value::from),
                serde_json::to_value(&detail.reason).unwrap_or_default(),
            )
        }
    }
}
