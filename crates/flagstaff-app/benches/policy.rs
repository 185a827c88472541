//! What deciding an action costs under custom roles (issue 18's goal: microseconds for a member
//! with 20 roles × 10 statements), the policy alone and as a request pays it (authentication
//! resolving the roles from SQLite, then the decision). `cargo bench -p flagstaff-app --bench
//! policy`.

use criterion::{Criterion, criterion_group, criterion_main};
use flagstaff_app::policy::{Policy, Resource};
use serde_json::json;

/// Twenty roles of ten statements each, in the shapes people write: per project and
/// environment, with tags, globs, `notActions` and a few denies.
fn roles() -> Vec<Policy> {
    role_documents()
        .iter()
        .map(|statements| Policy::parse(statements).expect("a valid role"))
        .collect()
}

/// The same twenty roles as JSON documents.
fn role_documents() -> Vec<serde_json::Value> {
    (0..20)
        .map(|role| {
            let statements: Vec<serde_json::Value> = (0..10)
                .map(|i| {
                    let effect = if i % 7 == 6 { "deny" } else { "allow" };
                    let resource = format!("proj/team-{role}-*:env/{}:flag/*;tag-{i},web*", if i % 2 == 0 { "production" } else { "*" });
                    if i % 3 == 0 {
                        json!({"effect": effect, "notActions": ["delete*", "updateGlobalArchived"], "resources": [resource]})
                    } else {
                        json!({"effect": effect, "actions": ["updateOn", "update*Variation", "updateTargets"], "resources": [resource, "proj/*:env/test:segment/*"]})
                    }
                })
                .collect();
            json!(statements)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let roles = roles();
    let member = Policy::combine(&roles);
    // The last role's project: every statement is looked at, the last ones match.
    let late_match = Resource::new()
        .with("proj", "team-19-payments", &[])
        .with("env", "production", &["critical"])
        .with("flag", "checkout", &["tag-4", "web-shop"]);
    // Nothing matches: the worst case, every statement compared to the end.
    let no_match = Resource::new()
        .with("proj", "elsewhere", &[])
        .with("env", "production", &[])
        .with("flag", "checkout", &["web"]);
    assert!(member.decide("updateOn", &late_match).allows());
    assert!(!member.decide("updateOn", &no_match).allows());
    c.bench_function("policy/20x10/late_match", |b| {
        b.iter(|| {
            member.decide(
                std::hint::black_box("updateOn"),
                std::hint::black_box(&late_match),
            )
        })
    });
    c.bench_function("policy/20x10/no_match", |b| {
        b.iter(|| {
            member.decide(
                std::hint::black_box("updateRules"),
                std::hint::black_box(&no_match),
            )
        })
    });
    c.bench_function("policy/20x10/combine", |b| {
        b.iter(|| Policy::combine(&roles))
    });
}

/// What a request pays for access control end to end: authenticating a member's session, which
/// reads the member, their teams and their 20 roles from SQLite and parses the policies
/// (`App::authenticate`), and then one decision with the fence, the base role and the roles
/// (`Actor::authorize`).
fn bench_member(c: &mut Criterion) {
    use flagstaff_app::{Actor, App, CustomRole, Member, Role};
    use flagstaff_store::Store;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a directory");
    let (app, token) = runtime.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let app = App::new(std::sync::Arc::new(
            Store::open(&url).await.expect("a store"),
        ));
        app.initialize().await.expect("first start");
        let system = Actor::system();
        let mut keys = Vec::new();
        for (i, policy) in role_documents().into_iter().enumerate() {
            let key = format!("role-{i}");
            app.create_role(
                &system,
                CustomRole {
                    key: key.clone(),
                    name: key.clone(),
                    description: String::new(),
                    policy,
                },
                "",
            )
            .await
            .expect("a role");
            keys.push(key);
        }
        let member = Member {
            email: "ada@example.com".into(),
            name: "Ada".into(),
            role: Role::Reader,
            projects: None,
            custom_roles: keys,
        };
        app.create_member(&system, member, "correct horse battery", "")
            .await
            .expect("a member");
        let session = app
            .sign_in("ada@example.com", "correct horse battery", None)
            .await
            .expect("signed in");
        (app, session.token)
    });
    let actor = runtime
        .block_on(app.authenticate(&token))
        .expect("authenticated");
    assert_eq!(actor.custom_roles.len(), 20);
    let resource = Resource::new()
        .with("proj", "team-19-payments", &[])
        .with("env", "production", &["critical"])
        .with("flag", "checkout", &["tag-4", "web-shop"]);
    assert!(actor.authorize("updateOn", &resource).is_ok());
    c.bench_function("access/member_20x10/authorize", |b| {
        b.iter(|| actor.authorize(std::hint::black_box("updateOn"), &resource))
    });
    c.bench_function("access/member_20x10/authenticate_sqlite", |b| {
        b.iter(|| runtime.block_on(app.authenticate(std::hint::black_box(&token))))
    });
}

criterion_group!(benches, bench, bench_member);
criterion_main!(benches);
