//! `/projects/{project}/environments/{environment}/experiments`: A/B tests of a flag's
//! variations, their iterations and results; and `…/flags/{key}/guarded-rollout`: a release
//! plan whose steps advance while guard metrics hold and roll back when they regress
//! (issue 21).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use flagstaff_app::experiments::NewExperiment;
use flagstaff_app::guarded_rollouts::NewGuardedRollout;
use flagstaff_app::{App, AppError, EnvRef, ErrorCode, FlagRef};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::extract::{Body, Caller, Comment, IfMatch, versioned};
use crate::routes::{AppState, items};

const BASE: &str = "/projects/{project}/environments/{environment}/experiments";

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(BASE, get(list_experiments).post(create_experiment))
        .route(
            &format!("{BASE}/{{key}}"),
            get(get_experiment)
                .put(update_experiment)
                .delete(delete_experiment),
        )
        .route(&format!("{BASE}/{{key}}/start"), post(start_experiment))
        .route(&format!("{BASE}/{{key}}/stop"), post(stop_experiment))
        .route(&format!("{BASE}/{{key}}/ship"), post(ship_experiment))
        .route(&format!("{BASE}/{{key}}/results"), get(experiment_results))
        .route(
            GUARDED,
            get(get_guarded_rollout).post(start_guarded_rollout),
        )
        .route(&format!("{GUARDED}/pause"), post(pause_guarded_rollout))
        .route(&format!("{GUARDED}/resume"), post(resume_guarded_rollout))
        .route(&format!("{GUARDED}/abort"), post(abort_guarded_rollout))
}

const GUARDED: &str = "/projects/{project}/environments/{environment}/flags/{key}/guarded-rollout";

fn flag<'a>(project: &'a str, environment: &'a str, key: &'a str) -> FlagRef<'a> {
    FlagRef {
        project,
        environment,
        key,
    }
}

async fn get_guarded_rollout(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.guarded_rollout(&actor, flag(&project, &environment, &key))
            .await?,
    ))
}

async fn start_guarded_rollout(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(plan): Body<NewGuardedRollout>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.start_guarded_rollout(&actor, flag(&project, &environment, &key), plan, &comment)
            .await?,
    ))
}

async fn pause_guarded_rollout(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.pause_guarded_rollout(&actor, flag(&project, &environment, &key), true, &comment)
            .await?,
    ))
}

async fn resume_guarded_rollout(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.pause_guarded_rollout(&actor, flag(&project, &environment, &key), false, &comment)
            .await?,
    ))
}

async fn abort_guarded_rollout(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.abort_guarded_rollout(&actor, flag(&project, &environment, &key), &comment)
            .await?,
    ))
}

fn env<'a>(project: &'a str, environment: &'a str) -> EnvRef<'a> {
    EnvRef {
        project,
        environment,
    }
}

async fn list_experiments(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
) -> Result<Json<Value>> {
    Ok(items(
        app.list_experiments(&actor, env(&project, &environment))
            .await?,
    ))
}

async fn create_experiment(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment)): Path<(String, String)>,
    Body(experiment): Body<NewExperiment>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::CREATED,
        &app.create_experiment(&actor, env(&project, &environment), experiment, &comment)
            .await?,
    ))
}

async fn get_experiment(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.experiment(&actor, env(&project, &environment), &key)
            .await?,
    ))
}

async fn update_experiment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(experiment): Body<NewExperiment>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.update_experiment(
            &actor,
            env(&project, &environment),
            &key,
            experiment,
            version,
            &comment,
        )
        .await?,
    ))
}

async fn delete_experiment(
    State(app): AppState,
    Caller(actor): Caller,
    IfMatch(version): IfMatch,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    app.delete_experiment(&actor, env(&project, &environment), &key, version, &comment)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start_experiment(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.start_experiment(&actor, env(&project, &environment), &key, &comment)
            .await?,
    ))
}

async fn stop_experiment(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.stop_experiment(&actor, env(&project, &environment), &key, None, &comment)
            .await?,
    ))
}

/// What `ship` serves.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Ship {
    variation: u32,
}

async fn ship_experiment(
    State(app): AppState,
    Caller(actor): Caller,
    Comment(comment): Comment,
    Path((project, environment, key)): Path<(String, String, String)>,
    Body(ship): Body<Ship>,
) -> Result<Response> {
    Ok(versioned(
        StatusCode::OK,
        &app.stop_experiment(
            &actor,
            env(&project, &environment),
            &key,
            Some(ship.variation),
            &comment,
        )
        .await?,
    ))
}

/// `?iteration=N` (the last one by default), read as text so that a bad value gets the API's
/// structured error.
#[derive(Deserialize, Default)]
struct ResultsParams {
    iteration: Option<String>,
}

async fn experiment_results(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment, key)): Path<(String, String, String)>,
    Query(p): Query<ResultsParams>,
) -> Result<Json<Value>> {
    let iteration = match p.iteration.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<u32>().map_err(|_| {
            AppError::invalid(
                ErrorCode::InvalidQuery,
                "iteration",
                format!("{text:?} is not an iteration number"),
            )
        })?),
    };
    let results = app
        .experiment_results(&actor, env(&project, &environment), &key, iteration)
        .await?;
    Ok(Json(json!(results)))
}
