//! What flagstaff-sdk puts on the wire for analytics events (`ld-protocol.md` §6): headers,
//! gzip, the payload's events, one retry with the same payload ID, and stopping for good after
//! a refusal.

use std::time::Duration;

use flagstaff_sdk::{AttrRef, Client, Config, ContextBuilder, EventsConfig};
use flagstaff_testkit::peer::Peer;
use serde_json::{Value, json};

fn data() -> Value {
    json!({"flags": {
        "tracked": {"key": "tracked", "version": 7, "on": true, "trackEvents": true,
            "variations": ["a", "b"], "fallthrough": {"variation": 1}, "offVariation": 0,
            "prerequisites": [{"key": "gate", "variation": 0}]},
        "gate": {"key": "gate", "version": 3, "on": true, "variations": [true, false],
            "fallthrough": {"variation": 0}},
        "plain": {"key": "plain", "version": 2, "on": false, "variations": [1, 2], "offVariation": 0}
    }, "segments": {}})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client(rt: &tokio::runtime::Runtime, peer: &Peer) -> Client {
    let _guard = rt.enter();
    let config = Config::builder("sdk-secret")
        .base_uri(&peer.base)
        .wrapper("test-wrapper", Some("1.0"))
        .application_info(Some("checkout"), Some("2.1"))
        .events(EventsConfig {
            flush_interval: Duration::from_secs(3600),
            private_attributes: vec![AttrRef::new("email")],
            ..EventsConfig::default()
        })
        .build()
        .unwrap();
    let client = Client::new(config).unwrap();
    rt.block_on(client.wait_for_initialization(Duration::from_secs(10)))
        .unwrap();
    client
}

#[test]
fn payloads_carry_summaries_feature_and_custom_events_with_private_attributes_removed() {
    let rt = runtime();
    let peer = Peer::start(data());
    let client = client(&rt, &peer);
    let ann = ContextBuilder::new("ann")
        .set("email", "ann@example.com")
        .set("country", "NZ")
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(client.str_variation(&ann, "tracked", "x"), "b");
        assert_eq!(client.int_variation(&ann, "plain", 0), 1);
    }
    assert!(!client.bool_variation(&ann, "missing", false));
    client.track(&ann, "purchase", Some(json!({"sku": "A1"})), Some(19.5));
    rt.block_on(client.flush());

    let posts = peer.event_posts();
    assert_eq!(posts.len(), 1, "one payload per flush");
    let post = &posts[0];
    assert_eq!(post.header("authorization"), Some("sdk-secret"));
    assert_eq!(post.header("x-launchdarkly-event-schema"), Some("4"));
    assert_eq!(post.header("content-encoding"), Some("gzip"));
    assert_eq!(post.header("user-agent"), Some(flagstaff_sdk::USER_AGENT));
    assert_eq!(
        post.header("x-launchdarkly-wrapper"),
        Some("test-wrapper/1.0")
    );
    assert_eq!(
        post.header("x-launchdarkly-tags"),
        Some("application-id/checkout application-version/2.1")
    );
    assert_eq!(
        post.header("x-launchdarkly-payload-id").map(str::len),
        Some(36)
    );

    let events = post.body.as_array().unwrap();
    let of_kind =
        |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["kind"] == kind).collect() };
    // Three feature events for the tracked flag; its prerequisite is tracked only in the
    // summary (the prerequisite itself does not track events).
    let features = of_kind("feature");
    assert_eq!(features.len(), 3, "{events:?}");
    assert_eq!(features[0]["key"], "tracked");
    assert_eq!(features[0]["version"], 7);
    assert_eq!(features[0]["value"], "b");
    assert_eq!(features[0]["default"], "x");
    assert_eq!(
        features[0]["context"],
        json!({"kind": "user", "key": "ann", "country": "NZ", "_meta": {"redactedAttributes": ["email"]}})
    );
    // The context appears inline in feature events, and once in an index event for the
    // evaluations that produced no full event.
    assert_eq!(of_kind("index").len(), 1);
    let custom = of_kind("custom");
    assert_eq!(custom.len(), 1);
    assert_eq!(custom[0]["data"], json!({"sku": "A1"}));
    assert_eq!(custom[0]["metricValue"], json!(19.5));
    assert!(
        !post.body.to_string().contains("ann@example.com"),
        "the private email never leaves"
    );
    let summary = of_kind("summary");
    assert_eq!(summary.len(), 1);
    let features = &summary[0]["features"];
    assert_eq!(
        features["tracked"]["counters"],
        json!([{"variation": 1, "version": 7, "value": "b", "count": 3}])
    );
    assert_eq!(
        features["gate"]["counters"],
        json!([{"variation": 0, "version": 3, "value": true, "count": 3}])
    );
    assert_eq!(features["gate"]["default"], Value::Null);
    assert_eq!(
        features["plain"]["counters"],
        json!([{"variation": 0, "version": 2, "value": 1, "count": 3}])
    );
    assert_eq!(
        features["missing"]["counters"],
        json!([{"unknown": true, "value": false, "count": 1}])
    );
    rt.block_on(client.close());
}

#[test]
fn a_failed_post_is_retried_once_with_the_same_payload_id_and_a_refusal_stops_events() {
    let rt = runtime();
    let peer = Peer::start(data());
    let client = client(&rt, &peer);
    let bob = ContextBuilder::new("bob").build().unwrap();

    // 503 then 202: two posts of the same payload.
    peer.answer_events_with(&[503]);
    client.bool_variation(&bob, "gate", false);
    rt.block_on(client.flush());
    let posts = peer.event_posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0].header("x-launchdarkly-payload-id"),
        posts[1].header("x-launchdarkly-payload-id")
    );
    assert_eq!(posts[0].body, posts[1].body);

    // Two failures: the payload is dropped after the one retry; the next one is new.
    peer.answer_events_with(&[500, 500]);
    client.bool_variation(&bob, "gate", false);
    rt.block_on(client.flush());
    client.bool_variation(&bob, "gate", false);
    rt.block_on(client.flush());
    let posts = peer.event_posts();
    assert_eq!(posts.len(), 5);
    assert_ne!(
        posts[3].header("x-launchdarkly-payload-id"),
        posts[4].header("x-launchdarkly-payload-id")
    );

    // 401: no retry, and nothing is sent again for the client's lifetime.
    peer.answer_events_with(&[401]);
    client.bool_variation(&bob, "gate", false);
    rt.block_on(client.flush());
    client.bool_variation(&bob, "gate", false);
    client.track(&bob, "after-refusal", None, None);
    rt.block_on(client.flush());
    rt.block_on(client.close());
    assert_eq!(peer.event_posts().len(), 6);
    // Evaluations still work.
    assert!(client.bool_variation(&bob, "gate", false));
}

#[test]
fn live_patches_notify_listeners_of_dependent_flags() {
    let rt = runtime();
    let peer = Peer::start(data());
    let client = client(&rt, &peer);
    let mut changes = client.flag_changes();
    let bob = ContextBuilder::new("bob").build().unwrap();
    assert_eq!(client.str_variation(&bob, "tracked", "x"), "b");
    // Turning the prerequisite off changes `tracked` too (it now serves its off variation).
    peer.patch(
        "/flags/gate",
        &json!({"key": "gate", "version": 4, "on": false,
        "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 0}}),
    );
    let mut keys = Vec::new();
    rt.block_on(async {
        while keys.len() < 2 {
            let change = tokio::time::timeout(Duration::from_secs(5), changes.recv())
                .await
                .expect("a change notification")
                .unwrap();
            keys.push(change.key);
        }
    });
    keys.sort();
    assert_eq!(keys, ["gate", "tracked"]);
    assert_eq!(client.str_variation(&bob, "tracked", "x"), "a");
    assert_eq!(peer.stream_connections(), 1);
    rt.block_on(client.close());
}

#[test]
fn secure_mode_hashes_match_the_specification_vectors() {
    let rt = runtime();
    let _guard = rt.enter();
    let hash = |sdk_key: &str, context: flagstaff_sdk::Context| {
        let config = Config::builder(sdk_key).offline(true).build().unwrap();
        Client::new(config).unwrap().secure_mode_hash(&context)
    };
    let user = |key: &str| ContextBuilder::new(key).set("name", "any").build().unwrap();
    let key0 = "sdk-01234567-89ab-cdef-0123-456789abcdef";
    assert_eq!(
        hash(key0, user("user-key-123")),
        "73df666a13f2c474e50aa34ca5a761e89abb737fb139ff65fdde7fa85c9dcacd"
    );
    assert_eq!(
        hash(
            "sdk-11234567-89ab-cdef-0123-456789abcdef",
            user("user-key-123")
        ),
        "63538426a9845721a5547b4715f4284b060c21743702a896e1ff8a9a5b57215d"
    );
    assert_eq!(
        hash(key0, user("user-key-456")),
        "55be6b5ceb2a11acc6a7e9c60dbee5022d9c7084baf9ecd8cf69d12bce5a92fb"
    );
    let other = ContextBuilder::new("user-key-123")
        .kind("other")
        .build()
        .unwrap();
    assert_eq!(
        hash(key0, other),
        "98a933ca26d2951547fc021981ebcdeda95fbca2ac3f767ae67f7042d5458f72"
    );
}
