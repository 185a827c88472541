//! Extractors and response helpers shared by every route: the authenticated caller, the
//! size-limited JSON body, `If-Match`, the change comment, versioned responses, JSON Patch.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::{Actor, App, Versioned};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Result;
use flagstaff_app::ErrorCode;
use flagstaff_http::ApiError;

/// The authenticated caller.
pub(crate) struct Caller(pub(crate) Actor);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller> {
        let unauthorized = || {
            ApiError::new(
                ErrorCode::Unauthorized,
                "send an API token: Authorization: Bearer <token>",
            )
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        Ok(Caller(app.authenticate(token).await?))
    }
}

/// A JSON body, size-limited, with the path of the offending field in errors (shared with the
/// dashboard, so the same mistake gets the same answer).
pub(crate) use flagstaff_http::JsonBody as Body;

/// The body of a `PUT` that replaces a document: like [`Body`], except that a top-level
/// `version` is ignored. A GET answers with the document's `version` inside it, and a client
/// that edits what it read and sends it back (as LaunchDarkly's clients do) should not be
/// refused for it: the version that counts is the one in `If-Match`.
pub(crate) struct Replacement<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Replacement<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Replacement<T>> {
        let Body(mut value) = Body::<Value>::from_request(request, state).await?;
        if let Some(object) = value.as_object_mut() {
            object.remove("version");
        }
        serde_path_to_error::deserialize(value)
            .map(Replacement)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::new(ErrorCode::InvalidBody, e.inner().to_string())
                    .with_field(if path == "." { String::new() } else { path })
            })
    }
}

/// The `If-Match` version an update must name.
pub(crate) struct IfMatch(pub(crate) u64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<IfMatch> {
        let MaybeIfMatch(version) = MaybeIfMatch::from_request_parts(parts, state).await?;
        version.map(IfMatch).ok_or_else(version_required)
    }
}

/// The answer to an update without `If-Match`.
pub(crate) fn version_required() -> ApiError {
    ApiError::new(
        ErrorCode::VersionRequired,
        "send If-Match: \"<version>\" with the version you read, so that no change is overwritten unseen",
    )
}

/// An `If-Match` version when one is sent (semantic patches may go without).
pub(crate) struct MaybeIfMatch(pub(crate) Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeIfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<MaybeIfMatch> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(MaybeIfMatch(None));
        };
        let value = value.to_str().unwrap_or_default();
        let version = value.trim().trim_start_matches("W/").trim_matches('"');
        version.parse().map(|v| MaybeIfMatch(Some(v))).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidField,
                format!("If-Match {value:?} is not a version"),
            )
            .with_field("If-Match")
        })
    }
}

/// Whether a `PATCH` body is a LaunchDarkly semantic patch
/// (`Content-Type: application/json; domain-model=launchdarkly.semanticpatch`).
pub(crate) fn is_semantic_patch(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').skip(1).any(|parameter| {
                parameter
                    .trim()
                    .eq_ignore_ascii_case("domain-model=launchdarkly.semanticpatch")
            })
        })
}

/// A semantic patch's body: the instructions and an optional comment (which overrides the
/// `X-Flagstaff-Comment` header, as in LaunchDarkly's API).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SemanticPatch {
    pub(crate) instructions: Vec<Value>,
    #[serde(default)]
    pub(crate) comment: Option<String>,
}

/// The reason for a change, from `X-Flagstaff-Comment` (may be empty).
pub(crate) struct Comment(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Comment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Comment> {
        Ok(Comment(
            parts
                .headers
                .get("x-flagstaff-comment")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

/// A response with the resource's version as its ETag.
pub(crate) fn versioned<T: serde::Serialize>(status: StatusCode, value: &Versioned<T>) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", value.version)) {
        headers.insert(header::ETAG, etag);
    }
    // The version is set on the object rather than flattened beside it: a segment carries its
    // own `version` field, and one object must not hold the key twice.
    let mut body = serde_json::to_value(&value.value).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut body {
        fields.insert("version".into(), json!(value.version));
    }
    (status, headers, Json(body)).into_response()
}

/// A JSON Patch (RFC 6902) request: the operations, or LaunchDarkly's envelope
/// `{"comment": "...", "patch": [...]}` whose comment then overrides the header.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum PatchRequest {
    Operations(json_patch::Patch),
    Envelope {
        patch: json_patch::Patch,
        #[serde(default)]
        comment: Option<String>,
    },
}

impl PatchRequest {
    pub(crate) fn split(self, header_comment: String) -> (json_patch::Patch, String) {
        match self {
            PatchRequest::Operations(patch) => (patch, header_comment),
            PatchRequest::Envelope { patch, comment } => (patch, comment.unwrap_or(header_comment)),
        }
    }
}

/// The most operations one JSON Patch may have.
pub const MAX_PATCH_OPERATIONS: usize = 1_000;

/// The largest document a patch may produce: what a `PUT` of the same resource may send.
pub const MAX_PATCHED_BYTES: usize = flagstaff_http::MAX_BODY_BYTES;

/// The length of a value's JSON, without keeping the text.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Applies `patch` to the JSON form of `current` and reads the result back as a `T`. A failed
/// operation is reported with its index (`field: "[2]"`), a result of the wrong shape with the
/// field path, both as 400s; nothing is written in either case.
///
/// A patch is bounded before it can build anything large: at most [`MAX_PATCH_OPERATIONS`]
/// operations, and the document may never grow past [`MAX_PATCHED_BYTES`]. Operations are
/// applied one at a time and the growth of each (the value an `add` or `replace` brings, the
/// value a `copy` duplicates) is added up before it is applied, so that `copy` cannot double
/// the document again and again until the server runs out of memory.
pub fn apply_patch<T: serde::Serialize + DeserializeOwned>(
    current: &T,
    patch: &json_patch::Patch,
) -> Result<T> {
    if patch.0.len() > MAX_PATCH_OPERATIONS {
        return Err(ApiError::new(
            ErrorCode::InvalidPatch,
            format!("a patch has at most {MAX_PATCH_OPERATIONS} operations"),
        ));
    }
    let mut document = serde_json::to_value(current)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut size = json_len(&document);
    for (i, operation) in patch.0.iter().enumerate() {
        let growth = match operation {
            json_patch::PatchOperation::Add(op) => json_len(&op.value),
            json_patch::PatchOperation::Replace(op) => json_len(&op.value),
            json_patch::PatchOperation::Copy(op) => {
                document.pointer(&op.from.to_string()).map_or(0, json_len)
            }
            _ => 0,
        };
        size = size.saturating_add(growth);
        if size > MAX_PATCHED_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the patched document would be over {MAX_PATCHED_BYTES} bytes"),
            )
            .with_field(format!("[{i}]")));
        }
        json_patch::patch(&mut document, std::slice::from_ref(operation)).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidPatch,
                format!("operation '/{i}' failed at path '{}': {}", e.path, e.kind),
            )
            .with_field(format!("[{i}]"))
        })?;
    }
    serde_path_to_error::deserialize(document).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("after the patch: {}", e.inner()),
        )
        .with_field(e.path().to_string())
    })
}
