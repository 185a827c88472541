//! OpenFeature Remote Evaluation Protocol: the real OFREP provider from npm against Flagstaff,
//! and the protocol's error codes and caching over plain HTTP.

use flagstaff_app::model::FlagDefinition;
use flagstaff_testkit::sdk::{Sdk, run_node_script};
use serde_json::{Value, json};

use crate::support::{Server, client, fast, set_targeting, start};

async fn create(server: &Server, definition: Value) {
    let definition: FlagDefinition = serde_json::from_value(definition).unwrap();
    server
        .app
        .create_flag(&server.admin, "default", definition, "")
        .await
        .unwrap();
}

/// Flags with results worked out by hand below.
async fn flags(server: &Server) {
    create(
        server,
        json!({"key": "checkout", "name": "Checkout",
        "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": true}}),
    )
    .await;
    create(
        server,
        json!({"key": "theme", "name": "Theme", "kind": "multivariate",
        "variations": [{"value": "light"}, {"value": "dark"}, {"value": "blue"}],
        "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": true}}),
    )
    .await;
    create(server, json!({"key": "internal", "name": "Internal"})).await;
    // checkout: on, `vip` targeted to true (0), Canadians by rule to true, others false (1).
    set_targeting(server, "checkout", |t| {
        t.on = true;
        t.fallthrough = serde_json::from_value(json!({"variation": 1})).unwrap();
        t.targets =
            vec![serde_json::from_value(json!({"values": ["vip"], "variation": 0})).unwrap()];
        t.rules = vec![
            serde_json::from_value(json!({"id": "canada", "variation": 0,
            "clauses": [{"attribute": "country", "op": "in", "values": ["CA"]}]}))
            .unwrap(),
        ];
    })
    .await;
    // theme: on, everyone gets "dark".
    set_targeting(server, "theme", |t| {
        t.on = true;
        t.fallthrough = serde_json::from_value(json!({"variation": 1})).unwrap();
    })
    .await;
    server.caught_up().await;
}

#[tokio::test]
async fn the_openfeature_ofrep_provider_evaluates_through_flagstaff() {
    if !Sdk::available() {
        return;
    }
    let server = start(fast()).await;
    flags(&server).await;
    let evaluations = json!([
        {"flag": "checkout", "type": "boolean", "default": false, "context": {"targetingKey": "vip"}},
        {"flag": "checkout", "type": "boolean", "default": true, "context": {"targetingKey": "ann", "country": "CA"}},
        {"flag": "checkout", "type": "boolean", "default": true, "context": {"targetingKey": "bob", "country": "FR"}},
        {"flag": "theme", "type": "string", "default": "none", "context": {"targetingKey": "bob", "kind": "device"}},
        {"flag": "internal", "type": "boolean", "default": true, "context": {"targetingKey": "bob"}},
        {"flag": "missing", "type": "boolean", "default": true, "context": {"targetingKey": "bob"}},
        {"flag": "theme", "type": "number", "default": 7, "context": {"targetingKey": "bob"}},
        {"flag": "checkout", "type": "boolean", "default": true, "context": {"country": "CA"}}
    ]);
    let run = |key: String| {
        let input = json!({"base": server.base, "key": key, "evaluations": evaluations});
        tokio::task::spawn_blocking(move || run_node_script("ofrep.mjs", &input))
    };
    let with_sdk_key = run(server.sdk_key.clone()).await.unwrap();
    let r = with_sdk_key.as_array().unwrap();
    assert_eq!(r[0]["value"], json!(true));
    assert_eq!(r[0]["reason"], "TARGETING_MATCH");
    assert_eq!(r[0]["variant"], "0");
    assert_eq!(r[1]["value"], json!(true));
    assert_eq!(r[1]["reason"], "TARGETING_MATCH");
    assert_eq!(r[1]["flagMetadata"]["ruleId"], "canada");
    assert_eq!(r[2]["value"], json!(false));
    // A fallthrough to one variation: OFREP 0.3 has no `DEFAULT`; LaunchDarkly's reason is in
    // the metadata.
    assert_eq!(r[2]["reason"], "STATIC");
    assert_eq!(r[2]["flagMetadata"]["ldReason"], "FALLTHROUGH");
    assert_eq!(r[3]["value"], "dark");
    assert_eq!(r[3]["variant"], "1");
    // `internal` is off with the default off variation (false); the SDK key sees it.
    assert_eq!(r[4]["value"], json!(false));
    assert_eq!(r[4]["reason"], "DISABLED");
    assert_eq!(r[5]["value"], json!(true));
    assert_eq!(r[5]["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(r[6]["value"], json!(7));
    assert_eq!(r[6]["errorCode"], "TYPE_MISMATCH");
    assert_eq!(r[7]["value"], json!(true));
    assert_eq!(r[7]["errorCode"], "TARGETING_KEY_MISSING");

    // The client-side ID sees only flags marked for browsers.
    let with_client_id = run(server.client_side_id.clone()).await.unwrap();
    let r = with_client_id.as_array().unwrap();
    assert_eq!(r[0]["value"], json!(true));
    assert_eq!(
        r[4]["errorCode"], "FLAG_NOT_FOUND",
        "internal is not for browsers"
    );
}

#[tokio::test]
async fn ofrep_bulk_evaluation_has_etags_and_error_codes() {
    let server = start(fast()).await;
    flags(&server).await;
    let url = format!("{}/ofrep/v1/evaluate/flags", server.base);
    let post = |body: Value, key: &str| {
        client()
            .post(&url)
            .header("Authorization", format!("Bearer {key}"))
            .json(&body)
            .send()
    };
    let response = post(
        json!({"context": {"targetingKey": "vip"}}),
        &server.mobile_key,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&str> = body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec!["checkout", "theme"],
        "the mobile key sees mobile flags"
    );
    assert_eq!(body["flags"][0]["value"], json!(true));

    let again = client()
        .post(&url)
        .header("X-API-Key", &server.mobile_key)
        .header("If-None-Match", &etag)
        .json(&json!({"context": {"targetingKey": "vip"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let missing_key = post(json!({"context": {"country": "CA"}}), &server.sdk_key)
        .await
        .unwrap();
    assert_eq!(missing_key.status(), 400);
    assert_eq!(
        missing_key.json::<Value>().await.unwrap()["errorCode"],
        "TARGETING_KEY_MISSING"
    );
    let not_json = client()
        .post(&url)
        .header("Authorization", format!("Bearer {}", server.sdk_key))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        not_json.json::<Value>().await.unwrap()["errorCode"],
        "PARSE_ERROR"
    );
    let unknown = post(json!({"context": {"targetingKey": "u"}}), "sdk-unknown")
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    let single = client()
        .post(format!("{url}/nope"))
        .header("Authorization", format!("Bearer {}", server.sdk_key))
        .json(&json!({"context": {"targetingKey": "u"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(single.status(), 404);
    assert_eq!(
        single.json::<Value>().await.unwrap(),
        json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "no such flag for this credential"})
    );
}

/// OFREP 0.3 allows five reasons (`evaluationSuccess.reason`); every LaunchDarkly reason maps
/// onto one of them, and LaunchDarkly's own stays in the metadata.
#[tokio::test]
async fn every_launchdarkly_reason_becomes_one_of_the_five_ofrep_reasons() {
    let server = start(fast()).await;
    flags(&server).await;
    create(&server, json!({"key": "split", "name": "Split"})).await;
    create(&server, json!({"key": "gated", "name": "Gated"})).await;
    // split: Canadians by a 50/50 rule rollout, everyone else by a 50/50 fallthrough rollout.
    let half = json!({"variations": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]});
    set_targeting(&server, "split", |t| {
        t.on = true;
        t.fallthrough = serde_json::from_value(json!({"rollout": half})).unwrap();
        t.rules = vec![
            serde_json::from_value(json!({"id": "ca-split", "rollout": half,
            "clauses": [{"attribute": "country", "op": "in", "values": ["CA"]}]}))
            .unwrap(),
        ];
    })
    .await;
    // gated: on, but only for contexts that `checkout` serves true (variation 0).
    set_targeting(&server, "gated", |t| {
        t.on = true;
        t.fallthrough = serde_json::from_value(json!({"variation": 0})).unwrap();
        t.prerequisites =
            vec![serde_json::from_value(json!({"key": "checkout", "variation": 0})).unwrap()];
    })
    .await;
    server.caught_up().await;
    let evaluate = |context: Value| {
        let url = format!("{}/ofrep/v1/evaluate/flags", server.base);
        let key = server.sdk_key.clone();
        async move {
            let body: Value = client()
                .post(&url)
                .header("Authorization", format!("Bearer {key}"))
                .json(&json!({"context": context}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let key = f["key"].as_str().unwrap().to_owned();
                    (
                        key,
                        (f["reason"].clone(), f["metadata"]["ldReason"].clone()),
                    )
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let bob = evaluate(json!({"targetingKey": "bob", "country": "FR"})).await;
    // OFREP 0.3 accepts an empty targetingKey: evaluated as a legacy user with an empty key,
    // which no target or rule here picks.
    let nobody = evaluate(json!({"targetingKey": "", "country": "FR"})).await;
    assert_eq!(nobody, bob, "an empty key falls through like any other");
    let ann = evaluate(json!({"targetingKey": "ann", "country": "CA"})).await;
    let vip = evaluate(json!({"targetingKey": "vip"})).await;
    let expected = [
        (&bob, "checkout", "STATIC", "FALLTHROUGH"),
        (&ann, "checkout", "TARGETING_MATCH", "RULE_MATCH"),
        (&vip, "checkout", "TARGETING_MATCH", "TARGET_MATCH"),
        (&bob, "internal", "DISABLED", "OFF"),
        (&bob, "split", "SPLIT", "FALLTHROUGH"),
        (&ann, "split", "SPLIT", "RULE_MATCH"),
        (&bob, "gated", "TARGETING_MATCH", "PREREQUISITE_FAILED"),
        (&vip, "gated", "STATIC", "FALLTHROUGH"),
    ];
    for (results, flag, reason, ld_reason) in expected {
        assert_eq!(
            results[flag],
            (json!(reason), json!(ld_reason)),
            "{flag}: {results:?}"
        );
    }
    let allowed = ["STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "UNKNOWN"];
    for results in [&bob, &ann, &vip] {
        for (flag, (reason, _)) in results {
            assert!(
                allowed.contains(&reason.as_str().unwrap()),
                "{flag}: {reason}"
            );
        }
    }
}
