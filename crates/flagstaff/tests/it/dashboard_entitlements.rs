//! Entitlements (issue 20): "give organization ACME single sign-on in Production", set from the
//! context's side in the dashboard, and seen by LaunchDarkly's Python SDK for a user of that
//! organization (and not for another organization); the form refuses without the typed key in
//! a critical environment, without CSRF, and for readers.

use std::path::Path;
use std::time::{Duration, Instant};

use flagstaff_testkit::sdk::{Browser, Driver, Sdk};
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::json;

use crate::dashboard::csrf_of;
use crate::dashboard_product::{signed_in, start};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_organization_is_given_a_feature_from_its_entitlements_and_the_python_sdk_sees_it() {
    if !Browser::available() || !Sdk::available() {
        return;
    }
    let started = start();
    let (credentials, base, rt, api) = started.parts();
    rt.block_on(async {
        signed_in(api, base, "support@example.com", "writer").await;
        api.post(
            "/projects/default/flags",
            &json!({"key": "sso", "name": "Single sign-on", "temporary": false}),
        )
        .await;
        api.put(
            "/projects/default/environments/production/flags/sso",
            &json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 1}}),
            Some(1),
        )
        .await;
    });
    let mut python = Driver::start(Sdk::Python);
    assert!(python.open("entitlements", &credentials.sdk_key, base, true));
    let acme_user =
        json!({"kind": "multi", "user": {"key": "ada"}, "organization": {"key": "acme"}});
    let globex_user =
        json!({"kind": "multi", "user": {"key": "bob"}, "organization": {"key": "globex"}});
    assert_eq!(
        python.value("entitlements", "sso", &acme_user, &json!("default")),
        json!(false)
    );

    let report = Browser::run_script(
        "entitlements.mjs",
        &json!({"base": base, "flag": "sso",
            "user": {"email": "support@example.com", "password": "correct horse battery"}}),
    );
    eprintln!("entitlements report: {report:#}");
    assert_eq!(report["before"], json!(["false", "false"]));
    assert_eq!(report["backAt"], "/projects/default/test");
    assert_eq!(report["after"], json!(["true", "false"]), "Production only");
    assert_eq!(report["reasonAfter"], "Individually targeted");
    assert_eq!(report["consoleErrors"], json!([]), "{report}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while python.value("entitlements", "sso", &acme_user, &json!("default")) != json!(true) {
        assert!(
            Instant::now() < deadline,
            "the Python SDK never saw the entitlement"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        python.value("entitlements", "sso", &globex_user, &json!("default")),
        json!(false),
        "another organization does not get it"
    );
    rt.block_on(async {
        let t = api
            .get("/projects/default/environments/production/flags/sso")
            .await;
        assert_eq!(
            t["contextTargets"],
            json!([{"contextKind": "organization", "values": ["acme"], "variation": 0}]),
            "{t}"
        );
        let audit = api.get("/audit?key=sso&kind=targeting").await;
        let last = audit["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["actor"], "member:support@example.com");
        assert_eq!(
            last["comment"],
            "entitlement: variation 1 for organization acme"
        );
    });
}

#[test]
fn the_entitlement_form_refuses_unconfirmed_forged_and_readers_changes() {
    let started = start();
    let (_, base, rt, api) = started.parts();
    rt.block_on(async {
        api.post(
            "/projects/default/flags",
            &json!({"key": "sso", "name": "SSO"}),
        )
        .await;
        let target = "/projects/default/flags/sso/target";
        let mut writer = signed_in(api, base, "w@example.com", "writer").await;
        let page = writer.get("/projects/default/test?env=production").await;
        let csrf = csrf_of(&page.body);
        let fields = |confirm: &'static str| {
            vec![
                ("csrf", csrf.clone()),
                ("env", "production".to_owned()),
                ("who", "organization:acme".to_owned()),
                ("variation", "0".to_owned()),
                ("confirm", confirm.to_owned()),
                ("back", "?env=production".to_owned()),
            ]
        };
        let unconfirmed = fields("");
        let unconfirmed: Vec<(&str, &str)> =
            unconfirmed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(writer.form(target, &unconfirmed).await.status, 400);
        let forged: Vec<(&str, &str)> = unconfirmed
            .iter()
            .filter(|(k, _)| *k != "csrf")
            .copied()
            .collect();
        assert_eq!(writer.form(target, &forged).await.status, 403);
        // An open redirect through `back` is not followed.
        let mut evil = fields("sso");
        evil.retain(|(k, _)| *k != "back");
        evil.push(("back", "//evil.example.com/".to_owned()));
        let evil: Vec<(&str, &str)> = evil.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let done = writer.form(target, &evil).await;
        assert_eq!(done.status, 303);
        assert!(
            done.location.starts_with("/projects/default/test"),
            "{}",
            done.location
        );
        // Nor a header split: a line break in `back` is not a header value (and must not panic).
        let mut split = fields("sso");
        split.retain(|(k, _)| *k != "back");
        split.push(("back", "?env=test\r\nSet-Cookie: x=1".to_owned()));
        let split: Vec<(&str, &str)> = split.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let done = writer.form(target, &split).await;
        assert_eq!(done.status, 303);
        assert_eq!(done.location, "/projects/default/test?env=production");
        let mut reader = signed_in(api, base, "r@example.com", "reader").await;
        let page = reader
            .get("/projects/default/test?env=production&kind=organization&key=acme")
            .await;
        assert!(
            !page.body.contains("entitle-sso"),
            "readers get no change form"
        );
        let csrf = csrf_of(&page.body);
        let refused = reader
            .form(
                target,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("who", "organization:globex"),
                    ("variation", "0"),
                ],
            )
            .await;
        assert_eq!(refused.status, 403);
        let t = api
            .get("/projects/default/environments/test/flags/sso")
            .await;
        assert_eq!(t["contextTargets"], json!([]), "the reader changed nothing");
        // Past 25 flags the cells offer no forms (a project of 1,000 flags would get 2,000 of
        // them); searching for the flag brings them back.
        for i in 0..25 {
            api.post(
                "/projects/default/flags",
                &json!({"key": format!("f{i:02}"), "name": "F"}),
            )
            .await;
        }
        let all = writer
            .get("/projects/default/test?env=production&kind=organization&key=acme")
            .await;
        assert!(!all.body.contains("entitle-"), "no forms on 26 flags");
        assert!(
            all.body.contains("earch for a flag above"),
            "and it says how to get them"
        );
        let one = writer
            .get("/projects/default/test?env=production&kind=organization&key=acme&q=sso")
            .await;
        assert!(one.body.contains("1 of 26 flags"));
        assert!(one.body.contains("data-testid=\"entitle-sso-production\""));
    });
}

#[test]
fn the_form_suggests_the_context_kinds_the_environment_has_seen() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(
        binary(),
        dir.path(),
        "127.0.0.1:0",
        &["--events-flush-ms", "50"],
    );
    let base = server.base();
    let rt = runtime();
    let api = Api::new(&base, &credentials.admin_token);
    rt.block_on(async {
        let mut writer = signed_in(&api, &base, "w@example.com", "writer").await;
        let page = writer.get("/projects/default/test?env=production").await;
        assert!(!page.body.contains("<option value=\"vehicle\">"));
        // An SDK reports a context of a kind of the customer's own.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let status = reqwest::Client::new()
            .post(format!("{base}/bulk"))
            .header("Authorization", &credentials.sdk_key)
            .header("Content-Type", "application/json")
            .header("X-LaunchDarkly-Event-Schema", "4")
            .body(
                json!([{"kind": "identify", "creationDate": now,
                    "context": {"kind": "vehicle", "key": "car-1"}}])
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = api
                .get("/projects/default/environments/production/contexts")
                .await;
            if seen.to_string().contains("car-1") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the context was not recorded: {seen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let page = writer.get("/projects/default/test?env=production").await;
        assert!(
            page.body.contains("<option value=\"vehicle\">"),
            "the kind seen is suggested"
        );
        assert!(
            page.body.contains("<option value=\"organization\">"),
            "and the common ones"
        );
    });
}
