//! The OpenFeature Remote Evaluation Protocol (OFREP, `open-feature/protocol`
//! `service/openapi.yaml`): `POST /ofrep/v1/evaluate/flags/{key}` and the bulk
//! `POST /ofrep/v1/evaluate/flags` (with `ETag`/`304`), plus the optional
//! `GET /ofrep/v1/configuration`. OpenFeature's OFREP providers (server and web) work against
//! Flagstaff with its base URL and an environment credential.
//!
//! The credential decides the flags visible, as for LaunchDarkly's client endpoints (§5.6): the
//! SDK key sees every flag, the mobile key the flags marked for mobile, the client-side ID the
//! flags marked for browsers. It travels as `Authorization: Bearer <key>`, `X-API-Key: <key>` or a
//! bare `Authorization`. A client-side ID is refused while the environment is in secure mode,
//! since OFREP has no place for the context hash.
//!
//! The OpenFeature context maps onto a LaunchDarkly context the way LaunchDarkly's own
//! OpenFeature providers map it: `targetingKey` (or `key`) is the key, `kind` the kind (default
//! `user`), every other property an attribute; `kind: "multi"` takes one object per kind. An
//! empty `targetingKey`, which OFREP 0.3 accepts, is a legacy user's empty key ([`legacy_user`]).
//!
//! Reasons are OFREP 0.3's five (`STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `UNKNOWN`;
//! see [`reason`]), with LaunchDarkly's reason kind in the metadata as `ldReason`.
//!
//! # Change notifications (OFREP ADR-0008)
//!
//! A bulk response names an event stream (`eventStreams`: type `sse`, an `endpoint` whose
//! `requestUri` is `/ofrep/v1/events/{client-side ID}` on the provider's own origin). The stream
//! sends one `refetchEvaluation` per change of the environment, with the change-log position as
//! its `etag` (and `id`) and the time as `lastModified`; a static-context provider re-fetches its
//! bulk evaluation, passing them back as `flagConfigEtag` and `flagConfigLastModified`. A node
//! behind the position it is asked for (another node published the change first) waits briefly
//! for its own worker, so the re-fetch sees the change the notification announced. The stream
//! says only *when* something changed, never what; it is keyed by the client-side ID, which
//! is public, and refused (and not offered) while the environment is in secure mode.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::CredentialKind;
use flagstaff_eval::ClientResult;
use flagstaff_protocol::{Context, ErrorKind, ReasonKind, VariationOrRollout};
use serde_json::{Map, Value, json};

use crate::Delivery;
use crate::client_side::big_segment_membership;
use crate::feed::{Framed, Payload, StreamCredential};
use crate::http::{Authorized, with_env_id};
use crate::polling::document;
use crate::stream::{Format, Opening, Subscription, sse_response};

/// How long a provider may be inactive (a hidden tab) before it closes the stream.
const INACTIVITY_DELAY_SECONDS: u32 = 120;

/// The notification of a change published at change-log `position`: an SSE `message` whose
/// data is `{"type":"refetchEvaluation","etag":…,"lastModified":…}` (ADR-0008).
pub(crate) fn refetch_event(position: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let data = crate::feed::to_json(&json!({
        "type": "refetchEvaluation",
        "etag": position.to_string(),
        "lastModified": now,
    }));
    let mut out = format!("id: {position}\n").into_bytes();
    crate::feed::sse_event(&mut out, "message", &data);
    out
}

/// What a notification stream starts with: a comment, so that the provider's `EventSource`
/// opens at once.
pub(crate) fn stream_opening() -> &'static Framed {
    static OPENING: std::sync::OnceLock<Framed> = std::sync::OnceLock::new();
    OPENING.get_or_init(|| Framed::new(b":ok\n\n".to_vec()))
}

/// `GET /ofrep/v1/events/{clientSideId}`: the change notifications of an environment.
pub(crate) async fn events(
    State(d): State<Arc<Delivery>>,
    Path(client_side_id): Path<String>,
) -> Response {
    let not_found = || {
        failure(
            StatusCode::NOT_FOUND,
            None,
            "GENERAL",
            "no environment has this client-side ID",
        )
    };
    let authorized = match d
        .authorize_secret(&client_side_id, CredentialKind::ClientSide)
        .await
    {
        Ok(Some(authorized)) => authorized,
        Ok(None) => return not_found(),
        Err(refusal) => return refusal,
    };
    if authorized.feed.secure_mode().is_some() {
        return failure(
            StatusCode::FORBIDDEN,
            None,
            "GENERAL",
            "this environment is in secure mode: poll the bulk evaluation instead",
        );
    }
    let open = match d.admit(
        authorized,
        StreamCredential::Key(CredentialKind::ClientSide),
        true,
    ) {
        Ok(open) => open,
        Err(refusal) => return refusal,
    };
    let feed = Arc::clone(&open.feed);
    sse_response(
        &feed,
        Subscription::open(open, Format::OfrepEvents, Opening::Put),
    )
}

/// The `flagConfigEtag` and `flagConfigLastModified` of a re-fetch (ADR-0008): the position a
/// notification announced, if it is one of ours; `Err` for a `flagConfigLastModified` that is
/// neither Unix seconds nor an RFC 3339 date-time (the document's two forms).
fn announced_position(query: Option<&str>) -> Result<Option<u64>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or_default()).map_err(|e| e.to_string())?;
    let mut position = None;
    for (name, value) in pairs {
        match name.as_str() {
            // Opaque to the provider; ours is a change-log position, anything else is ignored.
            "flagConfigEtag" => position = value.parse::<u64>().ok(),
            "flagConfigLastModified" => {
                let seconds = value.parse::<u64>().is_ok();
                if !seconds && flagstaff_eval::parse_rfc3339(&value).is_none() {
                    return Err(format!(
                        "flagConfigLastModified must be Unix seconds or an RFC 3339 date-time, not {value:?}"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(position)
}

/// An OFREP error body (`evaluationFailure`, `flagNotFound`, `bulkEvaluationFailure`).
fn failure(status: StatusCode, key: Option<&str>, code: &str, details: &str) -> Response {
    let mut body = json!({"errorCode": code, "errorDetails": details});
    if let Some(key) = key {
        body["key"] = json!(key);
    }
    (status, axum::Json(body)).into_response()
}

/// The environment credential of an OFREP request.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim()).filter(|k| !k.is_empty());
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("api_key") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    (!key.is_empty()).then_some(key)
}

/// Finds which of the environment's credentials was presented.
async fn authorize(
    delivery: &Delivery,
    headers: &HeaderMap,
) -> Result<(Authorized, CredentialKind), Response> {
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"errorDetails": "send an environment's SDK key, mobile key or client-side ID as a Bearer token or X-API-Key"})),
        )
            .into_response()
    };
    let Some(key) = presented_key(headers) else {
        return Err(unauthorized());
    };
    // Which credential this is follows from its form (Flagstaff makes SDK keys `sdk-…`,
    // mobile keys `mob-…`, client-side IDs hex), so one lookup suffices: lookups that miss are
    // not cached and would reach the database on every request.
    let kind = if key.starts_with("sdk-") {
        CredentialKind::Sdk
    } else if key.starts_with("mob-") {
        CredentialKind::Mobile
    } else {
        CredentialKind::ClientSide
    };
    let authorized = delivery
        .authorize_secret(key, kind)
        .await?
        .ok_or_else(unauthorized)?;
    if kind == CredentialKind::ClientSide && authorized.feed.secure_mode().is_some() {
        return Err(failure(
            StatusCode::FORBIDDEN,
            None,
            "GENERAL",
            "this environment is in secure mode: use the SDK key or the mobile key",
        ));
    }
    Ok((authorized, kind))
}

/// Whether an OpenFeature context's key is the empty string (and no other key is given).
fn empty_key(object: &Map<String, Value>) -> bool {
    match object.get("targetingKey") {
        Some(Value::String(key)) => {
            key.is_empty() && object.get("key").is_none_or(|k| k.as_str() == Some(""))
        }
        None => object.get("key").and_then(Value::as_str) == Some(""),
        Some(_) => false,
    }
}

/// A user with an empty key, which OFREP 0.3 accepts (`context.targetingKey` is any string) and
/// LaunchDarkly's contexts do not, but its legacy user format does (spec §2.7): built as a legacy
/// user, `name` and `anonymous` where they have their types and every other property a custom
/// attribute, it is evaluated as LaunchDarkly's SDKs evaluate such a user.
fn legacy_user(object: &Map<String, Value>) -> Value {
    let mut user = Map::new();
    let mut custom = Map::new();
    user.insert("key".into(), json!(""));
    for (name, value) in object {
        match (name.as_str(), value) {
            ("targetingKey" | "key" | "kind", _) => {}
            ("name", Value::String(_)) | ("anonymous", Value::Bool(_)) => {
                user.insert(name.clone(), value.clone());
            }
            _ => {
                custom.insert(name.clone(), value.clone());
            }
        }
    }
    user.insert("custom".into(), Value::Object(custom));
    Value::Object(user)
}

/// Maps an OpenFeature evaluation context onto a LaunchDarkly context. `Err` is
/// `(errorCode, errorDetails)`.
pub(crate) fn context_from_openfeature(
    context: Option<&Value>,
) -> Result<Context, (&'static str, String)> {
    let Some(Value::Object(object)) = context else {
        return Err((
            "INVALID_CONTEXT",
            "the request needs a context object".to_owned(),
        ));
    };
    fn single(kind: &str, object: &Map<String, Value>) -> Result<Value, (&'static str, String)> {
        let key = match object.get("targetingKey").or_else(|| object.get("key")) {
            Some(Value::String(key)) if !key.is_empty() => key.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err((
                    "TARGETING_KEY_MISSING",
                    format!("the {kind} context has no targetingKey"),
                ));
            }
            Some(_) => {
                return Err((
                    "INVALID_CONTEXT",
                    "targetingKey must be a string".to_owned(),
                ));
            }
        };
        let mut out = Map::new();
        for (name, value) in object {
            if !matches!(name.as_str(), "targetingKey" | "key" | "kind") {
                out.insert(name.clone(), value.clone());
            }
        }
        out.insert("kind".into(), json!(kind));
        out.insert("key".into(), json!(key));
        Ok(Value::Object(out))
    }
    let kind = match object.get("kind") {
        None | Some(Value::Null) => "user",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(("INVALID_CONTEXT", "kind must be a string".to_owned())),
    };
    let ld = if kind == "multi" {
        let mut multi = Map::new();
        multi.insert("kind".into(), json!("multi"));
        for (name, value) in object {
            if name == "kind" || name == "targetingKey" {
                continue;
            }
            let Value::Object(nested) = value else {
                return Err((
                    "INVALID_CONTEXT",
                    format!("{name}: each kind of a multi context is an object"),
                ));
            };
            multi.insert(name.clone(), single(name, nested)?);
        }
        Value::Object(multi)
    } else if kind == "user" && empty_key(object) {
        legacy_user(object)
    } else {
        single(kind, object)?
    };
    Context::from_json(&ld).map_err(|e| ("INVALID_CONTEXT", format!("{}: {}", e.field, e.message)))
}

/// Whether a rule's or the fallthrough's outcome is a percentage rollout: a fixed `variation`
/// wins when both are given, and a rollout without buckets is a malformed flag (§3.4).
fn is_rollout(outcome: &VariationOrRollout) -> bool {
    outcome.variation.is_none()
        && outcome
            .rollout
            .as_ref()
            .is_some_and(|r| !r.variations.is_empty())
}

/// The OFREP reason for a LaunchDarkly reason. OFREP 0.3 allows only `STATIC`,
/// `TARGETING_MATCH`, `SPLIT`, `DISABLED` and `UNKNOWN` (`evaluationSuccess.reason`), so:
/// a target or a rule that serves one variation is `TARGETING_MATCH`, a rule or a fallthrough
/// that serves a percentage rollout is `SPLIT` (a pseudorandom assignment), a fallthrough to one
/// variation is `STATIC` (every context that no target or rule picks gets it), an off flag is
/// `DISABLED`, and a failed prerequisite, which decided for this context from another flag's
/// targeting, is `TARGETING_MATCH`. LaunchDarkly's own reason stays in the metadata
/// (`ldReason`, see [`evaluation`]).
fn reason(result: &ClientResult<'_>) -> &'static str {
    let flag = result.flag;
    match &result.detail.reason.kind {
        ReasonKind::Off => "DISABLED",
        ReasonKind::TargetMatch | ReasonKind::PrerequisiteFailed { .. } => "TARGETING_MATCH",
        ReasonKind::RuleMatch { rule_index, .. } => {
            let rule = flag.rules.get(*rule_index);
            if rule.is_some_and(|rule| is_rollout(&rule.variation_or_rollout)) {
                "SPLIT"
            } else {
                "TARGETING_MATCH"
            }
        }
        ReasonKind::Fallthrough { .. } if is_rollout(&flag.fallthrough) => "SPLIT",
        ReasonKind::Fallthrough { .. } => "STATIC",
        // Evaluation errors are answered as `evaluationFailure` before a reason is asked for.
        ReasonKind::Error { .. } => "UNKNOWN",
    }
}

/// One flag's OFREP result: `evaluationSuccess` or `evaluationFailure` (an evaluation error).
fn evaluation(key: &str, result: &ClientResult<'_>) -> Result<Value, Value> {
    if let ReasonKind::Error { error_kind } = &result.detail.reason.kind {
        let details = match error_kind {
            ErrorKind::MalformedFlag => "the flag's configuration cannot be evaluated",
            _ => "the flag could not be evaluated",
        };
        return Err(json!({"key": key, "errorCode": "GENERAL", "errorDetails": details}));
    }
    let kind = &result.detail.reason.kind;
    let mut metadata = json!({"flagVersion": result.flag.version, "ldReason": kind.name()});
    if let ReasonKind::Fallthrough {
        in_experiment: true,
    }
    | ReasonKind::RuleMatch {
        in_experiment: true,
        ..
    } = kind
    {
        metadata["inExperiment"] = json!(true);
    }
    if let ReasonKind::RuleMatch {
        rule_index,
        rule_id,
        ..
    } = &result.detail.reason.kind
    {
        metadata["ruleIndex"] = json!(rule_index);
        if !rule_id.is_empty() {
            metadata["ruleId"] = json!(rule_id);
        }
    }
    if let ReasonKind::PrerequisiteFailed { prerequisite_key } = &result.detail.reason.kind {
        metadata["prerequisiteKey"] = json!(prerequisite_key);
    }
    let mut out = json!({"key": key, "reason": reason(result), "metadata": metadata});
    // No variation (an off flag without an off variation): no value, which tells the provider
    // to use the application's default (OFREP ADR 0006).
    if let (Some(value), Some(index)) = (result.detail.value, result.detail.variation_index) {
        out["value"] = value.clone();
        out["variant"] = json!(index.to_string());
    }
    Ok(out)
}

async fn read_context(body: Body, key: Option<&str>) -> Result<Context, Response> {
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| {
        failure(
            StatusCode::BAD_REQUEST,
            key,
            "PARSE_ERROR",
            "the request body is limited to 64 KiB",
        )
    })?;
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| {
        failure(
            StatusCode::BAD_REQUEST,
            key,
            "PARSE_ERROR",
            &format!("the request body is not JSON: {e}"),
        )
    })?;
    context_from_openfeature(request.get("context"))
        .map_err(|(code, details)| failure(StatusCode::BAD_REQUEST, key, code, &details))
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
pub(crate) async fn evaluate_flag(
    State(d): State<Arc<Delivery>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (authorized, credential) = match authorize(&d, &headers).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let context = match read_context(body, Some(&key)).await {
        Ok(context) => context,
        Err(refusal) => return refusal,
    };
    let state = authorized.feed.current();
    let snapshot = state.snapshot();
    let Some(id) = snapshot
        .flag_id(&key)
        .filter(|id| credential.sees(snapshot.flag(*id).source()))
    else {
        return failure(
            StatusCode::NOT_FOUND,
            Some(&key),
            "FLAG_NOT_FOUND",
            "no such flag for this credential",
        );
    };
    let big_segments = match big_segment_membership(&d, &authorized.feed, &state, &context).await {
        Ok(membership) => membership,
        Err(refusal) => return refusal,
    };
    let result = snapshot.evaluate_for_client_with(id, &context, big_segments.as_ref());
    let response = match evaluation(&key, &result) {
        Ok(success) => axum::Json(success).into_response(),
        Err(failed) => (StatusCode::BAD_REQUEST, axum::Json(failed)).into_response(),
    };
    with_env_id(response, &authorized.feed)
}

/// `POST /ofrep/v1/evaluate/flags`: every visible flag, with an `ETag` of the body and, where
/// the environment allows them, the change notifications to follow.
pub(crate) async fn evaluate_flags(
    State(d): State<Arc<Delivery>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (authorized, credential) = match authorize(&d, &headers).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let announced = match announced_position(query.as_deref()) {
        Ok(position) => position,
        Err(details) => return failure(StatusCode::BAD_REQUEST, None, "PARSE_ERROR", &details),
    };
    let context = match read_context(body, None).await {
        Ok(context) => context,
        Err(refusal) => return refusal,
    };
    if let Some(position) = announced
        && position > d.position()
    {
        // Re-fetched on a notification from a node ahead of this one: wait (briefly) for
        // this node to publish what it announced. One it never reaches is served as it is.
        d.reaches(position).await;
    }
    let state = authorized.feed.current();
    let big_segments = match big_segment_membership(&d, &authorized.feed, &state, &context).await {
        Ok(membership) => membership,
        Err(refusal) => return refusal,
    };
    let flags: Vec<Value> = state
        .snapshot()
        .evaluate_all_for_client_with(credential, &context, big_segments.as_ref())
        .iter()
        .map(|(key, result)| evaluation(key, result).unwrap_or_else(|failed| failed))
        .collect();
    let mut body = json!({"flags": flags});
    if authorized.feed.secure_mode().is_none() {
        body["eventStreams"] = json!([{
            "type": "sse",
            "endpoint": {"requestUri": format!("/ofrep/v1/events/{}", authorized.feed.env_id())},
            "inactivityDelaySec": INACTIVITY_DELAY_SECONDS,
        }]);
    }
    let body = crate::feed::to_json(&body);
    with_env_id(document(&headers, &Payload::new(body)), &authorized.feed)
}

/// `GET /ofrep/v1/configuration`: what providers may rely on.
pub(crate) async fn configuration() -> Response {
    axum::Json(json!({
        "name": "Flagstaff",
        "capabilities": {
            "cacheInvalidation": {"polling": {"enabled": true, "minPollingIntervalMs": 1000}},
            "flagEvaluation": {"supportedTypes": ["boolean", "string", "int", "float", "object"]}
        }
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_metadata_is_read_in_the_documents_two_forms() {
        for good in [
            "2026-02-20T21:28:18Z",
            "2026-02-20t21:28:18z",
            "2026-02-20T21:28:18.123456+13:00",
            "1999-12-31T23:59:59-05:30",
        ] {
            assert!(flagstaff_eval::parse_rfc3339(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "2026-02-20",
            "2026-02-20 21:28:18Z",
            "2026-13-20T21:28:18Z",
            "2026-02-20T24:28:18Z",
            "2026-02-20T21:28:18",
            "2026-02-20T21:28:18.Z",
            "2026-02-20T21:28:18+1300",
            "Fri, 20 Feb 2026 21:28:18 GMT",
            "２026-02-20T21:28:18Z",
            // One reading of date-times across Flagstaff: the evaluator's, which follows Go's
            // and refuses a leap second.
            "1999-12-31T23:59:60-05:30",
        ] {
            assert!(flagstaff_eval::parse_rfc3339(bad).is_none(), "{bad}");
        }
        assert_eq!(announced_position(None), Ok(None));
        assert_eq!(announced_position(Some("flagConfigEtag=42")), Ok(Some(42)));
        assert_eq!(announced_position(Some("flagConfigEtag=%22x%22")), Ok(None));
        assert_eq!(
            announced_position(Some("flagConfigEtag=7&flagConfigLastModified=1771622898")),
            Ok(Some(7))
        );
        assert!(announced_position(Some("flagConfigLastModified=-1")).is_err());
        assert!(announced_position(Some("flagConfigLastModified=soon")).is_err());
    }

    fn map(context: Value) -> Result<Value, &'static str> {
        context_from_openfeature(Some(&context))
            .map(|c| json!({"kind": c.kind_name(), "key": c.fully_qualified_key()}))
            .map_err(|(code, _)| code)
    }

    #[test]
    fn openfeature_contexts_become_launchdarkly_contexts() {
        assert_eq!(
            map(json!({"targetingKey": "u1", "plan": "pro"})),
            Ok(json!({"kind": "user", "key": "u1"}))
        );
        assert_eq!(
            map(json!({"kind": "org", "targetingKey": "acme"})),
            Ok(json!({"kind": "org", "key": "org:acme"}))
        );
        assert_eq!(
            map(json!({"kind": "multi", "user": {"targetingKey": "u"}, "org": {"key": "o"}})),
            Ok(json!({"kind": "multi", "key": "org:o:user:u"}))
        );
        let attributes =
            context_from_openfeature(Some(&json!({"targetingKey": "u", "plan": "pro"}))).unwrap();
        assert_eq!(
            attributes.individuals()[0].attributes().get("plan"),
            Some(&json!("pro"))
        );
    }

    #[test]
    fn missing_keys_and_bad_shapes_have_openfeature_error_codes() {
        assert_eq!(map(json!({"plan": "pro"})), Err("TARGETING_KEY_MISSING"));
        // OFREP 0.3 accepts any string as `targetingKey`: an empty one is a legacy user's key,
        // which LaunchDarkly allows to be empty; another kind needs a key.
        assert_eq!(
            map(json!({"targetingKey": "", "plan": "pro", "name": "Ann"})),
            Ok(json!({"kind": "user", "key": ""}))
        );
        assert_eq!(
            map(json!({"kind": "org", "targetingKey": ""})),
            Err("TARGETING_KEY_MISSING")
        );
        assert_eq!(map(json!({"targetingKey": 5})), Err("INVALID_CONTEXT"));
        assert_eq!(
            map(json!({"kind": 5, "targetingKey": "u"})),
            Err("INVALID_CONTEXT")
        );
        assert_eq!(
            map(json!({"kind": "multi", "user": "u"})),
            Err("INVALID_CONTEXT")
        );
        assert_eq!(
            map(json!({"kind": "kind", "targetingKey": "u"})),
            Err("INVALID_CONTEXT")
        );
        assert_eq!(
            context_from_openfeature(None).map_err(|(c, _)| c).err(),
            Some("INVALID_CONTEXT")
        );
    }
}
