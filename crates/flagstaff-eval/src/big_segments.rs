//! Big-segment membership for an evaluation (§3.7.1).
//!
//! A big segment's members live outside the flag data (in the server's database, or in an SDK's
//! big-segment store). Whoever evaluates looks up, before evaluating, which big segments name
//! the context's keys ([`Snapshot::big_segment_kinds`] says which kinds to look up) and passes
//! the answer in; the evaluation itself stays synchronous and allocation-free for everything
//! else. With a membership, a big segment matches a context it includes, not one it excludes,
//! and otherwise by its rules; the result reports `bigSegmentsStatus: HEALTHY`.

use std::collections::HashMap;

use crate::snapshot::Snapshot;

/// Which big segments name which context keys, as looked up for one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BigSegmentMembership {
    entries: HashMap<(String, String), bool>,
}

impl BigSegmentMembership {
    /// An empty membership: every big segment decides by its rules.
    pub fn new() -> BigSegmentMembership {
        BigSegmentMembership::default()
    }

    /// Records that `segment` includes (or, with `false`, excludes) `context_key`.
    pub fn insert(&mut self, context_key: &str, segment: &str, included: bool) {
        self.entries
            .insert((context_key.to_owned(), segment.to_owned()), included);
    }

    /// Whether `segment` includes `context_key` (`Some(false)`: excludes it; `None`: neither).
    pub fn get(&self, context_key: &str, segment: &str) -> Option<bool> {
        // A tuple of borrowed strings cannot look up owned ones without allocating; big-segment
        // lookups are a handful per evaluation.
        self.entries
            .get(&(context_key.to_owned(), segment.to_owned()))
            .copied()
    }
}

impl Snapshot {
    /// The context kinds whose keys big segments are keyed by (empty when there are no big
    /// segments, so callers skip the lookup).
    pub fn big_segment_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self
            .segments
            .iter()
            .filter(|s| s.source.unbounded)
            .map(|s| {
                s.source
                    .unbounded_context_kind
                    .as_deref()
                    .filter(|k| !k.is_empty())
                    .unwrap_or("user")
            })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagstaff_protocol::{BigSegmentsStatus, Context, FlagData};
    use serde_json::json;

    fn snapshot() -> Snapshot {
        Snapshot::compile(
            &FlagData::from_json(json!({
                "flags": {"f": {"key": "f", "version": 1, "on": true, "variations": [false, true],
                    "fallthrough": {"variation": 0}, "offVariation": 0,
                    "rules": [{"id": "r", "variation": 1, "clauses": [
                        {"attribute": "", "op": "segmentMatch", "values": ["big"]}]}]}},
                "segments": {"big": {"key": "big", "version": 1, "unbounded": true, "generation": 3,
                    "unboundedContextKind": "org",
                    "rules": [{"id": "nz", "clauses": [{"contextKind": "org", "attribute": "country", "op": "in", "values": ["NZ"]}]}]}}
            }))
            .unwrap(),
        )
    }

    fn org(key: &str, country: &str) -> Context {
        Context::from_json(&json!({"kind": "multi", "user": {"key": "u"},
            "org": {"key": key, "country": country}}))
        .unwrap()
    }

    #[test]
    fn membership_decides_before_the_rules_and_the_rules_decide_the_rest() {
        let snapshot = snapshot();
        assert_eq!(snapshot.big_segment_kinds(), ["org"]);
        let id = snapshot.flag_id("f").unwrap();
        let mut membership = BigSegmentMembership::new();
        membership.insert("acme", "big", true);
        membership.insert("kiwi", "big", false);
        let value = |context: &Context, membership: Option<&BigSegmentMembership>| {
            let detail = snapshot.evaluate_observed_with(id, context, &mut (), membership);
            (detail.value.cloned(), detail.reason.big_segments_status)
        };
        let healthy = Some(BigSegmentsStatus::Healthy);
        assert_eq!(
            value(&org("acme", "US"), Some(&membership)),
            (Some(json!(true)), healthy)
        );
        // Excluded beats the rules; unlisted falls to them.
        assert_eq!(
            value(&org("kiwi", "NZ"), Some(&membership)),
            (Some(json!(false)), healthy)
        );
        assert_eq!(
            value(&org("other", "NZ"), Some(&membership)),
            (Some(json!(true)), healthy)
        );
        assert_eq!(
            value(&org("other", "US"), Some(&membership)),
            (Some(json!(false)), healthy)
        );
        // The membership is by the segment's kind: a user keyed "acme" is not the org.
        let user = Context::from_json(&json!({"kind": "user", "key": "acme"})).unwrap();
        assert_eq!(value(&user, Some(&membership)).0, Some(json!(false)));
        // Without a store, only the rules apply, and the status says so.
        assert_eq!(
            value(&org("acme", "US"), None),
            (Some(json!(false)), Some(BigSegmentsStatus::NotConfigured))
        );
    }
}
