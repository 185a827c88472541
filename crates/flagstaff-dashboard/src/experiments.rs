//! Experiments in the dashboard (issue 21, point 6): the environment's experiments with a design
//! form (reached from a flag's page with the flag filled in), an experiment's results in words a
//! product manager can act on (verdict, sample-ratio warning first, per variation and metric the
//! mean with its interval drawn as a bar, lift, probability to beat the control, expected loss),
//! its iterations, and start / stop / ship. A flag's guarded rollout page is
//! `guarded_rollouts.rs`. Every action is the API's use case with the viewer's rights.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::experiment_results::{Bounds, ExperimentResults};
use flagstaff_app::experiments::{Audience, Experiment, ExperimentStatus, NewExperiment};
use flagstaff_app::{AppError, EnvRef, FlagFilter};
use serde::Deserialize;

use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

/// `?env=&flag=&iteration=`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExperimentQuery {
    pub env: Option<String>,
    flag: Option<String>,
    iteration: Option<String>,
}

struct ListedExperiment {
    key: String,
    name: String,
    flag: String,
    status: &'static str,
    iterations: usize,
}

fn status_text(status: ExperimentStatus) -> &'static str {
    match status {
        ExperimentStatus::NotStarted => "not started",
        ExperimentStatus::Running => "running",
        ExperimentStatus::Stopped => "stopped",
    }
}

#[derive(Template)]
#[template(path = "experiments.html")]
struct ExperimentsPage {
    nav: Nav,
    experiments: Vec<ListedExperiment>,
    /// (key, name) of the project's flags and metrics, for the form.
    flags: Vec<(String, String)>,
    metrics: Vec<(String, String)>,
    may_create: bool,
    error: Option<String>,
    field: String,
    form: DesignForm,
}

/// The design form, as typed.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct DesignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    env: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    flag: String,
    #[serde(default)]
    hypothesis: String,
    #[serde(default)]
    control: String,
    #[serde(default)]
    treatment: String,
    /// Metric keys, comma-separated (the first is the primary metric).
    #[serde(default)]
    metrics: String,
    #[serde(default)]
    unit: String,
}

impl DesignForm {
    fn design(&self) -> Result<NewExperiment, AppError> {
        let variation = |field: &str, text: &str| {
            text.trim().parse::<u32>().map_err(|_| {
                AppError::invalid(
                    flagstaff_app::ErrorCode::InvalidField,
                    field,
                    "a variation number (0 is the first)",
                )
            })
        };
        let metrics: Vec<String> = self
            .metrics
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(NewExperiment {
            key: self.key.trim().to_owned(),
            name: self.name.clone(),
            hypothesis: self.hypothesis.clone(),
            flag: self.flag.trim().to_owned(),
            primary_metric: metrics.first().cloned(),
            metrics,
            control_variation: variation("controlVariation", &self.control)?,
            treatment_variations: vec![variation("treatmentVariations[0]", &self.treatment)?],
            audience: Audience::Fallthrough,
            weights: None,
            randomization_unit: Some(self.unit.trim().to_owned()).filter(|u| !u.is_empty()),
            status: None,
            iterations: None,
            version: None,
        })
    }
}

fn env_of(nav: &Nav) -> EnvRef<'_> {
    EnvRef {
        project: &nav.project,
        environment: &nav.environment,
    }
}

async fn list_page(
    dashboard: &crate::Dashboard,
    viewer: &Viewer,
    project: &str,
    env: Option<&str>,
    refused: Option<(AppError, DesignForm)>,
    flag: Option<&str>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        dashboard,
        viewer,
        project,
        env,
        "experiments",
        format!("/projects/{project}/experiments"),
    )
    .await?;
    let app = &dashboard.app;
    let experiments = app
        .list_experiments(&viewer.actor, env_of(&nav))
        .await?
        .into_iter()
        .map(|e| ListedExperiment {
            status: status_text(e.value.status),
            iterations: e.value.iterations.len(),
            key: e.value.key,
            name: e.value.name,
            flag: e.value.flag,
        })
        .collect();
    let flags = app
        .list_flags(
            &viewer.actor,
            project,
            &FlagFilter {
                limit: Some(500),
                ..FlagFilter::default()
            },
        )
        .await?
        .items
        .into_iter()
        .map(|f| (f.value.key, f.value.name))
        .collect();
    let metrics = app
        .list_metrics(&viewer.actor, project)
        .await?
        .into_iter()
        .map(|m| (m.value.key, m.value.name))
        .collect();
    let may_create = viewer
        .actor
        .decide(
            "createExperiment",
            &flagstaff_app::policy::Resource::new()
                .with("proj", project, &[])
                .with("env", &nav.environment, &[])
                .with("experiment", "*", &[]),
        )
        .allowed;
    let crate::errors::Refused {
        status,
        error,
        field,
        form,
    } = crate::errors::Refused::of(refused, || DesignForm {
        flag: flag.unwrap_or_default().to_owned(),
        control: "0".into(),
        treatment: "1".into(),
        ..DesignForm::default()
    });
    let mut response = render(&ExperimentsPage {
        nav,
        experiments,
        flags,
        metrics,
        may_create,
        error,
        field,
        form,
    });
    *response.status_mut() = status;
    Ok(response)
}

/// `GET /projects/{project}/experiments`.
pub(crate) async fn list(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<ExperimentQuery>,
) -> Result<Response, PageError> {
    list_page(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        None,
        q.flag.as_deref(),
    )
    .await
}

/// `POST /projects/{project}/experiments`: designs one, or shows the form again with the error.
pub(crate) async fn create(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(project): Path<String>,
    Form(form): Form<DesignForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let env = Some(form.env.as_str()).filter(|e| !e.is_empty());
    let environment = form.env.clone();
    let created = match form.design() {
        Ok(design) => {
            dashboard
                .app
                .create_experiment(
                    &viewer.actor,
                    EnvRef {
                        project: &project,
                        environment: &environment,
                    },
                    design,
                    "designed in the dashboard",
                )
                .await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(made) => Ok(Redirect::to(&format!(
            "/projects/{}/experiments/{}?env={}",
            crate::url_encode(&project),
            crate::url_encode(&made.value.key),
            crate::url_encode(&environment)
        ))
        .into_response()),
        Err(e @ (AppError::Invalid { .. } | AppError::AlreadyExists(_))) => list_page(
            &dashboard,
            &viewer,
            &project,
            env,
            Some((e, form.clone())),
            None,
        )
        .await
        .map_err(IntoResponse::into_response),
        Err(e) => Err(PageError(e).into_response()),
    }
}

/// One metric of one variation, ready to draw.
struct Cell {
    variation: String,
    control: bool,
    exposures: u64,
    mean: String,
    interval: String,
    /// The interval as a bar: left offset and width in percent of the metric's scale, and the
    /// mean's position.
    bar_left: f64,
    bar_width: f64,
    bar_mean: f64,
    lift: String,
    beat: String,
    loss: String,
    p_value: String,
    sequential: String,
    significant: bool,
}

struct MetricBlock {
    key: String,
    name: String,
    primary: bool,
    cells: Vec<Cell>,
}

#[derive(Template)]
#[template(path = "experiment.html")]
struct ExperimentPage {
    nav: Nav,
    experiment: Experiment,
    results: Option<ExperimentResults>,
    blocks: Vec<MetricBlock>,
    /// (number, started, ended, shipped) per iteration, newest first.
    iterations: Vec<(u32, String, String, String)>,
    shown_iteration: u32,
    may_update: bool,
    running: bool,
    /// (index, name) of the arms, for "ship".
    arms: Vec<(u32, String)>,
    audience: String,
}

fn percent(value: f64) -> String {
    format!("{:.1} %", 100.0 * value)
}

/// A probability, never rounded to certainty.
fn chance(value: f64) -> String {
    match 100.0 * value {
        p if p > 99.9 => ">99.9 %".into(),
        p if p < 0.1 => "<0.1 %".into(),
        p => format!("{p:.1} %"),
    }
}

pub(crate) fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.4}")
    }
}

fn bounds(b: &Bounds, show: impl Fn(f64) -> String) -> String {
    match (b.0, b.1) {
        (Some(low), Some(high)) => format!("{} to {}", show(low), show(high)),
        _ => "not enough data".into(),
    }
}

pub(crate) fn when(millis: i64) -> String {
    crate::insights::utc(millis)
}

fn blocks(results: &ExperimentResults, names: &[(String, String, bool)]) -> Vec<MetricBlock> {
    let mut blocks = Vec::new();
    for (index, (key, name, conversion)) in names.iter().enumerate() {
        let show = |v: f64| {
            if *conversion { percent(v) } else { number(v) }
        };
        // One scale per metric: from the lowest interval bound to the highest.
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in &results.variations {
            if let Some(m) = v.metrics.get(index) {
                low = low.min(m.ci.0.unwrap_or(m.mean)).min(m.mean);
                high = high.max(m.ci.1.unwrap_or(m.mean)).max(m.mean);
            }
        }
        let span = if high > low { high - low } else { 1.0 };
        let scale = |v: f64| (((v - low) / span) * 100.0).clamp(0.0, 100.0);
        let cells = results
            .variations
            .iter()
            .filter_map(|v| {
                let m = v.metrics.get(index)?;
                let (a, b) = (m.ci.0.unwrap_or(m.mean), m.ci.1.unwrap_or(m.mean));
                Some(Cell {
                    variation: v.name.clone(),
                    control: v.control,
                    exposures: v.exposures,
                    mean: show(m.mean),
                    interval: bounds(&m.ci, show),
                    bar_left: scale(a),
                    bar_width: (scale(b) - scale(a)).max(0.5),
                    bar_mean: scale(m.mean),
                    lift: m
                        .relative_lift
                        .map(|l| {
                            let ci = m
                                .relative_lift_ci
                                .map(|c| {
                                    format!(" ({})", bounds(&c, |x| format!("{:+.1} %", 100.0 * x)))
                                })
                                .unwrap_or_default();
                            format!("{:+.1} %{ci}", 100.0 * l)
                        })
                        .unwrap_or_default(),
                    beat: m
                        .probability_to_beat_control
                        .map(chance)
                        .unwrap_or_default(),
                    loss: m.expected_loss.map(show).unwrap_or_default(),
                    p_value: m
                        .adjusted_p_value
                        .map(|p| {
                            if p < 0.0001 {
                                "<0.0001".to_owned()
                            } else {
                                format!("{p:.4}")
                            }
                        })
                        .unwrap_or_default(),
                    sequential: m
                        .sequential
                        .map(|s| bounds(&s.ci, show))
                        .unwrap_or_default(),
                    significant: m.sequential.is_some_and(|s| s.excludes_zero),
                })
            })
            .collect();
        blocks.push(MetricBlock {
            key: key.clone(),
            name: name.clone(),
            primary: *key == results.primary_metric,
            cells,
        });
    }
    blocks
}

/// `GET /projects/{project}/experiments/{key}`.
pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<ExperimentQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "experiments",
        format!("/projects/{project}/experiments/{key}"),
    )
    .await?;
    let app = &dashboard.app;
    let experiment = app
        .experiment(&viewer.actor, env_of(&nav), &key)
        .await?
        .value;
    let iteration = q.iteration.as_deref().and_then(|i| i.parse().ok());
    let results = if experiment.iterations.is_empty() {
        None
    } else {
        Some(
            app.experiment_results(&viewer.actor, env_of(&nav), &key, iteration)
                .await?,
        )
    };
    let mut names = Vec::new();
    for metric in results
        .as_ref()
        .and_then(|r| r.variations.first())
        .map(|v| {
            v.metrics
                .iter()
                .map(|m| m.metric.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    {
        let found = app.metric(&viewer.actor, &project, &metric).await.ok();
        let (name, conversion) = found.map_or((metric.clone(), false), |m| {
            (
                m.value.name,
                m.value.kind == flagstaff_app::metrics::MetricKind::Conversion,
            )
        });
        names.push((metric, name, conversion));
    }
    let blocks = results
        .as_ref()
        .map(|r| blocks(r, &names))
        .unwrap_or_default();
    let flag = app
        .flag(&viewer.actor, &project, &experiment.flag)
        .await
        .ok();
    let arm_name = |v: u32| {
        flag.as_ref()
            .and_then(|f| f.value.variations.get(v as usize))
            .map(|variation| {
                variation
                    .name
                    .clone()
                    .unwrap_or_else(|| variation.value.to_string())
            })
            .unwrap_or_else(|| format!("variation {v}"))
    };
    let arms = experiment
        .arms()
        .into_iter()
        .map(|v| (v, arm_name(v)))
        .collect();
    let iterations = experiment
        .iterations
        .iter()
        .rev()
        .map(|i| {
            (
                i.number,
                when(i.started_at),
                i.stopped_at.map(when).unwrap_or_else(|| "running".into()),
                i.shipped_variation.map(arm_name).unwrap_or_default(),
            )
        })
        .collect();
    let may_update = viewer
        .actor
        .decide(
            "updateExperiment",
            &flagstaff_app::policy::Resource::new()
                .with("proj", &project, &[])
                .with("env", &nav.environment, &[])
                .with("experiment", &key, &[]),
        )
        .allowed;
    let shown_iteration = results.as_ref().map_or(0, |r| r.iteration.number);
    let audience = match &experiment.audience {
        Audience::Fallthrough => "contexts that reach the fallthrough".to_owned(),
        Audience::Rule(id) => format!("contexts matching rule {id}"),
    };
    Ok(render(&ExperimentPage {
        nav,
        running: experiment.status == ExperimentStatus::Running,
        experiment,
        results,
        blocks,
        iterations,
        shown_iteration,
        may_update,
        arms,
        audience,
    }))
}

/// The form of the start, stop and ship buttons.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub env: String,
    #[serde(default)]
    pub variation: Option<u32>,
}

/// `POST /projects/{project}/experiments/{key}/{action}` (start, stop, ship).
pub(crate) async fn act(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key, action)): Path<(String, String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let env = EnvRef {
        project: &project,
        environment: &form.env,
    };
    let app = &dashboard.app;
    let done = match action.as_str() {
        "start" => {
            app.start_experiment(&viewer.actor, env, &key, "started in the dashboard")
                .await
        }
        "stop" => {
            app.stop_experiment(&viewer.actor, env, &key, None, "stopped in the dashboard")
                .await
        }
        "ship" => {
            app.stop_experiment(
                &viewer.actor,
                env,
                &key,
                Some(form.variation.unwrap_or(u32::MAX)),
                "shipped in the dashboard",
            )
            .await
        }
        _ => Err(AppError::NotFound(format!("action {action:?}"))),
    };
    done.map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to(&format!(
        "/projects/{}/experiments/{}?env={}",
        crate::url_encode(&project),
        crate::url_encode(&key),
        crate::url_encode(&form.env)
    ))
    .into_response())
}
