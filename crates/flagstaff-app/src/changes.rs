//! The change feed as a typed contract: what was done ([`Action`]), to what ([`Subject`]), where
//! ([`Scope`]), and the use cases that read the feed.
//!
//! Every commit appends exactly one audit entry (ARCHITECTURE.md, invariant 10), so the audit log
//! *is* the change feed: delivery follows it to publish changes to SDKs, the dashboard's live
//! stream follows it to tell open pages, and the history shows it to people. Each of them used to
//! match the stored action strings on its own; now writers name an [`Action`] and readers match
//! on it, so the compiler finds every reader that a new action concerns.
//!
//! The stored strings are exactly the ones written before this enum existed (`flag.update`,
//! `environment.sdk_key.rotate`, …): stored logs stay readable and their hash chain still
//! verifies. A string no variant knows (written by a newer Flagstaff sharing the database) reads
//! as `None`, and readers treat it as "something may have changed".

use flagstaff_store::ChangeRecord;
use serde::Serialize;

use crate::access::manage;
use crate::model::kinds;
use crate::{Actor, App, Result, Role};

/// The kind of document an audit entry is about (its `kind` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Subject {
    /// A project.
    Project,
    /// An environment (its settings and keys).
    Environment,
    /// A flag's definition, shared by every environment of its project.
    Flag,
    /// A flag's targeting in one environment.
    Targeting,
    /// A segment in one environment.
    Segment,
    /// A person who signs in to the dashboard.
    Member,
    /// An API token or a sign-in session.
    Token,
    /// A custom role.
    Role,
    /// A team.
    Team,
    /// An invitation to become a member.
    Invitation,
    /// A change scheduled for later, or a step of a rollout plan.
    ScheduledChange,
    /// A change request (approvals).
    ChangeRequest,
    /// A webhook.
    Webhook,
    /// A flag trigger.
    Trigger,
    /// A metric experiments measure.
    Metric,
    /// An experiment.
    Experiment,
    /// A guarded rollout.
    GuardedRollout,
}

impl Subject {
    /// The stored `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Project => kinds::PROJECT,
            Subject::Environment => kinds::ENVIRONMENT,
            Subject::Flag => kinds::FLAG,
            Subject::Targeting => kinds::TARGETING,
            Subject::Segment => kinds::SEGMENT,
            Subject::Member => kinds::MEMBER,
            Subject::Token => kinds::TOKEN,
            Subject::Role => kinds::ROLE,
            Subject::Team => kinds::TEAM,
            Subject::Invitation => kinds::INVITATION,
            Subject::ScheduledChange => kinds::SCHEDULE,
            Subject::ChangeRequest => kinds::CHANGE_REQUEST,
            Subject::Webhook => kinds::WEBHOOK,
            Subject::Trigger => kinds::TRIGGER,
            Subject::Metric => kinds::METRIC,
            Subject::Experiment => kinds::EXPERIMENT,
            Subject::GuardedRollout => kinds::GUARDED_ROLLOUT,
        }
    }
}

macro_rules! actions {
    ($($(#[doc = $doc:literal])* $variant:ident => $text:literal, $subject:ident;)*) => {
        /// What a change did: the audit log's `action` field.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The stored string (unchanged since the first release that wrote it).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $text,)*
                }
            }

            /// The kind of document the action changes.
            pub fn subject(self) -> Subject {
                match self {
                    $(Action::$variant => Subject::$subject,)*
                }
            }
        }
    };
}

actions! {
    /// A project was created.
    ProjectCreate => "project.create", Project;
    /// A project was renamed.
    ProjectUpdate => "project.update", Project;
    /// A project was deleted with everything in it.
    ProjectDelete => "project.delete", Project;
    /// An environment was created with fresh keys.
    EnvironmentCreate => "environment.create", Environment;
    /// An environment's name or settings changed.
    EnvironmentUpdate => "environment.update", Environment;
    /// An environment was deleted with its targeting, segments and keys.
    EnvironmentDelete => "environment.delete", Environment;
    /// LaunchDarkly flag data was imported into an environment.
    EnvironmentImport => "environment.import", Environment;
    /// An environment's SDK key was replaced.
    SdkKeyRotate => "environment.sdk_key.rotate", Environment;
    /// An environment's mobile key was replaced.
    MobileKeyRotate => "environment.mobile_key.rotate", Environment;
    /// A flag was created (off in every environment).
    FlagCreate => "flag.create", Flag;
    /// A flag's definition changed.
    FlagUpdate => "flag.update", Flag;
    /// A flag was archived (hidden from SDKs).
    FlagArchive => "flag.archive", Flag;
    /// A flag was restored from the archive.
    FlagRestore => "flag.restore", Flag;
    /// A flag was deleted everywhere.
    FlagDelete => "flag.delete", Flag;
    /// A flag's targeting in one environment changed.
    TargetingUpdate => "flag.targeting.update", Targeting;
    /// A segment was created.
    SegmentCreate => "segment.create", Segment;
    /// A segment changed.
    SegmentUpdate => "segment.update", Segment;
    /// A segment was deleted.
    SegmentDelete => "segment.delete", Segment;
    /// A member was added.
    MemberCreate => "member.create", Member;
    /// A member was removed (their sessions end).
    MemberDelete => "member.delete", Member;
    /// A member's base role, custom roles or project limit changed.
    MemberUpdate => "member.update", Member;
    /// A custom role was created.
    RoleCreate => "role.create", Role;
    /// A custom role's name, description or policy changed.
    RoleUpdate => "role.update", Role;
    /// A custom role was deleted.
    RoleDelete => "role.delete", Role;
    /// A team was created.
    TeamCreate => "team.create", Team;
    /// A team's name, members or roles changed.
    TeamUpdate => "team.update", Team;
    /// A team was deleted.
    TeamDelete => "team.delete", Team;
    /// Someone was invited to become a member (accepting it records `member.create`).
    InvitationCreate => "invitation.create", Invitation;
    /// An invitation was revoked before it was used.
    InvitationRevoke => "invitation.revoke", Invitation;
    /// An API token was created.
    TokenCreate => "token.create", Token;
    /// An API token was revoked.
    TokenRevoke => "token.revoke", Token;
    /// A member signed out, ending their session.
    SessionEnd => "session.end", Token;
    /// A change was scheduled (or a rollout plan's steps, in one entry).
    ScheduleCreate => "scheduled_change.create", ScheduledChange;
    /// A scheduled change was moved or its instructions replaced.
    ScheduleUpdate => "scheduled_change.update", ScheduledChange;
    /// A scheduled change (or what was left of a rollout plan) was cancelled.
    ScheduleCancel => "scheduled_change.cancel", ScheduledChange;
    /// A scheduled change could not execute (its instructions no longer apply, its creator may
    /// no longer make it); the entry says why. Executed ones are the targeting or segment
    /// change they made.
    ScheduleFail => "scheduled_change.fail", ScheduledChange;
    /// A change request was opened.
    ChangeRequestCreate => "change_request.create", ChangeRequest;
    /// Someone approved, declined or commented on a change request.
    ChangeRequestReview => "change_request.review", ChangeRequest;
    /// A change request was cancelled.
    ChangeRequestCancel => "change_request.cancel", ChangeRequest;
    /// An approved change request was scheduled for later (applying it now is the targeting or
    /// segment change it makes).
    ChangeRequestSchedule => "change_request.schedule", ChangeRequest;
    /// A webhook was created.
    WebhookCreate => "webhook.create", Webhook;
    /// A webhook's name, URL, secret, filter or state changed.
    WebhookUpdate => "webhook.update", Webhook;
    /// A webhook was deleted.
    WebhookDelete => "webhook.delete", Webhook;
    /// A flag trigger was created.
    TriggerCreate => "trigger.create", Trigger;
    /// A trigger was turned on or off, or given a new URL.
    TriggerUpdate => "trigger.update", Trigger;
    /// A trigger was deleted.
    TriggerDelete => "trigger.delete", Trigger;
    /// A metric was created.
    MetricCreate => "metric.create", Metric;
    /// A metric's name, event, kind or criteria changed.
    MetricUpdate => "metric.update", Metric;
    /// A metric was deleted.
    MetricDelete => "metric.delete", Metric;
    /// An experiment was designed.
    ExperimentCreate => "experiment.create", Experiment;
    /// An experiment's design changed.
    ExperimentUpdate => "experiment.update", Experiment;
    /// An experiment was deleted with its results.
    ExperimentDelete => "experiment.delete", Experiment;
    /// A guarded rollout was paused or resumed (its steps are targeting changes).
    GuardedRolloutUpdate => "guarded_rollout.update", GuardedRollout;
}

impl Action {
    /// The action a stored string names; `None` for strings this version does not know.
    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == text)
    }

    /// Whether the action removes its subject.
    pub fn is_delete(self) -> bool {
        matches!(
            self,
            Action::ProjectDelete
                | Action::EnvironmentDelete
                | Action::FlagDelete
                | Action::SegmentDelete
                | Action::MemberDelete
                | Action::RoleDelete
                | Action::TeamDelete
                | Action::InvitationRevoke
                | Action::TokenRevoke
                | Action::SessionEnd
                | Action::ScheduleCancel
                | Action::ChangeRequestCancel
                | Action::WebhookDelete
                | Action::TriggerDelete
                | Action::MetricDelete
                | Action::ExperimentDelete
        )
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a change happened: the audit entry's `scope`, typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Server-wide (projects, members, tokens): the stored scope is empty.
    Global,
    /// One project (environments and flag definitions are scoped so).
    Project(String),
    /// One environment of a project (targeting and segments), stored as `project/environment`.
    Environment {
        /// The project key.
        project: String,
        /// The environment key.
        environment: String,
    },
}

impl Scope {
    /// Reads a stored scope.
    pub fn parse(text: &str) -> Scope {
        match text.split_once('/') {
            _ if text.is_empty() => Scope::Global,
            Some((project, environment)) => Scope::Environment {
                project: project.to_owned(),
                environment: environment.to_owned(),
            },
            None => Scope::Project(text.to_owned()),
        }
    }

    /// The project the scope lies in, if any.
    pub fn project(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Project(project) | Scope::Environment { project, .. } => Some(project),
        }
    }
}

/// The stored form: empty, `project` or `project/environment`.
impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Global => Ok(()),
            Scope::Project(project) => f.write_str(project),
            Scope::Environment {
                project,
                environment,
            } => write!(f, "{project}/{environment}"),
        }
    }
}

/// One entry of the change feed, without its contents (read [`App::audit`] for those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The position in the feed (the audit sequence number).
    pub seq: u64,
    /// What was done; `None` when a newer Flagstaff wrote an action this one does not know.
    pub action: Option<Action>,
    /// The stored action string, as written.
    pub action_text: String,
    /// Who did it, as the audit log names them (e.g. `member:ada@example.com`).
    pub actor: String,
    /// The stored kind of the changed document.
    pub kind: String,
    /// Where.
    pub scope: Scope,
    /// The key of the changed document (for a project or an environment, its own key).
    pub key: String,
}

impl From<ChangeRecord> for Change {
    fn from(record: ChangeRecord) -> Change {
        Change {
            seq: record.seq,
            action: Action::parse(&record.action),
            action_text: record.action,
            actor: record.actor,
            kind: record.kind,
            scope: Scope::parse(&record.scope),
            key: record.key,
        }
    }
}

impl Actor {
    /// Whether the actor may read an audit entry or change record about a document of `kind`
    /// at `scope`/`key`. This is the one rule the audit log, the dashboard's history and its
    /// live stream share; an entry shows the document before and after, so it is visible only
    /// to whoever may read that document:
    /// - members, API tokens and sessions: administrators without limits (listing them is theirs);
    /// - a project (stored at the global scope, keyed by the project): whoever may see it;
    /// - an environment (stored at its project's scope, keyed by the environment) and anything
    ///   in one (targeting, segments): whoever may see that environment, admins included;
    /// - flag definitions (project-wide): whoever may see the project.
    pub fn may_read_change(&self, kind: &str, scope: &Scope, key: &str) -> bool {
        match (kind, scope) {
            (kinds::MEMBER | kinds::INVITATION, _) => self.may_manage("member", manage::MEMBER),
            (kinds::TEAM, _) => self.may_manage("team", manage::TEAM),
            (kinds::ROLE, _) => self.may_manage("role", manage::ROLE),
            (kinds::TOKEN | kinds::CREDENTIAL, _) => self.may_manage("token", manage::TOKEN),
            (kinds::WEBHOOK, _) => self.may_manage("webhook", manage::WEBHOOK),
            (kinds::PROJECT, _) => self.may_view(key),
            (kinds::ENVIRONMENT, Scope::Project(project)) => {
                self.may_view(project) && self.may_see_environment(project, key)
            }
            (
                _,
                Scope::Environment {
                    project,
                    environment,
                },
            ) => self.may_view(project) && self.may_see_environment(project, environment),
            (_, Scope::Project(project)) => self.may_view(project),
            // Anything else at the global scope is server-wide administration.
            (_, Scope::Global) => self.role == Role::Admin && self.is_unlimited(),
        }
    }
}

impl App {
    /// The change feed's head: the position of the newest commit by any node.
    pub async fn head(&self) -> Result<u64> {
        Ok(self.store.head().await?)
    }

    /// The position of the newest commit made through this process (no I/O).
    pub fn last_commit(&self) -> u64 {
        self.store.last_commit()
    }

    /// Wakes when this process commits a change (the value is the commit's position). Commits by
    /// other nodes sharing the database do not wake it: poll [`App::head`] for those.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.watch_commits()
    }

    /// Up to `limit` changes after position `after`, oldest first, for the server itself
    /// (delivery follows every change, whoever may read it).
    pub async fn changes_after(&self, after: u64, limit: u32) -> Result<Vec<Change>> {
        Ok(self
            .store
            .changes_after(after, limit)
            .await?
            .into_iter()
            .map(Change::from)
            .collect())
    }

    /// The changes after `after` in one project that `actor` may read, oldest first, and the
    /// position read up to (pass it as `after` next time; it moves on even when nothing was
    /// visible). Reads at most `limit` entries of the feed.
    pub async fn changes(
        &self,
        actor: &Actor,
        project: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<Change>, u64)> {
        actor.authorize_view(project, None)?;
        let mut position = after;
        let mut visible = Vec::new();
        for change in self.changes_after(after, limit).await? {
            position = change.seq;
            if change.scope.project() == Some(project)
                && actor.may_read_change(&change.kind, &change.scope, &change.key)
            {
                visible.push(change);
            }
        }
        Ok((visible, position))
    }

    /// Whether the database answers (for `/ready`).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    /// Closes the database connections (at shutdown, after the last request).
    pub async fn close(&self) {
        self.store.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_reads_back_from_its_stored_string() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(*action));
        }
        assert_eq!(Action::parse("environment.key.rotate"), None);
        assert_eq!(Action::parse(""), None);
    }

    #[test]
    fn stored_strings_are_unique_and_start_with_their_subject() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            assert!(seen.insert(action.as_str()), "{action} twice");
            let subject = match action.subject() {
                // Targeting changes have always been recorded as flag actions, and sessions
                // as the token documents they are.
                Subject::Targeting => "flag",
                Subject::Token if *action == Action::SessionEnd => "session",
                other => other.as_str(),
            };
            assert!(
                action.as_str().starts_with(&format!("{subject}.")),
                "{action}"
            );
        }
    }

    #[test]
    fn scopes_parse_as_stored() {
        assert_eq!(Scope::parse(""), Scope::Global);
        assert_eq!(Scope::parse("p"), Scope::Project("p".into()));
        assert_eq!(
            Scope::parse("p/e"),
            Scope::Environment {
                project: "p".into(),
                environment: "e".into()
            }
        );
        assert_eq!(Scope::parse("p/e").project(), Some("p"));
        for stored in ["", "p", "p/e"] {
            assert_eq!(Scope::parse(stored).to_string(), stored);
        }
        assert_eq!(Scope::Global.project(), None);
    }
}
