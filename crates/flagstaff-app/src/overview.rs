//! Read models for people: a project's flags with their state in every environment at once,
//! the check behind "review before saving", and whether anyone can sign in yet.
//!
//! The flag list of the dashboard shows each flag's on/off state in every environment. Reading
//! flag by flag would cost one query per flag and environment; [`App::flag_overview`] reads the
//! project's definitions once and each environment's targeting once, which keeps the page well
//! inside its 50 ms budget with 1,000 flags (BENCHMARKS.md, "Dashboard").

use std::collections::HashMap;

use serde::Serialize;

use crate::access::{Actor, Role};
use crate::error::Result;
use crate::model::{Environment, FlagDefinition, Targeting, kinds};
use crate::{App, Versioned, decode, env_scope, validate};

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

impl App {
    /// Every flag of a project with its state in each environment the actor may see.
    pub async fn flag_overview(&self, actor: &Actor, project: &str) -> Result<FlagOverview> {
        self.project(actor, project).await?;
        let environments: Vec<Environment> = self.list_environments(actor, project).await?;
        let mut states: Vec<HashMap<String, FlagInEnvironment>> = Vec::new();
        for environment in &environments {
            let mut by_key = HashMap::new();
            for doc in self
                .store
                .list(kinds::TARGETING, &env_scope(project, &environment.key))
                .await?
            {
                let targeting: Targeting = decode(&doc)?;
                let targeted = !targeting.targets.is_empty()
                    || !targeting.context_targets.is_empty()
                    || !targeting.rules.is_empty()
                    || !targeting.prerequisites.is_empty()
                    || targeting.fallthrough.rollout.is_some();
                by_key.insert(
                    doc.key.clone(),
                    FlagInEnvironment {
                        on: targeting.on,
                        version: doc.version,
                        updated_at: doc.updated_at,
                        targeted,
                    },
                );
            }
            states.push(by_key);
        }
        let mut flags = Vec::new();
        for doc in self.store.list(kinds::FLAG, project).await? {
            let definition: FlagDefinition = decode(&doc)?;
            let per_environment: Vec<Option<FlagInEnvironment>> = states
                .iter_mut()
                .map(|by_key| by_key.remove(&doc.key))
                .collect();
            let updated_at = per_environment
                .iter()
                .flatten()
                .map(|s| s.updated_at)
                .fold(doc.updated_at, i64::max);
            flags.push(FlagRow {
                definition,
                version: doc.version,
                updated_at,
                environments: per_environment,
            });
        }
        Ok(FlagOverview {
            environments,
            flags,
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
        actor.require_env(Role::Writer, project, environment)?;
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

impl App {
    /// Every flag definition of a project (archived ones included), in key order: what pickers
    /// such as "prerequisite flag" offer.
    pub async fn flag_definitions(
        &self,
        actor: &Actor,
        project: &str,
    ) -> Result<Vec<Versioned<FlagDefinition>>> {
        self.project(actor, project).await?;
        self.store
            .list(kinds::FLAG, project)
            .await?
            .iter()
            .map(|doc| {
                Ok(Versioned {
                    version: doc.version,
                    value: decode(doc)?,
                })
            })
            .collect()
    }
}
