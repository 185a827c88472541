//! Every context kind in the dashboard's editors (issue 20): organization targets set in the
//! targeting editor beside user targets, organization keys listed in the segment editor, both
//! through the review in headless chromium (`sdk-clients/browser/context_kinds.mjs`), and what
//! LaunchDarkly's Python SDK then serves: the user target still reached (through the
//! placeholder the editor adds), the organizations served by target and by segment.

use flagstaff_testkit::sdk::{Browser, Driver, Sdk};
use serde_json::{Value, json};

use crate::dashboard_product::{signed_in, start};

#[test]
fn organizations_are_targeted_and_listed_in_the_editors_and_sdks_serve_them() {
    assert!(
        Browser::available() && Sdk::available(),
        "chromium and the SDK clients are installed by sdk-clients/install"
    );
    let started = start();
    let (_, base, rt, api) = started.parts();
    let test = "/projects/default/environments/test";
    let sdk_key = rt.block_on(async {
        signed_in(api, base, "pm@example.com", "writer").await;
        api.post(
            "/projects/default/flags",
            &json!({"key": "beta-access", "name": "Beta access"}),
        )
        .await;
        api.put(
            &format!("{test}/flags/beta-access"),
            &json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 1},
                "targets": [{"values": ["ann"], "variation": 0}]}),
            Some(1),
        )
        .await;
        api.post(
            &format!("{test}/segments"),
            &json!({"key": "partners", "name": "Partners", "included": ["zed"]}),
        )
        .await;
        api.post(
            "/projects/default/flags",
            &json!({"key": "partner-portal", "name": "Partner portal"}),
        )
        .await;
        api.put(
            &format!("{test}/flags/partner-portal"),
            &json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 1},
                "rules": [{"id": "partners", "variation": 0, "clauses": [
                    {"attribute": "", "op": "segmentMatch", "values": ["partners"]}]}]}),
            Some(1),
        )
        .await;
        let rotated = api
            .post(&format!("{test}/keys/sdk/rotate"), &json!({}))
            .await;
        rotated["sdkKey"].as_str().unwrap().to_owned()
    });

    let report = Browser::run_script(
        "context_kinds.mjs",
        &json!({"base": base, "flag": "beta-access", "segment": "partners",
            "user": {"email": "pm@example.com", "password": "correct horse battery"}}),
    );
    eprintln!("context kinds report: {report:#}");
    assert_eq!(report["consoleErrors"], json!([]), "{report}");
    let offered: Vec<&str> = report["kindsOffered"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        offered.contains(&"organization") && offered.contains(&"device"),
        "{offered:?}"
    );
    assert!(
        report["kindProblem"]
            .as_str()
            .unwrap()
            .contains("is not a context kind"),
        "{report}"
    );
    assert!(
        report["flagReview"].as_str().unwrap().contains("acme"),
        "{report}"
    );
    assert_eq!(report["flagAfter"], "acme");
    assert_eq!(report["userAfter"], "ann");
    assert!(
        report["segmentReview"]
            .as_str()
            .unwrap()
            .contains("organization"),
        "{report}"
    );

    let (targeting, segment) = rt.block_on(async {
        (
            api.get(&format!("{test}/flags/beta-access")).await,
            api.get(&format!("{test}/segments/partners")).await,
        )
    });
    assert_eq!(
        targeting["targets"],
        json!([{"values": ["ann"], "variation": 0}])
    );
    let context_targets = targeting["contextTargets"].as_array().unwrap();
    assert!(
        context_targets
            .contains(&json!({"contextKind": "organization", "values": ["acme"], "variation": 0})),
        "{context_targets:?}"
    );
    assert!(
        context_targets.contains(&json!({"contextKind": "user", "values": [], "variation": 0})),
        "the user target keeps its placeholder: {context_targets:?}"
    );
    // Pasted twice, kept once.
    assert_eq!(
        segment["includedContexts"],
        json!([{"contextKind": "organization", "values": ["globex", "initech"]}])
    );
    assert_eq!(segment["included"], json!(["zed"]));

    let mut python = Driver::start(Sdk::Python);
    assert!(python.open("kinds", &sdk_key, base, true));
    let org = |key: &str| json!({"kind": "organization", "key": key});
    let user = |key: &str| json!({"kind": "user", "key": key});
    let mut value =
        |flag: &str, context: Value| python.value("kinds", flag, &context, &json!("default"));
    assert_eq!(value("beta-access", org("acme")), json!(true));
    assert_eq!(
        value("beta-access", user("ann")),
        json!(true),
        "the user target still counts"
    );
    assert_eq!(value("beta-access", user("bob")), json!(false));
    assert_eq!(value("beta-access", org("globex")), json!(false));
    assert_eq!(value("partner-portal", org("globex")), json!(true));
    assert_eq!(value("partner-portal", user("zed")), json!(true));
    assert_eq!(value("partner-portal", org("umbrella")), json!(false));
    python.close("kinds");
}
