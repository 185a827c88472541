//! Client-side FDv2 (`ld-protocol.md` §10): `/sdk/poll/eval` and `/sdk/stream/eval`, read on
//! the wire. Expected results come from targeting set here and from the FDv1 `evalx` answer for
//! the same context (the issue asks for the same evaluation and visibility rules as evalx).

use std::collections::BTreeMap;

use flagstaff_app::HmacKey;
use serde_json::{Value, json};

use crate::client_side::{create_client_flag, encode, turn_on_secure_mode};
use crate::support::*;

/// Changes whether browsers and phones see `key`.
async fn set_availability(server: &Server, key: &str, browser: bool, mobile: bool) {
    let current = server
        .app
        .flag(&server.admin, "default", key)
        .await
        .unwrap();
    let mut definition = current.value.clone();
    definition.client_side_availability.using_environment_id = browser;
    definition.client_side_availability.using_mobile_key = mobile;
    server
        .app
        .update_flag(
            &server.admin,
            "default",
            key,
            definition,
            current.version,
            "",
        )
        .await
        .unwrap();
}

/// `ann` gets `true` from `web`, everyone else `false`.
async fn target_ann(server: &Server, key: &str) {
    turn_on(server, key).await;
    set_targeting(server, key, |t| {
        t.targets =
            vec![serde_json::from_value(json!({"values": ["ann"], "variation": 0})).unwrap()];
        t.fallthrough = serde_json::from_value(json!({"variation": 1})).unwrap();
    })
    .await;
}

/// A poll's events as `(name, data)`.
async fn poll(server: &Server, path_and_query: &str, key: Option<&str>) -> Vec<(String, Value)> {
    let mut request = client().get(format!("{}{path_and_query}", server.base));
    if let Some(key) = key {
        request = request.header("Authorization", key);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path_and_query}");
    events_of(response.json().await.unwrap())
}

fn events_of(body: Value) -> Vec<(String, Value)> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["data"].clone()))
        .collect()
}

/// Opens a stream at `path_and_query` (`Authorization: key` when given) and reads its opening
/// transfer.
async fn open_stream(server: &Server, path_and_query: &str, key: Option<&str>) -> Stream {
    let mut request = client().get(format!("{}{path_and_query}", server.base));
    if let Some(key) = key {
        request = request.header("Authorization", key);
    }
    let mut stream = Stream::from_request(request, path_and_query).await;
    assert!(stream.read_until("event: payload-transferred").await);
    assert!(stream.read_until("}\n\n").await);
    stream
}

fn intent(events: &[(String, Value)]) -> Value {
    assert_eq!(events[0].0, "server-intent", "{events:?}");
    events[0].1["payloads"][0].clone()
}

/// The `put-object` objects by key.
fn puts(events: &[(String, Value)]) -> BTreeMap<String, Value> {
    events
        .iter()
        .filter(|(name, _)| name == "put-object")
        .map(|(_, data)| {
            assert_eq!(data["kind"], "flag-eval", "{data}");
            (data["key"].as_str().unwrap().to_owned(), data.clone())
        })
        .collect()
}

fn deletes(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(name, _)| name == "delete-object")
        .map(|(_, data)| {
            assert_eq!(data["kind"], "flag-eval", "{data}");
            data["key"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn selector(events: &[(String, Value)]) -> String {
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "payload-transferred", "{events:?}");
    data["state"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn browsers_and_phones_get_their_flags_evaluated_as_flag_eval_objects() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    create_client_flag(&server, "app", false, true).await;
    create_client_flag(&server, "both", true, true).await;
    create_client_flag(&server, "server-only", false, false).await;
    target_ann(&server, "web").await;
    target_ann(&server, "server-only").await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let ann = json!({"kind": "user", "key": "ann", "email": "ann@example.com"});

    let events = poll(
        &server,
        &format!("/sdk/poll/eval/{}?auth={cid}", encode(&ann)),
        None,
    )
    .await;
    let intent = intent(&events);
    assert_eq!(intent["intentCode"], "xfer-full");
    assert_eq!(intent["reason"], "payload-missing");
    let objects = puts(&events);
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        ["both", "web"],
        "only flags marked for browsers"
    );
    assert_eq!(objects["web"]["object"]["value"], json!(true), "the target");
    assert_eq!(objects["web"]["object"]["variation"], json!(0));
    // The object is the evaluated flag without `version`: the envelope carries it.
    let evalx: Value = client()
        .get(format!(
            "{}/sdk/evalx/{cid}/contexts/{}",
            server.base,
            encode(&ann)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, transferred) = events.last().unwrap();
    for (key, put) in &objects {
        let mut expected = evalx[key].clone();
        let version = expected.as_object_mut().unwrap().remove("version").unwrap();
        assert_eq!(put["object"], expected, "{key} as evalx has it");
        assert_eq!(put["version"], version, "{key}");
        assert_eq!(transferred["version"], version);
    }
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("server-only")
    );

    // The same context in a POST or REPORT body, and with reasons.
    for method in ["POST", "REPORT"] {
        let response = client()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/sdk/poll/eval?auth={cid}", server.base),
            )
            .header("Content-Type", "application/json")
            .body(ann.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(puts(&events_of(response.json().await.unwrap())), objects);
    }
    let with_reasons = poll(
        &server,
        &format!(
            "/sdk/poll/eval/{}?auth={cid}&withReasons=true",
            encode(&ann)
        ),
        None,
    )
    .await;
    assert_eq!(
        puts(&with_reasons)["web"]["object"]["reason"],
        json!({"kind": "TARGET_MATCH"})
    );

    // A phone with its mobile key in the header sees the mobile flags.
    let bob = json!({"kind": "user", "key": "bob"});
    let events = poll(
        &server,
        &format!("/sdk/poll/eval/{}", encode(&bob)),
        Some(&format!("api_key {}", server.mobile_key)),
    )
    .await;
    let objects = puts(&events);
    assert_eq!(objects.keys().collect::<Vec<_>>(), ["app", "both"]);
    // The stream opens with the same transfer.
    let stream = open_stream(
        &server,
        &format!("/sdk/stream/eval/{}", encode(&bob)),
        Some(&server.mobile_key),
    )
    .await;
    assert_eq!(
        stream.events("put-object").len(),
        2,
        "app and both: {}",
        stream.text
    );
    assert_eq!(
        stream.events("server-intent")[0]["payloads"][0]["intentCode"],
        "xfer-full"
    );
}

#[tokio::test]
async fn a_basis_gets_only_what_changed_for_its_context_and_never_a_flag_it_cannot_see() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    create_client_flag(&server, "steady", true, false).await;
    create_client_flag(&server, "leaving", true, false).await;
    create_client_flag(&server, "secret-server-flag", false, false).await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let ann = encode(&json!({"kind": "user", "key": "ann"}));
    let first = poll(&server, &format!("/sdk/poll/eval/{ann}?auth={cid}"), None).await;
    assert_eq!(puts(&first)["web"]["object"]["value"], json!(false));
    let basis = selector(&first);

    // Three changes: one to a flag browsers see, one to a flag they never see, and one that
    // hides a flag from browsers.
    target_ann(&server, "web").await;
    target_ann(&server, "secret-server-flag").await;
    set_availability(&server, "leaving", false, true).await;
    server.caught_up().await;
    let path = format!("/sdk/poll/eval/{ann}?auth={cid}&basis={basis}");
    let events = poll(&server, &path, None).await;
    let intent = intent(&events);
    assert_eq!(intent["intentCode"], "xfer-changes", "{events:?}");
    assert_eq!(intent["reason"], "stale");
    let objects = puts(&events);
    assert_eq!(objects.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(objects["web"]["object"]["value"], json!(true));
    assert_eq!(deletes(&events), ["leaving"]);
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("secret-server-flag"),
        "a flag browsers never saw is never named to them"
    );
    let newer = selector(&events);
    assert_ne!(newer, basis);

    // The stream catches up the same way on the wire.
    let stream = open_stream(
        &server,
        &format!("/sdk/stream/eval/{ann}?auth={cid}&basis={basis}"),
        None,
    )
    .await;
    assert_eq!(
        stream.events("server-intent")[0]["payloads"][0]["intentCode"],
        "xfer-changes"
    );
    assert_eq!(stream.events("put-object").len(), 1, "{}", stream.text);
    assert_eq!(stream.events("delete-object").len(), 1, "{}", stream.text);

    // Nothing since: `none`.
    let events = poll(
        &server,
        &format!("/sdk/poll/eval/{ann}?auth={cid}&basis={newer}"),
        None,
    )
    .await;
    assert_eq!(intent_code(&events), "none");
    assert!(puts(&events).is_empty());

    // A basis made for another context, with reasons, by a phone or by a server SDK is not
    // caught up: a full transfer.
    let bob = encode(&json!({"kind": "user", "key": "bob"}));
    let server_basis = {
        let response: Value = client()
            .get(format!("{}/sdk/poll", server.base))
            .header("Authorization", &server.sdk_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        selector(&events_of(response))
    };
    for path in [
        format!("/sdk/poll/eval/{bob}?auth={cid}&basis={newer}"),
        format!("/sdk/poll/eval/{ann}?auth={cid}&basis={newer}&withReasons=true"),
        format!("/sdk/poll/eval/{ann}?auth={cid}&basis={server_basis}"),
        format!("/sdk/poll/eval/{ann}?auth={cid}&basis=nonsense"),
    ] {
        let events = poll(&server, &path, None).await;
        assert_eq!(intent_code(&events), "xfer-full", "{path}");
    }
    let mobile = poll(
        &server,
        &format!("/sdk/poll/eval/{ann}?basis={newer}"),
        Some(&server.mobile_key),
    )
    .await;
    assert_eq!(intent_code(&mobile), "xfer-full");
}

/// Reads until the stream has sent more than `seen` complete `payload-transferred` events.
async fn next_transfer(stream: &mut Stream, seen: usize) -> bool {
    if !stream
        .read_until_count("event: payload-transferred", seen + 1)
        .await
    {
        return false;
    }
    loop {
        let tail = stream
            .text
            .rsplit("event: payload-transferred")
            .next()
            .unwrap_or_default();
        if tail.contains("\n\n") {
            return true;
        }
        let ends = stream.text.matches("\n\n").count();
        if !stream.read_until_count("\n\n", ends + 1).await {
            return false;
        }
    }
}

fn intent_code(events: &[(String, Value)]) -> String {
    intent(events)["intentCode"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn flags_that_change_with_time_are_in_every_catch_up() {
    let server = start(fast()).await;
    create_client_flag(&server, "launch", true, false).await;
    create_client_flag(&server, "plain", true, false).await;
    turn_on(&server, "launch").await;
    // On for everyone after a moment in 2030: its result changes with no change to any data.
    set_targeting(&server, "launch", |t| {
        t.rules = vec![
            serde_json::from_value(json!({"id": "r1", "variation": 0, "clauses": [
                {"attribute": "now", "op": "after", "values": [1_893_456_000_000_u64]}]}))
            .unwrap(),
        ];
    })
    .await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let ann = encode(&json!({"kind": "user", "key": "ann"}));
    let first = poll(&server, &format!("/sdk/poll/eval/{ann}?auth={cid}"), None).await;
    let events = poll(
        &server,
        &format!("/sdk/poll/eval/{ann}?auth={cid}&basis={}", selector(&first)),
        None,
    )
    .await;
    assert_eq!(intent_code(&events), "xfer-changes");
    assert_eq!(puts(&events).keys().collect::<Vec<_>>(), ["launch"]);
}

#[tokio::test]
async fn streams_carry_each_change_as_it_affects_their_context() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    create_client_flag(&server, "other", true, false).await;
    create_client_flag(&server, "server-only", false, false).await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let ann = encode(&json!({"kind": "user", "key": "ann"}));
    let path = format!("/sdk/stream/eval/{ann}?auth={cid}");
    let mut stream = open_stream(&server, &path, None).await;
    assert_eq!(stream.events("put-object").len(), 2);

    // A change for Ann: her new result and a new selector.
    let transfers = stream.text.matches("event: payload-transferred").count();
    target_ann(&server, "web").await;
    server.caught_up().await;
    assert!(
        stream.read_until(r#""value":true"#).await,
        "{}",
        stream.text
    );
    assert!(next_transfer(&mut stream, transfers).await);
    let objects = stream.events("put-object");
    let last = objects.last().unwrap();
    assert_eq!(last["key"], "web");
    assert_eq!(last["object"]["value"], json!(true));
    // Every transfer is complete: read them all before the next change.
    let transfers = stream.text.matches("event: payload-transferred").count();
    let before = stream.events("put-object").len();

    // A change browsers cannot see: only the selector moves.
    set_targeting(&server, "server-only", |t| t.on = true).await;
    assert!(
        next_transfer(&mut stream, transfers).await,
        "{}",
        stream.text
    );
    assert_eq!(stream.events("put-object").len(), before, "{}", stream.text);
    assert!(!stream.text.contains("server-only"));

    // Hiding a flag from browsers deletes it.
    set_availability(&server, "other", false, true).await;
    assert!(
        stream.read_until("event: delete-object").await,
        "{}",
        stream.text
    );
    assert!(stream.read_until("}\n\n").await);
    assert_eq!(stream.events("delete-object")[0]["key"], "other");
}

#[tokio::test]
async fn refusals_come_before_any_work() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, true).await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let ann = encode(&json!({"kind": "user", "key": "ann"}));
    let status = |path: String, key: Option<String>| {
        let server = &server;
        async move {
            let mut request = client().get(format!("{}{path}", server.base));
            if let Some(key) = key {
                request = request.header("Authorization", key);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or_default();
            (status, body["code"].as_str().unwrap_or_default().to_owned())
        }
    };
    for path in [
        format!("/sdk/poll/eval/{ann}"),
        format!("/sdk/stream/eval/{ann}"),
        format!("/sdk/poll/eval/{ann}?auth=0123456789abcdef01234567"),
        // Secret keys are not taken from a URL.
        format!("/sdk/poll/eval/{ann}?auth={}", server.mobile_key),
        format!("/sdk/stream/eval/{ann}?auth={}", server.sdk_key),
        // No credential: the malformed query and context are not even read.
        "/sdk/poll/eval/not-base64!?basis=1&basis=2".to_owned(),
    ] {
        assert_eq!(status(path.clone(), None).await.0, 401, "{path}");
    }
    assert_eq!(
        status(format!("/sdk/poll/eval/{ann}"), Some("mob-nope".into()))
            .await
            .0,
        401
    );
    // With a valid credential, each mistake gets its own clear 400.
    assert_eq!(
        status(
            format!("/sdk/poll/eval/{ann}?auth={cid}&basis=1&basis=2"),
            None
        )
        .await,
        (400, "invalid_query".to_owned())
    );
    assert_eq!(
        status(format!("/sdk/poll/eval/not-base64!?auth={cid}"), None).await,
        (400, "invalid_context".to_owned())
    );
    let response = client()
        .put(format!("{}/sdk/poll/eval?auth={cid}", server.base))
        .header("Content-Type", "application/json")
        .body(r#"{"kind":"user","key":"ann"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let response = client()
        .post(format!("{}/sdk/stream/eval?auth={cid}", server.base))
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"kind":"user","key":"{}"}}"#,
            "a".repeat(20_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Secure mode: browsers must send the context's hash; phones need not.
    turn_on_secure_mode(&server).await;
    let hash = hex::encode(HmacKey::new(server.sdk_key.as_bytes()).sign(b"ann"));
    assert_eq!(
        status(format!("/sdk/poll/eval/{ann}?auth={cid}"), None)
            .await
            .0,
        400
    );
    assert_eq!(
        status(format!("/sdk/stream/eval/{ann}?auth={cid}"), None)
            .await
            .0,
        400
    );
    assert_eq!(
        status(format!("/sdk/poll/eval/{ann}?auth={cid}&h={hash}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        status(
            format!("/sdk/poll/eval/{ann}"),
            Some(server.mobile_key.clone())
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn browsers_may_call_it_and_read_the_fallback_directive() {
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let ann = encode(&json!({"kind": "user", "key": "ann"}));
    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/sdk/poll/eval", server.base),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "REPORT")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(
        methods.contains("REPORT") && methods.contains("POST"),
        "{methods}"
    );

    let path = format!("/sdk/stream/eval/{ann}?auth={cid}");
    let mut stream = open_stream(&server, &path, None).await;

    update_environment(
        &server,
        flagstaff_app::EnvironmentSettings {
            fdv1_fallback: Some(true),
            ..Default::default()
        },
    )
    .await;
    // The open stream is told in-band (an EventSource shows no headers), then ends.
    assert!(stream.read_to_end().await);
    let goodbye = &stream.events("goodbye")[0];
    assert_eq!(goodbye["protocolFallbackTTL"], 3600);
    // A poll is 503 with the directive, readable by scripts on other origins.
    let response = client()
        .get(format!("{}/sdk/poll/eval/{ann}?auth={cid}", server.base))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-ld-fd-fallback"], "true");
    assert_eq!(response.headers()["x-ld-fd-fallback-ttl"], "3600");
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("X-LD-FD-Fallback"), "{exposed}");
    // A new stream gets the goodbye at once.
    let mut stream =
        Stream::from_request(client().get(format!("{}{path}", server.base)), &path).await;
    assert!(stream.read_to_end().await);
    assert_eq!(stream.events("goodbye")[0]["reason"], "fdv1-fallback");
    assert!(stream.events("put-object").is_empty());
}

#[tokio::test]
async fn a_stream_on_the_lean_path_and_one_through_the_router_are_the_same() {
    // A GET as a connection's first request is served by `raw.rs`; a POST goes through the
    // router. Both must carry the same transfer, CORS headers and changes.
    let server = start(fast()).await;
    create_client_flag(&server, "web", true, false).await;
    server.caught_up().await;
    let cid = &server.client_side_id;
    let context = json!({"kind": "user", "key": "ann"});
    let lean = client()
        .get(format!(
            "{}/sdk/stream/eval/{}?auth={cid}",
            server.base,
            encode(&context)
        ))
        .header("Origin", "https://app.example");
    let routed = client()
        .post(format!("{}/sdk/stream/eval?auth={cid}", server.base))
        .header("Origin", "https://app.example")
        .header("Content-Type", "application/json")
        .body(context.to_string());
    let mut streams = Vec::new();
    for (name, request) in [("lean", lean), ("routed", routed)] {
        let mut stream = Stream::from_request(request, name).await;
        assert_eq!(
            stream.response_headers["access-control-allow-origin"], "https://app.example",
            "{name}"
        );
        let content_type = stream.response_headers["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{name}: {content_type}"
        );
        assert!(
            stream.read_until("event: payload-transferred").await,
            "{name}"
        );
        assert!(stream.read_until("}\n\n").await, "{name}");
        streams.push(stream);
    }
    assert_eq!(
        streams[0].events("put-object"),
        streams[1].events("put-object")
    );
    assert_eq!(
        streams[0].events("payload-transferred"),
        streams[1].events("payload-transferred")
    );
    target_ann(&server, "web").await;
    for stream in &mut streams {
        assert!(
            stream.read_until(r#""value":true"#).await,
            "{}",
            stream.text
        );
    }
}
