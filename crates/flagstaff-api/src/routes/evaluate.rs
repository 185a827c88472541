//! `POST .../environments/{environment}/evaluate`: every flag for a context, as details or as a
//! bootstrap document.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use flagstaff_app::App;
use serde::Deserialize;
use serde_json::Value;

use crate::Result;
use crate::extract::{Body, Caller};
use crate::routes::AppState;

/// The routes of this resource.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/projects/{project}/environments/{environment}/evaluate",
        post(evaluate),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EvaluateRequest {
    context: Value,
    /// `explain` (the default): every flag with its reason; `bootstrap`: LaunchDarkly's
    /// `allFlagsState` document for a browser SDK's `bootstrap` option.
    #[serde(default)]
    format: EvaluateFormat,
    #[serde(default)]
    client_side_only: bool,
    #[serde(default)]
    with_reasons: bool,
    #[serde(default)]
    details_only_for_tracked_flags: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
enum EvaluateFormat {
    #[default]
    Explain,
    Bootstrap,
}

async fn evaluate(
    State(app): AppState,
    Caller(actor): Caller,
    Path((project, environment)): Path<(String, String)>,
    Body(request): Body<EvaluateRequest>,
) -> Result<Json<Value>> {
    let result = match request.format {
        EvaluateFormat::Explain => {
            app.evaluate(&actor, &project, &environment, &request.context)
                .await?
        }
        EvaluateFormat::Bootstrap => {
            let options = flagstaff_app::BootstrapOptions {
                client_side_only: request.client_side_only,
                with_reasons: request.with_reasons,
                details_only_for_tracked_flags: request.details_only_for_tracked_flags,
            };
            app.bootstrap(&actor, &project, &environment, &request.context, options)
                .await?
        }
    };
    Ok(Json(result))
}
