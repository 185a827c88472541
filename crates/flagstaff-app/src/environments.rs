//! Environments: creation (with fresh keys and default targeting for every flag), settings,
//! deletion with everything in them.

use flagstaff_store::{Expect, Write};
use serde::Serialize;

use crate::access::resource;
use crate::changes::Action;
use crate::flags::default_targeting;
use crate::keys::credential_body;
use crate::model::{Environment, EnvironmentKeys, EnvironmentSettings, FlagDefinition, kinds};
use crate::{
    Actor, App, AppError, EnvRef, Result, Versioned, WriteMeta, access, already_exists, body,
    decode, draft, env_scope, hint, random_hex, uuid_v4, validate,
};

/// An environment with its keys, as returned once on creation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentWithKeys {
    /// The environment.
    #[serde(flatten)]
    pub environment: Environment,
    /// Its keys.
    pub keys: EnvironmentKeys,
}

/// New environments named `production` or `prod` start critical: changes there need a typed
/// confirmation in the dashboard.
pub(crate) fn starts_critical(key: &str) -> bool {
    matches!(key, "production" | "prod")
}

impl App {
    /// The writes that remove an environment with its targeting, segments and keys.
    pub(crate) async fn environment_removal(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<Write>> {
        let scope = env_scope(project, environment);
        let mut writes = vec![Write::Delete {
            kind: kinds::ENVIRONMENT.into(),
            scope: project.into(),
            key: environment.into(),
            expect: Expect::Any,
        }];
        for kind in [kinds::TARGETING, kinds::SEGMENT] {
            for doc in self.store.list(kind, &scope).await? {
                writes.push(Write::Delete {
                    kind: kind.into(),
                    scope: scope.clone(),
                    key: doc.key,
                    expect: Expect::Any,
                });
            }
        }
        for credential in self.store.list(kinds::CREDENTIAL, "").await? {
            if credential.body["project"] == project
                && credential.body["environment"] == environment
            {
                writes.push(Write::Delete {
                    kind: kinds::CREDENTIAL.into(),
                    scope: String::new(),
                    key: credential.key,
                    expect: Expect::Any,
                });
            }
        }
        Ok(writes)
    }

    /// Renames an environment and changes its settings (admins).
    pub async fn update_environment(
        &self,
        env: EnvRef<'_>,
        name: &str,
        settings: EnvironmentSettings,
        write: WriteMeta<'_>,
    ) -> Result<Versioned<Environment>> {
        let EnvRef {
            project,
            environment: key,
        } = env;
        let WriteMeta {
            actor,
            expected,
            comment,
        } = write;
        self.fence_check(actor, "updateName", project, Some(key))?;
        let current: Versioned<Environment> = self
            .load(kinds::ENVIRONMENT, project, key, || {
                format!("environment {project}/{key}")
            })
            .await?;
        let target = resource::environment(project, key, current.value.critical);
        let changes = [
            (current.value.name != name, "updateName"),
            (
                settings
                    .secure_mode
                    .is_some_and(|on| on != current.value.secure_mode),
                "updateSecureMode",
            ),
            (
                settings
                    .critical
                    .is_some_and(|on| on != current.value.critical),
                "updateCritical",
            ),
            (
                settings
                    .approvals
                    .as_ref()
                    .is_some_and(|a| *a != current.value.approvals),
                "updateApprovalSettings",
            ),
            (
                settings.color.as_ref().is_some_and(|c| {
                    Some(c.as_str()).filter(|c| !c.is_empty()) != current.value.color.as_deref()
                }),
                "updateColor",
            ),
            (
                settings
                    .fdv1_fallback
                    .is_some_and(|on| on != current.value.fdv1_fallback),
                "updateFdv1Fallback",
            ),
        ];
        let actions: Vec<&str> = changes
            .iter()
            .filter(|(changed, _)| *changed)
            .map(|(_, action)| *action)
            .collect();
        if actions.is_empty() {
            actor.authorize_any(
                &[
                    "updateName",
                    "updateSecureMode",
                    "updateCritical",
                    "updateApprovalSettings",
                    "updateColor",
                    "updateFdv1Fallback",
                ],
                &target,
            )?;
        }
        for action in actions {
            actor.authorize(action, &target)?;
        }
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        if let Some(approvals) = &settings.approvals {
            crate::approvals::validate_settings(approvals)?;
        }
        let color = match settings.color.as_deref() {
            None => current.value.color.clone(),
            Some("") => None,
            Some(c) => Some(validate::color("color", c)?),
        };
        let secure_mode = settings.secure_mode.unwrap_or(current.value.secure_mode);
        if secure_mode
            && !current.value.secure_mode
            && self.sdk_key_schedules(project, key).await?.is_empty()
        {
            return Err(AppError::invalid(
                validate::codes::SECURE_MODE_NEEDS_ROTATION,
                "secureMode",
                "this environment's SDK key was made before Flagstaff kept what secure mode \
                 needs; rotate the SDK key once, then turn secure mode on",
            ));
        }
        let environment = Environment {
            name: name.to_owned(),
            secure_mode,
            critical: settings.critical.unwrap_or(current.value.critical),
            approvals: settings
                .approvals
                .clone()
                .unwrap_or_else(|| current.value.approvals.clone()),
            color,
            fdv1_fallback: settings
                .fdv1_fallback
                .unwrap_or(current.value.fdv1_fallback),
            ..current.value.clone()
        };
        let after = body(&environment)?;
        let write = Write::Put {
            kind: kinds::ENVIRONMENT.into(),
            scope: project.into(),
            key: key.into(),
            body: after.clone(),
            expect: Expect::Version(expected),
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(
                    Action::EnvironmentUpdate,
                    project,
                    key,
                    comment,
                    Some(body(&current.value)?),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: environment,
        })
    }

    /// Deletes an environment with its targeting, segments and keys (admins). SDKs using its
    /// keys are refused from then on.
    pub async fn delete_environment(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        expected: u64,
        comment: &str,
    ) -> Result<()> {
        self.fence_check(actor, "deleteEnvironment", project, Some(key))?;
        let current: Versioned<Environment> = self
            .load(kinds::ENVIRONMENT, project, key, || {
                format!("environment {project}/{key}")
            })
            .await?;
        actor.authorize(
            "deleteEnvironment",
            &resource::environment(project, key, current.value.critical),
        )?;
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        let writes = self.environment_removal(project, key).await?;
        self.commit(
            actor,
            writes,
            draft(
                Action::EnvironmentDelete,
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

    /// Creates an environment with fresh keys (admins); the keys are returned only now.
    pub async fn create_environment(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        name: &str,
        comment: &str,
    ) -> Result<EnvironmentWithKeys> {
        actor.authorize(
            "createEnvironment",
            &resource::environment(project, key, starts_critical(key)),
        )?;
        validate::key("key", key)?;
        self.project(&Actor::system(), project).await?;
        let (created, writes) = self.environment_writes(project, key, name).await?;
        let after = body(&created.environment)?;
        self.commit(
            actor,
            writes,
            draft(
                Action::EnvironmentCreate,
                project,
                key,
                comment,
                None,
                Some(after),
            ),
        )
        .await
        .map_err(|e| already_exists(e, format!("environment {key:?}")))?;
        Ok(created)
    }

    /// The writes that create environment `key` of `project` with fresh keys and default (off)
    /// targeting for every flag already in the project; nothing is checked or committed.
    pub(crate) async fn environment_writes(
        &self,
        project: &str,
        key: &str,
        name: &str,
    ) -> Result<(EnvironmentWithKeys, Vec<Write>)> {
        let keys = EnvironmentKeys {
            sdk_key: format!("sdk-{}", uuid_v4()),
            mobile_key: format!("mob-{}", uuid_v4()),
            client_side_id: random_hex(12),
        };
        let environment = Environment {
            key: key.to_owned(),
            name: name.to_owned(),
            project: project.to_owned(),
            client_side_id: keys.client_side_id.clone(),
            sdk_key_hint: hint(&keys.sdk_key),
            mobile_key_hint: hint(&keys.mobile_key),
            secure_mode: false,
            critical: starts_critical(key),
            approvals: Default::default(),
            color: None,
            fdv1_fallback: false,
        };
        let mut writes = vec![Write::Put {
            kind: kinds::ENVIRONMENT.into(),
            scope: project.into(),
            key: key.into(),
            body: body(&environment)?,
            expect: Expect::Absent,
        }];
        for (kind, secret) in [
            ("sdk", &keys.sdk_key),
            ("mobile", &keys.mobile_key),
            ("client-side", &keys.client_side_id),
        ] {
            writes.push(Write::Put {
                kind: kinds::CREDENTIAL.into(),
                scope: String::new(),
                key: access::fingerprint(secret),
                body: credential_body(kind, project, key, secret),
                expect: Expect::Absent,
            });
        }
        for flag in self.store.list(kinds::FLAG, project).await? {
            let definition: FlagDefinition = decode(&flag)?;
            writes.push(Write::Put {
                kind: kinds::TARGETING.into(),
                scope: env_scope(project, key),
                key: definition.key.clone(),
                body: body(&default_targeting(&definition))?,
                // `Any`: a flag's tombstone from an earlier environment of this key.
                expect: Expect::Any,
            });
        }
        Ok((EnvironmentWithKeys { environment, keys }, writes))
    }

    /// The environments of a project.
    pub async fn list_environments(
        &self,
        actor: &Actor,
        project: &str,
    ) -> Result<Vec<Environment>> {
        self.project(actor, project).await?;
        let environments: Vec<Environment> = self
            .store
            .list(kinds::ENVIRONMENT, project)
            .await?
            .iter()
            .map(decode)
            .collect::<Result<_>>()?;
        Ok(environments
            .into_iter()
            .filter(|e| actor.may_see_environment(project, &e.key))
            .collect())
    }

    /// One environment.
    pub async fn environment(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
    ) -> Result<Versioned<Environment>> {
        actor.authorize_view(project, Some(key))?;
        self.load(kinds::ENVIRONMENT, project, key, || {
            format!("environment {project}/{key}")
        })
        .await
    }
}
