//! FDv2 (issue 24) with LaunchDarkly's own SDKs against `flagstaff serve`: the Python SDK with
//! `datasystem.default()` and `datasystem.streaming()`, and the Node SDK with `dataSystem` in
//! its standard and streaming-only modes. None may fall back to FDv1; changes reach them over
//! the stream; after a cut connection or a server restart they catch up from their basis with
//! exactly what changed, read on `/metrics` and, with a raw client, on the wire.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagstaff_testkit::sdk::{Driver, Sdk};
use flagstaff_testkit::server::Api;
use serde_json::{Value, json};

use crate::sdks::{eventually, fresh_server, runtime};

/// A TCP proxy in front of the server that the test can cut: every connection through it is
/// closed, and new ones are closed as soon as they are accepted, until it is mended.
struct Cutter {
    base: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cutter {
    fn start(upstream: &str) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_cut, held) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut held = held.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Cutter { base, cut, open }
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for socket in self.open.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// A counter of the server's `/metrics` with these labels, 0 when absent.
fn counter(rt: &tokio::runtime::Runtime, base: &str, name: &str, intent: &str) -> u64 {
    let text = rt
        .block_on(async { reqwest::get(format!("{base}/metrics")).await?.text().await })
        .unwrap();
    let prefix = format!("{name}{{intent=\"{intent}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

/// The clients of the test: which SDK, which data system, its id.
const CLIENTS: [(Sdk, &str, &str); 4] = [
    (Sdk::Python, "default", "py-default"),
    (Sdk::Python, "streaming", "py-streaming"),
    (Sdk::Node, "default", "node-default"),
    (Sdk::Node, "streaming", "node-streaming"),
];

struct Sdks {
    python: Driver,
    node: Driver,
}

impl Sdks {
    fn driver(&mut self, sdk: Sdk) -> &mut Driver {
        match sdk {
            Sdk::Python => &mut self.python,
            Sdk::Node => &mut self.node,
        }
    }

    /// Waits until every client serves `expected` for `flag`; the time the last one took.
    fn all_see(&mut self, flag: &str, expected: &Value) -> Option<Duration> {
        let alice = json!({"kind": "user", "key": "alice"});
        let start = Instant::now();
        for (sdk, _, id) in CLIENTS {
            let driver = self.driver(sdk);
            if !eventually(Duration::from_secs(5), || {
                driver.value(id, flag, &alice, &json!("default")) == *expected
            }) {
                return None;
            }
        }
        Some(start.elapsed())
    }

    /// No client logged a fallback: to FDv1, or (Python) from its stream to its polling
    /// synchronizer.
    fn assert_no_fallback(&mut self) {
        for (sdk, data_system, id) in CLIENTS {
            let logs = self.driver(sdk).logs(id);
            let fallback: Vec<&String> = logs
                .iter()
                .filter(|l| {
                    let l = l.to_lowercase();
                    l.contains("fallback") || l.contains("fdv1")
                })
                .collect();
            assert!(
                fallback.is_empty(),
                "{} ({data_system}) fell back to FDv1: {fallback:?}",
                sdk.name()
            );
        }
    }
}

async fn set_on(api: &Api, flag: &str, on: bool) {
    let path = format!("/projects/default/environments/production/flags/{flag}");
    let current = api.get(&path).await;
    api.put(
        &path,
        &json!({"on": on, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    )
    .await;
}

/// An FDv2 stream read with a raw client until its first `payload-transferred`: the events'
/// names and data, in order.
fn raw_transfer(
    rt: &tokio::runtime::Runtime,
    base: &str,
    key: &str,
    basis: Option<&str>,
) -> Vec<(String, Value)> {
    rt.block_on(async {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/sdk/stream"))
            .header("Authorization", key);
        if let Some(basis) = basis {
            request = request.query(&[("basis", basis)]);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !text.contains("event: payload-transferred") || !text.ends_with("\n\n") {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .expect("a transfer within 5 s")
                .unwrap()
                .expect("the stream stays open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let mut events = Vec::new();
        for block in text.split("\n\n") {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).unwrap());
                }
            }
            if let (Some(name), Some(data)) = (name, data) {
                let last = name == "payload-transferred";
                events.push((name, data));
                if last {
                    break;
                }
            }
        }
        events
    })
}

#[test]
fn the_real_sdks_speak_fdv2_and_catch_up_from_their_basis() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api, sdk_key) = fresh_server(dir.path());
    let rt = runtime();
    for key in ["live", "second"] {
        rt.block_on(api.post("/projects/default/flags", &json!({"key": key, "name": key})));
    }
    let proxy = Cutter::start(&server.base());

    let mut sdks = Sdks {
        python: Driver::start(Sdk::Python),
        node: Driver::start(Sdk::Node),
    };
    for (sdk, data_system, id) in CLIENTS {
        assert!(
            sdks.driver(sdk)
                .open_fdv2(id, &sdk_key, &proxy.base, data_system),
            "{} ({data_system}) initializes over FDv2",
            sdk.name()
        );
    }
    assert!(sdks.all_see("live", &json!(false)).is_some());

    // A change reaches every SDK over its stream: well within the 30 s its poll would take.
    rt.block_on(set_on(&api, "live", true));
    let took = sdks.all_see("live", &json!(true));
    let took = took.expect("the change reaches every FDv2 SDK");
    println!(
        "fdv2: a change reached all four SDK clients in {took:?} (read back by polling the drivers)"
    );

    // A raw client's selector from now, to compare with what the SDKs get below.
    let before = raw_transfer(&rt, &server.base(), &sdk_key, None);
    let basis = before.last().unwrap().1["state"]
        .as_str()
        .unwrap()
        .to_owned();

    // Cut every SDK connection, make three changes, let them reconnect.
    let full_before = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfers_total",
        "xfer-full",
    );
    let changes_before = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfers_total",
        "xfer-changes",
    );
    let objects_before = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfer_objects_total",
        "xfer-changes",
    );
    proxy.cut();
    rt.block_on(set_on(&api, "second", true));
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "third", "name": "third"}),
    ));
    rt.block_on(api.post(
        "/projects/default/environments/production/segments",
        &json!({"key": "staff", "included": ["alice"]}),
    ));
    // On the wire: exactly those three objects, as changes.
    let caught_up = raw_transfer(&rt, &server.base(), &sdk_key, Some(&basis));
    assert_eq!(caught_up[0].0, "server-intent");
    assert_eq!(caught_up[0].1["payloads"][0]["intentCode"], "xfer-changes");
    let mut objects: Vec<(String, String)> = caught_up
        .iter()
        .filter(|(name, _)| name == "put-object")
        .map(|(_, data)| {
            (
                data["kind"].as_str().unwrap().to_owned(),
                data["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    objects.sort();
    assert_eq!(
        objects,
        [
            ("flag".to_owned(), "second".to_owned()),
            ("flag".to_owned(), "third".to_owned()),
            ("segment".to_owned(), "staff".to_owned())
        ]
    );
    let changes_after_raw = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfers_total",
        "xfer-changes",
    );
    assert_eq!(changes_after_raw, changes_before + 1);
    let objects_after_raw = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfer_objects_total",
        "xfer-changes",
    );
    assert_eq!(objects_after_raw, objects_before + 3);
    proxy.mend();
    assert!(
        sdks.all_see("second", &json!(true)).is_some(),
        "every SDK catches up"
    );
    assert!(sdks.all_see("third", &json!(false)).is_some());
    // What each SDK sent decides what it got (read on `/metrics`):
    // - both Python clients reconnect with the selector they hold: three objects each;
    // - Node's standard mode reconnects with the basis its first poll gave it (Node 9.13.7 builds
    //   the stream URL once): the three, and `live`, changed since;
    // - Node's streaming-only mode sends no basis at all (it had none when it first
    //   connected), so it can only get a full transfer.
    let catchups = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfers_total",
        "xfer-changes",
    ) - changes_after_raw;
    let objects = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfer_objects_total",
        "xfer-changes",
    ) - objects_after_raw;
    let full = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfers_total",
        "xfer-full",
    ) - full_before;
    assert_eq!(
        (catchups, objects, full),
        (3, 3 + 3 + 4, 1),
        "(catch-ups, their objects, full transfers)"
    );

    // A basis from before a restart still works: the restarted server reads its change log.
    server.stop();
    server.restart();
    rt.block_on(set_on(&api, "third", true));
    assert!(
        sdks.all_see("third", &json!(true)).is_some(),
        "every SDK reconnects after a restart and sees the change"
    );
    let caught_up = counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfers_total",
        "xfer-changes",
    ) + counter(
        &rt,
        &server.base(),
        "flagstaff_fdv2_transfers_total",
        "none",
    );
    assert!(
        caught_up >= 3,
        "{caught_up} SDKs caught up from their basis after the restart"
    );
    assert_eq!(
        counter(
            &rt,
            &server.base(),
            "flagstaff_fdv2_transfers_total",
            "xfer-full"
        ),
        1,
        "after the restart, only the SDK that sends no basis got a full transfer"
    );
    sdks.assert_no_fallback();
}

#[test]
fn the_fdv1_fallback_switch_steers_the_real_sdks_to_fdv1() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, api, sdk_key) = fresh_server(dir.path());
    let rt = runtime();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "live", "name": "live"}),
    ));
    rt.block_on(set_on(&api, "live", true));
    let environment = "/projects/default/environments/production";
    let current = rt.block_on(api.get(environment));
    let updated = rt.block_on(api.put(
        environment,
        &json!({"name": current["name"], "fdv1Fallback": true}),
        current["version"].as_u64(),
    ));
    assert_eq!(updated["fdv1Fallback"], true);

    let alice = json!({"kind": "user", "key": "alice"});
    for sdk in Sdk::ALL {
        let mut driver = Driver::start(sdk);
        assert!(
            driver.open_fdv2("c", &sdk_key, &server.base(), "default"),
            "{} initializes through its FDv1 fallback",
            sdk.name()
        );
        assert!(
            eventually(Duration::from_secs(5), || driver.value(
                "c",
                "live",
                &alice,
                &json!("default")
            ) == json!(true)),
            "{} evaluates with the FDv1 data",
            sdk.name()
        );
        let logs = driver.logs("c");
        assert!(
            logs.iter().any(|l| l.to_lowercase().contains("fdv1")),
            "{} says it fell back to FDv1: {logs:?}",
            sdk.name()
        );
    }
}
