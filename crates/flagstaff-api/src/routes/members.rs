//! `/members` and `/sessions`: people who sign in, and signing in.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::{App, Member, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Body, Caller, Comment};
use crate::routes::AppState;
use flagstaff_http::ClientAddress;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/members", get(list_members).post(create_member))
        .route("/members/{email}", axum::routing::delete(delete_member))
        .route("/sessions", post(sign_in))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    email: String,
    name: String,
    role: Role,
    #[serde(default)]
    projects: Option<Vec<String>>,
    password: String,
}

async fn list_members(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.list_members(&actor).await?})))
}

async fn create_member(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(new): Body<NewMember>,
) -> Result<Response> {
    let member = Member {
        email: new.email,
        name: new.name,
        role: new.role,
        projects: new.projects,
    };
    let created = app
        .create_member(&actor, member, &new.password, &comment)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn delete_member(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(email): Path<String>,
) -> Result<StatusCode> {
    app.delete_member(&actor, &email, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

/// Signs a member in; the only `/api/v1` route that needs no token.
async fn sign_in(
    State(app): AppState,
    ClientAddress(from): ClientAddress,
    Body(request): Body<SignIn>,
) -> Result<Response> {
    let session = app.sign_in(&request.email, &request.password, from).await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}
