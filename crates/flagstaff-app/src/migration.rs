//! Migration insights: what LaunchDarkly's SDK migrators reported about a migration flag
//! (`migration_op` events, `ld-protocol.md` §6.4) in one environment, per operation and stage.
//!
//! A migration moves an application from an old system to a new one through six stages (see
//! [`flagstaff_protocol::MIGRATION_STAGES`]). Before moving the stage on, the people running it
//! want three answers, which this view gives per stage: do the two systems answer the same
//! (consistency of compared reads), does either fail (errors per origin), and is the new one
//! fast enough (mean and worst latency per origin).

use std::collections::BTreeMap;

use flagstaff_store::events::{MigrationTotals, OriginTotals};
use serde::Serialize;
use serde_json::Value;

use crate::error::{AppError, ErrorCode, Result};
use crate::insights::InsightsRange;
use crate::model::{FlagKind, Targeting};
use crate::{Actor, App, env_scope};

/// What one origin (old or new system) did, with the rates a person reads.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OriginSummary {
    /// Operations that invoked it.
    pub invoked: u64,
    /// Operations in which it failed.
    pub errors: u64,
    /// `errors / invoked`, `None` when it was never invoked.
    pub error_rate: Option<f64>,
    /// Mean latency (ms) of the operations that measured it.
    pub mean_latency_ms: Option<f64>,
    /// The longest latency measured (ms).
    pub max_latency_ms: Option<f64>,
}

impl OriginSummary {
    fn of(totals: &OriginTotals) -> OriginSummary {
        let latency = totals.latency_count > 0;
        OriginSummary {
            invoked: totals.invoked,
            errors: totals.errors,
            error_rate: ratio(totals.errors, totals.invoked),
            mean_latency_ms: latency.then(|| totals.latency_sum_ms / totals.latency_count as f64),
            max_latency_ms: latency.then_some(totals.latency_max_ms),
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Operations of one kind at one stage, summed over a bucket or the whole range.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRow {
    /// The bucket's start (Unix ms); absent in totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<i64>,
    /// `read` or `write`.
    pub operation: String,
    /// The stage served (`off` … `complete`, or `unknown`).
    pub stage: String,
    /// How many operations were reported.
    pub operations: u64,
    /// The old system.
    pub old: OriginSummary,
    /// The new system.
    pub new: OriginSummary,
    /// Reads whose two results were compared.
    pub consistency_checks: u64,
    /// Of those, how many differed.
    pub inconsistent: u64,
    /// `(checks - inconsistent) / checks`, `None` without checks.
    pub consistency_rate: Option<f64>,
}

impl MigrationRow {
    fn of(bucket: Option<i64>, operation: &str, stage: &str, t: &MigrationTotals) -> MigrationRow {
        MigrationRow {
            bucket,
            operation: operation.to_owned(),
            stage: stage.to_owned(),
            operations: t.operations,
            old: OriginSummary::of(&t.old),
            new: OriginSummary::of(&t.new),
            consistency_checks: t.checks,
            inconsistent: t.inconsistent,
            consistency_rate: ratio(t.checks - t.inconsistent.min(t.checks), t.checks),
        }
    }
}

/// A migration flag's insights in one environment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationInsights {
    /// The flag key.
    pub flag: String,
    /// The environment key.
    pub environment: String,
    /// The period charted.
    pub range: InsightsRange,
    /// The bucket width of `series`: `minute`, `hour` or `day`.
    pub resolution: &'static str,
    /// The period's start (Unix ms, inclusive).
    pub from: i64,
    /// The period's end (Unix ms, exclusive).
    pub to: i64,
    /// SDK migrators compare reads in 1 of this many operations.
    pub check_ratio: i64,
    /// Whether targeting is on in the environment.
    pub on: bool,
    /// The stage everyone gets now, when it does not depend on the context (targeting off,
    /// or on with only a default stage); `None` when targets, rules or a rollout decide.
    pub stage: Option<String>,
    /// Per operation and stage over the whole period, in stage order, reads first.
    pub totals: Vec<MigrationRow>,
    /// Per bucket, operation and stage, oldest first; buckets without operations are absent.
    pub series: Vec<MigrationRow>,
}

/// The stage everyone is served, when one is.
fn uniform_stage(targeting: &Targeting, stages: &[Value]) -> Option<String> {
    let index = if !targeting.on {
        targeting.off_variation?
    } else if targeting.targets.is_empty()
        && targeting.context_targets.is_empty()
        && targeting.rules.is_empty()
        && targeting.prerequisites.is_empty()
    {
        targeting.fallthrough.variation?
    } else {
        return None;
    };
    let index = usize::try_from(index).ok()?;
    stages.get(index)?.as_str().map(str::to_owned)
}

/// Stage order for sorting: the six stages as they progress, then anything else.
fn stage_order(stage: &str) -> usize {
    flagstaff_protocol::MIGRATION_STAGES
        .iter()
        .position(|s| *s == stage)
        .unwrap_or(usize::MAX)
}

impl App {
    /// What SDK migrators reported about migration flag `flag` in `environment` over `range`
    /// (readers of the environment).
    pub async fn migration_insights(
        &self,
        actor: &Actor,
        project: &str,
        flag: &str,
        environment: &str,
        range: InsightsRange,
    ) -> Result<MigrationInsights> {
        actor.authorize_view(project, Some(environment))?;
        let definition = self.flag(actor, project, flag).await?.value;
        self.environment(actor, project, environment).await?;
        if definition.kind != FlagKind::Migration {
            return Err(AppError::invalid(
                ErrorCode::NotAMigrationFlag,
                "flag",
                format!(
                    "{flag:?} is not a migration flag; create one with \"kind\": \"migration\""
                ),
            ));
        }
        let targeting = self
            .targeting(actor, project, environment, flag)
            .await?
            .value;
        let events = self.event_store()?;
        let (resolution, from, to) = range.period(self.now_millis());
        let rows = events
            .migration_series(&env_scope(project, environment), flag, resolution, from, to)
            .await?;
        let mut totals: BTreeMap<(String, usize, String), MigrationTotals> = BTreeMap::new();
        let series = rows
            .iter()
            .map(|row| {
                totals
                    .entry((
                        row.operation.clone(),
                        stage_order(&row.stage),
                        row.stage.clone(),
                    ))
                    .or_default()
                    .add(&row.totals);
                MigrationRow::of(Some(row.bucket), &row.operation, &row.stage, &row.totals)
            })
            .collect();
        let stages: Vec<Value> = definition
            .variations
            .iter()
            .map(|v| v.value.clone())
            .collect();
        Ok(MigrationInsights {
            flag: flag.to_owned(),
            environment: environment.to_owned(),
            range,
            resolution: match resolution {
                flagstaff_store::events::Resolution::Minute => "minute",
                flagstaff_store::events::Resolution::Hour => "hour",
                flagstaff_store::events::Resolution::Day => "day",
            },
            from,
            to,
            check_ratio: definition.migration.unwrap_or_default().check_ratio,
            on: targeting.on,
            stage: uniform_stage(&targeting, &stages),
            totals: totals
                .iter()
                .map(|((operation, _, stage), t)| MigrationRow::of(None, operation, stage, t))
                .collect(),
            series,
        })
    }
}
