//! OFREP to the letter (issue 24, point 5): schemathesis (PyPI) runs the official OFREP 0.3.0
//! OpenAPI document, read unchanged from `../shared/spec/ofrep/openapi.yaml`, against a real
//! `flagstaff serve` holding flags of every value type, with an SDK key. No answer may be a 5xx
//! and none may contradict the document.
//!
//! One reading of the document is relaxed, in a copy made in the test's own directory: the
//! `oneOf` that types a successful evaluation's `value` (`booleanFlag`, `stringFlag`,
//! `integerFlag`, `floatFlag`, `objectFlag`, `codeDefaultFlag`) is read as `anyOf`. As written
//! no answer with a value can satisfy it: `codeDefaultFlag` is `{type: object, properties: {}}`,
//! which every evaluation matches, so `{"value": true, …}` matches two of the six, and an
//! integer value also matches `floatFlag`; JSON Schema's `oneOf` requires exactly one. The
//! test checks that this is the only relaxation needed: the copy differs from the original in
//! that one keyword. Everything else (the five reasons, error codes, `eventStreams`, the
//! `flagConfigEtag`/`flagConfigLastModified` parameters) is checked as published.

use std::path::Path;

use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::json;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

#[test]
fn schemathesis_finds_flagstaffs_ofrep_true_to_the_official_document() {
    let root = flagstaff_testkit::workspace_root();
    let document = root.join("../shared/spec/ofrep/openapi.yaml");
    if !document.exists() {
        eprintln!("skipped: {} is not here", document.display());
        return;
    }
    let venv = root.join("sdk-clients/schemathesis/.venv/bin");
    assert!(
        venv.join("schemathesis").exists(),
        "{} is missing: run sdk-clients/install",
        venv.display()
    );
    let dir = tempfile::tempdir().unwrap();
    // The copy with the one relaxation, and a check that it is the only difference.
    let relaxed = dir.path().join("ofrep-relaxed.json");
    let made = std::process::Command::new(venv.join("python"))
        .arg("-c")
        .arg(
            r#"
import copy, json, sys, yaml
original = yaml.safe_load(open(sys.argv[1]))
relaxed = copy.deepcopy(original)
parts = relaxed["components"]["schemas"]["evaluationSuccess"]["allOf"]
typed = [p for p in parts if "oneOf" in p]
assert len(typed) == 1, "the value-typing oneOf is where the test expects it"
typed[0]["anyOf"] = typed[0].pop("oneOf")
back = copy.deepcopy(relaxed)
back["components"]["schemas"]["evaluationSuccess"]["allOf"][parts.index(typed[0])] = {"oneOf": typed[0]["anyOf"]}
assert back == original, "the copy differs from the document only in that keyword"
json.dump(relaxed, open(sys.argv[2], "w"))
"#,
        )
        .arg(&document)
        .arg(&relaxed)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let credentials = server::init(binary(), dir.path());
    let running = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = running.base();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = Api::new(&base, &credentials.admin_token);
    let targeting = |key: &str| format!("/projects/default/environments/production/flags/{key}");
    // Flags of every value type, answered with each of the five reasons but UNKNOWN.
    runtime.block_on(async {
        for (key, kind, variations) in [
            ("on-off", "boolean", json!([{"value": true}, {"value": false}])),
            ("theme", "multivariate", json!([{"value": "light"}, {"value": "dark"}])),
            ("limit", "multivariate", json!([{"value": 10}, {"value": 20}])),
            ("ratio", "multivariate", json!([{"value": 0.25}, {"value": 0.5}])),
            ("layout", "multivariate", json!([{"value": {"columns": 2}}, {"value": {"columns": 3}}])),
        ] {
            admin
                .post(
                    "/projects/default/flags",
                    &json!({"key": key, "name": key, "kind": kind, "variations": variations}),
                )
                .await;
        }
        let rules = json!([{"variation": 0, "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}]);
        for (key, body) in [
            ("on-off", json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1, "rules": rules})),
            ("theme", json!({"on": true, "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}, "offVariation": 1})),
            ("limit", json!({"on": true, "fallthrough": {"variation": 1}, "offVariation": 0})),
            ("ratio", json!({"on": false, "fallthrough": {"variation": 0}, "offVariation": 1})),
            ("layout", json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1, "targets": [{"values": ["ann"], "variation": 1}]})),
        ] {
            let current = admin.get(&targeting(key)).await;
            admin
                .put(&targeting(key), &body, current["version"].as_u64())
                .await;
        }
    });
    let examples =
        std::env::var("FLAGSTAFF_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "50".to_owned());
    let seed = std::env::var("FLAGSTAFF_SCHEMATHESIS_SEED").unwrap_or_else(|_| "24".to_owned());
    let mut command = std::process::Command::new(venv.join("schemathesis"));
    command
        .arg("run")
        .arg(&relaxed)
        .args(["--url", &base])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", credentials.sdk_key),
        ])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", &examples])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    if seed != "random" {
        command.args(["--seed", &seed]);
    }
    let output = command.output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = said
        .lines()
        .skip_while(|line| !line.contains("SUMMARY"))
        .collect();
    eprintln!("schemathesis on OFREP 0.3.0:\n{}", summary.join("\n"));
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It did test both operations of the document.
    assert!(
        said.contains("Tested: 2") && said.contains("2 selected / 2 total"),
        "not every operation was tested:\n{said}"
    );
}
