//! LaunchDarkly's browser SDK v4 (npm `@launchdarkly/js-client-sdk`) with its FDv2 data system
//! (`dataSystem`) in headless Debian chromium against `flagstaff serve`, from a page on another
//! origin: it initializes from `/sdk/poll/eval`, streams from `/sdk/stream/eval` with the
//! basis its poll gave it, sees only the flags browsers may see, receives a change over the
//! stream, and obeys the environment's FDv1 fallback switch by moving to `/sdk/evalx`.

use flagstaff_testkit::sdk::Browser;
use flagstaff_testkit::workspace_root;
use serde_json::json;

use crate::browser::{page_url, serve_test_page};
use crate::ofrep_web::theme_flag;
use crate::sdks::fresh_server;

/// Serves the test page and the SDK's bundled module on a port of its own. Returns its base URL.
async fn serve_page() -> String {
    let module = std::fs::read(
        workspace_root()
            .join("sdk-clients/browser/node_modules/@launchdarkly/js-client-sdk/dist/index.js"),
    )
    .expect("the LaunchDarkly browser SDK v4 is installed");
    serve_test_page(
        include_str!("browser/fdv2.html"),
        vec![("/m/ld.js".to_owned(), module)],
    )
    .await
}

#[test]
fn the_browser_sdk_over_fdv2_streams_a_change_and_obeys_the_fallback_switch() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, api, _) = fresh_server(dir.path());
    let (rt, client_side_id, targeting) = theme_flag(&api);
    let base = server.base();
    let environment = "/projects/default/environments/production";
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "server-secret", "name": "Server only"}),
    ));
    let page = rt.block_on(serve_page());
    let config = json!({"base": base, "clientSideId": client_side_id,
        "context": {"kind": "user", "key": "alice", "country": "NZ"}});
    let report = Browser::run_script(
        "ld_fdv2.mjs",
        &json!({
            "url": page_url(&page, &config),
            "base": base,
            "api": format!("{base}/api/v1"),
            "token": api.token(),
            "targeting": targeting,
            "environment": environment,
            "change": {"on": true, "fallthrough": {"variation": 2}, "offVariation": 0},
            "expect": ["dark", "blue"],
        }),
    );
    println!("LaunchDarkly browser SDK over FDv2: {report}");
    assert_eq!(report["before"], "dark");
    assert_eq!(report["after"], "blue");
    // Only what browsers may see.
    assert_eq!(report["flags"], json!({"theme": "dark"}), "{report}");
    let requests: Vec<&str> = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let poll = requests
        .iter()
        .find(|r| r.starts_with("GET /sdk/poll/eval/"))
        .unwrap_or_else(|| panic!("the SDK initializes over FDv2: {report}"));
    assert!(poll.contains(&format!("auth={client_side_id}")), "{report}");
    // The stream starts from the basis the poll gave it.
    let stream = requests
        .iter()
        .find(|r| r.starts_with("GET /sdk/stream/eval/"))
        .unwrap_or_else(|| panic!("the SDK streams over FDv2: {report}"));
    assert!(stream.contains("basis=fs1."), "{report}");
    assert!(
        !requests
            .iter()
            .any(|r| r.contains("/sdk/evalx/") || r.starts_with("GET /eval/")),
        "no FDv1 before the switch: {report}"
    );
    // Nothing went wrong before the switch: no warning, no error, no fallback.
    let logs = |name: &str| -> Vec<String> {
        report[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        logs("logsBefore")
            .iter()
            .all(|l| l.starts_with("debug: ") || l.starts_with("info: ")),
        "{report}"
    );
    assert!(
        !logs("logsBefore")
            .iter()
            .any(|l| l.contains("FDv1") || l.contains("fdv1")),
        "{report}"
    );
    // The switch reached it in-band, as a goodbye on the open stream.
    assert!(
        logs("logs")
            .iter()
            .any(|l| l.contains("Goodbye") && l.contains("fdv1-fallback")),
        "{report}"
    );
    // After the switch the SDK polls FDv1, and still has its flags.
    assert!(
        report["fallbackRequests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r
                .as_str()
                .unwrap()
                .starts_with(&format!("GET /sdk/evalx/{client_side_id}/contexts/"))),
        "{report}"
    );
    assert_eq!(report["fallbackValue"], "blue");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
}
