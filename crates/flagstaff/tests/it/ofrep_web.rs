//! OpenFeature's OFREP web provider (npm `@openfeature/ofrep-web-provider` 0.4, with the
//! OpenFeature web SDK, as published: ES modules through an import map) in headless Debian
//! chromium against `flagstaff serve`, from a page on another origin. Polling is off, so the
//! change made through the management API can only reach the page through the event stream
//! Flagstaff names in its bulk answer (OFREP ADR-0008): the provider re-fetches, with the
//! notification's `flagConfigEtag`, and the page shows the new value.

use flagstaff_testkit::sdk::Browser;
use flagstaff_testkit::workspace_root;
use serde_json::json;

use crate::sdks::fresh_server;

/// Serves the test page and OpenFeature's modules on a port of its own. Returns its base URL.
async fn serve_page() -> String {
    let page = include_str!("browser/ofrep.html");
    let modules = workspace_root().join("sdk-clients/browser/node_modules/@openfeature");
    let mut app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    for (name, file) in [
        ("core", "core/dist/esm/index.js"),
        ("web-sdk", "web-sdk/dist/esm/index.js"),
        ("ofrep-core", "ofrep-core/index.esm.js"),
        ("ofrep-web-provider", "ofrep-web-provider/index.esm.js"),
    ] {
        let source =
            std::fs::read(modules.join(file)).expect("OpenFeature's web modules are installed");
        app = app.route(
            &format!("/m/{name}.js"),
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

#[test]
fn the_ofrep_web_provider_receives_a_change_without_polling() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, api, _) = fresh_server(dir.path());
    // Several threads: the page server must answer while the test waits for the browser.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = server.base();
    let environment = rt.block_on(api.get("/projects/default/environments/production"));
    let client_side_id = environment["clientSideId"].as_str().unwrap().to_owned();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "theme", "name": "Theme", "kind": "multivariate",
            "variations": [{"value": "light"}, {"value": "dark"}, {"value": "blue"}],
            "clientSideAvailability": {"usingEnvironmentId": true}}),
    ));
    let targeting = "/projects/default/environments/production/flags/theme";
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 1}, "offVariation": 0}),
        current["version"].as_u64(),
    ));
    let page = rt.block_on(serve_page());
    let config = json!({"base": base, "clientSideId": client_side_id,
        "context": {"targetingKey": "alice", "country": "NZ"}});
    let fragment: String = config
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let report = Browser::run_script(
        "ofrep_web.mjs",
        &json!({
            "url": format!("{page}/#{fragment}"),
            "api": format!("{base}/api/v1"),
            "token": api.token(),
            "targeting": targeting,
            "change": {"on": true, "fallthrough": {"variation": 2}, "offVariation": 0},
            "expect": ["dark", "blue"],
        }),
    );
    println!("OFREP web provider: {report}");
    assert_eq!(report["before"], "dark");
    assert_eq!(report["after"], "blue");
    let streams = report["eventStreams"].as_array().unwrap();
    assert!(
        streams[0]
            .as_str()
            .unwrap()
            .ends_with(&format!("/ofrep/v1/events/{client_side_id}")),
        "{report}"
    );
    // The first fetch, and the re-fetch the notification asked for, with its etag.
    let bulk = report["bulkRequests"].as_array().unwrap();
    assert!(bulk.len() >= 2, "{report}");
    assert!(
        bulk.iter()
            .skip(1)
            .any(|url| url.as_str().unwrap().contains("flagConfigEtag=")),
        "the re-fetch carries the notification's etag: {report}"
    );
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
}
