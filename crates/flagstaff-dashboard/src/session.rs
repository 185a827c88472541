//! Who is looking: the session cookie, the signed-in viewer and CSRF protection.
//!
//! Signing in issues a member session (an API token with the member's role that expires after
//! `SESSION_HOURS`, see `flagstaff_app::members`). The browser keeps it in an `HttpOnly`,
//! `SameSite=Lax` cookie that scripts cannot read; it is `Secure` unless the dashboard is
//! reached over plain HTTP on a loopback address, where browsers would refuse to send it. A
//! `Secure` cookie's name carries the `__Host-` prefix, so that browsers accept it only from
//! this host over HTTPS, with `Path=/` and no `Domain`: a sibling subdomain or a plain-HTTP
//! page on the network cannot plant or overwrite it (RFC 6265bis §4.1.3.2).
//!
//! Every state-changing request must prove it comes from a page we served (OWASP's synchronizer
//! token pattern): pages carry a CSRF token derived from the session secret, and forms send it
//! as the field `csrf`, scripts as the header `X-CSRF-Token`. The token is SHA-256 over a
//! domain-separation label and the session secret, so it cannot be computed without the
//! cookie, needs no server-side storage and dies with the session. It is compared in constant
//! time. Requests whose `Origin` names another site are refused before any of that, and
//! sign-in (which has no session yet) uses a double-submit cookie.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::{Actor, Role};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Dashboard;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "flagstaff_session";
/// The sign-in form's double-submit cookie.
pub const SIGN_IN_COOKIE: &str = "flagstaff_signin";

/// The name a cookie has on this request: `__Host-` and `name` when cookies are `Secure`.
fn cookie_name(headers: &HeaderMap, name: &str) -> String {
    if secure(headers) {
        format!("__Host-{name}")
    } else {
        name.to_owned()
    }
}

/// A cookie's value from the request, if present (`name` without its `__Host-` prefix).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let name = cookie_name(headers, name);
    let name = name.as_str();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether cookies must be `Secure`: always, unless the request reached us over plain HTTP on a
/// loopback host (a developer's machine), where a `Secure` cookie would not come back.
fn secure(headers: &HeaderMap) -> bool {
    if headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    !matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// This server's origin as the browser reached it (`https://flags.example.com`), for links
/// handed to other people (invitations): `https` whenever cookies are `Secure`.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if secure(headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// A `Set-Cookie` value for `name` (prefixed with `__Host-` when `Secure`); `max_age` 0
/// deletes it.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(headers) { "; Secure" } else { "" };
    let name = cookie_name(headers, name);
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of a session secret.
pub fn csrf_token(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"flagstaff dashboard csrf v1\0");
    hasher.update(secret.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the request's `Origin`, when the browser sent one, is this server. Browsers send it on
/// every cross-site POST, so a foreign origin is refused whatever else the request carries.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

/// A signed-in member looking at a page.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// As the application sees them.
    pub actor: Actor,
    /// Their email (from the session), or the token's id for API tokens used as a session.
    pub name: String,
    /// The page's CSRF token.
    pub csrf: String,
    /// The session secret (to sign out).
    pub secret: String,
}

impl Viewer {
    /// Whether the viewer may change some flags, targeting or segments: writers, and anyone
    /// holding custom roles (the server decides each change exactly; a refusal names the action
    /// and resource).
    pub fn can_write(&self) -> bool {
        self.actor.role >= Role::Writer || !self.actor.custom_roles.is_empty()
    }

    /// Whether the viewer manages members, tokens and keys.
    pub fn is_admin(&self) -> bool {
        self.actor.role == Role::Admin
    }

    /// Checks a state-changing request's CSRF token (header or form field).
    pub fn check_csrf(&self, headers: &HeaderMap, field: Option<&str>) -> Result<(), CsrfRefused> {
        let presented = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or(field)
            .unwrap_or_default();
        if same_origin(headers) && same_token(presented, &self.csrf) {
            Ok(())
        } else {
            Err(CsrfRefused)
        }
    }
}

/// A state-changing request without this session's CSRF token, or from another origin: 403
/// with the code `csrf`.
#[derive(Debug)]
pub struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        flagstaff_http::error(
            flagstaff_app::ErrorCode::Csrf,
            "this request did not come from a Flagstaff page; reload the page and try again",
        )
    }
}

impl From<CsrfRefused> for Response {
    fn from(refused: CsrfRefused) -> Response {
        refused.into_response()
    }
}

impl FromRequestParts<Arc<Dashboard>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        dashboard: &Arc<Dashboard>,
    ) -> Result<Viewer, Response> {
        let secret = cookie(&parts.headers, SESSION_COOKIE).unwrap_or_default();
        match dashboard.app.authenticate(secret).await {
            Ok(actor) => {
                let name = actor
                    .id
                    .strip_prefix("member:")
                    .unwrap_or(&actor.id)
                    .to_owned();
                Ok(Viewer {
                    csrf: csrf_token(secret),
                    secret: secret.to_owned(),
                    name,
                    actor,
                })
            }
            Err(_) => {
                // Pages send people to sign in and back; scripts get a status they can show.
                let wants_html = parts
                    .headers
                    .get(header::ACCEPT)
                    .and_then(|a| a.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"));
                if parts.method == axum::http::Method::GET && wants_html {
                    let path = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    let target = format!("/sign-in?next={}", crate::url_encode(&path));
                    Err(Redirect::to(&target).into_response())
                } else {
                    Err((
                        StatusCode::UNAUTHORIZED,
                        axum::Json(serde_json::json!({
                            "code": "unauthorized",
                            "message": "your session has ended; sign in again"
                        })),
                    )
                        .into_response())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[
            ("host", "127.0.0.1:8030"),
            ("cookie", "a=1; flagstaff_session=fst_x; b=2"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("fst_x"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn cookies_are_secure_except_on_loopback_http() {
        assert!(!secure(&headers(&[("host", "127.0.0.1:8030")])));
        assert!(!secure(&headers(&[("host", "localhost")])));
        assert!(secure(&headers(&[("host", "flags.example.com")])));
        assert!(secure(&headers(&[
            ("host", "127.0.0.1:8030"),
            ("x-forwarded-proto", "https")
        ])));
        let v = set_cookie(&headers(&[("host", "flags.example.com")]), "a", "b", 60);
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-a=b; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        let v = set_cookie(&headers(&[("host", "127.0.0.1:8030")]), "a", "b", 60);
        assert_eq!(
            v.to_str().unwrap(),
            "a=b; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
    }

    #[test]
    fn a_secure_session_is_read_only_from_its_host_prefixed_cookie() {
        let planted = headers(&[
            ("host", "flags.example.com"),
            ("cookie", "flagstaff_session=fst_planted"),
        ]);
        assert_eq!(cookie(&planted, SESSION_COOKIE), None);
        let real = headers(&[
            ("host", "flags.example.com"),
            (
                "cookie",
                "flagstaff_session=fst_planted; __Host-flagstaff_session=fst_real",
            ),
        ]);
        assert_eq!(cookie(&real, SESSION_COOKIE), Some("fst_real"));
    }

    #[test]
    fn foreign_origins_are_refused() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8030")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8030"),
            ("origin", "http://127.0.0.1:8030")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8030"),
            ("origin", "http://evil.example")
        ])));
    }

    #[test]
    fn csrf_tokens_depend_on_the_session() {
        assert_ne!(csrf_token("fst_a"), csrf_token("fst_b"));
        assert_eq!(csrf_token("fst_a"), csrf_token("fst_a"));
        assert!(same_token(&csrf_token("fst_a"), &csrf_token("fst_a")));
        assert!(!same_token(&csrf_token("fst_a"), ""));
    }
}
