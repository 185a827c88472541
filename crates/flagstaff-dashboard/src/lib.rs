//! The web dashboard: flag management for people who are not developers.
//!
//! Server-rendered HTML (askama templates under `templates/`, checked at compile time) with the
//! project's own small JavaScript (`assets/`) for what HTML alone cannot do: the targeting
//! editor, the review-before-save dialog, copying keys and live updates over EventSource. There
//! is no build step and no third-party front-end code.
//!
//! Every page goes through the same use cases as the API (`flagstaff-app`), as the signed-in
//! member: the dashboard never gets more rights than the person using it, and a reader's
//! missing buttons are a courtesy, not the protection (the application refuses the change).
//!
//! Map:
//! - [`session`]: cookie, viewer, CSRF.
//! - [`describe`]: flags, targeting and segments in words, and the diff people review.
//! - `auth.rs` first run, sign-in, sign-out; `flags.rs` list, create, flag page, saves;
//!   `segments.rs`; `context.rs` ("test a context"); `history.rs`; `admin.rs` environments and
//!   keys, members, tokens; `live.rs` the change stream pages listen to.

#![forbid(unsafe_code)]

mod access;
mod admin;
mod auth;
mod change_requests;
mod compare;
mod context;
pub mod describe;
mod entitlements;
mod errors;
mod experiments;
mod flag_changes;
mod flag_settings;
mod flags;
mod guarded_rollouts;
mod history;
mod insights;
mod live;
mod metrics;
mod projects;
mod segment_keys;
mod segments;
pub mod session;
#[cfg(feature = "oidc")]
pub mod sso;
mod toggle;
mod workflows;

use std::sync::Arc;
use std::time::Instant;

pub(crate) use errors::excerpt;

use askama::Template;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use flagstaff_app::model::Environment;
use flagstaff_app::{App, AppError};

pub use session::Viewer;

/// The dashboard's shared state.
#[derive(Debug)]
pub struct Dashboard {
    app: App,
    /// OpenID Connect single sign-on, when configured.
    #[cfg(feature = "oidc")]
    sso: Option<Arc<sso::Sso>>,
    /// Set when the server shuts down, so that live streams end instead of holding it up.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Dashboard {
    /// A dashboard over `app`.
    pub fn new(app: App) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            app,
            #[cfg(feature = "oidc")]
            sso: None,
            closing: tokio::sync::watch::channel(false).0,
        })
    }

    /// A dashboard over `app` whose sign-in page also offers single sign-on through `config`'s
    /// OpenID Provider.
    #[cfg(feature = "oidc")]
    pub fn with_sso(app: App, config: sso::OidcConfig) -> Result<Arc<Dashboard>, sso::SsoError> {
        Ok(Arc::new(Dashboard {
            app,
            sso: Some(sso::Sso::new(config)?),
            closing: tokio::sync::watch::channel(false).0,
        }))
    }

    /// Whether the sign-in page offers single sign-on.
    fn sso_enabled(&self) -> bool {
        #[cfg(feature = "oidc")]
        return self.sso.is_some();
        #[cfg(not(feature = "oidc"))]
        false
    }

    /// Ends the live-update streams (call when the server starts shutting down).
    pub fn shutdown(&self) {
        self.closing.send_replace(true);
    }
}

type DashState = State<Arc<Dashboard>>;

/// The dashboard's routes, to merge beside the API and SDK delivery.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(auth::home))
        .route("/setup", get(auth::setup_page).post(auth::setup))
        .route("/sign-in", get(auth::sign_in_page).post(auth::sign_in))
        .route("/sign-out", post(auth::sign_out))
        .merge(auth::sso_routes())
        .route(
            "/invite/{secret}",
            get(auth::invite_page).post(auth::accept_invite),
        )
        .route("/assets/{name}", get(asset))
        .route(
            "/projects/{project}/flags",
            get(flags::list).post(flags::create),
        )
        .route("/projects/{project}/flags-new", get(flags::new_page))
        .route("/projects/{project}/flags/{key}", get(flags::page))
        .route(
            "/projects/{project}/flags/{key}/review",
            post(flag_changes::review),
        )
        .route(
            "/projects/{project}/flags/{key}/targeting",
            post(flag_changes::save),
        )
        .route(
            "/projects/{project}/flags/{key}/compare",
            get(compare::page).post(compare::copy),
        )
        .route(
            "/projects/{project}/flags/{key}/target",
            post(entitlements::target),
        )
        .route(
            "/projects/{project}/flags/{key}/toggle",
            get(toggle::confirm_page).post(toggle::toggle),
        )
        .route(
            "/projects/{project}/flags/{key}/settings",
            get(flag_settings::page).post(flag_settings::post),
        )
        .route(
            "/projects/{project}/flags/{key}/request",
            post(flag_changes::request),
        )
        .route(
            "/projects/{project}/flags/{key}/schedule",
            post(workflows::schedule),
        )
        .route(
            "/projects/{project}/flags/{key}/schedules/{id}/cancel",
            post(workflows::cancel_schedule),
        )
        .route(
            "/projects/{project}/flags/{key}/triggers/{id}",
            post(workflows::trigger),
        )
        .route(
            "/projects/{project}/change-requests",
            get(change_requests::requests),
        )
        .route(
            "/projects/{project}/change-requests/{id}",
            get(change_requests::request_page).post(change_requests::act_on_request),
        )
        .route(
            "/projects/{project}/flags/{key}/archive",
            post(flags::archive),
        )
        .route(
            "/projects/{project}/flags/{key}/history",
            get(history::flag),
        )
        .route(
            "/projects/{project}/segments",
            get(segments::list).post(segments::create),
        )
        .route("/projects/{project}/segments/{key}", get(segments::page))
        .route(
            "/projects/{project}/metrics",
            get(metrics::list).post(metrics::create),
        )
        .route(
            "/projects/{project}/experiments",
            get(experiments::list).post(experiments::create),
        )
        .route(
            "/projects/{project}/experiments/{key}",
            get(experiments::page),
        )
        .route(
            "/projects/{project}/experiments/{key}/{action}",
            post(experiments::act),
        )
        .route(
            "/projects/{project}/flags/{key}/guarded-rollout",
            get(guarded_rollouts::page).post(guarded_rollouts::start),
        )
        .route(
            "/projects/{project}/flags/{key}/guarded-rollout/{action}",
            post(guarded_rollouts::act),
        )
        .route(
            "/projects/{project}/segments/{key}/review",
            post(segments::review),
        )
        .route(
            "/projects/{project}/segments/{key}/save",
            post(segments::save),
        )
        .route(
            "/projects/{project}/segments/{key}/copy",
            post(segments::copy),
        )
        .route(
            "/projects/{project}/segments/{key}/keys",
            post(segment_keys::keys),
        )
        .route(
            "/projects/{project}/segments/{key}/members",
            post(segments::upload_members),
        )
        .route(
            "/projects/{project}/segments/{key}/request",
            post(segments::request),
        )
        .route("/projects/{project}/test", get(context::page))
        .route(
            "/projects/{project}/flags/{key}/insights",
            get(insights::flag),
        )
        .route("/projects/{project}/stale-flags", get(insights::stale))
        .route("/projects/{project}/contexts", get(insights::contexts))
        .route("/projects/{project}/events", get(insights::events))
        .route("/projects/{project}/history", get(history::project))
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{project}/manage", post(projects::act))
        .route(
            "/projects/{project}/environments",
            get(admin::environments).post(admin::create_environment),
        )
        .route(
            "/projects/{project}/environments/{environment}/delete",
            post(admin::delete_environment),
        )
        .route(
            "/projects/{project}/environments/{environment}/rotate",
            post(admin::rotate),
        )
        .route(
            "/projects/{project}/environments/{environment}/settings",
            post(admin::environment_settings),
        )
        .route("/projects/{project}/live", get(live::stream))
        .route("/members", get(admin::members))
        .route("/members/invite", post(admin::invite))
        .route("/members/{email}/roles", post(admin::change_roles))
        .route(
            "/members/invitations/{id}/revoke",
            post(admin::revoke_invitation),
        )
        .route("/members/{email}/remove", post(admin::remove_member))
        .route("/roles", get(admin::roles).post(admin::create_role))
        .route("/roles/{key}", post(admin::update_role))
        .route("/roles/{key}/delete", post(admin::delete_role))
        .route("/teams", post(admin::save_team))
        .route("/teams/{key}/delete", post(admin::delete_team))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/tokens/{id}/revoke", post(admin::revoke_token))
        .route(
            "/webhooks",
            get(admin::webhooks).post(admin::create_webhook),
        )
        .route("/webhooks/{id}", post(admin::webhook_action))
        .layer(axum::middleware::from_fn(server_timing))
        .with_state(dashboard)
}

/// Adds `Server-Timing: app;dur=…` (milliseconds) so that browsers' developer tools and the
/// dashboard benchmark see how long the server spent on a page, and forbids framing
/// (clickjacking) and caching of pages that show private data.
async fn server_timing(request: Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let is_asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        headers.insert("server-timing", v);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !is_asset && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The stylesheet and scripts, compiled into the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
    (
        "editor.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/editor.js"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Percent-encodes a query value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` are escaped so that no
/// value (a flag name, a clause value) can end the script element.
pub(crate) fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A time (Unix ms) as UTC text, `2026-11-21 14:03`.
pub(crate) fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian, UTC.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// What every page's frame shows: where we are and who is looking.
#[derive(Clone, Debug)]
pub(crate) struct Nav {
    pub project: String,
    /// The projects the viewer may see, (key, name), for the switcher.
    pub projects: Vec<(String, String)>,
    pub environment: String,
    pub environments: Vec<Environment>,
    pub viewer: String,
    pub role: String,
    pub csrf: String,
    pub admin: bool,
    /// Whether the viewer may create flags in this project (the server decides every change).
    pub writer: bool,
    /// Whether the viewer may create segments in this environment.
    pub segments_writer: bool,
    /// Which tab is current.
    pub tab: &'static str,
    /// The change-feed position the page was rendered at (for live updates).
    pub seq: u64,
    /// The page's own path without the query, for the environment switcher.
    pub path: String,
}

impl Nav {
    /// The frame for `viewer` on `tab` of `project`, in `environment` (or the project's first).
    pub(crate) async fn new(
        dashboard: &Dashboard,
        viewer: &Viewer,
        project: &str,
        environment: Option<&str>,
        tab: &'static str,
        path: String,
    ) -> Result<Nav, PageError> {
        // Pages outside any project (the projects list when there are none) have no
        // environments.
        let environments = if project.is_empty() {
            Vec::new()
        } else {
            dashboard
                .app
                .list_environments(&viewer.actor, project)
                .await?
        };
        let projects = dashboard
            .app
            .list_projects(&viewer.actor)
            .await?
            .into_iter()
            .map(|p| (p.key, p.name))
            .collect();
        let environment = match environment {
            Some(e) if environments.iter().any(|x| x.key == e) => e.to_owned(),
            Some(e) => {
                return Err(PageError(AppError::NotFound(format!("environment {e:?}"))));
            }
            None => environments
                .iter()
                .find(|e| e.critical)
                .or(environments.first())
                .map(|e| e.key.clone())
                .unwrap_or_default(),
        };
        // Whether to offer "create" at all: decided on any flag of the project, and on any
        // segment of this environment (with its critical tag).
        let any_flag = flagstaff_app::policy::Resource::new()
            .with("proj", project, &[])
            .with("env", "*", &[])
            .with("flag", "*", &[]);
        let critical = environments
            .iter()
            .any(|e| e.key == environment && e.critical);
        let env_tags: &[&str] = if critical { &["critical"] } else { &[] };
        let any_segment = flagstaff_app::policy::Resource::new()
            .with("proj", project, &[])
            .with("env", &environment, env_tags)
            .with("segment", "*", &[]);
        let segments_writer = viewer.actor.decide("createSegment", &any_segment).allowed;
        Ok(Nav {
            project: project.to_owned(),
            projects,
            environment,
            environments,
            viewer: viewer.name.clone(),
            role: viewer.actor.role.as_str().to_owned(),
            csrf: viewer.csrf.clone(),
            admin: viewer.is_admin(),
            writer: viewer.actor.decide("createFlag", &any_flag).allowed,
            segments_writer,
            tab,
            // The feed's head, not this node's last commit: with several nodes sharing a
            // database the page already shows their changes, and a live stream starting
            // before them would report them again and reload the page over and over.
            seq: dashboard.app.head().await.map_err(PageError)?,
            path,
        })
    }

    /// The current environment, if the project has any.
    pub(crate) fn current(&self) -> Option<&Environment> {
        self.environments.iter().find(|e| e.key == self.environment)
    }

    /// The current environment's colour (`#rrggbb`), if it has one.
    pub(crate) fn color(&self) -> Option<&str> {
        self.current().and_then(|e| e.color.as_deref())
    }

    /// Whether the current environment asks for a typed confirmation.
    pub(crate) fn critical(&self) -> bool {
        self.current().is_some_and(|e| e.critical)
    }
}

/// An error shown as a page.
#[derive(Debug)]
pub(crate) struct PageError(pub AppError);

impl From<AppError> for PageError {
    fn from(e: AppError) -> PageError {
        PageError(e)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    title: &'static str,
    message: String,
}

/// The status an error is answered with: its code's (`flagstaff_app::ErrorCode`).
pub(crate) fn status_of(error: &AppError) -> StatusCode {
    StatusCode::from_u16(error.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn public_message(error: &AppError) -> String {
    match status_of(error) {
        StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(%error, "dashboard request failed");
            "Something went wrong on the server; it has been logged. Try again.".into()
        }
        _ => error.to_string(),
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNAUTHORIZED => "Signed out",
            StatusCode::CONFLICT => "Changed meanwhile",
            StatusCode::BAD_REQUEST => "Not valid",
            _ => "Something went wrong",
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title,
            message: public_message(&self.0),
        };
        (status, render(&page)).into_response()
    }
}

/// A JSON request body from the page's scripts: the same extractor as the API's, so a malformed
/// body is `400 invalid_body` naming the field and an oversized one `413 payload_too_large`.
pub(crate) use flagstaff_http::JsonBody;

/// An error answered as JSON to the page's scripts: the API's shape and codes.
pub(crate) fn json_error(error: AppError) -> Response {
    flagstaff_http::ApiError::from(error).into_response()
}

/// Renders a template to an HTML response.
pub(crate) fn render<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(1_795_000_000_000), "2026-11-18 11:06 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn script_json_cannot_close_the_script() {
        let s = script_json(&serde_json::json!({"name": "</script><script>alert(1)</script>"}));
        assert!(!s.contains("</script"));
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["name"], "</script><script>alert(1)</script>");
    }
}
