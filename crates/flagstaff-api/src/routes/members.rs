//! `/members` and `/sessions`: people who sign in, and signing in.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::{App, Member, MemberChange, NewInvitation, Role};
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
        .route(
            "/members/{email}",
            axum::routing::delete(delete_member).patch(update_member),
        )
        .route("/sessions", post(sign_in))
        .route("/invitations", get(list_invitations).post(invite))
        .route(
            "/invitations/{id}",
            axum::routing::delete(revoke_invitation),
        )
        .route("/invitations/accept", post(accept_invitation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewMember {
    email: String,
    name: String,
    role: Role,
    #[serde(default)]
    projects: Option<Vec<String>>,
    #[serde(default)]
    custom_roles: Vec<String>,
    password: String,
}

/// What `PATCH /members/{email}` may change; absent fields stay as they are, and
/// `"projects": null` removes the project limit.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MemberPatch {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    custom_roles: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    projects: Option<Option<Vec<String>>>,
}

/// Tells `"projects": null` (remove the limit) from an absent field (keep it).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<Vec<String>>>, D::Error> {
    Option::<Vec<String>>::deserialize(deserializer).map(Some)
}

async fn update_member(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(email): Path<String>,
    Body(patch): Body<MemberPatch>,
) -> Result<Json<Member>> {
    let change = MemberChange {
        role: patch.role,
        custom_roles: patch.custom_roles,
        projects: patch.projects,
    };
    Ok(Json(
        app.update_member(&actor, &email, change, &comment).await?,
    ))
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
        custom_roles: new.custom_roles,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InvitationRequest {
    email: String,
    /// The base role; `noAccess` when only `customRoles` are given, `reader` when neither is.
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    custom_roles: Vec<String>,
    #[serde(default)]
    projects: Option<Vec<String>>,
}

/// Invites someone; the answer holds the one-time secret and the dashboard path that uses it
/// (`/invite/<secret>`), shown only now.
async fn invite(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(request): Body<InvitationRequest>,
) -> Result<Response> {
    let role = request.role.unwrap_or(if request.custom_roles.is_empty() {
        Role::Reader
    } else {
        Role::NoAccess
    });
    let (invitation, secret) = app
        .invite(
            &actor,
            NewInvitation {
                email: request.email,
                role,
                custom_roles: request.custom_roles,
                projects: request.projects,
            },
            &comment,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"invitation": invitation, "secret": secret, "path": format!("/invite/{secret}")})),
    )
        .into_response())
}

async fn list_invitations(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.list_invitations(&actor).await?})))
}

async fn revoke_invitation(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    app.revoke_invitation(&actor, &id, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Acceptance {
    secret: String,
    name: String,
    password: String,
}

/// Accepts an invitation with the name and password the invitee chose, and signs them in. Needs
/// no token: the secret is the credential (128 random bits, usable once).
async fn accept_invitation(
    State(app): AppState,
    ClientAddress(from): ClientAddress,
    Body(acceptance): Body<Acceptance>,
) -> Result<Response> {
    let session = app
        .accept_invitation(
            &acceptance.secret,
            &acceptance.name,
            &acceptance.password,
            from,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}
