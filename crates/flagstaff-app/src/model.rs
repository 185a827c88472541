//! The domain model: what people manage, as the API shows it.
//!
//! A flag has a *definition* per project (key, name, variations, tags, ...) and *targeting* per
//! environment (on/off, targets, rules, rollouts, prerequisites). What an SDK receives for an
//! environment is the two merged into one LaunchDarkly flag ([`merge_flag`]), whose version is
//! the targeting document's version: definition changes rewrite every environment's targeting, so
//! that version grows on any change an SDK can observe (`ld-protocol.md` §2.6).

use flagstaff_protocol::{
    ClientSideAvailability, Flag, FlagRule, Prerequisite, Target, VariationOrRollout,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Document kinds in the store.
pub mod kinds {
    /// A project; scope `""`.
    pub const PROJECT: &str = "project";
    /// An environment; scope is the project key.
    pub const ENVIRONMENT: &str = "environment";
    /// A flag definition; scope is the project key.
    pub const FLAG: &str = "flag";
    /// A flag's targeting in one environment; scope is `project/environment`.
    pub const TARGETING: &str = "targeting";
    /// A segment; scope is `project/environment`.
    pub const SEGMENT: &str = "segment";
    /// An API access token's description; scope `""`, key is the token id.
    pub const TOKEN: &str = "token";
    /// A secret's SHA-256 (hex), pointing at what it grants; scope `""`.
    pub const CREDENTIAL: &str = "credential";
    /// A member (a person who signs in); scope `""`, key is the lower-case email.
    pub const MEMBER: &str = "member";
    /// A custom role (a named policy); scope `""`, key is the role's key.
    pub const ROLE: &str = "role";
    /// A team: members and the custom roles they hold together; scope `""`.
    pub const TEAM: &str = "team";
    /// A pending invitation; scope `""`, key is the SHA-256 of its one-time secret.
    pub const INVITATION: &str = "invitation";
    /// A change scheduled for later (`schedules.rs`); scope `project/environment`, key its id.
    /// Pending while live; executed, failed or cancelled ones are tombstones holding their
    /// outcome.
    pub const SCHEDULE: &str = "scheduled_change";
    /// A change request (`change_requests.rs`); scope `project/environment`, key its id (unique
    /// across scopes: found by id alone).
    pub const CHANGE_REQUEST: &str = "change_request";
    /// A webhook (`webhooks.rs`); scope `""`, key its id.
    pub const WEBHOOK: &str = "webhook";
    /// A flag trigger (`triggers.rs`); scope `project/environment`, key its id; its secret's
    /// SHA-256 is a `credential` pointing at it.
    pub const TRIGGER: &str = "trigger";
    /// A metric experiments measure (`metrics.rs`); scope is the project key.
    pub const METRIC: &str = "metric";
    /// An experiment (`experiments.rs`); scope is `project/environment`.
    pub const EXPERIMENT: &str = "experiment";
    /// A guarded rollout of a flag (`guarded_rollouts.rs`); scope is `project/environment`,
    /// key the flag's.
    pub const GUARDED_ROLLOUT: &str = "guarded_rollout";
}

/// A project: a product or service with its own flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Unique key.
    pub key: String,
    /// Display name.
    pub name: String,
}

/// An environment of a project, such as `production` or `test`. Its SDK and mobile keys are
/// secrets: only their SHA-256 is stored and a short hint shown; the plain keys are returned
/// once, when created or rotated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// Unique key within the project.
    pub key: String,
    /// Display name.
    pub name: String,
    /// The project.
    pub project: String,
    /// The browser credential (24 hex digits, LaunchDarkly's format). Public by design: it is
    /// in every web page that uses the browser SDK.
    pub client_side_id: String,
    /// The last characters of the SDK key, to recognise it.
    pub sdk_key_hint: String,
    /// The last characters of the mobile key.
    pub mobile_key_hint: String,
    /// Browser requests must carry the context's secure-mode hash (`ld-protocol.md` §5.7).
    #[serde(default)]
    pub secure_mode: bool,
    /// Changes here matter most (production): the dashboard asks people to confirm them by
    /// typing the flag's key. New environments named `production` or `prod` start critical.
    #[serde(default)]
    pub critical: bool,
    /// Whether changes to targeting and segments here need approval (`approvals.rs`).
    #[serde(default)]
    pub approvals: ApprovalSettings,
    /// Tell SDKs that ask for LaunchDarkly's FDv2 protocol to use FDv1 instead
    /// (`X-LD-FD-Fallback`, `ld-protocol.md` §10): the switch to steer them back if FDv2 ever
    /// misbehaves. Off: FDv2 is served.
    #[serde(default, rename = "fdv1Fallback")]
    pub fdv1_fallback: bool,
    /// The colour people recognise it by in the dashboard, `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// An environment's approval rules: with `required`, targeting and segments change only through
/// change requests that enough other people approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSettings {
    /// Whether direct changes are refused (`approval_required`).
    #[serde(default)]
    pub required: bool,
    /// Approvals a request needs before it may be applied.
    #[serde(default = "one")]
    pub min_approvals: u32,
    /// Whether the requester's own approval counts.
    #[serde(default)]
    pub can_review_own: bool,
    /// Members and tokens with this base role or above may write directly anyway (custom roles
    /// may also allow `bypassRequiredApproval`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass_role: Option<crate::Role>,
}

impl Default for ApprovalSettings {
    fn default() -> ApprovalSettings {
        ApprovalSettings {
            required: false,
            min_approvals: 1,
            can_review_own: false,
            bypass_role: None,
        }
    }
}

fn one() -> u32 {
    1
}

/// Settings of an environment that an update may change; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvironmentSettings {
    /// Secure mode for browser SDKs.
    pub secure_mode: Option<bool>,
    /// Whether changes need a typed confirmation in the dashboard.
    pub critical: Option<bool>,
    /// Approval rules.
    pub approvals: Option<ApprovalSettings>,
    /// The dashboard colour, `#rrggbb`; an empty string removes it.
    pub color: Option<String>,
    /// Send FDv2 SDKs to FDv1 ([`Environment::fdv1_fallback`]).
    pub fdv1_fallback: Option<bool>,
}

/// The credentials of an environment, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentKeys {
    /// Server-side SDKs (`sdk-` + UUID).
    pub sdk_key: String,
    /// Mobile SDKs (`mob-` + UUID).
    pub mobile_key: String,
    /// Browser SDKs (24 hex digits).
    pub client_side_id: String,
}

/// A number with no fractional part within ±2^53 as an integer (`1000.0` → `1000`); anything
/// else as it is. JSON does not tell `1000` from `1000.0`, but SDKs do (Python returns a float
/// for one, an int for the other), and people who typed 1000 mean the integer.
pub fn integral(value: Value) -> Value {
    const SAFE: f64 = 9_007_199_254_740_992.0;
    match &value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= SAFE => Value::from(f as i64),
            _ => value,
        },
        _ => value,
    }
}

fn integral_value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    Value::deserialize(deserializer).map(integral)
}

/// A variation of a flag: its value and, for people, a name and description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variation {
    /// The value SDKs return: any JSON. A whole number is read as an integer (`integral`), so
    /// flags stored with `1000.0` by earlier versions reach SDKs as `1000`.
    #[serde(deserialize_with = "integral_value")]
    pub value: Value,
    /// A short name (e.g. "Enabled").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Boolean flags have exactly the variations `true` and `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FlagKind {
    /// `true`/`false`.
    #[default]
    Boolean,
    /// Any number of values of any JSON type.
    Multivariate,
    /// A migration from an old system to a new one (a database, a service): the variations are
    /// the six stages of [`flagstaff_protocol::MIGRATION_STAGES`], which LaunchDarkly's SDK
    /// migrators read to decide where reads and writes go.
    Migration,
}

/// What a migration flag adds to its definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationSettings {
    /// SDK migrators compare the old and new systems' reads in 1 of this many operations
    /// (spec §2.2 `migration.checkRatio`); 1 checks every read, 0 none.
    #[serde(default = "every_operation")]
    pub check_ratio: i64,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings { check_ratio: 1 }
    }
}

fn every_operation() -> i64 {
    1
}

/// A flag as defined once per project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagDefinition {
    /// Unique key within the project, what code passes to the SDK.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What the flag is for.
    #[serde(default)]
    pub description: String,
    /// Free-form labels for filtering.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Boolean, multivariate or migration.
    #[serde(default)]
    pub kind: FlagKind,
    /// The values the flag can take. Boolean flags may omit them (`true`, `false`).
    #[serde(default)]
    pub variations: Vec<Variation>,
    /// Temporary flags (the default) are expected to be removed after a release; permanent ones
    /// (kill switches, entitlements) are not reported as stale.
    #[serde(default = "default_true")]
    pub temporary: bool,
    /// Who is responsible for the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintainer: Option<String>,
    /// Which client-side SDKs may see the flag (neither, by default).
    #[serde(default)]
    pub client_side_availability: ClientSideAvailability,
    /// Archived flags are hidden from SDKs and lists but can be restored.
    #[serde(default)]
    pub archived: bool,
    /// Present exactly when `kind` is `migration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationSettings>,
}

fn default_true() -> bool {
    true
}

/// A flag's targeting in one environment (`ld-protocol.md` §2.2, §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Targeting {
    /// Whether targeting is on; off serves the off variation to everyone.
    #[serde(default)]
    pub on: bool,
    /// What to serve when off or when a prerequisite fails.
    #[serde(default)]
    pub off_variation: Option<i64>,
    /// What to serve when no target or rule matches.
    #[serde(default)]
    pub fallthrough: VariationOrRollout,
    /// Individual user targets.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Individual targets of other context kinds.
    #[serde(default)]
    pub context_targets: Vec<Target>,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<FlagRule>,
    /// Flags that must serve a given variation first.
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    /// Send full events for every evaluation.
    #[serde(default)]
    pub track_events: bool,
    /// Send full events for fallthrough results.
    #[serde(default)]
    pub track_events_fallthrough: bool,
    /// The bucketing salt, fixed when the flag is created. Changing it would reshuffle every
    /// rollout, so an update keeps the stored salt whatever the request says.
    #[serde(default)]
    pub salt: String,
}

/// Merges a definition and an environment's targeting into what SDKs receive.
pub fn merge_flag(definition: &FlagDefinition, targeting: &Targeting, version: u64) -> Flag {
    let availability = definition.client_side_availability;
    Flag {
        key: definition.key.clone(),
        on: targeting.on,
        prerequisites: targeting.prerequisites.clone(),
        targets: targeting.targets.clone(),
        context_targets: targeting.context_targets.clone(),
        rules: targeting.rules.clone(),
        fallthrough: targeting.fallthrough.clone(),
        off_variation: targeting.off_variation,
        variations: definition
            .variations
            .iter()
            .map(|v| v.value.clone())
            .collect(),
        client_side_availability: Some(availability),
        client_side: availability.using_environment_id,
        salt: targeting.salt.clone(),
        track_events: targeting.track_events,
        track_events_fallthrough: targeting.track_events_fallthrough,
        debug_events_until_date: None,
        version,
        deleted: false,
        migration: definition.migration.map(|m| flagstaff_protocol::Migration {
            check_ratio: Some(m.check_ratio),
        }),
        sampling_ratio: None,
        exclude_from_summaries: false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn whole_numbers_are_integers_and_the_rest_stays() {
        let cases = [
            (json!(1000.0), json!(1000)),
            (json!(-3.0), json!(-3)),
            (json!(2.5), json!(2.5)),
            (json!(1e300), json!(1e300)),
            (
                json!(9_007_199_254_740_992.0_f64),
                json!(9_007_199_254_740_992_i64),
            ),
            (json!(7), json!(7)),
            (json!("1000.0"), json!("1000.0")),
            (json!({"n": 1.0}), json!({"n": 1.0})),
        ];
        for (input, expected) in cases {
            let out = integral(input.clone());
            assert_eq!(out, expected, "{input}");
            assert_eq!(out.to_string(), expected.to_string(), "{input}");
        }
        // Stored documents written with floats read back as integers.
        let variation: Variation = serde_json::from_value(json!({"value": 100.0})).unwrap();
        assert_eq!(serde_json::to_string(&variation.value).unwrap(), "100");
    }
}
