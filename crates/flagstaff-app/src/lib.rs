//! Flagstaff's use cases: everything a person or a script can do, independent of HTTP.
//!
//! Every state change goes through one function here that authorizes the actor, validates the
//! input (`validate.rs`), computes the new documents and commits them to the store together with
//! the audit entry, in one transaction (ARCHITECTURE.md, invariant 7). Reads go straight to the
//! store. The HTTP API (`flagstaff-api`) only translates requests and responses.
#![forbid(unsafe_code)]

mod access;
mod error;
pub mod insights;
mod members;
pub mod model;
mod overview;
mod secure_mode;
pub mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use flagstaff_eval::Snapshot;
use flagstaff_protocol::{Context, FlagData, Segment, VariationOrRollout};
use flagstaff_store::{AuditDraft, AuditEntry, AuditQuery, Change, Document, Expect, Store, Write};
use serde::Serialize;
use serde_json::{Value, json};

pub use access::{Actor, Role, TokenInfo};
pub use error::{AppError, Result};
pub use members::{Member, SESSION_HOURS, Session};
pub use model::EnvironmentSettings;
use model::{
    Environment, EnvironmentKeys, FlagDefinition, FlagKind, Project, Targeting, kinds, merge_flag,
};
pub use overview::{FlagInEnvironment, FlagOverview, FlagRow};
pub use secure_mode::{HmacKey, SecureMode};
use validate::Neighbourhood;

/// A value with the version it was read at; send the version back to update it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Versioned<T> {
    /// The version.
    pub version: u64,
    /// The value.
    #[serde(flatten)]
    pub value: T,
}

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

/// The stored form of an SDK credential: what it grants, never the secret. An SDK key also keeps
/// its HMAC key schedule, so that secure-mode hashes made with it can be checked (see
/// `secure_mode.rs` for why that is not the key).
fn credential_body(type_name: &str, project: &str, environment: &str, secret: &str) -> Value {
    let mut body = json!({"type": type_name, "project": project, "environment": environment});
    if type_name == "sdk" {
        body["secureModeKey"] = json!(HmacKey::new(secret.as_bytes()).to_hex());
    }
    body
}

/// Options of [`App::bootstrap`] (shared with the Rust SDK's `all_flags_state`).
pub use flagstaff_eval::BootstrapOptions;

/// Which environment key to rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyKind {
    /// The server-side SDK key.
    Sdk,
    /// The mobile key.
    Mobile,
}

impl KeyKind {
    fn type_name(self) -> &'static str {
        match self {
            KeyKind::Sdk => "sdk",
            KeyKind::Mobile => "mobile",
        }
    }
}

/// Which SDK credential is presented (each grants different data, `ld-protocol.md` §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// Server-side SDK key.
    Sdk,
    /// Mobile key.
    Mobile,
    /// Browser client-side ID.
    ClientSide,
}

impl CredentialKind {
    fn type_name(self) -> &'static str {
        match self {
            CredentialKind::Sdk => "sdk",
            CredentialKind::Mobile => "mobile",
            CredentialKind::ClientSide => "client-side",
        }
    }
}

/// What a valid SDK credential grants: one environment, until an optional expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The project key.
    pub project: String,
    /// The environment key.
    pub environment: String,
    /// When a rotated-out key stops working (Unix milliseconds); `None` for current keys.
    pub expires_at: Option<i64>,
}

impl Grant {
    /// Whether the grant is still valid at `now` (Unix milliseconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// The fingerprint under which a secret is stored (SHA-256, hex). Delivery keeps fingerprints,
/// never the secrets, of the keys its open streams were authorized with.
pub fn fingerprint(secret: &str) -> String {
    access::fingerprint(secret)
}

/// The current time in Unix milliseconds, as credential expiry is measured.
pub fn now_millis() -> i64 {
    access::now_millis()
}

/// What an import wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Flags imported (created or replaced).
    pub flags: usize,
    /// Segments imported (created or replaced).
    pub segments: usize,
}

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

/// One page of a list.
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The use cases, over one store.
#[derive(Debug, Clone)]
pub struct App {
    store: Arc<Store>,
    /// Flag overviews per project, kept up to date from the change feed (see `overview.rs`).
    overviews: Arc<std::sync::Mutex<HashMap<String, overview::Cached>>>,
    /// The analytics events pipeline and its database, when insights are on.
    pipeline: Option<Arc<flagstaff_events::Pipeline>>,
}

fn env_scope(project: &str, environment: &str) -> String {
    format!("{project}/{environment}")
}

fn decode<T: serde::de::DeserializeOwned>(doc: &Document) -> Result<T> {
    // Deserializing from a borrowed `Value` avoids copying the whole document first, which
    // matters when a page reads a thousand of them.
    T::deserialize(&doc.body).map_err(|e| {
        AppError::Store(flagstaff_store::StoreError::Corrupt(format!(
            "{} {}/{}: {e}",
            doc.kind, doc.scope, doc.key
        )))
    })
}

fn body<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rngs::OsRng, buf.as_mut_slice());
    hex::encode(buf)
}

/// A random UUID (version 4) in LaunchDarkly's key format.
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hint(secret: &str) -> String {
    format!("…{}", &secret[secret.len().saturating_sub(4)..])
}

/// The default targeting of a new flag: off, and serving the "off" value when turned on with no
/// rules, so that switching targeting on never releases a feature to everyone by accident.
fn default_targeting(definition: &FlagDefinition) -> Targeting {
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

impl App {
    /// Use cases over `store`.
    pub fn new(store: Arc<Store>) -> App {
        App {
            store,
            overviews: Arc::default(),
            pipeline: None,
        }
    }

    /// The same use cases with flag insights from this events pipeline.
    pub fn with_pipeline(mut self, pipeline: Arc<flagstaff_events::Pipeline>) -> App {
        self.pipeline = Some(pipeline);
        self
    }

    /// The events pipeline SDK events go to, when insights are on.
    pub fn pipeline(&self) -> Option<&Arc<flagstaff_events::Pipeline>> {
        self.pipeline.as_ref()
    }

    /// The live document at an address with its version, or `NotFound` naming `what`.
    async fn load<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        scope: &str,
        key: &str,
        what: impl FnOnce() -> String,
    ) -> Result<Versioned<T>> {
        let doc = self
            .store
            .get_live(kind, scope, key)
            .await?
            .ok_or_else(|| AppError::NotFound(what()))?;
        Ok(Versioned {
            version: doc.version,
            value: decode(&doc)?,
        })
    }

    /// The store (for health checks and shutdown).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Commits `writes` with the audit entry `audit`, signed by `actor`.
    async fn commit(
        &self,
        actor: &Actor,
        writes: Vec<Write>,
        mut audit: AuditDraft,
    ) -> Result<Vec<u64>> {
        audit.actor = actor.id.clone();
        Ok(self.store.commit(Change { writes, audit }).await?.versions)
    }

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
        for (key, name) in [("production", "Production"), ("test", "Test")] {
            environments.push(
                self.create_environment(&system, &project.key, key, name, "first start")
                    .await?,
            );
        }
        let (_, admin_token) = self
            .create_token(
                &system,
                "admin (created on first start)",
                Role::Admin,
                None,
                None,
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
        actor.require(Role::Admin, None)?;
        validate::key("key", &project.key)?;
        let after = body(&project);
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
                "project.create",
                kinds::PROJECT,
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

    /// Lists the projects the actor may see.
    pub async fn list_projects(&self, actor: &Actor) -> Result<Vec<Project>> {
        let docs = self.store.list(kinds::PROJECT, "").await?;
        let projects: Vec<Project> = docs.iter().map(decode).collect::<Result<_>>()?;
        Ok(projects
            .into_iter()
            .filter(|p| actor.may_see(&p.key))
            .collect())
    }

    /// One project.
    pub async fn project(&self, actor: &Actor, key: &str) -> Result<Versioned<Project>> {
        actor.require(Role::Reader, Some(key))?;
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
        actor.require(Role::Admin, Some(key))?;
        let current = self.project(actor, key).await?;
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        let project = Project {
            key: key.to_owned(),
            name: name.to_owned(),
        };
        let after = body(&project);
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
                    "project.update",
                    kinds::PROJECT,
                    "",
                    key,
                    comment,
                    Some(body(&current.value)),
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
        actor.require(Role::Admin, Some(key))?;
        let current = self.project(actor, key).await?;
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
                "project.delete",
                kinds::PROJECT,
                "",
                key,
                comment,
                Some(body(&current.value)),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// The writes that remove an environment with its targeting, segments and keys.
    async fn environment_removal(&self, project: &str, environment: &str) -> Result<Vec<Write>> {
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
    #[allow(clippy::too_many_arguments)]
    pub async fn update_environment(
        &self,
        actor: &Actor,
        project: &str,
        key: &str,
        name: &str,
        settings: EnvironmentSettings,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<Environment>> {
        actor.require_env(Role::Admin, project, key)?;
        let current = self.environment(actor, project, key).await?;
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
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
            ..current.value.clone()
        };
        let after = body(&environment);
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
                    "environment.update",
                    kinds::ENVIRONMENT,
                    project,
                    key,
                    comment,
                    Some(body(&current.value)),
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
        actor.require_env(Role::Admin, project, key)?;
        let current = self.environment(actor, project, key).await?;
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
                "environment.delete",
                kinds::ENVIRONMENT,
                project,
                key,
                comment,
                Some(body(&current.value)),
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
        actor.require(Role::Admin, Some(project))?;
        validate::key("key", key)?;
        self.project(&Actor::system(), project).await?;
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
            critical: matches!(key, "production" | "prod"),
        };
        let after = body(&environment);
        let mut writes = vec![Write::Put {
            kind: kinds::ENVIRONMENT.into(),
            scope: project.into(),
            key: key.into(),
            body: after.clone(),
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
        // Every existing flag gets default (off) targeting in the new environment.
        for flag in self.store.list(kinds::FLAG, project).await? {
            let definition: FlagDefinition = decode(&flag)?;
            writes.push(Write::Put {
                kind: kinds::TARGETING.into(),
                scope: env_scope(project, key),
                key: definition.key.clone(),
                body: body(&default_targeting(&definition)),
                expect: Expect::Any,
            });
        }
        self.commit(
            actor,
            writes,
            draft(
                "environment.create",
                kinds::ENVIRONMENT,
                project,
                key,
                comment,
                None,
                Some(after),
            ),
        )
        .await
        .map_err(|e| already_exists(e, format!("environment {key:?}")))?;
        Ok(EnvironmentWithKeys { environment, keys })
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
        actor.require_env(Role::Reader, project, key)?;
        self.load(kinds::ENVIRONMENT, project, key, || {
            format!("environment {project}/{key}")
        })
        .await
    }

    /// Replaces an environment's SDK or mobile key (admins). The old key keeps working for
    /// `old_key_valid_for_seconds` (0: it stops at once), so deployed services can move to the
    /// new key without downtime. The new key is returned only now.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        kind: KeyKind,
        old_key_valid_for_seconds: u64,
        comment: &str,
    ) -> Result<String> {
        actor.require_env(Role::Admin, project, environment)?;
        let env_doc = self
            .store
            .get_live(kinds::ENVIRONMENT, project, environment)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("environment {project}/{environment}")))?;
        let mut env: Environment = decode(&env_doc)?;
        let type_name = kind.type_name();
        let new_key = match kind {
            KeyKind::Sdk => format!("sdk-{}", uuid_v4()),
            KeyKind::Mobile => format!("mob-{}", uuid_v4()),
        };
        let before = body(&env);
        match kind {
            KeyKind::Sdk => env.sdk_key_hint = hint(&new_key),
            KeyKind::Mobile => env.mobile_key_hint = hint(&new_key),
        }
        let mut writes = vec![
            Write::Put {
                kind: kinds::ENVIRONMENT.into(),
                scope: project.into(),
                key: environment.into(),
                body: body(&env),
                expect: Expect::Version(env_doc.version),
            },
            Write::Put {
                kind: kinds::CREDENTIAL.into(),
                scope: String::new(),
                key: access::fingerprint(&new_key),
                body: credential_body(type_name, project, environment, &new_key),
                expect: Expect::Absent,
            },
        ];
        let expires_at = access::now_millis().saturating_add(
            i64::try_from(old_key_valid_for_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        for credential in self.store.list(kinds::CREDENTIAL, "").await? {
            let current = credential.body["type"] == type_name
                && credential.body["project"] == project
                && credential.body["environment"] == environment
                && credential.body.get("expiresAt").is_none();
            if !current {
                continue;
            }
            writes.push(if old_key_valid_for_seconds == 0 {
                Write::Delete {
                    kind: kinds::CREDENTIAL.into(),
                    scope: String::new(),
                    key: credential.key.clone(),
                    expect: Expect::Version(credential.version),
                }
            } else {
                let mut expiring = credential.body.clone();
                expiring["expiresAt"] = json!(expires_at);
                Write::Put {
                    kind: kinds::CREDENTIAL.into(),
                    scope: String::new(),
                    key: credential.key.clone(),
                    body: expiring,
                    expect: Expect::Version(credential.version),
                }
            });
        }
        let action = format!("environment.{type_name}_key.rotate");
        let after =
            json!({"environment": body(&env), "oldKeyValidForSeconds": old_key_valid_for_seconds});
        self.commit(
            actor,
            writes,
            draft(
                &action,
                kinds::ENVIRONMENT,
                project,
                environment,
                comment,
                Some(before),
                Some(after),
            ),
        )
        .await?;
        Ok(new_key)
    }

    /// The environment an SDK credential belongs to, if it is valid now: an SDK key, mobile key
    /// or client-side ID (`kind`), honouring the expiry of rotated keys. Used by SDK delivery.
    pub async fn environment_for_key(
        &self,
        secret: &str,
        kind: CredentialKind,
    ) -> Result<Option<(String, String)>> {
        Ok(self
            .grant(&access::fingerprint(secret), kind)
            .await?
            .map(|grant| (grant.project, grant.environment)))
    }

    /// What the credential with this [`fingerprint`] grants, if it exists, is of `kind` and has
    /// not expired. Delivery re-checks open streams with it after credential changes.
    pub async fn grant(&self, fingerprint: &str, kind: CredentialKind) -> Result<Option<Grant>> {
        let Some(doc) = self
            .store
            .get_live(kinds::CREDENTIAL, "", fingerprint)
            .await?
        else {
            return Ok(None);
        };
        let grant = Grant {
            project: doc.body["project"].as_str().unwrap_or_default().to_owned(),
            environment: doc.body["environment"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            expires_at: doc.body.get("expiresAt").and_then(Value::as_i64),
        };
        if doc.body["type"] != kind.type_name() || !grant.valid_at(access::now_millis()) {
            return Ok(None);
        }
        Ok(Some(grant))
    }

    // ----- flags -----------------------------------------------------------------------------

    /// The number of variations of every flag of a project (the project-wide part of a
    /// [`Neighbourhood`]).
    async fn variation_counts(&self, project: &str) -> Result<HashMap<String, usize>> {
        let mut counts = HashMap::new();
        for doc in self.store.list(kinds::FLAG, project).await? {
            let definition: FlagDefinition = decode(&doc)?;
            counts.insert(definition.key, definition.variations.len());
        }
        Ok(counts)
    }

    async fn neighbourhood(&self, project: &str, environment: &str) -> Result<Neighbourhood> {
        let variations = self.variation_counts(project).await?;
        self.neighbourhood_with(project, environment, variations)
            .await
    }

    /// What validation needs to know about one environment, given the project's variation counts.
    async fn neighbourhood_with(
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

    /// Creates a flag (writers), off in every environment.
    pub async fn create_flag(
        &self,
        actor: &Actor,
        project: &str,
        mut definition: FlagDefinition,
        comment: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        actor.require(Role::Writer, Some(project))?;
        self.project(&Actor::system(), project).await?;
        definition.archived = false;
        validate::definition(&mut definition)?;
        let after = body(&definition);
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
                body: body(&default_targeting(&definition)),
                expect: Expect::Any,
            });
        }
        let versions = self
            .commit(
                actor,
                writes,
                draft(
                    "flag.create",
                    kinds::FLAG,
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
        actor.require(Role::Reader, Some(project))?;
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
        actor.require(Role::Writer, Some(project))?;
        let current = self.flag(actor, project, key).await?;
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
        validate::definition(&mut definition)?;
        self.write_definition(actor, project, &current, definition, "flag.update", comment)
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
        actor.require(Role::Writer, Some(project))?;
        let current = self.flag(actor, project, key).await?;
        let mut definition = current.value.clone();
        definition.archived = archived;
        let action = if archived {
            "flag.archive"
        } else {
            "flag.restore"
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
        action: &str,
        comment: &str,
    ) -> Result<Versioned<FlagDefinition>> {
        let key = definition.key.clone();
        let after = body(&definition);
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
                    kinds::FLAG,
                    project,
                    &key,
                    comment,
                    Some(body(&current.value)),
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
        actor.require(Role::Writer, Some(project))?;
        let current = self.flag(actor, project, key).await?;
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
                "flag.delete",
                kinds::FLAG,
                project,
                key,
                comment,
                Some(body(&current.value)),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// A flag's targeting in one environment.
    pub async fn targeting(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<Versioned<Targeting>> {
        actor.require_env(Role::Reader, project, environment)?;
        self.load(
            kinds::TARGETING,
            &env_scope(project, environment),
            key,
            || format!("flag {key:?} in environment {environment:?}"),
        )
        .await
    }

    /// Replaces a flag's targeting in one environment (writers).
    // Each argument is a distinct part of the request; a struct would only move the list.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_targeting(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        key: &str,
        mut targeting: Targeting,
        expected: u64,
        comment: &str,
    ) -> Result<Versioned<Targeting>> {
        actor.require_env(Role::Writer, project, environment)?;
        let current = self.targeting(actor, project, environment, key).await?;
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
        validate::targeting(
            key,
            &targeting,
            &self.neighbourhood(project, environment).await?,
        )?;
        let after = body(&targeting);
        let scope = env_scope(project, environment);
        let write = Write::Put {
            kind: kinds::TARGETING.into(),
            scope: scope.clone(),
            key: key.into(),
            body: after.clone(),
            expect: Expect::Version(expected),
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(
                    "flag.targeting.update",
                    kinds::TARGETING,
                    &scope,
                    key,
                    comment,
                    Some(body(&current.value)),
                    Some(after),
                ),
            )
            .await?;
        Ok(Versioned {
            version: versions[0],
            value: targeting,
        })
    }

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
        actor.require_env(Role::Writer, project, environment)?;
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
        let after = body(&segment);
        let expect = expected.map_or(Expect::Absent, Expect::Version);
        let write = Write::Put {
            kind: kinds::SEGMENT.into(),
            scope: scope.clone(),
            key: segment.key.clone(),
            body: after.clone(),
            expect,
        };
        let action = if expected.is_some() {
            "segment.update"
        } else {
            "segment.create"
        };
        let versions = self
            .commit(
                actor,
                vec![write],
                draft(
                    action,
                    kinds::SEGMENT,
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
        actor.require_env(Role::Writer, project, environment)?;
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
                "segment.delete",
                kinds::SEGMENT,
                &scope,
                key,
                comment,
                Some(body(&current.value)),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    // ----- migration -------------------------------------------------------------------------

    /// Imports LaunchDarkly flag data (what its SDKs receive: `{"flags", "segments"}`) into one
    /// environment, in one transaction with one audit entry. This is the migration path: salts,
    /// rule ids and targets are kept, so every context keeps its variation and its bucket.
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
        actor.require(Role::Writer, Some(project))?;
        actor.require_env(Role::Writer, project, environment)?;
        self.environment(actor, project, environment).await?;
        let scope = env_scope(project, environment);
        let environments = self.store.list(kinds::ENVIRONMENT, project).await?;
        let mut writes = Vec::new();
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
            match self.store.get_live(kinds::FLAG, project, key).await? {
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
                }
                None => {
                    let definition = FlagDefinition {
                        key: key.clone(),
                        name: key.clone(),
                        description: String::new(),
                        tags: vec!["imported".into()],
                        kind: FlagKind::Multivariate,
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
                    };
                    writes.push(Write::Put {
                        kind: kinds::FLAG.into(),
                        scope: project.into(),
                        key: key.clone(),
                        body: body(&definition),
                        expect: Expect::Absent,
                    });
                    for env in environments.iter().filter(|e| e.key != environment) {
                        writes.push(Write::Put {
                            kind: kinds::TARGETING.into(),
                            scope: env_scope(project, &env.key),
                            key: key.clone(),
                            body: body(&default_targeting(&definition)),
                            expect: Expect::Any,
                        });
                    }
                }
            }
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
                salt: if flag.salt.is_empty() {
                    random_hex(16)
                } else {
                    flag.salt.clone()
                },
            };
            writes.push(Write::Put {
                kind: kinds::TARGETING.into(),
                scope: scope.clone(),
                key: key.clone(),
                body: body(&targeting),
                expect: Expect::Any,
            });
        }
        for (key, segment) in &data.segments {
            validate::key(&format!("segments.{key}"), key)?;
            let mut segment = segment.clone();
            segment.key = key.clone();
            segment.version = 0;
            segment.deleted = false;
            if segment.salt.is_empty() {
                segment.salt = random_hex(16);
            }
            writes.push(Write::Put {
                kind: kinds::SEGMENT.into(),
                scope: scope.clone(),
                key: key.clone(),
                body: body(&segment),
                expect: Expect::Any,
            });
        }
        let summary = ImportSummary {
            flags: data.flags.len(),
            segments: data.segments.len(),
        };
        self.commit(
            actor,
            writes,
            draft(
                "environment.import",
                kinds::ENVIRONMENT,
                project,
                environment,
                comment,
                None,
                Some(json!({"flags": data.flags.keys().collect::<Vec<_>>(), "segments": data.segments.keys().collect::<Vec<_>>()})),
            ),
        )
        .await?;
        Ok(summary)
    }

    // ----- what SDKs see ---------------------------------------------------------------------

    /// Every live, unarchived flag and segment of an environment, as SDKs receive them.
    pub async fn flag_data(&self, project: &str, environment: &str) -> Result<FlagData> {
        let scope = env_scope(project, environment);
        let mut definitions = HashMap::new();
        for doc in self.store.list(kinds::FLAG, project).await? {
            let definition: FlagDefinition = decode(&doc)?;
            if !definition.archived {
                definitions.insert(definition.key.clone(), definition);
            }
        }
        let mut data = FlagData::default();
        for doc in self.store.list(kinds::TARGETING, &scope).await? {
            if let Some(definition) = definitions.get(&doc.key) {
                let targeting: Targeting = decode(&doc)?;
                data.flags.insert(
                    doc.key.clone(),
                    merge_flag(definition, &targeting, doc.version),
                );
            }
        }
        for doc in self.store.list(kinds::SEGMENT, &scope).await? {
            let mut segment: Segment = decode(&doc)?;
            segment.version = doc.version;
            data.segments.insert(doc.key.clone(), segment);
        }
        Ok(data)
    }

    /// One flag as SDKs of an environment receive it; `None` when it does not exist there, is
    /// archived or deleted. Delivery uses it to follow single changes without reloading
    /// everything.
    pub async fn sdk_flag(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<Option<flagstaff_protocol::Flag>> {
        let Some(definition) = self.store.get_live(kinds::FLAG, project, key).await? else {
            return Ok(None);
        };
        let definition: FlagDefinition = decode(&definition)?;
        if definition.archived {
            return Ok(None);
        }
        let scope = env_scope(project, environment);
        let Some(doc) = self.store.get_live(kinds::TARGETING, &scope, key).await? else {
            return Ok(None);
        };
        let targeting: Targeting = decode(&doc)?;
        Ok(Some(merge_flag(&definition, &targeting, doc.version)))
    }

    /// One segment as SDKs of an environment receive it; `None` when it does not exist.
    pub async fn sdk_segment(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<Option<Segment>> {
        let scope = env_scope(project, environment);
        let Some(doc) = self.store.get_live(kinds::SEGMENT, &scope, key).await? else {
            return Ok(None);
        };
        let mut segment: Segment = decode(&doc)?;
        segment.version = doc.version;
        Ok(Some(segment))
    }

    /// An environment by key, for delivery (no actor: the caller holds an SDK credential).
    pub async fn sdk_environment(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Option<Environment>> {
        match self
            .store
            .get_live(kinds::ENVIRONMENT, project, environment)
            .await?
        {
            Some(doc) => Ok(Some(decode(&doc)?)),
            None => Ok(None),
        }
    }

    /// The HMAC key schedules of an environment's valid SDK keys, with their expiry.
    async fn sdk_key_schedules(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<(HmacKey, Option<i64>)>> {
        let now = access::now_millis();
        let mut keys = Vec::new();
        for credential in self.store.list(kinds::CREDENTIAL, "").await? {
            let body = &credential.body;
            if body["type"] != "sdk"
                || body["project"] != project
                || body["environment"] != environment
            {
                continue;
            }
            let expires_at = body.get("expiresAt").and_then(Value::as_i64);
            if expires_at.is_some_and(|at| at <= now) {
                continue;
            }
            if let Some(key) = body["secureModeKey"].as_str().and_then(HmacKey::from_hex) {
                keys.push((key, expires_at));
            }
        }
        Ok(keys)
    }

    /// An environment's secure mode as delivery enforces it: `None` when it is off.
    pub async fn secure_mode(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Option<SecureMode>> {
        let Some(env) = self.sdk_environment(project, environment).await? else {
            return Ok(None);
        };
        if !env.secure_mode {
            return Ok(None);
        }
        Ok(Some(SecureMode {
            keys: self.sdk_key_schedules(project, environment).await?,
        }))
    }

    /// Evaluates every flag of an environment for a context: "why does this user get this?".
    pub async fn evaluate(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        context: &Value,
    ) -> Result<Value> {
        Ok(self
            .evaluate_with_data(actor, project, environment, context)
            .await?
            .1)
    }

    /// [`App::evaluate`], also returning the flag data it evaluated, so that a caller can show
    /// the rule behind each result without reading the environment twice.
    pub async fn evaluate_with_data(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        context: &Value,
    ) -> Result<(FlagData, Value)> {
        self.environment(actor, project, environment).await?;
        let context = Context::from_json(context).map_err(|e| {
            AppError::invalid(
                validate::codes::INVALID_FIELD,
                format!("context.{}", e.field),
                e.message,
            )
        })?;
        let data = self.cached_flag_data(project, environment).await?;
        let snapshot = Snapshot::compile(&data);
        let mut flags = serde_json::Map::new();
        for flag in snapshot.flags() {
            let detail = snapshot.evaluate(flag.key(), &context);
            flags.insert(flag.key().to_owned(), json!({"value": detail.value, "variationIndex": detail.variation_index, "reason": detail.reason, "version": flag.source().version}));
        }
        Ok((data, json!({"flags": flags})))
    }

    /// An `allFlagsState` bootstrap document (`ld-protocol.md` §5.10) for a context: what a
    /// server renders into a page so that the browser SDK starts with its flags (`bootstrap`
    /// option) instead of waiting for a request. With `client_side_only`, only flags marked
    /// for browsers; `details_only_for_tracked_flags` leaves out the version and reason of
    /// flags that send no feature events.
    pub async fn bootstrap(
        &self,
        actor: &Actor,
        project: &str,
        environment: &str,
        context: &Value,
        options: BootstrapOptions,
    ) -> Result<Value> {
        self.environment(actor, project, environment).await?;
        let context = Context::from_json(context).map_err(|e| {
            AppError::invalid(
                validate::codes::INVALID_FIELD,
                format!("context.{}", e.field),
                e.message,
            )
        })?;
        let snapshot = Snapshot::compile(&self.flag_data(project, environment).await?);
        Ok(snapshot.bootstrap(&context, options))
    }

    // ----- audit -----------------------------------------------------------------------------

    /// Audit entries (admins see everything; others only their projects).
    pub async fn audit(&self, actor: &Actor, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        actor.require(Role::Reader, None)?;
        let entries = self.store.audit(query).await?;
        Ok(entries
            .into_iter()
            .filter(|e| {
                actor.role == Role::Admin
                    || actor.may_see(e.scope.split('/').next().unwrap_or_default())
            })
            .collect())
    }
}

/// The audit entry of a change (the actor is filled in by `App::commit`).
pub(crate) fn draft(
    action: &str,
    kind: &str,
    scope: &str,
    key: &str,
    comment: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditDraft {
    AuditDraft {
        actor: String::new(),
        action: action.to_owned(),
        kind: kind.to_owned(),
        scope: scope.to_owned(),
        key: key.to_owned(),
        comment: comment.to_owned(),
        before,
        after,
    }
}

fn already_exists(error: AppError, what: String) -> AppError {
    match error {
        AppError::Conflict { .. } => AppError::AlreadyExists(what),
        other => other,
    }
}

fn prefix_field(error: AppError, prefix: &str) -> AppError {
    match error {
        AppError::Invalid {
            code,
            message,
            field,
        } => AppError::Invalid {
            code,
            message,
            field: format!("{prefix}.{field}"),
        },
        other => other,
    }
}
