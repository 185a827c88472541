//! Runs every evaluation in LaunchDarkly's public SDK test-harness data files
//! (`../shared/conformance/launchdarkly-sdk-test-harness/server-side-eval/*.yml`) against
//! flagstaff-eval. The files are read in place, never copied (`ld-protocol.md` §11.3), by our own
//! loader in `flagstaff-testkit` (shared with the server's real-SDK tests).

use std::collections::BTreeMap;

use flagstaff_eval::Snapshot;
use flagstaff_protocol::{FlagData, Reason};
use flagstaff_testkit::conformance::{self, variants};
use flagstaff_testkit::json_equal;
use serde_json::Value;

#[test]
fn server_side_eval_vectors() {
    let Some(variants) = variants() else { return };
    let mut passed = 0usize;
    let mut per_file = BTreeMap::new();
    let mut failures = Vec::new();
    for variant in &variants {
        let (name, label) = (&variant.file, &variant.label);
        let data = FlagData::from_json(variant.sdk_data.clone())
            .unwrap_or_else(|e| panic!("{name} {label}: sdkData does not load: {e}"));
        let snapshot = Snapshot::compile(&data);
        for evaluation in &variant.evaluations {
            let expect = &evaluation.expect;
            let (value, variation, reason) =
                conformance::evaluate(&snapshot, evaluation, evaluation.value_type);
            let expected_reason: Reason = serde_json::from_value(expect["reason"].clone())
                .unwrap_or_else(|e| panic!("{name} {label}: expected reason does not parse: {e}"));
            let expected_variation = expect.get("variationIndex").cloned().unwrap_or(Value::Null);
            let ok = json_equal(&value, expect.get("value").unwrap_or(&Value::Null))
                && variation == expected_variation
                && reason == serde_json::to_value(&expected_reason).unwrap_or_default();
            *per_file.entry(name.clone()).or_insert(0) += 1;
            if ok {
                passed += 1;
            } else {
                failures.push(format!(
                    "{name} / {label} / {}:\n    expected value {} index {} reason {}\n    got      value {value} index {variation} reason {reason}",
                    evaluation.name, expect["value"], expected_variation, expect["reason"]
                ));
            }
        }
    }
    for (name, count) in &per_file {
        eprintln!("conformance: {name}: {count} evaluations");
    }
    let total = passed + failures.len();
    println!(
        "conformance: {passed} of {total} LaunchDarkly server-side evaluations passed, from {} files",
        per_file.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} conformance evaluations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        total > 500,
        "expected the full vector set, evaluated only {total}"
    );
}
