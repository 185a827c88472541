//! Flagstaff's storage: a versioned document store with a hash-chained audit log.
//!
//! Everything Flagstaff keeps (projects, environments, flags, segments, credentials) is a JSON
//! *document* addressed by `(kind, scope, key)` and carrying a version. The domain model lives
//! above this crate (`flagstaff-app`); the store guarantees only what storage must guarantee:
//!
//! - **Atomic changes.** [`Store::commit`] applies a [`Change`] (several document writes plus one
//!   audit entry) in one transaction, or nothing of it.
//! - **Optimistic concurrency.** Every write states what it expects ([`Expect`]); a stale
//!   expectation fails the whole change with [`StoreError::Conflict`], never a silent overwrite.
//! - **Versions only grow.** Deleting keeps a tombstone, so a key re-created after deletion
//!   continues from its last version (`ld-protocol.md` §2.6: SDKs ignore updates whose version is
//!   not greater than the tombstone's).
//! - **A tamper-evident audit log.** Each entry stores the SHA-256 of the previous entry's hash
//!   and its own content; [`Store::verify_audit`] reports the first broken link.
//! - **Durability.** SQLite runs in WAL mode with `synchronous=FULL`: a commit that returned has
//!   been fsynced and survives `kill -9`. PostgreSQL commits are durable by default.
//!
//! Both backends run the same SQL through `sqlx::Any`; what differs (column types in migrations,
//! placeholders, connection pragmas, how writers are serialised) is in [`Backend`]. This is the
//! only crate that speaks SQL (ARCHITECTURE.md).
#![forbid(unsafe_code)]

mod audit;
mod backend;
mod big_segments;
mod clock;
pub mod events;
mod notify;
mod outbox;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use audit::{AuditEntry, AuditQuery, AuditVerification, GENESIS_HASH, MIN_AUDIT_KEY_BYTES};
pub use backend::Backend;
pub use big_segments::{MemberCounts, MemberList};
pub use clock::Clock;
pub use events::EventStore;
pub use outbox::{NewOutboxItem, OutboxItem, state as outbox_state};

/// A stored document.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// What it is: `project`, `environment`, `flag`, ... (chosen by the application).
    pub kind: String,
    /// Where it lives, e.g. a project key, or `project/environment`.
    pub scope: String,
    /// Its key within the scope.
    pub key: String,
    /// Its version: 1 when first written, one more on every write, delete included.
    pub version: u64,
    /// A tombstone: the document was deleted at this version.
    pub deleted: bool,
    /// The content (for a tombstone, the content it had when deleted).
    pub body: Value,
    /// When it was last written, in Unix milliseconds.
    pub updated_at: i64,
}

/// What a write expects to find, checked inside the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Anything: create or overwrite.
    Any,
    /// No live document (never written, or deleted): a create.
    Absent,
    /// A live document at exactly this version: an update by someone who read that version.
    Version(u64),
}

/// One write in a [`Change`].
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Create or replace a document.
    Put {
        /// The document's kind.
        kind: String,
        /// The document's scope.
        scope: String,
        /// The document's key.
        key: String,
        /// The new content.
        body: Value,
        /// What must be there now.
        expect: Expect,
    },
    /// Delete a live document, leaving a tombstone.
    Delete {
        /// The document's kind.
        kind: String,
        /// The document's scope.
        scope: String,
        /// The document's key.
        key: String,
        /// What must be there now (`Absent` makes no sense here and always conflicts).
        expect: Expect,
    },
}

impl Write {
    fn address(&self) -> (&str, &str, &str) {
        match self {
            Write::Put {
                kind, scope, key, ..
            }
            | Write::Delete {
                kind, scope, key, ..
            } => (kind, scope, key),
        }
    }
}

/// The audit entry a change writes, before the store numbers, timestamps and chains it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditDraft {
    /// Who made the change (a member, a token, or `system`).
    pub actor: String,
    /// What happened, e.g. `flag.create`, `flag.targeting.update`.
    pub action: String,
    /// The resource's kind.
    pub kind: String,
    /// The resource's scope.
    pub scope: String,
    /// The resource's key.
    pub key: String,
    /// Why, in the actor's words (may be empty).
    pub comment: String,
    /// The resource before the change, if it existed.
    pub before: Option<Value>,
    /// The resource after the change, if it still exists.
    pub after: Option<Value>,
}

/// Writes and the audit entry that explains them, applied together or not at all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    /// The writes, applied in order.
    pub writes: Vec<Write>,
    /// The audit entry.
    pub audit: AuditDraft,
}

/// The outcome of a committed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The new version of each write's document, in order.
    pub versions: Vec<u64>,
    /// The audit entry's sequence number.
    pub audit_seq: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's expectation did not hold; nothing was written.
    #[error("conflict on {kind} {scope}/{key}: expected {expected:?}, found version {current:?}")]
    Conflict {
        /// The document's kind.
        kind: String,
        /// The document's scope.
        scope: String,
        /// The document's key.
        key: String,
        /// What the write expected.
        expected: Expect,
        /// The live version found, if any.
        current: Option<u64>,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Stored data could not be read back (for example, a body that is not JSON).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store cannot be opened as configured.
    #[error("{0}")]
    Config(String),
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store.
#[derive(Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serialises commits from this process. SQLite has a single writer anyway, and taking it
    /// here avoids `SQLITE_BUSY` from transactions that upgrade to writing; PostgreSQL commits
    /// additionally take an advisory lock so that several nodes chain the audit log in order.
    commit_lock: tokio::sync::Mutex<()>,
    /// The newest audit sequence number this process knows of: its own commits, other nodes'
    /// commits announced by PostgreSQL notifications (`notify.rs`), and whatever
    /// [`Store::changes_after`] found. Readers of the change feed wake up on it instead of
    /// polling. A hint only: the feed itself is the truth.
    committed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// The task listening for other nodes' commits (PostgreSQL only).
    _listening: Option<notify::Listening>,
    /// What the audit log's timestamps read.
    clock: Clock,
    /// The key that anchors the audit chain's head (`audit.rs`), if the operator gave one.
    audit_key: Option<audit::AnchorKey>,
}

/// One entry of the change feed: what an audit entry says changed (its primary subject), without
/// the before and after documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The audit sequence number.
    pub seq: u64,
    /// What was done, e.g. `flag.targeting.update`.
    pub action: String,
    /// Who did it, as the audit log names them (e.g. `member:ada@example.com`).
    pub actor: String,
    /// The kind of the document the change is about.
    pub kind: String,
    /// Its scope.
    pub scope: String,
    /// Its key.
    pub key: String,
}

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn document(row: &AnyRow) -> Result<Document> {
    let body: String = row.try_get("body")?;
    let version: i64 = row.try_get("version")?;
    Ok(Document {
        kind: row.try_get("kind")?,
        scope: row.try_get("scope")?,
        key: row.try_get("key")?,
        version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("version {version}")))?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("document body: {e}")))?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub async fn open(url: &str) -> Result<Store> {
        let backend = Backend::from_url(url)?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(backend.max_connections())
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    for pragma in backend.connection_setup() {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&backend.connect_url(url))
            .await?;
        let committed = std::sync::Arc::new(tokio::sync::watch::Sender::new(0));
        let mut store = Store {
            pool,
            backend,
            commit_lock: tokio::sync::Mutex::new(()),
            committed,
            _listening: None,
            clock: Clock::system(),
            audit_key: None,
        };
        store.migrate().await?;
        if backend == Backend::Postgres {
            store._listening = Some(notify::listen(
                url.to_owned(),
                store.pool.clone(),
                &store.committed,
            ));
        }
        let head = store.head().await?;
        notify::advance(&store.committed, head);
        Ok(store)
    }

    /// The same store with audit timestamps read from `clock` (tests pass a manual one).
    pub fn with_clock(mut self, clock: Clock) -> Store {
        self.clock = clock;
        self
    }

    /// The same store anchoring the audit chain's head with `key` on every commit, and checking
    /// the anchor in [`Store::verify_audit`]. The key must stay outside the database: whoever
    /// can delete the newest entries must not be able to re-anchor the shorter chain.
    pub fn with_audit_key(mut self, key: &[u8]) -> Store {
        self.audit_key = Some(audit::AnchorKey::new(key));
        self
    }

    /// The clock the store's timestamps read; the app and delivery read the same one.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The sequence number of the newest audit entry (0 when there is none): the position of
    /// the change feed's head.
    pub async fn head(&self) -> Result<u64> {
        let head = read_head(&self.pool).await?;
        notify::advance(&self.committed, head);
        Ok(head)
    }

    /// Up to `limit` change records after sequence number `seq`, oldest first. Every commit
    /// appends exactly one audit entry, so this is a complete feed of changes; readers such as
    /// SDK delivery remember the last `seq` they applied.
    pub async fn changes_after(&self, seq: u64, limit: u32) -> Result<Vec<ChangeRecord>> {
        let sql = format!(
            "SELECT seq, action, actor, kind, scope, key FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT {}",
            limit.max(1)
        );
        let sql = self.backend.sql(&sql);
        let rows = sqlx::query(&sql)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        let records = rows
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                Ok(ChangeRecord {
                    seq: u64::try_from(seq)
                        .map_err(|_| StoreError::Corrupt(format!("audit seq {seq}")))?,
                    action: row.try_get("action")?,
                    actor: row.try_get("actor")?,
                    kind: row.try_get("kind")?,
                    scope: row.try_get("scope")?,
                    key: row.try_get("key")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(last) = records.last() {
            // A change found by reading (another node's, whose hint was missed) is news to
            // whoever stamps caches with `last_commit`.
            notify::advance(&self.committed, last.seq);
        }
        Ok(records)
    }

    /// The newest audit sequence number this store handle knows of: its own commits (changed
    /// synchronously with each), other nodes' commits once their PostgreSQL notification
    /// arrived, and whatever a read of the feed found. A cache stamped with it can tell at once
    /// that this process has written since, and within milliseconds that another node has.
    pub fn last_commit(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Watches [`Store::last_commit`]: it changes right after each commit through this handle
    /// and, on PostgreSQL, when another node's commit is announced. Pair with
    /// [`Store::changes_after`], and poll [`Store::head`] too, at a slower pace, for the
    /// announcements that were missed.
    pub fn watch_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (for `/ready`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the connections, waiting for running queries.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        let _guard = self.commit_lock.lock().await;
        migrate(
            &self.pool,
            self.backend,
            "schema_migrations",
            self.backend.migrations(),
        )
        .await
    }

    /// The document at an address, tombstones included (check [`Document::deleted`]).
    pub async fn get(&self, kind: &str, scope: &str, key: &str) -> Result<Option<Document>> {
        let sql = self.backend.sql(
            "SELECT kind, scope, key, version, deleted, body, updated_at FROM documents WHERE kind = $1 AND scope = $2 AND key = $3",
        );
        let row = sqlx::query(&sql)
            .bind(kind)
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(document).transpose()
    }

    /// The live (not deleted) document at an address.
    pub async fn get_live(&self, kind: &str, scope: &str, key: &str) -> Result<Option<Document>> {
        Ok(self.get(kind, scope, key).await?.filter(|d| !d.deleted))
    }

    /// Every live document of a kind in a scope, in key order.
    pub async fn list(&self, kind: &str, scope: &str) -> Result<Vec<Document>> {
        self.select_all(kind, scope, false).await
    }

    /// Every document of a kind in a scope including tombstones, in key order.
    pub async fn list_with_tombstones(&self, kind: &str, scope: &str) -> Result<Vec<Document>> {
        self.select_all(kind, scope, true).await
    }

    /// The live document of `kind` with `key` in whatever scope (for kinds whose keys are unique
    /// ids across scopes, such as change requests found by id alone).
    pub async fn get_by_key(&self, kind: &str, key: &str) -> Result<Option<Document>> {
        let row = sqlx::query(&self.backend.sql(
            "SELECT kind, scope, key, version, deleted, body, updated_at FROM documents WHERE kind = $1 AND key = $2 AND deleted = 0 LIMIT 1",
        ))
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(document).transpose()
    }

    /// Every live document of `kind`, whatever its scope, ordered by scope and key: for the few
    /// kinds that something follows across every environment (pending scheduled changes).
    pub async fn list_kind(&self, kind: &str) -> Result<Vec<Document>> {
        self.select_kind(kind, " AND deleted = 0").await
    }

    /// [`Store::list_kind`] with tombstones (finished scheduled changes, to prune them).
    pub async fn list_kind_with_tombstones(&self, kind: &str) -> Result<Vec<Document>> {
        self.select_kind(kind, "").await
    }

    async fn select_kind(&self, kind: &str, filter: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT kind, scope, key, version, deleted, body, updated_at FROM documents WHERE kind = $1{filter} ORDER BY scope, key"
        );
        let rows = sqlx::query(&self.backend.sql(&sql))
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document).collect()
    }

    async fn select_all(&self, kind: &str, scope: &str, tombstones: bool) -> Result<Vec<Document>> {
        let filter = if tombstones { "" } else { " AND deleted = 0" };
        let sql = format!(
            "SELECT kind, scope, key, version, deleted, body, updated_at FROM documents WHERE kind = $1 AND scope = $2{filter} ORDER BY key"
        );
        let rows = sqlx::query(&self.backend.sql(&sql))
            .bind(kind)
            .bind(scope)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document).collect()
    }

    /// Applies a change atomically: every write's expectation is checked, every write applied,
    /// and the audit entry appended to the chain, in one transaction. On any failure nothing is
    /// written.
    pub async fn commit(&self, change: Change) -> Result<Committed> {
        let mut committed = self.commit_all(vec![change]).await?;
        committed
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a commit without its change".into()))
    }

    /// Applies several changes in one transaction, each with its own audit entry, in order: all
    /// of them or none. For one action that touches many resources and must leave an entry in
    /// each one's history (an import writes one per flag and segment).
    pub async fn commit_all(&self, changes: Vec<Change>) -> Result<Vec<Committed>> {
        let _guard = self.commit_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query(&format!("SELECT pg_advisory_xact_lock({COMMIT_LOCK})"))
                .execute(&mut *tx)
                .await?;
        }
        let now = self.clock.now_millis();
        let mut committed = Vec::with_capacity(changes.len());
        for change in &changes {
            committed.push(self.apply(&mut tx, change, now).await?);
        }
        if let (Backend::Postgres, Some(last)) = (self.backend, committed.last()) {
            // Other nodes' listeners (`listen.rs`) are woken when, and only if, this commits:
            // PostgreSQL delivers a notification sent in a transaction at its commit.
            notify::send(&mut tx, last.audit_seq).await?;
        }
        tx.commit().await?;
        if let Some(last) = committed.last() {
            notify::advance(&self.committed, last.audit_seq);
        }
        Ok(committed)
    }

    /// Checks and applies one change's writes and appends its audit entry, inside `tx`.
    async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        change: &Change,
        now: i64,
    ) -> Result<Committed> {
        let mut versions = Vec::with_capacity(change.writes.len());
        let select = self.backend.sql("SELECT version, deleted, body FROM documents WHERE kind = $1 AND scope = $2 AND key = $3");
        let upsert = self.backend.sql(
            "INSERT INTO documents (kind, scope, key, version, deleted, body, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (kind, scope, key) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, \
             body = excluded.body, updated_at = excluded.updated_at",
        );
        for write in &change.writes {
            let (kind, scope, key) = write.address();
            let existing = sqlx::query(&select)
                .bind(kind)
                .bind(scope)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
            let (stored_version, live, old_body) = match &existing {
                Some(row) => {
                    let version: i64 = row.try_get("version")?;
                    let deleted: i64 = row.try_get("deleted")?;
                    let body: String = row.try_get("body")?;
                    (
                        u64::try_from(version).unwrap_or(0),
                        deleted == 0,
                        Some(body),
                    )
                }
                None => (0, false, None),
            };
            let current = live.then_some(stored_version);
            let expect = match write {
                Write::Put { expect, .. } | Write::Delete { expect, .. } => *expect,
            };
            let holds = match (expect, write) {
                (_, Write::Delete { .. }) if current.is_none() => false,
                (Expect::Any, _) => true,
                (Expect::Absent, _) => current.is_none(),
                (Expect::Version(v), _) => current == Some(v),
            };
            if !holds {
                return Err(StoreError::Conflict {
                    kind: kind.to_owned(),
                    scope: scope.to_owned(),
                    key: key.to_owned(),
                    expected: expect,
                    current,
                });
            }
            let version = stored_version + 1;
            let (deleted, body) = match write {
                Write::Put { body, .. } => (0i64, body.to_string()),
                Write::Delete { .. } => (1i64, old_body.unwrap_or_else(|| "null".to_owned())),
            };
            sqlx::query(&upsert)
                .bind(kind)
                .bind(scope)
                .bind(key)
                .bind(
                    i64::try_from(version)
                        .map_err(|_| StoreError::Corrupt("version overflow".into()))?,
                )
                .bind(deleted)
                .bind(body)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            versions.push(version);
        }
        let (audit_seq, audit_hash) = audit::append(tx, self.backend, &change.audit, now).await?;
        if let Some(key) = &self.audit_key {
            audit::anchor(tx, self.backend, key, audit_seq, &audit_hash).await?;
        }
        Ok(Committed {
            versions,
            audit_seq,
        })
    }

    /// Removes documents outright, tombstones included, without an audit entry; returns how
    /// many rows went. Only for what expires by itself and is never delivered to SDKs
    /// (sign-in sessions, expired credentials): their versions need not survive (they are
    /// never re-created under the same key), and their creation and revocation are already in
    /// the audit log. Everything else is deleted with [`Store::commit`].
    pub async fn purge(&self, kind: &str, scope: &str, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let _guard = self.commit_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let delete = self
            .backend
            .sql("DELETE FROM documents WHERE kind = $1 AND scope = $2 AND key = $3");
        let mut removed = 0;
        for key in keys {
            removed += sqlx::query(&delete)
                .bind(kind)
                .bind(scope)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(removed)
    }
}

/// The sequence number of the newest audit entry (0 when there is none).
pub(crate) async fn read_head(pool: &AnyPool) -> Result<u64> {
    let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS head FROM audit_log")
        .fetch_one(pool)
        .await?;
    let head: i64 = row.try_get("head")?;
    u64::try_from(head).map_err(|_| StoreError::Corrupt(format!("audit seq {head}")))
}

/// The PostgreSQL advisory lock that serialises commits across nodes, so that they chain the
/// audit log in order.
const COMMIT_LOCK: i64 = 7_268_023;
/// The PostgreSQL advisory lock that serialises migrations (main and events databases) across
/// nodes starting at the same moment.
const MIGRATION_LOCK: i64 = 7_268_024;

/// Brings a database's schema up to date with `migrations`, recording what was applied in
/// `table`. On PostgreSQL an advisory lock keeps several nodes starting at once from applying
/// the same migration twice, or racing on the bookkeeping table itself.
async fn migrate(
    pool: &AnyPool,
    backend: Backend,
    table: &str,
    migrations: &[(i64, &str)],
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // The lock comes first, before even the bookkeeping table is created: PostgreSQL's
    // `CREATE TABLE IF NOT EXISTS` is not safe against itself, and two nodes running it at the
    // same moment make one fail on `pg_type_typname_nsp_index`. Held to the end of the
    // transaction, it makes the whole migration of one node happen before the next node looks.
    if backend == Backend::Postgres {
        sqlx::query(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"
    ))
    .execute(&mut *tx)
    .await?;
    let applied: i64 = sqlx::query(&format!(
        "SELECT COALESCE(MAX(version), 0) AS v FROM {table}"
    ))
    .fetch_one(&mut *tx)
    .await?
    .try_get("v")?;
    for (version, sql) in migrations {
        if *version <= applied {
            continue;
        }
        for statement in sql
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.lines().all(|l| l.trim_start().starts_with("--")))
        {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query(&backend.sql(&format!(
            "INSERT INTO {table} (version, applied_at) VALUES ($1, $2)"
        )))
        .bind(*version)
        // When the migration ran, by the wall clock: a record for operators, not domain time.
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
