//! `/projects/{project}/environments/{environment}/flags/{key}`: a flag's targeting in one
//! environment.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use flagstaff_app::App;
use flagstaff_app::model::Targeting;
use flagstaff_app::{FlagRef, WriteMeta};

use crate::Result;
use crate::extract::{
    Caller, Comment, IfMatch, MaybeIfMatch, PatchRequest, Replacement, SemanticPatch, apply_patch,
    is_semantic_patch, version_required, versioned,
};
use crate::routes::AppState;
use flagstaff_http::{RawBody, parse_json};

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/projects/{project}/environments/{environment}/flags/{key}",
        get(get_targeting)
            .put(update_targeting)
            .patch(patch_targeting),
    )
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
    Replacement(targeting): Replacement<Targeting>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.update_targeting(
            FlagRef {
                project: &project,
                environment: &environment,
                key: &key,
            },
            targeting,
            WriteMeta {
                actor: &actor,
                expected: version,
                comment: &comment,
            },
        )
        .await?,
    ))
}

async fn patch_targeting(
    State(app): AppState,
    Caller(actor): Caller,
    MaybeIfMatch(version): MaybeIfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let flag = FlagRef {
        project: &project,
        environment: &environment,
        key: &key,
    };
    if is_semantic_patch(&headers) {
        // Authorized before the instructions are parsed.
        app.authorize_targeting_change(&actor, &project, &environment, &key)
            .await?;
        let patch: SemanticPatch = parse_json(&body)?;
        let comment = patch.comment.unwrap_or(comment);
        return Ok(versioned(
            StatusCode::OK,
            &app.apply_flag_instructions(flag, &patch.instructions, version, &actor, &comment)
                .await?,
        ));
    }
    let version = version.ok_or_else(version_required)?;
    // Authorized before the patch is parsed or applied.
    let current = app
        .targeting_for_change(&actor, &project, &environment, &key)
        .await?;
    let (patch, comment) = parse_json::<PatchRequest>(&body)?.split(comment);
    let targeting = apply_patch(&current.value, &patch)?;
    Ok(versioned(
        StatusCode::OK,
        &app.update_targeting(
            flag,
            targeting,
            WriteMeta {
                actor: &actor,
                expected: version,
                comment: &comment,
            },
        )
        .await?,
    ))
}
