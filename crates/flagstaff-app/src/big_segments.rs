//! Big segments (unbounded segments, issue 22): segments whose members are too many for the
//! segment's document — up to ten million context keys of one context kind, uploaded as a list
//! and kept in their own table (`flagstaff-store` `big_segments.rs`).
//!
//! An upload is authorized once, before any of it is read ([`App::begin_big_segment_upload`]:
//! `updateIncluded` or `updateExcluded` on the segment, and the environment's approval rules),
//! then applied a batch at a time as it streams in ([`App::big_segment_batch`], each batch one
//! transaction, so memory stays bounded whatever the list's size), and closed with one audit
//! entry saying what changed ([`App::finish_big_segment_upload`]), which also gives the segment
//! a new version so that streams and the Redis store hear of it. Adding or removing a key twice
//! changes nothing, so an upload that broke off may be sent again whole.
//!
//! Evaluation for browsers, phones and OFREP looks up the context's keys once per request
//! ([`App::big_segment_membership`]); server-side SDKs read the same membership from Redis in
//! LaunchDarkly's big-segment layout (`flagstaff-delivery` `redis_store.rs`).

use flagstaff_eval::{BigSegmentMembership, Snapshot};
use flagstaff_protocol::{Context, Segment};
use flagstaff_store::{Expect, Write};
pub use flagstaff_store::{MemberCounts, MemberList};

use crate::access::resource;
use crate::approvals::{self, Origin};
use crate::changes::Action;
use crate::model::kinds;
use crate::{Actor, App, AppError, ErrorCode, Result, Versioned, body, draft, env_scope};

/// The most keys one big segment may hold (both lists together).
pub const MAX_BIG_SEGMENT_KEYS: u64 = 10_000_000;
/// The longest context key accepted in an upload, in bytes.
pub const MAX_BIG_SEGMENT_KEY_BYTES: usize = 1_024;

/// An upload authorized and under way.
#[derive(Clone, Debug)]
pub struct BigSegmentUpload {
    actor: Actor,
    project: String,
    environment: String,
    segment: String,
    list: MemberList,
    remove: bool,
    /// What the segment held before the upload.
    before: MemberCounts,
    /// Keys received so far.
    pub received: u64,
    /// Rows changed so far.
    pub changed: u64,
}

/// What an upload did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSummary {
    /// Keys read from the list (repeats included).
    pub received: u64,
    /// Keys whose membership changed.
    pub changed: u64,
    /// Keys the segment includes now.
    pub included: u64,
    /// Keys it excludes now.
    pub excluded: u64,
    /// The segment's version after the upload.
    pub version: u64,
}

/// Checks one key of a list; `line` (from 1) names it in the error.
pub fn check_big_segment_key(key: &str, line: u64) -> Result<()> {
    let field = format!("line {line}");
    if key.len() > MAX_BIG_SEGMENT_KEY_BYTES {
        return Err(AppError::invalid(
            ErrorCode::InvalidField,
            field,
            format!("a context key is at most {MAX_BIG_SEGMENT_KEY_BYTES} bytes"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(AppError::invalid(
            ErrorCode::InvalidField,
            field,
            "a context key has no control characters",
        ));
    }
    Ok(())
}

impl App {
    /// Authorizes an upload to a big segment's list: the segment must exist and be unbounded,
    /// and the actor may change that list there now.
    pub async fn begin_big_segment_upload(
        &self,
        actor: &Actor,
        (project, environment, key): (&str, &str, &str),
        list: MemberList,
        remove: bool,
    ) -> Result<BigSegmentUpload> {
        let action = match list {
            MemberList::Included => "updateIncluded",
            MemberList::Excluded => "updateExcluded",
        };
        self.fence_check(actor, action, project, Some(environment))?;
        let (env_doc, env) = self.environment_doc(project, environment).await?;
        let target = resource::segment_in(&env, key);
        actor.authorize(action, &target)?;
        approvals::check(
            actor,
            &env_doc.approvals,
            &target,
            &Origin::default(),
            "segments",
        )?;
        let scope = env_scope(project, environment);
        let segment: Versioned<Segment> = self
            .load(kinds::SEGMENT, &scope, key, || format!("segment {key:?}"))
            .await?;
        if !segment.value.unbounded {
            return Err(AppError::invalid(
                ErrorCode::InvalidField,
                "unbounded",
                "members are uploaded to big segments only (a segment created with \"unbounded\": true); a small segment lists its keys in included and excluded",
            ));
        }
        Ok(BigSegmentUpload {
            actor: actor.clone(),
            project: project.to_owned(),
            environment: environment.to_owned(),
            segment: key.to_owned(),
            list,
            remove,
            before: self
                .store
                .big_segment_counts(project, environment, key)
                .await?,
            received: 0,
            changed: 0,
        })
    }

    /// Applies one batch of an upload (one transaction). Refuses a batch that would take the
    /// segment past [`MAX_BIG_SEGMENT_KEYS`].
    pub async fn big_segment_batch(
        &self,
        upload: &mut BigSegmentUpload,
        keys: &[String],
    ) -> Result<()> {
        upload.received += keys.len() as u64;
        let held = upload.before.included + upload.before.excluded;
        if !upload.remove && held + upload.changed + keys.len() as u64 > MAX_BIG_SEGMENT_KEYS {
            // Counted before writing, with the batch's size as an upper bound, so the limit is
            // never passed; a list of exactly the limit still fits.
            let now = self
                .store
                .big_segment_counts(&upload.project, &upload.environment, &upload.segment)
                .await?;
            if now.included + now.excluded + keys.len() as u64 > MAX_BIG_SEGMENT_KEYS {
                return Err(AppError::invalid(
                    ErrorCode::InvalidField,
                    format!("line {}", upload.received),
                    format!(
                        "a big segment holds at most {MAX_BIG_SEGMENT_KEYS} keys; the batches before this one were applied"
                    ),
                ));
            }
        }
        upload.changed += self
            .store
            .big_segment_apply(
                (&upload.project, &upload.environment, &upload.segment),
                upload.list,
                upload.remove,
                keys,
            )
            .await?;
        Ok(())
    }

    /// Ends an upload with one audit entry and a new version and generation of the segment (so
    /// that streams, the Redis store and the dashboard hear of it).
    pub async fn finish_big_segment_upload(
        &self,
        upload: BigSegmentUpload,
        comment: &str,
    ) -> Result<UploadSummary> {
        let (project, environment, key) = (&upload.project, &upload.environment, &upload.segment);
        let scope = env_scope(project, environment);
        let current: Versioned<Segment> = self
            .load(kinds::SEGMENT, &scope, key, || format!("segment {key:?}"))
            .await?;
        let after = self
            .store
            .big_segment_counts(project, environment, key)
            .await?;
        let list = match upload.list {
            MemberList::Included => "included",
            MemberList::Excluded => "excluded",
        };
        let verb = if upload.remove {
            "removed from"
        } else {
            "added to"
        };
        let mut text = format!(
            "big segment upload: {} keys {verb} {list} ({} changed); now {} included, {} excluded",
            upload.received, upload.changed, after.included, after.excluded
        );
        if !comment.trim().is_empty() {
            text = format!("{}. {text}", comment.trim());
        }
        // Every upload is a new generation: the Redis big-segment store writes the members
        // under the new generation before SDKs see it, so an SDK never reads a half-copied
        // list, and removed keys leave the current generation at once.
        let mut segment = current.value.clone();
        segment.version = 0;
        segment.generation = Some(segment.generation.unwrap_or(0) + 1);
        let mut document = body(&segment)?;
        let mut before_document = document.clone();
        // The audit entry shows the counts before and after beside the segment; the stored
        // segment itself is unchanged but for its version.
        before_document["bigSegmentMembers"] = serde_json::json!({
            "included": upload.before.included, "excluded": upload.before.excluded});
        let stored = document.clone();
        document["bigSegmentMembers"] =
            serde_json::json!({"included": after.included, "excluded": after.excluded});
        let versions = self
            .commit(
                &upload.actor,
                vec![Write::Put {
                    kind: kinds::SEGMENT.into(),
                    scope: scope.clone(),
                    key: key.clone(),
                    body: stored,
                    expect: Expect::Version(current.version),
                }],
                draft(
                    Action::SegmentUpdate,
                    &scope,
                    key,
                    &text,
                    Some(before_document),
                    Some(document),
                ),
            )
            .await?;
        Ok(UploadSummary {
            received: upload.received,
            changed: upload.changed,
            included: after.included,
            excluded: after.excluded,
            version: versions[0],
        })
    }

    /// How many keys a big segment includes and excludes (readers).
    pub async fn big_segment_counts(
        &self,
        actor: &Actor,
        (project, environment, key): (&str, &str, &str),
    ) -> Result<MemberCounts> {
        actor.authorize_view(project, Some(environment))?;
        let scope = env_scope(project, environment);
        let _: Versioned<Segment> = self
            .load(kinds::SEGMENT, &scope, key, || format!("segment {key:?}"))
            .await?;
        Ok(self
            .store
            .big_segment_counts(project, environment, key)
            .await?)
    }

    /// The big-segment membership of a context in an environment, for evaluating it with
    /// `snapshot` (no actor: the caller holds an SDK credential). `None` when the environment
    /// has no big segments, so that evaluation costs nothing extra.
    pub async fn big_segment_membership(
        &self,
        project: &str,
        environment: &str,
        snapshot: &Snapshot,
        context: &Context,
    ) -> Result<Option<BigSegmentMembership>> {
        let kinds = snapshot.big_segment_kinds();
        if kinds.is_empty() {
            return Ok(None);
        }
        let mut membership = BigSegmentMembership::new();
        let mut looked_up: Vec<&str> = Vec::new();
        for kind in kinds {
            let Some(individual) = context.individual(kind) else {
                continue;
            };
            let key = individual.key();
            if looked_up.contains(&key) {
                continue;
            }
            looked_up.push(key);
            for (segment, included) in self
                .store
                .big_segment_membership(project, environment, key)
                .await?
            {
                membership.insert(key, &segment, included);
            }
        }
        Ok(Some(membership))
    }

    /// Every member of a big segment after `after`, a page at a time, with whether included
    /// (no actor: for the Redis store, which copies them for server-side SDKs).
    pub async fn big_segment_page(
        &self,
        (project, environment, key): (&str, &str, &str),
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, bool)>> {
        Ok(self
            .store
            .big_segment_page((project, environment, key), after, limit)
            .await?)
    }
}

/// Splits an uploaded list into context keys as it streams in: one key per line (`\n` or
/// `\r\n`), or CSV whose first column is the key (a `"quoted"` first column may hold commas and
/// doubled quotes). Blank lines are skipped; keys are trimmed. Holds at most one line.
#[derive(Debug, Default)]
pub struct KeyLines {
    partial: Vec<u8>,
    line: u64,
}

impl KeyLines {
    /// A splitter at the start of a list.
    pub fn new() -> KeyLines {
        KeyLines::default()
    }

    /// The number of lines read so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    /// Reads a chunk, appending the keys of the lines it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<()> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.partial);
            self.take(&line, out)?;
        }
        self.partial.extend_from_slice(rest);
        // A line longer than any key can be (plus CSV's other columns, within reason) is
        // refused before it is held whole.
        if self.partial.len() > 64 * 1024 {
            return Err(AppError::invalid(
                ErrorCode::InvalidField,
                format!("line {}", self.line + 1),
                "a line of more than 64 KiB: one context key per line",
            ));
        }
        Ok(())
    }

    /// Reads the last line (one without a final newline).
    pub fn finish(&mut self, out: &mut Vec<String>) -> Result<()> {
        let line = std::mem::take(&mut self.partial);
        if !line.is_empty() {
            self.take(&line, out)?;
        }
        Ok(())
    }

    fn take(&mut self, line: &[u8], out: &mut Vec<String>) -> Result<()> {
        self.line += 1;
        let field = || format!("line {}", self.line);
        let text = std::str::from_utf8(line)
            .map_err(|_| AppError::invalid(ErrorCode::InvalidField, field(), "not UTF-8 text"))?;
        let text = text.strip_suffix('\r').unwrap_or(text).trim();
        if text.is_empty() {
            return Ok(());
        }
        let key = if let Some(quoted) = text.strip_prefix('"') {
            // A quoted first column ends at a quote not doubled.
            let mut key = String::new();
            let mut chars = quoted.chars().peekable();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        key.push('"');
                    } else {
                        closed = true;
                        break;
                    }
                } else {
                    key.push(c);
                }
            }
            if !closed {
                return Err(AppError::invalid(
                    ErrorCode::InvalidField,
                    field(),
                    "a quoted key without its closing quote",
                ));
            }
            key
        } else {
            text.split(',').next().unwrap_or_default().trim().to_owned()
        };
        if key.is_empty() {
            return Ok(());
        }
        check_big_segment_key(&key, self.line)?;
        out.push(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Result<Vec<String>> {
        let mut lines = KeyLines::new();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.push(chunk, &mut out)?;
        }
        lines.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn lines_and_csv_split_into_keys_across_chunks() {
        assert_eq!(
            split(&[b"alice\r\nbo", b"b\n\n  carol  \nd"]).unwrap(),
            ["alice", "bob", "carol", "d"]
        );
        assert_eq!(
            split(&[b"key-1,2026-01-01,gold\n\"a, \"\"b\"\"\",x\n"]).unwrap(),
            ["key-1", "a, \"b\""]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let field = |e: AppError| match e {
            AppError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(split(&[b"ok\n\xff\xfe\n"]).unwrap_err()), "line 2");
        assert_eq!(field(split(&[b"a\nb\n\"open\n"]).unwrap_err()), "line 3");
        assert_eq!(field(split(&[b"a\x07b\n"]).unwrap_err()), "line 1");
        let long = vec![b'x'; 2_000];
        assert_eq!(field(split(&[&long]).unwrap_err()), "line 1");
        let endless = vec![b'x'; 70 * 1024];
        assert_eq!(field(split(&[&endless]).unwrap_err()), "line 1");
    }
}
