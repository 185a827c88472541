//! `/projects/{project}/environments/{environment}/segments`: segments.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::App;
use flagstaff_protocol::Segment;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{
    Body, Caller, Comment, IfMatch, MaybeIfMatch, PatchRequest, SemanticPatch, apply_patch,
    is_semantic_patch, version_required, versioned,
};
use crate::routes::AppState;
use flagstaff_app::ErrorCode;
use flagstaff_http::{ApiError, RawBody, parse_json};

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
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
            ErrorCode::InvalidField,
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
    MaybeIfMatch(version): MaybeIfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    if is_semantic_patch(&headers) {
        // Authorized before the instructions are parsed.
        app.authorize_segment_change(&actor, &project, &environment, &key)
            .await?;
        let patch: SemanticPatch = parse_json(&body)?;
        let comment = patch.comment.unwrap_or(comment);
        return Ok(versioned(
            StatusCode::OK,
            &app.apply_segment_instructions(
                (&project, &environment, &key),
                &patch.instructions,
                version,
                &actor,
                &comment,
            )
            .await?,
        ));
    }
    let version = version.ok_or_else(version_required)?;
    // Authorized before the patch is parsed or applied.
    let current = app
        .segment_for_change(&actor, &project, &environment, &key)
        .await?;
    let (patch, comment) = parse_json::<PatchRequest>(&body)?.split(comment);
    let segment = apply_patch(&current.value, &patch)?;
    if segment.key != key {
        return Err(
            ApiError::new(ErrorCode::InvalidField, "a segment's key cannot change")
                .with_field("key"),
        );
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
