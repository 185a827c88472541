//! Evaluation reasons (`ld-protocol.md` §3.9), in the JSON shape every LaunchDarkly SDK reports.
//!
//! [`Reason`] is generic over its string type so that the evaluator can return reasons that borrow
//! rule ids and prerequisite keys from the compiled flag data (`Reason<&str>`, no allocation) while
//! stored and transmitted reasons own theirs (`Reason<String>`).

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_empty<S: AsRef<str>>(s: &S) -> bool {
    s.as_ref().is_empty()
}

/// Why an evaluation produced its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize + AsRef<str>",
    deserialize = "S: Deserialize<'de> + Default"
))]
pub struct Reason<S = String> {
    /// The kind of reason and its details.
    #[serde(flatten)]
    pub kind: ReasonKind<S>,
    /// Set when big segments were consulted: the worst store status seen.
    #[serde(
        rename = "bigSegmentsStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub big_segments_status: Option<BigSegmentsStatus>,
}

/// The kind of a reason, serialised as `{"kind": "...", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(bound(
    serialize = "S: Serialize + AsRef<str>",
    deserialize = "S: Deserialize<'de> + Default"
))]
pub enum ReasonKind<S = String> {
    /// The flag is off.
    Off,
    /// No target or rule matched.
    Fallthrough {
        /// The context is part of an experiment on the fallthrough rollout.
        #[serde(rename = "inExperiment", default, skip_serializing_if = "is_false")]
        in_experiment: bool,
    },
    /// An individual target matched.
    TargetMatch,
    /// A rule matched.
    RuleMatch {
        /// The 0-based index of the rule.
        #[serde(rename = "ruleIndex")]
        rule_index: usize,
        /// The rule's id (omitted when empty).
        #[serde(rename = "ruleId", default, skip_serializing_if = "is_empty")]
        rule_id: S,
        /// The context is part of an experiment on the rule's rollout.
        #[serde(rename = "inExperiment", default, skip_serializing_if = "is_false")]
        in_experiment: bool,
    },
    /// A prerequisite was not met.
    PrerequisiteFailed {
        /// The first prerequisite that failed.
        #[serde(rename = "prerequisiteKey")]
        prerequisite_key: S,
    },
    /// Evaluation failed; the caller's default value is used.
    Error {
        /// What went wrong.
        #[serde(rename = "errorKind")]
        error_kind: ErrorKind,
    },
}

impl<S> ReasonKind<S> {
    /// The kind's name on the wire (§3.8: `OFF`, `FALLTHROUGH`, `TARGET_MATCH`, `RULE_MATCH`,
    /// `PREREQUISITE_FAILED`, `ERROR`), for places that name a reason without serializing it.
    pub fn name(&self) -> &'static str {
        match self {
            ReasonKind::Off => "OFF",
            ReasonKind::Fallthrough { .. } => "FALLTHROUGH",
            ReasonKind::TargetMatch => "TARGET_MATCH",
            ReasonKind::RuleMatch { .. } => "RULE_MATCH",
            ReasonKind::PrerequisiteFailed { .. } => "PREREQUISITE_FAILED",
            ReasonKind::Error { .. } => "ERROR",
        }
    }
}

/// The error kinds used on the wire (§3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    /// The SDK has no data yet.
    ClientNotReady,
    /// No such flag (or it is deleted).
    FlagNotFound,
    /// The flag data cannot be evaluated (bad index, bad reference, cycle, empty rollout).
    MalformedFlag,
    /// The context is missing or invalid.
    UserNotSpecified,
    /// A typed variation method got a value of another type.
    WrongType,
    /// An unexpected failure.
    Exception,
}

/// Health of the big-segment store as seen by an evaluation (§3.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BigSegmentsStatus {
    /// Up to date.
    Healthy,
    /// Not synchronised recently.
    Stale,
    /// The store could not be read.
    StoreError,
    /// No store is configured, or the segment has no generation.
    NotConfigured,
}

impl<S> Reason<S> {
    /// A reason without big-segment status.
    pub const fn new(kind: ReasonKind<S>) -> Reason<S> {
        Reason {
            kind,
            big_segments_status: None,
        }
    }

    /// The `OFF` reason.
    pub const fn off() -> Reason<S> {
        Reason::new(ReasonKind::Off)
    }

    /// An `ERROR` reason.
    pub const fn error(error_kind: ErrorKind) -> Reason<S> {
        Reason::new(ReasonKind::Error { error_kind })
    }

    /// The error kind, if this is an error.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self.kind {
            ReasonKind::Error { error_kind } => Some(error_kind),
            _ => None,
        }
    }

    /// Whether the result is part of an experiment.
    pub fn in_experiment(&self) -> bool {
        matches!(
            self.kind,
            ReasonKind::Fallthrough {
                in_experiment: true
            } | ReasonKind::RuleMatch {
                in_experiment: true,
                ..
            }
        )
    }
}

impl<S: AsRef<str>> Reason<S> {
    /// An owned copy.
    pub fn to_owned_reason(&self) -> Reason<String> {
        let kind = match &self.kind {
            ReasonKind::Off => ReasonKind::Off,
            ReasonKind::Fallthrough { in_experiment } => ReasonKind::Fallthrough {
                in_experiment: *in_experiment,
            },
            ReasonKind::TargetMatch => ReasonKind::TargetMatch,
            ReasonKind::RuleMatch {
                rule_index,
                rule_id,
                in_experiment,
            } => ReasonKind::RuleMatch {
                rule_index: *rule_index,
                rule_id: rule_id.as_ref().to_owned(),
                in_experiment: *in_experiment,
            },
            ReasonKind::PrerequisiteFailed { prerequisite_key } => ReasonKind::PrerequisiteFailed {
                prerequisite_key: prerequisite_key.as_ref().to_owned(),
            },
            ReasonKind::Error { error_kind } => ReasonKind::Error {
                error_kind: *error_kind,
            },
        };
        Reason {
            kind,
            big_segments_status: self.big_segments_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wire_shapes() {
        let cases: [(Reason<&str>, serde_json::Value); 6] = [
            (Reason::off(), json!({"kind": "OFF"})),
            (
                Reason::new(ReasonKind::Fallthrough {
                    in_experiment: false,
                }),
                json!({"kind": "FALLTHROUGH"}),
            ),
            (
                Reason::new(ReasonKind::RuleMatch {
                    rule_index: 1,
                    rule_id: "abc",
                    in_experiment: true,
                }),
                json!({"kind": "RULE_MATCH", "ruleIndex": 1, "ruleId": "abc", "inExperiment": true}),
            ),
            (
                Reason::new(ReasonKind::RuleMatch {
                    rule_index: 0,
                    rule_id: "",
                    in_experiment: false,
                }),
                json!({"kind": "RULE_MATCH", "ruleIndex": 0}),
            ),
            (
                Reason::new(ReasonKind::PrerequisiteFailed {
                    prerequisite_key: "p",
                }),
                json!({"kind": "PREREQUISITE_FAILED", "prerequisiteKey": "p"}),
            ),
            (
                Reason {
                    kind: ReasonKind::Error {
                        error_kind: ErrorKind::MalformedFlag,
                    },
                    big_segments_status: Some(BigSegmentsStatus::NotConfigured),
                },
                json!({"kind": "ERROR", "errorKind": "MALFORMED_FLAG", "bigSegmentsStatus": "NOT_CONFIGURED"}),
            ),
        ];
        for (reason, expected) in cases {
            assert_eq!(serde_json::to_value(&reason).unwrap(), expected);
            assert_eq!(reason.kind.name(), expected["kind"]);
            let parsed: Reason = serde_json::from_value(expected).unwrap();
            assert_eq!(parsed, reason.to_owned_reason());
        }
        let target = Reason::<&str>::new(ReasonKind::TargetMatch);
        assert_eq!(
            serde_json::to_value(&target).unwrap()["kind"],
            target.kind.name()
        );
    }
}
