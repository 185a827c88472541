//! History: the audit log as people read it, for a project and for one flag, with each change's
//! readable diff, who made it, when and why; and "restore this version" for a flag's targeting
//! (which goes through the same review-and-save as any other edit, so restoring is audited and
//! conflict-checked like one).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use flagstaff_app::model::{FlagDefinition, Targeting, Variation, kinds};
use flagstaff_app::{Action, AuditEntry, AuditQuery};
use flagstaff_protocol::Segment;
use serde::Deserialize;
use serde_json::Value;

use crate::describe::{self, DiffLine};
use crate::session::Viewer;
use crate::{DashState, Dashboard, Nav, PageError, render, script_json, time};

/// Entries per page.
const PAGE: usize = 30;

pub(crate) struct Change {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub link: String,
    pub comment: String,
    pub lines: Vec<DiffLine>,
    /// For targeting changes in the page's environment: the targeting after the change, as
    /// JSON for "restore this version".
    pub restore: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    nav: Nav,
    title: String,
    flag: String,
    changes: Vec<Change>,
    older: Option<u64>,
    editor_json: String,
    /// Whether the viewer may restore earlier targeting here (some targeting action allowed;
    /// the server decides the exact ones the restore takes).
    may_restore: bool,
    /// The filters (project history only).
    filters: Option<HistoryQuery>,
}

impl HistoryPage {
    fn action_filters(&self) -> &'static [(&'static str, &'static str)] {
        ACTION_FILTERS
    }

    fn resource_filters(&self) -> &'static [(&'static str, &'static str)] {
        RESOURCE_FILTERS
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct HistoryQuery {
    env: Option<String>,
    before: Option<u64>,
    /// Only changes by someone whose name contains this.
    #[serde(default)]
    actor: String,
    /// Only changes whose action, in words, contains this ("created", "deleted", …).
    #[serde(default)]
    action: String,
    /// Only changes of this kind of resource (`flag`, `targeting`, `segment`, …).
    #[serde(default)]
    resource: String,
    /// Only changes of resources whose key contains this.
    #[serde(default)]
    key: String,
}

/// The actions the history's filter offers, as the words changes are shown with.
const ACTION_FILTERS: &[(&str, &str)] = &[
    ("created", "Created"),
    ("changed", "Changed"),
    ("turned", "Turned on or off"),
    ("deleted", "Deleted"),
    ("archived", "Archived"),
    ("restored", "Restored"),
    ("scheduled", "Scheduled"),
    ("request", "Change requests"),
    ("rotated", "Rotated keys"),
];

/// The resources the history's filter offers.
const RESOURCE_FILTERS: &[(&str, &str)] = &[
    ("flag", "Flag settings"),
    ("targeting", "Targeting"),
    ("segment", "Segments"),
    ("environment", "Environments"),
    ("project", "The project"),
];

impl HistoryQuery {
    /// Whether an entry passes the filters.
    fn keeps(&self, entry: &AuditEntry) -> bool {
        let contains = |text: &str, part: &str| {
            part.trim().is_empty() || text.to_lowercase().contains(&part.trim().to_lowercase())
        };
        contains(&entry.actor, &self.actor)
            && contains(&action_text(&entry.action), &self.action)
            && (self.resource.is_empty() || entry.kind == self.resource)
            && contains(&entry.key, &self.key)
    }

    /// The filters as a query string, for the pager.
    fn query(&self) -> String {
        format!(
            "actor={}&action={}&resource={}&key={}",
            crate::url_encode(&self.actor),
            crate::url_encode(&self.action),
            crate::url_encode(&self.resource),
            crate::url_encode(&self.key)
        )
    }
}

/// A change in words. Exhaustive: a new action does not compile until it has its words.
fn action_text(stored: &str) -> String {
    let Some(action) = Action::parse(stored) else {
        // Written by a newer Flagstaff sharing the database.
        return stored.replace(['.', '_'], " ");
    };
    match action {
        Action::ProjectCreate => "created the project",
        Action::ProjectUpdate => "renamed the project",
        Action::ProjectDelete => "deleted the project",
        Action::EnvironmentCreate => "created the environment",
        Action::EnvironmentUpdate => "changed the environment",
        Action::EnvironmentDelete => "deleted the environment",
        Action::EnvironmentImport => "imported LaunchDarkly flag data",
        Action::SdkKeyRotate => "rotated the SDK key",
        Action::MobileKeyRotate => "rotated the mobile key",
        Action::FlagCreate => "created the flag",
        Action::FlagUpdate => "changed the flag's settings",
        Action::FlagArchive => "archived the flag",
        Action::FlagRestore => "restored the flag from the archive",
        Action::FlagDelete => "deleted the flag",
        Action::TargetingUpdate => "changed targeting",
        Action::SegmentCreate => "created the segment",
        Action::SegmentUpdate => "changed the segment",
        Action::SegmentDelete => "deleted the segment",
        Action::MemberCreate => "added a member",
        Action::MemberDelete => "removed a member",
        Action::MemberUpdate => "changed a member's roles",
        Action::RoleCreate => "created a custom role",
        Action::RoleUpdate => "changed a custom role",
        Action::RoleDelete => "deleted a custom role",
        Action::TeamCreate => "created a team",
        Action::TeamUpdate => "changed a team",
        Action::TeamDelete => "deleted a team",
        Action::InvitationCreate => "invited someone",
        Action::InvitationRevoke => "revoked an invitation",
        Action::TokenCreate => "created an API token",
        Action::TokenRevoke => "revoked an API token",
        Action::SessionEnd => "signed out",
        Action::ScheduleCreate => "scheduled a change",
        Action::ScheduleUpdate => "rescheduled a change",
        Action::ScheduleCancel => "cancelled a scheduled change",
        Action::ScheduleFail => "could not run a scheduled change",
        Action::ChangeRequestCreate => "requested approval for a change",
        Action::ChangeRequestReview => "reviewed a change request",
        Action::ChangeRequestCancel => "cancelled a change request",
        Action::ChangeRequestSchedule => "scheduled an approved change request",
        Action::WebhookCreate => "created a webhook",
        Action::WebhookUpdate => "changed a webhook",
        Action::WebhookDelete => "deleted a webhook",
        Action::TriggerCreate => "created a trigger",
        Action::TriggerUpdate => "changed a trigger",
        Action::TriggerDelete => "deleted a trigger",
        Action::MetricCreate => "created a metric",
        Action::MetricUpdate => "changed a metric",
        Action::MetricDelete => "deleted a metric",
        Action::ExperimentCreate => "designed an experiment",
        Action::ExperimentUpdate => "changed an experiment",
        Action::ExperimentDelete => "deleted an experiment",
        Action::GuardedRolloutUpdate => "paused or resumed a guarded rollout",
    }
    .to_owned()
}

/// Describes both sides of an entry and diffs them. Targeting needs its flag's variations,
/// looked up once per flag.
async fn diff_of(
    dashboard: &Dashboard,
    viewer: &Viewer,
    project: &str,
    entry: &AuditEntry,
    variations: &mut HashMap<String, Vec<Variation>>,
) -> Vec<DiffLine> {
    if entry.kind == kinds::SEGMENT {
        // Lists as keys added and removed, counted: never the whole list, twice.
        let side = |v: &Option<Value>| {
            v.as_ref()
                .and_then(|v| serde_json::from_value::<Segment>(v.clone()).ok())
        };
        let (before, after) = (side(&entry.before), side(&entry.after));
        if before.is_some() || after.is_some() {
            return describe::segment_diff(before.as_ref(), after.as_ref());
        }
    }
    let describe_side = |side: &Option<Value>, vars: &[Variation]| -> Vec<String> {
        let Some(v) = side else { return Vec::new() };
        match entry.kind.as_str() {
            kinds::TARGETING => serde_json::from_value::<Targeting>(v.clone())
                .map(|t| describe::targeting(vars, &t))
                .unwrap_or_else(|_| describe::json(v)),
            kinds::FLAG => serde_json::from_value::<FlagDefinition>(v.clone())
                .map(|d| describe::definition(&d))
                .unwrap_or_else(|_| describe::json(v)),
            kinds::SEGMENT => serde_json::from_value::<Segment>(v.clone())
                .map(|s| describe::segment(&s))
                .unwrap_or_else(|_| describe::json(v)),
            _ => describe::json(v),
        }
    };
    if entry.kind == kinds::TARGETING && !variations.contains_key(&entry.key) {
        let found = dashboard
            .app
            .flag(&viewer.actor, project, &entry.key)
            .await
            .map(|d| d.value.variations)
            .unwrap_or_default();
        variations.insert(entry.key.clone(), found);
    }
    let vars = variations.get(&entry.key).map(Vec::as_slice).unwrap_or(&[]);
    describe::diff(
        &describe_side(&entry.before, vars),
        &describe_side(&entry.after, vars),
    )
}

/// Entries newest first, filtered by `keep`, reading the log in batches until a page is full.
async fn entries(
    dashboard: &Dashboard,
    viewer: &Viewer,
    key: Option<&str>,
    before: Option<u64>,
    keep: impl Fn(&AuditEntry) -> bool,
) -> Result<(Vec<AuditEntry>, Option<u64>), PageError> {
    let mut found = Vec::new();
    let mut cursor = before;
    for _ in 0..20 {
        let batch = dashboard
            .app
            .audit(
                &viewer.actor,
                &AuditQuery {
                    key: key.map(str::to_owned),
                    before_seq: cursor,
                    newest_first: true,
                    limit: 200,
                    ..AuditQuery::default()
                },
            )
            .await?;
        let exhausted = batch.len() < 200;
        for entry in batch {
            cursor = Some(entry.seq);
            if keep(&entry) {
                found.push(entry);
                if found.len() == PAGE {
                    return Ok((found, cursor));
                }
            }
        }
        if exhausted {
            return Ok((found, None));
        }
    }
    Ok((found, cursor))
}

async fn changes(
    dashboard: &Dashboard,
    viewer: &Viewer,
    nav: &Nav,
    list: Vec<AuditEntry>,
    restorable_scope: Option<&str>,
) -> Vec<Change> {
    let mut variations = HashMap::new();
    let mut out = Vec::new();
    for entry in list {
        let lines = diff_of(dashboard, viewer, &nav.project, &entry, &mut variations).await;
        let env = entry.scope.split_once('/').map(|(_, e)| e.to_owned());
        let (subject, link) = match entry.kind.as_str() {
            kinds::FLAG | kinds::TARGETING => (
                format!(
                    "flag {}{}",
                    entry.key,
                    env.as_deref()
                        .map(|e| format!(" in {e}"))
                        .unwrap_or_default()
                ),
                format!(
                    "/projects/{}/flags/{}?env={}",
                    nav.project,
                    entry.key,
                    env.as_deref().unwrap_or(&nav.environment)
                ),
            ),
            kinds::SEGMENT => (
                format!(
                    "segment {}{}",
                    entry.key,
                    env.as_deref()
                        .map(|e| format!(" in {e}"))
                        .unwrap_or_default()
                ),
                format!(
                    "/projects/{}/segments/{}?env={}",
                    nav.project,
                    entry.key,
                    env.as_deref().unwrap_or(&nav.environment)
                ),
            ),
            other => (format!("{other} {}", entry.key), String::new()),
        };
        let restore = match (&entry.after, restorable_scope) {
            (Some(after), Some(scope))
                if entry.kind == kinds::TARGETING && entry.scope == scope =>
            {
                script_json(after)
            }
            _ => String::new(),
        };
        out.push(Change {
            seq: entry.seq,
            at: time(entry.at),
            actor: entry
                .actor
                .strip_prefix("member:")
                .unwrap_or(&entry.actor)
                .to_owned(),
            action: action_text(&entry.action),
            subject,
            link,
            comment: entry.comment,
            lines,
            restore,
        });
    }
    out
}

pub(crate) async fn project(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "history",
        format!("/projects/{project}/history"),
    )
    .await?;
    let prefix = format!("{project}/");
    let (list, older) = entries(&dashboard, &viewer, None, q.before, |e| {
        (e.scope == project || e.scope.starts_with(&prefix)) && q.keeps(e)
    })
    .await?;
    let changes = changes(&dashboard, &viewer, &nav, list, None).await;
    Ok(render(&HistoryPage {
        title: "History".into(),
        flag: String::new(),
        changes,
        older,
        editor_json: "{}".into(),
        may_restore: false,
        filters: Some(q),
        nav,
    }))
}

pub(crate) async fn flag(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "flags",
        format!("/projects/{project}/flags/{key}/history"),
    )
    .await?;
    let app = &dashboard.app;
    let targeting = app
        .targeting(&viewer.actor, &project, &nav.environment, &key)
        .await?;
    let scope = format!("{project}/{}", nav.environment);
    let (list, older) = entries(&dashboard, &viewer, Some(&key), q.before, |e| {
        (e.kind == kinds::FLAG && e.scope == project)
            || (e.kind == kinds::TARGETING && e.scope == scope)
    })
    .await?;
    let may_restore = app
        .targeting_access(&viewer.actor, &project, &nav.environment, &key)
        .await?
        .iter()
        .any(|d| d.allowed)
        && viewer.actor.environments.is_none();
    let restorable = may_restore.then_some(scope.as_str());
    let changes = changes(&dashboard, &viewer, &nav, list, restorable).await;
    let editor = serde_json::json!({
        "flagKey": key,
        "environment": nav.environment,
        "critical": nav.critical(),
        "canEdit": may_restore,
        "version": targeting.version,
        "targeting": targeting.value,
        "reviewUrl": format!("/projects/{project}/flags/{key}/review"),
        "saveUrl": format!("/projects/{project}/flags/{key}/targeting"),
    });
    Ok(render(&HistoryPage {
        title: format!("History of {key}"),
        flag: key,
        changes,
        older,
        editor_json: script_json(&editor),
        may_restore,
        filters: None,
        nav,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rotations_read_in_words() {
        assert_eq!(
            action_text("environment.sdk_key.rotate"),
            "rotated the SDK key"
        );
        assert_eq!(
            action_text("environment.mobile_key.rotate"),
            "rotated the mobile key"
        );
    }

    #[test]
    fn every_action_has_words_of_its_own_and_unknown_ones_fall_back() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            let words = action_text(action.as_str());
            assert!(!words.contains('.') && !words.contains('_'), "{words}");
            assert!(seen.insert(words), "{action} shares its words");
        }
        assert_eq!(action_text("flag.frobnicate"), "flag frobnicate");
    }
}
