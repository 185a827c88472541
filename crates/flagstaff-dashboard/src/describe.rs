//! Flags, targeting and segments in words, and the line diff people review before saving.
//!
//! A JSON diff of targeting tells an engineer what changed and a product manager nothing. The
//! dashboard instead describes each document as short sentences, one per line ("Rule 1: if
//! user country is one of "DE", "FR", serve true"), and diffs those lines. The same description
//! is the read-only view of a flag, the review before a save, the history's diff and the
//! "matching rule" shown when testing a context, so all four always agree.

use flagstaff_app::model::{FlagDefinition, Targeting, Variation};
use flagstaff_protocol::{Clause, FlagRule, Segment, SegmentRule, VariationOrRollout};
use serde_json::Value;

/// One line of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffLine {
    /// In both.
    Same(String),
    /// Only in the new version.
    Added(String),
    /// Only in the old version.
    Removed(String),
}

impl DiffLine {
    /// The CSS class of the line.
    pub fn class(&self) -> &'static str {
        match self {
            DiffLine::Same(_) => "same",
            DiffLine::Added(_) => "added",
            DiffLine::Removed(_) => "removed",
        }
    }

    /// The sign shown before the line.
    pub fn sign(&self) -> &'static str {
        match self {
            DiffLine::Same(_) => " ",
            DiffLine::Added(_) => "+",
            DiffLine::Removed(_) => "−",
        }
    }

    /// The line's text.
    pub fn text(&self) -> &str {
        match self {
            DiffLine::Same(t) | DiffLine::Added(t) | DiffLine::Removed(t) => t,
        }
    }
}

/// Longest-common-subsequence diff of two line lists. Descriptions are tens of lines, so the
/// quadratic table is small; past `LIMIT` lines on either side the diff falls back to "all
/// removed, all added", which is still correct, only less precise.
pub fn diff(before: &[String], after: &[String]) -> Vec<DiffLine> {
    const LIMIT: usize = 2_000;
    if before.len() > LIMIT || after.len() > LIMIT {
        return before
            .iter()
            .map(|l| DiffLine::Removed(l.clone()))
            .chain(after.iter().map(|l| DiffLine::Added(l.clone())))
            .collect();
    }
    let (n, m) = (before.len(), after.len());
    // lcs[i][j]: length of the LCS of before[i..] and after[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if before[i] == after[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n.max(m));
    while i < n || j < m {
        if i < n && j < m && before[i] == after[j] {
            out.push(DiffLine::Same(before[i].clone()));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // On a tie the old line goes first, as readers of diffs expect.
            out.push(DiffLine::Removed(before[i].clone()));
            i += 1;
        } else {
            out.push(DiffLine::Added(after[j].clone()));
            j += 1;
        }
    }
    out
}

/// Whether a diff changes anything.
pub fn changes(lines: &[DiffLine]) -> bool {
    lines.iter().any(|l| !matches!(l, DiffLine::Same(_)))
}

/// A JSON value as people read it: strings quoted, everything else as JSON.
pub fn value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A variation by index: its name and value when it has a name, else its value.
pub fn variation(variations: &[Variation], index: i64) -> String {
    match usize::try_from(index).ok().and_then(|i| variations.get(i)) {
        Some(Variation {
            name: Some(name),
            value: v,
            ..
        }) if !name.is_empty() => format!("{name} ({})", value(v)),
        Some(v) => value(&v.value),
        None => format!("variation {index} (missing)"),
    }
}

/// The words for an operator, with the negation folded in.
pub fn operator(op: &str, negate: bool) -> String {
    let words = match op {
        "in" => "is one of",
        "startsWith" => "starts with",
        "endsWith" => "ends with",
        "contains" => "contains",
        "matches" => "matches the pattern",
        "lessThan" => "is less than",
        "lessThanOrEqual" => "is at most",
        "greaterThan" => "is greater than",
        "greaterThanOrEqual" => "is at least",
        "before" => "is before",
        "after" => "is after",
        "semVerEqual" => "is version",
        "semVerLessThan" => "is a version before",
        "semVerGreaterThan" => "is a version after",
        "segmentMatch" => "is in segment",
        other => return format!("{}{other}", if negate { "not " } else { "" }),
    };
    if negate {
        match op {
            "in" => "is not one of".into(),
            "segmentMatch" => "is not in segment".into(),
            "startsWith" => "does not start with".into(),
            "endsWith" => "does not end with".into(),
            "contains" => "does not contain".into(),
            "matches" => "does not match the pattern".into(),
            _ => words.replacen("is ", "is not ", 1),
        }
    } else {
        words.into()
    }
}

/// A clause as a phrase: `user country is one of "DE", "FR"`.
pub fn clause(c: &Clause) -> String {
    let values = c.values.iter().map(value).collect::<Vec<_>>().join(", ");
    if c.op == "segmentMatch" {
        let keys = c
            .values
            .iter()
            .map(|v| v.as_str().map_or_else(|| value(v), str::to_owned))
            .collect::<Vec<_>>()
            .join(", ");
        return format!("context {} {keys}", operator(&c.op, c.negate));
    }
    let kind = c.context_kind.as_deref().unwrap_or("user");
    format!(
        "{kind} {} {} {values}",
        c.attribute,
        operator(&c.op, c.negate)
    )
}

/// What a rule or the default rule serves.
pub fn serve(variations: &[Variation], vr: &VariationOrRollout) -> String {
    if let Some(rollout) = &vr.rollout {
        let parts = rollout
            .variations
            .iter()
            .map(|w| {
                format!(
                    "{} {}",
                    percent(w.weight),
                    variation(variations, w.variation)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let by = rollout.bucket_by.as_deref().unwrap_or("key");
        let kind = rollout.context_kind.as_deref().unwrap_or("user");
        format!("a percentage rollout: {parts} (by {kind} {by})")
    } else if let Some(index) = vr.variation {
        variation(variations, index)
    } else {
        "nothing (no variation set)".into()
    }
}

/// A rollout weight (out of 100,000) as a percentage: `30 %`, `12.5 %`.
pub fn percent(weight: i64) -> String {
    let whole = weight / 1000;
    let fraction = (weight % 1000).abs();
    if fraction == 0 {
        format!("{whole} %")
    } else {
        let digits = format!("{fraction:03}");
        format!("{whole}.{} %", digits.trim_end_matches('0'))
    }
}

/// A flag rule as a sentence (without its number).
pub fn rule(variations: &[Variation], r: &FlagRule) -> String {
    let conditions = if r.clauses.is_empty() {
        "always".to_owned()
    } else {
        r.clauses
            .iter()
            .map(clause)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    format!(
        "if {conditions}, serve {}",
        serve(variations, &r.variation_or_rollout)
    )
}

/// A flag's targeting in one environment, one statement per line.
pub fn targeting(variations: &[Variation], t: &Targeting) -> Vec<String> {
    let mut lines = vec![format!("Targeting is {}", if t.on { "ON" } else { "OFF" })];
    for p in &t.prerequisites {
        lines.push(format!(
            "Prerequisite: flag {} must serve variation {}",
            p.key, p.variation
        ));
    }
    for target in &t.targets {
        lines.push(format!(
            "Serve {} to user {}",
            variation(variations, target.variation),
            target.values.join(", ")
        ));
    }
    for target in &t.context_targets {
        let kind = target.context_kind.as_deref().unwrap_or("user");
        if kind == "user" && target.values.is_empty() {
            continue;
        }
        lines.push(format!(
            "Serve {} to {kind} {}",
            variation(variations, target.variation),
            target.values.join(", ")
        ));
    }
    for (i, r) in t.rules.iter().enumerate() {
        lines.push(format!("Rule {}: {}", i + 1, rule(variations, r)));
    }
    lines.push(format!(
        "Default rule: serve {}",
        serve(variations, &t.fallthrough)
    ));
    lines.push(format!(
        "When off, serve {}",
        t.off_variation.map_or_else(
            || "the caller's default (no off variation)".to_owned(),
            |i| variation(variations, i)
        )
    ));
    if t.track_events || t.track_events_fallthrough {
        lines.push("Sends an event for every evaluation".into());
    }
    lines
}

/// A flag's definition, one property per line.
pub fn definition(d: &FlagDefinition) -> Vec<String> {
    let mut lines = vec![format!("Name: {}", d.name)];
    if !d.description.is_empty() {
        lines.push(format!("Description: {}", d.description));
    }
    for i in 0..d.variations.len() {
        lines.push(format!(
            "Variation {i}: {}",
            variation(&d.variations, i as i64)
        ));
    }
    if !d.tags.is_empty() {
        lines.push(format!("Tags: {}", d.tags.join(", ")));
    }
    lines.push(
        if d.temporary {
            "Temporary (remove after release)"
        } else {
            "Permanent"
        }
        .into(),
    );
    if let Some(m) = &d.maintainer {
        lines.push(format!("Maintainer: {m}"));
    }
    let a = d.client_side_availability;
    lines.push(format!(
        "Browsers: {}; mobile apps: {}",
        if a.using_environment_id { "yes" } else { "no" },
        if a.using_mobile_key { "yes" } else { "no" }
    ));
    if d.archived {
        lines.push("Archived".into());
    }
    lines
}

fn segment_rule(r: &SegmentRule) -> String {
    let conditions = r
        .clauses
        .iter()
        .map(clause)
        .collect::<Vec<_>>()
        .join(" and ");
    match r.weight {
        Some(w) => format!(
            "if {conditions}, include {} (by {} {})",
            percent(w),
            r.rollout_context_kind.as_deref().unwrap_or("user"),
            r.bucket_by.as_deref().unwrap_or("key")
        ),
        None => format!("if {conditions}, include"),
    }
}

/// A segment, one statement per line.
pub fn segment(s: &Segment) -> Vec<String> {
    let mut lines = Vec::new();
    if !s.included.is_empty() {
        lines.push(format!("Includes user {}", s.included.join(", ")));
    }
    for t in &s.included_contexts {
        lines.push(format!(
            "Includes {} {}",
            t.context_kind.as_deref().unwrap_or("user"),
            t.values.join(", ")
        ));
    }
    if !s.excluded.is_empty() {
        lines.push(format!("Excludes user {}", s.excluded.join(", ")));
    }
    for t in &s.excluded_contexts {
        lines.push(format!(
            "Excludes {} {}",
            t.context_kind.as_deref().unwrap_or("user"),
            t.values.join(", ")
        ));
    }
    for (i, r) in s.rules.iter().enumerate() {
        lines.push(format!("Rule {}: {}", i + 1, segment_rule(r)));
    }
    if lines.is_empty() {
        lines.push("Includes nobody yet".into());
    }
    lines
}

/// Anything else (environments, members, tokens): its JSON, pretty-printed, line by line.
pub fn json(v: &Value) -> Vec<String> {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn diff_keeps_common_lines_and_marks_the_rest() {
        let before = lines(&["a", "b", "c", "d"]);
        let after = lines(&["a", "c", "x", "d"]);
        let d = diff(&before, &after);
        assert_eq!(
            d,
            vec![
                DiffLine::Same("a".into()),
                DiffLine::Removed("b".into()),
                DiffLine::Same("c".into()),
                DiffLine::Added("x".into()),
                DiffLine::Same("d".into()),
            ]
        );
        assert!(changes(&d));
        assert!(!changes(&diff(&before, &before)));
    }

    #[test]
    fn diff_of_empty_sides() {
        assert_eq!(diff(&[], &lines(&["a"])), vec![DiffLine::Added("a".into())]);
        assert_eq!(
            diff(&lines(&["a"]), &[]),
            vec![DiffLine::Removed("a".into())]
        );
    }

    #[test]
    fn percentages_read_naturally() {
        assert_eq!(percent(30_000), "30 %");
        assert_eq!(percent(12_500), "12.5 %");
        assert_eq!(percent(333), "0.333 %");
        assert_eq!(percent(100_000), "100 %");
    }

    #[test]
    fn clauses_read_as_phrases() {
        let c: Clause = serde_json::from_value(serde_json::json!({
            "attribute": "country", "op": "in", "values": ["DE", "FR"], "negate": true
        }))
        .unwrap();
        assert_eq!(clause(&c), r#"user country is not one of "DE", "FR""#);
        let s: Clause = serde_json::from_value(serde_json::json!({
            "attribute": "", "op": "segmentMatch", "values": ["beta"]
        }))
        .unwrap();
        assert_eq!(clause(&s), "context is in segment beta");
        assert_eq!(operator("lessThan", true), "is not less than");
        assert_eq!(operator("semVerLessThan", true), "is not a version before");
        assert_eq!(operator("contains", true), "does not contain");
    }
}
