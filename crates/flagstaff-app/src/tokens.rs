//! API tokens and sign-in sessions: creation (the secret shown once), listing, revocation,
//! and authentication of a presented secret.
//!
//! An API token is a random secret shown once. The store keeps only its SHA-256 (a
//! `credential` document keyed by that fingerprint) and a description (`token` document), so a
//! leaked database does not leak usable tokens. Authentication looks the fingerprint up; nothing
//! secret is compared in application code, so there is no timing side channel to protect.

use serde::{Deserialize, Serialize};
use serde_json::json;

use flagstaff_store::{Expect, Write};

use crate::access::{Actor, Role, fingerprint, manage};
use crate::changes::Action;
use crate::error::{AppError, Result};
use crate::model::kinds;
use crate::policy::Resource;
use crate::{App, decode, draft, random_hex};

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
    /// Custom roles it holds (with the base role `noAccess`, only these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_roles: Vec<String>,
    /// The projects it is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    /// The environments (`project/environment`) it is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
    /// The last characters of the secret, to recognise it.
    pub hint: String,
    /// When it stops working (Unix ms): sign-in sessions always, API tokens when created
    /// with an expiry.
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
    pub(crate) custom_roles: Vec<String>,
    pub(crate) projects: Option<Vec<String>>,
    pub(crate) environments: Option<Vec<String>>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) member: Option<String>,
}

/// An API token to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    /// What it is for.
    pub name: String,
    /// What it may do (`Role::NoAccess` for a token that holds only custom roles).
    pub role: Role,
    /// Custom roles it holds.
    pub custom_roles: Vec<String>,
    /// The projects it is limited to, if any.
    pub projects: Option<Vec<String>>,
    /// The environments (`project/environment`, which must exist) it is limited to, if any.
    pub environments: Option<Vec<String>>,
    /// When it stops working (Unix ms, in the future), if ever.
    pub expires_at: Option<i64>,
}

impl NewToken {
    /// A token with `role` in every project, that does not expire.
    pub fn new(name: impl Into<String>, role: Role) -> NewToken {
        NewToken {
            name: name.into(),
            role,
            custom_roles: Vec::new(),
            projects: None,
            environments: None,
            expires_at: None,
        }
    }
}

/// The prefix of API tokens, so that secret scanners and people recognise them.
const TOKEN_PREFIX: &str = "fst_";

impl App {
    /// Creates an API token (admins); the secret is returned only now.
    pub async fn create_token(
        &self,
        actor: &Actor,
        new: NewToken,
        comment: &str,
    ) -> Result<(TokenInfo, String)> {
        // Authorized first, so that a caller who may not create tokens cannot learn which
        // projects and environments exist from the answers.
        actor.authorize(
            "createAccessToken",
            &Resource::new().with("token", "*", &[]),
        )?;
        if new.expires_at.is_some_and(|at| at <= self.now_millis()) {
            return Err(AppError::invalid(
                crate::validate::codes::INVALID_FIELD,
                "expiresAt",
                "a token's expiry must be in the future (Unix milliseconds)",
            ));
        }
        for (i, scope) in new.environments.iter().flatten().enumerate() {
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
        self.authorize_grant(actor, Some(new.role), &new.custom_roles, "customRoles")
            .await?;
        let spec = TokenSpec {
            name: new.name,
            role: new.role,
            custom_roles: new.custom_roles,
            projects: new.projects,
            environments: new.environments,
            expires_at: new.expires_at,
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
            // 128 random bits: an id must not be guessable from another (it names the token
            // in revocation and in the audit log).
            id: format!("tok-{}", random_hex(16)),
            name: spec.name,
            role: spec.role,
            custom_roles: spec.custom_roles,
            projects: spec.projects,
            environments: spec.environments,
            hint: crate::hint(&secret),
            expires_at: spec.expires_at,
            member: spec.member,
        };
        let after = crate::body(&info)?;
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
                Action::TokenCreate,
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
        actor.authorize_manage("token", manage::TOKEN)?;
        self.store
            .list(kinds::TOKEN, "")
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// Revokes a token (admins): it stops working at once.
    pub async fn revoke_token(&self, actor: &Actor, id: &str, comment: &str) -> Result<()> {
        actor.authorize("deleteAccessToken", &Resource::new().with("token", id, &[]))?;
        let doc = self
            .store
            .get_live(kinds::TOKEN, "", id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("token {id:?}")))?;
        let writes = self.token_removal(id).await?;
        self.commit(
            actor,
            writes,
            draft(Action::TokenRevoke, "", id, comment, Some(doc.body), None),
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
        let actor = Actor::with_role(format!("member:{member}"), info.role);
        let writes = self.token_removal(&id).await?;
        self.commit(
            &actor,
            writes,
            draft(
                Action::SessionEnd,
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
        Ok(self.token_actor(&fingerprint(secret)).await?.0)
    }

    /// The actor behind the API token with this fingerprint, with the token's own expiry (a
    /// sign-in session's, for a member). Delivery re-checks a relay's open streams with it,
    /// holding only the fingerprint.
    pub(crate) async fn token_actor(&self, fingerprint: &str) -> Result<(Actor, Option<i64>)> {
        let credential = self
            .store
            .get_live(kinds::CREDENTIAL, "", fingerprint)
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
        if token.expires_at.is_some_and(|at| at <= self.now_millis()) {
            return Err(AppError::Unauthorized);
        }
        // A sign-in session acts as its member, so that the audit log names a person (the
        // session token itself is short-lived and means nothing to a reader of the history),
        // with the member's rights as they are now: a role taken away applies at once.
        let actor = match &token.member {
            Some(email) => self
                .member_actor(email)
                .await?
                .ok_or(AppError::Unauthorized)?,
            None => Actor {
                id: format!("token:{}", token.id),
                role: token.role,
                projects: token.projects,
                environments: token.environments,
                custom_roles: self.held_roles(&token.custom_roles).await?,
            },
        };
        Ok((actor, token.expires_at))
    }
}

impl App {
    /// The actor an audit name (`member:…`, `token:…`) stands for now, with its rights as they
    /// are now; `None` when it no longer exists or has expired. Deferred changes (schedules,
    /// change requests, triggers) execute as the person or token that made them.
    pub(crate) async fn actor_named(&self, name: &str) -> Result<Option<Actor>> {
        if name == "system" {
            return Ok(Some(Actor::system()));
        }
        if let Some(email) = name.strip_prefix("member:") {
            return self.member_actor(email).await;
        }
        let Some(id) = name.strip_prefix("token:") else {
            return Ok(None);
        };
        let Some(doc) = self.store.get_live(kinds::TOKEN, "", id).await? else {
            return Ok(None);
        };
        let token: TokenInfo = decode(&doc)?;
        if token.expires_at.is_some_and(|at| at <= self.now_millis()) || token.member.is_some() {
            return Ok(None);
        }
        Ok(Some(Actor {
            id: format!("token:{}", token.id),
            role: token.role,
            projects: token.projects,
            environments: token.environments,
            custom_roles: self.held_roles(&token.custom_roles).await?,
        }))
    }
}
