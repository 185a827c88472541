//! OpenFeature's OFREP web provider (npm `@openfeature/ofrep-web-provider` 0.4, with the
//! OpenFeature web SDK, as published: ES modules through an import map) in headless Debian
//! chromium against `flagstaff serve`, from a page on another origin. Polling is off, so the
//! change made through the management API can only reach the page through the event stream
//! Flagstaff names in its bulk answer (OFREP ADR-0008): the provider re-fetches, with the
//! notification's `flagConfigEtag`, and the page shows the new value.

use flagstaff_testkit::sdk::Browser;
use flagstaff_testkit::server::Api;
use flagstaff_testkit::workspace_root;
use serde_json::json;

use crate::browser::{page_url, serve_test_page};
use crate::sdks::fresh_server;

/// Serves the test page and OpenFeature's modules on a port of its own. Returns its base URL.
async fn serve_page() -> String {
    let modules = workspace_root().join("sdk-clients/browser/node_modules/@openfeature");
    let scripts = [
        ("core", "core/dist/esm/index.js"),
        ("web-sdk", "web-sdk/dist/esm/index.js"),
        ("ofrep-core", "ofrep-core/index.esm.js"),
        ("ofrep-web-provider", "ofrep-web-provider/index.esm.js"),
    ]
    .into_iter()
    .map(|(name, file)| {
        let source =
            std::fs::read(modules.join(file)).expect("OpenFeature's web modules are installed");
        (format!("/m/{name}.js"), source)
    })
    .collect();
    serve_test_page(include_str!("browser/ofrep.html"), scripts).await
}

/// A runtime with several threads (the page server must answer while the test waits for the
/// browser), the environment's client-side ID, and flag `theme` (light, dark, blue), visible
/// to browsers and serving `dark`: its targeting path is the third value.
pub(crate) fn theme_flag(api: &Api) -> (tokio::runtime::Runtime, String, &'static str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
    (rt, client_side_id, targeting)
}

#[test]
fn the_ofrep_web_provider_receives_a_change_without_polling() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, api, _) = fresh_server(dir.path());
    let (rt, client_side_id, targeting) = theme_flag(&api);
    let base = server.base();
    let page = rt.block_on(serve_page());
    let config = json!({"base": base, "clientSideId": client_side_id,
        "context": {"targetingKey": "alice", "country": "NZ"}});
    let report = Browser::run_script(
        "ofrep_web.mjs",
        &json!({
            "url": page_url(&page, &config),
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
