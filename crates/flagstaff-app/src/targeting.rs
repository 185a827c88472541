//! A flag's targeting in one environment (on/off, targets, rules, fallthrough, prerequisites),
//! and the neighbourhood validation needs: the project's variation counts, the environment's
//! prerequisite and segment graph.

use std::collections::HashMap;

use flagstaff_protocol::Segment;
use flagstaff_store::{Expect, Write};

use crate::access::{TARGETING_ACTIONS, resource};
use crate::approvals::{self, Origin};
use crate::changes::Action;
use crate::model::{FlagDefinition, Targeting, kinds};
use crate::validate::Neighbourhood;
use crate::{
    Actor, App, AppError, FlagRef, Result, Versioned, WriteMeta, body, decode, draft, env_scope,
    random_hex, validate,
};

/// The actions (LaunchDarkly's names) a change of targeting from `before` to `after` takes, one
/// per part that differs: turning a flag off takes `updateOn` and nothing else. The salt moves
/// every rollout, so changing it takes both `updateRules` and `updateFallthrough`.
pub(crate) fn targeting_actions(before: &Targeting, after: &Targeting) -> Vec<&'static str> {
    let mut actions = Vec::new();
    let mut touched = |changed: bool, action| {
        if changed && !actions.contains(&action) {
            actions.push(action);
        }
    };
    touched(before.on != after.on, "updateOn");
    touched(
        before.targets != after.targets || before.context_targets != after.context_targets,
        "updateTargets",
    );
    touched(before.rules != after.rules, "updateRules");
    touched(before.fallthrough != after.fallthrough, "updateFallthrough");
    touched(
        before.off_variation != after.off_variation,
        "updateOffVariation",
    );
    touched(
        before.prerequisites != after.prerequisites,
        "updatePrerequisites",
    );
    touched(
        before.track_events != after.track_events
            || before.track_events_fallthrough != after.track_events_fallthrough,
        "updateTrackEvents",
    );
    touched(before.salt != after.salt, "updateRules");
    touched(before.salt != after.salt, "updateFallthrough");
    actions
}

impl App {
    // ----- flags -----------------------------------------------------------------------------

    /// The number of variations of every flag of a project (the project-wide part of a
    /// [`Neighbourhood`]).
    pub(crate) async fn variation_counts(&self, project: &str) -> Result<HashMap<String, usize>> {
        let mut counts = HashMap::new();
        for doc in self.store.list(kinds::FLAG, project).await? {
            let definition: FlagDefinition = decode(&doc)?;
            counts.insert(definition.key, definition.variations.len());
        }
        Ok(counts)
    }

    pub(crate) async fn neighbourhood(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Neighbourhood> {
        let variations = self.variation_counts(project).await?;
        self.neighbourhood_with(project, environment, variations)
            .await
    }

    /// What validation needs to know about one environment, given the project's variation counts.
    pub(crate) async fn neighbourhood_with(
        &self,
        project: &str,
        environment: &str,
        variations: HashMap<String, usize>,
    ) -> Result<Neighbourhood> {
        let mut n = Neighbourhood {
            variations,
            ..Neighbourhood::default()
        };
        for doc in self
            .store
            .list(kinds::TARGETING, &env_scope(project, environment))
            .await?
        {
            let targeting: Targeting = decode(&doc)?;
            n.prerequisites.insert(
                doc.key.clone(),
                targeting.prerequisites.into_iter().map(|p| p.key).collect(),
            );
        }
        for doc in self
            .store
            .list(kinds::SEGMENT, &env_scope(project, environment))
            .await?
        {
            let segment: Segment = decode(&doc)?;
            n.segments
                .insert(doc.key.clone(), validate::referenced_segments(&segment));
        }
        Ok(n)
    }

    /// A flag's targeting in one environment.
    pub async fn targeting(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<Versioned<Targeting>> {
        actor.authorize_view(project, Some(environment))?;
        self.load(
            kinds::TARGETING,
            &env_scope(project, environment),
            key,
            || format!("flag {key:?} in environment {environment:?}"),
        )
        .await
    }

    /// Replaces a flag's targeting in one environment (writers).
    pub async fn update_targeting(
        &self,
        flag: FlagRef<'_>,
        targeting: Targeting,
        write: WriteMeta<'_>,
    ) -> Result<Versioned<Targeting>> {
        self.write_targeting(flag, targeting, write, Origin::default())
            .await
    }

    /// The one targeting write: authorized by the actions it takes, through the approval gate
    /// (`approvals.rs`), validated, committed with `origin`'s bookkeeping.
    pub(crate) async fn write_targeting(
        &self,
        flag: FlagRef<'_>,
        mut targeting: Targeting,
        write: WriteMeta<'_>,
        origin: Origin,
    ) -> Result<Versioned<Targeting>> {
        let FlagRef {
            project,
            environment,
            key,
        } = flag;
        let WriteMeta {
            actor,
            expected,
            comment,
        } = write;
        self.fence_check(actor, TARGETING_ACTIONS[0], project, Some(environment))?;
        let (env_doc, env) = self.environment_doc(project, environment).await?;
        let current: Versioned<Targeting> = self
            .load(
                kinds::TARGETING,
                &env_scope(project, environment),
                key,
                || format!("flag {key:?} in environment {environment:?}"),
            )
            .await?;
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        // The salt is kept unless the caller names another one. Changing it reshuffles every
        // rollout, so the dashboard always sends the stored one back; an explicit salt exists
        // for migrations from LaunchDarkly, whose users must keep their buckets.
        if targeting.salt.is_empty() {
            targeting.salt = current.value.salt.clone();
        }
        // Rules get stable ids (reported as `ruleId` in reasons) when the caller gives none.
        for rule in targeting.rules.iter_mut().filter(|r| r.id.is_empty()) {
            rule.id = random_hex(8);
        }
        let flag = resource::flag_in(&env, key, &self.flag_tags(project, key).await?);
        let actions = targeting_actions(&current.value, &targeting);
        if actions.is_empty() {
            actor.authorize_any(TARGETING_ACTIONS, &flag)?;
        }
        for action in actions {
            actor.authorize(action, &flag)?;
        }
        approvals::check(actor, &env_doc.approvals, &flag, &origin, "flag targeting")?;
        validate::targeting(
            key,
            &targeting,
            &self.neighbourhood(project, environment).await?,
        )?;
        let after = body(&targeting)?;
        let scope = env_scope(project, environment);
        let mut writes = vec![Write::Put {
            kind: kinds::TARGETING.into(),
            scope: scope.clone(),
            key: key.into(),
            body: after.clone(),
            expect: Expect::Version(expected),
        }];
        writes.extend(origin.extra);
        let versions = self
            .commit(
                actor,
                writes,
                draft(
                    Action::TargetingUpdate,
                    &scope,
                    key,
                    comment,
                    Some(body(&current.value)?),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: targeting,
        })
    }

    /// Applies a semantic patch (`instructions.rs`) to a flag's targeting in one environment and
    /// writes the result as [`App::update_targeting`] does, authorized by exactly the actions
    /// the result takes. With `write.expected` the patch applies only to that version; without,
    /// it applies to whatever is current, and is applied again (up to three times) when someone
    /// else writes in between: instructions say what to change, so they stay right.
    pub async fn apply_flag_instructions(
        &self,
        flag: FlagRef<'_>,
        instructions: &[serde_json::Value],
        expected: Option<u64>,
        actor: &Actor,
        comment: &str,
    ) -> Result<Versioned<Targeting>> {
        let parsed = crate::instructions::parse_flag_instructions(instructions)?;
        self.apply_parsed_flag_instructions(
            flag,
            &parsed,
            expected,
            actor,
            comment,
            Origin::default(),
        )
        .await
    }

    /// [`App::apply_flag_instructions`] with parsed instructions and an [`Origin`].
    pub(crate) async fn apply_parsed_flag_instructions(
        &self,
        flag: FlagRef<'_>,
        parsed: &[crate::instructions::FlagInstruction],
        expected: Option<u64>,
        actor: &Actor,
        comment: &str,
        origin: Origin,
    ) -> Result<Versioned<Targeting>> {
        let mut attempt = 0;
        loop {
            let current = self
                .targeting_for_change(actor, flag.project, flag.environment, flag.key)
                .await?;
            if expected.is_some_and(|v| v != current.version) {
                return Err(AppError::Conflict {
                    current: Some(current.version),
                });
            }
            let mut next = current.value.clone();
            crate::instructions::apply_to_targeting(&mut next, parsed)?;
            let write = WriteMeta {
                actor,
                expected: current.version,
                comment,
            };
            match self
                .write_targeting(flag, next, write, origin.clone())
                .await
            {
                Err(AppError::Conflict { .. }) if expected.is_none() && attempt < 2 => attempt += 1,
                other => return other,
            }
        }
    }
}
