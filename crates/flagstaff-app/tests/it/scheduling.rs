//! Scheduled changes on a manual clock: time zones and DST, reschedule, cancel, rollout plans,
//! exactly once across two nodes, failures that say why.

use std::sync::Arc;

use flagstaff_app::{
    Actor, App, AppError, AuditQuery, ErrorCode, NewRolloutPlan, NewSchedule, Role, ScheduleStatus,
    ScheduleUpdate, Target,
};
use serde_json::{Value, json};

use crate::support::{Fixture, START};

const HOUR: i64 = 3_600_000;

/// A member's actor, as their session authenticates.
pub(crate) async fn member(fixture: &Fixture, email: &str, role: Role) -> Actor {
    fixture.member(email, role).await;
    let session = fixture
        .app
        .sign_in(email, "correct horse battery", None)
        .await
        .expect("sign in");
    fixture
        .app
        .authenticate(&session.token)
        .await
        .expect("actor")
}

pub(crate) async fn weights(fixture: &Fixture) -> Value {
    let t = fixture
        .app
        .targeting(&Actor::system(), "default", "test", "ramp")
        .await
        .unwrap()
        .value;
    serde_json::to_value(&t.fallthrough).unwrap()
}

pub(crate) async fn on(fixture: &Fixture, environment: &str, key: &str) -> (bool, u64) {
    let t = fixture
        .app
        .targeting(&Actor::system(), "default", environment, key)
        .await
        .unwrap();
    (t.value.on, t.version)
}

pub(crate) fn schedule(at: &str, tz: &str, instructions: Value) -> NewSchedule {
    NewSchedule {
        execute_at: Some(at.into()),
        time_zone: Some(tz.into()),
        instructions: serde_json::from_value(instructions).unwrap(),
        comment: "launch".into(),
        ..NewSchedule::default()
    }
}

pub(crate) fn code(result: Result<impl std::fmt::Debug, AppError>) -> (ErrorCode, String) {
    match result {
        Err(AppError::Invalid { code, field, .. }) => (code, field),
        Err(e) => (e.code(), String::new()),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

pub(crate) async fn audit_of(app: &App, action: &str) -> Vec<flagstaff_app::AuditEntry> {
    app.audit(
        &Actor::system(),
        &AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|e| e.action == action)
    .collect()
}

#[tokio::test]
async fn eight_in_the_morning_in_auckland_runs_at_that_instant_as_its_creator() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    let ada = member(&fixture, "ada@example.com", Role::Writer).await;
    let target = Target::flag("default", "production", "launch");
    // The manual clock starts on 2026-01-01 (summer in New Zealand: UTC+13).
    let made = fixture
        .app
        .schedule_change(
            &ada,
            &target,
            schedule(
                "2026-01-02T08:00:00",
                "Pacific/Auckland",
                json!([{"kind": "turnFlagOn"}]),
            ),
        )
        .await
        .unwrap();
    let moment = 1_767_294_000_000; // 2026-01-01T19:00:00Z
    assert_eq!(made.value.execution_date, moment);
    assert_eq!(
        made.value.local_time.as_deref(),
        Some("2026-01-02T08:00:00+13:00")
    );
    fixture.clock.advance(moment - START - 1);
    let run = fixture.app.run_due_schedules().await.unwrap();
    assert!(run.executed.is_empty());
    assert_eq!(run.next_due, Some(moment));
    assert!(!on(&fixture, "production", "launch").await.0);
    fixture.clock.advance(1);
    let run = fixture.app.run_due_schedules().await.unwrap();
    assert_eq!(run.executed, vec![made.value.id.clone()]);
    assert!(on(&fixture, "production", "launch").await.0);
    // An ordinary audited targeting change, named after the schedule and its creator.
    let entries = audit_of(&fixture.app, "flag.targeting.update").await;
    let last = entries.last().unwrap();
    assert_eq!(
        last.actor,
        format!("schedule:{} by member:ada@example.com", made.value.id)
    );
    assert_eq!(last.comment, "launch");
    let done = fixture
        .app
        .scheduled_change(&ada, ("default", "production"), &made.value.id)
        .await
        .unwrap();
    assert_eq!(done.value.status, ScheduleStatus::Executed);
    assert_eq!(done.value.late_by_ms, Some(0));
    // Running again does nothing.
    assert!(
        fixture
            .app
            .run_due_schedules()
            .await
            .unwrap()
            .executed
            .is_empty()
    );
}

#[tokio::test]
async fn a_moment_passed_while_down_runs_at_start_recorded_as_late() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    let target = Target::flag("default", "test", "launch");
    let made = fixture
        .app
        .schedule_change(
            &Actor::system(),
            &target,
            NewSchedule {
                execution_date: Some(START + HOUR),
                instructions: vec![json!({"kind": "turnFlagOn"})],
                ..NewSchedule::default()
            },
        )
        .await
        .unwrap();
    fixture.clock.advance(3 * HOUR + 1234);
    let run = fixture.app.run_due_schedules().await.unwrap();
    assert_eq!(run.executed.len(), 1);
    let done = fixture
        .app
        .scheduled_change(&Actor::system(), ("default", "test"), &made.value.id)
        .await
        .unwrap();
    assert_eq!(done.value.late_by_ms, Some(2 * HOUR + 1234));
}

#[tokio::test]
async fn new_york_days_reschedule_and_cancel() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    let target = Target::flag("default", "test", "launch");
    let system = Actor::system();
    // 02:30 on the spring-forward day does not exist.
    let gap = fixture
        .app
        .schedule_change(
            &system,
            &target,
            schedule(
                "2026-03-08T02:30:00",
                "America/New_York",
                json!([{"kind": "turnFlagOn"}]),
            ),
        )
        .await;
    assert_eq!(code(gap), (ErrorCode::InvalidField, "executeAt".into()));
    let made = fixture
        .app
        .schedule_change(
            &system,
            &target,
            schedule(
                "2026-03-08T08:00:00",
                "America/New_York",
                json!([{"kind": "turnFlagOn"}]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        made.value.local_time.as_deref(),
        Some("2026-03-08T08:00:00-04:00")
    );
    // Moved to the autumn change day: 08:00 is EST there.
    let moved = fixture
        .app
        .reschedule(
            &system,
            ("default", "test"),
            &made.value.id,
            ScheduleUpdate {
                execute_at: Some("2026-11-01T08:00:00".into()),
                ..ScheduleUpdate::default()
            },
            Some(made.version),
        )
        .await
        .unwrap();
    assert_eq!(
        moved.value.local_time.as_deref(),
        Some("2026-11-01T08:00:00-05:00")
    );
    assert_eq!(moved.value.execution_date, 1_793_538_000_000); // 13:00Z
    // A stale version conflicts; the past is refused.
    let stale = fixture
        .app
        .reschedule(
            &system,
            ("default", "test"),
            &made.value.id,
            ScheduleUpdate::default(),
            Some(made.version),
        )
        .await;
    assert_eq!(code(stale).0, ErrorCode::VersionConflict);
    let past = fixture
        .app
        .reschedule(
            &system,
            ("default", "test"),
            &made.value.id,
            ScheduleUpdate {
                execution_date: Some(START - 1),
                ..ScheduleUpdate::default()
            },
            None,
        )
        .await;
    assert_eq!(code(past).1, "executeAt");
    fixture
        .app
        .cancel_scheduled_change(&system, ("default", "test"), &made.value.id, None, "no")
        .await
        .unwrap();
    fixture.clock.advance(400 * 24 * HOUR);
    assert!(
        fixture
            .app
            .run_due_schedules()
            .await
            .unwrap()
            .executed
            .is_empty()
    );
    assert!(!on(&fixture, "test", "launch").await.0);
    let all = fixture
        .app
        .scheduled_changes(&system, ("default", "test"), None, true)
        .await
        .unwrap();
    assert_eq!(all[0].value.status, ScheduleStatus::Cancelled);
    // Cancelling twice says so.
    let again = fixture
        .app
        .cancel_scheduled_change(&system, ("default", "test"), &made.value.id, None, "")
        .await;
    assert_eq!(code(again).0, ErrorCode::InvalidState);
}

#[tokio::test]
async fn a_rollout_plan_steps_through_its_percentages_and_cancels_as_one() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "ramp", "name": "Ramp"}))
        .await
        .unwrap();
    fixture
        .targeting(
            "test",
            "ramp",
            json!({"on": true, "fallthrough": {"variation": 1}}),
        )
        .await
        .unwrap();
    let target = Target::flag("default", "test", "ramp");
    let plan = |steps: Value| NewRolloutPlan {
        time_zone: Some("UTC".into()),
        variation: Some(0),
        steps: serde_json::from_value(steps).unwrap(),
        comment: "ramp".into(),
        ..NewRolloutPlan::default()
    };
    // Steps out of order, and a step that is neither a percentage nor instructions.
    let unordered = fixture
        .app
        .create_rollout_plan(
            &Actor::system(),
            &target,
            plan(json!([
                {"executeAt": "2026-01-02T00:00:00", "percent": 1},
                {"executeAt": "2026-01-03T00:00:00", "percent": 5},
                {"executeAt": "2026-01-02T12:00:00", "percent": 25}
            ])),
        )
        .await;
    assert_eq!(
        code(unordered),
        (ErrorCode::InvalidField, "steps[2].executeAt".into())
    );
    let empty = fixture
        .app
        .create_rollout_plan(
            &Actor::system(),
            &target,
            plan(json!([{"executeAt": "2026-01-02T00:00:00"}])),
        )
        .await;
    assert_eq!(code(empty).1, "steps[0]");
    let bad_variation = fixture
        .app
        .create_rollout_plan(
            &Actor::system(),
            &target,
            NewRolloutPlan {
                variation: Some(7),
                ..plan(json!([{"executeAt": "2026-01-02T00:00:00", "percent": 1}]))
            },
        )
        .await;
    assert_eq!(
        code(bad_variation).1,
        "steps[0].fallthrough.rollout.variations[0].variation"
    );
    let steps = fixture
        .app
        .create_rollout_plan(
            &Actor::system(),
            &target,
            plan(json!([
                {"executeAt": "2026-01-02T00:00:00", "percent": 1},
                {"executeAt": "2026-01-03T00:00:00", "percent": 5},
                {"executeAt": "2026-01-04T00:00:00", "percent": 25},
                {"executeAt": "2026-01-05T00:00:00", "percent": 100}
            ])),
        )
        .await
        .unwrap();
    assert_eq!(steps.len(), 4);
    let plan_id = steps[0].plan.clone().unwrap();
    fixture.clock.advance(24 * HOUR);
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
    assert_eq!(
        weights(&fixture).await["rollout"]["variations"],
        json!([{"variation": 0, "weight": 1000}, {"variation": 1, "weight": 99000}])
    );
    fixture.clock.advance(24 * HOUR);
    fixture.app.run_due_schedules().await.unwrap();
    assert_eq!(
        weights(&fixture).await["rollout"]["variations"][0]["weight"],
        5000
    );
    // The rest is cancelled as one: one audit entry, two steps.
    let cancelled = fixture
        .app
        .cancel_rollout_plan(&Actor::system(), ("default", "test"), &plan_id, "hold")
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 2);
    fixture.clock.advance(10 * 24 * HOUR);
    assert!(
        fixture
            .app
            .run_due_schedules()
            .await
            .unwrap()
            .executed
            .is_empty()
    );
    assert_eq!(
        weights(&fixture).await["rollout"]["variations"][0]["weight"],
        5000
    );
    assert_eq!(
        audit_of(&fixture.app, "scheduled_change.cancel")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn two_nodes_racing_execute_a_schedule_exactly_once() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    // A second node: its own store (pool, commit lock) on the same database file.
    let url = format!("sqlite://{}", fixture.dir().join("flagstaff.db").display());
    let other = App::new(Arc::new(
        flagstaff_store::Store::open(&url)
            .await
            .unwrap()
            .with_clock(fixture.clock.clone()),
    ));
    let target = Target::flag("default", "production", "launch");
    for i in 0..5 {
        fixture
            .app
            .schedule_change(
                &Actor::system(),
                &target,
                NewSchedule {
                    execution_date: Some(START + 1000 + i),
                    instructions: vec![json!({"kind": "addTargets", "variation": 0, "values": [format!("user-{i}")]})],
                    ..NewSchedule::default()
                },
            )
            .await
            .unwrap();
    }
    fixture.clock.advance(10_000);
    // Each node runs until nothing is due, as the scheduler loop does: a node that lost every
    // attempt to the other's writes leaves the schedule pending for its next run.
    let mut executed = Vec::new();
    for _ in 0..5 {
        let (a, b) = tokio::join!(fixture.app.run_due_schedules(), other.run_due_schedules());
        executed.extend(a.unwrap().executed);
        executed.extend(b.unwrap().executed);
    }
    executed.sort();
    let before = executed.len();
    executed.dedup();
    assert_eq!(executed.len(), before, "a schedule executed twice");
    assert_eq!(executed.len(), 5);
    assert_eq!(
        audit_of(&fixture.app, "flag.targeting.update").await.len(),
        5
    );
    let t = fixture
        .app
        .targeting(&Actor::system(), "default", "production", "launch")
        .await
        .unwrap();
    assert_eq!(t.value.targets[0].values.len(), 5);
}

#[tokio::test]
async fn a_schedule_whose_rule_was_removed_fails_once_and_says_why() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    fixture
        .targeting(
            "test",
            "launch",
            json!({"rules": [{"id": "beta", "clauses": [{"attribute": "beta", "op": "in", "values": [true]}], "variation": 0}]}),
        )
        .await
        .unwrap();
    let target = Target::flag("default", "test", "launch");
    let made = fixture
        .app
        .schedule_change(
            &Actor::system(),
            &target,
            NewSchedule {
                execution_date: Some(START + HOUR),
                instructions: vec![json!({"kind": "removeRule", "ruleId": "beta"})],
                ..NewSchedule::default()
            },
        )
        .await
        .unwrap();
    // Someone removes the rule first; an unrelated edit would not have mattered.
    fixture
        .targeting("test", "launch", json!({"rules": []}))
        .await
        .unwrap();
    fixture.clock.advance(HOUR);
    let run = fixture.app.run_due_schedules().await.unwrap();
    assert_eq!(run.failed, vec![made.value.id.clone()]);
    let failed = fixture
        .app
        .scheduled_change(&Actor::system(), ("default", "test"), &made.value.id)
        .await
        .unwrap();
    assert_eq!(failed.value.status, ScheduleStatus::Failed);
    assert!(
        failed
            .value
            .error
            .as_deref()
            .unwrap()
            .starts_with("instruction_conflict")
    );
    assert_eq!(
        audit_of(&fixture.app, "scheduled_change.fail").await.len(),
        1
    );
    assert!(
        fixture
            .app
            .run_due_schedules()
            .await
            .unwrap()
            .failed
            .is_empty()
    );
}

#[tokio::test]
async fn a_schedule_cannot_do_what_its_creator_may_not() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    let reader = member(&fixture, "rea@example.com", Role::Reader).await;
    let target = Target::flag("default", "test", "launch");
    let refused = fixture
        .app
        .schedule_change(
            &reader,
            &target,
            NewSchedule {
                execution_date: Some(START + HOUR),
                instructions: vec![json!({"kind": "turnFlagOn"})],
                ..NewSchedule::default()
            },
        )
        .await;
    assert_eq!(code(refused).0, ErrorCode::Forbidden);
    // A writer who schedules, then loses the right, gets a failure at the moment.
    let writer = member(&fixture, "wri@example.com", Role::Writer).await;
    fixture
        .app
        .schedule_change(
            &writer,
            &target,
            NewSchedule {
                execution_date: Some(START + HOUR),
                instructions: vec![json!({"kind": "turnFlagOn"})],
                ..NewSchedule::default()
            },
        )
        .await
        .unwrap();
    fixture
        .app
        .delete_member(&Actor::system(), "wri@example.com", "left")
        .await
        .unwrap();
    fixture.clock.advance(HOUR);
    assert_eq!(
        fixture.app.run_due_schedules().await.unwrap().failed.len(),
        1
    );
    assert!(!on(&fixture, "test", "launch").await.0);
}

#[tokio::test]
async fn finished_schedules_are_pruned_after_ninety_days_and_pending_ones_never() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "launch", "name": "Launch"}))
        .await
        .unwrap();
    let target = Target::flag("default", "test", "launch");
    let make = |at: i64| NewSchedule {
        execution_date: Some(at),
        instructions: vec![json!({"kind": "turnFlagOn"})],
        ..NewSchedule::default()
    };
    let done = fixture
        .app
        .schedule_change(&Actor::system(), &target, make(START + HOUR))
        .await
        .unwrap();
    let pending = fixture
        .app
        .schedule_change(&Actor::system(), &target, make(START + 400 * 24 * HOUR))
        .await
        .unwrap();
    fixture.clock.advance(HOUR);
    fixture.app.run_due_schedules().await.unwrap();
    let all = |fixture: &Fixture| {
        let app = fixture.app.clone();
        async move {
            app.scheduled_changes(&Actor::system(), ("default", "test"), None, true)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.value.id)
                .collect::<Vec<_>>()
        }
    };
    fixture.clock.advance(89 * 24 * HOUR);
    assert_eq!(
        fixture.app.remove_expired().await.unwrap().workflow_records,
        0
    );
    assert_eq!(all(&fixture).await.len(), 2);
    fixture.clock.advance(2 * 24 * HOUR);
    assert_eq!(
        fixture.app.remove_expired().await.unwrap().workflow_records,
        1
    );
    assert_eq!(all(&fixture).await, vec![pending.value.id]);
    assert!(!all(&fixture).await.contains(&done.value.id));
}
