//! Projects created with their environments in one change, and environment colours.

use flagstaff_app::model::Project;
use flagstaff_app::{
    Actor, DEFAULT_ENVIRONMENTS, EnvRef, EnvironmentSettings, ErrorCode, Role, WriteMeta,
};

use crate::scheduling::code;
use crate::support::Fixture;

fn project(key: &str) -> Project {
    Project {
        key: key.into(),
        name: key.to_uppercase(),
    }
}

#[tokio::test]
async fn a_new_project_gets_production_and_test_with_keys_that_work() {
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    let created = app
        .create_project_with_environments(
            &Actor::system(),
            project("shop"),
            DEFAULT_ENVIRONMENTS,
            "",
        )
        .await
        .unwrap();
    let keys: Vec<&str> = created
        .environments
        .iter()
        .map(|e| e.environment.key.as_str())
        .collect();
    assert_eq!(keys, vec!["production", "test"]);
    assert!(created.environments[0].environment.critical);
    assert!(!created.environments[1].environment.critical);
    let listed = app
        .list_environments(&Actor::system(), "shop")
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    // The SDK key shown once authenticates its environment.
    let sdk_key = &created.environments[1].keys.sdk_key;
    let env = app
        .environment_for_key(sdk_key, flagstaff_app::CredentialKind::Sdk)
        .await
        .unwrap();
    assert_eq!(env, Some(("shop".into(), "test".into())));
}

#[tokio::test]
async fn a_project_is_created_whole_or_not_at_all() {
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    // A bad environment key: nothing is created, not even the project.
    let (c, field) = code(
        app.create_project_with_environments(
            &Actor::system(),
            project("shop"),
            &[("live", "Live"), ("bad key", "Bad")],
            "",
        )
        .await,
    );
    assert_eq!(
        (c, field.as_str()),
        (ErrorCode::InvalidKey, "environments[1].key")
    );
    let (c, _) = code(app.project(&Actor::system(), "shop").await);
    assert_eq!(c, ErrorCode::NotFound);
    let (c, field) = code(
        app.create_project_with_environments(
            &Actor::system(),
            project("shop"),
            &[("live", "Live"), ("live", "Again")],
            "",
        )
        .await,
    );
    assert_eq!(
        (c, field.as_str()),
        (ErrorCode::InvalidField, "environments[1].key")
    );
    // Writers may not create projects.
    let writer = Actor::with_role("member:w@example.com", Role::Writer);
    let (c, _) = code(
        app.create_project_with_environments(&writer, project("mine"), DEFAULT_ENVIRONMENTS, "")
            .await,
    );
    assert_eq!(c, ErrorCode::Forbidden);
    // Empty is allowed (an API caller that adds environments itself).
    let created = app
        .create_project_with_environments(&Actor::system(), project("bare"), &[], "")
        .await
        .unwrap();
    assert!(created.environments.is_empty());
}

#[tokio::test]
async fn environments_have_a_colour_people_can_change_and_remove() {
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    let set = |color: &'static str, expected: u64| async move {
        app.update_environment(
            EnvRef {
                project: "default",
                environment: "test",
            },
            "Test",
            EnvironmentSettings {
                color: Some(color.into()),
                ..EnvironmentSettings::default()
            },
            WriteMeta {
                actor: &Actor::system(),
                expected,
                comment: "",
            },
        )
        .await
    };
    let version = app
        .environment(&Actor::system(), "default", "test")
        .await
        .unwrap()
        .version;
    let coloured = set("#22AA55", version).await.unwrap();
    assert_eq!(coloured.value.color.as_deref(), Some("#22aa55"));
    let (c, field) = code(set("green; background: url(x)", coloured.version).await);
    assert_eq!((c, field.as_str()), (ErrorCode::InvalidField, "color"));
    let cleared = set("", coloured.version).await.unwrap();
    assert_eq!(cleared.value.color, None);
}
