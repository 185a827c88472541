//! Flagstaff's use cases: everything a person or a script can do, independent of HTTP.
//!
//! Every state change goes through one function here that authorizes the actor, validates the
//! input (`validate.rs`), computes the new documents and commits them to the store together with
//! the audit entry, in one transaction (ARCHITECTURE.md, invariant 8). The HTTP API
//! (`flagstaff-api`), the dashboard and SDK delivery only translate requests and responses.
//!
//! The use cases are methods of [`App`], one module per resource:
//!
//! | module | use cases |
//! |---|---|
//! | `projects` | first start, projects |
//! | `environments` | environments and their settings |
//! | `keys` | SDK keys, mobile keys and client-side IDs: rotation, what a credential grants |
//! | `flags` | flag definitions, archive, deletion |
//! | `targeting` | a flag's targeting in one environment |
//! | `segments` | segments |
//! | `import` | LaunchDarkly flag data into an environment |
//! | `sdk_view` | what SDKs and the evaluate/bootstrap endpoints read |
//! | `overview` | read models for people: every flag with its state per environment |
//! | `audit` | the audit log |
//! | `changes` | the change feed, typed (`Action`, `Scope`), and who may read which change |
//! | `members`, `tokens` | people, API tokens and sign-in sessions |
//! | `insights` | what SDK events say about flags (the events database) |
//! | `intake` | SDK event payloads, parsed and handed to the events pipeline |
//! | `schedules` | scheduled changes and rollout plans, executed exactly once |
//! | `change_requests` | approvals: requests, reviews, apply (the gate is `approvals`) |
//! | `triggers` | secret URLs that turn a flag on or off |
//! | `webhooks` | changes POSTed to receivers through the durable outbox |
//!
//! Beside them: `access` (roles and actors), `policy` (the custom-role policy language: parse,
//! validate, decide; not yet consulted by `access`), `validate` (validation and its codes), `error`
//! (`AppError` and `ErrorCode`, the one table of stable error codes), `model` (the stored
//! documents), `secure_mode` (HMAC key schedules). Time comes from the store's `Clock`.
#![forbid(unsafe_code)]

mod access;
pub mod approvals;
mod audit;
pub mod big_segments;
mod change_requests;
mod changes;
pub mod deferred;
mod environments;
mod error;
pub mod experiment_iterations;
pub mod experiment_results;
pub mod experiments;
pub mod expiry;
mod flags;
pub mod guard_checks;
pub mod guarded_rollouts;
mod import;
pub mod insights;
pub mod instruction_diff;
pub mod instructions;
pub mod intake;
mod invitations;
mod keys;
mod members;
pub mod metrics;
pub mod migration;
pub mod model;
mod overview;
pub mod policy;
mod projects;
mod relay_access;
mod roles;
mod rollout_plans;
mod scheduler;
pub mod schedules;
mod sdk_view;
mod secure_mode;
mod segments;
mod sso;
mod targeting;
mod throttle;
mod tokens;
mod triggers;
pub mod validate;
pub mod variation_map;
mod webhook_delivery;
pub mod webhooks;
pub mod when;

use std::collections::HashMap;
use std::sync::Arc;

use flagstaff_store::{AuditDraft, Document, Store, Write};
use serde::Serialize;
use serde_json::Value;

pub use access::{AccessDecision, Actor, HeldRole, Role};
pub use change_requests::{
    ApplyRequest, ChangeRequest, ChangeRequestView, NewChangeRequest, NewReview, RequestStatus,
    ReviewKind,
};
pub use changes::{Action, Change, Scope, Subject};
pub use deferred::{Target, TargetKind};
pub use environments::EnvironmentWithKeys;
pub use error::{AppError, ErrorCode, Refusal, Result};
pub use flags::FlagFilter;
pub use flagstaff_protocol::CredentialKind;
pub use flagstaff_store::{AuditEntry, AuditQuery, Clock};
pub use import::ImportSummary;
pub use invitations::{INVITATION_HOURS, Invitation, NewInvitation};
pub use keys::Grant;
pub use members::{Member, MemberChange, SESSION_HOURS, Session};
pub use model::EnvironmentSettings;
pub use overview::{FlagInEnvironment, FlagOverview, FlagRow};
pub use projects::{CreatedProject, DEFAULT_ENVIRONMENTS, Initialized};
pub use relay_access::{RELAY_ACTION, RelayCredential, RelayEnvironment};
pub use roles::{CustomRole, Team};
pub use rollout_plans::{NewRolloutPlan, PlanStep};
pub use scheduler::ScheduleRun;
pub use schedules::{NewSchedule, ScheduleStatus, ScheduleUpdate, ScheduledChange};
pub use sdk_view::{BootstrapOptions, ExportedCredential, SdkExport};
pub use secure_mode::{HmacKey, SecureMode};
pub use sso::{SsoIdentity, SsoPolicy};
pub use tokens::{NewToken, TokenInfo};
pub use triggers::{
    NewTrigger, NewTriggerUrl, TRIGGER_CALLS_PER_MINUTE, Trigger, TriggerAction, TriggerOutcome,
    TriggerUpdate,
};
pub use webhooks::{Delivery, NewWebhook, WebhookView};

pub(crate) use audit::draft;

/// A value with the version it was read at; send the version back to update it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Versioned<T> {
    /// The version.
    pub version: u64,
    /// The value.
    #[serde(flatten)]
    pub value: T,
}

/// The fingerprint under which a secret is stored (SHA-256, hex). Delivery keeps fingerprints,
/// never the secrets, of the keys its open streams were authorized with.
pub fn fingerprint(secret: &str) -> String {
    access::fingerprint(secret)
}

/// An environment of a project: where targeting and segments live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvRef<'a> {
    /// The project's key.
    pub project: &'a str,
    /// The environment's key.
    pub environment: &'a str,
}

/// A flag in one environment: where its targeting lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagRef<'a> {
    /// The project's key.
    pub project: &'a str,
    /// The environment's key.
    pub environment: &'a str,
    /// The flag's key.
    pub key: &'a str,
}

/// What every update carries besides its content: who writes, the version they read (a stale
/// one is a conflict, never an overwrite) and why (recorded in the audit log).
#[derive(Clone, Copy, Debug)]
pub struct WriteMeta<'a> {
    /// Who writes.
    pub actor: &'a Actor,
    /// The version the writer read.
    pub expected: u64,
    /// Why, for the audit log.
    pub comment: &'a str,
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

/// Compiled snapshots by `(project, environment)`.
type CompiledByEnvironment = HashMap<(String, String), Arc<sdk_view::Compiled>>;

/// Password checks (argon2) that may run at once; the rest wait their turn.
pub const PASSWORD_CHECKS_AT_ONCE: usize = 2;

/// The use cases, over one store.
#[derive(Debug, Clone)]
pub struct App {
    store: Arc<Store>,
    /// Flag overviews per project, kept up to date from the change feed (see `overview.rs`).
    overviews: Arc<std::sync::Mutex<HashMap<String, overview::Cached>>>,
    /// The analytics events pipeline and its database, when insights are on.
    pipeline: Option<Arc<flagstaff_events::Pipeline>>,
    /// Compiled snapshots per environment for the evaluate and bootstrap use cases
    /// (`sdk_view.rs`), at the change-feed position they were compiled at.
    compiled: Arc<std::sync::Mutex<CompiledByEnvironment>>,
    /// Failed sign-ins per account and address (`throttle.rs`).
    sign_in_throttle: Arc<throttle::SignInThrottle>,
    /// Password checks running at once: argon2 is deliberately expensive, so a flood of
    /// sign-ins may use at most this share of the CPU, on the blocking pool.
    password_checks: Arc<tokio::sync::Semaphore>,
    /// Parsed custom-role policies by role key, with the version they were parsed from
    /// (`roles.rs`): authentication reads every role in one query and parses only changed ones.
    role_policies: Arc<std::sync::Mutex<RolePolicies>>,
    /// Whether members may sign in with a password (off when single sign-on is the only way).
    password_sign_in: bool,
    /// Calls per trigger in the current minute (`triggers.rs`).
    trigger_calls: Arc<triggers::TriggerCalls>,
    /// Whether webhooks may point at loopback and private addresses (`webhooks.rs`).
    webhooks_allow_private: bool,
    /// Browser goals per project with the change-feed position they were read at
    /// (`metrics.rs`).
    goals: Arc<std::sync::Mutex<GoalsCache>>,
}

/// Browser goals per project: the change-feed position and moment they were read at.
type GoalsCache = HashMap<String, (u64, std::time::Instant, Arc<serde_json::Value>)>;

/// Parsed custom-role policies by role key, with the stored version each was parsed from.
type RolePolicies = HashMap<String, (u64, Arc<policy::Policy>)>;

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

/// A document's stored JSON. Our documents serialize infallibly (derived `Serialize`, string
/// keys); should one ever fail, the write is refused rather than `null` committed in its place.
fn body<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| {
        AppError::Store(flagstaff_store::StoreError::Corrupt(format!(
            "a document does not serialize: {e}"
        )))
    })
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rngs::OsRng, buf.as_mut_slice());
    hex::encode(buf)
}

/// A random UUID (version 4) in LaunchDarkly's key format.
fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn hint(secret: &str) -> String {
    format!("…{}", &secret[secret.len().saturating_sub(4)..])
}

impl App {
    /// Use cases over `store`.
    pub fn new(store: Arc<Store>) -> App {
        App {
            store,
            overviews: Arc::default(),
            pipeline: None,
            compiled: Arc::default(),
            sign_in_throttle: Arc::default(),
            password_checks: Arc::new(tokio::sync::Semaphore::new(PASSWORD_CHECKS_AT_ONCE)),
            role_policies: Arc::default(),
            password_sign_in: true,
            trigger_calls: Arc::default(),
            webhooks_allow_private: false,
            goals: Arc::default(),
        }
    }

    /// The same use cases letting webhooks reach loopback, private and link-local addresses
    /// (`--webhooks-allow-private`; tests and receivers inside the network).
    pub fn with_webhooks_allow_private(mut self, allowed: bool) -> App {
        self.webhooks_allow_private = allowed;
        self
    }

    /// Whether webhooks may reach private addresses.
    pub fn webhooks_allow_private(&self) -> bool {
        self.webhooks_allow_private
    }

    /// The same use cases with password sign-in turned off (`false`): members then sign in only
    /// through single sign-on, and invitations (which let people choose a password) are refused.
    pub fn with_password_sign_in(mut self, allowed: bool) -> App {
        self.password_sign_in = allowed;
        self
    }

    /// Whether members may sign in with a password.
    pub fn password_sign_in(&self) -> bool {
        self.password_sign_in
    }

    /// The same use cases with flag insights from this events pipeline.
    pub fn with_pipeline(mut self, pipeline: Arc<flagstaff_events::Pipeline>) -> App {
        self.pipeline = Some(pipeline);
        self
    }

    /// The clock every expiry and timestamp reads (the store's; see `Clock`).
    pub fn clock(&self) -> &Clock {
        self.store.clock()
    }

    /// Now, in Unix milliseconds, by [`App::clock`].
    pub fn now_millis(&self) -> i64 {
        self.store.clock().now_millis()
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

    /// Commits `writes` with the audit entry `audit`, signed by `actor`.
    async fn commit(
        &self,
        actor: &Actor,
        writes: Vec<Write>,
        mut audit: AuditDraft,
    ) -> Result<Vec<u64>> {
        audit.actor = actor.id.clone();
        Ok(self
            .store
            .commit(flagstaff_store::Change { writes, audit })
            .await?
            .versions)
    }
}

impl App {
    /// Commits several changes, each with its own audit entry by `actor`, in one transaction.
    async fn commit_all(
        &self,
        actor: &Actor,
        changes: Vec<(Vec<Write>, AuditDraft)>,
    ) -> Result<()> {
        let changes = changes
            .into_iter()
            .map(|(writes, mut audit)| {
                audit.actor = actor.id.clone();
                flagstaff_store::Change { writes, audit }
            })
            .collect();
        self.store.commit_all(changes).await?;
        Ok(())
    }
}

fn already_exists(error: AppError, what: String) -> AppError {
    match error {
        AppError::Conflict { .. } => AppError::AlreadyExists(what),
        other => other,
    }
}

/// [`prefix_field`] for an optional prefix (empty: the error as it is).
fn prefix_field_path(error: AppError, prefix: &str) -> AppError {
    if prefix.is_empty() {
        error
    } else {
        prefix_field(error, prefix)
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
