//! Metrics (issue 21, point 1): defined per project by writers, validated with the field named,
//! versioned and audited like every other change, readable by whoever sees the project.

use flagstaff_app::metrics::{Aggregation, Metric};
use flagstaff_app::{Actor, AppError, ErrorCode, Role};
use serde_json::{Value, json};

use crate::support::Fixture;

fn metric(value: Value) -> Metric {
    serde_json::from_value(value).expect("a metric's shape")
}

fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
        projects: None,
        environments: None,
        custom_roles: Default::default(),
    }
}

fn refused(result: Result<impl std::fmt::Debug, AppError>) -> (String, String) {
    match result {
        Err(AppError::Invalid { code, field, .. }) => (code.as_str().to_owned(), field),
        other => (format!("not invalid: {other:?}"), String::new()),
    }
}

#[tokio::test]
async fn writers_define_metrics_and_everyone_in_the_project_reads_them() {
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    let writer = actor("writer", Role::Writer);
    let created = app
        .create_metric(
            &writer,
            "default",
            metric(
                json!({"key": "revenue", "name": " Revenue ", "kind": "numeric",
                "eventKey": "purchase", "unit": "EUR"}),
            ),
            "for the checkout experiment",
        )
        .await
        .unwrap();
    // Trimmed, and a numeric metric sums unless told otherwise.
    assert_eq!(created.value.name, "Revenue");
    assert_eq!(created.value.aggregation, Some(Aggregation::Sum));

    let reader = actor("reader", Role::Reader);
    let listed = app.list_metrics(&reader, "default").await.unwrap();
    assert_eq!(listed.len(), 1);
    let refused_write = app
        .create_metric(
            &reader,
            "default",
            metric(json!({"key": "x", "name": "X", "kind": "count", "eventKey": "e"})),
            "",
        )
        .await
        .unwrap_err();
    assert_eq!(refused_write.code(), ErrorCode::Forbidden);

    // Updates name the version read; a stale one is a conflict; the key cannot change.
    let mut changed = created.value.clone();
    changed.aggregation = Some(Aggregation::Mean);
    let updated = app
        .update_metric(
            &writer,
            "default",
            "revenue",
            changed.clone(),
            created.version,
            "",
        )
        .await
        .unwrap();
    assert_eq!(updated.value.aggregation, Some(Aggregation::Mean));
    let stale = app
        .update_metric(
            &writer,
            "default",
            "revenue",
            changed.clone(),
            created.version,
            "",
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code(), ErrorCode::VersionConflict);
    let mut renamed_key = changed;
    renamed_key.key = "other".into();
    assert_eq!(
        refused(
            app.update_metric(
                &writer,
                "default",
                "revenue",
                renamed_key,
                updated.version,
                ""
            )
            .await
        ),
        ("invalid_field".to_owned(), "key".to_owned())
    );

    // The audit log has the three changes, with before and after.
    app.delete_metric(&writer, "default", "revenue", updated.version, "not needed")
        .await
        .unwrap();
    let gone = app.metric(&reader, "default", "revenue").await.unwrap_err();
    assert_eq!(gone.code(), ErrorCode::NotFound);
    let audit = app
        .audit(
            &Actor::system(),
            &flagstaff_app::AuditQuery {
                kind: Some("metric".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e.kind == "metric")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["metric.create", "metric.update", "metric.delete"]);
}

#[tokio::test]
async fn bad_metrics_are_refused_naming_the_field() {
    let fixture = Fixture::new().await;
    let writer = actor("writer", Role::Writer);
    let cases = [
        (
            json!({"key": "a b", "name": "A", "kind": "count", "eventKey": "e"}),
            ("invalid_key", "key"),
        ),
        (
            json!({"key": "a", "name": " ", "kind": "count", "eventKey": "e"}),
            ("invalid_field", "name"),
        ),
        (
            json!({"key": "a", "name": "A", "kind": "count", "eventKey": ""}),
            ("invalid_field", "eventKey"),
        ),
        (
            json!({"key": "a", "name": "A", "kind": "count", "eventKey": "e".repeat(513)}),
            ("invalid_field", "eventKey"),
        ),
        (
            json!({"key": "a", "name": "A", "kind": "conversion", "eventKey": "e", "aggregation": "mean"}),
            ("invalid_field", "aggregation"),
        ),
        (
            json!({"key": "a", "name": "A", "kind": "numeric", "eventKey": "e", "unit": "x".repeat(33)}),
            ("invalid_field", "unit"),
        ),
        (
            json!({"key": "a", "name": "A", "kind": "numeric", "eventKey": "e", "description": "d".repeat(2_001)}),
            ("invalid_field", "description"),
        ),
        (
            json!({"key": "a", "name": "A", "kind": "count", "eventKey": "e", "tags": [""]}),
            ("invalid_field", "tags[0]"),
        ),
    ];
    for (value, (code, field)) in cases {
        let got = refused(
            fixture
                .app
                .create_metric(&writer, "default", metric(value.clone()), "")
                .await,
        );
        assert_eq!(got, (code.to_owned(), field.to_owned()), "{value}");
    }
    // Nothing was written, and the project must exist.
    assert!(
        fixture
            .app
            .list_metrics(&writer, "default")
            .await
            .unwrap()
            .is_empty()
    );
    let missing = fixture
        .app
        .create_metric(
            &actor("admin", Role::Admin),
            "no-such-project",
            metric(json!({"key": "a", "name": "A", "kind": "count", "eventKey": "e"})),
            "",
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound);
}

#[tokio::test]
async fn a_custom_role_can_grant_metrics_by_key() {
    let fixture = Fixture::new().await;
    let admin = Actor::system();
    fixture
        .app
        .create_role(
            &admin,
            serde_json::from_value(json!({"key": "revenue-metrics", "name": "Revenue metrics",
                "policy": [{"effect": "allow", "actions": ["createMetric"],
                    "resources": ["proj/default:metric/revenue*"]}]}))
            .unwrap(),
            "",
        )
        .await
        .unwrap();
    let mut token = flagstaff_app::NewToken::new("analyst", Role::NoAccess);
    token.custom_roles = vec!["revenue-metrics".into()];
    let (_, secret) = fixture.app.create_token(&admin, token, "").await.unwrap();
    let analyst = fixture.app.authenticate(&secret).await.unwrap();
    let new = |key: &str| {
        metric(json!({"key": key, "name": key, "kind": "numeric", "eventKey": "purchase"}))
    };
    fixture
        .app
        .create_metric(&analyst, "default", new("revenue-eu"), "")
        .await
        .unwrap();
    let denied = fixture
        .app
        .create_metric(&analyst, "default", new("errors"), "")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), ErrorCode::Forbidden);
    assert!(denied.to_string().contains("createMetric"), "{denied}");
}

#[tokio::test]
async fn browser_goals_are_validated_and_served_one_per_event_key() {
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    let writer = actor("writer", Role::Writer);
    let with_goal = |key: &str, kind: &str, goal: Value| {
        metric(
            json!({"key": key, "name": key, "kind": kind, "eventKey": "signup-click", "goal": goal}),
        )
    };
    let click = json!({"kind": "click", "selector": "button#signup",
        "urls": [{"kind": "substring", "substring": "/pricing"}]});
    for (made, code, field) in [
        (
            with_goal("a", "numeric", click.clone()),
            "invalid_field",
            "goal",
        ),
        (
            with_goal(
                "b",
                "conversion",
                json!({"kind": "click", "urls": [{"kind": "substring", "substring": "/"}]}),
            ),
            "invalid_field",
            "goal.selector",
        ),
        (
            with_goal("c", "conversion", json!({"kind": "pageview", "urls": []})),
            "invalid_field",
            "goal.urls",
        ),
        (
            with_goal(
                "d",
                "conversion",
                json!({"kind": "pageview", "urls": [{"kind": "exact", "substring": "x"}]}),
            ),
            "invalid_field",
            "goal.urls[0].url",
        ),
        (
            with_goal(
                "e",
                "conversion",
                json!({"kind": "pageview", "urls": [{"kind": "exact", "url": "ftp://x"}]}),
            ),
            "invalid_field",
            "goal.urls[0].url",
        ),
        (
            with_goal(
                "f",
                "conversion",
                json!({"kind": "pageview", "urls": [{"kind": "regex", "pattern": "(unclosed"}]}),
            ),
            "invalid_regex",
            "goal.urls[0].pattern",
        ),
        (
            with_goal(
                "g",
                "conversion",
                json!({"kind": "pageview", "selector": "a", "urls": [{"kind": "substring", "substring": "/"}]}),
            ),
            "invalid_field",
            "goal.selector",
        ),
    ] {
        let result = app.create_metric(&writer, "default", made, "").await;
        assert_eq!(
            refused(result),
            (code.to_owned(), field.to_owned()),
            "{code} {field}"
        );
    }
    assert_eq!(
        app.browser_goals("default").await.unwrap().as_ref(),
        &json!([])
    );
    app.create_metric(
        &writer,
        "default",
        with_goal("signups", "conversion", click.clone()),
        "",
    )
    .await
    .unwrap();
    // A second metric on the same goal (counting clicks) does not repeat it.
    app.create_metric(
        &writer,
        "default",
        with_goal("signup-clicks", "count", click),
        "",
    )
    .await
    .unwrap();
    let served = app.browser_goals("default").await.unwrap();
    assert_eq!(
        served.as_ref(),
        &json!([{"key": "signup-click", "kind": "click", "selector": "button#signup",
                 "urls": [{"kind": "substring", "substring": "/pricing"}]}])
    );
}
