//! Semantic-patch instructions as the management API applies them: arbitrary bytes as the
//! `instructions` of a flag's targeting and of a segment. Refusals must be errors naming an
//! instruction, never panics; whatever applies must still serialize.
#![no_main]

use flagstaff_app::instructions::{
    apply_to_segment, apply_to_targeting, parse_flag_instructions, parse_segment_instructions,
};
use flagstaff_app::model::Targeting;
use flagstaff_protocol::Segment;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|input: &[u8]| {
    let Ok(Value::Array(instructions)) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    let mut targeting: Targeting = serde_json::from_value(json!({
        "on": true, "offVariation": 0, "fallthrough": {"variation": 1},
        "targets": [{"variation": 0, "values": ["a", "b"]}],
        "rules": [{"id": "r1", "variation": 1, "clauses": [
            {"attribute": "country", "op": "in", "values": ["NZ", "DE"]}]},
            {"id": "r2", "variation": 0, "clauses": []}],
        "prerequisites": [{"key": "p", "variation": 0}], "salt": "s"
    }))
    .expect("a targeting document");
    if let Ok(parsed) = parse_flag_instructions(&instructions)
        && apply_to_targeting(&mut targeting, &parsed).is_ok()
    {
        serde_json::to_vec(&targeting).expect("targeting serializes");
    }
    let mut segment: Segment = serde_json::from_value(json!({
        "key": "s", "included": ["a"], "excludedContexts": [{"contextKind": "org", "values": ["x"]}],
        "rules": [{"id": "r1", "clauses": []}]
    }))
    .expect("a segment");
    if let Ok(parsed) = parse_segment_instructions(&instructions)
        && apply_to_segment(&mut segment, &parsed).is_ok()
    {
        serde_json::to_vec(&segment).expect("segment serializes");
    }
});
