//! The release-workflow operations' real exchanges for the schema check (`schemas.rs`): each
//! documented operation answered with a success at least once.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::schemas::Recorder;
use crate::support::Receiver;

pub(crate) async fn exercise(r: &mut Recorder<'_>) {
    let c = [("x-flagstaff-comment", "schema check")];
    let e = "/projects/{project}/environments/{environment}";
    let test = "/projects/default/environments/test";
    let flags = "/projects/{project}/flags";
    r.call(
        Method::POST,
        flags,
        "/projects/default/flags",
        &c,
        Some(json!({"key": "wf", "name": "Workflows"})),
    )
    .await;

    // Scheduled changes, for a flag and a segment.
    let schedules = format!("{e}/flags/{{key}}/scheduled-changes");
    let made = r
        .call(
            Method::POST,
            &schedules,
            &format!("{test}/flags/wf/scheduled-changes"),
            &c,
            Some(json!({"executeAt": "2030-12-01T08:00:00", "timeZone": "Pacific/Auckland", "instructions": [{"kind": "turnFlagOn"}], "comment": "launch"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    r.call(
        Method::GET,
        &schedules,
        &format!("{test}/flags/wf/scheduled-changes"),
        &[],
        None,
    )
    .await;
    r.call(
        Method::GET,
        &format!("{e}/scheduled-changes"),
        &format!("{test}/scheduled-changes"),
        &[],
        None,
    )
    .await;
    let one = format!("{e}/scheduled-changes/{{id}}");
    r.call(
        Method::GET,
        &one,
        &format!("{test}/scheduled-changes/{id}"),
        &[],
        None,
    )
    .await;
    let moved = r
        .call(
            Method::PATCH,
            &one,
            &format!("{test}/scheduled-changes/{id}"),
            &[],
            Some(json!({"executeAt": "2031-01-01T08:00:00"})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    r.call(
        Method::DELETE,
        &one,
        &format!("{test}/scheduled-changes/{id}"),
        &c,
        None,
    )
    .await;
    r.call(
        Method::POST,
        &format!("{e}/segments"),
        &format!("{test}/segments"),
        &c,
        Some(json!({"key": "wfseg"})),
    )
    .await;
    let segment_schedules = format!("{e}/segments/{{key}}/scheduled-changes");
    r.call(
        Method::POST,
        &segment_schedules,
        &format!("{test}/segments/wfseg/scheduled-changes"),
        &c,
        Some(json!({"executionDate": 1_900_000_000_000i64, "instructions": [{"kind": "addIncludedTargets", "values": ["a"]}]})),
    )
    .await;
    r.call(
        Method::GET,
        &segment_schedules,
        &format!("{test}/segments/wfseg/scheduled-changes?finished=true"),
        &[],
        None,
    )
    .await;

    // A rollout plan, created and cancelled as one.
    let plan = r
        .call(
            Method::POST,
            &format!("{e}/flags/{{key}}/rollout-plans"),
            &format!("{test}/flags/wf/rollout-plans"),
            &c,
            Some(
                json!({"timeZone": "UTC", "variation": 0, "baseline": 1, "steps": [
                {"executeAt": "2030-01-01T00:00:00", "percent": 10},
                {"executeAt": "2030-01-02T00:00:00", "percent": 100}]}),
            ),
        )
        .await;
    assert_eq!(plan.status, StatusCode::CREATED, "{}", plan.body);
    let plan_id = plan.body["plan"].as_str().unwrap().to_owned();
    r.call(
        Method::DELETE,
        &format!("{e}/rollout-plans/{{plan}}"),
        &format!("{test}/rollout-plans/{plan_id}"),
        &c,
        None,
    )
    .await;

    // Change requests: the environment lets requesters review their own here, so that the one
    // token of this test can approve.
    let version = r.version(e, test).await;
    r.call(
        Method::PUT,
        e,
        test,
        &[("if-match", &version)],
        Some(json!({"name": "Test", "approvals": {"required": true, "minApprovals": 1, "canReviewOwn": true}})),
    )
    .await;
    let requests = format!("{e}/change-requests");
    let request = r
        .call(
            Method::POST,
            &requests,
            &format!("{test}/change-requests"),
            &c,
            Some(json!({"flag": "wf", "instructions": [{"kind": "turnFlagOn"}], "comment": "go", "reviewers": ["ops@example.com"]})),
        )
        .await;
    assert_eq!(request.status, StatusCode::CREATED, "{}", request.body);
    let id = request.body["id"].as_str().unwrap().to_owned();
    r.call(
        Method::GET,
        &requests,
        &format!("{test}/change-requests"),
        &[],
        None,
    )
    .await;
    r.call(
        Method::GET,
        "/change-requests/{id}",
        &format!("/change-requests/{id}"),
        &[],
        None,
    )
    .await;
    r.call(
        Method::POST,
        "/change-requests/{id}/reviews",
        &format!("/change-requests/{id}/reviews"),
        &[],
        Some(json!({"kind": "approve", "comment": "fine"})),
    )
    .await;
    let applied = r
        .call(
            Method::POST,
            "/change-requests/{id}/apply",
            &format!("/change-requests/{id}/apply"),
            &[],
            Some(json!({})),
        )
        .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    let withdrawn = r
        .call(
            Method::POST,
            &requests,
            &format!("{test}/change-requests"),
            &c,
            Some(json!({"segment": "wfseg", "instructions": [{"kind": "addExcludedTargets", "values": ["b"]}]})),
        )
        .await;
    let id = withdrawn.body["id"].as_str().unwrap().to_owned();
    r.call(
        Method::DELETE,
        "/change-requests/{id}",
        &format!("/change-requests/{id}"),
        &c,
        None,
    )
    .await;

    // Triggers.
    let triggers = "/projects/{project}/flags/{key}/environments/{environment}/triggers";
    let made = r
        .call(
            Method::POST,
            triggers,
            "/projects/default/flags/wf/environments/test/triggers",
            &c,
            Some(json!({"action": "turnFlagOff", "comment": "alert"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    r.call(
        Method::GET,
        triggers,
        "/projects/default/flags/wf/environments/test/triggers",
        &[],
        None,
    )
    .await;
    let reset = r
        .call(
            Method::PATCH,
            &format!("{triggers}/{{id}}"),
            &format!("/projects/default/flags/wf/environments/test/triggers/{id}"),
            &[],
            Some(json!({"resetUrl": true})),
        )
        .await;
    let secret = reset.body["triggerUrl"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let fired = r
        .call(
            Method::POST,
            "/triggers/{secret}",
            &format!("/triggers/{secret}"),
            &[],
            None,
        )
        .await;
    assert_eq!(fired.status, StatusCode::OK, "{}", fired.body);
    r.call(
        Method::DELETE,
        &format!("{triggers}/{{id}}"),
        &format!("/projects/default/flags/wf/environments/test/triggers/{id}"),
        &[],
        None,
    )
    .await;

    // Webhooks, with one real delivery to a receiver on 127.0.0.1.
    let receiver = Receiver::start(Vec::new(), false).await;
    let hook = r
        .call(
            Method::POST,
            "/webhooks",
            "/webhooks",
            &c,
            Some(json!({"name": "sink", "url": receiver.url, "secret": "0123456789abcdef0123",
                        "statements": [{"effect": "allow", "actions": ["*"], "resources": ["proj/*"]}]})),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    let id = hook.body["id"].as_str().unwrap().to_owned();
    r.call(Method::GET, "/webhooks", "/webhooks", &[], None)
        .await;
    let read = r
        .call(
            Method::GET,
            "/webhooks/{id}",
            &format!("/webhooks/{id}"),
            &[],
            None,
        )
        .await;
    let version = format!("\"{}\"", read.body["version"]);
    r.call(
        Method::PUT,
        "/webhooks/{id}",
        &format!("/webhooks/{id}"),
        &[("if-match", &version)],
        Some(json!({"name": "sink 2", "url": receiver.url})),
    )
    .await;
    let app = &r.api.app;
    app.fill_webhook_outbox().await.unwrap();
    app.send_due_webhooks(&flagstaff_app::webhooks::webhook_client(true))
        .await
        .unwrap();
    let deliveries = r
        .call(
            Method::GET,
            "/webhooks/{id}/deliveries",
            &format!("/webhooks/{id}/deliveries"),
            &[],
            None,
        )
        .await;
    let delivery = deliveries.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = r
        .call(
            Method::POST,
            "/webhooks/{id}/deliveries/{delivery}/redeliver",
            &format!("/webhooks/{id}/deliveries/{delivery}/redeliver"),
            &[],
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    r.call(
        Method::DELETE,
        "/webhooks/{id}",
        &format!("/webhooks/{id}"),
        &c,
        None,
    )
    .await;
}
