//! What scheduled changes, change requests and triggers share: a change to one flag's targeting
//! or one segment, kept as instructions (`instructions.rs`) and executed later through the same
//! use case as a direct write (`App::write_targeting`, `App::write_segment`), as the person who
//! made it, with the bookkeeping of whatever executes it committed in the same transaction.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::resource;
use crate::approvals::Origin;
use crate::instructions::{self, FlagInstruction, SegmentInstruction};
use crate::model::{Targeting, kinds};
use crate::policy::Resource;
use crate::{Actor, App, AppError, FlagRef, Result, env_scope, validate};

/// What a deferred change changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetKind {
    /// A flag's targeting in one environment.
    Flag,
    /// A segment.
    Segment,
}

impl TargetKind {
    /// `flag` or `segment`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Flag => "flag",
            TargetKind::Segment => "segment",
        }
    }
}

/// A flag or segment in one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// Flag or segment.
    pub kind: TargetKind,
    /// Its key.
    pub key: String,
}

impl Target {
    /// A flag's targeting in one environment.
    pub fn flag(project: &str, environment: &str, key: &str) -> Target {
        Target {
            project: project.to_owned(),
            environment: environment.to_owned(),
            kind: TargetKind::Flag,
            key: key.to_owned(),
        }
    }

    /// A segment.
    pub fn segment(project: &str, environment: &str, key: &str) -> Target {
        Target {
            kind: TargetKind::Segment,
            ..Target::flag(project, environment, key)
        }
    }

    pub(crate) fn scope(&self) -> String {
        env_scope(&self.project, &self.environment)
    }

    fn flag_ref(&self) -> FlagRef<'_> {
        FlagRef {
            project: &self.project,
            environment: &self.environment,
            key: &self.key,
        }
    }
}

/// Parsed instructions of either kind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Parsed {
    Flag(Vec<FlagInstruction>),
    Segment(Vec<SegmentInstruction>),
}

impl Parsed {
    pub(crate) fn parse(kind: TargetKind, instructions: &[Value]) -> Result<Parsed> {
        Ok(match kind {
            TargetKind::Flag => Parsed::Flag(instructions::parse_flag_instructions(instructions)?),
            TargetKind::Segment => {
                Parsed::Segment(instructions::parse_segment_instructions(instructions)?)
            }
        })
    }
}

/// The document a deferred change applies to, as it is at one moment, so that several steps
/// can be tried one after the other.
#[derive(Clone, Debug)]
pub(crate) enum Draft {
    Flag(Targeting),
    Segment(flagstaff_protocol::Segment),
}

impl Draft {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Draft::Flag(t) => serde_json::to_value(t).unwrap_or(Value::Null),
            Draft::Segment(s) => serde_json::to_value(s).unwrap_or(Value::Null),
        }
    }
}

impl App {
    /// The resource a deferred change acts on (after the fence let the actor see it), and the
    /// environment's approval rules.
    pub(crate) async fn target_resource(
        &self,
        actor: &Actor,
        target: &Target,
        action: &str,
    ) -> Result<(Resource, crate::model::ApprovalSettings)> {
        self.fence_check(actor, action, &target.project, Some(&target.environment))?;
        let (env_doc, env) = self
            .environment_doc(&target.project, &target.environment)
            .await?;
        let resource = match target.kind {
            TargetKind::Flag => resource::flag_in(
                &env,
                &target.key,
                &self.flag_tags(&target.project, &target.key).await?,
            ),
            TargetKind::Segment => resource::segment_in(&env, &target.key),
        };
        Ok((resource, env_doc.approvals))
    }

    /// The target's document as it is now, with its version.
    pub(crate) async fn draft_of(&self, target: &Target) -> Result<(u64, Draft)> {
        let scope = target.scope();
        Ok(match target.kind {
            TargetKind::Flag => {
                let t: crate::Versioned<Targeting> = self
                    .load(kinds::TARGETING, &scope, &target.key, || {
                        format!(
                            "flag {:?} in environment {:?}",
                            target.key, target.environment
                        )
                    })
                    .await?;
                (t.version, Draft::Flag(t.value))
            }
            TargetKind::Segment => {
                let s: crate::Versioned<flagstaff_protocol::Segment> = self
                    .load(kinds::SEGMENT, &scope, &target.key, || {
                        format!("segment {:?}", target.key)
                    })
                    .await?;
                (s.version, Draft::Segment(s.value))
            }
        })
    }

    /// Applies `parsed` to `draft` in memory and checks the result as the write would: the
    /// actions it takes are allowed to `actor` on `resource`, and it validates. What a
    /// deferred change is checked with when it is made, so that mistakes show then, not at
    /// 8 a.m. in Auckland.
    pub(crate) async fn try_on(
        &self,
        actor: &Actor,
        target: &Target,
        resource: &Resource,
        draft: &mut Draft,
        parsed: &Parsed,
    ) -> Result<()> {
        let neighbourhood = self
            .neighbourhood(&target.project, &target.environment)
            .await?;
        match (draft, parsed) {
            (Draft::Flag(targeting), Parsed::Flag(parsed)) => {
                let before = targeting.clone();
                instructions::apply_to_targeting(targeting, parsed)?;
                for action in crate::targeting::targeting_actions(&before, targeting) {
                    actor.authorize(action, resource)?;
                }
                validate::targeting(&target.key, targeting, &neighbourhood)
            }
            (Draft::Segment(segment), Parsed::Segment(parsed)) => {
                let before = segment.clone();
                instructions::apply_to_segment(segment, parsed)?;
                for action in crate::segments::segment_actions(&before, segment) {
                    actor.authorize(action, resource)?;
                }
                validate::segment(segment, &neighbourhood)
            }
            _ => Err(AppError::invalid(
                validate::codes::INVALID_FIELD,
                "instructions",
                "flag instructions for a segment, or the other way round",
            )),
        }
    }

    /// Executes `parsed` on the current document as `actor`, committing `origin`'s writes with
    /// it; returns the new version.
    pub(crate) async fn execute_parsed(
        &self,
        target: &Target,
        parsed: &Parsed,
        actor: &Actor,
        comment: &str,
        origin: Origin,
    ) -> Result<u64> {
        Ok(match parsed {
            Parsed::Flag(p) => {
                self.apply_parsed_flag_instructions(
                    target.flag_ref(),
                    p,
                    None,
                    actor,
                    comment,
                    origin,
                )
                .await?
                .version
            }
            Parsed::Segment(p) => {
                self.apply_parsed_segment_instructions(
                    (&target.project, &target.environment, &target.key),
                    p,
                    None,
                    actor,
                    comment,
                    origin,
                )
                .await?
                .version
            }
        })
    }
}
