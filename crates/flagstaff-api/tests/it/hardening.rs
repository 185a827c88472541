//! Authorization before work and bounded JSON Patch, in process (issue 17). The real-process
//! memory check of the patch bomb is in the binary's `hardening.rs`.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApi;

async fn token(api: &TestApi, body: Value) -> String {
    let created = api.post("/api/v1/tokens", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // Token ids carry 128 random bits.
    let id = created.body["token"]["id"]
        .as_str()
        .or(created.body["id"].as_str())
        .expect("the token's id");
    let digits = id.strip_prefix("tok-").expect("tok- prefix");
    assert_eq!(digits.len(), 32, "{id}");
    assert!(digits.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    created.body["secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn writes_are_authorized_before_their_body_is_read() {
    let api = TestApi::new().await;
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "x", "name": "X"}),
    )
    .await;
    api.post(
        "/api/v1/projects/default/environments/production/segments",
        json!({"key": "s"}),
    )
    .await;
    let reader = token(&api, json!({"name": "r", "role": "reader"})).await;
    let test_writer = token(
        &api,
        json!({"name": "w", "role": "writer", "environments": ["default/test"]}),
    )
    .await;
    // Garbage bodies: whoever may not write gets 403, never a 400 that would mean the body
    // was looked at.
    let cases = [
        (Method::PATCH, "/api/v1/projects/default/flags/x", &reader),
        (
            Method::PATCH,
            "/api/v1/projects/default/flags/x",
            &test_writer,
        ),
        (
            Method::PATCH,
            "/api/v1/projects/default/environments/production/flags/x",
            &test_writer,
        ),
        (
            Method::PATCH,
            "/api/v1/projects/default/environments/production/segments/s",
            &reader,
        ),
        (
            Method::POST,
            "/api/v1/projects/default/environments/production/import",
            &test_writer,
        ),
        (
            Method::POST,
            "/api/v1/projects/default/environments/test/import",
            &reader,
        ),
    ];
    for (method, path, token) in cases {
        let reply = api
            .call_raw(
                method.clone(),
                path,
                Some(token),
                &[("if-match", "\"1\"")],
                "{garbage",
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            reply.body
        );
        assert_eq!(reply.body["code"], "forbidden");
    }
}

#[tokio::test]
async fn a_patch_is_bounded_in_operations_and_in_what_it_builds() {
    let api = TestApi::new().await;
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "x", "name": "X"}),
    )
    .await;
    let flag = "/api/v1/projects/default/flags/x";
    let many: Vec<Value> = (0..1_001)
        .map(|_| json!({"op": "test", "path": "/key", "value": "x"}))
        .collect();
    let refused = api.patch(flag, "\"1\"", Value::Array(many)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["code"], "invalid_patch");

    // One large add over the limit is refused at its own index.
    let big = "x".repeat(flagstaff_http::MAX_BODY_BYTES);
    let refused = api
        .patch(
            flag,
            "\"1\"",
            json!([{"op": "test", "path": "/key", "value": "x"}, {"op": "add", "path": "/description", "value": big}]),
        )
        .await;
    // The request itself is over the body limit: refused before any patching.
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Copies that double the document: refused when the result would pass the limit.
    let mut copies = vec![json!({"op": "add", "path": "/z", "value": ["0123456789"]})];
    copies.extend((0..30).map(|_| json!({"op": "copy", "from": "/z", "path": "/z/-"})));
    let refused = api.patch(flag, "\"1\"", Value::Array(copies)).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["code"], "payload_too_large");
    // `/z` starts at 14 bytes and copy k appends a copy of it, so it is 15·2^k − 1 bytes after
    // copy k; the copies add up to 15·(2^k − 1) − k bytes, past 1 MiB first at k = 17 (the flag
    // itself is a few hundred bytes).
    assert_eq!(refused.body["field"], "[17]");
    // A reasonable patch still works.
    let ok = api
        .patch(
            flag,
            "\"1\"",
            json!([{"op": "replace", "path": "/name", "value": "Renamed"}]),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

#[tokio::test]
async fn an_environment_limited_token_reads_no_other_environment_in_the_audit_log() {
    let api = TestApi::new().await;
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "x", "name": "X"}),
    )
    .await;
    let secret_rule = json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1,
        "rules": [{"variation": 0, "clauses": [{"attribute": "email", "op": "in", "values": ["ceo@example.com"]}]}]});
    for environment in ["production", "test"] {
        let path = format!("/api/v1/projects/default/environments/{environment}/flags/x");
        let current = api.get(&path).await;
        let version = format!("\"{}\"", current.body["version"]);
        let saved = api.put(&path, &version, secret_rule.clone()).await;
        assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    }
    api.post(
        "/api/v1/members",
        json!({"email": "m@example.com", "name": "M", "role": "reader", "password": "long enough password"}),
    )
    .await;
    let limited = token(
        &api,
        json!({"name": "test only", "role": "reader", "environments": ["default/test"]}),
    )
    .await;
    // The exploit: production's rules were readable from the audit log.
    let refused = api
        .call(
            Method::GET,
            "/api/v1/projects/default/environments/production/flags/x",
            Some(&limited),
            &[],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let log = api
        .call(
            Method::GET,
            "/api/v1/audit?limit=500",
            Some(&limited),
            &[],
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let entries = log.body["items"].as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["scope"] == "default/test"),
        "{entries:?}"
    );
    for entry in entries {
        assert_ne!(entry["scope"], "default/production", "{entry}");
        assert!(
            !["member", "token"].contains(&entry["kind"].as_str().unwrap_or_default()),
            "{entry}"
        );
        assert!(!entry.to_string().contains("ceo@example.com") || entry["scope"] == "default/test");
    }
}
