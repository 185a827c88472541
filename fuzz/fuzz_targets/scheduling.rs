//! What a scheduled change and a dashboard edit hand the server: the moment of a schedule
//! (`executeAt` with any text, any `timeZone`, any `executionDate`) and two targeting documents
//! whose difference becomes instructions (`instruction_diff.rs`). Refusals must be errors naming
//! the field, never panics; instructions made from an edit must parse, and apply or conflict.
#![no_main]

use flagstaff_app::instruction_diff::targeting_instructions;
use flagstaff_app::instructions::{apply_to_targeting, parse_flag_instructions};
use flagstaff_app::model::Targeting;
use flagstaff_app::when::{When, execution_date, local_time};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|input: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    if let Ok(when) = serde_json::from_value::<When>(value.clone()) {
        if let Ok(at) = execution_date(&when) {
            if let Some(zone) = &when.time_zone {
                let _ = local_time(at, zone);
            }
        }
    }
    let (Some(before), Some(after)) = (value.get("before"), value.get("after")) else {
        return;
    };
    let (Ok(before), Ok(after)) = (
        serde_json::from_value::<Targeting>(before.clone()),
        serde_json::from_value::<Targeting>(after.clone()),
    ) else {
        return;
    };
    if let Ok(instructions) = targeting_instructions(&before, &after) {
        if instructions.is_empty() {
            return;
        }
        let parsed = parse_flag_instructions(&instructions)
            .expect("instructions made from an edit parse");
        let mut applied = before.clone();
        let _ = apply_to_targeting(&mut applied, &parsed);
    }
});
