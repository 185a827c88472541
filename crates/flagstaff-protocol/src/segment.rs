//! The segment object (`ld-protocol.md` §2.3): a reusable set of contexts, by explicit key lists
//! and by rules, referenced from flag clauses with the `segmentMatch` operator.

use serde::{Deserialize, Serialize};

use crate::flag::Clause;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A segment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// The segment key.
    pub key: String,
    /// Included `user`-kind keys.
    #[serde(default)]
    pub included: Vec<String>,
    /// Excluded `user`-kind keys.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Included keys of other kinds.
    #[serde(default)]
    pub included_contexts: Vec<SegmentTarget>,
    /// Excluded keys of other kinds.
    #[serde(default)]
    pub excluded_contexts: Vec<SegmentTarget>,
    /// Bucketing salt for weighted rules.
    #[serde(default)]
    pub salt: String,
    /// Rules, OR-ed together.
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
    /// A "big segment" whose membership lives in an external store (§3.7.1).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unbounded: bool,
    /// The kind used for big-segment membership keys; absent means `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbounded_context_kind: Option<String>,
    /// The version.
    #[serde(default)]
    pub version: u64,
    /// Big-segment generation; required to query a big-segment store.
    #[serde(default)]
    pub generation: Option<i64>,
    /// Tombstone marker.
    #[serde(default)]
    pub deleted: bool,
    /// A name for people (Flagstaff's management API and dashboard, like LaunchDarkly's REST
    /// API; not part of the SDK protocol). Never sent to SDKs: the server's SDK view leaves it
    /// out, and LaunchDarkly's SDKs would ignore it anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the segment is for, for people; like `name`, never sent to SDKs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Segment {
    /// A tombstone for `key` at `version`.
    pub fn tombstone(key: &str, version: u64) -> Segment {
        Segment {
            key: key.to_owned(),
            version,
            deleted: true,
            ..Segment::default()
        }
    }
}

/// Included or excluded keys of one context kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentTarget {
    /// The context kind; absent means `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_kind: Option<String>,
    /// The keys.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A segment rule: contexts matching every clause are in the segment, optionally only a weighted
/// share of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRule {
    /// The rule identifier.
    #[serde(default)]
    pub id: String,
    /// All must match.
    #[serde(default)]
    pub clauses: Vec<Clause>,
    /// Share of matching contexts included, in thousandths of a percent; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// The attribute to bucket by; absent means `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
    /// The kind to bucket; absent means `user`. Makes `bucketBy` an attribute reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_context_kind: Option<String>,
}
