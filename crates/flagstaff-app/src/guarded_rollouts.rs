//! Guarded rollouts (issue 21, point 5): a release plan on a flag's fallthrough in one
//! environment that moves a new variation through steps (1 % → 5 % → 25 % → 50 % → 100 %), each
//! held for a minimum duration and sample, while guard metrics (error events, a latency metric)
//! are watched with the anytime-valid test of the experiments. A step advances on its own when
//! its guards show no regression; a regression rolls the fallthrough back to the control
//! variation at once.
//!
//! Each step is measured like an experiment iteration: the fallthrough becomes an experiment
//! rollout (`"kind": "experiment"`, spec §3.8.2) of the treatment and the control with one seed
//! for the whole plan, the treatment listed first, so that growing its weight only adds
//! contexts to it (bucketing is monotone in the cumulative weights, §3.8.2) and everyone who
//! had the new variation keeps it. Each step has its own iteration id in the events database,
//! so a step's evidence is the data of that step alone.
//!
//! A guard regresses when the anytime-valid interval of (treatment − control) lies entirely
//! on the bad side of the tolerated margin, `tolerance` × the control's mean: peeking every
//! second cannot make a false alarm likelier than α (5 %). Every state change (start, each
//! advance, the rollback, completion, abort) is one targeting change, audited with a comment
//! that names the evidence, committed in one transaction with the plan's new state: webhooks
//! that watch the flag hear of it like any other change. Several nodes may run the loop: the
//! plan's version makes exactly one of them win each step.

use flagstaff_protocol::{Rollout, RolloutKind, VariationOrRollout, WeightedVariation};
use flagstaff_store::{Expect, Write};
use serde::{Deserialize, Serialize};

use crate::access::resource;
use crate::approvals::Origin;
use crate::changes::Action;
use crate::error::ErrorCode;
use crate::experiments::{invalid, state_error};
use crate::model::{FlagDefinition, kinds};
use crate::{
    Actor, App, FlagRef, Result, Versioned, WriteMeta, body, decode, draft, env_scope, random_hex,
    validate,
};

/// Most steps in a plan.
pub const MAX_STEPS: usize = 20;
/// Most guard metrics.
pub const MAX_GUARDS: usize = 10;
const EVERYONE: i64 = 100_000;

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// The share of the audience served the new variation (0 < percent ≤ 100).
    pub percent: f64,
    /// How long the step lasts at least (ms).
    #[serde(default)]
    pub min_duration_ms: i64,
    /// How many contexts the new variation must have been served to in the step.
    #[serde(default)]
    pub min_sample: u64,
}

/// A metric watched for regressions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Guard {
    /// A project metric key.
    pub metric: String,
    /// The regression tolerated, relative to the control's mean (0.1: 10 % worse is fine).
    #[serde(default)]
    pub tolerance: f64,
}

/// Where a plan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStatus {
    /// Moving through its steps.
    Running,
    /// Held by hand: no step advances (data is still collected).
    Paused,
    /// The new variation serves everyone.
    Completed,
    /// A guard regressed: the control serves everyone.
    RolledBack,
    /// Stopped by hand: the control serves everyone.
    Aborted,
}

/// What a guard showed at a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The metric's key.
    pub metric: String,
    /// Contexts exposed to the control, and to the new variation.
    pub exposures: [u64; 2],
    /// The control's mean per context.
    pub control_mean: f64,
    /// The new variation's.
    pub treatment_mean: f64,
    /// The anytime-valid interval of treatment − control; absent without enough data.
    pub sequential: Option<[f64; 2]>,
    /// The worst difference tolerated (in the metric's direction of harm).
    pub margin: f64,
    /// Whether the interval lies entirely beyond the margin.
    pub regression: bool,
}

/// The record of one step as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step's index.
    pub step: usize,
    /// Its percent.
    pub percent: f64,
    /// Its iteration id in the events database.
    pub iteration: String,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// `advanced`, `completed`, `rolledBack` or `aborted` once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The guards' evidence at the last look (at the end, what decided).
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// A guarded rollout as stored and returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardedRollout {
    /// The flag.
    pub flag: String,
    /// The variation everyone has now, and gets back on a regression.
    pub control_variation: u32,
    /// The variation rolled out.
    pub treatment_variation: u32,
    /// The context kind bucketed and counted.
    pub randomization_unit: String,
    /// The steps.
    pub steps: Vec<Step>,
    /// The guard metrics.
    pub guards: Vec<Guard>,
    /// Where it is.
    pub status: RolloutStatus,
    /// The step running now (or last).
    pub current_step: usize,
    /// The bucketing seed of the whole plan.
    pub seed: i64,
    /// What the fallthrough served before the plan started.
    pub previous_serve: VariationOrRollout,
    /// Every step as it ran, oldest first.
    pub history: Vec<StepRecord>,
    /// Who started it.
    pub created_by: String,
}

/// What a caller sends to start one.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewGuardedRollout {
    /// The variation rolled out.
    pub treatment_variation: u32,
    /// The baseline (by default what the fallthrough serves now).
    #[serde(default)]
    pub control_variation: Option<u32>,
    /// The steps; the last must be 100.
    pub steps: Vec<Step>,
    /// The guard metrics.
    pub guards: Vec<Guard>,
    /// The context kind (by default `user`).
    #[serde(default)]
    pub randomization_unit: Option<String>,
}

/// The fallthrough of a step: the treatment first (so growing its share only adds contexts).
fn step_serve(plan: &GuardedRollout, percent: f64) -> VariationOrRollout {
    let treatment = ((percent * 1000.0).round() as i64).clamp(0, EVERYONE);
    if treatment >= EVERYONE {
        return VariationOrRollout {
            variation: Some(i64::from(plan.treatment_variation)),
            rollout: None,
        };
    }
    VariationOrRollout {
        variation: None,
        rollout: Some(Rollout {
            kind: Some(RolloutKind::Experiment),
            context_kind: Some(plan.randomization_unit.clone()),
            variations: vec![
                WeightedVariation {
                    variation: i64::from(plan.treatment_variation),
                    weight: treatment,
                    untracked: false,
                },
                WeightedVariation {
                    variation: i64::from(plan.control_variation),
                    weight: EVERYONE - treatment,
                    untracked: false,
                },
            ],
            seed: Some(plan.seed),
            bucket_by: None,
        }),
    }
}

fn serve_variation(variation: u32) -> VariationOrRollout {
    VariationOrRollout {
        variation: Some(i64::from(variation)),
        rollout: None,
    }
}

impl App {
    /// The guarded rollout of a flag in an environment.
    pub async fn guarded_rollout(
        &self,
        actor: &Actor,
        flag: FlagRef<'_>,
    ) -> Result<Versioned<GuardedRollout>> {
        actor.authorize_view(flag.project, Some(flag.environment))?;
        let mut plan: Versioned<GuardedRollout> = self
            .load(
                kinds::GUARDED_ROLLOUT,
                &env_scope(flag.project, flag.environment),
                flag.key,
                || format!("guarded rollout of flag {:?}", flag.key),
            )
            .await?;
        // A step in progress shows what its guards show now.
        if matches!(
            plan.value.status,
            RolloutStatus::Running | RolloutStatus::Paused
        ) && let Ok(events) = self.event_store()
        {
            let metrics = self.store.list(kinds::METRIC, flag.project).await?;
            let (_, evidence) =
                crate::guard_checks::guard_evidence(events, &plan.value, flag.project, &metrics)
                    .await?;
            if let Some(last) = plan.value.history.last_mut() {
                last.evidence = evidence;
            }
        }
        Ok(plan)
    }

    /// Starts a guarded rollout on the flag's fallthrough (replacing a finished one).
    pub async fn start_guarded_rollout(
        &self,
        actor: &Actor,
        flag: FlagRef<'_>,
        new: NewGuardedRollout,
        comment: &str,
    ) -> Result<Versioned<GuardedRollout>> {
        self.authorize_plan(actor, flag).await?;
        let scope = env_scope(flag.project, flag.environment);
        let existing = self
            .store
            .get_live(kinds::GUARDED_ROLLOUT, &scope, flag.key)
            .await?;
        let expect = match &existing {
            Some(doc) => {
                let plan: GuardedRollout = decode(doc)?;
                if matches!(plan.status, RolloutStatus::Running | RolloutStatus::Paused) {
                    return Err(state_error(
                        "a guarded rollout of this flag is in progress: abort it first",
                    ));
                }
                Expect::Version(doc.version)
            }
            None => Expect::Absent,
        };
        let targeting = self
            .targeting(actor, flag.project, flag.environment, flag.key)
            .await?;
        let definition: Versioned<FlagDefinition> = self
            .load(kinds::FLAG, flag.project, flag.key, || {
                format!("flag {:?}", flag.key)
            })
            .await?;
        let variations = definition.value.variations.len();
        let check = |field: &str, v: u32| {
            if (v as usize) < variations {
                Ok(v)
            } else {
                Err(invalid(
                    ErrorCode::VariationOutOfRange,
                    field,
                    format!("the flag has {variations} variations"),
                ))
            }
        };
        check("treatmentVariation", new.treatment_variation)?;
        let control = match new.control_variation {
            Some(v) => check("controlVariation", v)?,
            None => targeting
                .value
                .fallthrough
                .variation
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    invalid(
                        ErrorCode::InvalidField,
                        "controlVariation",
                        "the fallthrough is a rollout now: name the control variation",
                    )
                })?,
        };
        if control == new.treatment_variation {
            return Err(invalid(
                ErrorCode::InvalidField,
                "treatmentVariation",
                "the new variation differs from the control",
            ));
        }
        if new.steps.is_empty() || new.steps.len() > MAX_STEPS {
            return Err(invalid(
                ErrorCode::InvalidField,
                "steps",
                format!("a plan has 1 to {MAX_STEPS} steps"),
            ));
        }
        let mut previous = 0.0;
        for (i, step) in new.steps.iter().enumerate() {
            if !(step.percent > previous && step.percent <= 100.0) {
                return Err(invalid(
                    ErrorCode::InvalidField,
                    &format!("steps[{i}].percent"),
                    "percentages grow from step to step, above 0 and at most 100",
                ));
            }
            if step.min_duration_ms < 0 {
                return Err(invalid(
                    ErrorCode::InvalidField,
                    &format!("steps[{i}].minDurationMs"),
                    "a duration is not negative",
                ));
            }
            previous = step.percent;
        }
        if previous < 100.0 {
            return Err(invalid(
                ErrorCode::InvalidField,
                "steps",
                "the last step serves everyone (100)",
            ));
        }
        if new.guards.is_empty() || new.guards.len() > MAX_GUARDS {
            return Err(invalid(
                ErrorCode::InvalidField,
                "guards",
                format!("a plan watches 1 to {MAX_GUARDS} metrics"),
            ));
        }
        for (i, guard) in new.guards.iter().enumerate() {
            if !(guard.tolerance.is_finite() && (0.0..=10.0).contains(&guard.tolerance)) {
                return Err(invalid(
                    ErrorCode::InvalidField,
                    &format!("guards[{i}].tolerance"),
                    "a tolerance is a share of the control's mean, 0 to 10",
                ));
            }
            if self
                .store
                .get_live(kinds::METRIC, flag.project, &guard.metric)
                .await?
                .is_none()
            {
                return Err(invalid(
                    ErrorCode::InvalidField,
                    &format!("guards[{i}].metric"),
                    format!("metric {:?} does not exist in this project", guard.metric),
                ));
            }
        }
        let unit = new.randomization_unit.unwrap_or_else(|| "user".into());
        validate::context_kind("randomizationUnit", Some(&unit))?;
        let now = self.now_millis();
        let mut plan = GuardedRollout {
            flag: flag.key.to_owned(),
            control_variation: control,
            treatment_variation: new.treatment_variation,
            randomization_unit: unit,
            steps: new.steps,
            guards: new.guards,
            status: RolloutStatus::Running,
            current_step: 0,
            // Never 0, which rollout validation refuses.
            seed: i64::from_str_radix(&random_hex(4), 16).unwrap_or(1).max(1),
            previous_serve: targeting.value.fallthrough.clone(),
            history: Vec::new(),
            created_by: actor.id.clone(),
        };
        let serve = step_serve(&plan, plan.steps[0].percent);
        plan.history.push(StepRecord {
            step: 0,
            percent: plan.steps[0].percent,
            iteration: format!("gr-{}-{}", flag.key, random_hex(8)),
            started_at: now,
            ended_at: None,
            outcome: None,
            evidence: Vec::new(),
        });
        if plan.steps[0].percent >= 100.0 {
            plan.status = RolloutStatus::Completed;
            plan.history[0].ended_at = Some(now);
            plan.history[0].outcome = Some("completed".into());
        }
        let what = format!(
            "Guarded rollout of {:?} starts: variation {} to {} % of the fallthrough, guarded by {}",
            flag.key,
            plan.treatment_variation,
            plan.steps[0].percent,
            plan.guards
                .iter()
                .map(|g| g.metric.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.commit_plan(
            flag,
            plan,
            expect,
            serve,
            targeting.version,
            actor,
            comment,
            &what,
            false,
        )
        .await
    }

    /// Holds a running plan: no step advances or rolls back automatically until resumed.
    pub async fn pause_guarded_rollout(
        &self,
        actor: &Actor,
        flag: FlagRef<'_>,
        pause: bool,
        comment: &str,
    ) -> Result<Versioned<GuardedRollout>> {
        self.authorize_plan(actor, flag).await?;
        let current = self.guarded_rollout(actor, flag).await?;
        let mut plan = current.value.clone();
        let (from, to) = if pause {
            (RolloutStatus::Running, RolloutStatus::Paused)
        } else {
            (RolloutStatus::Paused, RolloutStatus::Running)
        };
        if plan.status != from {
            return Err(state_error(format!(
                "the guarded rollout is {:?}, not {:?}",
                plan.status, from
            )));
        }
        plan.status = to;
        let scope = env_scope(flag.project, flag.environment);
        let after = body(&plan)?;
        let versions = self
            .commit(
                actor,
                vec![Write::Put {
                    kind: kinds::GUARDED_ROLLOUT.into(),
                    scope: scope.clone(),
                    key: flag.key.into(),
                    body: after.clone(),
                    expect: Expect::Version(current.version),
                }],
                draft(
                    Action::GuardedRolloutUpdate,
                    &scope,
                    flag.key,
                    comment,
                    Some(body(&current.value)?),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: plan,
        })
    }

    /// Stops a plan by hand: the control serves the whole fallthrough again.
    pub async fn abort_guarded_rollout(
        &self,
        actor: &Actor,
        flag: FlagRef<'_>,
        comment: &str,
    ) -> Result<Versioned<GuardedRollout>> {
        self.authorize_plan(actor, flag).await?;
        let current = self.guarded_rollout(actor, flag).await?;
        if !matches!(
            current.value.status,
            RolloutStatus::Running | RolloutStatus::Paused
        ) {
            return Err(state_error("the guarded rollout is not in progress"));
        }
        let what = format!(
            "Guarded rollout of {:?} aborted: the control (variation {}) serves everyone",
            flag.key, current.value.control_variation
        );
        self.end_step(flag, current, "aborted", Vec::new(), actor, comment, &what)
            .await
    }

    /// The rights to change a flag's fallthrough.
    async fn authorize_plan(&self, actor: &Actor, flag: FlagRef<'_>) -> Result<()> {
        let (_, env) = self.environment_doc(flag.project, flag.environment).await?;
        let tags = self.flag_tags(flag.project, flag.key).await?;
        actor.authorize(
            "updateFallthrough",
            &resource::flag_in(&env, flag.key, &tags),
        )?;
        Ok(())
    }

    /// Ends the current step with `outcome`: `rolledBack` and `aborted` serve the control,
    /// `advanced` moves to the next step, `completed` serves the new variation.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn end_step(
        &self,
        flag: FlagRef<'_>,
        current: Versioned<GuardedRollout>,
        outcome: &str,
        evidence: Vec<Evidence>,
        actor: &Actor,
        comment: &str,
        what: &str,
    ) -> Result<Versioned<GuardedRollout>> {
        let mut plan = current.value.clone();
        let now = self.now_millis();
        if let Some(last) = plan.history.last_mut() {
            last.ended_at = Some(now);
            last.outcome = Some(outcome.to_owned());
            if !evidence.is_empty() {
                last.evidence = evidence;
            }
        }
        let serve = match outcome {
            "advanced" => {
                plan.current_step += 1;
                let percent = plan.steps[plan.current_step].percent;
                if percent >= 100.0 {
                    plan.status = RolloutStatus::Completed;
                }
                plan.history.push(StepRecord {
                    step: plan.current_step,
                    percent,
                    iteration: format!("gr-{}-{}", flag.key, random_hex(8)),
                    started_at: now,
                    ended_at: (percent >= 100.0).then_some(now),
                    outcome: (percent >= 100.0).then(|| "completed".to_owned()),
                    evidence: Vec::new(),
                });
                step_serve(&plan, percent)
            }
            "rolledBack" => {
                plan.status = RolloutStatus::RolledBack;
                serve_variation(plan.control_variation)
            }
            _ => {
                plan.status = RolloutStatus::Aborted;
                serve_variation(plan.control_variation)
            }
        };
        let targeting = self
            .targeting(&Actor::system(), flag.project, flag.environment, flag.key)
            .await?;
        let approved = actor.id == GUARD_ACTOR;
        self.commit_plan(
            flag,
            plan,
            Expect::Version(current.version),
            serve,
            targeting.version,
            actor,
            comment,
            what,
            approved,
        )
        .await
    }

    /// Commits the fallthrough change and the plan in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn commit_plan(
        &self,
        flag: FlagRef<'_>,
        plan: GuardedRollout,
        expect: Expect,
        serve: VariationOrRollout,
        targeting_version: u64,
        actor: &Actor,
        comment: &str,
        what: &str,
        approved: bool,
    ) -> Result<Versioned<GuardedRollout>> {
        let mut targeting = self
            .targeting(&Actor::system(), flag.project, flag.environment, flag.key)
            .await?
            .value;
        targeting.fallthrough = serve;
        let comment = if comment.trim().is_empty() {
            what.to_owned()
        } else {
            format!("{} ({what})", comment.trim())
        };
        let extra = vec![Write::Put {
            kind: kinds::GUARDED_ROLLOUT.into(),
            scope: env_scope(flag.project, flag.environment),
            key: flag.key.into(),
            body: body(&plan)?,
            expect,
        }];
        self.write_targeting(
            flag,
            targeting,
            WriteMeta {
                actor,
                expected: targeting_version,
                comment: &comment,
            },
            Origin { extra, approved },
        )
        .await?;
        self.refresh_experiments().await?;
        self.load(
            kinds::GUARDED_ROLLOUT,
            &env_scope(flag.project, flag.environment),
            flag.key,
            || format!("guarded rollout of flag {:?}", flag.key),
        )
        .await
    }
}

/// Who the automatic decisions are by, in the audit log.
pub const GUARD_ACTOR: &str = "guarded-rollout";
