//! Flag insights from real SDK events (`ld-protocol.md` §6) against a real `flagstaff serve`:
//! LaunchDarkly's Python and Node SDKs evaluate and track, flush, and the insights API shows
//! exactly what they did; private attributes never reach the events database; malformed,
//! truncated and huge payloads get a clear 4xx without disturbing anything; a flood larger than
//! the queue is shed with an exact count while the management API keeps answering.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use flagstaff_testkit::sdk::{Driver, Sdk};

use crate::dashboard::{Visitor, csrf_of};
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

const SECRET_EMAIL: &str = "very-private@example.com";
const SECRET_PHONE: &str = "+49-30-1234567";

/// Polls `check` until it returns `Some` or `limit` passes.
fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn user(key: &str, country: &str) -> Value {
    json!({"kind": "user", "key": key, "country": country, "email": SECRET_EMAIL,
        "phone": SECRET_PHONE, "_meta": {"privateAttributes": ["phone"]}})
}

/// Evaluates `checkout` for `de` German and `fr` French users, plus `missing` evaluations of a
/// flag that does not exist, then tracks `purchases` purchases worth 2.5 each, and flushes.
fn drive(driver: &mut Driver, id: &str, prefix: &str, de: usize, fr: usize, purchases: usize) {
    let mut evaluations = Vec::new();
    for i in 0..de {
        evaluations.push(
            json!({"flagKey": "checkout", "context": user(&format!("{prefix}-de-{i}"), "DE"),
            "default": false, "valueType": "bool"}),
        );
    }
    for i in 0..fr {
        evaluations.push(
            json!({"flagKey": "checkout", "context": user(&format!("{prefix}-fr-{i}"), "FR"),
            "default": false, "valueType": "bool"}),
        );
    }
    evaluations.push(
        json!({"flagKey": "no-such-flag", "context": user(&format!("{prefix}-x"), "DE"),
        "default": "fallback", "valueType": "string"}),
    );
    let results = driver.evaluate(id, &evaluations);
    let trues = results.iter().filter(|r| r["value"] == json!(true)).count();
    assert_eq!(
        trues,
        de,
        "{}: DE users get true: {results:?}",
        driver.sdk.name()
    );
    for i in 0..purchases {
        driver.track(
            id,
            "purchase",
            &user(&format!("{prefix}-de-{i}"), "DE"),
            Some(2.5),
        );
    }
    driver.flush(id);
}

#[test]
fn real_sdk_events_become_exact_insights_and_private_attributes_are_never_stored() {
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(
        binary(),
        dir.path(),
        "127.0.0.1:0",
        &["--sdk-heartbeat-seconds", "1", "--events-flush-ms", "100"],
    );
    let base = server.base();
    let rt = runtime();
    let api = Api::new(&base, &credentials.admin_token);
    let targeting = "/projects/default/environments/production/flags/checkout";
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "checkout", "name": "Checkout",
            "variations": [{"value": true, "name": "New checkout"}, {"value": false, "name": "Old checkout"}]}),
    ));
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 1}, "offVariation": 1,
            "rules": [{"id": "germany", "variation": 0,
                "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}]}]}),
        current["version"].as_u64(),
    ));

    let mut python = Driver::start(Sdk::Python);
    assert!(python.open_with_private("p", &credentials.sdk_key, &base, &["email"]));
    drive(&mut python, "p", "py", 7, 5, 3);
    let mut node = Driver::start(Sdk::Node);
    assert!(node.open_with_private("n", &credentials.sdk_key, &base, &["email"]));
    drive(&mut node, "n", "js", 4, 9, 2);

    // The pipeline writes every 100 ms; wait until both SDKs' summaries are in.
    let path = "/projects/default/flags/checkout/insights?environment=production&range=1h";
    let insights = eventually(Duration::from_secs(20), || {
        let insights = rt.block_on(api.get(path));
        (insights["total"] == json!(7 + 5 + 4 + 9)).then_some(insights)
    })
    .unwrap_or_else(|| {
        panic!(
            "the evaluations never added up: {}",
            rt.block_on(api.get(path))
        )
    });
    let variations = insights["variations"].as_array().unwrap();
    let total_of = |label: &str| {
        variations
            .iter()
            .find(|v| v["label"] == label)
            .map(|v| v["total"].clone())
    };
    assert_eq!(total_of("New checkout"), Some(json!(7 + 4)), "{insights}");
    assert_eq!(total_of("Old checkout"), Some(json!(5 + 9)), "{insights}");
    assert_eq!(variations.len(), 2, "{insights}");
    // The per-minute series adds up to the same totals.
    let series_sum: u64 = insights["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["counts"].as_array().unwrap().iter())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(series_sum, 25);
    assert_eq!(insights["series"].as_array().unwrap().len(), 60);
    let sdks: Vec<&str> = insights["sdks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sdk"].as_str().unwrap())
        .collect();
    assert!(
        sdks.contains(&"PythonClient") && sdks.contains(&"NodeJSClient"),
        "{sdks:?}"
    );
    let production = insights["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["environment"] == "production")
        .unwrap();
    assert_eq!(production["status"], "active", "{production}");
    assert!(production["lastEvaluated"].as_i64().is_some());
    let test_env = insights["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["environment"] == "test")
        .unwrap();
    assert_eq!(
        test_env["status"], "new",
        "created just now, never evaluated there"
    );

    // Custom events, counted per key with their metric values.
    let custom = eventually(Duration::from_secs(10), || {
        let custom =
            rt.block_on(api.get("/projects/default/environments/production/custom-events"));
        (custom["items"][0]["count"] == json!(5)).then_some(custom)
    })
    .expect("5 purchases tracked");
    assert_eq!(custom["items"][0]["key"], "purchase");
    assert_eq!(custom["items"][0]["metricSum"], json!(12.5));

    // Contexts seen: searchable, private attributes listed by name only.
    let found =
        rt.block_on(api.get("/projects/default/environments/production/contexts?q=py-de-3"));
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["key"], "py-de-3");
    assert_eq!(items[0]["attributes"]["country"], "DE");
    let redacted = items[0]["redacted"].as_array().unwrap();
    assert!(
        redacted.contains(&json!("email")) && redacted.contains(&json!("phone")),
        "{found}"
    );
    let everyone =
        rt.block_on(api.get("/projects/default/environments/production/contexts?limit=1000"));
    // 7+5+1 Python contexts and 4+9+1 Node contexts.
    assert_eq!(
        everyone["items"].as_array().unwrap().len(),
        27,
        "{everyone}"
    );

    // The dashboard shows the same, to a signed-in reader.
    let (status, answer) = rt.block_on(api.call(
        reqwest::Method::POST,
        "/members",
        Some(
            &json!({"email": "rex@example.com", "name": "Rex", "role": "reader",
            "password": "reader password 1"}),
        ),
        None,
    ));
    assert_eq!(status, 201, "{answer}");
    rt.block_on(async {
        let mut rex = Visitor::new(&base);
        let sign_in = rex.get("/sign-in").await;
        let csrf = csrf_of(&sign_in.body);
        let signed_in = rex
            .form(
                "/sign-in",
                &[
                    ("email", "rex@example.com"),
                    ("password", "reader password 1"),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        let page = rex
            .get("/projects/default/flags/checkout/insights?env=production&range=1h")
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body
                .contains(r#"<span data-testid="evaluations-total">25</span>"#),
            "{}",
            page.body
        );
        assert!(page.body.contains(r#"data-testid="evaluations-chart""#));
        assert!(
            page.body.contains("New checkout: 11, Old checkout: 14"),
            "the chart's text alternative: {}",
            page.body
        );
        assert!(page.body.matches("<rect").count() >= 2);
        assert!(page.body.contains("NodeJSClient") && page.body.contains("PythonClient"));
        let contexts = rex
            .get("/projects/default/contexts?env=production&q=js-fr-8")
            .await;
        assert_eq!(contexts.status, 200);
        assert!(
            contexts.body.contains("<code>js-fr-8</code>"),
            "{}",
            contexts.body
        );
        let link = contexts
            .body
            .split("href=\"")
            .find(|part| {
                part.starts_with("/projects/default/test?")
                    && part
                        .split('"')
                        .next()
                        .is_some_and(|l| l.contains("context="))
            })
            .and_then(|part| part.split('"').next())
            .expect("a test-this-context link")
            .replace("&#38;", "&")
            .replace("&amp;", "&");
        let tested = rex.get(&link).await;
        assert_eq!(tested.status, 200);
        // A French user falls through to "Old checkout".
        assert!(
            tested.body.contains("No target or rule matched"),
            "{}",
            tested.body
        );
        let events = rex.get("/projects/default/events?env=production").await;
        assert!(
            events.body.contains(r#"data-event="purchase""#),
            "{}",
            events.body
        );
        let statuses = rex
            .get("/projects/default/stale-flags?env=production&all=1")
            .await;
        assert!(
            statuses.body.contains(r#"data-flag="checkout""#),
            "{}",
            statuses.body
        );
        let stale = rex
            .get("/projects/default/stale-flags?env=production")
            .await;
        assert!(
            stale.body.contains("no-stale-flags"),
            "an active flag is not stale"
        );
        for page in [&page, &contexts, &tested, &events] {
            assert!(!page.body.contains(SECRET_EMAIL) && !page.body.contains(SECRET_PHONE));
        }
    });

    python.close("p");
    node.close("n");
    drop(server);
    // Nothing private anywhere in the events database, WAL included.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("flagstaff-events.db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for secret in [SECRET_EMAIL, SECRET_PHONE] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} was stored in {name}"
            );
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn bad_payloads_get_clear_errors_and_a_flood_is_shed_while_the_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    // A small queue (two payloads of the flood) and rare writes, so that eight payloads
    // arriving at once overflow it even when the writer drains it in a few milliseconds (with
    // 2,000 it sometimes kept up on a fast run).
    let server = TestServer::start(
        binary(),
        dir.path(),
        "127.0.0.1:0",
        &[
            "--events-queue-capacity",
            "100",
            "--events-flush-ms",
            "5000",
        ],
    );
    let base = server.base();
    let rt = runtime();
    let api = Api::new(&base, &credentials.admin_token);
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "checkout", "name": "Checkout"}),
    ));
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, gzipped: bool| {
        let mut request = http
            .post(format!("{base}/bulk"))
            .header("Authorization", &credentials.sdk_key)
            .header("Content-Type", "application/json")
            .header("X-LaunchDarkly-Event-Schema", "4")
            .body(body);
        if gzipped {
            request = request.header("Content-Encoding", "gzip");
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let summary = |count: u64| {
        json!([{"kind": "summary", "startDate": 1, "endDate": 2, "features": {"checkout": {
            "default": false, "counters": [{"variation": 0, "version": 1, "value": true, "count": count}]}}}])
    };
    // Malformed, truncated, wrong shape, bad gzip, huge: each a clear 4xx with a stable code.
    let full = summary(1).to_string();
    let cases: Vec<(&str, Vec<u8>, bool, u16, &str)> = vec![
        ("not JSON", b"events!".to_vec(), false, 400, "invalid_json"),
        (
            "truncated",
            full.as_bytes()[..full.len() / 2].to_vec(),
            false,
            400,
            "invalid_json",
        ),
        (
            "an object",
            b"{\"kind\": \"summary\"}".to_vec(),
            false,
            400,
            "invalid_payload",
        ),
        (
            "bad gzip",
            b"\x1f\x8bnot really".to_vec(),
            true,
            400,
            "invalid_gzip",
        ),
        (
            "a gzip bomb",
            gzip(&vec![b' '; 64 * 1024 * 1024]),
            true,
            413,
            "payload_too_large",
        ),
    ];
    for (what, body, gzipped, status, code) in cases {
        let (got, answer) = rt.block_on(post(body, gzipped));
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["code"], code, "{what}: {answer}");
    }
    // A huge body is refused from its declared length, before the server reads any of it
    // (sent by hand: a client still writing 11 MiB would see the connection close instead).
    let huge = {
        use std::io::Read as _;
        let mut stream = std::net::TcpStream::connect(server.address.as_str()).unwrap();
        write!(
            stream,
            "POST /bulk HTTP/1.1\r\nHost: flagstaff\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            credentials.sdk_key,
            11 * 1024 * 1024
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = vec![0; 4096];
        let n = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    };
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(huge.contains("payload_too_large"), "{huge}");
    let health = rt.block_on(api.get("/events/health"));
    assert_eq!(health["rejectedPayloads"], 6, "{health}");
    // A good payload after all that is accepted and counted.
    let (status, _) = rt.block_on(post(summary(3).to_string().into_bytes(), false));
    assert_eq!(status, 202);

    // The flood: 400 payloads of 50 events (20,000 events) against a 100-event queue, 8 at a
    // time, while the management API is read alongside.
    let events_per_payload = 50usize;
    let payload = {
        let mut events = vec![summary(1)[0].clone()];
        for i in 1..events_per_payload {
            events.push(json!({"kind": "custom", "creationDate": 1, "key": "flood",
                "context": {"kind": "user", "key": format!("u{i}")}}));
        }
        Value::Array(events).to_string().into_bytes()
    };
    let (statuses, api_answers) = rt.block_on(async {
        let flood = async {
            let mut statuses = Vec::new();
            for _ in 0..50 {
                let round: Vec<_> = (0..8).map(|_| post(payload.clone(), false)).collect();
                for (status, _) in futures_util::future::join_all(round).await {
                    statuses.push(status);
                }
            }
            statuses
        };
        let reads = async {
            let mut answers = Vec::new();
            for _ in 0..20 {
                let (status, _) = api
                    .call(reqwest::Method::GET, "/projects/default/flags", None, None)
                    .await;
                answers.push(status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        };
        tokio::join!(flood, reads)
    });
    assert!(
        statuses.iter().all(|s| *s == 202),
        "SDKs are never refused for load"
    );
    assert!(api_answers.iter().all(|s| *s == 200), "{api_answers:?}");
    let health = rt.block_on(api.get("/events/health"));
    let accepted = health["acceptedEvents"].as_u64().unwrap();
    let dropped = health["droppedEvents"].as_u64().unwrap();
    // Exact: every event of the flood was either accepted or counted as dropped.
    assert_eq!(
        accepted + dropped,
        1 + 400 * events_per_payload as u64,
        "{health}"
    );
    assert!(dropped > 0, "the flood overflowed the queue: {health}");
    assert_eq!(
        dropped % events_per_payload as u64,
        0,
        "whole payloads are shed"
    );
    let metrics = rt.block_on(async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        metric("flagstaff_events_dropped_total"),
        Some(dropped as f64)
    );
    assert!(
        metric("flagstaff_events_queue_depth").is_some(),
        "{metrics}"
    );
    // What was accepted is all written, and counted exactly once per accepted payload.
    let insights = eventually(Duration::from_secs(20), || {
        let health = rt.block_on(api.get("/events/health"));
        (health["writtenEvents"].as_u64() == Some(accepted)).then_some(health)
    });
    assert!(insights.is_some(), "every accepted event is written");
    let accepted_payloads = (accepted - 1) / events_per_payload as u64;
    let flag = rt.block_on(
        api.get("/projects/default/flags/checkout/insights?environment=production&range=90d"),
    );
    assert_eq!(
        flag["total"].as_u64(),
        Some(3 + accepted_payloads),
        "{flag}"
    );
}
