//! Scheduled changes and progressive rollout plans: instructions (`instructions.rs`) for one
//! flag's targeting or one segment, executed at a moment given in any time zone (`when.rs`).
//!
//! A pending schedule is a live `scheduled_change` document; when it runs, the targeting or
//! segment write, the schedule turning into a tombstone that records the outcome (executed at,
//! late by) and the audit entry are **one transaction** whose write of the
//! schedule expects the version that was read. Whichever node commits first executes it; any
//! other node's attempt conflicts on the schedule and does nothing. That is what makes
//! execution exactly once across restarts and across nodes sharing PostgreSQL (whose commits
//! are serialised by the store's advisory lock): no lease can expire halfway through, because
//! there is no "halfway". A schedule whose time passed while every node was down runs at the
//! next start, and records by how much it was late.
//!
//! The executed change is an ordinary targeting or segment change (same validation, same
//! authorization, same audit entry, same change feed), made as the schedule's creator with
//! their rights as they are at that moment; the audit log names it
//! `schedule:<id> by member:<email>`. One that can no longer apply (its rule was removed, its
//! creator left or lost the right) fails once, visibly: a `scheduled_change.fail` entry says
//! why.

use flagstaff_store::{Document, Expect, Write};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::approvals::{self, Origin};
use crate::changes::Action;
use crate::deferred::{Parsed, Target, TargetKind};
use crate::model::kinds;
use crate::when::{self, When};
use crate::{Actor, App, AppError, ErrorCode, Result, Versioned, body, decode, draft, random_hex};

/// Most pending scheduled changes per flag or segment.
pub const MAX_PENDING_PER_TARGET: usize = 50;
/// Most steps in a rollout plan.
pub const MAX_PLAN_STEPS: usize = 20;

/// What became of a scheduled change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScheduleStatus {
    /// Waiting for its moment.
    Pending,
    /// Made its change.
    Executed,
    /// Could not make it (see `error`).
    Failed,
    /// Cancelled before its moment.
    Cancelled,
}

/// A change scheduled for later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledChange {
    /// Its id.
    pub id: String,
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// A flag's targeting or a segment.
    pub kind: TargetKind,
    /// The flag's or segment's key.
    pub key: String,
    /// When it executes, in Unix milliseconds (LaunchDarkly's name).
    pub execution_date: i64,
    /// The time zone it was given in, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The local date and time with that day's offset, e.g. `2026-12-01T08:00:00+13:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_time: Option<String>,
    /// What it does.
    pub instructions: Vec<Value>,
    /// Why, for the audit log.
    #[serde(default)]
    pub comment: String,
    /// Who scheduled it (as the audit log names them).
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// Made by someone who could bypass a required approval, or from an approved change
    /// request: executes even where approval is required.
    #[serde(default)]
    pub approved: bool,
    /// The rollout plan it is a step of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Its step in that plan (from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The change request it executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_request: Option<String>,
    /// Pending, executed, failed or cancelled.
    pub status: ScheduleStatus,
    /// When it executed, failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// How late it executed (milliseconds after its moment; a restart across the moment makes
    /// this large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_by_ms: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request to schedule a change.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSchedule {
    /// Local date and time (with `timeZone`) or an instant with an offset.
    #[serde(default)]
    pub execute_at: Option<String>,
    /// An IANA time zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Unix milliseconds (LaunchDarkly's form).
    #[serde(default)]
    pub execution_date: Option<i64>,
    /// What to do.
    pub instructions: Vec<Value>,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

impl NewSchedule {
    fn when(&self) -> When {
        When {
            execute_at: self.execute_at.clone(),
            time_zone: self.time_zone.clone(),
            execution_date: self.execution_date,
        }
    }
}

/// A request to move a scheduled change or replace its instructions; absent fields stay.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleUpdate {
    /// A new local date and time (with `timeZone`) or instant.
    #[serde(default)]
    pub execute_at: Option<String>,
    /// The time zone of `executeAt`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A new moment in Unix milliseconds.
    #[serde(default)]
    pub execution_date: Option<i64>,
    /// New instructions.
    #[serde(default)]
    pub instructions: Option<Vec<Value>>,
    /// Why, for the audit log.
    #[serde(default)]
    pub comment: String,
}

pub(crate) fn field_error(field: impl Into<String>, message: impl Into<String>) -> AppError {
    AppError::invalid(ErrorCode::InvalidField, field, message)
}

impl App {
    /// Schedules a change (`updateScheduledChanges` on the flag or segment, and the actions
    /// the instructions take, checked against the document as it is now).
    pub async fn schedule_change(
        &self,
        actor: &Actor,
        target: &Target,
        request: NewSchedule,
    ) -> Result<Versioned<ScheduledChange>> {
        let mut plan = self
            .plan_schedules(
                actor,
                target,
                vec![(request.when(), request.instructions, String::new())],
                &request.comment,
            )
            .await?;
        let schedule = plan.remove(0);
        let versions = self
            .commit(
                actor,
                vec![self.schedule_put(&schedule, Expect::Absent)?],
                draft(
                    Action::ScheduleCreate,
                    &target.scope(),
                    &schedule.id,
                    &schedule.comment,
                    None,
                    Some(body(&schedule)?),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: schedule,
        })
    }

    /// Checks and builds the schedules of one request: authorized, in the future and in time
    /// order, each step's instructions applying to the document as the steps before it leave
    /// it. Several steps make a rollout plan.
    pub(crate) async fn plan_schedules(
        &self,
        actor: &Actor,
        target: &Target,
        steps: Vec<(When, Vec<Value>, String)>,
        comment: &str,
    ) -> Result<Vec<ScheduledChange>> {
        let (resource, approval) = self
            .target_resource(actor, target, "updateScheduledChanges")
            .await?;
        actor.authorize("updateScheduledChanges", &resource)?;
        approvals::check(
            actor,
            &approval,
            &resource,
            &Origin::default(),
            "this flag or segment (scheduled ones too; a change request may carry executeAt)",
        )?;
        let pending = self.pending_for(target).await?;
        if pending + steps.len() > MAX_PENDING_PER_TARGET {
            return Err(field_error(
                "executeAt",
                format!(
                    "at most {MAX_PENDING_PER_TARGET} pending scheduled changes per flag or segment"
                ),
            ));
        }
        let now = self.now_millis();
        let (_, mut draft) = self.draft_of(target).await?;
        let plan = (steps.len() > 1).then(|| random_hex(12));
        let mut previous = now;
        let mut out = Vec::with_capacity(steps.len());
        for (i, (when, instructions, prefix)) in steps.into_iter().enumerate() {
            let moment = when::resolve(&when, &prefix)?;
            let at_field = if prefix.is_empty() {
                "executeAt".to_owned()
            } else {
                format!("{prefix}.executeAt")
            };
            if moment.at <= now {
                return Err(field_error(at_field, "this moment has passed"));
            }
            if moment.at <= previous {
                return Err(field_error(
                    at_field,
                    "steps must be in time order, each after the one before",
                ));
            }
            previous = moment.at;
            let parsed = Parsed::parse(target.kind, &instructions)
                .map_err(|e| crate::prefix_field_path(e, &prefix))?;
            self.try_on(actor, target, &resource, &mut draft, &parsed)
                .await
                .map_err(|e| crate::prefix_field_path(e, &prefix))?;
            out.push(ScheduledChange {
                id: random_hex(12),
                project: target.project.clone(),
                environment: target.environment.clone(),
                kind: target.kind,
                key: target.key.clone(),
                execution_date: moment.at,
                time_zone: moment.time_zone,
                local_time: moment.local,
                instructions,
                comment: comment.to_owned(),
                created_by: actor.id.clone(),
                created_at: now,
                // Past the gate above where approval is required means the creator may bypass.
                approved: approval.required,
                plan: plan.clone(),
                step: plan.as_ref().map(|_| i as u32),
                change_request: None,
                status: ScheduleStatus::Pending,
                finished_at: None,
                late_by_ms: None,
                error: None,
            });
        }
        Ok(out)
    }

    async fn pending_for(&self, target: &Target) -> Result<usize> {
        Ok(self
            .store
            .list(kinds::SCHEDULE, &target.scope())
            .await?
            .iter()
            .filter(|d| {
                d.body["key"] == target.key.as_str() && d.body["kind"] == target.kind.as_str()
            })
            .count())
    }

    pub(crate) fn schedule_put(&self, schedule: &ScheduledChange, expect: Expect) -> Result<Write> {
        Ok(Write::Put {
            kind: kinds::SCHEDULE.into(),
            scope: crate::env_scope(&schedule.project, &schedule.environment),
            key: schedule.id.clone(),
            body: body(schedule)?,
            expect,
        })
    }

    /// The writes that end a schedule read at `version`: its final state, then its tombstone
    /// (which keeps that state), expecting the version read, so that only one ending commits.
    pub(crate) fn schedule_end(&self, ended: &ScheduledChange, version: u64) -> Result<Vec<Write>> {
        Ok(vec![
            self.schedule_put(ended, Expect::Version(version))?,
            Write::Delete {
                kind: kinds::SCHEDULE.into(),
                scope: crate::env_scope(&ended.project, &ended.environment),
                key: ended.id.clone(),
                expect: Expect::Any,
            },
        ])
    }

    /// The scheduled changes of one environment, optionally of one flag or segment; pending
    /// ones first by moment, then (with `finished`) the executed, failed and cancelled ones,
    /// newest first.
    pub async fn scheduled_changes(
        &self,
        actor: &Actor,
        (project, environment): (&str, &str),
        of: Option<(TargetKind, &str)>,
        finished: bool,
    ) -> Result<Vec<Versioned<ScheduledChange>>> {
        actor.authorize_view(project, Some(environment))?;
        let scope = crate::env_scope(project, environment);
        let docs = if finished {
            self.store
                .list_with_tombstones(kinds::SCHEDULE, &scope)
                .await?
        } else {
            self.store.list(kinds::SCHEDULE, &scope).await?
        };
        let mut out = Vec::new();
        for doc in docs {
            let schedule: ScheduledChange = decode(&doc)?;
            if of.is_some_and(|(kind, key)| schedule.kind != kind || schedule.key != key) {
                continue;
            }
            out.push(Versioned {
                version: doc.version,
                value: schedule,
            });
        }
        out.sort_by_key(|s| match s.value.status {
            ScheduleStatus::Pending => (0, s.value.execution_date),
            _ => (1, -s.value.finished_at.unwrap_or(0)),
        });
        Ok(out)
    }

    /// One scheduled change, pending or finished.
    pub async fn scheduled_change(
        &self,
        actor: &Actor,
        (project, environment): (&str, &str),
        id: &str,
    ) -> Result<Versioned<ScheduledChange>> {
        actor.authorize_view(project, Some(environment))?;
        let doc = self
            .store
            .get(kinds::SCHEDULE, &crate::env_scope(project, environment), id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("scheduled change {id:?}")))?;
        Ok(Versioned {
            version: doc.version,
            value: decode(&doc)?,
        })
    }

    /// A pending schedule, read to be changed by `actor`.
    pub(crate) async fn pending_schedule(
        &self,
        actor: &Actor,
        (project, environment): (&str, &str),
        id: &str,
    ) -> Result<(Document, ScheduledChange)> {
        self.fence_check(actor, "updateScheduledChanges", project, Some(environment))?;
        let doc = self
            .store
            .get(kinds::SCHEDULE, &crate::env_scope(project, environment), id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("scheduled change {id:?}")))?;
        let schedule: ScheduledChange = decode(&doc)?;
        let target = Target {
            project: project.to_owned(),
            environment: environment.to_owned(),
            kind: schedule.kind,
            key: schedule.key.clone(),
        };
        let (resource, _) = self
            .target_resource(actor, &target, "updateScheduledChanges")
            .await?;
        actor.authorize("updateScheduledChanges", &resource)?;
        if doc.deleted {
            return Err(AppError::invalid(
                ErrorCode::InvalidState,
                "",
                format!("this scheduled change is {:?} already", schedule.status).to_lowercase(),
            ));
        }
        Ok((doc, schedule))
    }

    /// Moves a pending scheduled change, or replaces its instructions (checked as when it was
    /// made). A step of a rollout plan must stay between its neighbours.
    pub async fn reschedule(
        &self,
        actor: &Actor,
        env: (&str, &str),
        id: &str,
        update: ScheduleUpdate,
        expected: Option<u64>,
    ) -> Result<Versioned<ScheduledChange>> {
        let (doc, before) = self.pending_schedule(actor, env, id).await?;
        if expected.is_some_and(|v| v != doc.version) {
            return Err(AppError::Conflict {
                current: Some(doc.version),
            });
        }
        let when = When {
            execute_at: update.execute_at.clone(),
            time_zone: update
                .time_zone
                .clone()
                .or_else(|| before.time_zone.clone()),
            execution_date: update.execution_date,
        };
        let mut after = before.clone();
        if when.is_given() {
            let moment = when::resolve(&when, "")?;
            if moment.at <= self.now_millis() {
                return Err(field_error("executeAt", "this moment has passed"));
            }
            after.execution_date = moment.at;
            after.time_zone = moment.time_zone;
            after.local_time = moment.local;
        }
        if let Some(plan) = &before.plan {
            let steps = self.plan_steps(env, plan).await?;
            let step = before.step.unwrap_or(0);
            let out_of_order = steps.iter().any(|s| {
                let s_step = s.step.unwrap_or(0);
                (s_step < step && s.execution_date >= after.execution_date)
                    || (s_step > step && s.execution_date <= after.execution_date)
            });
            if out_of_order {
                return Err(field_error(
                    "executeAt",
                    "a rollout plan's steps stay in order: move it between the steps before and after it",
                ));
            }
        }
        let target = Target {
            project: before.project.clone(),
            environment: before.environment.clone(),
            kind: before.kind,
            key: before.key.clone(),
        };
        if let Some(instructions) = update.instructions {
            let parsed = Parsed::parse(target.kind, &instructions)?;
            let (resource, _) = self
                .target_resource(actor, &target, "updateScheduledChanges")
                .await?;
            let (_, mut draft) = self.draft_of(&target).await?;
            self.try_on(actor, &target, &resource, &mut draft, &parsed)
                .await?;
            after.instructions = instructions;
        }
        let versions = self
            .commit(
                actor,
                vec![self.schedule_put(&after, Expect::Version(doc.version))?],
                draft(
                    Action::ScheduleUpdate,
                    &target.scope(),
                    id,
                    &update.comment,
                    Some(doc.body),
                    Some(body(&after)?),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: after,
        })
    }

    /// Cancels a pending scheduled change.
    pub async fn cancel_scheduled_change(
        &self,
        actor: &Actor,
        env: (&str, &str),
        id: &str,
        expected: Option<u64>,
        comment: &str,
    ) -> Result<()> {
        let (doc, before) = self.pending_schedule(actor, env, id).await?;
        if expected.is_some_and(|v| v != doc.version) {
            return Err(AppError::Conflict {
                current: Some(doc.version),
            });
        }
        let mut after = before.clone();
        after.status = ScheduleStatus::Cancelled;
        after.finished_at = Some(self.now_millis());
        let mut writes = self.schedule_end(&after, doc.version)?;
        // An approved request scheduled this way is cancelled with its schedule.
        if let Some(request) = &before.change_request {
            writes.extend(
                self.change_request_end_write(
                    request,
                    crate::RequestStatus::Cancelled,
                    self.now_millis(),
                )
                .await?,
            );
        }
        self.commit(
            actor,
            writes,
            draft(
                Action::ScheduleCancel,
                &crate::env_scope(env.0, env.1),
                id,
                comment,
                Some(doc.body),
                Some(body(&after)?),
            ),
        )
        .await?;
        Ok(())
    }
}
