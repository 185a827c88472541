//! Every validation code the app has, each produced by a real use case with the field path it
//! names. The last test fails when a code is added without a case here.

use std::collections::BTreeSet;

use flagstaff_app::validate::codes;
use flagstaff_app::{Actor, EnvironmentSettings};
use flagstaff_app::{EnvRef, WriteMeta};
use serde_json::{Value, json};

use crate::support::{Fixture, boolean, invalid};

/// A rule with one clause, serving variation 0.
fn rule(clause: Value) -> Value {
    json!([{"clauses": [clause], "variation": 0}])
}

/// Sets targeting fields of flag `f` in `test` and returns the refusal.
async fn targeting(fields: Value) -> (String, String) {
    let fixture = Fixture::new().await;
    fixture.flag(boolean("f")).await.expect("flag f");
    invalid(fixture.targeting("test", "f", fields).await)
}

/// `(code, field)` for each case, built by running it.
async fn cases() -> Vec<(&'static str, (String, String), (&'static str, &'static str))> {
    let mut out = Vec::new();
    let fixture = Fixture::new().await;
    let mut check =
        |name: &'static str, got: (String, String), want: (&'static str, &'static str)| {
            out.push((name, got, want));
        };

    // Definitions.
    check(
        "a key with a space",
        invalid(fixture.flag(json!({"key": "bad key", "name": "x"})).await),
        ("invalid_key", "key"),
    );
    check(
        "a flag without a name",
        invalid(fixture.flag(json!({"key": "nameless", "name": " "})).await),
        ("invalid_field", "name"),
    );
    check(
        "a boolean flag with numbers",
        invalid(
            fixture
                .flag(json!({"key": "b", "name": "b", "kind": "boolean", "variations": [{"value": 1}, {"value": 2}]}))
                .await,
        ),
        ("invalid_variations", "variations"),
    );

    // Targeting.
    check(
        "an off variation that does not exist",
        targeting(json!({"offVariation": 5})).await,
        ("variation_out_of_range", "offVariation"),
    );
    check(
        "a fallthrough serving nothing",
        targeting(json!({"fallthrough": {}})).await,
        ("missing_variation", "fallthrough"),
    );
    check(
        "a rollout without buckets",
        targeting(json!({"fallthrough": {"rollout": {"variations": []}}})).await,
        ("invalid_rollout", "fallthrough.rollout.variations"),
    );
    check(
        "an operator nobody knows",
        targeting(json!({"rules": rule(json!({"attribute": "email", "op": "frobnicates", "values": ["x"]}))})).await,
        ("unknown_operator", "rules[0].clauses[0].op"),
    );
    check(
        "a clause without values",
        targeting(json!({"rules": rule(json!({"attribute": "email", "op": "in", "values": []}))}))
            .await,
        ("invalid_clause_values", "rules[0].clauses[0].values"),
    );
    check(
        "a regex that does not compile",
        targeting(
            json!({"rules": rule(json!({"attribute": "email", "op": "matches", "values": ["("]}))}),
        )
        .await,
        ("invalid_regex", "rules[0].clauses[0].values[0]"),
    );
    let many: Vec<String> = (0..101).map(|i| format!("^a{i}$")).collect();
    check(
        "101 regular expressions in one flag",
        targeting(
            json!({"rules": rule(json!({"attribute": "email", "op": "matches", "values": many}))}),
        )
        .await,
        ("invalid_regex", "rules[0].clauses[0].values[100]"),
    );
    let long = "a".repeat(6_000);
    let clauses: Vec<Value> = (0..3)
        .map(|_| json!({"attribute": "email", "op": "matches", "values": [long]}))
        .collect();
    check(
        "18,000 bytes of regular expressions in one flag",
        targeting(json!({"rules": [{"clauses": clauses, "variation": 0}]})).await,
        ("invalid_regex", "rules[0].clauses[2].values[0]"),
    );
    check(
        "the reserved context kind `kind`",
        targeting(json!({"rules": rule(json!({"contextKind": "kind", "attribute": "key", "op": "in", "values": ["x"]}))})).await,
        ("invalid_context_kind", "rules[0].clauses[0].contextKind"),
    );
    check(
        "an attribute reference to nothing",
        targeting(json!({"rules": rule(json!({"contextKind": "user", "attribute": "/", "op": "in", "values": ["x"]}))})).await,
        ("invalid_attribute_reference", "rules[0].clauses[0].attribute"),
    );
    check(
        "an organisation in the user targets",
        targeting(json!({"targets": [{"contextKind": "org", "values": ["acme"], "variation": 0}]}))
            .await,
        ("invalid_target", "targets[0].contextKind"),
    );
    check(
        "a segment that does not exist",
        targeting(json!({"rules": rule(json!({"attribute": "", "op": "segmentMatch", "values": ["nope"]}))})).await,
        ("unknown_segment", "rules[0].clauses[0].values[0]"),
    );
    check(
        "a prerequisite that does not exist",
        targeting(json!({"prerequisites": [{"key": "nope", "variation": 0}]})).await,
        ("unknown_prerequisite", "prerequisites[0].key"),
    );

    // Graphs: prerequisites and segments that would close a cycle.
    let graph = Fixture::new().await;
    graph.flag(boolean("x")).await.expect("flag x");
    graph.flag(boolean("y")).await.expect("flag y");
    graph
        .targeting(
            "test",
            "x",
            json!({"prerequisites": [{"key": "y", "variation": 0}]}),
        )
        .await
        .expect("x needs y");
    check(
        "y needing x, which needs y",
        invalid(
            graph
                .targeting(
                    "test",
                    "y",
                    json!({"prerequisites": [{"key": "x", "variation": 0}]}),
                )
                .await,
        ),
        ("prerequisite_cycle", "prerequisites[0].key"),
    );
    graph
        .segment("test", json!({"key": "a", "included": ["u"]}))
        .await
        .expect("segment a");
    graph
        .segment("test", json!({"key": "b", "rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["a"]}]}]}))
        .await
        .expect("b uses a");
    check(
        "segment a using b, which uses a",
        invalid(
            graph
                .segment("test", json!({"key": "a", "rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["b"]}]}]}))
                .await,
        ),
        ("segment_cycle", "rules[0].clauses[0].values[0]"),
    );

    // Secure mode needs the HMAC key schedule that SDK keys made before it existed lack. Such
    // a key is made here the way the store held it then: the credential without the schedule.
    let old = Fixture::new().await;
    for credential in old.store.list("credential", "").await.expect("credentials") {
        if credential.body["type"] == "sdk" && credential.body["environment"] == "test" {
            let mut body = credential.body.clone();
            body.as_object_mut()
                .expect("an object")
                .remove("secureModeKey");
            old.store
                .commit(flagstaff_store::Change {
                    writes: vec![flagstaff_store::Write::Put {
                        kind: "credential".into(),
                        scope: String::new(),
                        key: credential.key.clone(),
                        body,
                        expect: flagstaff_store::Expect::Version(credential.version),
                    }],
                    audit: flagstaff_store::AuditDraft {
                        actor: "test".into(),
                        action: "test.legacy_key".into(),
                        kind: "credential".into(),
                        scope: String::new(),
                        key: credential.key,
                        comment: String::new(),
                        before: None,
                        after: None,
                    },
                })
                .await
                .expect("an SDK key as stored before secure mode");
        }
    }
    let environment = old
        .app
        .environment(&Actor::system(), "default", "test")
        .await
        .expect("environment test");
    let settings = EnvironmentSettings {
        secure_mode: Some(true),
        critical: None,
        approvals: None,
        color: None,
        fdv1_fallback: None,
    };
    check(
        "secure mode on an environment whose SDK key predates it",
        invalid(
            old.app
                .update_environment(
                    EnvRef {
                        project: "default",
                        environment: "test",
                    },
                    "Test",
                    settings,
                    WriteMeta {
                        actor: &Actor::system(),
                        expected: environment.version,
                        comment: "test",
                    },
                )
                .await
                .map(|_| ()),
        ),
        ("secure_mode_needs_rotation", "secureMode"),
    );
    out
}

#[tokio::test]
async fn every_validation_code_is_produced_by_a_use_case_with_its_field() {
    let cases = cases().await;
    let mut failures = Vec::new();
    for (name, (code, field), (want_code, want_field)) in &cases {
        if code != want_code || field != want_field {
            failures.push(format!(
                "{name}: got {code} at {field:?}, want {want_code} at {want_field:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let covered: BTreeSet<&str> = cases.iter().map(|(_, _, (code, _))| *code).collect();
    let all: BTreeSet<&str> = codes::ALL.iter().map(|c| c.as_str()).collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "codes without a case: {missing:?}");
}

#[tokio::test]
async fn a_refused_write_changes_nothing() {
    let fixture = Fixture::new().await;
    fixture.flag(boolean("f")).await.expect("flag f");
    let head = fixture.app.head().await.expect("head");
    let before = fixture
        .app
        .targeting(&Actor::system(), "default", "test", "f")
        .await
        .expect("targeting");
    let refused = fixture
        .targeting("test", "f", json!({"on": true, "offVariation": 9}))
        .await;
    assert!(refused.is_err());
    let after = fixture
        .app
        .targeting(&Actor::system(), "default", "test", "f")
        .await
        .expect("targeting");
    assert_eq!(before, after);
    assert_eq!(
        fixture.app.head().await.expect("head"),
        head,
        "no audit entry"
    );
}
