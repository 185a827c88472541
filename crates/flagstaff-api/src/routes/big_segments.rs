//! `/projects/{project}/environments/{environment}/segments/{key}/members`: the members of a
//! big segment (issue 22). `POST` uploads a list — one key per line, or CSV with the key first
//! (`text/plain`, `text/csv`), streamed a batch at a time so that ten million keys never sit in
//! memory; or a JSON array of keys (`application/json`, up to the API's body limit) — to the
//! list and with the operation the query names (`?list=included|excluded&op=add|remove`).
//! `GET` answers how many keys each list holds.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::big_segments::{BigSegmentUpload, KeyLines, MemberList, check_big_segment_key};
use flagstaff_app::{App, ErrorCode};
use flagstaff_http::{ApiError, parse_json, read_limited};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Caller, Comment};
use crate::routes::AppState;

/// Keys applied per transaction.
const BATCH: usize = 10_000;
/// The largest list accepted, in bytes (ten million keys of up to ~200 bytes).
const MAX_UPLOAD_BYTES: u64 = 2 << 30;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/projects/{project}/environments/{environment}/segments/{key}/members",
        get(counts).post(upload),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    #[serde(default)]
    list: Option<String>,
    #[serde(default)]
    op: Option<String>,
}

async fn counts(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let counts = app
        .big_segment_counts(&actor, (&project, &environment, &key))
        .await?;
    Ok(Json(
        json!({"included": counts.included, "excluded": counts.excluded}),
    ))
}

async fn upload(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>> {
    let list = match query.list.as_deref() {
        None | Some("included") => MemberList::Included,
        Some("excluded") => MemberList::Excluded,
        Some(_) => {
            return Err(
                ApiError::new(ErrorCode::InvalidField, "list is included or excluded")
                    .with_field("list"),
            );
        }
    };
    let remove = match query.op.as_deref() {
        None | Some("add") => false,
        Some("remove") => true,
        Some(_) => {
            return Err(
                ApiError::new(ErrorCode::InvalidField, "op is add or remove").with_field("op"),
            );
        }
    };
    // Authorized before a byte of the list is read.
    let mut upload = app
        .begin_big_segment_upload(&actor, (&project, &environment, &key), list, remove)
        .await?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let applied = if json {
        apply_json(&app, &mut upload, &headers, body).await
    } else {
        apply_lines(&app, &mut upload, body).await
    };
    match applied {
        Ok(()) => {
            let summary = app.finish_big_segment_upload(upload, &comment).await?;
            Ok(Json(json!(summary)))
        }
        Err(error) => {
            // What was applied before the error stays (each batch is a transaction), and is
            // audited as such; sending the list again is safe.
            if upload.changed > 0 {
                let note = format!("{comment} (the upload broke off at an error)");
                app.finish_big_segment_upload(upload, note.trim()).await?;
            }
            Err(error)
        }
    }
}

async fn apply_json(
    app: &App,
    upload: &mut BigSegmentUpload,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<()> {
    let bytes = read_limited(headers, body, flagstaff_http::MAX_BODY_BYTES).await?;
    let keys: Vec<String> = parse_json(&bytes)?;
    for (i, key) in keys.iter().enumerate() {
        check_big_segment_key(key, i as u64 + 1)
            .map_err(|e| ApiError::from(e).with_field(format!("[{i}]")))?;
    }
    let keys: Vec<String> = keys
        .into_iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    for batch in keys.chunks(BATCH) {
        app.big_segment_batch(upload, batch).await?;
    }
    Ok(())
}

async fn apply_lines(
    app: &App,
    upload: &mut BigSegmentUpload,
    body: axum::body::Body,
) -> Result<()> {
    let mut stream = body.into_data_stream();
    let mut lines = KeyLines::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut read: u64 = 0;
    loop {
        // A client that stops sending holds a connection: each chunk must arrive in time.
        let next = tokio::time::timeout(flagstaff_http::body_read_timeout(), stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the list stopped arriving; the batches of {BATCH} keys read before line {} were applied",
                        lines.lines() + 1
                    ),
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!(
                    "the list could not be read whole ({e}); the keys before line {} were applied",
                    lines.lines() + 1
                ),
            )
        })?;
        read += chunk.len() as u64;
        if read > MAX_UPLOAD_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a list is at most {MAX_UPLOAD_BYTES} bytes; send the rest in another upload"
                ),
            ));
        }
        lines.push(&chunk, &mut batch)?;
        if batch.len() >= BATCH {
            app.big_segment_batch(upload, &batch).await?;
            batch.clear();
        }
    }
    lines.finish(&mut batch)?;
    app.big_segment_batch(upload, &batch).await?;
    Ok(())
}
