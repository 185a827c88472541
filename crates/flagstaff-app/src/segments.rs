//! Segments: reusable lists of contexts and rules, per environment.

use flagstaff_protocol::Segment;
use flagstaff_store::{Expect, Write};

use crate::access::{SEGMENT_ACTIONS, resource};
use crate::approvals::{self, Origin};
use crate::changes::Action;
use crate::model::kinds;
use crate::{
    Actor, App, Result, Versioned, already_exists, body, decode, draft, env_scope, random_hex,
    validate,
};

/// The actions (LaunchDarkly's names) a change of a segment from `before` to `after` takes.
/// Whatever else decides membership (the salt, unbounded settings) counts as `updateRules`.
pub(crate) fn segment_actions(before: &Segment, after: &Segment) -> Vec<&'static str> {
    let mut actions = Vec::new();
    if before.included != after.included || before.included_contexts != after.included_contexts {
        actions.push("updateIncluded");
    }
    if before.excluded != after.excluded || before.excluded_contexts != after.excluded_contexts {
        actions.push("updateExcluded");
    }
    if before.rules != after.rules
        || before.salt != after.salt
        || before.unbounded != after.unbounded
        || before.unbounded_context_kind != after.unbounded_context_kind
        || before.generation != after.generation
    {
        actions.push("updateRules");
    }
    if before.name != after.name {
        actions.push("updateName");
    }
    if before.description != after.description {
        actions.push("updateDescription");
    }
    actions
}

/// Keeps each key once, in the order first seen.
fn dedupe(keys: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|k| seen.insert(k.clone()));
}

impl App {
    // ----- segments --------------------------------------------------------------------------

    /// Creates or replaces a segment in one environment (writers); `expected` is `None` to
    /// create, or the version the caller read.
    pub async fn put_segment(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        segment: Segment,
        expected: Option<u64>,
        comment: &str,
    ) -> Result<Versioned<Segment>> {
        let write = crate::WriteMeta {
            actor,
            expected: expected.unwrap_or(0),
            comment,
        };
        self.write_segment(
            (project, environment),
            segment,
            expected,
            write,
            Origin::default(),
        )
        .await
    }

    /// The one segment write (see `App::write_targeting`); `expected` is `None` to create.
    pub(crate) async fn write_segment(
        &self,
        (project, environment): (&str, &str),
        mut segment: Segment,
        expected: Option<u64>,
        write: crate::WriteMeta<'_>,
        origin: Origin,
    ) -> Result<Versioned<Segment>> {
        let crate::WriteMeta { actor, comment, .. } = write;
        self.fence_check(actor, SEGMENT_ACTIONS[0], project, Some(environment))?;
        let (env_doc, env) = self.environment_doc(project, environment).await?;
        let scope = env_scope(project, environment);
        let current = self
            .store
            .get_live(kinds::SEGMENT, &scope, &segment.key)
            .await?;
        let target = resource::segment_in(&env, &segment.key);
        // As for flags: keep the salt unless the caller names one (see `update_targeting`).
        if let (Some(doc), true) = (&current, segment.salt.is_empty()) {
            segment.salt = decode::<Segment>(doc)?.salt;
        } else if segment.salt.is_empty() {
            segment.salt = random_hex(16);
        }
        // A blank name or description is no name or description.
        for text in [&mut segment.name, &mut segment.description] {
            *text = text
                .take()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty());
        }
        // A pasted list often repeats keys; each key is kept once, in its first place.
        dedupe(&mut segment.included);
        dedupe(&mut segment.excluded);
        for target in segment
            .included_contexts
            .iter_mut()
            .chain(segment.excluded_contexts.iter_mut())
        {
            dedupe(&mut target.values);
        }
        segment.version = 0;
        segment.deleted = false;
        // A big segment needs a generation for SDKs to look its members up (§3.7.1); it keeps
        // the one it has.
        if segment.unbounded && segment.generation.is_none() {
            let kept = match &current {
                Some(doc) => decode::<Segment>(doc)?.generation,
                None => None,
            };
            segment.generation = Some(kept.unwrap_or(1));
        }
        match (&current, expected) {
            (Some(doc), Some(_)) => {
                let before: Segment = decode(doc)?;
                let actions = segment_actions(&before, &segment);
                if actions.is_empty() {
                    actor.authorize_any(&SEGMENT_ACTIONS[..3], &target)?;
                }
                for action in actions {
                    actor.authorize(action, &target)?;
                }
            }
            // Creating (or a stale update of a deleted segment, which the write refuses).
            _ => actor.authorize("createSegment", &target)?,
        }
        approvals::check(actor, &env_doc.approvals, &target, &origin, "segments")?;
        validate::segment(&segment, &self.neighbourhood(project, environment).await?)?;
        let after = body(&segment)?;
        let expect = expected.map_or(Expect::Absent, Expect::Version);
        let mut writes = vec![Write::Put {
            kind: kinds::SEGMENT.into(),
            scope: scope.clone(),
            key: segment.key.clone(),
            body: after.clone(),
            expect,
        }];
        writes.extend(origin.extra);
        let action = if expected.is_some() {
            Action::SegmentUpdate
        } else {
            Action::SegmentCreate
        };
        let versions = self
            .commit(
                actor,
                writes,
                draft(
                    action,
                    &scope,
                    &segment.key,
                    comment,
                    current.map(|d| d.body),
                    Some(after),
                ),
            )
            .await
            .map_err(|e| {
                if expected.is_none() {
                    already_exists(e, format!("segment {:?}", segment.key))
                } else {
                    e
                }
            })?;
        segment.version = versions[0];
        if expected.is_none() && segment.unbounded {
            // Members a deleted segment of this key left behind (its clearing was interrupted)
            // must not become this one's.
            self.store
                .big_segment_clear(project, environment, &segment.key)
                .await?;
        }
        Ok(Versioned {
            version: versions[0],
            value: segment,
        })
    }

    /// One segment.
    pub async fn segment(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<Versioned<Segment>> {
        actor.authorize_view(project, Some(environment))?;
        let mut segment: Versioned<Segment> = self
            .load(
                kinds::SEGMENT,
                &env_scope(project, environment),
                key,
                || format!("segment {key:?}"),
            )
            .await?;
        segment.value.version = segment.version;
        Ok(segment)
    }

    /// What uses segment `key` in an environment: the flags whose rules match it and the
    /// segments whose rules include it (`segmentMatch`), each sorted by key, so that people see
    /// what a change to it affects.
    pub async fn segment_users(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<(Vec<String>, Vec<String>)> {
        actor.authorize_view(project, Some(environment))?;
        let scope = env_scope(project, environment);
        let names = |c: &flagstaff_protocol::Clause| {
            c.op == "segmentMatch" && c.values.iter().any(|v| v == key)
        };
        let mut flags = Vec::new();
        for doc in self.store.list(kinds::TARGETING, &scope).await? {
            let targeting: crate::model::Targeting = decode(&doc)?;
            if targeting.rules.iter().flat_map(|r| &r.clauses).any(names) {
                flags.push(doc.key.clone());
            }
        }
        let mut segments = Vec::new();
        for doc in self.store.list(kinds::SEGMENT, &scope).await? {
            let segment: Segment = decode(&doc)?;
            if doc.key != key && segment.rules.iter().flat_map(|r| &r.clauses).any(names) {
                segments.push(doc.key.clone());
            }
        }
        flags.sort();
        segments.sort();
        Ok((flags, segments))
    }

    /// The segments of an environment.
    pub async fn list_segments(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
    ) -> Result<Vec<Versioned<Segment>>> {
        self.environment(actor, project, environment).await?;
        self.store
            .list(kinds::SEGMENT, &env_scope(project, environment))
            .await?
            .iter()
            .map(|d| {
                let mut segment: Segment = decode(d)?;
                segment.version = d.version;
                Ok(Versioned {
                    version: d.version,
                    value: segment,
                })
            })
            .collect()
    }

    /// Deletes a segment (writers).
    pub async fn delete_segment(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        self.fence_check(actor, "deleteSegment", project, Some(environment))?;
        let (env_doc, env) = self.environment_doc(project, environment).await?;
        let target = resource::segment_in(&env, key);
        actor.authorize("deleteSegment", &target)?;
        approvals::check(
            actor,
            &env_doc.approvals,
            &target,
            &Origin::default(),
            "segments",
        )?;
        let scope = env_scope(project, environment);
        let mut current: Versioned<Segment> = self
            .load(kinds::SEGMENT, &scope, key, || format!("segment {key:?}"))
            .await?;
        current.value.version = current.version;
        let write = Write::Delete {
            kind: kinds::SEGMENT.into(),
            scope: scope.clone(),
            key: key.into(),
            expect: Expect::Version(expected),
        };
        self.commit(
            actor,
            vec![write],
            draft(
                Action::SegmentDelete,
                &scope,
                key,
                comment,
                Some(body(&current.value)?),
                None,
            ),
        )
        .await?;
        if current.value.unbounded {
            // Its members go in the background (ten million rows take a while, a batch per
            // transaction); a segment created again under this key clears what is left first.
            let (store, project, environment, key) = (
                std::sync::Arc::clone(&self.store),
                project.to_owned(),
                environment.to_owned(),
                key.to_owned(),
            );
            tokio::spawn(async move {
                if let Err(error) = store.big_segment_clear(&project, &environment, &key).await {
                    tracing::warn!(%project, %environment, segment = %key, %error, "cannot remove a deleted big segment's members; they go when the key is used again");
                }
            });
        }
        Ok(())
    }

    /// Applies a semantic patch to a segment, as [`App::apply_flag_instructions`] does to
    /// targeting.
    pub async fn apply_segment_instructions(
        &self,
        (project, environment, key): (&str, &str, &str),
        instructions: &[serde_json::Value],
        expected: Option<u64>,
        actor: &Actor,
        comment: &str,
    ) -> Result<Versioned<Segment>> {
        let parsed = crate::instructions::parse_segment_instructions(instructions)?;
        self.apply_parsed_segment_instructions(
            (project, environment, key),
            &parsed,
            expected,
            actor,
            comment,
            Origin::default(),
        )
        .await
    }

    /// [`App::apply_segment_instructions`] with parsed instructions and an [`Origin`].
    pub(crate) async fn apply_parsed_segment_instructions(
        &self,
        (project, environment, key): (&str, &str, &str),
        parsed: &[crate::instructions::SegmentInstruction],
        expected: Option<u64>,
        actor: &Actor,
        comment: &str,
        origin: Origin,
    ) -> Result<Versioned<Segment>> {
        let mut attempt = 0;
        loop {
            let current = self
                .segment_for_change(actor, project, environment, key)
                .await?;
            if expected.is_some_and(|v| v != current.version) {
                return Err(crate::AppError::Conflict {
                    current: Some(current.version),
                });
            }
            let mut next = current.value.clone();
            crate::instructions::apply_to_segment(&mut next, parsed)?;
            let write = crate::WriteMeta {
                actor,
                expected: current.version,
                comment,
            };
            match self
                .write_segment(
                    (project, environment),
                    next,
                    Some(current.version),
                    write,
                    origin.clone(),
                )
                .await
            {
                Err(crate::AppError::Conflict { .. }) if expected.is_none() && attempt < 2 => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
