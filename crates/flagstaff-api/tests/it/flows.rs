//! What a new user does with the API, and what must be refused.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApi;

const FLAGS: &str = "/api/v1/projects/default/flags";
const TARGETING: &str = "/api/v1/projects/default/environments/production/flags/new-checkout";

async fn create_checkout_flag(api: &TestApi) {
    let reply = api.post(FLAGS, json!({"key": "new-checkout", "name": "New checkout", "tags": ["checkout"], "temporary": true})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

#[tokio::test]
async fn create_a_flag_with_rules_change_it_and_see_the_audit_trail() {
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    let flag = api.get(&format!("{FLAGS}/new-checkout")).await;
    assert_eq!(
        flag.body["variations"],
        json!([{"value": true}, {"value": false}]),
        "boolean variations are filled in"
    );
    assert_eq!(flag.etag.as_deref(), Some("\"1\""));

    // A new flag is off, serving false, in every environment.
    let targeting = api.get(TARGETING).await;
    assert_eq!(
        (
            targeting.body["on"].clone(),
            targeting.body["offVariation"].clone()
        ),
        (json!(false), json!(1))
    );
    let version = targeting.etag.clone().unwrap();

    // Turn it on for staff.
    let staff = json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 1},
        "rules": [{"id": "staff", "variation": 0, "clauses": [{"attribute": "email", "op": "endsWith", "values": ["@example.com"]}]}]});
    let updated = api.put(TARGETING, &version, staff.clone()).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["version"], json!(2));

    let evaluate = "/api/v1/projects/default/environments/production/evaluate";
    let staff_result = api
        .post(
            evaluate,
            json!({"context": {"kind": "user", "key": "ann", "email": "ann@example.com"}}),
        )
        .await;
    assert_eq!(
        staff_result.body["flags"]["new-checkout"]["value"],
        json!(true),
        "{}",
        staff_result.body
    );
    assert_eq!(
        staff_result.body["flags"]["new-checkout"]["reason"],
        json!({"kind": "RULE_MATCH", "ruleIndex": 0, "ruleId": "staff"})
    );
    let other = api
        .post(
            evaluate,
            json!({"context": {"kind": "user", "key": "bob", "email": "bob@mail.test"}}),
        )
        .await;
    assert_eq!(other.body["flags"]["new-checkout"]["value"], json!(false));
    // Test is untouched: environments are independent.
    let test_env = api
        .post(
            "/api/v1/projects/default/environments/test/evaluate",
            json!({"context": {"kind": "user", "key": "ann", "email": "ann@example.com"}}),
        )
        .await;
    assert_eq!(
        test_env.body["flags"]["new-checkout"]["reason"],
        json!({"kind": "OFF"})
    );

    // The audit trail: who, what, why, before and after.
    let trail = api
        .get("/api/v1/audit?kind=targeting&scope=default/production&key=new-checkout")
        .await;
    let items = trail.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", trail.body);
    let entry = &items[0];
    assert_eq!(entry["action"], "flag.targeting.update");
    assert_eq!(entry["comment"], "testing");
    assert!(entry["actor"].as_str().unwrap().starts_with("token:tok-"));
    assert_eq!(entry["before"]["on"], json!(false));
    assert_eq!(entry["after"]["rules"][0]["id"], "staff");
    let creation = api.get("/api/v1/audit?kind=flag&key=new-checkout").await;
    assert_eq!(creation.body["items"][0]["action"], "flag.create");
}

#[tokio::test]
async fn stale_or_missing_versions_never_overwrite() {
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    let on = json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 0}});
    assert_eq!(
        api.put(TARGETING, "\"1\"", on.clone()).await.status,
        StatusCode::OK
    );
    // Someone else still holding version 1 is refused and told the current version.
    let stale = api
        .put(
            TARGETING,
            "\"1\"",
            json!({"on": false, "offVariation": 1, "fallthrough": {"variation": 1}}),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(
        (
            stale.body["code"].clone(),
            stale.body["currentVersion"].clone()
        ),
        (json!("version_conflict"), json!(2))
    );
    // Without If-Match, nothing is written at all.
    let blind = api
        .call(Method::PUT, TARGETING, Some(api.admin()), &[], Some(on))
        .await;
    assert_eq!(
        (blind.status, blind.body["code"].clone()),
        (StatusCode::PRECONDITION_REQUIRED, json!("version_required"))
    );
    assert_eq!(api.get(TARGETING).await.body["version"], json!(2));
}

#[tokio::test]
async fn what_cannot_be_evaluated_is_refused_with_the_field() {
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    api.post(FLAGS, json!({"key": "payments", "name": "Payments"}))
        .await;
    let cases = [
        (
            json!({"rules": [{"variation": 0, "clauses": [{"attribute": "email", "op": "looksLike", "values": ["x"]}]}], "fallthrough": {"variation": 0}}),
            "unknown_operator",
            "rules[0].clauses[0].op",
        ),
        (
            json!({"fallthrough": {"variation": 2}}),
            "variation_out_of_range",
            "fallthrough.variation",
        ),
        (
            json!({"fallthrough": {"variation": 0}, "rules": [{"variation": 0}, {"variation": 0, "clauses": [{"contextKind": "user", "attribute": "/a~2", "op": "in", "values": ["x"]}]}]}),
            "invalid_attribute_reference",
            "rules[1].clauses[0].attribute",
        ),
        (
            json!({"fallthrough": {"variation": 0}, "rules": [{"variation": 0, "clauses": [{"attribute": "email", "op": "matches", "values": ["(unclosed"]}]}]}),
            "invalid_regex",
            "rules[0].clauses[0].values[0]",
        ),
        (
            json!({"fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 60000}, {"variation": 1, "weight": 30000}]}}}),
            "invalid_rollout",
            "fallthrough.rollout.variations",
        ),
        (
            json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "nope", "variation": 0}]}),
            "unknown_prerequisite",
            "prerequisites[0].key",
        ),
        (
            json!({"fallthrough": {"variation": 0}, "rules": [{"variation": 0, "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["no-such-segment"]}]}]}),
            "unknown_segment",
            "rules[0].clauses[0].values[0]",
        ),
        (
            json!({"fallthrough": {"variation": 0}, "offVariation": "one"}),
            "invalid_body",
            "offVariation",
        ),
    ];
    for (body, code, field) in cases {
        let reply = api.put(TARGETING, "\"1\"", body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        assert_eq!(
            (
                reply.body["code"].as_str().unwrap(),
                reply.body["field"].as_str().unwrap()
            ),
            (code, field),
            "{body}"
        );
    }
    // Nothing was written by any of them.
    assert_eq!(api.get(TARGETING).await.body["version"], json!(1));

    // Prerequisite cycles, across flags.
    let payments = "/api/v1/projects/default/environments/production/flags/payments";
    let needs_checkout = json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "new-checkout", "variation": 0}]});
    assert_eq!(
        api.put(payments, "\"1\"", needs_checkout).await.status,
        StatusCode::OK
    );
    let cycle = api.put(TARGETING, "\"1\"", json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "payments", "variation": 0}]})).await;
    assert_eq!(
        (cycle.body["code"].clone(), cycle.body["field"].clone()),
        (json!("prerequisite_cycle"), json!("prerequisites[0].key"))
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let api = TestApi::new().await;
    let huge = json!({"key": "big", "name": "x".repeat(flagstaff_api::MAX_BODY_BYTES + 1)});
    let reply = api.post(FLAGS, huge).await;
    assert_eq!(
        (reply.status, reply.body["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("payload_too_large"))
    );
}

#[tokio::test]
async fn only_api_tokens_of_the_right_role_get_in() {
    let api = TestApi::new().await;
    assert_eq!(
        api.call(Method::GET, FLAGS, None, &[], None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call(Method::GET, FLAGS, Some("fst_0000"), &[], None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // SDK, mobile and client-side keys never open the management API.
    let keys = &api.init.environments[0].keys;
    for key in [&keys.sdk_key, &keys.mobile_key, &keys.client_side_id] {
        assert_eq!(
            api.call(Method::GET, FLAGS, Some(key), &[], None)
                .await
                .status,
            StatusCode::UNAUTHORIZED,
            "{key}"
        );
    }
    // A reader reads but does not write.
    let created = api
        .post(
            "/api/v1/tokens",
            json!({"name": "dashboards", "role": "reader"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let reader = created.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        api.call(Method::GET, FLAGS, Some(&reader), &[], None)
            .await
            .status,
        StatusCode::OK
    );
    let write = api
        .call(
            Method::POST,
            FLAGS,
            Some(&reader),
            &[],
            Some(json!({"key": "x", "name": "X"})),
        )
        .await;
    assert_eq!(
        (write.status, write.body["code"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    // The secret is shown once and stored only as a hash.
    let listed = api.get("/api/v1/tokens").await;
    assert!(
        !listed.body.to_string().contains(&reader),
        "token list leaks a secret"
    );
    // Revoked, it stops working at once.
    let id = created.body["token"]["id"].as_str().unwrap();
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(api.admin()),
            &[],
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::GET, FLAGS, Some(&reader), &[], None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn versions_keep_growing_across_delete_and_recreate() {
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    api.put(
        TARGETING,
        "\"1\"",
        json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 0}}),
    )
    .await;
    let deleted = api
        .call(
            Method::DELETE,
            &format!("{FLAGS}/new-checkout"),
            Some(api.admin()),
            &[("if-match", "\"1\"")],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(api.get(TARGETING).await.status, StatusCode::NOT_FOUND);
    create_checkout_flag(&api).await;
    // Targeting was at 2, its tombstone at 3: the re-created flag continues at 4, so SDKs
    // holding the tombstone accept it (ld-protocol.md §2.6).
    assert_eq!(api.get(TARGETING).await.body["version"], json!(4));
}

#[tokio::test]
async fn archived_flags_leave_lists_and_sdks_and_come_back() {
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    api.post(
        FLAGS,
        json!({"key": "legacy-export", "name": "Legacy export", "tags": ["export"]}),
    )
    .await;
    assert_eq!(
        api.post(&format!("{FLAGS}/legacy-export/archive"), json!(null))
            .await
            .status,
        StatusCode::OK
    );
    let live = api.get(FLAGS).await;
    assert_eq!(live.body["items"].as_array().unwrap().len(), 1);
    let archived = api.get(&format!("{FLAGS}?archived=true")).await;
    assert_eq!(archived.body["items"][0]["key"], "legacy-export");
    let evaluated = api
        .post(
            "/api/v1/projects/default/environments/production/evaluate",
            json!({"context": {"key": "u"}}),
        )
        .await;
    assert!(evaluated.body["flags"].get("legacy-export").is_none());
    api.post(&format!("{FLAGS}/legacy-export/restore"), json!(null))
        .await;
    assert_eq!(
        api.get(&format!("{FLAGS}?tag=export")).await.body["items"][0]["key"],
        "legacy-export"
    );
    // Search and paging.
    assert_eq!(
        api.get(&format!("{FLAGS}?q=CHECKOUT")).await.body["items"][0]["key"],
        "new-checkout"
    );
    let first = api.get(&format!("{FLAGS}?limit=1")).await;
    assert_eq!(
        (
            first.body["items"][0]["key"].clone(),
            first.body["next"].clone()
        ),
        (json!("legacy-export"), json!("legacy-export"))
    );
    let second = api
        .get(&format!("{FLAGS}?limit=1&after=legacy-export"))
        .await;
    assert_eq!(second.body["items"][0]["key"], "new-checkout");
}

#[tokio::test]
async fn json_patch_updates_with_the_same_checks_as_put() {
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    // Turn targeting on and add a rule, with LaunchDarkly's envelope and its comment.
    let reply = api.patch(TARGETING, "\"1\"", json!({"comment": "beta for staff", "patch": [
        {"op": "replace", "path": "/on", "value": true},
        {"op": "add", "path": "/rules/-", "value": {"id": "staff", "variation": 0, "clauses": [{"attribute": "email", "op": "endsWith", "values": ["@example.com"]}]}}
    ]})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        (
            reply.body["on"].clone(),
            reply.body["rules"][0]["id"].clone(),
            reply.body["version"].clone()
        ),
        (json!(true), json!("staff"), json!(2))
    );
    let audit = api
        .get("/api/v1/audit?kind=targeting&key=new-checkout")
        .await;
    assert_eq!(audit.body["items"][0]["comment"], "beta for staff");
    // A plain operations array on the definition.
    let renamed = api
        .patch(
            &format!("{FLAGS}/new-checkout"),
            "\"1\"",
            json!([{"op": "replace", "path": "/name", "value": "One-page checkout"}]),
        )
        .await;
    assert_eq!(
        renamed.body["name"], "One-page checkout",
        "{}",
        renamed.body
    );
    // A definition change rewrites each environment's targeting, so its version is now 3.
    assert_eq!(api.get(TARGETING).await.body["version"], json!(3));
    // A patch whose result cannot be evaluated is refused like a PUT, and writes nothing.
    let bad = api
        .patch(
            TARGETING,
            "\"3\"",
            json!([{"op": "replace", "path": "/fallthrough/variation", "value": 9}]),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("variation_out_of_range"))
    );
    // A failing operation names its index.
    let failing = api.patch(TARGETING, "\"3\"", json!([{"op": "test", "path": "/on", "value": true}, {"op": "remove", "path": "/nothing"}])).await;
    assert_eq!(
        (failing.body["code"].clone(), failing.body["field"].clone()),
        (json!("invalid_patch"), json!("[1]"))
    );
    // And a stale version is a conflict, as for PUT.
    let stale = api
        .patch(
            TARGETING,
            "\"2\"",
            json!([{"op": "replace", "path": "/on", "value": false}]),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(api.get(TARGETING).await.body["version"], json!(3));
}

#[tokio::test]
async fn rotated_sdk_keys_keep_working_until_their_expiry() {
    use flagstaff_app::CredentialKind;
    let api = TestApi::new().await;
    let old = api.init.environments[0].keys.sdk_key.clone();
    let production = Some(("default".to_owned(), "production".to_owned()));
    assert_eq!(
        api.app
            .environment_for_key(&old, CredentialKind::Sdk)
            .await
            .unwrap(),
        production
    );
    // A mobile key is not an SDK key, even for the same environment.
    let mobile = api.init.environments[0].keys.mobile_key.clone();
    assert_eq!(
        api.app
            .environment_for_key(&mobile, CredentialKind::Sdk)
            .await
            .unwrap(),
        None
    );

    let rotate = "/api/v1/projects/default/environments/production/keys/sdk/rotate";
    let reply = api
        .post(rotate, json!({"oldKeyValidForSeconds": 3600}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let new = reply.body["sdkKey"].as_str().unwrap().to_owned();
    assert!(new.starts_with("sdk-") && new != old);
    // Both work during the grace period.
    assert_eq!(
        api.app
            .environment_for_key(&old, CredentialKind::Sdk)
            .await
            .unwrap(),
        production
    );
    assert_eq!(
        api.app
            .environment_for_key(&new, CredentialKind::Sdk)
            .await
            .unwrap(),
        production
    );
    let environment = api
        .get("/api/v1/projects/default/environments/production")
        .await;
    assert!(
        new.ends_with(
            environment.body["sdkKeyHint"]
                .as_str()
                .unwrap()
                .trim_start_matches('…')
        )
    );

    // Rotating again with no grace stops the current key at once (the first one still expires on its own schedule).
    let again = api.post(rotate, json!({"oldKeyValidForSeconds": 0})).await;
    let newest = again.body["sdkKey"].as_str().unwrap().to_owned();
    assert_eq!(
        api.app
            .environment_for_key(&new, CredentialKind::Sdk)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        api.app
            .environment_for_key(&newest, CredentialKind::Sdk)
            .await
            .unwrap(),
        production
    );
    let audit = api
        .get("/api/v1/audit?kind=environment&key=production")
        .await;
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "environment.sdk_key.rotate")
    );
    assert!(
        !audit.body.to_string().contains(&newest),
        "keys never reach the audit log"
    );
}

#[tokio::test]
async fn members_sign_in_with_passwords_and_get_their_role() {
    let api = TestApi::new().await;
    let weak = api.post("/api/v1/members", json!({"email": "pm@example.com", "name": "Pat", "role": "writer", "password": "short"})).await;
    assert_eq!(
        (weak.status, weak.body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("password"))
    );
    let created = api.post("/api/v1/members", json!({"email": "PM@example.com", "name": "Pat", "role": "reader", "password": "correct horse battery"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["email"], "pm@example.com",
        "emails are case-insensitive"
    );
    let listed = api.get("/api/v1/members").await;
    assert!(
        !listed.body.to_string().contains("argon2"),
        "the password hash never leaves the server"
    );

    let sign_in = |password: &'static str, email: &'static str| {
        api.call(
            Method::POST,
            "/api/v1/sessions",
            None,
            &[],
            Some(json!({"email": email, "password": password})),
        )
    };
    assert_eq!(
        sign_in("wrong password!!", "pm@example.com").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in("correct horse battery", "nobody@example.com")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let session = sign_in("correct horse battery", "pm@example.com").await;
    assert_eq!(session.status, StatusCode::CREATED, "{}", session.body);
    let token = session.body["token"].as_str().unwrap().to_owned();
    assert!(session.body["expiresAt"].as_i64().unwrap() > 0);
    // The session has the member's role: a reader reads and does not write.
    assert_eq!(
        api.call(Method::GET, FLAGS, Some(&token), &[], None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.call(
            Method::POST,
            FLAGS,
            Some(&token),
            &[],
            Some(json!({"key": "x", "name": "X"}))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Removing the member ends their sessions.
    let removed = api
        .call(
            Method::DELETE,
            "/api/v1/members/pm@example.com",
            Some(api.admin()),
            &[],
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    assert_eq!(
        api.call(Method::GET, FLAGS, Some(&token), &[], None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let audit = api.get("/api/v1/audit?kind=member").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["member.create", "member.delete"]);
}

#[tokio::test]
async fn environment_limited_tokens_stay_in_their_environments() {
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    let bad = api
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "role": "writer", "environments": ["default/staging"]}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("environments[0]"))
    );
    let created = api
        .post(
            "/api/v1/tokens",
            json!({"name": "test-only", "role": "writer", "environments": ["default/test"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = created.body["secret"].as_str().unwrap().to_owned();
    let on = json!({"on": true, "offVariation": 1, "fallthrough": {"variation": 0}});
    let in_test = api
        .call(
            Method::PUT,
            "/api/v1/projects/default/environments/test/flags/new-checkout",
            Some(&token),
            &[("if-match", "\"1\"")],
            Some(on.clone()),
        )
        .await;
    assert_eq!(in_test.status, StatusCode::OK, "{}", in_test.body);
    let in_production = api
        .call(
            Method::PUT,
            TARGETING,
            Some(&token),
            &[("if-match", "\"1\"")],
            Some(on),
        )
        .await;
    assert_eq!(in_production.status, StatusCode::FORBIDDEN);
    // Definitions are shared by every environment: not for this token.
    let create = api
        .call(
            Method::POST,
            FLAGS,
            Some(&token),
            &[],
            Some(json!({"key": "x", "name": "X"})),
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    // It reads definitions, and sees only its environment.
    assert_eq!(
        api.call(Method::GET, FLAGS, Some(&token), &[], None)
            .await
            .status,
        StatusCode::OK
    );
    let environments = api
        .call(
            Method::GET,
            "/api/v1/projects/default/environments",
            Some(&token),
            &[],
            None,
        )
        .await;
    let keys: Vec<&str> = environments.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["test"]);
}

#[tokio::test]
async fn projects_and_environments_are_renamed_and_deleted_with_everything_in_them() {
    use flagstaff_app::CredentialKind;
    let api = TestApi::new().await;
    create_checkout_flag(&api).await;
    let env = "/api/v1/projects/default/environments/test";
    let got = api.get(env).await;
    assert_eq!(got.etag.as_deref(), Some("\"1\""));
    let renamed = api.put(env, "\"1\"", json!({"name": "Staging"})).await;
    assert_eq!(
        (renamed.status, renamed.body["name"].clone()),
        (StatusCode::OK, json!("Staging"))
    );
    assert_eq!(
        api.put(env, "\"2\"", json!({"key": "other", "name": "X"}))
            .await
            .body["field"],
        "key"
    );

    let sdk_key = api.init.environments[1].keys.sdk_key.clone();
    assert!(
        api.app
            .environment_for_key(&sdk_key, CredentialKind::Sdk)
            .await
            .unwrap()
            .is_some()
    );
    let deleted = api
        .call(
            Method::DELETE,
            env,
            Some(api.admin()),
            &[("if-match", "\"2\"")],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(api.get(env).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/api/v1/projects/default/environments/test/flags/new-checkout")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(
        api.app
            .environment_for_key(&sdk_key, CredentialKind::Sdk)
            .await
            .unwrap()
            .is_none(),
        "a deleted environment's keys stop working"
    );
    assert_eq!(
        api.get(TARGETING).await.status,
        StatusCode::OK,
        "other environments are untouched"
    );

    let project = "/api/v1/projects/default";
    assert_eq!(
        api.put(project, "\"1\"", json!({"name": "Main product"}))
            .await
            .body["name"],
        "Main product"
    );
    let gone = api
        .call(
            Method::DELETE,
            project,
            Some(api.admin()),
            &[("if-match", "\"2\"")],
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);
    assert_eq!(api.get(project).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.get(FLAGS).await.status, StatusCode::NOT_FOUND);
    let production_key = api.init.environments[0].keys.sdk_key.clone();
    assert!(
        api.app
            .environment_for_key(&production_key, CredentialKind::Sdk)
            .await
            .unwrap()
            .is_none()
    );
    let audit = api.get("/api/v1/audit?kind=project&key=default").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["project.create", "project.update", "project.delete"]
    );
}

#[tokio::test]
async fn launchdarkly_data_imports_with_its_salts_and_unevaluable_details_intact() {
    let api = TestApi::new().await;
    let import = "/api/v1/projects/default/environments/production/import";
    // A clause value the flag endpoints would refuse (not a date) is kept: LaunchDarkly
    // evaluates it as a non-match, and migration must not change results.
    let data = json!({"flags": {"imported": {
        "key": "imported", "version": 7, "on": true, "salt": "original-salt",
        "variations": ["a", "b"], "offVariation": 0, "fallthrough": {"variation": 1},
        "rules": [{"id": "r1", "variation": 0,
                   "clauses": [{"attribute": "since", "op": "before", "values": ["not a date"]}]}]}},
        "segments": {"beta": {"key": "beta", "version": 3, "included": ["bob"], "salt": "seg-salt"}}});
    let reply = api.post(import, data.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, json!({"flags": 1, "segments": 1}));
    let targeting = api
        .get("/api/v1/projects/default/environments/production/flags/imported")
        .await;
    assert_eq!(targeting.body["salt"], "original-salt");
    assert_eq!(targeting.body["rules"][0]["id"], "r1");
    let definition = api.get(&format!("{FLAGS}/imported")).await;
    assert_eq!(
        definition.body["variations"],
        json!([{"value": "a"}, {"value": "b"}])
    );
    // The project's other environment got the flag too, off.
    let test_env = api
        .get("/api/v1/projects/default/environments/test/flags/imported")
        .await;
    assert_eq!(test_env.body["on"], json!(false));
    let segment = api
        .get("/api/v1/projects/default/environments/production/segments/beta")
        .await;
    assert_eq!(segment.body["salt"], "seg-salt");

    // Importing the same flag with other variations would break the other environments.
    let mut changed = data.clone();
    changed["flags"]["imported"]["variations"] = json!(["a", "b", "c"]);
    let refused = api.post(import, changed).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["field"], "flags.imported.variations");
    // Malformed data names the field.
    let refused = api
        .post(
            import,
            json!({"flags": {"x": {"key": "x", "version": "one"}}}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["field"], "flags.x.version");
    // The import is in each resource's history, with before and after, and closed by one
    // environment entry naming what changed.
    let history = |query: &'static str| {
        let api = &api;
        async move {
            let audit = api.get(&format!("/api/v1/audit?{query}")).await;
            audit.body["items"].as_array().unwrap().clone()
        }
    };
    let flag_entries = history("kind=flag&key=imported").await;
    assert_eq!(flag_entries.len(), 1);
    assert_eq!(flag_entries[0]["action"], "flag.create");
    let targeting_entries = history("kind=targeting&key=imported").await;
    assert_eq!(targeting_entries.len(), 1, "{targeting_entries:?}");
    assert_eq!(targeting_entries[0]["action"], "flag.targeting.update");
    assert_eq!(targeting_entries[0]["scope"], "default/production");
    assert_eq!(targeting_entries[0]["before"], Value::Null);
    assert_eq!(targeting_entries[0]["after"]["salt"], "original-salt");
    let segment_entries = history("kind=segment&key=beta").await;
    assert_eq!(segment_entries.len(), 1);
    assert_eq!(segment_entries[0]["action"], "segment.create");
    let imports = history("kind=environment").await;
    let imports: Vec<&Value> = imports
        .iter()
        .filter(|e| e["action"] == "environment.import")
        .collect();
    assert_eq!(imports.len(), 1, "{imports:?}");
    assert_eq!(
        imports[0]["after"],
        json!({"flags": ["imported"], "segments": ["beta"]})
    );

    // Importing the same data again changes nothing, and says so.
    assert_eq!(api.post(import, data.clone()).await.status, StatusCode::OK);
    assert_eq!(history("kind=targeting&key=imported").await.len(), 1);
    // An import over an edited flag records what it replaced: restoring that brings it back.
    let path = "/api/v1/projects/default/environments/production/flags/imported";
    let current = api.get(path).await;
    let mut edited = current.body.clone();
    edited.as_object_mut().unwrap().remove("version");
    edited["on"] = json!(false);
    // (Its imported rule compares with "not a date", which a regular write must fix first.)
    edited["rules"] = json!([]);
    let version = current.body["version"].to_string();
    let saved = api.put(path, &format!("\"{version}\""), edited).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(api.post(import, data.clone()).await.status, StatusCode::OK);
    let entries = history("kind=targeting&key=imported").await;
    let last = entries.last().unwrap();
    assert_eq!(last["before"]["on"], json!(false), "{last}");
    assert_eq!(last["after"]["on"], json!(true));
    let mut restore = last["before"].clone();
    restore.as_object_mut().unwrap().remove("version");
    let version = api.get(path).await.body["version"].to_string();
    let restored = api.put(path, &format!("\"{version}\""), restore).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.body);
    assert_eq!(api.get(path).await.body["on"], json!(false));
}

#[tokio::test]
async fn importing_data_without_salts_again_keeps_the_salts_and_changes_nothing() {
    let api = TestApi::new().await;
    let import = "/api/v1/projects/default/environments/production/import";
    let data = json!({"flags": {"unsalted": {"key": "unsalted", "version": 1, "on": true,
        "variations": [true, false], "offVariation": 1, "fallthrough": {"variation": 0}}},
        "segments": {"plain": {"key": "plain", "version": 1, "included": ["ann"]}}});
    assert_eq!(api.post(import, data.clone()).await.status, StatusCode::OK);
    let flag = "/api/v1/projects/default/environments/production/flags/unsalted";
    let segment = "/api/v1/projects/default/environments/production/segments/plain";
    let (flag_salt, segment_salt) = (
        api.get(flag).await.body["salt"].clone(),
        api.get(segment).await.body["salt"].clone(),
    );
    assert!(flag_salt.as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(api.post(import, data).await.status, StatusCode::OK);
    // The same buckets as before, and no entry claiming a change.
    assert_eq!(api.get(flag).await.body["salt"], flag_salt);
    assert_eq!(api.get(segment).await.body["salt"], segment_salt);
    for query in ["kind=targeting&key=unsalted", "kind=segment&key=plain"] {
        let audit = api.get(&format!("/api/v1/audit?{query}")).await;
        assert_eq!(audit.body["items"].as_array().unwrap().len(), 1, "{query}");
    }
}

#[tokio::test]
async fn an_import_may_be_larger_than_other_requests_but_not_unbounded() {
    let api = TestApi::new().await;
    let import = "/api/v1/projects/default/environments/production/import";
    // 1,000 flags with a few rules each, as a LaunchDarkly project of that size exports: about
    // 1.9 MB, over the 1 MiB every other request is limited to.
    let flags: serde_json::Map<String, Value> = (0..1_000)
        .map(|i| {
            let key = format!("flag-{i:04}");
            let rules: Vec<Value> = (0..3)
                .map(|r| {
                    json!({"id": format!("{key}-rule-{r}"), "variation": r % 2,
                    "clauses": [{"attribute": "email", "op": "endsWith", "negate": false,
                        "values": ["@example.com", "@example.org", "@staff.example.net"]},
                        {"contextKind": "organization", "attribute": "plan", "op": "in",
                        "values": ["enterprise", "business", "team"]}]})
                })
                .collect();
            let flag = json!({"key": key, "version": 12, "on": true, "salt": format!("salt-{i}"),
                "variations": [true, false], "offVariation": 1,
                "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 25000},
                    {"variation": 1, "weight": 75000}]}},
                "targets": [{"variation": 0, "values": ["ann", "bob", "cy", "dee"]}],
                "rules": rules, "prerequisites": [], "trackEvents": false});
            (key, flag)
        })
        .collect();
    let data = json!({"flags": flags, "segments": {}});
    let text = data.to_string();
    assert!(
        text.len() > flagstaff_http::MAX_BODY_BYTES,
        "{} bytes",
        text.len()
    );
    let reply = api
        .call_raw(Method::POST, import, Some(api.admin()), &[], &text)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["flags"], 1_000);
    // Over the import limit: refused by size, before parsing.
    let huge = format!("{{\"flags\": {{}}, \"pad\": \"{}\"}}", "x".repeat(17 << 20));
    let reply = api
        .call_raw(Method::POST, import, Some(api.admin()), &[], &huge)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    // A reader is refused before any of the body is read: 403, not 413.
    let reader = api
        .post(
            "/api/v1/tokens",
            json!({"name": "reader", "role": "reader"}),
        )
        .await;
    let reader = reader.body["secret"].as_str().unwrap().to_owned();
    let reply = api
        .call_raw(Method::POST, import, Some(&reader), &[], &huge)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
}

#[tokio::test]
async fn a_project_comes_with_production_and_test_or_the_environments_listed() {
    let api = TestApi::new().await;
    let made = api
        .post("/api/v1/projects", json!({"key": "shop", "name": "Shop"}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let keys: Vec<&str> = made.body["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["production", "test"]);
    assert!(
        made.body["environments"][0]["keys"]["sdkKey"]
            .as_str()
            .unwrap()
            .starts_with("sdk-")
    );
    assert_eq!(made.body["environments"][0]["critical"], true);
    let listed = api.get("/api/v1/projects/shop/environments").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);

    let made = api
        .post(
            "/api/v1/projects",
            json!({"key": "tools", "name": "Tools", "environments": [{"key": "live", "name": "Live"}]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["environments"][0]["key"], "live");

    // Refused whole: too many environments, a bad environment key, an unknown field.
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"key": format!("e{i}"), "name": "E"}))
        .collect();
    for (body, field) in [
        (
            json!({"key": "a", "name": "A", "environments": many}),
            "environments",
        ),
        (
            json!({"key": "b", "name": "B", "environments": [{"key": "bad key", "name": "Bad"}]}),
            "environments[0].key",
        ),
        (json!({"key": "c", "name": "C", "colour": "red"}), "colour"),
        (json!({"key": "d", "name": " "}), "name"),
    ] {
        let refused = api.post("/api/v1/projects", body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            refused.body
        );
        assert_eq!(refused.body["field"], field, "{body}: {}", refused.body);
    }
    for key in ["a", "b", "c", "d"] {
        assert_eq!(
            api.get(&format!("/api/v1/projects/{key}")).await.status,
            StatusCode::NOT_FOUND
        );
    }
}

/// What GET returned, edited and sent back with its `version` inside, replaces the document:
/// the version that counts is `If-Match`'s. Any other unknown field is still refused by name.
#[tokio::test]
async fn a_document_read_edited_and_sent_back_whole_replaces_it() {
    let api = TestApi::new().await;
    let created = api
        .post(
            "/api/v1/projects/default/flags",
            json!({"key": "beta", "name": "Beta"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let metric = api
        .post(
            "/api/v1/projects/default/metrics",
            json!({"key": "revenue", "name": "Revenue", "kind": "numeric", "eventKey": "purchase"}),
        )
        .await;
    assert_eq!(metric.status, StatusCode::CREATED, "{}", metric.body);
    for (path, field, value) in [
        (
            "/api/v1/projects/default/flags/beta",
            "name",
            json!("Beta programme"),
        ),
        (
            "/api/v1/projects/default/environments/test/flags/beta",
            "on",
            json!(true),
        ),
        (
            "/api/v1/projects/default/metrics/revenue",
            "name",
            json!("Revenue per user"),
        ),
    ] {
        let read = api.get(path).await;
        let etag = read.etag.clone().expect("an ETag");
        let mut edited = read.body.clone();
        assert!(
            edited.get("version").is_some(),
            "{path} answers with its version"
        );
        edited[field] = value.clone();
        let replaced = api.put(path, &etag, edited.clone()).await;
        assert_eq!(replaced.status, StatusCode::OK, "{path}: {}", replaced.body);
        assert_eq!(replaced.body[field], value);
        // A stale If-Match still loses, whatever version the body says.
        let stale = api.put(path, &etag, edited.clone()).await;
        assert_eq!(stale.status, StatusCode::CONFLICT, "{path}: {}", stale.body);
        let mut unknown = api.get(path).await.body;
        unknown["colour"] = json!("blue");
        let refused = api
            .put(path, &api.get(path).await.etag.unwrap(), unknown)
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(refused.body["code"], "invalid_body");
    }
}
