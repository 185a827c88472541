//! Who may do what: every role and limit against the use cases that guard a resource, with the
//! expected answer written from the rules (ARCHITECTURE.md, `access.rs`), not from a run.

use flagstaff_app::model::Project;
use flagstaff_app::{Actor, AppError, CredentialKind, EnvironmentSettings, Role};
use flagstaff_app::{EnvRef, FlagRef, WriteMeta};
use serde_json::json;

use crate::support::{Fixture, boolean};

fn actor(id: &str, role: Role, projects: Option<&[&str]>, environments: Option<&[&str]>) -> Actor {
    let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| (*s).to_owned()).collect());
    Actor {
        id: id.into(),
        role,
        projects: list(projects),
        environments: list(environments),
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
            .create_token(actor, &unique, Role::Reader, None, None, "")
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
