//! Instructions from an edit: what turns a document as read into the document as edited, said
//! as semantic-patch instructions (`instructions.rs`).
//!
//! The dashboard's editors produce whole documents. A change request or a scheduled change must
//! store *what* changes, so that it still applies after someone else edits an unrelated part
//! (and conflicts, naming the instruction, when someone removed what it changes). This module
//! turns an edit into those instructions: on/off, targets added and removed per context kind and
//! variation, rules removed, added (keeping their ids), re-served and reordered, the fallthrough,
//! the off variation, prerequisites; for segments, included and excluded keys per context kind
//! and rules. What no instruction can say (event tracking, the salt, a removed off variation) is
//! refused with the field, rather than silently dropped. Applying the result to `before` gives
//! `after` (a property test checks it).

use std::collections::{BTreeMap, BTreeSet};

use flagstaff_protocol::{FlagRule, Segment, SegmentRule};
use serde_json::{Value, json};

use crate::error::{AppError, ErrorCode, Result};
use crate::model::Targeting;
use crate::random_hex;

fn not_expressible(field: &str, what: &str) -> AppError {
    AppError::invalid(
        ErrorCode::InvalidField,
        field,
        format!(
            "{what} cannot be part of a change request or a scheduled change; save it directly"
        ),
    )
}

/// Keys per (context kind, variation) of a flag's individual targets. User keys live in
/// `targets`; the user entries of `contextTargets` only order them (placeholders).
fn flag_targets(t: &Targeting) -> BTreeMap<(String, i64), BTreeSet<String>> {
    let mut out: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    for target in &t.targets {
        out.entry(("user".to_owned(), target.variation))
            .or_default()
            .extend(target.values.iter().cloned());
    }
    for target in &t.context_targets {
        let kind = target.context_kind.clone().unwrap_or_else(|| "user".into());
        if kind != "user" {
            out.entry((kind, target.variation))
                .or_default()
                .extend(target.values.iter().cloned());
        }
    }
    out
}

/// `add` and `remove` instructions for the difference of two keyed sets.
fn set_changes<K: Ord + Clone>(
    before: &BTreeMap<K, BTreeSet<String>>,
    after: &BTreeMap<K, BTreeSet<String>>,
    mut emit: impl FnMut(&K, bool, Vec<String>),
) {
    let empty = BTreeSet::new();
    let keys: BTreeSet<&K> = before.keys().chain(after.keys()).collect();
    // Every removal first: a key that moves from one variation to another is free to be added.
    for add in [false, true] {
        for key in &keys {
            let (b, a) = (
                before.get(*key).unwrap_or(&empty),
                after.get(*key).unwrap_or(&empty),
            );
            let (from, to) = if add { (a, b) } else { (b, a) };
            let values: Vec<String> = from.difference(to).cloned().collect();
            if !values.is_empty() {
                emit(key, add, values);
            }
        }
    }
}

fn serve(vr: &flagstaff_protocol::VariationOrRollout) -> Value {
    match (&vr.variation, &vr.rollout) {
        (_, Some(rollout)) => json!({"rollout": rollout}),
        (Some(v), None) => json!({"variation": v}),
        (None, None) => json!({}),
    }
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

/// The instructions that turn `before` into `after`.
pub fn targeting_instructions(before: &Targeting, after: &Targeting) -> Result<Vec<Value>> {
    if before.track_events != after.track_events {
        return Err(not_expressible("trackEvents", "event tracking"));
    }
    if before.track_events_fallthrough != after.track_events_fallthrough {
        return Err(not_expressible("trackEventsFallthrough", "event tracking"));
    }
    if !after.salt.is_empty() && before.salt != after.salt {
        return Err(not_expressible("salt", "a new salt"));
    }
    let mut out = Vec::new();
    if before.on != after.on {
        out.push(json!({"kind": if after.on { "turnFlagOn" } else { "turnFlagOff" }}));
    }
    set_changes(
        &flag_targets(before),
        &flag_targets(after),
        |(kind, variation), add, values| {
            out.push(
                json!({"kind": if add { "addTargets" } else { "removeTargets" },
                        "contextKind": kind, "variation": variation, "values": values}),
            );
        },
    );
    out.extend(rule_instructions(&before.rules, &after.rules));
    if before.fallthrough != after.fallthrough {
        out.push(with(
            json!({"kind": "updateFallthroughVariationOrRollout"}),
            serve(&after.fallthrough),
        ));
    }
    match (before.off_variation, after.off_variation) {
        (b, Some(a)) if b != Some(a) => {
            out.push(json!({"kind": "updateOffVariation", "variation": a}));
        }
        (Some(_), None) => {
            return Err(not_expressible(
                "offVariation",
                "removing the off variation",
            ));
        }
        _ => {}
    }
    let prerequisites = |t: &Targeting| -> BTreeMap<String, i64> {
        t.prerequisites
            .iter()
            .map(|p| (p.key.clone(), p.variation))
            .collect()
    };
    let (b, a) = (prerequisites(before), prerequisites(after));
    for key in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(json!({"kind": "removePrerequisite", "key": key}));
    }
    for (key, variation) in &a {
        match b.get(key) {
            None => {
                out.push(json!({"kind": "addPrerequisite", "key": key, "variation": variation}))
            }
            Some(v) if v != variation => {
                out.push(json!({"kind": "updatePrerequisite", "key": key, "variation": variation}));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Rules: removed ones go, a rule whose clauses or tracking changed is replaced under its id, one
/// whose result changed is re-served, new ones are added with their ids, then the order is set.
fn rule_instructions(before: &[FlagRule], after: &[FlagRule]) -> Vec<Value> {
    let mut out = Vec::new();
    let after: Vec<FlagRule> = after
        .iter()
        .cloned()
        .map(|mut r| {
            if r.id.is_empty() {
                r.id = random_hex(8);
            }
            r
        })
        .collect();
    let mut kept: Vec<String> = Vec::new();
    for rule in before {
        match after.iter().find(|r| r.id == rule.id) {
            None => out.push(json!({"kind": "removeRule", "ruleId": rule.id})),
            Some(new) if new.clauses != rule.clauses || new.track_events != rule.track_events => {
                out.push(json!({"kind": "removeRule", "ruleId": rule.id}));
            }
            Some(new) => {
                if new.variation_or_rollout != rule.variation_or_rollout {
                    out.push(with(
                        json!({"kind": "updateRuleVariationOrRollout", "ruleId": rule.id}),
                        serve(&new.variation_or_rollout),
                    ));
                }
                kept.push(rule.id.clone());
            }
        }
    }
    let mut order = kept.clone();
    for rule in after.iter().filter(|r| !kept.contains(&r.id)) {
        out.push(with(
            json!({"kind": "addRule", "ruleId": rule.id, "clauses": rule.clauses, "trackEvents": rule.track_events}),
            serve(&rule.variation_or_rollout),
        ));
        order.push(rule.id.clone());
    }
    let wanted: Vec<String> = after.iter().map(|r| r.id.clone()).collect();
    if order != wanted && !wanted.is_empty() {
        out.push(json!({"kind": "reorderRules", "ruleIds": wanted}));
    }
    out
}

fn segment_keys(
    users: &[String],
    contexts: &[flagstaff_protocol::SegmentTarget],
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if !users.is_empty() {
        out.entry("user".into())
            .or_default()
            .extend(users.iter().cloned());
    }
    for target in contexts {
        out.entry(target.context_kind.clone().unwrap_or_else(|| "user".into()))
            .or_default()
            .extend(target.values.iter().cloned());
    }
    out
}

/// The instructions that turn segment `before` into `after` (rules: removed, added with their
/// ids; their order does not decide membership).
pub fn segment_instructions(before: &Segment, after: &Segment) -> Result<Vec<Value>> {
    if !after.salt.is_empty() && before.salt != after.salt {
        return Err(not_expressible("salt", "a new salt"));
    }
    if before.unbounded != after.unbounded
        || before.unbounded_context_kind != after.unbounded_context_kind
        || before.generation != after.generation
    {
        return Err(not_expressible("unbounded", "big-segment settings"));
    }
    let mut out = Vec::new();
    for (included, kinds) in [
        (true, ["addIncludedTargets", "removeIncludedTargets"]),
        (false, ["addExcludedTargets", "removeExcludedTargets"]),
    ] {
        let (b, a) = if included {
            (
                segment_keys(&before.included, &before.included_contexts),
                segment_keys(&after.included, &after.included_contexts),
            )
        } else {
            (
                segment_keys(&before.excluded, &before.excluded_contexts),
                segment_keys(&after.excluded, &after.excluded_contexts),
            )
        };
        set_changes(&b, &a, |kind, add, values| {
            out.push(json!({"kind": if add { kinds[0] } else { kinds[1] }, "contextKind": kind, "values": values}));
        });
    }
    let same = |x: &SegmentRule, y: &SegmentRule| {
        x.clauses == y.clauses
            && x.weight == y.weight
            && x.bucket_by == y.bucket_by
            && x.rollout_context_kind == y.rollout_context_kind
    };
    for rule in &before.rules {
        if !after.rules.iter().any(|r| r.id == rule.id && same(r, rule)) {
            out.push(json!({"kind": "removeRule", "ruleId": rule.id}));
        }
    }
    for rule in &after.rules {
        if !before
            .rules
            .iter()
            .any(|r| r.id == rule.id && same(r, rule))
        {
            let id = if rule.id.is_empty() {
                random_hex(8)
            } else {
                rule.id.clone()
            };
            let mut instruction = json!({"kind": "addRule", "ruleId": id, "clauses": rule.clauses});
            for (name, value) in [
                ("weight", rule.weight.map(Value::from)),
                ("bucketBy", rule.bucket_by.clone().map(Value::from)),
                (
                    "rolloutContextKind",
                    rule.rollout_context_kind.clone().map(Value::from),
                ),
            ] {
                if let Some(value) = value {
                    instruction[name] = value;
                }
            }
            out.push(instruction);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "instruction_diff_tests.rs"]
mod tests;
