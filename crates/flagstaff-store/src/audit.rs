//! The audit log: append inside a change's transaction, query, and verify the hash chain.
//!
//! Each entry's `hash` is the SHA-256, in hex, of a canonical JSON array of its fields, the
//! stored text of its before/after documents and the previous entry's hash. Editing, removing or
//! reordering any entry therefore breaks every link after it, which [`Store::verify_audit`]
//! reports. Hashing the stored text (not re-serialised JSON) keeps verification independent of
//! how a JSON library orders keys.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{AuditDraft, Backend, Result, Store, StoreError};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When, in Unix milliseconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// The resource's kind.
    pub kind: String,
    /// The resource's scope.
    pub scope: String,
    /// The resource's key.
    pub key: String,
    /// Why.
    pub comment: String,
    /// The resource before.
    pub before: Option<Value>,
    /// The resource after.
    pub after: Option<Value>,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Which entries to read. Every filter is optional; entries come in `seq` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this kind of resource.
    pub kind: Option<String>,
    /// Only resources in this scope.
    pub scope: Option<String>,
    /// Only the resource with this key.
    pub key: Option<String>,
    /// Only changes by this actor.
    pub actor: Option<String>,
    /// Only changes at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only changes before this time (Unix ms).
    pub until: Option<i64>,
    /// Only entries after this sequence number (for paging).
    pub after_seq: Option<u64>,
    /// Only entries before this sequence number (for paging backwards, newest first).
    pub before_seq: Option<u64>,
    /// Newest entries first (history pages) instead of oldest first (the feed).
    pub newest_first: bool,
    /// At most this many entries.
    pub limit: u32,
}

/// The result of verifying the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: u64,
    /// The first entry whose link is broken, if any.
    pub first_broken: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn entry_hash(
    seq: u64,
    at: i64,
    actor: &str,
    action: &str,
    kind: &str,
    scope: &str,
    key: &str,
    comment: &str,
    before: Option<&str>,
    after: Option<&str>,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([
        seq, at, actor, action, kind, scope, key, comment, before, after, prev_hash
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Appends `draft` to the chain inside `tx`; returns its sequence number.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    draft: &AuditDraft,
    at: i64,
) -> Result<u64> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let (prev_seq, prev_hash) = match last {
        Some(row) => (
            row.try_get::<i64, _>("seq")?,
            row.try_get::<String, _>("hash")?,
        ),
        None => (0, GENESIS_HASH.to_owned()),
    };
    let seq =
        u64::try_from(prev_seq).map_err(|_| StoreError::Corrupt("negative audit seq".into()))? + 1;
    let before = draft.before.as_ref().map(Value::to_string);
    let after = draft.after.as_ref().map(Value::to_string);
    let hash = entry_hash(
        seq,
        at,
        &draft.actor,
        &draft.action,
        &draft.kind,
        &draft.scope,
        &draft.key,
        &draft.comment,
        before.as_deref(),
        after.as_deref(),
        &prev_hash,
    );
    let sql = backend.sql(
        "INSERT INTO audit_log (seq, at, actor, action, kind, scope, key, comment, before, after, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    );
    sqlx::query(&sql)
        .bind(prev_seq + 1)
        .bind(at)
        .bind(&draft.actor)
        .bind(&draft.action)
        .bind(&draft.kind)
        .bind(&draft.scope)
        .bind(&draft.key)
        .bind(&draft.comment)
        .bind(before)
        .bind(after)
        .bind(prev_hash)
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    Ok(seq)
}

struct RawEntry {
    entry: AuditEntry,
    before_text: Option<String>,
    after_text: Option<String>,
}

fn raw_entry(row: &AnyRow) -> Result<RawEntry> {
    let parse = |text: &Option<String>| -> Result<Option<Value>> {
        text.as_deref()
            .map(|t| {
                serde_json::from_str(t)
                    .map_err(|e| StoreError::Corrupt(format!("audit document: {e}")))
            })
            .transpose()
    };
    let before_text: Option<String> = row.try_get("before")?;
    let after_text: Option<String> = row.try_get("after")?;
    let seq: i64 = row.try_get("seq")?;
    Ok(RawEntry {
        entry: AuditEntry {
            seq: u64::try_from(seq)
                .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            kind: row.try_get("kind")?,
            scope: row.try_get("scope")?,
            key: row.try_get("key")?,
            comment: row.try_get("comment")?,
            before: parse(&before_text)?,
            after: parse(&after_text)?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        },
        before_text,
        after_text,
    })
}

const COLUMNS: &str =
    "seq, at, actor, action, kind, scope, key, comment, before, after, prev_hash, hash";

impl Store {
    /// Reads audit entries matching `query`, oldest first unless `newest_first`.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let mut conditions = Vec::new();
        let mut text_binds: Vec<&str> = Vec::new();
        let mut number_binds: Vec<i64> = Vec::new();
        for (column, value) in [
            ("kind", &query.kind),
            ("scope", &query.scope),
            ("key", &query.key),
            ("actor", &query.actor),
        ] {
            if let Some(value) = value {
                text_binds.push(value);
                conditions.push(format!("{column} = ${}", text_binds.len()));
            }
        }
        let mut next = text_binds.len();
        for (condition, value) in [
            ("at >= ", query.since),
            ("at < ", query.until),
            (
                "seq > ",
                query
                    .after_seq
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            ),
            (
                "seq < ",
                query
                    .before_seq
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            ),
        ] {
            if let Some(value) = value {
                next += 1;
                number_binds.push(value);
                conditions.push(format!("{condition}${next}"));
            }
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log{filter} ORDER BY seq{} LIMIT {}",
            if query.newest_first { " DESC" } else { "" },
            query.limit.max(1)
        );
        let sql = self.backend.sql(&sql);
        let mut q = sqlx::query(&sql);
        for value in text_binds {
            q = q.bind(value);
        }
        for value in number_binds {
            q = q.bind(value);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| raw_entry(row).map(|raw| raw.entry))
            .collect()
    }

    /// Walks the whole chain and reports the first entry whose hash or link does not match.
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000");
        let sql = self.backend.sql(&sql);
        let mut expected_prev = GENESIS_HASH.to_owned();
        let mut expected_seq = 1u64;
        let mut entries = 0u64;
        loop {
            let rows = sqlx::query(&sql)
                .bind(i64::try_from(expected_seq - 1).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(AuditVerification {
                    entries,
                    first_broken: None,
                    problem: None,
                });
            }
            for row in &rows {
                let raw = raw_entry(row)?;
                let e = &raw.entry;
                let broken = |problem: String| {
                    Ok(AuditVerification {
                        entries,
                        first_broken: Some(e.seq),
                        problem: Some(problem),
                    })
                };
                if e.seq != expected_seq {
                    return broken(format!(
                        "expected entry {expected_seq}, found {}: entries are missing",
                        e.seq
                    ));
                }
                if e.prev_hash != expected_prev {
                    return broken("prev_hash does not match the previous entry's hash".into());
                }
                let hash = entry_hash(
                    e.seq,
                    e.at,
                    &e.actor,
                    &e.action,
                    &e.kind,
                    &e.scope,
                    &e.key,
                    &e.comment,
                    raw.before_text.as_deref(),
                    raw.after_text.as_deref(),
                    &e.prev_hash,
                );
                if hash != e.hash {
                    return broken("the entry's content does not match its hash".into());
                }
                entries += 1;
                expected_seq += 1;
                expected_prev = e.hash.clone();
            }
        }
    }
}
