//! What a relay with a relay token may read (issue 22): the environments the token may relay,
//! each with what SDKs present to the relay as fingerprints (SHA-256 of the secret, never the
//! secret), secure mode's HMAC key schedules and the client-side ID; and, per environment, the
//! grant that lets the token's streams read the environment's SDK data.
//!
//! A relay token is an API token whose roles allow the `relayEnvironment` action on
//! `proj/<project>:env/<environment>`. No built-in role but admin allows it, so a token made
//! for a relay (base role `noAccess` with a custom role such as
//! `[{"effect":"allow","actions":["relayEnvironment"],"resources":["proj/*:env/production"]}]`)
//! can read nothing else, and nothing else can read SDK data through the relay endpoints.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::access::resource;
use crate::model::{Environment, kinds};
use crate::{App, AppError, CredentialKind, Grant, Result, decode};

/// The action a relay token needs on an environment.
pub const RELAY_ACTION: &str = "relayEnvironment";

/// One environment as a relay configures itself for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayEnvironment {
    /// The project key.
    pub project: String,
    /// The environment key.
    pub key: String,
    /// The client-side ID (public by design: browsers send it).
    pub client_side_id: String,
    /// Whether browsers must send the context's hash (§5.7).
    pub secure_mode: bool,
    /// The credentials that may read it now.
    pub credentials: Vec<RelayCredential>,
}

/// A credential a relay checks: its fingerprint, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayCredential {
    /// SHA-256 of the secret, hex.
    pub fingerprint: String,
    /// `sdk`, `mobile` or `client-side`.
    pub kind: &'static str,
    /// When a rotated-out key stops working (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// For SDK keys: the HMAC-SHA256 key schedule secure mode verifies with (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_mode_key: Option<String>,
}

impl App {
    /// Every environment the actor may relay, in key order, with its credentials. Refused
    /// (`403`) when it may relay none, so that a token made without the role fails loudly at
    /// the relay's start rather than serving nothing.
    pub async fn relay_environments(&self, actor: &crate::Actor) -> Result<Vec<RelayEnvironment>> {
        let now = self.now_millis();
        let mut environments = BTreeMap::new();
        for doc in self.store.list_kind(kinds::ENVIRONMENT).await? {
            let env: Environment = decode(&doc)?;
            let resource = resource::environment(&doc.scope, &doc.key, env.critical);
            if !actor.decide(RELAY_ACTION, &resource).allowed {
                continue;
            }
            environments.insert(
                (doc.scope.clone(), doc.key.clone()),
                RelayEnvironment {
                    project: doc.scope,
                    key: doc.key,
                    client_side_id: env.client_side_id,
                    secure_mode: env.secure_mode,
                    credentials: Vec::new(),
                },
            );
        }
        if environments.is_empty() {
            return Err(AppError::Forbidden(crate::Refusal::denied(
                RELAY_ACTION,
                "proj/*:env/*",
                format!(
                    "this token may relay no environment: give it a role that allows {RELAY_ACTION} on proj/<project>:env/<environment>"
                ),
            )));
        }
        // One pass over the credentials for all environments.
        for credential in self.store.list(kinds::CREDENTIAL, "").await? {
            let body = &credential.body;
            let Some(kind) = body["type"].as_str().and_then(CredentialKind::parse) else {
                continue; // API tokens and sessions are not SDK credentials.
            };
            let expires_at = body.get("expiresAt").and_then(Value::as_i64);
            if expires_at.is_some_and(|at| at <= now) {
                continue;
            }
            let (Some(project), Some(key)) =
                (body["project"].as_str(), body["environment"].as_str())
            else {
                continue;
            };
            if let Some(environment) = environments.get_mut(&(project.to_owned(), key.to_owned())) {
                environment.credentials.push(RelayCredential {
                    fingerprint: credential.key.clone(),
                    kind: kind.as_str(),
                    expires_at,
                    secure_mode_key: body["secureModeKey"].as_str().map(str::to_owned),
                });
            }
        }
        let mut list: Vec<RelayEnvironment> = environments.into_values().collect();
        for environment in &mut list {
            // A stable order, so that an unchanged configuration has an unchanged ETag.
            environment
                .credentials
                .sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        }
        Ok(list)
    }

    /// What the API token with this fingerprint grants on one environment as a relay: a grant
    /// (expiring with the token) when its roles allow `relayEnvironment` there now, `None` when
    /// the token does not exist, has expired, or may not.
    pub async fn relay_grant(
        &self,
        token_fingerprint: &str,
        project: &str,
        environment: &str,
    ) -> Result<Option<Grant>> {
        let (actor, expires_at) = match self.token_actor(token_fingerprint).await {
            Ok(found) => found,
            Err(AppError::Unauthorized) => return Ok(None),
            Err(other) => return Err(other),
        };
        let Some(doc) = self
            .store
            .get_live(kinds::ENVIRONMENT, project, environment)
            .await?
        else {
            return Ok(None);
        };
        let env: Environment = decode(&doc)?;
        let resource = resource::environment(project, environment, env.critical);
        Ok(actor
            .decide(RELAY_ACTION, &resource)
            .allowed
            .then(|| Grant {
                project: project.to_owned(),
                environment: environment.to_owned(),
                expires_at,
            }))
    }
}
