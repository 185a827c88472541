//! What expires: API tokens created with an expiry, sign-in sessions and rotated keys stop
//! working at their time, and `remove_expired` then removes them (and the tombstones of revoked
//! tokens) from the database, leaving everything else alone (issue 17).

use flagstaff_app::{Actor, AppError, CredentialKind, NewToken, Role, SESSION_HOURS};
use flagstaff_store::Store;

use crate::support::Fixture;

const HOUR: i64 = 3_600_000;

/// How many documents of `kind` the database holds, tombstones included.
async fn stored(store: &Store, kind: &str) -> usize {
    store
        .list_with_tombstones(kind, "")
        .await
        .expect("ok")
        .len()
}

#[tokio::test]
async fn a_token_with_an_expiry_stops_working_then_and_an_expiry_in_the_past_is_refused() {
    let fixture = Fixture::new().await;
    let admin = Actor::system();
    let now = fixture.app.now_millis();
    let (info, secret) = fixture
        .app
        .create_token(
            &admin,
            NewToken {
                expires_at: Some(now + HOUR),
                ..NewToken::new("ci", Role::Reader)
            },
            "",
        )
        .await
        .expect("ok");
    assert_eq!(info.expires_at, Some(now + HOUR));
    assert!(fixture.app.authenticate(&secret).await.is_ok());
    fixture.clock.advance(HOUR);
    assert!(matches!(
        fixture.app.authenticate(&secret).await,
        Err(AppError::Unauthorized)
    ));
    let refused = fixture
        .app
        .create_token(
            &admin,
            NewToken {
                expires_at: Some(fixture.app.now_millis()),
                ..NewToken::new("late", Role::Reader)
            },
            "",
        )
        .await;
    match refused {
        Err(AppError::Invalid { field, .. }) => assert_eq!(field, "expiresAt"),
        other => panic!("expected an invalid expiresAt, got {other:?}"),
    }
}

#[tokio::test]
async fn expired_sessions_tokens_and_rotated_keys_are_removed_and_nothing_else() {
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    let admin = Actor::system();
    fixture.member("ada@example.com", Role::Writer).await;
    let session = app
        .sign_in("ada@example.com", "correct horse battery", None)
        .await
        .expect("ok");
    let (_, lasting) = app
        .create_token(&admin, NewToken::new("lasting", Role::Reader), "")
        .await
        .expect("ok");
    let (revoked, _) = app
        .create_token(&admin, NewToken::new("revoked", Role::Reader), "")
        .await
        .expect("ok");
    app.revoke_token(&admin, &revoked.id, "").await.expect("ok");
    let production = &fixture.initialized.environments[0];
    let old_key = production.keys.sdk_key.clone();
    let new_key = app
        .rotate_key(
            &admin,
            "default",
            &production.environment.key,
            CredentialKind::Sdk,
            60,
            "",
        )
        .await
        .expect("ok");

    // Nothing has expired yet: only the revoked token's tombstones go.
    let tokens_before = stored(&fixture.store, "token").await;
    let removed = app.remove_expired().await.expect("ok");
    assert_eq!((removed.tokens, removed.credentials), (1, 1));
    assert_eq!(stored(&fixture.store, "token").await, tokens_before - 1);
    assert!(app.authenticate(&session.token).await.is_ok());
    assert!(
        app.environment_for_key(&old_key, CredentialKind::Sdk)
            .await
            .expect("ok")
            .is_some()
    );

    // A minute later the old key has expired; twelve hours later the session.
    fixture.clock.advance(61_000);
    let removed = app.remove_expired().await.expect("ok");
    assert_eq!((removed.tokens, removed.credentials), (0, 1), "the old key");
    fixture.clock.advance(SESSION_HOURS * HOUR);
    let removed = app.remove_expired().await.expect("ok");
    assert_eq!(
        (removed.tokens, removed.credentials),
        (1, 1),
        "the session and its credential"
    );
    assert_eq!(
        app.remove_expired().await.expect("ok").tokens,
        0,
        "idempotent"
    );

    // What has not expired still works, and the audit log still tells the whole story.
    assert!(app.authenticate(&lasting).await.is_ok());
    assert!(
        app.environment_for_key(&new_key, CredentialKind::Sdk)
            .await
            .expect("ok")
            .is_some()
    );
    assert!(
        app.environment_for_key(&old_key, CredentialKind::Sdk)
            .await
            .expect("ok")
            .is_none()
    );
    assert!(matches!(
        app.authenticate(&session.token).await,
        Err(AppError::Unauthorized)
    ));
    let verification = fixture.store.verify_audit().await.expect("ok");
    assert!(verification.first_broken.is_none());
}
