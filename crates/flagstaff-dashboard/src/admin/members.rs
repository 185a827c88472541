//! Members: people who sign in to the dashboard. They join by invitation (the admin never
//! types their password), and their base role and custom roles can be changed here.

use flagstaff_app::{Invitation, NewInvitation};

use super::*;

/// A member as the page shows them: their roles, teams and open sessions.
struct MemberRow {
    member: Member,
    teams: Vec<String>,
    sessions: usize,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    nav: Nav,
    rows: Vec<MemberRow>,
    invitations: Vec<Invitation>,
    /// Every custom role's key and name, for the forms.
    roles: Vec<(String, String)>,
    /// A link just made, shown once.
    invited: Option<(String, String)>,
    error: Option<String>,
    field: String,
}

/// The base roles as the forms offer them, with what each means.
const BASE_ROLES: &[(&str, &str)] = &[
    ("noAccess", "No access: only what custom roles allow"),
    ("reader", "Reader: sees everything, changes nothing"),
    ("writer", "Writer: also changes flags and segments"),
    ("admin", "Admin: also members, roles, tokens, keys"),
];

impl MembersPage {
    fn base_roles(&self) -> &'static [(&'static str, &'static str)] {
        BASE_ROLES
    }
}

async fn members_page(
    dashboard: &Dashboard,
    (viewer, headers): (&Viewer, &HeaderMap),
    project: Option<String>,
    invited: Option<(String, String)>,
    error: Option<(String, String)>,
) -> Result<Response, PageError> {
    let nav = admin_nav(dashboard, viewer, project, "members").await?;
    let app = &dashboard.app;
    let members = app.list_members(&viewer.actor).await?;
    let tokens = app.list_tokens(&viewer.actor).await?;
    let teams = app.list_teams(&viewer.actor).await?;
    let rows = members
        .into_iter()
        .map(|member| MemberRow {
            teams: teams
                .iter()
                .filter(|t| t.value.members.contains(&member.email))
                .map(|t| t.value.name.clone())
                .collect(),
            sessions: tokens
                .iter()
                .filter(|t| t.member.as_deref() == Some(member.email.as_str()))
                .count(),
            member,
        })
        .collect();
    let roles = app
        .list_roles(&viewer.actor)
        .await?
        .into_iter()
        .map(|r| (r.value.key, r.value.name))
        .collect();
    let invited =
        invited.map(|(email, path)| (email, format!("{}{path}", session::origin(headers))));
    let failed = error.is_some();
    let (error, field) = error.map_or((None, String::new()), |(m, f)| (Some(m), f));
    let mut page = render(&MembersPage {
        nav,
        rows,
        invitations: app.list_invitations(&viewer.actor).await?,
        roles,
        invited,
        error,
        field,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn members(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Query(q): Query<ProjectQuery>,
) -> Result<Response, PageError> {
    members_page(&dashboard, (&viewer, &headers), q.project, None, None).await
}

/// A use-case error shown on the page with its field marked, or the error page.
async fn shown(
    dashboard: &Dashboard,
    (viewer, headers): (&Viewer, &HeaderMap),
    error: AppError,
) -> Response {
    let message = match &error {
        AppError::Invalid { field, message, .. } => Some((message.clone(), field.clone())),
        AppError::AlreadyExists(_) | AppError::Forbidden(_) => {
            Some((error.to_string(), "email".into()))
        }
        _ => None,
    };
    match message {
        Some(message) => members_page(dashboard, (viewer, headers), None, None, Some(message))
            .await
            .unwrap_or_else(IntoResponse::into_response),
        None => PageError(error).into_response(),
    }
}

/// Invites someone: the page then shows the one-time link to hand over.
pub(crate) async fn invite(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(field(&fields, "csrf")))?;
    let new = NewInvitation {
        email: field(&fields, "email").to_owned(),
        role: role(field(&fields, "role")),
        custom_roles: checked(&fields, "role_"),
        projects: None,
    };
    match dashboard
        .app
        .invite(&viewer.actor, new, "invited in the dashboard")
        .await
    {
        Ok((invitation, secret)) => members_page(
            &dashboard,
            (&viewer, &headers),
            None,
            Some((invitation.email, format!("/invite/{secret}"))),
            None,
        )
        .await
        .map_err(IntoResponse::into_response),
        Err(e) => Ok(shown(&dashboard, (&viewer, &headers), e).await),
    }
}

/// Changes a member's base role and custom roles.
pub(crate) async fn change_roles(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(email): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(field(&fields, "csrf")))?;
    let change = flagstaff_app::MemberChange {
        role: Some(role(field(&fields, "role"))),
        custom_roles: Some(checked(&fields, "role_")),
        projects: None,
    };
    match dashboard
        .app
        .update_member(&viewer.actor, &email, change, "changed in the dashboard")
        .await
    {
        Ok(_) => Ok(Redirect::to("/members").into_response()),
        Err(e) => Ok(shown(&dashboard, (&viewer, &headers), e).await),
    }
}

pub(crate) async fn revoke_invitation(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    dashboard
        .app
        .revoke_invitation(&viewer.actor, &id, "revoked in the dashboard")
        .await
        .map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to("/members").into_response())
}

pub(crate) async fn remove_member(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(email): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    if viewer.name == email {
        return Err(PageError(AppError::Forbidden(
            "you cannot remove yourself; ask another admin".into(),
        ))
        .into_response());
    }
    dashboard
        .app
        .delete_member(&viewer.actor, &email, "removed in the dashboard")
        .await
        .map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to("/members").into_response())
}
