//! `/projects/{project}/flags`: flag definitions, archive and restore.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::model::FlagDefinition;
use flagstaff_app::{App, FlagFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{
    Body, Caller, Comment, IfMatch, PatchRequest, Replacement, apply_patch, versioned,
};
use crate::routes::AppState;
use flagstaff_http::{RawBody, parse_json};

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
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
    Replacement(definition): Replacement<FlagDefinition>,
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
    RawBody(body): RawBody,
) -> Result<Response> {
    // Authorized before the patch is parsed or applied.
    let current = app.flag_for_change(&actor, &project, &key).await?;
    let (patch, comment) = parse_json::<PatchRequest>(&body)?.split(comment);
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
