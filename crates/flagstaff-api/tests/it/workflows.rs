//! Release workflows over the API: webhooks to a real receiver on 127.0.0.1 (signatures,
//! retries, a slow receiver), triggers, schedules, change requests, and their attack paths.

use axum::http::{Method, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{Receiver, TestApi};

const SECRET: &str = "webhook-secret-0123456789";

/// Checks `t=<s>,v1=<hex>` the way a receiver would, with its own HMAC.
fn verify(header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(v1).unwrap_or_default())
        .is_ok()
}

async fn turn_on(api: &TestApi, environment: &str, key: &str) -> axum::http::StatusCode {
    api.call(
        Method::PATCH,
        &format!("/api/v1/projects/default/environments/{environment}/flags/{key}"),
        Some(api.admin()),
        &[(
            "content-type",
            "application/json; domain-model=launchdarkly.semanticpatch",
        )],
        Some(json!({"instructions": [{"kind": "turnFlagOn"}]})),
    )
    .await
    .status
}

#[tokio::test]
async fn a_webhook_is_signed_retried_after_two_500s_and_received_once_with_one_delivery_id() {
    let api = TestApi::new().await.with_private_webhooks();
    let receiver = Receiver::start(vec![500, 500], false).await;
    let made = api
        .post(
            "/api/v1/webhooks",
            json!({"name": "audit sink", "url": receiver.url, "secret": SECRET,
                   "statements": [{"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/production:flag/*"]}]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(made.body.get("secret").is_none());
    let id = made.body["id"].as_str().unwrap().to_owned();
    tokio::spawn(
        api.app
            .clone()
            .run_webhooks(flagstaff_app::webhooks::webhook_client(true)),
    );
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "checkout", "name": "Checkout"}),
    )
    .await;
    assert_eq!(
        turn_on(&api, "production", "checkout").await,
        StatusCode::OK
    );
    // Retries after 1 s and 2 s: the third attempt is accepted.
    let received = receiver.wait_for(3, 20).await;
    assert_eq!(received.len(), 3, "{received:?}");
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r.headers["x-flagstaff-delivery"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|d| *d == ids[0]), "one delivery id: {ids:?}");
    for r in &received {
        let signature = r.headers["x-flagstaff-signature"].to_str().unwrap();
        assert!(verify(signature, &r.body), "{signature}");
        // A tampered body fails the same check.
        assert!(!verify(signature, b"{}"));
    }
    let body: Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!(body["action"], "flag.targeting.update");
    assert_eq!(body["environment"], "production");
    assert_eq!(body["key"], "checkout");
    assert_eq!(body["after"]["on"], true);
    assert_eq!(body["before"]["on"], false);
    assert_eq!(body["delivery"], ids[0]);
    // Delivered: no further attempt comes, and the log says what happened.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(receiver.count(), 3);
    let log = api.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    let delivery = &log.body["items"][0];
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["attempts"], 3);
    let codes: Vec<&Value> = delivery["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)]);
    // The test-environment change was not selected; redelivery keeps the id.
    assert_eq!(log.body["items"].as_array().unwrap().len(), 1);
    let again = api
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{}/redeliver", ids[0]),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let fourth = receiver.wait_for(4, 10).await;
    assert_eq!(fourth[3].headers["x-flagstaff-delivery"], ids[0]);
}

#[tokio::test]
async fn a_slow_receiver_never_holds_a_write_back() {
    let api = TestApi::new().await.with_private_webhooks();
    let receiver = Receiver::start(Vec::new(), true).await;
    api.post("/api/v1/webhooks", json!({"url": receiver.url}))
        .await;
    tokio::spawn(
        api.app
            .clone()
            .run_webhooks(flagstaff_app::webhooks::webhook_client(true)),
    );
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "a", "name": "A"}),
    )
    .await;
    // The receiver now holds a delivery and does not answer.
    receiver.wait_for(1, 10).await;
    assert!(receiver.count() >= 1);
    // Writes go on while it hangs (each must finish well before the receiver's timeout).
    for environment in ["production", "test"] {
        let write = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            turn_on(&api, environment, "a"),
        )
        .await;
        assert_eq!(
            write.expect("a write waited for the receiver"),
            StatusCode::OK
        );
    }
    receiver.release.add_permits(1000);
}

#[tokio::test]
async fn webhook_attacks_private_addresses_secrets_and_roles() {
    let api = TestApi::new().await;
    for url in [
        "http://127.0.0.1:8030/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://localhost/",
        "ftp://example.com/",
        "not a url",
    ] {
        let refused = api.post("/api/v1/webhooks", json!({"url": url})).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{url}: {}",
            refused.body
        );
        assert_eq!(refused.body["field"], "url");
    }
    let short = api
        .post(
            "/api/v1/webhooks",
            json!({"url": "https://hooks.example.com/x", "secret": "short"}),
        )
        .await;
    assert_eq!(short.body["field"], "secret");
    // Only those who manage webhooks see them.
    let writer = api
        .post("/api/v1/tokens", json!({"name": "w", "role": "writer"}))
        .await
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in [
        (Method::GET, "/api/v1/webhooks"),
        (Method::POST, "/api/v1/webhooks"),
    ] {
        let reply = api
            .call(
                method,
                path,
                Some(&writer),
                &[],
                Some(json!({"url": "https://hooks.example.com/x"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    let anonymous = api
        .call(Method::GET, "/api/v1/webhooks", None, &[], None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_trigger_url_turns_the_flag_off_without_other_credentials_and_dies_when_deleted() {
    let api = TestApi::new().await;
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "checkout", "name": "Checkout"}),
    )
    .await;
    turn_on(&api, "production", "checkout").await;
    let base = "/api/v1/projects/default/flags/checkout/environments/production/triggers";
    let made = api
        .post(
            base,
            json!({"action": "turnFlagOff", "comment": "Datadog p99"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let url = format!(
        "/api/v1{}",
        made.body["triggerUrl"]
            .as_str()
            .unwrap()
            .trim_start_matches("/api/v1")
    );
    let fired = api
        .call(
            Method::POST,
            &url,
            None,
            &[],
            Some(json!({"alert": "anything a tool sends"})),
        )
        .await;
    assert_eq!(fired.status, StatusCode::OK, "{}", fired.body);
    assert_eq!(fired.body["changed"], true);
    let targeting = api
        .get("/api/v1/projects/default/environments/production/flags/checkout")
        .await;
    assert_eq!(targeting.body["on"], false);
    let listed = api.get(base).await;
    assert!(
        !listed
            .body
            .to_string()
            .contains(url.rsplit('/').next().unwrap())
    );
    // Attacks: other secrets, other methods, a token in place of the secret.
    for path in [
        "/api/v1/triggers/trg-0000000000000000000000000000000000000000000000000",
        "/api/v1/triggers/nonsense",
        &format!("/api/v1/triggers/{}", api.admin()),
    ] {
        let reply = api.call(Method::POST, path, None, &[], None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let get = api.call(Method::GET, &url, None, &[], None).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    let id = made.body["id"].as_str().unwrap();
    let deleted = api
        .call(
            Method::DELETE,
            &format!("{base}/{id}"),
            Some(api.admin()),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let revoked = api.call(Method::POST, &url, None, &[], None).await;
    assert_eq!(revoked.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn approvals_refuse_direct_writes_and_a_reviewed_request_applies() {
    let api = TestApi::new().await;
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "launch", "name": "Launch"}),
    )
    .await;
    let env = "/api/v1/projects/default/environments/production";
    let current = api.get(env).await;
    let settings = api
        .put(
            env,
            &format!("\"{}\"", current.body["version"]),
            json!({"name": current.body["name"], "approvals": {"required": true, "minApprovals": 1}}),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    assert_eq!(settings.body["approvals"]["required"], true);
    let bad = api
        .put(
            env,
            &format!("\"{}\"", settings.body["version"]),
            json!({"name": "P", "approvals": {"required": true, "minApprovals": 0}}),
        )
        .await;
    assert_eq!(bad.body["field"], "approvals.minApprovals");
    let direct = turn_on(&api, "production", "launch").await;
    assert_eq!(direct, StatusCode::CONFLICT);
    let refused = api
        .call(
            Method::PATCH,
            &format!("{env}/flags/launch"),
            Some(api.admin()),
            &[(
                "content-type",
                "application/json; domain-model=launchdarkly.semanticpatch",
            )],
            Some(json!({"instructions": [{"kind": "turnFlagOn"}]})),
        )
        .await;
    assert_eq!(refused.body["code"], "approval_required");
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("change-requests")
    );
    // A writer asks; the administrator reviews and applies.
    let writer = api
        .post("/api/v1/tokens", json!({"name": "ada", "role": "writer"}))
        .await
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = api
        .call(
            Method::POST,
            &format!("{env}/change-requests"),
            Some(&writer),
            &[],
            Some(json!({"flag": "launch", "instructions": [{"kind": "turnFlagOn"}], "comment": "launch"})),
        )
        .await;
    assert_eq!(request.status, StatusCode::CREATED, "{}", request.body);
    let id = request.body["id"].as_str().unwrap();
    let own = api
        .call(
            Method::POST,
            &format!("/api/v1/change-requests/{id}/reviews"),
            Some(&writer),
            &[],
            Some(json!({"kind": "approve"})),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    let approve = api
        .post(
            &format!("/api/v1/change-requests/{id}/reviews"),
            json!({"kind": "approve", "comment": "ok"}),
        )
        .await;
    assert_eq!(approve.body["status"], "approved");
    let view = api.get(&format!("/api/v1/change-requests/{id}")).await;
    assert_eq!(view.body["proposed"]["on"], true);
    let applied = api
        .call(
            Method::POST,
            &format!("/api/v1/change-requests/{id}/apply"),
            Some(api.admin()),
            &[],
            None,
        )
        .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert_eq!(
        api.get(&format!("{env}/flags/launch")).await.body["on"],
        true
    );
    // Unknown ids and malformed bodies.
    let missing = api
        .post(
            "/api/v1/change-requests/nope/reviews",
            json!({"kind": "approve"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_kind = api
        .post(
            &format!("/api/v1/change-requests/{id}/reviews"),
            json!({"kind": "maybe"}),
        )
        .await;
    assert_eq!(bad_kind.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_kind.body["field"], "kind");
}

#[tokio::test]
async fn scheduling_over_the_api_names_the_offending_field() {
    let api = TestApi::new().await;
    api.post(
        "/api/v1/projects/default/flags",
        json!({"key": "launch", "name": "Launch"}),
    )
    .await;
    let base = "/api/v1/projects/default/environments/test/flags/launch/scheduled-changes";
    for (body, field) in [
        (
            json!({"executeAt": "2030-12-01T08:00:00", "instructions": [{"kind": "turnFlagOn"}]}),
            "executeAt",
        ),
        (
            json!({"executeAt": "2030-12-01T08:00:00", "timeZone": "Nowhere/Else", "instructions": [{"kind": "turnFlagOn"}]}),
            "timeZone",
        ),
        (
            json!({"executionDate": 1, "instructions": [{"kind": "turnFlagOn"}]}),
            "executeAt",
        ),
        (
            json!({"executionDate": 1_900_000_000_000i64, "instructions": [{"kind": "fly"}]}),
            "instructions[0].kind",
        ),
        (
            json!({"executionDate": 1_900_000_000_000i64, "instructions": []}),
            "instructions",
        ),
        (
            json!({"executionDate": 1_900_000_000_000i64, "instructions": [{"kind": "removeRule", "ruleId": "none"}]}),
            "instructions[0]",
        ),
    ] {
        let reply = api.post(base, body.clone()).await;
        assert!(reply.status.is_client_error(), "{body}: {}", reply.body);
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.body);
    }
    let made = api
        .post(base, json!({"executeAt": "2030-12-01T08:00:00", "timeZone": "Pacific/Auckland", "instructions": [{"kind": "turnFlagOn"}]}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    assert_eq!(made.body["localTime"], "2030-12-01T08:00:00+13:00");
    assert_eq!(made.body["executionDate"], 1_922_295_600_000i64);
    // A reader can see it but not move or cancel it.
    let reader = api
        .post("/api/v1/tokens", json!({"name": "r", "role": "reader"}))
        .await
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = made.body["id"].as_str().unwrap();
    let path = format!("/api/v1/projects/default/environments/test/scheduled-changes/{id}");
    assert_eq!(
        api.call(Method::GET, &path, Some(&reader), &[], None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.call(Method::DELETE, &path, Some(&reader), &[], None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call(Method::DELETE, &path, Some(api.admin()), &[], None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}
