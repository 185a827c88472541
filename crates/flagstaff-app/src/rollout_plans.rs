//! Progressive rollout plans: a series of scheduled changes (1 % → 5 % → 25 % → 100 % at given
//! times), created and cancelled as one transaction, each step checked against the document as
//! the steps before it leave it (`schedules.rs` makes and runs the steps).

use flagstaff_store::Expect;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::changes::Action;
use crate::deferred::{Target, TargetKind};
use crate::model::kinds;
use crate::schedules::{MAX_PLAN_STEPS, ScheduleStatus, ScheduledChange, field_error};
use crate::when::When;
use crate::{Actor, App, AppError, Result, decode, draft};

/// A progressive rollout: steps at given times, created and cancelled as one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewRolloutPlan {
    /// The time zone of every step's `executeAt` (each step may name its own).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The variation rolled out by `percent` steps.
    #[serde(default)]
    pub variation: Option<i64>,
    /// The variation everyone else keeps (by default the fallthrough's variation now).
    #[serde(default)]
    pub baseline: Option<i64>,
    /// The steps, in time order.
    pub steps: Vec<PlanStep>,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// One step of a rollout plan: a moment, and either a percentage of `variation` or
/// instructions.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanStep {
    /// Local date and time or instant.
    #[serde(default)]
    pub execute_at: Option<String>,
    /// Overrides the plan's time zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Unix milliseconds.
    #[serde(default)]
    pub execution_date: Option<i64>,
    /// The share of contexts that get the plan's `variation` from this step on (0 < p ≤ 100).
    #[serde(default)]
    pub percent: Option<f64>,
    /// Or what the step does.
    #[serde(default)]
    pub instructions: Option<Vec<Value>>,
}

/// The fallthrough instruction of a percentage step.
fn percent_instruction(index: usize, percent: f64, variation: i64, baseline: i64) -> Result<Value> {
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(field_error(
            format!("steps[{index}].percent"),
            "a percentage above 0 and at most 100",
        ));
    }
    if percent >= 100.0 {
        return Ok(json!({"kind": "updateFallthroughVariationOrRollout", "variation": variation}));
    }
    // Weights are in thousandths of a percent (ld-protocol.md §3.8.2: 100000 is everyone).
    let weight = (percent * 1000.0).round() as i64;
    Ok(json!({
        "kind": "updateFallthroughVariationOrRollout",
        "rollout": {"variations": [
            {"variation": variation, "weight": weight},
            {"variation": baseline, "weight": 100_000 - weight}
        ]}
    }))
}

impl App {
    /// Creates a rollout plan's steps, all or none, with one audit entry.
    pub async fn create_rollout_plan(
        &self,
        actor: &Actor,
        target: &Target,
        plan: NewRolloutPlan,
    ) -> Result<Vec<ScheduledChange>> {
        if plan.steps.is_empty() || plan.steps.len() > MAX_PLAN_STEPS {
            return Err(field_error(
                "steps",
                format!("a rollout plan has 1 to {MAX_PLAN_STEPS} steps"),
            ));
        }
        if target.kind != TargetKind::Flag && plan.steps.iter().any(|s| s.percent.is_some()) {
            return Err(field_error("steps", "percentage steps roll out a flag"));
        }
        let baseline = match (
            plan.baseline,
            plan.steps.iter().any(|s| s.percent.is_some()),
        ) {
            (Some(b), _) => b,
            (None, false) => 0,
            (None, true) => match self.draft_of(target).await?.1 {
                crate::deferred::Draft::Flag(t) => t.fallthrough.variation.ok_or_else(|| {
                    field_error(
                        "baseline",
                        "the fallthrough is a rollout now: name the baseline variation",
                    )
                })?,
                crate::deferred::Draft::Segment(_) => 0,
            },
        };
        let mut steps = Vec::with_capacity(plan.steps.len());
        for (i, step) in plan.steps.into_iter().enumerate() {
            let instructions = match (step.percent, step.instructions) {
                (Some(percent), None) => {
                    let variation = plan.variation.ok_or_else(|| {
                        field_error("variation", "percentage steps need the plan's variation")
                    })?;
                    vec![percent_instruction(i, percent, variation, baseline)?]
                }
                (None, Some(instructions)) => instructions,
                _ => {
                    return Err(field_error(
                        format!("steps[{i}]"),
                        "give a step either percent or instructions",
                    ));
                }
            };
            let when = When {
                execute_at: step.execute_at,
                time_zone: step.time_zone.or_else(|| plan.time_zone.clone()),
                execution_date: step.execution_date,
            };
            steps.push((when, instructions, format!("steps[{i}]")));
        }
        let schedules = self
            .plan_schedules(actor, target, steps, &plan.comment)
            .await?;
        let writes = schedules
            .iter()
            .map(|s| self.schedule_put(s, Expect::Absent))
            .collect::<Result<Vec<_>>>()?;
        let plan_id = schedules[0].plan.clone().unwrap_or_default();
        self.commit(
            actor,
            writes,
            draft(
                Action::ScheduleCreate,
                &target.scope(),
                &plan_id,
                &plan.comment,
                None,
                Some(json!({"plan": plan_id, "steps": schedules})),
            ),
        )
        .await?;
        Ok(schedules)
    }

    /// The pending steps of a rollout plan, in order.
    pub(crate) async fn plan_steps(
        &self,
        (project, environment): (&str, &str),
        plan: &str,
    ) -> Result<Vec<ScheduledChange>> {
        let mut steps = Vec::new();
        for doc in self
            .store
            .list(kinds::SCHEDULE, &crate::env_scope(project, environment))
            .await?
        {
            let schedule: ScheduledChange = decode(&doc)?;
            if schedule.plan.as_deref() == Some(plan) {
                steps.push(schedule);
            }
        }
        steps.sort_by_key(|s| s.step);
        Ok(steps)
    }

    /// Cancels every pending step of a rollout plan, in one transaction.
    pub async fn cancel_rollout_plan(
        &self,
        actor: &Actor,
        env: (&str, &str),
        plan: &str,
        comment: &str,
    ) -> Result<Vec<ScheduledChange>> {
        let steps = self.plan_steps(env, plan).await?;
        let Some(first) = steps.first() else {
            return Err(AppError::NotFound(format!(
                "a rollout plan {plan:?} with pending steps"
            )));
        };
        // Authorizes once for the plan's flag.
        self.pending_schedule(actor, env, &first.id).await?;
        let now = self.now_millis();
        let mut writes = Vec::new();
        let mut cancelled = Vec::new();
        for step in steps {
            let version = self
                .store
                .get_live(kinds::SCHEDULE, &crate::env_scope(env.0, env.1), &step.id)
                .await?
                .map_or(0, |d| d.version);
            let mut after = step;
            after.status = ScheduleStatus::Cancelled;
            after.finished_at = Some(now);
            writes.extend(self.schedule_end(&after, version)?);
            cancelled.push(after);
        }
        self.commit(
            actor,
            writes,
            draft(
                Action::ScheduleCancel,
                &crate::env_scope(env.0, env.1),
                plan,
                comment,
                None,
                Some(json!({"plan": plan, "steps": cancelled})),
            ),
        )
        .await?;
        Ok(cancelled)
    }
}
