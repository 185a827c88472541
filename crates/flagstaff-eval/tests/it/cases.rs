//! Runs the project's own language-neutral cases in `testdata/eval/*.json` (format in that
//! folder's README): the corners the LaunchDarkly vectors leave out.

use flagstaff_eval::{EvalOptions, Snapshot, ValueType};
use flagstaff_protocol::{Context, FlagData};
use serde_json::Value;

use crate::support::{json_equal, workspace_root};

/// Evaluates one case and returns a description of the mismatch, if any.
fn check(snapshot: &Snapshot, case: &Value) -> Option<String> {
    let context = Context::from_json(&case["context"]).expect("case contexts are valid");
    let default = case.get("default").cloned().unwrap_or(Value::Null);
    let flag = case["flag"].as_str().expect("case names a flag");
    let detail = snapshot.variation_detail(flag, &context, &default, ValueType::Any);
    let got = serde_json::json!({
        "value": *detail.value,
        "variationIndex": detail.variation_index,
        "reason": detail.reason,
    });
    let mut expected = case["expect"].clone();
    if expected.get("variationIndex").is_none() {
        expected["variationIndex"] = Value::Null;
    }
    (!json_equal(&got, &expected)).then(|| {
        format!(
            "{}:\n    expected {expected}\n    got      {got}",
            case["name"]
        )
    })
}

#[test]
fn own_cases() {
    let dir = workspace_root().join("testdata/eval");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/eval exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for path in &paths {
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read case file"))
                .expect("case file is JSON");
        for suite in file["suites"].as_array().expect("suites") {
            let data = FlagData::from_json(suite["data"].clone()).expect("suite data loads");
            let options = EvalOptions {
                secondary_key_bucketing: suite["options"]["secondaryKeyBucketing"]
                    .as_bool()
                    .unwrap_or(false),
            };
            let snapshot = Snapshot::compile_with(&data, options);
            for case in suite["cases"].as_array().expect("cases") {
                count += 1;
                if let Some(failure) = check(&snapshot, case) {
                    failures.push(format!(
                        "{} / {} / {failure}",
                        path.display(),
                        suite["name"]
                    ));
                }
            }
        }
    }
    assert!(count >= 40, "expected the full case set, found {count}");
    assert!(
        failures.is_empty(),
        "{} of {count} own cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A chain of `n` flags (or segments) each depending on the next, ending in one that matches.
fn chain(n: usize, segments: bool) -> FlagData {
    let mut flags = serde_json::Map::new();
    let mut segment_map = serde_json::Map::new();
    if segments {
        for i in 0..n {
            let clauses = if i + 1 < n {
                serde_json::json!([{"attribute": "", "op": "segmentMatch", "values": [format!("s{}", i + 1)]}])
            } else {
                serde_json::json!([])
            };
            segment_map.insert(format!("s{i}"), serde_json::json!({"key": format!("s{i}"), "rules": [{"id": "r", "clauses": clauses}]}));
        }
        flags.insert("f0".into(), serde_json::json!({"key": "f0", "on": true, "variations": [false, true], "fallthrough": {"variation": 0},
            "rules": [{"id": "r", "variation": 1, "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["s0"]}]}]}));
    } else {
        for i in 0..n {
            let prerequisites = if i + 1 < n {
                serde_json::json!([{"key": format!("f{}", i + 1), "variation": 1}])
            } else {
                serde_json::json!([])
            };
            flags.insert(format!("f{i}"), serde_json::json!({"key": format!("f{i}"), "on": true, "variations": [false, true],
                "offVariation": 0, "fallthrough": {"variation": 1}, "prerequisites": prerequisites}));
        }
    }
    FlagData::from_json(serde_json::json!({"flags": flags, "segments": segment_map}))
        .expect("chain loads")
}

#[test]
fn depth_is_limited_instead_of_overflowing_the_stack() {
    let context =
        Context::from_json(&serde_json::json!({"kind": "user", "key": "u"})).expect("context");
    for segments in [false, true] {
        // Within the limit: evaluates normally.
        let ok = Snapshot::compile(&chain(flagstaff_eval::MAX_DEPTH, segments));
        let detail = ok.evaluate("f0", &context);
        assert_eq!(
            detail.variation_index,
            Some(1),
            "segments={segments}: {detail:?}"
        );
        // Far beyond it: MALFORMED_FLAG, and the process is still here to say so.
        let deep = Snapshot::compile(&chain(5_000, segments));
        let detail = deep.evaluate("f0", &context);
        assert_eq!(
            detail.reason.error_kind(),
            Some(flagstaff_protocol::ErrorKind::MalformedFlag),
            "segments={segments}"
        );
    }
}
