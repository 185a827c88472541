//! Parse-and-evaluate: arbitrary bytes as flag data and contexts, through the same path as
//! `flagstaff eval`. Input: the data JSON, then a NUL byte, then contexts as JSON Lines (without
//! a NUL byte, the whole input is data and a few fixed contexts are used). Every failure must be
//! an `Err`; a panic, an abort or a hang is a bug.
#![no_main]

use flagstaff_eval::{Snapshot, Trace, ValueType};
use flagstaff_protocol::{Context, FlagData};
use libfuzzer_sys::fuzz_target;

const FIXED_CONTEXTS: [&str; 3] = [
    r#"{"kind": "user", "key": "u", "email": "a@b.c", "age": 30, "tags": ["x"]}"#,
    r#"{"kind": "multi", "user": {"key": "u"}, "org": {"key": "o", "plan": "gold"}}"#,
    r#"{"key": "legacy", "secondary": "s", "custom": {"v": "1.2.3"}}"#,
];

fuzz_target!(|input: &[u8]| {
    let (data, contexts) = match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], Some(&input[at + 1..])),
        None => (input, None),
    };
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(data) = FlagData::from_json_str(text) else { return };
    let contexts: Vec<Context> = match contexts {
        Some(bytes) => String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter_map(|json| Context::from_json(&json).ok())
            .collect(),
        None => FIXED_CONTEXTS
            .iter()
            .filter_map(|c| Context::from_json(&serde_json::from_str(c).ok()?).ok())
            .collect(),
    };
    let snapshot = Snapshot::compile(&data);
    let default = serde_json::Value::Null;
    for context in &contexts {
        for flag in snapshot.flags() {
            let detail = snapshot.evaluate(flag.key(), context);
            let mut trace = Trace::default();
            let id = snapshot.flag_id(flag.key()).expect("listed flags exist");
            assert_eq!(detail, snapshot.evaluate_observed(id, context, &mut trace));
            let _ = detail.with_default(&default, ValueType::Bool);
            let _ = serde_json::to_string(&snapshot.evaluate(flag.key(), context).reason);
        }
    }
});
