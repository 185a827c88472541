//! Browser and mobile delivery (`ld-protocol.md` §5): evaluated flags only, the right flags for
//! each credential, secure mode, CORS, streams that carry only what changed for their context.

use base64::Engine as _;
use flagstaff_app::HmacKey;
use flagstaff_app::model::FlagDefinition;
use flagstaff_protocol::Segment;
use serde_json::{Value, json};

use crate::support::{Server, Stream, client, fast, set_targeting, start, turn_on};

pub fn encode(context: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(context.to_string())
}

/// Creates a boolean flag visible to browsers and/or mobile apps.
pub async fn create_client_flag(server: &Server, key: &str, browser: bool, mobile: bool) {
    let definition: FlagDefinition = serde_json::from_value(json!({"key": key, "name": key,
        "clientSideAvailability": {"usingEnvironmentId": browser, "usingMobileKey": mobile}}))
    .unwrap();
    server
        .app
        .create_flag(&server.admin, "default", definition, "")
        .await
        .unwrap();
}

async fn put_segment(server: &Server, segment: Value) {
    let key = segment["key"].as_str().unwrap().to_owned();
    let current = server
        .app
        .segment(&server.admin, "default", "production", &key)
        .await
        .ok()
        .map(|s| s.version);
    let segment: Segment = serde_json::from_value(segment).unwrap();
    server
        .app
        .put_segment(&server.admin, "default", "production", segment, current, "")
        .await
        .unwrap();
}

async fn get(server: &Server, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = client().get(format!("{}{path}", server.base));
    if let Some(key) = key {
        request = request.header("Authorization", key);
    }
    request.send().await.unwrap()
}

fn report(server: &Server, path: &str) -> reqwest::RequestBuilder {
    client().request(
        reqwest::Method::from_bytes(b"REPORT").unwrap(),
        format!("{}{path}", server.base),
    )
}

/// Property names anywhere in a JSON document.
fn property_names(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                property_names(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| property_names(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn browsers_get_evaluated_client_side_flags_and_nothing_else() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    create_client_flag(&server, "app", false, true).await;
    create_client_flag(&server, "server-only", false, false).await;
    turn_on(&server, "web").await;
    set_targeting(&server, "web", |t| {
        t.targets =
            vec![serde_json::from_value(json!({"values": ["vip"], "variation": 0})).unwrap()];
    })
    .await;
    let context = json!({"kind": "user", "key": "vip", "email": "a@example.com"});
    let cid = &server.client_side_id;

    let response = get(
        &server,
        &format!("/sdk/evalx/{cid}/contexts/{}", encode(&context)),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let flags: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(flags, vec!["web"], "only flags marked for browsers");
    let web = &body["web"];
    assert_eq!(web["value"], json!(true), "the individual target");
    assert_eq!(web["variation"], json!(0));
    assert!(web["version"].as_u64().unwrap() > 0);
    assert!(web["flagVersion"].as_u64().unwrap() >= 1);
    assert!(web.get("reason").is_none(), "reasons only when asked for");
    // No rule data: only the evaluated-flag properties appear.
    let mut names = Vec::new();
    property_names(&body, &mut names);
    for name in names {
        assert!(
            ["web", "value", "variation", "version", "flagVersion"].contains(&name.as_str()),
            "unexpected property {name}"
        );
    }

    // The same for REPORT, for the legacy `users` paths, and with reasons.
    for path in ["context", "contexts", "user", "users"] {
        let response = report(&server, &format!("/sdk/evalx/{cid}/{path}"))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(context.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "REPORT {path}");
        assert_eq!(response.json::<Value>().await.unwrap(), body);
    }
    let legacy = get(
        &server,
        &format!("/sdk/evalx/{cid}/users/{}", encode(&json!({"key": "vip"}))),
        None,
    )
    .await;
    assert_eq!(
        legacy.json::<Value>().await.unwrap()["web"]["variation"],
        json!(0)
    );
    let with_reasons = get(
        &server,
        &format!(
            "/sdk/evalx/{cid}/contexts/{}?withReasons=true",
            encode(&context)
        ),
        None,
    )
    .await;
    assert_eq!(
        with_reasons.json::<Value>().await.unwrap()["web"]["reason"],
        json!({"kind": "TARGET_MATCH"})
    );

    // The ETag is the body's: `304` while nothing changed, a new body after a change.
    let path = format!("/sdk/evalx/{cid}/contexts/{}", encode(&context));
    let unchanged = client()
        .get(format!("{}{path}", server.base))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);
    set_targeting(&server, "web", |t| t.targets.clear()).await;
    server.caught_up().await;
    let changed = client()
        .get(format!("{}{path}", server.base))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(
        changed.json::<Value>().await.unwrap()["web"]["value"],
        json!(false),
        "fallthrough"
    );
}

#[tokio::test]
async fn each_credential_sees_only_what_it_may() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    create_client_flag(&server, "app", false, true).await;
    create_client_flag(&server, "server-only", false, false).await;
    let context = encode(&json!({"kind": "user", "key": "u"}));

    // Neither the mobile key nor the client-side ID reads rules.
    for key in [&server.mobile_key, &server.client_side_id] {
        for path in ["/sdk/latest-all", "/sdk/latest-flags", "/all", "/flags"] {
            assert_eq!(get(&server, path, Some(key)).await.status(), 401, "{path}");
        }
    }
    // The mobile key sees mobile flags; the SDK key (Relay's endpoints) sees everything.
    let mobile: Value = get(
        &server,
        &format!("/msdk/evalx/contexts/{context}"),
        Some(&server.mobile_key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        mobile.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["app"]
    );
    let mobile_api_key_form = get(
        &server,
        &format!("/msdk/evalx/users/{context}"),
        Some(&format!("api_key {}", server.mobile_key)),
    )
    .await;
    assert_eq!(mobile_api_key_form.status(), 200);
    let server_side: Value = get(
        &server,
        &format!("/sdk/evalx/contexts/{context}"),
        Some(&server.sdk_key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(server_side.as_object().unwrap().len(), 3);
    // Keys are not interchangeable.
    assert_eq!(
        get(
            &server,
            &format!("/msdk/evalx/contexts/{context}"),
            Some(&server.sdk_key)
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        get(
            &server,
            &format!("/sdk/evalx/contexts/{context}"),
            Some(&server.mobile_key)
        )
        .await
        .status(),
        401
    );
    // The SDK key is not a client-side ID.
    let by_sdk_key = get(
        &server,
        &format!("/sdk/evalx/{}/contexts/{context}", server.sdk_key),
        None,
    )
    .await;
    assert_eq!(by_sdk_key.status(), 404);
    let unknown = get(
        &server,
        &format!("/sdk/evalx/0123456789abcdef01234567/contexts/{context}"),
        None,
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn bad_contexts_get_a_clear_400() {
    let server = start(fast()).await;
    let cid = &server.client_side_id;
    for (encoded, what) in [
        ("%%%".to_owned(), "not base64"),
        (encode(&json!("a string")), "not an object"),
        (encode(&json!({"kind": "user", "key": ""})), "empty key"),
        (
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{not json"),
            "not JSON",
        ),
    ] {
        let response = get(
            &server,
            &format!("/sdk/evalx/{cid}/contexts/{encoded}"),
            None,
        )
        .await;
        assert_eq!(response.status(), 400, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_context", "{what}");
        assert!(body["message"].as_str().unwrap().len() > 5);
    }
    // Padded base64url is accepted too (§5.2).
    let padded =
        base64::engine::general_purpose::URL_SAFE.encode(json!({"key": "u12"}).to_string());
    assert!(padded.ends_with('='));
    assert_eq!(
        get(
            &server,
            &format!("/sdk/evalx/{cid}/contexts/{padded}"),
            None
        )
        .await
        .status(),
        200
    );
    // REPORT needs JSON.
    let response = report(&server, &format!("/sdk/evalx/{cid}/context"))
        .header("Content-Type", "text/plain")
        .body(json!({"key": "u"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test]
async fn browser_routes_answer_cors_preflights_and_expose_date() {
    let server = start(fast()).await;
    let cid = &server.client_side_id;
    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/sdk/evalx/{cid}/context", server.base),
        )
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "REPORT")
        .header(
            "Access-Control-Request-Headers",
            "content-type, x-launchdarkly-user-agent",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("REPORT")
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "content-type",
        "x-launchdarkly-user-agent",
        "x-launchdarkly-payload-id",
        "x-launchdarkly-event-schema",
    ] {
        assert!(allowed.contains(header), "{header}");
    }
    let events = client()
        .post(format!("{}/events/bulk/{cid}", server.base))
        .header("Origin", "https://app.example.com")
        .header("Content-Type", "application/json")
        .body(r#"[{"kind":"identify","creationDate":1,"context":{"kind":"user","key":"u"}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 202);
    assert!(
        events.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("Date")
    );
    assert!(events.headers().contains_key("date"));
    // Errors carry CORS headers too, so the browser SDK can read them.
    let error = get(
        &server,
        "/sdk/evalx/000000000000000000000000/contexts/e30",
        None,
    )
    .await;
    assert_eq!(error.status(), 404);
    assert_eq!(error.headers()["access-control-allow-origin"], "*");
    // Goals: none, as an empty list.
    let goals = get(&server, &format!("/sdk/goals/{cid}"), None).await;
    assert_eq!(goals.json::<Value>().await.unwrap(), json!([]));
    // Other client event endpoints.
    let diagnostic = client()
        .post(format!("{}/events/diagnostic/{cid}", server.base))
        .header("Content-Type", "application/json")
        .body(r#"{"kind":"diagnostic-init"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(diagnostic.status(), 202);
    let data =
        base64::engine::general_purpose::STANDARD.encode(r#"[{"kind":"pageview","key":"k"}]"#);
    let gif = get(&server, &format!("/a/{cid}.gif?d={data}"), None).await;
    assert_eq!(gif.status(), 200);
    assert_eq!(gif.headers()["content-type"], "image/gif");
    for path in ["/mobile", "/mobile/events", "/mobile/events/bulk"] {
        let response = client()
            .post(format!("{}{path}", server.base))
            .header("Authorization", &server.mobile_key)
            .header("Content-Type", "application/json")
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{path}");
    }
    let refused = client()
        .post(format!("{}/mobile/events/diagnostic", server.base))
        .header("Authorization", &server.sdk_key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn secure_mode_requires_the_context_hash() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    turn_on_secure_mode(&server).await;
    let cid = &server.client_side_id;
    let context = encode(&json!({"kind": "org", "key": "acme"}));
    let hash = hex::encode(HmacKey::new(server.sdk_key.as_bytes()).sign(b"org:acme"));
    let wrong = hex::encode(HmacKey::new(server.sdk_key.as_bytes()).sign(b"org:other"));

    let missing = get(
        &server,
        &format!("/sdk/evalx/{cid}/contexts/{context}"),
        None,
    )
    .await;
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["message"],
        "Environment is in secure mode, and context hash does not match."
    );
    let mismatch = get(
        &server,
        &format!("/sdk/evalx/{cid}/contexts/{context}?h={wrong}"),
        None,
    )
    .await;
    assert_eq!(mismatch.status(), 400);
    let ok = get(
        &server,
        &format!("/sdk/evalx/{cid}/contexts/{context}?h={hash}"),
        None,
    )
    .await;
    assert_eq!(ok.status(), 200);
    let stream = get(&server, &format!("/eval/{cid}/{context}"), None).await;
    assert_eq!(stream.status(), 400);
    // Mobile keys are secrets already: secure mode is for browsers.
    let mobile = get(
        &server,
        &format!("/msdk/evalx/contexts/{context}"),
        Some(&server.mobile_key),
    )
    .await;
    assert_eq!(mobile.status(), 200);
}

#[tokio::test]
async fn a_change_serialized_once_per_result_still_gives_every_stream_its_own_result() {
    // A change's `patch` events are serialized once per distinct result and shared among the
    // streams that get it (`shared_patch`): streams with another variation, or that asked for
    // reasons, must still get their own.
    let server = start(fast()).await;
    create_client_flag(&server, "split", true, true).await;
    put_segment(&server, json!({"key": "testers", "included": ["ann"]})).await;
    let rules = |tester_variation: u64| {
        vec![
            serde_json::from_value(json!({"id": "r1", "variation": tester_variation,
            "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["testers"]}]}))
            .unwrap(),
        ]
    };
    set_targeting(&server, "split", |t| {
        t.on = true;
        t.fallthrough = serde_json::from_value(json!({"variation": 1})).unwrap();
        t.rules = rules(0);
    })
    .await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let mut streams = Vec::new();
    for (user, query) in [
        ("ann", ""),
        ("bob", ""),
        ("carl", "?withReasons=true"),
        ("dave", ""),
    ] {
        let context = encode(&json!({"kind": "user", "key": user}));
        let mut stream = Stream::from_request(
            client().get(format!("{}/eval/{cid}/{context}{query}", server.base)),
            user,
        )
        .await;
        assert!(stream.read_until("event: put").await);
        assert!(stream.read_until("\n\n").await);
        streams.push((user, stream));
    }
    // Testers now get false, everyone else true: every result changes.
    set_targeting(&server, "split", |t| {
        t.fallthrough = serde_json::from_value(json!({"variation": 0})).unwrap();
        t.rules = rules(1);
    })
    .await;
    let mut patches = Vec::new();
    for (user, stream) in &mut streams {
        assert!(stream.read_until("event: patch").await, "{user}");
        assert!(stream.read_until("\n\n").await, "{user}");
        let patch = stream.events("patch").remove(0);
        assert_eq!(patch["key"], "split", "{user}");
        patches.push((*user, patch));
    }
    let [ann, bob, carl, dave] = [0, 1, 2, 3].map(|i| &patches[i].1);
    assert_eq!(ann["value"], json!(false));
    assert_eq!(ann["variation"], json!(1));
    assert!(ann.get("reason").is_none(), "{ann}");
    assert_eq!(bob["value"], json!(true));
    assert!(bob.get("reason").is_none(), "{bob}");
    assert_eq!(carl["value"], json!(true));
    assert_eq!(carl["reason"]["kind"], "FALLTHROUGH", "{carl}");
    assert_eq!(dave, bob, "the same result, the same patch");
}

#[tokio::test]
async fn streams_send_only_what_changed_for_their_context() {
    let server = start(fast()).await;
    create_client_flag(&server, "beta", true, true).await;
    create_client_flag(&server, "other", true, true).await;
    put_segment(&server, json!({"key": "testers", "included": ["ann"]})).await;
    turn_on(&server, "beta").await;
    // beta: testers get true (variation 0), everyone else false.
    set_targeting(&server, "beta", |t| {
        t.fallthrough = serde_json::from_value(json!({"variation": 1})).unwrap();
        t.rules = vec![
            serde_json::from_value(json!({"id": "r1", "variation": 0,
            "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["testers"]}]}))
            .unwrap(),
        ];
    })
    .await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let ann = encode(&json!({"kind": "user", "key": "ann"}));
    let bob = encode(&json!({"kind": "user", "key": "bob"}));
    let mut ann_stream = Stream::from_request(
        client().get(format!("{}/eval/{cid}/{ann}", server.base)),
        "ann",
    )
    .await;
    let mut bob_stream =
        Stream::open(&server.base, &format!("/meval/{bob}"), &server.mobile_key).await;
    let mut ping_stream =
        Stream::from_request(client().get(format!("{}/ping/{cid}", server.base)), "ping").await;
    assert!(ann_stream.read_until("event: put").await);
    assert!(ann_stream.read_until("\n\n").await);
    assert!(bob_stream.read_until("event: put").await);
    assert!(ping_stream.read_until("event: ping").await);
    let put = &ann_stream.events("put")[0];
    assert_eq!(put["beta"]["value"], json!(true));
    let put_version = put["beta"]["version"].as_u64().unwrap();
    let flag_version = put["beta"]["flagVersion"].as_u64().unwrap();

    // Bob joins the segment: the flag's own version does not change, and only Bob's result
    // does. Bob gets a patch with a greater environment version; Ann gets nothing.
    put_segment(
        &server,
        json!({"key": "testers", "included": ["ann", "bob"]}),
    )
    .await;
    assert!(bob_stream.read_until("event: patch").await);
    assert!(bob_stream.read_until("\n\n").await);
    let patch = &bob_stream.events("patch")[0];
    assert_eq!(patch["key"], "beta");
    assert_eq!(patch["value"], json!(true));
    assert!(patch["version"].as_u64().unwrap() > put_version);
    assert_eq!(patch["flagVersion"].as_u64().unwrap(), flag_version);
    assert!(
        ping_stream
            .read_until("event: ping\ndata:  \n\nevent: ping")
            .await
            || ping_stream.text.matches("event: ping").count() >= 2
    );

    // Serving `true` to everyone changes `other` for everyone: Ann gets exactly one patch.
    set_targeting(&server, "other", |t| {
        t.on = true;
        t.fallthrough = serde_json::from_value(json!({"variation": 0})).unwrap();
    })
    .await;
    assert!(ann_stream.read_until("event: patch").await);
    assert!(ann_stream.read_until("\n\n").await);
    let patches = ann_stream.events("patch");
    assert_eq!(patches.len(), 1, "{}", ann_stream.text);
    assert_eq!(patches[0]["key"], "other");

    // Hiding a flag from browsers deletes it for the browser stream but not for mobile.
    let definition = server
        .app
        .flag(&server.admin, "default", "beta")
        .await
        .unwrap();
    let mut hidden = definition.value.clone();
    hidden.client_side_availability.using_environment_id = false;
    server
        .app
        .update_flag(
            &server.admin,
            "default",
            "beta",
            hidden,
            definition.version,
            "",
        )
        .await
        .unwrap();
    assert!(ann_stream.read_until("event: delete").await);
    assert!(ann_stream.read_until("\n\n").await);
    let delete = &ann_stream.events("delete")[0];
    assert_eq!(delete["key"], "beta");
    assert!(delete["version"].as_u64().unwrap() > put_version);
    // Heartbeats keep all of them open.
    assert!(bob_stream.read_until("\n:\n").await || bob_stream.text.contains(":\n\n"));
}

#[tokio::test]
async fn browser_streams_carry_cors_on_the_lean_path_and_through_the_router_alike() {
    let server = start(fast()).await;
    create_client_flag(&server, "beta", true, true).await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let origin = "https://app.example.com";
    // A short request line is served by the lean path; one longer than the 4 KiB it looks at
    // goes through hyper and the router. Both answer the same way.
    let short = encode(&json!({"kind": "user", "key": "ann"}));
    let long = encode(&json!({"kind": "user", "key": "ann", "note": "x".repeat(5000)}));
    for context in [&short, &long] {
        let mut stream = Stream::from_request(
            client()
                .get(format!("{}/eval/{cid}/{context}", server.base))
                .header("Origin", origin),
            "eval",
        )
        .await;
        let h = &stream.response_headers;
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.contains_key("x-ld-envid"));
        assert!(stream.read_until("event: put").await);
        assert!(stream.read_until("\n\n").await);
        assert_eq!(stream.events("put")[0]["beta"]["value"], json!(false));
        // Refused (an unknown client-side ID) with the same CORS headers, so that the page
        // can read the error.
        let refused = client()
            .get(format!("{}/eval/no-such-id/{context}", server.base))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert!(refused.status().is_client_error(), "{}", refused.status());
        assert_eq!(refused.headers()["access-control-allow-origin"], origin);
    }
    // Phones: no CORS, the mobile key in the header.
    let mobile = Stream::open(&server.base, &format!("/meval/{short}"), &server.mobile_key).await;
    assert!(
        !mobile
            .response_headers
            .contains_key("access-control-allow-origin")
    );
    let refused = client()
        .get(format!("{}/mping", server.base))
        .header("Authorization", "mob-nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

/// Turns secure mode on in `default/production`, as the API does.
pub async fn turn_on_secure_mode(server: &Server) {
    crate::support::update_environment(
        server,
        flagstaff_app::EnvironmentSettings {
            secure_mode: Some(true),
            ..Default::default()
        },
    )
    .await;
}
