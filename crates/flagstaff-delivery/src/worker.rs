//! The task that follows the store's change feed and publishes changes to SDKs, and the
//! heartbeat that keeps idle streams open and ends those whose key expired.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flagstaff_app::{Action, AppError, Change, Scope};
use tokio::sync::mpsc;

use crate::Delivery;
use crate::feed::{EnvFeed, EnvironmentId, ItemChange, StreamCredential};

/// Changes read per query.
const BATCH: u32 = 500;

/// What a batch of change records asks of one environment.
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub flags: BTreeSet<String>,
    pub segments: BTreeSet<String>,
    /// Something changed that we cannot narrow down: compare everything.
    everything: bool,
}

/// What a batch of change records asks of delivery.
#[derive(Debug, Default)]
struct Plan {
    environments: HashMap<EnvironmentId, Work>,
    /// Credentials, environments or projects changed: re-check every open stream's key.
    recheck_credentials: bool,
    /// Projects or environments were deleted: forget their feeds afterwards.
    deleted: Vec<(String, Option<String>)>,
}

impl Plan {
    /// Whether the environment was deleted (itself or with its project).
    fn deletes(&self, id: &EnvironmentId) -> bool {
        self.deleted.iter().any(|(project, environment)| {
            *project == id.project && environment.as_ref().is_none_or(|e| *e == id.environment)
        })
    }
}

/// The loaded environments of a project.
fn in_project<'a>(
    feeds: &'a [EnvironmentId],
    project: &'a str,
) -> impl Iterator<Item = EnvironmentId> + 'a {
    feeds
        .iter()
        .filter(move |id| id.project == project)
        .cloned()
}

/// What change records ask of one environment, for an FDv2 catch-up (`fdv2.rs`): `None` when
/// they cannot be narrowed down to flags and segments (an import, a record written by a newer
/// Flagstaff, the environment deleted and made again).
pub(crate) fn work_for(changes: &[Change], id: &EnvironmentId) -> Option<Work> {
    let mut plan = plan(changes, std::slice::from_ref(id));
    if plan.deletes(id) {
        return None;
    }
    let work = plan.environments.remove(id).unwrap_or_default();
    (!work.everything).then_some(work)
}

/// Maps changes to work on the loaded feeds. The match on [`Action`] is exhaustive on purpose:
/// a new action does not compile until someone decides what SDKs must hear about it.
fn plan(changes: &[Change], feeds: &[EnvironmentId]) -> Plan {
    let mut plan = Plan::default();
    for change in changes {
        let Some(action) = change.action else {
            // Written by a newer Flagstaff: it might change anything.
            plan.recheck_credentials = true;
            for id in feeds {
                plan.environments.entry(id.clone()).or_default().everything = true;
            }
            continue;
        };
        match action {
            // A flag definition is project-wide: every environment of the project serves it.
            Action::FlagCreate
            | Action::FlagUpdate
            | Action::FlagArchive
            | Action::FlagRestore
            | Action::FlagDelete => {
                let Scope::Project(project) = &change.scope else {
                    continue;
                };
                for id in in_project(feeds, project) {
                    plan.environments
                        .entry(id)
                        .or_default()
                        .flags
                        .insert(change.key.clone());
                }
            }
            Action::TargetingUpdate
            | Action::SegmentCreate
            | Action::SegmentUpdate
            | Action::SegmentDelete => {
                let Scope::Environment {
                    project,
                    environment,
                } = &change.scope
                else {
                    continue;
                };
                let id = EnvironmentId {
                    project: project.clone(),
                    environment: environment.clone(),
                };
                if !feeds.contains(&id) {
                    continue;
                }
                let work = plan.environments.entry(id).or_default();
                if action == Action::TargetingUpdate {
                    work.flags.insert(change.key.clone());
                } else {
                    work.segments.insert(change.key.clone());
                }
            }
            // An import writes many flags and segments of one environment, and may add
            // flags (off) to the project's other environments.
            Action::EnvironmentImport => {
                if let Scope::Project(project) = &change.scope {
                    for id in in_project(feeds, project) {
                        plan.environments.entry(id).or_default().everything = true;
                    }
                }
            }
            // Keys, secure mode and existence decide which streams may stay open.
            Action::ProjectCreate
            | Action::ProjectUpdate
            | Action::ProjectDelete
            | Action::EnvironmentCreate
            | Action::EnvironmentUpdate
            | Action::EnvironmentDelete
            | Action::SdkKeyRotate
            | Action::MobileKeyRotate => {
                plan.recheck_credentials = true;
                if action == Action::ProjectDelete {
                    plan.deleted.push((change.key.clone(), None));
                } else if action == Action::EnvironmentDelete
                    && let Scope::Project(project) = &change.scope
                {
                    plan.deleted
                        .push((project.clone(), Some(change.key.clone())));
                }
            }
            // A token revoked, or a role or member changed, may end a relay's right to read
            // an environment (`relayEnvironment`): its streams are re-decided.
            Action::TokenRevoke
            | Action::RoleUpdate
            | Action::RoleDelete
            | Action::MemberUpdate
            | Action::MemberDelete
            | Action::TeamUpdate
            | Action::TeamDelete => plan.recheck_credentials = true,
            // People and API tokens do not change what SDKs see.
            Action::MemberCreate
            | Action::RoleCreate
            | Action::TeamCreate
            | Action::InvitationCreate
            | Action::InvitationRevoke
            | Action::TokenCreate
            | Action::SessionEnd
            // Workflow bookkeeping: what a schedule, request or trigger changes is its own
            // targeting or segment entry.
            | Action::ScheduleCreate
            | Action::ScheduleUpdate
            | Action::ScheduleCancel
            | Action::ScheduleFail
            | Action::ChangeRequestCreate
            | Action::ChangeRequestReview
            | Action::ChangeRequestCancel
            | Action::ChangeRequestSchedule
            | Action::WebhookCreate
            | Action::WebhookUpdate
            | Action::WebhookDelete
            | Action::TriggerCreate
            | Action::TriggerUpdate
            | Action::TriggerDelete
            // What experiments measure; SDKs send events, they never receive metrics.
            | Action::MetricCreate
            | Action::MetricUpdate
            | Action::MetricDelete
            | Action::ExperimentCreate
            | Action::ExperimentUpdate
            | Action::ExperimentDelete
            | Action::GuardedRolloutUpdate => {}
        }
    }
    plan
}

impl Delivery {
    /// Re-reads what `work` names for one environment and publishes the difference as the
    /// state at change-feed `position`.
    async fn refresh(&self, feed: &EnvFeed, work: Work, position: u64) -> Result<usize, AppError> {
        let id = &feed.id;
        if work.everything {
            let data = self.source.flag_data(id).await?;
            return Ok(feed.apply_full(data, position));
        }
        let mut changes = Vec::with_capacity(work.flags.len() + work.segments.len());
        for key in work.flags {
            let flag = self.source.flag(id, &key).await?;
            changes.push(ItemChange::Flag(key, flag));
        }
        for key in work.segments {
            let segment = self.source.segment(id, &key).await?;
            changes.push(ItemChange::Segment(key, segment));
        }
        Ok(feed.apply(changes, position))
    }

    /// Ends the streams whose credential no longer grants their environment, and notes new
    /// expiry times (a rotation gives the old key one).
    async fn recheck_credentials(&self) -> Result<(), AppError> {
        self.grants.clear();
        for feed in self.loaded_feeds() {
            feed.set_secure_mode(self.source.secure_mode(&feed.id).await?);
            feed.set_fdv1_fallback(self.source.fdv1_fallback(&feed.id).await?);
            let mut revoked = Vec::new();
            for (fingerprint, credential, _) in feed.grants_in_use() {
                let grant = match credential {
                    StreamCredential::Key(kind) => self.source.grant(&fingerprint, kind).await?,
                    StreamCredential::RelayToken => {
                        self.source.relay_grant(&fingerprint, &feed.id).await?
                    }
                };
                match grant {
                    Some(grant)
                        if grant.project == feed.id.project
                            && grant.environment == feed.id.environment =>
                    {
                        feed.set_grant_expiry(&fingerprint, grant.expires_at);
                    }
                    _ => revoked.push(fingerprint),
                }
            }
            if !revoked.is_empty() {
                tracing::info!(environment = %feed.id, keys = revoked.len(), "closing streams of revoked keys");
                feed.close(revoked);
            }
        }
        Ok(())
    }

    /// Applies one batch of change records.
    async fn apply_records(&self, records: &[Change]) -> Result<(), AppError> {
        let feeds = self.loaded_feeds();
        let ids: Vec<EnvironmentId> = feeds.iter().map(|f| f.id.clone()).collect();
        let mut plan = plan(records, &ids);
        for (id, work) in std::mem::take(&mut plan.environments) {
            let Some(feed) = feeds.iter().find(|f| f.id == id) else {
                continue;
            };
            let started = std::time::Instant::now();
            let position = records.last().map_or(0, |r| r.seq);
            let events = self.refresh(feed, work, position).await?;
            if events > 0 {
                metrics::counter!("flagstaff_sdk_change_events_total").increment(events as u64);
                metrics::histogram!("flagstaff_sdk_publish_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::debug!(environment = %id, events, "published changes");
            }
        }
        if plan.recheck_credentials {
            self.recheck_credentials().await?;
        }
        if !plan.deleted.is_empty() {
            for feed in feeds.iter().filter(|f| plan.deletes(&f.id)) {
                feed.close_all();
            }
            self.drop_feeds(|id| plan.deletes(id));
        }
        Ok(())
    }
}

/// Follows the change feed from `position` until shutdown.
pub(crate) async fn follow_changes(
    delivery: Arc<Delivery>,
    mut position: u64,
    mut resync: mpsc::UnboundedReceiver<Arc<EnvFeed>>,
) {
    let mut commits = delivery.source.watch();
    let mut poll = tokio::time::interval(delivery.config.change_poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if delivery.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    return; // The store is gone.
                }
            }
            _ = poll.tick() => {}
            Some(feed) = resync.recv() => {
                let id = feed.id.clone();
                let work = Work { everything: true, ..Work::default() };
                let position = delivery.applying.load(Ordering::SeqCst);
                if let Err(e) = delivery.refresh(&feed, work, position).await {
                    tracing::warn!(environment = %id, error = %e, "cannot re-read an environment");
                }
                continue;
            }
        }
        loop {
            let records = match delivery.source.changes_after(position, BATCH).await {
                Ok(records) => {
                    delivery.confirm();
                    records
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the change feed; retrying");
                    break;
                }
            };
            let Some(last) = records.last().map(|r| r.seq) else {
                break;
            };
            // Announce the position before looking at the loaded feeds, so that a feed loading
            // concurrently either is seen here or sees this position and asks for a resync.
            delivery.applying.store(last, Ordering::SeqCst);
            match delivery.apply_records(&records).await {
                Ok(()) => {
                    position = last;
                    delivery.published.store(last, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish changes; retrying");
                    break;
                }
            }
            if records.len() < BATCH as usize {
                break;
            }
        }
    }
}

/// Ends every stream and refuses data (`503`) while the change feed goes unread for longer
/// than `stale_after`: a node cut off from the database must not serve what it last knew as if
/// it were current, for ever, while the other nodes move on. The worker's poll
/// (`change_poll_interval`) is what confirms the feed; the bound is kept above three polls.
pub(crate) async fn watch_freshness(delivery: Arc<Delivery>) {
    let Some(configured) = delivery.config.stale_after else {
        return;
    };
    let bound = configured.max(delivery.config.change_poll_interval * 3);
    let mut tick = tokio::time::interval((bound / 5).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(1),
    ));
    loop {
        tick.tick().await;
        if delivery.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let unconfirmed = delivery.unconfirmed_for();
        let stale = unconfirmed > bound;
        if stale == delivery.stale.swap(stale, Ordering::SeqCst) {
            continue;
        }
        if stale {
            tracing::error!(
                unconfirmed_ms = unconfirmed.as_millis() as u64,
                "the database has not answered for too long: ending SDK streams and refusing \
                 SDK requests (503) until it does, so that no SDK takes old data for current"
            );
            metrics::counter!("flagstaff_delivery_stale_total").increment(1);
            for feed in delivery.loaded_feeds() {
                feed.close_all();
            }
        } else {
            tracing::info!("the database answers again: serving SDKs");
        }
    }
}

/// Sends a heartbeat to every stream, and ends streams whose (rotated-out) key expired.
pub(crate) async fn heartbeat(delivery: Arc<Delivery>) {
    let mut tick = tokio::time::interval(delivery.config.heartbeat_interval);
    tick.tick().await; // The first tick is immediate; streams just sent their `put`.
    loop {
        tick.tick().await;
        if delivery.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let now = delivery.source.now_millis();
        for feed in delivery.loaded_feeds() {
            let expired: Vec<String> = feed
                .grants_in_use()
                .into_iter()
                .filter(|(_, _, expires)| expires.is_some_and(|at| at <= now))
                .map(|(fingerprint, _, _)| fingerprint)
                .collect();
            feed.close(expired);
            feed.heartbeat();
        }
    }
}
