//! Projects, and the first start that creates the default project, its environments and the
//! administrator's token.

use flagstaff_store::{Expect, Write};
use serde::Serialize;

use crate::access::resource;
use crate::changes::Action;
use crate::environments::{EnvironmentWithKeys, starts_critical};
use crate::model::{Project, kinds};
use crate::{
    Actor, App, AppError, Result, Role, Versioned, already_exists, body, decode, draft, validate,
};

/// What `initialize` created: printed once, never retrievable again.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Initialized {
    /// The project created.
    pub project: Project,
    /// Its environments and their keys.
    pub environments: Vec<EnvironmentWithKeys>,
    /// The administrator's API token.
    pub admin_token: String,
}

/// The environments a new project gets unless its creator lists others: LaunchDarkly's
/// defaults, with `production` critical.
pub const DEFAULT_ENVIRONMENTS: &[(&str, &str)] = &[("production", "Production"), ("test", "Test")];

/// A project just created, with its environments and their keys (shown once).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedProject {
    /// The project.
    #[serde(flatten)]
    pub project: Project,
    /// Its environments, with keys.
    pub environments: Vec<EnvironmentWithKeys>,
}

impl App {
    // ----- bootstrap -------------------------------------------------------------------------

    /// Whether `initialize` has run (any project or token exists).
    pub async fn is_initialized(&self) -> Result<bool> {
        Ok(!self.store.list(kinds::PROJECT, "").await?.is_empty()
            || !self.store.list(kinds::TOKEN, "").await?.is_empty())
    }

    /// First start: the project `default` with environments `production` and `test`, and an
    /// administrator token. Refused once anything exists.
    pub async fn initialize(&self) -> Result<Initialized> {
        if self.is_initialized().await? {
            return Err(AppError::AlreadyExists("an initialized Flagstaff".into()));
        }
        let system = Actor::system();
        // Separate changes, so that each environment's history starts with its creation.
        let project = self
            .create_project(
                &system,
                Project {
                    key: "default".into(),
                    name: "Default".into(),
                },
                "first start",
            )
            .await?;
        let mut environments = Vec::new();
        for (key, name) in DEFAULT_ENVIRONMENTS {
            environments.push(
                self.create_environment(&system, &project.key, key, name, "first start")
                    .await?,
            );
        }
        let (_, admin_token) = self
            .create_token(
                &system,
                crate::tokens::NewToken::new("admin (created on first start)", Role::Admin),
                "first start",
            )
            .await?;
        Ok(Initialized {
            project,
            environments,
            admin_token,
        })
    }

    // ----- projects and environments ---------------------------------------------------------

    /// Creates a project (admins).
    pub async fn create_project(
        &self,
        actor: &Actor,
        project: Project,
        comment: &str,
    ) -> Result<Project> {
        actor.authorize("createProject", &resource::project(&project.key))?;
        validate::key("key", &project.key)?;
        let after = body(&project)?;
        let write = Write::Put {
            kind: kinds::PROJECT.into(),
            scope: String::new(),
            key: project.key.clone(),
            body: after.clone(),
            expect: Expect::Absent,
        };
        self.commit(
            actor,
            vec![write],
            draft(
                Action::ProjectCreate,
                "",
                &project.key,
                comment,
                None,
                Some(after),
            ),
        )
        .await
        .map_err(|e| already_exists(e, format!("project {:?}", project.key)))?;
        Ok(project)
    }

    /// Creates a project with `environments` (key, name) in one change (admins): what people
    /// expect of a new project, which is of no use without an environment. The environments'
    /// keys are returned only now. The change's audit entry is the project's (its environments
    /// are in the same transaction, so they exist exactly when it does).
    pub async fn create_project_with_environments(
        &self,
        actor: &Actor,
        project: Project,
        environments: &[(&str, &str)],
        comment: &str,
    ) -> Result<CreatedProject> {
        actor.authorize("createProject", &resource::project(&project.key))?;
        validate::key("key", &project.key)?;
        validate::name("name", &project.name)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, (key, _)) in environments.iter().enumerate() {
            actor.authorize(
                "createEnvironment",
                &resource::environment(&project.key, key, starts_critical(key)),
            )?;
            validate::key(&format!("environments[{i}].key"), key)?;
            if !seen.insert(*key) {
                return Err(AppError::invalid(
                    validate::codes::INVALID_FIELD,
                    format!("environments[{i}].key"),
                    format!("environment {key:?} is listed twice"),
                ));
            }
        }
        let after = body(&project)?;
        let mut writes = vec![Write::Put {
            kind: kinds::PROJECT.into(),
            scope: String::new(),
            key: project.key.clone(),
            body: after.clone(),
            expect: Expect::Absent,
        }];
        let mut created = Vec::new();
        for (key, name) in environments {
            let (environment, env_writes) =
                self.environment_writes(&project.key, key, name).await?;
            writes.extend(env_writes);
            created.push(environment);
        }
        self.commit(
            actor,
            writes,
            draft(
                Action::ProjectCreate,
                "",
                &project.key,
                comment,
                None,
                Some(after),
            ),
        )
        .await
        .map_err(|e| already_exists(e, format!("project {:?}", project.key)))?;
        Ok(CreatedProject {
            project,
            environments: created,
        })
    }

    /// Lists the projects the actor may see.
    pub async fn list_projects(&self, actor: &Actor) -> Result<Vec<Project>> {
        let docs = self.store.list(kinds::PROJECT, "").await?;
        let projects: Vec<Project> = docs.iter().map(decode).collect::<Result<_>>()?;
        Ok(projects
            .into_iter()
            .filter(|p| actor.may_view(&p.key))
            .collect())
    }

    /// One project.
    pub async fn project(&self, actor: &Actor, key: &str) -> Result<Versioned<Project>> {
        actor.authorize_view(key, None)?;
        self.load(kinds::PROJECT, "", key, || format!("project {key:?}"))
            .await
    }

    /// Renames a project (admins).
    pub async fn update_project(
        &self,
        actor: &Actor,
        key: &str,
        name: &str,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<Project>> {
        actor.authorize("updateProjectName", &resource::project(key))?;
        let current = self.project(&Actor::system(), key).await?;
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        let project = Project {
            key: key.to_owned(),
            name: name.to_owned(),
        };
        let after = body(&project)?;
        let write = Write::Put {
            kind: kinds::PROJECT.into(),
            scope: String::new(),
            key: key.into(),
            body: after.clone(),
            expect: Expect::Version(expected),
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(
                    Action::ProjectUpdate,
                    "",
                    key,
                    comment,
                    Some(body(&current.value)?),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: project,
        })
    }

    /// Deletes a project and everything in it (admins): environments, flags, targeting,
    /// segments and the environments' keys, in one transaction.
    pub async fn delete_project(
        &self,
        actor: &Actor,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        actor.authorize("deleteProject", &resource::project(key))?;
        let current = self.project(&Actor::system(), key).await?;
        let mut writes = vec![Write::Delete {
            kind: kinds::PROJECT.into(),
            scope: String::new(),
            key: key.into(),
            expect: Expect::Version(expected),
        }];
        for flag in self.store.list(kinds::FLAG, key).await? {
            writes.push(Write::Delete {
                kind: kinds::FLAG.into(),
                scope: key.into(),
                key: flag.key,
                expect: Expect::Any,
            });
        }
        for environment in self.store.list(kinds::ENVIRONMENT, key).await? {
            writes.extend(self.environment_removal(key, &environment.key).await?);
        }
        self.commit(
            actor,
            writes,
            draft(
                Action::ProjectDelete,
                "",
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
