//! Experiments over the API (issue 21, points 2–4): design, validation with the field named,
//! start (the audience becomes an experiment rollout through an audited targeting change),
//! exposures and metric events taken from SDK payloads through the events pipeline, results,
//! stop, a second iteration, ship, delete; and the attack paths.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApi;

const EXPERIMENTS: &str = "/api/v1/projects/default/environments/production/experiments";

async fn world() -> TestApi {
    let api = TestApi::with_insights().await;
    let made = api
        .post(
            "/api/v1/projects/default/flags",
            json!({"key": "checkout", "name": "Checkout", "kind": "multivariate", "variations": [
                {"value": "old", "name": "Old checkout"}, {"value": "new", "name": "New checkout"},
                {"value": "other"}]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let on = api
        .patch(
            "/api/v1/projects/default/environments/production/flags/checkout",
            "\"1\"",
            json!([{"op": "replace", "path": "/on", "value": true},
                   {"op": "replace", "path": "/fallthrough", "value": {"variation": 0}}]),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    for metric in [
        json!({"key": "purchased", "name": "Purchase rate", "kind": "conversion", "eventKey": "purchase"}),
        json!({"key": "revenue", "name": "Revenue", "kind": "numeric", "eventKey": "purchase", "unit": "EUR"}),
    ] {
        let made = api.post("/api/v1/projects/default/metrics", metric).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }
    api
}

fn design() -> Value {
    json!({"key": "new-checkout", "name": "New checkout", "flag": "checkout",
           "hypothesis": "The new checkout sells more",
           "metrics": ["purchased", "revenue"], "controlVariation": 0,
           "treatmentVariations": [1], "audience": "fallthrough"})
}

async fn targeting(api: &TestApi) -> Value {
    api.get("/api/v1/projects/default/environments/production/flags/checkout")
        .await
        .body
}

/// Sends one SDK payload for production as the Python SDK would.
async fn send(api: &TestApi, events: Value) {
    let source = flagstaff_app::intake::EventSource {
        environment: std::sync::Arc::from("default/production"),
        sdk: flagstaff_app::intake::SdkIdentity::from_headers(
            Some("PythonClient/9.18.2"),
            None,
            None,
        ),
        schema: 4,
        unsummarized: false,
        server_side: true,
        received_at: api.app.now_millis(),
    };
    api.app
        .ingest_events(source, events.to_string().as_bytes(), false, None)
        .expect("a well-formed payload");
    api.pipeline.as_ref().expect("pipeline").flush().await;
}

fn exposure(user: &str, variation: u32, at: i64) -> Value {
    let value = ["old", "new"][variation as usize];
    json!({"kind": "feature", "creationDate": at, "key": "checkout", "version": 3,
           "variation": variation, "value": value, "default": "old",
           "reason": {"kind": "FALLTHROUGH", "inExperiment": true},
           "context": {"kind": "user", "key": user}})
}

fn purchase(user: &str, value: f64, at: i64) -> Value {
    json!({"kind": "custom", "creationDate": at, "key": "purchase",
           "contextKeys": {"user": user}, "metricValue": value})
}

fn refused(reply: &crate::support::Reply) -> (u16, String, String) {
    (
        reply.status.as_u16(),
        reply.body["code"].as_str().unwrap_or_default().to_owned(),
        reply.body["field"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn an_experiment_runs_from_design_to_shipped_with_its_results_from_sdk_events() {
    let api = world().await;
    let made = api.post(EXPERIMENTS, design()).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["status"], "notStarted");
    assert_eq!(made.body["weights"], json!([50.0, 50.0]));
    assert_eq!(made.body["primaryMetric"], "purchased");
    assert_eq!(made.body["randomizationUnit"], "user");
    let listed = api.get(EXPERIMENTS).await;
    assert_eq!(listed.body["items"][0]["key"], "new-checkout");

    // Results before the start: nothing to show, said clearly.
    let early = api
        .get(&format!("{EXPERIMENTS}/new-checkout/results"))
        .await;
    assert_eq!(refused(&early).0, 409);
    assert_eq!(refused(&early).1, "invalid_state");

    let started = api
        .call(
            Method::POST,
            &format!("{EXPERIMENTS}/new-checkout/start"),
            Some(api.admin()),
            &[("x-flagstaff-comment", "Q4 checkout test")],
            None,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    assert_eq!(started.body["status"], "running");
    let iteration = &started.body["iterations"][0];
    assert_eq!(iteration["number"], 1);
    assert_eq!(iteration["previousServe"], json!({"variation": 0}));
    // The fallthrough is now an experiment rollout of the two arms, 50/50, with the
    // iteration's seed; what SDKs receive is an ordinary targeting change.
    let served = targeting(&api).await;
    let rollout = &served["fallthrough"]["rollout"];
    assert_eq!(rollout["kind"], "experiment", "{served}");
    assert_eq!(rollout["contextKind"], "user");
    assert_eq!(
        rollout["variations"],
        json!([{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}])
    );
    assert_eq!(rollout["seed"], iteration["seed"]);
    let audit = api
        .get("/api/v1/audit?kind=targeting&scope=default/production&key=checkout")
        .await;
    let text = audit.body.to_string();
    assert!(
        text.contains("Q4 checkout test") && text.contains("Start experiment"),
        "{text}"
    );
    let again = api
        .post(&format!("{EXPERIMENTS}/new-checkout/start"), json!(null))
        .await;
    assert_eq!(refused(&again).1, "invalid_state", "{}", again.body);
    // A running experiment's design and existence are fixed.
    let version = api
        .get(&format!("{EXPERIMENTS}/new-checkout"))
        .await
        .etag
        .unwrap();
    let edit = api
        .put(&format!("{EXPERIMENTS}/new-checkout"), &version, design())
        .await;
    assert_eq!(refused(&edit).1, "invalid_state");
    let delete = api
        .call(
            Method::DELETE,
            &format!("{EXPERIMENTS}/new-checkout"),
            Some(api.admin()),
            &[("if-match", &version)],
            None,
        )
        .await;
    assert_eq!(refused(&delete).1, "invalid_state");

    // SDK events: 40 users in control (8 buy), 40 in treatment (14 buy); a purchase before
    // exposure, a repeated exposure, an evaluation outside the experiment and another
    // environment's events must not count as outcomes.
    // Times relative to the iteration's start, so that nothing depends on how fast this runs:
    // events before the start are not the iteration's.
    let now = iteration["startedAt"].as_i64().unwrap() + 20;
    let mut events = Vec::new();
    let mut expected = [(0_u32, 0_u32, 0.0_f64); 2];
    for i in 0..80 {
        let user = format!("u{i}");
        let variation = (i % 2) as u32;
        // u0 bought once before it was exposed: its pre-exposure value, not an outcome.
        if i == 0 {
            events.push(purchase(&user, 99.0, now - 10));
            events.push(purchase(&user, 99.0, now - 30));
        }
        events.push(exposure(&user, variation, now));
        events.push(exposure(&user, variation, now + 5));
        let buys = if variation == 0 { i < 16 } else { i < 28 };
        expected[variation as usize].0 += 1;
        if buys {
            events.push(purchase(&user, 10.0 + i as f64, now + 20));
            expected[variation as usize].1 += 1;
            expected[variation as usize].2 += 10.0 + i as f64;
        }
    }
    events.push(
        json!({"kind": "feature", "creationDate": now, "key": "checkout", "version": 3,
        "variation": 1, "value": "new", "default": "old", "reason": {"kind": "FALLTHROUGH"},
        "context": {"kind": "user", "key": "outsider"}}),
    );
    send(&api, Value::Array(events)).await;

    let results = api
        .get(&format!("{EXPERIMENTS}/new-checkout/results"))
        .await;
    assert_eq!(results.status, StatusCode::OK, "{}", results.body);
    let variations = results.body["variations"].as_array().unwrap();
    assert_eq!(variations.len(), 2);
    assert_eq!(variations[0]["name"], "Old checkout");
    assert_eq!(variations[0]["control"], true);
    for (v, (exposed, converted, revenue)) in expected.iter().enumerate() {
        let variation = &variations[v];
        assert_eq!(variation["exposures"], *exposed, "{variation}");
        let purchased = &variation["metrics"][0];
        assert_eq!(purchased["metric"], "purchased");
        let rate = f64::from(*converted) / f64::from(*exposed);
        assert!(
            (purchased["mean"].as_f64().unwrap() - rate).abs() < 1e-9,
            "{purchased}"
        );
        let per_user = revenue / f64::from(*exposed);
        let revenue_result = &variation["metrics"][1];
        assert!(
            (revenue_result["mean"].as_f64().unwrap() - per_user).abs() < 1e-9,
            "{revenue_result}"
        );
    }
    // u0's pre-exposure purchase (not the one before the iteration started) is the covariate
    // CUPED uses for revenue.
    assert!(
        variations[1]["metrics"][1]["varianceReduction"].is_number(),
        "{}",
        variations[1]
    );
    let treatment = &variations[1]["metrics"][0];
    for field in [
        "relativeLift",
        "pValue",
        "adjustedPValue",
        "probabilityToBeatControl",
        "expectedLoss",
    ] {
        assert!(treatment[field].is_number(), "{field} in {treatment}");
    }
    assert!(treatment["sequential"]["excludesZero"].is_boolean());
    assert_eq!(results.body["srm"]["detected"], false);
    assert!(
        results.body["verdict"]
            .as_str()
            .unwrap()
            .contains("Purchase rate")
    );
    let first_results = results.body.clone();

    // Stop: the same split as a plain rollout, nobody's variation changes; results stay.
    let stopped = api
        .post(&format!("{EXPERIMENTS}/new-checkout/stop"), json!(null))
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(stopped.body["status"], "stopped");
    let served = targeting(&api).await;
    let rollout = &served["fallthrough"]["rollout"];
    assert!(rollout.get("kind").is_none(), "{served}");
    assert_eq!(rollout["seed"], iteration["seed"]);
    let after = api
        .get(&format!("{EXPERIMENTS}/new-checkout/results"))
        .await;
    assert_eq!(after.body["variations"], first_results["variations"]);
    // Events after the stop are not counted.
    send(&api, json!([purchase("u1", 5.0, now + 100)])).await;
    let after = api
        .get(&format!("{EXPERIMENTS}/new-checkout/results"))
        .await;
    assert_eq!(after.body["variations"], first_results["variations"]);

    // A second iteration buckets afresh and keeps its own results; ship the treatment.
    let second = api
        .post(&format!("{EXPERIMENTS}/new-checkout/start"), json!(null))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["iterations"][1]["number"], 2);
    assert_ne!(
        second.body["iterations"][1]["seed"],
        second.body["iterations"][0]["seed"]
    );
    let fresh = api
        .get(&format!("{EXPERIMENTS}/new-checkout/results"))
        .await;
    assert_eq!(fresh.body["iteration"]["number"], 2);
    assert_eq!(fresh.body["variations"][0]["exposures"], 0);
    let old = api
        .get(&format!("{EXPERIMENTS}/new-checkout/results?iteration=1"))
        .await;
    assert_eq!(old.body["variations"], first_results["variations"]);
    let ship_bad = api
        .post(
            &format!("{EXPERIMENTS}/new-checkout/ship"),
            json!({"variation": 2}),
        )
        .await;
    assert_eq!(
        refused(&ship_bad),
        (400, "invalid_field".into(), "variation".into())
    );
    let shipped = api
        .post(
            &format!("{EXPERIMENTS}/new-checkout/ship"),
            json!({"variation": 1}),
        )
        .await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.body);
    assert_eq!(shipped.body["iterations"][1]["shippedVariation"], 1);
    assert_eq!(
        targeting(&api).await["fallthrough"],
        json!({"variation": 1})
    );

    // Stopped: it may now be deleted, with its data.
    let version = api
        .get(&format!("{EXPERIMENTS}/new-checkout"))
        .await
        .etag
        .unwrap();
    let deleted = api
        .call(
            Method::DELETE,
            &format!("{EXPERIMENTS}/new-checkout"),
            Some(api.admin()),
            &[("if-match", &version)],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(
        api.get(&format!("{EXPERIMENTS}/new-checkout")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_bad_design_is_refused_with_the_field_named() {
    let api = world().await;
    let with = |field: &str, value: Value| {
        let mut body = design();
        body[field] = value;
        body
    };
    for (body, code, field) in [
        (
            with("metrics", json!(["nope"])),
            "invalid_field",
            "metrics[0]",
        ),
        (with("metrics", json!([])), "invalid_field", "metrics"),
        (
            with("treatmentVariations", json!([7])),
            "variation_out_of_range",
            "treatmentVariations[0]",
        ),
        (
            with("treatmentVariations", json!([0])),
            "invalid_field",
            "treatmentVariations[0]",
        ),
        (with("weights", json!([60, 50])), "invalid_field", "weights"),
        (with("weights", json!([100])), "invalid_field", "weights"),
        (
            with("weights", json!([0.5, 99.5])),
            "invalid_field",
            "weights[0]",
        ),
        (with("flag", json!("missing")), "invalid_field", "flag"),
        (
            with("primaryMetric", json!("other")),
            "invalid_field",
            "primaryMetric",
        ),
        (
            with("randomizationUnit", json!("kind")),
            "invalid_context_kind",
            "randomizationUnit",
        ),
        (with("key", json!("no spaces please")), "invalid_key", "key"),
        (with("audience", json!({"rule": 1})), "invalid_body", ""),
        (with("surprise", json!(1)), "invalid_body", ""),
    ] {
        let reply = api.post(EXPERIMENTS, body.clone()).await;
        let (status, got_code, got_field) = refused(&reply);
        assert_eq!(status, 400, "{body}: {}", reply.body);
        assert_eq!(got_code, code, "{body}: {}", reply.body);
        if !field.is_empty() {
            assert_eq!(got_field, field, "{body}: {}", reply.body);
        }
    }
    // A rule audience that does not exist is found at the start, and nothing changes.
    let made = api
        .post(EXPERIMENTS, with("audience", json!({"ruleId": "gone"})))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let before = targeting(&api).await;
    let start = api
        .post(&format!("{EXPERIMENTS}/new-checkout/start"), json!(null))
        .await;
    assert_eq!(
        refused(&start),
        (400, "invalid_field".into(), "audience.ruleId".into()),
        "{}",
        start.body
    );
    assert_eq!(targeting(&api).await, before);
    assert_eq!(
        api.get(&format!("{EXPERIMENTS}/new-checkout")).await.body["status"],
        "notStarted"
    );
    let bad_query = api
        .get(&format!(
            "{EXPERIMENTS}/new-checkout/results?iteration=first"
        ))
        .await;
    assert_eq!(
        refused(&bad_query),
        (400, "invalid_query".into(), "iteration".into())
    );
    let missing = api.get(&format!("{EXPERIMENTS}/nope/results")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readers_and_strangers_cannot_start_stop_or_read_someone_elses_experiments() {
    let api = world().await;
    assert_eq!(
        api.post(EXPERIMENTS, design()).await.status,
        StatusCode::CREATED
    );
    let reader = api
        .post("/api/v1/tokens", json!({"name": "r", "role": "reader"}))
        .await
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let test_only = api
        .post(
            "/api/v1/tokens",
            json!({"name": "t", "role": "writer", "environments": ["default/test"]}),
        )
        .await
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = targeting(&api).await;
    for (token, action) in [
        (Some(reader.as_str()), "start"),
        (Some(test_only.as_str()), "start"),
        (None, "start"),
        (Some(reader.as_str()), "stop"),
    ] {
        let reply = api
            .call(
                Method::POST,
                &format!("{EXPERIMENTS}/new-checkout/{action}"),
                token,
                &[],
                None,
            )
            .await;
        let expected = if token.is_none() { 401 } else { 403 };
        assert_eq!(reply.status.as_u16(), expected, "{action}: {}", reply.body);
    }
    assert_eq!(targeting(&api).await, before);
    // A reader reads the design and (once running) the results; a writer limited to test
    // does not see production's.
    assert_eq!(
        api.call(Method::GET, EXPERIMENTS, Some(&reader), &[], None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.call(Method::GET, EXPERIMENTS, Some(&test_only), &[], None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // A writer whose role allows experiments but not the flag's fallthrough cannot start one:
    // starting is a targeting change and needs its rights too.
    let role = api
        .post(
            "/api/v1/roles",
            json!({"key": "experimenter", "name": "Experimenter", "policy": [
                {"effect": "allow", "actions": ["viewProject"], "resources": ["proj/*"]},
                {"effect": "allow", "actions": ["updateExperiment"], "resources": ["proj/*:env/*:experiment/*"]}]}),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.body);
    let experimenter = api
        .post(
            "/api/v1/tokens",
            json!({"name": "e", "customRoles": ["experimenter"]}),
        )
        .await
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = api
        .call(
            Method::POST,
            &format!("{EXPERIMENTS}/new-checkout/start"),
            Some(&experimenter),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.body["action"], "updateFallthrough", "{}", reply.body);
    assert_eq!(targeting(&api).await, before);
    assert_eq!(
        api.get(&format!("{EXPERIMENTS}/new-checkout")).await.body["status"],
        "notStarted"
    );
}

const GUARDED: &str =
    "/api/v1/projects/default/environments/production/flags/checkout/guarded-rollout";

/// Exposures of `n` users per variation of the rollout and error events for the first
/// `errors[v]` of each.
async fn guarded_traffic(api: &TestApi, at: i64, n: usize, errors: [usize; 2], prefix: &str) {
    let mut events = Vec::new();
    for v in 0..2_u32 {
        for i in 0..n {
            let user = format!("{prefix}-{v}-{i}");
            events.push(exposure(&user, v, at));
            if i < errors[v as usize] {
                events.push(
                    json!({"kind": "custom", "creationDate": at + 1, "key": "error",
                    "contextKeys": {"user": user}}),
                );
            }
        }
    }
    send(api, Value::Array(events)).await;
}

async fn error_metric(api: &TestApi) {
    let made = api
        .post(
            "/api/v1/projects/default/metrics",
            json!({"key": "errors", "name": "Error rate", "kind": "conversion", "eventKey": "error",
                   "successCriteria": "lower"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
}

#[tokio::test]
async fn a_guarded_rollout_rolls_back_on_a_regression_and_names_the_evidence() {
    let api = world().await.with_private_webhooks();
    error_metric(&api).await;
    // A webhook watching production's flags hears of the rollback like any change.
    let receiver = crate::support::Receiver::start(vec![], false).await;
    let hook = api
        .post(
            "/api/v1/webhooks",
            json!({"name": "on-call", "url": receiver.url, "secret": "webhook-secret-0123456789",
                   "statements": [{"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/production:flag/*"]}]}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    let plan = json!({"treatmentVariation": 1, "guards": [{"metric": "errors", "tolerance": 0.1}],
        "steps": [{"percent": 50, "minDurationMs": 3_600_000, "minSample": 100}, {"percent": 100}]});
    let started = api.post(GUARDED, plan).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    assert_eq!(started.body["controlVariation"], 0);
    let rollout = &targeting(&api).await["fallthrough"]["rollout"];
    assert_eq!(rollout["kind"], "experiment");
    // The new variation first, so that growing it only adds contexts.
    assert_eq!(
        rollout["variations"],
        json!([{"variation": 1, "weight": 50000}, {"variation": 0, "weight": 50000}])
    );
    // Nothing to decide yet: no data.
    assert!(api.app.run_guarded_rollouts().await.unwrap().is_empty());

    // 5 % errors on the new variation against 1 % on the control.
    let at = started.body["history"][0]["startedAt"].as_i64().unwrap() + 10;
    guarded_traffic(&api, at, 4_000, [40, 200], "u").await;
    let live = api.get(GUARDED).await;
    let evidence = &live.body["history"][0]["evidence"][0];
    assert_eq!(evidence["regression"], true, "{evidence}");
    assert_eq!(evidence["exposures"], json!([4000, 4000]));
    let done = api.app.run_guarded_rollouts().await.unwrap();
    assert_eq!(done, vec![("checkout".to_owned(), "rolledBack".to_owned())]);
    assert_eq!(
        targeting(&api).await["fallthrough"],
        json!({"variation": 0})
    );
    let after = api.get(GUARDED).await;
    assert_eq!(after.body["status"], "rolledBack");
    assert_eq!(after.body["history"][0]["outcome"], "rolledBack");
    let audit = api
        .get("/api/v1/audit?kind=targeting&scope=default/production&key=checkout")
        .await;
    let entry = audit.body["items"].as_array().unwrap().last().unwrap();
    assert_eq!(entry["actor"], "guarded-rollout", "{entry}");
    let comment = entry["comment"].as_str().unwrap();
    assert!(
        comment.contains("regression on errors")
            && comment.contains("0.0100")
            && comment.contains("0.0500"),
        "{comment}"
    );
    tokio::spawn(
        api.app
            .clone()
            .run_webhooks(flagstaff_app::webhooks::webhook_client(true)),
    );
    let mut rollback = None;
    for _ in 0..100 {
        rollback = receiver
            .wait_for(1, 1)
            .await
            .into_iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .find(|b| b["actor"] == "guarded-rollout");
        if rollback.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rollback = rollback.expect("the rollback reached the webhook");
    assert_eq!(
        rollback["after"]["fallthrough"],
        json!({"variation": 0}),
        "{rollback}"
    );
    assert!(
        rollback["comment"]
            .as_str()
            .unwrap()
            .contains("regression on errors"),
        "{rollback}"
    );
    // Finished: nothing more happens, and it cannot be paused.
    assert!(api.app.run_guarded_rollouts().await.unwrap().is_empty());
    let pause = api.post(&format!("{GUARDED}/pause"), json!(null)).await;
    assert_eq!(refused(&pause).1, "invalid_state");
}

#[tokio::test]
async fn a_healthy_guarded_rollout_advances_step_by_step_to_everyone_and_can_be_paused() {
    let api = world().await;
    error_metric(&api).await;
    let plan = json!({"treatmentVariation": 1, "guards": [{"metric": "errors"}],
        "steps": [{"percent": 10, "minSample": 300}, {"percent": 50, "minSample": 300}, {"percent": 100}]});
    let started = api.post(GUARDED, plan).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    // Too few contexts on the new variation: the step holds.
    let at = started.body["history"][0]["startedAt"].as_i64().unwrap() + 10;
    guarded_traffic(&api, at, 200, [2, 2], "a").await;
    assert!(api.app.run_guarded_rollouts().await.unwrap().is_empty());
    // Paused, it holds however much data comes; resumed, it advances.
    let paused = api.post(&format!("{GUARDED}/pause"), json!(null)).await;
    assert_eq!(paused.body["status"], "paused", "{}", paused.body);
    guarded_traffic(&api, at, 400, [4, 4], "b").await;
    assert!(api.app.run_guarded_rollouts().await.unwrap().is_empty());
    let resumed = api.post(&format!("{GUARDED}/resume"), json!(null)).await;
    assert_eq!(resumed.body["status"], "running");
    let done = api.app.run_guarded_rollouts().await.unwrap();
    assert_eq!(done, vec![("checkout".to_owned(), "advanced".to_owned())]);
    let step = api.get(GUARDED).await;
    assert_eq!(step.body["currentStep"], 1);
    let rollout = &targeting(&api).await["fallthrough"]["rollout"];
    assert_eq!(
        rollout["variations"][0],
        json!({"variation": 1, "weight": 50000})
    );
    assert_eq!(rollout["seed"], started.body["seed"]);
    // The next step counts its own data only.
    let at = step.body["history"][1]["startedAt"].as_i64().unwrap() + 10;
    guarded_traffic(&api, at, 400, [4, 4], "c").await;
    let done = api.app.run_guarded_rollouts().await.unwrap();
    assert_eq!(done, vec![("checkout".to_owned(), "advanced".to_owned())]);
    let finished = api.get(GUARDED).await;
    assert_eq!(finished.body["status"], "completed", "{}", finished.body);
    assert_eq!(
        targeting(&api).await["fallthrough"],
        json!({"variation": 1})
    );
}

#[tokio::test]
async fn guarded_rollouts_refuse_bad_plans_and_outsiders() {
    let api = world().await;
    error_metric(&api).await;
    let with = |field: &str, value: Value| {
        let mut plan = json!({"treatmentVariation": 1, "guards": [{"metric": "errors"}],
            "steps": [{"percent": 50}, {"percent": 100}]});
        plan[field] = value;
        plan
    };
    for (plan, code, field) in [
        (
            with("treatmentVariation", json!(9)),
            "variation_out_of_range",
            "treatmentVariation",
        ),
        (
            with("treatmentVariation", json!(0)),
            "invalid_field",
            "treatmentVariation",
        ),
        (
            with("steps", json!([{"percent": 50}])),
            "invalid_field",
            "steps",
        ),
        (
            with(
                "steps",
                json!([{"percent": 50}, {"percent": 20}, {"percent": 100}]),
            ),
            "invalid_field",
            "steps[1].percent",
        ),
        (
            with("guards", json!([{"metric": "nope"}])),
            "invalid_field",
            "guards[0].metric",
        ),
        (
            with("guards", json!([{"metric": "errors", "tolerance": -1}])),
            "invalid_field",
            "guards[0].tolerance",
        ),
        (with("guards", json!([])), "invalid_field", "guards"),
    ] {
        let reply = api.post(GUARDED, plan.clone()).await;
        assert_eq!(
            refused(&reply),
            (400, code.into(), field.into()),
            "{plan}: {}",
            reply.body
        );
    }
    let reader = api
        .post("/api/v1/tokens", json!({"name": "r", "role": "reader"}))
        .await
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = targeting(&api).await;
    for path in [
        GUARDED.to_owned(),
        format!("{GUARDED}/abort"),
        format!("{GUARDED}/pause"),
    ] {
        let reply = api
            .call(
                Method::POST,
                &path,
                Some(&reader),
                &[],
                Some(with("treatmentVariation", json!(1))),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            reply.body
        );
        let anonymous = api.call(Method::POST, &path, None, &[], None).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(targeting(&api).await, before);
    // Abort by hand serves the control again; a second plan may then start.
    let started = api
        .post(GUARDED, with("treatmentVariation", json!(1)))
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let twice = api
        .post(GUARDED, with("treatmentVariation", json!(1)))
        .await;
    assert_eq!(refused(&twice).1, "invalid_state");
    let aborted = api.post(&format!("{GUARDED}/abort"), json!(null)).await;
    assert_eq!(aborted.body["status"], "aborted", "{}", aborted.body);
    assert_eq!(
        targeting(&api).await["fallthrough"],
        json!({"variation": 0})
    );
    let again = api
        .post(GUARDED, with("treatmentVariation", json!(1)))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}
