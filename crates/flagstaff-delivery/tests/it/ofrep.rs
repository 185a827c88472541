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

/// The bulk evaluation of `default/production` for `alice` with the client-side ID, and `query`.
async fn bulk(server: &Server, query: &str) -> reqwest::Response {
    client()
        .post(format!("{}/ofrep/v1/evaluate/flags{query}", server.base))
        .header("Authorization", format!("Bearer {}", server.client_side_id))
        .json(&json!({"context": {"targetingKey": "alice"}}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_bulk_evaluation_names_a_stream_that_announces_each_change() {
    let server = start(fast()).await;
    flags(&server).await;
    let response = bulk(&server, "").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let streams = body["eventStreams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["type"], "sse");
    assert!(
        streams[0].get("url").is_none(),
        "exactly one of url and endpoint"
    );
    let uri = streams[0]["endpoint"]["requestUri"].as_str().unwrap();
    assert_eq!(uri, format!("/ofrep/v1/events/{}", server.client_side_id));
    let theme = |body: &Value| {
        body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == "theme")
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(theme(&body), "dark");

    // A browser's EventSource on another origin: CORS, and the opening comment at once.
    let request = client()
        .get(format!("{}{uri}", server.base))
        .header("Origin", "https://shop.example.com");
    let mut stream = crate::support::Stream::from_request(request, uri).await;
    assert_eq!(
        stream.response_headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(
        stream
            .response_headers
            .contains_key("access-control-allow-origin")
    );
    assert!(stream.read_until(":ok").await);
    set_targeting(&server, "theme", |t| {
        t.fallthrough = serde_json::from_value(json!({"variation": 2})).unwrap();
    })
    .await;
    assert!(
        stream.read_until("refetchEvaluation").await,
        "{}",
        stream.text
    );
    assert!(stream.read_until("}\n\n").await);
    let event = &stream.events("message")[0];
    assert_eq!(event["type"], "refetchEvaluation");
    let etag = event["etag"].as_str().unwrap();
    assert!(stream.text.contains(&format!("id: {etag}\n")));
    let modified = event["lastModified"].as_u64().unwrap();
    // Nothing about what changed travels on the stream.
    assert!(!stream.text.contains("theme") && !stream.text.contains("blue"));

    // The re-fetch the notification asks for sees the change.
    let response = bulk(
        &server,
        &format!("?flagConfigEtag={etag}&flagConfigLastModified={modified}"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(theme(&response.json().await.unwrap()), "blue");
    let response = bulk(&server, "?flagConfigLastModified=2026-02-20T21:28:18Z").await;
    assert_eq!(response.status(), 200);
    // Metadata that is neither form is a clear error; an unknown etag is only metadata.
    let response = bulk(&server, "?flagConfigLastModified=yesterday").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "PARSE_ERROR");
    assert_eq!(
        bulk(&server, "?flagConfigEtag=W%2F%22x%22").await.status(),
        200
    );
    // A position this database never reached does not hold the answer up for long.
    let started = std::time::Instant::now();
    assert_eq!(
        bulk(&server, "?flagConfigEtag=999999999").await.status(),
        200
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Unknown IDs and other credentials are refused.
    for (id, status) in [
        ("0123456789abcdef01234567", 404),
        (server.sdk_key.as_str(), 404),
    ] {
        let response = client()
            .get(format!("{}/ofrep/v1/events/{id}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{id}");
    }
}

#[tokio::test]
async fn secure_mode_offers_no_change_stream() {
    let server = start(fast()).await;
    flags(&server).await;
    crate::client_side::turn_on_secure_mode(&server).await;
    let response = client()
        .post(format!("{}/ofrep/v1/evaluate/flags", server.base))
        .header("Authorization", format!("Bearer {}", server.sdk_key))
        .json(&json!({"context": {"targetingKey": "alice"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("eventStreams").is_none(), "{body}");
    let response = client()
        .get(format!(
            "{}/ofrep/v1/events/{}",
            server.base, server.client_side_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}
