//! The events database: what SDKs reported (`ld-protocol.md` §6), aggregated for insights.
//!
//! It is a database of its own (for SQLite a second file beside the main one; for PostgreSQL
//! the same database through its own small pool and tables), written by one task in large
//! batches. The management API's commits therefore never wait behind analytics for SQLite's
//! single writer lock, and a flood of events costs the main pool no connections.
//!
//! Nothing here is a change in the sense of the main store: no versions, no audit entries.
//! Rows are counters that only grow, "last seen" times that only move forward, and samples
//! that expire.

mod experiments;
mod migration;
mod queries;

pub use experiments::{
    ExperimentWrite, ExposureRow, IterationTotals, OutcomeRow, PENDING_EVENTS, Transform,
    TransformMoments,
};
pub use migration::{MigrationOpCount, MigrationTotals, OriginTotals};

use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use crate::{Backend, Result, StoreError, migrate};

/// The width of a time bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// The bucket's width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
            Resolution::Day => 86_400_000,
        }
    }

    /// The start of the bucket holding `at` (Unix ms).
    pub fn bucket(self, at: i64) -> i64 {
        at.div_euclid(self.millis()) * self.millis()
    }

    fn code(self) -> &'static str {
        match self {
            Resolution::Minute => "m",
            Resolution::Hour => "h",
            Resolution::Day => "d",
        }
    }
}

/// Evaluations of one flag variation at one flag version in one bucket, to be added.
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationCount {
    /// `project/environment`.
    pub environment: String,
    /// The flag key.
    pub flag: String,
    /// The bucket's width.
    pub resolution: Resolution,
    /// The bucket's start (Unix ms).
    pub bucket: i64,
    /// The variation served; `None` when the SDK served the application's default.
    pub variation: Option<u32>,
    /// The flag version evaluated; `None` when the SDK did not know the flag.
    pub version: Option<u64>,
    /// The value served (JSON), as last reported.
    pub value: String,
    /// How many evaluations.
    pub count: u64,
}

/// When a flag was evaluated, to be merged into what is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagUsage {
    /// `project/environment`.
    pub environment: String,
    /// The flag key.
    pub flag: String,
    /// The first evaluation (Unix ms).
    pub first_evaluated: i64,
    /// The last evaluation (Unix ms).
    pub last_evaluated: i64,
    /// How many evaluations in all.
    pub evaluations: u64,
}

/// Evaluations of a flag by one SDK name and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagSdk {
    /// `project/environment`.
    pub environment: String,
    /// The flag key.
    pub flag: String,
    /// The SDK's name, e.g. `PythonClient`.
    pub sdk: String,
    /// Its version, e.g. `9.12.0` (empty when it did not say).
    pub sdk_version: String,
    /// When last seen (Unix ms).
    pub last_seen: i64,
    /// How many evaluations.
    pub evaluations: u64,
}

/// An SDK that reported to an environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdkReport {
    /// `project/environment`.
    pub environment: String,
    /// The SDK's name.
    pub sdk: String,
    /// Its version.
    pub sdk_version: String,
    /// A wrapper library (`X-LaunchDarkly-Wrapper`, diagnostics), `name/version` or empty.
    pub wrapper: String,
    /// What the SDK said about its platform in a diagnostic event (JSON, or empty).
    pub platform: String,
    /// When first seen (Unix ms).
    pub first_seen: i64,
    /// When last seen (Unix ms).
    pub last_seen: i64,
}

/// A context seen in events.
#[derive(Clone, Debug, PartialEq)]
pub struct SeenContext {
    /// `project/environment`.
    pub environment: String,
    /// Its kind, e.g. `user`.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Its attributes other than kind and key, private ones already removed (a JSON object).
    /// When written, `Null` means "not known" (the event named only the key) and keeps the
    /// attributes stored before.
    pub attributes: Value,
    /// The names of attributes the SDK reported as redacted (never their values).
    pub redacted: Vec<String>,
    /// When first seen (Unix ms).
    pub first_seen: i64,
    /// When last seen (Unix ms).
    pub last_seen: i64,
}

/// Custom events (`track`) of one key in one bucket, to be added.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomEventCount {
    /// `project/environment`.
    pub environment: String,
    /// The event key the application tracked.
    pub event_key: String,
    /// The bucket's width.
    pub resolution: Resolution,
    /// The bucket's start (Unix ms).
    pub bucket: i64,
    /// How many events.
    pub count: u64,
    /// How many carried a `metricValue`.
    pub metric_count: u64,
    /// The sum of their metric values.
    pub metric_sum: f64,
}

/// A full event kept as a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSample {
    /// `project/environment`.
    pub environment: String,
    /// `feature`, `debug` or `custom`.
    pub kind: String,
    /// The flag or event key.
    pub key: String,
    /// When the SDK created it, or when it arrived (Unix ms).
    pub at: i64,
    /// The event as stored (private attributes removed).
    pub body: Value,
}

/// Everything one flush of the writer adds, written in one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventWrite {
    /// Counters to add.
    pub evaluations: Vec<EvaluationCount>,
    /// First/last evaluation times to merge.
    pub usage: Vec<FlagUsage>,
    /// Flag evaluations per SDK to merge.
    pub flag_sdks: Vec<FlagSdk>,
    /// SDK reports to merge.
    pub sdks: Vec<SdkReport>,
    /// Contexts to insert or refresh (the newest attributes win).
    pub contexts: Vec<SeenContext>,
    /// Custom event counters to add.
    pub custom: Vec<CustomEventCount>,
    /// Samples to append.
    pub samples: Vec<EventSample>,
    /// Migration operation counters to add.
    pub migration_ops: Vec<MigrationOpCount>,
    /// Exposures and metric events of running experiments.
    pub experiments: ExperimentWrite,
}

impl EventWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.evaluations.is_empty()
            && self.usage.is_empty()
            && self.flag_sdks.is_empty()
            && self.sdks.is_empty()
            && self.contexts.is_empty()
            && self.custom.is_empty()
            && self.samples.is_empty()
            && self.migration_ops.is_empty()
            && self.experiments.is_empty()
    }
}

/// How long each kind of row is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Minute buckets (ms).
    pub minute_buckets: i64,
    /// Hour buckets (ms).
    pub hour_buckets: i64,
    /// Day buckets (ms).
    pub day_buckets: i64,
    /// Event samples (ms).
    pub samples: i64,
    /// At most this many samples per environment; older ones go first.
    pub max_samples_per_environment: u64,
    /// Contexts not seen for this long are forgotten (ms).
    pub contexts: i64,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: i64 = 86_400_000;
        Retention {
            minute_buckets: 2 * DAY,
            hour_buckets: 90 * DAY,
            day_buckets: 400 * DAY,
            samples: 7 * DAY,
            max_samples_per_environment: 10_000,
            contexts: 30 * DAY,
        }
    }
}

impl Retention {
    /// How long buckets of a resolution are kept (ms).
    pub fn of(&self, resolution: Resolution) -> i64 {
        match resolution {
            Resolution::Minute => self.minute_buckets,
            Resolution::Hour => self.hour_buckets,
            Resolution::Day => self.day_buckets,
        }
    }
}

/// Evaluations of a flag in one bucket for one variation, summed over flag versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesPoint {
    /// The bucket's start (Unix ms).
    pub bucket: i64,
    /// The variation, `None` for the application default.
    pub variation: Option<u32>,
    /// How many evaluations.
    pub count: u64,
}

/// Evaluations of a flag per variation over a period, summed over buckets and versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariationTotal {
    /// `project/environment`.
    pub environment: String,
    /// The flag key.
    pub flag: String,
    /// The variation, `None` for the application default.
    pub variation: Option<u32>,
    /// How many evaluations.
    pub count: u64,
}

/// A search of the contexts seen in an environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextSearch {
    /// Only this kind.
    pub kind: Option<String>,
    /// Text found in the key or in an attribute's name or value (case-insensitive).
    pub text: Option<String>,
    /// At most this many, most recently seen first.
    pub limit: u32,
}

/// What pruning removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Bucket rows (evaluations, custom events, migration operations).
    pub buckets: u64,
    /// Samples.
    pub samples: u64,
    /// Contexts.
    pub contexts: u64,
}

/// The events database.
#[derive(Debug)]
pub struct EventStore {
    pool: AnyPool,
    backend: Backend,
    /// Metric events of contexts not exposed yet, per iteration and context (`experiments.rs`).
    pending: std::sync::Mutex<experiments::Pending>,
}

/// Rows bound in one multi-row statement (7 columns × 100 stays far below SQLite's 32,766
/// parameters and PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 100;

/// `head (…), (…), … tail` with `rows` groups of `columns` numbered placeholders.
fn multi_row(head: &str, columns: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * columns * 6);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { " (" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// How long a counted payload's ID is kept (ten minutes, as the in-memory set keeps them).
const PAYLOAD_ID_RETENTION_MS: i64 = 600_000;

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_i64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn optional_index(value: i64) -> Option<u32> {
    u32::try_from(value).ok()
}

/// Escapes `%`, `_` and the escape character itself for a `LIKE … ESCAPE '\'` pattern.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl EventStore {
    /// Opens (creating if needed) the events database at `url` and brings its schema up to
    /// date. The URL forms are those of [`Store::open`](crate::Store::open); for PostgreSQL it
    /// may be the main database, whose tables do not overlap.
    pub async fn open(url: &str) -> Result<EventStore> {
        let backend = Backend::from_url(url)?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            // One writer task and the insight pages' reads.
            .max_connections(3)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    for pragma in backend.event_connection_setup() {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&backend.connect_url(url))
            .await?;
        migrate(
            &pool,
            backend,
            "event_schema_migrations",
            backend.event_migrations(),
        )
        .await?;
        Ok(EventStore {
            pool,
            backend,
            pending: std::sync::Mutex::default(),
        })
    }

    /// Closes the connections, waiting for running queries.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Adds a flush's worth of aggregated events, all or nothing.
    pub async fn write(&self, write: &EventWrite) -> Result<()> {
        if write.is_empty() {
            return Ok(());
        }
        let sql = |s: &str| self.backend.sql(s).into_owned();
        let mut tx = self.pool.begin().await?;
        let evaluation = sql(
            "INSERT INTO flag_evaluations (environment, flag, resolution, bucket, variation, version, value, count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (environment, flag, resolution, bucket, variation, version) \
             DO UPDATE SET count = flag_evaluations.count + excluded.count, value = excluded.value",
        );
        for row in &write.evaluations {
            sqlx::query(&evaluation)
                .bind(&row.environment)
                .bind(&row.flag)
                .bind(row.resolution.code())
                .bind(row.bucket)
                .bind(row.variation.map_or(-1, i64::from))
                .bind(row.version.map_or(-1, to_i64))
                .bind(&row.value)
                .bind(to_i64(row.count))
                .execute(&mut *tx)
                .await?;
        }
        let usage = sql(
            "INSERT INTO flag_usage (environment, flag, first_evaluated, last_evaluated, evaluations) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (environment, flag) DO UPDATE SET \
             first_evaluated = CASE WHEN excluded.first_evaluated < flag_usage.first_evaluated \
                 THEN excluded.first_evaluated ELSE flag_usage.first_evaluated END, \
             last_evaluated = CASE WHEN excluded.last_evaluated > flag_usage.last_evaluated \
                 THEN excluded.last_evaluated ELSE flag_usage.last_evaluated END, \
             evaluations = flag_usage.evaluations + excluded.evaluations",
        );
        for row in &write.usage {
            sqlx::query(&usage)
                .bind(&row.environment)
                .bind(&row.flag)
                .bind(row.first_evaluated)
                .bind(row.last_evaluated)
                .bind(to_i64(row.evaluations))
                .execute(&mut *tx)
                .await?;
        }
        let flag_sdk = sql(
            "INSERT INTO flag_sdks (environment, flag, sdk, sdk_version, last_seen, evaluations) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (environment, flag, sdk, sdk_version) DO UPDATE SET \
             last_seen = CASE WHEN excluded.last_seen > flag_sdks.last_seen \
                 THEN excluded.last_seen ELSE flag_sdks.last_seen END, \
             evaluations = flag_sdks.evaluations + excluded.evaluations",
        );
        for row in &write.flag_sdks {
            sqlx::query(&flag_sdk)
                .bind(&row.environment)
                .bind(&row.flag)
                .bind(&row.sdk)
                .bind(&row.sdk_version)
                .bind(row.last_seen)
                .bind(to_i64(row.evaluations))
                .execute(&mut *tx)
                .await?;
        }
        let sdk = sql(
            "INSERT INTO sdk_reports (environment, sdk, sdk_version, wrapper, platform, first_seen, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (environment, sdk, sdk_version, wrapper) DO UPDATE SET \
             platform = CASE WHEN excluded.platform = '' THEN sdk_reports.platform ELSE excluded.platform END, \
             last_seen = CASE WHEN excluded.last_seen > sdk_reports.last_seen \
                 THEN excluded.last_seen ELSE sdk_reports.last_seen END",
        );
        for row in &write.sdks {
            sqlx::query(&sdk)
                .bind(&row.environment)
                .bind(&row.sdk)
                .bind(&row.sdk_version)
                .bind(&row.wrapper)
                .bind(&row.platform)
                .bind(row.first_seen)
                .bind(row.last_seen)
                .execute(&mut *tx)
                .await?;
        }
        // Contexts are the most numerous rows of a raw-events flush: many rows per statement
        // (the aggregate holds each context once, so no statement touches a row twice, which
        // PostgreSQL would refuse).
        for chunk in write.contexts.chunks(ROWS_PER_STATEMENT) {
            let statement = sql(&multi_row(
                "INSERT INTO contexts_seen (environment, kind, key, attributes, redacted, first_seen, last_seen) VALUES",
                7,
                chunk.len(),
                "ON CONFLICT (environment, kind, key) DO UPDATE SET \
                 attributes = CASE WHEN excluded.attributes = '' THEN contexts_seen.attributes ELSE excluded.attributes END, \
                 redacted = CASE WHEN excluded.attributes = '' THEN contexts_seen.redacted ELSE excluded.redacted END, \
                 last_seen = CASE WHEN excluded.last_seen > contexts_seen.last_seen \
                     THEN excluded.last_seen ELSE contexts_seen.last_seen END",
            ));
            let mut query = sqlx::query(&statement);
            for row in chunk {
                query = query
                    .bind(&row.environment)
                    .bind(&row.kind)
                    .bind(&row.key)
                    // Unknown attributes (an event that named only the key) keep the known ones.
                    .bind(if row.attributes.is_null() {
                        String::new()
                    } else {
                        row.attributes.to_string()
                    })
                    .bind(Value::from(row.redacted.clone()).to_string())
                    .bind(row.first_seen)
                    .bind(row.last_seen);
            }
            query.execute(&mut *tx).await?;
        }
        let custom = sql(
            "INSERT INTO custom_events (environment, event_key, resolution, bucket, count, metric_count, metric_sum) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (environment, event_key, resolution, bucket) DO UPDATE SET \
             count = custom_events.count + excluded.count, \
             metric_count = custom_events.metric_count + excluded.metric_count, \
             metric_sum = custom_events.metric_sum + excluded.metric_sum",
        );
        for row in &write.custom {
            sqlx::query(&custom)
                .bind(&row.environment)
                .bind(&row.event_key)
                .bind(row.resolution.code())
                .bind(row.bucket)
                .bind(to_i64(row.count))
                .bind(to_i64(row.metric_count))
                .bind(row.metric_sum)
                .execute(&mut *tx)
                .await?;
        }
        let sample = sql(
            "INSERT INTO event_samples (environment, kind, key, at, body) VALUES ($1, $2, $3, $4, $5)",
        );
        for row in &write.samples {
            sqlx::query(&sample)
                .bind(&row.environment)
                .bind(&row.kind)
                .bind(&row.key)
                .bind(row.at)
                .bind(row.body.to_string())
                .execute(&mut *tx)
                .await?;
        }
        self.write_migration_ops(&mut tx, &write.migration_ops)
            .await?;
        self.write_experiments(&mut tx, &write.experiments).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims analytics payload IDs (`(environment, payload ID)`) as counted, at `now` (Unix
    /// ms), in one transaction; answers, for each, whether this call claimed it (`false`: some
    /// node counted it already, or it is listed twice here). Nodes racing on one ID are ordered
    /// by its primary key: exactly one claim succeeds.
    pub async fn claim_payloads(&self, ids: &[(&str, &str)], now: i64) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Many rows per statement; `RETURNING` names the rows this statement inserted, which
        // are the claims won (a conflict, with another node's claim or an earlier row of the
        // same list, inserts nothing).
        let mut won: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
        let mut tx = self.pool.begin().await?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let statement = self
                .backend
                .sql(&multi_row(
                    "INSERT INTO event_payloads (environment, id, seen_at) VALUES",
                    3,
                    chunk.len(),
                    "ON CONFLICT (environment, id) DO NOTHING RETURNING environment, id",
                ))
                .into_owned();
            let mut query = sqlx::query(&statement);
            for (environment, id) in chunk {
                query = query.bind(*environment).bind(*id).bind(now);
            }
            for row in query.fetch_all(&mut *tx).await? {
                won.insert((row.try_get("environment")?, row.try_get("id")?));
            }
        }
        tx.commit().await?;
        // A claim is this list's first mention of an ID that this call inserted.
        Ok(ids
            .iter()
            .map(|(environment, id)| won.remove(&((*environment).to_owned(), (*id).to_owned())))
            .collect())
    }

    /// Removes what is older than `retention` allows, as of `now` (Unix ms).
    pub async fn prune(&self, retention: &Retention, now: i64) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        for resolution in Resolution::ALL {
            let cutoff = now - retention.of(resolution);
            for table in ["flag_evaluations", "custom_events", "migration_ops"] {
                let sql = format!("DELETE FROM {table} WHERE resolution = $1 AND bucket < $2");
                let sql = self.backend.sql(&sql);
                pruned.buckets += sqlx::query(&sql)
                    .bind(resolution.code())
                    .bind(cutoff)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            }
        }
        let sql = self.backend.sql("DELETE FROM event_samples WHERE at < $1");
        pruned.samples += sqlx::query(&sql)
            .bind(now - retention.samples)
            .execute(&self.pool)
            .await?
            .rows_affected();
        // Per environment, keep only the newest samples. The sample ids grow with insertion,
        // so "newest" is "largest id".
        let environments = sqlx::query("SELECT DISTINCT environment FROM event_samples")
            .fetch_all(&self.pool)
            .await?;
        let trim = self.backend.sql(
            "DELETE FROM event_samples WHERE environment = $1 AND id <= \
             (SELECT id FROM event_samples WHERE environment = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        );
        for row in environments {
            let environment: String = row.try_get("environment")?;
            pruned.samples += sqlx::query(&trim)
                .bind(&environment)
                .bind(to_i64(retention.max_samples_per_environment))
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        // Payload IDs outlive any retry an SDK makes (one, a second later; §6.3) by far.
        let sql = self
            .backend
            .sql("DELETE FROM event_payloads WHERE seen_at < $1");
        sqlx::query(&sql)
            .bind(now - PAYLOAD_ID_RETENTION_MS)
            .execute(&self.pool)
            .await?;
        let sql = self
            .backend
            .sql("DELETE FROM contexts_seen WHERE last_seen < $1");
        pruned.contexts += sqlx::query(&sql)
            .bind(now - retention.contexts)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(pruned)
    }
}

/// `LIKE` pattern matching the environments of a project (`project/…`).
fn project_prefix(project: &str) -> String {
    let mut pattern = String::with_capacity(project.len() + 2);
    for c in project.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("/%");
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_down_including_before_1970() {
        assert_eq!(Resolution::Minute.bucket(119_999), 60_000);
        assert_eq!(Resolution::Hour.bucket(3_600_000), 3_600_000);
        assert_eq!(Resolution::Day.bucket(-1), -86_400_000);
    }

    #[test]
    fn multi_row_statements_number_every_placeholder() {
        assert_eq!(
            multi_row(
                "INSERT INTO t (a, b) VALUES",
                2,
                3,
                "ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("A_b%"), "%a\\_b\\%%");
        assert_eq!(project_prefix("my_app"), "my\\_app/%");
    }
}
