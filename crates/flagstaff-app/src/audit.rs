//! The audit log as a use case: who may read which entry.

use flagstaff_store::{AuditDraft, AuditEntry, AuditQuery};
use serde_json::Value;

use crate::{Actor, App, Result, Role};

impl App {
    // ----- audit -----------------------------------------------------------------------------

    /// Audit entries (admins see everything; others only their projects).
    pub async fn audit(&self, actor: &Actor, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        actor.require(Role::Reader, None)?;
        let entries = self.store.audit(query).await?;
        Ok(entries
            .into_iter()
            .filter(|e| {
                actor.role == Role::Admin
                    || actor.may_see(e.scope.split('/').next().unwrap_or_default())
            })
            .collect())
    }
}

/// The audit entry of a change (the actor is filled in by `App::commit`).
pub(crate) fn draft(
    action: &str,
    kind: &str,
    scope: &str,
    key: &str,
    comment: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditDraft {
    AuditDraft {
        actor: String::new(),
        action: action.to_owned(),
        kind: kind.to_owned(),
        scope: scope.to_owned(),
        key: key.to_owned(),
        comment: comment.to_owned(),
        before,
        after,
    }
}
