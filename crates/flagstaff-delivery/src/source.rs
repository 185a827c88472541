//! Where the delivery plane's state comes from: the server's own database (through
//! [`App`]'s use cases) or a relay's [`Replica`] of its upstream. Everything in this crate reads
//! through [`Source`], so streams, polling, client-side evaluation, OFREP and the Redis store are
//! the same code in both processes (ARCHITECTURE.md: the relay is another source of delivery
//! state, not a second delivery plane).

use std::sync::Arc;

use axum::http::HeaderMap;
use flagstaff_app::intake::{EVENT_KINDS, EventCounts, EventSource};
use flagstaff_app::{App, AppError, Change, CredentialKind, Grant, SecureMode};
use flagstaff_protocol::{Flag, FlagData, Segment};
use tokio::sync::{mpsc, watch};

use crate::EnvironmentId;
use crate::replica::Replica;

/// An events payload a relay received, to be sent on upstream as it came.
#[derive(Clone, Debug)]
pub struct RelayedPayload {
    /// The environment it was sent for.
    pub environment: EnvironmentId,
    /// From a server-side SDK (`/bulk`, `/diagnostic`) rather than a browser or phone.
    pub server_side: bool,
    /// A diagnostic event rather than analytics.
    pub diagnostic: bool,
    /// The headers that say who sent it (user agent, wrapper, event schema, unsummarized).
    pub headers: Vec<(String, String)>,
    /// The JSON, decompressed.
    pub body: bytes::Bytes,
    /// The SDK's payload ID, or one the relay made, so that retries upstream count once.
    pub payload_id: Option<String>,
}

/// Headers of an events request that upstream needs to attribute it.
const FORWARDED_HEADERS: [&str; 5] = [
    "user-agent",
    "x-launchdarkly-user-agent",
    "x-launchdarkly-wrapper",
    "x-launchdarkly-event-schema",
    "x-launchdarkly-unsummarized",
];

/// The source of delivery state.
#[derive(Clone, Debug)]
pub enum Source {
    /// The server: its database, through the use cases.
    App(App),
    /// A relay: its copy of the upstream, and where received events go (`None`: dropped).
    Replica {
        /// The copy.
        replica: Arc<Replica>,
        /// Events received, to forward upstream; full means the payload is dropped (counted).
        events: Option<mpsc::Sender<RelayedPayload>>,
    },
}

type Result<T> = std::result::Result<T, AppError>;

impl Source {
    /// The change-feed position now.
    pub async fn head(&self) -> Result<u64> {
        match self {
            Source::App(app) => app.head().await,
            Source::Replica { replica, .. } => Ok(replica.head()),
        }
    }

    /// What change-feed positions count, for FDv2 selectors (`fdv2.rs`): `db` for the
    /// server's database, whose positions every node on it shares and which never start
    /// again; for a relay, a tag of its replica, whose positions start again with the process.
    pub fn lineage(&self) -> String {
        match self {
            Source::App(_) => "db".to_owned(),
            Source::Replica { replica, .. } => replica.lineage().to_owned(),
        }
    }

    /// The position of the newest change made in this process (no I/O).
    pub fn last_commit(&self) -> u64 {
        match self {
            Source::App(app) => app.last_commit(),
            Source::Replica { replica, .. } => replica.head(),
        }
    }

    /// Wakes on changes made in this process.
    pub fn watch(&self) -> watch::Receiver<u64> {
        match self {
            Source::App(app) => app.watch(),
            Source::Replica { replica, .. } => replica.watch(),
        }
    }

    /// Changes after a position, oldest first.
    pub async fn changes_after(&self, after: u64, limit: u32) -> Result<Vec<Change>> {
        match self {
            Source::App(app) => app.changes_after(after, limit).await,
            Source::Replica { replica, .. } => Ok(replica.changes_after(after, limit)),
        }
    }

    /// Unix milliseconds now.
    pub fn now_millis(&self) -> i64 {
        match self {
            Source::App(app) => app.now_millis(),
            Source::Replica { .. } => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Every flag and segment of an environment, as SDKs receive them.
    pub async fn flag_data(&self, id: &EnvironmentId) -> Result<FlagData> {
        match self {
            Source::App(app) => app.flag_data(&id.project, &id.environment).await,
            Source::Replica { replica, .. } => replica
                .initialized_data(id)
                .ok_or_else(|| AppError::NotFound(format!("{id}: no data from the upstream yet"))),
        }
    }

    /// One flag of an environment, `None` when SDKs must not see it.
    pub async fn flag(&self, id: &EnvironmentId, key: &str) -> Result<Option<Flag>> {
        match self {
            Source::App(app) => app.sdk_flag(&id.project, &id.environment, key).await,
            Source::Replica { replica, .. } => Ok(replica.flag(id, key)),
        }
    }

    /// One segment of an environment.
    pub async fn segment(&self, id: &EnvironmentId, key: &str) -> Result<Option<Segment>> {
        match self {
            Source::App(app) => app.sdk_segment(&id.project, &id.environment, key).await,
            Source::Replica { replica, .. } => Ok(replica.segment(id, key)),
        }
    }

    /// The client-side ID of an environment (empty when unknown).
    pub async fn client_side_id(&self, id: &EnvironmentId) -> Result<String> {
        match self {
            Source::App(app) => Ok(app
                .sdk_environment(&id.project, &id.environment)
                .await?
                .map(|e| e.client_side_id)
                .unwrap_or_default()),
            Source::Replica { replica, .. } => Ok(replica.client_side_id(id).unwrap_or_default()),
        }
    }

    /// An environment's secure mode, `None` when off.
    pub async fn secure_mode(&self, id: &EnvironmentId) -> Result<Option<SecureMode>> {
        match self {
            Source::App(app) => app.secure_mode(&id.project, &id.environment).await,
            Source::Replica { replica, .. } => Ok(replica.secure_mode(id)),
        }
    }

    /// What a credential grants, by fingerprint.
    pub async fn grant(&self, fingerprint: &str, kind: CredentialKind) -> Result<Option<Grant>> {
        match self {
            Source::App(app) => app.grant(fingerprint, kind).await,
            Source::Replica { replica, .. } => {
                Ok(replica.grant(fingerprint, kind, self.now_millis()))
            }
        }
    }

    /// Whether an environment tells FDv2 SDKs to use FDv1 (`fdv2.rs`). A relay has no such
    /// setting of its own and always serves FDv2.
    pub async fn fdv1_fallback(&self, id: &EnvironmentId) -> Result<bool> {
        match self {
            Source::App(app) => Ok(app
                .sdk_environment(&id.project, &id.environment)
                .await?
                .is_some_and(|e| e.fdv1_fallback)),
            Source::Replica { .. } => Ok(false),
        }
    }

    /// What an API token (by fingerprint) grants a relay on one environment (issue 22). A
    /// relay has no tokens of its own: relays chain with SDK keys.
    pub async fn relay_grant(
        &self,
        token_fingerprint: &str,
        id: &EnvironmentId,
    ) -> Result<Option<Grant>> {
        match self {
            Source::App(app) => {
                app.relay_grant(token_fingerprint, &id.project, &id.environment)
                    .await
            }
            Source::Replica { .. } => Ok(None),
        }
    }

    /// A context's big-segment membership for evaluating it with `snapshot` (issue 22). A relay
    /// holds no members: behind it big segments decide by their rules, as in an SDK with no
    /// big-segment store.
    pub async fn big_segment_membership(
        &self,
        id: &EnvironmentId,
        snapshot: &flagstaff_eval::Snapshot,
        context: &flagstaff_protocol::Context,
    ) -> Result<Option<flagstaff_eval::BigSegmentMembership>> {
        match self {
            Source::App(app) => {
                app.big_segment_membership(&id.project, &id.environment, snapshot, context)
                    .await
            }
            Source::Replica { .. } => Ok(None),
        }
    }

    /// Whether this source holds big-segment members (the server does; a relay does not).
    pub fn holds_big_segment_members(&self) -> bool {
        matches!(self, Source::App(_))
    }

    /// Members of a big segment after `after`, a page at a time (empty on a relay).
    pub async fn big_segment_page(
        &self,
        id: &EnvironmentId,
        segment: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, bool)>> {
        match self {
            Source::App(app) => {
                app.big_segment_page((&id.project, &id.environment, segment), after, limit)
                    .await
            }
            Source::Replica { .. } => Ok(Vec::new()),
        }
    }

    /// Every environment, for what is kept current without an SDK asking (Redis).
    pub async fn environment_ids(&self) -> Result<Vec<EnvironmentId>> {
        match self {
            Source::App(app) => Ok(app
                .sdk_environment_keys()
                .await?
                .into_iter()
                .map(|(project, environment)| EnvironmentId {
                    project,
                    environment,
                })
                .collect()),
            Source::Replica { replica, .. } => Ok(replica.environment_ids()),
        }
    }

    /// The browser goals of a project (§5.9). A relay serves none: goals are metrics, which
    /// it does not copy, so browsers behind a relay send no click or page-view goals.
    pub async fn browser_goals(&self, project: &str) -> Result<Arc<serde_json::Value>> {
        match self {
            Source::App(app) => app.browser_goals(project).await,
            Source::Replica { .. } => Ok(Arc::new(serde_json::Value::Array(Vec::new()))),
        }
    }

    /// Counts a payload refused before it could be parsed.
    pub fn record_rejected_events(&self) {
        match self {
            Source::App(app) => app.record_rejected_events(),
            Source::Replica { .. } => {
                metrics::counter!("flagstaff_relay_events_rejected_total").increment(1);
            }
        }
    }

    /// Parses an events payload and queues it: for insights on the server, to forward upstream
    /// on a relay. Both refuse what is not JSON of the endpoint's shape.
    pub fn ingest_events(
        &self,
        source: EventSource,
        headers: &HeaderMap,
        bytes: &[u8],
        diagnostic: bool,
        payload_id: Option<&str>,
    ) -> Result<EventCounts> {
        match self {
            Source::App(app) => app.ingest_events(source, bytes, diagnostic, payload_id),
            Source::Replica { events, .. } => {
                // Checked as the server checks it, so SDKs get the same answer.
                let counts =
                    flagstaff_app::intake::parse_events(source.clone(), bytes, diagnostic, 0)
                        .inspect_err(|_| self.record_rejected_events())?
                        .kinds;
                let Some(events) = events else {
                    return Ok(counts);
                };
                let Some((project, environment)) = source.environment.split_once('/') else {
                    return Ok(counts);
                };
                let payload = RelayedPayload {
                    environment: EnvironmentId {
                        project: project.to_owned(),
                        environment: environment.to_owned(),
                    },
                    server_side: source.server_side,
                    diagnostic,
                    headers: FORWARDED_HEADERS
                        .iter()
                        .filter_map(|name| {
                            let value = headers.get(*name)?.to_str().ok()?;
                            Some(((*name).to_owned(), value.to_owned()))
                        })
                        .collect(),
                    body: bytes::Bytes::copy_from_slice(bytes),
                    payload_id: payload_id.map(str::to_owned),
                };
                if events.try_send(payload).is_err() {
                    // The forwarding queue is full (upstream slow or down for long): the SDK
                    // still gets its 202, as from the server's own full queue (§6.3).
                    metrics::counter!("flagstaff_relay_events_dropped_total").increment(1);
                    tracing::warn!("the relay's events queue is full; a payload was dropped");
                }
                debug_assert_eq!(counts.len(), EVENT_KINDS.len());
                Ok(counts)
            }
        }
    }
}
