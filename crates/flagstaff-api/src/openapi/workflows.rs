//! The release-workflow part of the document (issue 19): scheduled changes and rollout plans,
//! change requests, flag triggers and webhooks.

use serde_json::{Map, Value, json};

use super::{body, create, ok, operation, reference};

fn list_of(item: &str) -> Value {
    json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": reference(item)}}})
}

/// An operation whose `If-Match` is optional (the workflow resources apply to what is current
/// unless the caller names the version it read).
fn with_optional_if_match(mut op: Value) -> Value {
    let mut parameters = vec![
        json!({"name": "If-Match", "in": "header", "required": false,
        "description": "The version you read (optional: without it the operation applies to the current version)", "schema": {"type": "string"}}),
    ];
    if let Some(Value::Array(others)) = op.get("parameters") {
        parameters.extend(others.iter().cloned());
    }
    op["parameters"] = Value::Array(parameters);
    op
}

fn conflict_409(mut op: Value, description: &str) -> Value {
    op["responses"]["409"] = json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}});
    op
}

/// The schemas of these resources.
pub(super) fn schemas() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let instructions = json!({"type": "array", "minItems": 1, "items": {"type": "object", "required": ["kind"]},
        "description": "Semantic-patch instructions (FlagInstruction for flags, SegmentInstruction for segments)"});
    let when = json!({
        "executeAt": {"type": "string", "description": "A local date and time (2026-12-01T08:00:00) read in timeZone, or an instant with an offset"},
        "timeZone": {"type": "string", "description": "An IANA time zone (Pacific/Auckland); 08:00 on a DST-change day is 08:00 local; a time in the spring gap is refused"},
        "executionDate": {"type": "integer", "description": "Unix milliseconds (LaunchDarkly's form), instead of executeAt"}});
    let mut new_schedule = json!({"type": "object", "required": ["instructions"], "additionalProperties": false,
        "properties": {"instructions": instructions, "comment": string}});
    let mut update = json!({"type": "object", "additionalProperties": false, "description": "Absent fields stay",
        "properties": {"instructions": instructions, "comment": string}});
    let mut request = json!({"type": "object", "required": ["instructions"], "additionalProperties": false,
        "description": "Exactly one of flag and segment; executeAt/executionDate: apply at that moment once approved",
        "properties": {"flag": string, "segment": string, "instructions": instructions, "comment": string,
            "reviewers": {"type": "array", "items": string, "maxItems": 20}}});
    let mut apply = json!({"type": "object", "additionalProperties": false,
        "description": "Empty: apply now; with a moment: schedule the approved change", "properties": {}});
    let mut step = json!({"type": "object", "additionalProperties": false, "description": "A moment and either percent or instructions",
        "properties": {"percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}, "instructions": instructions}});
    for schema in [
        &mut new_schedule,
        &mut update,
        &mut request,
        &mut apply,
        &mut step,
    ] {
        for (name, property) in when.as_object().into_iter().flatten() {
            schema["properties"][name] = property.clone();
        }
    }
    let schedule_status = json!({"enum": ["pending", "executed", "failed", "cancelled"]});
    let request_status =
        json!({"enum": ["pending", "approved", "declined", "applied", "scheduled", "cancelled"]});
    let kind = json!({"enum": ["flag", "segment"]});
    let change_request = json!({"type": "object", "properties": {
        "id": string, "project": string, "environment": string, "kind": kind, "key": string,
        "instructions": {"type": "array", "items": {"type": "object"}}, "comment": string,
        "requestedBy": string, "requestedAt": integer, "reviewers": {"type": "array", "items": string},
        "reviews": {"type": "array", "items": {"type": "object", "properties": {"by": string, "kind": {"enum": ["approve", "decline", "comment"]}, "comment": string, "at": integer}}},
        "status": request_status, "baseVersion": integer, "base": {"type": "object"},
        "executionDate": integer, "timeZone": string, "appliedBy": string, "appliedAt": integer, "schedule": string,
        "version": {"type": "integer", "readOnly": true}}});
    let mut view = change_request.clone();
    for (name, property) in [
        (
            "approvals",
            json!({"type": "integer", "description": "Approvals that count now"}),
        ),
        ("minApprovals", json!({"type": "integer"})),
        (
            "currentVersion",
            json!({"type": "integer", "description": "The flag's targeting or segment version now"}),
        ),
        (
            "current",
            json!({"type": "object", "description": "The document now"}),
        ),
        (
            "proposed",
            json!({"type": "object", "description": "The document as applying now would leave it"}),
        ),
        (
            "conflict",
            json!({"type": "object", "description": "Why applying now would fail: code, message, field (the instruction)"}),
        ),
    ] {
        view["properties"][name] = property;
    }
    let trigger = json!({"type": "object", "properties": {"id": string, "project": string, "environment": string, "flag": string,
        "action": {"enum": ["turnFlagOff", "turnFlagOn"]}, "comment": string, "enabled": {"type": "boolean"},
        "hint": {"type": "string", "description": "The last characters of the URL's secret"}, "createdBy": string, "createdAt": integer,
        "lastTriggeredAt": integer, "triggerUrl": {"type": "string", "description": "Shown only when created or given a new URL: POST to it"}}});
    let Value::Object(map) = json!({
        "ApprovalSettings": {"type": "object", "additionalProperties": false, "properties": {
            "required": {"type": "boolean", "description": "Direct changes to targeting and segments are refused (approval_required)"},
            "minApprovals": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            "canReviewOwn": {"type": "boolean", "description": "Whether the requester's own approval counts"},
            "bypassRole": {"enum": ["noAccess", "reader", "writer", "admin"], "description": "This base role and above may write directly; custom roles may allow bypassRequiredApproval"}}},
        "NewSchedule": new_schedule,
        "ScheduleUpdate": update,
        "ScheduledChange": {"type": "object", "properties": {"id": string, "project": string, "environment": string, "kind": kind, "key": string,
            "executionDate": {"type": "integer", "description": "Unix ms"}, "timeZone": string,
            "localTime": {"type": "string", "description": "The local time with that day's offset, e.g. 2026-12-01T08:00:00+13:00"},
            "instructions": {"type": "array", "items": {"type": "object"}}, "comment": string, "createdBy": string, "createdAt": integer,
            "approved": {"type": "boolean"}, "plan": string, "step": integer, "changeRequest": string, "status": schedule_status,
            "finishedAt": integer, "lateByMs": {"type": "integer", "description": "How late it executed (a restart across its moment)"},
            "error": string, "version": {"type": "integer", "readOnly": true}}},
        "NewRolloutPlan": {"type": "object", "required": ["steps"], "additionalProperties": false, "properties": {
            "timeZone": string, "variation": {"type": "integer", "description": "The variation percentage steps roll out"},
            "baseline": {"type": "integer", "description": "What everyone else keeps (default: the fallthrough variation now)"},
            "steps": {"type": "array", "minItems": 1, "maxItems": 20, "items": step}, "comment": string}},
        "RolloutPlan": {"type": "object", "properties": {"plan": string, "steps": {"type": "array", "items": reference("ScheduledChange")}}},
        "CancelledPlan": {"type": "object", "properties": {"plan": string, "cancelled": {"type": "array", "items": reference("ScheduledChange")}}},
        "NewChangeRequest": request,
        "ChangeRequest": change_request,
        "ChangeRequestView": view,
        "NewReview": {"type": "object", "required": ["kind"], "additionalProperties": false, "properties": {
            "kind": {"enum": ["approve", "decline", "comment"]}, "comment": string}},
        "ApplyRequest": apply,
        "NewTrigger": {"type": "object", "required": ["action"], "additionalProperties": false, "properties": {
            "action": {"enum": ["turnFlagOff", "turnFlagOn"]}, "comment": string}},
        "TriggerUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "enabled": {"type": "boolean"}, "comment": string, "resetUrl": {"type": "boolean", "description": "A new secret URL; the old one stops at once"}}},
        "Trigger": trigger,
        "TriggerOutcome": {"type": "object", "properties": {"flag": string, "environment": string,
            "changed": {"type": "boolean", "description": "False when the flag already was as the trigger leaves it"}, "version": integer}},
        "NewWebhook": {"type": "object", "required": ["url"], "additionalProperties": false, "properties": {
            "name": string, "url": {"type": "string", "description": "http(s); loopback/private/link-local addresses need --webhooks-allow-private"},
            "secret": {"type": "string", "minLength": 16, "description": "Signs deliveries (X-Flagstaff-Signature); absent on update: unchanged"},
            "on": {"type": "boolean", "default": true},
            "statements": {"type": "array", "items": reference("Statement"), "description": "Which changes, by resource (actions [\"*\"]); absent: all"}}},
        "Webhook": {"type": "object", "properties": {"id": string, "name": string, "url": string, "secretHint": string, "on": {"type": "boolean"},
            "statements": {"type": "array", "items": reference("Statement")}, "createdBy": string, "createdAt": integer, "version": integer}},
        "Delivery": {"type": "object", "properties": {"id": {"type": "string", "description": "X-Flagstaff-Delivery, stable across retries"},
            "seq": {"type": "integer", "description": "The audit entry delivered"}, "state": {"enum": ["pending", "delivered", "failed"]},
            "attempts": integer, "nextAttemptAt": integer,
            "log": {"type": "array", "items": {"type": "object", "properties": {"at": integer, "status": {"type": ["integer", "null"]}, "ms": integer, "error": {"type": ["string", "null"]}}}},
            "createdAt": integer}},
    }) else {
        unreachable!("an object literal")
    };
    map
}

/// The paths of these resources.
pub(super) fn add_paths(paths: &mut Value) {
    let e = "/projects/{project}/environments/{environment}";
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    let finished = json!([{"name": "finished", "in": "query", "description": "true: also executed, failed and cancelled ones", "schema": {"type": "boolean"}}]);
    let listing = |what: &str| {
        let mut op = operation(
            what,
            "scheduled changes",
            None,
            (
                "200",
                ok(
                    "Scheduled changes, pending first",
                    list_of("ScheduledChange"),
                ),
            ),
            false,
        );
        op["parameters"] = finished.clone();
        op
    };
    let schedule_create = |what: &str| {
        conflict_409(
            create(what, "scheduled changes", "NewSchedule", "ScheduledChange"),
            "approval_required: the environment requires approval (open a change request with executeAt)",
        )
    };
    paths.insert(
        format!("{e}/flags/{{key}}/scheduled-changes"),
        json!({"get": listing("A flag's scheduled changes in one environment"),
               "post": schedule_create("Schedule a change to a flag's targeting at a moment in any time zone (updateScheduledChanges and the actions it takes)")}),
    );
    paths.insert(
        format!("{e}/segments/{{key}}/scheduled-changes"),
        json!({"get": listing("A segment's scheduled changes"),
               "post": schedule_create("Schedule a change to a segment")}),
    );
    paths.insert(
        format!("{e}/scheduled-changes"),
        json!({"get": listing("Every scheduled change of the environment")}),
    );
    let mut reschedule = with_optional_if_match(operation(
        "Move a pending scheduled change or replace its instructions",
        "scheduled changes",
        Some(body(reference("ScheduleUpdate"))),
        ("200", ok("Rescheduled", reference("ScheduledChange"))),
        true,
    ));
    reschedule = conflict_409(
        reschedule,
        "Stale If-Match, or the change is no longer pending (invalid_state)",
    );
    let mut cancel = with_optional_if_match(operation(
        "Cancel a pending scheduled change",
        "scheduled changes",
        None,
        ("204", json!({"description": "Cancelled"})),
        true,
    ));
    if let Some(parameters) = cancel["parameters"].as_array_mut() {
        parameters.push(json!({"$ref": "#/components/parameters/Comment"}));
    }
    paths.insert(
        format!("{e}/scheduled-changes/{{id}}"),
        json!({"get": operation("One scheduled change, pending or finished", "scheduled changes", None, ("200", ok("Found", reference("ScheduledChange"))), false),
               "patch": reschedule, "delete": cancel}),
    );
    paths.insert(
        format!("{e}/flags/{{key}}/rollout-plans"),
        json!({"post": create("A progressive rollout: percentage (or instruction) steps at given times, created as one", "scheduled changes", "NewRolloutPlan", "RolloutPlan")}),
    );
    paths.insert(
        format!("{e}/rollout-plans/{{plan}}"),
        json!({"delete": operation("Cancel every pending step of a rollout plan, as one", "scheduled changes", None, ("200", ok("The cancelled steps", reference("CancelledPlan"))), true)}),
    );
    let mut list_requests = operation(
        "Change requests of the environment, newest first (open and scheduled ones unless all=true)",
        "change requests",
        None,
        ("200", ok("Change requests", list_of("ChangeRequest"))),
        false,
    );
    list_requests["parameters"] = json!([{"name": "all", "in": "query", "description": "true: also applied and cancelled", "schema": {"type": "boolean"}}]);
    paths.insert(
        format!("{e}/change-requests"),
        json!({"get": list_requests,
               "post": create("Ask for approval of a change (createApprovalRequest); checked against the document now", "change requests", "NewChangeRequest", "ChangeRequest")}),
    );
    paths.insert(
        "/change-requests/{id}".into(),
        json!({"get": operation("A change request with the document now and as applying it now would leave it (or the conflict)", "change requests", None, ("200", ok("The request", reference("ChangeRequestView"))), false),
               "delete": conflict_409(operation("Withdraw an open change request (the requester or a reviewer)", "change requests", None, ("200", ok("Cancelled", reference("ChangeRequest"))), true), "invalid_state: the request is not open")}),
    );
    paths.insert(
        "/change-requests/{id}/reviews".into(),
        json!({"post": conflict_409(with_optional_if_match(operation("Approve, decline or comment (reviewApprovalRequest); each reviewer's latest verdict counts", "change requests", Some(body(reference("NewReview"))), ("200", ok("The request", reference("ChangeRequest"))), true)), "invalid_state: the request is not open; or a stale If-Match")}),
    );
    paths.insert(
        "/change-requests/{id}/apply".into(),
        json!({"post": conflict_409(with_optional_if_match(operation("Apply an approved change request now, or schedule it with a moment (applyApprovalRequest)", "change requests", Some(json!({"required": false, "content": {"application/json": {"schema": reference("ApplyRequest")}}})), ("200", ok("The request, applied or scheduled", reference("ChangeRequest"))), true)), "invalid_state (not approved), instruction_conflict (field names the instruction that no longer applies), or a stale If-Match")}),
    );
    let triggers = "/projects/{project}/flags/{key}/environments/{environment}/triggers";
    paths.insert(
        triggers.into(),
        json!({"get": operation("A flag's triggers in one environment (never their URLs)", "triggers", None, ("200", ok("Triggers", list_of("Trigger"))), false),
               "post": create("A secret URL that turns the flag off or on; shown once (createTriggers and updateOn)", "triggers", "NewTrigger", "Trigger")}),
    );
    paths.insert(
        format!("{triggers}/{{id}}"),
        json!({"patch": operation("Turn a trigger on or off, change its comment, or give it a new URL", "triggers", Some(body(reference("TriggerUpdate"))), ("200", ok("The trigger (with triggerUrl when reset)", reference("Trigger"))), true),
               "delete": operation("Delete a trigger; its URL stops at once", "triggers", None, ("204", json!({"description": "Deleted"})), true)}),
    );
    let mut fire = operation(
        "Call a trigger (no other credential); unknown, disabled and deleted URLs are 404; at most 10 calls a minute per trigger (429)",
        "triggers",
        None,
        ("200", ok("What it did", reference("TriggerOutcome"))),
        false,
    );
    fire["security"] = json!([]);
    fire["responses"]["429"] = json!({"description": "Too many calls; wait Retry-After seconds", "content": {"application/json": {"schema": reference("Error")}}});
    paths.insert("/triggers/{secret}".into(), json!({"post": fire}));
    paths.insert(
        "/webhooks".into(),
        json!({"get": operation("Webhooks (admin)", "webhooks", None, ("200", ok("Webhooks", list_of("Webhook"))), false),
               "post": create("A webhook: every selected change is POSTed, signed, retried (admin)", "webhooks", "NewWebhook", "Webhook")}),
    );
    let mut update = operation(
        "Replace a webhook's name, URL, filter and state (and secret, when given)",
        "webhooks",
        Some(body(reference("NewWebhook"))),
        ("200", ok("Updated", reference("Webhook"))),
        true,
    );
    update["parameters"] = json!([{"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/Comment"}]);
    paths.insert(
        "/webhooks/{id}".into(),
        json!({"get": operation("One webhook", "webhooks", None, ("200", ok("Found", reference("Webhook"))), false),
               "put": update,
               "delete": operation("Delete a webhook and its pending deliveries", "webhooks", None, ("204", json!({"description": "Deleted"})), true)}),
    );
    let mut deliveries = operation(
        "A webhook's newest deliveries with every attempt (status, response code, milliseconds)",
        "webhooks",
        None,
        ("200", ok("Deliveries", list_of("Delivery"))),
        false,
    );
    deliveries["parameters"] = json!([{"name": "limit", "in": "query", "description": "1 to 200 (default 50)", "schema": {"type": "integer"}}]);
    paths.insert(
        "/webhooks/{id}/deliveries".into(),
        json!({"get": deliveries}),
    );
    paths.insert(
        "/webhooks/{id}/deliveries/{delivery}/redeliver".into(),
        json!({"post": conflict_409(operation("Send a delivery again, now, with the same delivery id", "webhooks", None, ("200", ok("The delivery", reference("Delivery"))), true), "invalid_state: it is being attempted already")}),
    );
}
