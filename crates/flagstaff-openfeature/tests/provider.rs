//! The provider through the real `open-feature` API, over a flagstaff-sdk client streaming from
//! a peer on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flagstaff_openfeature::FlagstaffProvider;
use flagstaff_testkit::peer::Peer;
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationErrorCode, EvaluationReason,
    FlagMetadataValue, OpenFeature,
};
use serde_json::json;

fn data() -> serde_json::Value {
    json!({"flags": {
        "checkout": {"key": "checkout", "version": 2, "on": true, "salt": "s",
            "variations": [false, true], "offVariation": 0, "fallthrough": {"variation": 0},
            "targets": [{"values": ["vip"], "variation": 1}],
            "rules": [{"id": "nz-rule", "variation": 1,
                "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}]},
        "limit": {"key": "limit", "version": 1, "on": true, "variations": [10, 25.5],
            "fallthrough": {"variation": 0}},
        "banner": {"key": "banner", "version": 1, "on": false, "variations": ["a", "b"],
            "offVariation": 1, "fallthrough": {"variation": 0}},
        "theme": {"key": "theme", "version": 1, "on": true,
            "variations": [{"color": "teal", "size": 3}], "fallthrough": {"variation": 0}},
        "org-plan": {"key": "org-plan", "version": 1, "on": true, "variations": ["basic", "pro"],
            "fallthrough": {"variation": 0},
            "rules": [{"id": "gold-orgs", "variation": 1, "clauses": [
                {"contextKind": "org", "attribute": "tier", "op": "in", "values": ["gold"]}]}]}
    }, "segments": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfeature_evaluates_through_the_provider() {
    let peer = tokio::task::spawn_blocking(|| Peer::start(data()))
        .await
        .unwrap();
    let config = flagstaff_sdk::Config::builder("sdk-key")
        .base_uri(&peer.base)
        .send_events(false)
        .build()
        .unwrap();
    let client = flagstaff_sdk::Client::new(config).unwrap();
    let provider = FlagstaffProvider::new(client.clone());
    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(provider).await;
    let flags = api.create_client();
    drop(api);
    assert!(
        client.initialized(),
        "set_provider waits for initialization"
    );

    let nz = EvaluationContext::default()
        .with_targeting_key("ann")
        .with_custom_field("country", "NZ");
    let details = flags
        .get_bool_details("checkout", Some(&nz), None)
        .await
        .unwrap();
    assert!(details.value);
    assert_eq!(details.variant.as_deref(), Some("1"));
    assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(
        details.flag_metadata.values.get("ruleId"),
        Some(&FlagMetadataValue::String("nz-rule".into()))
    );
    let vip = EvaluationContext::default().with_targeting_key("vip");
    assert!(
        flags
            .get_bool_value("checkout", Some(&vip), None)
            .await
            .unwrap()
    );
    let de = EvaluationContext::default()
        .with_targeting_key("bob")
        .with_custom_field("country", "DE");
    let details = flags
        .get_bool_details("checkout", Some(&de), None)
        .await
        .unwrap();
    assert!(!details.value);
    assert_eq!(details.reason, Some(EvaluationReason::Default));

    assert_eq!(
        flags.get_int_value("limit", Some(&de), None).await.unwrap(),
        10
    );
    assert_eq!(
        flags
            .get_float_value("limit", Some(&de), None)
            .await
            .unwrap(),
        10.0
    );
    let banner = flags
        .get_string_details("banner", Some(&de), None)
        .await
        .unwrap();
    assert_eq!(banner.value, "b");
    assert_eq!(banner.reason, Some(EvaluationReason::Disabled));
    let theme = flags
        .get_struct_details::<open_feature::StructValue>("theme", Some(&de), None)
        .await
        .unwrap();
    assert_eq!(
        theme.value.fields.get("color"),
        Some(&open_feature::Value::String("teal".into()))
    );

    // A multi-kind context from JSON fields.
    let multi = EvaluationContext::default()
        .with_targeting_key("ignored")
        .with_custom_field("kind", "multi")
        .with_custom_field(
            "user",
            EvaluationContextFieldValue::new_struct(json!({"key": "u1"})),
        )
        .with_custom_field(
            "org",
            EvaluationContextFieldValue::new_struct(json!({"key": "acme", "tier": "gold"})),
        );
    assert_eq!(
        flags
            .get_string_value("org-plan", Some(&multi), None)
            .await
            .unwrap(),
        "pro"
    );

    // Errors carry OpenFeature's codes.
    let missing = flags
        .get_bool_value("no-such-flag", Some(&de), None)
        .await
        .unwrap_err();
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
    let mismatch = flags
        .get_string_value("checkout", Some(&de), None)
        .await
        .unwrap_err();
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);
    let anonymous = EvaluationContext::default();
    let no_key = flags
        .get_bool_value("checkout", Some(&anonymous), None)
        .await
        .unwrap_err();
    assert_eq!(no_key.code, EvaluationErrorCode::TargetingKeyMissing);
    let bad_kind = EvaluationContext::default()
        .with_targeting_key("x")
        .with_custom_field("kind", "kind");
    let invalid = flags
        .get_bool_value("checkout", Some(&bad_kind), None)
        .await
        .unwrap_err();
    assert_eq!(invalid.code, EvaluationErrorCode::InvalidContext);

    client.close().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    tokio::task::spawn_blocking(move || drop(peer))
        .await
        .unwrap();
}
