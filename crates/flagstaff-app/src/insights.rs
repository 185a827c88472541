//! Flag insights: what the events SDKs sent say about each flag (`ld-protocol.md` §6).
//!
//! Reads only: the events database is written by the pipeline (`flagstaff-events`). Access is
//! checked as for the flags themselves (readers of an environment see its insights).
//!
//! # Flag status
//!
//! Per environment, over a window of `days` (7 unless asked otherwise), as LaunchDarkly and
//! Unleash present it:
//! - **new**: created within the window and not evaluated in it;
//! - **active**: evaluated in the window, and either more than one variation was served or the
//!   flag has not been evaluated for the whole window yet;
//! - **launched**: evaluated for at least the whole window, and every evaluation in it served
//!   the same variation: everyone gets one value, so the flag can be replaced by it;
//! - **inactive**: not evaluated in the window (never, or last before it).
//!
//! A temporary, not archived flag that is launched or inactive in every environment is
//! **safe to remove**; the stale-flags view lists those with the evidence.

use std::collections::HashMap;

pub use flagstaff_events::Health;
use flagstaff_store::AuditQuery;
pub use flagstaff_store::events::ContextSearch;
use flagstaff_store::events::{Resolution, VariationTotal};
use serde::Serialize;
use serde_json::Value;

use crate::error::{AppError, ErrorCode, Result};
use crate::model::FlagDefinition;
use crate::model::kinds;
use crate::{Actor, App, env_scope};

const DAY: i64 = 86_400_000;

/// The period a chart covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InsightsRange {
    /// The last hour, per minute.
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours, per hour.
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days, per hour.
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days, per day.
    #[serde(rename = "30d")]
    Month,
    /// The last 90 days, per day.
    #[serde(rename = "90d")]
    Quarter,
}

impl InsightsRange {
    /// Every range, shortest first.
    pub const ALL: [InsightsRange; 5] = [
        InsightsRange::Hour,
        InsightsRange::Day,
        InsightsRange::Week,
        InsightsRange::Month,
        InsightsRange::Quarter,
    ];

    /// Reads `1h`, `24h`, `7d`, `30d` or `90d`.
    pub fn parse(text: &str) -> Result<InsightsRange> {
        InsightsRange::ALL
            .into_iter()
            .find(|range| range.as_str() == text)
            .ok_or_else(|| {
                AppError::invalid(
                    ErrorCode::InvalidRange,
                    "range",
                    format!("{text:?} is not one of 1h, 24h, 7d, 30d, 90d"),
                )
            })
    }

    /// Its name in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            InsightsRange::Hour => "1h",
            InsightsRange::Day => "24h",
            InsightsRange::Week => "7d",
            InsightsRange::Month => "30d",
            InsightsRange::Quarter => "90d",
        }
    }

    fn resolution(self) -> Resolution {
        match self {
            InsightsRange::Hour => Resolution::Minute,
            InsightsRange::Day | InsightsRange::Week => Resolution::Hour,
            InsightsRange::Month | InsightsRange::Quarter => Resolution::Day,
        }
    }

    /// The buckets charted as of `now` (Unix ms): their width and `[from, to)`, the last
    /// bucket being the one `now` is in.
    pub(crate) fn period(self, now: i64) -> (Resolution, i64, i64) {
        let resolution = self.resolution();
        let width = resolution.millis();
        let to = resolution.bucket(now) + width;
        (resolution, to - self.buckets() * width, to)
    }

    fn buckets(self) -> i64 {
        match self {
            InsightsRange::Hour => 60,
            InsightsRange::Day => 24,
            InsightsRange::Week => 7 * 24,
            InsightsRange::Month => 30,
            InsightsRange::Quarter => 90,
        }
    }
}

/// A flag's status in one environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FlagStatus {
    /// Created recently, not evaluated yet.
    New,
    /// Evaluated, serving more than one variation (or not for long enough to tell).
    Active,
    /// Serving one variation to everyone for the whole window.
    Launched,
    /// Not evaluated in the window.
    Inactive,
}

impl FlagStatus {
    /// Its name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagStatus::New => "new",
            FlagStatus::Active => "active",
            FlagStatus::Launched => "launched",
            FlagStatus::Inactive => "inactive",
        }
    }
}

/// A variation as charts and counts show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariationLabel {
    /// Its index, `None` for "the application's default" (flag off without an off variation,
    /// flag unknown to the SDK, or an evaluation error).
    pub index: Option<u32>,
    /// Its name, or its value as JSON.
    pub label: String,
    /// Evaluations that served it in the period.
    pub total: u64,
}

/// Evaluations in one bucket, one count per variation of [`FlagInsights::variations`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesBucket {
    /// The bucket's start (Unix ms).
    pub start: i64,
    /// Counts, aligned with the variations.
    pub counts: Vec<u64>,
}

/// A flag in one environment over the status window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The environment key.
    pub environment: String,
    /// The status.
    pub status: FlagStatus,
    /// The first evaluation ever seen (Unix ms).
    pub first_evaluated: Option<i64>,
    /// The last evaluation seen (Unix ms).
    pub last_evaluated: Option<i64>,
    /// Evaluations in the window, per variation (`None`: the application default).
    pub served: Vec<(Option<u32>, u64)>,
    /// Why, in words.
    pub evidence: String,
}

/// An SDK that evaluated a flag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SdkUse {
    /// The SDK's name, e.g. `PythonClient`.
    pub sdk: String,
    /// Its version.
    pub version: String,
    /// When it last evaluated the flag (Unix ms).
    pub last_seen: i64,
    /// How many evaluations it reported.
    pub evaluations: u64,
}

/// What the insights page of a flag shows for one environment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagInsights {
    /// The flag key.
    pub flag: String,
    /// The environment charted.
    pub environment: String,
    /// The period.
    pub range: InsightsRange,
    /// The bucket width in milliseconds.
    pub bucket_millis: i64,
    /// The variations that appear in the chart, in index order (the default last).
    pub variations: Vec<VariationLabel>,
    /// Every bucket of the period, oldest first, empty ones included.
    pub series: Vec<SeriesBucket>,
    /// Evaluations in the period.
    pub total: u64,
    /// The flag's status in every environment the caller may see.
    pub environments: Vec<EnvironmentStatus>,
    /// The SDKs that evaluated the flag in the charted environment.
    pub sdks: Vec<SdkUse>,
    /// The status window in days.
    pub status_days: u32,
}

/// A flag's statuses across a project's environments.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagStatusRow {
    /// The flag key.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Whether it is meant to be removed after a release.
    pub temporary: bool,
    /// Whether it is archived.
    pub archived: bool,
    /// Per environment the caller may see.
    pub environments: Vec<EnvironmentStatus>,
    /// Temporary, not archived, launched or inactive everywhere.
    pub safe_to_remove: bool,
}

/// A context seen in events, as shown to people.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextSeenView {
    /// Its kind.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Its attributes (private ones were never stored).
    pub attributes: Value,
    /// Attributes that existed but were private.
    pub redacted: Vec<String>,
    /// When first seen (Unix ms).
    pub first_seen: i64,
    /// When last seen (Unix ms).
    pub last_seen: i64,
}

impl ContextSeenView {
    /// The context as JSON an SDK or "test a context" takes: kind, key, attributes.
    pub fn context_json(&self) -> Value {
        let mut object = match &self.attributes {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        object.insert("kind".into(), Value::from(self.kind.clone()));
        object.insert("key".into(), Value::from(self.key.clone()));
        Value::Object(object)
    }
}

/// Custom events of one key.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomEventView {
    /// The key the application tracked.
    pub key: String,
    /// How many in the period.
    pub count: u64,
    /// How many carried a metric value.
    pub metric_count: u64,
    /// Their sum.
    pub metric_sum: f64,
}

/// An SDK that reported to an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SdkReportView {
    /// The SDK's name.
    pub sdk: String,
    /// Its version.
    pub version: String,
    /// Its wrapper, if any.
    pub wrapper: String,
    /// Its platform (from diagnostics), if known.
    pub platform: Option<Value>,
    /// When first seen (Unix ms).
    pub first_seen: i64,
    /// When last seen (Unix ms).
    pub last_seen: i64,
}

fn label(definition: &FlagDefinition, index: Option<u32>) -> String {
    let Some(index) = index else {
        return "default (not served by the flag)".into();
    };
    match definition.variations.get(index as usize) {
        Some(variation) => match &variation.name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => variation.value.to_string(),
        },
        None => format!("variation {index} (no longer defined)"),
    }
}

fn days_text(millis: i64) -> String {
    let days = millis / DAY;
    match days {
        0 => "today".into(),
        1 => "1 day ago".into(),
        n => format!("{n} days ago"),
    }
}

/// The status of a flag in one environment (see the module documentation).
fn status_of(
    definition: &FlagDefinition,
    environment: &str,
    created_at: Option<i64>,
    usage: Option<&flagstaff_store::events::FlagUsage>,
    served: Vec<(Option<u32>, u64)>,
    now: i64,
    days: u32,
) -> EnvironmentStatus {
    let window = i64::from(days) * DAY;
    let since = now - window;
    let evaluated_in_window = usage.is_some_and(|u| u.last_evaluated >= since);
    let (status, evidence) = if !evaluated_in_window {
        match (usage, created_at) {
            (None, Some(created)) if created >= since => (
                FlagStatus::New,
                format!("created {} and not evaluated yet", days_text(now - created)),
            ),
            (Some(u), _) => (
                FlagStatus::Inactive,
                format!(
                    "last evaluated {}, nothing in the last {days} days",
                    days_text(now - u.last_evaluated)
                ),
            ),
            (None, _) => (
                FlagStatus::Inactive,
                format!("never evaluated, and older than {days} days"),
            ),
        }
    } else {
        let serving: Vec<&(Option<u32>, u64)> = served.iter().filter(|(_, n)| *n > 0).collect();
        let total: u64 = serving.iter().map(|(_, n)| n).sum();
        let long_enough = usage.is_some_and(|u| u.first_evaluated <= since);
        match serving.as_slice() {
            [(variation, _)] if long_enough => (
                FlagStatus::Launched,
                format!(
                    "every one of {total} evaluations in the last {days} days served {}",
                    label(definition, *variation)
                ),
            ),
            [_] => (
                FlagStatus::Active,
                format!(
                    "one variation served, but first evaluated only {}",
                    days_text(now - usage.map_or(now, |u| u.first_evaluated))
                ),
            ),
            _ => (
                FlagStatus::Active,
                format!(
                    "{total} evaluations in the last {days} days across {} variations",
                    serving.len()
                ),
            ),
        }
    };
    EnvironmentStatus {
        environment: environment.to_owned(),
        status,
        first_evaluated: usage.map(|u| u.first_evaluated),
        last_evaluated: usage.map(|u| u.last_evaluated),
        served,
        evidence,
    }
}

fn check_days(days: u32) -> Result<u32> {
    if (1..=365).contains(&days) {
        Ok(days)
    } else {
        Err(AppError::invalid(
            ErrorCode::InvalidDays,
            "days",
            "the status window is 1 to 365 days",
        ))
    }
}

impl App {
    pub(crate) fn event_store(&self) -> Result<&flagstaff_store::EventStore> {
        self.pipeline
            .as_ref()
            .map(|p| p.store().as_ref())
            .ok_or_else(|| AppError::NotFound("the events database (insights are off)".into()))
    }

    /// The events pipeline's health (any reader).
    pub fn events_health(&self, actor: &Actor) -> Result<Option<Health>> {
        // Anyone who may read some project, limited ones included: the health names no
        // project.
        if actor.role == crate::Role::NoAccess && actor.custom_roles.is_empty() {
            return Err(AppError::Forbidden(
                "this credential may read nothing".into(),
            ));
        }
        Ok(self.pipeline.as_ref().map(|p| p.health()))
    }

    /// When each flag was created, from the audit log (only for the flags asked about).
    async fn created_at(&self, project: &str, flag: &str) -> Result<Option<i64>> {
        let entries = self
            .store
            .audit(&AuditQuery {
                kind: Some(kinds::FLAG.into()),
                scope: Some(project.into()),
                key: Some(flag.into()),
                limit: 1,
                ..AuditQuery::default()
            })
            .await?;
        Ok(entries.first().map(|e| e.at))
    }

    /// Every flag of a project with its status per environment over the last `days`.
    pub async fn flag_statuses(
        &self,
        actor: &Actor,
        project: &str,
        days: u32,
    ) -> Result<Vec<FlagStatusRow>> {
        self.statuses(actor, project, days, None).await
    }

    /// Statuses of every flag of a project, or only of the flag `only` (a flag's insights page
    /// must not read the creation time of every unevaluated flag of the project).
    async fn statuses(
        &self,
        actor: &Actor,
        project: &str,
        days: u32,
        only: Option<&str>,
    ) -> Result<Vec<FlagStatusRow>> {
        let days = check_days(days)?;
        let overview = self.flag_overview(actor, project).await?;
        let events = self.event_store()?;
        let now = self.now_millis();
        let usage = events.usage(project).await?;
        let totals = events
            .variation_totals(project, now - i64::from(days) * DAY)
            .await?;
        let usage: HashMap<(&str, &str), &flagstaff_store::events::FlagUsage> = usage
            .iter()
            .map(|u| ((u.environment.as_str(), u.flag.as_str()), u))
            .collect();
        let served = served_by_flag(&totals);
        let mut rows = Vec::with_capacity(overview.flags.len());
        for flag in &overview.flags {
            let definition = &flag.definition;
            if only.is_some_and(|key| key != definition.key) {
                continue;
            }
            let mut environments = Vec::with_capacity(overview.environments.len());
            let mut created_at = None;
            for environment in &overview.environments {
                let scope = env_scope(project, &environment.key);
                let flag_usage = usage
                    .get(&(scope.as_str(), definition.key.as_str()))
                    .copied();
                let needs_creation =
                    flag_usage.is_none_or(|u| u.last_evaluated < now - i64::from(days) * DAY);
                if needs_creation && created_at.is_none() {
                    created_at = Some(self.created_at(project, &definition.key).await?);
                }
                environments.push(status_of(
                    definition,
                    &environment.key,
                    created_at.flatten(),
                    flag_usage,
                    served
                        .get(&(scope.as_str(), definition.key.as_str()))
                        .cloned()
                        .unwrap_or_default(),
                    now,
                    days,
                ));
            }
            let safe_to_remove = definition.temporary
                && !definition.archived
                && !environments.is_empty()
                && environments
                    .iter()
                    .all(|e| matches!(e.status, FlagStatus::Launched | FlagStatus::Inactive));
            rows.push(FlagStatusRow {
                key: definition.key.clone(),
                name: definition.name.clone(),
                temporary: definition.temporary,
                archived: definition.archived,
                environments,
                safe_to_remove,
            });
        }
        Ok(rows)
    }

    /// A flag's evaluations over `range` in one environment, with its status everywhere.
    pub async fn flag_insights(
        &self,
        actor: &Actor,
        project: &str,
        flag: &str,
        environment: &str,
        range: InsightsRange,
        days: u32,
    ) -> Result<FlagInsights> {
        actor.authorize_view(project, Some(environment))?;
        let definition = self.flag(actor, project, flag).await?.value;
        self.environment(actor, project, environment).await?;
        let events = self.event_store()?;
        let (resolution, from, to) = range.period(self.now_millis());
        let width = resolution.millis();
        let scope = env_scope(project, environment);
        let points = events
            .evaluation_series(&scope, flag, resolution, from, to)
            .await?;
        let mut indexes: Vec<Option<u32>> = points.iter().map(|p| p.variation).collect();
        indexes.sort_by_key(|index| index.map_or(u64::MAX, u64::from));
        indexes.dedup();
        let position: HashMap<Option<u32>, usize> =
            indexes.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let mut series: Vec<SeriesBucket> = (0..range.buckets())
            .map(|i| SeriesBucket {
                start: from + i * width,
                counts: vec![0; indexes.len()],
            })
            .collect();
        let mut variations: Vec<VariationLabel> = indexes
            .iter()
            .map(|index| VariationLabel {
                index: *index,
                label: label(&definition, *index),
                total: 0,
            })
            .collect();
        for point in &points {
            let slot = usize::try_from((point.bucket - from) / width).unwrap_or(usize::MAX);
            if let (Some(bucket), Some(&i)) = (series.get_mut(slot), position.get(&point.variation))
            {
                bucket.counts[i] += point.count;
                variations[i].total += point.count;
            }
        }
        let total = variations.iter().map(|v| v.total).sum();
        let statuses = self.statuses(actor, project, days, Some(flag)).await?;
        let environments = statuses
            .into_iter()
            .find(|row| row.key == flag)
            .map(|row| row.environments)
            .unwrap_or_default();
        let sdks = events
            .flag_sdks(&scope, flag)
            .await?
            .into_iter()
            .map(|s| SdkUse {
                sdk: s.sdk,
                version: s.sdk_version,
                last_seen: s.last_seen,
                evaluations: s.evaluations,
            })
            .collect();
        Ok(FlagInsights {
            flag: flag.to_owned(),
            environment: environment.to_owned(),
            range,
            bucket_millis: width,
            variations,
            series,
            total,
            environments,
            sdks,
            status_days: days,
        })
    }

    /// The kinds of the `recent` contexts SDKs reported last in an environment, most recent
    /// first (readers of the environment); empty without an events database.
    pub async fn context_kinds_seen(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        recent: u32,
    ) -> Result<Vec<String>> {
        actor.authorize_view(project, Some(environment))?;
        let Ok(events) = self.event_store() else {
            return Ok(Vec::new());
        };
        Ok(events
            .recent_context_kinds(&env_scope(project, environment), recent)
            .await?)
    }

    /// Contexts seen in an environment, most recent first, optionally filtered.
    pub async fn contexts_seen(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        search: &ContextSearch,
    ) -> Result<Vec<ContextSeenView>> {
        actor.authorize_view(project, Some(environment))?;
        self.environment(actor, project, environment).await?;
        let events = self.event_store()?;
        let scope = env_scope(project, environment);
        Ok(events
            .contexts(&scope, search)
            .await?
            .into_iter()
            .map(|c| ContextSeenView {
                kind: c.kind,
                key: c.key,
                attributes: c.attributes,
                redacted: c.redacted,
                first_seen: c.first_seen,
                last_seen: c.last_seen,
            })
            .collect())
    }

    /// Custom events per key in an environment over the last `days`.
    pub async fn custom_events(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        days: u32,
    ) -> Result<Vec<CustomEventView>> {
        let days = check_days(days)?;
        actor.authorize_view(project, Some(environment))?;
        self.environment(actor, project, environment).await?;
        let events = self.event_store()?;
        let scope = env_scope(project, environment);
        Ok(events
            .custom_event_totals(&scope, self.now_millis() - i64::from(days) * DAY)
            .await?
            .into_iter()
            .map(|c| CustomEventView {
                key: c.event_key,
                count: c.count,
                metric_count: c.metric_count,
                metric_sum: c.metric_sum,
            })
            .collect())
    }

    /// The SDKs that reported to an environment.
    pub async fn sdk_reports(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
    ) -> Result<Vec<SdkReportView>> {
        actor.authorize_view(project, Some(environment))?;
        self.environment(actor, project, environment).await?;
        let events = self.event_store()?;
        let scope = env_scope(project, environment);
        Ok(events
            .sdks(&scope)
            .await?
            .into_iter()
            .map(|s| SdkReportView {
                sdk: s.sdk,
                version: s.sdk_version,
                wrapper: s.wrapper,
                platform: serde_json::from_str(&s.platform).ok(),
                first_seen: s.first_seen,
                last_seen: s.last_seen,
            })
            .collect())
    }

    /// The newest sampled events of an environment (feature, debug, custom).
    pub async fn event_samples(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        kind: Option<&str>,
        key: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Value>> {
        actor.authorize_view(project, Some(environment))?;
        self.environment(actor, project, environment).await?;
        let events = self.event_store()?;
        let scope = env_scope(project, environment);
        Ok(events
            .samples(&scope, kind, key, limit)
            .await?
            .into_iter()
            .map(|s| s.body)
            .collect())
    }
}

/// Evaluations per variation (`None`: the application default).
type Served = Vec<(Option<u32>, u64)>;

/// Evaluations per variation, by (environment scope, flag).
fn served_by_flag(totals: &[VariationTotal]) -> HashMap<(&str, &str), Served> {
    let mut served: HashMap<(&str, &str), Served> = HashMap::new();
    for total in totals {
        served
            .entry((total.environment.as_str(), total.flag.as_str()))
            .or_default()
            .push((total.variation, total.count));
    }
    served
}

#[cfg(test)]
#[path = "insights_tests.rs"]
mod tests;
