//! Three `flagstaff serve` nodes on one PostgreSQL database behind a real HAProxy (issue 23),
//! with LaunchDarkly's Python and Node SDKs streaming through it:
//!
//! - the nodes start at the same moment on an empty database (migrations and the first start's
//!   initialization race, and every node comes up);
//! - a change made on each node reaches the SDKs on every node, woken by PostgreSQL's
//!   `LISTEN/NOTIFY` rather than the one-second poll;
//! - `kill -9` of a node that SDKs stream from: they reconnect through HAProxy and see a change
//!   made after the kill, and what each SDK saw never went backwards;
//! - an analytics payload posted to every node with the same payload ID is counted once;
//! - a node cut off from PostgreSQL (through a proxy the test cuts) says it is not ready,
//!   refuses SDK requests and ends its streams within its staleness bound, HAProxy sends its
//!   SDKs to the other node, and once the database is back it catches up and serves again.
//!
//! Skipped with a warning where HAProxy is not installed (`sdk-clients/install` installs it
//! as root; on CI, `FLAGSTAFF_REQUIRE_SDKS` makes its absence a failure).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flagstaff_testkit::sdk::{Driver, Sdk};
use flagstaff_testkit::server::{Api, TestServer};
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

fn haproxy() -> Option<PathBuf> {
    for candidate in [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ] {
        if Path::new(candidate).exists() {
            return Some(PathBuf::from(candidate));
        }
    }
    let message =
        "HAProxy is not installed: run sdk-clients/install (as root) or apt-get install haproxy";
    if std::env::var_os("FLAGSTAFF_REQUIRE_SDKS").is_some() {
        panic!("{message} (FLAGSTAFF_REQUIRE_SDKS is set)");
    }
    eprintln!("\n!!! SKIPPING THE MULTI-NODE TEST: {message} !!!\n");
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in the foreground with the configuration docs/deployment.md recommends, its
/// health checks made quicker for a test. Killed when dropped.
struct LoadBalancer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LoadBalancer {
    fn start(program: &Path, nodes: &[String]) -> LoadBalancer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, address)| format!("    server node{i} {address} check\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 4096\n\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 5m\n    timeout server 5m\n    \
             timeout http-request 10s\n    timeout http-keep-alive 10s\n    timeout queue 5s\n    \
             option redispatch\n    retries 3\n\n\
             frontend flagstaff\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\n\
             backend nodes\n    balance leastconn\n    option http-no-delay\n    option httpchk GET /ready\n    \
             http-check expect status 200\n    \
             default-server inter 300ms fall 2 rise 2 on-marked-down shutdown-sessions\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let balancer = LoadBalancer {
            child,
            port,
            _dir: dir,
        };
        let ready = eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(ready.is_some(), "HAProxy listens on {port}");
        balancer
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The SDK streams a node holds now, from its `/metrics`.
fn streams_on(rt: &tokio::runtime::Runtime, node: &TestServer) -> u64 {
    let text = rt
        .block_on(async {
            reqwest::get(format!("{}/metrics", node.base()))
                .await?
                .text()
                .await
        })
        .unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("flagstaff_sdk_streams "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

/// The SDK clients of the test: (driver index, client id).
struct Clients {
    drivers: Vec<Driver>,
    ids: Vec<(usize, String)>,
    /// Every value each client was seen serving, in order.
    seen: HashMap<String, Vec<i64>>,
}

impl Clients {
    /// The rollout value every client serves now.
    fn values(&mut self) -> Vec<i64> {
        let context = json!({"kind": "user", "key": "someone"});
        let mut values = Vec::new();
        for (driver, id) in &self.ids {
            let value = self.drivers[*driver].value(id, "rollout", &context, &json!(-1));
            let value = value.as_i64().unwrap_or(-1);
            self.seen.entry(id.clone()).or_default().push(value);
            values.push(value);
        }
        values
    }

    /// Waits until every client serves `value`; how long it took.
    fn converge(&mut self, value: i64, limit: Duration) -> Duration {
        let started = Instant::now();
        let reached = eventually(limit, || {
            self.values().iter().all(|v| *v == value).then_some(())
        });
        assert!(
            reached.is_some(),
            "every SDK serves {value} within {limit:?}: {:?}",
            self.values()
        );
        started.elapsed()
    }
}

/// Sets `rollout`'s fallthrough to variation `value` through `api` (a node's own address).
fn set_rollout(rt: &tokio::runtime::Runtime, api: &Api, value: i64) {
    let path = "/projects/default/environments/production/flags/rollout";
    let current = rt.block_on(api.get(path));
    rt.block_on(api.put(
        path,
        &json!({"on": true, "fallthrough": {"variation": value}, "offVariation": 0}),
        current["version"].as_u64(),
    ));
}

/// HAProxy, the SDKs and a throwaway PostgreSQL database, or `None` (the test is skipped, with
/// a warning, where one is missing and not required).
fn prerequisites() -> Option<(PathBuf, tokio::runtime::Runtime, crate::postgres::Database)> {
    let haproxy = haproxy()?;
    if !Sdk::available() {
        return None;
    }
    let rt = runtime();
    let database = rt.block_on(crate::postgres::Database::create())?;
    Some((haproxy, rt, database))
}

/// The value after `label` in the credentials a first start printed.
fn printed_field(printed: &str, label: &str) -> String {
    printed
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("{label} in {printed}"))
}

#[test]
fn three_nodes_behind_haproxy_start_together_share_changes_and_survive_a_kill() {
    let Some((haproxy, rt, database)) = prerequisites() else {
        return;
    };
    // The head poll, which would find other nodes' changes within a second, is slowed to half
    // a minute: only PostgreSQL's notifications can carry a change across nodes in the few
    // seconds this test allows.
    let args = [
        "--database-url",
        database.url.as_str(),
        "--events-flush-ms",
        "100",
        "--change-poll-ms",
        "30000",
    ];
    // Three nodes at the same moment on the empty database, as a deployment with replicas
    // starts them: each migrates (serialised by an advisory lock) and finds it uninitialized;
    // one initializes it and prints the credentials, the others find it done.
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let starting: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let dir = dir.path().to_owned();
            let args = args.map(str::to_owned);
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                TestServer::start(binary(), &dir, "127.0.0.1:0", &args)
            })
        })
        .collect();
    let mut nodes: Vec<TestServer> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    // Each node printed before it listened, but the threads keeping their output may not have
    // read it yet: wait until one node's credentials are complete (they end with an empty
    // line), then give the others as long again to show a second initialization.
    let complete = |out: &str| out.contains("admin API token:") && out.ends_with("\n\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().any(|n| complete(&n.stdout())) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let printed: Vec<String> = nodes
        .iter()
        .map(|n| n.stdout_when(complete, Duration::from_millis(300)))
        .collect();
    let credentials: Vec<&String> = printed
        .iter()
        .filter(|out| out.contains("admin API token:"))
        .collect();
    assert_eq!(
        credentials.len(),
        1,
        "exactly one node initialized: {printed:?}"
    );
    let field = |label: &str| printed_field(credentials[0], label);
    let token = field("admin API token:");
    // The first "SDK key:" is default/production's.
    let sdk_key = field("SDK key:");
    let apis: Vec<Api> = nodes.iter().map(|n| Api::new(&n.base(), &token)).collect();

    let values: Vec<Value> = (0..8)
        .map(|i| json!({"value": i, "name": format!("step {i}")}))
        .collect();
    rt.block_on(apis[0].post(
        "/projects/default/flags",
        &json!({"key": "rollout", "name": "Rollout", "kind": "multivariate", "variations": values}),
    ));
    set_rollout(&rt, &apis[0], 0);

    let balancer = LoadBalancer::start(
        &haproxy,
        &nodes.iter().map(|n| n.address.clone()).collect::<Vec<_>>(),
    );
    let base = balancer.base();
    // Three Python and three Node clients, each with its own stream; HAProxy's `leastconn`
    // spreads them over the nodes.
    let mut clients = Clients {
        drivers: vec![Driver::start(Sdk::Python), Driver::start(Sdk::Node)],
        ids: Vec::new(),
        seen: HashMap::new(),
    };
    for i in 0..3 {
        for driver in 0..2 {
            let id = format!("{}-{i}", clients.drivers[driver].sdk.name());
            assert!(
                clients.drivers[driver].open(&id, &sdk_key, &base, true),
                "{id} initializes through HAProxy"
            );
            clients.ids.push((driver, id));
        }
    }
    clients.converge(0, Duration::from_secs(10));
    let per_node: Vec<u64> = nodes.iter().map(|n| streams_on(&rt, n)).collect();
    assert_eq!(per_node.iter().sum::<u64>(), 6, "six streams: {per_node:?}");
    assert!(
        per_node.iter().all(|n| *n >= 1),
        "every node holds SDK streams: {per_node:?}"
    );

    // A change made on each node reaches the SDKs on every node.
    for (i, api) in apis.iter().enumerate() {
        let value = i as i64 + 1;
        set_rollout(&rt, api, value);
        let took = clients.converge(value, Duration::from_secs(5));
        eprintln!("change made on node {i}: every SDK on every node served it after {took:?}");
    }

    // kill -9 a node that SDKs stream from; the change is made on another one.
    let victim = per_node
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(i, _)| i)
        .unwrap();
    nodes[victim].kill_9();
    let survivor = (victim + 1) % 3;
    set_rollout(&rt, &apis[survivor], 4);
    let took = clients.converge(4, Duration::from_secs(30));
    eprintln!("after kill -9 of node {victim}: every SDK served the next change after {took:?}");
    let survivors: u64 = (0..3)
        .filter(|i| *i != victim)
        .map(|i| streams_on(&rt, &nodes[i]))
        .sum();
    assert_eq!(
        survivors, 6,
        "the SDKs streamed again, from the other nodes"
    );
    // And a change after the reconnection arrives over the new streams.
    set_rollout(&rt, &apis[(victim + 2) % 3], 5);
    clients.converge(5, Duration::from_secs(10));
    for (id, seen) in &clients.seen {
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "{id} never went back to an older value: {seen:?}"
        );
    }

    // One analytics payload, retried on every node with the same payload ID: counted once.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let payload = |count: u64| {
        json!([{"kind": "summary", "startDate": now - 1000, "endDate": now,
            "features": {"counted": {"default": 0, "counters": [
                {"variation": 0, "version": 1, "value": 0, "count": count}]}}}])
    };
    rt.block_on(apis[survivor].post(
        "/projects/default/flags",
        &json!({"key": "counted", "name": "Counted", "kind": "multivariate", "variations": [{"value": 0}, {"value": 1}]}),
    ));
    let post = |node: &TestServer, body: &Value, id: &str| {
        let status = rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{}/bulk", node.base()))
                .header("Authorization", &sdk_key)
                .header("X-LaunchDarkly-Event-Schema", "4")
                .header("X-LaunchDarkly-Payload-ID", id)
                .json(body)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, 202);
    };
    let live: Vec<&TestServer> = (0..3).filter(|i| *i != victim).map(|i| &nodes[i]).collect();
    for node in &live {
        post(node, &payload(7), "payload-one");
    }
    post(live[1], &payload(5), "payload-two");
    let insights = "/projects/default/flags/counted/insights?environment=production&range=1h";
    let total = eventually(Duration::from_secs(15), || {
        let found = rt.block_on(apis[survivor].get(insights));
        (found["total"] == json!(12)).then_some(found)
    });
    assert!(
        total.is_some(),
        "7 + 5 evaluations, the retried payload counted once: {}",
        rt.block_on(apis[survivor].get(insights))
    );
    // Both writers have flushed by now many times over: still 12, not 19.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rt.block_on(apis[survivor].get(insights))["total"],
        json!(12)
    );

    drop(clients);
    drop(balancer);
    drop(nodes);
    rt.block_on(database.drop_it());
}

/// A TCP proxy between a node and PostgreSQL that the test can cut and heal: a network
/// partition of one node, without touching the others.
struct Partition {
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    address: String,
}

impl Partition {
    async fn start(upstream: String) -> Partition {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accepting, tasks) = (open.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // Dropped: the node cannot reach the database.
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        Partition {
            open,
            connections,
            address,
        }
    }

    /// Cuts every connection through the proxy and refuses new ones.
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `GET path` on a node with the SDK key: the status.
fn sdk_status(rt: &tokio::runtime::Runtime, node: &TestServer, path: &str, sdk_key: &str) -> u16 {
    rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}{path}", node.base()))
            .header("Authorization", sdk_key)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    })
}

#[test]
fn a_node_cut_off_from_postgres_stops_serving_and_haproxy_moves_its_sdks() {
    let Some((haproxy, rt, database)) = prerequisites() else {
        return;
    };
    // Node B reaches PostgreSQL only through a proxy the test can cut.
    let (head, name) = database.url.rsplit_once('/').unwrap();
    let (scheme, upstream) = head.rsplit_once('@').unwrap();
    let partition = rt.block_on(Partition::start(upstream.to_owned()));
    let b_url = format!("{scheme}@{}/{name}", partition.address);
    let args = |url: &str| {
        [
            "--database-url",
            url,
            "--events-flush-ms",
            "100",
            "--change-poll-ms",
            "200",
            "--stale-after-ms",
            "1500",
        ]
        .map(str::to_owned)
    };
    let start = |url: &str| {
        let dir = tempfile::tempdir().unwrap();
        let args = args(url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &args);
        (node, dir)
    };
    let (a, _a_dir) = start(&database.url);
    let printed = a.stdout_when(|out| out.ends_with("\n\n"), Duration::from_secs(10));
    let field = |label: &str| printed_field(&printed, label);
    let (token, sdk_key) = (field("admin API token:"), field("SDK key:"));
    let (b, _b_dir) = start(&b_url);
    let api = Api::new(&a.base(), &token);
    let values: Vec<Value> = (0..4).map(|i| json!({"value": i})).collect();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "rollout", "name": "Rollout", "kind": "multivariate", "variations": values}),
    ));
    set_rollout(&rt, &api, 0);

    let balancer = LoadBalancer::start(&haproxy, &[a.address.clone(), b.address.clone()]);
    let mut clients = Clients {
        drivers: vec![Driver::start(Sdk::Python), Driver::start(Sdk::Node)],
        ids: Vec::new(),
        seen: HashMap::new(),
    };
    for i in 0..2 {
        for driver in 0..2 {
            let id = format!("{}-{i}", clients.drivers[driver].sdk.name());
            assert!(
                clients.drivers[driver].open(&id, &sdk_key, &balancer.base(), true),
                "{id} initializes through HAProxy"
            );
            clients.ids.push((driver, id));
        }
    }
    clients.converge(0, Duration::from_secs(10));
    assert!(streams_on(&rt, &b) >= 1, "node B holds SDK streams");
    assert_eq!(sdk_status(&rt, &b, "/sdk/latest-all", &sdk_key), 200);

    // The partition: B keeps running but cannot reach the database.
    partition.cut();
    let refused = eventually(Duration::from_secs(15), || {
        (sdk_status(&rt, &b, "/ready", "") == 503).then_some(())
    });
    assert!(refused.is_some(), "node B says it is not ready");
    // Within the staleness bound (1.5 s here) of its last read of the change feed.
    let stale = eventually(Duration::from_secs(15), || {
        (sdk_status(&rt, &b, "/sdk/latest-all", &sdk_key) == 503).then_some(())
    });
    assert!(
        stale.is_some(),
        "node B no longer serves what it last knew as current"
    );
    let ended = eventually(Duration::from_secs(5), || {
        (streams_on(&rt, &b) == 0).then_some(())
    });
    assert!(ended.is_some(), "node B ended its streams");
    // A change made meanwhile reaches every SDK: HAProxy sent B's to A.
    set_rollout(&rt, &api, 1);
    let took = clients.converge(1, Duration::from_secs(30));
    eprintln!("partitioned node B: every SDK served the change after {took:?}");
    assert_eq!(streams_on(&rt, &a), 4, "every SDK streams from node A");

    // The way back: B catches up, then serves again.
    partition.heal();
    let back = eventually(Duration::from_secs(30), || {
        (sdk_status(&rt, &b, "/ready", "") == 200).then_some(())
    });
    assert!(
        back.is_some(),
        "node B is ready again once it reaches the database"
    );
    let latest = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/sdk/latest-all", b.base()))
            .header("Authorization", &sdk_key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    assert_eq!(
        latest["flags"]["rollout"]["fallthrough"]["variation"],
        json!(1),
        "node B serves the change made while it was cut off"
    );
    set_rollout(&rt, &api, 2);
    clients.converge(2, Duration::from_secs(10));
    for (id, seen) in &clients.seen {
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "{id} never went back to an older value: {seen:?}"
        );
    }
    drop(clients);
    drop(balancer);
    drop((a, b));
    rt.block_on(database.drop_it());
}
