//! Who may do what: every role and limit against the use cases that guard a resource, with the
//! expected answer written from the rules (ARCHITECTURE.md, `access.rs`), not from a run.

use flagstaff_app::model::Project;
use flagstaff_app::{Actor, AppError, CredentialKind, EnvironmentSettings, Role};
use flagstaff_app::{EnvRef, FlagRef, NewToken, WriteMeta};
use serde_json::json;

use crate::support::{Fixture, boolean};

fn actor(id: &str, role: Role, projects: Option<&[&str]>, environments: Option<&[&str]>) -> Actor {
    let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| (*s).to_owned()).collect());
    Actor {
        id: id.into(),
        role,
        projects: list(projects),
        environments: list(environments),
        custom_roles: Default::default(),
    }
}

/// The actors of the matrix, in column order.
fn actors() -> Vec<Actor> {
    vec![
        actor("admin", Role::Admin, None, None),
        actor("admin@default", Role::Admin, Some(&["default"]), None),
        actor("writer", Role::Writer, None, None),
        actor("writer@other", Role::Writer, Some(&["other"]), None),
        actor(
            "writer@default/test",
            Role::Writer,
            None,
            Some(&["default/test"]),
        ),
        actor("reader", Role::Reader, None, None),
        actor(
            "reader@default/test",
            Role::Reader,
            None,
            Some(&["default/test"]),
        ),
    ]
}

const Y: bool = true;
const N: bool = false;

/// Runs one use case as `actor`; `Ok(true)` allowed, `Ok(false)` forbidden.
async fn allowed(fixture: &Fixture, case: &str, actor: &Actor, n: usize) -> Result<bool, String> {
    let app = &fixture.app;
    let unique = format!("k{n}");
    let result: Result<(), AppError> = match case {
        "create project" => app
            .create_project(
                actor,
                Project {
                    key: unique,
                    name: "x".into(),
                },
                "",
            )
            .await
            .map(|_| ()),
        "create environment" => app
            .create_environment(actor, "default", &unique, "x", "")
            .await
            .map(|_| ()),
        "read a flag" => app.flag(actor, "default", "f").await.map(|_| ()),
        "create a flag" => {
            let definition = serde_json::from_value(boolean(&unique)).expect("definition");
            app.create_flag(actor, "default", definition, "")
                .await
                .map(|_| ())
        }
        "read targeting in test" => app
            .targeting(actor, "default", "test", "f")
            .await
            .map(|_| ()),
        "read targeting in production" => app
            .targeting(actor, "default", "production", "f")
            .await
            .map(|_| ()),
        "change targeting in test" | "change targeting in production" => {
            let environment = if case.ends_with("test") {
                "test"
            } else {
                "production"
            };
            let current = app
                .targeting(&Actor::system(), "default", environment, "f")
                .await
                .expect("targeting");
            app.update_targeting(
                FlagRef {
                    project: "default",
                    environment,
                    key: "f",
                },
                current.value,
                WriteMeta {
                    actor,
                    expected: current.version,
                    comment: "",
                },
            )
            .await
            .map(|_| ())
        }
        "create a segment in test" => {
            let segment = serde_json::from_value(json!({"key": unique})).expect("segment");
            app.put_segment(actor, "default", "test", segment, None, "")
                .await
                .map(|_| ())
        }
        "rotate production's SDK key" => app
            .rotate_key(actor, "default", "production", CredentialKind::Sdk, 60, "")
            .await
            .map(|_| ()),
        "change production's settings" => {
            let current = app
                .environment(&Actor::system(), "default", "production")
                .await
                .expect("environment");
            app.update_environment(
                EnvRef {
                    project: "default",
                    environment: "production",
                },
                "Production",
                EnvironmentSettings::default(),
                WriteMeta {
                    actor,
                    expected: current.version,
                    comment: "",
                },
            )
            .await
            .map(|_| ())
        }
        "list tokens" => app.list_tokens(actor).await.map(|_| ()),
        "create a token" => app
            .create_token(actor, NewToken::new(unique.as_str(), Role::Reader), "")
            .await
            .map(|_| ()),
        "import into test" => app
            .import_flag_data(actor, "default", "test", Default::default(), "")
            .await
            .map(|_| ()),
        other => return Err(format!("no such case {other}")),
    };
    match result {
        Ok(()) => Ok(true),
        Err(AppError::Forbidden(_)) => Ok(false),
        Err(other) => Err(format!("{case} as {}: {other}", actor.id)),
    }
}

#[tokio::test]
async fn every_role_and_limit_against_every_guarded_use_case() {
    // Columns: admin, admin@default, writer, writer@other, writer@default/test, reader,
    // reader@default/test.
    let matrix: &[(&str, [bool; 7])] = &[
        // Server-wide administration needs an unlimited admin.
        ("create project", [Y, N, N, N, N, N, N]),
        ("list tokens", [Y, N, N, N, N, N, N]),
        ("create a token", [Y, N, N, N, N, N, N]),
        // Project administration: admins of the project.
        ("create environment", [Y, Y, N, N, N, N, N]),
        ("rotate production's SDK key", [Y, Y, N, N, N, N, N]),
        ("change production's settings", [Y, Y, N, N, N, N, N]),
        // Flag definitions are project-wide: environment-limited writers may not change them.
        ("read a flag", [Y, Y, Y, N, Y, Y, Y]),
        ("create a flag", [Y, Y, Y, N, N, N, N]),
        // Targeting and segments are per environment.
        ("read targeting in test", [Y, Y, Y, N, Y, Y, Y]),
        ("read targeting in production", [Y, Y, Y, N, N, Y, N]),
        ("change targeting in test", [Y, Y, Y, N, Y, N, N]),
        ("change targeting in production", [Y, Y, Y, N, N, N, N]),
        ("create a segment in test", [Y, Y, Y, N, Y, N, N]),
        // Import may add flags to the project: a project-wide writer's right.
        ("import into test", [Y, Y, Y, N, N, N, N]),
    ];
    let fixture = Fixture::new().await;
    fixture.flag(boolean("f")).await.expect("flag f");
    let actors = actors();
    let mut wrong = Vec::new();
    let mut n = 0;
    for (case, expected) in matrix {
        for (actor, want) in actors.iter().zip(expected) {
            n += 1;
            match allowed(&fixture, case, actor, n).await {
                Ok(got) if got == *want => {}
                Ok(got) => wrong.push(format!(
                    "{case} as {}: allowed {got}, want {want}",
                    actor.id
                )),
                Err(e) => wrong.push(e),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Who may read which audit entry (the audit log, the dashboard's history and its live stream
/// share the rule): an entry shows a document before and after, so it is readable by whoever
/// may read that document. Expectations written from that rule.
#[tokio::test]
async fn audit_entries_are_visible_only_to_who_may_read_their_document() {
    use flagstaff_app::{AuditQuery, Member};

    let fixture = Fixture::new().await;
    let system = Actor::system();
    let app = &fixture.app;
    app.create_project(
        &system,
        Project {
            key: "other".into(),
            name: "Other".into(),
        },
        "",
    )
    .await
    .expect("project other");
    app.create_environment(&system, "other", "prod", "Prod", "")
        .await
        .expect("other/prod");
    fixture.flag(boolean("f")).await.expect("flag f");
    fixture
        .targeting("production", "f", json!({"on": true}))
        .await
        .expect("production");
    fixture
        .targeting("test", "f", json!({"on": true}))
        .await
        .expect("test");
    app.create_member(
        &system,
        Member {
            email: "m@example.com".into(),
            name: "M".into(),
            role: Role::Reader,
            projects: None,
            custom_roles: Vec::new(),
        },
        "long enough password",
        "",
    )
    .await
    .expect("member");
    let segment = serde_json::from_value(json!({"key": "s"})).expect("segment");
    app.put_segment(&system, "other", "prod", segment, None, "")
        .await
        .expect("segment");

    // Each entry by a label: (kind, scope, key).
    let label = |kind: &str, scope: &str, key: &str| -> &'static str {
        match (kind, scope, key) {
            ("project", "", "default") => "project default",
            ("project", "", "other") => "project other",
            ("environment", "default", "production") => "env production",
            ("environment", "default", "test") => "env test",
            ("environment", "other", "prod") => "env other/prod",
            ("flag", "default", "f") => "flag f",
            ("targeting", "default/production", "f") => "targeting production",
            ("targeting", "default/test", "f") => "targeting test",
            ("segment", "other/prod", "s") => "segment other/prod",
            ("member", _, _) => "member",
            ("token", _, _) => "token",
            _ => "unexpected",
        }
    };
    let all = [
        "project default",
        "env production",
        "env test",
        "token",
        "project other",
        "env other/prod",
        "flag f",
        "targeting production",
        "targeting test",
        "member",
        "segment other/prod",
    ];
    let cases: &[(Actor, &[&str])] = &[
        (actor("admin", Role::Admin, None, None), &all),
        (
            actor("admin@default", Role::Admin, Some(&["default"]), None),
            &[
                "project default",
                "env production",
                "env test",
                "flag f",
                "targeting production",
                "targeting test",
            ],
        ),
        (
            actor(
                "admin@default/test",
                Role::Admin,
                None,
                Some(&["default/test"]),
            ),
            &["project default", "env test", "flag f", "targeting test"],
        ),
        (
            actor("reader", Role::Reader, None, None),
            &[
                "project default",
                "env production",
                "env test",
                "project other",
                "env other/prod",
                "flag f",
                "targeting production",
                "targeting test",
                "segment other/prod",
            ],
        ),
        (
            actor(
                "reader@default/test",
                Role::Reader,
                None,
                Some(&["default/test"]),
            ),
            &["project default", "env test", "flag f", "targeting test"],
        ),
        (
            actor("reader@other", Role::Reader, Some(&["other"]), None),
            &["project other", "env other/prod", "segment other/prod"],
        ),
    ];
    let query = AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    };
    for (actor, expected) in cases {
        let mut seen: Vec<&str> = app
            .audit(actor, &query)
            .await
            .expect("audit")
            .iter()
            .map(|e| label(&e.kind, &e.scope, &e.key))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(seen, want, "what {} reads", actor.id);
    }
    // The dashboard's live stream applies the same rule.
    let limited = actor(
        "reader@default/test",
        Role::Reader,
        None,
        Some(&["default/test"]),
    );
    let (changes, _) = app
        .changes(&limited, "default", 0, 1000)
        .await
        .expect("changes");
    assert!(
        changes
            .iter()
            .all(|c| c.scope.to_string() != "default/production"),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.scope.to_string() == "default/test")
    );
}

#[tokio::test]
async fn token_creation_refuses_before_it_says_what_exists() {
    let fixture = Fixture::new().await;
    let writer = actor("writer", Role::Writer, None, None);
    for environments in [
        vec!["default/production".to_owned()],
        vec!["nope/nothing".to_owned()],
    ] {
        let refused = fixture
            .app
            .create_token(
                &writer,
                NewToken {
                    environments: Some(environments),
                    ..NewToken::new("t", Role::Reader)
                },
                "",
            )
            .await;
        assert!(
            matches!(refused, Err(AppError::Forbidden(_))),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn environment_limited_tokens_see_only_their_projects() {
    let fixture = Fixture::new().await;
    let system = Actor::system();
    fixture
        .app
        .create_project(
            &system,
            Project {
                key: "other".into(),
                name: "Other".into(),
            },
            "",
        )
        .await
        .expect("project other");
    let limited = actor(
        "reader@default/test",
        Role::Reader,
        None,
        Some(&["default/test"]),
    );
    assert!(matches!(
        fixture.app.project(&limited, "other").await,
        Err(AppError::Forbidden(_))
    ));
    let visible: Vec<String> = fixture
        .app
        .list_projects(&limited)
        .await
        .expect("projects")
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(visible, ["default"]);
}
