//! Data sources: how flag data reaches the [`crate::store`]. Streaming (the default), polling
//! and local files, each a task on the Tokio runtime that writes into [`Shared`] and reports its
//! state there.

pub(crate) mod file;
pub(crate) mod polling;
pub(crate) mod streaming;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use flagstaff_protocol::FlagData;
use tokio::sync::{broadcast, watch};

use crate::store::{Store, Update};

/// The state of the data source, as LaunchDarkly's SDKs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSourceState {
    /// Not yet received data.
    Initializing,
    /// Has data and is connected (or polling successfully).
    Valid,
    /// Had a problem and is retrying; evaluations use the last data received.
    Interrupted,
    /// Stopped for good: the server refused the SDK key (401/403), the endpoint does not exist
    /// (404), or the client was closed. Evaluations use the last data received, if any.
    Off,
}

/// The data source's state and its last problem.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSourceStatus {
    /// The state.
    pub state: DataSourceState,
    /// When the state last changed.
    pub since: SystemTime,
    /// The last error, if there was one (an HTTP status, a network error, a bad payload).
    pub last_error: Option<String>,
}

/// A flag whose configuration changed, directly or through a prerequisite or segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagChange {
    /// The flag key.
    pub key: String,
}

/// What data sources and the client share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    initialized: AtomicBool,
    status: watch::Sender<DataSourceStatus>,
    changes: broadcast::Sender<FlagChange>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            store: Store::new(),
            initialized: AtomicBool::new(false),
            status: watch::Sender::new(DataSourceStatus {
                state: DataSourceState::Initializing,
                since: SystemTime::now(),
                last_error: None,
            }),
            changes: broadcast::Sender::new(1024),
        }
    }

    #[inline]
    pub(crate) fn initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self) -> DataSourceStatus {
        self.status.borrow().clone()
    }

    pub(crate) fn watch_status(&self) -> watch::Receiver<DataSourceStatus> {
        self.status.subscribe()
    }

    pub(crate) fn subscribe_changes(&self) -> broadcast::Receiver<FlagChange> {
        self.changes.subscribe()
    }

    /// A full data set arrived: replace the store, mark initialized and valid.
    pub(crate) fn replace(&self, data: FlagData) {
        let changed = self.store.replace(data);
        let first = !self.initialized.swap(true, Ordering::AcqRel);
        self.set_state(DataSourceState::Valid, None);
        // The first data set is not a change: listeners hear about changes after
        // initialization.
        if !first {
            self.notify(changed);
        }
    }

    /// One item changed.
    pub(crate) fn apply(&self, update: Update) {
        let changed = self.store.apply(update);
        self.notify(changed);
    }

    fn notify(&self, changed: BTreeSet<String>) {
        for key in changed {
            // No receivers is fine.
            let _ = self.changes.send(FlagChange { key });
        }
    }

    /// Records a state (and the error that led to it). `Interrupted` before the first data
    /// stays `Initializing`, as in LaunchDarkly's SDKs.
    pub(crate) fn set_state(&self, state: DataSourceState, error: Option<String>) {
        let state = if state == DataSourceState::Interrupted && !self.initialized() {
            DataSourceState::Initializing
        } else {
            state
        };
        self.status.send_if_modified(|status| {
            let changed = status.state != state || error.is_some();
            if status.state != state {
                status.since = SystemTime::now();
            }
            status.state = state;
            if error.is_some() {
                status.last_error = error;
            }
            changed
        });
    }
}

/// Whether an HTTP status means "stop for good" for a data source (§4.5): 401, 403, 404, 405 and
/// every other 4xx except 400, 408 and 429.
pub(crate) fn is_fatal_status(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 400 | 408 | 429)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_statuses_are_the_sdks_ones() {
        for status in [401, 403, 404, 405, 410, 418] {
            assert!(is_fatal_status(status), "{status}");
        }
        for status in [400, 408, 429, 500, 502, 503, 200, 304] {
            assert!(!is_fatal_status(status), "{status}");
        }
    }
}
