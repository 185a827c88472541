//! The audit log as a use case: who may read which entry, and the entry every change writes.

use flagstaff_store::{AuditDraft, AuditEntry, AuditQuery};
use serde_json::Value;

use crate::changes::{Action, Scope};
use crate::{Actor, App, Result};

impl App {
    /// Audit entries the actor may read ([`Actor::may_read_change`]).
    pub async fn audit(&self, actor: &Actor, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let entries = self.store.audit(query).await?;
        Ok(entries
            .into_iter()
            .filter(|e| actor.may_read_change(&e.kind, &Scope::parse(&e.scope), &e.key))
            .collect())
    }
}

/// The audit entry of a change (the actor is filled in by `App::commit`).
pub(crate) fn draft(
    action: Action,
    scope: &str,
    key: &str,
    comment: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditDraft {
    AuditDraft {
        actor: String::new(),
        action: action.as_str().to_owned(),
        kind: action.subject().as_str().to_owned(),
        scope: scope.to_owned(),
        key: key.to_owned(),
        comment: comment.to_owned(),
        before,
        after,
    }
}
