//! Expiry with a manual clock: nothing sleeps.

use flagstaff_app::{Actor, AppError, AuditQuery, CredentialKind, Role, SESSION_HOURS};

use crate::support::{Fixture, START};

#[tokio::test]
async fn a_session_ends_when_its_hours_are_up() {
    let fixture = Fixture::new().await;
    fixture.member("ada@example.com", Role::Writer).await;
    let session = fixture
        .app
        .sign_in("ada@example.com", "correct horse battery", None)
        .await
        .expect("signed in");
    assert_eq!(session.expires_at, START + SESSION_HOURS * 3_600_000);
    fixture.clock.advance(SESSION_HOURS * 3_600_000 - 1);
    let actor = fixture
        .app
        .authenticate(&session.token)
        .await
        .expect("still valid");
    assert_eq!(actor.role, Role::Writer);
    fixture.clock.advance(1);
    assert!(matches!(
        fixture.app.authenticate(&session.token).await,
        Err(AppError::Unauthorized)
    ));
}

#[tokio::test]
async fn a_rotated_key_works_for_its_grace_period_and_not_a_millisecond_longer() {
    let fixture = Fixture::new().await;
    let old = fixture.initialized.environments[0].keys.sdk_key.clone();
    let environment = fixture.initialized.environments[0].environment.key.clone();
    let new = fixture
        .app
        .rotate_key(
            &Actor::system(),
            "default",
            &environment,
            CredentialKind::Sdk,
            60,
            "",
        )
        .await
        .expect("rotated");
    let grant = |key: String| {
        let app = fixture.app.clone();
        async move {
            app.environment_for_key(&key, CredentialKind::Sdk)
                .await
                .expect("lookup")
        }
    };
    let here = Some(("default".to_owned(), environment.clone()));
    assert_eq!(grant(old.clone()).await, here);
    assert_eq!(grant(new.clone()).await, here);
    fixture.clock.advance(59_999);
    assert_eq!(grant(old.clone()).await, here);
    fixture.clock.advance(1);
    assert_eq!(grant(old).await, None, "expired at exactly 60 s");
    assert_eq!(grant(new).await, here);
}

#[tokio::test]
async fn audit_entries_carry_the_clock_s_time() {
    let fixture = Fixture::new().await;
    fixture.clock.advance(3_600_000);
    fixture
        .flag(crate::support::boolean("timed"))
        .await
        .expect("flag");
    let entries = fixture
        .app
        .audit(
            &Actor::system(),
            &AuditQuery {
                key: Some("timed".into()),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("audit");
    let created = entries
        .iter()
        .find(|e| e.key == "timed")
        .expect("the flag's entry");
    assert_eq!(created.at, START + 3_600_000);
}

#[tokio::test]
async fn password_guessing_waits_longer_and_longer_and_a_success_starts_afresh() {
    let fixture = Fixture::new().await;
    fixture.member("ada@example.com", Role::Writer).await;
    let from = Some(std::net::IpAddr::from([198, 51, 100, 7]));
    let attempt = |password: &'static str| {
        let app = fixture.app.clone();
        async move { app.sign_in("ada@example.com", password, from).await }
    };
    // Six wrong passwords are checked and refused; the sixth makes the next attempt wait 1 s.
    for _ in 0..6 {
        assert!(matches!(
            attempt("wrong").await,
            Err(AppError::Unauthorized)
        ));
    }
    // Now even the right password is refused, without being checked, until the wait is over.
    match attempt("correct horse battery").await {
        Err(AppError::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 1_000),
        other => panic!("{other:?}"),
    }
    fixture.clock.advance(1_000);
    assert!(matches!(
        attempt("wrong").await,
        Err(AppError::Unauthorized)
    ));
    match attempt("correct horse battery").await {
        Err(AppError::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 2_000),
        other => panic!("{other:?}"),
    }
    fixture.clock.advance(2_000);
    assert!(attempt("correct horse battery").await.is_ok());
    // A success starts afresh: one wrong password is again just a wrong password.
    assert!(matches!(
        attempt("wrong").await,
        Err(AppError::Unauthorized)
    ));
    assert!(attempt("correct horse battery").await.is_ok());
    // Unknown emails are throttled too (per account and per address).
    let other = Some(std::net::IpAddr::from([198, 51, 100, 8]));
    for _ in 0..6 {
        assert!(matches!(
            fixture.app.sign_in("nobody@example.com", "x", other).await,
            Err(AppError::Unauthorized)
        ));
    }
    assert!(matches!(
        fixture
            .app
            .sign_in("someone-else@example.com", "x", other)
            .await,
        Err(AppError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn an_invitation_works_for_its_hours_once_and_is_then_removed() {
    use flagstaff_app::{INVITATION_HOURS, NewInvitation, Role};
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    let invite = |email: &str| NewInvitation {
        email: email.into(),
        role: Role::Reader,
        custom_roles: Vec::new(),
        projects: None,
    };
    let (_, late) = app
        .invite(&Actor::system(), invite("late@example.com"), "")
        .await
        .expect("invite");
    let (_, prompt) = app
        .invite(&Actor::system(), invite("prompt@example.com"), "")
        .await
        .expect("invite");
    fixture.clock.advance(INVITATION_HOURS * 3_600_000 - 1);
    let session = app
        .accept_invitation(&prompt, "Prompt", "correct horse battery", None)
        .await
        .expect("accepted in time");
    assert_eq!(session.member.email, "prompt@example.com");
    assert_eq!(session.member.role, Role::Reader);
    // Used up: the same link does nothing the second time.
    assert!(matches!(
        app.accept_invitation(&prompt, "Prompt", "correct horse battery", None)
            .await,
        Err(AppError::NotFound(_))
    ));
    fixture.clock.advance(1);
    assert!(matches!(
        app.accept_invitation(&late, "Late", "correct horse battery", None)
            .await,
        Err(AppError::NotFound(_))
    ));
    let removed = app.remove_expired().await.expect("remove");
    // The expired one and the used one's tombstone.
    assert_eq!(removed.invitations, 2, "{removed:?}");
    assert!(
        app.list_invitations(&Actor::system())
            .await
            .expect("list")
            .is_empty()
    );
}
