//! What clients that never see rules receive: one evaluated flag per key (`ld-protocol.md` §5.3)
//! and the `allFlagsState` bootstrap document (§5.10).

use serde::Serialize;
use serde_json::Value;

use crate::Reason;

fn is_false(b: &bool) -> bool {
    !*b
}

/// One flag evaluated for one context, as browser and mobile SDKs receive it in polling bodies,
/// stream `put`s and (with `key`) stream `patch`es (§5.3). Borrows everything, so building one
/// costs no allocation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatedFlag<'a> {
    /// The flag key: present only in a stream `patch` (§5.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// The value (`null` when there is no variation: the SDK then returns the app's default).
    pub value: Option<&'a Value>,
    /// The variation index (`null` when there is none, as Relay writes it).
    pub variation: Option<usize>,
    /// The ordering version for stream updates. Flagstaff sends an environment-wide version
    /// that grows with every change, because segment and prerequisite changes alter results
    /// without bumping the flag's own version (§5.5, §13 pitfall 2).
    pub version: u64,
    /// The flag's own version, which SDKs put into analytics events.
    pub flag_version: u64,
    /// `flag.trackEvents || isExperiment` (§3.10).
    #[serde(skip_serializing_if = "is_false")]
    pub track_events: bool,
    /// `isExperiment`: the SDK must include the reason in feature events.
    #[serde(skip_serializing_if = "is_false")]
    pub track_reason: bool,
    /// Present when reasons were asked for, or when the result is an experiment's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a Reason<&'a str>>,
    /// Copied from the flag when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_events_until_date: Option<u64>,
    /// The prerequisites evaluated directly for this flag, in order; omitted when empty.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub prerequisites: &'a [&'a str],
}

/// The metadata of one flag in an `allFlagsState` bootstrap document (§5.10), under
/// `$flagsState`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagState<'a> {
    /// The variation index, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variation: Option<usize>,
    /// The flag version.
    pub version: u64,
    /// `flag.trackEvents || isExperiment`.
    #[serde(skip_serializing_if = "is_false")]
    pub track_events: bool,
    /// `isExperiment`.
    #[serde(skip_serializing_if = "is_false")]
    pub track_reason: bool,
    /// Kept when reasons were asked for or `trackReason` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a Reason<&'a str>>,
    /// Copied from the flag when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_events_until_date: Option<u64>,
    /// The prerequisites evaluated directly for this flag.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub prerequisites: &'a [&'a str],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReasonKind;

    #[test]
    fn an_evaluated_flag_has_the_relay_shape() {
        let value = serde_json::json!(true);
        let reason = Reason::new(ReasonKind::Fallthrough {
            in_experiment: true,
        });
        let flag = EvaluatedFlag {
            key: None,
            value: Some(&value),
            variation: Some(1),
            version: 1047,
            flag_version: 12,
            track_events: true,
            track_reason: true,
            reason: Some(&reason),
            debug_events_until_date: Some(1_735_689_600_000),
            prerequisites: &["other-flag"],
        };
        assert_eq!(
            serde_json::to_value(&flag).unwrap(),
            serde_json::json!({"value": true, "variation": 1, "version": 1047, "flagVersion": 12,
                "trackEvents": true, "trackReason": true,
                "reason": {"kind": "FALLTHROUGH", "inExperiment": true},
                "debugEventsUntilDate": 1_735_689_600_000_u64, "prerequisites": ["other-flag"]})
        );
    }

    #[test]
    fn a_flag_with_no_variation_writes_nulls_and_omits_what_is_unset() {
        let flag = EvaluatedFlag {
            key: Some("off-flag"),
            value: None,
            variation: None,
            version: 1047,
            flag_version: 3,
            track_events: false,
            track_reason: false,
            reason: None,
            debug_events_until_date: None,
            prerequisites: &[],
        };
        assert_eq!(
            serde_json::to_string(&flag).unwrap(),
            r#"{"key":"off-flag","value":null,"variation":null,"version":1047,"flagVersion":3}"#
        );
    }
}
