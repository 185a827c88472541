//! A flag's guarded rollout in the dashboard (issue 21, points 5 and 6): the start form (the new
//! variation, the steps with their minimum time and sample, a guard metric and its tolerance),
//! the plan as a timeline of steps with each step's guard evidence, and pause, resume and
//! abort. Every action is the API's use case with the viewer's rights.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::guarded_rollouts::{
    Guard, GuardedRollout, NewGuardedRollout, RolloutStatus, Step,
};
use flagstaff_app::{AppError, FlagRef};
use serde::Deserialize;

use crate::experiments::{ActionForm, ExperimentQuery, number, when};
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

struct StepLine {
    percent: f64,
    started: String,
    outcome: String,
    current: bool,
    /// (metric, control mean, new mean, interval, margin, regression)
    evidence: Vec<(String, String, String, String, String, bool)>,
    exposures: String,
}

#[derive(Template)]
#[template(path = "guarded_rollout.html")]
struct GuardedPage {
    nav: Nav,
    flag: String,
    plan: Option<GuardedRollout>,
    status: String,
    steps: Vec<StepLine>,
    pending: Vec<f64>,
    may_act: bool,
    in_progress: bool,
    paused: bool,
    /// (index, name) of the flag's variations and (key, name) of the project's metrics, for
    /// the start form.
    variations: Vec<(u32, String)>,
    metrics: Vec<(String, String)>,
    error: Option<String>,
    field: String,
    form: GuardedForm,
}

/// The start form, as typed.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct GuardedForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    env: String,
    #[serde(default)]
    treatment: String,
    /// Percentages, comma-separated ("1, 5, 25, 100").
    #[serde(default)]
    steps: String,
    /// Minutes each step lasts at least.
    #[serde(default)]
    minutes: String,
    /// Contexts the new variation must reach in each step.
    #[serde(default)]
    sample: String,
    #[serde(default)]
    metric: String,
    /// Percent worse tolerated.
    #[serde(default)]
    tolerance: String,
}

impl GuardedForm {
    fn plan(&self) -> Result<NewGuardedRollout, AppError> {
        let bad = |field: &str, message: &str| {
            AppError::invalid(flagstaff_app::ErrorCode::InvalidField, field, message)
        };
        let number = |field: &str, text: &str, default: f64| -> Result<f64, AppError> {
            match text.trim() {
                "" => Ok(default),
                t => t
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad(field, "a number")),
            }
        };
        let minutes = number("steps[0].minDurationMs", &self.minutes, 60.0)?;
        let sample = number("steps[0].minSample", &self.sample, 0.0)?;
        let mut steps = Vec::new();
        for (i, part) in self.steps.split(',').enumerate() {
            let percent = part
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .map_err(|_| {
                    bad(
                        &format!("steps[{i}].percent"),
                        "percentages, comma-separated",
                    )
                })?;
            steps.push(Step {
                percent,
                min_duration_ms: (minutes * 60_000.0) as i64,
                min_sample: sample as u64,
            });
        }
        Ok(NewGuardedRollout {
            treatment_variation: self
                .treatment
                .trim()
                .parse()
                .map_err(|_| bad("treatmentVariation", "a variation"))?,
            control_variation: None,
            steps,
            guards: vec![Guard {
                metric: self.metric.trim().to_owned(),
                tolerance: number("guards[0].tolerance", &self.tolerance, 0.0)? / 100.0,
            }],
            randomization_unit: None,
        })
    }
}

/// `GET /projects/{project}/flags/{key}/guarded-rollout`.
pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<ExperimentQuery>,
) -> Result<Response, PageError> {
    guarded_page(&dashboard, &viewer, project, key, q.env.as_deref(), None).await
}

/// `POST /projects/{project}/flags/{key}/guarded-rollout`: starts one, or shows the form again
/// with the error.
pub(crate) async fn start(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<GuardedForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let environment = form.env.clone();
    let started = match form.plan() {
        Ok(plan) => {
            dashboard
                .app
                .start_guarded_rollout(
                    &viewer.actor,
                    FlagRef {
                        project: &project,
                        environment: &environment,
                        key: &key,
                    },
                    plan,
                    "started in the dashboard",
                )
                .await
        }
        Err(e) => Err(e),
    };
    match started {
        Ok(_) => Ok(Redirect::to(&format!(
            "/projects/{}/flags/{}/guarded-rollout?env={}",
            crate::url_encode(&project),
            crate::url_encode(&key),
            crate::url_encode(&environment)
        ))
        .into_response()),
        Err(e @ AppError::Invalid { .. }) => guarded_page(
            &dashboard,
            &viewer,
            project,
            key,
            Some(environment.as_str()).filter(|e| !e.is_empty()),
            Some((e, form)),
        )
        .await
        .map_err(IntoResponse::into_response),
        Err(e) => Err(PageError(e).into_response()),
    }
}

async fn guarded_page(
    dashboard: &crate::Dashboard,
    viewer: &Viewer,
    project: String,
    key: String,
    env: Option<&str>,
    refused: Option<(AppError, GuardedForm)>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        dashboard,
        viewer,
        &project,
        env,
        "flags",
        format!("/projects/{project}/flags/{key}/guarded-rollout"),
    )
    .await?;
    let flag = FlagRef {
        project: &project,
        environment: &nav.environment,
        key: &key,
    };
    let plan = match dashboard.app.guarded_rollout(&viewer.actor, flag).await {
        Ok(plan) => Some(plan.value),
        Err(AppError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut steps = Vec::new();
    let mut pending = Vec::new();
    let mut status = String::new();
    let (mut in_progress, mut paused) = (false, false);
    if let Some(plan) = &plan {
        in_progress = matches!(plan.status, RolloutStatus::Running | RolloutStatus::Paused);
        paused = plan.status == RolloutStatus::Paused;
        status = match plan.status {
            RolloutStatus::Running => "running",
            RolloutStatus::Paused => "paused",
            RolloutStatus::Completed => "completed: the new variation serves everyone",
            RolloutStatus::RolledBack => "rolled back: a guard metric regressed",
            RolloutStatus::Aborted => "aborted by hand",
        }
        .to_owned();
        for record in &plan.history {
            steps.push(StepLine {
                percent: record.percent,
                started: when(record.started_at),
                outcome: record
                    .outcome
                    .clone()
                    .unwrap_or_else(|| "in progress".into()),
                current: record.ended_at.is_none(),
                exposures: record
                    .evidence
                    .first()
                    .map(|e| format!("{} control, {} new", e.exposures[0], e.exposures[1]))
                    .unwrap_or_default(),
                evidence: record
                    .evidence
                    .iter()
                    .map(|e| {
                        (
                            e.metric.clone(),
                            number(e.control_mean),
                            number(e.treatment_mean),
                            e.sequential
                                .map(|[l, h]| format!("{} to {}", number(l), number(h)))
                                .unwrap_or_else(|| "not enough data".into()),
                            // `+ 0.0` turns a margin of −0 into 0.
                            format!("{:+.4}", e.margin + 0.0),
                            e.regression,
                        )
                    })
                    .collect(),
            });
        }
        pending = plan
            .steps
            .iter()
            .skip(plan.history.len())
            .map(|s| s.percent)
            .collect();
    }
    let env = nav.environment.clone();
    let definition = dashboard.app.flag(&viewer.actor, &project, &key).await?;
    let variations = definition
        .value
        .variations
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                i as u32,
                v.name.clone().unwrap_or_else(|| v.value.to_string()),
            )
        })
        .collect();
    let metrics = dashboard
        .app
        .list_metrics(&viewer.actor, &project)
        .await?
        .into_iter()
        .map(|m| (m.value.key, m.value.name))
        .collect();
    let tags: Vec<&str> = definition.value.tags.iter().map(String::as_str).collect();
    let may_act = viewer
        .actor
        .decide(
            "updateFallthrough",
            &flagstaff_app::policy::Resource::new()
                .with("proj", &project, &[])
                .with("env", &env, &[])
                .with("flag", &key, &tags),
        )
        .allowed;
    let crate::errors::Refused {
        status: status_code,
        error,
        field,
        form,
    } = crate::errors::Refused::of(refused, || GuardedForm {
        treatment: "1".into(),
        steps: "1, 5, 25, 50, 100".into(),
        minutes: "60".into(),
        sample: "1000".into(),
        tolerance: "10".into(),
        ..GuardedForm::default()
    });
    let mut response = render(&GuardedPage {
        nav,
        flag: key,
        plan,
        status,
        steps,
        pending,
        may_act,
        in_progress,
        paused,
        variations,
        metrics,
        error,
        field,
        form,
    });
    *response.status_mut() = status_code;
    Ok(response)
}

/// `POST /projects/{project}/flags/{key}/guarded-rollout/{action}` (pause, resume, abort).
pub(crate) async fn act(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key, action)): Path<(String, String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let flag = FlagRef {
        project: &project,
        environment: &form.env,
        key: &key,
    };
    let app = &dashboard.app;
    let done = match action.as_str() {
        "pause" => {
            app.pause_guarded_rollout(&viewer.actor, flag, true, "paused in the dashboard")
                .await
        }
        "resume" => {
            app.pause_guarded_rollout(&viewer.actor, flag, false, "resumed in the dashboard")
                .await
        }
        "abort" => {
            app.abort_guarded_rollout(&viewer.actor, flag, "aborted in the dashboard")
                .await
        }
        _ => Err(AppError::NotFound(format!("action {action:?}"))),
    };
    done.map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to(&format!(
        "/projects/{}/flags/{}/guarded-rollout?env={}",
        crate::url_encode(&project),
        crate::url_encode(&key),
        crate::url_encode(&form.env)
    ))
    .into_response())
}
