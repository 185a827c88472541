//! Custom roles, teams and access checks over the API (issue 18): every write route against the
//! built-in roles, two custom roles and an environment-scoped team. Each refusal must name the
//! action and the resource (with its tags) and leave the change feed exactly where it was.

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApi;

const ACTORS: &[&str] = &[
    "admin",
    "writer",
    "reader",
    "kill-switch",
    "writer-no-payments",
    "test-team",
];

/// The statements of the custom roles the matrix uses.
fn roles() -> Vec<Value> {
    vec![
        // Support's kill switch: turn production flags on or off, nothing else (not even read).
        json!({"key": "kill-switch", "name": "Support", "policy": [
            {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]}]}),
        // Added to writers: nobody touches the rules of payment flags, anywhere.
        json!({"key": "no-payment-rules", "name": "No payment rules", "policy": [
            {"effect": "deny", "actions": ["updateRules"], "resources": ["proj/*:env/*:flag/*;payments"]}]}),
        // The test environment's team: targeting and segments in test only.
        json!({"key": "test-env-writer", "name": "Test writers", "policy": [
            {"effect": "allow", "actions": ["viewProject"], "resources": ["proj/default"]},
            {"effect": "allow", "actions": ["update*"], "resources": ["proj/default:env/test:flag/*"]},
            {"effect": "allow", "actions": ["*Segment", "updateIncluded", "updateExcluded", "updateRules"],
             "resources": ["proj/default:env/test:segment/*"]}]}),
    ]
}

/// A fresh world: flags `checkout` (tagged web, on in production), `payments-flow` (tagged
/// payments) and `doomed`; segments `beta` (production) and `old` (test); the custom roles; and
/// a credential for `actor`.
async fn world(actor: &str) -> (TestApi, String) {
    let api = TestApi::new().await;
    let flags = "/api/v1/projects/default/flags";
    for (key, tags) in [
        ("checkout", json!(["web"])),
        ("payments-flow", json!(["payments"])),
        ("doomed", json!([])),
    ] {
        let reply = api
            .post(flags, json!({"key": key, "name": key, "tags": tags}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let on = api
        .patch(
            "/api/v1/projects/default/environments/production/flags/checkout",
            "\"1\"",
            json!([{"op": "replace", "path": "/on", "value": true}]),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    for (env, key) in [("production", "beta"), ("test", "old")] {
        let reply = api
            .post(
                &format!("/api/v1/projects/default/environments/{env}/segments"),
                json!({"key": key, "included": ["ann"]}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let metric = api
        .post(
            "/api/v1/projects/default/metrics",
            json!({"key": "purchased", "name": "Purchased", "kind": "conversion", "eventKey": "purchase"}),
        )
        .await;
    assert_eq!(metric.status, StatusCode::CREATED, "{}", metric.body);
    for role in roles() {
        let reply = api.post("/api/v1/roles", role).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let token = |body: Value| {
        let api = &api;
        async move {
            let reply = api.post("/api/v1/tokens", body).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            reply.body["secret"].as_str().unwrap().to_owned()
        }
    };
    let credential = match actor {
        "admin" => api.admin().to_owned(),
        "writer" => token(json!({"name": "w", "role": "writer"})).await,
        "reader" => token(json!({"name": "r", "role": "reader"})).await,
        "kill-switch" => token(json!({"name": "k", "customRoles": ["kill-switch"]})).await,
        "writer-no-payments" => {
            token(json!({"name": "wp", "role": "writer", "customRoles": ["no-payment-rules"]}))
                .await
        }
        "test-team" => {
            let member = api
                .post(
                    "/api/v1/members",
                    json!({"email": "tess@example.com", "name": "Tess", "role": "noAccess",
                           "password": "correct horse battery"}),
                )
                .await;
            assert_eq!(member.status, StatusCode::CREATED, "{}", member.body);
            let team = api
                .post(
                    "/api/v1/teams",
                    json!({"key": "test-team", "name": "Test team", "members": ["tess@example.com"],
                           "customRoles": ["test-env-writer"]}),
                )
                .await;
            assert_eq!(team.status, StatusCode::CREATED, "{}", team.body);
            let session = api
                .call(
                    Method::POST,
                    "/api/v1/sessions",
                    None,
                    &[],
                    Some(json!({"email": "tess@example.com", "password": "correct horse battery"})),
                )
                .await;
            assert_eq!(session.status, StatusCode::CREATED, "{}", session.body);
            session.body["token"].as_str().unwrap().to_owned()
        }
        other => panic!("no actor {other}"),
    };
    (api, credential)
}

/// One write route: the request, and what it needs.
struct Route {
    name: &'static str,
    method: Method,
    path: &'static str,
    /// Whether it sends `If-Match` (updates and deletes): the version the admin reads first.
    version: bool,
    body: Option<Value>,
    /// The action and resource an actor without the right is refused with.
    action: &'static str,
    resource: &'static str,
    /// Who may.
    allowed: &'static [&'static str],
    /// Who is refused before the body is read (no right of the route's kind on the resource
    /// at all), and with which action then: the first the route could need.
    refused_early: &'static [(&'static str, &'static str)],
}

const PROD_CHECKOUT: &str = "/api/v1/projects/default/environments/production/flags/checkout";
const WRITERS: &[&str] = &["admin", "writer", "writer-no-payments"];

fn routes() -> Vec<Route> {
    let rule = json!({"variation": 0, "clauses": [{"attribute": "email", "op": "endsWith", "values": ["@example.com"]}]});
    vec![
        Route {
            name: "turn a production flag off",
            method: Method::PATCH,
            path: PROD_CHECKOUT,
            version: true,
            body: Some(json!([{"op": "replace", "path": "/on", "value": false}])),
            action: "updateOn",
            resource: "proj/default:env/production;critical:flag/checkout;web",
            allowed: &["admin", "writer", "writer-no-payments", "kill-switch"],
            refused_early: &[("reader", "updateOn"), ("test-team", "updateOn")],
        },
        Route {
            name: "add a rule to a payments flag in production",
            method: Method::PATCH,
            path: "/api/v1/projects/default/environments/production/flags/payments-flow",
            version: true,
            body: Some(json!([{"op": "add", "path": "/rules/-", "value": rule}])),
            action: "updateRules",
            resource: "proj/default:env/production;critical:flag/payments-flow;payments",
            allowed: &["admin", "writer"],
            refused_early: &[("reader", "updateOn"), ("test-team", "updateOn")],
        },
        Route {
            name: "add a rule in test",
            method: Method::PATCH,
            path: "/api/v1/projects/default/environments/test/flags/checkout",
            version: true,
            body: Some(json!([{"op": "add", "path": "/rules/-", "value": rule}])),
            action: "updateRules",
            resource: "proj/default:env/test:flag/checkout;web",
            allowed: &["admin", "writer", "writer-no-payments", "test-team"],
            refused_early: &[("reader", "updateOn"), ("kill-switch", "updateOn")],
        },
        Route {
            name: "change the production fallthrough",
            method: Method::PATCH,
            path: PROD_CHECKOUT,
            version: true,
            body: Some(
                json!([{"op": "replace", "path": "/fallthrough", "value": {"variation": 0}}]),
            ),
            action: "updateFallthrough",
            resource: "proj/default:env/production;critical:flag/checkout;web",
            allowed: WRITERS,
            refused_early: &[("reader", "updateOn"), ("test-team", "updateOn")],
        },
        Route {
            name: "target a user in production",
            method: Method::PATCH,
            path: PROD_CHECKOUT,
            version: true,
            body: Some(
                json!([{"op": "add", "path": "/targets/-", "value": {"variation": 0, "values": ["ann"]}}]),
            ),
            action: "updateTargets",
            resource: "proj/default:env/production;critical:flag/checkout;web",
            allowed: WRITERS,
            refused_early: &[("reader", "updateOn"), ("test-team", "updateOn")],
        },
        Route {
            name: "rename a flag (every environment)",
            method: Method::PATCH,
            path: "/api/v1/projects/default/flags/checkout",
            version: true,
            body: Some(json!([{"op": "replace", "path": "/name", "value": "Checkout v2"}])),
            action: "updateName",
            resource: "proj/default:env/*:flag/checkout;web",
            allowed: WRITERS,
            refused_early: &[
                ("reader", "updateName"),
                ("kill-switch", "updateName"),
                ("test-team", "updateName"),
            ],
        },
        Route {
            name: "create a flag",
            method: Method::POST,
            path: "/api/v1/projects/default/flags",
            version: false,
            body: Some(json!({"key": "new-flag", "name": "New"})),
            action: "createFlag",
            resource: "proj/default:env/*:flag/new-flag",
            allowed: WRITERS,
            refused_early: &[],
        },
        Route {
            name: "delete a flag",
            method: Method::DELETE,
            path: "/api/v1/projects/default/flags/doomed",
            version: true,
            body: None,
            action: "deleteFlag",
            resource: "proj/default:env/*:flag/doomed",
            allowed: WRITERS,
            refused_early: &[],
        },
        Route {
            name: "create a segment in test",
            method: Method::POST,
            path: "/api/v1/projects/default/environments/test/segments",
            version: false,
            body: Some(json!({"key": "s-new", "included": ["bob"]})),
            action: "createSegment",
            resource: "proj/default:env/test:segment/s-new",
            allowed: &["admin", "writer", "writer-no-payments", "test-team"],
            refused_early: &[],
        },
        Route {
            name: "add to a production segment",
            method: Method::PATCH,
            path: "/api/v1/projects/default/environments/production/segments/beta",
            version: true,
            body: Some(json!([{"op": "add", "path": "/included/-", "value": "zed"}])),
            action: "updateIncluded",
            resource: "proj/default:env/production;critical:segment/beta",
            allowed: WRITERS,
            refused_early: &[
                ("reader", "updateIncluded"),
                ("kill-switch", "updateIncluded"),
                ("test-team", "updateIncluded"),
            ],
        },
        Route {
            name: "delete a segment in test",
            method: Method::DELETE,
            path: "/api/v1/projects/default/environments/test/segments/old",
            version: true,
            body: None,
            action: "deleteSegment",
            resource: "proj/default:env/test:segment/old",
            allowed: &["admin", "writer", "writer-no-payments", "test-team"],
            refused_early: &[],
        },
        Route {
            name: "create an environment",
            method: Method::POST,
            path: "/api/v1/projects/default/environments",
            version: false,
            body: Some(json!({"key": "staging", "name": "Staging"})),
            action: "createEnvironment",
            resource: "proj/default:env/staging",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "rename an environment",
            method: Method::PUT,
            path: "/api/v1/projects/default/environments/test",
            version: true,
            body: Some(json!({"name": "Testing"})),
            action: "updateName",
            resource: "proj/default:env/test",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "rotate the production SDK key",
            method: Method::POST,
            path: "/api/v1/projects/default/environments/production/keys/sdk/rotate",
            version: false,
            body: Some(json!({})),
            action: "updateApiKey",
            resource: "proj/default:env/production;critical",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "import flag data into test",
            method: Method::POST,
            path: "/api/v1/projects/default/environments/test/import",
            version: false,
            body: Some(json!({"flags": {}, "segments": {}})),
            action: "importFlagData",
            resource: "proj/default:env/test",
            allowed: WRITERS,
            refused_early: &[],
        },
        Route {
            name: "create a project",
            method: Method::POST,
            path: "/api/v1/projects",
            version: false,
            body: Some(json!({"key": "p2", "name": "P2"})),
            action: "createProject",
            resource: "proj/p2",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "create an API token",
            method: Method::POST,
            path: "/api/v1/tokens",
            version: false,
            body: Some(json!({"name": "t", "role": "reader"})),
            action: "createAccessToken",
            resource: "token/*",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "add a member",
            method: Method::POST,
            path: "/api/v1/members",
            version: false,
            body: Some(
                json!({"email": "new@example.com", "name": "New", "role": "reader",
                              "password": "correct horse battery"}),
            ),
            action: "createMember",
            resource: "member/new@example.com",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "create a custom role",
            method: Method::POST,
            path: "/api/v1/roles",
            version: false,
            body: Some(json!({"key": "r2", "name": "R2", "policy": []})),
            action: "createRole",
            resource: "role/r2",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "create a team",
            method: Method::POST,
            path: "/api/v1/teams",
            version: false,
            body: Some(json!({"key": "t2", "name": "T2"})),
            action: "createTeam",
            resource: "team/t2",
            allowed: &["admin"],
            refused_early: &[],
        },
        Route {
            name: "define a metric",
            method: Method::POST,
            path: "/api/v1/projects/default/metrics",
            version: false,
            body: Some(
                json!({"key": "revenue", "name": "Revenue", "kind": "numeric", "eventKey": "purchase"}),
            ),
            action: "createMetric",
            resource: "proj/default:metric/revenue",
            allowed: &["admin", "writer", "writer-no-payments"],
            refused_early: &[],
        },
        Route {
            name: "design an experiment in production",
            method: Method::POST,
            path: "/api/v1/projects/default/environments/production/experiments",
            version: false,
            body: Some(
                json!({"key": "exp", "name": "Exp", "flag": "checkout", "metrics": ["purchased"],
                       "controlVariation": 0, "treatmentVariations": [1]}),
            ),
            action: "createExperiment",
            resource: "proj/default:env/production:experiment/exp",
            allowed: &["admin", "writer", "writer-no-payments"],
            refused_early: &[],
        },
        Route {
            name: "delete a custom role",
            method: Method::DELETE,
            path: "/api/v1/roles/kill-switch",
            version: true,
            body: None,
            action: "deleteRole",
            resource: "role/kill-switch",
            allowed: &["admin"],
            refused_early: &[],
        },
    ]
}

#[tokio::test]
async fn every_write_route_against_built_in_custom_and_team_roles() {
    let mut failures = Vec::new();
    for actor in ACTORS {
        let (api, credential) = world(actor).await;
        for route in routes() {
            let version = if route.version {
                api.get(route.path).await.etag.expect("an ETag")
            } else {
                String::new()
            };
            let head = api.app.head().await.unwrap();
            let mut headers = vec![("x-flagstaff-comment", "matrix")];
            if route.version {
                headers.push(("if-match", version.as_str()));
            }
            let reply = api
                .call(
                    route.method.clone(),
                    route.path,
                    Some(&credential),
                    &headers,
                    route.body.clone(),
                )
                .await;
            let label = format!("{} as {actor}", route.name);
            if route.allowed.contains(actor) {
                if !reply.status.is_success() {
                    failures.push(format!(
                        "{label}: expected success, got {} {}",
                        reply.status, reply.body
                    ));
                }
                continue;
            }
            let early: HashMap<&str, &str> = route.refused_early.iter().copied().collect();
            let action = early.get(actor).copied().unwrap_or(route.action);
            let after = api.app.head().await.unwrap();
            let refused_right = reply.status == StatusCode::FORBIDDEN
                && reply.body["code"] == "forbidden"
                && reply.body["action"] == action
                && reply.body["resource"] == route.resource;
            if !refused_right {
                failures.push(format!(
                    "{label}: expected 403 {action} on {}, got {} {}",
                    route.resource, reply.status, reply.body
                ));
            }
            if after != head {
                failures.push(format!(
                    "{label}: refused, but the change feed moved from {head} to {after}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_kill_switch_turns_a_flag_off_and_nothing_else_and_the_audit_log_names_it() {
    let (api, kill_switch) = world("kill-switch").await;
    let off = api
        .call(
            Method::PATCH,
            PROD_CHECKOUT,
            Some(&kill_switch),
            &[
                ("if-match", "\"2\""),
                ("x-flagstaff-comment", "incident 42"),
            ],
            Some(json!([{"op": "replace", "path": "/on", "value": false}])),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["on"], json!(false));
    // Turning it off and changing a rule in the same patch is refused as a whole.
    let both = api
        .call(
            Method::PATCH,
            PROD_CHECKOUT,
            Some(&kill_switch),
            &[("if-match", "\"3\"")],
            Some(json!([{"op": "replace", "path": "/on", "value": true},
                        {"op": "add", "path": "/rules/-", "value": {"variation": 1, "clauses": [
                            {"attribute": "key", "op": "in", "values": ["x"]}]}}])),
        )
        .await;
    assert_eq!(both.status, StatusCode::FORBIDDEN, "{}", both.body);
    assert_eq!(both.body["action"], "updateRules");
    let stored = api.get(PROD_CHECKOUT).await;
    assert_eq!(stored.body["on"], json!(false));
    assert_eq!(stored.body["rules"], json!([]));
    let audit = api.get("/api/v1/audit?kind=targeting&key=checkout").await;
    let last = audit.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["actor"].as_str().unwrap().starts_with("token:tok-"),
        "{last}"
    );
    assert_eq!(last["comment"], "incident 42");
    assert_eq!(last["after"]["on"], json!(false));
}

#[tokio::test]
async fn access_checks_say_which_role_and_statement_decided() {
    let (api, writer_no_payments) = world("writer-no-payments").await;
    let check = |token: String, query: &'static str| {
        let api = &api;
        async move {
            api.call(
                Method::GET,
                &format!("/api/v1/access/check?{query}"),
                Some(&token),
                &[],
                None,
            )
            .await
        }
    };
    let denied = check(
        writer_no_payments.clone(),
        "action=updateRules&resource=proj/default:env/production:flag/payments-flow;payments",
    )
    .await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.body);
    assert_eq!(denied.body["allowed"], json!(false));
    assert_eq!(denied.body["role"], "no-payment-rules");
    assert_eq!(denied.body["statementIndex"], json!(0));
    assert_eq!(denied.body["statement"]["effect"], "deny");
    let allowed = check(
        writer_no_payments.clone(),
        "action=updateOn&resource=proj/default:env/production:flag/payments-flow;payments",
    )
    .await;
    assert_eq!(allowed.body["allowed"], json!(true), "{}", allowed.body);
    assert_eq!(allowed.body["role"], "writer");
    // Asking about someone else is for those who manage members.
    let about_other = check(
        writer_no_payments.clone(),
        "action=updateOn&resource=proj/default&member=x@example.com",
    )
    .await;
    assert_eq!(
        about_other.status,
        StatusCode::FORBIDDEN,
        "{}",
        about_other.body
    );
    // Unknown actions and malformed resources name the parameter.
    let unknown = check(
        writer_no_payments.clone(),
        "action=updateEverything&resource=proj/x",
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["field"], "action");
    let malformed = check(writer_no_payments, "action=updateOn&resource=project/x").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["field"], "resource");
}

#[tokio::test]
async fn roles_are_validated_guarded_and_cannot_be_deleted_while_held() {
    let (api, kill_switch) = world("kill-switch").await;
    // Validation names the field inside the policy.
    for (policy, field) in [
        (
            json!([{"effect": "allow", "actions": ["updateOnn"], "resources": ["proj/*"]}]),
            "policy[0].actions[0]",
        ),
        (
            json!([{"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:flag/*"]}]),
            "policy[0].resources[0]",
        ),
        (
            json!([{"effect": "maybe", "actions": ["updateOn"], "resources": ["proj/*"]}]),
            "policy[0].effect",
        ),
    ] {
        let reply = api
            .post(
                "/api/v1/roles",
                json!({"key": "bad", "name": "Bad", "policy": policy}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["field"], field, "{}", reply.body);
    }
    // A role held by a token cannot be deleted; the answer names the holder.
    let held = api
        .call(
            Method::DELETE,
            "/api/v1/roles/kill-switch",
            Some(api.admin()),
            &[("if-match", "\"1\"")],
            None,
        )
        .await;
    assert_eq!(held.status, StatusCode::CONFLICT, "{}", held.body);
    assert_eq!(held.body["code"], "in_use");
    assert!(
        held.body["message"]
            .as_str()
            .unwrap()
            .contains("token:tok-"),
        "{}",
        held.body
    );
    // Holding a custom role does not let a token grant roles: no escalation through tokens.
    let escalate = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&kill_switch),
            &[],
            Some(json!({"name": "mine", "role": "admin"})),
        )
        .await;
    assert_eq!(escalate.status, StatusCode::FORBIDDEN, "{}", escalate.body);
    // Naming a role that does not exist is refused with the field.
    let unknown = api
        .post(
            "/api/v1/tokens",
            json!({"name": "x", "customRoles": ["nope"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
    assert_eq!(unknown.body["field"], "customRoles[0]");
    // Editing a role changes what its holders may do at their next request.
    let before = api
        .call(Method::GET, PROD_CHECKOUT, Some(&kill_switch), &[], None)
        .await;
    assert_eq!(before.status, StatusCode::FORBIDDEN, "{}", before.body);
    let widened = api
        .put(
            "/api/v1/roles/kill-switch",
            "\"1\"",
            json!({"key": "kill-switch", "name": "Support", "policy": [
                {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]},
                {"effect": "allow", "actions": ["viewProject"], "resources": ["proj/*"]}]}),
        )
        .await;
    assert_eq!(widened.status, StatusCode::OK, "{}", widened.body);
    let after = api
        .call(Method::GET, PROD_CHECKOUT, Some(&kill_switch), &[], None)
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
}

#[tokio::test]
async fn a_members_roles_change_under_their_open_session() {
    let (api, tess) = world("test-team").await;
    let in_test = "/api/v1/projects/default/environments/test/flags/checkout";
    let turn_on = |token: String, version: &'static str| {
        let api = &api;
        async move {
            api.call(
                Method::PATCH,
                in_test,
                Some(&token),
                &[("if-match", version)],
                Some(json!([{"op": "replace", "path": "/on", "value": true}])),
            )
            .await
        }
    };
    assert_eq!(turn_on(tess.clone(), "\"1\"").await.status, StatusCode::OK);
    // Out of the team: the same session is refused at its next request.
    let team = api.get("/api/v1/teams/test-team").await;
    let version = team.etag.unwrap();
    let removed = api
        .put(
            "/api/v1/teams/test-team",
            &version,
            json!({"key": "test-team", "name": "Test team", "members": [], "customRoles": ["test-env-writer"]}),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(
        turn_on(tess.clone(), "\"2\"").await.status,
        StatusCode::FORBIDDEN
    );
    // Made a writer directly: allowed again.
    let promoted = api
        .call(
            Method::PATCH,
            "/api/v1/members/tess@example.com",
            Some(api.admin()),
            &[],
            Some(json!({"role": "writer"})),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    assert_eq!(promoted.body["role"], "writer");
    let off = api
        .call(
            Method::PATCH,
            in_test,
            Some(&tess),
            &[("if-match", "\"2\"")],
            Some(json!([{"op": "replace", "path": "/on", "value": false}])),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    // A writer cannot make themselves an admin.
    let self_promotion = api
        .call(
            Method::PATCH,
            "/api/v1/members/tess@example.com",
            Some(&tess),
            &[],
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        self_promotion.status,
        StatusCode::FORBIDDEN,
        "{}",
        self_promotion.body
    );
}

#[tokio::test]
async fn an_invitation_lets_someone_choose_their_password_once_with_the_roles_it_carries() {
    let (api, writer) = world("writer").await;
    // Writers do not add people.
    let refused = api
        .call(
            Method::POST,
            "/api/v1/invitations",
            Some(&writer),
            &[],
            Some(json!({"email": "sam@example.com"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(refused.body["action"], "createMember");
    assert_eq!(refused.body["resource"], "member/sam@example.com");
    let invited = api
        .post(
            "/api/v1/invitations",
            json!({"email": "Sam@Example.com", "customRoles": ["kill-switch"]}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.body);
    let secret = invited.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(invited.body["path"], format!("/invite/{secret}"));
    assert_eq!(invited.body["invitation"]["role"], "noAccess");
    // The listing never shows the secret.
    let listed = api.get("/api/v1/invitations").await;
    assert_eq!(listed.body["items"][0]["email"], "sam@example.com");
    assert!(!listed.body.to_string().contains(&secret));
    let accept = |secret: String, password: &'static str| {
        let api = &api;
        async move {
            api.call(
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                &[],
                Some(json!({"secret": secret, "name": "Sam", "password": password})),
            )
            .await
        }
    };
    // A short password is refused with its field, and the link still works afterwards.
    let short = accept(secret.clone(), "short").await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST, "{}", short.body);
    assert_eq!(short.body["field"], "password");
    let joined = accept(secret.clone(), "correct horse battery").await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
    let session = joined.body["token"].as_str().unwrap().to_owned();
    // The session carries the invitation's roles: the kill switch works, rules do not.
    let off = api
        .call(
            Method::PATCH,
            PROD_CHECKOUT,
            Some(&session),
            &[("if-match", "\"2\"")],
            Some(json!([{"op": "replace", "path": "/on", "value": false}])),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    // Once only, and guessing gets nothing.
    for secret in [
        secret,
        "fsi_00000000000000000000000000000000".to_owned(),
        "x".to_owned(),
    ] {
        let again = accept(secret, "correct horse battery").await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    }
    // Existing members cannot be invited; revoked invitations stop working.
    let existing = api
        .post("/api/v1/invitations", json!({"email": "sam@example.com"}))
        .await;
    assert_eq!(existing.status, StatusCode::CONFLICT, "{}", existing.body);
    let other = api
        .post("/api/v1/invitations", json!({"email": "kim@example.com"}))
        .await;
    let id = other.body["invitation"]["id"].as_str().unwrap();
    let revoked = api
        .call(
            Method::DELETE,
            &format!("/api/v1/invitations/{id}"),
            Some(api.admin()),
            &[],
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let late = accept(
        other.body["secret"].as_str().unwrap().to_owned(),
        "correct horse battery",
    )
    .await;
    assert_eq!(late.status, StatusCode::NOT_FOUND, "{}", late.body);
}
