//! What deciding an action costs under custom roles (issue 18's goal: microseconds for a member
//! with 20 roles × 10 statements). `cargo bench -p flagstaff-app --bench policy`.

use criterion::{Criterion, criterion_group, criterion_main};
use flagstaff_app::policy::{Policy, Resource};
use serde_json::json;

/// Twenty roles of ten statements each, in the shapes people write: per project and
/// environment, with tags, globs, `notActions` and a few denies.
fn roles() -> Vec<Policy> {
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
            Policy::parse(&json!(statements)).expect("a valid role")
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

criterion_group!(benches, bench);
criterion_main!(benches);
