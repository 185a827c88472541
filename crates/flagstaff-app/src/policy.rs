//! The policy language of custom roles (issue 18), in LaunchDarkly's syntax so that people who
//! wrote custom roles there can write them here.
//!
//! A policy is a list of statements:
//!
//! ```json
//! [{"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]},
//!  {"effect": "deny", "actions": ["*"], "resources": ["proj/*:env/*:flag/*;payments"]}]
//! ```
//!
//! - `actions` or `notActions` (exactly one): action names (`updateOn`, `createFlag`, …) or
//!   globs over them (`update*`, `*`). `notActions` matches every action it does not list.
//! - `resources` or `notResources` (exactly one): resource specifiers. A specifier is a path of
//!   `type/key` segments joined by `:`, from the outside in (`proj/<key>:env/<key>:flag/<key>`);
//!   keys are globs (`*`, `prod-*`), and a segment may end in `;tag,tag`, which the resource must
//!   carry all of (tags are globs too). A specifier matches a resource of exactly its shape.
//! - Deny wins: an action on a resource is allowed when at least one statement allows it and
//!   none denies it; nothing is allowed by default.
//!
//! This module is pure: it parses, validates (every error names the field, e.g.
//! `[1].resources[0]`) and decides. Which action and resource a use case needs, and the roles
//! members and tokens carry, are the business of `access.rs`.

use serde_json::Value;

use crate::error::{AppError, Result};
use crate::validate::codes;

/// The action names policies may use, as LaunchDarkly names them where it has one. Later
/// features add theirs here; a policy naming an unknown action is refused, so that a typo
/// cannot silently allow or deny nothing.
pub const ACTIONS: &[&str] = &[
    // Projects.
    "viewProject",
    "createProject",
    "deleteProject",
    "updateProjectName",
    // Environments.
    "createEnvironment",
    "deleteEnvironment",
    "updateName",
    "updateApiKey",
    "updateMobileKey",
    "updateSecureMode",
    "updateCritical",
    "updateColor",
    "updateFdv1Fallback",
    "updateApprovalSettings",
    "importFlagData",
    // Flags, project-wide.
    "createFlag",
    "deleteFlag",
    "updateDescription",
    "updateTags",
    "updateFlagVariations",
    "updateMaintainer",
    "updateTemporary",
    "updateClientSideFlagAvailability",
    "updateGlobalArchived",
    // Flags, per environment.
    "updateOn",
    "updateTargets",
    "updateRules",
    "updateFallthrough",
    "updateOffVariation",
    "updatePrerequisites",
    "updateTrackEvents",
    // Segments.
    "createSegment",
    "deleteSegment",
    "updateIncluded",
    "updateExcluded",
    // Metrics (experiments).
    "createMetric",
    "updateMetric",
    "deleteMetric",
    // Experiments.
    "createExperiment",
    "updateExperiment",
    "deleteExperiment",
    // Members, teams, roles, tokens.
    "createMember",
    "deleteMember",
    "updateMemberRole",
    "createTeam",
    "deleteTeam",
    "updateTeamMembers",
    "createRole",
    "deleteRole",
    "updateRole",
    "createAccessToken",
    "deleteAccessToken",
    // Release workflows (issue 19).
    "createApprovalRequest",
    "reviewApprovalRequest",
    "applyApprovalRequest",
    "bypassRequiredApproval",
    "updateScheduledChanges",
    "createTriggers",
    // Webhooks.
    "createWebhook",
    "deleteWebhook",
    "updateWebhook",
    // Relays (issue 22): read an environment's SDK data and credential fingerprints.
    "relayEnvironment",
];

/// The resource types a specifier may name, with the types that may enclose them.
const TYPES: &[(&str, &[&str])] = &[
    ("proj", &[]),
    ("env", &["proj"]),
    ("flag", &["proj", "env"]),
    ("segment", &["proj", "env"]),
    ("metric", &["proj"]),
    ("experiment", &["proj", "env"]),
    ("member", &[]),
    ("team", &[]),
    ("role", &[]),
    ("token", &[]),
    ("webhook", &[]),
];

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The statement allows what it matches (unless another denies it).
    Allow,
    /// The statement denies what it matches, whatever else allows it.
    Deny,
}

/// Either the listed items, or everything but them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Selection<T> {
    Listed(Vec<T>),
    AllBut(Vec<T>),
}

/// One segment of a specifier: a type, a key glob and the tags (globs) required.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    kind: String,
    key: String,
    tags: Vec<String>,
}

/// A resource specifier such as `proj/*:env/production:flag/*;checkout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Specifier(Vec<Segment>);

/// One statement of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The statement as written, shown by access checks ("which statement decided").
    source: Value,
    effect: Effect,
    actions: Selection<String>,
    resources: Selection<Specifier>,
}

/// A parsed, validated policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy(Vec<Statement>);

/// A concrete resource being acted on, from the outside in: e.g. project `default`, environment
/// `production` (tagged `critical`), flag `checkout` (tagged `web`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource(Vec<(String, String, Vec<String>)>);

impl Resource {
    /// A resource with no enclosing ones: `Resource::new().with("proj", "default", &[])`.
    pub fn new() -> Resource {
        Resource::default()
    }

    /// This resource inside which a resource of `kind` and `key`, carrying `tags`, sits.
    pub fn with(mut self, kind: &str, key: &str, tags: &[&str]) -> Resource {
        self.0.push((
            kind.to_owned(),
            key.to_owned(),
            tags.iter().map(|t| (*t).to_owned()).collect(),
        ));
        self
    }
}

impl Resource {
    /// The key of the segment of `kind`, if the resource has one (`proj` → the project).
    pub fn key(&self, kind: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _, _)| k == kind)
            .map(|(_, key, _)| key.as_str())
    }

    /// The type of the outermost segment (`proj`, `member`, …).
    pub fn root(&self) -> Option<&str> {
        self.0.first().map(|(kind, _, _)| kind.as_str())
    }

    /// The resource in specifier syntax with its tags (`proj/p:env/e;critical:flag/f;web`).
    pub fn with_tags(&self) -> String {
        let mut text = String::new();
        for (i, (kind, key, tags)) in self.0.iter().enumerate() {
            if i > 0 {
                text.push(':');
            }
            text.push_str(kind);
            text.push('/');
            text.push_str(key);
            if !tags.is_empty() {
                text.push(';');
                text.push_str(&tags.join(","));
            }
        }
        text
    }

    /// Parses a concrete resource from specifier syntax (as the access check receives it):
    /// keys are taken literally, tags are the resource's tags.
    pub fn parse(text: &str, field: &str) -> Result<Resource> {
        let specifier = Specifier::parse(text, field)?;
        Ok(Resource(
            specifier
                .0
                .into_iter()
                .map(|s| (s.kind, s.key, s.tags))
                .collect(),
        ))
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (kind, key, _)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{kind}/{key}")?;
        }
        Ok(())
    }
}

/// What a policy says about an action on a resource, and which statement said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the statement at this index, and denied by none.
    Allowed(usize),
    /// Denied by the statement at this index.
    Denied(usize),
    /// No statement allows it.
    NotAllowed,
}

impl Decision {
    /// Whether the action may go ahead.
    pub fn allows(self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

fn invalid(field: String, message: impl Into<String>) -> AppError {
    AppError::invalid(codes::INVALID_FIELD, field, message)
}

impl Specifier {
    /// Parses a specifier; `field` names it in errors.
    pub fn parse(text: &str, field: &str) -> Result<Specifier> {
        let mut segments: Vec<Segment> = Vec::new();
        for part in text.split(':') {
            let (path, tags) = match part.split_once(';') {
                Some((path, tags)) => (path, Some(tags)),
                None => (part, None),
            };
            let Some((kind, key)) = path.split_once('/') else {
                return Err(invalid(
                    field.to_owned(),
                    format!("{part:?} is not type/key (e.g. proj/default or flag/*)"),
                ));
            };
            let Some((_, parents)) = TYPES.iter().find(|(name, _)| *name == kind) else {
                let known: Vec<&str> = TYPES.iter().map(|(name, _)| *name).collect();
                return Err(invalid(
                    field.to_owned(),
                    format!(
                        "unknown resource type {kind:?}; known: {}",
                        known.join(", ")
                    ),
                ));
            };
            let enclosing: Vec<&str> = segments.iter().map(|s| s.kind.as_str()).collect();
            if enclosing != *parents {
                let expected = if parents.is_empty() {
                    format!("{kind}/… stands alone")
                } else {
                    format!(
                        "{kind}/… goes inside {}",
                        parents
                            .iter()
                            .map(|p| format!("{p}/…"))
                            .collect::<Vec<_>>()
                            .join(":")
                    )
                };
                return Err(invalid(field.to_owned(), expected));
            }
            let tags: Vec<String> = match tags {
                None => Vec::new(),
                Some(tags) => tags.split(',').map(|t| t.trim().to_owned()).collect(),
            };
            if key.is_empty() || tags.iter().any(String::is_empty) {
                return Err(invalid(
                    field.to_owned(),
                    format!("{part:?} has an empty key or tag"),
                ));
            }
            segments.push(Segment {
                kind: kind.to_owned(),
                key: key.to_owned(),
                tags,
            });
        }
        Ok(Specifier(segments))
    }

    /// Whether the specifier names `resource` (same shape, every key and tag matching).
    pub fn matches(&self, resource: &Resource) -> bool {
        self.0.len() == resource.0.len()
            && self
                .0
                .iter()
                .zip(&resource.0)
                .all(|(segment, (kind, key, tags))| {
                    segment.kind == *kind
                        && glob_matches(&segment.key, key)
                        && segment
                            .tags
                            .iter()
                            .all(|wanted| tags.iter().any(|tag| glob_matches(wanted, tag)))
                })
    }
}

/// Reads a list of strings at `field`.
fn strings(value: &Value, field: &str) -> Result<Vec<String>> {
    let Some(items) = value.as_array() else {
        return Err(invalid(field.to_owned(), "a list of strings"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid(format!("{field}[{i}]"), "a string"))
        })
        .collect()
}

/// One of two exclusive fields (`actions`/`notActions`): which, and its value.
fn one_of<'v>(
    statement: &'v serde_json::Map<String, Value>,
    field: &str,
    listed: &str,
    all_but: &str,
) -> Result<(bool, &'v Value, String)> {
    match (statement.get(listed), statement.get(all_but)) {
        (Some(value), None) => Ok((true, value, format!("{field}.{listed}"))),
        (None, Some(value)) => Ok((false, value, format!("{field}.{all_but}"))),
        _ => Err(invalid(
            field.to_owned(),
            format!("a statement has exactly one of {listed} and {all_but}"),
        )),
    }
}

impl Policy {
    /// Parses and validates a policy (a JSON list of statements). Unknown actions, malformed
    /// specifiers and unknown fields are refused with the path of the field.
    pub fn parse(value: &Value) -> Result<Policy> {
        let Some(items) = value.as_array() else {
            return Err(invalid(String::new(), "a policy is a list of statements"));
        };
        let mut statements = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("[{i}]");
            let Some(statement) = item.as_object() else {
                return Err(invalid(field, "a statement is an object"));
            };
            if let Some(unknown) = statement.keys().find(|k| {
                ![
                    "effect",
                    "actions",
                    "notActions",
                    "resources",
                    "notResources",
                ]
                .contains(&k.as_str())
            }) {
                return Err(invalid(
                    format!("{field}.{unknown}"),
                    "not a statement field (effect, actions, notActions, resources, notResources)",
                ));
            }
            let effect = match statement.get("effect").and_then(Value::as_str) {
                Some("allow") => Effect::Allow,
                Some("deny") => Effect::Deny,
                _ => {
                    return Err(invalid(format!("{field}.effect"), "\"allow\" or \"deny\""));
                }
            };
            let (listed, value, actions_field) =
                one_of(statement, &field, "actions", "notActions")?;
            let actions = strings(value, &actions_field)?;
            for (j, action) in actions.iter().enumerate() {
                if !ACTIONS.iter().any(|known| glob_matches(action, known)) {
                    return Err(invalid(
                        format!("{actions_field}[{j}]"),
                        format!("{action:?} is not an action (nor a pattern matching one)"),
                    ));
                }
            }
            let actions = if listed {
                Selection::Listed(actions)
            } else {
                Selection::AllBut(actions)
            };
            let (listed, value, resources_field) =
                one_of(statement, &field, "resources", "notResources")?;
            let resources = strings(value, &resources_field)?
                .iter()
                .enumerate()
                .map(|(j, text)| Specifier::parse(text, &format!("{resources_field}[{j}]")))
                .collect::<Result<Vec<_>>>()?;
            let resources = if listed {
                Selection::Listed(resources)
            } else {
                Selection::AllBut(resources)
            };
            statements.push(Statement {
                source: item.clone(),
                effect,
                actions,
                resources,
            });
        }
        Ok(Policy(statements))
    }

    /// The statements of several policies together (a member's roles): deny still wins across
    /// them, since deciding looks at every statement.
    pub fn combine<'p>(policies: impl IntoIterator<Item = &'p Policy>) -> Policy {
        Policy(
            policies
                .into_iter()
                .flat_map(|p| p.0.iter().cloned())
                .collect(),
        )
    }

    /// The statement at `index` as it was written.
    pub fn statement(&self, index: usize) -> Option<&Value> {
        self.0.get(index).map(|s| &s.source)
    }

    /// The number of statements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the policy has no statement (and so allows nothing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the policy says about `action` on `resource`.
    pub fn decide(&self, action: &str, resource: &Resource) -> Decision {
        let mut allowed = None;
        for (i, statement) in self.0.iter().enumerate() {
            if !statement.matches(action, resource) {
                continue;
            }
            match statement.effect {
                Effect::Deny => return Decision::Denied(i),
                Effect::Allow => {
                    allowed.get_or_insert(i);
                }
            }
        }
        allowed.map_or(Decision::NotAllowed, Decision::Allowed)
    }
}

impl Statement {
    fn matches(&self, action: &str, resource: &Resource) -> bool {
        let action_matches = match &self.actions {
            Selection::Listed(patterns) => patterns.iter().any(|p| glob_matches(p, action)),
            Selection::AllBut(patterns) => !patterns.iter().any(|p| glob_matches(p, action)),
        };
        action_matches
            && match &self.resources {
                Selection::Listed(specifiers) => specifiers.iter().any(|s| s.matches(resource)),
                Selection::AllBut(specifiers) => !specifiers.iter().any(|s| s.matches(resource)),
            }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
