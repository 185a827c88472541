//! Compare a flag's targeting in two environments, and copy one onto the other through the
//! usual review: the page shows both in words side by side and what the target environment
//! would become, as a diff; saving writes the source's targeting (the target keeps its own
//! bucketing salt, as every targeting write does) with the version read at review, the typed key
//! where the target is critical, and a comment for the history.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::{AppError, FlagRef, WriteMeta};
use serde::Deserialize;

use crate::describe::{self, DiffLine};
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

#[derive(Deserialize, Default)]
pub(crate) struct CompareQuery {
    /// The source environment.
    env: Option<String>,
    /// The environment compared with (and copied onto).
    #[serde(default)]
    with: String,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    nav: Nav,
    key: String,
    name: String,
    /// (key, name) of the environment compared with; empty before one is chosen.
    target: (String, String),
    target_critical: bool,
    source_lines: Vec<String>,
    target_lines: Vec<String>,
    /// What the target becomes if the source is copied onto it.
    diff: Vec<DiffLine>,
    same: bool,
    /// The target's targeting version read now (the copy is refused if it changes meanwhile).
    version: u64,
    error: Option<String>,
}

/// The page for `source` against `target`, or with an error.
async fn compare_page(
    dashboard: &crate::Dashboard,
    viewer: &Viewer,
    (project, key): (&str, &str),
    source: Option<&str>,
    target: &str,
    error: Option<String>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        dashboard,
        viewer,
        project,
        source,
        "flags",
        format!("/projects/{project}/flags/{key}/compare"),
    )
    .await?;
    let app = &dashboard.app;
    let definition = app.flag(&viewer.actor, project, key).await?;
    let variations = &definition.value.variations;
    let here = app
        .targeting(&viewer.actor, project, &nav.environment, key)
        .await?;
    let source_lines = describe::targeting(variations, &here.value);
    let chosen = nav
        .environments
        .iter()
        .find(|e| e.key == target && e.key != nav.environment)
        .cloned();
    let (target, target_critical, target_lines, version) = match &chosen {
        Some(env) => {
            let there = app.targeting(&viewer.actor, project, &env.key, key).await?;
            (
                (env.key.clone(), env.name.clone()),
                env.critical,
                describe::targeting(variations, &there.value),
                there.version,
            )
        }
        None => ((String::new(), String::new()), false, Vec::new(), 0),
    };
    let diff = describe::diff(&target_lines, &source_lines);
    let failed = error.is_some();
    let mut page = render(&ComparePage {
        same: chosen.is_some() && !describe::changes(&diff),
        key: key.to_owned(),
        name: definition.value.name.clone(),
        target,
        target_critical,
        source_lines,
        target_lines,
        diff,
        version,
        error,
        nav,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<CompareQuery>,
) -> Result<Response, PageError> {
    compare_page(
        &dashboard,
        &viewer,
        (&project, &key),
        q.env.as_deref(),
        &q.with,
        None,
    )
    .await
}

#[derive(Deserialize)]
pub(crate) struct CopyForm {
    #[serde(default)]
    csrf: String,
    /// The source.
    #[serde(default)]
    env: String,
    /// The target.
    #[serde(default)]
    with: String,
    /// The target's version when the copy was reviewed.
    #[serde(default)]
    version: u64,
    /// The flag key, typed when the target is critical.
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    comment: String,
}

/// The environment `to` of `project` that something of `from` is copied onto, once the
/// person typed `key` where it is critical (flags' targeting here, segments in `segments.rs`).
/// `what` names the key in the refusal ("flag key", "segment key").
pub(crate) async fn copy_target(
    app: &flagstaff_app::App,
    viewer: &Viewer,
    project: &str,
    (from, to): (&str, &str),
    (what, key, confirm): (&str, &str, &str),
) -> Result<flagstaff_app::model::Environment, AppError> {
    let target = app
        .list_environments(&viewer.actor, project)
        .await?
        .into_iter()
        .find(|e| e.key == to && e.key != from)
        .ok_or_else(|| AppError::NotFound(format!("environment {to:?}")))?;
    if target.critical && confirm.trim() != key {
        return Err(AppError::invalid(
            flagstaff_app::validate::codes::INVALID_FIELD,
            "confirm",
            format!(
                "{} is critical: type the {what} “{key}” to confirm (nothing was copied)",
                target.name
            ),
        ));
    }
    Ok(target)
}

/// Copies the source environment's targeting onto the target.
pub(crate) async fn copy(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<CopyForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let run = async {
        let target = copy_target(
            app,
            &viewer,
            &project,
            (&form.env, &form.with),
            ("flag key", &key, &form.confirm),
        )
        .await?;
        let mut source = app
            .targeting(&viewer.actor, &project, &form.env, &key)
            .await?;
        // An empty salt keeps the target's own (`write_targeting`): who falls in a rollout's
        // bucket stays as it was there.
        source.value.salt = String::new();
        let comment = Some(form.comment.trim())
            .filter(|c| !c.is_empty())
            .map_or_else(
                || format!("copied from {}", form.env),
                |c| c.chars().take(500).collect(),
            );
        app.update_targeting(
            FlagRef {
                project: &project,
                environment: &target.key,
                key: &key,
            },
            source.value,
            WriteMeta {
                actor: &viewer.actor,
                expected: form.version,
                comment: &comment,
            },
        )
        .await
    };
    match run.await {
        Ok(_) => Ok(Redirect::to(&format!(
            "/projects/{project}/flags/{key}?env={}",
            crate::url_encode(&form.with)
        ))
        .into_response()),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict { .. })) => {
            let message = match &e {
                AppError::Invalid { field, message, .. } => crate::errors::humane(field, message),
                _ => "The target changed since you reviewed the copy: review it again below."
                    .to_owned(),
            };
            compare_page(
                &dashboard,
                &viewer,
                (&project, &key),
                Some(form.env.as_str()).filter(|e| !e.is_empty()),
                &form.with,
                Some(message),
            )
            .await
            .map_err(IntoResponse::into_response)
        }
        Err(e) => Err(PageError(e).into_response()),
    }
}
