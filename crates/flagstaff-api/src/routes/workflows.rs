//! Release workflows: scheduled changes and rollout plans, change requests, flag triggers.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::{
    App, ApplyRequest, FlagRef, NewChangeRequest, NewReview, NewRolloutPlan, NewSchedule,
    NewTrigger, ScheduleUpdate, Target, TargetKind, TriggerUpdate, Versioned,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Body, Caller, Comment, MaybeIfMatch, versioned};
use crate::routes::{AppState, items};

/// The routes of these resources.
pub(crate) fn routes() -> Router<Arc<App>> {
    let env = "/projects/{project}/environments/{environment}";
    Router::new()
        .route(
            &format!("{env}/flags/{{key}}/scheduled-changes"),
            get(list_flag_schedules).post(create_flag_schedule),
        )
        .route(
            &format!("{env}/segments/{{key}}/scheduled-changes"),
            get(list_segment_schedules).post(create_segment_schedule),
        )
        .route(
            &format!("{env}/scheduled-changes"),
            get(list_environment_schedules),
        )
        .route(
            &format!("{env}/scheduled-changes/{{id}}"),
            get(get_schedule)
                .patch(update_schedule)
                .delete(cancel_schedule),
        )
        .route(
            &format!("{env}/flags/{{key}}/rollout-plans"),
            post(create_rollout_plan),
        )
        .route(
            &format!("{env}/rollout-plans/{{plan}}"),
            axum::routing::delete(cancel_rollout_plan),
        )
        .route(
            &format!("{env}/change-requests"),
            get(list_change_requests).post(create_change_request),
        )
        .route(
            "/change-requests/{id}",
            get(get_change_request).delete(cancel_change_request),
        )
        .route("/change-requests/{id}/reviews", post(review_change_request))
        .route("/change-requests/{id}/apply", post(apply_change_request))
        .route(
            "/projects/{project}/flags/{key}/environments/{environment}/triggers",
            get(list_triggers).post(create_trigger),
        )
        .route(
            "/projects/{project}/flags/{key}/environments/{environment}/triggers/{id}",
            axum::routing::patch(update_trigger).delete(delete_trigger),
        )
        .route("/triggers/{secret}", post(fire_trigger))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleQuery {
    /// `true`: also executed, failed and cancelled ones.
    #[serde(default)]
    finished: Option<bool>,
}

async fn list_schedules(
    app: &App,
    actor: &flagstaff_app::Actor,
    (project, environment): (&str, &str),
    of: Option<(TargetKind, &str)>,
    query: &ScheduleQuery,
) -> Result<Json<Value>> {
    Ok(items(
        app.scheduled_changes(
            actor,
            (project, environment),
            of,
            query.finished.unwrap_or(false),
        )
        .await?,
    ))
}

async fn list_flag_schedules(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
    Query(query): Query<ScheduleQuery>,
) -> Result<Json<Value>> {
    list_schedules(
        &app,
        &actor,
        (&project, &environment),
        Some((TargetKind::Flag, &key)),
        &query,
    )
    .await
}

async fn list_segment_schedules(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
    Query(query): Query<ScheduleQuery>,
) -> Result<Json<Value>> {
    list_schedules(
        &app,
        &actor,
        (&project, &environment),
        Some((TargetKind::Segment, &key)),
        &query,
    )
    .await
}

async fn list_environment_schedules(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<ScheduleQuery>,
) -> Result<Json<Value>> {
    list_schedules(&app, &actor, (&project, &environment), None, &query).await
}

async fn create_flag_schedule(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(new): Body<NewSchedule>,
) -> Result<Response> {
    let target = Target::flag(&project, &environment, &key);
    Ok(versioned(
        StatusCode::CREATED,
        &app.schedule_change(&actor, &target, new).await?,
    ))
}

async fn create_segment_schedule(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(new): Body<NewSchedule>,
) -> Result<Response> {
    let target = Target::segment(&project, &environment, &key);
    Ok(versioned(
        StatusCode::CREATED,
        &app.schedule_change(&actor, &target, new).await?,
    ))
}

async fn get_schedule(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, id)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.scheduled_change(&actor, (&project, &environment), &id)
            .await?,
    ))
}

async fn update_schedule(
    State(app): AppState,
    Caller(actor): Caller,
    MaybeIfMatch(version): MaybeIfMatch,
    Path((project, environment, id)): Path<(String, String, String)>,
    Body(update): Body<ScheduleUpdate>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.reschedule(&actor, (&project, &environment), &id, update, version)
            .await?,
    ))
}

async fn cancel_schedule(
    State(app): AppState,
    Caller(actor): Caller,
    MaybeIfMatch(version): MaybeIfMatch,
    Comment(comment): Comment,
    Path((project, environment, id)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    app.cancel_scheduled_change(&actor, (&project, &environment), &id, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_rollout_plan(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(plan): Body<NewRolloutPlan>,
) -> Result<Response> {
    let target = Target::flag(&project, &environment, &key);
    let steps = app.create_rollout_plan(&actor, &target, plan).await?;
    let plan = steps.first().and_then(|s| s.plan.clone());
    Ok((
        StatusCode::CREATED,
        Json(json!({"plan": plan, "steps": steps})),
    )
        .into_response())
}

async fn cancel_rollout_plan(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, plan)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let steps = app
        .cancel_rollout_plan(&actor, (&project, &environment), &plan, &comment)
        .await?;
    Ok(Json(json!({"plan": plan, "cancelled": steps})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    /// `true`: also applied and cancelled ones.
    #[serde(default)]
    all: Option<bool>,
}

async fn list_change_requests(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<RequestQuery>,
) -> Result<Json<Value>> {
    Ok(items(
        app.change_requests(&actor, (&project, &environment), query.all.unwrap_or(false))
            .await?,
    ))
}

async fn create_change_request(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Body(new): Body<NewChangeRequest>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.create_change_request(&actor, (&project, &environment), new)
            .await?,
    ))
}

async fn get_change_request(
    State(app): AppState,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let view = app.change_request(&actor, &id).await?;
    let version = view.version;
    Ok(versioned(
        StatusCode::OK,
        &Versioned {
            version,
            value: view,
        },
    ))
}

async fn review_change_request(
    State(app): AppState,
    Caller(actor): Caller,
    MaybeIfMatch(version): MaybeIfMatch,
    Path(id): Path<String>,
    Body(review): Body<NewReview>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.review_change_request(&actor, &id, review, version)
            .await?,
    ))
}

async fn apply_change_request(
    State(app): AppState,
    Caller(actor): Caller,
    MaybeIfMatch(version): MaybeIfMatch,
    Path(id): Path<String>,
    flagstaff_http::RawBody(body): flagstaff_http::RawBody,
) -> Result<Response> {
    // The body is optional: none applies now, `{"executeAt", "timeZone"}` schedules.
    let apply: ApplyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ApplyRequest::default()
    } else {
        flagstaff_http::parse_json(&body)?
    };
    Ok(versioned(
        StatusCode::OK,
        &app.apply_change_request(&actor, &id, apply, version)
            .await?,
    ))
}

async fn cancel_change_request(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.cancel_change_request(&actor, &id, &comment).await?,
    ))
}

async fn list_triggers(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key, environment)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let flag = FlagRef {
        project: &project,
        environment: &environment,
        key: &key,
    };
    Ok(Json(json!({"items": app.triggers(&actor, flag).await?})))
}

async fn create_trigger(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key, environment)): Path<(String, String, String)>,
    Body(new): Body<NewTrigger>,
) -> Result<Response> {
    let flag = FlagRef {
        project: &project,
        environment: &environment,
        key: &key,
    };
    Ok((
        StatusCode::CREATED,
        Json(app.create_trigger(&actor, flag, new).await?),
    )
        .into_response())
}

async fn update_trigger(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key, environment, id)): Path<(String, String, String, String)>,
    Body(update): Body<TriggerUpdate>,
) -> Result<Json<Value>> {
    let flag = FlagRef {
        project: &project,
        environment: &environment,
        key: &key,
    };
    let (trigger, url) = app.update_trigger(&actor, flag, &id, update).await?;
    let mut body = serde_json::to_value(trigger).unwrap_or(Value::Null);
    if let Some(url) = url {
        body["triggerUrl"] = json!(url);
    }
    Ok(Json(body))
}

async fn delete_trigger(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key, environment, id)): Path<(String, String, String, String)>,
) -> Result<StatusCode> {
    let flag = FlagRef {
        project: &project,
        environment: &environment,
        key: &key,
    };
    app.delete_trigger(&actor, flag, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A monitoring tool's call: the secret in the path is the only credential, and whatever body
/// the tool sends is not read.
async fn fire_trigger(State(app): AppState, Path(secret): Path<String>) -> Result<Json<Value>> {
    Ok(Json(json!(app.fire_trigger(&secret).await?)))
}
