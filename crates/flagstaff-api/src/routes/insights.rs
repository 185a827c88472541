//! Flag insights from SDK events: a flag's evaluations, statuses, stale flags, contexts seen,
//! custom events, SDKs, samples and the pipeline's health.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use flagstaff_app::App;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::Caller;
use crate::routes::AppState;
use flagstaff_http::ApiError;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/projects/{project}/flags/{key}/insights",
            get(flag_insights),
        )
        .route(
            "/projects/{project}/flags/{key}/migration-insights",
            get(migration_insights),
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
}

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
                flagstaff_app::ErrorCode::InvalidQuery,
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
    let (environment, range) = charted(&p)?;
    let insights = app
        .flag_insights(&actor, &project, &key, environment, range, status_days(&p)?)
        .await?;
    Ok(Json(json!(insights)))
}

/// The environment (required) and the period (`range`, 24 hours unless given) of a chart.
fn charted(p: &InsightParams) -> Result<(&str, flagstaff_app::insights::InsightsRange)> {
    let environment = p
        .environment
        .as_deref()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            ApiError::from(flagstaff_app::AppError::invalid(
                flagstaff_app::ErrorCode::MissingEnvironment,
                "environment",
                "say which environment to chart: ?environment=<key>",
            ))
        })?;
    let range = flagstaff_app::insights::InsightsRange::parse(p.range.as_deref().unwrap_or("24h"))?;
    Ok((environment, range))
}

/// What SDK migrators reported about a migration flag (`migration_op` events).
async fn migration_insights(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, key)): Path<(String, String)>,
    Query(p): Query<InsightParams>,
) -> Result<Json<Value>> {
    let (environment, range) = charted(&p)?;
    let insights = app
        .migration_insights(&actor, &project, &key, environment, range)
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
