//! The guarded rollouts' loop (issue 21, point 5): every second, on every node, each running
//! plan's current step is measured like an experiment iteration; a guard whose anytime-valid
//! interval of (new − control) lies entirely beyond its tolerated margin rolls the plan back, and
//! a step whose duration and sample are reached advances. The plan's version makes exactly one
//! node win each decision (`guarded_rollouts.rs` holds the plan and its transitions).

use flagstaff_stats::experiment::{self, Correction};
use flagstaff_stats::frequentist::DEFAULT_TUNING_SAMPLE;

use crate::experiment_results::{ALPHA, metric_data};
use crate::experiments::higher_is_better;
use crate::guarded_rollouts::{Evidence, GUARD_ACTOR, Guard, GuardedRollout, RolloutStatus};
use crate::metrics::Metric;
use crate::model::kinds;
use crate::{Actor, App, AppError, FlagRef, Result, Versioned, decode};

impl App {
    /// Looks at every running plan once: records its guards' evidence, rolls back on a
    /// regression, advances a step whose duration and sample are reached. Returns what it did
    /// as (flag, outcome) pairs. Safe on any number of nodes at once.
    pub async fn run_guarded_rollouts(&self) -> Result<Vec<(String, String)>> {
        let mut done = Vec::new();
        let Ok(events) = self.event_store() else {
            return Ok(done);
        };
        let metrics = self.store.list_kind(kinds::METRIC).await?;
        for doc in self.store.list_kind(kinds::GUARDED_ROLLOUT).await? {
            let plan: GuardedRollout = decode(&doc)?;
            if plan.status != RolloutStatus::Running {
                continue;
            }
            let Some((project, environment)) = doc.scope.split_once('/') else {
                continue;
            };
            let Some(step) = plan.history.last() else {
                continue;
            };
            let percent = plan.steps[plan.current_step].percent;
            let (exposures, evidence) = guard_evidence(events, &plan, project, &metrics).await?;
            let flag = FlagRef {
                project,
                environment,
                key: &plan.flag,
            };
            let current = Versioned {
                version: doc.version,
                value: plan.clone(),
            };
            let actor = Actor::with_role(GUARD_ACTOR, crate::Role::Admin);
            let outcome = if let Some(bad) = evidence.iter().find(|e| e.regression) {
                let what = format!(
                    "Guarded rollout of {:?} rolled back at {} %: regression on {} (control mean {:.4}, new variation {:.4}; anytime-valid 95 % interval of the difference [{:.4}, {:.4}] beyond the tolerated {:+.4}; {} and {} contexts); the control (variation {}) serves everyone",
                    plan.flag,
                    percent,
                    bad.metric,
                    bad.control_mean,
                    bad.treatment_mean,
                    bad.sequential.map_or(f64::NAN, |s| s[0]),
                    bad.sequential.map_or(f64::NAN, |s| s[1]),
                    bad.margin,
                    bad.exposures[0],
                    bad.exposures[1],
                    plan.control_variation
                );
                Some(("rolledBack", what))
            } else {
                let spec = &plan.steps[plan.current_step];
                let due = self.now_millis() - step.started_at >= spec.min_duration_ms
                    && exposures[1] >= spec.min_sample;
                due.then(|| {
                    let next = plan.steps[plan.current_step + 1].percent;
                    (
                        "advanced",
                        format!(
                            "Guarded rollout of {:?} advances from {} % to {} %: no regression on {} ({} and {} contexts)",
                            plan.flag,
                            percent,
                            next,
                            plan.guards
                                .iter()
                                .map(|g| g.metric.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            exposures[0],
                            exposures[1]
                        ),
                    )
                })
            };
            let Some((outcome, what)) = outcome else {
                continue;
            };
            match self
                .end_step(flag, current, outcome, evidence, &actor, "", &what)
                .await
            {
                Ok(_) => done.push((plan.flag.clone(), outcome.to_owned())),
                // Another node decided first, or someone paused it meanwhile.
                Err(AppError::Conflict { .. }) => {}
                Err(error) => {
                    tracing::warn!(flag = %plan.flag, %error, "cannot move a guarded rollout");
                }
            }
        }
        Ok(done)
    }
}

/// What the guards of a plan's current step show now: exposures of (control, new variation)
/// and one [`Evidence`] per guard metric that still exists.
pub(crate) async fn guard_evidence(
    events: &flagstaff_store::EventStore,
    plan: &GuardedRollout,
    project: &str,
    metrics: &[flagstaff_store::Document],
) -> Result<([u64; 2], Vec<Evidence>)> {
    let Some(step) = plan.history.last() else {
        return Ok(([0, 0], Vec::new()));
    };
    let totals = events.iteration_totals(&step.iteration).await?;
    let arms = [plan.control_variation, plan.treatment_variation];
    let exposures: Vec<f64> = arms
        .iter()
        .map(|v| totals.exposures.get(v).copied().unwrap_or(0) as f64)
        .collect();
    let guard_metrics: Vec<(Guard, Metric)> = plan
        .guards
        .iter()
        .filter_map(|g| {
            let m = metrics
                .iter()
                .find(|m| m.scope == project && m.key == g.metric)?;
            Some((g.clone(), decode::<Metric>(m).ok()?))
        })
        .collect();
    let data = guard_metrics
        .iter()
        .map(|(_, m)| metric_data(m, &arms, &exposures, &totals))
        .collect();
    let percent = plan.steps[plan.current_step].percent;
    let results = experiment::results(&experiment::Experiment {
        exposures: exposures.clone(),
        weights: vec![100.0 - percent, percent],
        control: 0,
        metrics: data,
        alpha: ALPHA,
        tuning_sample: DEFAULT_TUNING_SAMPLE,
        correction: Correction::None,
    });
    let evidence: Vec<Evidence> = guard_metrics
        .iter()
        .enumerate()
        .map(|(i, (guard, metric))| {
            let control = &results.variations[0].metrics[i];
            let treatment = &results.variations[1].metrics[i];
            let higher = higher_is_better(metric);
            // The harm tolerated, as a difference of means in the harmful direction.
            let margin = guard.tolerance * control.mean.abs();
            let sequential = treatment
                .comparison
                .as_ref()
                .map(|c| [c.sequential.low, c.sequential.high])
                .filter(|[l, h]| l.is_finite() && h.is_finite());
            let regression =
                sequential.is_some_and(
                    |[low, high]| {
                        if higher { high < -margin } else { low > margin }
                    },
                );
            Evidence {
                metric: metric.key.clone(),
                exposures: [exposures[0] as u64, exposures[1] as u64],
                control_mean: control.mean,
                treatment_mean: treatment.mean,
                sequential,
                margin: if higher { -margin } else { margin },
                regression,
            }
        })
        .collect();
    Ok(([exposures[0] as u64, exposures[1] as u64], evidence))
}
