//! Experiment data from the events stream (issue 21, point 3).
//!
//! An experiment's flag serves its audience through an experiment rollout (spec §2.2
//! `rollout.kind = "experiment"`), so SDKs send a full `feature` event with
//! `reason.inExperiment = true` for every evaluation in it (§3.8.2, §6.4): those are the
//! exposures. Metric events are `custom` events (`track`) and the browser's `click` and
//! `pageview` goal events (§5.9), joined to exposures on the key of the context of the
//! randomization unit's kind (a `context` or the `contextKeys` of schema 4).
//!
//! The payload reader keeps every candidate ([`Exposure`], [`Outcome`]); the writer keeps only
//! those of iterations running now in the payload's environment ([`Registry`]), from their
//! start on, and hands them to the events database, which folds them into per-variation
//! sufficient statistics (`flagstaff_store::events::ExperimentWrite`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, RwLock};

use flagstaff_store::events::{ExperimentWrite, ExposureRow, OutcomeRow};

use crate::payload::{Batch, ContextSeen};

/// An evaluation inside an experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Exposure {
    /// The flag key.
    pub flag: String,
    /// The variation served.
    pub variation: u32,
    /// The event's contexts: their positions in the batch's [`Batch::contexts`] (an index
    /// range, so that no key is copied for the many events of no running experiment).
    pub units: Range<usize>,
    /// When (Unix ms).
    pub at: i64,
}

/// An event a metric may count.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The event (or goal) key.
    pub key: String,
    /// Its `metricValue`.
    pub value: Option<f64>,
    /// The event's contexts, as in [`Exposure::units`].
    pub units: Range<usize>,
    /// When (Unix ms).
    pub at: i64,
}

fn units_since(batch: &Batch, first_context: usize) -> Range<usize> {
    first_context..batch.contexts.len()
}

/// Keeps a feature event as an exposure when its reason says `inExperiment` (§3.8.2: only
/// FALLTHROUGH and RULE_MATCH reasons carry it) and it names the variation served.
pub(crate) fn read_exposure(
    batch: &mut Batch,
    in_experiment: bool,
    variation: Option<u32>,
    flag: &str,
    first_context: usize,
    at: i64,
) {
    if let (true, Some(variation)) = (in_experiment, variation) {
        let units = units_since(batch, first_context);
        if !units.is_empty() {
            batch.exposures.push(Exposure {
                flag: flag.to_owned(),
                variation,
                units,
                at,
            });
        }
    }
}

/// Keeps a custom or goal event as a possible metric event.
pub(crate) fn read_outcome(
    batch: &mut Batch,
    key: &str,
    value: Option<f64>,
    first_context: usize,
    at: i64,
) {
    let units = units_since(batch, first_context);
    if !units.is_empty() {
        batch.outcomes.push(Outcome {
            key: key.to_owned(),
            value,
            units,
            at,
        });
    }
}

/// An iteration collecting data now.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningIteration {
    /// Its id (unique across all experiments).
    pub id: String,
    /// `project/environment`.
    pub environment: String,
    /// The experiment's flag.
    pub flag: String,
    /// The context kind randomized (`user`).
    pub unit_kind: String,
    /// The variations in the experiment; exposures to others are ignored.
    pub variations: Vec<u32>,
    /// The event keys its metrics read.
    pub event_keys: Vec<String>,
    /// When it started (Unix ms); earlier events are ignored.
    pub started_at: i64,
}

/// The iterations running now, by environment: set by the application when experiments start
/// and stop (and refreshed from the database, so that every node knows them), read by the
/// writer at each flush.
#[derive(Debug, Default)]
pub struct Registry {
    running: RwLock<Arc<HashMap<String, Vec<RunningIteration>>>>,
}

impl Registry {
    /// Replaces the running iterations.
    pub fn replace(&self, iterations: Vec<RunningIteration>) {
        let mut by_environment: HashMap<String, Vec<RunningIteration>> = HashMap::new();
        for iteration in iterations {
            by_environment
                .entry(iteration.environment.clone())
                .or_default()
                .push(iteration);
        }
        *self.running.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(by_environment);
    }

    /// The running iterations now.
    pub fn snapshot(&self) -> Arc<HashMap<String, Vec<RunningIteration>>> {
        Arc::clone(&self.running.read().unwrap_or_else(|e| e.into_inner()))
    }
}

fn unit_key<'a>(contexts: &'a [ContextSeen], kind: &str) -> Option<&'a str> {
    contexts
        .iter()
        .find(|c| c.kind == kind)
        .map(|c| c.key.as_str())
}

/// Moves a batch's exposures and metric events of running iterations into `write`.
pub(crate) fn collect(
    running: &HashMap<String, Vec<RunningIteration>>,
    batch: &mut Batch,
    write: &mut ExperimentWrite,
) {
    let exposures = std::mem::take(&mut batch.exposures);
    let outcomes = std::mem::take(&mut batch.outcomes);
    let Some(iterations) = running.get(&*batch.source.environment) else {
        return;
    };
    for exposure in exposures {
        for iteration in iterations.iter().filter(|i| {
            i.flag == exposure.flag
                && exposure.at >= i.started_at
                && i.variations.contains(&exposure.variation)
        }) {
            let units = batch
                .contexts
                .get(exposure.units.clone())
                .unwrap_or_default();
            if let Some(unit) = unit_key(units, &iteration.unit_kind) {
                write.exposures.push(ExposureRow {
                    iteration: iteration.id.clone(),
                    unit_key: unit.to_owned(),
                    variation: exposure.variation,
                    at: exposure.at,
                });
            }
        }
    }
    for outcome in outcomes {
        for iteration in iterations
            .iter()
            .filter(|i| outcome.at >= i.started_at && i.event_keys.contains(&outcome.key))
        {
            let units = batch
                .contexts
                .get(outcome.units.clone())
                .unwrap_or_default();
            if let Some(unit) = unit_key(units, &iteration.unit_kind) {
                write.outcomes.push(OutcomeRow {
                    iteration: iteration.id.clone(),
                    unit_key: unit.to_owned(),
                    event_key: outcome.key.clone(),
                    value: outcome.value,
                    at: outcome.at,
                });
            }
        }
    }
}
