//! Delivery state that does not come from this process's database: a relay's copy of its
//! upstream's environments (flags, segments, the hashes of the credentials that may read them,
//! client-side IDs, secure mode), kept in memory with a change log of its own.
//!
//! The delivery plane reads it through [`crate::Source`] exactly as it reads the server's
//! [`flagstaff_app::App`]: the worker follows [`Replica::changes_after`] (typed
//! [`flagstaff_app::Change`]s, so its one exhaustive match decides what each means), streams
//! and polls are served from the same feeds, and credentials are checked by fingerprint
//! (SHA-256 of the secret, never the secret). Whoever fills the replica (the relay's upstream
//! follower) calls the `set_*`/`upsert_*`/`delete_*` methods; each appends to the log and wakes
//! the worker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use flagstaff_app::{Action, Change, CredentialKind, Grant, Scope, SecureMode};
use flagstaff_protocol::{Flag, FlagData, Segment};
use tokio::sync::watch;

use crate::EnvironmentId;

/// How many changes the log keeps. A reader further behind is told "everything may have
/// changed" (a change with no known action), which makes the worker compare every feed.
const LOG_LENGTH: usize = 10_000;

/// One environment as the replica holds it.
#[derive(Clone, Debug, Default)]
pub struct ReplicaEnvironment {
    /// Its flags and segments, with their upstream versions.
    pub data: FlagData,
    /// The client-side ID (`X-LD-EnvID`, and what browsers present).
    pub client_side_id: String,
    /// Secure mode (§5.7), `None` when off.
    pub secure_mode: Option<SecureMode>,
    /// Whether data was ever received (from the upstream or the disk copy). Until then SDKs
    /// are answered `503`, which they retry, rather than served an empty environment.
    pub initialized: bool,
}

/// A credential that may read one environment, by fingerprint.
#[derive(Clone, Debug)]
pub struct ReplicaCredential {
    /// SHA-256 of the secret, hex ([`flagstaff_app::fingerprint`]).
    pub fingerprint: String,
    /// SDK key, mobile key or client-side ID.
    pub kind: CredentialKind,
    /// When a rotated-out key stops working (Unix milliseconds).
    pub expires_at: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    seq: u64,
    log: VecDeque<Change>,
    environments: BTreeMap<EnvironmentId, ReplicaEnvironment>,
    credentials: HashMap<(String, CredentialKind), (EnvironmentId, Option<i64>)>,
}

impl State {
    fn record(&mut self, action: Action, scope: Scope, key: &str) -> u64 {
        self.seq += 1;
        if self.log.len() == LOG_LENGTH {
            self.log.pop_front();
        }
        self.log.push_back(Change {
            seq: self.seq,
            action: Some(action),
            action_text: action.as_str().to_owned(),
            actor: "relay".to_owned(),
            kind: String::new(),
            scope,
            key: key.to_owned(),
        });
        self.seq
    }
}

/// The relay's copy of its upstream's environments.
#[derive(Debug)]
pub struct Replica {
    state: Mutex<State>,
    commits: watch::Sender<u64>,
    /// Tells this replica's change-log positions from another's (FDv2 selectors, `fdv2.rs`):
    /// they start at 0 in every relay process.
    lineage: String,
}

impl Default for Replica {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // Random enough to tell two relay processes apart; nothing secret depends on it.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Replica {
            state: Mutex::new(State::default()),
            commits: watch::channel(0).0,
            lineage: format!("r{:08x}", hasher.finish() as u32),
        }
    }
}

fn env_scope(id: &EnvironmentId) -> Scope {
    Scope::Environment {
        project: id.project.clone(),
        environment: id.environment.clone(),
    }
}

impl Replica {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn committed(&self, seq: u64) {
        self.commits.send_replace(seq);
    }

    /// Adds or updates an environment's settings and credentials (its data is kept).
    pub fn set_environment(
        &self,
        id: &EnvironmentId,
        client_side_id: String,
        secure_mode: Option<SecureMode>,
        credentials: Vec<ReplicaCredential>,
    ) {
        let mut state = self.lock();
        let environment = state.environments.entry(id.clone()).or_default();
        environment.client_side_id = client_side_id;
        environment.secure_mode = secure_mode;
        state.credentials.retain(|_, (owner, _)| owner != id);
        for credential in credentials {
            state.credentials.insert(
                (credential.fingerprint, credential.kind),
                (id.clone(), credential.expires_at),
            );
        }
        // An environment update makes the worker re-check every open stream's credential.
        let seq = state.record(
            Action::EnvironmentUpdate,
            Scope::Project(id.project.clone()),
            &id.environment,
        );
        drop(state);
        self.committed(seq);
    }

    /// Replaces an environment's flags and segments (a stream `put`, a poll, a bundle).
    pub fn replace_data(&self, id: &EnvironmentId, data: FlagData) {
        let mut state = self.lock();
        let environment = state.environments.entry(id.clone()).or_default();
        environment.data = data;
        environment.initialized = true;
        // An import is "compare everything" for the project's loaded environments.
        let seq = state.record(
            Action::EnvironmentImport,
            Scope::Project(id.project.clone()),
            &id.environment,
        );
        drop(state);
        self.committed(seq);
    }

    /// Stores a flag if it is new or newer (§2.6); returns whether it was stored.
    pub fn upsert_flag(&self, id: &EnvironmentId, flag: Flag) -> bool {
        let mut state = self.lock();
        let Some(environment) = state.environments.get_mut(id) else {
            return false;
        };
        let key = flag.key.clone();
        if environment
            .data
            .flags
            .get(&key)
            .is_some_and(|old| old.version >= flag.version)
        {
            return false;
        }
        environment.data.flags.insert(key.clone(), flag);
        let seq = state.record(Action::TargetingUpdate, env_scope(id), &key);
        drop(state);
        self.committed(seq);
        true
    }

    /// Stores a segment if it is new or newer; returns whether it was stored.
    pub fn upsert_segment(&self, id: &EnvironmentId, segment: Segment) -> bool {
        let mut state = self.lock();
        let Some(environment) = state.environments.get_mut(id) else {
            return false;
        };
        let key = segment.key.clone();
        if environment
            .data
            .segments
            .get(&key)
            .is_some_and(|old| old.version >= segment.version)
        {
            return false;
        }
        environment.data.segments.insert(key.clone(), segment);
        let seq = state.record(Action::SegmentUpdate, env_scope(id), &key);
        drop(state);
        self.committed(seq);
        true
    }

    /// Removes a flag if `version` is above the one held (a stream `delete`).
    pub fn delete_flag(&self, id: &EnvironmentId, key: &str, version: u64) -> bool {
        let mut state = self.lock();
        let Some(environment) = state.environments.get_mut(id) else {
            return false;
        };
        if environment
            .data
            .flags
            .get(key)
            .is_none_or(|old| old.version >= version)
        {
            return false;
        }
        environment.data.flags.remove(key);
        let seq = state.record(Action::TargetingUpdate, env_scope(id), key);
        drop(state);
        self.committed(seq);
        true
    }

    /// Removes a segment if `version` is above the one held.
    pub fn delete_segment(&self, id: &EnvironmentId, key: &str, version: u64) -> bool {
        let mut state = self.lock();
        let Some(environment) = state.environments.get_mut(id) else {
            return false;
        };
        if environment
            .data
            .segments
            .get(key)
            .is_none_or(|old| old.version >= version)
        {
            return false;
        }
        environment.data.segments.remove(key);
        let seq = state.record(Action::SegmentUpdate, env_scope(id), key);
        drop(state);
        self.committed(seq);
        true
    }

    /// An environment's current data, if the replica holds it and it ever received data.
    pub fn initialized_data(&self, id: &EnvironmentId) -> Option<FlagData> {
        self.lock()
            .environments
            .get(id)
            .filter(|e| e.initialized)
            .map(|e| e.data.clone())
    }

    /// How many flags and segments an environment holds (for status pages, without copying
    /// the data).
    pub fn counts(&self, id: &EnvironmentId) -> (usize, usize) {
        self.lock()
            .environments
            .get(id)
            .map_or((0, 0), |e| (e.data.flags.len(), e.data.segments.len()))
    }

    /// An environment's current data, if the replica holds it.
    pub fn data(&self, id: &EnvironmentId) -> Option<FlagData> {
        self.lock().environments.get(id).map(|e| e.data.clone())
    }

    // ----- what delivery reads (through `Source`) --------------------------------------------

    pub(crate) fn lineage(&self) -> &str {
        &self.lineage
    }

    pub(crate) fn head(&self) -> u64 {
        self.lock().seq
    }

    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    pub(crate) fn changes_after(&self, after: u64, limit: u32) -> Vec<Change> {
        let state = self.lock();
        let oldest = state.log.front().map_or(state.seq + 1, |c| c.seq);
        if after + 1 < oldest && after < state.seq {
            // The log no longer reaches back to `after`: say "anything may have changed".
            return vec![Change {
                seq: state.seq,
                action: None,
                action_text: String::new(),
                actor: "relay".to_owned(),
                kind: String::new(),
                scope: Scope::Global,
                key: String::new(),
            }];
        }
        state
            .log
            .iter()
            .filter(|c| c.seq > after)
            .take(limit as usize)
            .cloned()
            .collect()
    }

    /// An environment's client-side ID, if the replica has the environment.
    pub fn client_side_id(&self, id: &EnvironmentId) -> Option<String> {
        Some(self.lock().environments.get(id)?.client_side_id.clone())
    }

    /// An environment's secure mode, `None` when off or unknown.
    pub fn secure_mode(&self, id: &EnvironmentId) -> Option<SecureMode> {
        self.lock().environments.get(id)?.secure_mode.clone()
    }

    pub(crate) fn flag(&self, id: &EnvironmentId, key: &str) -> Option<Flag> {
        self.lock()
            .environments
            .get(id)
            .and_then(|e| e.data.flags.get(key).cloned())
    }

    pub(crate) fn segment(&self, id: &EnvironmentId, key: &str) -> Option<Segment> {
        self.lock()
            .environments
            .get(id)
            .and_then(|e| e.data.segments.get(key).cloned())
    }

    pub(crate) fn grant(&self, fingerprint: &str, kind: CredentialKind, now: i64) -> Option<Grant> {
        let state = self.lock();
        let (id, expires_at) = state.credentials.get(&(fingerprint.to_owned(), kind))?;
        let grant = Grant {
            project: id.project.clone(),
            environment: id.environment.clone(),
            expires_at: *expires_at,
        };
        grant.valid_at(now).then_some(grant)
    }

    pub(crate) fn environment_ids(&self) -> Vec<EnvironmentId> {
        self.lock().environments.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EnvironmentId {
        EnvironmentId {
            project: "relay".into(),
            environment: "production".into(),
        }
    }

    fn flag(key: &str, version: u64) -> Flag {
        Flag {
            key: key.into(),
            version,
            ..Default::default()
        }
    }

    #[test]
    fn versions_only_grow_and_every_change_is_logged() {
        let replica = Replica::default();
        replica.set_environment(&id(), "cid".into(), None, Vec::new());
        assert!(replica.upsert_flag(&id(), flag("a", 2)));
        assert!(!replica.upsert_flag(&id(), flag("a", 2)), "same version");
        assert!(!replica.upsert_flag(&id(), flag("a", 1)), "older");
        assert!(
            !replica.delete_flag(&id(), "a", 2),
            "a delete must be newer"
        );
        assert!(replica.delete_flag(&id(), "a", 3));
        assert!(replica.flag(&id(), "a").is_none());
        let log = replica.changes_after(0, 100);
        assert_eq!(log.len(), 3);
        assert_eq!(log[1].action, Some(Action::TargetingUpdate));
        assert_eq!(replica.changes_after(2, 100).len(), 1);
    }

    #[test]
    fn a_reader_behind_the_log_is_told_everything_changed() {
        let replica = Replica::default();
        replica.set_environment(&id(), "cid".into(), None, Vec::new());
        for version in 1..=(LOG_LENGTH as u64 + 5) {
            replica.upsert_flag(&id(), flag("a", version));
        }
        let behind = replica.changes_after(1, 100);
        assert_eq!(behind.len(), 1);
        assert_eq!(behind[0].action, None);
        assert_eq!(behind[0].seq, replica.head());
        let recent = replica.changes_after(replica.head() - 1, 100);
        assert_eq!(recent[0].action, Some(Action::TargetingUpdate));
    }

    #[test]
    fn credentials_grant_their_environment_until_they_expire() {
        let replica = Replica::default();
        replica.set_environment(
            &id(),
            "cid".into(),
            None,
            vec![
                ReplicaCredential {
                    fingerprint: "f1".into(),
                    kind: CredentialKind::Sdk,
                    expires_at: None,
                },
                ReplicaCredential {
                    fingerprint: "f2".into(),
                    kind: CredentialKind::Sdk,
                    expires_at: Some(1_000),
                },
            ],
        );
        assert_eq!(
            replica
                .grant("f1", CredentialKind::Sdk, 0)
                .unwrap()
                .environment,
            "production"
        );
        assert!(replica.grant("f1", CredentialKind::Mobile, 0).is_none());
        assert!(replica.grant("f2", CredentialKind::Sdk, 999).is_some());
        assert!(replica.grant("f2", CredentialKind::Sdk, 1_000).is_none());
        assert!(replica.grant("nope", CredentialKind::Sdk, 0).is_none());
    }
}
