//! Members: people who sign in to the dashboard.

use super::*;

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
        custom_roles: Vec::new(),
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
