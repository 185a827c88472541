//! Unit tests of `insights.rs`.
use flagstaff_store::events::FlagUsage;
use serde_json::json;

use super::*;
use crate::model::Variation;

const NOW: i64 = 1_800_000_000_000;

fn definition() -> FlagDefinition {
    serde_json::from_value(json!({
        "key": "checkout", "name": "Checkout",
        "variations": [{"value": true, "name": "On"}, {"value": false}]
    }))
    .unwrap()
}

fn usage(first_days_ago: i64, last_days_ago: i64) -> FlagUsage {
    FlagUsage {
        environment: "p/e".into(),
        flag: "checkout".into(),
        first_evaluated: NOW - first_days_ago * DAY,
        last_evaluated: NOW - last_days_ago * DAY,
        evaluations: 10,
    }
}

fn status(
    created: Option<i64>,
    usage: Option<FlagUsage>,
    served: &[(Option<u32>, u64)],
) -> (FlagStatus, String) {
    let s = status_of(
        &definition(),
        "e",
        created,
        usage.as_ref(),
        served.to_vec(),
        NOW,
        7,
    );
    (s.status, s.evidence)
}

#[test]
fn statuses_follow_the_evaluations_in_the_window() {
    let (s, why) = status(Some(NOW - 2 * DAY), None, &[]);
    assert_eq!(s, FlagStatus::New, "{why}");
    let (s, why) = status(Some(NOW - 20 * DAY), None, &[]);
    assert_eq!(s, FlagStatus::Inactive, "{why}");
    assert!(why.contains("never evaluated"));
    let (s, why) = status(Some(NOW - 20 * DAY), Some(usage(20, 9)), &[]);
    assert_eq!(s, FlagStatus::Inactive);
    assert!(why.contains("9 days ago"), "{why}");
    let (s, why) = status(None, Some(usage(20, 0)), &[(Some(0), 90), (Some(1), 10)]);
    assert_eq!(s, FlagStatus::Active);
    assert!(why.contains("100 evaluations"), "{why}");
    let (s, why) = status(None, Some(usage(20, 0)), &[(Some(0), 100), (Some(1), 0)]);
    assert_eq!(s, FlagStatus::Launched);
    assert!(
        why.contains("every one of 100") && why.contains("On"),
        "{why}"
    );
    // One variation, but only for two days: too early to call it launched.
    let (s, _) = status(None, Some(usage(2, 0)), &[(Some(0), 100)]);
    assert_eq!(s, FlagStatus::Active);
    // Everyone gets the application default: launched "off", evidence says so.
    let (s, why) = status(None, Some(usage(30, 0)), &[(None, 5)]);
    assert_eq!(s, FlagStatus::Launched);
    assert!(why.contains("default"), "{why}");
}

#[test]
fn labels_prefer_names_then_values() {
    let mut d = definition();
    assert_eq!(label(&d, Some(0)), "On");
    assert_eq!(label(&d, Some(1)), "false");
    assert_eq!(label(&d, Some(7)), "variation 7 (no longer defined)");
    d.variations.push(Variation {
        value: json!({"a": 1}),
        name: Some(String::new()),
        description: None,
    });
    assert_eq!(label(&d, Some(2)), "{\"a\":1}");
}

#[test]
fn ranges_round_trip() {
    for range in InsightsRange::ALL {
        assert_eq!(InsightsRange::parse(range.as_str()).unwrap(), range);
    }
    assert!(InsightsRange::parse("2w").is_err());
}
