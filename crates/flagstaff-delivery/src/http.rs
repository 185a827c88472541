//! What every SDK route shares: authentication, the status codes SDKs understand, and the
//! FDv2 fallback.
//!
//! Status codes are semantic to SDKs (`ld-protocol.md` §4.5, §13 pitfall 1): `401` makes
//! classic SDKs stop for good, so it is used only for a key that does not exist (or no longer
//! does); anything transient (database trouble, shutting down, too many streams) is `503` with
//! `Retry-After`, which every SDK retries with backoff.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::{CredentialKind, ErrorCode, Grant};
use serde_json::json;

use crate::feed::{EnvFeed, EnvironmentId};
use crate::{Delivery, credentials};

/// A request that cannot be served, as the response to send.
pub(crate) type Refusal = Response;

/// A JSON error body with a stable code and the code's status, like the management API's
/// (without its `WWW-Authenticate`: SDKs are not asked for a bearer token).
pub(crate) fn error(code: ErrorCode, message: &str) -> Response {
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"code": code.as_str(), "message": message})),
    )
        .into_response()
}

/// `503` with `Retry-After`: "try again soon", which SDKs do with backoff.
pub(crate) fn unavailable(message: &str) -> Response {
    let mut response = error(ErrorCode::Unavailable, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

pub(crate) fn unauthorized() -> Response {
    error(
        ErrorCode::Unauthorized,
        "unknown or revoked SDK key: send the environment's key in the Authorization header",
    )
}

/// An authorized SDK request: its environment's feed and the credential that opened it.
pub(crate) struct Authorized {
    pub feed: Arc<EnvFeed>,
    pub fingerprint: String,
    pub grant: Grant,
}

impl Delivery {
    /// Checks the request's credential of `kind` and loads its environment.
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        kind: CredentialKind,
    ) -> Result<Authorized, Refusal> {
        let Some(secret) = credentials::presented_key(headers) else {
            return Err(unauthorized());
        };
        self.authorize_secret(secret, kind)
            .await?
            .ok_or_else(unauthorized)
    }

    /// Checks a credential of `kind` and loads its environment; `Ok(None)` when the credential
    /// does not exist (or no longer does), which each route answers in its own way.
    pub(crate) async fn authorize_secret(
        &self,
        secret: &str,
        kind: CredentialKind,
    ) -> Result<Option<Authorized>, Refusal> {
        let fingerprint = flagstaff_app::fingerprint(secret);
        let grant = match self.grants.lookup(&self.source, &fingerprint, kind).await {
            Ok(Some(grant)) => grant,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check an SDK credential");
                return Err(unavailable("the server cannot check credentials right now"));
            }
        };
        self.authorized(fingerprint, grant).await.map(Some)
    }

    /// Loads the environment a credential was granted: the request is authorized.
    pub(crate) async fn authorized(
        &self,
        fingerprint: String,
        grant: Grant,
    ) -> Result<Authorized, Refusal> {
        if !self.is_fresh() {
            return Err(unavailable(
                "this server cannot reach its database: its flag data may be out of date",
            ));
        }
        let id = EnvironmentId {
            project: grant.project.clone(),
            environment: grant.environment.clone(),
        };
        match self.feed(&id).await {
            Ok(feed) => Ok(Authorized {
                feed,
                fingerprint,
                grant,
            }),
            Err(e) => {
                tracing::warn!(environment = %id, error = %e, "cannot load an environment");
                Err(unavailable("the environment's data is not ready"))
            }
        }
    }
}

/// Adds `X-LD-EnvID` (§4.2): newer SDKs hand it to hooks and plugins.
pub(crate) fn with_env_id(mut response: Response, feed: &EnvFeed) -> Response {
    if let Ok(value) = HeaderValue::from_str(&feed.env_id()) {
        response.headers_mut().insert("x-ld-envid", value);
    }
    response
}

/// `503` with `X-LD-FD-Fallback: true`: FDv2 SDKs switch to FDv1 (§10). The status is `503`
/// rather than `404` so that an SDK that ignored the header would keep retrying instead of
/// giving up for good.
pub(crate) fn fdv2_fallback_response(message: &str) -> Response {
    let mut response = unavailable(message);
    response
        .headers_mut()
        .insert("x-ld-fd-fallback", HeaderValue::from_static("true"));
    response
}
