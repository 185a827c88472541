//! The API's error responses: one JSON shape, stable codes, one status per code.
//!
//! | code | status | when |
//! |---|---|---|
//! | `invalid_body` | 400 | the body is not JSON of the expected shape (`field` names where) |
//! | any `flagstaff_app::validate::codes` code | 400 | the content cannot be evaluated or is invalid (`field` names where) |
//! | `unauthorized` | 401 | no valid API token (SDK keys never are) |
//! | `forbidden` | 403 | the token's role or projects do not allow this |
//! | `not_found` | 404 | no such resource |
//! | `already_exists` | 409 | a create for a key that exists |
//! | `version_conflict` | 409 | `If-Match` is stale; `currentVersion` is the version now stored |
//! | `payload_too_large` | 413 | the body is over 1 MiB |
//! | `version_required` | 428 | an update or delete without `If-Match` |
//! | `internal` | 500 | a storage failure (details are logged, not returned) |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::AppError;
use serde_json::json;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    current_version: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            current_version: None,
        }
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> ApiError {
        let message = error.to_string();
        match error {
            AppError::Invalid {
                code,
                message,
                field,
            } => ApiError::new(StatusCode::BAD_REQUEST, code, message).with_field(field),
            AppError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            AppError::AlreadyExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            AppError::Conflict { current } => ApiError {
                current_version: current,
                ..ApiError::new(StatusCode::CONFLICT, "version_conflict", message)
            },
            AppError::Unauthorized => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            AppError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            AppError::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        if let Some(version) = self.current_version {
            body["currentVersion"] = json!(version);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
