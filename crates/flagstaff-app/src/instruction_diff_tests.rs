//! An edit turned into instructions gives the edit back when applied; what instructions cannot
//! say is refused with its field; an instruction list made from an edit still applies after an
//! unrelated edit, and conflicts after one that removed what it changes.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::instructions::{
    apply_to_segment, apply_to_targeting, parse_flag_instructions, parse_segment_instructions,
};

fn targeting(value: Value) -> Targeting {
    serde_json::from_value(value).expect("targeting")
}

fn apply(before: &Targeting, instructions: &[Value]) -> Result<Targeting> {
    let mut t = before.clone();
    apply_to_targeting(&mut t, &parse_flag_instructions(instructions)?)?;
    Ok(t)
}

/// What decides results, with targets as sets (their order and empty entries mean nothing).
fn meaning(t: &Targeting) -> Value {
    let targets: Vec<(String, i64, Vec<String>)> = flag_targets(t)
        .into_iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|((kind, variation), keys)| (kind, variation, keys.into_iter().collect()))
        .collect();
    let mut prerequisites: Vec<(String, i64)> = t
        .prerequisites
        .iter()
        .map(|p| (p.key.clone(), p.variation))
        .collect();
    prerequisites.sort();
    json!({"on": t.on, "off": t.off_variation, "fallthrough": t.fallthrough, "rules": t.rules,
           "targets": targets, "prerequisites": prerequisites})
}

#[test]
fn an_edit_becomes_the_instructions_a_person_would_write() {
    let before = targeting(
        json!({"on": false, "offVariation": 1, "fallthrough": {"variation": 1},
        "targets": [{"variation": 0, "values": ["ann", "bob"]}],
        "rules": [{"id": "r1", "variation": 0, "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"]}]},
                  {"id": "r2", "variation": 1, "clauses": [{"attribute": "beta", "op": "in", "values": [true]}]}]}),
    );
    let after = targeting(
        json!({"on": true, "offVariation": 1, "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 5000}, {"variation": 1, "weight": 95000}]}},
        "targets": [{"variation": 0, "values": ["ann", "cy"]}],
        "rules": [{"id": "r1", "variation": 1, "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}]}),
    );
    let instructions = targeting_instructions(&before, &after).unwrap();
    let kinds: Vec<&str> = instructions
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        // Rules in the order they stood: r1 is re-served, r2 goes.
        [
            "turnFlagOn",
            "removeTargets",
            "addTargets",
            "updateRuleVariationOrRollout",
            "removeRule",
            "updateFallthroughVariationOrRollout"
        ]
    );
    assert_eq!(
        meaning(&apply(&before, &instructions).unwrap()),
        meaning(&after)
    );
    assert!(targeting_instructions(&before, &before).unwrap().is_empty());
}

#[test]
fn an_edit_still_applies_after_an_unrelated_one_and_conflicts_after_a_related_one() {
    let before = targeting(json!({"rules": [{"id": "r1", "variation": 0, "clauses": []}]}));
    let after =
        targeting(json!({"on": true, "rules": [{"id": "r1", "variation": 1, "clauses": []}]}));
    let instructions = targeting_instructions(&before, &after).unwrap();
    // Someone adds a target meanwhile: both changes stand.
    let mut unrelated = before.clone();
    unrelated.targets = vec![flagstaff_protocol::Target {
        context_kind: None,
        values: vec!["zed".into()],
        variation: 0,
    }];
    let applied = apply(&unrelated, &instructions).unwrap();
    assert!(applied.on);
    assert_eq!(applied.targets[0].values, ["zed"]);
    // Someone removes the rule meanwhile: the instruction that re-serves it conflicts.
    let mut related = before.clone();
    related.rules.clear();
    match apply(&related, &instructions) {
        Err(AppError::Invalid { code, field, .. }) => {
            assert_eq!(code, ErrorCode::InstructionConflict);
            assert_eq!(
                field, "instructions[1]",
                "the updateRuleVariationOrRollout of r1"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_instructions_cannot_say_is_refused_with_its_field() {
    let before = targeting(json!({"offVariation": 1}));
    for (after, field) in [
        (
            json!({"offVariation": 1, "trackEvents": true}),
            "trackEvents",
        ),
        (
            json!({"offVariation": 1, "trackEventsFallthrough": true}),
            "trackEventsFallthrough",
        ),
        (json!({"offVariation": 1, "salt": "other"}), "salt"),
        (json!({}), "offVariation"),
    ] {
        match targeting_instructions(&before, &targeting(after.clone())) {
            Err(AppError::Invalid { field: f, .. }) => assert_eq!(f, field, "{after}"),
            other => panic!("{after}: {other:?}"),
        }
    }
}

#[test]
fn segment_edits_round_trip() {
    let before: Segment = serde_json::from_value(json!({"key": "s", "included": ["a", "b"], "excluded": ["x"],
        "includedContexts": [{"contextKind": "org", "values": ["acme"]}],
        "rules": [{"id": "r1", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]})).unwrap();
    let after: Segment = serde_json::from_value(json!({"key": "s", "included": ["b", "c"],
        "includedContexts": [{"contextKind": "org", "values": ["acme", "initech"]}],
        "rules": [{"id": "r2", "clauses": [{"attribute": "plan", "op": "in", "values": ["team"]}], "weight": 50000}]})).unwrap();
    let instructions = segment_instructions(&before, &after).unwrap();
    let mut applied = before.clone();
    apply_to_segment(
        &mut applied,
        &parse_segment_instructions(&instructions).unwrap(),
    )
    .unwrap();
    let keys = |s: &Segment| {
        (
            segment_keys(&s.included, &s.included_contexts),
            segment_keys(&s.excluded, &s.excluded_contexts),
        )
    };
    let drop_empty = |(a, b): (
        BTreeMap<String, BTreeSet<String>>,
        BTreeMap<String, BTreeSet<String>>,
    )| {
        (
            a.into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect::<Vec<_>>(),
            b.into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(drop_empty(keys(&applied)), drop_empty(keys(&after)));
    assert_eq!(applied.rules, after.rules);
}

fn arbitrary_targeting() -> impl Strategy<Value = Targeting> {
    let serve = prop_oneof![
        (0i64..3).prop_map(|v| json!({"variation": v})),
        (0i64..=100_000).prop_map(|w| json!({"rollout": {"variations": [{"variation": 0, "weight": w}, {"variation": 1, "weight": 100_000 - w}]}})),
    ];
    let rule = (
        prop::sample::select(vec!["NZ", "AU", "US"]),
        serve.clone(),
        any::<bool>(),
    );
    (
        any::<bool>(),
        0i64..3,
        serve,
        // Each key targeted at most once per kind, as validation requires.
        prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c", "d"]), 0i64..3, 0..4),
        prop::collection::btree_map(prop::sample::select(vec!["acme", "initech"]), 0i64..3, 0..3),
        prop::sample::subsequence(vec!["r1", "r2", "r3", "r4"], 0..4),
        prop::collection::vec(rule, 4),
        prop::sample::subsequence(vec!["p1", "p2"], 0..2),
        any::<u64>(),
    )
        .prop_map(|(on, off, fallthrough, users, orgs, ids, rules, prerequisites, seed)| {
            let group = |m: std::collections::BTreeMap<&str, i64>, kind: &str| -> Vec<Value> {
                let mut by: std::collections::BTreeMap<i64, Vec<&str>> = Default::default();
                for (k, v) in m {
                    by.entry(v).or_default().push(k);
                }
                by.into_iter().map(|(v, keys)| json!({"contextKind": kind, "variation": v, "values": keys})).collect()
            };
            let mut ids = ids;
            // Shuffle the order of the rules by the seed, so that edits reorder them.
            if seed % 2 == 1 {
                ids.reverse();
            }
            let rules: Vec<Value> = ids
                .iter()
                .zip(&rules)
                .map(|(id, (country, serve, track))| {
                    let mut rule = json!({"id": id, "trackEvents": *track && seed % 3 == 0,
                        "clauses": [{"attribute": "country", "op": "in", "values": [country]}]});
                    rule.as_object_mut().unwrap().extend(serve.as_object().unwrap().clone());
                    rule
                })
                .collect();
            serde_json::from_value(json!({"on": on, "offVariation": off, "fallthrough": fallthrough,
                "targets": group(users, "user").into_iter().map(|mut t| { t.as_object_mut().unwrap().remove("contextKind"); t }).collect::<Vec<_>>(),
                "contextTargets": group(orgs, "org"),
                "rules": rules,
                "prerequisites": prerequisites.iter().enumerate().map(|(i, k)| json!({"key": k, "variation": i % 2})).collect::<Vec<_>>()}))
            .expect("a targeting")
        })
}

proptest! {
    #[test]
    fn applying_the_instructions_of_an_edit_gives_the_edit(before in arbitrary_targeting(), after in arbitrary_targeting()) {
        let instructions = targeting_instructions(&before, &after).unwrap();
        // An edit that changes nothing says nothing (and a semantic patch needs at least one
        // instruction, so there is nothing to apply): the two must mean the same.
        if instructions.is_empty() {
            prop_assert_eq!(meaning(&before), meaning(&after));
            return Ok(());
        }
        let applied = apply(&before, &instructions);
        prop_assert!(applied.is_ok(), "{:?} from {} to {}: {:?}", instructions, json!(before), json!(after), applied);
        prop_assert_eq!(meaning(&applied.unwrap()), meaning(&after));
    }
}
