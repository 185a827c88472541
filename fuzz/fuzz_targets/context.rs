//! Contexts as SDKs and browsers send them (`ld-protocol.md` §3): arbitrary bytes as a context's
//! JSON, the way the browser and mobile paths and the evaluate endpoint read one. A refusal must
//! be an `Err`; an accepted context has distinct kinds in order, each found by its kind, a
//! fully qualified key, and evaluates.
#![no_main]

use flagstaff_eval::Snapshot;
use flagstaff_protocol::{Context, FlagData};
use libfuzzer_sys::fuzz_target;

const FLAGS: &str = r#"{"flags": {"f": {"key": "f", "version": 1, "on": true, "salt": "s",
  "variations": [false, true], "fallthrough": {"rollout": {"variations": [
    {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}},
  "rules": [{"id": "r", "variation": 1, "clauses": [
    {"contextKind": "user", "attribute": "/a/b", "op": "in", "values": ["x", 1, true]},
    {"attribute": "email", "op": "endsWith", "values": ["@example.com"]}]}],
  "offVariation": 0}}, "segments": {}}"#;

fuzz_target!(|input: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(input) else {
        return;
    };
    let Ok(context) = Context::from_json(&json) else {
        return;
    };
    let individuals = context.individuals();
    assert!(!individuals.is_empty());
    for pair in individuals.windows(2) {
        assert!(pair[0].kind().as_str() < pair[1].kind().as_str(), "kinds sorted and distinct");
    }
    for individual in individuals {
        let found = context.individual(individual.kind().as_str());
        assert_eq!(found.map(|i| i.key()), Some(individual.key()));
    }
    let _ = context.fully_qualified_key();
    assert_eq!(Context::from_json(&json).ok().as_ref(), Some(&context), "deterministic");
    let data = FlagData::from_json_str(FLAGS).expect("the fixed flag data");
    let snapshot = Snapshot::compile(&data);
    let _ = snapshot.evaluate("f", &context);
});
