//! "Test a context": paste or build a context and see what every flag serves it, and why, with
//! the rule that matched. A read: it is a GET form, so a result can be linked and shared.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use flagstaff_app::AppError;
use serde::Deserialize;
use serde_json::Value;

use crate::describe;
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

/// What a flag serves the context.
pub(crate) struct Outcome {
    pub key: String,
    pub name: String,
    pub value: String,
    pub reason: String,
    /// The matching rule, described, when a rule matched.
    pub rule: String,
    pub rule_id: String,
    pub error: bool,
}

#[derive(Template)]
#[template(path = "test_context.html")]
struct TestPage {
    nav: Nav,
    context: String,
    outcomes: Vec<Outcome>,
    error: Option<String>,
    evaluated: bool,
}

#[derive(Deserialize, Default)]
pub(crate) struct TestQuery {
    env: Option<String>,
    context: Option<String>,
}

const EXAMPLE: &str = "{\n  \"kind\": \"user\",\n  \"key\": \"user-123\",\n  \"email\": \"ada@example.com\",\n  \"country\": \"DE\"\n}";

fn reason_text(reason: &Value) -> String {
    match reason["kind"].as_str().unwrap_or_default() {
        "OFF" => "Targeting is off: the off variation".into(),
        "FALLTHROUGH" => "No target or rule matched: the default rule".into(),
        "TARGET_MATCH" => "Individually targeted".into(),
        "RULE_MATCH" => format!(
            "Matched rule {}",
            reason["ruleIndex"].as_i64().map_or(0, |i| i + 1)
        ),
        "PREREQUISITE_FAILED" => format!(
            "Prerequisite flag {} did not serve what it must",
            reason["prerequisiteKey"].as_str().unwrap_or("?")
        ),
        "ERROR" => format!(
            "Error: {}",
            reason["errorKind"].as_str().unwrap_or("unknown")
        ),
        other => other.to_owned(),
    }
}

pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<TestQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "test",
        format!("/projects/{project}/test"),
    )
    .await?;
    let Some(text) = q.context.filter(|c| !c.trim().is_empty()) else {
        return Ok(render(&TestPage {
            nav,
            context: EXAMPLE.into(),
            outcomes: Vec::new(),
            error: None,
            evaluated: false,
        }));
    };
    let parsed: Result<Value, String> =
        serde_json::from_str(&text).map_err(|e| format!("The context is not JSON: {e}"));
    let app = &dashboard.app;
    let result = match parsed {
        Err(e) => Err(e),
        Ok(context) => match app
            .evaluate_with_data(&viewer.actor, &project, &nav.environment, &context)
            .await
        {
            Ok(v) => Ok(v),
            Err(AppError::Invalid { field, message, .. }) => Err(format!("{field}: {message}")),
            Err(e) => return Err(e.into()),
        },
    };
    let (outcomes, error) = match result {
        Err(e) => (Vec::new(), Some(e)),
        Ok((data, evaluation)) => {
            // The overview is cached between changes; reading the definitions again would
            // cost a third of the page's budget with 1,000 flags.
            let definitions: HashMap<String, _> = app
                .flag_overview(&viewer.actor, &project)
                .await?
                .flags
                .into_iter()
                .map(|row| (row.definition.key.clone(), row.definition))
                .collect();
            let mut outcomes = Vec::new();
            if let Some(flags) = evaluation["flags"].as_object() {
                for (key, result) in flags {
                    let definition = definitions.get(key);
                    let variations = definition.map(|d| d.variations.as_slice()).unwrap_or(&[]);
                    let value = match result["variationIndex"].as_i64() {
                        Some(i) => describe::variation(variations, i),
                        None => format!(
                            "the caller's default ({})",
                            describe::value(&result["value"])
                        ),
                    };
                    let reason = &result["reason"];
                    let (rule, rule_id) =
                        match (reason["kind"].as_str(), reason["ruleIndex"].as_i64()) {
                            (Some("RULE_MATCH"), Some(i)) => data
                                .flags
                                .get(key)
                                .and_then(|f| f.rules.get(usize::try_from(i).unwrap_or(usize::MAX)))
                                .map(|r| (describe::rule(variations, r), r.id.clone()))
                                .unwrap_or_default(),
                            _ => Default::default(),
                        };
                    outcomes.push(Outcome {
                        key: key.clone(),
                        name: definition.map(|d| d.name.clone()).unwrap_or_default(),
                        value,
                        reason: reason_text(reason),
                        error: reason["kind"] == "ERROR",
                        rule,
                        rule_id,
                    });
                }
            }
            outcomes.sort_by(|a, b| a.key.cmp(&b.key));
            (outcomes, None)
        }
    };
    let evaluated = error.is_none();
    let mut page = render(&TestPage {
        nav,
        context: text,
        outcomes,
        error,
        evaluated,
    });
    if !evaluated {
        *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(page)
}
