//! Environments and their keys, members and API tokens.
//!
//! Keys are stored only as hashes, so the SDK and mobile keys can be shown (and copied) exactly
//! once: when they are rotated here. The client-side ID is public by design (it is in every web
//! page that uses the browser SDK) and can be copied at any time.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::{AppError, CredentialKind, EnvironmentSettings, Member, Role, TokenInfo};
use flagstaff_app::{EnvRef, WriteMeta};
use serde::Deserialize;

use crate::session::Viewer;
use crate::{DashState, Dashboard, Nav, PageError, render, time};

pub(crate) struct ShownEnvironment {
    pub key: String,
    pub name: String,
    pub client_side_id: String,
    pub sdk_key_hint: String,
    pub mobile_key_hint: String,
    pub secure_mode: bool,
    pub critical: bool,
}

#[derive(Template)]
#[template(path = "environments.html")]
struct EnvironmentsPage {
    nav: Nav,
    environments: Vec<ShownEnvironment>,
    /// A key just rotated: (environment, what, the key), shown once.
    revealed: Option<(String, String, String)>,
    error: Option<String>,
}

async fn environments_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    project: &str,
    revealed: Option<(String, String, String)>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        dashboard,
        viewer,
        project,
        None,
        "environments",
        format!("/projects/{project}/environments"),
    )
    .await?;
    let environments = nav
        .environments
        .iter()
        .map(|e| ShownEnvironment {
            key: e.key.clone(),
            name: e.name.clone(),
            client_side_id: e.client_side_id.clone(),
            sdk_key_hint: e.sdk_key_hint.clone(),
            mobile_key_hint: e.mobile_key_hint.clone(),
            secure_mode: e.secure_mode,
            critical: e.critical,
        })
        .collect();
    let failed = error.is_some();
    let mut page = render(&EnvironmentsPage {
        nav,
        environments,
        revealed,
        error,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn environments(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Result<Response, PageError> {
    environments_page(&dashboard, &viewer, &project, None, None).await
}

#[derive(Deserialize)]
pub(crate) struct RotateForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    #[serde(default)]
    grace_hours: u64,
}

pub(crate) async fn rotate(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, environment)): Path<(String, String)>,
    Form(form): Form<RotateForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let (kind, label) = match form.kind.as_str() {
        "mobile" => (CredentialKind::Mobile, "mobile key"),
        _ => (CredentialKind::Sdk, "SDK key"),
    };
    let result = dashboard
        .app
        .rotate_key(
            &viewer.actor,
            &project,
            &environment,
            kind,
            form.grace_hours.min(24 * 7) * 3600,
            "rotated in the dashboard",
        )
        .await;
    let page = match result {
        Ok(key) => {
            environments_page(
                &dashboard,
                &viewer,
                &project,
                Some((environment, label.to_owned(), key)),
                None,
            )
            .await
        }
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e)),
        Err(e) => environments_page(&dashboard, &viewer, &project, None, Some(e.to_string())).await,
    };
    page.map_err(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    critical: Option<String>,
    #[serde(default)]
    secure_mode: Option<String>,
}

pub(crate) async fn environment_settings(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, environment)): Path<(String, String)>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let result = async {
        let current = app
            .environment(&viewer.actor, &project, &environment)
            .await?;
        app.update_environment(
            EnvRef {
                project: &project,
                environment: &environment,
            },
            &current.value.name,
            EnvironmentSettings {
                secure_mode: Some(form.secure_mode.is_some()),
                critical: Some(form.critical.is_some()),
            },
            WriteMeta {
                actor: &viewer.actor,
                expected: current.version,
                comment: "changed in the dashboard",
            },
        )
        .await
    }
    .await;
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/projects/{project}/environments")).into_response()),
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e).into_response()),
        Err(e) => environments_page(&dashboard, &viewer, &project, None, Some(e.to_string()))
            .await
            .map_err(IntoResponse::into_response),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct ProjectQuery {
    project: Option<String>,
}

/// The frame for pages outside any project: the viewer's first project (or the one named).
async fn admin_nav(
    dashboard: &Dashboard,
    viewer: &Viewer,
    project: Option<String>,
    tab: &'static str,
) -> Result<Nav, PageError> {
    if !viewer.is_admin() {
        return Err(PageError(AppError::Forbidden(
            "members and API tokens are managed by admins".into(),
        )));
    }
    let project = match project {
        Some(p) => p,
        None => dashboard
            .app
            .list_projects(&viewer.actor)
            .await?
            .first()
            .map(|p| p.key.clone())
            .unwrap_or_default(),
    };
    Nav::new(dashboard, viewer, &project, None, tab, format!("/{tab}")).await
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    nav: Nav,
    members: Vec<Member>,
    sessions: Vec<(String, usize)>,
    error: Option<String>,
    field: String,
}

async fn members_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    project: Option<String>,
    error: Option<(String, String)>,
) -> Result<Response, PageError> {
    let nav = admin_nav(dashboard, viewer, project, "members").await?;
    let members = dashboard.app.list_members(&viewer.actor).await?;
    let tokens = dashboard.app.list_tokens(&viewer.actor).await?;
    let sessions = members
        .iter()
        .map(|m| {
            let n = tokens
                .iter()
                .filter(|t| t.member.as_deref() == Some(m.email.as_str()))
                .count();
            (m.email.clone(), n)
        })
        .collect();
    let failed = error.is_some();
    let (error, field) = error.map_or((None, String::new()), |(m, f)| (Some(m), f));
    let mut page = render(&MembersPage {
        nav,
        members,
        sessions,
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
    viewer: Viewer,
    Query(q): Query<ProjectQuery>,
) -> Result<Response, PageError> {
    members_page(&dashboard, &viewer, q.project, None).await
}

#[derive(Deserialize)]
pub(crate) struct MemberForm {
    #[serde(default)]
    csrf: String,
    email: String,
    name: String,
    role: String,
    password: String,
}

fn role(text: &str) -> Role {
    match text {
        "admin" => Role::Admin,
        "writer" => Role::Writer,
        _ => Role::Reader,
    }
}

pub(crate) async fn add_member(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<MemberForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let member = Member {
        email: form.email,
        name: form.name,
        role: role(&form.role),
        projects: None,
    };
    match dashboard
        .app
        .create_member(
            &viewer.actor,
            member,
            &form.password,
            "added in the dashboard",
        )
        .await
    {
        Ok(_) => Ok(Redirect::to("/members").into_response()),
        Err(AppError::Invalid { field, message, .. }) => {
            members_page(&dashboard, &viewer, None, Some((message, field)))
                .await
                .map_err(IntoResponse::into_response)
        }
        Err(e @ AppError::AlreadyExists(_)) => members_page(
            &dashboard,
            &viewer,
            None,
            Some((e.to_string(), "email".into())),
        )
        .await
        .map_err(IntoResponse::into_response),
        Err(e) => Err(PageError(e).into_response()),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
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

pub(crate) struct ShownToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub hint: String,
    pub scope: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    nav: Nav,
    tokens: Vec<ShownToken>,
    revealed: Option<(String, String)>,
    error: Option<String>,
}

fn shown(t: TokenInfo) -> ShownToken {
    let mut scope = Vec::new();
    if let Some(p) = &t.projects {
        scope.push(format!("projects {}", p.join(", ")));
    }
    if let Some(e) = &t.environments {
        scope.push(format!("environments {}", e.join(", ")));
    }
    ShownToken {
        id: t.id,
        name: t.name,
        role: format!("{:?}", t.role).to_lowercase(),
        hint: t.hint,
        scope: if scope.is_empty() {
            "everything".into()
        } else {
            scope.join("; ")
        },
        expires: t.expires_at.map(time).unwrap_or_else(|| "never".into()),
    }
}

async fn tokens_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    revealed: Option<(String, String)>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let nav = admin_nav(dashboard, viewer, None, "tokens").await?;
    // Sign-in sessions are tokens too, but they are listed per member, not here.
    let tokens = dashboard
        .app
        .list_tokens(&viewer.actor)
        .await?
        .into_iter()
        .filter(|t| t.member.is_none())
        .map(shown)
        .collect();
    let failed = error.is_some();
    let mut page = render(&TokensPage {
        nav,
        tokens,
        revealed,
        error,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn tokens(
    State(dashboard): DashState,
    viewer: Viewer,
) -> Result<Response, PageError> {
    tokens_page(&dashboard, &viewer, None, None).await
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
}

pub(crate) async fn create_token(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<TokenForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let result = dashboard
        .app
        .create_token(
            &viewer.actor,
            &form.name,
            role(&form.role),
            None,
            None,
            "created in the dashboard",
        )
        .await;
    let page = match result {
        Ok((info, secret)) => {
            tokens_page(&dashboard, &viewer, Some((info.name, secret)), None).await
        }
        Err(e @ AppError::Invalid { .. }) => {
            tokens_page(&dashboard, &viewer, None, Some(e.to_string())).await
        }
        Err(e) => Err(PageError(e)),
    };
    page.map_err(IntoResponse::into_response)
}

pub(crate) async fn revoke_token(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    dashboard
        .app
        .revoke_token(&viewer.actor, &id, "revoked in the dashboard")
        .await
        .map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to("/tokens").into_response())
}
