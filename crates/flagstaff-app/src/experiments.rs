//! Experiments (issue 21, point 2): an A/B test of a flag's variations in one environment. This
//! file holds the design and its CRUD; `experiment_iterations.rs` starts, stops and ships.
//!
//! An experiment names its flag, the control and treatment variations, the audience (the
//! fallthrough or one rule), their traffic weights, the metrics it measures and the context kind
//! it randomizes. Starting it opens an *iteration*: the audience's serve becomes an experiment
//! rollout (`"kind": "experiment"`, spec §2.2, §3.8.2) with a fresh seed, so that SDKs send a
//! full feature event with `inExperiment` for every evaluation in it, and the events pipeline
//! starts keeping the iteration's exposures and metric events (`flagstaff-events`
//! `experiments.rs`). Stopping closes the iteration and leaves the same split as a plain
//! rollout (nobody's variation changes, SDKs stop sending full events); shipping a variation
//! serves it to the whole audience and closes the iteration. Each of the three is one ordinary
//! targeting change, audited and subject to the environment's approval rules, committed in the
//! same transaction as the experiment's new state. Iterations keep their results: a closed one's
//! sufficient statistics stay in the events database after its per-context rows are dropped.

use flagstaff_protocol::{VariationOrRollout, WeightedVariation};
use flagstaff_store::{Expect, Write};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::resource;
use crate::changes::Action;
use crate::error::ErrorCode;
use crate::metrics::{Aggregation, Metric, MetricKind, SuccessCriteria};
use crate::model::{FlagDefinition, kinds};
use crate::{
    Actor, App, AppError, EnvRef, Result, Versioned, already_exists, body, decode, draft,
    env_scope, validate,
};

/// Most metrics one experiment measures.
pub const MAX_METRICS: usize = 10;
/// Most treatments besides the control.
pub const MAX_TREATMENTS: usize = 9;

/// Who takes part: the contexts that reach the fallthrough, or those matching one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Contexts no target or rule caught.
    Fallthrough,
    /// Contexts matching the rule with this id.
    Rule(String),
}

impl Serialize for Audience {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Audience::Fallthrough => serializer.serialize_str("fallthrough"),
            Audience::Rule(id) => serde_json::json!({ "ruleId": id }).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match &value {
            Value::String(s) if s == "fallthrough" => Ok(Audience::Fallthrough),
            Value::Object(o) if o.len() == 1 => match o.get("ruleId").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => Ok(Audience::Rule(id.to_owned())),
                _ => Err(serde::de::Error::custom(
                    "an audience is \"fallthrough\" or {\"ruleId\": \"<rule id>\"}",
                )),
            },
            _ => Err(serde::de::Error::custom(
                "an audience is \"fallthrough\" or {\"ruleId\": \"<rule id>\"}",
            )),
        }
    }
}

/// Where an experiment is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExperimentStatus {
    /// Designed, never started.
    #[default]
    NotStarted,
    /// An iteration is collecting data.
    Running,
    /// Its last iteration is closed.
    Stopped,
}

/// One run of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Iteration {
    /// Unique across all experiments (the events database's key).
    pub id: String,
    /// 1, 2, … within the experiment.
    pub number: u32,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Who started it.
    pub started_by: String,
    /// When it closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<i64>,
    /// Who closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// The variation shipped when it closed, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_variation: Option<u32>,
    /// The arms as run (control first) with their rollout weights.
    pub arms: Vec<WeightedVariation>,
    /// The rollout seed: each iteration buckets contexts afresh.
    pub seed: i64,
    /// The metrics measured.
    pub metrics: Vec<String>,
    /// What the audience was served before the iteration started.
    pub previous_serve: VariationOrRollout,
}

/// An experiment as stored and returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    /// Unique within the environment.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What is expected, for people.
    #[serde(default)]
    pub hypothesis: String,
    /// The flag whose variations are compared.
    pub flag: String,
    /// Metric keys (project metrics).
    pub metrics: Vec<String>,
    /// The metric that decides.
    pub primary_metric: String,
    /// The baseline variation.
    pub control_variation: u32,
    /// The variations compared with it.
    pub treatment_variations: Vec<u32>,
    /// Who takes part.
    pub audience: Audience,
    /// Traffic per arm (control first), in percent summing to 100.
    pub weights: Vec<f64>,
    /// The context kind randomized and counted.
    pub randomization_unit: String,
    /// Where it is.
    #[serde(default)]
    pub status: ExperimentStatus,
    /// Its runs, oldest first.
    #[serde(default)]
    pub iterations: Vec<Iteration>,
}

impl Experiment {
    /// The running iteration.
    pub fn running(&self) -> Option<&Iteration> {
        self.iterations.last().filter(|i| i.stopped_at.is_none())
    }

    /// The arms, control first.
    pub fn arms(&self) -> Vec<u32> {
        std::iter::once(self.control_variation)
            .chain(self.treatment_variations.iter().copied())
            .collect()
    }
}

/// What a caller sends to create or replace an experiment's design.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewExperiment {
    /// Unique within the environment.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What is expected.
    #[serde(default)]
    pub hypothesis: String,
    /// The flag.
    pub flag: String,
    /// Metric keys.
    pub metrics: Vec<String>,
    /// The deciding metric (by default the first).
    #[serde(default)]
    pub primary_metric: Option<String>,
    /// The baseline variation.
    pub control_variation: u32,
    /// The variations compared with it.
    pub treatment_variations: Vec<u32>,
    /// Who takes part.
    #[serde(default = "fallthrough")]
    pub audience: Audience,
    /// Traffic per arm (control first), in percent summing to 100; equal by default.
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// The context kind randomized (by default `user`).
    #[serde(default)]
    pub randomization_unit: Option<String>,
    /// Accepted and ignored: what `GET` returned, so that GET-edit-PUT works.
    #[serde(default)]
    pub status: Option<Value>,
    /// Accepted and ignored, as `status`.
    #[serde(default)]
    pub iterations: Option<Value>,
    /// Accepted and ignored (the version counts through `If-Match`).
    #[serde(default)]
    pub version: Option<Value>,
}

fn fallthrough() -> Audience {
    Audience::Fallthrough
}

pub(crate) fn invalid(code: ErrorCode, field: &str, message: impl Into<String>) -> AppError {
    AppError::invalid(code, field, message)
}

pub(crate) fn state_error(message: impl Into<String>) -> AppError {
    AppError::invalid(ErrorCode::InvalidState, "", message)
}

impl App {
    /// Checks a design against the project's flag and metrics.
    async fn validated_experiment(&self, project: &str, new: NewExperiment) -> Result<Experiment> {
        validate::key("key", &new.key)?;
        validate::name("name", &new.name)?;
        if new.hypothesis.chars().count() > 2_000 {
            return Err(invalid(
                ErrorCode::InvalidField,
                "hypothesis",
                "a hypothesis has at most 2000 characters",
            ));
        }
        let flag: Versioned<FlagDefinition> = self
            .load(kinds::FLAG, project, &new.flag, || {
                format!("flag {:?}", new.flag)
            })
            .await
            .map_err(|e| match e {
                AppError::NotFound(what) => invalid(
                    ErrorCode::InvalidField,
                    "flag",
                    format!("{what} does not exist in this project"),
                ),
                other => other,
            })?;
        let variations = flag.value.variations.len();
        let check_variation = |field: &str, v: u32| {
            if (v as usize) < variations {
                Ok(())
            } else {
                Err(invalid(
                    ErrorCode::VariationOutOfRange,
                    field,
                    format!("flag {:?} has {variations} variations", new.flag),
                ))
            }
        };
        check_variation("controlVariation", new.control_variation)?;
        if new.treatment_variations.is_empty() || new.treatment_variations.len() > MAX_TREATMENTS {
            return Err(invalid(
                ErrorCode::InvalidField,
                "treatmentVariations",
                format!("an experiment has 1 to {MAX_TREATMENTS} treatments"),
            ));
        }
        let mut seen = vec![new.control_variation];
        for (i, v) in new.treatment_variations.iter().enumerate() {
            let field = format!("treatmentVariations[{i}]");
            check_variation(&field, *v)?;
            if seen.contains(v) {
                return Err(invalid(
                    ErrorCode::InvalidField,
                    &field,
                    "each variation takes part once (and a treatment is not the control)",
                ));
            }
            seen.push(*v);
        }
        let arms = seen.len();
        let weights = match new.weights {
            None => vec![100.0 / arms as f64; arms],
            Some(weights) => {
                if weights.len() != arms {
                    return Err(invalid(
                        ErrorCode::InvalidField,
                        "weights",
                        format!("one weight per arm, control first: {arms} weights"),
                    ));
                }
                for (i, w) in weights.iter().enumerate() {
                    if !(w.is_finite() && *w >= 1.0) {
                        return Err(invalid(
                            ErrorCode::InvalidField,
                            &format!("weights[{i}]"),
                            "every arm gets at least 1 %",
                        ));
                    }
                }
                let total: f64 = weights.iter().sum();
                if (total - 100.0).abs() > 1e-6 {
                    return Err(invalid(
                        ErrorCode::InvalidField,
                        "weights",
                        format!("weights are percentages summing to 100, not {total}"),
                    ));
                }
                weights
            }
        };
        if new.metrics.is_empty() || new.metrics.len() > MAX_METRICS {
            return Err(invalid(
                ErrorCode::InvalidField,
                "metrics",
                format!("an experiment measures 1 to {MAX_METRICS} metrics"),
            ));
        }
        for (i, key) in new.metrics.iter().enumerate() {
            let field = format!("metrics[{i}]");
            if new.metrics[..i].contains(key) {
                return Err(invalid(ErrorCode::InvalidField, &field, "listed twice"));
            }
            if self
                .store
                .get_live(kinds::METRIC, project, key)
                .await?
                .is_none()
            {
                return Err(invalid(
                    ErrorCode::InvalidField,
                    &field,
                    format!("metric {key:?} does not exist in this project"),
                ));
            }
        }
        let primary_metric = new.primary_metric.unwrap_or_else(|| new.metrics[0].clone());
        if !new.metrics.contains(&primary_metric) {
            return Err(invalid(
                ErrorCode::InvalidField,
                "primaryMetric",
                "the primary metric is one of the experiment's metrics",
            ));
        }
        let randomization_unit = new.randomization_unit.unwrap_or_else(|| "user".into());
        validate::context_kind("randomizationUnit", Some(&randomization_unit))?;
        Ok(Experiment {
            key: new.key,
            name: new.name.trim().to_owned(),
            hypothesis: new.hypothesis.trim().to_owned(),
            flag: new.flag,
            metrics: new.metrics,
            primary_metric,
            control_variation: new.control_variation,
            treatment_variations: new.treatment_variations,
            audience: new.audience,
            weights,
            randomization_unit,
            status: ExperimentStatus::NotStarted,
            iterations: Vec::new(),
        })
    }

    /// Creates an experiment (not started).
    pub async fn create_experiment(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
        new: NewExperiment,
        comment: &str,
    ) -> Result<Versioned<Experiment>> {
        let (project, environment) = (env.project, env.environment);
        actor.authorize(
            "createExperiment",
            &resource::experiment(project, environment, &new.key),
        )?;
        self.environment_doc(project, environment).await?;
        let experiment = self.validated_experiment(project, new).await?;
        let after = body(&experiment)?;
        let scope = env_scope(project, environment);
        let versions = self
            .commit(
                actor,
                vec![Write::Put {
                    kind: kinds::EXPERIMENT.into(),
                    scope: scope.clone(),
                    key: experiment.key.clone(),
                    body: after.clone(),
                    expect: Expect::Absent,
                }],
                draft(
                    Action::ExperimentCreate,
                    &scope,
                    &experiment.key,
                    comment,
                    None,
                    Some(after),
                ),
            )
            .await
            .map_err(|e| already_exists(e, format!("experiment {:?}", experiment.key)))?;
        Ok(Versioned {
            version: versions[0],
            value: experiment,
        })
    }

    /// One experiment (whoever sees the environment).
    pub async fn experiment(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
        key: &str,
    ) -> Result<Versioned<Experiment>> {
        actor.authorize_view(env.project, Some(env.environment))?;
        self.load(
            kinds::EXPERIMENT,
            &env_scope(env.project, env.environment),
            key,
            || format!("experiment {key:?}"),
        )
        .await
    }

    /// The environment's experiments in key order.
    pub async fn list_experiments(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
    ) -> Result<Vec<Versioned<Experiment>>> {
        actor.authorize_view(env.project, Some(env.environment))?;
        self.environment_doc(env.project, env.environment).await?;
        self.store
            .list(kinds::EXPERIMENT, &env_scope(env.project, env.environment))
            .await?
            .iter()
            .map(|doc| {
                Ok(Versioned {
                    version: doc.version,
                    value: decode(doc)?,
                })
            })
            .collect()
    }

    /// Replaces an experiment's design (not while it runs; its iterations stay).
    pub async fn update_experiment(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
        key: &str,
        new: NewExperiment,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<Experiment>> {
        let (project, environment) = (env.project, env.environment);
        actor.authorize(
            "updateExperiment",
            &resource::experiment(project, environment, key),
        )?;
        if new.key != key {
            return Err(invalid(
                ErrorCode::InvalidField,
                "key",
                "an experiment's key cannot change",
            ));
        }
        let current = self.experiment(&Actor::system(), env, key).await?;
        if current.value.running().is_some() {
            return Err(state_error(
                "the experiment is running: stop it before changing its design",
            ));
        }
        let mut experiment = self.validated_experiment(project, new).await?;
        experiment.status = current.value.status;
        experiment.iterations = current.value.iterations.clone();
        let after = body(&experiment)?;
        let scope = env_scope(project, environment);
        let versions = self
            .commit(
                actor,
                vec![Write::Put {
                    kind: kinds::EXPERIMENT.into(),
                    scope: scope.clone(),
                    key: key.into(),
                    body: after.clone(),
                    expect: Expect::Version(expected),
                }],
                draft(
                    Action::ExperimentUpdate,
                    &scope,
                    key,
                    comment,
                    Some(body(&current.value)?),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: experiment,
        })
    }

    /// Deletes an experiment and its data (not while it runs).
    pub async fn delete_experiment(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        let (project, environment) = (env.project, env.environment);
        actor.authorize(
            "deleteExperiment",
            &resource::experiment(project, environment, key),
        )?;
        let current = self.experiment(&Actor::system(), env, key).await?;
        if current.value.running().is_some() {
            return Err(state_error(
                "the experiment is running: stop it before deleting it",
            ));
        }
        let scope = env_scope(project, environment);
        self.commit(
            actor,
            vec![Write::Delete {
                kind: kinds::EXPERIMENT.into(),
                scope: scope.clone(),
                key: key.into(),
                expect: Expect::Version(expected),
            }],
            draft(
                Action::ExperimentDelete,
                &scope,
                key,
                comment,
                Some(body(&current.value)?),
                None,
            ),
        )
        .await?;
        if let Ok(events) = self.event_store() {
            for iteration in &current.value.iterations {
                if let Err(error) = events.delete_iteration(&iteration.id).await {
                    tracing::warn!(%error, iteration = %iteration.id, "cannot remove an experiment's data");
                }
            }
        }
        Ok(())
    }
}

/// How a metric's values are read from the events database.
pub(crate) fn transform_of(metric: &Metric) -> flagstaff_store::events::Transform {
    use flagstaff_store::events::Transform;
    match (metric.kind, metric.aggregation) {
        (MetricKind::Conversion, _) => Transform::Conversion,
        (MetricKind::Count, _) => Transform::Count,
        (MetricKind::Numeric, Some(Aggregation::Mean)) => Transform::Mean,
        (MetricKind::Numeric, _) => Transform::Sum,
    }
}

/// Whether more is better.
pub(crate) fn higher_is_better(metric: &Metric) -> bool {
    metric.success_criteria == SuccessCriteria::Higher
}
