//! Segments: reusable lists of contexts and rules, per environment.

use flagstaff_protocol::Segment;
use flagstaff_store::{Expect, Write};

use crate::changes::Action;
use crate::model::kinds;
use crate::{
    Actor, App, Result, Role, Versioned, already_exists, body, decode, draft, env_scope,
    random_hex, validate,
};

impl App {
    // ----- segments --------------------------------------------------------------------------

    /// Creates or replaces a segment in one environment (writers); `expected` is `None` to
    /// create, or the version the caller read.
    pub async fn put_segment(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        mut segment: Segment,
        expected: Option<u64>,
        comment: &str,
    ) -> Result<Versioned<Segment>> {
        self.authorize_environment_change(actor, project, environment)?;
        self.environment(actor, project, environment).await?;
        let scope = env_scope(project, environment);
        let current = self
            .store
            .get_live(kinds::SEGMENT, &scope, &segment.key)
            .await?;
        // As for flags: keep the salt unless the caller names one (see `update_targeting`).
        if let (Some(doc), true) = (&current, segment.salt.is_empty()) {
            segment.salt = decode::<Segment>(doc)?.salt;
        } else if segment.salt.is_empty() {
            segment.salt = random_hex(16);
        }
        segment.version = 0;
        segment.deleted = false;
        validate::segment(&segment, &self.neighbourhood(project, environment).await?)?;
        let after = body(&segment)?;
        let expect = expected.map_or(Expect::Absent, Expect::Version);
        let write = Write::Put {
            kind: kinds::SEGMENT.into(),
            scope: scope.clone(),
            key: segment.key.clone(),
            body: after.clone(),
            expect,
        };
        let action = if expected.is_some() {
            Action::SegmentUpdate
        } else {
            Action::SegmentCreate
        };
        let versions = self
            .commit(
                actor,
                vec![write],
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
        actor.require_env(Role::Reader, project, environment)?;
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
        self.authorize_environment_change(actor, project, environment)?;
        let current = self.segment(actor, project, environment, key).await?;
        let scope = env_scope(project, environment);
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
        Ok(())
    }
}
