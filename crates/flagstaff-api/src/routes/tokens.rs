//! `/tokens`: API tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::{App, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Body, Caller, Comment};
use crate::routes::AppState;
use flagstaff_app::ErrorCode;
use flagstaff_http::ApiError;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
}

async fn list_tokens(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.list_tokens(&actor).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewToken {
    name: String,
    /// The base role; `noAccess` (the default when `customRoles` is given) for a token that
    /// holds only its custom roles.
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    custom_roles: Vec<String>,
    #[serde(default)]
    projects: Option<Vec<String>>,
    /// `project/environment` entries.
    #[serde(default)]
    environments: Option<Vec<String>>,
    /// When it stops working (Unix ms).
    #[serde(default)]
    expires_at: Option<i64>,
}

async fn create_token(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(new): Body<NewToken>,
) -> Result<Response> {
    let role = match (new.role, new.custom_roles.is_empty()) {
        (Some(role), _) => role,
        (None, false) => Role::NoAccess,
        (None, true) => {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "a token needs a role, custom roles, or both",
            )
            .with_field("role"));
        }
    };
    let (info, secret) = app
        .create_token(
            &actor,
            flagstaff_app::NewToken {
                name: new.name,
                role,
                custom_roles: new.custom_roles,
                projects: new.projects,
                environments: new.environments,
                expires_at: new.expires_at,
            },
            &comment,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": info, "secret": secret})),
    )
        .into_response())
}

async fn revoke_token(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    app.revoke_token(&actor, &id, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}
