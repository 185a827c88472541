//! Migration flags end to end: a flag created with `"kind": "migration"` is served so that
//! LaunchDarkly's Python SDK `MigratorBuilder` moves reads and writes between two systems stage
//! by stage exactly as its documentation says, and the `migration_op` events it sends become
//! the migration insights of the flag (`ld-protocol.md` §2.2 `migration`, §6.4).

use std::path::Path;
use std::time::{Duration, Instant};

use flagstaff_testkit::sdk::{Driver, Sdk};
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

const FLAG: &str = "orders-db";
const TARGETING: &str = "/projects/default/environments/production/flags/orders-db";

/// Serves `stage` (its index among the six) to everyone in production, and waits until the
/// SDK's streamed data says so.
fn move_to(rt: &tokio::runtime::Runtime, api: &Api, driver: &mut Driver, stage: usize) {
    let current = rt.block_on(api.get(TARGETING));
    rt.block_on(api.put(
        TARGETING,
        &json!({"on": true, "offVariation": 0, "fallthrough": {"variation": stage}}),
        current["version"].as_u64(),
    ));
    let context = json!({"kind": "user", "key": "probe"});
    let start = Instant::now();
    loop {
        let seen = driver.value("c", FLAG, &context, &json!("off"));
        if seen == json!(flagstaff_protocol::MIGRATION_STAGES[stage]) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the SDK still sees {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn migrate(driver: &mut Driver, operations: Value, new_fails: &[&str]) -> Value {
    driver.send(&json!({"cmd": "migrate", "id": "c", "flagKey": FLAG,
        "context": {"kind": "user", "key": "worker-1"}, "defaultStage": "off",
        "newFails": new_fails, "operations": operations}))
}

fn origins(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r.get("other") {
            Some(other) => format!("{}+{}", r["origin"], other["origin"]).replace('"', ""),
            None => r["origin"].as_str().unwrap().to_owned(),
        })
        .collect()
}

fn row<'a>(rows: &'a [Value], operation: &str, stage: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["operation"] == operation && r["stage"] == stage)
        .unwrap_or_else(|| panic!("no {operation} row at {stage} in {rows:?}"))
}

#[test]
fn the_python_sdk_migrator_moves_through_the_six_stages_and_its_events_become_insights() {
    assert!(
        Sdk::available(),
        "the SDK clients are installed by sdk-clients/install"
    );
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(
        binary(),
        dir.path(),
        "127.0.0.1:0",
        &["--sdk-heartbeat-seconds", "1", "--events-flush-ms", "100"],
    );
    let base = server.base();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(&base, &credentials.admin_token);
    let created = rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": FLAG, "name": "Orders database", "kind": "migration",
            "migration": {"checkRatio": 1}}),
    ));
    let values: Vec<&str> = created["variations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, flagstaff_protocol::MIGRATION_STAGES);
    // What server SDKs receive marks it as a migration flag (spec §2.2).
    let (_, data) = rt.block_on(crate::dashboard_product::sdk_data(
        &base,
        &credentials.sdk_key,
    ));
    assert_eq!(data["flags"][FLAG]["migration"], json!({"checkRatio": 1}));

    let mut driver = Driver::start(Sdk::Python);
    assert!(driver.open("c", &credentials.sdk_key, &base, true));
    // Off (a new flag is off and serves `off`): the old system only.
    let off = migrate(
        &mut driver,
        json!([{"op": "write", "key": "a", "value": 1}, {"op": "read", "key": "a"}]),
        &[],
    );
    assert_eq!(origins(&off), ["old", "old"]);
    assert_eq!((&off["old"], &off["new"]), (&json!({"a": 1}), &json!({})));

    move_to(&rt, &api, &mut driver, 1);
    let dualwrite = migrate(
        &mut driver,
        json!([{"op": "write", "key": "b", "value": 2}, {"op": "read", "key": "b"}]),
        &[],
    );
    assert_eq!(origins(&dualwrite), ["old+new", "old"]);
    assert_eq!(dualwrite["new"], json!({"b": 2}));

    // Shadow: reads go to both and are compared. "a" was written before dual writes began,
    // so the new system does not have it (inconsistent); "b" agrees; on "c" the new system
    // fails, which is an error and no comparison.
    move_to(&rt, &api, &mut driver, 2);
    let shadow = migrate(
        &mut driver,
        json!([{"op": "read", "key": "a"}, {"op": "read", "key": "b"}, {"op": "read", "key": "c"}]),
        &["c"],
    );
    assert_eq!(origins(&shadow), ["old", "old", "old"]);
    assert_eq!(shadow["results"][0]["value"], json!(1));

    move_to(&rt, &api, &mut driver, 3);
    let live = migrate(
        &mut driver,
        json!([{"op": "write", "key": "d", "value": 4}, {"op": "read", "key": "b"}]),
        &[],
    );
    assert_eq!(origins(&live), ["new+old", "new"]);

    move_to(&rt, &api, &mut driver, 4);
    let rampdown = migrate(&mut driver, json!([{"op": "read", "key": "d"}]), &[]);
    assert_eq!(origins(&rampdown), ["new"]);

    move_to(&rt, &api, &mut driver, 5);
    let complete = migrate(
        &mut driver,
        json!([{"op": "write", "key": "e", "value": 5}, {"op": "read", "key": "e"}]),
        &[],
    );
    assert_eq!(origins(&complete), ["new", "new"]);
    assert!(complete["old"].get("e").is_none());
    driver.flush("c");

    let path = format!("/projects/default/flags/{FLAG}/migration-insights?environment=production");
    let start = Instant::now();
    let insights = loop {
        let insights = rt.block_on(api.get(&path));
        let operations: u64 = insights["totals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["operations"].as_u64().unwrap())
            .sum();
        if operations >= 12 {
            break insights;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "insights so far: {insights}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(insights["stage"], "complete");
    assert_eq!(insights["checkRatio"], 1);
    let totals = insights["totals"].as_array().unwrap();
    // Twelve operations, each counted once under the stage it ran at.
    let expected = [
        ("write", "off", 1),
        ("read", "off", 1),
        ("write", "dualwrite", 1),
        ("read", "dualwrite", 1),
        ("read", "shadow", 3),
        ("write", "live", 1),
        ("read", "live", 1),
        ("read", "rampdown", 1),
        ("write", "complete", 1),
        ("read", "complete", 1),
    ];
    for (operation, stage, count) in expected {
        assert_eq!(
            row(totals, operation, stage)["operations"],
            count,
            "{operation} at {stage}"
        );
    }
    assert_eq!(totals.len(), expected.len(), "{totals:?}");
    let shadow = row(totals, "read", "shadow");
    assert_eq!(shadow["consistencyChecks"], 2);
    assert_eq!(shadow["inconsistent"], 1);
    assert_eq!(shadow["consistencyRate"], 0.5);
    assert_eq!(
        (&shadow["old"]["invoked"], &shadow["new"]["invoked"]),
        (&json!(3), &json!(3))
    );
    assert_eq!(
        (&shadow["old"]["errors"], &shadow["new"]["errors"]),
        (&json!(0), &json!(1))
    );
    assert!(
        shadow["new"]["meanLatencyMs"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0)
    );
    assert!(shadow["old"]["maxLatencyMs"].as_f64().is_some());
    // A dual write invoked both; a read in rampdown only the new system.
    let dualwrite = row(totals, "write", "dualwrite");
    assert_eq!(
        (&dualwrite["old"]["invoked"], &dualwrite["new"]["invoked"]),
        (&json!(1), &json!(1))
    );
    let rampdown = row(totals, "read", "rampdown");
    assert_eq!(
        (&rampdown["old"]["invoked"], &rampdown["new"]["invoked"]),
        (&json!(0), &json!(1))
    );
    assert!(
        insights["series"].as_array().unwrap().len() >= expected.len(),
        "every row also appears in its bucket"
    );
    driver.close("c");

    // The dashboard: a reader sees the same numbers on the flag's insights page; a writer
    // creates a migration flag with the create form.
    rt.block_on(async {
        let mut reader =
            crate::dashboard_product::signed_in(&api, &base, "rita@example.com", "reader").await;
        let page = reader
            .get(&format!(
                "/projects/default/flags/{FLAG}/insights?env=production"
            ))
            .await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("complete for everyone"), "{}", page.body);
        let shadow_line = page
            .body
            .split("<tr ")
            .find(|line| line.contains(r#"data-operation="read" data-stage="shadow""#))
            .expect("a line for reads in shadow");
        assert!(
            shadow_line.contains("50.0 % consistent (1 of 2 differed)"),
            "{shadow_line}"
        );
        assert!(shadow_line.contains("1 of 3 (33.3 %)"), "{shadow_line}");
        assert!(shadow_line.contains(r#"class="attention""#));
        let mut writer =
            crate::dashboard_product::signed_in(&api, &base, "wes@example.com", "writer").await;
        let form = writer.get("/projects/default/flags-new").await;
        let csrf = crate::dashboard::csrf_of(&form.body);
        let made = writer
            .form(
                "/projects/default/flags",
                &[
                    ("csrf", csrf.as_str()),
                    ("name", "Search index"),
                    ("key", "search-index"),
                    ("kind", "migration"),
                    ("value_type", "string"),
                    ("variations", ""),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        let definition = api.get("/projects/default/flags/search-index").await;
        assert_eq!(definition["kind"], "migration");
        assert_eq!(definition["variations"][3]["value"], "live");
        let refused = writer
            .form(
                "/projects/default/flags",
                &[
                    ("csrf", csrf.as_str()),
                    ("name", "Cache"),
                    ("key", "cache"),
                    ("kind", "migration"),
                    ("browsers", "on"),
                ],
            )
            .await;
        assert!(
            refused.body.contains("server-side SDKs only"),
            "{}",
            refused.body
        );
    });

    // Browsers have no migrators: the same events sent with the public client-side ID are
    // accepted (SDKs must never be refused) but not counted, so nobody can write a migration's
    // numbers from a web page.
    let env = rt.block_on(api.get("/projects/default/environments/production"));
    let client_side_id = env["clientSideId"].as_str().unwrap().to_owned();
    let forged: Vec<Value> = (0..50)
        .map(|_| {
            json!({"kind": "migration_op", "creationDate": 1, "operation": "read",
                "contextKeys": {"user": "x"}, "evaluation": {"key": FLAG, "value": "shadow"},
                "measurements": [{"key": "consistent", "value": false}]})
        })
        .collect();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/events/bulk/{client_side_id}"))
            .header("Content-Type", "application/json")
            .body(Value::Array(forged).to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 202);
    let health_before = rt.block_on(api.get("/events/health"))["writtenEvents"].clone();
    let start = Instant::now();
    while rt.block_on(api.get("/events/health"))["writtenEvents"] == health_before
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = rt.block_on(api.get(&path));
    assert_eq!(
        row(after["totals"].as_array().unwrap(), "read", "shadow")["consistencyChecks"],
        2,
        "browser-sent migration_op events are not counted"
    );

    // Attacks and mistakes: another environment has nothing; a boolean flag is not a
    // migration flag; the environment is required; no token, no insights.
    let test_env = rt.block_on(api.get(&format!(
        "/projects/default/flags/{FLAG}/migration-insights?environment=test&range=7d"
    )));
    assert_eq!(test_env["totals"], json!([]));
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "plain", "name": "Plain"}),
    ));
    let (status, body) = rt.block_on(api.call(
        reqwest::Method::GET,
        "/projects/default/flags/plain/migration-insights?environment=production",
        None,
        None,
    ));
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("not_a_migration_flag"))
    );
    let (status, body) = rt.block_on(api.call(
        reqwest::Method::GET,
        &path.replace("?environment=production", ""),
        None,
        None,
    ));
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("missing_environment"))
    );
    let (status, body) = rt.block_on(api.call(
        reqwest::Method::GET,
        &format!("{path}&range=1y"),
        None,
        None,
    ));
    assert_eq!((status, body["field"].as_str()), (400, Some("range")));
    let anonymous = Api::new(&base, "not-a-token");
    let (status, _) = rt.block_on(anonymous.call(reqwest::Method::GET, &path, None, None));
    assert_eq!(status, 401);
}
