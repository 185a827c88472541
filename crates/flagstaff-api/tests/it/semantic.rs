//! Semantic patches (issue 19, first part): LaunchDarkly's instructions on `PATCH` with
//! `Content-Type: application/json; domain-model=launchdarkly.semanticpatch`, applied to the
//! document as it is now, authorized by the actions the result takes, and refused with
//! `409 instruction_conflict` naming the instruction when they can no longer apply.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, TestApi};

const SEMANTIC: &str = "application/json; domain-model=launchdarkly.semanticpatch";
const TARGETING: &str = "/api/v1/projects/default/environments/production/flags/checkout";

async fn semantic(
    api: &TestApi,
    token: &str,
    path: &str,
    body: Value,
    if_match: Option<&str>,
) -> Reply {
    let mut headers = vec![("content-type", SEMANTIC)];
    if let Some(version) = if_match {
        headers.push(("if-match", version));
    }
    api.call(Method::PATCH, path, Some(token), &headers, Some(body))
        .await
}

async fn with_flag() -> TestApi {
    let api = TestApi::new().await;
    let created = api
        .post(
            "/api/v1/projects/default/flags",
            json!({"key": "checkout", "name": "Checkout"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    api
}

#[tokio::test]
async fn instructions_change_targeting_without_a_version_and_record_their_comment() {
    let api = with_flag().await;
    let admin = api.admin().to_owned();
    let reply = semantic(
        &api,
        &admin,
        TARGETING,
        json!({"comment": "launch for staff", "instructions": [
            {"kind": "turnFlagOn"},
            {"kind": "addRule", "clauses": [{"attribute": "email", "op": "endsWith", "values": ["@example.com"]}], "variation": 0},
            {"kind": "addTargets", "variation": 0, "values": ["ann"]},
            {"kind": "addTargets", "contextKind": "org", "variation": 0, "values": ["acme"]}]}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["on"], json!(true));
    assert_eq!(reply.body["rules"].as_array().unwrap().len(), 1);
    assert_eq!(
        reply.body["targets"],
        json!([{"values": ["ann"], "variation": 0}])
    );
    assert_eq!(
        reply.body["contextTargets"],
        json!([{"contextKind": "user", "values": [], "variation": 0}, {"contextKind": "org", "values": ["acme"], "variation": 0}])
    );
    // The result evaluates as written: ann by target, acme by its org target, staff by rule.
    let evaluate = |context: Value| {
        let api = &api;
        async move {
            api.post(
                "/api/v1/projects/default/environments/production/evaluate",
                json!({"context": context}),
            )
            .await
            .body["flags"]["checkout"]["reason"]["kind"]
                .clone()
        }
    };
    assert_eq!(
        evaluate(json!({"kind": "user", "key": "ann"})).await,
        json!("TARGET_MATCH")
    );
    assert_eq!(
        evaluate(json!({"kind": "org", "key": "acme"})).await,
        json!("TARGET_MATCH")
    );
    assert_eq!(
        evaluate(json!({"kind": "user", "key": "x", "email": "x@example.com"})).await,
        json!("RULE_MATCH")
    );
    let audit = api.get("/api/v1/audit?key=checkout&kind=targeting").await;
    let last = audit.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["comment"], "launch for staff");
    // A JSON Patch still needs If-Match.
    let plain = api
        .call(
            Method::PATCH,
            TARGETING,
            Some(&admin),
            &[],
            Some(json!([{"op": "replace", "path": "/on", "value": false}])),
        )
        .await;
    assert_eq!(
        plain.status,
        StatusCode::PRECONDITION_REQUIRED,
        "{}",
        plain.body
    );
}

#[tokio::test]
async fn an_instruction_that_no_longer_applies_is_a_conflict_and_writes_nothing() {
    let api = with_flag().await;
    let admin = api.admin().to_owned();
    let added = semantic(
        &api,
        &admin,
        TARGETING,
        json!({"instructions": [{"kind": "addRule", "clauses": [{"attribute": "key", "op": "in", "values": ["a"]}], "variation": 0}]}),
        None,
    )
    .await;
    let rule_id = added.body["rules"][0]["id"].as_str().unwrap().to_owned();
    let version = added.body["version"].as_u64().unwrap();
    // Someone removes the rule; an instruction written against it can no longer apply.
    let removed = semantic(
        &api,
        &admin,
        TARGETING,
        json!({"instructions": [{"kind": "removeRule", "ruleId": rule_id}]}),
        None,
    )
    .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    let head = api.app.head().await.unwrap();
    let stale = semantic(
        &api,
        &admin,
        TARGETING,
        json!({"instructions": [{"kind": "turnFlagOn"}, {"kind": "updateRuleVariationOrRollout", "ruleId": rule_id, "variation": 1}]}),
        None,
    )
    .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert_eq!(stale.body["code"], "instruction_conflict");
    assert_eq!(stale.body["field"], "instructions[1]");
    assert_eq!(
        api.app.head().await.unwrap(),
        head,
        "nothing was written, not even turnFlagOn"
    );
    // With If-Match, a stale version is a version conflict as for any update.
    let pinned = semantic(
        &api,
        &admin,
        TARGETING,
        json!({"instructions": [{"kind": "turnFlagOn"}]}),
        Some(&format!("\"{version}\"")),
    )
    .await;
    assert_eq!(pinned.status, StatusCode::CONFLICT, "{}", pinned.body);
    assert_eq!(pinned.body["code"], "version_conflict");
    // Malformed instructions name their field.
    let malformed = semantic(
        &api,
        &admin,
        TARGETING,
        json!({"instructions": [{"kind": "addTargets", "variation": "zero", "values": []}]}),
        None,
    )
    .await;
    assert_eq!(
        malformed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        malformed.body
    );
    assert_eq!(malformed.body["field"], "instructions[0].variation");
}

#[tokio::test]
async fn instructions_are_authorized_by_what_they_change() {
    let api = with_flag().await;
    let role = api
        .post("/api/v1/roles", json!({"key": "kill-switch", "name": "Kill switch", "policy": [
            {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]}]}))
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.body);
    let token = api
        .post(
            "/api/v1/tokens",
            json!({"name": "pager", "customRoles": ["kill-switch"]}),
        )
        .await;
    let kill_switch = token.body["secret"].as_str().unwrap().to_owned();
    let reader = api
        .post("/api/v1/tokens", json!({"name": "r", "role": "reader"}))
        .await;
    let reader = reader.body["secret"].as_str().unwrap().to_owned();
    let on = semantic(
        &api,
        &kill_switch,
        TARGETING,
        json!({"instructions": [{"kind": "turnFlagOn"}]}),
        None,
    )
    .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    let rule = semantic(
        &api,
        &kill_switch,
        TARGETING,
        json!({"instructions": [{"kind": "addRule", "clauses": [], "variation": 0}]}),
        None,
    )
    .await;
    assert_eq!(rule.status, StatusCode::FORBIDDEN, "{}", rule.body);
    assert_eq!(rule.body["action"], "updateRules");
    // A reader is refused before the body is even parsed.
    let garbage = api
        .call_raw(
            Method::PATCH,
            TARGETING,
            Some(&reader),
            &[("content-type", SEMANTIC)],
            "{not json",
        )
        .await;
    assert_eq!(garbage.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn segments_take_instructions_too() {
    let api = TestApi::new().await;
    let admin = api.admin().to_owned();
    let segments = "/api/v1/projects/default/environments/production/segments";
    let created = api
        .post(segments, json!({"key": "beta", "included": ["ann"]}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let reply = semantic(
        &api,
        &admin,
        &format!("{segments}/beta"),
        json!({"instructions": [
            {"kind": "addIncludedTargets", "values": ["bob"]},
            {"kind": "addExcludedTargets", "contextKind": "org", "values": ["evil"]},
            {"kind": "removeIncludedTargets", "values": ["ann"]},
            {"kind": "addRule", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["included"], json!(["bob"]));
    assert_eq!(
        reply.body["excludedContexts"],
        json!([{"contextKind": "org", "values": ["evil"]}])
    );
    assert_eq!(reply.body["rules"].as_array().unwrap().len(), 1);
    let gone = semantic(
        &api,
        &admin,
        &format!("{segments}/beta"),
        json!({"instructions": [{"kind": "removeRule", "ruleId": "nope"}]}),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::CONFLICT, "{}", gone.body);
    assert_eq!(gone.body["field"], "instructions[0]");
}
