//! Experiment data (issue 21, point 3): first exposures and metric events per context while an
//! iteration runs, folded at write time into sufficient statistics per variation, so that
//! results are a read of a few rows however many contexts took part.
//!
//! Each context contributes one value `y` per metric event key and transform (converted or
//! not, its event count, its sum of `metricValue`, their mean) from its events after its first
//! exposure, and one covariate `x` of the same transform from its events before it (CUPED).
//! When a flush changes a context (a new exposure, new events), the writer subtracts what the
//! context contributed before and adds what it contributes now: the moments stay exact sums
//! over the exposed contexts without ever being recomputed.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Any, Row, Transaction};

use super::{EventStore, from_i64};
use crate::Result;

/// A context's first exposure in an iteration, as read from a feature event with
/// `inExperiment` (spec §3.8.2, §6.4).
#[derive(Clone, Debug, PartialEq)]
pub struct ExposureRow {
    /// The iteration's id.
    pub iteration: String,
    /// The key of the context of the randomization unit's kind.
    pub unit_key: String,
    /// The variation it was served.
    pub variation: u32,
    /// When (Unix ms).
    pub at: i64,
}

/// A metric event (custom `track`, browser `click` or `pageview`) of a context during an
/// iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct OutcomeRow {
    /// The iteration's id.
    pub iteration: String,
    /// The key of the context of the randomization unit's kind.
    pub unit_key: String,
    /// The event key.
    pub event_key: String,
    /// Its `metricValue`.
    pub value: Option<f64>,
    /// When (Unix ms).
    pub at: i64,
}

/// What a flush adds to running experiments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExperimentWrite {
    /// Exposures (a context's later ones are ignored).
    pub exposures: Vec<ExposureRow>,
    /// Metric events.
    pub outcomes: Vec<OutcomeRow>,
}

impl ExperimentWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.exposures.is_empty() && self.outcomes.is_empty()
    }
}

/// How a context's events become its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transform {
    /// 1 if it sent the event, else 0.
    Conversion,
    /// How many events it sent.
    Count,
    /// The sum of their `metricValue`.
    Sum,
    /// Their mean `metricValue` (only contexts with an event count).
    Mean,
}

impl Transform {
    /// Every transform.
    pub const ALL: [Transform; 4] = [
        Transform::Conversion,
        Transform::Count,
        Transform::Sum,
        Transform::Mean,
    ];

    fn code(self) -> &'static str {
        match self {
            Transform::Conversion => "conversion",
            Transform::Count => "count",
            Transform::Sum => "sum",
            Transform::Mean => "mean",
        }
    }

    fn parse(code: &str) -> Option<Transform> {
        Transform::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The value of `count` events summing to `sum`; `None` when the context does not count
    /// (a mean of no events).
    fn value(self, count: i64, sum: f64) -> Option<f64> {
        match self {
            Transform::Conversion => Some(if count > 0 { 1.0 } else { 0.0 }),
            Transform::Count => Some(count as f64),
            Transform::Sum => Some(sum),
            Transform::Mean => (count > 0).then(|| sum / count as f64),
        }
    }
}

/// Sums over the exposed contexts of one variation for one event key and transform.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TransformMoments {
    /// Contexts with at least one event after exposure.
    pub n: u64,
    /// Σy.
    pub sum_y: f64,
    /// Σy².
    pub sum_y2: f64,
    /// Σx (the covariate: the same transform of the events before exposure).
    pub sum_x: f64,
    /// Σx².
    pub sum_x2: f64,
    /// Σxy.
    pub sum_xy: f64,
}

/// Signed changes to [`TransformMoments`].
#[derive(Clone, Copy, Debug, Default)]
struct Delta {
    n: i64,
    sum_y: f64,
    sum_y2: f64,
    sum_x: f64,
    sum_x2: f64,
    sum_xy: f64,
}

impl Delta {
    fn add(&mut self, row: &Counts, transform: Transform, sign: f64) {
        let Some(y) = transform.value(row.post_count, row.post_sum) else {
            return;
        };
        // The mean has no covariate: a context's pre-exposure mean is undefined when it sent
        // nothing before, and CUPED needs a value for every context.
        let x = match transform {
            Transform::Mean => 0.0,
            _ => transform.value(row.pre_count, row.pre_sum).unwrap_or(0.0),
        };
        if row.post_count > 0 {
            self.n += sign as i64;
        }
        self.sum_y += sign * y;
        self.sum_y2 += sign * y * y;
        self.sum_x += sign * x;
        self.sum_x2 += sign * x * x;
        self.sum_xy += sign * x * y;
    }
}

/// One context's events of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counts {
    pre_count: i64,
    pre_sum: f64,
    post_count: i64,
    post_sum: f64,
}

/// An iteration's data as the results need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IterationTotals {
    /// Contexts exposed, per variation.
    pub exposures: BTreeMap<u32, u64>,
    /// Per variation, event key and transform.
    pub moments: BTreeMap<(u32, String, Transform), TransformMoments>,
}

type UnitKey = (String, String);
type OutcomeKey = (String, String, String);

/// Metric events of contexts whose exposure has not arrived yet: per (iteration, context), per
/// event key, their times and values. They are kept in memory, not written: most such contexts
/// are never exposed, and a row per context per flush cost the events writer more than
/// everything else it does (BENCHMARKS.md, "Experiments"). When a context's exposure arrives,
/// each pending event counts before or after it by its own time, as if they had arrived in
/// order: SDK payloads are parsed in parallel and retried, so an outcome can arrive a flush
/// earlier than the exposure that precedes it. Bounded by [`PENDING_CONTEXTS`] (beyond it, new
/// contexts' early events are not kept) and [`PENDING_EVENTS`] per context and key (beyond it,
/// events count as before exposure). Lost on restart, and per node.
#[derive(Debug, Default)]
pub(super) struct Pending {
    contexts: HashMap<UnitKey, HashMap<String, PendingEvents>>,
}

/// A context's early events of one key.
#[derive(Debug, Default)]
struct PendingEvents {
    /// `(time, value)` of the first [`PENDING_EVENTS`].
    events: Vec<(i64, f64)>,
    /// The rest, counted as before exposure.
    overflow_count: i64,
    overflow_sum: f64,
}

impl PendingEvents {
    fn push(&mut self, at: i64, value: f64) {
        if self.events.len() < PENDING_EVENTS {
            self.events.push((at, value));
        } else {
            self.overflow_count += 1;
            self.overflow_sum += value;
        }
    }
}

/// The most contexts with pending events (about 150 bytes each with one event).
const PENDING_CONTEXTS: usize = 200_000;
/// The most events of one context and key whose time is kept while its exposure is awaited.
pub const PENDING_EVENTS: usize = 8;

/// Rows per batched statement: 7 columns × 500 stays far below SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters.
const CHUNK: usize = 500;

/// `($1, $2, …), ($k+1, …)` for `rows` rows of `columns` parameters.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, $first+1, …` for `n` parameters.
fn list(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl EventStore {
    /// Folds a flush's exposures and metric events into the per-context rows and the moments,
    /// inside the writer's transaction. Rows are read and written in batches of [`CHUNK`]
    /// (one statement each), not one statement per event: a flush may carry tens of thousands.
    pub(super) async fn write_experiments(
        &self,
        tx: &mut Transaction<'static, Any>,
        write: &ExperimentWrite,
    ) -> Result<()> {
        if write.is_empty() {
            return Ok(());
        }
        let sql = |s: &str| self.backend.sql(s).into_owned();

        // 1. Exposures: a context's first wins (the earliest of this flush, unless one is
        // already stored). `RETURNING` says which were new.
        let mut first: HashMap<UnitKey, (u32, i64)> = HashMap::new();
        for row in &write.exposures {
            let key = (row.iteration.clone(), row.unit_key.clone());
            let entry = first.entry(key).or_insert((row.variation, row.at));
            if row.at < entry.1 {
                *entry = (row.variation, row.at);
            }
        }
        let first: Vec<(UnitKey, (u32, i64))> = first.into_iter().collect();
        // (iteration, unit) → (variation, exposed at, exposed by this flush); `None`: never.
        let mut exposure: HashMap<UnitKey, Option<(u32, i64, bool)>> = HashMap::new();
        let mut new_exposures: BTreeMap<(String, u32), i64> = BTreeMap::new();
        for chunk in first.chunks(CHUNK) {
            let statement = sql(&format!(
                "INSERT INTO experiment_exposures (iteration, unit_key, variation, exposed_at) \
                 VALUES {} ON CONFLICT (iteration, unit_key) DO NOTHING \
                 RETURNING iteration, unit_key",
                placeholders(chunk.len(), 4)
            ));
            let mut query = sqlx::query(&statement);
            for ((iteration, unit), (variation, at)) in chunk {
                query = query
                    .bind(iteration)
                    .bind(unit)
                    .bind(i64::from(*variation))
                    .bind(*at);
            }
            let inserted = query.fetch_all(&mut **tx).await?;
            let chosen: HashMap<&UnitKey, (u32, i64)> =
                chunk.iter().map(|(k, v)| (k, *v)).collect();
            for row in inserted {
                let key: UnitKey = (row.try_get("iteration")?, row.try_get("unit_key")?);
                if let Some((variation, at)) = chosen.get(&key).copied() {
                    *new_exposures.entry((key.0.clone(), variation)).or_default() += 1;
                    exposure.insert(key, Some((variation, at, true)));
                }
            }
        }

        // 2. The exposures of every other context with metric events in this flush.
        let mut unknown: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut asked: HashSet<(&str, &str)> = HashSet::new();
        for outcome in &write.outcomes {
            let key = (outcome.iteration.as_str(), outcome.unit_key.as_str());
            if asked.insert(key) && !exposure.contains_key(&(key.0.to_owned(), key.1.to_owned())) {
                unknown.entry(key.0).or_default().push(key.1);
            }
        }
        for (iteration, units) in &unknown {
            for chunk in units.chunks(CHUNK) {
                for unit in chunk {
                    exposure.insert(((*iteration).to_owned(), (*unit).to_owned()), None);
                }
                let statement = sql(&format!(
                    "SELECT unit_key, variation, exposed_at FROM experiment_exposures \
                     WHERE iteration = $1 AND unit_key IN ({})",
                    list(chunk.len(), 2)
                ));
                let mut query = sqlx::query(&statement).bind(*iteration);
                for unit in chunk {
                    query = query.bind(*unit);
                }
                for row in query.fetch_all(&mut **tx).await? {
                    let unit: String = row.try_get("unit_key")?;
                    let variation: i64 = row.try_get("variation")?;
                    let at: i64 = row.try_get("exposed_at")?;
                    if let Ok(variation) = u32::try_from(variation) {
                        exposure.insert(
                            ((*iteration).to_owned(), unit),
                            Some((variation, at, false)),
                        );
                    }
                }
            }
        }

        // 3. The stored rows of every context whose contribution may change: those with new
        // events, and every row of a newly exposed context (its covariates start to count).
        let mut wanted: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for ((iteration, unit), state) in &exposure {
            if state.is_some_and(|(_, _, new)| new) {
                wanted.entry(iteration).or_default().insert(unit);
            }
        }
        for outcome in &write.outcomes {
            let exposed = exposure
                .get(&(outcome.iteration.clone(), outcome.unit_key.clone()))
                .is_some_and(Option::is_some);
            if exposed {
                wanted
                    .entry(&outcome.iteration)
                    .or_default()
                    .insert(&outcome.unit_key);
            }
        }
        let mut rows: HashMap<OutcomeKey, (Counts, Counts)> = HashMap::new();
        for (iteration, units) in &wanted {
            let units: Vec<&str> = units.iter().copied().collect();
            for chunk in units.chunks(CHUNK) {
                let statement = sql(&format!(
                    "SELECT unit_key, event_key, pre_count, pre_sum, post_count, post_sum \
                     FROM experiment_outcomes WHERE iteration = $1 AND unit_key IN ({})",
                    list(chunk.len(), 2)
                ));
                let mut query = sqlx::query(&statement).bind(*iteration);
                for unit in chunk {
                    query = query.bind(*unit);
                }
                for row in query.fetch_all(&mut **tx).await? {
                    let counts = counts_of(&row)?;
                    rows.insert(
                        (
                            (*iteration).to_owned(),
                            row.try_get("unit_key")?,
                            row.try_get("event_key")?,
                        ),
                        (counts, counts),
                    );
                }
            }
        }

        // A newly exposed context's pending events count before or after its exposure by
        // their own times.
        let mut changed: HashSet<OutcomeKey> = HashSet::new();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (unit, state) in &exposure {
                let Some((_, exposed_at, true)) = *state else {
                    continue;
                };
                let Some(events) = pending.contexts.remove(unit) else {
                    continue;
                };
                for (event, early) in events {
                    let key = (unit.0.clone(), unit.1.clone(), event);
                    let (_, now) = rows.entry(key.clone()).or_default();
                    for (at, value) in early.events {
                        if at >= exposed_at {
                            now.post_count += 1;
                            now.post_sum += value;
                        } else {
                            now.pre_count += 1;
                            now.pre_sum += value;
                        }
                    }
                    now.pre_count += early.overflow_count;
                    now.pre_sum += early.overflow_sum;
                    changed.insert(key);
                }
            }
        }

        // 4. This flush's events, each before or after its context's exposure; those of
        // contexts not exposed wait in memory.
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for outcome in &write.outcomes {
                let unit = (outcome.iteration.clone(), outcome.unit_key.clone());
                let key = (
                    outcome.iteration.clone(),
                    outcome.unit_key.clone(),
                    outcome.event_key.clone(),
                );
                let Some((_, exposed_at, _)) = exposure.get(&unit).copied().flatten() else {
                    let full = pending.contexts.len() >= PENDING_CONTEXTS;
                    let value = outcome.value.unwrap_or(0.0);
                    match pending.contexts.get_mut(&unit) {
                        Some(events) => events.entry(key.2).or_default().push(outcome.at, value),
                        None if full => {}
                        None => {
                            let mut early = PendingEvents::default();
                            early.push(outcome.at, value);
                            pending
                                .contexts
                                .insert(unit, HashMap::from([(key.2, early)]));
                        }
                    }
                    continue;
                };
                let after_exposure = outcome.at >= exposed_at;
                let (_, now) = rows.entry(key.clone()).or_default();
                let value = outcome.value.unwrap_or(0.0);
                if after_exposure {
                    now.post_count += 1;
                    now.post_sum += value;
                } else {
                    now.pre_count += 1;
                    now.pre_sum += value;
                }
                changed.insert(key);
            }
        }

        // 5. What each context contributed before and contributes now, per variation.
        let mut deltas: HashMap<(String, u32, String, Transform), Delta> = HashMap::new();
        for ((iteration, unit, event), (before, now)) in &rows {
            let Some(Some((variation, _, new))) =
                exposure.get(&(iteration.clone(), unit.clone())).copied()
            else {
                continue;
            };
            for transform in Transform::ALL {
                let delta = deltas
                    .entry((iteration.clone(), variation, event.clone(), transform))
                    .or_default();
                if !new {
                    delta.add(before, transform, -1.0);
                }
                delta.add(now, transform, 1.0);
            }
        }

        let changed: Vec<&OutcomeKey> = changed.iter().collect();
        for chunk in changed.chunks(CHUNK) {
            let statement = sql(&format!(
                "INSERT INTO experiment_outcomes \
                 (iteration, unit_key, event_key, pre_count, pre_sum, post_count, post_sum) \
                 VALUES {} ON CONFLICT (iteration, unit_key, event_key) \
                 DO UPDATE SET pre_count = excluded.pre_count, pre_sum = excluded.pre_sum, \
                 post_count = excluded.post_count, post_sum = excluded.post_sum",
                placeholders(chunk.len(), 7)
            ));
            let mut query = sqlx::query(&statement);
            for key in chunk {
                let (_, now) = rows[*key];
                query = query
                    .bind(&key.0)
                    .bind(&key.1)
                    .bind(&key.2)
                    .bind(now.pre_count)
                    .bind(now.pre_sum)
                    .bind(now.post_count)
                    .bind(now.post_sum);
            }
            query.execute(&mut **tx).await?;
        }
        let add_exposures = sql(
            "INSERT INTO experiment_variations (iteration, variation, exposures) VALUES ($1, $2, $3) \
             ON CONFLICT (iteration, variation) DO UPDATE SET \
             exposures = experiment_variations.exposures + excluded.exposures",
        );
        for ((iteration, variation), count) in &new_exposures {
            sqlx::query(&add_exposures)
                .bind(iteration)
                .bind(i64::from(*variation))
                .bind(*count)
                .execute(&mut **tx)
                .await?;
        }
        let add_moments = sql("INSERT INTO experiment_moments \
             (iteration, variation, event_key, transform, n, sum_y, sum_y2, sum_x, sum_x2, sum_xy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (iteration, variation, event_key, transform) DO UPDATE SET \
             n = experiment_moments.n + excluded.n, \
             sum_y = experiment_moments.sum_y + excluded.sum_y, \
             sum_y2 = experiment_moments.sum_y2 + excluded.sum_y2, \
             sum_x = experiment_moments.sum_x + excluded.sum_x, \
             sum_x2 = experiment_moments.sum_x2 + excluded.sum_x2, \
             sum_xy = experiment_moments.sum_xy + excluded.sum_xy");
        for ((iteration, variation, event, transform), d) in &deltas {
            sqlx::query(&add_moments)
                .bind(iteration)
                .bind(i64::from(*variation))
                .bind(event)
                .bind(transform.code())
                .bind(d.n)
                .bind(d.sum_y)
                .bind(d.sum_y2)
                .bind(d.sum_x)
                .bind(d.sum_x2)
                .bind(d.sum_xy)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// An iteration's exposures and moments.
    pub async fn iteration_totals(&self, iteration: &str) -> Result<IterationTotals> {
        let mut totals = IterationTotals::default();
        let sql = self
            .backend
            .sql("SELECT variation, exposures FROM experiment_variations WHERE iteration = $1");
        for row in sqlx::query(&sql)
            .bind(iteration)
            .fetch_all(&self.pool)
            .await?
        {
            let variation: i64 = row.try_get("variation")?;
            let exposures: i64 = row.try_get("exposures")?;
            if let Ok(variation) = u32::try_from(variation) {
                totals.exposures.insert(variation, from_i64(exposures));
            }
        }
        let sql = self.backend.sql(
            "SELECT variation, event_key, transform, n, sum_y, sum_y2, sum_x, sum_x2, sum_xy \
             FROM experiment_moments WHERE iteration = $1",
        );
        for row in sqlx::query(&sql)
            .bind(iteration)
            .fetch_all(&self.pool)
            .await?
        {
            let variation: i64 = row.try_get("variation")?;
            let transform: String = row.try_get("transform")?;
            let (Ok(variation), Some(transform)) =
                (u32::try_from(variation), Transform::parse(&transform))
            else {
                continue;
            };
            let n: i64 = row.try_get("n")?;
            totals.moments.insert(
                (variation, row.try_get("event_key")?, transform),
                TransformMoments {
                    n: from_i64(n),
                    sum_y: row.try_get("sum_y")?,
                    sum_y2: row.try_get("sum_y2")?,
                    sum_x: row.try_get("sum_x")?,
                    sum_x2: row.try_get("sum_x2")?,
                    sum_xy: row.try_get("sum_xy")?,
                },
            );
        }
        Ok(totals)
    }

    /// Removes an iteration's per-context rows once it is closed (its totals stay); returns
    /// how many rows went.
    pub async fn forget_iteration_contexts(&self, iteration: &str) -> Result<u64> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contexts
            .retain(|(i, _), _| i != iteration);
        let mut removed = 0;
        for table in ["experiment_exposures", "experiment_outcomes"] {
            let sql = self
                .backend
                .sql(&format!("DELETE FROM {table} WHERE iteration = $1"))
                .into_owned();
            removed += sqlx::query(&sql)
                .bind(iteration)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }

    /// Removes everything of an iteration (an experiment deleted).
    pub async fn delete_iteration(&self, iteration: &str) -> Result<()> {
        self.forget_iteration_contexts(iteration).await?;
        for table in ["experiment_variations", "experiment_moments"] {
            let sql = self
                .backend
                .sql(&format!("DELETE FROM {table} WHERE iteration = $1"))
                .into_owned();
            sqlx::query(&sql)
                .bind(iteration)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

fn counts_of(row: &sqlx::any::AnyRow) -> Result<Counts> {
    Ok(Counts {
        pre_count: row.try_get("pre_count")?,
        pre_sum: row.try_get("pre_sum")?,
        post_count: row.try_get("post_count")?,
        post_sum: row.try_get("post_sum")?,
    })
}
