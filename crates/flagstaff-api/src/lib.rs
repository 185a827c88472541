//! The management REST API under `/api/v1`, plus `/health` and `/ready`.
//!
//! Handlers only translate HTTP into calls on [`flagstaff_app::App`] and back; every decision
//! (authorization, validation, versioning, audit) is made there. Conventions:
//! - `Authorization: Bearer <API token>` on every `/api/v1` request.
//! - GET responses carry the resource's `version` in the body and as `ETag: "<version>"`.
//! - Updates and deletes require `If-Match: "<version>"`: a stale version is a 409 with the
//!   current version, and a missing one a 428, so no write ever silently overwrites another.
//! - The reason for a change goes in the `X-Flagstaff-Comment` header and lands in the audit log.
//! - Errors are `{"code", "message", "field"?}` (see `error.rs` for the table).
#![forbid(unsafe_code)]
// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

mod error;
pub mod openapi;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::model::{FlagDefinition, Project, Targeting};
use flagstaff_app::{Actor, App, AuditQuery, FlagFilter, KeyKind, Member, Role, Versioned};
use flagstaff_protocol::{FlagData, Segment};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use error::ApiError;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 1 << 20;

type Result<T> = std::result::Result<T, ApiError>;

/// Renders the metrics registry in Prometheus' text format (installed by the binary).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Counts every request by method, matched route and status, and times it. The route is the
/// pattern (`/api/v1/projects/{project}/flags/{key}`), never the concrete path, so that the
/// number of series stays bounded whatever clients send.
async fn record_metrics(request: Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("flagstaff_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("flagstaff_http_request_duration_seconds", "method" => method, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// The router, over an [`App`]; `metrics` serves `GET /metrics` when given.
pub fn router(app: App, metrics: Option<MetricsRender>) -> Router {
    let api = Router::new()
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{project}",
            get(get_project).put(update_project).delete(delete_project),
        )
        .route(
            "/projects/{project}/environments",
            get(list_environments).post(create_environment),
        )
        .route(
            "/projects/{project}/environments/{environment}",
            get(get_environment)
                .put(update_environment)
                .delete(delete_environment),
        )
        .route(
            "/projects/{project}/flags",
            get(list_flags).post(create_flag),
        )
        .route(
            "/projects/{project}/flags/{key}",
            get(get_flag)
                .put(update_flag)
                .patch(patch_flag)
                .delete(delete_flag),
        )
        .route(
            "/projects/{project}/flags/{key}/archive",
            post(archive_flag),
        )
        .route(
            "/projects/{project}/flags/{key}/restore",
            post(restore_flag),
        )
        .route(
            "/projects/{project}/environments/{environment}/flags/{key}",
            get(get_targeting)
                .put(update_targeting)
                .patch(patch_targeting),
        )
        .route(
            "/projects/{project}/environments/{environment}/segments",
            get(list_segments).post(create_segment),
        )
        .route(
            "/projects/{project}/environments/{environment}/segments/{key}",
            get(get_segment)
                .put(update_segment)
                .patch(patch_segment)
                .delete(delete_segment),
        )
        .route(
            "/projects/{project}/environments/{environment}/evaluate",
            post(evaluate),
        )
        .route(
            "/projects/{project}/environments/{environment}/keys/{kind}/rotate",
            post(rotate_key),
        )
        .route(
            "/projects/{project}/environments/{environment}/import",
            post(import_flag_data),
        )
        .route(
            "/projects/{project}/flags/{key}/insights",
            get(flag_insights),
        )
        .route("/projects/{project}/flag-statuses", get(flag_statuses))
        .route("/projects/{project}/stale-flags", get(stale_flags))
        .route(
            "/projects/{project}/environments/{environment}/contexts",
            get(contexts_seen),
        )
        .route(
            "/projects/{project}/environments/{environment}/custom-events",
            get(custom_events),
        )
        .route(
            "/projects/{project}/environments/{environment}/sdks",
            get(sdk_reports),
        )
        .route(
            "/projects/{project}/environments/{environment}/event-samples",
            get(event_samples),
        )
        .route("/events/health", get(events_health))
        .route("/audit", get(audit))
        .route("/members", get(list_members).post(create_member))
        .route("/members/{email}", axum::routing::delete(delete_member))
        .route("/sessions", post(sign_in))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
        });
    let mut router = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .nest("/api/v1", api);
    if let Some(render) = metrics {
        // Request counts and timings only: nothing here reveals flags, rules or keys.
        router = router.route("/metrics", get(move || async move { render() }));
    }
    router
        .route_layer(axum::middleware::from_fn(record_metrics))
        .with_state(Arc::new(app))
}

type AppState = State<Arc<App>>;

async fn ready(State(app): AppState) -> Response {
    match app.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

// ----- extractors ------------------------------------------------------------------------------

/// The authenticated caller.
struct Caller(Actor);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
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

/// A JSON body, size-limited, with the path of the offending field in errors.
struct Body<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Body<T>> {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is over {MAX_BODY_BYTES} bytes"),
                )
            })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut deserializer)
            .map(Body)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    e.inner().to_string(),
                )
                .with_field(if path == "." { String::new() } else { path })
            })
    }
}

/// The `If-Match` version an update must name.
struct IfMatch(u64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<IfMatch> {
        let value = parts.headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            ApiError::new(StatusCode::PRECONDITION_REQUIRED, "version_required", "send If-Match: \"<version>\" with the version you read, so that no change is overwritten unseen")
        })?;
        let version = value.trim().trim_start_matches("W/").trim_matches('"');
        version.parse().map(IfMatch).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                format!("If-Match {value:?} is not a version"),
            )
            .with_field("If-Match")
        })
    }
}

/// The reason for a change, from `X-Flagstaff-Comment` (may be empty).
struct Comment(String);

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
fn versioned<T: serde::Serialize>(status: StatusCode, value: &Versioned<T>) -> Response {
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
enum PatchRequest {
    Operations(json_patch::Patch),
    Envelope {
        patch: json_patch::Patch,
        #[serde(default)]
        comment: Option<String>,
    },
}

impl PatchRequest {
    fn split(self, header_comment: String) -> (json_patch::Patch, String) {
        match self {
            PatchRequest::Operations(patch) => (patch, header_comment),
            PatchRequest::Envelope { patch, comment } => (patch, comment.unwrap_or(header_comment)),
        }
    }
}

/// Applies `patch` to the JSON form of `current` and reads the result back as a `T`. A failed
/// operation is reported with its index (`field: "[2]"`), a result of the wrong shape with the
/// field path, both as 400s; nothing is written in either case.
fn apply_patch<T: serde::Serialize + DeserializeOwned>(
    current: &T,
    patch: &json_patch::Patch,
) -> Result<T> {
    let mut document = serde_json::to_value(current)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    json_patch::patch(&mut document, patch).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_patch", e.to_string())
            .with_field(format!("[{}]", e.operation))
    })?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("after the patch: {}", e.inner()),
        )
        .with_field(e.path().to_string())
    })
}

// ----- handlers --------------------------------------------------------------------------------

async fn list_projects(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.list_projects(&actor).await?})))
}

async fn create_project(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(project): Body<Project>,
) -> Result<Response> {
    let project = app.create_project(&actor, project, &comment).await?;
    Ok((StatusCode::CREATED, Json(project)).into_response())
}

async fn get_project(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.project(&actor, &project).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    /// Optional; if given it must be the resource's own key (keys never change).
    #[serde(default)]
    key: Option<String>,
    name: String,
}

/// The body of `PUT .../environments/{environment}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvironmentUpdate {
    #[serde(default)]
    key: Option<String>,
    name: String,
    /// Absent: unchanged.
    #[serde(default)]
    secure_mode: Option<bool>,
    /// Absent: unchanged.
    #[serde(default)]
    critical: Option<bool>,
}

impl Rename {
    fn check(&self, key: &str) -> Result<()> {
        match &self.key {
            Some(given) if given != key => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "keys cannot change",
            )
            .with_field("key")),
            _ => Ok(()),
        }
    }
}

async fn update_project(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(project): Path<String>,
    Body(rename): Body<Rename>,
) -> Result<Response> {
    rename.check(&project)?;
    Ok(versioned(
        StatusCode::OK,
        &app.update_project(&actor, &project, &rename.name, version, &comment)
            .await?,
    ))
}

async fn delete_project(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path(project): Path<String>,
) -> Result<StatusCode> {
    app.delete_project(&actor, &project, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_environments(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(
        json!({"items": app.list_environments(&actor, &project).await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEnvironment {
    key: String,
    name: String,
}

async fn create_environment(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(project): Path<String>,
    Body(new): Body<NewEnvironment>,
) -> Result<Response> {
    let created = app
        .create_environment(&actor, &project, &new.key, &new.name, &comment)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn get_environment(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.environment(&actor, &project, &environment).await?,
    ))
}

async fn update_environment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
    Body(update): Body<EnvironmentUpdate>,
) -> Result<Response> {
    Rename {
        key: update.key,
        name: String::new(),
    }
    .check(&environment)?;
    Ok(versioned(
        StatusCode::OK,
        &app.update_environment(
            &actor,
            &project,
            &environment,
            &update.name,
            flagstaff_app::EnvironmentSettings {
                secure_mode: update.secure_mode,
                critical: update.critical,
            },
            version,
            &comment,
        )
        .await?,
    ))
}

async fn delete_environment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
) -> Result<StatusCode> {
    app.delete_environment(&actor, &project, &environment, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct FlagListQuery {
    tag: Option<String>,
    #[serde(default)]
    archived: bool,
    q: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_flags(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
    Query(q): Query<FlagListQuery>,
) -> Result<Json<Value>> {
    let filter = FlagFilter {
        tag: q.tag,
        archived: q.archived,
        search: q.q,
        after: q.after,
        limit: q.limit,
    };
    Ok(Json(json!(
        app.list_flags(&actor, &project, &filter).await?
    )))
}

async fn create_flag(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(project): Path<String>,
    Body(definition): Body<FlagDefinition>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.create_flag(&actor, &project, definition, &comment)
            .await?,
    ))
}

async fn get_flag(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key)): Path<(String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.flag(&actor, &project, &key).await?,
    ))
}

async fn update_flag(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, key)): Path<(String, String)>,
    Body(definition): Body<FlagDefinition>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.update_flag(&actor, &project, &key, definition, version, &comment)
            .await?,
    ))
}

async fn patch_flag(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, key)): Path<(String, String)>,
    Body(request): Body<PatchRequest>,
) -> Result<Response> {
    let (patch, comment) = request.split(comment);
    let current = app.flag(&actor, &project, &key).await?;
    let definition = apply_patch(&current.value, &patch)?;
    Ok(versioned(
        StatusCode::OK,
        &app.update_flag(&actor, &project, &key, definition, version, &comment)
            .await?,
    ))
}

async fn delete_flag(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, key)): Path<(String, String)>,
) -> Result<StatusCode> {
    app.delete_flag(&actor, &project, &key, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn archive_flag(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, key)): Path<(String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.set_archived(&actor, &project, &key, true, &comment)
            .await?,
    ))
}

async fn restore_flag(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, key)): Path<(String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.set_archived(&actor, &project, &key, false, &comment)
            .await?,
    ))
}

async fn get_targeting(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.targeting(&actor, &project, &environment, &key).await?,
    ))
}

async fn update_targeting(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(targeting): Body<Targeting>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.update_targeting(
            &actor,
            &project,
            &environment,
            &key,
            targeting,
            version,
            &comment,
        )
        .await?,
    ))
}

async fn patch_targeting(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(request): Body<PatchRequest>,
) -> Result<Response> {
    let (patch, comment) = request.split(comment);
    let current = app.targeting(&actor, &project, &environment, &key).await?;
    let targeting = apply_patch(&current.value, &patch)?;
    Ok(versioned(
        StatusCode::OK,
        &app.update_targeting(
            &actor,
            &project,
            &environment,
            &key,
            targeting,
            version,
            &comment,
        )
        .await?,
    ))
}

async fn list_segments(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
) -> Result<Json<Value>> {
    Ok(Json(
        json!({"items": app.list_segments(&actor, &project, &environment).await?}),
    ))
}

async fn create_segment(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
    Body(segment): Body<Segment>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.put_segment(&actor, &project, &environment, segment, None, &comment)
            .await?,
    ))
}

async fn get_segment(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.segment(&actor, &project, &environment, &key).await?,
    ))
}

async fn update_segment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(segment): Body<Segment>,
) -> Result<Response> {
    if segment.key != key {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "the body's key must match the path",
        )
        .with_field("key"));
    }
    Ok(versioned(
        StatusCode::OK,
        &app.put_segment(
            &actor,
            &project,
            &environment,
            segment,
            Some(version),
            &comment,
        )
        .await?,
    ))
}

async fn patch_segment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(request): Body<PatchRequest>,
) -> Result<Response> {
    let (patch, comment) = request.split(comment);
    let current = app.segment(&actor, &project, &environment, &key).await?;
    let segment = apply_patch(&current.value, &patch)?;
    if segment.key != key {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "a segment's key cannot change",
        )
        .with_field("key"));
    }
    Ok(versioned(
        StatusCode::OK,
        &app.put_segment(
            &actor,
            &project,
            &environment,
            segment,
            Some(version),
            &comment,
        )
        .await?,
    ))
}

async fn delete_segment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    app.delete_segment(&actor, &project, &environment, &key, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateRequest {
    /// How long the old key keeps working; 0 stops it at once.
    #[serde(default)]
    old_key_valid_for_seconds: u64,
}

async fn import_flag_data(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
    Body(data): Body<Value>,
) -> Result<Json<Value>> {
    let data = FlagData::from_json(data).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", e.message).with_field(e.path)
    })?;
    let summary = app
        .import_flag_data(&actor, &project, &environment, data, &comment)
        .await?;
    Ok(Json(json!(summary)))
}

async fn rotate_key(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, kind)): Path<(String, String, String)>,
    Body(request): Body<RotateRequest>,
) -> Result<Response> {
    let kind = match kind.as_str() {
        "sdk" => KeyKind::Sdk,
        "mobile" => KeyKind::Mobile,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "rotate keys/sdk or keys/mobile; the client-side ID is public and does not rotate",
            ));
        }
    };
    let key = app
        .rotate_key(
            &actor,
            &project,
            &environment,
            kind,
            request.old_key_valid_for_seconds,
            &comment,
        )
        .await?;
    let field = if kind == KeyKind::Sdk {
        "sdkKey"
    } else {
        "mobileKey"
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ field: key, "oldKeyValidForSeconds": request.old_key_valid_for_seconds })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EvaluateRequest {
    context: Value,
    /// `explain` (the default): every flag with its reason; `bootstrap`: LaunchDarkly's
    /// `allFlagsState` document for a browser SDK's `bootstrap` option.
    #[serde(default)]
    format: EvaluateFormat,
    #[serde(default)]
    client_side_only: bool,
    #[serde(default)]
    with_reasons: bool,
    #[serde(default)]
    details_only_for_tracked_flags: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
enum EvaluateFormat {
    #[default]
    Explain,
    Bootstrap,
}

async fn evaluate(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Body(request): Body<EvaluateRequest>,
) -> Result<Json<Value>> {
    let result = match request.format {
        EvaluateFormat::Explain => {
            app.evaluate(&actor, &project, &environment, &request.context)
                .await?
        }
        EvaluateFormat::Bootstrap => {
            let options = flagstaff_app::BootstrapOptions {
                client_side_only: request.client_side_only,
                with_reasons: request.with_reasons,
                details_only_for_tracked_flags: request.details_only_for_tracked_flags,
            };
            app.bootstrap(&actor, &project, &environment, &request.context, options)
                .await?
        }
    };
    Ok(Json(result))
}

#[derive(Deserialize)]
struct AuditParams {
    kind: Option<String>,
    scope: Option<String>,
    key: Option<String>,
    actor: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    after: Option<u64>,
    limit: Option<u32>,
}

async fn audit(
    State(app): AppState,
    Caller(actor): Caller,
    Query(p): Query<AuditParams>,
) -> Result<Json<Value>> {
    let query = AuditQuery {
        kind: p.kind,
        scope: p.scope,
        key: p.key,
        actor: p.actor,
        since: p.since,
        until: p.until,
        after_seq: p.after,
        limit: p.limit.unwrap_or(100).clamp(1, 1000),
        ..AuditQuery::default()
    };
    let entries = app.audit(&actor, &query).await?;
    let next = (entries.len() == query.limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({"items": entries, "next": next})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    email: String,
    name: String,
    role: Role,
    #[serde(default)]
    projects: Option<Vec<String>>,
    password: String,
}

async fn list_members(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.list_members(&actor).await?})))
}

async fn create_member(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(new): Body<NewMember>,
) -> Result<Response> {
    let member = Member {
        email: new.email,
        name: new.name,
        role: new.role,
        projects: new.projects,
    };
    let created = app
        .create_member(&actor, member, &new.password, &comment)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn delete_member(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(email): Path<String>,
) -> Result<StatusCode> {
    app.delete_member(&actor, &email, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

/// Signs a member in; the only `/api/v1` route that needs no token.
async fn sign_in(State(app): AppState, Body(request): Body<SignIn>) -> Result<Response> {
    let session = app.sign_in(&request.email, &request.password).await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

async fn list_tokens(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    Ok(Json(json!({"items": app.list_tokens(&actor).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
    #[serde(default)]
    projects: Option<Vec<String>>,
    /// `project/environment` entries.
    #[serde(default)]
    environments: Option<Vec<String>>,
}

async fn create_token(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Body(new): Body<NewToken>,
) -> Result<Response> {
    let (info, secret) = app
        .create_token(
            &actor,
            &new.name,
            new.role,
            new.projects,
            new.environments,
            &comment,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": info, "secret": secret})),
    )
        .into_response())
}

async fn revoke_token(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    app.revoke_token(&actor, &id, &comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- flag insights (events) -------------------------------------------------------------------

/// Query parameters of the insight endpoints, all read as text so that a bad value gets the
/// API's structured error naming the parameter.
#[derive(Deserialize, Default)]
struct InsightParams {
    environment: Option<String>,
    range: Option<String>,
    days: Option<String>,
    q: Option<String>,
    kind: Option<String>,
    key: Option<String>,
    limit: Option<String>,
}

fn number<T: std::str::FromStr>(text: Option<&str>, field: &str, default: T) -> Result<T> {
    match text {
        None | Some("") => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            ApiError::from(flagstaff_app::AppError::invalid(
                "invalid_query",
                field,
                format!("{text:?} is not a number"),
            ))
        }),
    }
}

/// The status window: `days`, 7 unless given.
fn status_days(p: &InsightParams) -> Result<u32> {
    number(p.days.as_deref(), "days", 7)
}

async fn flag_insights(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key)): Path<(String, String)>,
    Query(p): Query<InsightParams>,
) -> Result<Json<Value>> {
    let Some(environment) = p.environment.as_deref().filter(|e| !e.is_empty()) else {
        return Err(flagstaff_app::AppError::invalid(
            "missing_environment",
            "environment",
            "say which environment to chart: ?environment=<key>",
        )
        .into());
    };
    let range = flagstaff_app::insights::InsightsRange::parse(p.range.as_deref().unwrap_or("24h"))?;
    let insights = app
        .flag_insights(&actor, &project, &key, environment, range, status_days(&p)?)
        .await?;
    Ok(Json(json!(insights)))
}

async fn flag_statuses(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
    Query(p): Query<InsightParams>,
) -> Result<Json<Value>> {
    let rows = app
        .flag_statuses(&actor, &project, status_days(&p)?)
        .await?;
    Ok(Json(json!({"items": rows})))
}

async fn stale_flags(
    State(app): AppState,
    Caller(actor): Caller,
    Path(project): Path<String>,
    Query(p): Query<InsightParams>,
) -> Result<Json<Value>> {
    let rows: Vec<_> = app
        .flag_statuses(&actor, &project, status_days(&p)?)
        .await?
        .into_iter()
        .filter(|row| row.safe_to_remove)
        .collect();
    Ok(Json(json!({"items": rows})))
}

async fn contexts_seen(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Query(p): Query<InsightParams>,
) -> Result<Json<Value>> {
    let search = flagstaff_app::insights::ContextSearch {
        kind: p.kind.filter(|k| !k.is_empty()),
        text: p.q.filter(|q| !q.is_empty()),
        limit: number(p.limit.as_deref(), "limit", 100)?,
    };
    let contexts = app
        .contexts_seen(&actor, &project, &environment, &search)
        .await?;
    Ok(Json(json!({"items": contexts})))
}

async fn custom_events(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Query(p): Query<InsightParams>,
) -> Result<Json<Value>> {
    let events = app
        .custom_events(&actor, &project, &environment, status_days(&p)?)
        .await?;
    Ok(Json(json!({"items": events})))
}

async fn sdk_reports(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let sdks = app.sdk_reports(&actor, &project, &environment).await?;
    Ok(Json(json!({"items": sdks})))
}

async fn event_samples(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Query(p): Query<InsightParams>,
) -> Result<Json<Value>> {
    let samples = app
        .event_samples(
            &actor,
            &project,
            &environment,
            p.kind.as_deref().filter(|k| !k.is_empty()),
            p.key.as_deref().filter(|k| !k.is_empty()),
            number(p.limit.as_deref(), "limit", 50)?,
        )
        .await?;
    Ok(Json(json!({"items": samples})))
}

async fn events_health(State(app): AppState, Caller(actor): Caller) -> Result<Json<Value>> {
    match app.events_health(&actor)? {
        Some(health) => Ok(Json(json!(health))),
        None => Err(flagstaff_app::AppError::NotFound(
            "the events pipeline (this server runs without one)".into(),
        )
        .into()),
    }
}
