//! Migration operations: what LaunchDarkly's SDK migrators report in `migration_op` events
//! (`ld-protocol.md` §6.4), counted per flag, stage and operation in time buckets.
//!
//! A migrator moves reads and writes from an old system to a new one as a migration flag's
//! stage says; each operation it runs reports which systems it invoked, whether each failed,
//! how long each took and, for some reads, whether the two systems answered the same. Those
//! are the numbers a person needs before moving the stage on, so they are kept as sums: a
//! count and a sum give the mean latency, a maximum gives the worst.

use sqlx::{Any, Row, Transaction};

use super::{EventStore, Resolution, from_i64, to_i64};
use crate::Result;

/// What one origin (the old or the new system) did in a set of operations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OriginTotals {
    /// Operations that invoked it.
    pub invoked: u64,
    /// Operations in which it failed.
    pub errors: u64,
    /// Operations that measured its latency.
    pub latency_count: u64,
    /// The sum of those latencies (ms).
    pub latency_sum_ms: f64,
    /// The longest of them (ms).
    pub latency_max_ms: f64,
}

impl OriginTotals {
    fn add(&mut self, other: &OriginTotals) {
        self.invoked = self.invoked.saturating_add(other.invoked);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency_count = self.latency_count.saturating_add(other.latency_count);
        self.latency_sum_ms += other.latency_sum_ms;
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }

    /// Counts one latency measurement (ms).
    pub fn measure(&mut self, latency_ms: f64) {
        self.latency_count = self.latency_count.saturating_add(1);
        self.latency_sum_ms += latency_ms;
        self.latency_max_ms = self.latency_max_ms.max(latency_ms);
    }
}

/// Sums over a set of migration operations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MigrationTotals {
    /// How many operations.
    pub operations: u64,
    /// The old system's part.
    pub old: OriginTotals,
    /// The new system's part.
    pub new: OriginTotals,
    /// Reads whose two results were compared.
    pub checks: u64,
    /// Of those, how many differed.
    pub inconsistent: u64,
}

impl MigrationTotals {
    /// Adds `other` in.
    pub fn add(&mut self, other: &MigrationTotals) {
        self.operations = self.operations.saturating_add(other.operations);
        self.old.add(&other.old);
        self.new.add(&other.new);
        self.checks = self.checks.saturating_add(other.checks);
        self.inconsistent = self.inconsistent.saturating_add(other.inconsistent);
    }
}

/// Migration operations of one flag, stage and operation in one bucket, to be added (when
/// written) or as stored (when read).
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationOpCount {
    /// `project/environment`.
    pub environment: String,
    /// The migration flag's key.
    pub flag: String,
    /// The bucket's width.
    pub resolution: Resolution,
    /// The bucket's start (Unix ms).
    pub bucket: i64,
    /// `read` or `write`.
    pub operation: String,
    /// The stage the flag served (`off` … `complete`).
    pub stage: String,
    /// The sums.
    pub totals: MigrationTotals,
}

const COLUMNS: &str = "operations, invoked_old, invoked_new, errors_old, errors_new, checks, \
    inconsistent, latency_old_count, latency_old_sum, latency_old_max, latency_new_count, \
    latency_new_sum, latency_new_max";

impl EventStore {
    /// Adds migration counters inside the writer's transaction.
    pub(super) async fn write_migration_ops(
        &self,
        tx: &mut Transaction<'static, Any>,
        rows: &[MigrationOpCount],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let add = |column: &str| format!("{column} = migration_ops.{column} + excluded.{column}");
        let max = |column: &str| {
            format!(
                "{column} = CASE WHEN excluded.{column} > migration_ops.{column} \
                 THEN excluded.{column} ELSE migration_ops.{column} END"
            )
        };
        let mut updates: Vec<String> = [
            "operations",
            "invoked_old",
            "invoked_new",
            "errors_old",
            "errors_new",
            "checks",
            "inconsistent",
            "latency_old_count",
            "latency_old_sum",
            "latency_new_count",
            "latency_new_sum",
        ]
        .into_iter()
        .map(add)
        .collect();
        updates.push(max("latency_old_max"));
        updates.push(max("latency_new_max"));
        let sql = self.backend.sql(&format!(
            "INSERT INTO migration_ops (environment, flag, resolution, bucket, operation, stage, {COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
             ON CONFLICT (environment, flag, resolution, bucket, operation, stage) DO UPDATE SET {}",
            updates.join(", ")
        ))
        .into_owned();
        for row in rows {
            let t = &row.totals;
            sqlx::query(&sql)
                .bind(&row.environment)
                .bind(&row.flag)
                .bind(row.resolution.code())
                .bind(row.bucket)
                .bind(&row.operation)
                .bind(&row.stage)
                .bind(to_i64(t.operations))
                .bind(to_i64(t.old.invoked))
                .bind(to_i64(t.new.invoked))
                .bind(to_i64(t.old.errors))
                .bind(to_i64(t.new.errors))
                .bind(to_i64(t.checks))
                .bind(to_i64(t.inconsistent))
                .bind(to_i64(t.old.latency_count))
                .bind(t.old.latency_sum_ms)
                .bind(t.old.latency_max_ms)
                .bind(to_i64(t.new.latency_count))
                .bind(t.new.latency_sum_ms)
                .bind(t.new.latency_max_ms)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A migration flag's operations per bucket, operation and stage in `[from, to)`, oldest
    /// first.
    pub async fn migration_series(
        &self,
        environment: &str,
        flag: &str,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<MigrationOpCount>> {
        let sql = self.backend.sql(&format!(
            "SELECT bucket, operation, stage, {COLUMNS} FROM migration_ops \
             WHERE environment = $1 AND flag = $2 AND resolution = $3 AND bucket >= $4 AND bucket < $5 \
             ORDER BY bucket, operation, stage"
        ))
        .into_owned();
        let rows = sqlx::query(&sql)
            .bind(environment)
            .bind(flag)
            .bind(resolution.code())
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        let count = |row: &sqlx::any::AnyRow, column: &str| -> Result<u64> {
            Ok(from_i64(row.try_get(column)?))
        };
        let origin = |row: &sqlx::any::AnyRow, origin: &str| -> Result<OriginTotals> {
            Ok(OriginTotals {
                invoked: count(row, &format!("invoked_{origin}"))?,
                errors: count(row, &format!("errors_{origin}"))?,
                latency_count: count(row, &format!("latency_{origin}_count"))?,
                latency_sum_ms: row.try_get(format!("latency_{origin}_sum").as_str())?,
                latency_max_ms: row.try_get(format!("latency_{origin}_max").as_str())?,
            })
        };
        rows.iter()
            .map(|row| {
                Ok(MigrationOpCount {
                    environment: environment.to_owned(),
                    flag: flag.to_owned(),
                    resolution,
                    bucket: row.try_get("bucket")?,
                    operation: row.try_get("operation")?,
                    stage: row.try_get("stage")?,
                    totals: MigrationTotals {
                        operations: count(row, "operations")?,
                        old: origin(row, "old")?,
                        new: origin(row, "new")?,
                        checks: count(row, "checks")?,
                        inconsistent: count(row, "inconsistent")?,
                    },
                })
            })
            .collect()
    }
}
