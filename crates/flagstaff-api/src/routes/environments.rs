//! `/projects/{project}/environments`: environments, their settings and key rotation.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::{App, CredentialKind};
use flagstaff_app::{EnvRef, WriteMeta};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Body, Caller, Comment, IfMatch, versioned};
use crate::routes::AppState;
use crate::routes::projects::{NewEnvironment, Rename};
use flagstaff_app::ErrorCode;
use flagstaff_http::ApiError;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/projects/{project}/environments",
            get(list_environments).post(create_environment),
        )
        .route(
            "/projects/{project}/environments/{environment}",
            get(get_environment)
                .put(update_environment)
                .delete(delete_environment),
        )
        .route(
            "/projects/{project}/environments/{environment}/keys/{kind}/rotate",
            post(rotate_key),
        )
}

/// The body of `PUT .../environments/{environment}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvironmentUpdate {
    #[serde(default)]
    key: Option<String>,
    name: String,
    /// Absent: unchanged.
    #[serde(default)]
    secure_mode: Option<bool>,
    /// Absent: unchanged.
    #[serde(default)]
    critical: Option<bool>,
    /// Absent: unchanged.
    #[serde(default)]
    approvals: Option<flagstaff_app::model::ApprovalSettings>,
    /// `#rrggbb`; `""` removes it; absent: unchanged.
    #[serde(default)]
    color: Option<String>,
    /// Absent: unchanged.
    #[serde(default, rename = "fdv1Fallback")]
    fdv1_fallback: Option<bool>,
}

async fn list_environments(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(
        json!({"items": app.list_environments(&actor, &project).await?}),
    ))
}

async fn create_environment(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(project): Path<String>,
    Body(new): Body<NewEnvironment>,
) -> Result<Response> {
    let created = app
        .create_environment(&actor, &project, &new.key, &new.name, &comment)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn get_environment(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.environment(&actor, &project, &environment).await?,
    ))
}

async fn update_environment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
    Body(update): Body<EnvironmentUpdate>,
) -> Result<Response> {
    Rename {
        key: update.key,
        name: String::new(),
    }
    .check(&environment)?;
    Ok(versioned(
        StatusCode::OK,
        &app.update_environment(
            EnvRef {
                project: &project,
                environment: &environment,
            },
            &update.name,
            flagstaff_app::EnvironmentSettings {
                secure_mode: update.secure_mode,
                critical: update.critical,
                approvals: update.approvals,
                color: update.color,
                fdv1_fallback: update.fdv1_fallback,
            },
            WriteMeta {
                actor: &actor,
                expected: version,
                comment: &comment,
            },
        )
        .await?,
    ))
}

async fn delete_environment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
) -> Result<StatusCode> {
    app.delete_environment(&actor, &project, &environment, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateRequest {
    /// How long the old key keeps working; 0 stops it at once.
    #[serde(default)]
    old_key_valid_for_seconds: u64,
}

async fn rotate_key(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, kind)): Path<(String, String, String)>,
    Body(request): Body<RotateRequest>,
) -> Result<Response> {
    let kind = match kind.as_str() {
        "sdk" => CredentialKind::Sdk,
        "mobile" => CredentialKind::Mobile,
        _ => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "rotate keys/sdk or keys/mobile; the client-side ID is public and does not rotate",
            ));
        }
    };
    let key = app
        .rotate_key(
            &actor,
            &project,
            &environment,
            kind,
            request.old_key_valid_for_seconds,
            &comment,
        )
        .await?;
    let field = if kind == CredentialKind::Sdk {
        "sdkKey"
    } else {
        "mobileKey"
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ field: key, "oldKeyValidForSeconds": request.old_key_valid_for_seconds })),
    )
        .into_response())
}
