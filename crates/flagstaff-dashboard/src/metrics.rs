//! Metrics: what experiments measure, per project (issue 21). A list, and a form for writers
//! (`createMetric`) that names the custom event the application sends with `track()`.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::AppError;
use flagstaff_app::metrics::{
    Aggregation, Goal, GoalKind, Metric, MetricKind, SuccessCriteria, UrlMatch, UrlMatchKind,
};
use serde::Deserialize;

use crate::flags::EnvQuery;
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

/// A metric as the list shows it.
struct ListedMetric {
    key: String,
    name: String,
    description: String,
    /// "Conversion: did the context send purchase", in words.
    measures: String,
    better: &'static str,
}

fn measures(metric: &Metric) -> String {
    let event = &metric.event_key;
    let unit = metric
        .unit
        .as_deref()
        .map(|u| format!(" ({u})"))
        .unwrap_or_default();
    match (metric.kind, metric.aggregation) {
        (MetricKind::Conversion, _) => format!("Conversion: did the context send “{event}”"),
        (MetricKind::Count, _) => format!("Count: how many “{event}” per context"),
        (MetricKind::Numeric, Some(Aggregation::Mean)) => {
            format!("Numeric: mean value of “{event}” per context{unit}")
        }
        (MetricKind::Numeric, _) => format!("Numeric: total value of “{event}” per context{unit}"),
    }
    .to_owned()
        + &match &metric.goal {
            Some(goal) => format!(
                "; browser {} goal on pages matching {}",
                match goal.kind {
                    GoalKind::Click => "click",
                    GoalKind::Pageview => "page-view",
                },
                goal.urls
                    .iter()
                    .filter_map(|u| u
                        .url
                        .as_deref()
                        .or(u.substring.as_deref())
                        .or(u.pattern.as_deref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => String::new(),
        }
}

#[derive(Template)]
#[template(path = "metrics.html")]
struct MetricsPage {
    nav: Nav,
    metrics: Vec<ListedMetric>,
    /// Whether the viewer may define metrics.
    may_create: bool,
    error: Option<String>,
    field: String,
    form: NewMetric,
}

/// The create form, as typed (kept when refused).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct NewMetric {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    env: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    event_key: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    aggregation: String,
    #[serde(default)]
    better: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    description: String,
    /// "", "click" or "pageview".
    #[serde(default)]
    goal_kind: String,
    /// The text page URLs contain.
    #[serde(default)]
    goal_url: String,
    #[serde(default)]
    goal_selector: String,
}

impl NewMetric {
    fn metric(&self) -> Metric {
        let kind = match self.kind.as_str() {
            "numeric" => MetricKind::Numeric,
            "count" => MetricKind::Count,
            _ => MetricKind::Conversion,
        };
        Metric {
            key: self.key.trim().to_owned(),
            name: self.name.clone(),
            description: self.description.clone(),
            kind,
            event_key: self.event_key.trim().to_owned(),
            success_criteria: if self.better == "lower" {
                SuccessCriteria::Lower
            } else {
                SuccessCriteria::Higher
            },
            aggregation: (kind == MetricKind::Numeric).then_some(if self.aggregation == "mean" {
                Aggregation::Mean
            } else {
                Aggregation::Sum
            }),
            unit: Some(self.unit.trim().to_owned()).filter(|u| !u.is_empty()),
            tags: Vec::new(),
            goal: match self.goal_kind.as_str() {
                "click" | "pageview" => Some(Goal {
                    kind: if self.goal_kind == "click" {
                        GoalKind::Click
                    } else {
                        GoalKind::Pageview
                    },
                    urls: vec![UrlMatch {
                        kind: UrlMatchKind::Substring,
                        url: None,
                        substring: Some(self.goal_url.trim().to_owned()),
                        pattern: None,
                    }],
                    selector: (self.goal_kind == "click")
                        .then(|| self.goal_selector.trim().to_owned()),
                }),
                _ => None,
            },
        }
    }
}

async fn page(
    dashboard: &crate::Dashboard,
    viewer: &Viewer,
    project: &str,
    env: Option<&str>,
    refused: Option<(AppError, NewMetric)>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        dashboard,
        viewer,
        project,
        env,
        "metrics",
        format!("/projects/{project}/metrics"),
    )
    .await?;
    let metrics = dashboard
        .app
        .list_metrics(&viewer.actor, project)
        .await?
        .into_iter()
        .map(|m| ListedMetric {
            measures: measures(&m.value),
            better: match m.value.success_criteria {
                SuccessCriteria::Higher => "higher is better",
                SuccessCriteria::Lower => "lower is better",
            },
            key: m.value.key,
            name: m.value.name,
            description: m.value.description,
        })
        .collect();
    let may_create = viewer
        .actor
        .decide(
            "createMetric",
            &flagstaff_app::policy::Resource::new()
                .with("proj", project, &[])
                .with("metric", "*", &[]),
        )
        .allowed;
    let crate::errors::Refused {
        status,
        error,
        field,
        form,
    } = crate::errors::Refused::of(refused, NewMetric::default);
    let mut response = render(&MetricsPage {
        nav,
        metrics,
        may_create,
        error,
        field,
        form,
    });
    *response.status_mut() = status;
    Ok(response)
}

/// `GET /projects/{project}/metrics`.
pub(crate) async fn list(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Response, PageError> {
    page(&dashboard, &viewer, &project, q.env.as_deref(), None).await
}

/// `POST /projects/{project}/metrics`: creates one, or shows the form again with the error.
pub(crate) async fn create(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(project): Path<String>,
    Form(form): Form<NewMetric>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let env = Some(form.env.as_str()).filter(|e| !e.is_empty());
    match dashboard
        .app
        .create_metric(
            &viewer.actor,
            &project,
            form.metric(),
            "created in the dashboard",
        )
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/projects/{}/metrics?env={}",
            crate::url_encode(&project),
            crate::url_encode(&form.env)
        ))
        .into_response()),
        Err(e @ (AppError::Invalid { .. } | AppError::AlreadyExists(_))) => {
            page(&dashboard, &viewer, &project, env, Some((e, form.clone())))
                .await
                .map_err(IntoResponse::into_response)
        }
        Err(e) => Err(PageError(e).into_response()),
    }
}
