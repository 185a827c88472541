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

/// A server of its own for one test: its data folder, the first start's credentials, the
/// process, a runtime for async calls and an admin API client. Fields drop in order: the
/// process stops before its folder is removed.
pub(crate) struct Started {
    credentials: server::Credentials,
    base: String,
    rt: tokio::runtime::Runtime,
    api: Api,
    _server: TestServer,
    _dir: tempfile::TempDir,
}

impl Started {
    /// Everything a test uses, borrowed.
    pub(crate) fn parts(&self) -> (&server::Credentials, &str, &tokio::runtime::Runtime, &Api) {
        (&self.credentials, &self.base, &self.rt, &self.api)
    }
}

/// Initializes a data folder and starts `flagstaff serve` on it.
pub(crate) fn start() -> Started {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let api = Api::new(&base, &credentials.admin_token);
    Started {
        credentials,
        base,
        rt: runtime(),
        api,
        _server: server,
        _dir: dir,
    }
}

/// `/sdk/latest-all` as a server-side SDK reads it.
pub(crate) async fn sdk_data(base: &str, sdk_key: &str) -> (String, Value) {
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
    let started = start();
    let (credentials, base, rt, api) = started.parts();
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
    let (_, data) = rt.block_on(sdk_data(base, &credentials.sdk_key));
    assert_eq!(data["flags"]["checkout"]["on"], false, "SDKs see it off");
    let audit = rt.block_on(api.get("/audit?key=checkout&kind=targeting"));
    let last = audit["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "member:ops@example.com");
}

#[test]
fn numbers_typed_in_the_dashboard_reach_sdks_as_integers() {
    let started = start();
    let (credentials, base, rt, api) = started.parts();
    rt.block_on(async {
        api.post(
            "/members",
            &json!({"email": "ada@example.com", "name": "Ada", "role": "writer", "password": "correct horse battery"}),
        )
        .await;
        let mut ada = Visitor::new(base);
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
        let (text, data) = sdk_data(base, &credentials.sdk_key).await;
        assert_eq!(data["flags"]["sizes"]["variations"], json!([100, 1000, 10000, 2.5]));
        assert!(text.contains("[100,1000,10000,2.5]"), "integers on the wire: {text}");
        let shown = ada.get("/projects/default/flags/sizes?env=test").await;
        assert!(!shown.body.contains("1000.0"), "the page shows 1000, not 1000.0");
        let definition = api.get("/projects/default/flags/sizes").await;
        assert_eq!(definition["variations"][1]["value"].to_string(), "1000");
    });
}

#[test]
fn variations_are_reordered_and_removed_in_settings_and_targeting_follows() {
    if !Browser::available() {
        return;
    }
    let started = start();
    let (credentials, base, rt, api) = started.parts();
    let user = json!({"email": "pm@example.com", "password": "correct horse battery"});
    rt.block_on(async {
        api.post(
            "/members",
            &json!({"email": user["email"], "name": "PM", "role": "writer", "password": user["password"]}),
        )
        .await;
        api.post(
            "/projects/default/flags",
            &json!({"key": "colour", "name": "Colour", "kind": "multivariate", "variations": [
                {"value": "red"}, {"value": "green"}, {"value": "blue"}, {"value": "pink"}]}),
        )
        .await;
        api.put(
            "/projects/default/environments/production/flags/colour",
            &json!({"on": true, "offVariation": 0, "fallthrough": {"variation": 1},
                "rules": [{"id": "pro", "variation": 2, "clauses": [
                    {"attribute": "plan", "op": "in", "values": ["pro"]}]}]}),
            Some(1),
        )
        .await;
    });
    let report = Browser::run_script(
        "settings.mjs",
        &json!({"base": base, "flag": "colour", "user": user}),
    );
    eprintln!("settings report: {report:#}");
    assert_eq!(report["rowsAtStart"], 4);
    assert_eq!(report["overflowsAt390"], false, "{report}");
    let refusal = report["refusal"].as_str().unwrap();
    assert!(
        refusal.contains("variation 2 (\"green\")")
            && refusal.contains("the default rule in Production"),
        "the refusal says where green is served: {refusal}"
    );
    let review = report["review"].as_array().unwrap();
    for expected in [
        "Name changes from “Colour” to “Button colour”",
        "Variation 4 “pink” is removed",
        "Variation “blue” moves from position 3 to 1; targeting follows it",
        "Variation 1 “red” is named “Classic red”",
    ] {
        assert!(
            review.iter().any(|l| l == expected),
            "{expected:?} is in the review: {review:?}"
        );
    }
    assert_eq!(report["savedAt"], "/projects/default/flags/colour");
    assert_eq!(report["title"], "Button colour");
    // The refused save is answered 400 (the form again, with the error): the browser logs that
    // one response, and nothing else may fail.
    assert_eq!(
        report["consoleErrors"],
        json!(["Failed to load resource: the server responded with a status of 400 (Bad Request)"]),
        "{report}"
    );
    rt.block_on(async {
        let definition = api.get("/projects/default/flags/colour").await;
        assert_eq!(
            definition["variations"],
            json!([{"value": "blue"}, {"value": "red", "name": "Classic red"}, {"value": "green"}])
        );
        // Targeting followed: the rule still serves blue, the default rule green, off red.
        let t = api
            .get("/projects/default/environments/production/flags/colour")
            .await;
        assert_eq!(t["rules"][0]["variation"], 0);
        assert_eq!(t["fallthrough"]["variation"], 2);
        assert_eq!(t["offVariation"], 1);
        let (_, data) = sdk_data(base, &credentials.sdk_key).await;
        let flag = &data["flags"]["colour"];
        assert_eq!(flag["variations"], json!(["blue", "red", "green"]));
        assert_eq!(flag["rules"][0]["variation"], 0);
        let audit = api.get("/audit?key=colour").await;
        let last = audit["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["actor"], "member:pm@example.com");
        assert_eq!(last["comment"], "blue first");
    });
}

/// Signs `email` in (a member made by the admin token with `role`) and returns the visitor.
pub(crate) async fn signed_in(api: &Api, base: &str, email: &str, role: &str) -> Visitor {
    api.post(
        "/members",
        &json!({"email": email, "name": email, "role": role, "password": "correct horse battery"}),
    )
    .await;
    let mut visitor = Visitor::new(base);
    let page = visitor.get("/sign-in").await;
    let csrf = csrf_of(&page.body);
    let signed = visitor
        .form(
            "/sign-in",
            &[
                ("csrf", csrf.as_str()),
                ("email", email),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(signed.status, 303);
    visitor
}

#[test]
fn the_settings_form_refuses_readers_forged_posts_and_floods() {
    let started = start();
    let (_, base, rt, api) = started.parts();
    rt.block_on(async {
        api.post(
            "/projects/default/flags",
            &json!({"key": "sizes", "name": "Sizes", "kind": "multivariate", "variations": [
                {"value": 1}, {"value": 2}]}),
        )
        .await;
        let path = "/projects/default/flags/sizes/settings";
        // A reader sees no settings link and cannot save.
        let mut reader = signed_in(api, base, "reader@example.com", "reader").await;
        let flag_page = reader.get("/projects/default/flags/sizes").await;
        assert!(!flag_page.body.contains("flag-settings-link"));
        let page = reader.get(path).await;
        let csrf = csrf_of(&page.body);
        let refused = reader
            .form(
                path,
                &[
                    ("csrf", csrf.as_str()),
                    ("version", "1"),
                    ("name", "Stolen"),
                    ("value", "1"),
                    ("origin", "0"),
                    ("value", "2"),
                    ("origin", "1"),
                    ("op", "save"),
                ],
            )
            .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        // A writer's post without the CSRF token is refused before anything is read.
        let mut writer = signed_in(api, base, "writer@example.com", "writer").await;
        let forged = writer
            .form(
                path,
                &[("version", "1"), ("name", "Forged"), ("op", "save")],
            )
            .await;
        assert_eq!(forged.status, 403);
        // Ten thousand rows and a 1 MB name: at most 100 rows come back, the name is clipped,
        // and the answer stays small.
        let page = writer.get(path).await;
        let csrf = csrf_of(&page.body);
        let mut fields: Vec<(&str, String)> = vec![
            ("csrf", csrf.clone()),
            ("version", "1".into()),
            ("name", "n".repeat(1_000_000)),
        ];
        for i in 0..10_000 {
            fields.push(("value", i.to_string()));
        }
        fields.push(("op", "add".into()));
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let flooded = writer.form(path, &fields).await;
        assert!(
            flooded.status == 200 || flooded.status == 413,
            "{}",
            flooded.status
        );
        if flooded.status == 200 {
            assert_eq!(
                flooded
                    .body
                    .matches("data-testid=\"variation-row\"")
                    .count(),
                100
            );
            assert!(flooded.body.len() < 200_000, "{} bytes", flooded.body.len());
        }
        let definition = api.get("/projects/default/flags/sizes").await;
        assert_eq!(definition["name"], "Sizes", "nothing was saved");
    });
}

#[test]
fn projects_and_environments_are_made_in_the_dashboard() {
    if !Browser::available() {
        return;
    }
    let started = start();
    let (_, base, rt, api) = started.parts();
    let user = json!({"email": "admin@example.com", "password": "correct horse battery"});
    rt.block_on(api.post(
        "/members",
        &json!({"email": user["email"], "name": "Admin", "role": "admin", "password": user["password"]}),
    ));
    let report = Browser::run_script("projects.mjs", &json!({"base": base, "user": user}));
    eprintln!("projects report: {report:#}");
    // The keys are shown in the answer to the creation itself (they are not kept to show
    // later), so the address is still the form's.
    assert_eq!(report["afterCreate"], "/projects");
    let environments: Vec<String> = report["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            h.as_str()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(environments, vec!["Production", "Test"]);
    let revealed = report["revealed"].as_array().unwrap();
    assert_eq!(revealed.len(), 4, "SDK and mobile keys of both: {report}");
    assert_eq!(report["revealedForStaging"], 2);
    assert!(
        report["renamed"]
            .as_str()
            .unwrap()
            .starts_with("Staging EU"),
        "{report}"
    );
    assert_eq!(report["swatch"], "#22aa55");
    assert!(
        report["withFallback"]
            .as_str()
            .unwrap()
            .contains("FDv1 only"),
        "{report}"
    );
    assert_eq!(report["fallbackChecked"], true);
    assert!(
        !report["withoutFallback"]
            .as_str()
            .unwrap()
            .contains("FDv1 only"),
        "{report}"
    );
    assert!(
        report["wrongConfirmation"]
            .as_str()
            .unwrap()
            .contains("type its key “staging”"),
        "{report}"
    );
    assert_eq!(report["stillThere"], 1);
    assert_eq!(report["afterDelete"].as_array().unwrap().len(), 2);
    assert_eq!(report["switchedTo"], "/projects/default/flags");
    // One console error: the refused deletion is answered 400.
    assert_eq!(
        report["consoleErrors"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    rt.block_on(async {
        let listed = api.get("/projects/web-shop/environments").await;
        let keys: Vec<&str> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, vec!["production", "test"]);
        // The SDK key shown once serves its environment.
        let sdk_key = revealed
            .iter()
            .map(|k| k.as_str().unwrap())
            .find(|k| k.starts_with("sdk-"))
            .unwrap();
        let (_, data) = sdk_data(base, sdk_key).await;
        assert_eq!(data["flags"], json!({}));
    });
}

#[test]
fn project_and_environment_forms_refuse_writers_forgeries_and_unconfirmed_deletes() {
    let started = start();
    let (_, base, rt, api) = started.parts();
    rt.block_on(async {
        let mut writer = signed_in(api, base, "writer@example.com", "writer").await;
        let page = writer.get("/projects").await;
        assert_eq!(page.status, 200);
        assert!(
            !page.body.contains("new-project"),
            "writers see no create form"
        );
        let csrf = csrf_of(&page.body);
        let made = writer
            .form("/projects", &[("csrf", csrf.as_str()), ("name", "Mine")])
            .await;
        assert_eq!(made.status, 403);
        let env = writer
            .form(
                "/projects/default/environments",
                &[("csrf", csrf.as_str()), ("name", "Mine")],
            )
            .await;
        assert_eq!(env.status, 403);
        let deleted = writer
            .form(
                "/projects/default/environments/test/delete",
                &[("csrf", csrf.as_str()), ("confirm", "test")],
            )
            .await;
        assert_eq!(deleted.status, 403);
        let mut admin = signed_in(api, base, "admin@example.com", "admin").await;
        let page = admin.get("/projects").await;
        let csrf = csrf_of(&page.body);
        // No CSRF token: refused before anything is read.
        let forged = admin
            .form(
                "/projects/default/manage",
                &[("action", "delete"), ("confirm", "default")],
            )
            .await;
        assert_eq!(forged.status, 403);
        // Without the typed key, nothing is deleted.
        let unconfirmed = admin
            .form(
                "/projects/default/manage",
                &[
                    ("csrf", csrf.as_str()),
                    ("action", "delete"),
                    ("confirm", "DEFAULT"),
                ],
            )
            .await;
        assert_eq!(unconfirmed.status, 400);
        assert!(unconfirmed.body.contains("type its key “default” exactly"));
        // A 5,000-character key is refused without being echoed back whole.
        let long = "k".repeat(5000);
        let refused = admin
            .form(
                "/projects",
                &[
                    ("csrf", csrf.as_str()),
                    ("name", "Long"),
                    ("key", long.as_str()),
                ],
            )
            .await;
        assert_eq!(refused.status, 400);
        // The form shows it again only up to the field's length (100).
        assert!(
            !refused.body.contains(&"k".repeat(101)),
            "the key is not echoed whole"
        );
        assert_eq!(api.get("/projects/default").await["key"], "default");
        assert_eq!(
            api.get("/projects/default/environments/test").await["key"],
            "test"
        );
    });
}

#[test]
fn flags_are_toggled_from_the_list_and_critical_ones_need_the_typed_key() {
    let started = start();
    let (credentials, base, rt, api) = started.parts();
    rt.block_on(async {
        api.post(
            "/projects/default/flags",
            &json!({"key": "checkout", "name": "Checkout"}),
        )
        .await;
        let mut writer = signed_in(api, base, "writer@example.com", "writer").await;
        let list = writer.get("/projects/default/flags?env=test").await;
        assert!(list.body.contains("data-testid=\"toggle-checkout-test\""));
        assert!(
            list.body
                .contains("data-testid=\"toggle-checkout-production\"")
        );
        let csrf = csrf_of(&list.body);
        let toggle = "/projects/default/flags/checkout/toggle";
        // Test is not critical: one post turns it on, and the list is where it comes back to.
        let on = writer
            .form(
                toggle,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("on", "true"),
                    ("back", "list"),
                ],
            )
            .await;
        assert_eq!(on.status, 303, "{}", on.body);
        assert_eq!(
            on.location,
            "/projects/default/flags?env=test#flag-checkout"
        );
        // The test environment's SDK key (keys are shown once: rotated to read one).
        let rotated = api
            .post(
                "/projects/default/environments/test/keys/sdk/rotate",
                &json!({}),
            )
            .await;
        let test_key = rotated["sdkKey"].as_str().unwrap().to_owned();
        let (_, data) = sdk_data(base, &test_key).await;
        assert_eq!(
            data["flags"]["checkout"]["on"], true,
            "SDKs see it on in test"
        );
        // Production is critical: the list links to the confirmation; without the key nothing
        // changes.
        let page = writer
            .get(&format!("{toggle}?env=production&on=true&back=list"))
            .await;
        assert!(page.body.contains("Turn on in Production"), "{}", page.body);
        let refused = writer
            .form(
                toggle,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "production"),
                    ("on", "true"),
                    ("confirm", "check"),
                ],
            )
            .await;
        assert_eq!(refused.status, 400);
        let production = api
            .get("/projects/default/environments/production/flags/checkout")
            .await;
        assert_eq!(production["on"], false, "nothing changed");
        let confirmed = writer
            .form(
                toggle,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "production"),
                    ("on", "true"),
                    ("confirm", "checkout"),
                    ("comment", "launch"),
                ],
            )
            .await;
        assert_eq!(confirmed.status, 303);
        let (_, data) = sdk_data(base, &credentials.sdk_key).await;
        assert_eq!(
            data["flags"]["checkout"]["on"], true,
            "SDKs see it on in production"
        );
        let audit = api.get("/audit?key=checkout&kind=targeting").await;
        let last = audit["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (last["actor"].as_str(), last["comment"].as_str()),
            (Some("member:writer@example.com"), Some("launch"))
        );
        // A reader sees states, not toggles, and cannot post one; a forged post is refused.
        let mut reader = signed_in(api, base, "reader@example.com", "reader").await;
        let list = reader.get("/projects/default/flags?env=test").await;
        assert!(!list.body.contains("toggle-checkout"));
        let csrf = csrf_of(&list.body);
        let refused = reader
            .form(
                toggle,
                &[("csrf", csrf.as_str()), ("env", "test"), ("on", "false")],
            )
            .await;
        assert_eq!(refused.status, 403);
        let forged = writer
            .form(toggle, &[("env", "test"), ("on", "false")])
            .await;
        assert_eq!(forged.status, 403);
        let (_, data) = sdk_data(base, &test_key).await;
        assert_eq!(data["flags"]["checkout"]["on"], true, "still on in test");
    });
}

#[test]
fn a_context_is_built_in_a_form_and_the_history_is_filtered_in_local_time() {
    if !Browser::available() {
        return;
    }
    let started = start();
    let (_, base, rt, api) = started.parts();
    let user = json!({"email": "pm@example.com", "password": "correct horse battery"});
    rt.block_on(async {
        let mut pm = signed_in(api, base, "pm@example.com", "writer").await;
        api.post("/projects/default/flags", &json!({"key": "sso", "name": "Single sign-on"}))
            .await;
        // The member gives org acme SSO in production (a targeting change by them); the admin
        // token changes test (by someone else).
        let page = pm.get("/projects/default/flags/sso?env=production").await;
        let csrf = csrf_of(&page.body);
        let proposal = json!({"environment": "production", "version": 1, "comment": "ACME bought SSO",
            "targeting": {"on": true, "offVariation": 1, "fallthrough": {"variation": 1},
                "contextTargets": [{"contextKind": "organization", "values": ["acme"], "variation": 0}]}});
        let saved = pm
            .json("/projects/default/flags/sso/targeting", &proposal, Some(&csrf), None)
            .await;
        assert_eq!(saved.status, 200, "{}", saved.body);
        api.put(
            "/projects/default/environments/test/flags/sso",
            &json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 1}}),
            Some(1),
        )
        .await;
    });
    let report = Browser::run_script(
        "context_history.mjs",
        &json!({"base": base, "user": user, "flag": "sso"}),
    );
    eprintln!("context and history report: {report:#}");
    assert_eq!(report["columns"], json!(["Flag", "Production", "Test"]));
    assert_eq!(
        report["served"],
        json!(["true", "false"]),
        "acme has SSO in production only"
    );
    assert_eq!(
        report["reasons"],
        json!([
            "Individually targeted",
            "No target or rule matched: the default rule"
        ])
    );
    assert_eq!(
        report["builtJson"],
        json!({"kind": "multi", "user": {"key": "ada", "country": "DE", "age": 42},
            "organization": {"key": "acme"}})
    );
    assert!(report["allChanges"].as_u64().unwrap() >= 4, "{report}");
    assert_eq!(report["filteredChanges"], 1, "{report}");
    assert_eq!(report["filteredActors"], json!(["pm@example.com"]));
    let local = report["localTime"].as_str().unwrap();
    assert!(
        local.contains("EST") || local.contains("GMT-5"),
        "New York time: {local}"
    );
    assert!(
        report["utcTitle"].as_str().unwrap().ends_with(" UTC"),
        "{report}"
    );
    assert!(
        report["restoreComment"]
            .as_str()
            .unwrap()
            .starts_with("Restored from change #"),
        "{report}"
    );
    assert_eq!(report["consoleErrors"], json!([]), "{report}");
}

#[test]
fn an_invalid_regex_is_said_where_it_is_typed() {
    if !Browser::available() {
        return;
    }
    let started = start();
    let (_, base, rt, api) = started.parts();
    rt.block_on(async {
        signed_in(api, base, "pm@example.com", "writer").await;
        api.post(
            "/projects/default/flags",
            &json!({"key": "checkout", "name": "Checkout"}),
        )
        .await;
    });
    let report = Browser::run_script(
        "regex.mjs",
        &json!({"base": base, "flag": "checkout",
            "user": {"email": "pm@example.com", "password": "correct horse battery"}}),
    );
    eprintln!("regex report: {report:#}");
    assert_eq!(report["invalid"], "true");
    assert_eq!(report["shown"], true);
    let message = report["message"].as_str().unwrap();
    assert!(
        message.starts_with("“([a-z” is not a regular expression"),
        "{message}"
    );
    assert_eq!(report["invalidAfterFix"], serde_json::Value::Null);
    assert_eq!(report["shownAfterFix"], false);
    assert_eq!(report["consoleErrors"], json!([]), "{report}");
}
