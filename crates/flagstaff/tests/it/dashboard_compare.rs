//! Compare a flag's targeting between environments and copy it (issue 20), in headless
//! chromium (`sdk-clients/browser/compare.mjs`) and over plain HTTP for what must be refused.

use flagstaff_testkit::sdk::Browser;
use serde_json::json;

use crate::dashboard::csrf_of;
use crate::dashboard_product::{sdk_data, signed_in, start};

#[test]
fn targeting_is_compared_and_copied_between_environments() {
    if !Browser::available() {
        return;
    }
    let started = start();
    let (credentials, base, rt, api) = started.parts();
    let user = json!({"email": "pm@example.com", "password": "correct horse battery"});
    rt.block_on(async {
        signed_in(api, base, "pm@example.com", "writer").await;
        api.post(
            "/projects/default/flags",
            &json!({"key": "checkout", "name": "Checkout"}),
        )
        .await;
        api.put(
            "/projects/default/environments/test/flags/checkout",
            &json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 1},
                "targets": [{"values": ["qa-1"], "variation": 0}],
                "rules": [{"id": "de", "variation": 0, "clauses": [
                    {"attribute": "country", "op": "in", "values": ["DE"]}]}]}),
            Some(1),
        )
        .await;
    });
    let report = Browser::run_script(
        "compare.mjs",
        &json!({"base": base, "user": user, "flag": "checkout"}),
    );
    eprintln!("compare report: {report:#}");
    assert_eq!(report["source"][0], "Targeting is ON");
    assert_eq!(report["target"][0], "Targeting is OFF");
    let diff = report["diff"].as_array().unwrap();
    assert!(
        diff.iter()
            .any(|l| l.as_str().unwrap().contains("country is one of \"DE\"")),
        "the diff shows the rule Production would get: {diff:?}"
    );
    assert!(
        report["refusal"]
            .as_str()
            .unwrap()
            .contains("type the flag key “checkout”"),
        "{report}"
    );
    assert_eq!(report["landedOn"], "?env=production");
    assert_eq!(
        report["consoleErrors"].as_array().unwrap().len(),
        1,
        "the refused copy's 400: {report}"
    );
    rt.block_on(async {
        let test = api
            .get("/projects/default/environments/test/flags/checkout")
            .await;
        let production = api
            .get("/projects/default/environments/production/flags/checkout")
            .await;
        for field in ["on", "offVariation", "fallthrough", "targets", "rules"] {
            assert_eq!(production[field], test[field], "{field} copied");
        }
        assert_ne!(
            production["salt"], test["salt"],
            "each environment keeps its own salt"
        );
        let audit = api.get("/audit?key=checkout&kind=targeting").await;
        let last = audit["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["scope"], "default/production");
        assert_eq!(last["comment"], "same as test");
        let (_, data) = sdk_data(base, &credentials.sdk_key).await;
        assert_eq!(
            data["flags"]["checkout"]["rules"][0]["clauses"][0]["values"],
            json!(["DE"])
        );
    });
}

#[test]
fn copying_targeting_refuses_readers_forgeries_stale_reviews_and_unknown_targets() {
    let started = start();
    let (_, base, rt, api) = started.parts();
    rt.block_on(async {
        api.post(
            "/projects/default/flags",
            &json!({"key": "checkout", "name": "Checkout"}),
        )
        .await;
        let copy = "/projects/default/flags/checkout/compare";
        let mut reader = signed_in(api, base, "r@example.com", "reader").await;
        let page = reader
            .get(&format!("{copy}?env=test&with=production"))
            .await;
        let csrf = csrf_of(&page.body);
        let fields = [
            ("env", "test"),
            ("with", "production"),
            ("version", "1"),
            ("confirm", "checkout"),
        ];
        let with_csrf = |csrf: &str| {
            let mut f: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
            f.push(("csrf", csrf.to_owned()));
            f
        };
        let reader_fields = with_csrf(&csrf);
        let reader_fields: Vec<(&str, &str)> = reader_fields
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(reader.form(copy, &reader_fields).await.status, 403);
        let mut writer = signed_in(api, base, "w@example.com", "writer").await;
        assert_eq!(
            writer.form(copy, &fields).await.status,
            403,
            "no CSRF token"
        );
        let page = writer
            .get(&format!("{copy}?env=test&with=production"))
            .await;
        let csrf = csrf_of(&page.body);
        // Production changed since the review (version 1 read): refused, nothing copied.
        api.put(
            "/projects/default/environments/production/flags/checkout",
            &json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 0}}),
            Some(1),
        )
        .await;
        let stale = with_csrf(&csrf);
        let stale: Vec<(&str, &str)> = stale.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = writer.form(copy, &stale).await;
        assert_eq!(refused.status, 400);
        assert!(
            refused.body.contains("changed since you reviewed the copy"),
            "{}",
            refused.body
        );
        let production = api
            .get("/projects/default/environments/production/flags/checkout")
            .await;
        assert_eq!(production["on"], true, "nothing copied");
        let unknown: Vec<(&str, &str)> = stale
            .iter()
            .map(|(k, v)| {
                if *k == "with" {
                    (*k, "nowhere")
                } else {
                    (*k, *v)
                }
            })
            .collect();
        assert_eq!(writer.form(copy, &unknown).await.status, 404);
    });
}
