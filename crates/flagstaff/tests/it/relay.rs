//! `flagstaff relay` as real processes between `flagstaff serve` and the real LaunchDarkly SDKs
//! (Python from PyPI, Node from npm): every conformance vector through a relay, streaming and
//! polling; a change through a chain of two relays; an upstream outage (SDKs keep their values,
//! a change made meanwhile arrives after); a relay restarted while its upstream is down serving
//! what it saved; events sent during an outage arriving upstream exactly once.

use std::time::Duration;

use flagstaff_testkit::conformance;
use flagstaff_testkit::relay::{RelayEnvironment, TestRelay};
use flagstaff_testkit::sdk::{Driver, Sdk};
use serde_json::{Value, json};

use crate::sdks::{
    Mode, binary, eventually, flag_and_segment_changes_reach, fresh_server, load_variants,
    run_all_and_compare, runtime,
};

/// A relay's `/status`.
fn status(relay: &TestRelay) -> Value {
    runtime().block_on(async {
        reqwest::get(format!("{}/status", relay.base()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

fn all_connected(relay: &TestRelay) -> bool {
    status(relay)["environments"]
        .as_array()
        .is_some_and(|e| e.iter().all(|e| e["connected"] == true))
}

/// What a polling SDK gets from `base` with `sdk_key`.
fn latest_all(base: &str, sdk_key: &str) -> (u16, Value) {
    runtime().block_on(async {
        let response = reqwest::Client::new()
            .get(format!("{base}/sdk/latest-all"))
            .header("Authorization", sdk_key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn every_conformance_vector_evaluates_the_same_through_a_relay() {
    let Some(variants) = conformance::variants() else {
        return;
    };
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, api, _) = fresh_server(dir.path());
    let base = server.base();
    let rt = runtime();
    let loaded = load_variants(&rt, &api, &base, &variants);
    let relay_dir = tempfile::tempdir().unwrap();
    let environments: Vec<RelayEnvironment> = loaded
        .iter()
        .map(|l| RelayEnvironment {
            project: l.project.clone(),
            key: "test".into(),
            sdk_key: l.sdk_key.clone(),
            client_side_id: None,
            secure_mode: false,
        })
        .collect();
    let relay = TestRelay::start(binary(), relay_dir.path(), &base, &environments);
    assert!(
        eventually(Duration::from_secs(30), || all_connected(&relay)),
        "every environment's link is up: {}",
        status(&relay)
    );
    // The relay serves, byte for byte in meaning, what the server serves.
    for item in &loaded {
        let (code, relayed) = latest_all(&relay.base(), &item.sdk_key);
        assert_eq!(code, 200);
        assert_eq!(
            relayed,
            latest_all(&base, &item.sdk_key).1,
            "{}",
            item.project
        );
    }

    // FDv2 from the relay's own state: its selectors count its replica's positions, and a
    // basis from it is caught up there (nothing changed: `none`).
    let item = &loaded[0];
    let poll = |basis: Option<&str>| -> Value {
        rt.block_on(async {
            let mut request = reqwest::Client::new()
                .get(format!("{}/sdk/poll", relay.base()))
                .header("Authorization", &item.sdk_key);
            if let Some(basis) = basis {
                request = request.query(&[("basis", basis)]);
            }
            request.send().await.unwrap().json().await.unwrap()
        })
    };
    let full = poll(None);
    let events = full["events"].as_array().unwrap();
    assert_eq!(events[0]["data"]["payloads"][0]["intentCode"], "xfer-full");
    let state = events.last().unwrap()["data"]["state"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(state.starts_with("fs1.r"), "a relay's lineage: {state}");
    let again = poll(Some(&state));
    assert_eq!(
        again["events"][0]["data"]["payloads"][0]["intentCode"], "none",
        "{again}"
    );

    let runs: Vec<(Sdk, Mode<'_>)> = Sdk::ALL
        .iter()
        .flat_map(|sdk| {
            [
                (*sdk, Mode::Streaming),
                (*sdk, Mode::Polling),
                (*sdk, Mode::Fdv2("streaming")),
            ]
        })
        .collect();
    run_all_and_compare("through a relay", &relay.base(), &runs, &loaded);
}

#[test]
fn changes_cross_two_relays_and_outages_lose_nothing() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api, sdk_key) = fresh_server(dir.path());
    let rt = runtime();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "live", "name": "Live"}),
    ));
    // SDKs → relay B → relay A → server.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut relay_a = TestRelay::start(
        binary(),
        dir_a.path(),
        &server.base(),
        &[RelayEnvironment::production(&sdk_key)],
    );
    // B keeps the events it cannot forward on disk (1 MiB at most).
    let mut relay_b = TestRelay::start_with(
        binary(),
        dir_b.path(),
        &relay_a.base(),
        &[RelayEnvironment::production(&sdk_key)],
        "[events]\nspool_bytes = 1048576\n",
    );
    assert!(eventually(Duration::from_secs(10), || all_connected(
        &relay_b
    )));

    let mut drivers: Vec<Driver> = Sdk::ALL.into_iter().map(Driver::start).collect();
    let alice = json!({"kind": "user", "key": "alice", "country": "NZ"});
    for driver in &mut drivers {
        assert!(
            driver.open("r", &sdk_key, &relay_b.base(), true),
            "{} initializes through two relays",
            driver.sdk.name()
        );
        assert_eq!(
            driver.value("r", "live", &alice, &json!("default")),
            json!(false)
        );
    }
    flag_and_segment_changes_reach(&rt, &api, &mut drivers, "r");
    // Now alice gets false (the kiwis rule).

    // Relay A (B's upstream) goes away for 10 s. Meanwhile the flag changes on the server and
    // SDKs send events to B.
    relay_a.stop();
    let targeting = "/projects/default/environments/production/flags/live";
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    for driver in &mut drivers {
        for _ in 0..3 {
            driver.track("r", "relayed-purchase", &alice, None);
        }
        driver.flush("r");
    }
    for _ in 0..10 {
        for driver in &mut drivers {
            assert_eq!(
                driver.value("r", "live", &alice, &json!("default")),
                json!(false),
                "{} keeps serving the last data while the link is down",
                driver.sdk.name()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let b_status = status(&relay_b);
    assert_eq!(b_status["status"], "degraded", "{b_status}");
    assert_eq!(b_status["environments"][0]["state"], "stale", "{b_status}");
    assert!(b_status["environments"][0]["lastError"].is_string());

    // The events wait in B's spool; B itself restarts meanwhile (its upstream still down): it
    // serves what it saved, and the spooled events survive.
    let spool = dir_b.path().join("data/events-spool");
    let spooled_purchases = || {
        std::fs::read_dir(&spool)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .map(|text| text.matches("relayed-purchase").count())
                    .sum::<usize>()
            })
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(10), || spooled_purchases()
            >= 3 * Sdk::ALL.len()),
        "the events are spooled: {}",
        spooled_purchases()
    );
    relay_b.stop();
    relay_b.restart();
    let b_status = status(&relay_b);
    assert_eq!(b_status["environments"][0]["fromDisk"], true, "{b_status}");
    for driver in &mut drivers {
        assert!(
            eventually(Duration::from_secs(10), || {
                driver.value("r", "live", &alice, &json!("default")) == json!(false)
            }),
            "{} is served the saved data after the relay's restart",
            driver.sdk.name()
        );
    }

    // A comes back: the change made meanwhile reaches the SDKs, and the events arrive upstream
    // exactly once (3 per SDK).
    relay_a.restart();
    for driver in &mut drivers {
        assert!(
            eventually(Duration::from_secs(15), || {
                driver.value("r", "live", &alice, &json!("default")) == json!(true)
            }),
            "{} sees the change made during the outage",
            driver.sdk.name()
        );
    }
    let custom = || {
        let custom =
            rt.block_on(api.get("/projects/default/environments/production/custom-events"));
        custom["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["key"] == "relayed-purchase"))
            .map(|i| i["count"].clone())
    };
    let expected = json!(3 * Sdk::ALL.len());
    assert!(
        eventually(Duration::from_secs(20), || custom()
            == Some(expected.clone())),
        "events sent during the outage arrive: {:?}",
        custom()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(custom(), Some(expected), "and arrive once");

    // The server goes down and relay A restarts meanwhile: it serves what it saved.
    server.stop();
    relay_a.stop();
    relay_a.restart();
    let (code, served) = latest_all(&relay_a.base(), &sdk_key);
    assert_eq!(code, 200);
    assert_eq!(served["flags"]["live"]["on"], true, "{served}");
    let a_status = status(&relay_a);
    assert_eq!(a_status["environments"][0]["fromDisk"], true, "{a_status}");
    assert_eq!(a_status["environments"][0]["state"], "stale", "{a_status}");
    for driver in &mut drivers {
        assert_eq!(
            driver.value("r", "live", &alice, &json!("default")),
            json!(true)
        );
    }
    // And converges once the server is back.
    server.restart();
    assert!(eventually(Duration::from_secs(15), || all_connected(
        &relay_a
    )));
    assert!(eventually(Duration::from_secs(15), || all_connected(
        &relay_b
    )));
}

#[test]
fn a_relay_refuses_unknown_keys_and_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _api, sdk_key) = fresh_server(dir.path());
    let relay_dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(
        binary(),
        relay_dir.path(),
        &server.base(),
        &[RelayEnvironment::production(&sdk_key)],
    );
    assert!(eventually(Duration::from_secs(10), || all_connected(
        &relay
    )));
    // A key the relay was not configured with gets nothing, on every path.
    let (code, _) = latest_all(&relay.base(), "sdk-not-configured");
    assert_eq!(code, 401);
    let (code, _) = latest_all(&relay.base(), "");
    assert_eq!(code, 401);
    // Events the relay would forward are checked first, with the server's answers.
    let post_bulk = |body: &'static str| {
        runtime().block_on(async {
            let response = reqwest::Client::new()
                .post(format!("{}/bulk", relay.base()))
                .header("Authorization", &sdk_key)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    let (code, answer) = post_bulk("[{");
    assert_eq!(
        (code, answer["code"].as_str()),
        (400, Some("invalid_json")),
        "{answer}"
    );
    let (code, answer) = post_bulk("{}");
    assert_eq!(
        (code, answer["code"].as_str()),
        (400, Some("invalid_payload")),
        "{answer}"
    );
    assert_eq!(post_bulk("[]").0, 202);
    // The status names no key.
    let text = status(&relay).to_string();
    assert!(!text.contains(&sdk_key), "{text}");

    // A configuration mistake stops the relay at start with the field named.
    let bad = relay_dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "upstream = \"ftp://x\"\n[[environment]]\nkey = \"p\"\nsdk_key = \"s\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(binary())
        .args(["relay", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("upstream: must be an http:// or https:// URL"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // An SDK key the upstream refuses leaves the environment waiting, and the status says why.
    let wrong_dir = tempfile::tempdir().unwrap();
    let wrong = TestRelay::start(
        binary(),
        wrong_dir.path(),
        &server.base(),
        &[RelayEnvironment::production("sdk-wrong")],
    );
    assert!(eventually(Duration::from_secs(10), || {
        status(&wrong)["environments"][0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("refused the SDK key"))
    }));
    let (code, _) = latest_all(&wrong.base(), "sdk-wrong");
    assert_eq!(
        code, 401,
        "a key the upstream refuses is refused by the relay too"
    );

    // An upstream the relay has never reached, and nothing on disk: SDKs are told to retry
    // (503), not served an empty environment.
    let unreachable_dir = tempfile::tempdir().unwrap();
    let unreachable = TestRelay::start(
        binary(),
        unreachable_dir.path(),
        "http://127.0.0.1:1",
        &[RelayEnvironment::production(&sdk_key)],
    );
    let (code, _) = latest_all(&unreachable.base(), &sdk_key);
    assert_eq!(code, 503);
    assert!(
        eventually(Duration::from_secs(5), || {
            status(&unreachable)["environments"][0]["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("cannot reach the upstream"))
        }),
        "it is not connected, and says why"
    );
}
