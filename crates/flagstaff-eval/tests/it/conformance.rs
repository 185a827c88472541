//! Runs every evaluation in LaunchDarkly's public SDK test-harness data files
//! (`../shared/conformance/launchdarkly-sdk-test-harness/server-side-eval/*.yml`) against
//! flagstaff-eval. The files are read in place, never copied (`ld-protocol.md` §11.3); the
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

use std::collections::BTreeMap;
use std::path::PathBuf;

use flagstaff_eval::{Snapshot, ValueType};
use flagstaff_protocol::{Context, FlagData, Reason};
use serde_json::{Map, Value, json};

use crate::support::{json_equal, workspace_root};

fn conformance_dir() -> Option<PathBuf> {
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

/// Evaluates as an SDK would: an invalid context is `USER_NOT_SPECIFIED` with the default.
fn evaluate(snapshot: &Snapshot, sdk_data: &Value, evaluation: &Value) -> (Value, Value, Value) {
    let flag_key = evaluation["flagKey"].as_str().unwrap_or_default();
    let explicit_default = evaluation.get("default").cloned().unwrap_or(Value::Null);
    let default = match &explicit_default {
        Value::Null => inferred_default(sdk_data, flag_key),
        other => other.clone(),
    };
    let value_type = match evaluation.get("valueType").and_then(Value::as_str) {
        Some(name) => value_type(Some(name)),
        None => inferred_value_type(&default, &explicit_default),
    };
    match Context::from_json(evaluation.get("context").unwrap_or(&Value::Null)) {
        Err(_) => (
            default,
            Value::Null,
            json!({"kind": "ERROR", "errorKind": "USER_NOT_SPECIFIED"}),
        ),
        Ok(context) => {
            let detail = snapshot.variation_detail(flag_key, &context, &default, value_type);
            (
                detail.value.into_owned(),
                detail.variation_index.map_or(Value::Null, Value::from),
                serde_json::to_value(&detail.reason).expect("reasons serialise"),
            )
        }
    }
}

#[test]
fn server_side_eval_vectors() {
    let Some(dir) = conformance_dir() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("server-side-eval"))
        .expect("read server-side-eval")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "yml" || e == "yaml" || e == "json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no data files in {}", dir.display());

    let mut passed = 0usize;
    let mut per_file = BTreeMap::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(path).expect("read data file");
        let variants = expand(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut count = 0;
        for (label, suite) in variants {
            let sdk_data = normalise_sdk_data(&suite["sdkData"]);
            let data = FlagData::from_json(sdk_data.clone())
                .unwrap_or_else(|e| panic!("{name} {label}: sdkData does not load: {e}"));
            let snapshot = Snapshot::compile(&data);
            for evaluation in suite["evaluations"].as_array().into_iter().flatten() {
                let expect = &evaluation["expect"];
                let (value, variation, reason) = evaluate(&snapshot, &sdk_data, evaluation);
                let expected_reason: Reason = serde_json::from_value(expect["reason"].clone())
                    .unwrap_or_else(|e| {
                        panic!("{name} {label}: expected reason does not parse: {e}")
                    });
                let expected_variation =
                    expect.get("variationIndex").cloned().unwrap_or(Value::Null);
                let ok = json_equal(&value, expect.get("value").unwrap_or(&Value::Null))
                    && variation == expected_variation
                    && reason == serde_json::to_value(&expected_reason).unwrap_or_default();
                count += 1;
                if ok {
                    passed += 1;
                } else {
                    failures.push(format!(
                        "{name} / {label} / {}:\n    expected value {} index {} reason {}\n    got      value {value} index {variation} reason {reason}",
                        evaluation["name"], expect["value"], expected_variation, expect["reason"]
                    ));
                }
            }
        }
        per_file.insert(name, count);
    }
    for (name, count) in &per_file {
        eprintln!("conformance: {name}: {count} evaluations");
    }
    let total = passed + failures.len();
    println!(
        "conformance: {passed} of {total} LaunchDarkly server-side evaluations passed, from {} files",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} conformance evaluations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        total > 500,
        "expected the full vector set, evaluated only {total}"
    );
}
