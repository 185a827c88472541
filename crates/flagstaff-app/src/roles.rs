//! Custom roles and teams: named policies (`policy.rs`) that members, teams and API tokens hold.
//!
//! A member's effective rights are their base role, their own custom roles and the custom roles
//! of every team they belong to, all decided together (deny wins across them; `access.rs`).
//! Roles are resolved when a request is authenticated, so a change to a role, a team or a
//! member applies to their next request, sessions included.
//!
//! Granting is guarded against escalation: only someone who may do anything (an unlimited
//! admin) may hand out custom roles or the admin role, and nobody may hand out a base role above
//! their own. Editing a role's policy (`updateRole`) changes what its holders may do, so it is
//! itself as powerful as the admin role; the built-in admin is the only one with it by default.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use flagstaff_store::{Expect, Write};

use crate::access::{Actor, HeldRole, Role, manage};
use crate::changes::Action;
use crate::error::{AppError, ErrorCode, Result};
use crate::model::kinds;
use crate::policy::{Policy, Resource};
use crate::validate::{self, codes};
use crate::{App, Versioned, already_exists, body, decode, draft};

/// A custom role: a named policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomRole {
    /// Unique key (`support-kill-switch`).
    pub key: String,
    /// Display name (`Support`).
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The statements, in LaunchDarkly's syntax (`policy.rs`).
    pub policy: Value,
}

/// A team: members who hold custom roles together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Team {
    /// Unique key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Members' emails (lower case).
    #[serde(default)]
    pub members: Vec<String>,
    /// The custom roles every member of the team holds.
    #[serde(default)]
    pub custom_roles: Vec<String>,
}

fn role_resource(key: &str) -> Resource {
    Resource::new().with("role", key, &[])
}

fn team_resource(key: &str) -> Resource {
    Resource::new().with("team", key, &[])
}

/// Validates a role and parses its policy; errors name the field (`policy[0].actions[1]`).
fn validated(role: &CustomRole) -> Result<Policy> {
    validate::key("key", &role.key)?;
    if role.name.trim().is_empty() {
        return Err(AppError::invalid(
            codes::INVALID_FIELD,
            "name",
            "a role needs a name",
        ));
    }
    Policy::parse(&role.policy).map_err(|e| match e {
        AppError::Invalid {
            code,
            message,
            field,
        } => AppError::Invalid {
            code,
            message,
            field: format!("policy{field}"),
        },
        other => other,
    })
}

impl App {
    /// Checks `actor` may grant `base` and `custom_roles` to someone (a member, a team, a
    /// token): custom roles and the admin role only by an unlimited admin, and no base role above
    /// the actor's own. Every custom role named must exist; `field` names the list in errors.
    pub(crate) async fn authorize_grant(
        &self,
        actor: &Actor,
        base: Option<Role>,
        custom_roles: &[String],
        field: &str,
    ) -> Result<()> {
        let may_grant_anything =
            actor.role == Role::Admin && actor.is_unlimited() && actor.custom_roles.is_empty();
        if let Some(base) = base
            && !may_grant_anything
            && (base > actor.role || base == Role::Admin)
        {
            return Err(AppError::Forbidden(
                format!(
                    "granting the {} role needs an administrator without limits",
                    base.as_str()
                )
                .into(),
            ));
        }
        if !custom_roles.is_empty() && !may_grant_anything {
            return Err(AppError::Forbidden(
                "granting custom roles needs an administrator without limits".into(),
            ));
        }
        for (i, key) in custom_roles.iter().enumerate() {
            if self.store.get_live(kinds::ROLE, "", key).await?.is_none() {
                return Err(AppError::invalid(
                    codes::INVALID_FIELD,
                    format!("{field}[{i}]"),
                    format!("there is no custom role {key:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The custom roles named, with their policies; a role deleted meanwhile is skipped (a role
    /// in use cannot be deleted, so that only happens in a race, and then it grants nothing).
    /// Every request authenticates through here, so it reads all roles in one query and parses
    /// a role's policy only when its stored version is new to this process.
    pub(crate) async fn held_roles(&self, keys: &[String]) -> Result<Arc<Vec<HeldRole>>> {
        if keys.is_empty() {
            return Ok(Arc::default());
        }
        let docs = self.store.list(kinds::ROLE, "").await?;
        let mut held: Vec<HeldRole> = Vec::with_capacity(keys.len());
        for key in keys {
            if held.iter().any(|h| h.key == *key) {
                continue;
            }
            let Some(doc) = docs.iter().find(|d| d.key == *key) else {
                continue;
            };
            let cached = self
                .role_policies
                .lock()
                .ok()
                .and_then(|cache| cache.get(key).cloned())
                .filter(|(version, _)| *version == doc.version);
            let policy = match cached {
                Some((_, policy)) => policy,
                None => {
                    let role: CustomRole = decode(doc)?;
                    let policy = Arc::new(Policy::parse(&role.policy)?);
                    if let Ok(mut cache) = self.role_policies.lock() {
                        cache.insert(key.clone(), (doc.version, Arc::clone(&policy)));
                    }
                    policy
                }
            };
            held.push(HeldRole {
                key: key.clone(),
                policy,
            });
        }
        Ok(Arc::new(held))
    }

    /// The custom roles a member holds through teams.
    pub(crate) async fn team_roles_of(&self, email: &str) -> Result<Vec<String>> {
        let mut roles = Vec::new();
        for doc in self.store.list(kinds::TEAM, "").await? {
            let team: Team = decode(&doc)?;
            if team.members.iter().any(|m| m == email) {
                roles.extend(team.custom_roles);
            }
        }
        Ok(roles)
    }

    /// Every server-wide document of `kind` (roles, teams) with its version.
    async fn list_named<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<Versioned<T>>> {
        self.store
            .list(kind, "")
            .await?
            .iter()
            .map(|d| {
                Ok(Versioned {
                    version: d.version,
                    value: decode(d)?,
                })
            })
            .collect()
    }

    /// Stores a new server-wide document (a role or a team) with its audit entry.
    async fn create_named<T: Serialize>(
        &self,
        actor: &Actor,
        (kind, key): (&str, &str),
        value: &T,
        action: Action,
        comment: &str,
    ) -> Result<u64> {
        let after = body(value)?;
        let write = Write::Put {
            kind: kind.into(),
            scope: String::new(),
            key: key.into(),
            body: after.clone(),
            expect: Expect::Absent,
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(action, "", key, comment, None, Some(after)),
            )
            .await
            .map_err(|e| already_exists(e, format!("{kind} {key:?}")))?;
        Ok(versions[0])
    }

    /// Replaces a server-wide document at version `expected`; `before` is what it was.
    async fn replace_named<T: Serialize>(
        &self,
        actor: &Actor,
        (kind, key): (&str, &str),
        (before, after): (&T, &T),
        expected: u64,
        (action, comment): (Action, &str),
    ) -> Result<u64> {
        let after = body(after)?;
        let write = Write::Put {
            kind: kind.into(),
            scope: String::new(),
            key: key.into(),
            body: after.clone(),
            expect: Expect::Version(expected),
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(action, "", key, comment, Some(body(before)?), Some(after)),
            )
            .await?;
        Ok(versions[0])
    }

    /// Deletes a server-wide document at version `expected`; `before` is what it was.
    async fn delete_named<T: Serialize>(
        &self,
        actor: &Actor,
        (kind, key): (&str, &str),
        before: &T,
        expected: u64,
        (action, comment): (Action, &str),
    ) -> Result<()> {
        let write = Write::Delete {
            kind: kind.into(),
            scope: String::new(),
            key: key.into(),
            expect: Expect::Version(expected),
        };
        self.commit(
            actor,
            vec![write],
            draft(action, "", key, comment, Some(body(before)?), None),
        )
        .await?;
        Ok(())
    }

    // ----- roles -----------------------------------------------------------------------------

    /// Creates a custom role.
    pub async fn create_role(
        &self,
        actor: &Actor,
        role: CustomRole,
        comment: &str,
    ) -> Result<Versioned<CustomRole>> {
        actor.authorize("createRole", &role_resource(&role.key))?;
        validated(&role)?;
        let version = self
            .create_named(
                actor,
                (kinds::ROLE, &role.key),
                &role,
                Action::RoleCreate,
                comment,
            )
            .await?;
        Ok(Versioned {
            version,
            value: role,
        })
    }

    /// The custom roles (for those who manage roles, members or teams: they assign them).
    pub async fn list_roles(&self, actor: &Actor) -> Result<Vec<Versioned<CustomRole>>> {
        self.authorize_role_reading(actor)?;
        self.list_named(kinds::ROLE).await
    }

    fn authorize_role_reading(&self, actor: &Actor) -> Result<()> {
        if actor.may_manage("member", manage::MEMBER) || actor.may_manage("team", manage::TEAM) {
            return Ok(());
        }
        actor.authorize_manage("role", manage::ROLE)
    }

    /// One custom role.
    pub async fn role(&self, actor: &Actor, key: &str) -> Result<Versioned<CustomRole>> {
        self.authorize_role_reading(actor)?;
        self.load(kinds::ROLE, "", key, || format!("role {key:?}"))
            .await
    }

    /// Replaces a custom role's name, description and policy; its holders' next requests are
    /// decided by the new policy.
    pub async fn update_role(
        &self,
        actor: &Actor,
        key: &str,
        role: CustomRole,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<CustomRole>> {
        actor.authorize("updateRole", &role_resource(key))?;
        if role.key != key {
            return Err(AppError::invalid(
                codes::INVALID_FIELD,
                "key",
                "a role's key cannot change",
            ));
        }
        validated(&role)?;
        let current: Versioned<CustomRole> = self
            .load(kinds::ROLE, "", key, || format!("role {key:?}"))
            .await?;
        let version = self
            .replace_named(
                actor,
                (kinds::ROLE, key),
                (&current.value, &role),
                expected,
                (Action::RoleUpdate, comment),
            )
            .await?;
        Ok(Versioned {
            version,
            value: role,
        })
    }

    /// Deletes a custom role nobody holds; a role still held is refused with `in_use`, naming
    /// the holders, so that nobody loses rights by surprise.
    pub async fn delete_role(
        &self,
        actor: &Actor,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        actor.authorize("deleteRole", &role_resource(key))?;
        let current: Versioned<CustomRole> = self
            .load(kinds::ROLE, "", key, || format!("role {key:?}"))
            .await?;
        let holders = self.role_holders(key).await?;
        if !holders.is_empty() {
            return Err(AppError::invalid(
                ErrorCode::InUse,
                "key",
                format!(
                    "role {key:?} is held by {}; take it away from them first",
                    holders.join(", ")
                ),
            ));
        }
        self.delete_named(
            actor,
            (kinds::ROLE, key),
            &current.value,
            expected,
            (Action::RoleDelete, comment),
        )
        .await
    }

    /// Who holds custom role `key`: `member:…`, `team:…`, `token:…`.
    async fn role_holders(&self, key: &str) -> Result<Vec<String>> {
        let mut holders = Vec::new();
        let holds = |doc: &flagstaff_store::Document| {
            doc.body["customRoles"]
                .as_array()
                .is_some_and(|roles| roles.iter().any(|r| r == key))
        };
        for (kind, prefix) in [
            (kinds::MEMBER, "member"),
            (kinds::TEAM, "team"),
            (kinds::TOKEN, "token"),
            (kinds::INVITATION, "invitation"),
        ] {
            for doc in self.store.list(kind, "").await? {
                if holds(&doc) {
                    // Invitations are keyed by their secret's hash; they are named by id.
                    let name = doc.body["id"].as_str().unwrap_or(&doc.key);
                    let name = if kind == kinds::INVITATION {
                        name
                    } else {
                        &doc.key
                    };
                    holders.push(format!("{prefix}:{name}"));
                }
            }
        }
        Ok(holders)
    }

    // ----- teams -----------------------------------------------------------------------------

    /// Creates a team.
    pub async fn create_team(
        &self,
        actor: &Actor,
        team: Team,
        comment: &str,
    ) -> Result<Versioned<Team>> {
        actor.authorize("createTeam", &team_resource(&team.key))?;
        let team = self.validated_team(actor, team).await?;
        let version = self
            .create_named(
                actor,
                (kinds::TEAM, &team.key),
                &team,
                Action::TeamCreate,
                comment,
            )
            .await?;
        Ok(Versioned {
            version,
            value: team,
        })
    }

    async fn validated_team(&self, actor: &Actor, mut team: Team) -> Result<Team> {
        validate::key("key", &team.key)?;
        if team.name.trim().is_empty() {
            return Err(AppError::invalid(
                codes::INVALID_FIELD,
                "name",
                "a team needs a name",
            ));
        }
        for (i, email) in team.members.iter_mut().enumerate() {
            *email = email.trim().to_lowercase();
            if self
                .store
                .get_live(kinds::MEMBER, "", email)
                .await?
                .is_none()
            {
                return Err(AppError::invalid(
                    codes::INVALID_FIELD,
                    format!("members[{i}]"),
                    format!("there is no member {email:?}"),
                ));
            }
        }
        team.members.sort();
        team.members.dedup();
        self.authorize_grant(actor, None, &team.custom_roles, "customRoles")
            .await?;
        Ok(team)
    }

    /// The teams (for those who manage teams or members).
    pub async fn list_teams(&self, actor: &Actor) -> Result<Vec<Versioned<Team>>> {
        if !actor.may_manage("member", manage::MEMBER) {
            actor.authorize_manage("team", manage::TEAM)?;
        }
        self.list_named(kinds::TEAM).await
    }

    /// One team.
    pub async fn team(&self, actor: &Actor, key: &str) -> Result<Versioned<Team>> {
        if !actor.may_manage("member", manage::MEMBER) {
            actor.authorize_manage("team", manage::TEAM)?;
        }
        self.load(kinds::TEAM, "", key, || format!("team {key:?}"))
            .await
    }

    /// Replaces a team's name, description, members and roles. Changing members takes
    /// `updateTeamMembers`; changing anything else (roles included) takes `updateTeamMembers`
    /// too, plus the right to grant those roles.
    pub async fn update_team(
        &self,
        actor: &Actor,
        key: &str,
        team: Team,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<Team>> {
        actor.authorize("updateTeamMembers", &team_resource(key))?;
        if team.key != key {
            return Err(AppError::invalid(
                codes::INVALID_FIELD,
                "key",
                "a team's key cannot change",
            ));
        }
        let current: Versioned<Team> = self
            .load(kinds::TEAM, "", key, || format!("team {key:?}"))
            .await?;
        let team = self.validated_team(actor, team).await?;
        let version = self
            .replace_named(
                actor,
                (kinds::TEAM, key),
                (&current.value, &team),
                expected,
                (Action::TeamUpdate, comment),
            )
            .await?;
        Ok(Versioned {
            version,
            value: team,
        })
    }

    /// Deletes a team; its members lose the roles it gave them at their next request.
    pub async fn delete_team(
        &self,
        actor: &Actor,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        actor.authorize("deleteTeam", &team_resource(key))?;
        let current: Versioned<Team> = self
            .load(kinds::TEAM, "", key, || format!("team {key:?}"))
            .await?;
        self.delete_named(
            actor,
            (kinds::TEAM, key),
            &current.value,
            expected,
            (Action::TeamDelete, comment),
        )
        .await
    }

    // ----- access checks ---------------------------------------------------------------------

    /// "Why can't I?": what `actor` (or, for those who manage members, the member `member`)
    /// may do about `action` on `resource`, with the role and statement that decided.
    pub async fn check_access(
        &self,
        actor: &Actor,
        action: &str,
        resource: &str,
        member: Option<&str>,
    ) -> Result<crate::access::AccessDecision> {
        if !crate::policy::ACTIONS.contains(&action) {
            return Err(AppError::invalid(
                codes::INVALID_FIELD,
                "action",
                format!("{action:?} is not an action"),
            ));
        }
        let resource = Resource::parse(resource, "resource")?;
        let subject = match member {
            None => actor.clone(),
            Some(email) => {
                actor.authorize_manage("member", manage::MEMBER)?;
                self.member_actor(email)
                    .await?
                    .ok_or_else(|| AppError::NotFound(format!("member {email:?}")))?
            }
        };
        Ok(subject.decide(action, &resource))
    }
}
