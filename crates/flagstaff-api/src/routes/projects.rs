//! `/projects`: list, create, read, rename and delete projects.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::App;
use flagstaff_app::model::Project;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Body, Caller, Comment, IfMatch, versioned};
use crate::routes::AppState;
use flagstaff_app::ErrorCode;
use flagstaff_http::ApiError;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{project}",
            get(get_project).put(update_project).delete(delete_project),
        )
}

async fn list_projects(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.list_projects(&actor).await?})))
}

/// The body of `POST /projects`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    key: String,
    name: String,
    /// The environments to create with it; absent: `production` and `test`.
    #[serde(default)]
    environments: Option<Vec<NewEnvironment>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEnvironment {
    pub(crate) key: String,
    pub(crate) name: String,
}

/// Environments a project may be created with at once.
const MAX_NEW_ENVIRONMENTS: usize = 20;

async fn create_project(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(new): Body<NewProject>,
) -> Result<Response> {
    let environments: Vec<(&str, &str)> = match &new.environments {
        None => flagstaff_app::DEFAULT_ENVIRONMENTS.to_vec(),
        Some(list) if list.len() > MAX_NEW_ENVIRONMENTS => {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("at most {MAX_NEW_ENVIRONMENTS} environments at once"),
            )
            .with_field("environments"));
        }
        Some(list) => list
            .iter()
            .map(|e| (e.key.as_str(), e.name.as_str()))
            .collect(),
    };
    let project = Project {
        key: new.key,
        name: new.name,
    };
    let created = app
        .create_project_with_environments(&actor, project, &environments, &comment)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn get_project(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.project(&actor, &project).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    /// Optional; if given it must be the resource's own key (keys never change).
    #[serde(default)]
    pub(crate) key: Option<String>,
    pub(crate) name: String,
}

impl Rename {
    pub(crate) fn check(&self, key: &str) -> Result<()> {
        match &self.key {
            Some(given) if given != key => {
                Err(ApiError::new(ErrorCode::InvalidField, "keys cannot change").with_field("key"))
            }
            _ => Ok(()),
        }
    }
}

async fn update_project(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(project): Path<String>,
    Body(rename): Body<Rename>,
) -> Result<Response> {
    rename.check(&project)?;
    Ok(versioned(
        StatusCode::OK,
        &app.update_project(&actor, &project, &rename.name, version, &comment)
            .await?,
    ))
}

async fn delete_project(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(project): Path<String>,
) -> Result<StatusCode> {
    app.delete_project(&actor, &project, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
