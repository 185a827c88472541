//! Environment keys: rotation with a grace period, and what a presented SDK credential grants
//! (`ld-protocol.md` §1).

use flagstaff_protocol::CredentialKind;
use flagstaff_store::{Expect, Write};
use serde_json::{Value, json};

use crate::changes::Action;
use crate::model::{Environment, kinds};
use crate::{
    Actor, App, AppError, ErrorCode, HmacKey, Result, access, body, decode, draft, hint, uuid_v4,
};

/// The stored form of an SDK credential: what it grants, never the secret. An SDK key also keeps
/// its HMAC key schedule, so that secure-mode hashes made with it can be checked (see
/// `secure_mode.rs` for why that is not the key).
pub(crate) fn credential_body(
    type_name: &str,
    project: &str,
    environment: &str,
    secret: &str,
) -> Value {
    let mut body = json!({"type": type_name, "project": project, "environment": environment});
    if type_name == "sdk" {
        body["secureModeKey"] = json!(HmacKey::new(secret.as_bytes()).to_hex());
    }
    body
}

/// What a valid SDK credential grants: one environment, until an optional expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The project key.
    pub project: String,
    /// The environment key.
    pub environment: String,
    /// When a rotated-out key stops working (Unix milliseconds); `None` for current keys.
    pub expires_at: Option<i64>,
}

impl Grant {
    /// Whether the grant is still valid at `now` (Unix milliseconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl App {
    /// Replaces an environment's SDK or mobile key (admins). The old key keeps working for
    /// `old_key_valid_for_seconds` (0: it stops at once), so deployed services can move to the
    /// new key without downtime. The new key is returned only now.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        kind: CredentialKind,
        old_key_valid_for_seconds: u64,
        comment: &str,
    ) -> Result<String> {
        let action = match kind {
            CredentialKind::Mobile => "updateMobileKey",
            _ => "updateApiKey",
        };
        self.fence_check(actor, action, project, Some(environment))?;
        actor.authorize(
            action,
            &self.environment_resource(project, environment).await?,
        )?;
        let env_doc = self
            .store
            .get_live(kinds::ENVIRONMENT, project, environment)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("environment {project}/{environment}")))?;
        let mut env: Environment = decode(&env_doc)?;
        let type_name = kind.as_str();
        let (new_key, action) = match kind {
            CredentialKind::Sdk => (format!("sdk-{}", uuid_v4()), Action::SdkKeyRotate),
            CredentialKind::Mobile => (format!("mob-{}", uuid_v4()), Action::MobileKeyRotate),
            CredentialKind::ClientSide => {
                return Err(AppError::invalid(
                    ErrorCode::InvalidField,
                    "kind",
                    "the client-side ID is public and does not rotate",
                ));
            }
        };
        let before = body(&env)?;
        match kind {
            CredentialKind::Sdk => env.sdk_key_hint = hint(&new_key),
            _ => env.mobile_key_hint = hint(&new_key),
        }
        let mut writes = vec![
            Write::Put {
                kind: kinds::ENVIRONMENT.into(),
                scope: project.into(),
                key: environment.into(),
                body: body(&env)?,
                expect: Expect::Version(env_doc.version),
            },
            Write::Put {
                kind: kinds::CREDENTIAL.into(),
                scope: String::new(),
                key: access::fingerprint(&new_key),
                body: credential_body(type_name, project, environment, &new_key),
                expect: Expect::Absent,
            },
        ];
        let expires_at = self.now_millis().saturating_add(
            i64::try_from(old_key_valid_for_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        for credential in self.store.list(kinds::CREDENTIAL, "").await? {
            let current = credential.body["type"] == type_name
                && credential.body["project"] == project
                && credential.body["environment"] == environment
                && credential.body.get("expiresAt").is_none();
            if !current {
                continue;
            }
            writes.push(if old_key_valid_for_seconds == 0 {
                Write::Delete {
                    kind: kinds::CREDENTIAL.into(),
                    scope: String::new(),
                    key: credential.key.clone(),
                    expect: Expect::Version(credential.version),
                }
            } else {
                let mut expiring = credential.body.clone();
                expiring["expiresAt"] = json!(expires_at);
                Write::Put {
                    kind: kinds::CREDENTIAL.into(),
                    scope: String::new(),
                    key: credential.key.clone(),
                    body: expiring,
                    expect: Expect::Version(credential.version),
                }
            });
        }
        let after =
            json!({"environment": body(&env)?, "oldKeyValidForSeconds": old_key_valid_for_seconds});
        self.commit(
            actor,
            writes,
            draft(
                action,
                project,
                environment,
                comment,
                Some(before),
                Some(after),
            ),
        )
        .await?;
        Ok(new_key)
    }

    /// The environment an SDK credential belongs to, if it is valid now: an SDK key, mobile key
    /// or client-side ID (`kind`), honouring the expiry of rotated keys. Used by SDK delivery.
    pub async fn environment_for_key(
        &self,
        secret: &str,
        kind: CredentialKind,
    ) -> Result<Option<(String, String)>> {
        Ok(self
            .grant(&access::fingerprint(secret), kind)
            .await?
            .map(|grant| (grant.project, grant.environment)))
    }

    /// What the credential with this [`fingerprint`] grants, if it exists, is of `kind` and has
    /// not expired. Delivery re-checks open streams with it after credential changes.
    pub async fn grant(&self, fingerprint: &str, kind: CredentialKind) -> Result<Option<Grant>> {
        let Some(doc) = self
            .store
            .get_live(kinds::CREDENTIAL, "", fingerprint)
            .await?
        else {
            return Ok(None);
        };
        let grant = Grant {
            project: doc.body["project"].as_str().unwrap_or_default().to_owned(),
            environment: doc.body["environment"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            expires_at: doc.body.get("expiresAt").and_then(Value::as_i64),
        };
        if doc.body["type"] != kind.as_str() || !grant.valid_at(self.now_millis()) {
            return Ok(None);
        }
        Ok(Some(grant))
    }
}
