//! The flags list, creating a flag, and the flag page with its targeting editor (whose review
//! and save are `flag_changes.rs`; its release workflows, `workflows.rs`).

use std::collections::BTreeSet;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::model::{FlagDefinition, FlagKind, Variation};
use flagstaff_app::{AppError, FlagRow, validate};
use flagstaff_protocol::ClientSideAvailability;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::describe;
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render, script_json, time};

/// The actions of the settings page (LaunchDarkly's names): any one opens it.
const SETTINGS_ACTIONS: &[&str] = &[
    "updateName",
    "updateDescription",
    "updateTags",
    "updateFlagVariations",
    "updateMaintainer",
    "updateTemporary",
    "updateClientSideFlagAvailability",
];

fn tag_refs(tags: &[String]) -> Vec<&str> {
    tags.iter().map(String::as_str).collect()
}

/// Flags shown per page of the list.
const PAGE_SIZE: usize = 100;

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    env: Option<String>,
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    maintainer: String,
    #[serde(default)]
    archived: Option<String>,
    #[serde(default)]
    page: usize,
}

pub(crate) struct EnvState {
    pub key: String,
    pub name: String,
    pub on: Option<bool>,
    /// Whether the viewer may turn it on or off here (the server decides again).
    pub may_toggle: bool,
    /// Critical: the toggle asks for the typed key first.
    pub critical: bool,
}

pub(crate) struct ListedFlag {
    pub key: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub maintainer: String,
    pub temporary: bool,
    pub states: Vec<EnvState>,
    pub updated: String,
    /// A change is scheduled in the current environment.
    pub scheduled: bool,
    /// A change request is open in the current environment.
    pub requested: bool,
}

#[derive(Template)]
#[template(path = "flags.html")]
struct ListPage {
    nav: Nav,
    flags: Vec<ListedFlag>,
    total: usize,
    matching: usize,
    tags: Vec<String>,
    maintainers: Vec<String>,
    q: String,
    tag: String,
    status: String,
    maintainer: String,
    archived: bool,
    page: usize,
    pages: usize,
    query_base: String,
}

fn matches(row: &FlagRow, q: &ListQuery, env_index: Option<usize>, archived: bool) -> bool {
    let d = &row.definition;
    if d.archived != archived {
        return false;
    }
    let search = q.q.trim().to_lowercase();
    if !search.is_empty()
        && !d.key.to_lowercase().contains(&search)
        && !d.name.to_lowercase().contains(&search)
        && !d.description.to_lowercase().contains(&search)
    {
        return false;
    }
    if !q.tag.is_empty() && !d.tags.contains(&q.tag) {
        return false;
    }
    if !q.maintainer.is_empty() && d.maintainer.as_deref() != Some(q.maintainer.as_str()) {
        return false;
    }
    let state = env_index
        .and_then(|i| row.environments.get(i))
        .and_then(Option::as_ref);
    match q.status.as_str() {
        "on" => state.is_some_and(|s| s.on),
        "off" => state.is_some_and(|s| !s.on),
        "targeted" => state.is_some_and(|s| s.targeted),
        "temporary" => d.temporary,
        "permanent" => !d.temporary,
        _ => true,
    }
}

pub(crate) async fn list(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "flags",
        format!("/projects/{project}/flags"),
    )
    .await?;
    let overview = dashboard.app.flag_overview(&viewer.actor, &project).await?;
    let env_index = overview
        .environments
        .iter()
        .position(|e| e.key == nav.environment);
    let archived = q
        .archived
        .as_deref()
        .is_some_and(|a| !a.is_empty() && a != "0");
    let mut tags = BTreeSet::new();
    let mut maintainers = BTreeSet::new();
    for row in &overview.flags {
        tags.extend(row.definition.tags.iter().cloned());
        maintainers.extend(row.definition.maintainer.iter().cloned());
    }
    let matching: Vec<&FlagRow> = overview
        .flags
        .iter()
        .filter(|row| matches(row, &q, env_index, archived))
        .collect();
    // Pending work per flag in this environment, for the clock and review badges.
    let env = (project.as_str(), nav.environment.as_str());
    let scheduled: BTreeSet<String> = match dashboard
        .app
        .scheduled_changes(&viewer.actor, env, None, false)
        .await
    {
        Ok(list) => list
            .into_iter()
            .filter(|s| s.value.kind == flagstaff_app::TargetKind::Flag)
            .map(|s| s.value.key)
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let requested: BTreeSet<String> = match dashboard
        .app
        .change_requests(&viewer.actor, env, false)
        .await
    {
        Ok(list) => list
            .into_iter()
            .filter(|r| r.value.kind == flagstaff_app::TargetKind::Flag)
            .map(|r| r.value.key)
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page = q.page.min(pages - 1);
    let flags = matching
        .iter()
        .skip(page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|row| ListedFlag {
            key: row.definition.key.clone(),
            name: row.definition.name.clone(),
            description: row.definition.description.clone(),
            tags: row.definition.tags.clone(),
            maintainer: row.definition.maintainer.clone().unwrap_or_default(),
            temporary: row.definition.temporary,
            states: overview
                .environments
                .iter()
                .zip(&row.environments)
                .map(|(e, s)| {
                    let tags: &[&str] = if e.critical { &["critical"] } else { &[] };
                    let resource = flagstaff_app::policy::Resource::new()
                        .with("proj", &project, &[])
                        .with("env", &e.key, tags)
                        .with("flag", &row.definition.key, &tag_refs(&row.definition.tags));
                    EnvState {
                        key: e.key.clone(),
                        name: e.name.clone(),
                        on: s.as_ref().map(|s| s.on),
                        may_toggle: viewer.actor.decide("updateOn", &resource).allowed,
                        critical: e.critical,
                    }
                })
                .collect(),
            updated: time(row.updated_at),
            scheduled: scheduled.contains(&row.definition.key),
            requested: requested.contains(&row.definition.key),
        })
        .collect();
    let query_base = format!(
        "env={}&q={}&tag={}&status={}&maintainer={}{}",
        crate::url_encode(&nav.environment),
        crate::url_encode(&q.q),
        crate::url_encode(&q.tag),
        crate::url_encode(&q.status),
        crate::url_encode(&q.maintainer),
        if archived { "&archived=1" } else { "" }
    );
    Ok(render(&ListPage {
        total: overview
            .flags
            .iter()
            .filter(|r| !r.definition.archived)
            .count(),
        matching: matching.len(),
        flags,
        tags: tags.into_iter().collect(),
        maintainers: maintainers.into_iter().collect(),
        q: q.q.clone(),
        tag: q.tag.clone(),
        status: q.status.clone(),
        maintainer: q.maintainer.clone(),
        archived,
        page,
        pages,
        query_base,
        nav,
    }))
}

#[derive(Template)]
#[template(path = "flag_new.html")]
struct NewPage {
    nav: Nav,
    form: NewFlagForm,
    error: Option<String>,
    field: String,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct EnvQuery {
    pub env: Option<String>,
}

pub(crate) async fn new_page(
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
        "flags",
        format!("/projects/{project}/flags"),
    )
    .await?;
    if !viewer.can_write() {
        return Err(PageError(AppError::Forbidden(
            "creating flags needs the writer role".into(),
        )));
    }
    Ok(render(&NewPage {
        form: NewFlagForm {
            kind: "boolean".into(),
            value_type: "string".into(),
            temporary: Some("on".into()),
            maintainer: viewer.name.clone(),
            ..NewFlagForm::default()
        },
        nav,
        error: None,
        field: String::new(),
    }))
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct NewFlagForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub env: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub value_type: String,
    #[serde(default)]
    pub variations: String,
    #[serde(default)]
    pub tags: String,
    #[serde(default)]
    pub maintainer: String,
    #[serde(default)]
    pub temporary: Option<String>,
    #[serde(default)]
    pub browsers: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
}

/// A key from a name, as the form's script suggests it: lower case, words joined by `-`.
pub fn key_from_name(name: &str) -> String {
    let mut key = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.ends_with('-') && !key.is_empty() {
            key.push('-');
        }
    }
    key.trim_end_matches('-').to_owned()
}

/// The variations of a multivariate flag from the form: one value per line, read as the chosen
/// type. Errors name the line (`variations[i]`).
pub fn parse_variations(text: &str, value_type: &str) -> Result<Vec<Variation>, AppError> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let field = format!("variations[{i}]");
        let value = match value_type {
            "number" => {
                let n: f64 = line.parse().map_err(|_| {
                    AppError::invalid(
                        validate::codes::INVALID_FIELD,
                        &field,
                        format!("{line:?} is not a number"),
                    )
                })?;
                // `1000` stays the integer 1000 (SDKs return an int), `2.5` a float.
                let number = serde_json::Number::from_f64(n).ok_or_else(|| {
                    AppError::invalid(
                        validate::codes::INVALID_FIELD,
                        &field,
                        "numbers must be finite",
                    )
                })?;
                flagstaff_app::model::integral(Value::Number(number))
            }
            "json" => serde_json::from_str(line).map_err(|e| {
                AppError::invalid(
                    validate::codes::INVALID_FIELD,
                    &field,
                    format!("not JSON: {e}"),
                )
            })?,
            _ => Value::String(line.to_owned()),
        };
        out.push(Variation {
            value,
            name: None,
            description: None,
        });
    }
    Ok(out)
}

fn definition_from_form(form: &NewFlagForm) -> Result<FlagDefinition, AppError> {
    let kind = match form.kind.as_str() {
        "multivariate" => FlagKind::Multivariate,
        "migration" => FlagKind::Migration,
        _ => FlagKind::Boolean,
    };
    // Boolean and migration flags get their fixed variations from validation.
    let variations = match kind {
        FlagKind::Boolean | FlagKind::Migration => Vec::new(),
        FlagKind::Multivariate => parse_variations(&form.variations, &form.value_type)?,
    };
    let key = if form.key.trim().is_empty() {
        key_from_name(&form.name)
    } else {
        form.key.trim().to_owned()
    };
    Ok(FlagDefinition {
        key,
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        tags: form
            .tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        kind,
        variations,
        temporary: form.temporary.is_some(),
        maintainer: Some(form.maintainer.trim().to_owned()).filter(|m| !m.is_empty()),
        client_side_availability: ClientSideAvailability {
            using_environment_id: form.browsers.is_some(),
            using_mobile_key: form.mobile.is_some(),
        },
        archived: false,
        migration: None,
    })
}

pub(crate) async fn create(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(project): Path<String>,
    Form(form): Form<NewFlagForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let env = Some(form.env.as_str()).filter(|e| !e.is_empty());
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        env,
        "flags",
        format!("/projects/{project}/flags"),
    )
    .await
    .map_err(IntoResponse::into_response)?;
    let result = match definition_from_form(&form) {
        Ok(definition) => {
            dashboard
                .app
                .create_flag(
                    &viewer.actor,
                    &project,
                    definition,
                    "created in the dashboard",
                )
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(created) => Ok(Redirect::to(&format!(
            "/projects/{project}/flags/{}?env={}",
            created.value.key,
            crate::url_encode(&nav.environment)
        ))
        .into_response()),
        Err(e @ (AppError::Invalid { .. } | AppError::AlreadyExists(_))) => {
            let field = match &e {
                AppError::Invalid { field, .. } => field.clone(),
                _ => "key".into(),
            };
            let message = match &e {
                AppError::Invalid { message, .. } => message.clone(),
                other => other.to_string(),
            };
            let mut page = render(&NewPage {
                nav,
                form,
                error: Some(message),
                field,
            });
            *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(page)
        }
        Err(e) => Err(PageError(e).into_response()),
    }
}

pub(crate) struct EnvSummary {
    pub key: String,
    pub name: String,
    pub on: bool,
    pub current: bool,
    pub critical: bool,
}

pub(crate) struct DescribedRule {
    pub id: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "flag.html")]
struct FlagPage {
    nav: Nav,
    definition: FlagDefinition,
    on: bool,
    summary: Vec<String>,
    rules: Vec<DescribedRule>,
    highlight: String,
    envs: Vec<EnvSummary>,
    editor_json: String,
    /// Whether the viewer may turn targeting on and off here.
    may_toggle: bool,
    /// Whether the viewer may change anything else of targeting here (the editor).
    may_edit: bool,
    /// Whether the viewer may archive or restore the flag.
    may_archive: bool,
    /// Whether the viewer may change any of the flag's settings.
    may_edit_settings: bool,
    /// What the viewer's roles do not allow here, in words ("why can't I?").
    access_note: Option<String>,
    /// Scheduled changes, change requests and triggers here (`workflows.rs`).
    workflows: crate::workflows::FlagWorkflows,
}

#[derive(Deserialize, Default)]
pub(crate) struct FlagQuery {
    env: Option<String>,
    #[serde(default)]
    rule: String,
}

pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<FlagQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "flags",
        format!("/projects/{project}/flags/{key}"),
    )
    .await?;
    let app = &dashboard.app;
    let definition = app.flag(&viewer.actor, &project, &key).await?;
    let targeting = app
        .targeting(&viewer.actor, &project, &nav.environment, &key)
        .await?;
    let variations = &definition.value.variations;
    // Prerequisite candidates come from the cached overview (reading every definition again
    // would cost half the page's budget with 1,000 flags).
    let overview = app.flag_overview(&viewer.actor, &project).await?;
    // Each environment's on/off for the tabs, from the same overview.
    let states = overview
        .flags
        .iter()
        .find(|row| row.definition.key == key)
        .map(|row| row.environments.clone())
        .unwrap_or_default();
    let envs: Vec<EnvSummary> = overview
        .environments
        .iter()
        .enumerate()
        .map(|(i, e)| EnvSummary {
            key: e.key.clone(),
            name: e.name.clone(),
            on: if e.key == nav.environment {
                targeting.value.on
            } else {
                states.get(i).and_then(Option::as_ref).is_some_and(|s| s.on)
            },
            current: e.key == nav.environment,
            critical: e.critical,
        })
        .collect();
    let others: Vec<Value> = overview
        .flags
        .into_iter()
        .map(|row| row.definition)
        .filter(|f| f.key != key && !f.archived)
        .map(|f| {
            let labels: Vec<String> = (0..f.variations.len())
                .map(|i| describe::variation(&f.variations, i as i64))
                .collect();
            json!({"key": f.key, "variations": labels})
        })
        .collect();
    let segments = app
        .segment_keys(&viewer.actor, &project, &nav.environment)
        .await?;
    let decisions = app
        .targeting_access(&viewer.actor, &project, &nav.environment, &key)
        .await?;
    let may = |action: &str| decisions.iter().any(|d| d.allowed && d.action == action);
    let may_toggle = may("updateOn");
    let may_edit = decisions
        .iter()
        .any(|d| d.allowed && d.action != "updateOn")
        && viewer.actor.environments.is_none();
    let may_archive = app
        .flag_access(&viewer.actor, &project, &key, &["updateGlobalArchived"])
        .await?
        .iter()
        .all(|d| d.allowed);
    let may_edit_settings = app
        .flag_access(&viewer.actor, &project, &key, SETTINGS_ACTIONS)
        .await?
        .iter()
        .any(|d| d.allowed);
    let note = crate::access::note(&viewer, &nav.environment, &decisions);
    let workflows =
        crate::workflows::for_flag(&dashboard, &viewer, &nav, &definition.value).await?;
    let editor = json!({
        "flagKey": key,
        "environment": nav.environment,
        "environmentName": nav.current().map(|e| e.name.clone()),
        "critical": nav.critical(),
        "canEdit": may_edit,
        "allowed": decisions.iter().filter(|d| d.allowed).map(|d| d.action.clone()).collect::<Vec<_>>(),
        "version": targeting.version,
        "targeting": targeting.value,
        "variations": variations.iter().enumerate().map(|(i, v)| json!({
            "value": v.value, "label": describe::variation(variations, i as i64)
        })).collect::<Vec<_>>(),
        "flags": others,
        "segments": segments,
        "contextKinds": crate::context::suggested_kinds(&dashboard, &viewer, &project, &nav.environment).await,
        "reviewUrl": format!("/projects/{project}/flags/{key}/review"),
        "saveUrl": format!("/projects/{project}/flags/{key}/targeting"),
        "requestUrl": workflows.needs_approval.then(|| format!("/projects/{project}/flags/{key}/request")),
    });
    Ok(render(&FlagPage {
        summary: describe::targeting(variations, &targeting.value),
        rules: targeting
            .value
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| DescribedRule {
                id: r.id.clone(),
                text: format!("Rule {}: {}", i + 1, describe::rule(variations, r)),
            })
            .collect(),
        highlight: q.rule,
        on: targeting.value.on,
        definition: definition.value,
        envs,
        editor_json: script_json(&editor),
        may_toggle,
        may_edit,
        may_archive,
        may_edit_settings,
        access_note: note,
        workflows,
        nav,
    }))
}

#[derive(Deserialize)]
pub(crate) struct ArchiveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    env: String,
    archived: String,
}

pub(crate) async fn archive(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(form): Form<ArchiveForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let archived = form.archived == "true";
    dashboard
        .app
        .set_archived(
            &viewer.actor,
            &project,
            &key,
            archived,
            if archived {
                "archived in the dashboard"
            } else {
                "restored in the dashboard"
            },
        )
        .await
        .map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to(&format!(
        "/projects/{project}/flags/{key}?env={}",
        crate::url_encode(&form.env)
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_names() {
        assert_eq!(key_from_name("New Checkout Flow!"), "new-checkout-flow");
        assert_eq!(key_from_name("  Dark   mode "), "dark-mode");
        assert_eq!(key_from_name("été 2026"), "t-2026");
    }

    #[test]
    fn variations_are_read_as_their_type_and_errors_name_the_line() {
        // A whole number is the integer (SDKs return an int for it), not the float 1.0.
        let v = parse_variations("1\n2.5\n1e3\n\n", "number").unwrap();
        assert_eq!(
            v.iter().map(|v| v.value.to_string()).collect::<Vec<_>>(),
            vec!["1", "2.5", "1000"]
        );
        let e = parse_variations("1\nx", "number").unwrap_err();
        assert!(
            matches!(e, AppError::Invalid { ref field, .. } if field == "variations[1]"),
            "{e:?}"
        );
        let j = parse_variations("{\"a\": 1}\n[1]", "json").unwrap();
        assert_eq!(j[0].value, json!({"a": 1}));
        assert!(parse_variations("{", "json").is_err());
        let s = parse_variations("red\n blue ", "string").unwrap();
        assert_eq!(s[1].value, json!("blue"));
    }
}
