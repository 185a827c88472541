//! The feature flag object (`ld-protocol.md` §2.2), as SDKs receive it.
//!
//! Reading follows the reference Go reader: absent arrays are empty, absent booleans are false,
//! unknown properties are ignored. Writing produces the canonical, fully populated shape of §2.4
//! because the Python SDK rejects flags with missing arrays or non-string clause attributes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}

/// A feature flag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    /// The flag key; equal to the key it is delivered under.
    pub key: String,
    /// Whether targeting is on. When off, the off variation is served and nothing else is read.
    #[serde(default)]
    pub on: bool,
    /// Flags that must return a given variation before this flag's targeting applies.
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    /// Individual targets for the `user` kind (the legacy location, still used for users, §3.4).
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Individual targets for all kinds, in evaluation order.
    #[serde(default)]
    pub context_targets: Vec<Target>,
    /// Targeting rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<FlagRule>,
    /// What to serve when no target or rule matched.
    #[serde(default)]
    pub fallthrough: VariationOrRollout,
    /// The variation served when the flag is off or a prerequisite failed; `None` means the
    /// application's default value.
    #[serde(default)]
    pub off_variation: Option<i64>,
    /// The values this flag can take, of any JSON type.
    #[serde(default)]
    pub variations: Vec<Value>,
    /// Which client-side credentials may see this flag; absent in old data (see
    /// [`Flag::client_side_availability`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_side_availability: Option<ClientSideAvailability>,
    /// Legacy form of `clientSideAvailability.usingEnvironmentId`.
    #[serde(default)]
    pub client_side: bool,
    /// Per-flag salt for bucketing.
    #[serde(default)]
    pub salt: String,
    /// Send a full feature event for every evaluation.
    #[serde(default)]
    pub track_events: bool,
    /// Treat fallthrough results as experiment results (full events with reasons).
    #[serde(default)]
    pub track_events_fallthrough: bool,
    /// Send debug events until this time (Unix milliseconds).
    #[serde(default)]
    pub debug_events_until_date: Option<u64>,
    /// Incremented on every change; SDKs apply an update only if its version is greater.
    #[serde(default)]
    pub version: u64,
    /// Tombstone marker: a deleted flag is treated exactly like a missing one (§2.6).
    #[serde(default)]
    pub deleted: bool,
    /// Present only for migration flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// Keep each feature event with probability 1/N (absent means 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_ratio: Option<i64>,
    /// Do not count this flag in summary events.
    #[serde(default, skip_serializing_if = "is_false")]
    pub exclude_from_summaries: bool,
}

impl Flag {
    /// The effective client-side availability (§2.2): an explicit object wins; old data without it
    /// is always visible to mobile keys and visible to client-side IDs when `clientSide` is set.
    pub fn client_side_availability(&self) -> ClientSideAvailability {
        self.client_side_availability
            .unwrap_or(ClientSideAvailability {
                using_mobile_key: true,
                using_environment_id: self.client_side,
            })
    }

    /// A tombstone for `key` at `version`, the shape SDKs store for a deleted flag.
    pub fn tombstone(key: &str, version: u64) -> Flag {
        Flag {
            key: key.to_owned(),
            version,
            deleted: true,
            ..Flag::default()
        }
    }
}

/// Which client-side credentials may see a flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSideAvailability {
    /// Mobile SDKs (mobile key) may see the flag.
    #[serde(default)]
    pub using_mobile_key: bool,
    /// Browser SDKs (client-side ID) may see the flag.
    #[serde(default)]
    pub using_environment_id: bool,
}

/// The stages of a migration flag, in order: its variations' values (spec §6.4,
/// `migration_op`). An SDK migrator reads the flag as one of these strings and decides from it
/// which of the old and new systems to read from and write to, and which one is authoritative.
pub const MIGRATION_STAGES: [&str; 6] =
    ["off", "dualwrite", "shadow", "live", "rampdown", "complete"];

/// Marks a migration flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// Run a consistency check for 1 in N operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_ratio: Option<i64>,
}

/// A prerequisite: flag `key` must return variation `variation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prerequisite {
    /// The prerequisite flag's key.
    pub key: String,
    /// The variation index it must return.
    pub variation: i64,
}

/// An individual target list: these keys of this kind get `variation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The context kind; absent means `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_kind: Option<String>,
    /// The targeted keys.
    #[serde(default)]
    pub values: Vec<String>,
    /// The variation index they get.
    pub variation: i64,
}

/// A targeting rule: if every clause matches, serve the variation or rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagRule {
    /// What the rule serves.
    #[serde(flatten)]
    pub variation_or_rollout: VariationOrRollout,
    /// A stable identifier reported as `ruleId` in reasons.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub id: String,
    /// All must match (an empty list matches everything).
    #[serde(default)]
    pub clauses: Vec<Clause>,
    /// Treat matches of this rule as experiment results.
    #[serde(default)]
    pub track_events: bool,
}

/// Either a fixed variation or a percentage rollout. If both are present the variation wins; if
/// neither is, serving it is a `MALFORMED_FLAG` error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VariationOrRollout {
    /// A fixed variation index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<i64>,
    /// A percentage rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// Whether a rollout is a plain percentage rollout or an experiment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutKind {
    /// Bucket by `bucketBy` (default `key`).
    #[default]
    Rollout,
    /// Bucket by key only and report `inExperiment`.
    Experiment,
}

/// A percentage rollout (§2.2 "Rollout", §3.8).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Rollout or experiment; absent means rollout. Unknown kinds are read as rollouts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_rollout_kind"
    )]
    pub kind: Option<RolloutKind>,
    /// Whose attributes are bucketed; absent means `user`. Its presence also makes `bucketBy` an
    /// attribute reference rather than a literal name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_kind: Option<String>,
    /// The buckets, in order.
    #[serde(default)]
    pub variations: Vec<WeightedVariation>,
    /// Replaces `flagKey.salt` as the hash prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// The attribute to bucket by (rollouts only); absent means `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
}

fn lenient_rollout_kind<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RolloutKind>, D::Error> {
    let kind = Option::<String>::deserialize(deserializer)?;
    Ok(kind.map(|k| {
        if k == "experiment" {
            RolloutKind::Experiment
        } else {
            RolloutKind::Rollout
        }
    }))
}

/// One bucket of a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedVariation {
    /// The variation index served in this bucket.
    pub variation: i64,
    /// The bucket size in thousandths of a percent (0 to 100000).
    #[serde(default)]
    pub weight: i64,
    /// In an experiment, contexts in this bucket are not part of the experiment.
    #[serde(default, skip_serializing_if = "is_false")]
    pub untracked: bool,
}

/// A condition on one attribute of one context kind (§2.2 "Clause", §3.5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Clause {
    /// The kind whose attribute is tested; absent means `user`. Its presence also makes
    /// `attribute` an attribute reference rather than a literal name (§2.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_kind: Option<String>,
    /// The attribute name or reference; empty means undefined (fine only for `segmentMatch`).
    #[serde(default, deserialize_with = "null_as_empty_string")]
    pub attribute: String,
    /// The operator name; an unknown operator never matches.
    #[serde(default)]
    pub op: String,
    /// The values to compare with, OR-ed together.
    #[serde(default)]
    pub values: Vec<Value>,
    /// Invert the result (missing attributes still never match).
    #[serde(default)]
    pub negate: bool,
}

fn null_as_empty_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_properties_take_their_defaults() {
        let flag: Flag = serde_json::from_value(json!({"key": "f"})).unwrap();
        assert_eq!(flag.version, 0);
        assert!(!flag.on && flag.rules.is_empty() && flag.off_variation.is_none());
        assert_eq!(
            flag.client_side_availability(),
            ClientSideAvailability {
                using_mobile_key: true,
                using_environment_id: false
            }
        );
    }

    #[test]
    fn explicit_availability_overrides_client_side() {
        let flag: Flag = serde_json::from_value(
            json!({"key": "f", "clientSide": true, "clientSideAvailability": {}}),
        )
        .unwrap();
        assert_eq!(
            flag.client_side_availability(),
            ClientSideAvailability::default()
        );
    }

    #[test]
    fn canonical_output_has_every_array_and_string_attribute() {
        let flag: Flag = serde_json::from_value(json!({
            "key": "f", "version": 2,
            "rules": [{"variation": 1, "clauses": [{"op": "segmentMatch", "values": ["s"]}]}]
        }))
        .unwrap();
        let out = serde_json::to_value(&flag).unwrap();
        for array in [
            "prerequisites",
            "targets",
            "contextTargets",
            "rules",
            "variations",
        ] {
            assert!(out[array].is_array(), "{array} missing from {out}");
        }
        assert_eq!(out["rules"][0]["clauses"][0]["attribute"], json!(""));
        assert_eq!(out["rules"][0]["variation"], json!(1));
        assert!(out["rules"][0].get("rollout").is_none());
        assert_eq!(out["offVariation"], Value::Null);
        assert_eq!(out["version"], json!(2));
        let back: Flag = serde_json::from_value(out).unwrap();
        assert_eq!(back, flag);
    }

    #[test]
    fn version_must_be_an_integer() {
        assert!(serde_json::from_value::<Flag>(json!({"key": "f", "version": 1.5})).is_err());
    }
}
