//! Editing a flag's settings and variations after creation: reordering or removing variations
//! keeps what everyone is served (targeting and prerequisites follow, in one change), and
//! removing a served variation is refused naming every place that serves it.

use flagstaff_app::model::{FlagDefinition, Targeting};
use flagstaff_app::{Actor, ErrorCode, NewSchedule, Target};
use serde_json::{Value, json};

use crate::scheduling::code;
use crate::support::{Fixture, START};

async fn definition(fixture: &Fixture, key: &str) -> (FlagDefinition, u64) {
    let d = fixture
        .app
        .flag(&Actor::system(), "default", key)
        .await
        .unwrap();
    (d.value, d.version)
}

async fn targeting(fixture: &Fixture, env: &str, key: &str) -> Targeting {
    fixture
        .app
        .targeting(&Actor::system(), "default", env, key)
        .await
        .unwrap()
        .value
}

/// The value each place serves, read through the variations, so that the assertions are about
/// what people get rather than positions.
fn served(definition: &FlagDefinition, t: &Targeting) -> Vec<Value> {
    let value = |i: i64| definition.variations[i as usize].value.clone();
    vec![
        value(t.off_variation.unwrap()),
        value(t.fallthrough.variation.unwrap()),
        value(t.rules[0].variation_or_rollout.variation.unwrap()),
        value(t.context_targets[0].variation),
    ]
}

async fn colour_flag_with_a_dependent(fixture: &Fixture) {
    fixture
        .flag(
            json!({"key": "colour", "name": "Colour", "kind": "multivariate",
            "variations": [{"value": "red"}, {"value": "green"}, {"value": "blue"}]}),
        )
        .await
        .unwrap();
    fixture
        .targeting(
            "production",
            "colour",
            json!({"on": true, "offVariation": 0, "fallthrough": {"variation": 1},
                "rules": [{"id": "r1", "variation": 2, "clauses": [
                    {"attribute": "plan", "op": "in", "values": ["pro"]}]}],
                "contextTargets": [{"contextKind": "organization", "values": ["acme"], "variation": 2}]}),
        )
        .await
        .unwrap();
    fixture
        .flag(json!({"key": "checkout", "name": "Checkout"}))
        .await
        .unwrap();
    fixture
        .targeting(
            "production",
            "checkout",
            json!({"prerequisites": [{"key": "colour", "variation": 2}]}),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn reordering_and_renaming_variations_keeps_what_everyone_is_served() {
    let fixture = Fixture::new().await;
    colour_flag_with_a_dependent(&fixture).await;
    let (before, version) = definition(&fixture, "colour").await;
    let served_before = served(&before, &targeting(&fixture, "production", "colour").await);
    let checkout_version = fixture
        .app
        .targeting(&Actor::system(), "default", "production", "checkout")
        .await
        .unwrap()
        .version;

    // Blue moves to the top, green is renamed and described, red goes last; a new value is
    // appended. Through `PUT` semantics: matched by value.
    let mut after = before.clone();
    after.name = "Button colour".into();
    after.tags = vec!["checkout".into()];
    after.variations = serde_json::from_value(json!([
        {"value": "blue", "name": "Blue"},
        {"value": "green", "name": "Green", "description": "the control"},
        {"value": "red"},
        {"value": "pink"}
    ]))
    .unwrap();
    fixture
        .app
        .update_flag(
            &Actor::system(),
            "default",
            "colour",
            after,
            version,
            "reorder",
        )
        .await
        .unwrap();
    let (now, _) = definition(&fixture, "colour").await;
    assert_eq!(now.name, "Button colour");
    let t = targeting(&fixture, "production", "colour").await;
    assert_eq!(served(&now, &t), served_before);
    assert_eq!(t.rules[0].variation_or_rollout.variation, Some(0));
    // The dependent flag's prerequisite still asks for blue, now at position 0, in the same
    // commit (its version grew once).
    let checkout = fixture
        .app
        .targeting(&Actor::system(), "default", "production", "checkout")
        .await
        .unwrap();
    assert_eq!(checkout.value.prerequisites[0].variation, 0);
    assert_eq!(checkout.version, checkout_version + 1);
    // The test environment's default targeting (off, serving red) still serves red.
    let test = targeting(&fixture, "test", "colour").await;
    assert_eq!(
        now.variations[test.off_variation.unwrap() as usize].value,
        json!("red")
    );
}

#[tokio::test]
async fn explicit_origins_let_a_value_be_edited_and_moved_at_once() {
    let fixture = Fixture::new().await;
    colour_flag_with_a_dependent(&fixture).await;
    let (before, version) = definition(&fixture, "colour").await;
    let mut after = before.clone();
    // "blue" becomes "navy" and moves first: only the caller knows they are the same.
    after.variations = serde_json::from_value(json!([
        {"value": "navy"}, {"value": "red"}, {"value": "green"}
    ]))
    .unwrap();
    fixture
        .app
        .update_flag_mapped(
            &Actor::system(),
            "default",
            "colour",
            after,
            Some(vec![Some(2), Some(0), Some(1)]),
            version,
            "",
        )
        .await
        .unwrap();
    let (now, version) = definition(&fixture, "colour").await;
    let t = targeting(&fixture, "production", "colour").await;
    assert_eq!(
        served(&now, &t),
        vec![json!("red"), json!("green"), json!("navy"), json!("navy")]
    );
    // An origin named twice is refused.
    let (c, field) = code(
        fixture
            .app
            .update_flag_mapped(
                &Actor::system(),
                "default",
                "colour",
                now.clone(),
                Some(vec![Some(0), Some(0), Some(1)]),
                version,
                "",
            )
            .await,
    );
    assert_eq!(
        (c, field.as_str()),
        (ErrorCode::InvalidField, "variationOrigins")
    );
}

#[tokio::test]
async fn removing_a_served_variation_is_refused_naming_every_place_and_nothing_changes() {
    let fixture = Fixture::new().await;
    colour_flag_with_a_dependent(&fixture).await;
    let (before, version) = definition(&fixture, "colour").await;
    let mut after = before.clone();
    after.variations.remove(2);
    let result = fixture
        .app
        .update_flag(&Actor::system(), "default", "colour", after, version, "")
        .await;
    let Err(flagstaff_app::AppError::Invalid { code, message, .. }) = result else {
        panic!("expected a refusal, got {result:?}");
    };
    assert_eq!(code, ErrorCode::InUse);
    for place in [
        "variation 3 (\"blue\")",
        "rule 1 in Production",
        "individual organization targets in Production",
        "flag checkout's prerequisite in Production",
    ] {
        assert!(message.contains(place), "{place:?} missing from {message}");
    }
    assert_eq!(definition(&fixture, "colour").await.1, version);

    // Green is served only by the default rule: serve red there, and green can go.
    fixture
        .targeting(
            "production",
            "colour",
            json!({"fallthrough": {"variation": 0}}),
        )
        .await
        .unwrap();
    let mut after = before.clone();
    after.variations.remove(1);
    fixture
        .app
        .update_flag(&Actor::system(), "default", "colour", after, version, "")
        .await
        .unwrap();
    let (now, _) = definition(&fixture, "colour").await;
    let t = targeting(&fixture, "production", "colour").await;
    assert_eq!(
        served(&now, &t),
        vec![json!("red"), json!("red"), json!("blue"), json!("blue")]
    );
    let checkout = targeting(&fixture, "production", "checkout").await;
    assert_eq!(checkout.prerequisites[0].variation, 1);
}

#[tokio::test]
async fn variations_do_not_move_under_a_pending_scheduled_change() {
    let fixture = Fixture::new().await;
    colour_flag_with_a_dependent(&fixture).await;
    fixture
        .app
        .schedule_change(
            &Actor::system(),
            &Target::flag("default", "test", "colour"),
            NewSchedule {
                execution_date: Some(START + 3_600_000),
                instructions: vec![
                    json!({"kind": "updateFallthroughVariationOrRollout", "variation": 2}),
                ],
                ..NewSchedule::default()
            },
        )
        .await
        .unwrap();
    let (before, version) = definition(&fixture, "colour").await;
    let mut after = before.clone();
    after.variations.reverse();
    let (c, _) = code(
        fixture
            .app
            .update_flag(&Actor::system(), "default", "colour", after, version, "")
            .await,
    );
    assert_eq!(c, ErrorCode::InUse);
    // Renaming (nothing moves) is fine meanwhile.
    let mut renamed = before.clone();
    renamed.variations[0].name = Some("Red".into());
    fixture
        .app
        .update_flag(&Actor::system(), "default", "colour", renamed, version, "")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_migration_flag_gets_its_six_stages_and_keeps_them() {
    let fixture = Fixture::new().await;
    fixture
        .flag(json!({"key": "db", "name": "Orders database", "kind": "migration"}))
        .await
        .unwrap();
    let (d, version) = definition(&fixture, "db").await;
    let values: Vec<Value> = d.variations.iter().map(|v| v.value.clone()).collect();
    assert_eq!(
        values,
        flagstaff_protocol::MIGRATION_STAGES.map(Value::from)
    );
    assert!(
        d.variations
            .iter()
            .all(|v| v.name.is_some() && v.description.is_some())
    );
    assert_eq!(d.migration.unwrap().check_ratio, 1);
    // Everything starts on the old system: off, serving `off` whichever way it is switched.
    let t = targeting(&fixture, "production", "db").await;
    assert_eq!(
        (t.on, t.off_variation, t.fallthrough.variation),
        (false, Some(0), Some(0))
    );

    // Names and the check ratio may change; the stages may not be renamed, reordered or
    // removed, as SDK migrators understand only these six strings.
    let mut renamed = d.clone();
    renamed.variations[2].name = Some("Compare reads".into());
    renamed.migration = Some(flagstaff_app::model::MigrationSettings { check_ratio: 10 });
    let updated = fixture
        .app
        .update_flag(&Actor::system(), "default", "db", renamed, version, "")
        .await
        .unwrap();
    assert_eq!(updated.value.migration.unwrap().check_ratio, 10);
    let mut reordered = updated.value.clone();
    reordered.variations.swap(1, 2);
    let refused = fixture
        .app
        .update_flag(
            &Actor::system(),
            "default",
            "db",
            reordered,
            updated.version,
            "",
        )
        .await;
    assert_eq!(code(refused).0, ErrorCode::InvalidVariations);

    let cases = [
        (
            json!({"key": "m1", "name": "M", "kind": "migration", "variations": [{"value": "off"}, {"value": "on"}]}),
            ("invalid_variations", "variations"),
        ),
        (
            json!({"key": "m2", "name": "M", "kind": "migration", "migration": {"checkRatio": -1}}),
            ("invalid_field", "migration.checkRatio"),
        ),
        (
            json!({"key": "m3", "name": "M", "kind": "migration",
                "clientSideAvailability": {"usingEnvironmentId": true}}),
            ("invalid_field", "clientSideAvailability"),
        ),
        (
            json!({"key": "m4", "name": "M", "migration": {"checkRatio": 1}}),
            ("invalid_field", "migration"),
        ),
    ];
    for (definition, (code, field)) in cases {
        let (got_code, got_field) = crate::support::invalid(fixture.flag(definition).await);
        assert_eq!((got_code.as_str(), got_field.as_str()), (code, field));
    }
}
