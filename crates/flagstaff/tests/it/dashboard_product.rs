//! The dashboard as a product for people who are not developers (issue 20): the kill switch by
//! keyboard alone in headless chromium (`sdk-clients/browser/killswitch.mjs`), checked where
//! SDKs read; numbers typed into the dashboard reach SDKs as the integers they are.

use std::path::Path;

use flagstaff_testkit::sdk::Browser;
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::{Value, json};

use crate::dashboard::{Visitor, csrf_of};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `/sdk/latest-all` as a server-side SDK reads it.
async fn sdk_data(base: &str, sdk_key: &str) -> (String, Value) {
    let text = reqwest::Client::new()
        .get(format!("{base}/sdk/latest-all"))
        .header("authorization", sdk_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

#[test]
fn a_production_flag_is_turned_off_by_keyboard_alone() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let rt = runtime();
    let api = Api::new(&base, &credentials.admin_token);
    let user = json!({"email": "ops@example.com", "password": "correct horse battery"});
    rt.block_on(async {
        api.post(
            "/members",
            &json!({"email": user["email"], "name": "Ops", "role": "writer", "password": user["password"]}),
        )
        .await;
        api.post("/projects/default/flags", &json!({"key": "checkout", "name": "Checkout"}))
            .await;
        api.put(
            "/projects/default/environments/production/flags/checkout",
            &json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 0}}),
            Some(1),
        )
        .await;
    });
    let report = Browser::run_script(
        "killswitch.mjs",
        &json!({"base": base, "flag": "checkout", "user": user}),
    );
    eprintln!("kill switch report: {report:#}");
    assert_eq!(report["stateBefore"], "ON");
    assert_eq!(
        report["hiddenTabs"],
        json!([]),
        "the header fits 1280 px: {report}"
    );
    assert_eq!(report["overflows"], false, "{report}");
    assert_eq!(report["toggleLabel"], "Turn off in Production");
    assert_eq!(report["focusInDialog"], "review-confirm", "{report}");
    assert_eq!(report["saveLabel"], "Turn off in Production");
    assert_eq!(report["focusAfterEscape"], "toggle", "{report}");
    assert_eq!(report["openAfterWrongKey"], true, "{report}");
    assert_eq!(report["stateAfter"], "OFF");
    assert_eq!(report["consoleErrors"], json!([]), "{report}");
    let (_, data) = rt.block_on(sdk_data(&base, &credentials.sdk_key));
    assert_eq!(data["flags"]["checkout"]["on"], false, "SDKs see it off");
    let audit = rt.block_on(api.get("/audit?key=checkout&kind=targeting"));
    let last = audit["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "member:ops@example.com");
}

#[test]
fn numbers_typed_in_the_dashboard_reach_sdks_as_integers() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let rt = runtime();
    let api = Api::new(&base, &credentials.admin_token);
    rt.block_on(async {
        api.post(
            "/members",
            &json!({"email": "ada@example.com", "name": "Ada", "role": "writer", "password": "correct horse battery"}),
        )
        .await;
        let mut ada = Visitor::new(&base);
        let page = ada.get("/sign-in").await;
        let csrf = csrf_of(&page.body);
        let signed = ada
            .form(
                "/sign-in",
                &[("csrf", csrf.as_str()), ("email", "ada@example.com"), ("password", "correct horse battery")],
            )
            .await;
        assert_eq!(signed.status, 303);
        let page = ada.get("/projects/default/flags-new").await;
        let csrf = csrf_of(&page.body);
        let made = ada
            .form(
                "/projects/default/flags",
                &[
                    ("csrf", csrf.as_str()),
                    ("name", "Sizes"),
                    ("key", "sizes"),
                    ("kind", "multivariate"),
                    ("value_type", "number"),
                    ("variations", "100\n1000\n10000\n2.5"),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        let (text, data) = sdk_data(&base, &credentials.sdk_key).await;
        assert_eq!(data["flags"]["sizes"]["variations"], json!([100, 1000, 10000, 2.5]));
        assert!(text.contains("[100,1000,10000,2.5]"), "integers on the wire: {text}");
        let shown = ada.get("/projects/default/flags/sizes?env=test").await;
        assert!(!shown.body.contains("1000.0"), "the page shows 1000, not 1000.0");
        let definition = api.get("/projects/default/flags/sizes").await;
        assert_eq!(definition["variations"][1]["value"].to_string(), "1000");
    });
}
