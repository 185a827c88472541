//! Write-time validation: reject what cannot be evaluated, naming the field.
//!
//! LaunchDarkly's evaluators accept nearly anything and report `MALFORMED_FLAG` at evaluation
//! time. We refuse such data when it is written instead, with a stable code and the JSON path of
//! the offending field (`rules[2].clauses[0].op`), so that a person fixes it before any SDK sees
//! it. Where the SDKs disagree (`ld-protocol.md` §3.11) we also refuse the shapes that make them
//! disagree: `seed: 0`, non-scalar `in` values, user keys in `contextTargets`.

use std::collections::{HashMap, HashSet};

use flagstaff_eval::values;
use flagstaff_protocol::{AttrRef, Clause, Kind, MIGRATION_STAGES, Segment, VariationOrRollout};
use serde_json::Value;

use crate::error::{AppError, ErrorCode, Result};
use crate::model::{FlagDefinition, FlagKind, Targeting, Variation};

/// The validation codes, as constants (each an [`ErrorCode`]; the table is in `error.rs`).
pub mod codes {
    use crate::error::ErrorCode;

    /// `invalid_key`.
    pub const INVALID_KEY: ErrorCode = ErrorCode::InvalidKey;
    /// `invalid_field`.
    pub const INVALID_FIELD: ErrorCode = ErrorCode::InvalidField;
    /// `invalid_variations`.
    pub const INVALID_VARIATIONS: ErrorCode = ErrorCode::InvalidVariations;
    /// `variation_out_of_range`.
    pub const VARIATION_OUT_OF_RANGE: ErrorCode = ErrorCode::VariationOutOfRange;
    /// `missing_variation`.
    pub const MISSING_VARIATION: ErrorCode = ErrorCode::MissingVariation;
    /// `invalid_rollout`.
    pub const INVALID_ROLLOUT: ErrorCode = ErrorCode::InvalidRollout;
    /// `unknown_operator`.
    pub const UNKNOWN_OPERATOR: ErrorCode = ErrorCode::UnknownOperator;
    /// `invalid_attribute_reference`.
    pub const INVALID_ATTRIBUTE_REFERENCE: ErrorCode = ErrorCode::InvalidAttributeReference;
    /// `invalid_clause_values`.
    pub const INVALID_CLAUSE_VALUES: ErrorCode = ErrorCode::InvalidClauseValues;
    /// `invalid_regex`.
    pub const INVALID_REGEX: ErrorCode = ErrorCode::InvalidRegex;
    /// `invalid_context_kind`.
    pub const INVALID_CONTEXT_KIND: ErrorCode = ErrorCode::InvalidContextKind;
    /// `invalid_target`.
    pub const INVALID_TARGET: ErrorCode = ErrorCode::InvalidTarget;
    /// `unknown_segment`.
    pub const UNKNOWN_SEGMENT: ErrorCode = ErrorCode::UnknownSegment;
    /// `segment_cycle`.
    pub const SEGMENT_CYCLE: ErrorCode = ErrorCode::SegmentCycle;
    /// `unknown_prerequisite`.
    pub const UNKNOWN_PREREQUISITE: ErrorCode = ErrorCode::UnknownPrerequisite;
    /// `prerequisite_cycle`.
    pub const PREREQUISITE_CYCLE: ErrorCode = ErrorCode::PrerequisiteCycle;
    /// `secure_mode_needs_rotation`.
    pub const SECURE_MODE_NEEDS_ROTATION: ErrorCode = ErrorCode::SecureModeNeedsRotation;

    /// Every validation code. The use-case tests produce each one.
    pub const ALL: &[ErrorCode] = &[
        INVALID_KEY,
        INVALID_FIELD,
        INVALID_VARIATIONS,
        VARIATION_OUT_OF_RANGE,
        MISSING_VARIATION,
        INVALID_ROLLOUT,
        UNKNOWN_OPERATOR,
        INVALID_ATTRIBUTE_REFERENCE,
        INVALID_CLAUSE_VALUES,
        INVALID_REGEX,
        INVALID_CONTEXT_KIND,
        INVALID_TARGET,
        UNKNOWN_SEGMENT,
        SEGMENT_CYCLE,
        UNKNOWN_PREREQUISITE,
        PREREQUISITE_CYCLE,
        SECURE_MODE_NEEDS_ROTATION,
    ];
}

/// Longest key accepted.
const MAX_KEY_LEN: usize = 256;

/// Checks a project, environment, flag or segment key.
pub fn key(field: &str, key: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(AppError::invalid(
            codes::INVALID_KEY,
            field,
            format!(
                "{} is not a valid key: 1 to {MAX_KEY_LEN} letters, digits, '.', '_' or '-'",
                excerpt(key)
            ),
        ))
    }
}

/// Longest excerpt of a refused input an error message repeats.
const EXCERPT_CHARS: usize = 40;

/// Refused input as an error repeats it: quoted, at most [`EXCERPT_CHARS`] characters, so that
/// a 5,000-character paste is not echoed back whole.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{:?}…", &text[..at]),
        None => format!("{text:?}"),
    }
}

/// Longest name (of a project or environment) accepted.
const MAX_NAME_CHARS: usize = 200;
/// Descriptions are for a paragraph or two.
const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// Checks a display name: not blank, at most [`MAX_NAME_CHARS`] characters.
pub fn name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(invalid(codes::INVALID_FIELD, field, "a name is needed"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            codes::INVALID_FIELD,
            field,
            format!("a name has at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks a colour, `#rrggbb` (what `<input type="color">` sends), and returns it in lower case.
pub fn color(field: &str, color: &str) -> Result<String> {
    let valid = color.len() == 7
        && color.starts_with('#')
        && color[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(color.to_ascii_lowercase())
    } else {
        Err(invalid(
            codes::INVALID_FIELD,
            field,
            format!("{} is not a colour: write it as #rrggbb", excerpt(color)),
        ))
    }
}

fn invalid(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> AppError {
    AppError::invalid(code, field, message)
}

/// Checks a definition, filling in the variations of a boolean flag that omits them.
pub fn definition(definition: &mut FlagDefinition) -> Result<()> {
    key("key", &definition.key)?;
    if definition.name.trim().is_empty() {
        return Err(invalid(codes::INVALID_FIELD, "name", "a flag needs a name"));
    }
    match definition.kind {
        FlagKind::Boolean => {
            if definition.variations.is_empty() {
                definition.variations = vec![
                    Variation {
                        value: Value::Bool(true),
                        name: None,
                        description: None,
                    },
                    Variation {
                        value: Value::Bool(false),
                        name: None,
                        description: None,
                    },
                ];
            }
            let mut values: Vec<_> = definition
                .variations
                .iter()
                .map(|v| v.value.clone())
                .collect();
            values.sort_by_key(|v| v.as_bool());
            if values != [Value::Bool(false), Value::Bool(true)] {
                return Err(invalid(
                    codes::INVALID_VARIATIONS,
                    "variations",
                    "a boolean flag has exactly the variations true and false",
                ));
            }
        }
        FlagKind::Multivariate => {
            if definition.variations.len() < 2 {
                return Err(invalid(
                    codes::INVALID_VARIATIONS,
                    "variations",
                    "a multivariate flag needs at least two variations",
                ));
            }
        }
        FlagKind::Migration => migration(definition)?,
    }
    if definition.kind != FlagKind::Migration && definition.migration.is_some() {
        return Err(invalid(
            codes::INVALID_FIELD,
            "migration",
            "only a migration flag (kind \"migration\") has migration settings",
        ));
    }
    for (i, variation) in definition.variations.iter().enumerate() {
        if definition.variations[..i]
            .iter()
            .any(|earlier| earlier.value == variation.value)
        {
            return Err(invalid(
                codes::INVALID_VARIATIONS,
                format!("variations[{i}].value"),
                "two variations have the same value",
            ));
        }
    }
    for (i, tag) in definition.tags.iter().enumerate() {
        if tag.trim().is_empty() || tag.len() > 64 {
            return Err(invalid(
                codes::INVALID_FIELD,
                format!("tags[{i}]"),
                "tags are 1 to 64 characters",
            ));
        }
    }
    Ok(())
}

/// What each migration stage does, in the words of the dashboard: the variations' names and
/// descriptions of a new migration flag, in the order of [`MIGRATION_STAGES`].
const MIGRATION_STAGE_TEXTS: [(&str, &str); 6] = [
    ("Off", "Reads and writes go to the old system only."),
    (
        "Dual write",
        "Writes go to both systems, the old one authoritative; reads go to the old one.",
    ),
    (
        "Shadow",
        "Reads and writes go to both systems; the old one is authoritative and reads are compared.",
    ),
    (
        "Live",
        "Reads and writes go to both systems; the new one is authoritative and reads are compared.",
    ),
    (
        "Ramp down",
        "Reads go to the new system only; writes go to both, the new one authoritative.",
    ),
    ("Complete", "Reads and writes go to the new system only."),
];

/// Checks a migration flag: its variations are the six stages in order (a new flag gets them
/// with names and descriptions; names and descriptions may change, values and order may not,
/// as SDK migrators understand only these strings), it has migration settings, and it is for
/// server-side SDKs only, as only they have migrators.
fn migration(definition: &mut FlagDefinition) -> Result<()> {
    if definition.variations.is_empty() {
        definition.variations = MIGRATION_STAGES
            .iter()
            .zip(MIGRATION_STAGE_TEXTS)
            .map(|(stage, (name, description))| Variation {
                value: Value::from(*stage),
                name: Some(name.to_owned()),
                description: Some(description.to_owned()),
            })
            .collect();
    }
    let values: Vec<Option<&str>> = definition
        .variations
        .iter()
        .map(|v| v.value.as_str())
        .collect();
    let stages: Vec<Option<&str>> = MIGRATION_STAGES.iter().copied().map(Some).collect();
    if values != stages {
        return Err(invalid(
            codes::INVALID_VARIATIONS,
            "variations",
            format!(
                "a migration flag's variations are its six stages, in order: {}; leave \
                 variations out to get them",
                MIGRATION_STAGES.join(", ")
            ),
        ));
    }
    let settings = definition.migration.get_or_insert_with(Default::default);
    if !(0..=1_000_000).contains(&settings.check_ratio) {
        return Err(invalid(
            codes::INVALID_FIELD,
            "migration.checkRatio",
            "the check ratio is 0 (never compare reads) or 1 in N operations, N up to 1,000,000",
        ));
    }
    let availability = definition.client_side_availability;
    if availability.using_environment_id || availability.using_mobile_key {
        return Err(invalid(
            codes::INVALID_FIELD,
            "clientSideAvailability",
            "a migration flag is for server-side SDKs only (browser and mobile SDKs have no \
             migrators)",
        ));
    }
    Ok(())
}

/// What targeting validation needs to know about the rest of the environment.
#[derive(Debug, Default)]
pub struct Neighbourhood {
    /// For every flag of the project: its number of variations.
    pub variations: HashMap<String, usize>,
    /// For every flag of the environment: the keys of its prerequisites.
    pub prerequisites: HashMap<String, Vec<String>>,
    /// For every segment of the environment: the segments its rules reference.
    pub segments: HashMap<String, Vec<String>>,
}

fn variation_index(field: &str, index: i64, variations: usize) -> Result<()> {
    if usize::try_from(index).is_ok_and(|i| i < variations) {
        Ok(())
    } else {
        Err(invalid(
            codes::VARIATION_OUT_OF_RANGE,
            field,
            format!(
                "variation {index} does not exist: the flag has {variations} variations (0 to {})",
                variations.saturating_sub(1)
            ),
        ))
    }
}

pub(crate) fn context_kind(field: &str, kind: Option<&str>) -> Result<()> {
    match kind {
        Some(kind) => Kind::new(kind)
            .map(|_| ())
            .map_err(|e| invalid(codes::INVALID_CONTEXT_KIND, field, e.message)),
        None => Ok(()),
    }
}

fn attribute_reference(field: &str, attribute: &str, has_context_kind: bool) -> Result<()> {
    let reference = if has_context_kind {
        AttrRef::new(attribute)
    } else {
        AttrRef::literal(attribute)
    };
    match reference.error() {
        None => Ok(()),
        Some(e) => Err(invalid(
            codes::INVALID_ATTRIBUTE_REFERENCE,
            field,
            format!("{attribute:?}: {e}"),
        )),
    }
}

fn variation_or_rollout(field: &str, vr: &VariationOrRollout, variations: usize) -> Result<()> {
    match (vr.variation, &vr.rollout) {
        (Some(index), None) => variation_index(&format!("{field}.variation"), index, variations),
        (None, Some(rollout)) => {
            let field = format!("{field}.rollout");
            if rollout.variations.is_empty() {
                return Err(invalid(
                    codes::INVALID_ROLLOUT,
                    format!("{field}.variations"),
                    "a rollout needs at least one bucket",
                ));
            }
            let mut total = 0i64;
            for (i, bucket) in rollout.variations.iter().enumerate() {
                variation_index(
                    &format!("{field}.variations[{i}].variation"),
                    bucket.variation,
                    variations,
                )?;
                if !(0..=100_000).contains(&bucket.weight) {
                    return Err(invalid(
                        codes::INVALID_ROLLOUT,
                        format!("{field}.variations[{i}].weight"),
                        "weights are 0 to 100000 (thousandths of a percent)",
                    ));
                }
                total += bucket.weight;
            }
            if total != 100_000 {
                return Err(invalid(
                    codes::INVALID_ROLLOUT,
                    format!("{field}.variations"),
                    format!("weights add up to {total}, not 100000 (100%)"),
                ));
            }
            if rollout.seed == Some(0) {
                // The JavaScript SDKs ignore a zero seed and would bucket differently (§3.8.2).
                return Err(invalid(
                    codes::INVALID_ROLLOUT,
                    format!("{field}.seed"),
                    "seed 0 is treated as no seed by some SDKs; use another value",
                ));
            }
            context_kind(
                &format!("{field}.contextKind"),
                rollout.context_kind.as_deref(),
            )?;
            if let Some(bucket_by) = rollout.bucket_by.as_deref() {
                attribute_reference(
                    &format!("{field}.bucketBy"),
                    bucket_by,
                    rollout.context_kind.is_some(),
                )?;
            }
            Ok(())
        }
        (Some(_), Some(_)) => Err(invalid(
            codes::MISSING_VARIATION,
            field,
            "serve either a variation or a rollout, not both",
        )),
        (None, None) => Err(invalid(
            codes::MISSING_VARIATION,
            field,
            "serve a variation or a rollout",
        )),
    }
}

/// Checks one clause; `segments` are the segment keys that exist.
fn clause(field: &str, clause: &Clause, segments: &HashMap<String, Vec<String>>) -> Result<()> {
    let op = clause.op.as_str();
    if !values::OPERATORS.contains(&op) {
        return Err(invalid(
            codes::UNKNOWN_OPERATOR,
            format!("{field}.op"),
            format!(
                "unknown operator {op:?}; known: {}",
                values::OPERATORS.join(", ")
            ),
        ));
    }
    let values_field = format!("{field}.values");
    if clause.values.is_empty() {
        return Err(invalid(
            codes::INVALID_CLAUSE_VALUES,
            values_field,
            "a clause needs at least one value",
        ));
    }
    if op == "segmentMatch" {
        for (i, value) in clause.values.iter().enumerate() {
            let Some(key) = value.as_str() else {
                return Err(invalid(
                    codes::INVALID_CLAUSE_VALUES,
                    format!("{values_field}[{i}]"),
                    "segmentMatch values are segment keys",
                ));
            };
            if !segments.contains_key(key) {
                return Err(invalid(
                    codes::UNKNOWN_SEGMENT,
                    format!("{values_field}[{i}]"),
                    format!("no segment {key:?} in this environment"),
                ));
            }
        }
        return Ok(());
    }
    context_kind(
        &format!("{field}.contextKind"),
        clause.context_kind.as_deref(),
    )?;
    if clause.attribute.is_empty() {
        return Err(invalid(
            codes::INVALID_ATTRIBUTE_REFERENCE,
            format!("{field}.attribute"),
            "a clause needs an attribute",
        ));
    }
    attribute_reference(
        &format!("{field}.attribute"),
        &clause.attribute,
        clause.context_kind.is_some(),
    )?;
    for (i, value) in clause.values.iter().enumerate() {
        let value_field = format!("{values_field}[{i}]");
        let bad = |expected: &str| {
            Err(invalid(
                codes::INVALID_CLAUSE_VALUES,
                value_field.clone(),
                format!("{op} compares with {expected}"),
            ))
        };
        match op {
            "in" if !(value.is_string() || value.is_number() || value.is_boolean()) => {
                return bad("strings, numbers or booleans");
            }
            "startsWith" | "endsWith" | "contains" if !value.is_string() => return bad("strings"),
            "matches" => match value.as_str() {
                None => return bad("regular expressions"),
                Some(pattern) => {
                    if let Some(error) = values::regex_error(pattern) {
                        return Err(invalid(codes::INVALID_REGEX, value_field, error));
                    }
                }
            },
            "lessThan" | "lessThanOrEqual" | "greaterThan" | "greaterThanOrEqual"
                if !value.is_number() =>
            {
                return bad("numbers");
            }
            "before" | "after" if !values::is_timestamp(value) => {
                return bad("Unix milliseconds or RFC 3339 date-times with a zone");
            }
            "semVerEqual" | "semVerLessThan" | "semVerGreaterThan"
                if !value.as_str().is_some_and(values::is_semver) =>
            {
                return bad("semantic versions");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether following `edges` from `start` comes back to `start`.
/// Whether `target` can be reached from `from` along `edges` (`from` itself counts).
fn leads_to(from: &str, target: &str, edges: &HashMap<String, Vec<String>>) -> bool {
    let mut stack = vec![from];
    let mut seen = HashSet::new();
    while let Some(next) = stack.pop() {
        if next == target {
            return true;
        }
        if seen.insert(next) {
            stack.extend(edges.get(next).into_iter().flatten().map(String::as_str));
        }
    }
    false
}

fn reaches_itself(start: &str, edges: &HashMap<String, Vec<String>>) -> bool {
    let mut stack: Vec<&str> = edges
        .get(start)
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    while let Some(next) = stack.pop() {
        if next == start {
            return true;
        }
        if seen.insert(next) {
            stack.extend(edges.get(next).into_iter().flatten().map(String::as_str));
        }
    }
    false
}

/// The most `matches` values one flag's targeting (or one segment) may hold.
pub const MAX_REGEXES: usize = 100;
/// The most bytes of `matches` patterns one flag's targeting (or one segment) may hold.
pub const MAX_REGEX_BYTES: usize = 16 * 1024;

/// What `matches` clauses have used of their budget so far. Every pattern is compiled whenever
/// the flag is (on each change, in every server and SDK), so one flag must not be able to make
/// every compile slow.
#[derive(Default)]
struct RegexBudget {
    count: usize,
    bytes: usize,
}

impl RegexBudget {
    fn spend(&mut self, field: &str, clause: &Clause) -> Result<()> {
        if clause.op != "matches" {
            return Ok(());
        }
        for (k, value) in clause.values.iter().enumerate() {
            self.count += 1;
            self.bytes += value.as_str().map_or(0, str::len);
            if self.count > MAX_REGEXES || self.bytes > MAX_REGEX_BYTES {
                return Err(invalid(
                    codes::INVALID_REGEX,
                    format!("{field}.values[{k}]"),
                    format!(
                        "a flag or segment holds at most {MAX_REGEXES} regular expressions of \
                         {MAX_REGEX_BYTES} bytes in all"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Checks a flag's targeting for one environment, as it would be after the write.
pub fn targeting(
    flag_key: &str,
    targeting: &Targeting,
    neighbourhood: &Neighbourhood,
) -> Result<()> {
    let variations = neighbourhood.variations.get(flag_key).copied().unwrap_or(0);
    if let Some(off) = targeting.off_variation {
        variation_index("offVariation", off, variations)?;
    }
    variation_or_rollout("fallthrough", &targeting.fallthrough, variations)?;
    for (i, target) in targeting.targets.iter().enumerate() {
        variation_index(
            &format!("targets[{i}].variation"),
            target.variation,
            variations,
        )?;
        if target
            .context_kind
            .as_deref()
            .is_some_and(|k| k != Kind::USER)
        {
            return Err(invalid(
                codes::INVALID_TARGET,
                format!("targets[{i}].contextKind"),
                "targets holds user keys; put other kinds in contextTargets",
            ));
        }
    }
    for (i, target) in targeting.context_targets.iter().enumerate() {
        let field = format!("contextTargets[{i}]");
        variation_index(&format!("{field}.variation"), target.variation, variations)?;
        context_kind(
            &format!("{field}.contextKind"),
            target.context_kind.as_deref(),
        )?;
        // Go and JavaScript SDKs read user-kind entries differently unless they are empty
        // placeholders (§3.4), so user keys belong in `targets`.
        if target.context_kind.as_deref().unwrap_or(Kind::USER) == Kind::USER
            && !target.values.is_empty()
        {
            return Err(invalid(
                codes::INVALID_TARGET,
                format!("{field}.values"),
                "user keys belong in targets; a user entry here must have no values",
            ));
        }
    }
    let mut regexes = RegexBudget::default();
    for (i, rule) in targeting.rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        variation_or_rollout(&field, &rule.variation_or_rollout, variations)?;
        for (j, c) in rule.clauses.iter().enumerate() {
            let field = format!("{field}.clauses[{j}]");
            clause(&field, c, &neighbourhood.segments)?;
            regexes.spend(&field, c)?;
        }
    }
    let mut graph = neighbourhood.prerequisites.clone();
    graph.insert(
        flag_key.to_owned(),
        targeting
            .prerequisites
            .iter()
            .map(|p| p.key.clone())
            .collect(),
    );
    for (i, prerequisite) in targeting.prerequisites.iter().enumerate() {
        let field = format!("prerequisites[{i}]");
        let Some(count) = neighbourhood.variations.get(&prerequisite.key) else {
            return Err(invalid(
                codes::UNKNOWN_PREREQUISITE,
                format!("{field}.key"),
                format!("no flag {:?} in this project", prerequisite.key),
            ));
        };
        variation_index(
            &format!("{field}.variation"),
            prerequisite.variation,
            *count,
        )?;
        if prerequisite.key == flag_key || reaches_itself(flag_key, &graph) {
            return Err(invalid(
                codes::PREREQUISITE_CYCLE,
                format!("{field}.key"),
                format!(
                    "{:?} depends on {flag_key:?}, directly or through other prerequisites",
                    prerequisite.key
                ),
            ));
        }
    }
    Ok(())
}

/// The segments a segment's rules reference through `segmentMatch` (edges of the nesting graph).
pub fn referenced_segments(segment: &Segment) -> Vec<String> {
    segment
        .rules
        .iter()
        .flat_map(|r| r.clauses.iter())
        .filter(|c| c.op == "segmentMatch")
        .flat_map(|c| c.values.iter().filter_map(Value::as_str).map(str::to_owned))
        .collect()
}

/// Checks a segment, as it would be after the write; `neighbourhood.segments` lists the
/// environment's segments and what they reference.
pub fn segment(segment: &Segment, neighbourhood: &Neighbourhood) -> Result<()> {
    key("key", &segment.key)?;
    if let Some(segment_name) = &segment.name {
        name("name", segment_name)?;
    }
    if let Some(description) = &segment.description
        && description.chars().count() > MAX_DESCRIPTION_CHARS
    {
        return Err(invalid(
            codes::INVALID_FIELD,
            "description",
            format!("a description has at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    let mut graph = neighbourhood.segments.clone();
    graph.insert(segment.key.clone(), referenced_segments(segment));
    for (field, targets) in [
        ("includedContexts", &segment.included_contexts),
        ("excludedContexts", &segment.excluded_contexts),
    ] {
        for (i, target) in targets.iter().enumerate() {
            context_kind(
                &format!("{field}[{i}].contextKind"),
                target.context_kind.as_deref(),
            )?;
        }
    }
    let mut regexes = RegexBudget::default();
    for (i, rule) in segment.rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        for (j, c) in rule.clauses.iter().enumerate() {
            clause(&format!("{field}.clauses[{j}]"), c, &graph)?;
            regexes.spend(&format!("{field}.clauses[{j}]"), c)?;
        }
        if let Some(weight) = rule.weight
            && !(0..=100_000).contains(&weight)
        {
            return Err(invalid(
                codes::INVALID_ROLLOUT,
                format!("{field}.weight"),
                "weights are 0 to 100000",
            ));
        }
        context_kind(
            &format!("{field}.rolloutContextKind"),
            rule.rollout_context_kind.as_deref(),
        )?;
        if let Some(bucket_by) = rule.bucket_by.as_deref() {
            attribute_reference(
                &format!("{field}.bucketBy"),
                bucket_by,
                rule.rollout_context_kind.is_some(),
            )?;
        }
    }
    if reaches_itself(&segment.key, &graph) {
        // Name the reference that closes the cycle, as prerequisite cycles do.
        let field = segment
            .rules
            .iter()
            .enumerate()
            .flat_map(|(i, rule)| {
                rule.clauses
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.op == "segmentMatch")
                    .flat_map(move |(j, c)| {
                        c.values.iter().enumerate().filter_map(move |(k, v)| {
                            v.as_str()
                                .map(|key| (key, format!("rules[{i}].clauses[{j}].values[{k}]")))
                        })
                    })
            })
            .find(|(key, _)| *key == segment.key || leads_to(key, &segment.key, &graph))
            .map_or_else(|| "rules".to_owned(), |(_, field)| field);
        return Err(invalid(
            codes::SEGMENT_CYCLE,
            field,
            "segments would include each other in a cycle",
        ));
    }
    Ok(())
}
