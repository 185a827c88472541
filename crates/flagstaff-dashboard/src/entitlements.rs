//! Entitlements from the context's side: on "Test a context", each flag's cell in each
//! environment offers "serve this variation to organization acme" (or stop targeting it
//! individually). A change here is the individual targeting people would otherwise make on the
//! flag's page, through the same instructions (`removeTargets` from the variation the context is
//! in now, `addTargets` to the chosen one), authorization and audit; a critical environment asks
//! for the flag key typed, like everywhere else.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::{AppError, FlagRef};
use serde::Deserialize;
use serde_json::json;

use crate::session::Viewer;
use crate::{DashState, Nav, PageError};

#[derive(Deserialize)]
pub(crate) struct TargetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    env: String,
    /// `kind:key` of the context to target.
    #[serde(default)]
    who: String,
    /// The variation index to serve it, or empty to remove its individual target.
    #[serde(default)]
    variation: String,
    /// The flag key, typed in a critical environment.
    #[serde(default)]
    confirm: String,
    /// The "Test a context" query to come back to.
    #[serde(default)]
    back: String,
}

fn invalid(field: &str, message: impl Into<String>) -> PageError {
    PageError(AppError::invalid(
        flagstaff_app::validate::codes::INVALID_FIELD,
        field,
        message,
    ))
}

pub(crate) async fn target(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<TargetForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        Some(form.env.as_str()).filter(|e| !e.is_empty()),
        "test",
        format!("/projects/{project}/test"),
    )
    .await
    .map_err(IntoResponse::into_response)?;
    let run = async {
        let Some((kind, context_key)) = form
            .who
            .split_once(':')
            .filter(|(k, c)| !k.is_empty() && !c.is_empty())
        else {
            return Err(invalid("who", "Choose whom to target"));
        };
        if nav.critical() && form.confirm.trim() != key {
            return Err(invalid(
                "confirm",
                format!(
                    "{} is critical: type the flag key “{key}” to confirm (nothing was changed)",
                    nav.current()
                        .map_or("This environment", |e| e.name.as_str())
                ),
            ));
        }
        let chosen: Option<i64> = match form.variation.trim() {
            "" => None,
            v => Some(
                v.parse()
                    .map_err(|_| invalid("variation", "Choose a variation"))?,
            ),
        };
        let flag = FlagRef {
            project: &project,
            environment: &nav.environment,
            key: &key,
        };
        let current = dashboard
            .app
            .targeting(&viewer.actor, &project, &nav.environment, &key)
            .await?;
        let is_user = kind == "user";
        let mut instructions = Vec::new();
        for t in current
            .value
            .targets
            .iter()
            .chain(&current.value.context_targets)
        {
            let same_kind = t.context_kind.as_deref().unwrap_or("user") == kind;
            // User targets live in `targets`; `contextTargets` may hold empty user placeholders.
            let holds = same_kind && t.values.iter().any(|v| v == context_key);
            if holds && Some(t.variation) != chosen {
                instructions.push(json!({"kind": "removeTargets", "contextKind": kind,
                    "variation": t.variation, "values": [context_key]}));
            }
        }
        let already = current
            .value
            .targets
            .iter()
            .filter(|_| is_user)
            .chain(current.value.context_targets.iter())
            .any(|t| {
                t.context_kind.as_deref().unwrap_or("user") == kind
                    && Some(t.variation) == chosen
                    && t.values.iter().any(|v| v == context_key)
            });
        if let (Some(variation), false) = (chosen, already) {
            instructions.push(json!({"kind": "addTargets", "contextKind": kind,
                "variation": variation, "values": [context_key]}));
        }
        if !instructions.is_empty() {
            let comment = match chosen {
                Some(v) => format!("entitlement: variation {} for {kind} {context_key}", v + 1),
                None => format!("entitlement removed for {kind} {context_key}"),
            };
            dashboard
                .app
                .apply_flag_instructions(flag, &instructions, None, &viewer.actor, &comment)
                .await?;
        }
        Ok::<_, PageError>(())
    };
    run.await.map_err(IntoResponse::into_response)?;
    // Back to the same view, which now shows the change; only a query of this project's test
    // page is followed (no open redirect), made of characters a URL query may hold as they are
    // (a control character would not even be a valid header).
    let query_safe = |c: char| c.is_ascii_alphanumeric() || "?&=%+-._~:".contains(c);
    let back = if form.back.starts_with('?') && form.back.chars().all(query_safe) {
        format!("/projects/{project}/test{}", form.back)
    } else {
        format!(
            "/projects/{project}/test?env={}",
            crate::url_encode(&nav.environment)
        )
    };
    Ok(Redirect::to(&back).into_response())
}
