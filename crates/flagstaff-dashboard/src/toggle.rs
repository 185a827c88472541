//! On and off from the flag list: one click in an ordinary environment; in a critical one, a
//! confirmation page where the flag's key is typed and Enter confirms (it works by keyboard
//! alone and without scripts, like the flag page's kill switch). The change goes through the
//! same instruction (`turnFlagOn`/`turnFlagOff`) and authorization as everywhere else, applied
//! to the targeting as it is when it arrives, so a toggle never overwrites someone's rules.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::FlagRef;
use serde::Deserialize;
use serde_json::json;

use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

#[derive(Deserialize, Default)]
pub(crate) struct ToggleQuery {
    env: Option<String>,
    /// What to turn it into: `true` or `false`.
    #[serde(default)]
    on: String,
    /// `list` to come back to the flag list.
    #[serde(default)]
    back: String,
}

#[derive(Template)]
#[template(path = "toggle.html")]
struct ConfirmPage {
    nav: Nav,
    key: String,
    name: String,
    on: bool,
    back: String,
    error: Option<String>,
}

impl ConfirmPage {
    /// "Turn off in Production".
    fn label(&self) -> String {
        let env = self
            .nav
            .current()
            .map_or(self.nav.environment.clone(), |e| e.name.clone());
        format!("Turn {} in {env}", if self.on { "on" } else { "off" })
    }
}

pub(crate) async fn confirm_page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<ToggleQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "flags",
        format!("/projects/{project}/flags/{key}"),
    )
    .await?;
    let definition = dashboard.app.flag(&viewer.actor, &project, &key).await?;
    Ok(render(&ConfirmPage {
        nav,
        key,
        name: definition.value.name,
        on: q.on == "true",
        back: q.back,
        error: None,
    }))
}

#[derive(Deserialize)]
pub(crate) struct ToggleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    env: String,
    #[serde(default)]
    on: String,
    /// The flag's key, typed in a critical environment.
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    back: String,
}

pub(crate) async fn toggle(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<ToggleForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        Some(form.env.as_str()).filter(|e| !e.is_empty()),
        "flags",
        format!("/projects/{project}/flags/{key}"),
    )
    .await
    .map_err(IntoResponse::into_response)?;
    let on = form.on == "true";
    if nav.critical() && form.confirm.trim() != key {
        let definition = dashboard
            .app
            .flag(&viewer.actor, &project, &key)
            .await
            .map_err(|e| PageError(e).into_response())?;
        let env = nav.current().map_or(String::new(), |e| e.name.clone());
        let mut page = render(&ConfirmPage {
            error: Some(format!(
                "{env} is critical: type the flag's key “{key}” to confirm (nothing was changed)"
            )),
            nav,
            key,
            name: definition.value.name,
            on,
            back: form.back,
        });
        *page.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(page);
    }
    let comment = form.comment.trim();
    let comment = if comment.is_empty() {
        if on {
            "turned on in the dashboard"
        } else {
            "turned off in the dashboard"
        }
    } else {
        comment
    };
    let instruction = json!({"kind": if on { "turnFlagOn" } else { "turnFlagOff" }});
    dashboard
        .app
        .apply_flag_instructions(
            FlagRef {
                project: &project,
                environment: &nav.environment,
                key: &key,
            },
            &[instruction],
            None,
            &viewer.actor,
            &comment.chars().take(500).collect::<String>(),
        )
        .await
        .map_err(|e| PageError(e).into_response())?;
    let env = crate::url_encode(&nav.environment);
    let to = if form.back == "list" {
        format!("/projects/{project}/flags?env={env}#flag-{key}")
    } else {
        format!("/projects/{project}/flags/{key}?env={env}")
    };
    Ok(Redirect::to(&to).into_response())
}
