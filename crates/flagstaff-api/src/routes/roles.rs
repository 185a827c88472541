//! `/roles`, `/teams` and `/access/check`: custom roles, teams, and "why can't I?".

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::{AccessDecision, App, CustomRole, Team};
use serde::Deserialize;
use serde_json::Value;

use crate::Result;
use crate::extract::{Body, Caller, Comment, IfMatch, versioned};
use crate::routes::{AppState, items};

/// The routes of these resources.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/roles", get(list_roles).post(create_role))
        .route(
            "/roles/{key}",
            get(get_role).put(update_role).delete(delete_role),
        )
        .route("/teams", get(list_teams).post(create_team))
        .route(
            "/teams/{key}",
            get(get_team).put(update_team).delete(delete_team),
        )
        .route("/access/check", get(check_access))
}

async fn list_roles(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(items(app.list_roles(&actor).await?))
}

async fn create_role(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(role): Body<CustomRole>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.create_role(&actor, role, &comment).await?,
    ))
}

async fn get_role(
    State(app): AppState,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> Result<Response> {
    Ok(versioned(StatusCode::OK, &app.role(&actor, &key).await?))
}

async fn update_role(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(key): Path<String>,
    Body(role): Body<CustomRole>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.update_role(&actor, &key, role, version, &comment)
            .await?,
    ))
}

async fn delete_role(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    app.delete_role(&actor, &key, version, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_teams(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(items(app.list_teams(&actor).await?))
}

async fn create_team(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(team): Body<Team>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.create_team(&actor, team, &comment).await?,
    ))
}

async fn get_team(
    State(app): AppState,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> Result<Response> {
    Ok(versioned(StatusCode::OK, &app.team(&actor, &key).await?))
}

async fn update_team(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(key): Path<String>,
    Body(team): Body<Team>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.update_team(&actor, &key, team, version, &comment)
            .await?,
    ))
}

async fn delete_team(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    app.delete_team(&actor, &key, version, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckQuery {
    action: String,
    resource: String,
    #[serde(default)]
    member: Option<String>,
}

/// `GET /access/check?action=updateRules&resource=proj/default:env/production:flag/x[&member=]`:
/// whether the caller (or, for those who manage members, a member) may, and which role and
/// statement decided. Tags the resource carries go in the specifier (`flag/x;payments`).
async fn check_access(
    State(app): AppState,
    Caller(actor): Caller,
    Query(query): Query<CheckQuery>,
) -> Result<Json<AccessDecision>> {
    Ok(Json(
        app.check_access(
            &actor,
            &query.action,
            &query.resource,
            query.member.as_deref(),
        )
        .await?,
    ))
}
