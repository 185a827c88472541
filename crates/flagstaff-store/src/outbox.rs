//! The outbox: durable work that follows the audit log without being part of it (webhook
//! deliveries). Each item is one audit entry for one target (a webhook); its id is stable
//! across attempts, so receivers can recognise a retry.
//!
//! Several nodes may share the database, so everything here is a compare-and-set that exactly
//! one caller wins:
//! - [`Store::outbox_fill`] moves a named cursor through the audit log from the position the
//!   caller read to the one it filled up to, and inserts the items of those entries, in one
//!   transaction; a caller that lost the race (the cursor moved) inserts nothing.
//! - [`Store::outbox_claim`] takes an item's lease for one attempt; only one node holds it. An
//!   attempt that dies with its node (a crash, `kill -9`) is retried when the lease runs out.
//!
//! None of this writes audit entries: deliveries are the audit log's consequence, not changes.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError};

/// An outbox item.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxItem {
    /// Its id (the delivery id).
    pub id: String,
    /// What it is for (a webhook's id).
    pub target: String,
    /// The audit entry it carries.
    pub seq: u64,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix ms).
    pub next_at: i64,
    /// Until when the node making an attempt holds it (Unix ms).
    pub lease_until: i64,
    /// What each attempt found, oldest first (chosen by the caller; a JSON array).
    pub log: Value,
    /// When it was created (Unix ms).
    pub created_at: i64,
}

/// An item to add to the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// Its id.
    pub id: String,
    /// What it is for.
    pub target: String,
    /// The audit entry it carries.
    pub seq: u64,
}

/// The outbox states.
pub mod state {
    /// Waiting for its next attempt.
    pub const PENDING: &str = "pending";
    /// Accepted by the receiver.
    pub const DELIVERED: &str = "delivered";
    /// Given up after the last attempt.
    pub const FAILED: &str = "failed";
}

const COLUMNS: &str = "id, target, seq, state, attempts, next_at, lease_until, log, created_at";

fn item(row: &AnyRow) -> Result<OutboxItem> {
    let log: String = row.try_get("log")?;
    let seq: i64 = row.try_get("seq")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(OutboxItem {
        id: row.try_get("id")?,
        target: row.try_get("target")?,
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("outbox seq {seq}")))?,
        state: row.try_get("state")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_at: row.try_get("next_at")?,
        lease_until: row.try_get("lease_until")?,
        log: serde_json::from_str(&log)
            .map_err(|e| StoreError::Corrupt(format!("outbox log: {e}")))?,
        created_at: row.try_get("created_at")?,
    })
}

fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} out of range")))
}

impl Store {
    /// The position the named cursor has filled the outbox up to; a new cursor starts at
    /// `start` (so that a fresh outbox does not replay the whole history).
    pub async fn outbox_cursor(&self, name: &str, start: u64) -> Result<u64> {
        let select = self
            .backend
            .sql("SELECT seq FROM outbox_cursor WHERE name = $1");
        // A read first: the cursor exists on every run but the first, and a write (an fsync on
        // SQLite) on every run would cost each commit another one.
        if let Some(row) = sqlx::query(&select)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0));
        }
        let insert = self.backend.sql(
            "INSERT INTO outbox_cursor (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        );
        {
            let _guard = self.commit_lock.lock().await;
            sqlx::query(&insert)
                .bind(name)
                .bind(to_i64(start)?)
                .execute(&self.pool)
                .await?;
        }
        let seq: i64 = sqlx::query(&select)
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get("seq")?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// Moves the named cursor from `from` to `to` and adds `items`, in one transaction. Returns
    /// `false`, having written nothing, when the cursor is no longer at `from` (another node
    /// filled that stretch first). An item whose `(target, seq)` exists is skipped.
    pub async fn outbox_fill(
        &self,
        name: &str,
        from: u64,
        to: u64,
        items: &[NewOutboxItem],
        now: i64,
    ) -> Result<bool> {
        let _guard = self.commit_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            &self
                .backend
                .sql("UPDATE outbox_cursor SET seq = $1 WHERE name = $2 AND seq = $3"),
        )
        .bind(to_i64(to)?)
        .bind(name)
        .bind(to_i64(from)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Ok(false);
        }
        let insert = self.backend.sql(
            "INSERT INTO outbox (id, target, seq, state, attempts, next_at, lease_until, log, created_at) \
             VALUES ($1, $2, $3, 'pending', 0, $4, 0, '[]', $4) ON CONFLICT (target, seq) DO NOTHING",
        );
        for new in items {
            sqlx::query(&insert)
                .bind(&new.id)
                .bind(&new.target)
                .bind(to_i64(new.seq)?)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Up to `limit` pending items due at `now` and not held by anyone, oldest first.
    pub async fn outbox_due(&self, now: i64, limit: u32) -> Result<Vec<OutboxItem>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND next_at <= $1 AND lease_until <= $1 \
             ORDER BY next_at, seq LIMIT $2"
        );
        let rows = sqlx::query(&self.backend.sql(&sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(item).collect()
    }

    /// When the next pending item falls due (or its lease runs out), if any.
    pub async fn outbox_next_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN lease_until > next_at THEN lease_until ELSE next_at END) AS due \
             FROM outbox WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("due")?)
    }

    /// Takes an item's lease until `lease_until` for one attempt (counted) if it is pending,
    /// due and not held: `true` for exactly one caller.
    pub async fn outbox_claim(&self, id: &str, now: i64, lease_until: i64) -> Result<bool> {
        let _guard = self.commit_lock.lock().await;
        let claimed = sqlx::query(&self.backend.sql(
            "UPDATE outbox SET lease_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND state = 'pending' AND next_at <= $3 AND lease_until <= $3",
        ))
        .bind(lease_until)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// Records an attempt's outcome: the new state, when the next attempt is due, and the log.
    /// Only the lease holder calls this; the lease is released.
    pub async fn outbox_record(
        &self,
        id: &str,
        state: &str,
        next_at: i64,
        log: &Value,
    ) -> Result<()> {
        let _guard = self.commit_lock.lock().await;
        sqlx::query(&self.backend.sql(
            "UPDATE outbox SET state = $1, next_at = $2, lease_until = 0, log = $3 WHERE id = $4",
        ))
        .bind(state)
        .bind(next_at)
        .bind(log.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a delivered or failed item pending again, due at `now` (a redelivery keeps its
    /// id). `false` when there is no such item or it is pending already.
    pub async fn outbox_retry(&self, id: &str, now: i64) -> Result<bool> {
        let _guard = self.commit_lock.lock().await;
        let changed = sqlx::query(&self.backend.sql(
            "UPDATE outbox SET state = 'pending', next_at = $1, lease_until = 0 WHERE id = $2 AND state <> 'pending'",
        ))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// One item.
    pub async fn outbox_item(&self, id: &str) -> Result<Option<OutboxItem>> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1");
        let row = sqlx::query(&self.backend.sql(&sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(item).transpose()
    }

    /// A target's newest `limit` items, newest first.
    pub async fn outbox_of(&self, target: &str, limit: u32) -> Result<Vec<OutboxItem>> {
        let sql =
            format!("SELECT {COLUMNS} FROM outbox WHERE target = $1 ORDER BY seq DESC LIMIT $2");
        let rows = sqlx::query(&self.backend.sql(&sql))
            .bind(target)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(item).collect()
    }

    /// Removes finished items created before `before`, and every item of `targets` that no
    /// longer exist; returns how many went.
    pub async fn outbox_prune(&self, before: i64, gone: &[String]) -> Result<u64> {
        let _guard = self.commit_lock.lock().await;
        let mut removed = sqlx::query(
            &self
                .backend
                .sql("DELETE FROM outbox WHERE state <> 'pending' AND created_at < $1"),
        )
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected();
        for target in gone {
            removed += sqlx::query(&self.backend.sql("DELETE FROM outbox WHERE target = $1"))
                .bind(target)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }
}
