//! First run, sign-in and sign-out.
//!
//! The first-run page exists only while no member exists. It asks for the admin API token that
//! `flagstaff serve` prints once on first start, so that whoever reaches a fresh server first
//! cannot make themselves its administrator (Jenkins' "initial admin password" idea, with a
//! credential we already have).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::{AppError, Member, Role, SESSION_HOURS};
use serde::Deserialize;

use crate::session::{self, SESSION_COOKIE, SIGN_IN_COOKIE, Viewer};
use crate::{DashState, Dashboard, PageError, render};
use flagstaff_http::ClientAddress;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    next: String,
    email: String,
    error: Option<String>,
    csrf: String,
    /// Offer "Sign in with SSO".
    sso: bool,
    /// Offer the email and password form.
    passwords: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    email: String,
    name: String,
    error: Option<String>,
    field: String,
    csrf: String,
}

/// Where to go after signing in: a path on this server, or `/`. A path is `/` followed by
/// anything but a second `/` or a `\` (which browsers read as another host), and has no
/// whitespace or control characters: browsers strip those, so `/\t/evil.example` would become
/// `//evil.example`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path[1..].starts_with('/')
        && !path.contains('\\')
        && path.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh random value (from the operating system) for the sign-in form's double-submit
/// cookie.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// `/`: the flags of the first project, or sign-in, or first run.
pub(crate) async fn home(
    State(dashboard): DashState,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if !dashboard.app.has_members().await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let secret = session::cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    let Ok(actor) = dashboard.app.authenticate(secret).await else {
        return Ok(Redirect::to("/sign-in").into_response());
    };
    let projects = dashboard.app.list_projects(&actor).await?;
    match projects.first() {
        Some(p) => Ok(Redirect::to(&format!("/projects/{}/flags", p.key)).into_response()),
        // Admins create one there; others are told to ask for access.
        None => Ok(Redirect::to("/projects").into_response()),
    }
}

fn with_sign_in_cookie(headers: &HeaderMap, page: Response, token: &str) -> Response {
    let mut page = page;
    page.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(headers, SIGN_IN_COOKIE, token, 3600),
    );
    page
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

pub(crate) async fn sign_in_page(
    State(dashboard): DashState,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, PageError> {
    if !dashboard.app.has_members().await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let csrf = random_token();
    let page = render(&SignInPage {
        next: safe_next(q.next.as_deref()),
        email: String::new(),
        error: None,
        csrf: csrf.clone(),
        sso: dashboard.sso_enabled(),
        passwords: dashboard.app.password_sign_in(),
    });
    Ok(with_sign_in_cookie(&headers, page, &csrf))
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// The double-submit check of forms shown before anyone is signed in.
fn form_is_ours(headers: &HeaderMap, csrf: &str) -> bool {
    session::same_origin(headers)
        && session::cookie(headers, SIGN_IN_COOKIE)
            .is_some_and(|cookie| !cookie.is_empty() && session::same_token(cookie, csrf))
}

fn signed_in(headers: &HeaderMap, token: &str, next: &str) -> Response {
    let mut response = Redirect::to(next).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(headers, SESSION_COOKIE, token, SESSION_HOURS * 3600),
    );
    h.append(
        header::SET_COOKIE,
        session::set_cookie(headers, SIGN_IN_COOKIE, "", 0),
    );
    response
}

pub(crate) async fn sign_in(
    State(dashboard): DashState,
    headers: HeaderMap,
    ClientAddress(from): ClientAddress,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    let next = safe_next(form.next.as_deref());
    let failed = |message: &str, status: StatusCode| {
        let csrf = random_token();
        let page = render(&SignInPage {
            next: next.clone(),
            email: form.email.clone(),
            error: Some(message.to_owned()),
            csrf: csrf.clone(),
            sso: dashboard.sso_enabled(),
            passwords: dashboard.app.password_sign_in(),
        });
        let mut page = with_sign_in_cookie(&headers, page, &csrf);
        *page.status_mut() = status;
        page
    };
    if !form_is_ours(&headers, &form.csrf) {
        return Ok(failed(
            "This form expired or did not come from this server. Try again.",
            StatusCode::FORBIDDEN,
        ));
    }
    match dashboard
        .app
        .sign_in(&form.email, &form.password, from)
        .await
    {
        Ok(session) => Ok(signed_in(&headers, &session.token, &next)),
        Err(AppError::Unauthorized) => Ok(failed(
            "That email and password do not match a member.",
            StatusCode::UNAUTHORIZED,
        )),
        Err(AppError::RateLimited { retry_after_ms }) => {
            let seconds = retry_after_ms.saturating_add(999) / 1000;
            let mut page = failed(
                &format!("Too many failed attempts. Try again in {seconds} s."),
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string()) {
                page.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Ok(page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn sign_out(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<SignOutForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    // Sessions end on the server too, so a copied cookie stops working at once.
    if let Err(e) = dashboard.app.sign_out(&viewer.secret).await {
        tracing::warn!(error = %e, "sign-out could not end the session");
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&headers, SESSION_COOKIE, "", 0),
    );
    Ok(response)
}

pub(crate) async fn setup_page(
    State(dashboard): DashState,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if dashboard.app.has_members().await? {
        return Ok(Redirect::to("/sign-in").into_response());
    }
    let csrf = random_token();
    let page = render(&SetupPage {
        email: String::new(),
        name: String::new(),
        error: None,
        field: String::new(),
        csrf: csrf.clone(),
    });
    Ok(with_sign_in_cookie(&headers, page, &csrf))
}

#[derive(Deserialize)]
pub(crate) struct SetupForm {
    token: String,
    email: String,
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn setup(
    State(dashboard): DashState,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Result<Response, PageError> {
    if dashboard.app.has_members().await? {
        return Ok(Redirect::to("/sign-in").into_response());
    }
    let failed = |message: String, field: &str, status: StatusCode| {
        let csrf = random_token();
        let page = render(&SetupPage {
            email: form.email.clone(),
            name: form.name.clone(),
            error: Some(message),
            field: field.to_owned(),
            csrf: csrf.clone(),
        });
        let mut page = with_sign_in_cookie(&headers, page, &csrf);
        *page.status_mut() = status;
        page
    };
    if !form_is_ours(&headers, &form.csrf) {
        return Ok(failed(
            "This form expired or did not come from this server. Try again.".into(),
            "",
            StatusCode::FORBIDDEN,
        ));
    }
    let actor = match dashboard.app.authenticate(form.token.trim()).await {
        Ok(actor) if actor.role == Role::Admin && actor.projects.is_none() => actor,
        _ => {
            return Ok(failed(
                "That is not an admin API token of this server. Use the one `flagstaff serve` \
                 printed when it first started."
                    .into(),
                "token",
                StatusCode::UNAUTHORIZED,
            ));
        }
    };
    let member = Member {
        email: form.email.clone(),
        name: form.name.clone(),
        role: Role::Admin,
        projects: None,
        custom_roles: Vec::new(),
    };
    match dashboard
        .app
        .create_member(&actor, member, &form.password, "first run: the first admin")
        .await
    {
        Ok(_) => {}
        Err(AppError::Invalid { field, message, .. }) => {
            return Ok(failed(message, &field, StatusCode::BAD_REQUEST));
        }
        Err(e) => return Err(e.into()),
    }
    let session = dashboard
        .app
        .sign_in(&form.email, &form.password, None)
        .await?;
    Ok(signed_in(&headers, &session.token, "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        for path in [
            "/",
            "/projects/default/flags",
            "/projects/default/flags?env=test&q=a%20b",
        ] {
            assert_eq!(safe_next(Some(path)), path);
        }
        for path in [
            "//evil.example/x",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "/\u{a0}/evil.example",
            "https://evil.example",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(path)), "/", "{path:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    secret: String,
    /// Whom the invitation is for; `None` when the link no longer works.
    email: Option<String>,
    name: String,
    error: Option<String>,
    field: String,
    csrf: String,
}

/// The page an invitation link opens: the invitee chooses a name and a password.
pub(crate) async fn invite_page(
    State(dashboard): DashState,
    headers: HeaderMap,
    axum::extract::Path(secret): axum::extract::Path<String>,
) -> Result<Response, PageError> {
    let email = match dashboard.app.invitation(&secret).await {
        Ok(invitation) => Some(invitation.email),
        Err(AppError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let gone = email.is_none();
    let csrf = random_token();
    let mut page = with_sign_in_cookie(
        &headers,
        render(&InvitePage {
            secret,
            email,
            name: String::new(),
            error: None,
            field: String::new(),
            csrf: csrf.clone(),
        }),
        &csrf,
    );
    if gone {
        *page.status_mut() = StatusCode::NOT_FOUND;
    }
    // The secret is in the address: keep it out of other sites' Referer headers.
    page.headers_mut().insert(
        header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    Ok(page)
}

#[derive(Deserialize)]
pub(crate) struct InviteForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// Accepts an invitation and signs the new member in.
pub(crate) async fn accept_invite(
    State(dashboard): DashState,
    headers: HeaderMap,
    ClientAddress(from): ClientAddress,
    axum::extract::Path(secret): axum::extract::Path<String>,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    let again = |email: Option<String>, error: String, field: String, status: StatusCode| {
        let csrf = random_token();
        let mut page = with_sign_in_cookie(
            &headers,
            render(&InvitePage {
                secret: secret.clone(),
                email,
                name: form.name.clone(),
                error: Some(error),
                field,
                csrf: csrf.clone(),
            }),
            &csrf,
        );
        *page.status_mut() = status;
        page
    };
    let invitation = match dashboard.app.invitation(&secret).await {
        Ok(invitation) => invitation,
        Err(AppError::NotFound(_)) => {
            return Ok(again(
                None,
                "This invitation no longer works.".into(),
                String::new(),
                StatusCode::NOT_FOUND,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if !form_is_ours(&headers, &form.csrf) {
        return Ok(again(
            Some(invitation.email),
            "This form expired or did not come from this server. Try again.".into(),
            String::new(),
            StatusCode::FORBIDDEN,
        ));
    }
    match dashboard
        .app
        .accept_invitation(&secret, &form.name, &form.password, from)
        .await
    {
        Ok(session) => Ok(signed_in(&headers, &session.token, "/")),
        Err(AppError::Invalid { field, message, .. }) => Ok(again(
            Some(invitation.email),
            message,
            field,
            StatusCode::BAD_REQUEST,
        )),
        Err(e) => Err(e.into()),
    }
}

// ----- single sign-on --------------------------------------------------------------------------

/// The flow cookie between `/sso/start` and `/sso/callback`.
#[cfg(feature = "oidc")]
const SSO_COOKIE: &str = "flagstaff_sso";

/// Where the provider sends people back: this server's own `/sso/callback`, as the browser
/// reaches it (register exactly this URL at the provider).
#[cfg(feature = "oidc")]
fn redirect_uri(headers: &HeaderMap) -> String {
    format!("{}/sso/callback", session::origin(headers))
}

/// `GET /sso/start?next=`: off to the identity provider.
#[cfg(feature = "oidc")]
pub(crate) async fn sso_start(
    State(dashboard): DashState,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, PageError> {
    let Some(sso) = dashboard.sso.as_ref() else {
        return Err(PageError(AppError::NotFound("single sign-on".into())));
    };
    let next = safe_next(q.next.as_deref());
    match sso
        .start(&redirect_uri(&headers), &next, dashboard.app.now_millis())
        .await
    {
        Ok((url, flow)) => {
            let mut response = Redirect::to(&url).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(&headers, SSO_COOKIE, &flow, 600),
            );
            Ok(response)
        }
        Err(e) => Ok(sign_in_failed(
            &dashboard,
            &headers,
            &next,
            &e.to_string(),
            StatusCode::BAD_GATEWAY,
        )),
    }
}

/// `GET /sso/callback`: back from the provider; signs the person in.
#[cfg(feature = "oidc")]
pub(crate) async fn sso_callback(
    State(dashboard): DashState,
    headers: HeaderMap,
    Query(callback): Query<crate::sso::Callback>,
) -> Result<Response, PageError> {
    let Some(sso) = dashboard.sso.as_ref() else {
        return Err(PageError(AppError::NotFound("single sign-on".into())));
    };
    let flow = session::cookie(&headers, SSO_COOKIE).map(str::to_owned);
    let finished = sso
        .finish(
            &callback,
            flow.as_deref(),
            &redirect_uri(&headers),
            dashboard.app.now_millis(),
        )
        .await;
    // The flow cookie is spent whatever happened: a replayed callback finds none.
    let clear = session::set_cookie(&headers, SSO_COOKIE, "", 0);
    let mut response = match finished {
        Ok((identity, next)) => match dashboard.app.sign_in_sso(identity, &sso.policy()).await {
            Ok(session) => signed_in(&headers, &session.token, &safe_next(Some(&next))),
            Err(e @ AppError::Invalid { .. }) => sign_in_failed(
                &dashboard,
                &headers,
                "/",
                &e.to_string(),
                StatusCode::FORBIDDEN,
            ),
            Err(e) => return Err(e.into()),
        },
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on refused");
            sign_in_failed(
                &dashboard,
                &headers,
                "/",
                &e.to_string(),
                StatusCode::FORBIDDEN,
            )
        }
    };
    response.headers_mut().append(header::SET_COOKIE, clear);
    Ok(response)
}

/// The sign-in page again, with what went wrong.
#[cfg(feature = "oidc")]
fn sign_in_failed(
    dashboard: &Dashboard,
    headers: &HeaderMap,
    next: &str,
    message: &str,
    status: StatusCode,
) -> Response {
    let csrf = random_token();
    let mut page = with_sign_in_cookie(
        headers,
        render(&SignInPage {
            next: next.to_owned(),
            email: String::new(),
            error: Some(message.to_owned()),
            csrf: csrf.clone(),
            sso: dashboard.sso_enabled(),
            passwords: dashboard.app.password_sign_in(),
        }),
        &csrf,
    );
    *page.status_mut() = status;
    page
}

/// The single sign-on routes (none without the `oidc` feature).
pub(crate) fn sso_routes() -> axum::Router<Arc<Dashboard>> {
    let router = axum::Router::new();
    #[cfg(feature = "oidc")]
    let router = router
        .route("/sso/start", axum::routing::get(sso_start))
        .route("/sso/callback", axum::routing::get(sso_callback));
    router
}
