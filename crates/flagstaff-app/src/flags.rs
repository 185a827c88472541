//! Flag definitions: what a flag is in every environment of a project (key, name, variations,
//! kind, client-side availability), its archive and deletion.

use flagstaff_store::{Expect, Write};
use serde_json::Value;

use crate::access::{FLAG_ACTIONS, resource};
use crate::changes::Action;
use crate::model::{FlagDefinition, FlagKind, Targeting, kinds};
use crate::{
    Actor, App, AppError, Page, Result, Versioned, already_exists, body, decode, draft, env_scope,
    prefix_field, random_hex, validate,
};
use flagstaff_protocol::VariationOrRollout;

/// Filters for listing flags.
#[derive(Clone, Debug, Default)]
pub struct FlagFilter {
    /// Only flags with this tag.
    pub tag: Option<String>,
    /// Archived flags only (`true`), live flags only (`false`, the default).
    pub archived: bool,
    /// Only flags whose key or name contains this text (case-insensitive).
    pub search: Option<String>,
    /// Only flags whose key sorts after this one (the previous page's `next`).
    pub after: Option<String>,
    /// Page size (1 to 500; default 50).
    pub limit: Option<usize>,
}

/// The default targeting of a new flag: off, and serving the "off" value when turned on with no
/// rules, so that switching targeting on never releases a feature to everyone by accident.
pub(crate) fn default_targeting(definition: &FlagDefinition) -> Targeting {
    let off_index = match definition.kind {
        FlagKind::Boolean => definition
            .variations
            .iter()
            .position(|v| v.value == Value::Bool(false))
            .unwrap_or(0),
        FlagKind::Multivariate => 0,
    } as i64;
    Targeting {
        on: false,
        off_variation: Some(off_index),
        fallthrough: VariationOrRollout {
            variation: Some(off_index),
            rollout: None,
        },
        targets: Vec::new(),
        context_targets: Vec::new(),
        rules: Vec::new(),
        prerequisites: Vec::new(),
        track_events: false,
        track_events_fallthrough: false,
        salt: random_hex(16),
    }
}

/// The actions (LaunchDarkly's names) a change of a flag's definition from `before` to `after`
/// takes, one per part that differs.
pub(crate) fn definition_actions(
    before: &FlagDefinition,
    after: &FlagDefinition,
) -> Vec<&'static str> {
    let mut actions = Vec::new();
    let mut touched = |changed: bool, action| {
        if changed {
            actions.push(action);
        }
    };
    touched(before.name != after.name, "updateName");
    touched(before.description != after.description, "updateDescription");
    touched(before.tags != after.tags, "updateTags");
    touched(
        before.kind != after.kind || before.variations != after.variations,
        "updateFlagVariations",
    );
    touched(before.maintainer != after.maintainer, "updateMaintainer");
    touched(before.temporary != after.temporary, "updateTemporary");
    touched(
        before.client_side_availability != after.client_side_availability,
        "updateClientSideFlagAvailability",
    );
    touched(before.archived != after.archived, "updateGlobalArchived");
    actions
}

impl App {
    /// Checks `actor` may change flag `current`'s definition into `after`: every action the
    /// change takes, on the flag as it is now (its current tags), or at least one definition
    /// action when nothing differs.
    fn authorize_definition(
        &self,
        actor: &Actor,
        project: &str,
        current: &FlagDefinition,
        after: &FlagDefinition,
    ) -> Result<()> {
        let resource = resource::flag(project, &current.key, &current.tags);
        let actions = definition_actions(current, after);
        if actions.is_empty() {
            return actor.authorize_any(FLAG_ACTIONS, &resource);
        }
        actions
            .into_iter()
            .try_for_each(|action| actor.authorize(action, &resource))
    }

    /// The stored definition, read for a change (the change's own authorization decides).
    async fn definition_for_change(
        &self,
        actor: &Actor,
        action: &str,
        project: &str,
        key: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        self.fence_check(actor, action, project, None)?;
        self.load(kinds::FLAG, project, key, || format!("flag {key:?}"))
            .await
    }

    /// Creates a flag (writers), off in every environment.
    pub async fn create_flag(
        &self,
        actor: &Actor,
        project: &str,
        mut definition: FlagDefinition,
        comment: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        actor.authorize(
            "createFlag",
            &resource::flag(project, &definition.key, &definition.tags),
        )?;
        self.project(&Actor::system(), project).await?;
        definition.archived = false;
        validate::definition(&mut definition)?;
        let after = body(&definition)?;
        let mut writes = vec![Write::Put {
            kind: kinds::FLAG.into(),
            scope: project.into(),
            key: definition.key.clone(),
            body: after.clone(),
            expect: Expect::Absent,
        }];
        for env in self.store.list(kinds::ENVIRONMENT, project).await? {
            // `Any`: a flag re-created after deletion continues from its tombstone's version.
            writes.push(Write::Put {
                kind: kinds::TARGETING.into(),
                scope: env_scope(project, &env.key),
                key: definition.key.clone(),
                body: body(&default_targeting(&definition))?,
                expect: Expect::Any,
            });
        }
        let versions = self
            .commit(
                actor,
                writes,
                draft(
                    Action::FlagCreate,
                    project,
                    &definition.key,
                    comment,
                    None,
                    Some(after),
                ),
            )
            .await
            .map_err(|e| already_exists(e, format!("flag {:?}", definition.key)))?;
        Ok(Versioned {
            version: versions[0],
            value: definition,
        })
    }

    /// One flag's definition.
    pub async fn flag(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        actor.authorize_view(project, None)?;
        self.load(kinds::FLAG, project, key, || format!("flag {key:?}"))
            .await
    }

    /// Lists flags, filtered, in key order, a page at a time.
    pub async fn list_flags(
        &self,
        actor: &Actor,
        project: &str,
        filter: &FlagFilter,
    ) -> Result<Page<Versioned<FlagDefinition>>> {
        self.project(actor, project).await?;
        let limit = filter.limit.unwrap_or(50).clamp(1, 500);
        let search = filter.search.as_deref().map(str::to_lowercase);
        let mut items = Vec::new();
        let mut next = None;
        for doc in self.store.list(kinds::FLAG, project).await? {
            if filter
                .after
                .as_deref()
                .is_some_and(|after| doc.key.as_str() <= after)
            {
                continue;
            }
            let definition: FlagDefinition = decode(&doc)?;
            let matches = definition.archived == filter.archived
                && filter
                    .tag
                    .as_ref()
                    .is_none_or(|t| definition.tags.contains(t))
                && search.as_ref().is_none_or(|s| {
                    definition.key.to_lowercase().contains(s)
                        || definition.name.to_lowercase().contains(s)
                });
            if !matches {
                continue;
            }
            if items.len() == limit {
                next = items
                    .last()
                    .map(|v: &Versioned<FlagDefinition>| v.value.key.clone());
                break;
            }
            items.push(Versioned {
                version: doc.version,
                value: definition,
            });
        }
        Ok(Page { items, next })
    }

    /// Replaces a flag's definition (writers). `expected` is the version the caller read; the
    /// key cannot change, and every environment's targeting must still fit the new variations.
    pub async fn update_flag(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        mut definition: FlagDefinition,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        let current = self
            .definition_for_change(actor, "updateName", project, key)
            .await?;
        if definition.key != key {
            return Err(AppError::invalid(
                validate::codes::INVALID_FIELD,
                "key",
                "a flag's key cannot change",
            ));
        }
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        definition.archived = current.value.archived;
        self.authorize_definition(actor, project, &current.value, &definition)?;
        validate::definition(&mut definition)?;
        self.write_definition(
            actor,
            project,
            &current,
            definition,
            Action::FlagUpdate,
            comment,
        )
        .await
    }

    /// Archives or restores a flag (writers). Archived flags are hidden from SDKs.
    pub async fn set_archived(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        archived: bool,
        comment: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        let current = self
            .definition_for_change(actor, "updateGlobalArchived", project, key)
            .await?;
        let mut definition = current.value.clone();
        definition.archived = archived;
        actor.authorize(
            "updateGlobalArchived",
            &resource::flag(project, key, &current.value.tags),
        )?;
        let action = if archived {
            Action::FlagArchive
        } else {
            Action::FlagRestore
        };
        self.write_definition(actor, project, &current, definition, action, comment)
            .await
    }

    async fn write_definition(
        &self,
        actor: &Actor,
        project: &str,
        current: &Versioned<FlagDefinition>,
        definition: FlagDefinition,
        action: Action,
        comment: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        let key = definition.key.clone();
        let after = body(&definition)?;
        let mut writes = vec![Write::Put {
            kind: kinds::FLAG.into(),
            scope: project.into(),
            key: key.clone(),
            body: after.clone(),
            expect: Expect::Version(current.version),
        }];
        // Rewrite each environment's targeting so the version SDKs see grows (see model.rs).
        let mut variations = self.variation_counts(project).await?;
        variations.insert(key.clone(), definition.variations.len());
        for env in self.store.list(kinds::ENVIRONMENT, project).await? {
            let scope = env_scope(project, &env.key);
            let Some(doc) = self.store.get_live(kinds::TARGETING, &scope, &key).await? else {
                continue;
            };
            let targeting: Targeting = decode(&doc)?;
            let neighbourhood = self
                .neighbourhood_with(project, &env.key, variations.clone())
                .await?;
            validate::targeting(&key, &targeting, &neighbourhood)
                .map_err(|e| prefix_field(e, &format!("environments.{}", env.key)))?;
            writes.push(Write::Put {
                kind: kinds::TARGETING.into(),
                scope,
                key: key.clone(),
                body: doc.body.clone(),
                expect: Expect::Version(doc.version),
            });
        }
        let versions = self
            .commit(
                actor,
                writes,
                draft(
                    action,
                    project,
                    &key,
                    comment,
                    Some(body(&current.value)?),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: definition,
        })
    }

    /// Deletes a flag everywhere (writers), leaving tombstones so versions keep growing if the
    /// key is reused.
    pub async fn delete_flag(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        let current = self
            .definition_for_change(actor, "deleteFlag", project, key)
            .await?;
        actor.authorize(
            "deleteFlag",
            &resource::flag(project, key, &current.value.tags),
        )?;
        let mut writes = vec![Write::Delete {
            kind: kinds::FLAG.into(),
            scope: project.into(),
            key: key.into(),
            expect: Expect::Version(expected),
        }];
        for env in self.store.list(kinds::ENVIRONMENT, project).await? {
            let scope = env_scope(project, &env.key);
            if self
                .store
                .get_live(kinds::TARGETING, &scope, key)
                .await?
                .is_some()
            {
                writes.push(Write::Delete {
                    kind: kinds::TARGETING.into(),
                    scope,
                    key: key.into(),
                    expect: Expect::Any,
                });
            }
        }
        self.commit(
            actor,
            writes,
            draft(
                Action::FlagDelete,
                project,
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
