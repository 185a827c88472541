//! `flagstaff eval`: the output contract other tools rely on, and its errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn flagstaff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagstaff"))
        .args(args)
        .output()
        .expect("run flagstaff")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write input");
    path
}

/// Writes the inputs to a temporary folder and runs `flagstaff eval` on them.
fn eval(data: &str, contexts: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "data.json", data);
    let contexts = write(dir.path(), "contexts.jsonl", contexts);
    let mut args = vec![
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--contexts",
        contexts.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    flagstaff(&args)
}

fn lines(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "flagstaff failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

const DATA: &str = r#"{
  "flags": {
    "zeta": {"key": "zeta", "version": 1, "on": false, "variations": ["a", "b"]},
    "alpha": {"key": "alpha", "version": 2, "on": true, "variations": [false, true], "offVariation": 0,
              "rules": [{"id": "r", "variation": 1, "clauses": [{"attribute": "plan", "op": "in", "values": ["gold"]}]}],
              "fallthrough": {"variation": 0}},
    "gone": {"key": "gone", "version": 9, "deleted": true}
  },
  "segments": {}
}"#;

const CONTEXTS: &str = "{\"kind\": \"user\", \"key\": \"u1\", \"plan\": \"gold\"}\n\n{\"key\": \"legacy\", \"custom\": {\"plan\": \"free\"}}\n";

#[test]
fn every_context_in_file_order_every_flag_in_key_order() {
    let out = lines(&eval(DATA, CONTEXTS, &[]));
    // The blank second line is skipped but keeps its index; the deleted flag does not exist.
    assert_eq!(
        out,
        vec![
            json!({"context": 0, "flag": "alpha", "value": true, "variationIndex": 1, "reason": {"kind": "RULE_MATCH", "ruleIndex": 0, "ruleId": "r"}}),
            json!({"context": 0, "flag": "zeta", "value": null, "variationIndex": null, "reason": {"kind": "OFF"}}),
            json!({"context": 2, "flag": "alpha", "value": false, "variationIndex": 0, "reason": {"kind": "FALLTHROUGH"}}),
            json!({"context": 2, "flag": "zeta", "value": null, "variationIndex": null, "reason": {"kind": "OFF"}}),
        ]
    );
}

#[test]
fn default_flag_filter_and_stream_put_wrapper() {
    let wrapped = format!(r#"{{"path": "/", "data": {DATA}}}"#);
    let run = |flag: &str| {
        lines(&eval(
            &wrapped,
            CONTEXTS,
            &["--default", r#"{"fallback": 1}"#, "--flag", flag],
        ))
    };
    let zeta = run("zeta");
    assert_eq!(zeta.len(), 2);
    assert_eq!(
        zeta[0]["value"],
        json!({"fallback": 1}),
        "off with no off variation gives the default"
    );
    assert_eq!(zeta[0]["reason"], json!({"kind": "OFF"}));
    let gone = run("gone");
    assert_eq!(gone[0]["value"], json!({"fallback": 1}));
    assert_eq!(
        gone[0]["reason"],
        json!({"kind": "ERROR", "errorKind": "FLAG_NOT_FOUND"})
    );
}

#[test]
fn explain_describes_the_matching_rule_and_clause() {
    let out = lines(&eval(DATA, CONTEXTS, &["--flag", "alpha", "--explain"]));
    let trace: Vec<&str> = out[0]["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let text = trace.join("\n");
    assert!(
        text.contains(r#"clause 0: user "plan" in ["gold"]"#),
        "{text}"
    );
    assert!(
        text.contains(r#"user attribute "plan" is "gold""#),
        "{text}"
    );
    assert!(text.contains("rule 0 matches"), "{text}");
    let second: Vec<&str> = out[1]["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        second.join("\n").contains("clause 0 is false"),
        "{second:?}"
    );
}

fn failure(data: &str, contexts: &str, extra: &[&str]) -> String {
    let output = eval(data, contexts, extra);
    assert!(!output.status.success(), "expected failure");
    assert!(output.stdout.is_empty(), "no partial output on failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn malformed_context_line_names_line_and_field() {
    let contexts =
        "{\"kind\": \"user\", \"key\": \"ok\"}\n{\"kind\": \"multi\", \"org\": {\"key\": 7}}\n";
    let error = failure(DATA, contexts, &[]);
    assert!(error.contains("line 2 (context 1)"), "{error}");
    assert!(error.contains("org.key"), "{error}");
    let error = failure(
        DATA,
        "{\"kind\": \"user\", \"key\": \"ok\"}\n{not json\n",
        &[],
    );
    assert!(
        error.contains("line 2") && error.contains("not valid JSON"),
        "{error}"
    );
}

#[test]
fn malformed_data_names_the_field_path() {
    let error = failure(
        r#"{"flags": {"f": {"version": "seven"}}}"#,
        "{\"key\": \"u\"}\n",
        &[],
    );
    assert!(error.contains("flags.f.version"), "{error}");
    let error = failure(DATA, "{\"key\": \"u\"}\n", &["--default", "{oops"]);
    assert!(error.contains("--default"), "{error}");
}

#[test]
fn readme_example_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/eval");
    let out = lines(&flagstaff(&[
        "eval",
        "--data",
        root.join("flags.json").to_str().unwrap(),
        "--contexts",
        root.join("contexts.jsonl").to_str().unwrap(),
    ]));
    assert_eq!(out.len(), 4 * 5, "4 contexts x 5 flags");
    let find = |context: u64, flag: &str| {
        out.iter()
            .find(|l| l["context"] == context && l["flag"] == flag)
            .unwrap()
            .clone()
    };
    assert_eq!(
        find(1, "new-checkout")["reason"]["ruleId"],
        "beta-orgs",
        "acme is in the beta-orgs segment"
    );
    assert_eq!(
        find(3, "dark-mode")["reason"]["kind"],
        "TARGET_MATCH",
        "legacy users are individually targeted"
    );
    assert_eq!(
        find(2, "max-upload-mb")["value"],
        1000,
        "semver rule on the device kind"
    );
}
