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

async fn create_project(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(project): Body<Project>,
) -> Result<Response> {
    let project = app.create_project(&actor, project, &comment).await?;
    Ok((StatusCode::CREATED, Json(project)).into_response())
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
