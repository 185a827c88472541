//! What a relay configured with a relay token reads (issue 22), beside the SDK routes:
//!
//! - `GET /relay/all/{project}/{environment}`: the environment's `/all` stream (§4.2), same
//!   frames, same broadcast;
//! - `POST /relay/bulk/{project}/{environment}` and `/relay/diagnostic/…`: the events of the
//!   relay's server-side SDKs, as `/bulk` and `/diagnostic` take them (browser and mobile events
//!   go to the public client-side ID routes, which need no secret).
//!
//! The relay presents an API token (`Authorization: Bearer fst_…`) whose roles allow
//! `relayEnvironment` on the environment; the relay never holds an SDK key. The token is checked
//! before anything else is read, and a stream's right is re-decided whenever a key, token, role
//! or member changes (`worker.rs`), so revoking the token or taking the role away ends its
//! streams at once.

// Refusals are HTTP responses, built only on the refusal path and returned straight to axum.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use flagstaff_app::ErrorCode;

use crate::feed::{EnvironmentId, StreamCredential};
use crate::http::{Authorized, error, unavailable};
use crate::stream::{Format, Subscription, sse_response};
use crate::{Delivery, events};

/// The token in `Authorization: Bearer <token>` (or bare).
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None if value.eq_ignore_ascii_case("bearer") => return None,
        None => value,
    };
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

fn refused() -> Response {
    error(
        ErrorCode::Unauthorized,
        "send an API token whose roles allow relayEnvironment on this environment: Authorization: Bearer <token>",
    )
}

impl Delivery {
    /// Checks the relay token for one environment and loads the environment's feed.
    async fn authorize_relay(
        &self,
        headers: &HeaderMap,
        project: String,
        environment: String,
    ) -> Result<Authorized, Response> {
        let Some(token) = presented_token(headers) else {
            return Err(refused());
        };
        let fingerprint = flagstaff_app::fingerprint(token);
        let id = EnvironmentId {
            project,
            environment,
        };
        match self.source.relay_grant(&fingerprint, &id).await {
            Ok(Some(grant)) => self.authorized(fingerprint, grant).await,
            Ok(None) => Err(refused()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a relay token");
                Err(unavailable("the server cannot check credentials right now"))
            }
        }
    }
}

/// `GET /relay/all/{project}/{environment}`.
pub(crate) async fn stream(
    State(d): State<Arc<Delivery>>,
    Path((project, environment)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let authorized = match d.authorize_relay(&headers, project, environment).await {
        Ok(authorized) => authorized,
        Err(refusal) => return refusal,
    };
    match d.admit(authorized, StreamCredential::RelayToken, false) {
        Ok(open) => {
            let feed = Arc::clone(&open.feed);
            let subscription = Subscription::open(open, Format::All, crate::stream::Opening::Put);
            sse_response(&feed, subscription)
        }
        Err(refusal) => refusal,
    }
}

async fn intake(
    d: &Delivery,
    headers: &HeaderMap,
    (project, environment): (String, String),
    body: Body,
    diagnostic: bool,
) -> Response {
    match d.authorize_relay(headers, project, environment).await {
        Ok(authorized) => {
            events::accept(d, &authorized.grant, headers, body, diagnostic, true).await
        }
        Err(refusal) => refusal,
    }
}

/// `POST /relay/bulk/{project}/{environment}`.
pub(crate) async fn bulk(
    State(d): State<Arc<Delivery>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(&d, &headers, path, body, false).await
}

/// `POST /relay/diagnostic/{project}/{environment}`.
pub(crate) async fn diagnostic(
    State(d): State<Arc<Delivery>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(&d, &headers, path, body, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_bare_or_as_bearer() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert_eq!(presented_token(&headers("Bearer fst_1")), Some("fst_1"));
        assert_eq!(presented_token(&headers("fst_1")), Some("fst_1"));
        assert_eq!(presented_token(&headers("Bearer ")), None);
        assert_eq!(presented_token(&headers("Basic a b")), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }
}
