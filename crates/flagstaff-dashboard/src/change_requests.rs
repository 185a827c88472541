//! Change requests in the dashboard: a request's page (what it changes against the flag or
//! segment as it is *now*, what others changed since it was made, reviews, apply now or at a
//! moment, withdraw), the project's list of open requests, and `open_request`, which the flag
//! and segment editors' "Request approval" goes through.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::policy::Resource;
use flagstaff_app::{
    AppError, ApplyRequest, ChangeRequest, NewReview, RequestStatus, ReviewKind, Target, TargetKind,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::describe::{self, DiffLine};
use crate::session::Viewer;
use crate::workflows::local;
use crate::{DashState, Dashboard, Nav, PageError, render, time};

/// An open change request as lists show it.
pub(crate) struct RequestRow {
    pub id: String,
    pub environment: String,
    pub key: String,
    pub kind: &'static str,
    pub status: String,
    pub by: String,
    pub when: String,
    pub comment: String,
    /// Whom the requester asked to review, comma-separated.
    pub reviewers: String,
}

pub(crate) fn request_row(request: &ChangeRequest) -> RequestRow {
    RequestRow {
        id: request.id.clone(),
        environment: request.environment.clone(),
        key: request.key.clone(),
        kind: request.kind.as_str(),
        status: status_text(request.status).into(),
        by: request.requested_by.clone(),
        when: time(request.requested_at),
        comment: request.comment.clone(),
        reviewers: request.reviewers.join(", "),
    }
}

fn status_text(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Pending => "waiting for review",
        RequestStatus::Approved => "approved",
        RequestStatus::Declined => "declined",
        RequestStatus::Applied => "applied",
        RequestStatus::Scheduled => "approved and scheduled",
        RequestStatus::Cancelled => "cancelled",
    }
}

#[derive(Template)]
#[template(path = "change_requests.html")]
struct RequestsPage {
    nav: Nav,
    requests: Vec<RequestRow>,
}

#[derive(Deserialize, Default)]
pub(crate) struct EnvQuery {
    env: Option<String>,
}

/// The open change requests of every environment of the project the viewer may see.
pub(crate) async fn requests(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "requests",
        format!("/projects/{project}/change-requests"),
    )
    .await?;
    let mut requests = Vec::new();
    for environment in &nav.environments {
        match dashboard
            .app
            .change_requests(&viewer.actor, (&project, &environment.key), false)
            .await
        {
            Ok(list) => requests.extend(list.iter().map(|r| request_row(&r.value))),
            Err(AppError::Forbidden(_)) => {}
            Err(e) => return Err(PageError(e)),
        }
    }
    Ok(render(&RequestsPage { nav, requests }))
}

#[derive(Template)]
#[template(path = "change_request.html")]
struct RequestPage {
    nav: Nav,
    request: RequestRow,
    reviews: Vec<(String, &'static str, String, String)>,
    lines: Vec<DiffLine>,
    /// What changed since the request was made (empty when nothing did).
    since: Vec<DiffLine>,
    conflict: Option<String>,
    approvals: u32,
    min_approvals: u32,
    open: bool,
    approved: bool,
    scheduled_for: String,
    may_review: bool,
    may_apply: bool,
    is_requester: bool,
}

/// A change request: what applying it *now* would change, the reviews, and what the viewer may
/// do about it.
pub(crate) async fn request_page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let app = &dashboard.app;
    let view = app.change_request(&viewer.actor, &id).await?;
    let request = &view.request;
    if request.project != project {
        return Err(PageError(AppError::NotFound(format!(
            "change request {id:?}"
        ))));
    }
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        Some(&request.environment),
        "requests",
        format!("/projects/{project}/change-requests/{id}"),
    )
    .await?;
    // The flag's targeting or the segment in words, to diff.
    let variations = match request.kind {
        TargetKind::Flag => {
            app.flag(&viewer.actor, &project, &request.key)
                .await?
                .value
                .variations
        }
        TargetKind::Segment => Vec::new(),
    };
    let words = |v: &Value| -> Option<Vec<String>> {
        match request.kind {
            TargetKind::Flag => {
                serde_json::from_value::<flagstaff_app::model::Targeting>(v.clone())
                    .ok()
                    .map(|t| describe::targeting(&variations, &t))
            }
            TargetKind::Segment => serde_json::from_value::<flagstaff_protocol::Segment>(v.clone())
                .ok()
                .map(|s| describe::segment(&s)),
        }
    };
    let now = words(&view.current).unwrap_or_default();
    let diff = match view.proposed.as_ref().and_then(words) {
        Some(then) => describe::diff(&now, &then),
        None => Vec::new(),
    };
    // What others changed since the request was made, so that reviewers see it too.
    let since = words(&request.base)
        .map(|base| describe::diff(&base, &now))
        .filter(|lines| describe::changes(lines))
        .unwrap_or_default();
    let target = Target {
        project: project.clone(),
        environment: request.environment.clone(),
        kind: request.kind,
        key: request.key.clone(),
    };
    let tags: Vec<String> = match request.kind {
        TargetKind::Flag => {
            app.flag(&viewer.actor, &project, &request.key)
                .await?
                .value
                .tags
        }
        TargetKind::Segment => Vec::new(),
    };
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let env_tags: &[&str] = if nav.critical() { &["critical"] } else { &[] };
    let resource = Resource::new()
        .with("proj", &project, &[])
        .with("env", &target.environment, env_tags)
        .with(target.kind.as_str(), &target.key, &tags);
    Ok(render(&RequestPage {
        reviews: request
            .reviews
            .iter()
            .map(|r| {
                let verdict = match r.kind {
                    ReviewKind::Approve => "approved",
                    ReviewKind::Decline => "declined",
                    ReviewKind::Comment => "commented",
                };
                (r.by.clone(), verdict, r.comment.clone(), time(r.at))
            })
            .collect(),
        lines: diff,
        since,
        conflict: view
            .conflict
            .as_ref()
            .map(|c| c["message"].as_str().unwrap_or_default().to_owned()),
        approvals: view.approvals,
        min_approvals: view.min_approvals,
        open: matches!(
            request.status,
            RequestStatus::Pending | RequestStatus::Approved | RequestStatus::Declined
        ),
        approved: request.status == RequestStatus::Approved,
        scheduled_for: request
            .execution_date
            .map(|at| match &request.time_zone {
                Some(zone) => flagstaff_app::when::local_time(at, zone)
                    .map(|l| format!("{} ({zone})", l.replace('T', " ")))
                    .unwrap_or_else(|| time(at)),
                None => time(at),
            })
            .unwrap_or_default(),
        may_review: viewer
            .actor
            .decide("reviewApprovalRequest", &resource)
            .allowed,
        may_apply: viewer
            .actor
            .decide("applyApprovalRequest", &resource)
            .allowed,
        is_requester: viewer.actor.id == request.requested_by,
        request: request_row(request),
        nav,
    }))
}

#[derive(Deserialize)]
pub(crate) struct RequestForm {
    #[serde(default)]
    csrf: String,
    /// `approve`, `decline`, `comment`, `apply` or `cancel`.
    op: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    time_zone: String,
}

/// Reviews, applies (now or at a moment) or cancels a change request.
pub(crate) async fn act_on_request(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, id)): Path<(String, String)>,
    Form(form): Form<RequestForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let review = |kind| NewReview {
        kind,
        comment: form.comment.trim().to_owned(),
    };
    let result = match form.op.as_str() {
        "approve" => {
            app.review_change_request(&viewer.actor, &id, review(ReviewKind::Approve), None)
                .await
        }
        "decline" => {
            app.review_change_request(&viewer.actor, &id, review(ReviewKind::Decline), None)
                .await
        }
        "comment" => {
            app.review_change_request(&viewer.actor, &id, review(ReviewKind::Comment), None)
                .await
        }
        "apply" => {
            let apply = if form.date.trim().is_empty() {
                ApplyRequest::default()
            } else {
                ApplyRequest {
                    execute_at: Some(local(&form.date, &form.time)),
                    time_zone: Some(match form.time_zone.trim() {
                        "" => "UTC".to_owned(),
                        zone => zone.to_owned(),
                    }),
                    execution_date: None,
                }
            };
            app.apply_change_request(&viewer.actor, &id, apply, None)
                .await
        }
        _ => {
            app.cancel_change_request(&viewer.actor, &id, "cancelled in the dashboard")
                .await
        }
    };
    let request = result.map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to(&format!(
        "/projects/{project}/change-requests/{id}?env={}",
        request.value.environment
    ))
    .into_response())
}

/// Opens a change request for `instructions` made from an edit in the dashboard (the flag and
/// segment editors' "Request approval"); answers where the request's page is.
pub(crate) async fn open_request(
    dashboard: &Dashboard,
    viewer: &Viewer,
    (project, environment): (&str, &str),
    (kind, key): (TargetKind, &str),
    instructions: Vec<Value>,
    (comment, reviewers): (&str, Vec<String>),
) -> Result<Value, AppError> {
    if instructions.is_empty() {
        return Err(AppError::invalid(
            flagstaff_app::ErrorCode::InvalidField,
            kind.as_str(),
            "nothing to change: this is what is stored already",
        ));
    }
    let (flag, segment) = match kind {
        TargetKind::Flag => (Some(key.to_owned()), None),
        TargetKind::Segment => (None, Some(key.to_owned())),
    };
    let request = dashboard
        .app
        .create_change_request(
            &viewer.actor,
            (project, environment),
            flagstaff_app::NewChangeRequest {
                flag,
                segment,
                instructions,
                comment: comment.trim().to_owned(),
                reviewers,
                ..flagstaff_app::NewChangeRequest::default()
            },
        )
        .await?;
    Ok(json!({"url": format!(
        "/projects/{project}/change-requests/{}?env={environment}",
        request.value.id
    )}))
}
