//! JSON Patch as the management API applies it (`PATCH` of flags, targeting and segments):
//! arbitrary bytes as a patch request, applied to a flag's targeting document. Refusals must be
//! errors, never panics, and no patch may build a document much larger than the limit
//! (`MAX_PATCHED_BYTES`) however its operations copy and nest.
#![no_main]

use flagstaff_api::{MAX_PATCHED_BYTES, apply_patch};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|input: &[u8]| {
    let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(input) else {
        return;
    };
    let document = json!({
        "on": true, "offVariation": 0, "fallthrough": {"variation": 1},
        "targets": [{"variation": 0, "values": ["a", "b"]}],
        "rules": [{"id": "r", "variation": 1, "clauses": [
            {"attribute": "country", "op": "in", "values": ["NZ", "DE"]}]}],
        "prerequisites": [], "salt": "s"
    });
    if let Ok(patched) = apply_patch::<Value>(&document, &patch) {
        let len = serde_json::to_vec(&patched).expect("a value serializes").len();
        assert!(
            len <= MAX_PATCHED_BYTES + input.len() + 1024,
            "a {}-byte patch built {len} bytes",
            input.len()
        );
    }
});
