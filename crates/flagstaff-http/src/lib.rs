//! The HTTP edge that the management API, the dashboard's JSON endpoints and SDK delivery share,
//! so that the same mistake gets the same answer wherever it is made:
//!
//! - [`ApiError`]: every error body is `{"code", "message", "field"?, "currentVersion"?}` with
//!   the status its [`ErrorCode`] carries (the table is `docs/errors.md`, generated from
//!   `ErrorCode`). Storage failures are logged and answered `internal` without details.
//! - [`JsonBody`]: a JSON request body read up to [`MAX_BODY_BYTES`] (`413 payload_too_large`
//!   beyond, before the rest is read), with serde's errors as `400 invalid_body` naming the
//!   path of the offending field.
#![forbid(unsafe_code)]

pub mod big_segment_list;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::{AppError, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Largest JSON body the API and the dashboard accept (a targeting document with thousands of
/// target keys fits).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How long a request body may take to arrive, in milliseconds (`--body-read-timeout-ms`). The
/// head has its own timeout (hyper's); without this one a client could send a body one byte
/// every few seconds and hold its connection, and the task reading it, for as long as it likes.
static BODY_READ_TIMEOUT_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_BODY_READ_TIMEOUT_MS);

/// The default body-read timeout: 30 s, enough for 16 MiB over a slow link.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;

/// Sets the body-read timeout of this process (the server calls it once at start).
pub fn set_body_read_timeout(timeout: std::time::Duration) {
    let millis = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    BODY_READ_TIMEOUT_MS.store(millis, std::sync::atomic::Ordering::Relaxed);
}

/// How long a request body may take to arrive (per chunk, for streamed uploads).
pub fn body_read_timeout() -> std::time::Duration {
    std::time::Duration::from_millis(
        BODY_READ_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// Why a request body was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRefused {
    /// It is larger than the limit (declared or as it arrived).
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// It did not arrive within the body-read timeout.
    TooSlow,
}

impl From<BodyRefused> for ApiError {
    fn from(refused: BodyRefused) -> ApiError {
        match refused {
            BodyRefused::TooLarge { limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is over {limit} bytes"),
            ),
            BodyRefused::TooSlow => ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the body did not arrive within {} ms",
                    body_read_timeout().as_millis()
                ),
            ),
        }
    }
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    current_version: Option<u64>,
    retry_after_secs: Option<u64>,
    /// A refused action and the resource it was refused on (403 from a policy decision); boxed
    /// so that every `Result<_, ApiError>` stays small.
    denied: Option<Box<(String, String)>>,
}

impl ApiError {
    /// An error with `code` and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            field: None,
            current_version: None,
            retry_after_secs: None,
            denied: None,
        }
    }

    /// Names the offending field (a JSON path, a parameter or a header).
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> ApiError {
        let code = error.code();
        match error {
            // A refusal about the request as a whole (approval_required) names no field.
            AppError::Invalid { message, field, .. } if field.is_empty() => {
                ApiError::new(code, message)
            }
            AppError::Invalid { message, field, .. } => {
                ApiError::new(code, message).with_field(field)
            }
            AppError::Conflict { current } => ApiError {
                current_version: current,
                ..ApiError::new(code, error.to_string())
            },
            AppError::RateLimited { retry_after_ms } => ApiError {
                retry_after_secs: Some(
                    u64::try_from(retry_after_ms.saturating_add(999) / 1000).unwrap_or(1),
                ),
                ..ApiError::new(code, error.to_string())
            },
            AppError::Forbidden(flagstaff_app::Refusal {
                message,
                action: Some(action),
                resource: Some(resource),
            }) => ApiError {
                denied: Some(Box::new((action, resource))),
                ..ApiError::new(code, format!("forbidden: {message}"))
            },
            AppError::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(code, "internal error; see the server log")
            }
            other => ApiError::new(code, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        if let Some(version) = self.current_version {
            body["currentVersion"] = json!(version);
        }
        if let Some(denied) = self.denied {
            let (action, resource) = *denied;
            body["action"] = json!(action);
            body["resource"] = json!(resource);
        }
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after_secs
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read, so the connection cannot carry another
            // request; saying so keeps clients from reusing it and failing their next request
            // (RFC 9110 §15.5.14).
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The client's address, when the server knows it: the connection's peer, which
/// `flagstaff_delivery::serve` attaches to every request. `None` in process (tests) and behind
/// whatever does not attach it. Never a reason to refuse a request.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<ClientAddress, std::convert::Infallible> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// The router with `X-Content-Type-Options: nosniff` on every response: no browser may guess a
/// type other than the one declared (a JSON error or an event payload read as HTML would be a
/// script injection waiting to happen). SDK streams served without the router set it too.
pub fn with_nosniff(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::map_response(
        |mut response: Response| async move {
            response.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            response
        },
    ))
}

/// `{"code", "message"}` with the code's status: the shape SDK delivery answers in.
pub fn error(code: ErrorCode, message: &str) -> Response {
    ApiError::new(code, message).into_response()
}

/// A JSON body, size-limited, with the path of the offending field in errors.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A request body read up to [`MAX_BODY_BYTES`] and not parsed yet: for handlers that must
/// authorize the caller before they spend anything on the content (JSON Patch, import).
#[derive(Debug)]
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<RawBody, ApiError> {
        let (parts, body) = request.into_parts();
        read_limited(&parts.headers, body, MAX_BODY_BYTES)
            .await
            .map(RawBody)
            .map_err(ApiError::from)
    }
}

/// Reads a body of at most `limit` bytes within the body-read timeout. A declared
/// `Content-Length` over the limit is refused before a byte of the body is read.
pub async fn read_limited(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, BodyRefused> {
    read_limited_within(headers, body, limit, body_read_timeout()).await
}

/// [`read_limited`] with an explicit timeout.
pub async fn read_limited_within(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, BodyRefused> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyRefused::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        // `to_bytes` fails for a body over the limit and for a connection that broke; either
        // way nothing usable arrived, and the limit is what a client can act on.
        Ok(Err(_)) => Err(BodyRefused::TooLarge { limit }),
        Err(_) => Err(BodyRefused::TooSlow),
    }
}

/// Reads JSON as a `T`; a wrong shape is `400 invalid_body` naming the path of the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new(ErrorCode::InvalidBody, e.inner().to_string()).with_field(if path == "." {
            String::new()
        } else {
            path
        })
    })
}
