//! Change requests, triggers and the webhook outbox on a manual clock.

use std::sync::Arc;

use flagstaff_app::model::ApprovalSettings;
use flagstaff_app::{
    Actor, App, ApplyRequest, EnvRef, EnvironmentSettings, ErrorCode, NewChangeRequest, NewReview,
    NewSchedule, NewTrigger, NewWebhook, RequestStatus, ReviewKind, Role, Target, TriggerAction,
    TriggerUpdate, WriteMeta,
};
use serde_json::json;

use crate::scheduling::{audit_of, code, member, on};
use crate::support::{Fixture, START};

const HOUR: i64 = 3_600_000;

async fn require_approvals(fixture: &Fixture, settings: ApprovalSettings) {
    let env = fixture
        .app
        .environment(&Actor::system(), "default", "production")
        .await
        .unwrap();
    fixture
        .app
        .update_environment(
            EnvRef {
                project: "default",
                environment: "production",
            },
            &env.value.name,
            EnvironmentSettings {
                approvals: Some(settings),
                ..EnvironmentSettings::default()
            },
            WriteMeta {
                actor: &Actor::system(),
                expected: env.version,
                comment: "",
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn four_eyes_a_direct_write_is_refused_and_a_request_is_approved_by_another_and_applied() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    require_approvals(
        &fixture,
        ApprovalSettings {
            required: true,
            min_approvals: 1,
            can_review_own: false,
            bypass_role: None,
        },
    )
    .await;
    let ada = member(&fixture, "ada@example.com", Role::Writer).await;
    let bob = member(&fixture, "bob@example.com", Role::Writer).await;
    let reader = member(&fixture, "rea@example.com", Role::Reader).await;
    let direct = fixture
        .app
        .apply_flag_instructions(
            flagstaff_app::FlagRef {
                project: "default",
                environment: "production",
                key: "launch",
            },
            &[json!({"kind": "turnFlagOn"})],
            None,
            &ada,
            "",
        )
        .await;
    assert_eq!(code(direct).0, ErrorCode::ApprovalRequired);
    // Even an administrator: the bypass is the environment's to grant.
    let admin = member(&fixture, "adm@example.com", Role::Admin).await;
    let admin_direct = fixture
        .app
        .apply_flag_instructions(
            flagstaff_app::FlagRef {
                project: "default",
                environment: "production",
                key: "launch",
            },
            &[json!({"kind": "turnFlagOn"})],
            None,
            &admin,
            "",
        )
        .await;
    assert_eq!(code(admin_direct).0, ErrorCode::ApprovalRequired);
    // The test environment requires nothing.
    fixture
        .targeting("test", "launch", json!({"on": true}))
        .await
        .unwrap();
    let request = fixture
        .app
        .create_change_request(
            &ada,
            ("default", "production"),
            NewChangeRequest {
                flag: Some("launch".into()),
                instructions: vec![json!({"kind": "turnFlagOn"})],
                comment: "go live".into(),
                reviewers: vec!["bob@example.com".into()],
                ..NewChangeRequest::default()
            },
        )
        .await
        .unwrap();
    let id = request.value.id.clone();
    let review = |kind| NewReview {
        kind,
        comment: String::new(),
    };
    let own = fixture
        .app
        .review_change_request(&ada, &id, review(ReviewKind::Approve), None)
        .await;
    assert_eq!(code(own).0, ErrorCode::Forbidden);
    let by_reader = fixture
        .app
        .review_change_request(&reader, &id, review(ReviewKind::Approve), None)
        .await;
    assert_eq!(code(by_reader).0, ErrorCode::Forbidden);
    let early = fixture
        .app
        .apply_change_request(&ada, &id, ApplyRequest::default(), None)
        .await;
    assert_eq!(code(early).0, ErrorCode::InvalidState);
    // Bob declines, then changes his mind: his latest verdict counts.
    let declined = fixture
        .app
        .review_change_request(&bob, &id, review(ReviewKind::Decline), None)
        .await
        .unwrap();
    assert_eq!(declined.value.status, RequestStatus::Declined);
    let approved = fixture
        .app
        .review_change_request(&bob, &id, review(ReviewKind::Approve), None)
        .await
        .unwrap();
    assert_eq!(approved.value.status, RequestStatus::Approved);
    // The review shows the request against the document as it is now.
    let view = fixture.app.change_request(&bob, &id).await.unwrap();
    assert_eq!(view.proposed.as_ref().unwrap()["on"], true);
    assert_eq!(view.current["on"], false);
    let applied = fixture
        .app
        .apply_change_request(&bob, &id, ApplyRequest::default(), None)
        .await
        .unwrap();
    assert_eq!(applied.value.status, RequestStatus::Applied);
    assert!(on(&fixture, "production", "launch").await.0);
    let entry = audit_of(&fixture.app, "flag.targeting.update")
        .await
        .pop()
        .unwrap();
    assert_eq!(
        entry.actor,
        format!("member:bob@example.com (change request {id} by member:ada@example.com)")
    );
    // Applied once: applying again is refused.
    let again = fixture
        .app
        .apply_change_request(&bob, &id, ApplyRequest::default(), None)
        .await;
    assert_eq!(code(again).0, ErrorCode::InvalidState);
}

#[tokio::test]
async fn a_request_whose_rule_was_removed_fails_to_apply_with_a_conflict_naming_the_instruction() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    fixture
        .targeting(
            "production",
            "launch",
            json!({"rules": [{"id": "beta", "clauses": [{"attribute": "beta", "op": "in", "values": [true]}], "variation": 0}]}),
        )
        .await
        .unwrap();
    require_approvals(
        &fixture,
        ApprovalSettings {
            required: true,
            min_approvals: 1,
            can_review_own: false,
            bypass_role: Some(Role::Admin),
        },
    )
    .await;
    let ada = member(&fixture, "ada@example.com", Role::Writer).await;
    let admin = member(&fixture, "adm@example.com", Role::Admin).await;
    let request = fixture
        .app
        .create_change_request(
            &ada,
            ("default", "production"),
            NewChangeRequest {
                flag: Some("launch".into()),
                instructions: vec![
                    json!({"kind": "turnFlagOn"}),
                    json!({"kind": "removeRule", "ruleId": "beta"}),
                ],
                ..NewChangeRequest::default()
            },
        )
        .await
        .unwrap();
    fixture
        .app
        .review_change_request(
            &admin,
            &request.value.id,
            NewReview {
                kind: ReviewKind::Approve,
                comment: "ok".into(),
            },
            None,
        )
        .await
        .unwrap();
    // The administrator may bypass here (bypassRole admin) and removes the rule directly.
    fixture
        .app
        .apply_flag_instructions(
            flagstaff_app::FlagRef {
                project: "default",
                environment: "production",
                key: "launch",
            },
            &[json!({"kind": "removeRule", "ruleId": "beta"})],
            None,
            &admin,
            "",
        )
        .await
        .unwrap();
    let view = fixture
        .app
        .change_request(&admin, &request.value.id)
        .await
        .unwrap();
    assert_eq!(view.conflict.as_ref().unwrap()["field"], "instructions[1]");
    let failed = fixture
        .app
        .apply_change_request(&admin, &request.value.id, ApplyRequest::default(), None)
        .await;
    assert_eq!(
        code(failed),
        (ErrorCode::InstructionConflict, "instructions[1]".into())
    );
    assert!(
        !on(&fixture, "production", "launch").await.0,
        "all or nothing"
    );
}

#[tokio::test]
async fn an_approved_request_can_be_scheduled_and_runs_approved() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    require_approvals(
        &fixture,
        ApprovalSettings {
            required: true,
            ..ApprovalSettings::default()
        },
    )
    .await;
    let ada = member(&fixture, "ada@example.com", Role::Writer).await;
    let bob = member(&fixture, "bob@example.com", Role::Writer).await;
    // Scheduling directly is a direct write too.
    let direct = fixture
        .app
        .schedule_change(
            &ada,
            &Target::flag("default", "production", "launch"),
            NewSchedule {
                execution_date: Some(START + HOUR),
                instructions: vec![json!({"kind": "turnFlagOn"})],
                ..NewSchedule::default()
            },
        )
        .await;
    assert_eq!(code(direct).0, ErrorCode::ApprovalRequired);
    let request = fixture
        .app
        .create_change_request(
            &ada,
            ("default", "production"),
            NewChangeRequest {
                flag: Some("launch".into()),
                instructions: vec![json!({"kind": "turnFlagOn"})],
                execute_at: Some("2026-01-01T09:00:00".into()),
                time_zone: Some("Europe/London".into()),
                ..NewChangeRequest::default()
            },
        )
        .await
        .unwrap();
    let id = request.value.id.clone();
    fixture
        .app
        .review_change_request(
            &bob,
            &id,
            NewReview {
                kind: ReviewKind::Approve,
                comment: String::new(),
            },
            None,
        )
        .await
        .unwrap();
    let scheduled = fixture
        .app
        .apply_change_request(&bob, &id, ApplyRequest::default(), None)
        .await
        .unwrap();
    assert_eq!(scheduled.value.status, RequestStatus::Scheduled);
    assert!(!on(&fixture, "production", "launch").await.0);
    fixture.clock.advance(9 * HOUR);
    assert_eq!(
        fixture
            .app
            .run_due_schedules()
            .await
            .unwrap()
            .executed
            .len(),
        1
    );
    assert!(on(&fixture, "production", "launch").await.0);
    let view = fixture.app.change_request(&bob, &id).await.unwrap();
    assert_eq!(view.request.status, RequestStatus::Applied);
    // A scheduled request whose schedule is cancelled is cancelled with it.
    let second = fixture
        .app
        .create_change_request(
            &ada,
            ("default", "production"),
            NewChangeRequest {
                flag: Some("launch".into()),
                instructions: vec![json!({"kind": "turnFlagOff"})],
                ..NewChangeRequest::default()
            },
        )
        .await
        .unwrap();
    let second_id = second.value.id.clone();
    fixture
        .app
        .review_change_request(
            &bob,
            &second_id,
            NewReview {
                kind: ReviewKind::Approve,
                comment: String::new(),
            },
            None,
        )
        .await
        .unwrap();
    let scheduled = fixture
        .app
        .apply_change_request(
            &bob,
            &second_id,
            ApplyRequest {
                execution_date: Some(START + 20 * HOUR),
                ..ApplyRequest::default()
            },
            None,
        )
        .await
        .unwrap();
    let schedule = scheduled.value.schedule.clone().unwrap();
    fixture
        .app
        .cancel_scheduled_change(
            &bob,
            ("default", "production"),
            &schedule,
            None,
            "not today",
        )
        .await
        .unwrap();
    let view = fixture.app.change_request(&bob, &second_id).await.unwrap();
    assert_eq!(view.request.status, RequestStatus::Cancelled);
}

#[tokio::test]
async fn a_trigger_turns_the_flag_off_once_is_rate_limited_and_dies_with_its_url() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "checkout", "name": "Checkout"}))
        .await
        .unwrap();
    fixture
        .targeting("production", "checkout", json!({"on": true}))
        .await
        .unwrap();
    let ops = member(&fixture, "ops@example.com", Role::Writer).await;
    let flag = flagstaff_app::FlagRef {
        project: "default",
        environment: "production",
        key: "checkout",
    };
    let made = fixture
        .app
        .create_trigger(
            &ops,
            flag,
            NewTrigger {
                action: TriggerAction::TurnFlagOff,
                comment: "p99 alert".into(),
            },
        )
        .await
        .unwrap();
    let secret = made.trigger_url.rsplit('/').next().unwrap().to_owned();
    // Nothing about the secret is kept but its fingerprint and hint.
    let listed = serde_json::to_string(&fixture.app.triggers(&ops, flag).await.unwrap()).unwrap();
    assert!(!listed.contains(&secret));
    assert!(!listed.contains("secretSha256"), "{listed}");
    let fired = fixture.app.fire_trigger(&secret).await.unwrap();
    assert!(fired.changed);
    assert!(!on(&fixture, "production", "checkout").await.0);
    let entry = audit_of(&fixture.app, "flag.targeting.update")
        .await
        .pop()
        .unwrap();
    assert_eq!(
        entry.actor,
        format!("trigger:{} by member:ops@example.com", made.trigger.id)
    );
    assert_eq!(entry.comment, "p99 alert");
    // Off already: nothing written.
    let version = on(&fixture, "production", "checkout").await.1;
    assert!(!fixture.app.fire_trigger(&secret).await.unwrap().changed);
    assert_eq!(on(&fixture, "production", "checkout").await.1, version);
    for _ in 2..flagstaff_app::TRIGGER_CALLS_PER_MINUTE {
        fixture.app.fire_trigger(&secret).await.unwrap();
    }
    assert_eq!(
        code(fixture.app.fire_trigger(&secret).await).0,
        ErrorCode::TooManyRequests
    );
    fixture.clock.advance(60_000);
    // A new URL: the old one is gone at once.
    let (_, url) = fixture
        .app
        .update_trigger(
            &ops,
            flag,
            &made.trigger.id,
            TriggerUpdate {
                reset_url: true,
                ..TriggerUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        code(fixture.app.fire_trigger(&secret).await).0,
        ErrorCode::NotFound
    );
    let fresh = url.unwrap().rsplit('/').next().unwrap().to_owned();
    fixture.app.fire_trigger(&fresh).await.unwrap();
    fixture
        .app
        .delete_trigger(&ops, flag, &made.trigger.id)
        .await
        .unwrap();
    assert_eq!(
        code(fixture.app.fire_trigger(&fresh).await).0,
        ErrorCode::NotFound
    );
    assert_eq!(
        code(fixture.app.fire_trigger("trg-nonsense").await).0,
        ErrorCode::NotFound
    );
    // Readers cannot make triggers.
    let reader = member(&fixture, "rea@example.com", Role::Reader).await;
    let refused = fixture
        .app
        .create_trigger(
            &reader,
            flag,
            NewTrigger {
                action: TriggerAction::TurnFlagOff,
                comment: String::new(),
            },
        )
        .await;
    assert_eq!(code(refused).0, ErrorCode::Forbidden);
}

#[tokio::test]
async fn the_webhook_outbox_queues_each_selected_change_once() {
    let fixture = Fixture::new().await.with_private_webhooks();
    let admin = Actor::system();
    let all = fixture
        .app
        .create_webhook(
            &admin,
            NewWebhook {
                name: "all".into(),
                url: "http://127.0.0.1:9/".into(),
                secret: None,
                on: true,
                statements: None,
            },
            "",
        )
        .await
        .unwrap();
    let production = fixture
        .app
        .create_webhook(
            &admin,
            NewWebhook {
                name: "production flags".into(),
                url: "http://127.0.0.1:9/".into(),
                secret: Some("0123456789abcdef".into()),
                on: true,
                statements: Some(json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/production:flag/*"]}])),
            },
            "",
        )
        .await
        .unwrap();
    fixture
        .flag(json!({"key": "a", "name": "A"}))
        .await
        .unwrap();
    fixture
        .targeting("production", "a", json!({"on": true}))
        .await
        .unwrap();
    fixture
        .targeting("test", "a", json!({"on": true}))
        .await
        .unwrap();
    // Two nodes filling at once queue each change once.
    let (x, y) = tokio::join!(
        fixture.app.fill_webhook_outbox(),
        fixture.app.fill_webhook_outbox()
    );
    let queued = x.unwrap() + y.unwrap();
    // "all": its own creation (a first delivery to check the receiver with), the second
    // webhook's, the flag, two targeting changes; "production": the production change only.
    assert_eq!(queued, 6);
    assert_eq!(fixture.app.fill_webhook_outbox().await.unwrap(), 0);
    let seen = fixture
        .app
        .webhook_deliveries(&admin, &production.id, 50)
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].state, "pending");
    assert_eq!(
        fixture
            .app
            .webhook_deliveries(&admin, &all.id, 50)
            .await
            .unwrap()
            .len(),
        5
    );
    // The secret is never shown again.
    let listed = serde_json::to_string(&fixture.app.webhooks(&admin).await.unwrap()).unwrap();
    assert!(!listed.contains("0123456789abcdef"));
    assert!(listed.contains("cdef"));
    // Refusals: actions other than "*", internal addresses without the server's permission.
    let strict = App::new(Arc::clone(&fixture.store));
    let internal = strict
        .create_webhook(
            &admin,
            NewWebhook {
                name: String::new(),
                url: "http://10.1.2.3/hook".into(),
                secret: None,
                on: true,
                statements: None,
            },
            "",
        )
        .await;
    assert_eq!(code(internal), (ErrorCode::InvalidField, "url".into()));
    let bad_filter = fixture
        .app
        .create_webhook(
            &admin,
            NewWebhook {
                name: String::new(),
                url: "http://127.0.0.1:9/".into(),
                secret: None,
                on: true,
                statements: Some(
                    json!([{"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*"]}]),
                ),
            },
            "",
        )
        .await;
    assert_eq!(code(bad_filter).1, "statements[0].actions");
    let writer = member(&fixture, "wri@example.com", Role::Writer).await;
    assert_eq!(
        code(fixture.app.webhooks(&writer).await).0,
        ErrorCode::Forbidden
    );
}

#[test]
fn signatures_are_hmac_sha256_over_timestamp_and_body() {
    // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
    assert_eq!(
        flagstaff_app::webhooks::signature("secret", 1_700_000_000, br#"{"a":1}"#),
        "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
    );
}

#[tokio::test]
async fn a_pasted_segment_list_keeps_each_key_once() {
    let fixture = Fixture::new().await;
    fixture
        .segment(
            "test",
            json!({"key": "beta", "included": ["ann", "bob", "ann", "cy", "bob"],
                   "includedContexts": [{"contextKind": "org", "values": ["acme", "acme"]}]}),
        )
        .await
        .unwrap();
    let stored = fixture
        .app
        .segment(&Actor::system(), "default", "test", "beta")
        .await
        .unwrap();
    assert_eq!(stored.value.included, ["ann", "bob", "cy"]);
    assert_eq!(stored.value.included_contexts[0].values, ["acme"]);
}
