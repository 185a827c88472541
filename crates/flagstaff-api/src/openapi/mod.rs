//! The OpenAPI 3.1 document of the management API, served at `/api/v1/openapi.json` and
//! committed as `crates/flagstaff-api/openapi.json`.
//!
//! It is written here as data, next to the router, rather than derived from annotations on every
//! handler and type across crates: one place to read, no proc-macro cost. Two tests keep it
//! honest (`tests/it/openapi.rs`): the committed file must equal this document (regenerate with
//! `FLAGSTAFF_UPDATE_OPENAPI=1 cargo test -p flagstaff-api openapi`), and every documented
//! operation must reach a handler of the real router.

use serde_json::{Value, json};

mod experiments;
mod workflows;

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn list(item: &str) -> Value {
    json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": reference(item)}, "next": {"type": ["string", "null"]}}})
}

/// A page of audit entries: `next` is the sequence number to pass as `after` for the next page.
fn audit_page() -> Value {
    json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": reference("AuditEntry")},
        "next": {"type": ["integer", "null"], "description": "Pass as `after` to read the next page; null at the end"}}})
}

/// An operation with the standard error responses.
fn operation(
    summary: &str,
    tag: &str,
    request: Option<Value>,
    success: (&str, Value),
    writes: bool,
) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(success.0.to_owned(), success.1);
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}});
    responses.insert(
        "400".into(),
        error("Invalid input; `field` names the offending field"),
    );
    responses.insert("401".into(), error("No valid API token"));
    responses.insert(
        "403".into(),
        error("The token's role or projects do not allow this"),
    );
    responses.insert("404".into(), error("No such resource"));
    if writes {
        responses.insert(
            "409".into(),
            error("Already exists, or `If-Match` is stale (`currentVersion` is given)"),
        );
        responses.insert("413".into(), error("The body is over 1 MiB"));
    }
    let mut op = json!({"summary": summary, "tags": [tag], "responses": responses});
    if let Some(request) = request {
        op["requestBody"] = request;
    }
    op
}

fn versioned_update(summary: &str, tag: &str, schema: &str) -> Value {
    versioned_update_as(summary, tag, schema, schema)
}

/// An update whose request and response schemas differ (a rename answers the whole resource).
fn versioned_update_as(summary: &str, tag: &str, request: &str, response: &str) -> Value {
    let mut op = operation(
        summary,
        tag,
        Some(body(reference(request))),
        ("200", ok("Updated", reference(response))),
        true,
    );
    op["parameters"] = json!([{"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/Comment"}]);
    op["responses"]["428"] = version_required();
    op
}

fn version_required() -> Value {
    json!({"description": "If-Match is missing", "content": {"application/json": {"schema": reference("Error")}}})
}

fn patch(summary: &str, tag: &str, schema: &str) -> Value {
    let mut op = versioned_update(summary, tag, schema);
    op["requestBody"] = json!({"required": true, "content": {
        "application/json": {"schema": {"oneOf": [reference("JsonPatch"), {"type": "object", "required": ["patch"], "properties": {"patch": reference("JsonPatch"), "comment": {"type": "string"}}}]}},
        "application/json-patch+json": {"schema": reference("JsonPatch")}
    }});
    op
}

/// A patch that also takes LaunchDarkly's semantic patch (instructions), for which `If-Match`
/// is optional: without it the instructions apply to whatever is current.
fn semantic_patch(summary: &str, tag: &str, schema: &str, instruction: &str) -> Value {
    let mut op = patch(summary, tag, schema);
    op["requestBody"]["content"]["application/json; domain-model=launchdarkly.semanticpatch"] = json!({"schema": {
        "type": "object", "required": ["instructions"], "additionalProperties": false,
        "properties": {"comment": {"type": "string"}, "instructions": {"type": "array", "minItems": 1, "items": reference(instruction)}}}});
    op["responses"]["409"]["description"] = json!(
        "Already exists, `If-Match` is stale (`currentVersion` is given), or an instruction cannot apply (`instruction_conflict`, `field` names it)"
    );
    if let Some(Value::Array(parameters)) = op.get_mut("parameters") {
        for parameter in parameters.iter_mut() {
            if parameter["$ref"] == "#/components/parameters/IfMatch" {
                *parameter = json!({"name": "If-Match", "in": "header", "required": false,
                    "description": "The version you read; required except for semantic patches", "schema": {"type": "string"}});
            }
        }
    }
    op
}

fn delete(summary: &str, tag: &str) -> Value {
    let mut op = operation(
        summary,
        tag,
        None,
        ("204", json!({"description": "Deleted"})),
        true,
    );
    op["parameters"] = json!([{"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/Comment"}]);
    op["responses"]["428"] = version_required();
    op
}

fn create(summary: &str, tag: &str, schema: &str, response: &str) -> Value {
    let mut op = operation(
        summary,
        tag,
        Some(body(reference(schema))),
        ("201", ok("Created", reference(response))),
        true,
    );
    op["parameters"] = json!([{"$ref": "#/components/parameters/Comment"}]);
    op
}

/// Every stable error code, from the one table (`flagstaff_app::ErrorCode`).
fn error_codes() -> Vec<&'static str> {
    flagstaff_app::ErrorCode::ALL
        .iter()
        .map(|code| code.as_str())
        .collect()
}

/// Declares every `{name}` of each path as a required path parameter of each of its operations
/// (OpenAPI 3.1, "Parameter Object": path parameters must be declared). Derived from the path
/// itself, so no operation can forget one.
fn declare_path_parameters(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let declared: Vec<Value> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "description": path_parameter_description(name), "schema": {"type": "string"}})
            })
            .collect();
        if declared.is_empty() {
            continue;
        }
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            let mut parameters = declared.clone();
            if let Some(Value::Array(others)) = operation.get("parameters") {
                parameters.extend(others.iter().cloned());
            }
            operation["parameters"] = Value::Array(parameters);
        }
    }
}

fn path_parameter_description(name: &str) -> &'static str {
    match name {
        "project" => "The project's key",
        "environment" => "The environment's key",
        "key" => "The flag's, segment's, role's or team's key",
        "kind" => "Which key: sdk or mobile",
        "id" => {
            "The id of the token, invitation, scheduled change, change request, trigger or webhook"
        }
        "plan" => "The rollout plan's id",
        "delivery" => "The delivery's id",
        "secret" => "The trigger's secret, as in its URL",
        "email" => "The member's email address",
        _ => "A key",
    }
}

fn schemas() -> Value {
    let mut all = base_schemas();
    if let Value::Object(map) = &mut all {
        map.extend(workflows::schemas());
        map.extend(experiments::schemas());
    }
    all
}

fn base_schemas() -> Value {
    let string = json!({"type": "string"});
    let key = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,256}$"});
    json!({
        "Error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "enum": error_codes(), "description": "Stable machine-readable code (docs/errors.md)"},
            "message": string, "field": {"type": "string", "description": "JSON path of the offending field, e.g. rules[2].clauses[0].op"},
            "currentVersion": {"type": "integer", "description": "On version_conflict: the version now stored"},
            "action": {"type": "string", "description": "On a forbidden policy decision: the action refused (e.g. updateRules)"},
            "resource": {"type": "string", "description": "On a forbidden policy decision: the resource, with its tags (proj/default:env/production;critical:flag/checkout)"}}},
        "Project": {"type": "object", "required": ["key", "name"], "properties": {"key": key, "name": string, "version": {"type": "integer", "readOnly": true}}},
        "NewProject": {"type": "object", "required": ["key", "name"], "additionalProperties": false, "properties": {"key": key, "name": string,
            "environments": {"type": "array", "maxItems": 20, "items": reference("NewEnvironment"), "description": "The environments to create with it, in one change; absent: production (critical) and test"}}},
        "CreatedProject": {"allOf": [reference("Project"), {"type": "object", "required": ["environments"], "properties": {
            "environments": {"type": "array", "items": reference("EnvironmentWithKeys"), "description": "Its environments with their keys, shown only now"}}}]},
        "Rename": {"type": "object", "required": ["name"], "properties": {"key": {"type": "string", "description": "Optional; must be the current key"}, "name": string}},
        "EnvironmentUpdate": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {"key": {"type": "string", "description": "Optional; must be the current key"}, "name": string,
            "secureMode": {"type": "boolean", "description": "Browser requests must carry h = hex(HMAC-SHA256(SDK key, fully-qualified context key)); absent: unchanged"},
            "critical": {"type": "boolean", "description": "The dashboard asks for a typed confirmation of changes here; absent: unchanged"},
            "approvals": reference("ApprovalSettings"),
            "color": {"type": "string", "description": "The dashboard colour, #rrggbb; an empty string removes it; absent: unchanged"},
            "fdv1Fallback": {"type": "boolean", "description": "Answer SDKs that ask for LaunchDarkly's FDv2 protocol (/sdk/stream, /sdk/poll) with X-LD-FD-Fallback: true, so that they use FDv1 (/all, /sdk/latest-all) instead; absent: unchanged"}}},
        "NewEnvironment": {"type": "object", "required": ["key", "name"], "properties": {"key": key, "name": string}},
        "Environment": {"type": "object", "properties": {"key": key, "name": string, "project": string,
            "clientSideId": string, "sdkKeyHint": string, "mobileKeyHint": string, "secureMode": {"type": "boolean"}, "critical": {"type": "boolean"},
            "approvals": reference("ApprovalSettings"), "color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}, "fdv1Fallback": {"type": "boolean"}, "version": {"type": "integer", "readOnly": true}}},
        "EnvironmentWithKeys": {"allOf": [reference("Environment"), {"type": "object", "properties": {"keys": {"type": "object", "properties": {
            "sdkKey": string, "mobileKey": string, "clientSideId": string}}}}]},
        "Variation": {"type": "object", "required": ["value"], "properties": {"value": {}, "name": string, "description": string}},
        "FlagDefinition": {"type": "object", "required": ["key", "name"], "additionalProperties": false, "properties": {
            "key": key, "name": string, "description": string, "tags": {"type": "array", "items": string},
            "kind": {"enum": ["boolean", "multivariate", "migration"], "description": "A migration flag's variations are the six stages off, dualwrite, shadow, live, rampdown, complete (filled in when left out); it is for server-side SDKs only"},
            "variations": {"type": "array", "items": reference("Variation")},
            "migration": {"type": "object", "additionalProperties": false, "description": "Migration flags only", "properties": {"checkRatio": {"type": "integer", "minimum": 0, "maximum": 1000000, "default": 1, "description": "SDK migrators compare reads in 1 of this many operations (0: never)"}}},
            "temporary": {"type": "boolean", "default": true}, "maintainer": string,
            "clientSideAvailability": {"type": "object", "properties": {"usingMobileKey": {"type": "boolean"}, "usingEnvironmentId": {"type": "boolean"}}},
            "archived": {"type": "boolean", "readOnly": true}, "version": {"type": "integer", "readOnly": true}}},
        "Metric": {"type": "object", "required": ["key", "name", "kind", "eventKey"], "additionalProperties": false, "properties": {
            "key": key, "name": string, "description": string,
            "kind": {"enum": ["conversion", "numeric", "count"], "description": "conversion: did the context send the event after its first exposure; numeric: the events' metricValue per context (aggregation); count: events per context"},
            "eventKey": {"type": "string", "minLength": 1, "maxLength": 512, "description": "The custom event key the application passes to track()"},
            "successCriteria": {"enum": ["higher", "lower"], "default": "higher"},
            "aggregation": {"enum": ["sum", "mean"], "description": "Numeric metrics only (default sum)"},
            "unit": {"type": "string", "maxLength": 32}, "tags": {"type": "array", "items": string},
            "goal": {"type": "object", "required": ["kind", "urls"], "additionalProperties": false,
                "description": "A browser goal (conversion and count metrics): served on /sdk/goals/{clientSideId} under the metric's eventKey, so that browser SDKs send click or pageview events for it",
                "properties": {"kind": {"enum": ["click", "pageview"]}, "selector": {"type": "string", "maxLength": 512, "description": "Click goals only"},
                    "urls": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "object", "required": ["kind"], "additionalProperties": false, "properties": {
                        "kind": {"enum": ["exact", "canonical", "substring", "regex"]}, "url": string, "substring": string, "pattern": string}}}}},
            "version": {"type": "integer", "readOnly": true}}},
        "Clause": {"type": "object", "required": ["op", "values"], "properties": {"contextKind": string, "attribute": string,
            "op": {"enum": ["in", "startsWith", "endsWith", "contains", "matches", "lessThan", "lessThanOrEqual", "greaterThan",
                            "greaterThanOrEqual", "before", "after", "semVerEqual", "semVerLessThan", "semVerGreaterThan", "segmentMatch"]},
            "values": {"type": "array", "minItems": 1}, "negate": {"type": "boolean"}}},
        "WeightedVariation": {"type": "object", "required": ["variation", "weight"], "properties": {
            "variation": {"type": "integer"}, "weight": {"type": "integer", "minimum": 0, "maximum": 100000}, "untracked": {"type": "boolean"}}},
        "Rollout": {"type": "object", "required": ["variations"], "properties": {"kind": {"enum": ["rollout", "experiment"]},
            "contextKind": string, "bucketBy": string, "seed": {"type": "integer", "not": {"const": 0}},
            "variations": {"type": "array", "items": reference("WeightedVariation"), "description": "Weights add up to 100000"}}},
        "VariationOrRollout": {"type": "object", "properties": {"variation": {"type": "integer"}, "rollout": reference("Rollout")}},
        "Target": {"type": "object", "required": ["values", "variation"], "properties": {"contextKind": string,
            "values": {"type": "array", "items": string}, "variation": {"type": "integer"}}},
        "Rule": {"allOf": [reference("VariationOrRollout"), {"type": "object", "properties": {"id": string,
            "clauses": {"type": "array", "items": reference("Clause")}, "trackEvents": {"type": "boolean"}}}]},
        "Prerequisite": {"type": "object", "required": ["key", "variation"], "properties": {"key": string, "variation": {"type": "integer"}}},
        "Targeting": {"type": "object", "additionalProperties": false, "properties": {"on": {"type": "boolean"},
            "offVariation": {"type": ["integer", "null"]}, "fallthrough": reference("VariationOrRollout"),
            "targets": {"type": "array", "items": reference("Target")}, "contextTargets": {"type": "array", "items": reference("Target")},
            "rules": {"type": "array", "items": reference("Rule")}, "prerequisites": {"type": "array", "items": reference("Prerequisite")},
            "trackEvents": {"type": "boolean"}, "trackEventsFallthrough": {"type": "boolean"},
            "salt": {"type": "string", "description": "Bucketing salt; kept when absent or empty. Give LaunchDarkly's to keep every context's bucket on migration"}, "version": {"type": "integer", "readOnly": true}}},
        "Segment": {"type": "object", "required": ["key"], "properties": {"key": key,
            "name": {"type": "string", "maxLength": 200, "description": "For people; never sent to SDKs"},
            "description": {"type": "string", "maxLength": 2000, "description": "For people; never sent to SDKs"},
            "included": {"type": "array", "items": string}, "excluded": {"type": "array", "items": string},
            "includedContexts": {"type": "array", "items": reference("Target")}, "excludedContexts": {"type": "array", "items": reference("Target")},
            "rules": {"type": "array", "items": {"type": "object", "properties": {"id": string, "clauses": {"type": "array", "items": reference("Clause")},
                "weight": {"type": "integer"}, "bucketBy": string, "rolloutContextKind": string}}},
            "version": {"type": "integer", "readOnly": true}}},
        "JsonPatch": {"type": "array", "description": "RFC 6902 operations", "items": {"type": "object", "required": ["op", "path"], "properties": {
            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]}, "path": string, "from": string, "value": {}}}},
        "EvaluateRequest": {"type": "object", "required": ["context"], "properties": {"context": {"type": "object",
            "description": "A single-kind, multi-kind or legacy user context"},
            "format": {"enum": ["explain", "bootstrap"], "description": "bootstrap: LaunchDarkly's allFlagsState document ({flag: value, $flagsState, $valid}) for a browser SDK's bootstrap option"},
            "clientSideOnly": {"type": "boolean"}, "withReasons": {"type": "boolean"}, "detailsOnlyForTrackedFlags": {"type": "boolean"}}},
        "EvaluateResponse": {"type": "object", "properties": {"flags": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "value": {}, "variationIndex": {"type": ["integer", "null"]}, "reason": {"type": "object"}, "version": {"type": "integer"}}}}}},
        "AuditEntry": {"type": "object", "properties": {"seq": {"type": "integer"}, "at": {"type": "integer", "description": "Unix ms"},
            "actor": string, "action": string, "kind": string, "scope": string, "key": string, "comment": string,
            "before": {}, "after": {}, "prevHash": string, "hash": string}},
        "Role": {"enum": ["noAccess", "reader", "writer", "admin"], "description": "The base role; noAccess grants nothing but what custom roles grant"},
        "NewToken": {"type": "object", "required": ["name"], "description": "Needs a role, customRoles, or both", "properties": {"name": string, "role": reference("Role"),
            "customRoles": {"type": "array", "items": string, "description": "Custom role keys; without role, the token has only these (base role noAccess)"},
            "projects": {"type": "array", "items": string},
            "environments": {"type": "array", "items": string, "description": "project/environment entries; such a token cannot change project-wide resources"},
            "expiresAt": {"type": "integer", "description": "When the token stops working (Unix ms, in the future); expired tokens are removed hourly"}}},
        "Token": {"type": "object", "properties": {"id": string, "name": string, "role": reference("Role"), "customRoles": {"type": "array", "items": string},
            "projects": {"type": "array", "items": string}, "environments": {"type": "array", "items": string},
            "hint": string, "expiresAt": {"type": "integer"}, "member": string}},
        "BigSegmentCounts": {"type": "object", "required": ["included", "excluded"], "properties": {"included": {"type": "integer"}, "excluded": {"type": "integer"}}},
        "BigSegmentUpload": {"type": "object", "required": ["received", "changed", "included", "excluded", "version"], "properties": {
            "received": {"type": "integer", "description": "Keys read from the list"}, "changed": {"type": "integer", "description": "Keys whose membership changed"},
            "included": {"type": "integer"}, "excluded": {"type": "integer"}, "version": {"type": "integer", "description": "The segment's version after the upload"}}},
        "RelayConfiguration": {"type": "object", "required": ["environments"], "properties": {"environments": {"type": "array", "items": {
            "type": "object", "required": ["project", "key", "clientSideId", "secureMode", "credentials"],
            "properties": {"project": string, "key": string, "clientSideId": string, "secureMode": {"type": "boolean"},
                "credentials": {"type": "array", "items": {"type": "object", "required": ["fingerprint", "kind"], "properties": {
                    "fingerprint": {"type": "string", "description": "SHA-256 of the secret, hex"},
                    "kind": {"enum": ["sdk", "mobile", "client-side"]},
                    "expiresAt": {"type": "integer", "description": "When a rotated-out key stops working (Unix ms)"},
                    "secureModeKey": {"type": "string", "description": "SDK keys: the HMAC-SHA256 key schedule secure mode verifies with (hex)"}}}}}}}}},
        "CreatedToken": {"type": "object", "properties": {"token": reference("Token"), "secret": {"type": "string", "description": "Shown once"}}},
        "NewMember": {"type": "object", "required": ["email", "name", "role", "password"], "properties": {"email": string, "name": string,
            "role": reference("Role"), "projects": {"type": "array", "items": string}, "customRoles": {"type": "array", "items": string}, "password": {"type": "string", "minLength": 12}}},
        "Member": {"type": "object", "properties": {"email": string, "name": string, "role": reference("Role"), "projects": {"type": "array", "items": string},
            "customRoles": {"type": "array", "items": string, "description": "Held directly; teams may give more"}}},
        "MemberChange": {"type": "object", "additionalProperties": false, "description": "Absent fields stay as they are", "properties": {"role": reference("Role"),
            "customRoles": {"type": "array", "items": string}, "projects": {"type": ["array", "null"], "items": string, "description": "null removes the project limit"}}},
        "Statement": {"type": "object", "required": ["effect"], "additionalProperties": false, "description": "One of actions/notActions and one of resources/notResources",
            "properties": {"effect": {"enum": ["allow", "deny"]}, "actions": {"type": "array", "items": string}, "notActions": {"type": "array", "items": string},
            "resources": {"type": "array", "items": string, "description": "Specifiers such as proj/*:env/production:flag/*;checkout"}, "notResources": {"type": "array", "items": string}}},
        "CustomRole": {"type": "object", "required": ["key", "name", "policy"], "properties": {"key": key, "name": string, "description": string,
            "policy": {"type": "array", "items": reference("Statement")}, "version": {"type": "integer", "readOnly": true}}},
        "Team": {"type": "object", "required": ["key", "name"], "properties": {"key": key, "name": string, "description": string,
            "members": {"type": "array", "items": string, "description": "Member emails"}, "customRoles": {"type": "array", "items": string},
            "version": {"type": "integer", "readOnly": true}}},
        "FlagInstruction": {"type": "object", "required": ["kind"], "description": "LaunchDarkly's semantic-patch instructions; variations by index (variation), clauses by value", "properties": {
            "kind": {"enum": ["turnFlagOn", "turnFlagOff", "addTargets", "removeTargets", "addRule", "removeRule", "updateRuleVariationOrRollout",
                "addClauses", "removeClauses", "reorderRules", "updateFallthroughVariationOrRollout", "updateOffVariation",
                "addPrerequisite", "updatePrerequisite", "removePrerequisite"]},
            "contextKind": string, "variation": {"type": "integer"}, "values": {"type": "array", "items": string}, "rollout": {"type": "object"},
            "clauses": {"type": "array", "items": {"type": "object"}}, "ruleId": string, "ruleIds": {"type": "array", "items": string},
            "beforeRuleId": string, "trackEvents": {"type": "boolean"}, "key": string}},
        "SegmentInstruction": {"type": "object", "required": ["kind"], "properties": {
            "kind": {"enum": ["addIncludedTargets", "removeIncludedTargets", "addExcludedTargets", "removeExcludedTargets", "addRule", "removeRule"]},
            "contextKind": string, "values": {"type": "array", "items": string}, "clauses": {"type": "array", "items": {"type": "object"}},
            "weight": {"type": "integer"}, "bucketBy": string, "rolloutContextKind": string, "beforeRuleId": string, "ruleId": string}},
        "NewInvitation": {"type": "object", "required": ["email"], "additionalProperties": false, "properties": {"email": string,
            "role": reference("Role"), "customRoles": {"type": "array", "items": string}, "projects": {"type": "array", "items": string}}},
        "Invitation": {"type": "object", "properties": {"id": string, "email": string, "role": reference("Role"),
            "customRoles": {"type": "array", "items": string}, "projects": {"type": "array", "items": string},
            "invitedBy": string, "expiresAt": {"type": "integer", "description": "Unix ms; 72 hours after the invitation"}}},
        "CreatedInvitation": {"type": "object", "properties": {"invitation": reference("Invitation"),
            "secret": {"type": "string", "description": "Shown once; works once"},
            "path": {"type": "string", "description": "The dashboard page that accepts it: /invite/<secret>"}}},
        "Acceptance": {"type": "object", "required": ["secret", "name", "password"], "additionalProperties": false, "properties": {
            "secret": string, "name": string, "password": {"type": "string", "minLength": 12}}},
        "AccessDecision": {"type": "object", "properties": {"allowed": {"type": "boolean"}, "action": string, "resource": string,
            "role": {"type": "string", "description": "The role that decided (reader, writer, admin or a custom role's key)"},
            "statement": reference("Statement"), "statementIndex": {"type": "integer"}, "reason": string}},
        "SignIn": {"type": "object", "required": ["email", "password"], "properties": {"email": string, "password": string}},
        "Session": {"type": "object", "properties": {"token": string, "expiresAt": {"type": "integer"}, "member": reference("Member")}},
        "FlagData": {"type": "object", "description": "LaunchDarkly flag data as its SDKs receive it (ld-protocol.md §2): flags and segments by key", "properties": {"flags": {"type": "object"}, "segments": {"type": "object"}}},
        "ImportSummary": {"type": "object", "properties": {"flags": {"type": "integer"}, "segments": {"type": "integer"}}},
        "FlagStatus": {"enum": ["new", "active", "launched", "inactive"]},
        "EnvironmentStatus": {"type": "object", "properties": {"environment": string, "status": reference("FlagStatus"),
            "firstEvaluated": {"type": ["integer", "null"]}, "lastEvaluated": {"type": ["integer", "null"]},
            "served": {"type": "array", "description": "[variation index or null for the default, evaluations] in the window", "items": {"type": "array"}},
            "evidence": string}},
        "FlagStatusRow": {"type": "object", "properties": {"key": string, "name": string, "temporary": {"type": "boolean"},
            "archived": {"type": "boolean"}, "environments": {"type": "array", "items": reference("EnvironmentStatus")},
            "safeToRemove": {"type": "boolean"}}},
        "FlagInsights": {"type": "object", "properties": {"flag": string, "environment": string, "range": string,
            "bucketMillis": {"type": "integer"},
            "variations": {"type": "array", "items": {"type": "object", "properties": {"index": {"type": ["integer", "null"]}, "label": string, "total": {"type": "integer"}}}},
            "series": {"type": "array", "items": {"type": "object", "properties": {"start": {"type": "integer"}, "counts": {"type": "array", "items": {"type": "integer"}}}}},
            "total": {"type": "integer"}, "environments": {"type": "array", "items": reference("EnvironmentStatus")},
            "sdks": {"type": "array", "items": {"type": "object", "properties": {"sdk": string, "version": string, "lastSeen": {"type": "integer"}, "evaluations": {"type": "integer"}}}},
            "statusDays": {"type": "integer"}}},
        "MigrationOrigin": {"type": "object", "properties": {"invoked": {"type": "integer"}, "errors": {"type": "integer"},
            "errorRate": {"type": ["number", "null"]}, "meanLatencyMs": {"type": ["number", "null"]}, "maxLatencyMs": {"type": ["number", "null"]}}},
        "MigrationRow": {"type": "object", "properties": {"bucket": {"type": "integer", "description": "The bucket's start (series only)"},
            "operation": {"enum": ["read", "write"]}, "stage": string, "operations": {"type": "integer"},
            "old": reference("MigrationOrigin"), "new": reference("MigrationOrigin"), "consistencyChecks": {"type": "integer"},
            "inconsistent": {"type": "integer"}, "consistencyRate": {"type": ["number", "null"]}}},
        "MigrationInsights": {"type": "object", "properties": {"flag": string, "environment": string, "range": string,
            "resolution": {"enum": ["minute", "hour", "day"]}, "from": {"type": "integer"}, "to": {"type": "integer"},
            "checkRatio": {"type": "integer"}, "on": {"type": "boolean"}, "stage": {"type": ["string", "null"], "description": "The stage everyone gets now, when it does not depend on the context"},
            "totals": {"type": "array", "items": reference("MigrationRow")}, "series": {"type": "array", "items": reference("MigrationRow")}}},
        "SeenContext": {"type": "object", "properties": {"kind": string, "key": string, "attributes": {"type": "object"},
            "redacted": {"type": "array", "items": string}, "firstSeen": {"type": "integer"}, "lastSeen": {"type": "integer"}}},
        "CustomEventCount": {"type": "object", "properties": {"key": string, "count": {"type": "integer"}, "metricCount": {"type": "integer"}, "metricSum": {"type": "number"}}},
        "SdkReport": {"type": "object", "properties": {"sdk": string, "version": string, "wrapper": string, "platform": {"type": ["object", "null"]},
            "firstSeen": {"type": "integer"}, "lastSeen": {"type": "integer"}}},
        "EventsHealth": {"type": "object", "properties": {"acceptedEvents": {"type": "integer"}, "droppedEvents": {"type": "integer"},
            "duplicatePayloads": {"type": "integer"}, "rejectedPayloads": {"type": "integer"}, "skippedEvents": {"type": "integer"},
            "writtenEvents": {"type": "integer"}, "failedEvents": {"type": "integer"}, "queueDepth": {"type": "integer"},
            "queueCapacity": {"type": "integer"}, "queueBytes": {"type": "integer"}, "queueBytesCapacity": {"type": "integer"}, "acceptedPerSecond": {"type": "number"}, "droppedPerSecond": {"type": "number"},
            "lastWriteAt": {"type": ["integer", "null"]}, "lastWriteMillis": {"type": ["number", "null"]}, "lastError": {"type": ["string", "null"]}}},
        "RotateKey": {"type": "object", "properties": {"oldKeyValidForSeconds": {"type": "integer", "minimum": 0}}},
        "RotatedKey": {"type": "object", "description": "The new key, shown once", "properties": {"sdkKey": string, "mobileKey": string,
            "oldKeyValidForSeconds": {"type": "integer"}}},
    })
}

/// Custom roles, teams, member changes and access checks (issue 18).
fn add_access_paths(paths: &mut Value) {
    let mut check = operation(
        "Whether the caller (or, for member managers, a member) may take an action on a resource, and which role and statement decided",
        "access",
        None,
        ("200", ok("The decision", reference("AccessDecision"))),
        false,
    );
    check["parameters"] = json!([
        {"name": "action", "in": "query", "required": true, "description": "e.g. updateRules", "schema": {"type": "string"}},
        {"name": "resource", "in": "query", "required": true, "description": "e.g. proj/default:env/production;critical:flag/checkout;payments (tags after ;)", "schema": {"type": "string"}},
        {"name": "member", "in": "query", "description": "Ask about this member instead of the caller", "schema": {"type": "string"}}
    ]);
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    let mut update_member = operation(
        "Change a member's base role, custom roles or project limit; their sessions follow at once",
        "members",
        Some(body(reference("MemberChange"))),
        ("200", ok("The member", reference("Member"))),
        true,
    );
    update_member["parameters"] = json!([{"$ref": "#/components/parameters/Comment"}]);
    if let Some(item) = paths.get_mut("/members/{email}") {
        item["patch"] = update_member;
    }
    for (plural, schema, what) in [
        ("roles", "CustomRole", "custom role"),
        ("teams", "Team", "team"),
    ] {
        paths.insert(
            format!("/{plural}"),
            json!({"get": operation(&format!("List {what}s"), plural, None, ("200", ok("Items", list(schema))), false),
                   "post": create(&format!("Create a {what}"), plural, schema, schema)}),
        );
        paths.insert(
            format!("/{plural}/{{key}}"),
            json!({"get": operation(&format!("One {what}"), plural, None, ("200", ok("Found", reference(schema))), false),
                   "put": versioned_update(&format!("Replace a {what}"), plural, schema),
                   "delete": delete(&format!("Delete a {what}"), plural)}),
        );
    }
    paths.insert("/access/check".into(), json!({"get": check}));
    let mut accept = operation(
        "Accept an invitation with your own name and password; signs you in",
        "members",
        Some(body(reference("Acceptance"))),
        ("201", ok("Signed in", reference("Session"))),
        true,
    );
    accept["security"] = json!([]);
    paths.insert(
        "/invitations".into(),
        json!({"get": operation("Pending invitations", "members", None, ("200", ok("Invitations", list("Invitation"))), false),
               "post": create("Invite someone; the one-time secret (and the dashboard path using it) is shown once", "members", "NewInvitation", "CreatedInvitation")}),
    );
    paths.insert(
        "/invitations/{id}".into(),
        json!({"delete": operation("Revoke a pending invitation", "members", None, ("204", json!({"description": "Revoked"})), true)}),
    );
    paths.insert("/invitations/accept".into(), json!({"post": accept}));
    let mut relay = operation(
        "The environments this token may relay (relayEnvironment), with credential fingerprints (SHA-256), secure-mode key schedules and client-side IDs, never a plaintext key: what `flagstaff relay` with a relay token configures itself from. 403 when the token may relay no environment",
        "relay",
        None,
        (
            "200",
            ok("The environments", reference("RelayConfiguration")),
        ),
        false,
    );
    relay["parameters"] = json!([{"name": "If-None-Match", "in": "header", "required": false,
        "description": "The ETag last read: 304 without a body while the configuration is unchanged", "schema": {"type": "string"}}]);
    relay["responses"]["304"] = json!({"description": "Unchanged since the ETag given"});
    paths.insert("/relay/environments".into(), json!({"get": relay}));
}

/// The document.
pub fn document() -> Value {
    let p = "/projects/{project}";
    let e = "/projects/{project}/environments/{environment}";
    let mut get_audit = operation(
        "Audit log entries, oldest first",
        "audit",
        None,
        ("200", ok("Entries", audit_page())),
        false,
    );
    get_audit["parameters"] = json!(["kind", "scope", "key", "actor", "since", "until", "after", "limit"].map(|name| json!({"name": name, "in": "query", "schema": {"type": if matches!(name, "since" | "until" | "after" | "limit") { "integer" } else { "string" }}})));
    let mut list_flags = operation(
        "List flags",
        "flags",
        None,
        ("200", ok("A page of flags", list("FlagDefinition"))),
        false,
    );
    list_flags["parameters"] = json!([
        {"name": "tag", "in": "query", "schema": {"type": "string"}},
        {"name": "archived", "in": "query", "schema": {"type": "boolean"}},
        {"name": "q", "in": "query", "description": "Search in keys and names", "schema": {"type": "string"}},
        {"name": "after", "in": "query", "description": "The previous page's next", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
    ]);
    let mut sign_in = operation(
        "Sign a member in; returns an expiring session token",
        "members",
        Some(body(reference("SignIn"))),
        ("201", ok("Signed in", reference("Session"))),
        false,
    );
    sign_in["security"] = json!([]);
    let query = |names: &[(&str, &str)]| {
        Value::Array(
            names
                .iter()
                .map(|(name, description)| json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}}))
                .collect(),
        )
    };
    let mut flag_insights = operation(
        "A flag's evaluations per variation over time in one environment, its status in every environment, and the SDKs that evaluated it",
        "insights",
        None,
        ("200", ok("Insights", reference("FlagInsights"))),
        false,
    );
    flag_insights["parameters"] = query(&[
        ("environment", "The environment to chart (required)"),
        (
            "range",
            "1h (per minute), 24h (default) or 7d (per hour), 30d or 90d (per day)",
        ),
        ("days", "The status window in days (default 7)"),
    ]);
    let mut migration_insights = operation(
        "What LaunchDarkly's SDK migrators reported about a migration flag in one environment: per operation and stage, errors and latency of the old and new systems and the consistency of compared reads (400 not_a_migration_flag for other flags)",
        "insights",
        None,
        (
            "200",
            ok("Migration insights", reference("MigrationInsights")),
        ),
        false,
    );
    migration_insights["parameters"] = query(&[
        ("environment", "The environment (required)"),
        (
            "range",
            "1h (per minute), 24h (default) or 7d (per hour), 30d or 90d (per day)",
        ),
    ]);
    let days = query(&[("days", "The status window in days (default 7)")]);
    let mut flag_statuses = operation(
        "Every flag's status (new, active, launched, inactive) per environment, with evidence",
        "insights",
        None,
        ("200", ok("Statuses", list("FlagStatusRow"))),
        false,
    );
    flag_statuses["parameters"] = days.clone();
    let mut stale_flags = operation(
        "Temporary flags launched or inactive in every environment: safe to remove",
        "insights",
        None,
        ("200", ok("Stale flags", list("FlagStatusRow"))),
        false,
    );
    stale_flags["parameters"] = days.clone();
    let mut contexts = operation(
        "Contexts seen in events, most recent first (private attributes are never stored)",
        "insights",
        None,
        ("200", ok("Contexts", list("SeenContext"))),
        false,
    );
    contexts["parameters"] = query(&[
        ("q", "Text in the key or attributes"),
        ("kind", "Only this context kind"),
        ("limit", "At most this many (default 100, at most 1000)"),
    ]);
    let mut custom_events = operation(
        "Custom events (track) per key",
        "insights",
        None,
        ("200", ok("Counts", list("CustomEventCount"))),
        false,
    );
    custom_events["parameters"] = days;
    let mut samples = operation(
        "The newest sampled feature, debug and custom events",
        "insights",
        None,
        (
            "200",
            ok(
                "Events",
                json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}}),
            ),
        ),
        false,
    );
    samples["parameters"] = query(&[
        ("kind", "feature, debug or custom"),
        ("key", "A flag or event key"),
        ("limit", "At most this many (default 50)"),
    ]);
    let put_flag = {
        let mut op = versioned_update(
            "Replace a flag's definition (writer)",
            "flags",
            "FlagDefinition",
        );
        op["description"] = json!(
            "Variations are matched to the stored ones by value (a variation whose value changed in place keeps its position): reordering or removing variations rewrites every environment's targeting and other flags' prerequisites on this flag in the same change, so nobody is served something else. Removing a variation that targeting or a prerequisite still serves, or moving variations while a scheduled change or change request of the flag is pending, is refused with `409 in_use` naming every place."
        );
        op["responses"]["409"] = json!({"description": "Stale If-Match (`version_conflict`), or a removed variation is still served (`in_use`)", "content": {"application/json": {"schema": reference("Error")}}});
        op
    };
    let mut big_segment_upload = operation(
        "Upload members to a big segment (one created with \"unbounded\": true): one context key per line or CSV with the key first (text/plain, text/csv; streamed, up to 10,000,000 keys in a segment), or a JSON array of keys. Applied in batches of 10,000, each a transaction; adding or removing a key twice changes nothing, so a list that broke off may be sent again. One audit entry per upload (writer: updateIncluded or updateExcluded)",
        "segments",
        Some(json!({"required": true, "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "string", "maxLength": 1024}}},
            "text/plain": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}}}})),
        (
            "200",
            ok("What the upload did", reference("BigSegmentUpload")),
        ),
        true,
    );
    big_segment_upload["parameters"] = json!([
        {"name": "list", "in": "query", "description": "included (default) or excluded", "schema": {"enum": ["included", "excluded"]}},
        {"name": "op", "in": "query", "description": "add (default) or remove", "schema": {"enum": ["add", "remove"]}},
        {"$ref": "#/components/parameters/Comment"}]);
    let mut paths = json!({
        "/projects": {"get": operation("List projects", "projects", None, ("200", ok("Projects", list("Project"))), false),
                      "post": create("Create a project with its environments (production and test unless listed) and their keys, shown once (admin)", "projects", "NewProject", "CreatedProject")},
        p: {"get": operation("Get a project", "projects", None, ("200", ok("The project", reference("Project"))), false),
            "put": versioned_update_as("Rename a project (admin)", "projects", "Rename", "Project"),
            "delete": delete("Delete a project and everything in it (admin)", "projects")},
        format!("{p}/environments"): {"get": operation("List environments", "environments", None, ("200", ok("Environments", list("Environment"))), false),
                                      "post": create("Create an environment with fresh keys, shown once (admin)", "environments", "NewEnvironment", "EnvironmentWithKeys")},
        e: {"get": operation("Get an environment", "environments", None, ("200", ok("The environment", reference("Environment"))), false),
            "put": versioned_update_as("Rename an environment or turn secure mode on or off (admin)", "environments", "EnvironmentUpdate", "Environment"),
            "delete": delete("Delete an environment with its targeting, segments and keys (admin)", "environments")},
        format!("{e}/keys/{{kind}}/rotate"): {"post": create("Rotate the sdk or mobile key; the old one works for oldKeyValidForSeconds (admin)", "environments", "RotateKey", "RotatedKey")},
        format!("{e}/import"): {"post": operation("Import LaunchDarkly flag data into the environment, keeping salts so every context keeps its variation; one audit entry per flag and segment changed; up to 16 MiB (writer)", "environments", Some(body(reference("FlagData"))), ("200", ok("What was imported", reference("ImportSummary"))), true)},
        format!("{p}/flags"): {"get": list_flags, "post": create("Create a flag, off in every environment (writer)", "flags", "FlagDefinition", "FlagDefinition")},
        format!("{p}/flags/{{key}}"): {
            "get": operation("Get a flag's definition", "flags", None, ("200", ok("The definition", reference("FlagDefinition"))), false),
            "put": put_flag,
            "patch": patch("Patch a flag's definition (writer)", "flags", "FlagDefinition"),
            "delete": delete("Delete a flag everywhere (writer)", "flags")},
        format!("{p}/metrics"): {"get": operation("List the project's metrics (what experiments measure)", "metrics", None, ("200", ok("Metrics", list("Metric"))), false),
            "post": create("Create a metric from a custom event key (writer: createMetric)", "metrics", "Metric", "Metric")},
        format!("{p}/metrics/{{key}}"): {
            "get": operation("Get a metric", "metrics", None, ("200", ok("The metric", reference("Metric"))), false),
            "put": versioned_update("Replace a metric (writer: updateMetric)", "metrics", "Metric"),
            "delete": delete("Delete a metric (writer: deleteMetric)", "metrics")},
        format!("{p}/flags/{{key}}/archive"): {"post": operation("Archive a flag: hidden from SDKs and lists (writer)", "flags", None, ("200", ok("Archived", reference("FlagDefinition"))), true)},
        format!("{p}/flags/{{key}}/restore"): {"post": operation("Restore an archived flag (writer)", "flags", None, ("200", ok("Restored", reference("FlagDefinition"))), true)},
        format!("{e}/flags/{{key}}"): {
            "get": operation("Get a flag's targeting in an environment", "targeting", None, ("200", ok("The targeting", reference("Targeting"))), false),
            "put": versioned_update("Replace a flag's targeting (writer)", "targeting", "Targeting"),
            "patch": semantic_patch("Patch a flag's targeting with JSON Patch, or with instructions (semantic patch)", "targeting", "Targeting", "FlagInstruction")},
        format!("{e}/segments"): {"get": operation("List segments", "segments", None, ("200", ok("Segments", list("Segment"))), false),
                                  "post": create("Create a segment (writer)", "segments", "Segment", "Segment")},
        format!("{e}/segments/{{key}}"): {
            "get": operation("Get a segment", "segments", None, ("200", ok("The segment", reference("Segment"))), false),
            "put": versioned_update("Replace a segment (writer)", "segments", "Segment"),
            "patch": semantic_patch("Patch a segment with JSON Patch, or with instructions (semantic patch)", "segments", "Segment", "SegmentInstruction"),
            "delete": delete("Delete a segment (writer)", "segments")},
        format!("{e}/segments/{{key}}/members"): {
            "get": operation("How many keys a big segment (unbounded) includes and excludes", "segments", None, ("200", ok("Counts", reference("BigSegmentCounts"))), false),
            "post": big_segment_upload},
        format!("{e}/evaluate"): {"post": operation("Evaluate every flag for a context, with reasons", "evaluation", Some(body(reference("EvaluateRequest"))), ("200", ok("Results", reference("EvaluateResponse"))), false)},
        format!("{p}/flags/{{key}}/insights"): {"get": flag_insights},
        format!("{p}/flags/{{key}}/migration-insights"): {"get": migration_insights},
        format!("{p}/flag-statuses"): {"get": flag_statuses},
        format!("{p}/stale-flags"): {"get": stale_flags},
        format!("{e}/contexts"): {"get": contexts},
        format!("{e}/custom-events"): {"get": custom_events},
        format!("{e}/sdks"): {"get": operation("SDKs (name, version, wrapper, platform) that reported to the environment", "insights", None, ("200", ok("SDKs", list("SdkReport"))), false)},
        format!("{e}/event-samples"): {"get": samples},
        "/events/health": {"get": operation("Events ingestion health: accepted, dropped, queue depth, writes", "insights", None, ("200", ok("Health", reference("EventsHealth"))), false)},
        "/audit": {"get": get_audit},
        "/tokens": {"get": operation("List API tokens (admin)", "tokens", None, ("200", ok("Tokens", list("Token"))), false),
                    "post": create("Create an API token; the secret is shown once (admin)", "tokens", "NewToken", "CreatedToken")},
        "/tokens/{id}": {"delete": operation("Revoke a token (admin)", "tokens", None, ("204", json!({"description": "Revoked"})), true)},
        "/members": {"get": operation("List members (admin)", "members", None, ("200", ok("Members", list("Member"))), false),
                     "post": create("Add a member with a password (admin)", "members", "NewMember", "Member")},
        "/members/{email}": {"delete": operation("Remove a member and end their sessions (admin)", "members", None, ("204", json!({"description": "Removed"})), true)},
        "/sessions": {"post": sign_in},
    });
    add_access_paths(&mut paths);
    workflows::add_paths(&mut paths);
    experiments::add_paths(&mut paths);
    declare_path_parameters(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flagstaff management API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Manage projects, environments, flags, targeting, segments, tokens and members. Every change is audited. Updates need If-Match with the version read; the reason goes in X-Flagstaff-Comment."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API token (fst_...) or a session token from POST /sessions"}},
            "parameters": {
                "IfMatch": {"name": "If-Match", "in": "header", "required": true, "description": "The version you read, e.g. \"3\"", "schema": {"type": "string"}},
                "Comment": {"name": "X-Flagstaff-Comment", "in": "header", "description": "Why: recorded in the audit log", "schema": {"type": "string"}}
            },
            "schemas": schemas()
        }
    })
}
