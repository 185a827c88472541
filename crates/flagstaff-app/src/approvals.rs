//! Approvals: the gate in front of targeting and segment writes in environments that require
//! them, and what a write carries through it.
//!
//! Every targeting or segment write goes through one use case (`targeting.rs`, `segments.rs`);
//! how it came about is its [`Origin`]. A direct write (the API, the dashboard) in an
//! environment with `approvals.required` is refused with `approval_required` unless the writer
//! may bypass; a write that executes an approved change request, a schedule made under approval
//! or a trigger passes, and commits its own bookkeeping (the schedule or request it executes)
//! in the same transaction, so that it happens exactly once (`schedules.rs`,
//! `change_requests.rs`).

use flagstaff_store::Write;

use crate::model::ApprovalSettings;
use crate::policy::Resource;
use crate::{Actor, AppError, ErrorCode, Result};

/// The most approvals an environment may require.
pub const MAX_APPROVALS: u32 = 10;

/// How a targeting or segment write came about.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origin {
    /// Writes committed in the same transaction (the schedule or change request executed).
    pub extra: Vec<Write>,
    /// Already approved: a change request that was, a schedule created by someone who could
    /// bypass (or from a request), a trigger.
    pub approved: bool,
}

impl Origin {
    /// A write that executes something approved, with its bookkeeping.
    pub(crate) fn approved(extra: Vec<Write>) -> Origin {
        Origin {
            extra,
            approved: true,
        }
    }
}

/// Checks an environment's approval rules as a request gives them.
pub(crate) fn validate_settings(settings: &ApprovalSettings) -> Result<()> {
    if !(1..=MAX_APPROVALS).contains(&settings.min_approvals) {
        return Err(AppError::invalid(
            ErrorCode::InvalidField,
            "approvals.minApprovals",
            format!("between 1 and {MAX_APPROVALS}"),
        ));
    }
    Ok(())
}

/// Whether `actor` may write directly where `settings` require approval: its base role is at
/// least the environment's bypass role, or one of its custom roles allows
/// `bypassRequiredApproval` on `target` (the base roles never do by themselves, so that an
/// administrator's `*` does not quietly switch four-eyes off).
pub(crate) fn may_bypass(actor: &Actor, settings: &ApprovalSettings, target: &Resource) -> bool {
    settings.bypass_role.is_some_and(|role| actor.role >= role)
        || actor.custom_roles.iter().any(|held| {
            held.policy
                .decide("bypassRequiredApproval", target)
                .allows()
        }) && actor.decide("bypassRequiredApproval", target).allowed
}

/// The gate: refuses a direct write where approval is required.
pub(crate) fn check(
    actor: &Actor,
    settings: &ApprovalSettings,
    target: &Resource,
    origin: &Origin,
    what: &str,
) -> Result<()> {
    if !settings.required || origin.approved || may_bypass(actor, settings, target) {
        return Ok(());
    }
    Err(AppError::invalid(
        ErrorCode::ApprovalRequired,
        "",
        format!(
            "changes to {what} in this environment need approval: open a change request \
             (POST /api/v1/projects/{{project}}/environments/{{environment}}/change-requests with \
             the instructions) and have it approved"
        ),
    ))
}

impl crate::App {
    /// Whether `actor`'s direct change to `target` would be refused for want of approval (the
    /// dashboard then offers "Request approval" instead of "Save").
    pub async fn needs_approval(
        &self,
        actor: &Actor,
        target: &crate::deferred::Target,
    ) -> Result<bool> {
        let (resource, settings) = self
            .target_resource(actor, target, "createApprovalRequest")
            .await?;
        Ok(settings.required && !may_bypass(actor, &settings, &resource))
    }
}
