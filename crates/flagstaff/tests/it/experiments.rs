//! Experiments end to end with LaunchDarkly's Python SDK (issue 21, "Proof"): a real
//! `flagstaff serve`, an experiment started through the API, the SDK evaluating the flag for
//! 20,000 contexts (its feature events with `inExperiment` are the exposures) and tracking
//! `purchase` for 10 % of the control's contexts and 12 % of the treatment's; the results
//! recover the lift, agree with scipy's computation on the counts this test generated, an A/A
//! iteration is not significant, and losing a third of one variation's exposures is flagged
//! as a sample-ratio mismatch.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flagstaff_testkit::generate::Rng;
use flagstaff_testkit::sdk::{Driver, Sdk};
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

/// A real `flagstaff serve` (events written every 100 ms) and an API client for it.
struct World {
    rt: tokio::runtime::Runtime,
    api: Api,
    credentials: server::Credentials,
    base: String,
    _server: TestServer,
    _dir: tempfile::TempDir,
}

impl World {
    fn start() -> World {
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
        World {
            rt,
            api,
            credentials,
            base,
            _server: server,
            _dir: dir,
        }
    }
}

const EXPERIMENT: &str = "/projects/default/environments/production/experiments/checkout-test";
const CONTEXTS: usize = 20_000;
const CHUNK: usize = 2_000;

fn user(i: usize) -> Value {
    json!({"kind": "user", "key": format!("shopper-{i}")})
}

/// Per variation: (contexts exposed, contexts converted), as this test generated them.
type Counts = [(u64, u64); 2];

/// Evaluates the flag for every context on client `evaluator` and, per variation, tracks a
/// purchase on client `tracker` for exactly `rates[v]` of them (the first so many in a
/// shuffled order): exact proportions, so that the true lift is known and no run depends on
/// luck. Contexts for which `lose` says so are evaluated only on `evaluator`, whose events go
/// nowhere, and not again on `tracker`: their exposures are lost, as a broken network path
/// would lose them.
fn run(
    driver: &mut Driver,
    evaluator: &str,
    tracker: &str,
    rates: [f64; 2],
    lose: impl Fn(usize, u32) -> bool,
    seed: u64,
) -> Counts {
    let mut variations = Vec::with_capacity(CONTEXTS);
    for chunk in (0..CONTEXTS).collect::<Vec<_>>().chunks(CHUNK) {
        let evaluations: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"flagKey": "checkout", "context": user(*i), "default": "old", "valueType": "string"}))
            .collect();
        for (i, result) in chunk.iter().zip(driver.evaluate(evaluator, &evaluations)) {
            assert_eq!(
                result["reason"]["inExperiment"], true,
                "shopper-{i} is not in the experiment: {result}"
            );
            variations.push(result["variationIndex"].as_u64().unwrap() as u32);
        }
    }
    let mut counts: Counts = [(0, 0); 2];
    let mut order: Vec<usize> = (0..CONTEXTS).collect();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let kept: Vec<usize> = order
        .into_iter()
        .filter(|i| !lose(*i, variations[*i]))
        .collect();
    for (v, count) in counts.iter_mut().enumerate() {
        count.0 = kept.iter().filter(|i| variations[**i] == v as u32).count() as u64;
    }
    let mut converted = [0_u64; 2];
    for chunk in kept.chunks(CHUNK) {
        let evaluations: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"flagKey": "checkout", "context": user(*i), "default": "old", "valueType": "string"}))
            .collect();
        if tracker != evaluator {
            driver.evaluate(tracker, &evaluations);
        }
        for i in chunk {
            let v = variations[*i] as usize;
            let quota = (rates[v] * counts[v].0 as f64).round() as u64;
            if converted[v] < quota {
                converted[v] += 1;
                driver.track(tracker, "purchase", &user(*i), None);
            }
        }
        driver.flush(tracker);
    }
    for (count, converted) in counts.iter_mut().zip(converted) {
        count.1 = converted;
    }
    counts
}

/// Polls the results until they count every exposure and conversion this test generated.
fn results(rt: &tokio::runtime::Runtime, api: &Api, counts: &Counts) -> Value {
    let start = Instant::now();
    loop {
        let results = rt.block_on(api.get(&format!("{EXPERIMENT}/results")));
        let seen: Vec<(u64, f64)> = results["variations"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .map(|v| {
                        (
                            v["exposures"].as_u64().unwrap_or(0),
                            v["metrics"][0]["mean"].as_f64().unwrap_or(0.0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let complete = seen.len() == 2
            && seen.iter().zip(counts).all(|((exposed, mean), (n, c))| {
                *exposed == *n && (mean * *n as f64 - *c as f64).abs() < 0.5
            });
        if complete {
            return results;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the results still show {seen:?}, expected {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// scipy's Welch test and χ² on the counts (a conversion is a 0/1 value per context), computed
/// by this test from what it generated, not from what the server says.
fn scipy(counts: &Counts) -> Option<Value> {
    let python = flagstaff_testkit::workspace_root().join("sdk-clients/tools/.venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("FLAGSTAFF_REQUIRE_SDKS").is_none(),
            "scipy is not installed: run sdk-clients/install"
        );
        return None;
    }
    const SCRIPT: &str = r#"
import json, math, sys
from scipy import stats
counts = json.load(sys.stdin)
(nc, cc), (nt, ct) = counts
def sample(n, c):
    mean = c / n
    return mean, math.sqrt(c * (1 - mean) ** 2 + (n - c) * mean ** 2) / math.sqrt(n - 1)
(mc, sc), (mt, st) = sample(nc, cc), sample(nt, ct)
welch = stats.ttest_ind_from_stats(mt, st, nt, mc, sc, nc, equal_var=False)
srm = stats.chisquare([nc, nt])
print(json.dumps({"pValue": float(welch.pvalue), "difference": mt - mc,
                  "srmPValue": float(srm.pvalue)}))
"#;
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!(counts).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the scipy check failed");
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

fn close(ours: &Value, theirs: &Value, what: &str) {
    let (a, b) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
    assert!(
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-300),
        "{what}: ours {a}, scipy {b}"
    );
}

/// Starts an iteration and waits until the SDK evaluates in it; returns the variation the
/// probe context got (its evaluation is an exposure too).
fn start_iteration(rt: &tokio::runtime::Runtime, api: &Api, driver: &mut Driver) -> usize {
    let started = rt.block_on(api.post(&format!("{EXPERIMENT}/start"), &json!(null)));
    let seed = started["iterations"].as_array().unwrap().last().unwrap()["seed"].clone();
    // Wait until the SDK's streamed data has this iteration's rollout (its seed).
    let begin = Instant::now();
    loop {
        let data = rt.block_on(api.get("/projects/default/environments/production/flags/checkout"));
        assert_eq!(data["fallthrough"]["rollout"]["seed"], seed);
        let result = &driver.evaluate(
            "c",
            &[json!({"flagKey": "checkout", "context": {"kind": "user", "key": "probe"}, "default": "old", "valueType": "string"})],
        )[0];
        if result["reason"]["inExperiment"] == true {
            return result["variationIndex"].as_u64().unwrap() as usize;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(10),
            "the SDK does not see the experiment: {result}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_python_sdk_measures_a_two_point_lift_an_a_a_run_and_a_sample_ratio_mismatch() {
    let world = World::start();
    let (rt, api, credentials, base) = (
        &world.rt,
        &world.api,
        &world.credentials,
        world.base.clone(),
    );
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "checkout", "name": "Checkout", "kind": "multivariate",
                "variations": [{"value": "old", "name": "Old checkout"}, {"value": "new", "name": "New checkout"}]}),
    ));
    let targeting =
        rt.block_on(api.get("/projects/default/environments/production/flags/checkout"));
    rt.block_on(api.put(
        "/projects/default/environments/production/flags/checkout",
        &json!({"on": true, "offVariation": 0, "fallthrough": {"variation": 0}}),
        targeting["version"].as_u64(),
    ));
    rt.block_on(api.post(
        "/projects/default/metrics",
        &json!({"key": "purchased", "name": "Purchase rate", "kind": "conversion", "eventKey": "purchase"}),
    ));
    rt.block_on(api.post(
        "/projects/default/environments/production/experiments",
        &json!({"key": "checkout-test", "name": "New checkout", "flag": "checkout",
                "metrics": ["purchased"], "controlVariation": 0, "treatmentVariations": [1]}),
    ));

    let mut driver = Driver::start(Sdk::Python);
    // Room for a whole chunk's feature and index events between flushes.
    let opened = driver.send(
        &json!({"cmd": "open", "id": "c", "sdkKey": credentials.sdk_key,
        "baseUri": base, "stream": true, "startWait": 10, "eventsCapacity": 50_000}),
    );
    assert_eq!(opened["initialized"], true, "{opened}");

    // Iteration 1: 10 % against 12 %.
    let probe = start_iteration(rt, api, &mut driver);
    let mut counts = run(&mut driver, "c", "c", [0.10, 0.12], |_, _| false, 1);
    counts[probe].0 += 1;
    let total: u64 = counts.iter().map(|(n, _)| n).sum();
    assert_eq!(total, CONTEXTS as u64 + 1);
    let first = results(rt, api, &counts);
    let variations = first["variations"].as_array().unwrap();
    let treatment = &variations[1]["metrics"][0];
    // The true lift (0.12 − 0.10) is inside the interval, and the result is clear.
    let ci = &treatment["differenceCi"];
    assert!(
        ci[0].as_f64().unwrap() < 0.02 && 0.02 < ci[1].as_f64().unwrap(),
        "{treatment}"
    );
    let relative = &treatment["relativeLiftCi"];
    assert!(
        relative[0].as_f64().unwrap() < 0.2 && 0.2 < relative[1].as_f64().unwrap(),
        "{treatment}"
    );
    assert!(treatment["pValue"].as_f64().unwrap() < 0.001, "{treatment}");
    assert!(
        treatment["probabilityToBeatControl"].as_f64().unwrap() > 0.99,
        "{treatment}"
    );
    assert_eq!(treatment["sequential"]["excludesZero"], true, "{treatment}");
    assert_eq!(first["srm"]["detected"], false, "{first}");
    let verdict = first["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("New checkout beats Old checkout"),
        "{verdict}"
    );
    if let Some(theirs) = scipy(&counts) {
        close(&treatment["pValue"], &theirs["pValue"], "Welch p-value");
        close(
            &treatment["difference"],
            &theirs["difference"],
            "difference",
        );
        close(&first["srm"]["pValue"], &theirs["srmPValue"], "SRM p-value");
    }

    // Iteration 2: A/A (both convert at 10 %) is not significant.
    rt.block_on(api.post(&format!("{EXPERIMENT}/stop"), &json!(null)));
    let probe = start_iteration(rt, api, &mut driver);
    let mut counts = run(&mut driver, "c", "c", [0.10, 0.10], |_, _| false, 2);
    counts[probe].0 += 1;
    let second = results(rt, api, &counts);
    assert_eq!(second["iteration"]["number"], 2);
    let treatment = &second["variations"][1]["metrics"][0];
    assert!(treatment["pValue"].as_f64().unwrap() > 0.5, "{treatment}");
    assert_eq!(
        treatment["sequential"]["excludesZero"], false,
        "{treatment}"
    );
    assert_eq!(second["srm"]["detected"], false, "{second}");
    assert!(
        second["verdict"]
            .as_str()
            .unwrap()
            .contains("keep collecting"),
        "{second}"
    );

    // Iteration 3: a third of the treatment's exposures never arrive (evaluated on a client
    // whose events go to a closed port): sample-ratio mismatch, said first.
    rt.block_on(api.post(&format!("{EXPERIMENT}/stop"), &json!(null)));
    let lossy = driver.send(
        &json!({"cmd": "open", "id": "lossy", "sdkKey": credentials.sdk_key,
        "baseUri": base, "eventsUri": "http://127.0.0.1:9", "stream": true, "startWait": 10}),
    );
    assert_eq!(lossy["initialized"], true, "{lossy}");
    let probe = start_iteration(rt, api, &mut driver);
    let mut counts = run(
        &mut driver,
        "lossy",
        "c",
        [0.10, 0.10],
        |i, v| v == 1 && i % 3 == 0,
        3,
    );
    counts[probe].0 += 1;
    let third = results(rt, api, &counts);
    assert_eq!(third["srm"]["detected"], true, "{third}");
    assert!(
        third["verdict"]
            .as_str()
            .unwrap()
            .starts_with("Sample ratio mismatch"),
        "{third}"
    );
    // Earlier iterations keep their own results.
    let again = rt.block_on(api.get(&format!("{EXPERIMENT}/results?iteration=1")));
    assert_eq!(again["variations"], first["variations"]);
    driver.close("lossy");
    driver.close("c");
}

const GUARDED: &str = "/projects/default/environments/production/flags/search/guarded-rollout";

/// Evaluates `search` for `n` new contexts and tracks `error` for exactly `rates[v]` of each
/// variation's; returns the contexts per variation.
fn guarded_traffic(driver: &mut Driver, first: usize, n: usize, rates: [f64; 2]) -> [u64; 2] {
    let contexts: Vec<Value> = (first..first + n)
        .map(|i| json!({"kind": "user", "key": format!("searcher-{i}")}))
        .collect();
    let evaluations: Vec<Value> = contexts
        .iter()
        .map(
            |c| json!({"flagKey": "search", "context": c, "default": "old", "valueType": "string"}),
        )
        .collect();
    let results = driver.evaluate("c", &evaluations);
    let mut seen = [0_u64; 2];
    let mut failed = [0_u64; 2];
    let variations: Vec<usize> = results
        .iter()
        .map(|r| r["variationIndex"].as_u64().unwrap() as usize)
        .collect();
    for v in &variations {
        seen[*v] += 1;
    }
    for (context, v) in contexts.iter().zip(&variations) {
        if (failed[*v] as f64) < (rates[*v] * seen[*v] as f64).round() {
            failed[*v] += 1;
            driver.track("c", "error", context, None);
        }
    }
    driver.flush("c");
    seen
}

fn wait_for_status(rt: &tokio::runtime::Runtime, api: &Api, status: &str, seconds: u64) -> Value {
    let start = Instant::now();
    loop {
        let plan = rt.block_on(api.get(GUARDED));
        if plan["status"] == status {
            return plan;
        }
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "the guarded rollout is not {status}: {plan}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value and reason the SDK serves a probe context, once it equals `value`.
/// Waits until the SDK serves `value` to the probe from the flag's own targeting, no longer
/// from the rollout. The value alone is not enough: while the rollout runs, the probe may be
/// bucketed into the variation it will end on, and the SDK may not have the final change yet.
fn sdk_serves(driver: &mut Driver, value: &str) -> Value {
    let start = Instant::now();
    loop {
        let result = driver.evaluate(
            "c",
            &[json!({"flagKey": "search", "context": {"kind": "user", "key": "probe"}, "default": "old", "valueType": "string"})],
        )[0]
            .clone();
        if result["value"] == value && result["reason"].get("inExperiment").is_none() {
            return result;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the SDK still serves {result}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_guarded_rollout_rolls_back_an_injected_regression_and_a_healthy_one_reaches_everyone() {
    let world = World::start();
    let (rt, api, credentials, base) = (
        &world.rt,
        &world.api,
        &world.credentials,
        world.base.clone(),
    );
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "search", "name": "Search", "kind": "multivariate",
                "variations": [{"value": "old"}, {"value": "new"}]}),
    ));
    let targeting = rt.block_on(api.get("/projects/default/environments/production/flags/search"));
    rt.block_on(api.put(
        "/projects/default/environments/production/flags/search",
        &json!({"on": true, "offVariation": 0, "fallthrough": {"variation": 0}}),
        targeting["version"].as_u64(),
    ));
    rt.block_on(api.post(
        "/projects/default/metrics",
        &json!({"key": "errors", "name": "Error rate", "kind": "conversion", "eventKey": "error",
                "successCriteria": "lower"}),
    ));
    let mut driver = Driver::start(Sdk::Python);
    let opened = driver.send(
        &json!({"cmd": "open", "id": "c", "sdkKey": credentials.sdk_key,
        "baseUri": base, "stream": true, "startWait": 10, "eventsCapacity": 50_000}),
    );
    assert_eq!(opened["initialized"], true, "{opened}");

    // The new variation fails 5 % of the time against 1 %: rolled back on its own, long
    // before the step's ten minutes are up.
    let started = rt.block_on(api.post(
        GUARDED,
        &json!({"treatmentVariation": 1, "guards": [{"metric": "errors", "tolerance": 0.1}],
                "steps": [{"percent": 50, "minDurationMs": 600_000, "minSample": 100}, {"percent": 100}]}),
    ));
    assert_eq!(started["status"], "running", "{started}");
    let begin = Instant::now();
    while driver.evaluate(
        "c",
        &[json!({"flagKey": "search", "context": {"kind": "user", "key": "probe"}, "default": "old", "valueType": "string"})],
    )[0]["reason"]["inExperiment"]
        != true
    {
        assert!(begin.elapsed() < Duration::from_secs(10), "the SDK does not see the rollout");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = guarded_traffic(&mut driver, 0, 8_000, [0.01, 0.05]);
    assert!(seen[0] > 3_000 && seen[1] > 3_000, "{seen:?}");
    let rolled_back = wait_for_status(rt, api, "rolledBack", 30);
    let evidence = &rolled_back["history"][0]["evidence"][0];
    assert_eq!(evidence["metric"], "errors");
    assert_eq!(evidence["regression"], true, "{evidence}");
    let probe = sdk_serves(&mut driver, "old");
    assert!(probe["reason"].get("inExperiment").is_none(), "{probe}");
    let audit = rt.block_on(api.get("/audit?kind=targeting&scope=default/production&key=search"));
    let entry = audit["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(entry["actor"], "guarded-rollout", "{entry}");
    let comment = entry["comment"].as_str().unwrap();
    assert!(
        comment.contains("regression on errors") && comment.contains("anytime-valid"),
        "{comment}"
    );

    // Healthy: the same error rate everywhere; each step advances once its second and its
    // sample have passed, up to everyone.
    let started = rt.block_on(api.post(
        GUARDED,
        &json!({"treatmentVariation": 1, "guards": [{"metric": "errors", "tolerance": 0.1}],
                "steps": [{"percent": 20, "minDurationMs": 1_000, "minSample": 200},
                          {"percent": 60, "minDurationMs": 1_000, "minSample": 200},
                          {"percent": 100}]}),
    ));
    assert_eq!(started["status"], "running", "{started}");
    let begin = Instant::now();
    let mut first = 10_000;
    let completed = loop {
        guarded_traffic(&mut driver, first, 1_500, [0.01, 0.01]);
        first += 1_500;
        std::thread::sleep(Duration::from_millis(700));
        let plan = rt.block_on(api.get(GUARDED));
        if plan["status"] == "completed" {
            break plan;
        }
        assert_eq!(plan["status"], "running", "{plan}");
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "the healthy rollout did not finish: {plan}"
        );
    };
    let outcomes: Vec<&str> = completed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes,
        ["advanced", "advanced", "completed"],
        "{completed}"
    );
    sdk_serves(&mut driver, "new");
    driver.close("c");
}
