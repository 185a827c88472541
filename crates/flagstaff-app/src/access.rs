//! Who may do what: roles, actors and the one decision every use case asks for, and the
//! fingerprint under which every secret is stored. SDK keys live in the same credential table
//! as API tokens (`tokens.rs`) but can never act on the management API.
//!
//! Every use case names the *action* it takes (LaunchDarkly's action names, `policy::ACTIONS`)
//! and the *resource* it takes it on (`proj/default:env/production;critical:flag/checkout;web`),
//! and asks [`Actor::authorize`]. The answer comes from two layers:
//!
//! 1. the actor's **fence**: the projects and environments a token or member is limited to
//!    (nothing outside it, whatever the roles say; server-wide resources such as members and
//!    tokens only for actors without limits);
//! 2. the actor's **policies**: the built-in base role (reader, writer, admin — themselves
//!    policies, see [`builtin_policy`]) and any custom roles (`roles.rs`) held directly or
//!    through teams. Deny wins across all of them; nothing is allowed unless one allows it.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{AppError, Refusal, Result};
use crate::policy::{Decision, Policy, Resource};

/// A base role. Each includes the ones before it; custom roles add to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Nothing by itself: everything comes from custom roles (LaunchDarkly's "no access").
    NoAccess,
    /// Read flags, segments, environments, the audit log; evaluate.
    Reader,
    /// Also change flags, targeting and segments.
    Writer,
    /// Also manage projects, environments, keys, members, teams, roles and tokens.
    Admin,
}

impl Role {
    /// The name shown in access decisions.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::NoAccess => "noAccess",
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

/// The flag actions that change a flag's definition, shared by every environment. Updates come
/// first: a refusal before a body is read names the first one.
pub const FLAG_ACTIONS: &[&str] = &[
    "updateName",
    "updateDescription",
    "updateTags",
    "updateFlagVariations",
    "updateMaintainer",
    "updateTemporary",
    "updateClientSideFlagAvailability",
    "updateGlobalArchived",
    "createFlag",
    "deleteFlag",
];

/// The flag actions that change a flag's targeting in one environment.
pub const TARGETING_ACTIONS: &[&str] = &[
    "updateOn",
    "updateTargets",
    "updateRules",
    "updateFallthrough",
    "updateOffVariation",
    "updatePrerequisites",
    "updateTrackEvents",
];

/// The segment actions, updates first (see [`FLAG_ACTIONS`]).
pub const SEGMENT_ACTIONS: &[&str] = &[
    "updateIncluded",
    "updateExcluded",
    "updateRules",
    "createSegment",
    "deleteSegment",
    "updateName",
    "updateDescription",
];

/// The metric actions (issue 21): writers define what experiments measure.
pub const METRIC_ACTIONS: &[&str] = &["createMetric", "updateMetric", "deleteMetric"];

/// The experiment actions (issue 21): writers design, start, stop and ship experiments. Starting
/// and stopping also change the flag's targeting, which needs the targeting actions too.
pub const EXPERIMENT_ACTIONS: &[&str] =
    &["createExperiment", "updateExperiment", "deleteExperiment"];

/// The release-workflow actions writers take on flags and segments (issue 19): requesting,
/// reviewing and applying changes, scheduling them, and flag triggers. Bypassing a required
/// approval is not among them: an environment names who may (`approvals.rs`).
pub const WORKFLOW_ACTIONS: &[&str] = &[
    "createApprovalRequest",
    "reviewApprovalRequest",
    "applyApprovalRequest",
    "updateScheduledChanges",
    "createTriggers",
];

/// The built-in roles as policies in the same language as custom roles, so that one engine
/// decides for everyone. Their behaviour is the three fixed roles Flagstaff always had: readers
/// read, writers also change flags, targeting and segments, admins do anything.
pub fn builtin_policy(role: Role) -> &'static Policy {
    static POLICIES: OnceLock<[Policy; 4]> = OnceLock::new();
    let policies = POLICIES.get_or_init(|| {
        let read = json!({"effect": "allow", "actions": ["viewProject"], "resources": ["proj/*"]});
        let write = [
            read.clone(),
            json!({"effect": "allow", "actions": FLAG_ACTIONS,
                   "resources": ["proj/*:env/*:flag/*"]}),
            json!({"effect": "allow", "actions": TARGETING_ACTIONS,
                   "resources": ["proj/*:env/*:flag/*"]}),
            json!({"effect": "allow", "actions": SEGMENT_ACTIONS,
                   "resources": ["proj/*:env/*:segment/*"]}),
            json!({"effect": "allow", "actions": WORKFLOW_ACTIONS,
                   "resources": ["proj/*:env/*:flag/*", "proj/*:env/*:segment/*"]}),
            json!({"effect": "allow", "actions": ["importFlagData"], "resources": ["proj/*:env/*"]}),
            json!({"effect": "allow", "actions": METRIC_ACTIONS, "resources": ["proj/*:metric/*"]}),
            json!({"effect": "allow", "actions": EXPERIMENT_ACTIONS,
                   "resources": ["proj/*:env/*:experiment/*"]}),
        ];
        let admin = json!([{"effect": "allow", "actions": ["*"], "resources": [
            "proj/*", "proj/*:env/*", "proj/*:env/*:flag/*",
            "proj/*:env/*:segment/*", "proj/*:env/*:experiment/*", "proj/*:metric/*", "member/*", "team/*", "role/*", "token/*", "webhook/*"
        ]}]);
        let parse = |v: Value| Policy::parse(&v).expect("built-in policies are valid");
        [
            Policy::default(),
            parse(json!([read])),
            parse(Value::Array(write.to_vec())),
            parse(admin),
        ]
    });
    &policies[role as usize]
}

/// A custom role as an actor holds it: its key and its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldRole {
    /// The role's key.
    pub key: String,
    /// Its statements (shared: parsed once per stored version).
    pub policy: Arc<Policy>,
}

/// Someone acting: a token, a signed-in member, or the server itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// How the audit log names them, e.g. `token:tok-` and 32 hex digits.
    pub id: String,
    /// Their base role.
    pub role: Role,
    /// The projects they are limited to, if any.
    pub projects: Option<Vec<String>>,
    /// The environments (`project/environment`) they are limited to, if any.
    pub environments: Option<Vec<String>>,
    /// Custom roles, held directly or through teams.
    pub custom_roles: Arc<Vec<HeldRole>>,
}

/// What an actor may do about one action on one resource, and why: the answer of
/// `GET /api/v1/access/check` and the body of a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessDecision {
    /// Whether the action may go ahead.
    pub allowed: bool,
    /// The action asked about.
    pub action: String,
    /// The resource, with the tags that were matched.
    pub resource: String,
    /// The role that decided (`reader`, `writer`, `admin` or a custom role's key); none when
    /// the fence refused or no role allowed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The statement of that role that decided, as written, with its index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<Value>,
    /// Its index in the role's policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_index: Option<usize>,
    /// A sentence for people.
    pub reason: String,
}

impl Actor {
    /// The server acting on its own (first start).
    pub fn system() -> Actor {
        Actor::with_role("system", Role::Admin)
    }

    /// An actor with a base role and no limits or custom roles.
    pub fn with_role(id: impl Into<String>, role: Role) -> Actor {
        Actor {
            id: id.into(),
            role,
            projects: None,
            environments: None,
            custom_roles: Arc::default(),
        }
    }

    /// Whether the actor's fence lets it see anything of `project`. A token limited to
    /// environments sees only the projects those environments belong to.
    pub(crate) fn may_see(&self, project: &str) -> bool {
        self.projects
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == project))
            && self.environments.as_ref().is_none_or(|envs| {
                envs.iter()
                    .any(|e| e.split_once('/').is_some_and(|(p, _)| p == project))
            })
    }

    /// Whether the actor holds no project or environment limit.
    pub(crate) fn is_unlimited(&self) -> bool {
        self.projects.is_none() && self.environments.is_none()
    }

    pub(crate) fn may_see_environment(&self, project: &str, environment: &str) -> bool {
        self.environments.as_ref().is_none_or(|allowed| {
            allowed
                .iter()
                .any(|e| *e == format!("{project}/{environment}"))
        })
    }

    /// Why the fence refuses `action` on `resource`, if it does.
    fn fenced_out(&self, action: &str, resource: &Resource) -> Option<String> {
        if self.is_unlimited() {
            return None;
        }
        let Some(project) = resource
            .key("proj")
            .filter(|_| resource.root() == Some("proj"))
        else {
            return Some(format!(
                "a project- or environment-limited credential cannot act on {}",
                resource.root().unwrap_or("this")
            ));
        };
        if action == "createProject" {
            return Some(
                "a project- or environment-limited credential cannot create projects".into(),
            );
        }
        if !self.may_see(project) {
            return Some(format!(
                "the credential is not allowed on project {project:?}"
            ));
        }
        match (resource.key("env"), &self.environments) {
            (Some("*"), Some(_)) => Some(
                "an environment-limited credential cannot change project-wide resources".into(),
            ),
            (Some(environment), _) if !self.may_see_environment(project, environment) => Some(
                format!("the credential is not allowed in environment {project}/{environment}"),
            ),
            (None, Some(_)) if action != "viewProject" => Some(
                "an environment-limited credential cannot change project-wide resources".into(),
            ),
            _ => None,
        }
    }

    /// The policies the actor holds, named: the base role first, then custom roles.
    fn policies(&self) -> impl Iterator<Item = (&str, &Policy)> {
        std::iter::once((self.role.as_str(), builtin_policy(self.role))).chain(
            self.custom_roles
                .iter()
                .map(|held| (held.key.as_str(), held.policy.as_ref())),
        )
    }

    /// What the actor may do about `action` on `resource`: the fence first, then every policy
    /// (deny wins across roles).
    pub fn decide(&self, action: &str, resource: &Resource) -> AccessDecision {
        let mut decision = AccessDecision {
            allowed: false,
            action: action.to_owned(),
            resource: resource.with_tags(),
            role: None,
            statement: None,
            statement_index: None,
            reason: String::new(),
        };
        if let Some(reason) = self.fenced_out(action, resource) {
            decision.reason = reason;
            return decision;
        }
        let mut allowed_by: Option<(&str, &Policy, usize)> = None;
        for (name, policy) in self.policies() {
            match policy.decide(action, resource) {
                Decision::Denied(i) => {
                    decision.reason = format!(
                        "statement {i} of role {name:?} denies {action} on {}",
                        decision.resource
                    );
                    decision.role = Some(name.to_owned());
                    decision.statement = policy.statement(i).cloned();
                    decision.statement_index = Some(i);
                    return decision;
                }
                Decision::Allowed(i) => {
                    allowed_by.get_or_insert((name, policy, i));
                }
                Decision::NotAllowed => {}
            }
        }
        match allowed_by {
            Some((name, policy, i)) => {
                decision.allowed = true;
                decision.reason = format!("statement {i} of role {name:?} allows it");
                decision.role = Some(name.to_owned());
                decision.statement = policy.statement(i).cloned();
                decision.statement_index = Some(i);
            }
            None => {
                let names: Vec<&str> = self.policies().map(|(name, _)| name).collect();
                decision.reason = format!(
                    "no role allows {action} on {} (roles: {})",
                    decision.resource,
                    names.join(", ")
                );
            }
        }
        decision
    }

    /// Checks the actor may take `action` on `resource`; a refusal names both.
    pub fn authorize(&self, action: &str, resource: &Resource) -> Result<()> {
        let decision = self.decide(action, resource);
        if decision.allowed {
            Ok(())
        } else {
            Err(AppError::Forbidden(Refusal::denied(
                decision.action,
                decision.resource,
                decision.reason,
            )))
        }
    }

    /// Checks the actor may take at least one of `actions` on `resource`: the cheap check an
    /// HTTP edge makes before reading a body whose content decides the exact actions. The
    /// refusal names the first action and lists the others in its message.
    pub fn authorize_any(&self, actions: &[&str], resource: &Resource) -> Result<()> {
        if actions
            .iter()
            .any(|action| self.decide(action, resource).allowed)
        {
            return Ok(());
        }
        let first = self.decide(actions.first().copied().unwrap_or("*"), resource);
        Err(AppError::Forbidden(Refusal::denied(
            first.action,
            first.resource,
            format!(
                "this needs at least one of {} on it; {}",
                actions.join(", "),
                first.reason
            ),
        )))
    }

    /// Checks the actor may read `project` (and, when given, `environment` in it): LaunchDarkly's
    /// `viewProject` on `proj/<key>`, inside the fence.
    pub fn authorize_view(&self, project: &str, environment: Option<&str>) -> Result<()> {
        if let Some(environment) = environment
            && !self.may_see_environment(project, environment)
        {
            return Err(AppError::Forbidden(Refusal::denied(
                "viewProject",
                format!("proj/{project}:env/{environment}"),
                format!("the credential is not allowed in environment {project}/{environment}"),
            )));
        }
        self.authorize("viewProject", &Resource::new().with("proj", project, &[]))
    }

    /// Whether the actor may read `project`.
    pub(crate) fn may_view(&self, project: &str) -> bool {
        self.authorize_view(project, None).is_ok()
    }

    /// Whether the actor manages resources of a server-wide `kind` (`member`, `team`, `role`,
    /// `token`): it may take at least one of `actions` on `kind/*`. Listing them, and reading
    /// their history, is for those who manage them.
    pub fn may_manage(&self, kind: &str, actions: &[&str]) -> bool {
        let resource = Resource::new().with(kind, "*", &[]);
        actions.iter().any(|a| self.decide(a, &resource).allowed)
    }

    /// Checks [`Actor::may_manage`].
    pub fn authorize_manage(&self, kind: &str, actions: &[&str]) -> Result<()> {
        if self.may_manage(kind, actions) {
            return Ok(());
        }
        self.authorize_any(actions, &Resource::new().with(kind, "*", &[]))
    }
}

/// The actions on server-wide resources, by kind, for [`Actor::may_manage`].
pub mod manage {
    /// Members.
    pub const MEMBER: &[&str] = &["createMember", "deleteMember", "updateMemberRole"];
    /// Teams.
    pub const TEAM: &[&str] = &["createTeam", "deleteTeam", "updateTeamMembers"];
    /// Custom roles.
    pub const ROLE: &[&str] = &["createRole", "deleteRole", "updateRole"];
    /// API tokens.
    pub const TOKEN: &[&str] = &["createAccessToken", "deleteAccessToken"];
    /// Webhooks.
    pub const WEBHOOK: &[&str] = &["createWebhook", "deleteWebhook", "updateWebhook"];
}

/// The SHA-256 of a secret, in hex: how credentials are stored and found.
pub(crate) fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The resources use cases act on, built the same way everywhere.
pub mod resource {
    use crate::policy::Resource;

    /// `proj/<project>`.
    pub fn project(project: &str) -> Resource {
        Resource::new().with("proj", project, &[])
    }

    /// `proj/<project>:env/<environment>`, tagged `critical` when it is.
    pub fn environment(project: &str, environment: &str, critical: bool) -> Resource {
        let tags: &[&str] = if critical { &["critical"] } else { &[] };
        project_with(project).with("env", environment, tags)
    }

    /// A flag's project-wide definition: `proj/<project>:env/*:flag/<key>` with the flag's tags.
    /// As in LaunchDarkly, flag resources always name an environment; a definition is shared
    /// by every environment, so its environment is the literal `*`, which only a specifier
    /// granting every environment (`env/*`) matches: a role limited to production cannot rename
    /// a flag or change its variations for all environments.
    pub fn flag(project: &str, key: &str, tags: &[String]) -> Resource {
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        project_with(project)
            .with("env", "*", &[])
            .with("flag", key, &tags)
    }

    /// `proj/<project>:env/<environment>:flag/<key>` with both tag sets.
    pub fn flag_in(env: &Resource, key: &str, tags: &[String]) -> Resource {
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        env.clone().with("flag", key, &tags)
    }

    /// `proj/<project>:metric/<key>`: metrics are project-wide, as in LaunchDarkly.
    pub fn metric(project: &str, key: &str) -> Resource {
        project_with(project).with("metric", key, &[])
    }

    /// `proj/<project>:env/<environment>:experiment/<key>` (the environment untagged: an
    /// experiment's own actions do not change what SDKs receive; its targeting change is
    /// authorized on the flag, with the environment's tags).
    pub fn experiment(project: &str, environment: &str, key: &str) -> Resource {
        project_with(project)
            .with("env", environment, &[])
            .with("experiment", key, &[])
    }

    /// `proj/<project>:env/<environment>:segment/<key>`.
    pub fn segment_in(env: &Resource, key: &str) -> Resource {
        env.clone().with("segment", key, &[])
    }

    fn project_with(project: &str) -> Resource {
        Resource::new().with("proj", project, &[])
    }
}

/// The rights each kind of write needs, named once: the write use cases check the exact actions
/// once they know what changes, and the HTTP edges call these before they parse or apply a body
/// (a JSON Patch, an import, a review), so that a caller without any right to the resource costs
/// the server one small read at most. They look the resource up (a flag's tags, whether an
/// environment is critical) only after the fence has let the actor see the project, so that a
/// refusal does not tell outsiders what exists.
impl crate::App {
    /// `proj/<project>:env/<environment>` with its `critical` tag; not found if it does not
    /// exist.
    pub(crate) async fn environment_resource(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Resource> {
        Ok(self.environment_doc(project, environment).await?.1)
    }

    /// The environment as stored (for its approval rules) and as a resource.
    pub(crate) async fn environment_doc(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<(crate::model::Environment, Resource)> {
        let doc = self
            .store
            .get_live(crate::model::kinds::ENVIRONMENT, project, environment)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("environment {project}/{environment}")))?;
        let env: crate::model::Environment = crate::decode(&doc)?;
        let resource = resource::environment(project, environment, env.critical);
        Ok((env, resource))
    }

    /// A flag's tags (none when it does not exist).
    pub(crate) async fn flag_tags(&self, project: &str, key: &str) -> Result<Vec<String>> {
        Ok(
            match self
                .store
                .get_live(crate::model::kinds::FLAG, project, key)
                .await?
            {
                Some(doc) => crate::decode::<crate::model::FlagDefinition>(&doc)?.tags,
                None => Vec::new(),
            },
        )
    }

    /// Before changing flag `key`'s definition in `project`: the actor may take at least one
    /// definition action on it.
    pub async fn authorize_flag_change(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
    ) -> Result<()> {
        self.fence_check(actor, FLAG_ACTIONS[0], project, None)?;
        let tags = self.flag_tags(project, key).await?;
        actor.authorize_any(FLAG_ACTIONS, &resource::flag(project, key, &tags))
    }

    /// Before changing flag `key`'s targeting in one environment: at least one targeting action.
    pub async fn authorize_targeting_change(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<()> {
        self.fence_check(actor, TARGETING_ACTIONS[0], project, Some(environment))?;
        let env = self.environment_resource(project, environment).await?;
        let tags = self.flag_tags(project, key).await?;
        actor.authorize_any(TARGETING_ACTIONS, &resource::flag_in(&env, key, &tags))
    }

    /// Before changing segment `key` in one environment: at least one segment action.
    pub async fn authorize_segment_change(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<()> {
        self.fence_check(actor, SEGMENT_ACTIONS[0], project, Some(environment))?;
        let env = self.environment_resource(project, environment).await?;
        actor.authorize_any(SEGMENT_ACTIONS, &resource::segment_in(&env, key))
    }

    /// What `actor` may do to flag `key`'s targeting in one environment: the decision for each
    /// of [`TARGETING_ACTIONS`], in that order, so that pages show only what will be accepted
    /// and say why the rest is not.
    pub async fn targeting_access(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<Vec<AccessDecision>> {
        let env = self.environment_resource(project, environment).await?;
        let flag = resource::flag_in(&env, key, &self.flag_tags(project, key).await?);
        Ok(TARGETING_ACTIONS
            .iter()
            .map(|action| actor.decide(action, &flag))
            .collect())
    }

    /// What `actor` may do to flag `key`'s project-wide definition: the decision for each of
    /// `actions` (e.g. `updateGlobalArchived`), on the flag with its tags.
    pub async fn flag_access(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        actions: &[&str],
    ) -> Result<Vec<AccessDecision>> {
        let flag = resource::flag(project, key, &self.flag_tags(project, key).await?);
        Ok(actions.iter().map(|a| actor.decide(a, &flag)).collect())
    }

    /// What `actor` may do to segment `key` (or `*`, any segment) in one environment: the
    /// decision for each of `actions`.
    pub async fn segment_access(
        &self,
        actor: &Actor,
        (project, environment): (&str, &str),
        key: &str,
        actions: &[&str],
    ) -> Result<Vec<AccessDecision>> {
        let env = self.environment_resource(project, environment).await?;
        let segment = resource::segment_in(&env, key);
        Ok(actions.iter().map(|a| actor.decide(a, &segment)).collect())
    }

    /// A flag's definition, read to be changed (a JSON Patch is applied to it): authorized as
    /// [`App::authorize_flag_change`], so that someone who may change a flag but not browse its
    /// project (a kill-switch role without `viewProject`) can still patch it.
    pub async fn flag_for_change(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
    ) -> Result<crate::Versioned<crate::model::FlagDefinition>> {
        self.authorize_flag_change(actor, project, key).await?;
        self.load(crate::model::kinds::FLAG, project, key, || {
            format!("flag {key:?}")
        })
        .await
    }

    /// A flag's targeting, read to be changed (see [`App::flag_for_change`]).
    pub async fn targeting_for_change(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<crate::Versioned<crate::model::Targeting>> {
        self.authorize_targeting_change(actor, project, environment, key)
            .await?;
        self.load(
            crate::model::kinds::TARGETING,
            &crate::env_scope(project, environment),
            key,
            || format!("flag {key:?} in environment {environment:?}"),
        )
        .await
    }

    /// A segment, read to be changed (see [`App::flag_for_change`]).
    pub async fn segment_for_change(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<crate::Versioned<flagstaff_protocol::Segment>> {
        self.authorize_segment_change(actor, project, environment, key)
            .await?;
        let mut segment: crate::Versioned<flagstaff_protocol::Segment> = self
            .load(
                crate::model::kinds::SEGMENT,
                &crate::env_scope(project, environment),
                key,
                || format!("segment {key:?}"),
            )
            .await?;
        segment.value.version = segment.version;
        Ok(segment)
    }

    /// Importing flag data into an environment, which may add flags to the whole project:
    /// `importFlagData` on the environment and `createFlag` on `proj/<project>:flag/*`.
    pub async fn authorize_import(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
    ) -> Result<()> {
        self.fence_check(actor, "importFlagData", project, Some(environment))?;
        let env = self.environment_resource(project, environment).await?;
        actor.authorize("importFlagData", &env)?;
        actor.authorize("createFlag", &resource::flag(project, "*", &[]))
    }

    /// The fence alone, before anything is read: a credential limited elsewhere learns nothing.
    pub(crate) fn fence_check(
        &self,
        actor: &Actor,
        action: &str,
        project: &str,
        environment: Option<&str>,
    ) -> Result<()> {
        let mut probe = resource::project(project);
        if let Some(environment) = environment {
            probe = probe.with("env", environment, &[]);
        }
        match actor.fenced_out(action, &probe) {
            Some(message) => Err(AppError::Forbidden(Refusal::denied(
                action,
                probe.to_string(),
                message,
            ))),
            None => Ok(()),
        }
    }
}
