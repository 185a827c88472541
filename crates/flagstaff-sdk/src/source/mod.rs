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

/// Waits until `initialized()` holds (`Ok`) or the status says the source stopped for good
/// (`Err` with its last error).
///
/// The status is marked seen *before* `initialized()` is read. A data source sets the flag and
/// then publishes the status, so whichever way the two interleave with this loop, either the
/// read sees the flag or the publication wakes the wait. Reading the flag first loses the race
/// where both happen between the read and the mark: the wait then sleeps through the only
/// status change there will be (a healthy stream publishes no other), until its timeout.
pub(crate) async fn wait_until_initialized(
    mut status: watch::Receiver<DataSourceStatus>,
    initialized: impl Fn() -> bool,
) -> Result<(), String> {
    loop {
        let current = status.borrow_and_update().clone();
        if initialized() {
            return Ok(());
        }
        if current.state == DataSourceState::Off {
            return Err(current.last_error.unwrap_or_else(|| "closed".into()));
        }
        if status.changed().await.is_err() {
            return Err("closed".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// The interleaving that used to lose the initialization: the source initializes and
    /// publishes while the waiter is between its two reads. Here the first `initialized()` call
    /// does exactly that, deterministically.
    #[tokio::test]
    async fn an_initialization_between_the_waits_reads_is_not_missed() {
        let (sender, receiver) = watch::channel(DataSourceStatus {
            state: DataSourceState::Initializing,
            since: SystemTime::now(),
            last_error: None,
        });
        let flag = Arc::new(AtomicBool::new(false));
        let source = Arc::clone(&flag);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let initialized = || {
            let seen = flag.load(Ordering::Acquire);
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                // The data source, right after this read: flag, then status.
                source.store(true, Ordering::Release);
                sender.send_modify(|s| s.state = DataSourceState::Valid);
            }
            seen
        };
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            wait_until_initialized(receiver, initialized),
        )
        .await;
        assert_eq!(waited, Ok(Ok(())), "the wait saw the initialization");
    }

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
