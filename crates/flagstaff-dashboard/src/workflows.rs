//! Release workflows on a flag's page: its scheduled changes ("Schedule…", a rollout plan's
//! steps, cancel), its open change requests (their pages are `change_requests.rs`) and its
//! triggers (URLs shown once).
//!
//! Everything goes through the same `flagstaff-app` use cases as the API, as the signed-in
//! member, so the server decides what the page offers; forms carry the session's CSRF token.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::model::{FlagDefinition, Variation};
use flagstaff_app::policy::Resource;
use flagstaff_app::{
    AppError, FlagRef, NewRolloutPlan, NewSchedule, NewTrigger, PlanStep, ScheduledChange, Target,
    TargetKind, TriggerAction, TriggerUpdate,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::describe;
use crate::session::Viewer;
use crate::{DashState, Dashboard, Nav, PageError, render, time};

/// A pending scheduled change as the flag page lists it.
pub(crate) struct ScheduleRow {
    pub id: String,
    /// Local time with its offset and zone, e.g. `2026-12-01T08:00:00+13:00 (Pacific/Auckland)`.
    pub when: String,
    /// The same moment in UTC.
    pub utc: String,
    pub what: String,
    pub by: String,
    pub plan: Option<String>,
    pub step: String,
}

/// A trigger as the flag page lists it (never its URL).
pub(crate) struct TriggerRow {
    pub id: String,
    pub action: &'static str,
    pub hint: String,
    pub enabled: bool,
    pub comment: String,
    pub last: String,
}

/// What the flag page shows and offers about release workflows in one environment.
#[derive(Default)]
pub(crate) struct FlagWorkflows {
    pub schedules: Vec<ScheduleRow>,
    pub requests: Vec<crate::change_requests::RequestRow>,
    pub triggers: Vec<TriggerRow>,
    /// Direct changes here need approval: the editor requests instead of saving.
    pub needs_approval: bool,
    pub may_schedule: bool,
    pub may_trigger: bool,
    /// `(index, label)` of each variation, for rollout plans.
    pub variations: Vec<(i64, String)>,
}

/// An instruction in words, for lists of scheduled changes.
fn instruction_text(instruction: &Value, variations: &[Variation]) -> String {
    let variation = |v: &Value| describe::variation(variations, v.as_i64().unwrap_or(-1));
    match instruction["kind"].as_str().unwrap_or_default() {
        "turnFlagOn" => "turn targeting on".into(),
        "turnFlagOff" => "turn targeting off".into(),
        "updateFallthroughVariationOrRollout" => match instruction.get("rollout") {
            Some(rollout) => {
                let shares: Vec<String> = rollout["variations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| {
                        let percent = w["weight"].as_f64().unwrap_or(0.0) / 1000.0;
                        format!("{percent}% {}", variation(&w["variation"]))
                    })
                    .collect();
                format!("serve {} by default", shares.join(", "))
            }
            None => format!("serve {} by default", variation(&instruction["variation"])),
        },
        "addTargets" => format!("target {} individually", instruction["values"]),
        "removeTargets" => format!("stop targeting {} individually", instruction["values"]),
        "addRule" => "add a rule".into(),
        "removeRule" => format!("remove rule {}", instruction["ruleId"]),
        other => other.to_owned(),
    }
}

fn schedule_row(schedule: &ScheduledChange, variations: &[Variation]) -> ScheduleRow {
    ScheduleRow {
        id: schedule.id.clone(),
        when: match (&schedule.local_time, &schedule.time_zone) {
            (Some(local), Some(zone)) => format!("{} ({zone})", local.replace('T', " ")),
            _ => time(schedule.execution_date),
        },
        utc: time(schedule.execution_date),
        what: schedule
            .instructions
            .iter()
            .map(|i| instruction_text(i, variations))
            .collect::<Vec<_>>()
            .join("; "),
        by: schedule.created_by.clone(),
        plan: schedule.plan.clone(),
        step: schedule
            .step
            .map(|s| format!("step {}", s + 1))
            .unwrap_or_default(),
    }
}

/// The flag's release workflows in `nav`'s environment, for its page.
pub(crate) async fn for_flag(
    dashboard: &Dashboard,
    viewer: &Viewer,
    nav: &Nav,
    definition: &FlagDefinition,
) -> Result<FlagWorkflows, AppError> {
    let app = &dashboard.app;
    let (project, environment, key) = (&nav.project, &nav.environment, &definition.key);
    let target = Target::flag(project, environment, key);
    let tags: Vec<&str> = definition.tags.iter().map(String::as_str).collect();
    let env_tags: &[&str] = if nav.critical() { &["critical"] } else { &[] };
    let resource = Resource::new()
        .with("proj", project, &[])
        .with("env", environment, env_tags)
        .with("flag", key, &tags);
    let variations = &definition.variations;
    let schedules = app
        .scheduled_changes(
            &viewer.actor,
            (project, environment),
            Some((TargetKind::Flag, key)),
            false,
        )
        .await?
        .iter()
        .map(|s| schedule_row(&s.value, variations))
        .collect();
    let requests = app
        .change_requests(&viewer.actor, (project, environment), false)
        .await?
        .iter()
        .filter(|r| r.value.kind == TargetKind::Flag && r.value.key == *key)
        .map(|r| crate::change_requests::request_row(&r.value))
        .collect();
    let flag = FlagRef {
        project,
        environment,
        key,
    };
    let triggers = app
        .triggers(&viewer.actor, flag)
        .await?
        .into_iter()
        .map(|t| TriggerRow {
            id: t.id,
            action: match t.action {
                TriggerAction::TurnFlagOff => "turns the flag off",
                TriggerAction::TurnFlagOn => "turns the flag on",
            },
            hint: t.hint,
            enabled: t.enabled,
            comment: t.comment,
            last: t.last_triggered_at.map(time).unwrap_or_default(),
        })
        .collect();
    Ok(FlagWorkflows {
        schedules,
        requests,
        triggers,
        needs_approval: app.needs_approval(&viewer.actor, &target).await?,
        may_schedule: viewer
            .actor
            .decide("updateScheduledChanges", &resource)
            .allowed,
        may_trigger: viewer.actor.decide("createTriggers", &resource).allowed,
        variations: (0..variations.len())
            .map(|i| (i as i64, describe::variation(variations, i as i64)))
            .collect(),
    })
}

/// The form of "Schedule…" on a flag's page.
#[derive(Deserialize, Default)]
pub(crate) struct ScheduleForm {
    #[serde(default)]
    csrf: String,
    env: String,
    /// `on`, `off` or `rollout`.
    what: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    comment: String,
    /// The variation a rollout plan rolls out.
    #[serde(default)]
    variation: Option<i64>,
    #[serde(default)]
    step_date_0: String,
    #[serde(default)]
    step_time_0: String,
    #[serde(default)]
    percent_0: String,
    #[serde(default)]
    step_date_1: String,
    #[serde(default)]
    step_time_1: String,
    #[serde(default)]
    percent_1: String,
    #[serde(default)]
    step_date_2: String,
    #[serde(default)]
    step_time_2: String,
    #[serde(default)]
    percent_2: String,
    #[serde(default)]
    step_date_3: String,
    #[serde(default)]
    step_time_3: String,
    #[serde(default)]
    percent_3: String,
}

impl ScheduleForm {
    fn zone(&self) -> String {
        match self.time_zone.trim() {
            "" => "UTC".into(),
            zone => zone.to_owned(),
        }
    }

    /// The rollout plan's filled-in rows.
    fn steps(&self) -> Result<Vec<PlanStep>, AppError> {
        let rows = [
            (&self.step_date_0, &self.step_time_0, &self.percent_0),
            (&self.step_date_1, &self.step_time_1, &self.percent_1),
            (&self.step_date_2, &self.step_time_2, &self.percent_2),
            (&self.step_date_3, &self.step_time_3, &self.percent_3),
        ];
        let mut steps = Vec::new();
        for (i, (date, time, percent)) in rows.into_iter().enumerate() {
            if date.trim().is_empty() && percent.trim().is_empty() {
                continue;
            }
            let percent: f64 = percent.trim().parse().map_err(|_| {
                AppError::invalid(
                    flagstaff_app::ErrorCode::InvalidField,
                    format!("step {} percentage", i + 1),
                    "a percentage such as 5 or 25",
                )
            })?;
            steps.push(PlanStep {
                execute_at: Some(local(date, time)),
                percent: Some(percent),
                ..PlanStep::default()
            });
        }
        Ok(steps)
    }
}

/// `2026-12-01` and `08:00` as `2026-12-01T08:00:00`.
pub(crate) fn local(date: &str, time: &str) -> String {
    let time = time.trim();
    let time = if time.len() == 5 {
        format!("{time}:00")
    } else {
        time.to_owned()
    };
    format!("{}T{time}", date.trim())
}

fn flag_page(project: &str, key: &str, env: &str) -> String {
    // `env` comes from a form: encoded, so that no input can make an invalid `Location`.
    format!(
        "/projects/{project}/flags/{key}?env={}",
        crate::url_encode(env)
    )
}

/// "Schedule…": a change at a local time in a time zone, or a rollout plan's steps. Where
/// approval is required, the change becomes a change request that applies at that moment once
/// approved.
pub(crate) async fn schedule(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<ScheduleForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let target = Target::flag(&project, &form.env, &key);
    let run = async {
        let instruction = match form.what.as_str() {
            "on" => json!({"kind": "turnFlagOn"}),
            "off" => json!({"kind": "turnFlagOff"}),
            _ => {
                let plan = NewRolloutPlan {
                    time_zone: Some(form.zone()),
                    variation: form.variation,
                    steps: form.steps()?,
                    comment: form.comment.clone(),
                    ..NewRolloutPlan::default()
                };
                app.create_rollout_plan(&viewer.actor, &target, plan)
                    .await?;
                return Ok(flag_page(&project, &key, &form.env));
            }
        };
        let at = local(&form.date, &form.time);
        if app.needs_approval(&viewer.actor, &target).await? {
            let request = app
                .create_change_request(
                    &viewer.actor,
                    (&project, &form.env),
                    flagstaff_app::NewChangeRequest {
                        flag: Some(key.clone()),
                        instructions: vec![instruction],
                        comment: form.comment.clone(),
                        execute_at: Some(at),
                        time_zone: Some(form.zone()),
                        ..flagstaff_app::NewChangeRequest::default()
                    },
                )
                .await?;
            return Ok(format!(
                "/projects/{project}/change-requests/{}?env={}",
                request.value.id,
                crate::url_encode(&form.env)
            ));
        }
        let new = NewSchedule {
            execute_at: Some(at),
            time_zone: Some(form.zone()),
            instructions: vec![instruction],
            comment: form.comment.clone(),
            ..NewSchedule::default()
        };
        app.schedule_change(&viewer.actor, &target, new).await?;
        Ok::<_, AppError>(flag_page(&project, &key, &form.env))
    };
    match run.await {
        Ok(to) => Ok(Redirect::to(&to).into_response()),
        Err(e) => Err(PageError(e).into_response()),
    }
}

#[derive(Deserialize)]
pub(crate) struct EnvForm {
    #[serde(default)]
    csrf: String,
    env: String,
}

/// Cancels one pending scheduled change (or, with `plan`, what is left of its rollout plan).
pub(crate) async fn cancel_schedule(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key, id)): Path<(String, String, String)>,
    Form(form): Form<EnvForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let env = (project.as_str(), form.env.as_str());
    let result = match id.strip_prefix("plan-") {
        Some(plan) => app
            .cancel_rollout_plan(&viewer.actor, env, plan, "cancelled in the dashboard")
            .await
            .map(|_| ()),
        None => {
            app.cancel_scheduled_change(&viewer.actor, env, &id, None, "cancelled in the dashboard")
                .await
        }
    };
    result.map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to(&flag_page(&project, &key, &form.env)).into_response())
}

#[derive(Template)]
#[template(path = "trigger_created.html")]
struct TriggerCreatedPage {
    nav: Nav,
    flag: String,
    url: String,
}

#[derive(Deserialize)]
pub(crate) struct TriggerForm {
    #[serde(default)]
    csrf: String,
    env: String,
    /// `off` or `on` to create; `enable`, `disable`, `reset` or `delete` for one.
    op: String,
    #[serde(default)]
    comment: String,
}

/// Creates a trigger or changes one; a new URL is shown once, on its own page.
pub(crate) async fn trigger(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key, id)): Path<(String, String, String)>,
    Form(form): Form<TriggerForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let flag = FlagRef {
        project: &project,
        environment: &form.env,
        key: &key,
    };
    let run = async {
        let url = match (id.as_str(), form.op.as_str()) {
            ("new", op @ ("on" | "off")) => {
                let action = if op == "on" {
                    TriggerAction::TurnFlagOn
                } else {
                    TriggerAction::TurnFlagOff
                };
                let comment = form.comment.clone();
                let made = app
                    .create_trigger(&viewer.actor, flag, NewTrigger { action, comment })
                    .await?;
                Some(made.trigger_url)
            }
            (_, "delete") => {
                app.delete_trigger(&viewer.actor, flag, &id).await?;
                None
            }
            (_, op) => {
                let update = TriggerUpdate {
                    enabled: match op {
                        "enable" => Some(true),
                        "disable" => Some(false),
                        _ => None,
                    },
                    reset_url: op == "reset",
                    comment: None,
                };
                app.update_trigger(&viewer.actor, flag, &id, update)
                    .await?
                    .1
            }
        };
        Ok::<_, AppError>(url)
    };
    match run.await.map_err(|e| PageError(e).into_response())? {
        Some(url) => {
            let nav = Nav::new(
                &dashboard,
                &viewer,
                &project,
                Some(&form.env),
                "flags",
                format!("/projects/{project}/flags/{key}"),
            )
            .await
            .map_err(IntoResponse::into_response)?;
            let origin = headers
                .get("origin")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            Ok(render(&TriggerCreatedPage {
                nav,
                flag: key,
                url: format!("{origin}{url}"),
            }))
        }
        None => Ok(Redirect::to(&flag_page(&project, &key, &form.env)).into_response()),
    }
}
