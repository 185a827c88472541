//! LaunchDarkly's browser SDK (npm `launchdarkly-js-client-sdk` v3) in headless Debian chromium,
//! driven by playwright-core, against `flagstaff serve`: the page is served from another
//! origin on 127.0.0.1 (so CORS is exercised), initializes against Flagstaff, shows the right
//! values for several contexts, receives a live change made through the management API over
//! its stream, never receives rule data, and starts from a bootstrap document rendered by the
//! evaluate endpoint. Flagstaff serves all of it over its own TLS (issue 17), with a certificate
//! from a throwaway CA whose server key alone chromium is told to trust; the page itself is
//! plain HTTP on another port, as a site calling a flag service would be.

use std::path::Path;
use std::time::Duration;

use flagstaff_testkit::sdk::Browser;
use flagstaff_testkit::server::{self, Api, TestServer};
use flagstaff_testkit::tls::Authority;
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

/// Serves the test page and the browser SDK on a port of its own (another origin than
/// Flagstaff's). Returns the page's base URL.
async fn serve_page() -> String {
    let page = include_str!("browser/page.html");
    serve_test_page(
        page,
        vec![("/ldclient.min.js".to_owned(), Browser::sdk_script())],
    )
    .await
}

/// Serves `page` at `/` and each script at its path, on a port of its own (another origin
/// than Flagstaff's). Returns the base URL. The browser tests of other SDKs use it too.
pub(crate) async fn serve_test_page(page: &'static str, scripts: Vec<(String, Vec<u8>)>) -> String {
    let mut app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    for (path, source) in scripts {
        let source = axum::body::Bytes::from(source);
        app = app.route(
            &path,
            axum::routing::get(move || async move {
                ([("content-type", "text/javascript")], source.clone())
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The page's URL with `config` as its fragment, percent-encoded.
pub(crate) fn page_url(page: &str, config: &Value) -> String {
    let fragment: String = config
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{page}/#{fragment}")
}

/// Property names that only rules carry: none may reach a browser.
const RULE_PROPERTIES: [&str; 9] = [
    "rules",
    "clauses",
    "targets",
    "contextTargets",
    "fallthrough",
    "offVariation",
    "variations",
    "salt",
    "included",
];

fn assert_no_rules(what: &str, text: &str) {
    for property in RULE_PROPERTIES {
        assert!(
            !text.contains(&format!("\"{property}\"")),
            "{what} carries rule data ({property}): {text}"
        );
    }
    assert!(
        !text.contains("@example.com"),
        "{what} leaks a clause value: {text}"
    );
}

#[test]
fn the_browser_sdk_gets_values_and_live_changes_but_never_rules() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let authority = Authority::new();
    let issued = authority.issue("flagstaff");
    let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert_path, &issued.certificate_pem).unwrap();
    std::fs::write(&key_path, &issued.key_pem).unwrap();
    let credentials = server::init(binary(), &data);
    let server = TestServer::start(
        binary(),
        &data,
        "127.0.0.1:0",
        &[
            "--sdk-heartbeat-seconds",
            "1",
            "--change-poll-ms",
            "200",
            &format!("--tls-cert={}", cert_path.display()),
            &format!("--tls-key={}", key_path.display()),
        ],
    );
    let base = format!("https://{}", server.address);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = Api::trusting(&base, &credentials.admin_token, &authority.pem());
    let env = rt.block_on(api.get("/projects/default/environments/production"));
    let client_side_id = env["clientSideId"].as_str().unwrap().to_owned();
    let targeting = |key: &str| format!("/projects/default/environments/production/flags/{key}");

    // `banner`: staff (by email domain) see "purple", everyone else "plain".
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "banner", "name": "Banner", "kind": "multivariate",
            "variations": [{"value": "plain"}, {"value": "purple"}],
            "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": true}}),
    ));
    let current = rt.block_on(api.get(&targeting("banner")));
    rt.block_on(api.put(
        &targeting("banner"),
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 0,
            "rules": [{"id": "staff", "variation": 1,
                "clauses": [{"attribute": "email", "op": "endsWith", "values": ["@example.com"]}]}]}),
        current["version"].as_u64(),
    ));
    // `checkout`: a boolean flag for browsers, off for now (false).
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "checkout", "name": "Checkout",
            "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": false}}),
    ));
    // `billing-engine`: not for browsers; the page must never see it.
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "billing-engine", "name": "Billing engine"}),
    ));

    let page = rt.block_on(serve_page());
    let mut browser = Browser::start_trusting(Some(&issued.spki_sha256));
    let staff = json!({"kind": "user", "key": "ann", "email": "ann@example.com"});
    let visitor = json!({"kind": "user", "key": "bob", "email": "bob@elsewhere.org"});
    let device =
        json!({"kind": "multi", "user": {"key": "cy"}, "device": {"key": "d-1", "os": "linux"}});
    let expectations = [
        ("staff", &staff, "purple"),
        ("visitor", &visitor, "plain"),
        ("device", &device, "plain"),
    ];
    for (id, context, banner) in expectations {
        let opened = browser.send(&json!({"cmd": "open", "id": id,
            "url": page_url(&page, &json!({"base": base, "clientSideId": client_side_id, "context": context}))}));
        assert_eq!(opened["ready"], json!(true), "{id}: {opened}");
        let flags = &browser.send(&json!({"cmd": "flags", "id": id}))["flags"];
        assert_eq!(
            flags,
            &json!({"banner": banner, "checkout": false}),
            "{id} sees its own values and only client-side flags"
        );
    }
    let details = browser.send(&json!({"cmd": "details", "id": "staff",
        "evaluations": [{"flagKey": "banner", "default": "none"}, {"flagKey": "billing-engine", "default": "none"}]}));
    assert_eq!(
        details["results"][0],
        json!({"value": "purple", "variationIndex": 1, "reason": {"kind": "RULE_MATCH", "ruleIndex": 0, "ruleId": "staff"}})
    );
    assert_eq!(details["results"][1]["value"], "none");

    // A change through the API reaches the open pages over their streams.
    let current = rt.block_on(api.get(&targeting("checkout")));
    rt.block_on(api.put(
        &targeting("checkout"),
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    for (id, _, _) in expectations {
        let reached = browser.send(&json!({"cmd": "waitFor", "id": id, "flagKey": "checkout",
            "value": true, "timeoutMs": 5000}));
        assert_eq!(
            reached["reached"],
            json!(true),
            "{id} receives the change live"
        );
    }
    // Switching context re-evaluates on the server.
    let identified = browser.send(&json!({"cmd": "identify", "id": "visitor", "context": staff}));
    assert_eq!(identified["flags"]["banner"], "purple");

    // What reached the pages: evaluated flags only, over polling and over the stream.
    for (id, _, _) in expectations {
        let received = browser.send(&json!({"cmd": "received", "id": id}));
        let responses = received["responses"].as_array().unwrap();
        assert!(
            responses
                .iter()
                .any(|r| r["url"].as_str().unwrap().contains("/sdk/evalx/")),
            "{id} polled: {received}"
        );
        for response in responses {
            assert_eq!(response["status"], 200, "{response}");
            assert_no_rules(id, response["body"].as_str().unwrap_or_default());
        }
        let events = received["events"].as_array().unwrap();
        assert!(
            events.iter().any(|e| e["name"] == "put"),
            "{id} streamed: {received}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["name"] == "patch" && e["data"].as_str().unwrap().contains("checkout")),
            "{id} received the change as a patch: {received}"
        );
        for event in events {
            let data = event["data"].as_str().unwrap_or_default();
            assert_no_rules(id, data);
            assert!(
                !data.contains("billing-engine"),
                "{id} saw a server-only flag"
            );
        }
    }

    // A server renders the page with the flags already in it: the evaluate endpoint's bootstrap
    // document, which the browser SDK accepts as is. With streaming off and the bootstrap
    // given, the page makes no request for flags at all.
    let (status, bootstrap) = rt.block_on(api.call(
        reqwest::Method::POST,
        "/projects/default/environments/production/evaluate",
        Some(&json!({"context": staff, "format": "bootstrap", "clientSideOnly": true, "withReasons": true})),
        None,
    ));
    assert_eq!(status, 200, "{bootstrap}");
    assert_eq!(bootstrap["$valid"], json!(true));
    assert_eq!(bootstrap["banner"], "purple");
    assert!(bootstrap.get("billing-engine").is_none());
    let config = json!({"base": base, "clientSideId": client_side_id, "context": staff,
        "bootstrap": bootstrap, "streaming": false});
    let opened = browser
        .send(&json!({"cmd": "open", "id": "bootstrapped", "url": page_url(&page, &config)}));
    assert_eq!(opened["ready"], json!(true), "{opened}");
    let flags = &browser.send(&json!({"cmd": "flags", "id": "bootstrapped"}))["flags"];
    assert_eq!(flags, &json!({"banner": "purple", "checkout": true}));
    let details = browser.send(&json!({"cmd": "details", "id": "bootstrapped",
        "evaluations": [{"flagKey": "banner", "default": "none"}]}));
    assert_eq!(details["results"][0]["reason"]["ruleId"], "staff");
    let received = browser.send(&json!({"cmd": "received", "id": "bootstrapped"}));
    assert!(
        !received["responses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["url"].as_str().unwrap().contains("/sdk/evalx/")),
        "a bootstrapped page does not ask for flags: {received}"
    );
    browser.send(&json!({"cmd": "quit"}));
    drop(server);
}

/// A click goal (issue 21, point 1): a metric with a browser goal is served on
/// `/sdk/goals/{clientSideId}`; LaunchDarkly's browser SDK then sends a `click` event when the
/// page's sign-up button is clicked, and those clicks are the conversions of an experiment on
/// a flag the same browsers evaluated.
#[test]
fn a_click_goal_counts_as_the_conversion_of_a_browser_experiment() {
    if !Browser::available() {
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(&base, &credentials.admin_token);
    let env = rt.block_on(api.get("/projects/default/environments/production"));
    let client_side_id = env["clientSideId"].as_str().unwrap().to_owned();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "signup-flow", "name": "Sign-up flow", "kind": "multivariate",
            "variations": [{"value": "long"}, {"value": "short"}],
            "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": false}}),
    ));
    let current =
        rt.block_on(api.get("/projects/default/environments/production/flags/signup-flow"));
    rt.block_on(api.put(
        "/projects/default/environments/production/flags/signup-flow",
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 0}),
        current["version"].as_u64(),
    ));
    let goal = json!({"kind": "click", "selector": "#signup",
        "urls": [{"kind": "substring", "substring": "127.0.0.1"}]});
    rt.block_on(api.post(
        "/projects/default/metrics",
        &json!({"key": "signed-up", "name": "Signed up", "kind": "conversion",
            "eventKey": "signup-click", "goal": goal}),
    ));
    let experiments = "/projects/default/environments/production/experiments";
    rt.block_on(api.post(
        experiments,
        &json!({"key": "short-signup", "name": "Short sign-up", "flag": "signup-flow",
            "metrics": ["signed-up"], "controlVariation": 0, "treatmentVariations": [1]}),
    ));
    rt.block_on(api.post(&format!("{experiments}/short-signup/start"), &json!(null)));

    let page = rt.block_on(serve_page());
    let mut browser = Browser::start_trusting(None);
    let mut served = [0_u64; 2];
    // At least eight visitors, and until both variations have two (the split is random).
    for i in 0..40 {
        if i >= 8 && served.iter().all(|n| *n >= 2) {
            break;
        }
        let id = format!("visitor-{i}");
        let context = json!({"kind": "user", "key": id});
        let opened = browser.send(&json!({"cmd": "open", "id": id,
            "url": page_url(&page, &json!({"base": base, "clientSideId": client_side_id, "context": context}))}));
        assert_eq!(opened["ready"], json!(true), "{id}: {opened}");
        let detail = &browser.send(&json!({"cmd": "details", "id": id,
            "evaluations": [{"flagKey": "signup-flow", "default": "long"}]}))["results"][0];
        assert_eq!(detail["reason"]["inExperiment"], true, "{detail}");
        let variation = detail["variationIndex"].as_u64().unwrap() as usize;
        served[variation] += 1;
        // Only the short form's visitors sign up.
        if variation == 1 {
            browser.send(&json!({"cmd": "click", "id": id, "selector": "#signup"}));
        }
        browser.send(&json!({"cmd": "flush", "id": id}));
        if i == 0 {
            let received = browser.send(&json!({"cmd": "received", "id": id}));
            let goals = received["responses"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["url"].as_str().unwrap().contains("/sdk/goals/"))
                .expect("the SDK fetched the goals")
                .clone();
            let mut expected = goal.clone();
            expected["key"] = json!("signup-click");
            assert_eq!(
                serde_json::from_str::<Value>(goals["body"].as_str().unwrap()).unwrap(),
                json!([expected])
            );
        }
    }
    let start = std::time::Instant::now();
    let results = loop {
        let results = rt.block_on(api.get(&format!("{experiments}/short-signup/results")));
        let exposures: Vec<u64> = results["variations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["exposures"].as_u64().unwrap())
            .collect();
        let converted = results["variations"][1]["metrics"][0]["mean"].as_f64() == Some(1.0);
        if exposures == served && converted {
            break results;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "results so far: {results}, served {served:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(results["variations"][0]["metrics"][0]["mean"], 0.0);
    browser.send(&json!({"cmd": "quit"}));
}

/// LaunchDarkly's browser SDK in chromium through a relay (issue 22): values, a change made on
/// the server arriving over the relay's stream, and secure mode enforced by the relay (a page
/// with a wrong hash gets nothing).
#[test]
fn the_browser_sdk_works_through_a_relay_with_secure_mode() {
    use flagstaff_testkit::relay::{RelayEnvironment, TestRelay};
    use hmac::Mac as _;
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(
        binary(),
        dir.path(),
        "127.0.0.1:0",
        &["--sdk-heartbeat-seconds", "1", "--change-poll-ms", "200"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(&server.base(), &credentials.admin_token);
    let env = rt.block_on(api.get("/projects/default/environments/production"));
    let client_side_id = env["clientSideId"].as_str().unwrap().to_owned();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "checkout", "name": "Checkout",
            "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": false}}),
    ));
    let relay_dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(
        binary(),
        relay_dir.path(),
        &server.base(),
        &[RelayEnvironment {
            project: "default".into(),
            key: "production".into(),
            sdk_key: credentials.sdk_key.clone(),
            client_side_id: Some(client_side_id.clone()),
            secure_mode: true,
        }],
    );
    let hash = |key: &str| {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(credentials.sdk_key.as_bytes()).unwrap();
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };

    let page = rt.block_on(serve_page());
    let mut browser = Browser::start();
    let ann = json!({"kind": "user", "key": "ann"});
    let config = json!({"base": relay.base(), "clientSideId": client_side_id, "context": ann,
        "hash": hash("ann")});
    let mut opened = json!(null);
    // The relay may still be fetching its first data (503, which the SDK does not retry at
    // start): open again until it has it.
    for _ in 0..20 {
        opened =
            browser.send(&json!({"cmd": "open", "id": "ann", "url": page_url(&page, &config)}));
        if opened["ready"] == json!(true) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(opened["ready"], json!(true), "{opened}");
    let flags = &browser.send(&json!({"cmd": "flags", "id": "ann"}))["flags"];
    assert_eq!(flags, &json!({"checkout": false}));

    // A change made on the server reaches the page over the relay's stream.
    let targeting = "/projects/default/environments/production/flags/checkout";
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    let reached = browser.send(
        &json!({"cmd": "waitFor", "id": "ann", "flagKey": "checkout",
        "value": true, "timeoutMs": 10000}),
    );
    assert_eq!(
        reached["reached"],
        json!(true),
        "the change arrives through the relay"
    );

    // Secure mode: a page that presents another context's hash gets no flags.
    let forged = json!({"base": relay.base(), "clientSideId": client_side_id,
        "context": {"kind": "user", "key": "mallory"}, "hash": hash("ann")});
    let opened =
        browser.send(&json!({"cmd": "open", "id": "mallory", "url": page_url(&page, &forged)}));
    assert_eq!(opened["ready"], json!(false), "{opened}");
    let received = browser.send(&json!({"cmd": "received", "id": "mallory"}));
    let evaluations: Vec<&Value> = received["responses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["url"].as_str().unwrap().contains("/sdk/evalx/"))
        .collect();
    assert!(!evaluations.is_empty(), "{received}");
    for response in evaluations {
        assert_ne!(response["status"], 200, "{response}");
    }

    // Client-side FDv2 through the relay, from its own state, with the same secure mode.
    let fdv2_poll = |hash: &str| -> (u16, Value) {
        rt.block_on(async {
            let response = reqwest::Client::new()
                .post(format!(
                    "{}/sdk/poll/eval?auth={client_side_id}&h={hash}",
                    relay.base()
                ))
                .header("Content-Type", "application/json")
                .body(ann.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or_default())
        })
    };
    let (status, body) = fdv2_poll(&hash("ann"));
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events[0]["data"]["payloads"][0]["intentCode"], "xfer-full");
    assert_eq!(events[1]["data"]["kind"], "flag-eval");
    assert_eq!(events[1]["data"]["key"], "checkout");
    assert_eq!(events[1]["data"]["object"]["value"], json!(true));
    let state = events.last().unwrap()["data"]["state"].as_str().unwrap();
    assert!(state.starts_with("fs1.r"), "a relay's lineage: {state}");
    assert_eq!(fdv2_poll(&hash("mallory")).0, 400);
    browser.send(&json!({"cmd": "quit"}));
    drop(relay);
    drop(server);
}
