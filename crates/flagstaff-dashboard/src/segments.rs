//! Segments: reusable groups of contexts (pasted key lists and rules), per environment. Saving
//! follows the flag page: review the readable diff, then save with the version read.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::{AppError, ErrorCode};
use flagstaff_protocol::Segment;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::describe;
use crate::flag_changes::diff_html;
use crate::flags::EnvQuery;
use crate::session::Viewer;
use crate::{DashState, JsonBody, Nav, PageError, json_error, render, script_json};

pub(crate) struct ListedSegment {
    pub key: String,
    pub name: Option<String>,
    pub description: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "segments.html")]
struct ListPage {
    nav: Nav,
    segments: Vec<ListedSegment>,
    error: Option<String>,
}

async fn list_page(
    dashboard: &crate::Dashboard,
    viewer: &Viewer,
    project: &str,
    env: Option<&str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        dashboard,
        viewer,
        project,
        env,
        "segments",
        format!("/projects/{project}/segments"),
    )
    .await?;
    let segments = dashboard
        .app
        .list_segments(&viewer.actor, project, &nav.environment)
        .await?
        .into_iter()
        .map(|s| ListedSegment {
            summary: describe::segment(&s.value).join("; "),
            name: s.value.name.clone(),
            description: s
                .value
                .description
                .as_deref()
                .map(crate::excerpt)
                .unwrap_or_default(),
            key: s.value.key,
        })
        .collect();
    let status = if error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    let mut page = render(&ListPage {
        nav,
        segments,
        error,
    });
    *page.status_mut() = status;
    Ok(page)
}

pub(crate) async fn list(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Response, PageError> {
    list_page(&dashboard, &viewer, &project, q.env.as_deref(), None).await
}

#[derive(Deserialize)]
pub(crate) struct NewSegment {
    #[serde(default)]
    csrf: String,
    env: String,
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// "on" for a big segment: members uploaded as a list, up to ten million.
    #[serde(default)]
    unbounded: Option<String>,
    /// A big segment's context kind (`user` when blank).
    #[serde(default)]
    unbounded_kind: String,
}

pub(crate) async fn create(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(project): Path<String>,
    Form(form): Form<NewSegment>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let mut fields = json!({"key": form.key.trim(), "name": form.name,
        "description": form.description});
    if form.unbounded.is_some() {
        fields["unbounded"] = json!(true);
        let kind = form.unbounded_kind.trim();
        fields["unboundedContextKind"] = json!(if kind.is_empty() { "user" } else { kind });
    }
    let segment: Segment = serde_json::from_value(fields).map_err(|e| {
        PageError(AppError::invalid(
            ErrorCode::InvalidField,
            "key",
            e.to_string(),
        ))
        .into_response()
    })?;
    match dashboard
        .app
        .put_segment(
            &viewer.actor,
            &project,
            &form.env,
            segment,
            None,
            "created in the dashboard",
        )
        .await
    {
        Ok(created) => Ok(Redirect::to(&format!(
            "/projects/{project}/segments/{}?env={}",
            created.value.key,
            crate::url_encode(&form.env)
        ))
        .into_response()),
        Err(e @ (AppError::Invalid { .. } | AppError::AlreadyExists(_))) => list_page(
            &dashboard,
            &viewer,
            &project,
            Some(&form.env),
            Some(e.to_string()),
        )
        .await
        .map_err(IntoResponse::into_response),
        Err(e) => Err(PageError(e).into_response()),
    }
}

#[derive(Template)]
#[template(path = "segment.html")]
struct SegmentPage {
    nav: Nav,
    /// Whether the viewer may change the segment (any of its update actions).
    may_edit: bool,
    key: String,
    name: Option<String>,
    description: Option<String>,
    summary: Vec<String>,
    editor_json: String,
    /// Its lists, counted, and one page of one of them.
    members: crate::segment_keys::Members,
    /// Over `LARGE_SEGMENT` keys: the editor leaves the lists to "Add or remove keys".
    large: bool,
    /// A big segment's member counts and context kind.
    big: Option<BigSegmentView>,
    /// Flags and segments whose rules use it here.
    used_by_flags: Vec<String>,
    used_by_segments: Vec<String>,
}

/// What a big segment's page shows about its members.
struct BigSegmentView {
    included: String,
    excluded: String,
    context_kind: String,
    generation: i64,
}

#[derive(Deserialize, Default)]
pub(crate) struct SegmentQuery {
    env: Option<String>,
    /// The list shown (`included:user`).
    #[serde(default)]
    list: String,
    /// Only keys containing this.
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: usize,
}

pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<SegmentQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "segments",
        format!("/projects/{project}/segments/{key}"),
    )
    .await?;
    let segment = dashboard
        .app
        .segment(&viewer.actor, &project, &nav.environment, &key)
        .await?;
    let segments = dashboard
        .app
        .segment_keys(&viewer.actor, &project, &nav.environment)
        .await?;
    let may_edit = dashboard
        .app
        .segment_access(
            &viewer.actor,
            (&project, &nav.environment),
            &key,
            &[
                "updateIncluded",
                "updateExcluded",
                "updateRules",
                "updateName",
                "updateDescription",
            ],
        )
        .await?
        .iter()
        .any(|d| d.allowed);
    let needs_approval = dashboard
        .app
        .needs_approval(
            &viewer.actor,
            &flagstaff_app::Target::segment(&project, &nav.environment, &key),
        )
        .await?;
    let large = describe::segment_size(&segment.value) > crate::segment_keys::LARGE_SEGMENT;
    let mut editable = serde_json::to_value(&segment.value).unwrap_or(Value::Null);
    if large {
        // The page would carry every key twice; the editor edits rules, and the lists change
        // through "Add or remove keys" (a save fills them in from what is stored).
        if let Some(object) = editable.as_object_mut() {
            for field in LIST_FIELDS {
                object.remove(field);
            }
        }
    }
    let big = if segment.value.unbounded {
        let counts = dashboard
            .app
            .big_segment_counts(&viewer.actor, (&project, &nav.environment, &key))
            .await?;
        Some(BigSegmentView {
            included: describe::thousands(counts.included as usize),
            excluded: describe::thousands(counts.excluded as usize),
            context_kind: segment
                .value
                .unbounded_context_kind
                .clone()
                .unwrap_or_else(|| "user".to_owned()),
            generation: segment.value.generation.unwrap_or(0),
        })
    } else {
        None
    };
    let (used_by_flags, used_by_segments) = dashboard
        .app
        .segment_users(&viewer.actor, &project, &nav.environment, &key)
        .await?;
    let editor = json!({
        "segmentKey": key,
        "environment": nav.environment,
        "critical": nav.critical(),
        "canEdit": may_edit,
        "version": segment.version,
        "segment": editable,
        "listsElsewhere": large,
        "contextKinds": crate::context::suggested_kinds(&dashboard, &viewer, &project, &nav.environment).await,
        "segments": segments.into_iter().filter(|s| *s != key).collect::<Vec<_>>(),
        "reviewUrl": format!("/projects/{project}/segments/{key}/review"),
        "saveUrl": format!("/projects/{project}/segments/{key}/save"),
        "requestUrl": needs_approval.then(|| format!("/projects/{project}/segments/{key}/request")),
    });
    Ok(render(&SegmentPage {
        may_edit,
        members: crate::segment_keys::members(&segment.value, &q.list, &q.q, q.page),
        big,
        large,
        used_by_flags,
        used_by_segments,
        summary: describe::segment(&segment.value),
        name: segment.value.name.clone(),
        description: segment.value.description.clone(),
        key,
        editor_json: script_json(&editor),
        nav,
    }))
}

#[derive(Deserialize)]
pub(crate) struct Proposal {
    environment: String,
    segment: Value,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    comment: String,
    /// Whom to ask, when the proposal becomes a change request.
    #[serde(default)]
    reviewers: Vec<String>,
}

/// The list fields a proposal from the editor leaves out for a large segment (they change
/// through "Add or remove keys", `segment_keys.rs`): filled from the segment as stored.
const LIST_FIELDS: [&str; 4] = [
    "included",
    "excluded",
    "includedContexts",
    "excludedContexts",
];

/// Whether the proposal leaves any list out.
fn lists_missing(value: &Value) -> bool {
    value.is_object() && LIST_FIELDS.iter().any(|f| value.get(f).is_none())
}

/// Fills the lists a proposal leaves out from `current`.
fn with_current_lists(mut value: Value, current: &Segment) -> Value {
    if let (Some(object), Ok(Value::Object(stored))) =
        (value.as_object_mut(), serde_json::to_value(current))
    {
        for field in LIST_FIELDS {
            if !object.contains_key(field) {
                object.insert(
                    field.to_owned(),
                    stored
                        .get(field)
                        .cloned()
                        .unwrap_or(Value::Array(Vec::new())),
                );
            }
        }
    }
    value
}

fn parse_segment(value: Value, key: &str) -> Result<Segment, AppError> {
    let segment: Segment = serde_path_to_error::deserialize(value).map_err(|e| {
        AppError::invalid(
            ErrorCode::InvalidBody,
            format!("segment.{}", e.path()),
            e.inner().to_string(),
        )
    })?;
    if segment.key != key {
        return Err(AppError::invalid(
            ErrorCode::InvalidField,
            "segment.key",
            "a segment's key cannot change",
        ));
    }
    Ok(segment)
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
        .authorize_segment_change(&viewer.actor, &project, &proposal.environment, &key)
        .await
        .map_err(json_error)?;
    let run = async {
        let current = dashboard
            .app
            .segment(&viewer.actor, &project, &proposal.environment, &key)
            .await?;
        let proposed = parse_segment(with_current_lists(proposal.segment, &current.value), &key)?;
        let lines = describe::segment_diff(Some(&current.value), Some(&proposed));
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
        .authorize_segment_change(&viewer.actor, &project, &proposal.environment, &key)
        .await
        .map_err(json_error)?;
    let run = async {
        let mut value = proposal.segment;
        if lists_missing(&value) {
            let current = dashboard
                .app
                .segment(&viewer.actor, &project, &proposal.environment, &key)
                .await?;
            value = with_current_lists(value, &current.value);
        }
        let proposed = parse_segment(value, &key)?;
        let saved = dashboard
            .app
            .put_segment(
                &viewer.actor,
                &project,
                &proposal.environment,
                proposed,
                Some(proposal.version),
                proposal.comment.trim(),
            )
            .await?;
        Ok::<_, AppError>(json!({"version": saved.version}))
    };
    run.await
        .map(|v| Json(v).into_response())
        .map_err(json_error)
}

/// Asks for approval of a segment edit where the environment requires it (see
/// `flag_changes::request`).
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
            .segment(&viewer.actor, &project, &proposal.environment, &key)
            .await?;
        if current.version != proposal.version {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        let proposed = parse_segment(with_current_lists(proposal.segment, &current.value), &key)?;
        let instructions =
            flagstaff_app::instruction_diff::segment_instructions(&current.value, &proposed)?;
        crate::change_requests::open_request(
            &dashboard,
            &viewer,
            (&project, &proposal.environment),
            (flagstaff_app::TargetKind::Segment, &key),
            instructions,
            (&proposal.comment, proposal.reviewers),
        )
        .await
    };
    run.await
        .map(|v| Json(v).into_response())
        .map_err(json_error)
}

#[derive(Deserialize)]
pub(crate) struct CopyForm {
    #[serde(default)]
    csrf: String,
    /// The environment the segment is in.
    #[serde(default)]
    env: String,
    /// The environment to copy it to.
    #[serde(default)]
    to: String,
    /// Replace a segment of the same key there.
    #[serde(default)]
    replace: Option<String>,
    /// The segment key, typed when the target is critical.
    #[serde(default)]
    confirm: String,
}

/// Copies a segment (its keys and rules) to another environment of the project: created there,
/// or replacing the one of the same key when asked; the typed key where the target is critical.
pub(crate) async fn copy(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<CopyForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let run = async {
        let target = crate::compare::copy_target(
            app,
            &viewer,
            &project,
            (&form.env, &form.to),
            ("segment key", &key, &form.confirm),
        )
        .await?;
        let source = app
            .segment(&viewer.actor, &project, &form.env, &key)
            .await?;
        let existing = match app
            .segment(&viewer.actor, &project, &target.key, &key)
            .await
        {
            Ok(s) => Some(s.version),
            Err(AppError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if existing.is_some() && form.replace.is_none() {
            return Err(AppError::invalid(
                ErrorCode::InvalidField,
                "replace",
                format!(
                    "{} already has a segment “{key}”: tick “replace it” to overwrite it",
                    target.name
                ),
            ));
        }
        let mut segment = source.value;
        // The target's own salt (or a new one) and version: only keys and rules are copied.
        segment.salt = String::new();
        app.put_segment(
            &viewer.actor,
            &project,
            &target.key,
            segment,
            existing,
            &format!("copied from {}", form.env),
        )
        .await?;
        Ok(target.key.clone())
    };
    match run.await {
        Ok(to) => Ok(Redirect::to(&format!(
            "/projects/{project}/segments/{key}?env={}",
            crate::url_encode(&to)
        ))
        .into_response()),
        Err(AppError::Invalid { field, message, .. }) => {
            let mut page = PageError(AppError::invalid(
                ErrorCode::InvalidField,
                field.clone(),
                crate::errors::humane(&field, &message),
            ))
            .into_response();
            *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Err(page)
        }
        Err(e) => Err(PageError(e).into_response()),
    }
}

/// `POST /projects/{project}/segments/{key}/members?env=…&list=…&op=…`: a big segment's list,
/// sent by the page's upload form as the file's bytes (the same reading as the API's, streamed;
/// JSON answers, which the form shows).
pub(crate) async fn upload_members(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(query): Query<flagstaff_http::big_segment_list::ListQuery>,
    body: axum::body::Body,
) -> Response {
    if let Err(refused) = viewer.check_csrf(&headers, None) {
        return refused.into_response();
    }
    let result = async {
        let (list, remove) = query.parse()?;
        let environment = query.env.clone().unwrap_or_default();
        let upload = dashboard
            .app
            .begin_big_segment_upload(&viewer.actor, (&project, &environment, &key), list, remove)
            .await?;
        flagstaff_http::big_segment_list::upload(
            &dashboard.app,
            upload,
            &headers,
            body,
            "uploaded in the dashboard",
        )
        .await
    }
    .await;
    match result {
        Ok(summary) => axum::Json(summary).into_response(),
        Err(error) => error.into_response(),
    }
}
