//! An [OpenFeature](https://openfeature.dev) provider for Flagstaff: code written against the
//! vendor-neutral `open-feature` API evaluates Flagstaff flags in memory through
//! [`flagstaff_sdk::Client`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use flagstaff_openfeature::FlagstaffProvider;
//! use open_feature::{EvaluationContext, OpenFeature};
//!
//! let config = flagstaff_sdk::Config::builder("sdk-0123")
//!     .base_uri("http://localhost:8080")
//!     .build()?;
//! let client = flagstaff_sdk::Client::new(config)?;
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(FlagstaffProvider::new(client)).await;
//! let flags = api.create_client();
//! let context = EvaluationContext::default()
//!     .with_targeting_key("user-42")
//!     .with_custom_field("country", "NZ");
//! let on = flags.get_bool_value("new-checkout", Some(&context), None).await.unwrap_or(false);
//! # let _ = on;
//! # Ok(()) }
//! ```
//!
//! Mapping (the same as Flagstaff's OFREP endpoint, so remote and local evaluation agree, but
//! for reasons: OpenFeature's SDK reasons include `DEFAULT` and free-form ones, which OFREP 0.3's
//! wire format does not, so the endpoint sends `STATIC` or `SPLIT` for a fallthrough and
//! `TARGETING_MATCH` for a failed prerequisite, with LaunchDarkly's reason in the metadata):
//! - Context: `targetingKey` is the key (required: `TARGETING_KEY_MISSING` without it), a
//!   `kind` field the context kind (default `user`), every other field an attribute. A
//!   `serde_json::Value` stored with `EvaluationContextFieldValue::new_struct` is used as JSON;
//!   with `kind: "multi"`, such object fields are the individual contexts.
//! - Reasons: `OFF` → `DISABLED`, `TARGET_MATCH`/`RULE_MATCH` → `TARGETING_MATCH`,
//!   `FALLTHROUGH` → `DEFAULT`, `PREREQUISITE_FAILED` → `PREREQUISITE_FAILED` (other).
//! - Errors: not initialized → `PROVIDER_NOT_READY`, missing flag → `FLAG_NOT_FOUND`, wrong
//!   type → `TYPE_MISMATCH`, malformed flag → `PARSE_ERROR`, a context that is not valid →
//!   `INVALID_CONTEXT`.
//! - The variant is the variation index; metadata carries `ruleId` when a rule matched.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use async_trait::async_trait;
use flagstaff_sdk::{Client, Context, ErrorKind, EvaluationDetail, Reason, ReasonKind};
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, StructValue, Value,
};
use serde_json::{Map, Value as Json};

/// The provider. Cheap to create; share the underlying [`Client`] with the rest of the
/// service if it also uses the SDK directly.
#[derive(Debug)]
pub struct FlagstaffProvider {
    client: Client,
    metadata: ProviderMetadata,
}

impl FlagstaffProvider {
    /// A provider over `client`.
    pub fn new(client: Client) -> FlagstaffProvider {
        FlagstaffProvider {
            client,
            metadata: ProviderMetadata::new("flagstaff"),
        }
    }

    /// The SDK client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn error(code: EvaluationErrorCode, message: impl Into<String>) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message.into()),
    }
}

/// Converts an OpenFeature evaluation context into a Flagstaff context.
pub fn to_context(context: &EvaluationContext) -> EvaluationResult<Context> {
    let Some(key) = context.targeting_key.as_deref().filter(|k| !k.is_empty()) else {
        return Err(error(
            EvaluationErrorCode::TargetingKeyMissing,
            "the evaluation context has no targetingKey",
        ));
    };
    let mut object = Map::new();
    for (name, value) in &context.custom_fields {
        if let Some(json) = field_json(value) {
            object.insert(name.clone(), json);
        }
    }
    let kind = object
        .remove("kind")
        .and_then(|k| k.as_str().map(str::to_owned))
        .unwrap_or_else(|| "user".to_owned());
    let json = if kind == "multi" {
        // Each object-valued field is one kind's context; the targeting key is not used.
        let mut multi = Map::new();
        multi.insert("kind".into(), Json::from("multi"));
        for (name, value) in object {
            if value.is_object() {
                multi.insert(name, value);
            }
        }
        Json::Object(multi)
    } else {
        object.insert("kind".into(), Json::from(kind));
        object.insert("key".into(), Json::from(key));
        Json::Object(object)
    };
    Context::from_json(&json).map_err(|e| error(EvaluationErrorCode::InvalidContext, e.to_string()))
}

fn field_json(value: &EvaluationContextFieldValue) -> Option<Json> {
    Some(match value {
        EvaluationContextFieldValue::Bool(b) => Json::from(*b),
        EvaluationContextFieldValue::Int(i) => Json::from(*i),
        EvaluationContextFieldValue::Float(f) => Json::from(*f),
        EvaluationContextFieldValue::String(s) => Json::from(s.as_str()),
        // LaunchDarkly's date operators take RFC 3339 strings or Unix milliseconds.
        EvaluationContextFieldValue::DateTime(t) => {
            Json::from((t.unix_timestamp_nanos() / 1_000_000) as i64)
        }
        EvaluationContextFieldValue::Struct(any) => any.downcast_ref::<Json>()?.clone(),
    })
}

/// Turns an SDK result into an OpenFeature resolution, or its error.
fn resolve<T>(detail: EvaluationDetail<T>) -> EvaluationResult<ResolutionDetails<T>> {
    let reason = match &detail.reason.kind {
        ReasonKind::Error { error_kind } => {
            let code = match error_kind {
                ErrorKind::ClientNotReady => EvaluationErrorCode::ProviderNotReady,
                ErrorKind::FlagNotFound => EvaluationErrorCode::FlagNotFound,
                ErrorKind::WrongType => EvaluationErrorCode::TypeMismatch,
                ErrorKind::MalformedFlag => EvaluationErrorCode::ParseError,
                ErrorKind::UserNotSpecified => EvaluationErrorCode::InvalidContext,
                other => EvaluationErrorCode::General(format!("{other:?}")),
            };
            return Err(error(code, reason_text(&detail.reason)));
        }
        ReasonKind::Off => EvaluationReason::Disabled,
        ReasonKind::TargetMatch | ReasonKind::RuleMatch { .. } => EvaluationReason::TargetingMatch,
        ReasonKind::Fallthrough { .. } => EvaluationReason::Default,
        ReasonKind::PrerequisiteFailed { .. } => {
            EvaluationReason::Other("PREREQUISITE_FAILED".into())
        }
    };
    let mut metadata = FlagMetadata::default();
    if let ReasonKind::RuleMatch { rule_id, .. } = &detail.reason.kind
        && !rule_id.is_empty()
    {
        metadata.add_value("ruleId", rule_id.as_str());
    }
    Ok(ResolutionDetails {
        value: detail.value,
        variant: detail.variation_index.map(|i| i.to_string()),
        reason: Some(reason),
        flag_metadata: Some(metadata),
    })
}

fn reason_text(reason: &Reason) -> String {
    serde_json::to_string(reason).unwrap_or_default()
}

/// A JSON value as an OpenFeature value (`null` has no equivalent and is left out).
fn to_value(json: &Json) -> Option<Value> {
    Some(match json {
        Json::Null => return None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().filter_map(to_value).collect()),
        Json::Object(fields) => Value::Struct(StructValue {
            fields: fields
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), to_value(v)?)))
                .collect(),
        }),
    })
}

#[async_trait]
impl FeatureProvider for FlagstaffProvider {
    async fn initialize(&mut self, _context: &EvaluationContext) {
        // Not fatal: until data arrives, evaluations fail with PROVIDER_NOT_READY and the
        // caller's default is used.
        let _ = self
            .client
            .wait_for_initialization(std::time::Duration::from_secs(5))
            .await;
    }

    fn status(&self) -> ProviderStatus {
        if self.client.initialized() {
            ProviderStatus::Ready
        } else {
            ProviderStatus::NotReady
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let context = to_context(context)?;
        resolve(self.client.bool_variation_detail(&context, flag_key, false))
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        let context = to_context(context)?;
        resolve(self.client.int_variation_detail(&context, flag_key, 0))
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        let context = to_context(context)?;
        resolve(self.client.float_variation_detail(&context, flag_key, 0.0))
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        let context = to_context(context)?;
        resolve(self.client.str_variation_detail(&context, flag_key, ""))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        let context = to_context(context)?;
        let detail = self
            .client
            .json_variation_detail(&context, flag_key, Json::Null);
        let resolved = resolve(detail)?;
        match to_value(&resolved.value) {
            Some(Value::Struct(value)) => Ok(ResolutionDetails {
                value,
                variant: resolved.variant,
                reason: resolved.reason,
                flag_metadata: resolved.flag_metadata,
            }),
            _ => Err(error(
                EvaluationErrorCode::TypeMismatch,
                "the flag's value is not a JSON object",
            )),
        }
    }
}
