//! `flagstaff-sdk`, the Rust SDK, against a real `flagstaff serve` on a random port: every
//! conformance vector through the SDK (compared with the file's expectations and with the
//! server's own evaluate endpoint), live updates with change notifications, restart and
//! reconnection, a server that is down when the client starts, polling, the bootstrap document,
//! and analytics events arriving at the server.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use flagstaff_eval::ValueType;
use flagstaff_protocol::Context;
use flagstaff_sdk::{
    BootstrapOptions, Client, Config, ContextBuilder, DataSourceConfig, DataSourceState,
    EventsConfig,
};
use flagstaff_testkit::conformance::{self, Evaluation};
use flagstaff_testkit::json_equal;
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start(dir: &Path, listen: &str) -> TestServer {
    TestServer::start(
        binary(),
        dir,
        listen,
        &["--sdk-heartbeat-seconds", "1", "--change-poll-ms", "200"],
    )
}

fn client(
    rt: &tokio::runtime::Runtime,
    base: &str,
    sdk_key: &str,
    source: DataSourceConfig,
) -> Client {
    let config = Config::builder(sdk_key)
        .base_uri(base)
        .data_source(source)
        .events(EventsConfig {
            flush_interval: Duration::from_secs(3600),
            ..EventsConfig::default()
        })
        .build()
        .unwrap();
    let _guard = rt.enter();
    Client::new(config).unwrap()
}

fn fast_streaming() -> DataSourceConfig {
    DataSourceConfig::Streaming {
        initial_reconnect_delay: Duration::from_millis(100),
        read_timeout: Duration::from_secs(30),
    }
}

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// The SDK's typed `*_detail` call for an evaluation, as `(value, variationIndex, reason)`.
fn sdk_detail(
    client: &Client,
    context: &Context,
    evaluation: &Evaluation,
) -> (Value, Value, Value) {
    let key = evaluation.flag_key.as_str();
    let default = &evaluation.default;
    let (value, index, reason) = match evaluation.value_type {
        ValueType::Bool => {
            let d = client.bool_variation_detail(context, key, default.as_bool().unwrap_or(false));
            (json!(d.value), d.variation_index, d.reason)
        }
        ValueType::Int => {
            let d = client.int_variation_detail(context, key, default.as_i64().unwrap_or(0));
            (json!(d.value), d.variation_index, d.reason)
        }
        ValueType::Double => {
            let d = client.float_variation_detail(context, key, default.as_f64().unwrap_or(0.0));
            (json!(d.value), d.variation_index, d.reason)
        }
        ValueType::String => {
            let d = client.str_variation_detail(context, key, default.as_str().unwrap_or(""));
            (json!(d.value), d.variation_index, d.reason)
        }
        ValueType::Any => {
            let d = client.json_variation_detail(context, key, default.clone());
            (d.value, d.variation_index, d.reason)
        }
    };
    (value, json!(index), json!(reason))
}

#[test]
fn every_conformance_vector_evaluates_in_the_rust_sdk_as_on_the_server() {
    let Some(variants) = conformance::variants() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = start(dir.path(), "127.0.0.1:0");
    let base = server.base();
    let api = Api::new(&base, &credentials.admin_token);
    let rt = runtime();
    let mut failures = Vec::new();
    let (mut compared, mut against_server, mut invalid_contexts) = (0, 0, 0);
    for (i, variant) in variants.iter().enumerate() {
        let project = format!("r{i}");
        let made = rt.block_on(api.post(
            "/projects",
            &json!({"key": project, "name": project,
                "environments": [{"key": "test", "name": "Test"}]}),
        ));
        let sdk_key = made["environments"][0]["keys"]["sdkKey"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, answer) = rt.block_on(api.call(
            reqwest::Method::POST,
            &format!("/projects/{project}/environments/test/import"),
            Some(&variant.sdk_data),
            None,
        ));
        assert_eq!(
            status, 200,
            "import of {} {}: {answer}",
            variant.file, variant.label
        );
        let client = client(&rt, &base, &sdk_key, fast_streaming());
        rt.block_on(client.wait_for_initialization(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("{} {}: {e}", variant.file, variant.label));
        for evaluation in &variant.evaluations {
            let name = format!("{} / {} / {}", variant.file, variant.label, evaluation.name);
            let Ok(context) = Context::from_json(&evaluation.context) else {
                // The SDK's API takes a `Context`, so an invalid one cannot reach it; the file
                // expects USER_NOT_SPECIFIED, which is the server's and LaunchDarkly's answer.
                assert_eq!(
                    evaluation.expect["reason"]["errorKind"],
                    json!("USER_NOT_SPECIFIED"),
                    "{name}"
                );
                invalid_contexts += 1;
                continue;
            };
            compared += 1;
            // 1. The typed call gives what the conformance file expects.
            let (value, index, reason) = sdk_detail(&client, &context, evaluation);
            let expect = &evaluation.expect;
            let mut expected_reason = expect["reason"].clone();
            if expected_reason.get("ruleId").is_some() && reason.get("ruleId").is_some() {
                // Rules without an id in the file get one on import.
                expected_reason["ruleId"] = reason["ruleId"].clone();
            }
            let expected_index = expect.get("variationIndex").cloned().unwrap_or(Value::Null);
            if !(json_equal(&value, &expect["value"])
                && index == expected_index
                && json_equal(&reason, &expected_reason))
            {
                failures.push(format!(
                    "{name}: expected {expect}, the SDK gave {value} {index} {reason}"
                ));
            }
            // 2. The untyped call equals the server's evaluate endpoint for the same context.
            let served = rt.block_on(api.post(
                &format!("/projects/{project}/environments/test/evaluate"),
                &json!({"context": evaluation.context}),
            ));
            let Some(on_server) = served["flags"].get(&evaluation.flag_key) else {
                continue;
            };
            against_server += 1;
            let untyped = client.json_variation_detail(&context, &evaluation.flag_key, Value::Null);
            let same = json_equal(&untyped.value, &on_server["value"])
                && json!(untyped.variation_index) == on_server["variationIndex"]
                && json_equal(&json!(untyped.reason), &on_server["reason"]);
            if !same {
                failures.push(format!(
                    "{name}: the server's evaluate endpoint gave {on_server}, the SDK {:?}",
                    untyped
                ));
            }
        }
        rt.block_on(client.close());
    }
    println!(
        "flagstaff-sdk: {compared} conformance evaluations compared with the files, {against_server} also with the server's evaluate endpoint ({invalid_contexts} invalid contexts cannot be built)"
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        compared > 500,
        "expected the full vector set, got {compared}"
    );
    drop(server);
}

#[test]
fn the_rust_sdk_follows_changes_restarts_and_a_late_server_and_sends_events() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    // Reserve a port and leave it closed: the client starts while the server is down.
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let base = format!("http://{address}");
    let rt = runtime();
    let streaming = client(&rt, &base, &credentials.sdk_key, fast_streaming());
    let alice = ContextBuilder::new("alice")
        .set("country", "NZ")
        .build()
        .unwrap();
    assert!(matches!(
        rt.block_on(streaming.wait_for_initialization(Duration::from_millis(300))),
        Err(flagstaff_sdk::InitializationError::Timeout(_))
    ));
    let before = streaming.bool_variation_detail(&alice, "live", true);
    assert!(before.value);
    assert_eq!(
        json!(before.reason),
        json!({"kind": "ERROR", "errorKind": "CLIENT_NOT_READY"})
    );
    assert_eq!(
        streaming.data_source_status().state,
        DataSourceState::Initializing
    );
    assert!(streaming.data_source_status().last_error.is_some());

    // The server comes up: the client connects on its own.
    let mut server = start(dir.path(), &address);
    let api = Api::new(&base, &credentials.admin_token);
    rt.block_on(streaming.wait_for_initialization(Duration::from_secs(10)))
        .expect("initializes once the server is up");
    assert_eq!(streaming.data_source_status().state, DataSourceState::Valid);
    let missing = streaming.str_variation_detail(&alice, "live", "fallback");
    assert_eq!(missing.value, "fallback");
    assert_eq!(
        json!(missing.reason),
        json!({"kind": "ERROR", "errorKind": "FLAG_NOT_FOUND"})
    );

    // A new flag and a change to it arrive live, with change notifications.
    let mut changes = streaming.flag_changes();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "live", "name": "Live"}),
    ));
    assert!(eventually(Duration::from_secs(5), || {
        streaming.bool_variation_detail(&alice, "live", true).reason == flagstaff_sdk::Reason::off()
    }));
    let started = Instant::now();
    let targeting = "/projects/default/environments/production/flags/live";
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 1}, "offVariation": 1,
                "rules": [{"variation": 0, "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}]}),
        current["version"].as_u64(),
    ));
    assert!(eventually(Duration::from_secs(5), || streaming
        .bool_variation(&alice, "live", false)));
    println!(
        "flagstaff-sdk: a targeting change reached the client {:?} after the API call",
        started.elapsed()
    );
    let detail = streaming.bool_variation_detail(&alice, "live", false);
    assert_eq!(detail.variation_index, Some(0));
    assert!(
        matches!(
            detail.reason.kind,
            flagstaff_sdk::ReasonKind::RuleMatch { rule_index: 0, .. }
        ),
        "{:?}",
        detail.reason
    );
    let mut keys = Vec::new();
    while let Ok(change) = changes.try_recv() {
        keys.push(change.key);
    }
    assert!(
        keys.iter().all(|k| k == "live") && keys.len() >= 2,
        "changes {keys:?}"
    );

    // A polling client sees the same data.
    let polling = client(
        &rt,
        &base,
        &credentials.sdk_key,
        DataSourceConfig::polling(Duration::from_secs(1)),
    );
    rt.block_on(polling.wait_for_initialization(Duration::from_secs(10)))
        .unwrap();
    assert!(polling.bool_variation(&alice, "live", false));
    let bob = ContextBuilder::new("bob")
        .set("country", "DE")
        .build()
        .unwrap();
    assert!(!polling.bool_variation(&bob, "live", true));

    // The bootstrap document equals the server's.
    let options = BootstrapOptions {
        with_reasons: true,
        ..BootstrapOptions::default()
    };
    let document = streaming.all_flags_state(&alice, options);
    assert!(document.valid());
    let served = rt.block_on(api.post(
        "/projects/default/environments/production/evaluate",
        &json!({"context": {"kind": "user", "key": "alice", "country": "NZ"}, "format": "bootstrap", "withReasons": true}),
    ));
    assert_eq!(document.as_json(), &served);

    // Events: evaluations, a custom event and an identify reach the server's events endpoint.
    let metric = |kind: &str| -> u64 {
        let text = rt.block_on(async {
            reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        text.lines()
            .filter(|l| {
                l.starts_with("flagstaff_events_received_total")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains("schema=\"4\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let (summaries, customs, identifies) =
        (metric("summary"), metric("custom"), metric("identify"));
    streaming.track(
        &alice,
        "checkout-completed",
        Some(json!({"cart": 3})),
        Some(42.0),
    );
    streaming.identify(&bob);
    rt.block_on(streaming.flush());
    assert_eq!(metric("summary"), summaries + 1, "one summary per flush");
    assert_eq!(metric("custom"), customs + 1);
    assert_eq!(metric("identify"), identifies + 1);

    // A restarted server is reconnected to and changes made after it arrive.
    server.stop();
    assert!(eventually(Duration::from_secs(5), || {
        streaming.data_source_status().state == DataSourceState::Interrupted
    }));
    // Last-known values keep being served while the server is down.
    assert!(streaming.bool_variation(&alice, "live", false));
    server.restart();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "after-restart", "name": "After"}),
    ));
    assert!(
        eventually(Duration::from_secs(10), || {
            streaming
                .bool_variation_detail(&alice, "after-restart", true)
                .reason
                == flagstaff_sdk::Reason::off()
        }),
        "the client reconnects after a restart: {:?}",
        streaming.data_source_status()
    );
    assert!(eventually(Duration::from_secs(5), || polling
        .bool_variation_detail(&alice, "after-restart", true)
        .reason
        == flagstaff_sdk::Reason::off()));

    // A revoked key stops the data source for good.
    rt.block_on(api.post(
        "/projects/default/environments/production/keys/sdk/rotate",
        &json!({"oldKeyValidForSeconds": 0}),
    ));
    let revoked = client(&rt, &base, &credentials.sdk_key, fast_streaming());
    let refused = rt.block_on(revoked.wait_for_initialization(Duration::from_secs(5)));
    assert_eq!(
        refused,
        Err(flagstaff_sdk::InitializationError::Failed(
            "HTTP 401".into()
        ))
    );
    assert_eq!(revoked.data_source_status().state, DataSourceState::Off);
    for c in [streaming, polling, revoked] {
        rt.block_on(c.close());
    }
}
