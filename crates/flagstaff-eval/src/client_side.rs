//! Evaluation for clients that receive results, never rules: browser and mobile SDKs, OpenFeature
//! remote evaluation and server-rendered bootstrap documents (`ld-protocol.md` §5.3–5.6, §5.10).

use flagstaff_protocol::{
    Context, CredentialKind, EvaluatedFlag, Flag, FlagState, Reason, ReasonKind,
};
use serde_json::{Map, Value};

use crate::big_segments::BigSegmentMembership;
use crate::evaluate::{Detail, Observer};
use crate::snapshot::{CompiledFlag, FlagId, Snapshot};

/// `isExperiment` (§3.10): whether this result must be reported with full feature events and
/// its reason.
pub fn is_experiment(flag: &Flag, reason: &Reason<&str>) -> bool {
    match &reason.kind {
        ReasonKind::Fallthrough { in_experiment } => {
            *in_experiment || flag.track_events_fallthrough
        }
        ReasonKind::RuleMatch {
            in_experiment,
            rule_index,
            ..
        } => *in_experiment || flag.rules.get(*rule_index).is_some_and(|r| r.track_events),
        _ => false,
    }
}

/// One flag evaluated for a client: the result plus what client payloads carry beyond it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientResult<'a> {
    /// The flag as delivered.
    pub flag: &'a Flag,
    /// The value, variation and reason.
    pub detail: Detail<'a>,
    /// The prerequisites evaluated directly for this flag, in order (client SDKs replay them
    /// as prerequisite events).
    pub prerequisites: Vec<&'a str>,
    /// `isExperiment` for this result.
    pub experiment: bool,
}

impl<'a> ClientResult<'a> {
    /// The evaluated-flag object of §5.3 at environment-wide `version`.
    pub fn payload(&'a self, version: u64, with_reasons: bool) -> EvaluatedFlag<'a> {
        EvaluatedFlag {
            key: None,
            value: self.detail.value,
            variation: self.detail.variation_index,
            version,
            flag_version: self.flag.version,
            track_events: self.flag.track_events || self.experiment,
            track_reason: self.experiment,
            reason: (with_reasons || self.experiment).then_some(&self.detail.reason),
            debug_events_until_date: self.flag.debug_events_until_date.filter(|d| *d > 0),
            prerequisites: &self.prerequisites,
        }
    }

    /// The `$flagsState` entry of a bootstrap document (§5.10). With
    /// `details_only_for_tracked_flags`, the version and reason of flags that send no feature
    /// events are left out, which keeps the page small.
    pub fn flag_state(
        &'a self,
        with_reasons: bool,
        details_only_for_tracked_flags: bool,
    ) -> FlagState<'a> {
        let track_events = self.flag.track_events || self.experiment;
        let debugging = self.flag.debug_events_until_date.filter(|d| *d > 0);
        let details = !details_only_for_tracked_flags || track_events || debugging.is_some();
        FlagState {
            variation: self.detail.variation_index,
            version: if details { self.flag.version } else { 0 },
            track_events,
            track_reason: self.experiment,
            reason: ((with_reasons && details) || self.experiment).then_some(&self.detail.reason),
            debug_events_until_date: debugging,
            prerequisites: &self.prerequisites,
        }
    }

    /// Whether a client holding `other` would see a different result: everything but the
    /// flag's own version, which changes with edits that do not change this context's result.
    pub fn same_result(&self, other: &ClientResult<'_>, with_reasons: bool) -> bool {
        self.detail.value == other.detail.value
            && self.detail.variation_index == other.detail.variation_index
            && self.experiment == other.experiment
            && self.flag.track_events == other.flag.track_events
            && self.flag.debug_events_until_date == other.flag.debug_events_until_date
            && self.prerequisites == other.prerequisites
            && (!(with_reasons || self.experiment) || self.detail.reason == other.detail.reason)
    }
}

/// Collects the prerequisites evaluated directly for the top flag.
struct DirectPrerequisites<'a> {
    top: &'a CompiledFlag,
    keys: Vec<&'a str>,
}

impl Observer for DirectPrerequisites<'_> {
    fn prerequisite_evaluated(
        &mut self,
        parent: &CompiledFlag,
        prerequisite: &CompiledFlag,
        _result: &Detail<'_>,
    ) {
        if !std::ptr::eq(parent, self.top) {
            return;
        }
        // Borrow the key from the top flag's own list, which lives as long as the snapshot.
        if let Some(p) = self
            .top
            .source
            .prerequisites
            .iter()
            .find(|p| p.key == prerequisite.source.key)
        {
            self.keys.push(&p.key);
        }
    }
}

impl Snapshot {
    /// Evaluates flag `id` for a client (§5.4).
    pub fn evaluate_for_client<'a>(&'a self, id: FlagId, context: &Context) -> ClientResult<'a> {
        self.evaluate_for_client_with(id, context, None)
    }

    /// [`Snapshot::evaluate_for_client`] with the context's big-segment membership.
    pub fn evaluate_for_client_with<'a>(
        &'a self,
        id: FlagId,
        context: &Context,
        big_segments: Option<&BigSegmentMembership>,
    ) -> ClientResult<'a> {
        let top = self.flag(id);
        let mut observer = DirectPrerequisites {
            top,
            keys: Vec::new(),
        };
        let detail = self.evaluate_observed_with(id, context, &mut observer, big_segments);
        let experiment = is_experiment(&top.source, &detail.reason);
        ClientResult {
            flag: &top.source,
            detail,
            prerequisites: observer.keys,
            experiment,
        }
    }

    /// Evaluates every flag `credential` may see, in key order.
    pub fn evaluate_all_for_client<'a>(
        &'a self,
        credential: CredentialKind,
        context: &Context,
    ) -> Vec<(&'a str, ClientResult<'a>)> {
        self.evaluate_all_for_client_with(credential, context, None)
    }

    /// [`Snapshot::evaluate_all_for_client`] with the context's big-segment membership.
    pub fn evaluate_all_for_client_with<'a>(
        &'a self,
        credential: CredentialKind,
        context: &Context,
        big_segments: Option<&BigSegmentMembership>,
    ) -> Vec<(&'a str, ClientResult<'a>)> {
        self.flag_ids()
            .filter(|(_, flag)| credential.sees(&flag.source))
            .map(|(id, flag)| {
                (
                    flag.key(),
                    self.evaluate_for_client_with(id, context, big_segments),
                )
            })
            .collect()
    }
}

/// Options of an `allFlagsState` bootstrap document (§5.10), named as LaunchDarkly's SDKs name
/// them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// Only flags marked for browsers (`usingEnvironmentId`).
    pub client_side_only: bool,
    /// Include every flag's reason.
    pub with_reasons: bool,
    /// Leave out the version and reason of flags that send no feature events.
    pub details_only_for_tracked_flags: bool,
}

impl Snapshot {
    /// The `allFlagsState` document for `context` (§5.10): every flag's value by key, plus
    /// `$flagsState` (variation, version, reason and event settings per flag) and
    /// `"$valid": true`. A server renders it into a page so that the browser SDK starts with its
    /// flags (`bootstrap` option); the server's evaluate endpoint and the Rust SDK's
    /// `all_flags_state` both build it here.
    pub fn bootstrap(&self, context: &Context, options: BootstrapOptions) -> Value {
        let credential = if options.client_side_only {
            CredentialKind::ClientSide
        } else {
            CredentialKind::Sdk
        };
        let results = self.evaluate_all_for_client(credential, context);
        let mut document = Map::new();
        let mut states = Map::new();
        for (key, result) in &results {
            document.insert(
                (*key).to_owned(),
                result.detail.value.cloned().unwrap_or(Value::Null),
            );
            let state =
                result.flag_state(options.with_reasons, options.details_only_for_tracked_flags);
            states.insert(
                (*key).to_owned(),
                serde_json::to_value(state).unwrap_or(Value::Null),
            );
        }
        document.insert("$flagsState".to_owned(), Value::Object(states));
        document.insert("$valid".to_owned(), Value::Bool(true));
        Value::Object(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagstaff_protocol::FlagData;
    use serde_json::json;

    fn snapshot(data: serde_json::Value) -> Snapshot {
        Snapshot::compile(&FlagData::from_json(data).unwrap())
    }

    fn user(key: &str) -> Context {
        Context::from_json(&json!({"kind": "user", "key": key})).unwrap()
    }

    #[test]
    fn direct_prerequisites_are_listed_in_order_and_nested_ones_are_not() {
        let snapshot = snapshot(json!({"flags": {
            "top": {"key": "top", "on": true, "variations": [false, true], "fallthrough": {"variation": 1},
                    "prerequisites": [{"key": "a", "variation": 1}, {"key": "b", "variation": 1}]},
            "a": {"key": "a", "on": true, "variations": [false, true], "fallthrough": {"variation": 1},
                  "prerequisites": [{"key": "c", "variation": 1}]},
            "b": {"key": "b", "on": true, "variations": [false, true], "fallthrough": {"variation": 1}},
            "c": {"key": "c", "on": true, "variations": [false, true], "fallthrough": {"variation": 1}}
        }}));
        let id = snapshot.flag_id("top").unwrap();
        let result = snapshot.evaluate_for_client(id, &user("u"));
        assert_eq!(result.prerequisites, vec!["a", "b"]);
        assert_eq!(result.detail.value, Some(&json!(true)));
    }

    #[test]
    fn a_failed_prerequisite_stops_the_list() {
        let snapshot = snapshot(json!({"flags": {
            "top": {"key": "top", "on": true, "variations": [false, true], "fallthrough": {"variation": 1},
                    "offVariation": 0,
                    "prerequisites": [{"key": "a", "variation": 1}, {"key": "b", "variation": 1}]},
            "a": {"key": "a", "on": false, "variations": [false, true], "offVariation": 0, "fallthrough": {"variation": 1}},
            "b": {"key": "b", "on": true, "variations": [false, true], "fallthrough": {"variation": 1}}
        }}));
        let result = snapshot.evaluate_for_client(snapshot.flag_id("top").unwrap(), &user("u"));
        assert_eq!(result.prerequisites, vec!["a"]);
    }

    #[test]
    fn experiments_track_events_and_reasons() {
        let snapshot = snapshot(json!({"flags": {
            "f": {"key": "f", "version": 4, "on": true, "variations": ["a", "b"], "trackEventsFallthrough": true,
                  "fallthrough": {"variation": 1}, "debugEventsUntilDate": 0}
        }}));
        let result = snapshot.evaluate_for_client(snapshot.flag_id("f").unwrap(), &user("u"));
        assert!(result.experiment);
        let payload = serde_json::to_value(result.payload(99, false)).unwrap();
        assert_eq!(
            payload,
            json!({"value": "b", "variation": 1, "version": 99, "flagVersion": 4,
                   "trackEvents": true, "trackReason": true, "reason": {"kind": "FALLTHROUGH"}})
        );
    }

    #[test]
    fn reasons_are_sent_only_when_asked_for() {
        let snapshot = snapshot(json!({"flags": {
            "f": {"key": "f", "version": 2, "on": false, "variations": [false, true], "offVariation": 0}
        }}));
        let result = snapshot.evaluate_for_client(snapshot.flag_id("f").unwrap(), &user("u"));
        let without = serde_json::to_value(result.payload(7, false)).unwrap();
        assert_eq!(
            without,
            json!({"value": false, "variation": 0, "version": 7, "flagVersion": 2})
        );
        let with = serde_json::to_value(result.payload(7, true)).unwrap();
        assert_eq!(with["reason"], json!({"kind": "OFF"}));
    }

    #[test]
    fn credentials_see_what_availability_allows() {
        let snapshot = snapshot(json!({"flags": {
            "browser": {"key": "browser", "on": false, "variations": [true],
                        "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": false}},
            "mobile": {"key": "mobile", "on": false, "variations": [true],
                       "clientSideAvailability": {"usingEnvironmentId": false, "usingMobileKey": true}},
            "legacy": {"key": "legacy", "on": false, "variations": [true], "clientSide": false},
            "server": {"key": "server", "on": false, "variations": [true],
                       "clientSideAvailability": {"usingEnvironmentId": false, "usingMobileKey": false}}
        }}));
        let keys = |credential| {
            snapshot
                .evaluate_all_for_client(credential, &user("u"))
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(CredentialKind::ClientSide), vec!["browser"]);
        // Flags from before `clientSideAvailability` are visible to mobile keys (§5.6).
        assert_eq!(keys(CredentialKind::Mobile), vec!["legacy", "mobile"]);
        assert_eq!(
            keys(CredentialKind::Sdk),
            vec!["browser", "legacy", "mobile", "server"]
        );
    }

    #[test]
    fn bootstrap_state_leaves_out_details_of_untracked_flags_when_asked() {
        let snapshot = snapshot(json!({"flags": {
            "f": {"key": "f", "version": 3, "on": false, "variations": [false, true], "offVariation": 1}
        }}));
        let result = snapshot.evaluate_for_client(snapshot.flag_id("f").unwrap(), &user("u"));
        assert_eq!(
            serde_json::to_value(result.flag_state(true, false)).unwrap(),
            json!({"variation": 1, "version": 3, "reason": {"kind": "OFF"}})
        );
        assert_eq!(
            serde_json::to_value(result.flag_state(true, true)).unwrap(),
            json!({"variation": 1, "version": 0})
        );
    }
}
