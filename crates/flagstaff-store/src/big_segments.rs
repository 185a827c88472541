//! Big-segment members (issue 22): the context keys of unbounded segments, one row each, kept
//! beside the documents because a segment may hold ten million of them.
//!
//! Uploads arrive in batches ([`Store::big_segment_apply`]), each one transaction: a batch is
//! applied whole or not at all, and adding or removing a key twice changes nothing, so an upload
//! that broke off may simply be sent again. Evaluation asks which big segments name one context
//! key ([`Store::big_segment_membership`]), one indexed lookup.

use sqlx::Row;

use crate::{Result, Store};

/// The most rows one statement writes: well inside SQLite's and PostgreSQL's limits on bound
/// parameters (5 per row).
const ROWS_PER_STATEMENT: usize = 500;

/// Which list of a big segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberList {
    /// Contexts in the segment.
    Included,
    /// Contexts kept out of it (before its rules).
    Excluded,
}

impl MemberList {
    fn flag(self) -> i64 {
        match self {
            MemberList::Included => 1,
            MemberList::Excluded => 0,
        }
    }
}

/// One segment's member counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// Keys included.
    pub included: u64,
    /// Keys excluded.
    pub excluded: u64,
}

impl Store {
    /// Adds `keys` to a big segment's `list` (a key on the other list moves), or with
    /// `remove` takes them off it; returns how many rows changed. One transaction.
    pub async fn big_segment_apply(
        &self,
        (project, environment, segment): (&str, &str, &str),
        list: MemberList,
        remove: bool,
        keys: &[String],
    ) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        // A key twice in one statement would be an error on PostgreSQL ("cannot affect row a
        // second time"); once is what the caller means.
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let _guard = self.commit_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let sql = if remove {
                let placeholders: Vec<String> =
                    (0..chunk.len()).map(|i| format!("${}", i + 5)).collect();
                format!(
                    "DELETE FROM big_segment_members WHERE project = $1 AND environment = $2 \
                     AND segment = $3 AND included = $4 AND context_key IN ({})",
                    placeholders.join(", ")
                )
            } else {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| format!("($1, $2, $3, ${}, $4)", i + 5))
                    .collect();
                // Only a row whose list changes counts as changed.
                format!(
                    "INSERT INTO big_segment_members (project, environment, segment, context_key, included) \
                     VALUES {} ON CONFLICT (project, environment, segment, context_key) \
                     DO UPDATE SET included = excluded.included \
                     WHERE big_segment_members.included <> excluded.included",
                    rows.join(", ")
                )
            };
            let sql = self.backend.sql(&sql);
            let mut query = sqlx::query(&sql)
                .bind(project)
                .bind(environment)
                .bind(segment)
                .bind(list.flag());
            for key in chunk {
                query = query.bind(key.as_str());
            }
            changed += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Which big segments of an environment name `context_key`, and whether as included.
    pub async fn big_segment_membership(
        &self,
        project: &str,
        environment: &str,
        context_key: &str,
    ) -> Result<Vec<(String, bool)>> {
        let sql = self.backend.sql(
            "SELECT segment, included FROM big_segment_members \
             WHERE project = $1 AND environment = $2 AND context_key = $3",
        );
        let rows = sqlx::query(&sql)
            .bind(project)
            .bind(environment)
            .bind(context_key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("segment")?,
                    row.try_get::<i64, _>("included")? == 1,
                ))
            })
            .collect()
    }

    /// How many keys a big segment includes and excludes.
    pub async fn big_segment_counts(
        &self,
        project: &str,
        environment: &str,
        segment: &str,
    ) -> Result<MemberCounts> {
        let sql = self.backend.sql(
            "SELECT included, COUNT(*) AS n FROM big_segment_members \
             WHERE project = $1 AND environment = $2 AND segment = $3 GROUP BY included",
        );
        let rows = sqlx::query(&sql)
            .bind(project)
            .bind(environment)
            .bind(segment)
            .fetch_all(&self.pool)
            .await?;
        let mut counts = MemberCounts::default();
        for row in rows {
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            if row.try_get::<i64, _>("included")? == 1 {
                counts.included = n;
            } else {
                counts.excluded = n;
            }
        }
        Ok(counts)
    }

    /// Up to `limit` members of a big segment after `after` (by key), with their list: for
    /// copying a whole segment elsewhere (the Redis big-segment store) a page at a time.
    pub async fn big_segment_page(
        &self,
        (project, environment, segment): (&str, &str, &str),
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, bool)>> {
        let sql = self.backend.sql(
            "SELECT context_key, included FROM big_segment_members \
             WHERE project = $1 AND environment = $2 AND segment = $3 AND context_key > $4 \
             ORDER BY context_key LIMIT $5",
        );
        let rows = sqlx::query(&sql)
            .bind(project)
            .bind(environment)
            .bind(segment)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("context_key")?,
                    row.try_get::<i64, _>("included")? == 1,
                ))
            })
            .collect()
    }

    /// Removes every member of a big segment (the segment was deleted); returns how many. In
    /// batches, each its own transaction, so that removing ten million rows never holds other
    /// writers off for longer than one batch.
    pub async fn big_segment_clear(
        &self,
        project: &str,
        environment: &str,
        segment: &str,
    ) -> Result<u64> {
        // A batch of rows by their physical address: a `context_key IN (SELECT … LIMIT)` form
        // took PostgreSQL 25 s for 12,000 rows (a plain subplan per row), the address forms are
        // a direct lookup on both.
        let sql = match self.backend {
            crate::Backend::Sqlite => self.backend.sql(
                "DELETE FROM big_segment_members WHERE rowid IN (SELECT rowid FROM big_segment_members \
                 WHERE project = $1 AND environment = $2 AND segment = $3 LIMIT $4)",
            ),
            crate::Backend::Postgres => self.backend.sql(
                "DELETE FROM big_segment_members WHERE ctid = ANY(ARRAY(SELECT ctid FROM big_segment_members \
                 WHERE project = $1 AND environment = $2 AND segment = $3 LIMIT $4))",
            ),
        };
        let mut removed = 0;
        loop {
            let _guard = self.commit_lock.lock().await;
            let batch = sqlx::query(&sql)
                .bind(project)
                .bind(environment)
                .bind(segment)
                .bind(CLEAR_BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
            removed += batch;
            if batch == 0 {
                return Ok(removed);
            }
        }
    }
}

/// Rows removed per transaction when a big segment is deleted.
const CLEAR_BATCH: i64 = 10_000;
