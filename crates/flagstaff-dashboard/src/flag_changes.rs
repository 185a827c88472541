//! Changing a flag's targeting from its page: `review` checks a proposal with the same
//! validation as the save and answers the readable diff against what is stored *now*; `save`
//! writes it with the version the page read (409 when someone else saved meanwhile, and the page
//! offers to review again); `request` turns the same proposal into a change request where the
//! environment requires approval (the edit becomes instructions, `instruction_diff.rs`, so that
//! it still applies after unrelated edits).

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use flagstaff_app::model::Targeting;
use flagstaff_app::{AppError, ErrorCode};
use flagstaff_app::{FlagRef, WriteMeta};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::describe::{self, DiffLine};
use crate::session::Viewer;
use crate::{DashState, JsonBody, json_error};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Proposal {
    pub(crate) environment: String,
    pub(crate) targeting: Value,
    #[serde(default)]
    pub(crate) version: u64,
    #[serde(default)]
    pub(crate) comment: String,
    /// Whom to ask, when the proposal becomes a change request.
    #[serde(default)]
    pub(crate) reviewers: Vec<String>,
}

fn parse_targeting(value: Value) -> Result<Targeting, AppError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        AppError::invalid(
            ErrorCode::InvalidBody,
            format!("targeting.{path}").trim_end_matches(".."),
            e.inner().to_string(),
        )
    })
}

#[derive(Template)]
#[template(path = "diff.html")]
pub(crate) struct DiffFragment {
    pub lines: Vec<DiffLine>,
}

/// The review dialog's diff as HTML. A template failure is answered `500 internal`, never an
/// empty diff that would look like "nothing changes".
// The refusal is the response itself, built only on the failure path (as in the handlers).
#[allow(clippy::result_large_err)]
pub(crate) fn diff_html(lines: Vec<DiffLine>) -> Result<String, Response> {
    DiffFragment { lines }.render().map_err(|error| {
        tracing::error!(%error, "the diff template failed");
        flagstaff_http::error(
            ErrorCode::Internal,
            "the change could not be shown; it has been logged",
        )
    })
}

pub(crate) async fn review(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    JsonBody(proposal): JsonBody<Proposal>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, None)?;
    // Authorized before the proposal is parsed or compared with anything.
    dashboard
        .app
        .authorize_targeting_change(&viewer.actor, &project, &proposal.environment, &key)
        .await
        .map_err(json_error)?;
    let run = async {
        let proposed = parse_targeting(proposal.targeting)?;
        let app = &dashboard.app;
        app.check_targeting(
            &viewer.actor,
            &project,
            &proposal.environment,
            &key,
            &proposed,
        )
        .await?;
        let definition = app.flag(&viewer.actor, &project, &key).await?;
        let current = app
            .targeting(&viewer.actor, &project, &proposal.environment, &key)
            .await?;
        let variations = &definition.value.variations;
        let lines = describe::diff(
            &describe::targeting(variations, &current.value),
            &describe::targeting(variations, &proposed),
        );
        Ok::<_, AppError>((lines, current.version))
    };
    let (lines, version) = run.await.map_err(json_error)?;
    Ok(Json(json!({
        "changed": describe::changes(&lines),
        "version": version,
        "html": diff_html(lines)?,
    }))
    .into_response())
}

pub(crate) async fn save(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    JsonBody(proposal): JsonBody<Proposal>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, None)?;
    // Authorized before the proposal is parsed or compared with anything.
    dashboard
        .app
        .authorize_targeting_change(&viewer.actor, &project, &proposal.environment, &key)
        .await
        .map_err(json_error)?;
    let run = async {
        let proposed = parse_targeting(proposal.targeting)?;
        let saved = dashboard
            .app
            .update_targeting(
                FlagRef {
                    project: &project,
                    environment: &proposal.environment,
                    key: &key,
                },
                proposed,
                WriteMeta {
                    actor: &viewer.actor,
                    expected: proposal.version,
                    comment: proposal.comment.trim(),
                },
            )
            .await?;
        Ok::<_, AppError>(json!({"version": saved.version}))
    };
    run.await
        .map(|v| Json(v).into_response())
        .map_err(json_error)
}

/// Asks for approval of a proposal where the environment requires it: the edit, made against
/// the version the page read, becomes instructions in a change request.
pub(crate) async fn request(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    JsonBody(proposal): JsonBody<Proposal>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, None)?;
    let run = async {
        let app = &dashboard.app;
        let current = app
            .targeting(&viewer.actor, &project, &proposal.environment, &key)
            .await?;
        if current.version != proposal.version {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        let proposed = parse_targeting(proposal.targeting)?;
        let instructions =
            flagstaff_app::instruction_diff::targeting_instructions(&current.value, &proposed)?;
        crate::change_requests::open_request(
            &dashboard,
            &viewer,
            (&project, &proposal.environment),
            (flagstaff_app::TargetKind::Flag, &key),
            instructions,
            (&proposal.comment, proposal.reviewers),
        )
        .await
    };
    run.await
        .map(|v| Json(v).into_response())
        .map_err(json_error)
}
