//! FDv2 for server-side SDKs (`ld-protocol.md` §10): `/sdk/stream` and `/sdk/poll`, read on
//! the wire with a raw client. Expected objects come from the store through the management
//! use cases, never from the delivery code under test.

use std::collections::BTreeMap;
use std::sync::Arc;

use flagstaff_app::App;
use flagstaff_protocol::Segment;
use flagstaff_store::Store;
use serde_json::{Value, json};

use crate::support::*;

/// The `(kind, key) -> version` of every `put-object` (or `delete-object`) in `events`.
fn objects(events: &[Value]) -> BTreeMap<(String, String), u64> {
    events
        .iter()
        .map(|e| {
            (
                (
                    e["kind"].as_str().unwrap().to_owned(),
                    e["key"].as_str().unwrap().to_owned(),
                ),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The versions SDKs must see, read from the store: every flag of `default/production` and
/// every segment.
async fn store_versions(server: &Server) -> BTreeMap<(String, String), u64> {
    let data = server.app.flag_data("default", "production").await.unwrap();
    let mut out = BTreeMap::new();
    for (key, flag) in data.flags {
        out.insert(("flag".to_owned(), key), flag.version);
    }
    for (key, segment) in data.segments {
        out.insert(("segment".to_owned(), key), segment.version);
    }
    out
}

fn intent(stream: &Stream, index: usize) -> Value {
    stream.events("server-intent")[index]["payloads"][0].clone()
}

async fn open_fdv2(server: &Server, base: &str, basis: Option<&str>) -> Stream {
    let mut request = client()
        .get(format!("{base}/sdk/stream"))
        .header("Authorization", &server.sdk_key);
    if let Some(basis) = basis {
        request = request.query(&[("basis", basis)]);
    }
    let mut stream = Stream::from_request(request, "/sdk/stream").await;
    assert!(
        stream.read_until("event: payload-transferred").await,
        "{}",
        stream.text
    );
    assert!(stream.read_until("}\n\n").await);
    stream
}

fn selector(stream: &Stream) -> String {
    let transferred = stream.events("payload-transferred");
    transferred.last().unwrap()["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn put_segment(server: &Server, key: &str) {
    let segment: Segment =
        serde_json::from_value(json!({"key": key, "included": ["bob"]})).unwrap();
    server
        .app
        .put_segment(&server.admin, "default", "production", segment, None, "")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stream_without_a_basis_gets_everything_then_each_change() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    create_flag(&server, "beta").await;
    put_segment(&server, "staff").await;
    server.caught_up().await;

    let mut stream = open_fdv2(&server, &server.base, None).await;
    assert_eq!(
        stream.response_headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let first = intent(&stream, 0);
    assert_eq!(first["intentCode"], "xfer-full");
    assert_eq!(first["reason"], "payload-missing");
    let puts = stream.events("put-object");
    assert_eq!(objects(&puts), store_versions(&server).await);
    let alpha = puts.iter().find(|p| p["key"] == "alpha").unwrap();
    assert_eq!(alpha["object"]["key"], "alpha");
    assert_eq!(alpha["object"]["version"], alpha["version"]);
    let transferred = &stream.events("payload-transferred")[0];
    assert_eq!(transferred["version"], first["target"]);
    assert!(
        transferred["state"]
            .as_str()
            .unwrap()
            .starts_with("fs1.db.")
    );

    // A change is its objects and a new selector, without a new intent.
    turn_on(&server, "alpha").await;
    let text_before = stream.text.len();
    assert!(stream.read_until("\"on\":true").await, "{}", stream.text);
    assert!(stream.read_until("event: payload-transferred").await);
    assert!(stream.read_until("}\n\n").await);
    assert_eq!(stream.events("server-intent").len(), 1);
    let change = &stream.text[text_before..];
    assert!(!change.contains("\"beta\""), "{change}");
    let puts = stream.events("put-object");
    let patched = puts.last().unwrap();
    assert_eq!(patched["key"], "alpha");
    assert_eq!(patched["object"]["on"], true);
    let selectors = stream.events("payload-transferred");
    assert_eq!(selectors.len(), 2);
    assert!(selectors[1]["version"].as_u64() > selectors[0]["version"].as_u64());

    // A deletion is a tombstone above the version SDKs hold.
    let flag = server
        .app
        .flag(&server.admin, "default", "beta")
        .await
        .unwrap();
    server
        .app
        .delete_flag(&server.admin, "default", "beta", flag.version, "")
        .await
        .unwrap();
    assert!(
        stream.read_until("event: delete-object").await,
        "{}",
        stream.text
    );
    assert!(stream.read_until("}\n\n").await);
    let delete = &stream.events("delete-object")[0];
    assert_eq!(delete["kind"], "flag");
    assert_eq!(delete["key"], "beta");
    let beta = stream.events("put-object")[..]
        .iter()
        .find(|p| p["key"] == "beta")
        .unwrap()["version"]
        .as_u64()
        .unwrap();
    assert!(delete["version"].as_u64().unwrap() > beta);
}

#[tokio::test]
async fn a_reconnect_with_a_basis_gets_exactly_the_changes_since() {
    let server = start(fast()).await;
    for key in ["alpha", "beta", "gamma", "delta"] {
        create_flag(&server, key).await;
    }
    put_segment(&server, "staff").await;
    server.caught_up().await;
    let stream = open_fdv2(&server, &server.base, None).await;
    let basis = selector(&stream);
    drop(stream);

    // Three changes while the SDK is away: a targeting change, a new segment, a deletion.
    turn_on(&server, "alpha").await;
    put_segment(&server, "beta-testers").await;
    let gamma = server
        .app
        .flag(&server.admin, "default", "gamma")
        .await
        .unwrap();
    server
        .app
        .delete_flag(&server.admin, "default", "gamma", gamma.version, "")
        .await
        .unwrap();
    server.caught_up().await;

    let stream = open_fdv2(&server, &server.base, Some(&basis)).await;
    let first = intent(&stream, 0);
    assert_eq!(first["intentCode"], "xfer-changes", "{}", stream.text);
    assert_eq!(first["reason"], "stale");
    let now = store_versions(&server).await;
    let puts = objects(&stream.events("put-object"));
    assert_eq!(
        puts.keys().collect::<Vec<_>>(),
        [
            &("flag".to_owned(), "alpha".to_owned()),
            &("segment".to_owned(), "beta-testers".to_owned())
        ]
    );
    for (object, version) in &puts {
        assert_eq!(now[object], *version, "{object:?}");
    }
    let deletes = stream.events("delete-object");
    assert_eq!(deletes.len(), 1, "{}", stream.text);
    assert_eq!(deletes[0]["key"], "gamma");
    assert_eq!(deletes[0]["kind"], "flag");

    // Nothing changed since: `none`, and a selector to come back with.
    let again = selector(&stream);
    let stream = open_fdv2(&server, &server.base, Some(&again)).await;
    let first = intent(&stream, 0);
    assert_eq!(first["intentCode"], "none", "{}", stream.text);
    assert_eq!(first["reason"], "up-to-date");
    assert!(stream.events("put-object").is_empty());
    assert!(stream.events("delete-object").is_empty());
}

#[tokio::test]
async fn a_basis_that_is_not_ours_gets_everything() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    server.caught_up().await;
    let stream = open_fdv2(&server, &server.base, None).await;
    let ours = selector(&stream);
    let position: u64 = ours.rsplit('.').next().unwrap().parse().unwrap();
    let prefix = ours.strip_suffix(&position.to_string()).unwrap();
    for basis in [
        "(p:abc:42)".to_owned(),
        "garbage".to_owned(),
        // A position this database never reached: another database's selector.
        format!("{prefix}{}", position + 1_000_000),
        // Another environment's or another relay's selector at the same position.
        ours.replacen("fs1.db.", "fs1.r0000abcd.", 1),
        format!("fs1.db.000000000000.{position}"),
    ] {
        let stream = open_fdv2(&server, &server.base, Some(&basis)).await;
        let first = intent(&stream, 0);
        assert_eq!(first["intentCode"], "xfer-full", "{basis}");
        assert_eq!(first["reason"], "cant-catchup", "{basis}");
        assert_eq!(
            objects(&stream.events("put-object")),
            store_versions(&server).await,
            "{basis}"
        );
    }
}

#[tokio::test]
async fn a_basis_from_another_node_or_before_a_restart_catches_up_from_the_change_log() {
    let server = start(fast()).await;
    for key in ["alpha", "beta", "gamma"] {
        create_flag(&server, key).await;
    }
    server.caught_up().await;
    let stream = open_fdv2(&server, &server.base, None).await;
    let basis = selector(&stream);
    drop(stream);
    turn_on(&server, "alpha").await;
    put_segment(&server, "staff").await;
    turn_on(&server, "beta").await;

    // Another node on the same database, started after the changes: its feed is loaded with
    // them, so it reads the change log to know what the SDK lacks.
    let store = Arc::new(Store::open(&server.url).await.unwrap());
    let (other, _delivery) = serve_delivery(App::new(store), fast()).await;
    let stream = open_fdv2(&server, &other, Some(&basis)).await;
    let first = intent(&stream, 0);
    assert_eq!(first["intentCode"], "xfer-changes", "{}", stream.text);
    let now = store_versions(&server).await;
    let puts = objects(&stream.events("put-object"));
    let expected: BTreeMap<_, _> = now
        .iter()
        .filter(|((_, key), _)| ["alpha", "beta", "staff"].contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(puts, expected);

    // Both nodes name the same position the same way.
    server.caught_up().await;
    let here = open_fdv2(&server, &server.base, None).await;
    let there = open_fdv2(&server, &other, None).await;
    assert_eq!(
        here.events("payload-transferred")[0],
        there.events("payload-transferred")[0]
    );
}

#[tokio::test]
async fn polling_answers_the_same_transfers_as_json_with_a_tag_for_the_state() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    create_flag(&server, "beta").await;
    server.caught_up().await;
    let poll = |query: Vec<(&'static str, String)>, etag: Option<String>| {
        let mut request = client()
            .get(format!("{}/sdk/poll", server.base))
            .header("Authorization", &server.sdk_key)
            .query(&query);
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        request.send()
    };
    let response = poll(vec![], None).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events[0]["event"], "server-intent");
    assert_eq!(events[0]["data"]["payloads"][0]["intentCode"], "xfer-full");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "payload-transferred");
    let basis = last["data"]["state"].as_str().unwrap().to_owned();
    let puts: Vec<Value> = events
        .iter()
        .filter(|e| e["event"] == "put-object")
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(objects(&puts), store_versions(&server).await);

    // The same state again: `304`.
    let response = poll(vec![("basis", basis.clone())], Some(etag.clone()))
        .await
        .unwrap();
    assert_eq!(response.status(), 304);

    // After a change: only it, and a new tag.
    turn_on(&server, "beta").await;
    server.caught_up().await;
    let response = poll(vec![("basis", basis)], Some(etag.clone()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_ne!(response.headers()["etag"].to_str().unwrap(), etag);
    let body: Value = response.json().await.unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(
        events[0]["data"]["payloads"][0]["intentCode"],
        "xfer-changes"
    );
    let keys: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "put-object")
        .map(|e| &e["data"]["key"])
        .collect();
    assert_eq!(keys, [&json!("beta")]);
}

#[tokio::test]
async fn fdv2_refuses_before_doing_any_work() {
    let server = start(fast()).await;
    for path in ["/sdk/stream", "/sdk/poll"] {
        // No key, a wrong key, a mobile key: 401, even with a malformed query.
        for key in [
            None,
            Some("sdk-00000000-0000-0000-0000-000000000000"),
            Some(server.mobile_key.as_str()),
        ] {
            let mut request = client().get(format!("{}{path}?basis=a&basis=b", server.base));
            if let Some(key) = key {
                request = request.header("Authorization", key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} {key:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "unauthorized");
        }
        // With the key, a malformed query is a clear 400.
        let response = client()
            .get(format!("{}{path}?basis=a&basis=b", server.base))
            .header("Authorization", &server.sdk_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_query");
        // A huge basis is read as a foreign one, not a reason to fail.
        let response = client()
            .get(format!("{}{path}", server.base))
            .query(&[("basis", "9".repeat(6_000))])
            .header("Authorization", &server.sdk_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

/// Turns the FDv1 fallback of `default/production` on or off, as the API does.
async fn set_fdv1_fallback(server: &Server, on: bool) {
    update_environment(
        server,
        flagstaff_app::EnvironmentSettings {
            fdv1_fallback: Some(on),
            ..Default::default()
        },
    )
    .await;
}

#[tokio::test]
async fn the_fdv1_fallback_switch_sends_fdv2_sdks_to_fdv1_and_back() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    server.caught_up().await;
    let mut fdv2 = open_fdv2(&server, &server.base, None).await;
    let mut fdv1 = Stream::open(&server.base, "/all", &server.sdk_key).await;
    assert!(fdv1.read_until("event: put").await);

    set_fdv1_fallback(&server, true).await;
    // Open FDv2 streams end, so that their SDKs reconnect and hear the directive; FDv1 streams
    // stay.
    assert!(fdv2.read_to_end().await, "the FDv2 stream ends");
    for path in ["/sdk/stream", "/sdk/poll"] {
        let response = client()
            .get(format!("{}{path}", server.base))
            .header("Authorization", &server.sdk_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "{path}");
        assert_eq!(response.headers()["x-ld-fd-fallback"], "true", "{path}");
        assert_eq!(response.headers()["x-ld-fd-fallback-ttl"], "3600", "{path}");
        assert_eq!(
            response.headers()["x-ld-envid"].to_str().unwrap(),
            server.client_side_id
        );
    }
    // Without a valid key there is nothing to learn, not even the setting.
    let response = client()
        .get(format!("{}/sdk/poll", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("x-ld-fd-fallback").is_none());
    turn_on(&server, "alpha").await;
    assert!(
        fdv1.read_until("event: patch").await,
        "FDv1 streams carry on"
    );

    set_fdv1_fallback(&server, false).await;
    let stream = open_fdv2(&server, &server.base, None).await;
    assert_eq!(intent(&stream, 0)["intentCode"], "xfer-full");
}
