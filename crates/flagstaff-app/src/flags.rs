//! Flag definitions: what a flag is in every environment of a project (key, name, variations,
//! kind, client-side availability), its archive and deletion.

use flagstaff_store::{Expect, Write};
use serde_json::Value;

use crate::access::{FLAG_ACTIONS, resource};
use crate::changes::Action;
use crate::deferred::TargetKind;
use crate::error::ErrorCode;
use crate::model::{Environment, FlagDefinition, FlagKind, Targeting, kinds};
use crate::variation_map::{Use, VariationMap};
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
        // The first variation: a multivariate flag's first value, a migration flag's `off`
        // stage (everything stays on the old system until someone moves the stage on).
        FlagKind::Multivariate | FlagKind::Migration => 0,
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

/// The refusal of a change that removes variations still served, naming each one and every
/// place that serves it, so that people know what to change first.
fn variations_in_use(definition: &FlagDefinition, uses: &[(String, Use)]) -> AppError {
    let mut parts = Vec::new();
    let mut variations: Vec<usize> = uses.iter().map(|(_, u)| u.variation).collect();
    variations.dedup();
    variations.sort_unstable();
    variations.dedup();
    for v in variations {
        let label = definition
            .variations
            .get(v)
            .map(|x| match &x.name {
                Some(name) => format!("{name} ({})", x.value),
                None => x.value.to_string(),
            })
            .unwrap_or_default();
        let places: Vec<String> = uses
            .iter()
            .filter(|(_, u)| u.variation == v)
            .map(|(env, u)| format!("{} in {env}", u.place))
            .collect();
        parts.push(format!(
            "variation {} ({label}) is still served by {}",
            v + 1,
            places.join(", ")
        ));
    }
    AppError::invalid(
        ErrorCode::InUse,
        "variations",
        format!(
            "cannot remove it: {}; serve another variation there first",
            parts.join("; ")
        ),
    )
}

impl App {
    /// Refuses to move variations while a scheduled change or change request of the flag is
    /// pending in `environment`: those hold instructions that name variations by position, and
    /// would serve a different value when they apply.
    async fn refuse_pending_work(&self, project: &str, environment: &str, key: &str) -> Result<()> {
        let system = Actor::system();
        let env = (project, environment);
        let scheduled = self
            .scheduled_changes(&system, env, Some((TargetKind::Flag, key)), false)
            .await?;
        let requested = self
            .change_requests(&system, env, false)
            .await?
            .into_iter()
            .any(|r| r.value.kind == TargetKind::Flag && r.value.key == key);
        if !scheduled.is_empty() || requested {
            return Err(AppError::invalid(
                ErrorCode::InUse,
                "variations",
                format!(
                    "a scheduled change or change request of this flag is pending in \
                     {environment} and names variations by position; apply or cancel it before \
                     reordering or removing variations"
                ),
            ));
        }
        Ok(())
    }

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
    /// key cannot change. Variations are matched to the old ones by value
    /// ([`VariationMap::infer`]): reordering or removing them rewrites every environment's
    /// targeting and other flags' prerequisites in the same change, and removing one that is
    /// still served is refused (`in_use`, naming where).
    pub async fn update_flag(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        definition: FlagDefinition,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        self.update_flag_mapped(actor, project, key, definition, None, expected, comment)
            .await
    }

    /// [`App::update_flag`] with the caller saying where each new variation came from
    /// (`origins[i]` is the old position of new variation `i`, `None` for an added one), as the
    /// dashboard's settings form knows when a value was edited and moved at once.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_flag_mapped(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        mut definition: FlagDefinition,
        origins: Option<Vec<Option<usize>>>,
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
        let old = &current.value.variations;
        let map = match origins {
            Some(origins) if origins.len() != definition.variations.len() => {
                return Err(AppError::invalid(
                    validate::codes::INVALID_FIELD,
                    "variationOrigins",
                    "there must be one origin per variation",
                ));
            }
            Some(origins) => VariationMap::explicit(origins, old.len()).map_err(|message| {
                AppError::invalid(validate::codes::INVALID_FIELD, "variationOrigins", message)
            })?,
            None => VariationMap::infer(old, &definition.variations),
        };
        self.write_definition(
            actor,
            project,
            &current,
            definition,
            (Action::FlagUpdate, comment),
            &map,
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
        let same = VariationMap::infer(&definition.variations, &definition.variations);
        self.write_definition(
            actor,
            project,
            &current,
            definition,
            (action, comment),
            &same,
        )
        .await
    }

    /// Writes a new definition and rewrites every environment's targeting of the flag (so the
    /// version SDKs see grows), re-mapped through `map`, together with other flags'
    /// prerequisites on it, in one commit.
    async fn write_definition(
        &self,
        actor: &Actor,
        project: &str,
        current: &Versioned<FlagDefinition>,
        definition: FlagDefinition,
        (action, comment): (Action, &str),
        map: &VariationMap,
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
        let mut in_use = Vec::new();
        for env in self.store.list(kinds::ENVIRONMENT, project).await? {
            let environment: Environment = decode(&env)?;
            let scope = env_scope(project, &env.key);
            let mut uses = Vec::new();
            if !map.is_identity() {
                self.refuse_pending_work(project, &env.key, &key).await?;
                // Other flags' prerequisites on this one, by position.
                for doc in self.store.list(kinds::TARGETING, &scope).await? {
                    if doc.key == key {
                        continue;
                    }
                    let mut other: Targeting = decode(&doc)?;
                    if !other.prerequisites.iter().any(|p| p.key == key) {
                        continue;
                    }
                    map.remap_prerequisites(&key, &doc.key, &mut other.prerequisites, &mut uses);
                    writes.push(Write::Put {
                        kind: kinds::TARGETING.into(),
                        scope: scope.clone(),
                        key: doc.key.clone(),
                        body: body(&other)?,
                        expect: Expect::Version(doc.version),
                    });
                }
            }
            let Some(doc) = self.store.get_live(kinds::TARGETING, &scope, &key).await? else {
                in_use.extend(uses.into_iter().map(|u| (environment.name.clone(), u)));
                continue;
            };
            let before: Targeting = decode(&doc)?;
            let targeting = map.remap(&before, &mut uses);
            if !uses.is_empty() {
                // Refused below, naming every place in every environment at once.
                in_use.extend(uses.into_iter().map(|u| (environment.name.clone(), u)));
                continue;
            }
            let neighbourhood = self
                .neighbourhood_with(project, &env.key, variations.clone())
                .await?;
            validate::targeting(&key, &targeting, &neighbourhood)
                .map_err(|e| prefix_field(e, &format!("environments.{}", env.key)))?;
            writes.push(Write::Put {
                kind: kinds::TARGETING.into(),
                scope,
                key: key.clone(),
                body: if targeting == before {
                    doc.body.clone()
                } else {
                    body(&targeting)?
                },
                expect: Expect::Version(doc.version),
            });
        }
        if !in_use.is_empty() {
            return Err(variations_in_use(&current.value, &in_use));
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
