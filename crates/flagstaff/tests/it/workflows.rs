//! Release workflows in real processes: a schedule reaching LaunchDarkly's Python SDK on time,
//! a schedule across a stop and start, two nodes on one PostgreSQL executing a schedule once,
//! and schedules, change requests and webhook deliveries surviving `kill -9`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flagstaff_testkit::sdk::{Driver, Sdk};
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The audit entries whose actor is a schedule.
async fn schedule_entries(api: &Api) -> Vec<Value> {
    let page = api.get("/audit?kind=targeting&limit=1000").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("schedule:"))
        })
        .cloned()
        .collect()
}

async fn schedule_in(api: &Api, environment: &str, flag: &str, at: i64) -> String {
    let made = api
        .post(
            &format!("/projects/default/environments/{environment}/flags/{flag}/scheduled-changes"),
            &json!({"executionDate": at, "comment": "launch", "instructions": [
                {"kind": "turnFlagOn"},
                {"kind": "updateFallthroughVariationOrRollout", "variation": 0}]}),
        )
        .await;
    made["id"].as_str().unwrap().to_owned()
}

async fn wait_executed(api: &Api, environment: &str, id: &str, within: Duration) -> Value {
    flagstaff_testkit::eventually(within, "the schedule executes", || async {
        let (status, body) = api
            .call(
                reqwest::Method::GET,
                &format!("/projects/default/environments/{environment}/scheduled-changes/{id}"),
                None,
                None,
            )
            .await;
        (status == 200 && body["status"] == "executed").then_some(body)
    })
    .await
}

#[test]
fn a_flag_scheduled_three_seconds_ahead_is_on_in_the_python_sdk_within_a_second() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let api = Api::new(&server.base(), &credentials.admin_token);
    let rt = runtime();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "launch", "name": "Launch"}),
    ));
    let mut python = Driver::start(Sdk::Python);
    assert!(python.open("launch", &credentials.sdk_key, &server.base(), true));
    let alice = json!({"kind": "user", "key": "alice"});
    assert_eq!(
        python.value("launch", "launch", &alice, &json!("default")),
        json!(false)
    );
    let at = now_ms() + 3000;
    rt.block_on(schedule_in(&api, "production", "launch", at));
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        if python.value("launch", "launch", &alice, &json!("default")) == json!(true) {
            break now_ms();
        }
        assert!(
            Instant::now() < deadline,
            "the SDK never saw the scheduled change"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let after = seen - at;
    eprintln!("the Python SDK saw the scheduled change {after} ms after its moment");
    assert!(
        (0..1000).contains(&after),
        "seen {after} ms after the moment"
    );
}

#[test]
fn an_approved_request_and_a_trigger_reach_the_python_sdk() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let api = Api::new(&server.base(), &credentials.admin_token);
    let rt = runtime();
    let flag = "/projects/default/environments/production/flags/launch";
    let writer = rt.block_on(async {
        api.post(
            "/projects/default/flags",
            &json!({"key": "launch", "name": "Launch"}),
        )
        .await;
        let env = api.get("/projects/default/environments/production").await;
        api.put(
            "/projects/default/environments/production",
            &json!({"name": env["name"], "approvals": {"required": true}}),
            env["version"].as_u64(),
        )
        .await;
        let token = api
            .post("/tokens", &json!({"name": "ada", "role": "writer"}))
            .await;
        Api::new(&server.base(), token["secret"].as_str().unwrap())
    });
    let mut python = Driver::start(Sdk::Python);
    assert!(python.open("approvals", &credentials.sdk_key, &server.base(), true));
    let alice = json!({"kind": "user", "key": "alice"});
    let value =
        |python: &mut Driver| python.value("approvals", "launch", &alice, &json!("default"));
    assert_eq!(value(&mut python), json!(false));
    let turn_on = json!({"instructions": [{"kind": "turnFlagOn"},
        {"kind": "updateFallthroughVariationOrRollout", "variation": 0}]});
    // A direct production write is refused; a request approved by another applies.
    let (status, refused) = rt.block_on(api.call(
        reqwest::Method::PUT,
        flag,
        Some(&json!({"on": true, "fallthrough": {"variation": 0}})),
        Some(1),
    ));
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("approval_required"))
    );
    let request = rt.block_on(writer.post(
        "/projects/default/environments/production/change-requests",
        &json!({"flag": "launch", "instructions": turn_on["instructions"], "comment": "go"}),
    ));
    let id = request["id"].as_str().unwrap();
    let (own, _) = rt.block_on(writer.call(
        reqwest::Method::POST,
        &format!("/change-requests/{id}/reviews"),
        Some(&json!({"kind": "approve"})),
        None,
    ));
    assert_eq!(own, 403);
    rt.block_on(api.post(
        &format!("/change-requests/{id}/reviews"),
        &json!({"kind": "approve"}),
    ));
    rt.block_on(api.post(&format!("/change-requests/{id}/apply"), &json!({})));
    assert!(
        eventually_true(|| value(&mut python) == json!(true)),
        "the SDK sees the applied request"
    );
    // A monitoring tool's call to the trigger URL turns it off, with no other credential.
    let trigger = rt.block_on(api.post(
        "/projects/default/flags/launch/environments/production/triggers",
        &json!({"action": "turnFlagOff"}),
    ));
    let url = format!(
        "{}{}",
        server.base(),
        trigger["triggerUrl"].as_str().unwrap()
    );
    let client = reqwest::Client::new();
    let fired = rt.block_on(client.post(&url).body("{}").send()).unwrap();
    assert_eq!(fired.status(), 200);
    assert!(
        eventually_true(|| value(&mut python) == json!(false)),
        "the SDK sees the trigger's kill switch"
    );
    let (deleted, _) = rt.block_on(api.call(
        reqwest::Method::DELETE,
        &format!(
            "/projects/default/flags/launch/environments/production/triggers/{}",
            trigger["id"].as_str().unwrap()
        ),
        None,
        None,
    ));
    assert_eq!(deleted, 204);
    let revoked = rt.block_on(client.post(&url).send()).unwrap();
    assert_eq!(revoked.status(), 404);
}

fn eventually_true(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_schedule_across_a_stop_and_start_runs_once_at_start_recorded_as_late() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let mut server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let api = Api::new(&server.base(), &credentials.admin_token);
    let rt = runtime();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "launch", "name": "Launch"}),
    ));
    let at = now_ms() + 1500;
    let id = rt.block_on(schedule_in(&api, "test", "launch", at));
    server.stop();
    std::thread::sleep(Duration::from_millis(
        u64::try_from(at - now_ms() + 1500).unwrap_or(0),
    ));
    server.restart();
    let done = rt.block_on(wait_executed(&api, "test", &id, Duration::from_secs(10)));
    assert!(done["lateByMs"].as_i64().unwrap() >= 1000, "{done}");
    // Once: another restart does not run it again.
    server.stop();
    server.restart();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rt.block_on(schedule_entries(&api)).len(), 1);
    let flag = rt.block_on(api.get("/projects/default/environments/test/flags/launch"));
    assert_eq!(flag["on"], true);
}

/// A webhook receiver on 127.0.0.1 that answers 500 until told otherwise, and records every
/// delivery id with the status it answered.
async fn receiver(accept: Arc<AtomicBool>) -> (String, Arc<std::sync::Mutex<Vec<(String, u16)>>>) {
    let seen: Arc<std::sync::Mutex<Vec<(String, u16)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let handler = move |headers: axum::http::HeaderMap| {
        let (log, accept) = (Arc::clone(&log), Arc::clone(&accept));
        async move {
            let status = if accept.load(Ordering::SeqCst) {
                200
            } else {
                500
            };
            let id = headers
                .get("x-flagstaff-delivery")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            log.lock().unwrap().push((id, status));
            axum::http::StatusCode::from_u16(status).unwrap()
        }
    };
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

#[test]
fn schedules_requests_and_webhook_deliveries_survive_kill_9_and_happen_once() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let mut server = TestServer::start(
        binary(),
        dir.path(),
        "127.0.0.1:0",
        &["--webhooks-allow-private"],
    );
    let api = Api::new(&server.base(), &credentials.admin_token);
    let rt = runtime();
    let accept = Arc::new(AtomicBool::new(false));
    let (url, seen) = rt.block_on(receiver(Arc::clone(&accept)));
    rt.block_on(api.post(
        "/webhooks",
        &json!({"url": url, "statements": [
        {"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/test:flag/*"]}]}),
    ));
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "launch", "name": "Launch"}),
    ));
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "other", "name": "Other"}),
    ));
    let at = now_ms() + 4000;
    let id = rt.block_on(schedule_in(&api, "test", "launch", at));
    let request = rt.block_on(api.post(
        "/projects/default/environments/production/change-requests",
        &json!({"flag": "other", "instructions": [{"kind": "turnFlagOn"}], "comment": "please"}),
    ));
    let request_id = request["id"].as_str().unwrap().to_owned();
    // A change the webhook selects; its receiver fails it for now.
    let current = rt.block_on(api.get("/projects/default/environments/test/flags/other"));
    rt.block_on(api.put(
        "/projects/default/environments/test/flags/other",
        &json!({"on": true, "fallthrough": {"variation": 0}}),
        current["version"].as_u64(),
    ));
    flagstaff_testkit_wait(
        || !seen.lock().unwrap().is_empty(),
        "a first (failed) delivery attempt",
    );
    // kill -9, then start again before the schedule's moment.
    std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .unwrap();
    server.restart();
    accept.store(true, Ordering::SeqCst);
    let done = rt.block_on(wait_executed(&api, "test", &id, Duration::from_secs(15)));
    assert_eq!(done["status"], "executed");
    let still = rt.block_on(api.get(&format!("/change-requests/{request_id}")));
    assert_eq!(still["status"], "pending");
    // The delivery pending at the kill is delivered after it, with the same id, and every
    // delivery is accepted exactly once. When the kill came after the receiver answered but
    // before the node recorded the attempt, the delivery is still claimed: it is sent again
    // only when its lease (three attempt timeouts, 30 s) runs out, so this wait is longer.
    flagstaff_testkit_wait_for(
        Duration::from_secs(45),
        || {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| *s == 200)
                .count()
                >= 2
        },
        "both selected changes delivered (the targeting change and the schedule's)",
    );
    std::thread::sleep(Duration::from_secs(2));
    let seen = seen.lock().unwrap().clone();
    let mut accepted: Vec<&String> = seen
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(i, _)| i)
        .collect();
    let first_failed = &seen[0].0;
    assert!(
        accepted.contains(&first_failed),
        "the failed delivery was retried after kill -9: {seen:?}"
    );
    let total = accepted.len();
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), total, "a delivery accepted twice: {seen:?}");
    assert_eq!(rt.block_on(schedule_entries(&api)).len(), 1);
}

fn flagstaff_testkit_wait(check: impl FnMut() -> bool, what: &str) {
    flagstaff_testkit_wait_for(Duration::from_secs(20), check, what);
}

fn flagstaff_testkit_wait_for(within: Duration, mut check: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_nodes_on_one_postgres_execute_a_schedule_exactly_once() {
    let rt = runtime();
    let Some(database) = rt.block_on(crate::postgres::Database::create()) else {
        return;
    };
    let output = std::process::Command::new(binary())
        .args(["admin", "init", "--json", "--database-url", &database.url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let init: Value = serde_json::from_slice(&output.stdout).unwrap();
    let token = init["adminToken"].as_str().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--database-url", database.url.as_str()];
    let a = TestServer::start(binary(), dir_a.path(), "127.0.0.1:0", &args);
    let b = TestServer::start(binary(), dir_b.path(), "127.0.0.1:0", &args);
    let (api_a, api_b) = (Api::new(&a.base(), token), Api::new(&b.base(), token));
    rt.block_on(api_a.post(
        "/projects/default/flags",
        &json!({"key": "launch", "name": "Launch"}),
    ));
    // Several schedules at the same moment, made on both nodes.
    let at = now_ms() + 2500;
    let mut ids = Vec::new();
    for (i, api) in [&api_a, &api_b, &api_a, &api_b].into_iter().enumerate() {
        let made = rt.block_on(api.post(
            "/projects/default/environments/test/flags/launch/scheduled-changes",
            &json!({"executionDate": at, "instructions": [{"kind": "addTargets", "variation": 0, "values": [format!("user-{i}")]}]}),
        ));
        ids.push(made["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        rt.block_on(wait_executed(&api_b, "test", id, Duration::from_secs(15)));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let entries = rt.block_on(schedule_entries(&api_a));
    assert_eq!(
        entries.len(),
        ids.len(),
        "one audit entry per schedule: {entries:?}"
    );
    let flag = rt.block_on(api_b.get("/projects/default/environments/test/flags/launch"));
    assert_eq!(flag["targets"][0]["values"].as_array().unwrap().len(), 4);
    drop((a, b));
    rt.block_on(database.drop_it());
}
