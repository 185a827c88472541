//! An experiment's iterations (issue 21, point 2): start turns the audience into an experiment
//! rollout of the arms with a fresh seed, stop keeps the split as a plain rollout, ship serves
//! one arm. Each is one targeting change through `write_targeting` (audited, authorized by the
//! targeting actions it takes, through the approval gate) with the experiment's new state in
//! the same transaction. `refresh_experiments` tells the events pipeline which iterations run.

use flagstaff_protocol::{Rollout, RolloutKind, VariationOrRollout, WeightedVariation};
use flagstaff_store::{Expect, Write};

use crate::access::resource;
use crate::approvals::Origin;
use crate::error::ErrorCode;
use crate::experiments::{Audience, Experiment, ExperimentStatus, Iteration, invalid, state_error};
use crate::metrics::Metric;
use crate::model::{FlagDefinition, Targeting, kinds};
use crate::{
    Actor, App, EnvRef, FlagRef, Result, Versioned, WriteMeta, body, decode, env_scope, random_hex,
};

/// The rollout weight of everyone (ld-protocol.md §3.8.2: thousandths of a percent).
const EVERYONE: i64 = 100_000;

impl App {
    /// Starts a new iteration: the audience's serve becomes an experiment rollout of the arms.
    pub async fn start_experiment(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
        key: &str,
        comment: &str,
    ) -> Result<Versioned<Experiment>> {
        let (project, environment) = (env.project, env.environment);
        actor.authorize(
            "updateExperiment",
            &resource::experiment(project, environment, key),
        )?;
        let current = self.experiment(&Actor::system(), env, key).await?;
        let mut experiment = current.value.clone();
        if experiment.running().is_some() {
            return Err(state_error("the experiment is already running"));
        }
        // The design is checked again: a metric or variation may have gone since it was saved.
        let targeting = self
            .targeting(&Actor::system(), project, environment, &experiment.flag)
            .await?;
        let flag: Versioned<FlagDefinition> = self
            .load(kinds::FLAG, project, &experiment.flag, || {
                format!("flag {:?}", experiment.flag)
            })
            .await?;
        if let Some(v) = experiment
            .arms()
            .iter()
            .find(|v| **v as usize >= flag.value.variations.len())
        {
            return Err(invalid(
                ErrorCode::VariationOutOfRange,
                "",
                format!(
                    "variation {v} no longer exists in flag {:?}",
                    experiment.flag
                ),
            ));
        }
        let weights = rollout_weights(&experiment.weights);
        let arms: Vec<WeightedVariation> = experiment
            .arms()
            .into_iter()
            .zip(weights)
            .map(|(variation, weight)| WeightedVariation {
                variation: i64::from(variation),
                weight,
                untracked: false,
            })
            .collect();
        // Never 0: a rollout seed of 0 is refused (it reads as "no seed" in some SDKs).
        let seed = i64::from_str_radix(&random_hex(4), 16).unwrap_or(1).max(1);
        let rollout = VariationOrRollout {
            variation: None,
            rollout: Some(Rollout {
                kind: Some(RolloutKind::Experiment),
                context_kind: Some(experiment.randomization_unit.clone()),
                variations: arms.clone(),
                seed: Some(seed),
                bucket_by: None,
            }),
        };
        let mut next = targeting.value.clone();
        let previous_serve = replace_serve(&mut next, &experiment.audience, rollout)?;
        let number = experiment.iterations.last().map_or(1, |i| i.number + 1);
        experiment.iterations.push(Iteration {
            id: format!("{}-{}", experiment.key, random_hex(8)),
            number,
            started_at: self.now_millis(),
            started_by: actor.id.clone(),
            stopped_at: None,
            stopped_by: None,
            shipped_variation: None,
            arms,
            seed,
            metrics: experiment.metrics.clone(),
            previous_serve,
        });
        experiment.status = ExperimentStatus::Running;
        let comment = describe(
            comment,
            format!(
                "Start experiment {:?} (iteration {number}): {} becomes an experiment rollout",
                experiment.key,
                audience_text(&experiment.audience)
            ),
        );
        self.commit_experiment_change(
            env,
            &current,
            experiment,
            next,
            targeting.version,
            actor,
            &comment,
        )
        .await
    }

    /// Closes the running iteration. With `ship`, the audience is served that variation from
    /// now on; without, it keeps the same split as a plain rollout.
    pub async fn stop_experiment(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
        key: &str,
        ship: Option<u32>,
        comment: &str,
    ) -> Result<Versioned<Experiment>> {
        let (project, environment) = (env.project, env.environment);
        actor.authorize(
            "updateExperiment",
            &resource::experiment(project, environment, key),
        )?;
        let current = self.experiment(&Actor::system(), env, key).await?;
        let mut experiment = current.value.clone();
        let Some(running) = experiment.running().cloned() else {
            return Err(state_error("the experiment is not running"));
        };
        if let Some(v) = ship
            && !experiment.arms().contains(&v)
        {
            return Err(invalid(
                ErrorCode::InvalidField,
                "variation",
                "the variation shipped is one of the experiment's arms",
            ));
        }
        let targeting = self
            .targeting(&Actor::system(), project, environment, &experiment.flag)
            .await?;
        let serve = match ship {
            Some(v) => VariationOrRollout {
                variation: Some(i64::from(v)),
                rollout: None,
            },
            None => VariationOrRollout {
                variation: None,
                rollout: Some(Rollout {
                    kind: None,
                    context_kind: Some(experiment.randomization_unit.clone()),
                    variations: running.arms.clone(),
                    seed: Some(running.seed),
                    bucket_by: None,
                }),
            },
        };
        let mut next = targeting.value.clone();
        replace_serve(&mut next, &experiment.audience, serve)?;
        let now = self.now_millis();
        if let Some(last) = experiment.iterations.last_mut() {
            last.stopped_at = Some(now);
            last.stopped_by = Some(actor.id.clone());
            last.shipped_variation = ship;
        }
        experiment.status = ExperimentStatus::Stopped;
        let what = match ship {
            Some(v) => format!(
                "ship variation {v} to {}",
                audience_text(&experiment.audience)
            ),
            None => "keep the same split as a plain rollout".to_owned(),
        };
        let comment = describe(
            comment,
            format!(
                "Stop experiment {:?} (iteration {}): {what}",
                experiment.key, running.number
            ),
        );
        let stopped = self
            .commit_experiment_change(
                env,
                &current,
                experiment,
                next,
                targeting.version,
                actor,
                &comment,
            )
            .await?;
        // The iteration's totals stay; its per-context rows are no longer needed.
        if let Ok(events) = self.event_store()
            && let Err(error) = events.forget_iteration_contexts(&running.id).await
        {
            tracing::warn!(%error, iteration = %running.id, "cannot remove a closed iteration's per-context rows");
        }
        Ok(stopped)
    }

    /// Commits the targeting change and the experiment's new state in one transaction, then
    /// tells the events pipeline which iterations run.
    #[allow(clippy::too_many_arguments)]
    async fn commit_experiment_change(
        &self,
        env: EnvRef<'_>,
        current: &Versioned<Experiment>,
        experiment: Experiment,
        targeting: Targeting,
        targeting_version: u64,
        actor: &Actor,
        comment: &str,
    ) -> Result<Versioned<Experiment>> {
        let scope = env_scope(env.project, env.environment);
        let extra = vec![Write::Put {
            kind: kinds::EXPERIMENT.into(),
            scope,
            key: experiment.key.clone(),
            body: body(&experiment)?,
            expect: Expect::Version(current.version),
        }];
        self.write_targeting(
            FlagRef {
                project: env.project,
                environment: env.environment,
                key: &experiment.flag,
            },
            targeting,
            WriteMeta {
                actor,
                expected: targeting_version,
                comment,
            },
            Origin {
                extra,
                approved: false,
            },
        )
        .await?;
        self.refresh_experiments().await?;
        self.experiment(&Actor::system(), env, &experiment.key)
            .await
    }

    /// Tells the events pipeline which iterations run now (every node calls it every second,
    /// and after each start and stop).
    pub async fn refresh_experiments(&self) -> Result<()> {
        let Some(pipeline) = &self.pipeline else {
            return Ok(());
        };
        let mut running = Vec::new();
        let metrics = self.store.list_kind(kinds::METRIC).await?;
        for doc in self.store.list_kind(kinds::EXPERIMENT).await? {
            let experiment: Experiment = decode(&doc)?;
            let Some(iteration) = experiment.running() else {
                continue;
            };
            let project = doc.scope.split('/').next().unwrap_or_default();
            let event_keys = metrics
                .iter()
                .filter(|m| m.scope == project && iteration.metrics.contains(&m.key))
                .filter_map(|m| decode::<Metric>(m).ok())
                .map(|m| m.event_key)
                .collect();
            running.push(flagstaff_events::RunningIteration {
                id: iteration.id.clone(),
                environment: doc.scope.clone(),
                flag: experiment.flag.clone(),
                unit_kind: experiment.randomization_unit.clone(),
                variations: experiment.arms(),
                event_keys,
                started_at: iteration.started_at,
            });
        }
        // Guarded rollouts measure their current step like an iteration.
        for doc in self.store.list_kind(kinds::GUARDED_ROLLOUT).await? {
            let plan: crate::guarded_rollouts::GuardedRollout = decode(&doc)?;
            let in_progress = matches!(
                plan.status,
                crate::guarded_rollouts::RolloutStatus::Running
                    | crate::guarded_rollouts::RolloutStatus::Paused
            );
            let Some(step) = plan.history.last().filter(|_| in_progress) else {
                continue;
            };
            let project = doc.scope.split('/').next().unwrap_or_default();
            let event_keys = metrics
                .iter()
                .filter(|m| m.scope == project && plan.guards.iter().any(|g| g.metric == m.key))
                .filter_map(|m| decode::<Metric>(m).ok())
                .map(|m| m.event_key)
                .collect();
            running.push(flagstaff_events::RunningIteration {
                id: step.iteration.clone(),
                environment: doc.scope.clone(),
                flag: plan.flag.clone(),
                unit_kind: plan.randomization_unit.clone(),
                variations: vec![plan.control_variation, plan.treatment_variation],
                event_keys,
                started_at: step.started_at,
            });
        }
        pipeline.experiments().replace(running);
        Ok(())
    }

    /// Every second until the process ends: refreshes the running experiments (so that an
    /// experiment started on another node is measured here too) and moves guarded rollouts.
    pub async fn run_experiments(self) {
        loop {
            if let Err(error) = self.refresh_experiments().await {
                tracing::warn!(%error, "cannot read the running experiments");
            }
            if let Err(error) = self.run_guarded_rollouts().await {
                tracing::warn!(%error, "cannot check the guarded rollouts");
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// Percentages as rollout weights summing to exactly [`EVERYONE`]; rounding goes to the
/// control.
fn rollout_weights(percentages: &[f64]) -> Vec<i64> {
    let mut weights: Vec<i64> = percentages
        .iter()
        .map(|p| (p * 1000.0).round() as i64)
        .collect();
    let total: i64 = weights.iter().sum();
    if let Some(first) = weights.first_mut() {
        *first += EVERYONE - total;
    }
    weights
}

/// Sets the audience's serve; returns what it was.
fn replace_serve(
    targeting: &mut Targeting,
    audience: &Audience,
    serve: VariationOrRollout,
) -> Result<VariationOrRollout> {
    let slot = match audience {
        Audience::Fallthrough => &mut targeting.fallthrough,
        Audience::Rule(id) => {
            &mut targeting
                .rules
                .iter_mut()
                .find(|r| r.id == *id)
                .ok_or_else(|| {
                    invalid(
                        ErrorCode::InvalidField,
                        "audience.ruleId",
                        format!("the flag has no rule {id:?} in this environment"),
                    )
                })?
                .variation_or_rollout
        }
    };
    Ok(std::mem::replace(slot, serve))
}

fn audience_text(audience: &Audience) -> String {
    match audience {
        Audience::Fallthrough => "the fallthrough".into(),
        Audience::Rule(id) => format!("rule {id:?}"),
    }
}

/// The audit comment: the caller's, then what happened.
fn describe(comment: &str, what: String) -> String {
    if comment.trim().is_empty() {
        what
    } else {
        format!("{} ({what})", comment.trim())
    }
}
