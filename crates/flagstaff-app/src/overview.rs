//! Read models for people: a project's flags with their state in every environment at once,
//! the check behind "review before saving", and whether anyone can sign in yet.
//!
//! The flag list of the dashboard shows each flag's on/off state in every environment. Reading
//! flag by flag would cost one query per flag and environment; [`App::flag_overview`] reads the
//! project's definitions once and each environment's targeting once, which keeps the page well
//! inside its 50 ms budget with 1,000 flags (BENCHMARKS.md, "Dashboard").

use std::collections::HashMap;

use serde::Serialize;

use crate::access::Actor;
use crate::error::Result;
use flagstaff_store::Document;

use crate::model::merge_flag;
use crate::model::{Environment, FlagDefinition, Targeting, kinds};
use crate::{App, Versioned, decode, env_scope, validate};
use flagstaff_protocol::{FlagData, Segment};

/// One environment's state of a flag.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagInEnvironment {
    /// Whether targeting is on.
    pub on: bool,
    /// The targeting's version.
    pub version: u64,
    /// When the targeting last changed (Unix ms).
    pub updated_at: i64,
    /// Whether anything beyond on/off is set: targets, rules, prerequisites or a rollout.
    pub targeted: bool,
}

/// The overview's state of one targeting document. Only a few fields are needed: they are read
/// from the document rather than decoding every rule of every flag.
fn state_of(doc: &Document) -> FlagInEnvironment {
    let body = &doc.body;
    let non_empty = |field: &str| {
        body.get(field)
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    let targeted = non_empty("targets")
        || non_empty("contextTargets")
        || non_empty("rules")
        || non_empty("prerequisites")
        || body
            .get("fallthrough")
            .and_then(|f| f.get("rollout"))
            .is_some_and(|r| !r.is_null());
    FlagInEnvironment {
        on: body.get("on").and_then(serde_json::Value::as_bool) == Some(true),
        version: doc.version,
        updated_at: doc.updated_at,
        targeted,
    }
}

fn row_of(
    definition: FlagDefinition,
    doc: &Document,
    environments: Vec<Option<FlagInEnvironment>>,
) -> FlagRow {
    let updated_at = environments
        .iter()
        .flatten()
        .map(|s| s.updated_at)
        .fold(doc.updated_at, i64::max);
    FlagRow {
        definition,
        version: doc.version,
        updated_at,
        environments,
    }
}

/// The overview with only the environments in `visible`.
fn restrict(overview: &FlagOverview, visible: &[String]) -> FlagOverview {
    let keep: Vec<usize> = overview
        .environments
        .iter()
        .enumerate()
        .filter(|(_, e)| visible.contains(&e.key))
        .map(|(i, _)| i)
        .collect();
    FlagOverview {
        environments: keep
            .iter()
            .map(|&i| overview.environments[i].clone())
            .collect(),
        flags: overview
            .flags
            .iter()
            .map(|row| FlagRow {
                definition: row.definition.clone(),
                version: row.version,
                updated_at: row.updated_at,
                environments: keep.iter().map(|&i| row.environments[i].clone()).collect(),
            })
            .collect(),
    }
}

/// A flag with its state in every environment of its project.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagRow {
    /// The definition.
    pub definition: FlagDefinition,
    /// The definition's version.
    pub version: u64,
    /// The latest change to the definition or any environment's targeting (Unix ms).
    pub updated_at: i64,
    /// The state per environment, in the order of [`FlagOverview::environments`].
    pub environments: Vec<Option<FlagInEnvironment>>,
}

/// Every flag of a project (archived ones included) with its state per environment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagOverview {
    /// The environments the actor may see, in key order.
    pub environments: Vec<Environment>,
    /// The flags, in key order.
    pub flags: Vec<FlagRow>,
}

/// A project's overview for every environment, as of a change-feed position.
#[derive(Debug)]
pub(crate) struct Cached {
    seq: u64,
    overview: FlagOverview,
    /// Each environment's targeting (aligned with `overview.environments`), with versions:
    /// what "test a context" evaluates, without reading the environment again.
    targeting: Vec<HashMap<String, (u64, Targeting)>>,
}

/// How many changes a cached overview follows one by one before it is simply rebuilt.
const MAX_INCREMENTAL: u32 = 200;

impl App {
    /// Every flag of a project with its state in each environment the actor may see.
    ///
    /// Reading 1,000 flags and their targeting in two environments costs about 50 ms on SQLite,
    /// the whole page budget. The overview is therefore cached per project at a change-feed
    /// position: a request reads the feed's head (one indexed query, which also sees other
    /// nodes' commits) and applies only the changes since, re-reading the few documents they
    /// name. Environment changes rebuild it.
    pub async fn flag_overview(&self, actor: &Actor, project: &str) -> Result<FlagOverview> {
        self.project(actor, project).await?;
        let visible: Vec<String> = self
            .list_environments(actor, project)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect();
        self.with_cache(project, |cached| restrict(&cached.overview, &visible))
            .await
    }

    /// The environment's flag data (as SDKs receive it) from the cache: definitions and
    /// targeting kept current by the change feed, segments read now. For "test a context".
    pub(crate) async fn cached_flag_data(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<FlagData> {
        let mut data = self
            .with_cache(project, |cached| {
                let mut data = FlagData::default();
                let Some(index) = cached
                    .overview
                    .environments
                    .iter()
                    .position(|e| e.key == environment)
                else {
                    return data;
                };
                for row in cached
                    .overview
                    .flags
                    .iter()
                    .filter(|r| !r.definition.archived)
                {
                    if let Some((version, targeting)) =
                        cached.targeting[index].get(&row.definition.key)
                    {
                        data.flags.insert(
                            row.definition.key.clone(),
                            merge_flag(&row.definition, targeting, *version),
                        );
                    }
                }
                data
            })
            .await?;
        for doc in self
            .store
            .list(kinds::SEGMENT, &env_scope(project, environment))
            .await?
        {
            let mut segment: Segment = decode(&doc)?;
            segment.version = doc.version;
            data.segments.insert(doc.key.clone(), segment);
        }
        Ok(data)
    }

    /// Runs `f` on the project's cache brought up to the change feed's head.
    async fn with_cache<R>(&self, project: &str, f: impl FnOnce(&Cached) -> R) -> Result<R> {
        let head = self.store.head().await?;
        // The entry is taken out while it is brought up to date (no lock across an await);
        // two requests at once may both rebuild, which costs time, never correctness.
        let taken = self
            .overviews
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(project);
        let fresh = match taken {
            Some(cached) if cached.seq == head => cached,
            Some(cached) => match self.follow(project, cached, head).await? {
                Some(updated) => updated,
                None => self.build_overview(project, head).await?,
            },
            None => self.build_overview(project, head).await?,
        };
        let result = f(&fresh);
        let mut cache = self
            .overviews
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.get(project).is_none_or(|other| other.seq < fresh.seq) {
            cache.insert(project.to_owned(), fresh);
        }
        Ok(result)
    }

    /// Brings a cached overview from its position to `head`, or `None` when it should be
    /// rebuilt (too many changes, or a change to environments).
    async fn follow(&self, project: &str, mut cached: Cached, head: u64) -> Result<Option<Cached>> {
        let changes = self
            .store
            .changes_after(cached.seq, MAX_INCREMENTAL + 1)
            .await?;
        if changes.len() > MAX_INCREMENTAL as usize || changes.last().map(|c| c.seq) != Some(head) {
            return Ok(None);
        }
        let prefix = format!("{project}/");
        for change in &changes {
            let ours = change.scope == project || change.scope.starts_with(&prefix);
            if !ours {
                continue;
            }
            match change.kind.as_str() {
                kinds::FLAG => {
                    // A definition change rewrites every environment's targeting too.
                    self.refresh_row(project, &mut cached, &change.key).await?;
                }
                kinds::TARGETING => {
                    self.refresh_row(project, &mut cached, &change.key).await?;
                }
                kinds::SEGMENT => {}
                _ => return Ok(None),
            }
        }
        cached.seq = head;
        Ok(Some(cached))
    }

    /// Re-reads one flag's definition and targeting into the overview (or removes it).
    async fn refresh_row(&self, project: &str, cached: &mut Cached, key: &str) -> Result<()> {
        let position = cached
            .overview
            .flags
            .binary_search_by(|r| r.definition.key.as_str().cmp(key));
        let Some(doc) = self.store.get_live(kinds::FLAG, project, key).await? else {
            if let Ok(i) = position {
                cached.overview.flags.remove(i);
            }
            for by_key in &mut cached.targeting {
                by_key.remove(key);
            }
            return Ok(());
        };
        let mut environments = Vec::with_capacity(cached.overview.environments.len());
        for (i, environment) in cached.overview.environments.iter().enumerate() {
            let targeting = self
                .store
                .get_live(kinds::TARGETING, &env_scope(project, &environment.key), key)
                .await?;
            environments.push(targeting.as_ref().map(state_of));
            match targeting {
                Some(doc) => {
                    cached.targeting[i].insert(key.to_owned(), (doc.version, decode(&doc)?));
                }
                None => {
                    cached.targeting[i].remove(key);
                }
            }
        }
        let row = row_of(decode(&doc)?, &doc, environments);
        match position {
            Ok(i) => cached.overview.flags[i] = row,
            Err(i) => cached.overview.flags.insert(i, row),
        }
        Ok(())
    }

    /// Reads a project's overview for every environment.
    async fn build_overview(&self, project: &str, seq: u64) -> Result<Cached> {
        let environments: Vec<Environment> =
            self.list_environments(&Actor::system(), project).await?;
        let mut states: Vec<HashMap<String, FlagInEnvironment>> = Vec::new();
        let mut targeting = Vec::new();
        for environment in &environments {
            let mut by_key = HashMap::new();
            let mut full = HashMap::new();
            for doc in self
                .store
                .list(kinds::TARGETING, &env_scope(project, &environment.key))
                .await?
            {
                by_key.insert(doc.key.clone(), state_of(&doc));
                full.insert(doc.key.clone(), (doc.version, decode::<Targeting>(&doc)?));
            }
            states.push(by_key);
            targeting.push(full);
        }
        let mut flags = Vec::new();
        for doc in self.store.list(kinds::FLAG, project).await? {
            let per_environment: Vec<Option<FlagInEnvironment>> = states
                .iter_mut()
                .map(|by_key| by_key.remove(&doc.key))
                .collect();
            flags.push(row_of(decode(&doc)?, &doc, per_environment));
        }
        Ok(Cached {
            seq,
            overview: FlagOverview {
                environments,
                flags,
            },
            targeting,
        })
    }

    /// Checks a proposed targeting as [`App::update_targeting`] would, without writing it: the
    /// dashboard's review step shows problems before anyone is asked to confirm.
    pub async fn check_targeting(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
        targeting: &Targeting,
    ) -> Result<()> {
        self.authorize_targeting_change(actor, project, environment, key)
            .await?;
        self.targeting(actor, project, environment, key).await?;
        validate::targeting(
            key,
            targeting,
            &self.neighbourhood(project, environment).await?,
        )
    }

    /// Whether any member exists. Until one does, the dashboard offers its first-run page.
    pub async fn has_members(&self) -> Result<bool> {
        Ok(!self.store.list(kinds::MEMBER, "").await?.is_empty())
    }

    /// The segments of an environment with versions, for pickers (key order).
    pub async fn segment_keys(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
    ) -> Result<Vec<String>> {
        Ok(self
            .list_segments(actor, project, environment)
            .await?
            .into_iter()
            .map(|s: Versioned<flagstaff_protocol::Segment>| s.value.key)
            .collect())
    }
}
