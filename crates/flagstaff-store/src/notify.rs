//! Change hints across nodes sharing PostgreSQL: each commit sends `NOTIFY` on one channel
//! with its audit sequence number, and every node's store listens on it, so that a change made
//! on one node wakes the change-feed readers (SDK delivery, the dashboard's live view) of every
//! node within milliseconds.
//!
//! A hint, never the truth: the change feed ([`Store::changes_after`](crate::Store)) is read
//! the same way however a reader was woken. A notification can be missed (the listening
//! connection drops, PostgreSQL restarts); after every reconnection the listener reads the
//! head once, and readers still poll the head at their own interval, so a missed hint costs
//! only time.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::watch;

use crate::Result;

/// The channel every node listens on.
pub(crate) const CHANNEL: &str = "flagstaff_changes";

/// Sends the hint for a commit whose last audit entry is `seq`, inside its transaction:
/// PostgreSQL delivers it at commit, and never if the transaction rolls back.
pub(crate) async fn send(tx: &mut Transaction<'static, Any>, seq: u64) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(seq.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Raises the watched position to `seq` if it is behind; waking its receivers only then.
pub(crate) fn advance(committed: &watch::Sender<u64>, seq: u64) {
    committed.send_if_modified(|position| {
        let behind = *position < seq;
        if behind {
            *position = seq;
        }
        behind
    });
}

/// Aborts the listening task when the store goes.
#[derive(Debug)]
pub(crate) struct Listening(tokio::task::JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening on `url` for the hints of other nodes' commits, advancing `committed`.
/// The task holds the sender weakly and ends with the store.
pub(crate) fn listen(url: String, pool: AnyPool, committed: &Arc<watch::Sender<u64>>) -> Listening {
    let committed = Arc::downgrade(committed);
    Listening(tokio::spawn(async move {
        let mut delay = FIRST_RETRY;
        loop {
            match follow(&url, &pool, &committed, &mut delay).await {
                Ok(()) => return, // The store is gone.
                Err(e) => {
                    // Readers still poll the head meanwhile; this only costs speed.
                    tracing::warn!(error = %e, "not listening for other nodes' changes; reconnecting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }))
}

const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Listens until the store is gone (`Ok`) or the connection is lost (`Err`). The head is read
/// once the listener is in place, so that nothing committed before (while disconnected, say)
/// waits for a reader's next poll.
async fn follow(
    url: &str,
    pool: &AnyPool,
    committed: &Weak<watch::Sender<u64>>,
    delay: &mut Duration,
) -> Result<()> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    *delay = FIRST_RETRY;
    let head = crate::read_head(pool).await?;
    match committed.upgrade() {
        Some(committed) => advance(&committed, head),
        None => return Ok(()),
    }
    loop {
        // `try_recv` answers `None` when the connection dropped; it would reconnect on the
        // next call, but only the order above (listen, then read) loses nothing.
        let Some(notification) = listener.try_recv().await? else {
            return Err(crate::StoreError::Config(
                "the listening connection to PostgreSQL was lost".into(),
            ));
        };
        let Some(committed) = committed.upgrade() else {
            return Ok(());
        };
        if let Ok(seq) = notification.payload().parse::<u64>() {
            advance(&committed, seq);
        }
    }
}
