//! Instructions, table by table: each applied to a small document and compared with the
//! document written out by hand.

use serde_json::{Value, json};

use super::*;

fn targeting(value: Value) -> Targeting {
    serde_json::from_value(value).expect("targeting")
}

fn apply(start: Value, instructions: Value) -> Result<Targeting> {
    let mut t = targeting(start);
    let parsed = parse_flag_instructions(instructions.as_array().expect("a list"))?;
    apply_to_targeting(&mut t, &parsed)?;
    Ok(t)
}

fn rule(id: &str, variation: i64) -> Value {
    json!({"id": id, "variation": variation, "clauses": [{"attribute": "key", "op": "in", "values": [id]}]})
}

#[test]
fn on_off_targets_and_fallthrough() {
    let t = apply(
        json!({"on": false, "offVariation": 1, "fallthrough": {"variation": 1}}),
        json!([{"kind": "turnFlagOn"},
               {"kind": "addTargets", "variation": 0, "values": ["ann", "bob"]},
               {"kind": "addTargets", "variation": 0, "values": ["bob", "cy"]},
               {"kind": "removeTargets", "variation": 0, "values": ["ann", "nobody"]},
               {"kind": "updateFallthroughVariationOrRollout", "rollout": {"variations": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}},
               {"kind": "updateOffVariation", "variation": 0}]),
    )
    .unwrap();
    assert!(t.on);
    assert_eq!(
        serde_json::to_value(&t.targets).unwrap(),
        json!([{"values": ["bob", "cy"], "variation": 0}])
    );
    assert!(t.context_targets.is_empty());
    assert_eq!(
        t.fallthrough.rollout.as_ref().map(|r| r.variations.len()),
        Some(2)
    );
    assert_eq!(t.off_variation, Some(0));
    let off = apply(json!({"on": true}), json!([{"kind": "turnFlagOff"}])).unwrap();
    assert!(!off.on);
}

#[test]
fn a_non_user_target_keeps_user_targets_reachable_through_placeholders() {
    let t = apply(
        json!({"targets": [{"variation": 1, "values": ["ann"]}]}),
        json!([{"kind": "addTargets", "contextKind": "org", "variation": 0, "values": ["acme"]}]),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&t.context_targets).unwrap(),
        json!([{"contextKind": "user", "values": [], "variation": 1},
               {"contextKind": "org", "values": ["acme"], "variation": 0}])
    );
    // Removing the last user target removes its placeholder; the org target stays.
    let t2 = {
        let mut t2 = t.clone();
        let parsed = parse_flag_instructions(&[
            json!({"kind": "removeTargets", "variation": 1, "values": ["ann"]}),
        ])
        .unwrap();
        apply_to_targeting(&mut t2, &parsed).unwrap();
        t2
    };
    assert!(t2.targets.is_empty());
    assert_eq!(
        serde_json::to_value(&t2.context_targets).unwrap(),
        json!([{"contextKind": "org", "values": ["acme"], "variation": 0}])
    );
}

#[test]
fn rules_are_added_where_asked_changed_reordered_and_removed_by_id() {
    let start = json!({"rules": [rule("r1", 0), rule("r2", 1)]});
    let t = apply(
        start.clone(),
        json!([{"kind": "addRule", "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"]}], "variation": 1, "beforeRuleId": "r2"},
               {"kind": "updateRuleVariationOrRollout", "ruleId": "r1", "variation": 1},
               {"kind": "addClauses", "ruleId": "r2", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]},
               {"kind": "removeClauses", "ruleId": "r2", "clauses": [{"attribute": "key", "op": "in", "values": ["r2"]}]}]),
    )
    .unwrap();
    let ids: Vec<&str> = t.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!((ids[0], ids[2]), ("r1", "r2"));
    assert_eq!(t.rules[1].clauses[0].attribute, "country");
    assert_eq!(t.rules[0].variation_or_rollout.variation, Some(1));
    assert_eq!(t.rules[2].clauses.len(), 1);
    assert_eq!(t.rules[2].clauses[0].attribute, "plan");
    let new_id = ids[1].to_owned();
    let reordered = apply(
        serde_json::to_value(&t).unwrap(),
        json!([{"kind": "reorderRules", "ruleIds": ["r2", new_id, "r1"]}, {"kind": "removeRule", "ruleId": "r1"}]),
    )
    .unwrap();
    let ids: Vec<&str> = reordered.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["r2", new_id.as_str()]);
}

#[test]
fn instructions_that_no_longer_apply_are_conflicts_naming_the_instruction() {
    let start = json!({"rules": [rule("r1", 0)], "prerequisites": [{"key": "p", "variation": 0}]});
    for (instructions, index) in [
        (
            json!([{"kind": "turnFlagOn"}, {"kind": "removeRule", "ruleId": "gone"}]),
            1,
        ),
        (
            json!([{"kind": "updateRuleVariationOrRollout", "ruleId": "gone", "variation": 0}]),
            0,
        ),
        (
            json!([{"kind": "addClauses", "ruleId": "gone", "clauses": []}]),
            0,
        ),
        (
            json!([{"kind": "removeClauses", "ruleId": "r1", "clauses": [{"attribute": "x", "op": "in", "values": []}]}]),
            0,
        ),
        (
            json!([{"kind": "addRule", "clauses": [], "variation": 0, "beforeRuleId": "gone"}]),
            0,
        ),
        (
            json!([{"kind": "reorderRules", "ruleIds": ["r1", "r1"]}]),
            0,
        ),
        (
            json!([{"kind": "addPrerequisite", "key": "p", "variation": 1}]),
            0,
        ),
        (json!([{"kind": "removePrerequisite", "key": "q"}]), 0),
        (
            json!([{"kind": "updatePrerequisite", "key": "q", "variation": 0}]),
            0,
        ),
    ] {
        match apply(start.clone(), instructions.clone()) {
            Err(AppError::Invalid { code, field, .. }) => {
                assert_eq!(code, ErrorCode::InstructionConflict, "{instructions}");
                assert_eq!(field, format!("instructions[{index}]"), "{instructions}");
            }
            other => panic!("{instructions}: {other:?}"),
        }
    }
}

#[test]
fn malformed_instructions_name_their_field() {
    for (instructions, field) in [
        (json!([]), "instructions"),
        (
            json!([{"kind": "turnFlagSideways"}]),
            "instructions[0].kind",
        ),
        (
            json!([{"kind": "turnFlagOn"}, {"kind": "addTargets", "values": ["a"]}]),
            "instructions[1]",
        ),
        (
            json!([{"kind": "addTargets", "variation": "one", "values": []}]),
            "instructions[0].variation",
        ),
        (
            json!([{"kind": "addTargets", "variationId": "abc", "variation": 0, "values": []}]),
            "instructions[0].variationId",
        ),
        (
            json!([{"kind": "addRule", "clauses": [], "variation": 0, "rollout": {"variations": []}}]),
            "instructions[0]",
        ),
    ] {
        match apply(json!({}), instructions.clone()) {
            Err(AppError::Invalid {
                code, field: got, ..
            }) => {
                assert_eq!(code, codes::INVALID_FIELD, "{instructions}");
                assert_eq!(got, field, "{instructions}");
            }
            other => panic!("{instructions}: {other:?}"),
        }
    }
}

#[test]
fn segment_instructions() {
    let mut segment: Segment = serde_json::from_value(
        json!({"key": "s", "included": ["ann"], "rules": [{"id": "r1", "clauses": []}]}),
    )
    .unwrap();
    let parsed = parse_segment_instructions(&[
        json!({"kind": "addIncludedTargets", "values": ["bob", "ann"]}),
        json!({"kind": "addExcludedTargets", "contextKind": "org", "values": ["acme"]}),
        json!({"kind": "removeIncludedTargets", "values": ["ann"]}),
        json!({"kind": "addRule", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "beforeRuleId": "r1", "weight": 50000}),
        json!({"kind": "removeRule", "ruleId": "r1"}),
    ])
    .unwrap();
    apply_to_segment(&mut segment, &parsed).unwrap();
    assert_eq!(segment.included, vec!["bob".to_owned()]);
    assert_eq!(
        serde_json::to_value(&segment.excluded_contexts).unwrap(),
        json!([{"contextKind": "org", "values": ["acme"]}])
    );
    assert_eq!(segment.rules.len(), 1);
    assert_eq!(segment.rules[0].weight, Some(50000));
    let gone =
        parse_segment_instructions(&[json!({"kind": "removeRule", "ruleId": "r1"})]).unwrap();
    assert!(matches!(
        apply_to_segment(&mut segment, &gone),
        Err(AppError::Invalid {
            code: ErrorCode::InstructionConflict,
            ..
        })
    ));
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::super::*;

    /// Instructions of every kind over a small vocabulary of rule ids, keys and variations, so
    /// that sequences often refer to rules that exist, were removed or never existed.
    fn instruction() -> impl Strategy<Value = Value> {
        let id = prop::sample::select(vec!["r1", "r2", "r3", "x"]);
        let key = prop::sample::select(vec!["a", "b", "c"]);
        let kind = prop::sample::select(vec![None, Some("user"), Some("org")]);
        (0usize..15, id, key, kind, -1i64..3).prop_map(|(which, id, key, kind, variation)| {
            let clause = json!({"attribute": "key", "op": "in", "values": [key]});
            let mut v = match which {
                0 => json!({"kind": "turnFlagOn"}),
                1 => json!({"kind": "turnFlagOff"}),
                2 => json!({"kind": "addTargets", "variation": variation, "values": [key]}),
                3 => json!({"kind": "removeTargets", "variation": variation, "values": [key]}),
                4 => json!({"kind": "addRule", "clauses": [clause], "variation": variation, "beforeRuleId": id}),
                5 => json!({"kind": "addRule", "clauses": [clause], "variation": variation}),
                6 => json!({"kind": "removeRule", "ruleId": id}),
                7 => json!({"kind": "updateRuleVariationOrRollout", "ruleId": id, "variation": variation}),
                8 => json!({"kind": "addClauses", "ruleId": id, "clauses": [clause]}),
                9 => json!({"kind": "removeClauses", "ruleId": id, "clauses": [clause]}),
                10 => json!({"kind": "reorderRules", "ruleIds": ["r1", "r2", "r3"]}),
                11 => json!({"kind": "updateFallthroughVariationOrRollout", "variation": variation}),
                12 => json!({"kind": "updateOffVariation", "variation": variation}),
                13 => json!({"kind": "addPrerequisite", "key": key, "variation": variation}),
                _ => json!({"kind": "removePrerequisite", "key": key}),
            };
            if let (Some(kind), Some(fields)) = (kind, v.as_object_mut())
                && matches!(which, 2 | 3)
            {
                fields.insert("contextKind".into(), json!(kind));
            }
            v
        })
    }

    proptest! {
        /// Whatever the sequence: no panic; success or an error naming an instruction; and a
        /// successful sequence leaves every user target reachable when `contextTargets` is used.
        #[test]
        fn any_sequence_applies_or_names_the_instruction_that_cannot(
            instructions in prop::collection::vec(instruction(), 1..12)
        ) {
            let mut targeting: Targeting = serde_json::from_value(json!({"rules": [
                {"id": "r1", "variation": 0, "clauses": []}, {"id": "r2", "variation": 1, "clauses": []},
                {"id": "r3", "variation": 0, "clauses": []}]})).unwrap();
            match parse_flag_instructions(&instructions).and_then(|parsed| apply_to_targeting(&mut targeting, &parsed)) {
                Ok(()) => {
                    if !targeting.context_targets.is_empty() {
                        for target in &targeting.targets {
                            prop_assert!(targeting.context_targets.iter().any(|t| {
                                t.context_kind.as_deref() == Some("user") && t.variation == target.variation
                            }), "user target for variation {} unreachable: {:?}", target.variation, targeting);
                        }
                    }
                }
                Err(AppError::Invalid { field, .. }) => prop_assert!(field.starts_with("instructions"), "{field}"),
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
