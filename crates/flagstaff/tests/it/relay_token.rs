//! A relay configured by a relay token (issue 22): it serves every environment the token may
//! relay, with credential fingerprints only, and follows the upstream live: an environment the
//! token gains is served, a rotated key works (the old one stops), a revoked token withdraws
//! everything. Beside it, the attacks: the configuration route and the token-authorized stream
//! and events routes refuse no token, SDK keys, tokens without `relayEnvironment`, and
//! environments the token may not relay.

use std::time::Duration;

use flagstaff_testkit::relay::TestRelay;
use flagstaff_testkit::sdk::{Driver, Sdk};
use serde_json::{Value, json};

use crate::sdks::{binary, eventually, flag_and_segment_changes_reach, fresh_server, runtime};

/// `GET {base}{path}` with an `Authorization` value; the status, ETag and JSON body.
fn get(
    base: &str,
    path: &str,
    authorization: Option<&str>,
    etag: Option<&str>,
) -> (u16, Option<String>, Value) {
    runtime().block_on(async {
        let mut request = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .timeout(Duration::from_secs(5));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let tag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A stream that was opened is not read further: the status says enough.
        let body = if status == 200 && path.starts_with("/relay/all") {
            Value::Null
        } else {
            response.json().await.unwrap_or(Value::Null)
        };
        (status, tag, body)
    })
}

fn post(base: &str, path: &str, authorization: &str) -> u16 {
    runtime().block_on(async {
        reqwest::Client::new()
            .post(format!("{base}{path}"))
            .header("Authorization", authorization)
            .header("Content-Type", "application/json")
            .body("[]")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

fn status(relay: &TestRelay) -> Value {
    get(&relay.base(), "/status", None, None).2
}

/// The environments the relay serves and is connected for.
fn connected(relay: &TestRelay) -> Vec<String> {
    status(relay)["environments"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|e| e["connected"] == true)
                .filter_map(|e| e["environment"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_relay_token_configures_the_relay_and_follows_the_upstream() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, api, sdk_key) = fresh_server(dir.path());
    let base = server.base();
    let rt = runtime();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "live", "name": "Live"}),
    ));
    let role = rt.block_on(api.post(
        "/roles",
        &json!({"key": "relay", "name": "Relay", "policy": [{"effect": "allow",
            "actions": ["relayEnvironment"], "resources": ["proj/*:env/production"]}]}),
    ));
    let token = rt.block_on(api.post(
        "/tokens",
        &json!({"name": "relay", "customRoles": ["relay"]}),
    ));
    let token_id = token["token"]["id"].as_str().unwrap().to_owned();
    let token = format!("Bearer {}", token["secret"].as_str().unwrap());
    let reader = rt.block_on(api.post("/tokens", &json!({"name": "reader", "role": "reader"})));
    let reader = format!("Bearer {}", reader["secret"].as_str().unwrap());
    let test_key = rt.block_on(api.post(
        "/projects/default/environments/test/keys/sdk/rotate",
        &json!({"oldKeyValidForSeconds": 0}),
    ))["sdkKey"]
        .as_str()
        .unwrap()
        .to_owned();

    // The configuration route: only a token that may relay something gets it, and what it
    // gets holds fingerprints, never a key.
    let configuration = "/api/v1/relay/environments";
    assert_eq!(get(&base, configuration, None, None).0, 401);
    assert_eq!(get(&base, configuration, Some(&sdk_key), None).0, 401);
    let (code, _, refusal) = get(&base, configuration, Some(&reader), None);
    assert_eq!(
        (code, refusal["code"].as_str()),
        (403, Some("forbidden")),
        "{refusal}"
    );
    let (code, etag, listed) = get(&base, configuration, Some(&token), None);
    assert_eq!(code, 200, "{listed}");
    let environments = listed["environments"].as_array().unwrap();
    assert_eq!(environments.len(), 1, "production only: {listed}");
    assert_eq!(environments[0]["key"], "production");
    assert!(!listed.to_string().contains(&sdk_key), "{listed}");
    let (code, _, _) = get(&base, configuration, Some(&token), etag.as_deref());
    assert_eq!(code, 304, "an unchanged configuration is not sent again");

    // The token-authorized stream and events routes.
    let production = "/relay/all/default/production";
    for refused in [
        None,
        Some(sdk_key.as_str()),
        Some(reader.as_str()),
        Some("Bearer fst_0000"),
    ] {
        assert_eq!(get(&base, production, refused, None).0, 401, "{refused:?}");
    }
    assert_eq!(
        get(&base, "/relay/all/default/test", Some(&token), None).0,
        401
    );
    assert_eq!(
        get(&base, "/relay/all/nowhere/production", Some(&token), None).0,
        401
    );
    assert_eq!(post(&base, "/relay/bulk/default/test", &token), 401);
    assert_eq!(post(&base, "/relay/bulk/default/production", &reader), 401);
    assert_eq!(
        post(&base, "/relay/diagnostic/default/production", &sdk_key),
        401
    );
    assert_eq!(post(&base, "/relay/bulk/default/production", &token), 202);

    // The relay, with nothing but the upstream and the token.
    let relay_dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_with(
        binary(),
        relay_dir.path(),
        &base,
        &[],
        &format!(
            "token = {:?}\nauto_config_interval_ms = 200\n",
            token.trim_start_matches("Bearer ")
        ),
    );
    assert!(
        eventually(Duration::from_secs(10), || connected(&relay)
            == ["production"]),
        "{}",
        status(&relay)
    );
    let saved =
        std::fs::read_to_string(relay_dir.path().join("data/relay-environments.json")).unwrap();
    assert!(!saved.contains(&sdk_key), "the relay keeps no key on disk");
    assert!(
        !status(&relay).to_string().contains("fst_"),
        "nor shows its token"
    );

    // LaunchDarkly's SDKs through it, with the production key the relay never received.
    let mut drivers: Vec<Driver> = Sdk::ALL.into_iter().map(Driver::start).collect();
    let alice = json!({"kind": "user", "key": "alice", "country": "NZ"});
    for driver in &mut drivers {
        assert!(
            driver.open("t", &sdk_key, &relay.base(), true),
            "{} initializes through a token-configured relay",
            driver.sdk.name()
        );
        assert_eq!(
            driver.value("t", "live", &alice, &json!("default")),
            json!(false)
        );
    }
    flag_and_segment_changes_reach(&rt, &api, &mut drivers, "t");
    // Server-side events go upstream through /relay/bulk with the token.
    for driver in &mut drivers {
        driver.track("t", "token-relayed", &alice, None);
        driver.flush("t");
    }
    let custom = || {
        let custom =
            rt.block_on(api.get("/projects/default/environments/production/custom-events"));
        custom["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["key"] == "token-relayed"))
            .map(|i| i["count"].clone())
    };
    assert!(
        eventually(Duration::from_secs(20), || custom()
            == Some(json!(Sdk::ALL.len()))),
        "events relayed with the token arrive: {:?}",
        custom()
    );

    // Not relayed yet: the test environment's key is refused by the relay.
    let relay_poll = |key: &str| get(&relay.base(), "/sdk/latest-all", Some(key), None).0;
    assert_eq!(relay_poll(&test_key), 401);
    // The role grows to every environment: the relay serves test too, without a restart.
    rt.block_on(api.put(
        "/roles/relay",
        &json!({"key": "relay", "name": "Relay", "policy": [{"effect": "allow",
            "actions": ["relayEnvironment"], "resources": ["proj/*:env/*"]}]}),
        role["version"].as_u64(),
    ));
    assert!(
        eventually(Duration::from_secs(10), || relay_poll(&test_key) == 200),
        "{}",
        status(&relay)
    );

    // A rotation with no grace period: the new key works at the relay, the old one stops.
    let new_key = rt.block_on(api.post(
        "/projects/default/environments/production/keys/sdk/rotate",
        &json!({"oldKeyValidForSeconds": 0}),
    ))["sdkKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        eventually(Duration::from_secs(10), || relay_poll(&new_key) == 200
            && relay_poll(&sdk_key) == 401),
        "{}",
        status(&relay)
    );

    // The token is revoked: the server ends its streams and the relay withdraws everything.
    rt.block_on(api.call(
        reqwest::Method::DELETE,
        &format!("/tokens/{token_id}"),
        None,
        None,
    ));
    assert!(
        eventually(Duration::from_secs(10), || relay_poll(&new_key) == 401
            && relay_poll(&test_key) == 401),
        "{}",
        status(&relay)
    );
    let after = status(&relay);
    assert_eq!(after["status"], "degraded", "{after}");
    assert!(
        after["configuration"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("refused the relay token")),
        "{after}"
    );
}
