//! The real LaunchDarkly SDKs (Python from PyPI, Node from npm) against `flagstaff serve` on a
//! random port: every conformance vector's data loaded through the management API and
//! evaluated by both SDKs in streaming and in polling mode; live changes, deletion, restart and
//! reconnection, and key revocation.

use std::path::Path;
use std::time::{Duration, Instant};

use flagstaff_eval::{Snapshot, ValueType};
use flagstaff_protocol::FlagData;
use flagstaff_testkit::conformance::{self, Evaluation, Variant};
use flagstaff_testkit::json_equal;
use flagstaff_testkit::sdk::{Driver, Sdk};
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::{Value, json};

pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh server with fast heartbeats; returns it, its admin API client and the production
/// SDK key.
pub(crate) fn fresh_server(dir: &Path) -> (TestServer, Api, String) {
    fresh_server_with(dir, &[])
}

/// [`fresh_server`] with more command-line arguments.
pub(crate) fn fresh_server_with(dir: &Path, extra_args: &[&str]) -> (TestServer, Api, String) {
    let credentials = server::init(binary(), dir);
    let mut args = vec!["--sdk-heartbeat-seconds", "1", "--change-poll-ms", "200"];
    args.extend_from_slice(extra_args);
    let server = TestServer::start(binary(), dir, "127.0.0.1:0", &args);
    let api = Api::new(&server.base(), &credentials.admin_token);
    (server, api, credentials.sdk_key)
}

/// What a refused import looked like.
struct Refusal {
    what: String,
    status: u16,
    answer: Value,
}

/// Loads one conformance variant into project `project`, environment `test`, through the
/// management API's LaunchDarkly import (as a team migrating from LaunchDarkly would, keeping
/// salts and rule ids). Returns the environment's SDK key, or what the API refused.
async fn import(api: &Api, project: &str, data: &Value) -> Result<String, Refusal> {
    // A project with one environment, `test` (not the default `production` and `test`).
    let made = api
        .post(
            "/projects",
            &json!({"key": project, "name": project,
                "environments": [{"key": "test", "name": "Test"}]}),
        )
        .await;
    let sdk_key = made["environments"][0]["keys"]["sdkKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, answer) = api
        .call(
            reqwest::Method::POST,
            &format!("/projects/{project}/environments/test/import"),
            Some(data),
            None,
        )
        .await;
    if status != 200 {
        return Err(Refusal {
            what: "import".into(),
            status,
            answer,
        });
    }
    let flags = data["flags"].as_object().map_or(0, |f| f.len());
    assert_eq!(answer["flags"], json!(flags), "import summary {answer}");
    Ok(sdk_key)
}

/// The data an environment's SDKs receive, read the way a polling SDK reads it.
async fn served_data(base: &str, sdk_key: &str) -> FlagData {
    let body = reqwest::Client::new()
        .get(format!("{base}/sdk/latest-all"))
        .header("Authorization", sdk_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    FlagData::from_json_str(&body).unwrap()
}

/// The value type an SDK's evaluation method applies: Python has only the untyped
/// `variation_detail`; Node has typed methods, with one method for all numbers.
fn applied_type(sdk: Sdk, evaluation: &Evaluation) -> ValueType {
    match (sdk, evaluation.value_type) {
        (Sdk::Python, _) => ValueType::Any,
        (Sdk::Node, ValueType::Int) => ValueType::Double,
        (Sdk::Node, other) => other,
    }
}

/// The Python SDK (since 9.0) no longer reads old-style user objects (no `kind`): an
/// application upgrading to it writes the same user as a `user` context. This is that
/// rewrite (`ld-protocol.md` §2.7): built-in and custom attributes become top-level
/// attributes and `privateAttributeNames` becomes `_meta.privateAttributes`. The legacy
/// `secondary` key has no context equivalent and is dropped, as the SDK drops it.
fn as_python_context(context: &Value) -> Value {
    let Some(user) = context.as_object().filter(|c| !c.contains_key("kind")) else {
        return context.clone();
    };
    let mut out = serde_json::Map::new();
    out.insert("kind".into(), json!("user"));
    for (name, value) in user {
        match name.as_str() {
            "custom" => {
                if let Some(custom) = value.as_object() {
                    for (k, v) in custom {
                        out.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            "privateAttributeNames" => {
                out.insert("_meta".into(), json!({"privateAttributes": value}));
            }
            "secondary" => {}
            _ if value.is_null() => {}
            _ => {
                out.insert(name.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// The evaluation as one SDK receives it.
fn for_sdk(sdk: Sdk, evaluation: &Evaluation) -> Evaluation {
    let mut evaluation = evaluation.clone();
    if sdk == Sdk::Python {
        evaluation.context = as_python_context(&evaluation.context);
    }
    evaluation
}

fn request(evaluation: &Evaluation) -> Value {
    json!({"flagKey": evaluation.flag_key, "context": evaluation.context,
        "default": evaluation.default, "valueType": evaluation.value_type_name()})
}

/// A loaded variant: its project, its environment's SDK key and the snapshot of what Flagstaff
/// serves.
pub(crate) struct Loaded<'a> {
    pub project: String,
    pub variant: &'a Variant,
    pub sdk_key: String,
    pub data: FlagData,
    pub snapshot: Snapshot,
}

/// How an SDK gets its flags.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode<'a> {
    Streaming,
    Polling,
    /// The SDK's FDv2 data system, in this configuration (`default`, `streaming`, `polling`).
    Fdv2(&'static str),
    /// Daemon mode: from LaunchDarkly's Redis store layout at this URL, each environment under
    /// the prefix this template gives for its project (`{project}`; the environment is `test`).
    Daemon {
        redis_url: &'a str,
        prefix: &'a str,
    },
}

impl Mode<'_> {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Streaming => "streaming",
            Mode::Polling => "polling",
            Mode::Fdv2("default") => "FDv2 default",
            Mode::Fdv2("streaming") => "FDv2 streaming",
            Mode::Fdv2(_) => "FDv2 polling",
            Mode::Daemon { .. } => "daemon mode with Redis",
        }
    }
}

/// Evaluates every loaded variant through one SDK in one mode; returns (evaluations, failures).
pub(crate) fn run_sdk(
    sdk: Sdk,
    base: &str,
    mode: Mode<'_>,
    loaded: &[Loaded<'_>],
) -> (usize, Vec<String>) {
    let mut driver = Driver::start(sdk);
    let mut count = 0;
    let mut failures = Vec::new();
    for (i, item) in loaded.iter().enumerate() {
        let id = format!("c{i}");
        let initialized = match mode {
            Mode::Streaming => driver.open(&id, &item.sdk_key, base, true),
            Mode::Polling => driver.open(&id, &item.sdk_key, base, false),
            Mode::Fdv2(data_system) => driver.open_fdv2(&id, &item.sdk_key, base, data_system),
            Mode::Daemon { redis_url, prefix } => {
                let prefix = prefix
                    .replace("{project}", &item.project)
                    .replace("{environment}", "test");
                driver.open_daemon(&id, &item.sdk_key, base, redis_url, &prefix, 60.0)
            }
        };
        let mode = mode.name();
        assert!(
            initialized,
            "{} ({mode}) did not initialize for {} {}",
            sdk.name(),
            item.variant.file,
            item.variant.label
        );
        let evaluations: Vec<Evaluation> = item
            .variant
            .evaluations
            .iter()
            .map(|e| for_sdk(sdk, e))
            .collect();
        let requests: Vec<Value> = evaluations.iter().map(request).collect();
        let results = driver.evaluate(&id, &requests);
        driver.close(&id);
        for (evaluation, got) in evaluations.iter().zip(&results) {
            count += 1;
            let (value, index, reason) =
                conformance::evaluate(&item.snapshot, evaluation, applied_type(sdk, evaluation));
            let same = json_equal(&got["value"], &value)
                && got["variationIndex"] == index
                && json_equal(&got["reason"], &reason);
            if !same {
                failures.push(format!(
                    "{} ({mode}) {} / {} / {}:\n    flagstaff-eval value {value} index {index} reason {reason}\n    sdk            value {} index {} reason {}",
                    sdk.name(),
                    item.variant.file,
                    item.variant.label,
                    evaluation.name,
                    got["value"],
                    got["variationIndex"],
                    got["reason"]
                ));
            }
        }
    }
    if matches!(mode, Mode::Fdv2(_)) {
        // An SDK that fell back to FDv1 would still evaluate correctly; its log says so (the
        // driver keeps every client's log lines). Python logs "Fallback condition met" for
        // every client closed, as it stops its synchronizer; only FDv1 counts here.
        let fallback: Vec<String> = driver
            .logs("any")
            .into_iter()
            .filter(|l| l.to_lowercase().contains("fdv1"))
            .collect();
        if !fallback.is_empty() {
            failures.push(format!(
                "{} ({}) fell back to FDv1: {fallback:?}",
                sdk.name(),
                mode.name()
            ));
        }
    }
    (count, failures)
}

/// Runs every loaded variant through each (SDK, mode) in parallel threads against `base`, prints
/// a line per run under `label`, and fails on any evaluation that differs from flagstaff-eval's
/// or on a vector set smaller than LaunchDarkly's.
pub(crate) fn run_all_and_compare(
    label: &str,
    base: &str,
    runs: &[(Sdk, Mode<'_>)],
    loaded: &[Loaded<'_>],
) {
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|&(sdk, mode)| {
                (
                    sdk,
                    mode,
                    scope.spawn(move || run_sdk(sdk, base, mode, loaded)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(sdk, mode, handle)| (sdk, mode, handle.join().expect("an SDK run")))
            .collect()
    });
    let loaded_vectors: usize = loaded.iter().map(|l| l.variant.evaluations.len()).sum();
    let mut failures = Vec::new();
    for (sdk, mode, (count, run_failures)) in results {
        println!(
            "{label}: {} {}: {} of {count} evaluations identical to flagstaff-eval",
            sdk.name(),
            mode.name(),
            count - run_failures.len()
        );
        assert_eq!(count, loaded_vectors);
        failures.extend(run_failures);
    }
    assert!(
        failures.is_empty(),
        "{} evaluations differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        loaded_vectors > 500,
        "expected the full vector set, got {loaded_vectors}"
    );
}

/// Loads every variant into its own project (`c0`, `c1`, …) through the API, checking that
/// what Flagstaff then serves still gives the file's expected results.
pub(crate) fn load_variants<'a>(
    rt: &tokio::runtime::Runtime,
    api: &Api,
    base: &str,
    variants: &'a [Variant],
) -> Vec<Loaded<'a>> {
    let mut loaded = Vec::new();
    let mut refused = Vec::new();
    let mut served_mismatch = Vec::new();
    for (i, variant) in variants.iter().enumerate() {
        let project = format!("c{i}");
        match rt.block_on(import(api, &project, &variant.sdk_data)) {
            Ok(sdk_key) => {
                // Delivery publishes a commit just after the API answers; where the
                // environment was already loaded (the Redis writer loads every environment),
                // the import may not be served yet for a few milliseconds.
                let keys = |v: &Value| -> Vec<String> {
                    v.as_object()
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default()
                };
                let (flags, segments) = (
                    keys(&variant.sdk_data["flags"]),
                    keys(&variant.sdk_data["segments"]),
                );
                let mut data = rt.block_on(served_data(base, &sdk_key));
                let deadline = Instant::now() + Duration::from_secs(10);
                while (data.flags.keys().cloned().collect::<Vec<_>>() != flags
                    || data.segments.keys().cloned().collect::<Vec<_>>() != segments)
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                    data = rt.block_on(served_data(base, &sdk_key));
                }
                let snapshot = Snapshot::compile(&data);
                // What Flagstaff serves must still give the file's expected results: the import
                // kept every salt, rule and target.
                for evaluation in &variant.evaluations {
                    let (value, index, reason) =
                        conformance::evaluate(&snapshot, evaluation, evaluation.value_type);
                    let expect = &evaluation.expect;
                    let mut expected_reason = expect["reason"].clone();
                    if expected_reason.get("ruleId").is_some() && reason.get("ruleId").is_some() {
                        // Rules without an id in the file get one on import.
                        expected_reason["ruleId"] = reason["ruleId"].clone();
                    }
                    if !(json_equal(&value, &expect["value"])
                        && index == expect.get("variationIndex").cloned().unwrap_or(Value::Null)
                        && json_equal(&reason, &expected_reason))
                    {
                        served_mismatch.push(format!(
                            "{} / {} / {}: expected {expect}, served data gives {value} {index} {reason}",
                            variant.file, variant.label, evaluation.name
                        ));
                    }
                }
                loaded.push(Loaded {
                    project,
                    variant,
                    sdk_key,
                    data,
                    snapshot,
                });
            }
            Err(refusal) => refused.push(format!(
                "{} / {}: {} refused with {}: {}",
                variant.file, variant.label, refusal.what, refusal.status, refusal.answer
            )),
        }
    }
    assert!(
        refused.is_empty(),
        "the import refused conformance data that LaunchDarkly evaluates:\n{}",
        refused.join("\n")
    );
    assert!(
        served_mismatch.is_empty(),
        "served data differs from the conformance expectations:\n{}",
        served_mismatch.join("\n")
    );

    loaded
}

#[test]
fn every_conformance_vector_evaluates_the_same_through_both_sdks() {
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

    // Both SDKs, both FDv1 modes and their FDv2 data systems, in parallel threads.
    let runs: Vec<(Sdk, Mode<'_>)> = Sdk::ALL
        .iter()
        .flat_map(|sdk| [(*sdk, Mode::Streaming), (*sdk, Mode::Polling)])
        .chain([
            (Sdk::Python, Mode::Fdv2("default")),
            (Sdk::Python, Mode::Fdv2("streaming")),
            (Sdk::Node, Mode::Fdv2("streaming")),
        ])
        .collect();
    run_all_and_compare("real SDKs", &base, &runs, &loaded);
    let total_vectors: usize = variants.iter().map(|v| v.evaluations.len()).sum();
    let loaded_vectors: usize = loaded.iter().map(|l| l.variant.evaluations.len()).sum();
    println!(
        "real SDKs: {} variants of {} conformance files ({loaded_vectors} evaluations) imported through the API",
        loaded.len(),
        variants
            .iter()
            .map(|v| &v.file)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    assert_eq!(loaded_vectors, total_vectors);
    drop(server);
}

/// Polls `check` until it returns true or `limit` passes.
pub(crate) fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// The changes every delivery path must carry, for flag `live` of `default/production` (off,
/// serving `false`) and a client `client` open in each driver: turning the flag on reaches every
/// SDK within 5 s, then a segment edit changes the result through a rule without touching the
/// flag.
pub(crate) fn flag_and_segment_changes_reach(
    rt: &tokio::runtime::Runtime,
    api: &Api,
    drivers: &mut [Driver],
    client: &str,
) {
    let targeting = "/projects/default/environments/production/flags/live";
    let alice = json!({"kind": "user", "key": "alice", "country": "NZ"});
    let all_see = |drivers: &mut [Driver], flag: &str, expected: &Value| {
        drivers.iter_mut().all(|d| {
            eventually(Duration::from_secs(5), || {
                d.value(client, flag, &alice, &json!("default")) == *expected
            })
        })
    };
    // Turning the flag on reaches both SDKs.
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    assert!(
        all_see(drivers, "live", &json!(true)),
        "the change reaches both SDKs"
    );

    // A segment edit changes results through a rule without touching the flag.
    rt.block_on(api.post(
        "/projects/default/environments/production/segments",
        &json!({"key": "kiwis", "rules": [{"clauses": [{"attribute": "country", "op": "in", "values": ["AU"]}]}]}),
    ));
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1,
            "rules": [{"variation": 1, "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["kiwis"]}]}]}),
        current["version"].as_u64(),
    ));
    let segment = rt.block_on(api.get("/projects/default/environments/production/segments/kiwis"));
    rt.block_on(api.put(
        "/projects/default/environments/production/segments/kiwis",
        &json!({"key": "kiwis", "rules": [{"clauses": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}]}),
        segment["version"].as_u64(),
    ));
    assert!(
        all_see(drivers, "live", &json!(false)),
        "the segment change reaches both SDKs"
    );
}

#[test]
fn live_changes_deletion_restart_and_revocation_reach_both_sdks() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api, sdk_key) = fresh_server(dir.path());
    let base = server.base();
    let rt = runtime();
    let targeting = "/projects/default/environments/production/flags/live";
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "live", "name": "Live"}),
    ));

    let mut drivers: Vec<Driver> = Sdk::ALL.into_iter().map(Driver::start).collect();
    let alice = json!({"kind": "user", "key": "alice", "country": "NZ"});
    for driver in &mut drivers {
        assert!(
            driver.open("live", &sdk_key, &base, true),
            "{} initializes",
            driver.sdk.name()
        );
        assert_eq!(
            driver.value("live", "live", &alice, &json!("default")),
            json!(false)
        );
    }
    flag_and_segment_changes_reach(&rt, &api, &mut drivers, "live");
    let all_see = |drivers: &mut Vec<Driver>, flag: &str, expected: &Value| {
        drivers.iter_mut().all(|d| {
            eventually(Duration::from_secs(5), || {
                d.value("live", flag, &alice, &json!("default")) == *expected
            })
        })
    };

    // A deleted flag disappears: SDKs answer with the caller's default.
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "doomed", "name": "Doomed"}),
    ));
    assert!(all_see(&mut drivers, "doomed", &json!(false)));
    let doomed = rt.block_on(api.get("/projects/default/flags/doomed"));
    rt.block_on(api.delete(
        "/projects/default/flags/doomed",
        doomed["version"].as_u64().unwrap(),
    ));
    assert!(
        all_see(&mut drivers, "doomed", &json!("default")),
        "the deletion reaches both SDKs"
    );

    // A restarted server is reconnected to, and what changed is re-sent.
    server.stop();
    server.restart();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "after-restart", "name": "After"}),
    ));
    assert!(
        all_see(&mut drivers, "after-restart", &json!(false)),
        "both SDKs reconnect after a restart"
    );

    // Rotating the SDK key with no grace period revokes the old one: its streams end, it is
    // refused, and changes no longer reach SDKs that hold it.
    let rotated = rt.block_on(api.post(
        "/projects/default/environments/production/keys/sdk/rotate",
        &json!({"oldKeyValidForSeconds": 0}),
    ));
    let new_key = rotated["sdkKey"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let status = |key: &str| {
        rt.block_on(async {
            client
                .get(format!("{base}/sdk/latest-all"))
                .header("Authorization", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(status(&sdk_key), 401, "the revoked key is refused");
    assert_eq!(status(&new_key), 200, "the new key works");
    std::thread::sleep(Duration::from_millis(500));
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": false, "fallthrough": {"variation": 0}, "offVariation": 0}),
        current["version"].as_u64(),
    ));
    std::thread::sleep(Duration::from_secs(2));
    for driver in &mut drivers {
        assert_eq!(
            driver.value("live", "live", &alice, &json!("default")),
            json!(false),
            "{} holding a revoked key must not receive changes",
            driver.sdk.name()
        );
    }
}
