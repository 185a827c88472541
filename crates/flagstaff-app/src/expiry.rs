//! What expires by itself: sign-in sessions, API tokens created with an expiry, and old SDK or
//! mobile keys kept valid for a while after a rotation. Expired ones stop working at once (every
//! check compares the expiry with the clock); [`App::remove_expired`] then removes them from
//! the database, so that neither a long-running server nor a stolen copy of its database keeps
//! them. The server runs it hourly (`flagstaff serve`).
//!
//! Invitations go when they expire, and once used or revoked.
//!
//! Tombstones of revoked tokens, ended sessions and deleted credentials go too: these kinds are
//! never delivered to SDKs, so their versions need not survive (`Store::purge`), and their
//! creation, revocation and end stay in the audit log.
//!
//! Finished release-workflow records go after [`WORKFLOW_RECORD_DAYS`]: scheduled changes that
//! executed, failed or were cancelled, and change requests that were applied or cancelled. What
//! they did stays in the audit log; pending and open ones stay whatever their age.

use std::collections::HashSet;

use serde_json::Value;

use crate::error::Result;
use crate::model::kinds;
use crate::tokens::TokenInfo;
use crate::{App, decode};

/// What [`App::remove_expired`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Tokens and sessions (expired, revoked or ended).
    pub tokens: u64,
    /// Credentials (of those tokens, and expired or replaced SDK and mobile keys).
    pub credentials: u64,
    /// Invitations (expired, used or revoked).
    pub invitations: u64,
    /// Finished scheduled changes and change requests older than [`WORKFLOW_RECORD_DAYS`].
    pub workflow_records: u64,
}

/// How long finished scheduled changes and change requests are kept (their changes stay in the
/// audit log).
pub const WORKFLOW_RECORD_DAYS: i64 = 90;

impl App {
    /// Removes expired and deleted tokens, sessions and credentials from the database.
    pub async fn remove_expired(&self) -> Result<Removed> {
        let now = self.now_millis();
        // Credentials are read before tokens. A token and its credential are created in one
        // commit, so a credential read here has its token in the later read; the other order
        // let a token created between the two reads (by another node, or a request while this
        // runs) look like an orphan credential, which was then removed: a brand-new token that
        // never worked. (Three nodes starting together on an empty database showed it.)
        let credentials = self
            .store
            .list_with_tombstones(kinds::CREDENTIAL, "")
            .await?;
        let mut dead_tokens = Vec::new();
        let mut live_tokens = HashSet::new();
        for doc in self.store.list_with_tombstones(kinds::TOKEN, "").await? {
            let expired = !doc.deleted
                && decode::<TokenInfo>(&doc)?
                    .expires_at
                    .is_some_and(|at| at <= now);
            if doc.deleted || expired {
                dead_tokens.push(doc.key);
            } else {
                live_tokens.insert(doc.key);
            }
        }
        let mut dead_credentials = Vec::new();
        for doc in credentials {
            let expired = doc
                .body
                .get("expiresAt")
                .and_then(Value::as_i64)
                .is_some_and(|at| at <= now);
            let orphan = doc.body["type"] == "token"
                && doc
                    .body
                    .get("token")
                    .and_then(Value::as_str)
                    .is_none_or(|token| !live_tokens.contains(token));
            if doc.deleted || expired || orphan {
                dead_credentials.push(doc.key);
            }
        }
        // Credentials first: a credential whose token is gone authenticates nobody anyway, but
        // the other way round a crash in between would leave a credential to a missing token.
        let removed = Removed {
            credentials: self
                .store
                .purge(kinds::CREDENTIAL, "", &dead_credentials)
                .await?,
            tokens: self.store.purge(kinds::TOKEN, "", &dead_tokens).await?,
            invitations: self.remove_dead_invitations(now).await?,
            workflow_records: self.remove_finished_workflows(now).await?,
        };
        if removed != Removed::default() {
            tracing::info!(
                tokens = removed.tokens,
                credentials = removed.credentials,
                invitations = removed.invitations,
                workflow_records = removed.workflow_records,
                "removed expired and revoked tokens, sessions and keys, and old workflow records"
            );
        }
        Ok(removed)
    }

    async fn remove_dead_invitations(&self, now: i64) -> Result<u64> {
        let mut dead = Vec::new();
        for doc in self
            .store
            .list_with_tombstones(kinds::INVITATION, "")
            .await?
        {
            let expired = doc
                .body
                .get("expiresAt")
                .and_then(Value::as_i64)
                .is_none_or(|at| at <= now);
            if doc.deleted || expired {
                dead.push(doc.key);
            }
        }
        Ok(self.store.purge(kinds::INVITATION, "", &dead).await?)
    }

    async fn remove_finished_workflows(&self, now: i64) -> Result<u64> {
        let before = now - WORKFLOW_RECORD_DAYS * 86_400_000;
        let mut dead: std::collections::BTreeMap<(&str, String), Vec<String>> = Default::default();
        for doc in self
            .store
            .list_kind_with_tombstones(kinds::SCHEDULE)
            .await?
        {
            let finished = doc.body.get("finishedAt").and_then(Value::as_i64);
            if doc.deleted && finished.is_none_or(|at| at < before) {
                dead.entry((kinds::SCHEDULE, doc.scope))
                    .or_default()
                    .push(doc.key);
            }
        }
        for doc in self.store.list_kind(kinds::CHANGE_REQUEST).await? {
            let closed = matches!(doc.body["status"].as_str(), Some("applied" | "cancelled"));
            let at = doc
                .body
                .get("appliedAt")
                .or_else(|| doc.body.get("requestedAt"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if closed && at < before {
                dead.entry((kinds::CHANGE_REQUEST, doc.scope))
                    .or_default()
                    .push(doc.key);
            }
        }
        let mut removed = 0;
        for ((kind, scope), keys) in dead {
            removed += self.store.purge(kind, &scope, &keys).await?;
        }
        Ok(removed)
    }
}
