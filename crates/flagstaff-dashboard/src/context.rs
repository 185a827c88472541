//! "Test a context": build a context in a form (kind, key, attributes; several kinds make a
//! multi-context) or paste its JSON, and see what every flag serves it, and why, with the rule
//! that matched, in every environment side by side. A read: it is a GET form, so a result can
//! be linked and shared.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use flagstaff_app::AppError;
use serde_json::Value;

use crate::describe;
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

/// What a flag serves the context in one environment.
pub(crate) struct Served {
    pub value: String,
    pub reason: String,
    /// The matching rule, described, when a rule matched.
    pub rule: String,
    pub rule_id: String,
    pub error: bool,
}

/// A flag's results, one per environment shown (the current one first).
pub(crate) struct Outcome {
    pub key: String,
    pub name: String,
    pub served: Vec<Option<Served>>,
    /// Its variations in words, for "serve this to …" (`entitlements.rs`).
    pub variations: Vec<String>,
}

/// An environment's column.
pub(crate) struct Column {
    pub key: String,
    pub name: String,
    pub critical: bool,
    /// Whether the viewer may target contexts individually there (the server decides again).
    pub may_target: bool,
}

/// One context of the form (a multi-context has several).
#[derive(Clone, Debug, Default)]
pub(crate) struct FormContext {
    pub kind: String,
    pub key: String,
    /// `name = value` per line; a value that is JSON (`42`, `true`, `"x"`, `[1]`) is read as
    /// JSON, anything else as text.
    pub attributes: String,
}

/// Contexts the form shows: what was asked, and blank rows to add kinds (multi-context).
const FORM_ROWS: usize = 3;

#[derive(Template)]
#[template(path = "test_context.html")]
struct TestPage {
    nav: Nav,
    /// The JSON form's text.
    context: String,
    /// The builder form's rows.
    rows: Vec<FormContext>,
    /// Context kinds the form suggests.
    kinds: Vec<String>,
    /// The environments shown, current first.
    columns: Vec<Column>,
    /// The contexts evaluated, (kind, key), whom the cells can target.
    contexts: Vec<(String, String)>,
    /// This page's query, to come back to after a change.
    back: String,
    outcomes: Vec<Outcome>,
    /// Flags whose key or name contains this (the rest are counted, not shown).
    q: String,
    /// Flags evaluated in all, before `q`.
    total: usize,
    /// Whether the cells offer "serve this to …": only on a short list, so that a project of
    /// 1,000 flags does not get 2,000 forms (megabytes) on one page.
    changeable: bool,
    error: Option<String>,
    evaluated: bool,
}

/// Most flags shown with "serve this to …" forms; past it, people search for the flag first.
const CHANGEABLE_FLAGS: usize = 25;

/// Kinds offered in the form besides those the environment has seen (any other can be typed).
const KINDS: &[&str] = &["user", "organization", "device", "account", "company"];

/// Recently seen contexts read for their kinds.
const SEEN_CONTEXTS: u32 = 500;

/// The kinds the forms and editors suggest: those of the contexts SDKs reported here recently (insights),
/// then the common ones. Without an events database, only the common ones.
pub(crate) async fn suggested_kinds(
    dashboard: &crate::Dashboard,
    viewer: &Viewer,
    project: &str,
    environment: &str,
) -> Vec<String> {
    let mut kinds: Vec<String> = dashboard
        .app
        .context_kinds_seen(&viewer.actor, project, environment, SEEN_CONTEXTS)
        .await
        .unwrap_or_default();
    kinds.extend(KINDS.iter().map(|k| (*k).to_owned()));
    let mut unique = std::collections::BTreeSet::new();
    kinds.retain(|k| unique.insert(k.clone()));
    kinds
}

const EXAMPLE: &str = "{\n  \"kind\": \"user\",\n  \"key\": \"user-123\",\n  \"email\": \"ada@example.com\",\n  \"country\": \"DE\"\n}";

/// Longest context text (JSON or attributes) read.
const MAX_CONTEXT_CHARS: usize = 20_000;

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

/// The builder's rows from the query (`kind`, `key`, `attributes` repeated, in order).
fn rows_of(pairs: &[(String, String)]) -> Vec<FormContext> {
    let mut rows: Vec<FormContext> = Vec::new();
    for (name, value) in pairs {
        let value: String = value.chars().take(MAX_CONTEXT_CHARS).collect();
        match name.as_str() {
            "kind" => rows.push(FormContext {
                kind: value,
                ..FormContext::default()
            }),
            "key" => {
                if let Some(row) = rows.last_mut() {
                    row.key = value;
                }
            }
            "attributes" => {
                if let Some(row) = rows.last_mut() {
                    row.attributes = value;
                }
            }
            _ => {}
        }
    }
    rows.retain(|r| !r.key.trim().is_empty() || !r.attributes.trim().is_empty());
    rows
}

/// The context the builder's rows describe: one kind, or a multi-context. Errors name the row
/// and line as people count them.
fn context_of(rows: &[FormContext]) -> Result<Value, String> {
    let mut parts = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let kind = Some(row.kind.trim())
            .filter(|k| !k.is_empty())
            .unwrap_or("user");
        let mut object = serde_json::Map::new();
        object.insert("key".into(), Value::String(row.key.trim().to_owned()));
        for (n, line) in row.attributes.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(format!(
                    "Context {}, attribute line {}: write it as name = value (“{}”)",
                    i + 1,
                    n + 1,
                    crate::excerpt(line)
                ));
            };
            let value = value.trim();
            let value =
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
            object.insert(name.trim().to_owned(), value);
        }
        parts.push((kind.to_owned(), object));
    }
    match parts.len() {
        0 => Err("Give the context a key".into()),
        1 => {
            let (kind, mut object) = parts.remove(0);
            object.insert("kind".into(), Value::String(kind));
            Ok(Value::Object(object))
        }
        _ => {
            let mut multi = serde_json::Map::new();
            multi.insert("kind".into(), Value::String("multi".into()));
            for (kind, object) in parts {
                multi.insert(kind, Value::Object(object));
            }
            Ok(Value::Object(multi))
        }
    }
}

/// The (kind, key) of each context in `context` (one, or the parts of a multi-context).
fn kinds_and_keys(context: &Value) -> Vec<(String, String)> {
    let key = |v: &Value| v["key"].as_str().map(str::to_owned);
    match context["kind"].as_str() {
        Some("multi") => context
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "kind")
            .filter_map(|(k, v)| Some((k.clone(), key(v)?)))
            .collect(),
        kind => key(context)
            .map(|k| (kind.unwrap_or("user").to_owned(), k))
            .into_iter()
            .collect(),
    }
}

/// What each flag serves `context` in `environment`, by flag key.
async fn evaluate_in(
    dashboard: &crate::Dashboard,
    viewer: &Viewer,
    project: &str,
    environment: &str,
    context: &Value,
    definitions: &HashMap<String, flagstaff_app::model::FlagDefinition>,
) -> Result<HashMap<String, Served>, AppError> {
    let (data, evaluation) = dashboard
        .app
        .evaluate_with_data(&viewer.actor, project, environment, context)
        .await?;
    let mut out = HashMap::new();
    if let Some(flags) = evaluation["flags"].as_object() {
        for (key, result) in flags {
            let variations = definitions
                .get(key)
                .map(|d| d.variations.as_slice())
                .unwrap_or(&[]);
            let value = match result["variationIndex"].as_i64() {
                Some(i) => describe::variation(variations, i),
                None => format!(
                    "the caller's default ({})",
                    describe::value(&result["value"])
                ),
            };
            let reason = &result["reason"];
            let (rule, rule_id) = match (reason["kind"].as_str(), reason["ruleIndex"].as_i64()) {
                (Some("RULE_MATCH"), Some(i)) => data
                    .flags
                    .get(key)
                    .and_then(|f| f.rules.get(usize::try_from(i).unwrap_or(usize::MAX)))
                    .map(|r| (describe::rule(variations, r), r.id.clone()))
                    .unwrap_or_default(),
                _ => Default::default(),
            };
            out.insert(
                key.clone(),
                Served {
                    value,
                    reason: reason_text(reason),
                    error: reason["kind"] == "ERROR",
                    rule,
                    rule_id,
                },
            );
        }
    }
    Ok(out)
}

pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.chars().take(MAX_CONTEXT_CHARS).collect::<String>())
    };
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        param("env").as_deref().filter(|e| !e.is_empty()),
        "test",
        format!("/projects/{project}/test"),
    )
    .await?;
    let asked = rows_of(&pairs);
    let kinds = suggested_kinds(&dashboard, &viewer, &project, &nav.environment).await;
    let mut rows = asked.clone();
    while rows.len() < FORM_ROWS {
        rows.push(FormContext {
            kind: if rows.is_empty() {
                "user".into()
            } else {
                String::new()
            },
            ..FormContext::default()
        });
    }
    // The current environment first, then the others, as people compare them.
    let environments: Vec<(String, String)> = nav
        .current()
        .into_iter()
        .chain(nav.environments.iter().filter(|e| e.key != nav.environment))
        .map(|e| (e.key.clone(), e.name.clone()))
        .collect();
    let json_text = param("context").filter(|c| !c.trim().is_empty());
    let context: Option<Result<Value, String>> = match (&json_text, asked.is_empty()) {
        (Some(text), _) => {
            Some(serde_json::from_str(text).map_err(|e| format!("The context is not JSON: {e}")))
        }
        (None, false) => Some(context_of(&asked)),
        (None, true) => None,
    };
    let context_text = match (&json_text, &context) {
        (Some(text), _) => text.clone(),
        (None, Some(Ok(value))) => serde_json::to_string_pretty(value).unwrap_or_default(),
        _ => EXAMPLE.into(),
    };
    let columns: Vec<Column> = environments
        .iter()
        .map(|(key, name)| {
            let critical = nav.environments.iter().any(|e| &e.key == key && e.critical);
            let tags: &[&str] = if critical { &["critical"] } else { &[] };
            let resource = flagstaff_app::policy::Resource::new()
                .with("proj", &project, &[])
                .with("env", key, tags)
                .with("flag", "*", &[]);
            Column {
                key: key.clone(),
                name: name.clone(),
                critical,
                may_target: viewer.actor.decide("updateTargets", &resource).allowed,
            }
        })
        .collect();
    let back = format!(
        "?{}",
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", crate::url_encode(k), crate::url_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let contexts: Vec<(String, String)> = match &context {
        Some(Ok(value)) => kinds_and_keys(value),
        _ => Vec::new(),
    };
    let Some(context) = context else {
        return Ok(render(&TestPage {
            nav,
            context: context_text,
            rows,
            kinds,
            columns,
            contexts,
            back,
            outcomes: Vec::new(),
            q: String::new(),
            total: 0,
            changeable: false,
            error: None,
            evaluated: false,
        }));
    };
    let app = &dashboard.app;
    // The overview is cached between changes; reading the definitions again would cost a third
    // of the page's budget with 1,000 flags.
    let definitions: HashMap<String, _> = app
        .flag_overview(&viewer.actor, &project)
        .await?
        .flags
        .into_iter()
        .map(|row| (row.definition.key.clone(), row.definition))
        .collect();
    let mut error = None;
    let mut results = Vec::new();
    match context {
        Err(e) => error = Some(e),
        Ok(context) => {
            for (env, _) in environments.iter() {
                match evaluate_in(&dashboard, &viewer, &project, env, &context, &definitions).await
                {
                    Ok(served) => results.push(Some(served)),
                    Err(AppError::Invalid { field, message, .. }) => {
                        error = Some(crate::errors::humane(&field, &message));
                        break;
                    }
                    // An environment this member may not see stays empty.
                    Err(AppError::Forbidden(_)) => results.push(None),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut total = 0;
    let q = param("q").unwrap_or_default();
    if error.is_none() {
        let mut keys: Vec<&String> = results
            .iter()
            .flatten()
            .flat_map(|served| served.keys())
            .collect();
        keys.sort();
        keys.dedup();
        total = keys.len();
        let wanted = q.trim().to_lowercase();
        keys.retain(|key| {
            wanted.is_empty()
                || key.to_lowercase().contains(&wanted)
                || definitions
                    .get(*key)
                    .is_some_and(|d| d.name.to_lowercase().contains(&wanted))
        });
        for key in keys {
            let variations = definitions
                .get(key)
                .map(|d| {
                    (0..d.variations.len())
                        .map(|i| describe::variation(&d.variations, i as i64))
                        .collect()
                })
                .unwrap_or_default();
            outcomes.push(Outcome {
                key: key.clone(),
                variations,
                name: definitions
                    .get(key)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
                served: results
                    .iter()
                    .map(|r| {
                        r.as_ref().and_then(|served| {
                            served.get(key).map(|s| Served {
                                value: s.value.clone(),
                                reason: s.reason.clone(),
                                rule: s.rule.clone(),
                                rule_id: s.rule_id.clone(),
                                error: s.error,
                            })
                        })
                    })
                    .collect(),
            });
        }
    }
    let evaluated = error.is_none();
    let changeable = outcomes.len() <= CHANGEABLE_FLAGS;
    let mut page = render(&TestPage {
        nav,
        context: context_text,
        rows,
        kinds,
        columns,
        contexts,
        back,
        outcomes,
        q: q.chars().take(200).collect(),
        total,
        changeable,
        error,
        evaluated,
    });
    if !evaluated {
        *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn the_form_builds_single_and_multi_contexts_with_typed_attributes() {
        let one = rows_of(&pairs(&[
            ("env", "production"),
            ("kind", "user"),
            ("key", "ada"),
            (
                "attributes",
                "country = DE\nage = 42\nbeta = true\nname = \"Ada\"",
            ),
        ]));
        assert_eq!(
            context_of(&one).unwrap(),
            json!({"kind": "user", "key": "ada", "country": "DE", "age": 42, "beta": true, "name": "Ada"})
        );
        let multi = rows_of(&pairs(&[
            ("kind", "user"),
            ("key", "ada"),
            ("attributes", ""),
            ("kind", "organization"),
            ("key", "acme"),
            ("attributes", "plan = enterprise"),
            ("kind", ""),
            ("key", ""),
            ("attributes", ""),
        ]));
        assert_eq!(
            context_of(&multi).unwrap(),
            json!({"kind": "multi", "user": {"key": "ada"}, "organization": {"key": "acme", "plan": "enterprise"}})
        );
        let bad = rows_of(&pairs(&[
            ("kind", "user"),
            ("key", "ada"),
            ("attributes", "country DE"),
        ]));
        let e = context_of(&bad).unwrap_err();
        assert!(e.starts_with("Context 1, attribute line 1:"), "{e}");
        assert!(context_of(&[]).is_err());
    }
}
