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
    /// The anchored head (sequence number) that was checked, when the store has an audit key
    /// and an anchor exists.
    pub anchored_seq: Option<u64>,
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

/// Appends `draft` to the chain inside `tx`; returns its sequence number and hash.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    draft: &AuditDraft,
    at: i64,
) -> Result<(u64, String)> {
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
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok((seq, hash))
}

/// The shortest key accepted for anchoring (256 bits).
pub const MIN_AUDIT_KEY_BYTES: usize = 32;

/// The key that anchors the chain's head: an HMAC-SHA256 key that never enters the database.
///
/// The hash chain alone detects an edited or removed entry in the middle, but not the removal
/// of the newest entries: what remains is a valid, shorter chain. The anchor is a MAC over the
/// newest entry's sequence number and hash, rewritten in every change's transaction; without
/// the key nobody can make it name an older head, so `verify_audit` finds the missing tail.
#[derive(Clone)]
pub(crate) struct AnchorKey(Vec<u8>);

impl std::fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnchorKey(..)")
    }
}

impl AnchorKey {
    pub(crate) fn new(key: &[u8]) -> AnchorKey {
        AnchorKey(key.to_vec())
    }

    fn mac(&self, seq: u64, hash: &str) -> String {
        use hmac::Mac as _;
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"flagstaff audit anchor v1\0");
        mac.update(seq.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(hash.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn verifies(&self, seq: u64, hash: &str, mac: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let expected = self.mac(seq, hash);
        expected.len() == mac.len() && bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
    }
}

/// Records `seq`/`hash` as the anchored head inside `tx`.
pub(crate) async fn anchor(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    key: &AnchorKey,
    seq: u64,
    hash: &str,
) -> Result<()> {
    let sql = backend.sql(
        "INSERT INTO audit_anchor (id, seq, hash, mac) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
    );
    sqlx::query(&sql)
        .bind(i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq overflow".into()))?)
        .bind(hash)
        .bind(key.mac(seq, hash))
        .execute(&mut **tx)
        .await?;
    Ok(())
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
                let last = (expected_seq - 1, expected_prev);
                return self.verify_anchor(entries, last).await;
            }
            for row in &rows {
                let raw = raw_entry(row)?;
                let e = &raw.entry;
                let broken = |problem: String| {
                    Ok(AuditVerification {
                        entries,
                        first_broken: Some(e.seq),
                        problem: Some(problem),
                        anchored_seq: None,
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

    /// Checks the anchored head against the chain's last entry (`seq`, `hash`), once the chain
    /// itself verified.
    async fn verify_anchor(
        &self,
        entries: u64,
        (last_seq, last_hash): (u64, String),
    ) -> Result<AuditVerification> {
        let intact = |anchored_seq| AuditVerification {
            entries,
            first_broken: None,
            problem: None,
            anchored_seq,
        };
        let Some(key) = &self.audit_key else {
            return Ok(intact(None));
        };
        let row = sqlx::query("SELECT seq, hash, mac FROM audit_anchor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            // A key given to an existing database anchors from its next change on.
            return Ok(intact(None));
        };
        let seq = u64::try_from(row.try_get::<i64, _>("seq")?)
            .map_err(|_| StoreError::Corrupt("negative anchored seq".into()))?;
        let hash: String = row.try_get("hash")?;
        let mac: String = row.try_get("mac")?;
        let broken = |first: u64, problem: String| AuditVerification {
            entries,
            first_broken: Some(first),
            problem: Some(problem),
            anchored_seq: Some(seq),
        };
        Ok(if !key.verifies(seq, &hash, &mac) {
            broken(
                seq,
                "the anchored head does not verify with the audit key: the anchor was forged or \
                 the key is not the one the server used"
                    .into(),
            )
        } else if seq > last_seq {
            broken(
                last_seq + 1,
                format!(
                    "entries {} to {seq} were removed: the anchored head is entry {seq}, the \
                     log ends at {last_seq}",
                    last_seq + 1
                ),
            )
        } else if seq == last_seq && hash != last_hash {
            broken(
                seq,
                "the newest entry is not the one that was anchored".into(),
            )
        } else if seq < last_seq {
            broken(
                seq + 1,
                format!("entries after the anchored head {seq} were written without the audit key"),
            )
        } else {
            intact(Some(seq))
        })
    }
}
