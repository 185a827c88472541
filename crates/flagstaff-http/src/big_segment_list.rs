//! A big segment's member list read from a request body (issue 22), for the management API and
//! the dashboard alike: one key per line or CSV (`text/plain`, `text/csv`, anything but JSON),
//! streamed and applied [`BATCH`] keys per transaction so that a list of ten million keys is
//! never held; or a JSON array of keys (`application/json`) up to [`MAX_BODY_BYTES`]. The
//! caller authorized the upload ([`App::begin_big_segment_upload`]) before calling this.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flagstaff_app::big_segments::{
    BigSegmentUpload, KeyLines, MemberList, UploadSummary, check_big_segment_key,
};
use flagstaff_app::{App, ErrorCode};
use futures_util::StreamExt as _;

use crate::{ApiError, MAX_BODY_BYTES, body_read_timeout, parse_json, read_limited};

/// Keys applied per transaction.
pub const BATCH: usize = 10_000;
/// The largest list read, in bytes (ten million keys of up to ~200 bytes).
pub const MAX_LIST_BYTES: u64 = 2 << 30;

/// Which list an upload goes to, and how: `?list=included|excluded&op=add|remove` (the
/// dashboard adds its `env`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `included` (the default) or `excluded`.
    #[serde(default)]
    pub list: Option<String>,
    /// `add` (the default) or `remove`.
    #[serde(default)]
    pub op: Option<String>,
    /// The environment (dashboard routes name it in the query).
    #[serde(default)]
    pub env: Option<String>,
}

impl ListQuery {
    /// The list, and whether the keys are removed.
    pub fn parse(&self) -> Result<(MemberList, bool), ApiError> {
        let list = match self.list.as_deref() {
            None | Some("included") => MemberList::Included,
            Some("excluded") => MemberList::Excluded,
            Some(_) => {
                return Err(
                    ApiError::new(ErrorCode::InvalidField, "list is included or excluded")
                        .with_field("list"),
                );
            }
        };
        let remove = match self.op.as_deref() {
            None | Some("add") => false,
            Some("remove") => true,
            Some(_) => {
                return Err(
                    ApiError::new(ErrorCode::InvalidField, "op is add or remove").with_field("op"),
                );
            }
        };
        Ok((list, remove))
    }
}

/// Reads the list and applies it, then closes the upload with its audit entry. What was applied
/// before an error stays (each batch is a transaction) and is audited as such; sending the list
/// again is safe.
pub async fn upload(
    app: &App,
    mut upload: BigSegmentUpload,
    headers: &HeaderMap,
    body: Body,
    comment: &str,
) -> Result<UploadSummary, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let applied = if json {
        apply_json(app, &mut upload, headers, body).await
    } else {
        apply_lines(app, &mut upload, body).await
    };
    match applied {
        Ok(()) => Ok(app.finish_big_segment_upload(upload, comment).await?),
        Err(error) => {
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
    body: Body,
) -> Result<(), ApiError> {
    let bytes = read_limited(headers, body, MAX_BODY_BYTES).await?;
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

async fn apply_lines(app: &App, upload: &mut BigSegmentUpload, body: Body) -> Result<(), ApiError> {
    let mut stream = body.into_data_stream();
    let mut lines = KeyLines::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut read: u64 = 0;
    loop {
        // A client that stops sending holds a connection: each chunk must arrive in time.
        let next = tokio::time::timeout(body_read_timeout(), stream.next())
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
                    "the list could not be read whole ({e}); the batches of {BATCH} keys read before line {} were applied",
                    lines.lines() + 1
                ),
            )
        })?;
        read += chunk.len() as u64;
        if read > MAX_LIST_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a list is at most {MAX_LIST_BYTES} bytes; send the rest in another upload"
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
