//! Import of LaunchDarkly flag data into one environment: the migration path.

use flagstaff_protocol::FlagData;
use flagstaff_store::{Expect, Write};
use serde::Serialize;
use serde_json::json;

use crate::changes::Action;
use crate::flags::default_targeting;
use crate::model::{self, FlagDefinition, FlagKind, Targeting, kinds};
use crate::{Actor, App, AppError, Result, body, decode, draft, env_scope, random_hex, validate};

/// What an import wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Flags imported (created or replaced).
    pub flags: usize,
    /// Segments imported (created or replaced).
    pub segments: usize,
}

impl App {
    // ----- migration -------------------------------------------------------------------------

    /// Imports LaunchDarkly flag data (what its SDKs receive: `{"flags", "segments"}`) into one
    /// environment, in one transaction. This is the migration path: salts, rule ids and targets
    /// are kept, so every context keeps its variation and its bucket.
    ///
    /// Every flag and segment the import changes gets its own audit entry with its before and
    /// after (`flag.create` for a flag new to the project, `flag.targeting.update` for its
    /// targeting here, `segment.create`/`segment.update`), so each one's history shows the
    /// import and can restore what was there before; one `environment.import` entry closes the
    /// transaction with the keys it changed. What is already exactly as imported is left alone.
    ///
    /// Import accepts what LaunchDarkly's evaluators accept, which is more than the flag and
    /// segment endpoints do: a malformed clause value, an unknown prerequisite or an invalid
    /// attribute reference evaluates (as a non-match, `PREREQUISITE_FAILED` or
    /// `MALFORMED_FLAG`, exactly as in LaunchDarkly) and is kept so that results do not change
    /// on migration; the regular endpoints then ask for it to be fixed at the next edit.
    /// A flag new to the project gets a multivariate definition with the imported variations and
    /// is off in the project's other environments; an existing flag must have the same
    /// variations (they are shared by every environment).
    pub async fn import_flag_data(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        data: FlagData,
        comment: &str,
    ) -> Result<ImportSummary> {
        self.authorize_import(actor, project, environment).await?;
        // Every flag and segment the import changes is also authorized as its own change would
        // be, so that an import cannot do what the actor's roles deny one change at a time
        // (a role denying `updateRules` on flags tagged `payments` holds here too).
        let env_resource = self.environment_resource(project, environment).await?;
        let scope = env_scope(project, environment);
        let environments = self.store.list(kinds::ENVIRONMENT, project).await?;
        let comment = if comment.trim().is_empty() {
            "imported from LaunchDarkly flag data".to_owned()
        } else {
            comment.to_owned()
        };
        let comment = comment.as_str();
        let mut changes: Vec<(Vec<Write>, flagstaff_store::AuditDraft)> = Vec::new();
        let (mut changed_flags, mut changed_segments) = (Vec::new(), Vec::new());
        for (key, flag) in &data.flags {
            validate::key(&format!("flags.{key}"), key)?;
            let variations: Vec<model::Variation> = flag
                .variations
                .iter()
                .map(|value| model::Variation {
                    value: value.clone(),
                    name: None,
                    description: None,
                })
                .collect();
            let tags = match self.store.get_live(kinds::FLAG, project, key).await? {
                Some(doc) => {
                    let existing: FlagDefinition = decode(&doc)?;
                    let same = existing.variations.len() == variations.len()
                        && existing
                            .variations
                            .iter()
                            .zip(&variations)
                            .all(|(a, b)| a.value == b.value);
                    if !same {
                        return Err(AppError::invalid(
                            validate::codes::INVALID_FIELD,
                            format!("flags.{key}.variations"),
                            "the project already has this flag with other variations; variations are shared by all environments",
                        ));
                    }
                    existing.tags
                }
                None => {
                    // A LaunchDarkly migration flag stays one, so that SDK migrators read it
                    // as before (its variations are the six stages).
                    let stages = variations
                        .iter()
                        .map(|v| v.value.as_str())
                        .eq(flagstaff_protocol::MIGRATION_STAGES.map(Some));
                    let migration = flag.migration.filter(|_| stages).map(|m| {
                        crate::model::MigrationSettings {
                            check_ratio: m.check_ratio.unwrap_or(1),
                        }
                    });
                    let definition = FlagDefinition {
                        key: key.clone(),
                        name: key.clone(),
                        description: String::new(),
                        tags: vec!["imported".into()],
                        kind: if migration.is_some() {
                            FlagKind::Migration
                        } else {
                            FlagKind::Multivariate
                        },
                        variations,
                        temporary: true,
                        maintainer: None,
                        // LaunchDarkly's default when the object is absent: mobile yes,
                        // browsers as `clientSide` says.
                        client_side_availability: flag.client_side_availability.unwrap_or(
                            flagstaff_protocol::ClientSideAvailability {
                                using_mobile_key: true,
                                using_environment_id: flag.client_side,
                            },
                        ),
                        archived: false,
                        migration,
                    };
                    let after = body(&definition)?;
                    let mut writes = vec![Write::Put {
                        kind: kinds::FLAG.into(),
                        scope: project.into(),
                        key: key.clone(),
                        body: after.clone(),
                        expect: Expect::Absent,
                    }];
                    for env in environments.iter().filter(|e| e.key != environment) {
                        writes.push(Write::Put {
                            kind: kinds::TARGETING.into(),
                            scope: env_scope(project, &env.key),
                            key: key.clone(),
                            body: body(&default_targeting(&definition))?,
                            expect: Expect::Any,
                        });
                    }
                    actor.authorize(
                        "createFlag",
                        &crate::access::resource::flag(project, key, &definition.tags),
                    )?;
                    let entry = draft(Action::FlagCreate, project, key, comment, None, Some(after));
                    changes.push((writes, entry));
                    definition.tags
                }
            };
            let before = self
                .store
                .get_live(kinds::TARGETING, &scope, key)
                .await?
                .map(|doc| doc.body);
            let targeting = Targeting {
                on: flag.on,
                off_variation: flag.off_variation,
                fallthrough: flag.fallthrough.clone(),
                targets: flag.targets.clone(),
                context_targets: flag.context_targets.clone(),
                rules: flag.rules.clone(),
                prerequisites: flag.prerequisites.clone(),
                track_events: flag.track_events,
                track_events_fallthrough: flag.track_events_fallthrough,
                salt: salt_for(&flag.salt, before.as_ref()),
            };
            let after = body(&targeting)?;
            if before.as_ref() == Some(&after) {
                continue;
            }
            if let Some(before) = &before {
                let before: Targeting = serde_json::from_value(before.clone()).map_err(|e| {
                    AppError::Store(flagstaff_store::StoreError::Corrupt(e.to_string()))
                })?;
                let flag_resource = crate::access::resource::flag_in(&env_resource, key, &tags);
                for action in crate::targeting::targeting_actions(&before, &targeting) {
                    actor.authorize(action, &flag_resource)?;
                }
            }
            let write = Write::Put {
                kind: kinds::TARGETING.into(),
                scope: scope.clone(),
                key: key.clone(),
                body: after.clone(),
                expect: Expect::Any,
            };
            let entry = draft(
                Action::TargetingUpdate,
                &scope,
                key,
                comment,
                before,
                Some(after),
            );
            changes.push((vec![write], entry));
            changed_flags.push(key.clone());
        }
        for (key, segment) in &data.segments {
            validate::key(&format!("segments.{key}"), key)?;
            let mut segment = segment.clone();
            segment.key = key.clone();
            segment.version = 0;
            segment.deleted = false;
            let before = self
                .store
                .get_live(kinds::SEGMENT, &scope, key)
                .await?
                .map(|doc| doc.body);
            segment.salt = salt_for(&segment.salt, before.as_ref());
            let known: Option<flagstaff_protocol::Segment> = before
                .as_ref()
                .map(|before| serde_json::from_value(before.clone()))
                .transpose()
                .map_err(|e| {
                    AppError::Store(flagstaff_store::StoreError::Corrupt(e.to_string()))
                })?;
            // SDK data has no names or descriptions: a re-import keeps the ones people gave.
            if let Some(known) = &known {
                segment.name = segment.name.take().or_else(|| known.name.clone());
                segment.description = segment
                    .description
                    .take()
                    .or_else(|| known.description.clone());
            }
            let after = body(&segment)?;
            if before.as_ref() == Some(&after) {
                continue;
            }
            let segment_resource = crate::access::resource::segment_in(&env_resource, key);
            match &known {
                Some(before) => {
                    for action in crate::segments::segment_actions(before, &segment) {
                        actor.authorize(action, &segment_resource)?;
                    }
                }
                None => actor.authorize("createSegment", &segment_resource)?,
            }
            let action = if before.is_some() {
                Action::SegmentUpdate
            } else {
                Action::SegmentCreate
            };
            let write = Write::Put {
                kind: kinds::SEGMENT.into(),
                scope: scope.clone(),
                key: key.clone(),
                body: after.clone(),
                expect: Expect::Any,
            };
            changes.push((
                vec![write],
                draft(action, &scope, key, comment, before, Some(after)),
            ));
            changed_segments.push(key.clone());
        }
        let summary = ImportSummary {
            flags: data.flags.len(),
            segments: data.segments.len(),
        };
        // The closing entry: what changed, for the environment's history, and the signal for
        // delivery to reload the environment at once.
        changes.push((
            Vec::new(),
            draft(
                Action::EnvironmentImport,
                project,
                environment,
                comment,
                None,
                Some(json!({"flags": changed_flags, "segments": changed_segments})),
            ),
        ));
        self.commit_all(actor, changes).await?;
        Ok(summary)
    }
}

/// The salt to store: the imported one; without one, the salt already stored here (so that
/// importing the same data again neither moves contexts between rollout buckets nor counts as
/// a change); a new random one only for something new.
fn salt_for(imported: &str, stored: Option<&serde_json::Value>) -> String {
    if !imported.is_empty() {
        return imported.to_owned();
    }
    stored
        .and_then(|body| body.get("salt"))
        .and_then(serde_json::Value::as_str)
        .filter(|salt| !salt.is_empty())
        .map_or_else(|| random_hex(16), str::to_owned)
}
