//! Projects in the dashboard: the list, create (with `production` and `test` environments,
//! whose keys are shown once), rename, and delete behind a typed confirmation; the header's
//! project switcher lists the same projects.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::AppError;
use flagstaff_app::model::Project;
use serde::Deserialize;

use crate::session::Viewer;
use crate::{DashState, Dashboard, Nav, PageError, render};

pub(crate) struct ShownProject {
    pub key: String,
    pub name: String,
    pub environments: Vec<String>,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    nav: Nav,
    projects: Vec<ShownProject>,
    error: Option<String>,
    /// The field the error is about (`key`, `name`, `confirm`).
    field: String,
    /// What was typed into the create form, shown again after an error.
    new_key: String,
    new_name: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct ProjectsQuery {
    /// The project whose frame (header, switcher) the page shows.
    project: Option<String>,
}

async fn projects_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    current: Option<String>,
    error: Option<(String, String)>,
    typed: (String, String),
) -> Result<Response, PageError> {
    let app = &dashboard.app;
    let listed = app.list_projects(&viewer.actor).await?;
    let current = current
        .filter(|c| listed.iter().any(|p| &p.key == c))
        .or_else(|| listed.first().map(|p| p.key.clone()))
        .unwrap_or_default();
    let nav = Nav::new(
        dashboard,
        viewer,
        &current,
        None,
        "projects",
        "/projects".into(),
    )
    .await?;
    let mut projects = Vec::with_capacity(listed.len());
    for p in listed {
        let environments = app
            .list_environments(&viewer.actor, &p.key)
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect();
        projects.push(ShownProject {
            key: p.key,
            name: p.name,
            environments,
        });
    }
    let failed = error.is_some();
    let (field, message) = error.unzip();
    let mut page = render(&ProjectsPage {
        nav,
        projects,
        error: message,
        field: field.unwrap_or_default(),
        new_key: typed.0,
        new_name: typed.1,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn list(
    State(dashboard): DashState,
    viewer: Viewer,
    Query(q): Query<ProjectsQuery>,
) -> Result<Response, PageError> {
    projects_page(&dashboard, &viewer, q.project, None, Default::default()).await
}

#[derive(Deserialize)]
pub(crate) struct NewProjectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    name: String,
}

/// The error shown for a refused form: its field and its message in words.
fn said(error: &AppError) -> (String, String) {
    match error {
        AppError::Invalid { field, message, .. } => {
            (field.clone(), crate::errors::humane(field, message))
        }
        AppError::AlreadyExists(what) => ("key".into(), format!("There is already a {what}.")),
        other => (String::new(), other.to_string()),
    }
}

pub(crate) async fn create(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<NewProjectForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let key = if form.key.trim().is_empty() {
        crate::flags::key_from_name(&form.name)
    } else {
        form.key.trim().to_owned()
    };
    let name = form.name.trim().to_owned();
    let result = dashboard
        .app
        .create_project_with_environments(
            &viewer.actor,
            Project {
                key: key.clone(),
                name: if name.is_empty() { key.clone() } else { name },
            },
            flagstaff_app::DEFAULT_ENVIRONMENTS,
            "created in the dashboard",
        )
        .await;
    match result {
        Ok(created) => {
            // The new environments' secret keys are shown now, once.
            let revealed = created
                .environments
                .iter()
                .flat_map(|e| {
                    [
                        (
                            e.environment.name.clone(),
                            "SDK key".to_owned(),
                            e.keys.sdk_key.clone(),
                        ),
                        (
                            e.environment.name.clone(),
                            "mobile key".to_owned(),
                            e.keys.mobile_key.clone(),
                        ),
                    ]
                })
                .collect();
            crate::admin::environments_page(&dashboard, &viewer, &key, revealed, None)
                .await
                .map_err(IntoResponse::into_response)
        }
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e).into_response()),
        Err(e) => projects_page(
            &dashboard,
            &viewer,
            None,
            Some(said(&e)),
            (
                form.key.chars().take(100).collect(),
                form.name.chars().take(200).collect(),
            ),
        )
        .await
        .map_err(IntoResponse::into_response),
    }
}

#[derive(Deserialize)]
pub(crate) struct ProjectActionForm {
    #[serde(default)]
    csrf: String,
    /// `rename` or `delete`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    name: String,
    /// The project's key, typed to confirm a deletion.
    #[serde(default)]
    confirm: String,
}

/// Renames or deletes a project. A deletion needs the project's key typed: it removes every
/// environment, flag, segment and key in it.
pub(crate) async fn act(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(project): Path<String>,
    Form(form): Form<ProjectActionForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let result = async {
        let current = app.project(&viewer.actor, &project).await?;
        match form.action.as_str() {
            "delete" if form.confirm.trim() != project => Err(AppError::invalid(
                flagstaff_app::validate::codes::INVALID_FIELD,
                "confirm",
                format!(
                    "To delete project {}, type its key “{project}” exactly",
                    crate::excerpt(&current.value.name)
                ),
            )),
            "delete" => {
                app.delete_project(
                    &viewer.actor,
                    &project,
                    current.version,
                    "deleted in the dashboard",
                )
                .await
            }
            _ => app
                .update_project(
                    &viewer.actor,
                    &project,
                    form.name.trim(),
                    current.version,
                    "renamed in the dashboard",
                )
                .await
                .map(|_| ()),
        }
    }
    .await;
    match result {
        Ok(()) => Ok(Redirect::to("/projects").into_response()),
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e).into_response()),
        Err(e) => projects_page(
            &dashboard,
            &viewer,
            Some(project),
            Some(said(&e)),
            Default::default(),
        )
        .await
        .map_err(IntoResponse::into_response),
    }
}
