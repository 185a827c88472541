//! Who may do what: roles and actors, and the fingerprint under which every secret is stored.
//! SDK keys live in the same credential table as API tokens (`tokens.rs`) but can never act on
//! the management API.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AppError, Result};

/// What a token may do. Each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Read flags, segments, environments, the audit log; evaluate.
    Reader,
    /// Also change flags, targeting and segments.
    Writer,
    /// Also manage projects, environments, keys and tokens.
    Admin,
}

/// Someone acting: a token, or the server itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// How the audit log names them, e.g. `token:tok-` and 32 hex digits.
    pub id: String,
    /// Their role.
    pub role: Role,
    /// The projects they are limited to, if any.
    pub projects: Option<Vec<String>>,
    /// The environments (`project/environment`) they are limited to, if any.
    pub environments: Option<Vec<String>>,
}

impl Actor {
    /// The server acting on its own (first start).
    pub fn system() -> Actor {
        Actor {
            id: "system".into(),
            role: Role::Admin,
            projects: None,
            environments: None,
        }
    }

    /// Whether the actor may see anything of `project`. A token limited to environments sees
    /// only the projects those environments belong to (and there, project-wide definitions).
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

    fn check(&self, role: Role, project: Option<&str>) -> Result<()> {
        if self.role < role {
            return Err(AppError::Forbidden(format!(
                "this needs the {role:?} role; the token has {:?}",
                self.role
            )));
        }
        match project {
            Some(project) if !self.may_see(project) => Err(AppError::Forbidden(format!(
                "the token is not allowed on project {project:?}"
            ))),
            None if role == Role::Admin
                && (self.projects.is_some() || self.environments.is_some()) =>
            {
                Err(AppError::Forbidden(
                    "a project- or environment-limited token cannot do this".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Checks the actor has at least `role`, for `project` if given. Changing project-wide
    /// resources (flag definitions, whose variations every environment serves) is refused to a
    /// token limited to some environments.
    pub fn require(&self, role: Role, project: Option<&str>) -> Result<()> {
        self.check(role, project)?;
        if role >= Role::Writer && self.environments.is_some() {
            return Err(AppError::Forbidden(
                "an environment-limited token cannot change project-wide resources".into(),
            ));
        }
        Ok(())
    }

    /// Checks the actor has at least `role` in one environment.
    pub fn require_env(&self, role: Role, project: &str, environment: &str) -> Result<()> {
        self.check(role, Some(project))?;
        match &self.environments {
            Some(allowed)
                if !allowed
                    .iter()
                    .any(|e| *e == format!("{project}/{environment}")) =>
            {
                Err(AppError::Forbidden(format!(
                    "the token is not allowed in environment {project}/{environment}"
                )))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn may_see_environment(&self, project: &str, environment: &str) -> bool {
        self.environments.as_ref().is_none_or(|allowed| {
            allowed
                .iter()
                .any(|e| *e == format!("{project}/{environment}"))
        })
    }
}

/// The SHA-256 of a secret, in hex: how credentials are stored and found.
pub(crate) fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The rights each kind of write needs, named once: the write use cases check them first, and
/// the HTTP edges call them before they parse or apply a body (a JSON Patch, an import, a review),
/// so a caller without the right costs the server nothing.
impl crate::App {
    /// Changing flag definitions of `project` (create, update, archive, delete): writers of the
    /// whole project (definitions are shared by every environment).
    pub fn authorize_flag_change(&self, actor: &Actor, project: &str) -> Result<()> {
        actor.require(Role::Writer, Some(project))
    }

    /// Changing targeting or segments in one environment: writers of that environment.
    pub fn authorize_environment_change(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
    ) -> Result<()> {
        actor.require_env(Role::Writer, project, environment)
    }

    /// Importing flag data into an environment, which may add flags to the whole project.
    pub fn authorize_import(&self, actor: &Actor, project: &str, environment: &str) -> Result<()> {
        self.authorize_flag_change(actor, project)?;
        self.authorize_environment_change(actor, project, environment)
    }
}
