//! Unit tests of `policy.rs`: table-driven decisions, validation with field paths, and the
//! properties the language promises (deny wins, `not*` are complements, globs).
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn policy(value: Value) -> Policy {
    Policy::parse(&value).expect("a valid policy")
}

fn flag(env: &str, env_tags: &[&str], key: &str, tags: &[&str]) -> Resource {
    Resource::new()
        .with("proj", "default", &[])
        .with("env", env, env_tags)
        .with("flag", key, tags)
}

fn refused_field(value: Value) -> String {
    match Policy::parse(&value) {
        Err(AppError::Invalid { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn globs_match_runs_of_characters() {
    for (pattern, text, expected) in [
        ("*", "", true),
        ("*", "anything", true),
        ("prod-*", "prod-eu", true),
        ("prod-*", "production", false),
        ("*-eu", "prod-eu", true),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("update*", "updateOn", true),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("**", "x", true),
    ] {
        assert_eq!(glob_matches(pattern, text), expected, "{pattern} ~ {text}");
    }
}

#[test]
fn a_kill_switch_role_may_toggle_production_flags_and_nothing_else() {
    let kill_switch = policy(json!([
        {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]}
    ]));
    let production = flag("production", &["critical"], "checkout", &["web"]);
    let test = flag("test", &[], "checkout", &["web"]);
    assert_eq!(
        kill_switch.decide("updateOn", &production),
        Decision::Allowed(0)
    );
    assert_eq!(
        kill_switch.decide("updateRules", &production),
        Decision::NotAllowed
    );
    assert_eq!(kill_switch.decide("updateOn", &test), Decision::NotAllowed);
    // The environment itself is another resource (another shape).
    let environment = Resource::new()
        .with("proj", "default", &[])
        .with("env", "production", &[]);
    assert_eq!(
        kill_switch.decide("updateOn", &environment),
        Decision::NotAllowed
    );
}

#[test]
fn deny_wins_over_any_allow_and_tags_must_all_be_present() {
    let role = policy(json!([
        {"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/*:flag/*"]},
        {"effect": "deny", "actions": ["updateRules"], "resources": ["proj/*:env/*:flag/*;payments"]},
        {"effect": "allow", "actions": ["updateRules"], "resources": ["proj/default:env/*:flag/*"]}
    ]));
    let payments = flag("production", &[], "charge", &["payments", "web"]);
    let web = flag("production", &[], "banner", &["web"]);
    assert_eq!(role.decide("updateRules", &payments), Decision::Denied(1));
    assert_eq!(role.decide("updateOn", &payments), Decision::Allowed(0));
    assert_eq!(role.decide("updateRules", &web), Decision::Allowed(0));
    // Both tags are required by `;payments,eu`.
    let both = policy(json!([
        {"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/*:flag/*;payments,eu*"]}
    ]));
    assert!(!both.decide("updateOn", &payments).allows());
    let eu = flag("production", &[], "charge", &["payments", "eu-west"]);
    assert!(both.decide("updateOn", &eu).allows());
    // Environments are filtered by their tags too (`critical`).
    let non_critical = policy(json!([
        {"effect": "allow", "actions": ["update*"], "resources": ["proj/*:env/*:flag/*"]},
        {"effect": "deny", "actions": ["*"], "resources": ["proj/*:env/*;critical:flag/*"]}
    ]));
    assert!(
        !non_critical
            .decide("updateOn", &flag("production", &["critical"], "x", &[]))
            .allows()
    );
    assert!(
        non_critical
            .decide("updateOn", &flag("staging", &[], "x", &[]))
            .allows()
    );
}

#[test]
fn not_actions_and_not_resources_match_everything_they_do_not_list() {
    let role = policy(json!([
        {"effect": "allow", "notActions": ["delete*"], "resources": ["proj/*:env/*:flag/*"]},
        {"effect": "deny", "actions": ["*"], "notResources": ["proj/default:env/*:flag/*"]}
    ]));
    let here = flag("production", &[], "x", &[]);
    let elsewhere = Resource::new()
        .with("proj", "other", &[])
        .with("env", "production", &[])
        .with("flag", "x", &[]);
    assert!(role.decide("updateRules", &here).allows());
    assert_eq!(role.decide("deleteFlag", &here), Decision::NotAllowed);
    assert_eq!(role.decide("updateRules", &elsewhere), Decision::Denied(1));
}

#[test]
fn roles_combine_and_deny_still_wins_across_them() {
    let writer = policy(
        json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/*:flag/*"]}]),
    );
    let no_payments = policy(
        json!([{"effect": "deny", "actions": ["updateRules"], "resources": ["proj/*:env/*:flag/*;payments"]}]),
    );
    let member = Policy::combine([&writer, &no_payments]);
    assert_eq!(
        member.decide("updateRules", &flag("production", &[], "p", &["payments"])),
        Decision::Denied(1)
    );
    assert!(
        member
            .decide("updateRules", &flag("production", &[], "q", &[]))
            .allows()
    );
}

#[test]
fn malformed_policies_are_refused_naming_the_field() {
    let cases = [
        (json!({"effect": "allow"}), ""),
        (json!(["x"]), "[0]"),
        (
            json!([{"effect": "maybe", "actions": ["*"], "resources": ["proj/*"]}]),
            "[0].effect",
        ),
        (json!([{"effect": "allow", "resources": ["proj/*"]}]), "[0]"),
        (
            json!([{"effect": "allow", "actions": ["*"], "notActions": ["x"], "resources": ["proj/*"]}]),
            "[0]",
        ),
        (
            json!([{"effect": "allow", "actions": ["updateOn", "updateOnn"], "resources": ["proj/*"]}]),
            "[0].actions[1]",
        ),
        (
            json!([{"effect": "allow", "notActions": [3], "resources": ["proj/*"]}]),
            "[0].notActions[0]",
        ),
        (
            json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/*", "flag/*"]}]),
            "[0].resources[1]",
        ),
        (
            json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/*:flag"]}]),
            "[0].resources[0]",
        ),
        (
            json!([{"effect": "allow", "actions": ["*"], "notResources": ["proj/*:planet/x"]}]),
            "[0].notResources[0]",
        ),
        (
            json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/*:env/*;"]}]),
            "[0].resources[0]",
        ),
        (
            json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/*"], "condition": {}}]),
            "[0].condition",
        ),
        (
            json!([{"effect": "allow", "actions": ["*"], "resources": ["proj/a"]},
                {"effect": "deny", "actions": ["*"], "resources": "proj/*"}]),
            "[1].resources",
        ),
    ];
    for (value, field) in cases {
        assert_eq!(refused_field(value.clone()), field, "{value}");
    }
    // Every documented shape parses.
    for specifier in [
        "proj/*",
        "proj/default:env/production",
        "proj/*:env/*;critical:flag/*;web,checkout",
        "proj/default:env/test:segment/beta*",
        "member/*",
        "team/support",
        "role/*",
        "token/*",
        "webhook/*",
    ] {
        assert!(Specifier::parse(specifier, "x").is_ok(), "{specifier}");
    }
}

fn action() -> impl Strategy<Value = String> {
    proptest::sample::select(ACTIONS.to_vec()).prop_map(str::to_owned)
}

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["default", "production", "test", "checkout", "p-1"])
        .prop_map(str::to_owned)
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        key(),
        Just("*".to_owned()),
        Just("p*".to_owned()),
        Just("*t".to_owned())
    ]
}

fn statement() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(
            prop_oneof![action(), Just("update*".to_owned()), Just("*".to_owned())],
            1..3,
        ),
        any::<bool>(),
        pattern(),
        pattern(),
        pattern(),
        proptest::option::of(proptest::sample::select(vec!["web", "payments", "p*"])),
    )
        .prop_map(
            |(deny, not_actions, actions, not_resources, p, e, f, tag)| {
                let tag = tag.map(|t| format!(";{t}")).unwrap_or_default();
                let specifier = format!("proj/{p}:env/{e}:flag/{f}{tag}");
                let mut statement = serde_json::Map::new();
                statement.insert("effect".into(), json!(if deny { "deny" } else { "allow" }));
                statement.insert(
                    if not_actions { "notActions" } else { "actions" }.into(),
                    json!(actions),
                );
                statement.insert(
                    if not_resources {
                        "notResources"
                    } else {
                        "resources"
                    }
                    .into(),
                    json!([specifier]),
                );
                Value::Object(statement)
            },
        )
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        key(),
        key(),
        key(),
        proptest::sample::subsequence(vec!["web", "payments", "pii"], 0..3),
    )
        .prop_map(|(p, e, f, tags)| {
            Resource::new()
                .with("proj", &p, &[])
                .with("env", &e, &[])
                .with("flag", &f, &tags)
        })
}

proptest! {
    #[test]
    fn adding_a_deny_never_allows_more_and_adding_an_allow_never_denies(
        statements in proptest::collection::vec(statement(), 0..6),
        extra in statement(),
        action in action(),
        resource in resource(),
    ) {
        let before = policy(Value::Array(statements.clone()));
        let mut more = statements;
        more.push(extra.clone());
        let after = policy(Value::Array(more));
        let was = before.decide(&action, &resource);
        let now = after.decide(&action, &resource);
        if extra["effect"] == "deny" {
            // A deny can only take permission away.
            prop_assert!(!now.allows() || was.allows());
        } else {
            // An allow can only add permission, never deny.
            prop_assert_eq!(matches!(now, Decision::Denied(_)), matches!(was, Decision::Denied(_)));
            prop_assert!(now.allows() || !was.allows());
        }
    }

    #[test]
    fn not_actions_is_the_complement_of_actions(
        statement in statement(),
        action in action(),
        resource in resource(),
    ) {
        let mut original = statement.as_object().unwrap().clone();
        original.insert("effect".into(), json!("allow"));
        let mut flipped = original.clone();
        let (from, to) = if flipped.contains_key("actions") {
            ("actions", "notActions")
        } else {
            ("notActions", "actions")
        };
        let list = flipped.remove(from).unwrap();
        flipped.insert(to.into(), list);
        // The same resources with every action: does the resource side match at all?
        let mut every_action = original.clone();
        every_action.remove("actions");
        every_action.remove("notActions");
        every_action.insert("actions".into(), json!(["*"]));
        let a = policy(json!([original])).decide(&action, &resource).allows();
        let b = policy(json!([flipped])).decide(&action, &resource).allows();
        let resource_matches = policy(json!([every_action])).decide(&action, &resource).allows();
        if resource_matches {
            prop_assert!(a != b, "exactly one of a list and its complement matches");
        } else {
            prop_assert!(!a && !b);
        }
    }
}
