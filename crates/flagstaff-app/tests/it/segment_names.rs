//! A segment's name and description: for people, kept through every kind of write, changed
//! only by those allowed `updateName` / `updateDescription`, and never sent to SDKs.

use flagstaff_app::{Actor, ErrorCode};
use flagstaff_protocol::FlagData;
use serde_json::json;

use crate::support::{Fixture, invalid};

async fn stored(fixture: &Fixture) -> flagstaff_protocol::Segment {
    fixture
        .app
        .segment(&Actor::system(), "default", "production", "beta")
        .await
        .unwrap()
        .value
}

#[tokio::test]
async fn names_and_descriptions_are_kept_for_people_and_never_reach_sdks() {
    let fixture = Fixture::new().await;
    fixture
        .segment(
            "production",
            json!({"key": "beta", "name": "  Beta testers ", "description": "People who asked",
                "included": ["ann", "bob"]}),
        )
        .await
        .unwrap();
    let segment = stored(&fixture).await;
    // Trimmed, as typed otherwise.
    assert_eq!(segment.name.as_deref(), Some("Beta testers"));
    assert_eq!(segment.description.as_deref(), Some("People who asked"));

    let data: FlagData = fixture
        .app
        .flag_data("default", "production")
        .await
        .unwrap();
    let sent = serde_json::to_value(&data.segments["beta"]).unwrap();
    assert_eq!(sent["included"], json!(["ann", "bob"]));
    assert!(
        sent.get("name").is_none() && sent.get("description").is_none(),
        "{sent}"
    );
    let single = fixture
        .app
        .sdk_segment("default", "production", "beta")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((single.name, single.description), (None, None));

    // A LaunchDarkly import of the same segment (SDK data has no names) keeps them.
    let imported: FlagData = serde_json::from_value(json!({"flags": {},
        "segments": {"beta": {"key": "beta", "included": ["ann", "bob", "cy"], "salt": segment.salt}}}))
    .unwrap();
    fixture
        .app
        .import_flag_data(&Actor::system(), "default", "production", imported, "")
        .await
        .unwrap();
    let segment = stored(&fixture).await;
    assert_eq!(segment.included.len(), 3);
    assert_eq!(segment.name.as_deref(), Some("Beta testers"));

    // A blank name is no name; too long a name or description is refused, naming the field.
    let mut blank = segment.clone();
    blank.name = Some("   ".into());
    fixture
        .app
        .put_segment(
            &Actor::system(),
            "default",
            "production",
            blank,
            Some(segment.version),
            "",
        )
        .await
        .unwrap();
    assert_eq!(stored(&fixture).await.name, None);
    let long_name = json!({"key": "x", "name": "n".repeat(201)});
    assert_eq!(
        invalid(fixture.segment("production", long_name).await),
        ("invalid_field".to_owned(), "name".to_owned())
    );
    let long_description = json!({"key": "x", "description": "d".repeat(2_001)});
    assert_eq!(
        invalid(fixture.segment("production", long_description).await),
        ("invalid_field".to_owned(), "description".to_owned())
    );
}

#[tokio::test]
async fn renaming_a_segment_takes_update_name() {
    let fixture = Fixture::new().await;
    fixture
        .segment("production", json!({"key": "beta", "included": ["ann"]}))
        .await
        .unwrap();
    // A custom role that may change who is in segments, and nothing else.
    let admin = Actor::system();
    fixture
        .app
        .create_role(
            &admin,
            serde_json::from_value(json!({"key": "lists-only", "name": "Lists only",
                "policy": [{"effect": "allow", "actions": ["updateIncluded", "updateExcluded"],
                    "resources": ["proj/*:env/*:segment/*"]}]}))
            .unwrap(),
            "",
        )
        .await
        .unwrap();
    let mut token = flagstaff_app::NewToken::new("lists", flagstaff_app::Role::NoAccess);
    token.custom_roles = vec!["lists-only".into()];
    let (_, secret) = fixture.app.create_token(&admin, token, "").await.unwrap();
    let member = fixture.app.authenticate(&secret).await.unwrap();
    let segment = stored(&fixture).await;
    let mut more = segment.clone();
    more.included.push("bob".into());
    let updated = fixture
        .app
        .put_segment(
            &member,
            "default",
            "production",
            more,
            Some(segment.version),
            "",
        )
        .await
        .unwrap();
    let mut renamed = updated.value.clone();
    renamed.name = Some("Beta".into());
    let refused = fixture
        .app
        .put_segment(
            &member,
            "default",
            "production",
            renamed,
            Some(updated.version),
            "",
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Forbidden, "{refused}");
    assert!(refused.to_string().contains("updateName"), "{refused}");
}
