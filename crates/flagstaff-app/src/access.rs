//! Who may do what: roles, actors and API access tokens.
//!
//! An API token is a random secret shown once. The store keeps only its SHA-256 (a
//! `credential` document keyed by that fingerprint) and a description (`token` document), so a
//! leaked database does not leak usable tokens. Authentication looks the fingerprint up; nothing
//! secret is compared in application code, so there is no timing side channel to protect.
//! SDK keys live in the same credential table but can never act on the management API.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use flagstaff_store::{Expect, Write};

use crate::error::{AppError, Result};
use crate::model::kinds;
use crate::{App, decode, draft, random_hex};

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
    /// How the audit log names them, e.g. `token:tok-1a2b3c4d`.
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

    pub(crate) fn may_see(&self, project: &str) -> bool {
        self.projects
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == project))
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

/// A token's description (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// The token's id (not secret).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The projects it is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    /// The environments (`project/environment`) it is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
    /// The last characters of the secret, to recognise it.
    pub hint: String,
    /// When it stops working (Unix ms); sign-in sessions expire, API tokens do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The member a sign-in session belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// What a new token is.
#[derive(Clone, Debug)]
pub(crate) struct TokenSpec {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) projects: Option<Vec<String>>,
    pub(crate) environments: Option<Vec<String>>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) member: Option<String>,
}

/// Now, in Unix milliseconds.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The SHA-256 of a secret, in hex: how credentials are stored and found.
pub(crate) fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The prefix of API tokens, so that secret scanners and people recognise them.
const TOKEN_PREFIX: &str = "fst_";

impl App {
    /// Creates an API token (admins); the secret is returned only now.
    /// `environments` entries are `project/environment`; they must exist.
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        projects: Option<Vec<String>>,
        environments: Option<Vec<String>>,
        comment: &str,
    ) -> Result<(TokenInfo, String)> {
        for (i, scope) in environments.iter().flatten().enumerate() {
            let exists = match scope.split_once('/') {
                Some((project, environment)) => self
                    .store
                    .get_live(kinds::ENVIRONMENT, project, environment)
                    .await?
                    .is_some(),
                None => false,
            };
            if !exists {
                return Err(AppError::invalid(
                    crate::validate::codes::INVALID_FIELD,
                    format!("environments[{i}]"),
                    format!("{scope:?} is not an existing project/environment"),
                ));
            }
        }
        actor.require(Role::Admin, None)?;
        let spec = TokenSpec {
            name: name.to_owned(),
            role,
            projects,
            environments,
            expires_at: None,
            member: None,
        };
        self.issue_token(actor, spec, comment).await
    }

    /// Stores a new token for `spec`, audited as `actor`'s action (authorization is the
    /// caller's business: an admin creating a token, or a member signing in).
    pub(crate) async fn issue_token(
        &self,
        actor: &Actor,
        spec: TokenSpec,
        comment: &str,
    ) -> Result<(TokenInfo, String)> {
        if spec.name.trim().is_empty() {
            return Err(AppError::invalid(
                crate::validate::codes::INVALID_FIELD,
                "name",
                "a token needs a name",
            ));
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_hex(32));
        let info = TokenInfo {
            id: format!("tok-{}", random_hex(4)),
            name: spec.name,
            role: spec.role,
            projects: spec.projects,
            environments: spec.environments,
            hint: crate::hint(&secret),
            expires_at: spec.expires_at,
            member: spec.member,
        };
        let after = serde_json::to_value(&info).unwrap_or_default();
        let writes = vec![
            Write::Put {
                kind: kinds::TOKEN.into(),
                scope: String::new(),
                key: info.id.clone(),
                body: after.clone(),
                expect: Expect::Absent,
            },
            Write::Put {
                kind: kinds::CREDENTIAL.into(),
                scope: String::new(),
                key: fingerprint(&secret),
                body: json!({"type": "token", "token": info.id}),
                expect: Expect::Absent,
            },
        ];
        self.commit(
            actor,
            writes,
            draft(
                "token.create",
                kinds::TOKEN,
                "",
                &info.id,
                comment,
                None,
                Some(after),
            ),
        )
        .await?;
        Ok((info, secret))
    }

    /// The writes that remove a token and its credential.
    pub(crate) async fn token_removal(&self, id: &str) -> Result<Vec<Write>> {
        let mut writes = vec![Write::Delete {
            kind: kinds::TOKEN.into(),
            scope: String::new(),
            key: id.into(),
            expect: Expect::Any,
        }];
        for credential in self
            .store
            .list(kinds::CREDENTIAL, "")
            .await?
            .iter()
            .filter(|c| c.body["type"] == "token" && c.body["token"] == id)
        {
            writes.push(Write::Delete {
                kind: kinds::CREDENTIAL.into(),
                scope: String::new(),
                key: credential.key.clone(),
                expect: Expect::Any,
            });
        }
        Ok(writes)
    }

    /// The tokens (admins).
    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<TokenInfo>> {
        actor.require(Role::Admin, None)?;
        self.store
            .list(kinds::TOKEN, "")
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// Revokes a token (admins): it stops working at once.
    pub async fn revoke_token(&self, actor: &Actor, id: &str, comment: &str) -> Result<()> {
        actor.require(Role::Admin, None)?;
        let doc = self
            .store
            .get_live(kinds::TOKEN, "", id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("token {id:?}")))?;
        let writes = self.token_removal(id).await?;
        self.commit(
            actor,
            writes,
            draft(
                "token.revoke",
                kinds::TOKEN,
                "",
                id,
                comment,
                Some(doc.body),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// Ends a sign-in session: its token stops working at once. Only session tokens can be
    /// ended this way (API tokens are revoked by an admin), and ending an unknown or expired
    /// session is not an error, so that signing out always succeeds.
    pub async fn sign_out(&self, secret: &str) -> Result<()> {
        let Some(credential) = self
            .store
            .get_live(kinds::CREDENTIAL, "", &fingerprint(secret))
            .await?
        else {
            return Ok(());
        };
        let id = credential.body["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(doc) = self.store.get_live(kinds::TOKEN, "", &id).await? else {
            return Ok(());
        };
        let info: TokenInfo = decode(&doc)?;
        let Some(member) = info.member.clone() else {
            return Err(AppError::Forbidden(
                "only sign-in sessions can be ended by signing out".into(),
            ));
        };
        let actor = Actor {
            id: format!("member:{member}"),
            role: info.role,
            projects: info.projects,
            environments: None,
        };
        let writes = self.token_removal(&id).await?;
        self.commit(
            &actor,
            writes,
            draft(
                "session.end",
                kinds::TOKEN,
                "",
                &id,
                "sign-out",
                Some(doc.body),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// The actor behind an API token. Anything else (unknown secrets, revoked tokens, and SDK,
    /// mobile or client-side keys) is `Unauthorized`.
    pub async fn authenticate(&self, secret: &str) -> Result<Actor> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(AppError::Unauthorized);
        }
        let credential = self
            .store
            .get_live(kinds::CREDENTIAL, "", &fingerprint(secret))
            .await?
            .ok_or(AppError::Unauthorized)?;
        if credential.body["type"] != "token" {
            return Err(AppError::Unauthorized);
        }
        let id = credential.body["token"].as_str().unwrap_or_default();
        let token: TokenInfo = decode(
            &self
                .store
                .get_live(kinds::TOKEN, "", id)
                .await?
                .ok_or(AppError::Unauthorized)?,
        )?;
        if token.expires_at.is_some_and(|at| at <= now_millis()) {
            return Err(AppError::Unauthorized);
        }
        // A sign-in session acts as its member, so that the audit log names a person (the
        // session token itself is short-lived and means nothing to a reader of the history).
        let id = match &token.member {
            Some(email) => format!("member:{email}"),
            None => format!("token:{}", token.id),
        };
        Ok(Actor {
            id,
            role: token.role,
            projects: token.projects,
            environments: token.environments,
        })
    }
}
