//! Relay tokens (issue 22): which environments a token may relay, with what credentials, and
//! the grant its streams hold, re-decided on every check.

use flagstaff_app::{Actor, AppError, CredentialKind, NewToken, Role, fingerprint};
use serde_json::json;

use crate::support::Fixture;

/// A token holding only a custom role that allows `relayEnvironment` on `resources`.
async fn relay_token(fixture: &Fixture, resources: serde_json::Value) -> (String, String) {
    let admin = Actor::system();
    fixture
        .app
        .create_role(
            &admin,
            serde_json::from_value(json!({"key": "relay", "name": "Relay",
                "policy": [{"effect": "allow", "actions": ["relayEnvironment"], "resources": resources}]}))
            .unwrap(),
            "",
        )
        .await
        .unwrap();
    let mut token = NewToken::new("relay", Role::NoAccess);
    token.custom_roles = vec!["relay".into()];
    let (info, secret) = fixture.app.create_token(&admin, token, "").await.unwrap();
    (info.id, secret)
}

#[tokio::test]
async fn a_relay_token_sees_its_environments_with_fingerprints_only() {
    let fixture = Fixture::new().await;
    let (_, secret) = relay_token(&fixture, json!(["proj/*:env/production"])).await;
    let actor = fixture.app.authenticate(&secret).await.unwrap();
    let environments = fixture.app.relay_environments(&actor).await.unwrap();
    assert_eq!(environments.len(), 1, "production only, not test");
    let production = &environments[0];
    assert_eq!(
        (production.project.as_str(), production.key.as_str()),
        ("default", "production")
    );
    let keys = &fixture
        .initialized
        .environments
        .iter()
        .find(|e| e.environment.key == "production")
        .unwrap()
        .keys;
    assert_eq!(production.client_side_id, keys.client_side_id);
    let by_kind = |kind: CredentialKind| {
        production
            .credentials
            .iter()
            .find(|c| c.kind == kind.as_str())
            .unwrap()
    };
    assert_eq!(
        by_kind(CredentialKind::Sdk).fingerprint,
        fingerprint(&keys.sdk_key)
    );
    assert!(by_kind(CredentialKind::Sdk).secure_mode_key.is_some());
    assert_eq!(
        by_kind(CredentialKind::Mobile).fingerprint,
        fingerprint(&keys.mobile_key)
    );
    let text = serde_json::to_string(&environments).unwrap();
    assert!(
        !text.contains(&keys.sdk_key) && !text.contains(&keys.mobile_key),
        "no plaintext key leaves the server: {text}"
    );

    // Its streams hold a grant on production, and none on test.
    let token = fingerprint(&secret);
    let grant = fixture
        .app
        .relay_grant(&token, "default", "production")
        .await
        .unwrap();
    assert_eq!(grant.unwrap().environment, "production");
    assert!(
        fixture
            .app
            .relay_grant(&token, "default", "test")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        fixture
            .app
            .relay_grant(&token, "default", "nowhere")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        fixture
            .app
            .relay_grant(&fingerprint("fst_unknown"), "default", "production")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_rotation_and_a_revocation_show_at_the_next_read() {
    let fixture = Fixture::new().await;
    let (id, secret) = relay_token(&fixture, json!(["proj/*:env/*"])).await;
    let actor = fixture.app.authenticate(&secret).await.unwrap();
    let before = fixture.app.relay_environments(&actor).await.unwrap();
    assert_eq!(before.len(), 2);
    let new_key = fixture
        .app
        .rotate_key(
            &Actor::system(),
            "default",
            "production",
            CredentialKind::Sdk,
            60,
            "",
        )
        .await
        .unwrap();
    let after = fixture.app.relay_environments(&actor).await.unwrap();
    let production = after.iter().find(|e| e.key == "production").unwrap();
    let sdk: Vec<_> = production
        .credentials
        .iter()
        .filter(|c| c.kind == "sdk")
        .collect();
    assert_eq!(
        sdk.len(),
        2,
        "the new key, and the old one until it expires"
    );
    let new = sdk
        .iter()
        .find(|c| c.fingerprint == fingerprint(&new_key))
        .unwrap();
    assert_eq!(new.expires_at, None);
    let old = sdk
        .iter()
        .find(|c| c.fingerprint != fingerprint(&new_key))
        .unwrap();
    assert_eq!(old.expires_at, Some(crate::support::START + 60_000));
    // Once the old key expires it is no longer listed.
    fixture.clock.advance(61_000);
    let later = fixture.app.relay_environments(&actor).await.unwrap();
    let production = later.iter().find(|e| e.key == "production").unwrap();
    assert_eq!(
        production
            .credentials
            .iter()
            .filter(|c| c.kind == "sdk")
            .count(),
        1
    );

    fixture
        .app
        .revoke_token(&Actor::system(), &id, "")
        .await
        .unwrap();
    assert!(
        fixture
            .app
            .relay_grant(&fingerprint(&secret), "default", "production")
            .await
            .unwrap()
            .is_none(),
        "a revoked token's streams lose their grant"
    );
}

#[tokio::test]
async fn tokens_without_the_relay_action_are_refused() {
    let fixture = Fixture::new().await;
    let admin = Actor::system();
    let (_, reader) = fixture
        .app
        .create_token(&admin, NewToken::new("reader", Role::Reader), "")
        .await
        .unwrap();
    let reader_actor = fixture.app.authenticate(&reader).await.unwrap();
    assert!(matches!(
        fixture.app.relay_environments(&reader_actor).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(
        fixture
            .app
            .relay_grant(&fingerprint(&reader), "default", "production")
            .await
            .unwrap()
            .is_none(),
        "a reader may read rules through the API, but it is not a relay"
    );
    // An SDK key is not a token at all.
    let sdk_key = &fixture.initialized.environments[0].keys.sdk_key;
    assert!(
        fixture
            .app
            .relay_grant(&fingerprint(sdk_key), "default", "production")
            .await
            .unwrap()
            .is_none()
    );
    // Admins may do anything, relaying included.
    let admin_token = fingerprint(&fixture.initialized.admin_token);
    assert!(
        fixture
            .app
            .relay_grant(&admin_token, "default", "test")
            .await
            .unwrap()
            .is_some()
    );
}
