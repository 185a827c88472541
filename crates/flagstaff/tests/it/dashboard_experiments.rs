//! Experiments and guarded rollouts in the dashboard (issue 21, point 6): a writer designs an
//! experiment from a flag's page (the flag filled in), a mistake keeps what was typed, the
//! experiment is started, its results page says what the SDK events show in words and bars,
//! and it is shipped; a reader sees it all and can act on none of it; the guarded rollout page
//! shows the timeline and pauses, resumes and aborts; every post needs the CSRF token.

use serde_json::json;

use crate::dashboard::csrf_of;
use crate::dashboard_product::signed_in;

#[test]
fn writers_run_an_experiment_and_a_guarded_rollout_from_the_dashboard() {
    let started = crate::dashboard_product::start();
    let (credentials, base, rt, api) = started.parts();
    rt.block_on(async {
        api.post(
            "/projects/default/flags",
            &json!({"key": "checkout", "name": "Checkout", "kind": "multivariate",
                "variations": [{"value": "old", "name": "Old checkout"}, {"value": "new", "name": "New checkout"}]}),
        )
        .await;
        let targeting = api
            .get("/projects/default/environments/production/flags/checkout")
            .await;
        api.put(
            "/projects/default/environments/production/flags/checkout",
            &json!({"on": true, "offVariation": 0, "fallthrough": {"variation": 0}}),
            targeting["version"].as_u64(),
        )
        .await;
        api.post(
            "/projects/default/metrics",
            &json!({"key": "purchased", "name": "Purchase rate", "kind": "conversion", "eventKey": "purchase"}),
        )
        .await;
        let mut pm = signed_in(api, base, "pm@example.com", "writer").await;
        let flag_page = pm
            .get("/projects/default/flags/checkout?env=production")
            .await;
        assert!(flag_page.body.contains("data-testid=\"flag-experiment\""));
        let form_page = pm
            .get("/projects/default/experiments?env=production&flag=checkout")
            .await;
        assert_eq!(form_page.status, 200);
        assert!(form_page.body.contains("<option value=\"checkout\" selected>"));
        let csrf = csrf_of(&form_page.body);
        let design = |metrics: &str| {
            vec![
                ("csrf", csrf.clone()),
                ("env", "production".to_owned()),
                ("name", "New checkout test".to_owned()),
                ("key", "checkout-test".to_owned()),
                ("flag", "checkout".to_owned()),
                ("control", "0".to_owned()),
                ("treatment", "1".to_owned()),
                ("metrics", metrics.to_owned()),
            ]
        };
        let wrong = design("nope");
        let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = pm.form("/projects/default/experiments", &wrong).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.body.contains("value=\"checkout-test\""));
        assert!(refused.body.contains("does not exist"), "{}", refused.body);
        let fields = design("purchased");
        let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let made = pm.form("/projects/default/experiments", &form).await;
        assert_eq!(made.status, 303, "{}", made.body);
        let page = pm
            .get("/projects/default/experiments/checkout-test?env=production")
            .await;
        assert!(page.body.contains("data-testid=\"start\""), "{}", page.body);
        let action = |csrf: &str| vec![("csrf", csrf.to_owned()), ("env", "production".to_owned())];
        let start_form = action(&csrf);
        let start: Vec<(&str, &str)> = start_form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Without the CSRF token nothing starts.
        let forged = pm
            .form("/projects/default/experiments/checkout-test/start", &start[1..])
            .await;
        assert_eq!(forged.status, 403);
        let begun = pm
            .form("/projects/default/experiments/checkout-test/start", &start)
            .await;
        assert_eq!(begun.status, 303, "{}", begun.body);
        let experiment = api
            .get("/projects/default/environments/production/experiments/checkout-test")
            .await;
        assert_eq!(experiment["status"], "running");

        // SDK events: 100 exposed per variation, 10 and 20 buying.
        let at = experiment["iterations"][0]["startedAt"].as_i64().unwrap() + 10;
        let mut events = Vec::new();
        for i in 0..200 {
            let variation = i % 2;
            let value = ["old", "new"][variation];
            let user = format!("u{i}");
            events.push(json!({"kind": "feature", "creationDate": at, "key": "checkout", "version": 3,
                "variation": variation, "value": value, "default": "old",
                "reason": {"kind": "FALLTHROUGH", "inExperiment": true},
                "context": {"kind": "user", "key": user}}));
            if (variation == 0 && i < 20) || (variation == 1 && i < 40) {
                events.push(json!({"kind": "custom", "creationDate": at + 1, "key": "purchase",
                    "contextKeys": {"user": user}}));
            }
        }
        let status = reqwest::Client::new()
            .post(format!("{base}/bulk"))
            .header("Authorization", &credentials.sdk_key)
            .header("Content-Type", "application/json")
            .header("X-LaunchDarkly-Event-Schema", "4")
            .body(serde_json::Value::Array(events).to_string())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
        let mut results = String::new();
        for _ in 0..100 {
            results = pm
                .get("/projects/default/experiments/checkout-test?env=production")
                .await
                .body;
            if results.contains("<td>100</td>") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(results.contains("data-testid=\"verdict\""), "{results}");
        assert!(results.contains("New checkout is better than Old checkout on Purchase rate"), "{results}");
        // 10.0 % and 20.0 %, each with its interval drawn.
        assert!(results.contains("<strong>10.0 %</strong>") && results.contains("<strong>20.0 %</strong>"), "{results}");
        assert_eq!(results.matches("<svg class=\"chart\"").count(), 2);
        assert!(!results.contains("data-testid=\"srm\""));

        // A reader sees the results and no buttons; a post of theirs is refused.
        let mut reader = signed_in(api, base, "rita@example.com", "reader").await;
        let seen = reader
            .get("/projects/default/experiments/checkout-test?env=production")
            .await;
        assert!(seen.body.contains("data-testid=\"verdict\""));
        assert!(!seen.body.contains("data-testid=\"stop\""));
        let reader_form = action(&csrf_of(&seen.body));
        let stop: Vec<(&str, &str)> = reader_form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let denied = reader
            .form("/projects/default/experiments/checkout-test/stop", &stop)
            .await;
        assert_eq!(denied.status, 403, "{}", denied.body);

        // Ship the treatment.
        let mut ship_form = action(&csrf);
        ship_form.push(("variation", "1".to_owned()));
        let ship: Vec<(&str, &str)> = ship_form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shipped = pm
            .form("/projects/default/experiments/checkout-test/ship", &ship)
            .await;
        assert_eq!(shipped.status, 303, "{}", shipped.body);
        let served = api
            .get("/projects/default/environments/production/flags/checkout")
            .await;
        assert_eq!(served["fallthrough"], json!({"variation": 1}));
        let after = pm
            .get("/projects/default/experiments/checkout-test?env=production")
            .await;
        assert!(after.body.contains("shipped New checkout"), "{}", after.body);

        // The guarded rollout page: none yet, then a plan in its first step.
        let none = pm
            .get("/projects/default/flags/checkout/guarded-rollout?env=production")
            .await;
        assert!(none.body.contains("No guarded rollout"));
        api.post(
            "/projects/default/metrics",
            &json!({"key": "errors", "name": "Errors", "kind": "count", "eventKey": "error", "successCriteria": "lower"}),
        )
        .await;
        // The start form offers the metric just defined.
        let form_page = pm
            .get("/projects/default/flags/checkout/guarded-rollout?env=production")
            .await;
        assert!(form_page.body.contains("data-testid=\"new-guarded-rollout\""));
        assert!(form_page.body.contains("<option value=\"errors\""));
        let plan_form = |steps: &str| {
            vec![
                ("csrf", csrf.clone()),
                ("env", "production".to_owned()),
                ("treatment", "0".to_owned()),
                ("steps", steps.to_owned()),
                ("minutes", "60".to_owned()),
                ("sample", "0".to_owned()),
                ("metric", "errors".to_owned()),
                ("tolerance", "10".to_owned()),
            ]
        };
        // A plan that never reaches everyone is refused, and what was typed stays.
        let fields = plan_form("10, 50");
        let wrong: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = pm
            .form("/projects/default/flags/checkout/guarded-rollout", &wrong)
            .await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.body.contains("value=\"10, 50\""), "{}", refused.body);
        let fields = plan_form("10, 100");
        let good: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let begun = pm
            .form("/projects/default/flags/checkout/guarded-rollout", &good)
            .await;
        assert_eq!(begun.status, 303, "{}", begun.body);
        let plan = api
            .get("/projects/default/environments/production/flags/checkout/guarded-rollout")
            .await;
        assert_eq!(plan["guards"], json!([{"metric": "errors", "tolerance": 0.1}]));
        assert_eq!(plan["steps"][0]["minDurationMs"], 3_600_000);
        assert_eq!(plan["controlVariation"], 1);
        let timeline = pm
            .get("/projects/default/flags/checkout/guarded-rollout?env=production")
            .await;
        assert!(timeline.body.contains("data-step=\"10\""), "{}", timeline.body);
        assert!(timeline.body.contains("data-testid=\"pause\""));
        let guarded = "/projects/default/flags/checkout/guarded-rollout";
        let paused = pm.form(&format!("{guarded}/pause"), &start).await;
        assert_eq!(paused.status, 303, "{}", paused.body);
        let plan = api
            .get("/projects/default/environments/production/flags/checkout/guarded-rollout")
            .await;
        assert_eq!(plan["status"], "paused");
        let denied = reader.form(&format!("{guarded}/abort"), &stop).await;
        assert_eq!(denied.status, 403);
        let aborted = pm.form(&format!("{guarded}/abort"), &start).await;
        assert_eq!(aborted.status, 303, "{}", aborted.body);
        let page = pm
            .get("/projects/default/flags/checkout/guarded-rollout?env=production")
            .await;
        assert!(page.body.contains("aborted by hand"), "{}", page.body);
        let served = api
            .get("/projects/default/environments/production/flags/checkout")
            .await;
        assert_eq!(served["fallthrough"], json!({"variation": 1}));
    });
}
