//! What SDKs and the evaluate/bootstrap endpoints read: an environment's flag data as SDKs
//! receive it, single flags and segments for delivery's incremental updates, secure mode, and
//! evaluation for people ("why does this context get this?").

use std::collections::HashMap;
use std::sync::Arc;

use flagstaff_eval::Snapshot;
use flagstaff_protocol::{Context, FlagData, Segment};
use serde_json::{Value, json};

use crate::model::{Environment, FlagDefinition, Targeting, kinds, merge_flag};
use crate::{
    Actor, App, AppError, CredentialKind, HmacKey, Result, SecureMode, decode, env_scope, validate,
};

/// An environment as an offline bundle carries it ([`App::sdk_export`]).
#[derive(Clone, Debug)]
pub struct SdkExport {
    /// The client-side ID.
    pub client_side_id: String,
    /// Whether secure mode is on.
    pub secure_mode: bool,
    /// The credentials that may read it now.
    pub credentials: Vec<ExportedCredential>,
    /// Its flags and segments as SDKs receive them.
    pub data: FlagData,
}

/// A credential in an export: its fingerprint, never the secret.
#[derive(Clone, Debug)]
pub struct ExportedCredential {
    /// SHA-256 of the secret, hex.
    pub fingerprint: String,
    /// SDK key, mobile key or client-side ID.
    pub kind: CredentialKind,
    /// When a rotated-out key stops working (Unix ms).
    pub expires_at: Option<i64>,
    /// For SDK keys: the HMAC-SHA256 key schedule secure mode verifies with (hex).
    pub secure_mode_key: Option<String>,
}

/// Options of [`App::bootstrap`] (shared with the Rust SDK's `all_flags_state`).
pub use flagstaff_eval::BootstrapOptions;

impl App {
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
            for_sdks(&mut segment);
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
        for_sdks(&mut segment);
        Ok(Some(segment))
    }

    /// Every environment of every project as `(project, environment)` keys, for what delivery
    /// keeps current without an SDK asking first (the Redis persistent store). No actor: it
    /// names environments, nothing in them.
    pub async fn sdk_environment_keys(&self) -> Result<Vec<(String, String)>> {
        let environments = self.store.list_kind(kinds::ENVIRONMENT).await?;
        Ok(environments
            .into_iter()
            .map(|doc| (doc.scope, doc.key))
            .collect())
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
    pub(crate) async fn sdk_key_schedules(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<(HmacKey, Option<i64>)>> {
        let now = self.now_millis();
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

    /// Everything a relay needs to serve an environment without asking this server: its SDK
    /// data, client-side ID, secure mode, and its valid credentials as fingerprints (SHA-256 of
    /// the secret, never the secret) with their kinds, expiry and, for SDK keys, the HMAC key
    /// schedule secure mode checks with. For `flagstaff export` (offline bundles); `None` when
    /// the environment does not exist.
    pub async fn sdk_export(&self, project: &str, environment: &str) -> Result<Option<SdkExport>> {
        let Some(env) = self.sdk_environment(project, environment).await? else {
            return Ok(None);
        };
        let now = self.now_millis();
        let mut credentials = Vec::new();
        for credential in self.store.list(kinds::CREDENTIAL, "").await? {
            let body = &credential.body;
            if body["project"] != project || body["environment"] != environment {
                continue;
            }
            let Some(kind) = body["type"].as_str().and_then(CredentialKind::parse) else {
                continue;
            };
            let expires_at = body.get("expiresAt").and_then(Value::as_i64);
            if expires_at.is_some_and(|at| at <= now) {
                continue;
            }
            credentials.push(ExportedCredential {
                fingerprint: credential.key.clone(),
                kind,
                expires_at,
                secure_mode_key: body["secureModeKey"].as_str().map(str::to_owned),
            });
        }
        Ok(Some(SdkExport {
            client_side_id: env.client_side_id.clone(),
            secure_mode: env.secure_mode,
            credentials,
            data: self.flag_data(project, environment).await?,
        }))
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
    ) -> Result<(Arc<FlagData>, Value)> {
        self.environment(actor, project, environment).await?;
        let context = Context::from_json(context).map_err(|e| {
            AppError::invalid(
                validate::codes::INVALID_FIELD,
                format!("context.{}", e.field),
                e.message,
            )
        })?;
        let compiled = self.compiled(project, environment).await?;
        let snapshot = &compiled.snapshot;
        let mut flags = serde_json::Map::new();
        for flag in snapshot.flags() {
            let detail = snapshot.evaluate(flag.key(), &context);
            flags.insert(flag.key().to_owned(), json!({"value": detail.value, "variationIndex": detail.variation_index, "reason": detail.reason, "version": flag.source().version}));
        }
        Ok((Arc::clone(&compiled.data), json!({"flags": flags})))
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
        let compiled = self.compiled(project, environment).await?;
        Ok(compiled.snapshot.bootstrap(&context, options))
    }

    /// An environment's flag data and its compiled snapshot at the change feed's head. Compiling
    /// (regexes, key sets, bucketing prefixes) is the costly part of evaluating for people; it
    /// is done once per change of the feed, not once per request, so that requests to the
    /// evaluate and bootstrap endpoints cost evaluation only.
    async fn compiled(&self, project: &str, environment: &str) -> Result<Arc<Compiled>> {
        let head = self.store.head().await?;
        let key = (project.to_owned(), environment.to_owned());
        let cached = self
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .filter(|c| c.seq == head)
            .cloned();
        if let Some(compiled) = cached {
            return Ok(compiled);
        }
        // The data is read after the head, so it is at least as new as `head`: keeping it
        // under `head` can only make a later request compile again, never serve stale data.
        let data = self.cached_flag_data(project, environment).await?;
        let snapshot = Snapshot::compile(&data);
        let compiled = Arc::new(Compiled {
            seq: head,
            data: Arc::new(data),
            snapshot,
        });
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, Arc::clone(&compiled));
        Ok(compiled)
    }
}

/// An environment's flag data compiled for evaluation, at a change-feed position.
#[derive(Debug)]
pub(crate) struct Compiled {
    seq: u64,
    data: Arc<FlagData>,
    snapshot: Snapshot,
}

/// Leaves out what is for people only (a segment's name and description): SDKs receive the
/// protocol's segment (spec §2.3) and nothing more.
fn for_sdks(segment: &mut Segment) {
    segment.name = None;
    segment.description = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FlagDefinition;

    #[tokio::test]
    async fn the_snapshot_is_compiled_once_per_change_and_follows_changes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("db").display());
        let store = flagstaff_store::Store::open(&url).await.expect("store");
        let app = App::new(Arc::new(store));
        app.initialize().await.expect("first start");
        let system = Actor::system();
        let definition: FlagDefinition =
            serde_json::from_value(json!({"key": "f", "name": "F"})).expect("definition");
        app.create_flag(&system, "default", definition, "")
            .await
            .expect("flag");
        let context = json!({"key": "u"});
        let value = |result: &Value| result["flags"]["f"]["value"].clone();

        let first = app.compiled("default", "test").await.expect("compiled");
        let again = app.compiled("default", "test").await.expect("compiled");
        assert!(Arc::ptr_eq(&first, &again), "no change, no second compile");
        let before = app
            .evaluate(&system, "default", "test", &context)
            .await
            .expect("evaluate");
        assert_eq!(value(&before), json!(false));

        let current = app
            .targeting(&system, "default", "test", "f")
            .await
            .expect("targeting");
        let mut targeting = current.value.clone();
        targeting.on = true;
        targeting.fallthrough.variation = Some(0);
        app.update_targeting(
            crate::FlagRef {
                project: "default",
                environment: "test",
                key: "f",
            },
            targeting,
            crate::WriteMeta {
                actor: &system,
                expected: current.version,
                comment: "",
            },
        )
        .await
        .expect("turned on");
        let after = app.compiled("default", "test").await.expect("compiled");
        assert!(!Arc::ptr_eq(&first, &after), "a change compiles again");
        let now = app
            .evaluate(&system, "default", "test", &context)
            .await
            .expect("evaluate");
        assert_eq!(value(&now), json!(true));
    }
}
