//! Semantic changes: instructions that say *what* to change in a flag's targeting or in a
//! segment ("turn the flag off", "add a rule before rule r2", "remove these targets"), in
//! LaunchDarkly's semantic-patch vocabulary (`{"kind": "turnFlagOff"}`, …), rather than a whole
//! new document. They still apply after someone else changed an unrelated part of the flag,
//! which is why scheduled changes and change requests (issue 19) store instructions; one that
//! can no longer apply (its rule was removed) fails with `409 instruction_conflict` naming it.
//!
//! Flagstaff's variations have no ids, so instructions name variations by index
//! (`"variation": 1`) where LaunchDarkly names them by `variationId`; a rollout is Flagstaff's
//! (and the SDKs') rollout object. Clauses have no ids either: `removeClauses` names the clauses
//! to remove by value. Everything else is LaunchDarkly's shape.
//!
//! This module is pure: it parses (errors name `instructions[i].<field>`) and applies to a
//! document in memory; the use cases then validate and write the result as any other change,
//! so the actions it takes are authorized exactly as a JSON Patch's would be.

use flagstaff_protocol::{Clause, FlagRule, Prerequisite, Rollout, Segment, SegmentRule, Target};
use flagstaff_protocol::{SegmentTarget, VariationOrRollout};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{AppError, ErrorCode, Result};
use crate::model::Targeting;
use crate::random_hex;
use crate::validate::codes;

/// One instruction about a flag's targeting in one environment.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum FlagInstruction {
    /// Targeting on.
    TurnFlagOn {},
    /// Targeting off (everyone gets the off variation).
    TurnFlagOff {},
    /// Serve `variation` to these keys of `contextKind` (default `user`).
    #[serde(rename_all = "camelCase")]
    AddTargets {
        /// The context kind (default `user`).
        #[serde(default)]
        context_kind: Option<String>,
        /// The variation index.
        variation: i64,
        /// The keys.
        values: Vec<String>,
    },
    /// Stop serving `variation` to these keys individually (absent keys are ignored).
    #[serde(rename_all = "camelCase")]
    RemoveTargets {
        /// The context kind (default `user`).
        #[serde(default)]
        context_kind: Option<String>,
        /// The variation index.
        variation: i64,
        /// The keys.
        values: Vec<String>,
    },
    /// A new rule, last or before `beforeRuleId`.
    #[serde(rename_all = "camelCase")]
    AddRule {
        /// Its clauses (all must match).
        clauses: Vec<Clause>,
        /// The variation it serves…
        #[serde(default)]
        variation: Option<i64>,
        /// …or the rollout.
        #[serde(default)]
        rollout: Option<Rollout>,
        /// Put it before this rule (default: last).
        #[serde(default)]
        before_rule_id: Option<String>,
        /// Send full events for its matches.
        #[serde(default)]
        track_events: bool,
        /// Its id (Flagstaff's addition, default: a new one): an edit turned into instructions
        /// keeps the ids that reasons and later instructions name.
        #[serde(default)]
        rule_id: Option<String>,
    },
    /// Remove a rule.
    #[serde(rename_all = "camelCase")]
    RemoveRule {
        /// The rule.
        rule_id: String,
    },
    /// What a rule serves.
    #[serde(rename_all = "camelCase")]
    UpdateRuleVariationOrRollout {
        /// The rule.
        rule_id: String,
        /// A variation…
        #[serde(default)]
        variation: Option<i64>,
        /// …or a rollout.
        #[serde(default)]
        rollout: Option<Rollout>,
    },
    /// More clauses in a rule.
    #[serde(rename_all = "camelCase")]
    AddClauses {
        /// The rule.
        rule_id: String,
        /// The clauses to add.
        clauses: Vec<Clause>,
    },
    /// Fewer clauses in a rule (named by value: each must be in the rule).
    #[serde(rename_all = "camelCase")]
    RemoveClauses {
        /// The rule.
        rule_id: String,
        /// The clauses to remove.
        clauses: Vec<Clause>,
    },
    /// The rules in this order (every rule id exactly once).
    #[serde(rename_all = "camelCase")]
    ReorderRules {
        /// The rule ids.
        rule_ids: Vec<String>,
    },
    /// What the default rule serves.
    #[serde(rename_all = "camelCase")]
    UpdateFallthroughVariationOrRollout {
        /// A variation…
        #[serde(default)]
        variation: Option<i64>,
        /// …or a rollout.
        #[serde(default)]
        rollout: Option<Rollout>,
    },
    /// What is served when targeting is off.
    #[serde(rename_all = "camelCase")]
    UpdateOffVariation {
        /// The variation index.
        variation: i64,
    },
    /// A prerequisite flag and the variation it must serve.
    #[serde(rename_all = "camelCase")]
    AddPrerequisite {
        /// The prerequisite flag.
        key: String,
        /// The variation index it must serve.
        variation: i64,
    },
    /// Change the variation a prerequisite must serve.
    #[serde(rename_all = "camelCase")]
    UpdatePrerequisite {
        /// The prerequisite flag.
        key: String,
        /// The variation index it must serve.
        variation: i64,
    },
    /// Remove a prerequisite.
    #[serde(rename_all = "camelCase")]
    RemovePrerequisite {
        /// The prerequisite flag.
        key: String,
    },
}

/// One instruction about a segment.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SegmentInstruction {
    /// Include these keys.
    #[serde(rename_all = "camelCase")]
    AddIncludedTargets {
        /// The context kind (default `user`).
        #[serde(default)]
        context_kind: Option<String>,
        /// The keys.
        values: Vec<String>,
    },
    /// Stop including these keys (absent keys are ignored).
    #[serde(rename_all = "camelCase")]
    RemoveIncludedTargets {
        /// The context kind (default `user`).
        #[serde(default)]
        context_kind: Option<String>,
        /// The keys.
        values: Vec<String>,
    },
    /// Exclude these keys.
    #[serde(rename_all = "camelCase")]
    AddExcludedTargets {
        /// The context kind (default `user`).
        #[serde(default)]
        context_kind: Option<String>,
        /// The keys.
        values: Vec<String>,
    },
    /// Stop excluding these keys (absent keys are ignored).
    #[serde(rename_all = "camelCase")]
    RemoveExcludedTargets {
        /// The context kind (default `user`).
        #[serde(default)]
        context_kind: Option<String>,
        /// The keys.
        values: Vec<String>,
    },
    /// A new rule, last or before `beforeRuleId`.
    #[serde(rename_all = "camelCase")]
    AddRule {
        /// Its clauses.
        clauses: Vec<Clause>,
        /// Only this share of matching contexts (0–100000), if given.
        #[serde(default)]
        weight: Option<i64>,
        /// The attribute that buckets for `weight`.
        #[serde(default)]
        bucket_by: Option<String>,
        /// The context kind that buckets for `weight`.
        #[serde(default)]
        rollout_context_kind: Option<String>,
        /// Put it before this rule (default: last).
        #[serde(default)]
        before_rule_id: Option<String>,
        /// Its id (default: a new one).
        #[serde(default)]
        rule_id: Option<String>,
    },
    /// Remove a rule.
    #[serde(rename_all = "camelCase")]
    RemoveRule {
        /// The rule.
        rule_id: String,
    },
}

/// Parses a list of instructions; errors name `instructions[i]` and the field inside.
///
/// On the wire an instruction is `{"kind": "addTargets", "variation": 0, …}`. It is read as
/// `{"addTargets": {"variation": 0, …}}` (serde's external tagging), so that a wrong field is
/// reported by its path (`instructions[2].variation`), which an internally tagged enum cannot.
fn parse<T: serde::de::DeserializeOwned>(instructions: &[Value]) -> Result<Vec<T>> {
    if instructions.is_empty() {
        return Err(AppError::invalid(
            codes::INVALID_FIELD,
            "instructions",
            "a semantic patch needs at least one instruction",
        ));
    }
    instructions
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let invalid = |field: String, message: String| {
                AppError::invalid(codes::INVALID_FIELD, field, message)
            };
            let Some(fields) = value.as_object() else {
                return Err(invalid(format!("instructions[{i}]"), "an instruction is an object".into()));
            };
            let Some(kind) = fields.get("kind").and_then(Value::as_str) else {
                return Err(invalid(
                    format!("instructions[{i}].kind"),
                    "every instruction names its kind (e.g. \"turnFlagOff\")".into(),
                ));
            };
            let mut rest = fields.clone();
            rest.remove("kind");
            let tagged = Value::Object(serde_json::Map::from_iter([(
                kind.to_owned(),
                Value::Object(rest),
            )]));
            serde_path_to_error::deserialize(&tagged).map_err(|e| {
                // The path starts with the kind (the variant); the field is what follows.
                let path = e.path().to_string();
                let inner = path.split_once('.').map(|(_, rest)| rest);
                let field = match inner {
                    Some(rest) if !rest.is_empty() => format!("instructions[{i}].{rest}"),
                    _ if e.inner().to_string().contains("unknown variant") => {
                        format!("instructions[{i}].kind")
                    }
                    _ => format!("instructions[{i}]"),
                };
                let mut message = e.into_inner().to_string();
                if message.contains("`variationId`") {
                    message.push_str(
                        "; Flagstaff's variations have no ids: name them by index (\"variation\": 0)",
                    );
                }
                invalid(field, message)
            })
        })
        .collect()
}

/// Parses flag instructions.
pub fn parse_flag_instructions(instructions: &[Value]) -> Result<Vec<FlagInstruction>> {
    parse(instructions)
}

/// Parses segment instructions.
pub fn parse_segment_instructions(instructions: &[Value]) -> Result<Vec<SegmentInstruction>> {
    parse(instructions)
}

/// An instruction that cannot apply to the document as it is now.
fn conflict(index: usize, message: impl Into<String>) -> AppError {
    AppError::invalid(
        ErrorCode::InstructionConflict,
        format!("instructions[{index}]"),
        message,
    )
}

/// A variation or a rollout, exactly one.
fn serve(
    index: usize,
    variation: Option<i64>,
    rollout: Option<Rollout>,
) -> Result<VariationOrRollout> {
    match (variation, rollout) {
        (Some(variation), None) => Ok(VariationOrRollout {
            variation: Some(variation),
            rollout: None,
        }),
        (None, Some(rollout)) => Ok(VariationOrRollout {
            variation: None,
            rollout: Some(rollout),
        }),
        _ => Err(AppError::invalid(
            codes::INVALID_FIELD,
            format!("instructions[{index}]"),
            "give exactly one of variation and rollout",
        )),
    }
}

/// The id of a rule an instruction adds: the one it names (unless a rule has it already, or it
/// is not a key), or a new one.
fn new_rule_id<'a>(
    index: usize,
    named: Option<String>,
    mut existing: impl Iterator<Item = &'a String>,
) -> Result<String> {
    match named {
        None => Ok(random_hex(8)),
        Some(id)
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            Err(AppError::invalid(
                codes::INVALID_FIELD,
                format!("instructions[{index}].ruleId"),
                "a rule id is 1 to 64 letters, digits, '-', '_' or '.'",
            ))
        }
        Some(id) if existing.any(|e| *e == id) => {
            Err(conflict(index, format!("there is a rule {id:?} already")))
        }
        Some(id) => Ok(id),
    }
}

fn is_user(kind: Option<&str>) -> bool {
    kind.is_none_or(|k| k == "user")
}

fn rule_position(rules: &[FlagRule], id: &str) -> Option<usize> {
    rules.iter().position(|r| r.id == id)
}

/// Before a first non-user target goes into `contextTargets`, every existing user target gets
/// its placeholder there (`{"contextKind": "user", "variation": v, "values": []}`): once
/// `contextTargets` is not empty, evaluation walks it in order and finds user targets only
/// through such placeholders (`ld-protocol.md` §3.3), as LaunchDarkly writes them.
fn ensure_user_placeholders(targeting: &mut Targeting) {
    for target in &targeting.targets {
        let present = targeting
            .context_targets
            .iter()
            .any(|t| is_user(t.context_kind.as_deref()) && t.variation == target.variation);
        if !present {
            targeting.context_targets.push(Target {
                context_kind: Some("user".into()),
                values: Vec::new(),
                variation: target.variation,
            });
        }
    }
}

fn add_targets(targeting: &mut Targeting, kind: Option<&str>, variation: i64, values: &[String]) {
    if !is_user(kind) {
        ensure_user_placeholders(targeting);
    }
    let list = if is_user(kind) {
        &mut targeting.targets
    } else {
        &mut targeting.context_targets
    };
    let position = list.iter().position(|t| {
        t.variation == variation && (is_user(kind) || t.context_kind.as_deref() == kind)
    });
    let target = match position {
        Some(i) => &mut list[i],
        None => {
            list.push(Target {
                context_kind: if is_user(kind) {
                    None
                } else {
                    kind.map(str::to_owned)
                },
                values: Vec::new(),
                variation,
            });
            let last = list.len() - 1;
            &mut list[last]
        }
    };
    for value in values {
        if !target.values.contains(value) {
            target.values.push(value.clone());
        }
    }
    // A user target with a placeholder already in `contextTargets` needs no more; a new one
    // needs its placeholder when `contextTargets` is in use.
    if is_user(kind) && !targeting.context_targets.is_empty() {
        ensure_user_placeholders(targeting);
    }
}

fn remove_targets(
    targeting: &mut Targeting,
    kind: Option<&str>,
    variation: i64,
    values: &[String],
) {
    let list = if is_user(kind) {
        &mut targeting.targets
    } else {
        &mut targeting.context_targets
    };
    for target in list.iter_mut().filter(|t| {
        t.variation == variation && (is_user(kind) || t.context_kind.as_deref() == kind)
    }) {
        target.values.retain(|v| !values.contains(v));
    }
    list.retain(|t| !t.values.is_empty() || (!is_user(kind) && is_user(t.context_kind.as_deref())));
    if is_user(kind) {
        // Placeholders of user targets that are gone go too.
        let remaining: Vec<i64> = targeting.targets.iter().map(|t| t.variation).collect();
        targeting.context_targets.retain(|t| {
            !(is_user(t.context_kind.as_deref()) && t.values.is_empty())
                || remaining.contains(&t.variation)
        });
    }
}

/// Applies flag instructions in order to `targeting` (all or nothing: on error the caller
/// discards the copy it passed).
pub fn apply_to_targeting(
    targeting: &mut Targeting,
    instructions: &[FlagInstruction],
) -> Result<()> {
    for (i, instruction) in instructions.iter().enumerate() {
        match instruction.clone() {
            FlagInstruction::TurnFlagOn {} => targeting.on = true,
            FlagInstruction::TurnFlagOff {} => targeting.on = false,
            FlagInstruction::AddTargets {
                context_kind,
                variation,
                values,
            } => add_targets(targeting, context_kind.as_deref(), variation, &values),
            FlagInstruction::RemoveTargets {
                context_kind,
                variation,
                values,
            } => remove_targets(targeting, context_kind.as_deref(), variation, &values),
            FlagInstruction::AddRule {
                clauses,
                variation,
                rollout,
                before_rule_id,
                track_events,
                rule_id,
            } => {
                let id = new_rule_id(i, rule_id, targeting.rules.iter().map(|r| &r.id))?;
                let rule = FlagRule {
                    variation_or_rollout: serve(i, variation, rollout)?,
                    id,
                    clauses,
                    track_events,
                };
                let at = match &before_rule_id {
                    Some(id) => rule_position(&targeting.rules, id).ok_or_else(|| {
                        conflict(i, format!("there is no rule {id:?} to add before"))
                    })?,
                    None => targeting.rules.len(),
                };
                targeting.rules.insert(at, rule);
            }
            FlagInstruction::RemoveRule { rule_id } => {
                let at = rule_position(&targeting.rules, &rule_id).ok_or_else(|| {
                    conflict(
                        i,
                        format!("there is no rule {rule_id:?} (removed meanwhile?)"),
                    )
                })?;
                targeting.rules.remove(at);
            }
            FlagInstruction::UpdateRuleVariationOrRollout {
                rule_id,
                variation,
                rollout,
            } => {
                let at = rule_position(&targeting.rules, &rule_id).ok_or_else(|| {
                    conflict(
                        i,
                        format!("there is no rule {rule_id:?} (removed meanwhile?)"),
                    )
                })?;
                targeting.rules[at].variation_or_rollout = serve(i, variation, rollout)?;
            }
            FlagInstruction::AddClauses { rule_id, clauses } => {
                let at = rule_position(&targeting.rules, &rule_id).ok_or_else(|| {
                    conflict(
                        i,
                        format!("there is no rule {rule_id:?} (removed meanwhile?)"),
                    )
                })?;
                targeting.rules[at].clauses.extend(clauses);
            }
            FlagInstruction::RemoveClauses { rule_id, clauses } => {
                let at = rule_position(&targeting.rules, &rule_id).ok_or_else(|| {
                    conflict(
                        i,
                        format!("there is no rule {rule_id:?} (removed meanwhile?)"),
                    )
                })?;
                let rule = &mut targeting.rules[at];
                for clause in &clauses {
                    let found = rule
                        .clauses
                        .iter()
                        .position(|c| c == clause)
                        .ok_or_else(|| {
                            conflict(
                                i,
                                format!("rule {rule_id:?} has no such clause (changed meanwhile?)"),
                            )
                        })?;
                    rule.clauses.remove(found);
                }
            }
            FlagInstruction::ReorderRules { rule_ids } => {
                let mut sorted_now: Vec<&str> =
                    targeting.rules.iter().map(|r| r.id.as_str()).collect();
                let mut sorted_asked: Vec<&str> = rule_ids.iter().map(String::as_str).collect();
                sorted_now.sort_unstable();
                sorted_asked.sort_unstable();
                if sorted_now != sorted_asked {
                    return Err(conflict(
                        i,
                        "ruleIds must name every rule exactly once (the rules changed meanwhile?)",
                    ));
                }
                let mut rules = std::mem::take(&mut targeting.rules);
                for id in &rule_ids {
                    if let Some(at) = rule_position(&rules, id) {
                        targeting.rules.push(rules.remove(at));
                    }
                }
            }
            FlagInstruction::UpdateFallthroughVariationOrRollout { variation, rollout } => {
                targeting.fallthrough = serve(i, variation, rollout)?;
            }
            FlagInstruction::UpdateOffVariation { variation } => {
                targeting.off_variation = Some(variation);
            }
            FlagInstruction::AddPrerequisite { key, variation } => {
                if targeting.prerequisites.iter().any(|p| p.key == key) {
                    return Err(conflict(
                        i,
                        format!("{key:?} is already a prerequisite (use updatePrerequisite)"),
                    ));
                }
                targeting
                    .prerequisites
                    .push(Prerequisite { key, variation });
            }
            FlagInstruction::UpdatePrerequisite { key, variation } => {
                let prerequisite = targeting
                    .prerequisites
                    .iter_mut()
                    .find(|p| p.key == key)
                    .ok_or_else(|| conflict(i, format!("{key:?} is not a prerequisite")))?;
                prerequisite.variation = variation;
            }
            FlagInstruction::RemovePrerequisite { key } => {
                let before = targeting.prerequisites.len();
                targeting.prerequisites.retain(|p| p.key != key);
                if targeting.prerequisites.len() == before {
                    return Err(conflict(i, format!("{key:?} is not a prerequisite")));
                }
            }
        }
    }
    Ok(())
}

fn segment_keys<'s>(
    segment: &'s mut Segment,
    included: bool,
    kind: Option<&str>,
) -> &'s mut Vec<String> {
    if is_user(kind) {
        return if included {
            &mut segment.included
        } else {
            &mut segment.excluded
        };
    }
    let list = if included {
        &mut segment.included_contexts
    } else {
        &mut segment.excluded_contexts
    };
    let at = match list.iter().position(|t| t.context_kind.as_deref() == kind) {
        Some(at) => at,
        None => {
            list.push(SegmentTarget {
                context_kind: kind.map(str::to_owned),
                values: Vec::new(),
            });
            list.len() - 1
        }
    };
    &mut list[at].values
}

fn tidy(segment: &mut Segment) {
    segment.included_contexts.retain(|t| !t.values.is_empty());
    segment.excluded_contexts.retain(|t| !t.values.is_empty());
}

/// Applies segment instructions in order (all or nothing, as for flags).
pub fn apply_to_segment(segment: &mut Segment, instructions: &[SegmentInstruction]) -> Result<()> {
    for (i, instruction) in instructions.iter().enumerate() {
        match instruction.clone() {
            SegmentInstruction::AddIncludedTargets {
                context_kind,
                values,
            }
            | SegmentInstruction::AddExcludedTargets {
                context_kind,
                values,
            } => {
                let included = matches!(instruction, SegmentInstruction::AddIncludedTargets { .. });
                let keys = segment_keys(segment, included, context_kind.as_deref());
                for value in values {
                    if !keys.contains(&value) {
                        keys.push(value);
                    }
                }
            }
            SegmentInstruction::RemoveIncludedTargets {
                context_kind,
                values,
            }
            | SegmentInstruction::RemoveExcludedTargets {
                context_kind,
                values,
            } => {
                let included = matches!(
                    instruction,
                    SegmentInstruction::RemoveIncludedTargets { .. }
                );
                segment_keys(segment, included, context_kind.as_deref())
                    .retain(|v| !values.contains(v));
                tidy(segment);
            }
            SegmentInstruction::AddRule {
                clauses,
                weight,
                bucket_by,
                rollout_context_kind,
                before_rule_id,
                rule_id,
            } => {
                let id = new_rule_id(i, rule_id, segment.rules.iter().map(|r| &r.id))?;
                let rule = SegmentRule {
                    id,
                    clauses,
                    weight,
                    bucket_by,
                    rollout_context_kind,
                };
                let at = match &before_rule_id {
                    Some(id) => {
                        segment
                            .rules
                            .iter()
                            .position(|r| r.id == *id)
                            .ok_or_else(|| {
                                conflict(i, format!("there is no rule {id:?} to add before"))
                            })?
                    }
                    None => segment.rules.len(),
                };
                segment.rules.insert(at, rule);
            }
            SegmentInstruction::RemoveRule { rule_id } => {
                let at = segment
                    .rules
                    .iter()
                    .position(|r| r.id == rule_id)
                    .ok_or_else(|| {
                        conflict(
                            i,
                            format!("there is no rule {rule_id:?} (removed meanwhile?)"),
                        )
                    })?;
                segment.rules.remove(at);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "instructions_tests.rs"]
mod tests;
