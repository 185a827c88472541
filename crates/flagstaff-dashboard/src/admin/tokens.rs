//! API tokens: created with the secret shown once, listed, revoked.

use super::*;

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
            NewToken::new(form.name.clone(), role(&form.role)),
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
