//! The benchmark scenarios named by issue 2, shared by the criterion benchmark and the
//! counting-allocator test so that "zero allocations" is proven on exactly what is measured.

use serde_json::{Value, json};

/// One flag to evaluate for one context, with the environment data around it.
#[derive(Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub data: Value,
    pub flag: &'static str,
    pub context: Value,
    /// The reason the evaluation must produce, worked out by hand, so that each scenario is
    /// known to take the path it is named for.
    pub reason: Value,
}

fn boolean_flag(key: &str, extra: Value) -> Value {
    let mut flag = json!({
        "key": key, "version": 1, "on": true, "salt": "salt", "variations": [false, true],
        "offVariation": 0, "fallthrough": {"variation": 1}, "prerequisites": [], "targets": [],
        "contextTargets": [], "rules": [], "trackEvents": false, "trackEventsFallthrough": false,
        "clientSide": false, "debugEventsUntilDate": null, "deleted": false,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        flag[k] = v.clone();
    }
    flag
}

fn clause(attribute: &str, op: &str, values: Value) -> Value {
    json!({"attribute": attribute, "op": op, "values": values, "negate": false})
}

fn data(flags: Vec<Value>, segments: Vec<Value>) -> Value {
    let flags: serde_json::Map<String, Value> = flags
        .into_iter()
        .map(|f| (f["key"].as_str().unwrap_or_default().to_owned(), f))
        .collect();
    let segments: serde_json::Map<String, Value> = segments
        .into_iter()
        .map(|s| (s["key"].as_str().unwrap_or_default().to_owned(), s))
        .collect();
    json!({"flags": flags, "segments": segments})
}

fn user() -> Value {
    json!({"kind": "user", "key": "user-4a7c9e", "email": "dana@customer.test", "country": "NZ",
           "plan": "gold", "age": 37, "appVersion": "7.4.1", "name": "Dana"})
}

pub fn scenarios() -> Vec<Scenario> {
    let countries: Vec<String> = [
        "DE", "FR", "IT", "ES", "PT", "NL", "BE", "LU", "AT", "CH", "PL", "CZ", "SK", "HU", "RO",
        "BG", "GR", "SE", "FI", "DK",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let five_rules = json!({"rules": [
        {"id": "corp", "variation": 0, "trackEvents": false, "clauses": [clause("email", "endsWith", json!(["@corp.example"]))]},
        {"id": "eu", "variation": 0, "trackEvents": false, "clauses": [clause("country", "in", json!(countries))]},
        {"id": "admins", "variation": 0, "trackEvents": false, "clauses": [clause("email", "matches", json!(["^admin[0-9]*@"]))]},
        {"id": "new-app", "variation": 0, "trackEvents": false, "clauses": [clause("appVersion", "semVerGreaterThan", json!(["9.0.0"]))]},
        {"id": "gold-adults", "variation": 1, "trackEvents": false, "clauses": [
            clause("age", "greaterThanOrEqual", json!([18])), clause("plan", "in", json!(["gold", "platinum"]))]}
    ], "fallthrough": {"variation": 0}});
    let rollout = json!({"fallthrough": {"rollout": {"variations": [
        {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}});
    let beta_keys: Vec<String> = (0..100).map(|i| format!("beta-{i}")).collect();
    let segment = json!({
        "key": "beta-testers", "version": 1, "salt": "s", "included": beta_keys, "excluded": [],
        "includedContexts": [], "excludedContexts": [], "deleted": false, "generation": null,
        "rules": [{"id": "nz", "clauses": [clause("country", "in", json!(["NZ", "AU"]))]}]
    });
    let uses_segment = json!({"rules": [{"id": "beta", "variation": 1, "trackEvents": false,
        "clauses": [clause("", "segmentMatch", json!(["beta-testers"]))]}], "fallthrough": {"variation": 0}});
    let chain = vec![
        boolean_flag(
            "chain-top",
            json!({"prerequisites": [{"key": "chain-1", "variation": 1}]}),
        ),
        boolean_flag(
            "chain-1",
            json!({"prerequisites": [{"key": "chain-2", "variation": 1}]}),
        ),
        boolean_flag(
            "chain-2",
            json!({"prerequisites": [{"key": "chain-3", "variation": 1}]}),
        ),
        boolean_flag("chain-3", json!({})),
    ];
    let targeted: Vec<String> = (0..10_000)
        .map(|i| format!("targeted-user-{i:05}"))
        .collect();
    let targets =
        json!({"targets": [{"values": targeted, "variation": 1}], "fallthrough": {"variation": 0}});
    vec![
        Scenario {
            name: "boolean_off",
            data: data(vec![boolean_flag("f", json!({"on": false}))], vec![]),
            flag: "f",
            context: user(),
            reason: json!({"kind": "OFF"}),
        },
        Scenario {
            name: "boolean_fallthrough",
            data: data(vec![boolean_flag("f", json!({}))], vec![]),
            flag: "f",
            context: user(),
            reason: json!({"kind": "FALLTHROUGH"}),
        },
        Scenario {
            name: "five_rules_mixed_operators",
            data: data(vec![boolean_flag("f", five_rules)], vec![]),
            flag: "f",
            context: user(),
            reason: json!({"kind": "RULE_MATCH", "ruleIndex": 4, "ruleId": "gold-adults"}),
        },
        // Bucket of "f.salt.user-4a7c9e" is 71826/100000: the second half.
        Scenario {
            name: "rollout_50_50",
            data: data(vec![boolean_flag("f", rollout)], vec![]),
            flag: "f",
            context: user(),
            reason: json!({"kind": "FALLTHROUGH"}),
        },
        Scenario {
            name: "segment_match",
            data: data(vec![boolean_flag("f", uses_segment)], vec![segment]),
            flag: "f",
            context: user(),
            reason: json!({"kind": "RULE_MATCH", "ruleIndex": 0, "ruleId": "beta"}),
        },
        Scenario {
            name: "prerequisite_chain_3",
            data: data(chain, vec![]),
            flag: "chain-top",
            context: user(),
            reason: json!({"kind": "FALLTHROUGH"}),
        },
        // A context that is not in the list: the common case, and the worst for a linear scan.
        Scenario {
            name: "targets_10000_keys",
            data: data(vec![boolean_flag("f", targets)], vec![]),
            flag: "f",
            context: user(),
            reason: json!({"kind": "FALLTHROUGH"}),
        },
    ]
}
