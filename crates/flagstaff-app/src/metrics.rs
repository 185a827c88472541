//! Metrics: what experiments measure (issue 21, point 1), defined once per project from the
//! custom events SDKs send with `track` (spec §6.4, `custom`). A metric names an event key and
//! says how to read it per context after exposure: converted or not, the sum or mean of the
//! events' `metricValue`, or how many events. Writers define them (`createMetric`,
//! `updateMetric`, `deleteMetric` on `proj/<p>:metric/<key>`); everyone who sees the project
//! reads them.

use flagstaff_store::{Expect, Write};
use serde::{Deserialize, Serialize};

use crate::access::resource;
use crate::changes::Action;
use crate::error::ErrorCode;
use crate::model::kinds;
use crate::{
    Actor, App, AppError, Result, Versioned, already_exists, body, decode, draft, validate,
};

/// How a metric reads its event per context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    /// Whether the context sent the event after its first exposure (a rate).
    Conversion,
    /// The events' `metricValue` per context after exposure, summed or averaged.
    Numeric,
    /// How many events per context after exposure.
    Count,
}

/// Which way is good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SuccessCriteria {
    /// More is better (purchases, revenue).
    #[default]
    Higher,
    /// Less is better (errors, latency).
    Lower,
}

/// How a numeric metric combines a context's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Aggregation {
    /// The sum of the context's values (revenue per user).
    #[default]
    Sum,
    /// Their mean (latency per request).
    Mean,
}

/// A metric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// Unique within the project.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What it measures, for people.
    #[serde(default)]
    pub description: String,
    /// Conversion, numeric or count.
    pub kind: MetricKind,
    /// The custom event key (`track("purchase")`) it reads.
    pub event_key: String,
    /// Higher or lower is better.
    #[serde(default)]
    pub success_criteria: SuccessCriteria,
    /// Numeric metrics: sum or mean per context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    /// The unit of a numeric metric's values ("EUR", "ms"), for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A browser goal: browser SDKs send `click` or `pageview` events named by the event key
    /// on the pages it matches (spec §5.9); conversion and count metrics only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
}

/// What browser SDKs watch for a goal (spec §5.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GoalKind {
    /// A click on an element matching `selector`.
    Click,
    /// A page load.
    Pageview,
}

/// A browser goal as served on `/sdk/goals/{clientSideId}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Goal {
    /// Click or page view.
    pub kind: GoalKind,
    /// The pages it applies to (any of them).
    pub urls: Vec<UrlMatch>,
    /// Click goals: the CSS selector of the elements clicked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// How a page's URL is matched (spec §5.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UrlMatchKind {
    /// The whole URL.
    Exact,
    /// The URL without query and fragment.
    Canonical,
    /// Any URL containing `substring`.
    Substring,
    /// Any URL matching `pattern`.
    Regex,
}

/// One URL matcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlMatch {
    /// How to match.
    pub kind: UrlMatchKind,
    /// `exact` and `canonical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `substring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substring: Option<String>,
    /// `regex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

const MAX_GOAL_URLS: usize = 20;
const MAX_URL_LEN: usize = 2048;

/// Checks a browser goal.
fn validate_goal(kind: MetricKind, goal: &Goal) -> Result<()> {
    if kind == MetricKind::Numeric {
        return Err(invalid(
            ErrorCode::InvalidField,
            "goal",
            "browser goals send events without values: a conversion or count metric",
        ));
    }
    match (goal.kind, &goal.selector) {
        (GoalKind::Click, Some(s)) if !s.trim().is_empty() && s.len() <= 512 => {}
        (GoalKind::Click, _) => {
            return Err(invalid(
                ErrorCode::InvalidField,
                "goal.selector",
                "a click goal names the CSS selector of what is clicked (up to 512 characters)",
            ));
        }
        (GoalKind::Pageview, Some(_)) => {
            return Err(invalid(
                ErrorCode::InvalidField,
                "goal.selector",
                "only click goals have a selector",
            ));
        }
        (GoalKind::Pageview, None) => {}
    }
    if goal.urls.is_empty() || goal.urls.len() > MAX_GOAL_URLS {
        return Err(invalid(
            ErrorCode::InvalidField,
            "goal.urls",
            format!("a goal applies to 1 to {MAX_GOAL_URLS} URL patterns"),
        ));
    }
    for (i, url) in goal.urls.iter().enumerate() {
        let field = format!("goal.urls[{i}]");
        let (name, value) = match url.kind {
            UrlMatchKind::Exact | UrlMatchKind::Canonical => ("url", &url.url),
            UrlMatchKind::Substring => ("substring", &url.substring),
            UrlMatchKind::Regex => ("pattern", &url.pattern),
        };
        let present = [&url.url, &url.substring, &url.pattern]
            .iter()
            .filter(|v| v.is_some())
            .count();
        let Some(value) = value
            .as_deref()
            .filter(|v| !v.is_empty() && v.len() <= MAX_URL_LEN)
        else {
            return Err(invalid(
                ErrorCode::InvalidField,
                &format!("{field}.{name}"),
                format!("this kind of URL match needs {name} (1 to {MAX_URL_LEN} characters)"),
            ));
        };
        if present != 1 {
            return Err(invalid(
                ErrorCode::InvalidField,
                &field,
                format!("a URL match has only its {name}"),
            ));
        }
        if matches!(url.kind, UrlMatchKind::Exact | UrlMatchKind::Canonical)
            && !(value.starts_with("https://") || value.starts_with("http://"))
        {
            return Err(invalid(
                ErrorCode::InvalidField,
                &format!("{field}.url"),
                "an absolute http(s) URL",
            ));
        }
        if url.kind == UrlMatchKind::Regex
            && let Some(error) = flagstaff_eval::values::regex_error(value)
        {
            return Err(invalid(
                ErrorCode::InvalidRegex,
                &format!("{field}.pattern"),
                error,
            ));
        }
    }
    Ok(())
}

/// Longest custom event key an SDK's events keep (`flagstaff-events` drops longer ones).
const MAX_EVENT_KEY_LEN: usize = 512;
const MAX_UNIT_CHARS: usize = 32;
const MAX_DESCRIPTION_CHARS: usize = 2_000;

fn invalid(code: ErrorCode, field: &str, message: impl Into<String>) -> AppError {
    AppError::invalid(code, field, message)
}

/// Checks a metric and fills in its defaults (a numeric metric sums unless told otherwise).
fn validated(mut metric: Metric) -> Result<Metric> {
    validate::key("key", &metric.key)?;
    validate::name("name", &metric.name)?;
    metric.name = metric.name.trim().to_owned();
    metric.description = metric.description.trim().to_owned();
    if metric.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(
            ErrorCode::InvalidField,
            "description",
            format!("a description has at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if metric.event_key.is_empty() || metric.event_key.len() > MAX_EVENT_KEY_LEN {
        return Err(invalid(
            ErrorCode::InvalidField,
            "eventKey",
            format!(
                "the event key is what the application passes to track(), 1 to {MAX_EVENT_KEY_LEN} bytes"
            ),
        ));
    }
    match (metric.kind, metric.aggregation) {
        (MetricKind::Numeric, None) => metric.aggregation = Some(Aggregation::Sum),
        (MetricKind::Numeric, Some(_)) => {}
        (_, Some(_)) => {
            return Err(invalid(
                ErrorCode::InvalidField,
                "aggregation",
                "only a numeric metric sums or averages values",
            ));
        }
        (_, None) => {}
    }
    if let Some(unit) = &metric.unit
        && (unit.trim().is_empty() || unit.chars().count() > MAX_UNIT_CHARS)
    {
        return Err(invalid(
            ErrorCode::InvalidField,
            "unit",
            format!("a unit is 1 to {MAX_UNIT_CHARS} characters"),
        ));
    }
    if let Some(goal) = &metric.goal {
        validate_goal(metric.kind, goal)?;
    }
    for (i, tag) in metric.tags.iter().enumerate() {
        if tag.trim().is_empty() || tag.len() > 64 {
            return Err(invalid(
                ErrorCode::InvalidField,
                &format!("tags[{i}]"),
                "tags are 1 to 64 characters",
            ));
        }
    }
    Ok(metric)
}

impl App {
    /// The browser goals of a project's metrics, as `/sdk/goals/{clientSideId}` serves them
    /// (spec §5.9): one per event key. Browser SDKs fetch them on every page load, so the list
    /// is kept per project until the next change this process commits, and at most five
    /// seconds (another node's change is seen by then).
    pub async fn browser_goals(&self, project: &str) -> Result<std::sync::Arc<serde_json::Value>> {
        let seq = self.last_commit();
        if let Some((at, read, goals)) = self
            .goals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(project)
            && *at == seq
            && read.elapsed() < std::time::Duration::from_secs(5)
        {
            return Ok(std::sync::Arc::clone(goals));
        }
        let mut seen = std::collections::HashSet::new();
        let mut goals = Vec::new();
        for doc in self.store.list(kinds::METRIC, project).await? {
            let metric: Metric = decode(&doc)?;
            if let Some(goal) = metric.goal
                && seen.insert(metric.event_key.clone())
            {
                let mut served = serde_json::to_value(&goal).unwrap_or_default();
                served["key"] = serde_json::Value::from(metric.event_key);
                goals.push(served);
            }
        }
        let goals = std::sync::Arc::new(serde_json::Value::Array(goals));
        let mut cache = self.goals.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the number of projects; a removed project's entry is dropped.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(
            project.to_owned(),
            (
                seq,
                std::time::Instant::now(),
                std::sync::Arc::clone(&goals),
            ),
        );
        Ok(goals)
    }

    /// Creates a metric (writers).
    pub async fn create_metric(
        &self,
        actor: &Actor,
        project: &str,
        metric: Metric,
        comment: &str,
    ) -> Result<Versioned<Metric>> {
        actor.authorize("createMetric", &resource::metric(project, &metric.key))?;
        self.project(&Actor::system(), project).await?;
        let metric = validated(metric)?;
        let after = body(&metric)?;
        let write = Write::Put {
            kind: kinds::METRIC.into(),
            scope: project.into(),
            key: metric.key.clone(),
            body: after.clone(),
            expect: Expect::Absent,
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(
                    Action::MetricCreate,
                    project,
                    &metric.key,
                    comment,
                    None,
                    Some(after),
                ),
            )
            .await
            .map_err(|e| already_exists(e, format!("metric {:?}", metric.key)))?;
        Ok(Versioned {
            version: versions[0],
            value: metric,
        })
    }

    /// One metric (whoever sees the project).
    pub async fn metric(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
    ) -> Result<Versioned<Metric>> {
        actor.authorize_view(project, None)?;
        self.load(kinds::METRIC, project, key, || format!("metric {key:?}"))
            .await
    }

    /// The project's metrics in key order (whoever sees the project).
    pub async fn list_metrics(
        &self,
        actor: &Actor,
        project: &str,
    ) -> Result<Vec<Versioned<Metric>>> {
        self.project(actor, project).await?;
        self.store
            .list(kinds::METRIC, project)
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

    /// Replaces a metric (writers); `expected` is the version the caller read, and the key
    /// cannot change.
    pub async fn update_metric(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        metric: Metric,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<Metric>> {
        actor.authorize("updateMetric", &resource::metric(project, key))?;
        if metric.key != key {
            return Err(invalid(
                ErrorCode::InvalidField,
                "key",
                "a metric's key cannot change",
            ));
        }
        let current: Versioned<Metric> = self.metric(&Actor::system(), project, key).await?;
        let metric = validated(metric)?;
        let after = body(&metric)?;
        let write = Write::Put {
            kind: kinds::METRIC.into(),
            scope: project.into(),
            key: key.into(),
            body: after.clone(),
            expect: Expect::Version(expected),
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(
                    Action::MetricUpdate,
                    project,
                    key,
                    comment,
                    Some(body(&current.value)?),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: metric,
        })
    }

    /// Deletes a metric (writers); `expected` is the version the caller read.
    pub async fn delete_metric(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        actor.authorize("deleteMetric", &resource::metric(project, key))?;
        let current: Versioned<Metric> = self.metric(&Actor::system(), project, key).await?;
        let write = Write::Delete {
            kind: kinds::METRIC.into(),
            scope: project.into(),
            key: key.into(),
            expect: Expect::Version(expected),
        };
        self.commit(
            actor,
            vec![write],
            draft(
                Action::MetricDelete,
                project,
                key,
                comment,
                Some(body(&current.value)?),
                None,
            ),
        )
        .await?;
        Ok(())
    }
}
