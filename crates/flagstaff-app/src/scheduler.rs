//! The scheduler: executes due scheduled changes exactly once across restarts and nodes (see
//! `schedules.rs` for why one transaction is enough), and the loop that runs it.

use flagstaff_store::Document;

use crate::approvals::Origin;
use crate::changes::Action;
use crate::deferred::{Parsed, Target};
use crate::model::kinds;
use crate::schedules::{ScheduleStatus, ScheduledChange};
use crate::{Actor, App, AppError, Result, body, decode, draft};

/// What one run of the scheduler did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleRun {
    /// The ids of the schedules this node executed.
    pub executed: Vec<String>,
    /// The ids of the schedules this node recorded as failed.
    pub failed: Vec<String>,
    /// When the next pending schedule is due, if any.
    pub next_due: Option<i64>,
}

impl App {
    /// Executes every pending schedule whose moment has come (by [`App::clock`]), oldest
    /// first, exactly once across nodes (see the module documentation). Safe to call from any
    /// number of nodes at once.
    pub async fn run_due_schedules(&self) -> Result<ScheduleRun> {
        let mut run = ScheduleRun::default();
        let now = self.now_millis();
        let mut due = Vec::new();
        for doc in self.store.list_kind(kinds::SCHEDULE).await? {
            let schedule: ScheduledChange = decode(&doc)?;
            if schedule.execution_date <= now {
                due.push((schedule, doc));
            } else {
                run.next_due = Some(run.next_due.map_or(schedule.execution_date, |n: i64| {
                    n.min(schedule.execution_date)
                }));
            }
        }
        due.sort_by_key(|(schedule, _)| (schedule.execution_date, schedule.step));
        for (schedule, doc) in due {
            let id = schedule.id.clone();
            match self.execute_schedule(schedule, doc).await {
                Ok(Some(true)) => run.executed.push(id),
                Ok(Some(false)) => run.failed.push(id),
                // Another node executed or cancelled it, or kept writing the same document:
                // if it is still pending, the next run (at once) tries again.
                Ok(None) => run.next_due = Some(now),
                Err(error) => {
                    // Storage trouble: the schedule stays pending and the next run tries again.
                    tracing::warn!(schedule = %id, %error, "cannot execute a scheduled change now");
                }
            }
        }
        Ok(run)
    }

    /// Executes one due schedule: `Some(true)` executed, `Some(false)` recorded as failed,
    /// `None` when another node (or a cancellation) got there first.
    async fn execute_schedule(
        &self,
        schedule: ScheduledChange,
        doc: Document,
    ) -> Result<Option<bool>> {
        let now = self.now_millis();
        let target = Target {
            project: schedule.project.clone(),
            environment: schedule.environment.clone(),
            kind: schedule.kind,
            key: schedule.key.clone(),
        };
        let mut executed = schedule.clone();
        executed.status = ScheduleStatus::Executed;
        executed.finished_at = Some(now);
        executed.late_by_ms = Some(now - schedule.execution_date);
        let mut extra = self.schedule_end(&executed, doc.version)?;
        if let Some(request) = &schedule.change_request {
            extra.extend(self.change_request_applied_write(request, now).await?);
        }
        let outcome = match self.actor_named(&schedule.created_by).await? {
            None => Err(AppError::Forbidden(
                format!("{} no longer exists or has expired", schedule.created_by).into(),
            )),
            Some(mut actor) => {
                actor.id = format!("schedule:{} by {}", schedule.id, schedule.created_by);
                let origin = Origin {
                    extra,
                    approved: schedule.approved,
                };
                match Parsed::parse(target.kind, &schedule.instructions) {
                    Ok(parsed) => {
                        self.execute_parsed(&target, &parsed, &actor, &schedule.comment, origin)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let error = match outcome {
            Ok(version) => {
                tracing::info!(
                    schedule = %schedule.id,
                    flag_or_segment = %schedule.key,
                    version,
                    late_by_ms = now - schedule.execution_date,
                    "scheduled change executed"
                );
                return Ok(Some(true));
            }
            // The schedule was executed or cancelled by someone else, or the document kept
            // changing under three attempts: either way, nothing to record now.
            Err(AppError::Conflict { .. }) => return Ok(None),
            Err(AppError::Store(e)) => return Err(AppError::Store(e)),
            Err(e) => e,
        };
        let mut failed = schedule;
        failed.status = ScheduleStatus::Failed;
        failed.finished_at = Some(now);
        failed.late_by_ms = Some(now - failed.execution_date);
        failed.error = Some(format!("{}: {error}", error.code()));
        tracing::warn!(schedule = %failed.id, %error, "scheduled change failed");
        let actor = Actor::with_role(
            format!("schedule:{} by {}", failed.id, failed.created_by),
            crate::Role::NoAccess,
        );
        match self
            .commit(
                &actor,
                self.schedule_end(&failed, doc.version)?,
                draft(
                    Action::ScheduleFail,
                    &target.scope(),
                    &failed.id,
                    failed.error.as_deref().unwrap_or_default(),
                    Some(doc.body),
                    Some(body(&failed)?),
                ),
            )
            .await
        {
            Ok(_) => Ok(Some(false)),
            Err(AppError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs the scheduler until the process ends: at start (catching up on anything that came
    /// due while no node ran), at each schedule's moment, and at least every second (new and
    /// moved schedules, on any node). It does not wake on commits: a run reads every pending
    /// schedule (5.7 ms with 1,000 pending, BENCHMARKS.md), which a busy node would otherwise pay
    /// on every write.
    pub async fn run_scheduler(self) {
        loop {
            let wait = match self.run_due_schedules().await {
                Ok(run) => run
                    .next_due
                    .map_or(1000, |at| (at - self.now_millis()).clamp(0, 1000)),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the scheduled changes");
                    1000
                }
            };
            tokio::time::sleep(std::time::Duration::from_millis(
                u64::try_from(wait).unwrap_or(0),
            ))
            .await;
        }
    }
}
