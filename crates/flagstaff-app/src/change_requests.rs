//! Change requests: four-eyes approval for environments that require it (`approvals.rs`).
//!
//! A request holds instructions for one flag's targeting or one segment. Reviewers approve,
//! decline or comment; each reviewer's latest verdict counts, any decline holds the request
//! back, and enough approvals (the environment's `minApprovals`, the requester's own only where
//! `canReviewOwn`) make it approved. Applying executes the instructions on the document *as it
//! is then* (so an unrelated edit in between does not matter, and one that removed what the
//! request changes fails with `instruction_conflict`), as the requester with their rights at
//! that moment, in one transaction with the request turning `applied`. An approved request can
//! instead be scheduled: a scheduled change that executes it later, approved.
//!
//! The review shows the request against the *current* document (`ChangeRequestView`), not only
//! against the one it was written against.

use flagstaff_store::{Expect, Write};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::approvals::Origin;
use crate::changes::Action;
use crate::deferred::{Parsed, Target, TargetKind};
use crate::model::kinds;
use crate::schedules::{ScheduleStatus, ScheduledChange};
use crate::when::{self, When};
use crate::{Actor, App, AppError, ErrorCode, Result, Versioned, body, decode, draft, random_hex};

/// Most reviewers a request may name.
pub const MAX_REVIEWERS: usize = 20;
/// Most reviews a request keeps.
pub const MAX_REVIEWS: usize = 100;

/// Where a change request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestStatus {
    /// Waiting for approvals.
    Pending,
    /// Approved by enough reviewers and declined by none.
    Approved,
    /// Declined by a reviewer (who may still change their mind).
    Declined,
    /// Applied.
    Applied,
    /// Approved and scheduled to apply later.
    Scheduled,
    /// Withdrawn.
    Cancelled,
}

impl RequestStatus {
    fn is_open(self) -> bool {
        matches!(
            self,
            RequestStatus::Pending | RequestStatus::Approved | RequestStatus::Declined
        )
    }
}

/// What a reviewer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReviewKind {
    /// Approve.
    Approve,
    /// Decline.
    Decline,
    /// A comment only.
    Comment,
}

/// One review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// Who.
    pub by: String,
    /// Approve, decline or comment.
    pub kind: ReviewKind,
    /// What they said.
    #[serde(default)]
    pub comment: String,
    /// When (Unix ms).
    pub at: i64,
}

/// A change request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequest {
    /// Its id.
    pub id: String,
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// A flag's targeting or a segment.
    pub kind: TargetKind,
    /// Its key.
    pub key: String,
    /// The change.
    pub instructions: Vec<Value>,
    /// Why (the audit comment of the change when applied).
    #[serde(default)]
    pub comment: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: i64,
    /// Whom the requester asked to review (anyone allowed may review).
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// The reviews, oldest first.
    #[serde(default)]
    pub reviews: Vec<Review>,
    /// Where it stands.
    pub status: RequestStatus,
    /// The version of the document when requested.
    pub base_version: u64,
    /// The document when requested.
    pub base: Value,
    /// When to apply once approved (Unix ms), if the requester said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_date: Option<i64>,
    /// The time zone that moment was given in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Who applied or scheduled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
    /// When it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<i64>,
    /// The scheduled change that applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// A request for approval.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewChangeRequest {
    /// The flag whose targeting changes…
    #[serde(default)]
    pub flag: Option<String>,
    /// …or the segment.
    #[serde(default)]
    pub segment: Option<String>,
    /// What to change.
    pub instructions: Vec<Value>,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Whom to ask.
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// Apply at this local time (with `timeZone`) or instant once approved.
    #[serde(default)]
    pub execute_at: Option<String>,
    /// The time zone of `executeAt`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Or at this Unix millisecond.
    #[serde(default)]
    pub execution_date: Option<i64>,
}

/// A review to add.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewReview {
    /// Approve, decline or comment.
    pub kind: ReviewKind,
    /// What the reviewer says.
    #[serde(default)]
    pub comment: String,
}

/// How to apply: now, or (with a moment) scheduled.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    /// Apply at this local time (with `timeZone`) or instant instead of now.
    #[serde(default)]
    pub execute_at: Option<String>,
    /// The time zone of `executeAt`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Or at this Unix millisecond.
    #[serde(default)]
    pub execution_date: Option<i64>,
}

/// A change request as reviewers see it: with the document as it is now and as the request
/// would leave it, or why it no longer applies.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequestView {
    /// The request.
    #[serde(flatten)]
    pub request: ChangeRequest,
    /// Its version (send it back in `If-Match` to review or apply exactly what you saw).
    pub version: u64,
    /// The approvals that count now, and how many are needed.
    pub approvals: u32,
    /// How many the environment requires.
    pub min_approvals: u32,
    /// The document's version now.
    pub current_version: u64,
    /// The document now.
    pub current: Value,
    /// The document as applying now would leave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed: Option<Value>,
    /// Why applying now would fail (an instruction that no longer applies, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<Value>,
}

fn invalid_state(message: impl Into<String>) -> AppError {
    AppError::invalid(ErrorCode::InvalidState, "", message)
}

impl ChangeRequest {
    fn target(&self) -> Target {
        Target {
            project: self.project.clone(),
            environment: self.environment.clone(),
            kind: self.kind,
            key: self.key.clone(),
        }
    }

    /// The approvals that count: each reviewer's latest verdict, the requester's only when
    /// allowed.
    fn verdicts(&self, can_review_own: bool) -> (u32, bool) {
        let mut latest: Vec<(&str, ReviewKind)> = Vec::new();
        for review in self
            .reviews
            .iter()
            .filter(|r| r.kind != ReviewKind::Comment)
        {
            if !can_review_own && review.by == self.requested_by {
                continue;
            }
            match latest.iter_mut().find(|(by, _)| *by == review.by) {
                Some(entry) => entry.1 = review.kind,
                None => latest.push((&review.by, review.kind)),
            }
        }
        let approvals = latest
            .iter()
            .filter(|(_, k)| *k == ReviewKind::Approve)
            .count();
        let declined = latest.iter().any(|(_, k)| *k == ReviewKind::Decline);
        (u32::try_from(approvals).unwrap_or(u32::MAX), declined)
    }
}

impl App {
    /// Opens a change request (`createApprovalRequest`); the instructions are checked against
    /// the document now, with the requester's rights, as a direct write would be.
    pub async fn create_change_request(
        &self,
        actor: &Actor,
        (project, environment): (&str, &str),
        new: NewChangeRequest,
    ) -> Result<Versioned<ChangeRequest>> {
        let target = match (&new.flag, &new.segment) {
            (Some(flag), None) => Target::flag(project, environment, flag),
            (None, Some(segment)) => Target::segment(project, environment, segment),
            _ => {
                return Err(AppError::invalid(
                    ErrorCode::InvalidField,
                    "flag",
                    "name exactly one of flag and segment",
                ));
            }
        };
        let (resource, _) = self
            .target_resource(actor, &target, "createApprovalRequest")
            .await?;
        actor.authorize("createApprovalRequest", &resource)?;
        if new.reviewers.len() > MAX_REVIEWERS {
            return Err(AppError::invalid(
                ErrorCode::InvalidField,
                "reviewers",
                format!("at most {MAX_REVIEWERS} reviewers"),
            ));
        }
        let parsed = Parsed::parse(target.kind, &new.instructions)?;
        let (base_version, mut draft_doc) = self.draft_of(&target).await?;
        let base = draft_doc.to_value();
        self.try_on(actor, &target, &resource, &mut draft_doc, &parsed)
            .await?;
        let when = When {
            execute_at: new.execute_at,
            time_zone: new.time_zone,
            execution_date: new.execution_date,
        };
        let moment = when
            .is_given()
            .then(|| when::resolve(&when, ""))
            .transpose()?;
        if moment.as_ref().is_some_and(|m| m.at <= self.now_millis()) {
            return Err(AppError::invalid(
                ErrorCode::InvalidField,
                "executeAt",
                "this moment has passed",
            ));
        }
        let request = ChangeRequest {
            id: random_hex(12),
            project: project.to_owned(),
            environment: environment.to_owned(),
            kind: target.kind,
            key: target.key.clone(),
            instructions: new.instructions,
            comment: new.comment,
            requested_by: actor.id.clone(),
            requested_at: self.now_millis(),
            reviewers: new.reviewers,
            reviews: Vec::new(),
            status: RequestStatus::Pending,
            base_version,
            base,
            execution_date: moment.as_ref().map(|m| m.at),
            time_zone: moment.and_then(|m| m.time_zone),
            applied_by: None,
            applied_at: None,
            schedule: None,
        };
        let after = body(&request)?;
        let versions = self
            .commit(
                actor,
                vec![Write::Put {
                    kind: kinds::CHANGE_REQUEST.into(),
                    scope: crate::env_scope(&request.project, &request.environment),
                    key: request.id.clone(),
                    body: after.clone(),
                    expect: Expect::Absent,
                }],
                draft(
                    Action::ChangeRequestCreate,
                    &target.scope(),
                    &request.id,
                    &request.comment,
                    None,
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: request,
        })
    }

    /// The change requests of one environment (open ones only unless `all`), newest first.
    pub async fn change_requests(
        &self,
        actor: &Actor,
        (project, environment): (&str, &str),
        all: bool,
    ) -> Result<Vec<Versioned<ChangeRequest>>> {
        actor.authorize_view(project, Some(environment))?;
        let mut out = Vec::new();
        let scope = crate::env_scope(project, environment);
        for doc in self.store.list(kinds::CHANGE_REQUEST, &scope).await? {
            let request: ChangeRequest = decode(&doc)?;
            if all || request.status.is_open() || request.status == RequestStatus::Scheduled {
                out.push(Versioned {
                    version: doc.version,
                    value: request,
                });
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.value.requested_at));
        Ok(out)
    }

    /// Open change requests per flag or segment key of one environment (for badges).
    pub async fn open_change_request_keys(
        &self,
        (project, environment): (&str, &str),
    ) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let scope = crate::env_scope(project, environment);
        for doc in self.store.list(kinds::CHANGE_REQUEST, &scope).await? {
            let request: ChangeRequest = decode(&doc)?;
            if request.status.is_open() {
                keys.push(request.key);
            }
        }
        Ok(keys)
    }

    async fn load_request(&self, id: &str) -> Result<Versioned<ChangeRequest>> {
        let doc = self
            .store
            .get_by_key(kinds::CHANGE_REQUEST, id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("change request {id:?}")))?;
        Ok(Versioned {
            version: doc.version,
            value: decode(&doc)?,
        })
    }

    /// A change request with the document as it is now and as applying it now would leave
    /// it (or why it would fail).
    pub async fn change_request(&self, actor: &Actor, id: &str) -> Result<ChangeRequestView> {
        let request = self.load_request(id).await?;
        actor.authorize_view(&request.value.project, Some(&request.value.environment))?;
        let target = request.value.target();
        let (env, _) = self
            .environment_doc(&target.project, &target.environment)
            .await?;
        let (approvals, _) = request.value.verdicts(env.approvals.can_review_own);
        let (current_version, current) = self.draft_of(&target).await?;
        let mut proposed = current.clone();
        let outcome = match Parsed::parse(target.kind, &request.value.instructions) {
            Ok(parsed) => match (&mut proposed, &parsed) {
                (crate::deferred::Draft::Flag(t), Parsed::Flag(p)) => {
                    crate::instructions::apply_to_targeting(t, p)
                }
                (crate::deferred::Draft::Segment(s), Parsed::Segment(p)) => {
                    crate::instructions::apply_to_segment(s, p)
                }
                _ => Ok(()),
            },
            Err(e) => Err(e),
        };
        let (proposed, conflict) = match outcome {
            Ok(()) => (Some(proposed.to_value()), None),
            Err(e) => {
                let (code, field) = match &e {
                    AppError::Invalid { code, field, .. } => (code.as_str(), field.clone()),
                    other => (other.code().as_str(), String::new()),
                };
                (
                    None,
                    Some(
                        serde_json::json!({"code": code, "message": e.to_string(), "field": field}),
                    ),
                )
            }
        };
        Ok(ChangeRequestView {
            version: request.version,
            approvals,
            min_approvals: env.approvals.min_approvals,
            current_version,
            current: current.to_value(),
            proposed,
            conflict,
            request: request.value,
        })
    }

    /// Adds a review (`reviewApprovalRequest`). The requester may approve or decline their own
    /// request only where the environment allows it; anyone allowed may comment.
    pub async fn review_change_request(
        &self,
        actor: &Actor,
        id: &str,
        review: NewReview,
        expected: Option<u64>,
    ) -> Result<Versioned<ChangeRequest>> {
        let current = self.load_request(id).await?;
        let target = current.value.target();
        let (resource, settings) = self
            .target_resource(actor, &target, "reviewApprovalRequest")
            .await?;
        actor.authorize("reviewApprovalRequest", &resource)?;
        if expected.is_some_and(|v| v != current.version) {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        if !current.value.status.is_open() {
            return Err(invalid_state(format!(
                "this change request is {} already",
                serde_json::to_value(current.value.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
        if review.kind != ReviewKind::Comment
            && actor.id == current.value.requested_by
            && !settings.can_review_own
        {
            return Err(AppError::Forbidden(crate::Refusal::denied(
                "reviewApprovalRequest",
                resource.to_string(),
                "you cannot approve or decline your own change request in this environment",
            )));
        }
        if current.value.reviews.len() >= MAX_REVIEWS {
            return Err(invalid_state(format!(
                "a change request keeps at most {MAX_REVIEWS} reviews"
            )));
        }
        let mut after = current.value.clone();
        after.reviews.push(Review {
            by: actor.id.clone(),
            kind: review.kind,
            comment: review.comment.clone(),
            at: self.now_millis(),
        });
        let (approvals, declined) = after.verdicts(settings.can_review_own);
        after.status = if declined {
            RequestStatus::Declined
        } else if approvals >= settings.min_approvals {
            RequestStatus::Approved
        } else {
            RequestStatus::Pending
        };
        self.write_request(
            actor,
            &current,
            after,
            Action::ChangeRequestReview,
            &review.comment,
            Vec::new(),
        )
        .await
    }

    async fn write_request(
        &self,
        actor: &Actor,
        current: &Versioned<ChangeRequest>,
        after: ChangeRequest,
        action: Action,
        comment: &str,
        mut extra: Vec<Write>,
    ) -> Result<Versioned<ChangeRequest>> {
        let mut writes = vec![Write::Put {
            kind: kinds::CHANGE_REQUEST.into(),
            scope: crate::env_scope(&after.project, &after.environment),
            key: after.id.clone(),
            body: body(&after)?,
            expect: Expect::Version(current.version),
        }];
        writes.append(&mut extra);
        let versions = self
            .commit(
                actor,
                writes,
                draft(
                    action,
                    &after.target().scope(),
                    &after.id,
                    comment,
                    Some(body(&current.value)?),
                    Some(body(&after)?),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: after,
        })
    }

    /// Applies an approved change request now (`applyApprovalRequest`), or schedules it when
    /// `apply` or the request names a moment.
    pub async fn apply_change_request(
        &self,
        actor: &Actor,
        id: &str,
        apply: ApplyRequest,
        expected: Option<u64>,
    ) -> Result<Versioned<ChangeRequest>> {
        let current = self.load_request(id).await?;
        let request = current.value.clone();
        let target = request.target();
        let (resource, settings) = self
            .target_resource(actor, &target, "applyApprovalRequest")
            .await?;
        actor.authorize("applyApprovalRequest", &resource)?;
        if expected.is_some_and(|v| v != current.version) {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        let (approvals, declined) = request.verdicts(settings.can_review_own);
        if request.status != RequestStatus::Approved
            || declined
            || approvals < settings.min_approvals
        {
            return Err(invalid_state(format!(
                "only an approved change request can be applied; this one has {approvals} of {} approvals{}",
                settings.min_approvals,
                if declined { " and a decline" } else { "" }
            )));
        }
        let requester = self
            .actor_named(&request.requested_by)
            .await?
            .ok_or_else(|| {
                invalid_state(format!(
                    "{} who requested this change no longer exists; open a new request",
                    request.requested_by
                ))
            })?;
        let when = When {
            execute_at: apply.execute_at,
            time_zone: apply.time_zone.or_else(|| request.time_zone.clone()),
            execution_date: apply.execution_date,
        };
        let moment = if when.is_given() {
            Some(when::resolve(&when, "")?.at)
        } else {
            request.execution_date.filter(|at| *at > self.now_millis())
        };
        let now = self.now_millis();
        let mut after = request.clone();
        after.applied_by = Some(actor.id.clone());
        if let Some(at) = moment {
            if at <= now {
                return Err(AppError::invalid(
                    ErrorCode::InvalidField,
                    "executeAt",
                    "this moment has passed",
                ));
            }
            let schedule = ScheduledChange {
                id: random_hex(12),
                project: request.project.clone(),
                environment: request.environment.clone(),
                kind: request.kind,
                key: request.key.clone(),
                execution_date: at,
                time_zone: when.time_zone.clone(),
                local_time: when
                    .time_zone
                    .as_deref()
                    .and_then(|tz| when::local_time(at, tz)),
                instructions: request.instructions.clone(),
                comment: request.comment.clone(),
                created_by: request.requested_by.clone(),
                created_at: now,
                approved: true,
                plan: None,
                step: None,
                change_request: Some(request.id.clone()),
                status: ScheduleStatus::Pending,
                finished_at: None,
                late_by_ms: None,
                error: None,
            };
            after.status = RequestStatus::Scheduled;
            after.schedule = Some(schedule.id.clone());
            let extra = vec![self.schedule_put(&schedule, Expect::Absent)?];
            return self
                .write_request(
                    actor,
                    &current,
                    after,
                    Action::ChangeRequestSchedule,
                    "",
                    extra,
                )
                .await;
        }
        after.status = RequestStatus::Applied;
        after.applied_at = Some(now);
        let parsed = Parsed::parse(target.kind, &request.instructions)?;
        let extra = vec![Write::Put {
            kind: kinds::CHANGE_REQUEST.into(),
            scope: crate::env_scope(&request.project, &request.environment),
            key: request.id.clone(),
            body: body(&after)?,
            expect: Expect::Version(current.version),
        }];
        let mut as_requester = requester;
        as_requester.id = format!(
            "{} (change request {} by {})",
            actor.id, request.id, request.requested_by
        );
        self.execute_parsed(
            &target,
            &parsed,
            &as_requester,
            &request.comment,
            Origin::approved(extra),
        )
        .await?;
        Ok(Versioned {
            version: current.version + 1,
            value: after,
        })
    }

    /// Withdraws an open change request: the requester, or anyone who may review it.
    pub async fn cancel_change_request(
        &self,
        actor: &Actor,
        id: &str,
        comment: &str,
    ) -> Result<Versioned<ChangeRequest>> {
        let current = self.load_request(id).await?;
        let target = current.value.target();
        let (resource, _) = self
            .target_resource(actor, &target, "reviewApprovalRequest")
            .await?;
        if actor.id != current.value.requested_by {
            actor.authorize("reviewApprovalRequest", &resource)?;
        }
        if !current.value.status.is_open() {
            return Err(invalid_state(
                "only an open change request can be cancelled",
            ));
        }
        let mut after = current.value.clone();
        after.status = RequestStatus::Cancelled;
        self.write_request(
            actor,
            &current,
            after,
            Action::ChangeRequestCancel,
            comment,
            Vec::new(),
        )
        .await
    }

    /// The write that marks a scheduled request applied, committed with the schedule's
    /// execution.
    pub(crate) async fn change_request_applied_write(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Vec<Write>> {
        self.change_request_end_write(id, RequestStatus::Applied, now)
            .await
    }

    /// The write that ends a scheduled request as `status` (applied when its schedule runs,
    /// cancelled when its schedule is cancelled), committed with the schedule's own end.
    pub(crate) async fn change_request_end_write(
        &self,
        id: &str,
        status: RequestStatus,
        now: i64,
    ) -> Result<Vec<Write>> {
        let Some(doc) = self.store.get_by_key(kinds::CHANGE_REQUEST, id).await? else {
            return Ok(Vec::new());
        };
        let mut request: ChangeRequest = decode(&doc)?;
        request.status = status;
        if status == RequestStatus::Applied {
            request.applied_at = Some(now);
        }
        Ok(vec![Write::Put {
            kind: kinds::CHANGE_REQUEST.into(),
            scope: crate::env_scope(&request.project, &request.environment),
            key: id.to_owned(),
            body: body(&request)?,
            expect: Expect::Version(doc.version),
        }])
    }
}
