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

/// Anything else (environments, members, tokens): its JSON, pretty-printed, line by line.
pub fn json(v: &Value) -> Vec<String> {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Keys a description names before it says "and N more".
const KEYS_SHOWN: usize = 20;

/// Up to [`KEYS_SHOWN`] of `keys`, then "and N more", so that a segment of 50,000 keys is one
/// short line in lists, reviews and the history, never the whole list.
pub fn some_keys<'k>(keys: impl ExactSizeIterator<Item = &'k String>) -> String {
    let total = keys.len();
    let shown: Vec<&str> = keys.take(KEYS_SHOWN).map(String::as_str).collect();
    let mut text = shown.join(", ");
    if total > KEYS_SHOWN {
        text.push_str(&format!(" and {} more", thousands(total - KEYS_SHOWN)));
    }
    text
}

/// `49998` as "49,998".
pub fn thousands(n: impl std::borrow::Borrow<usize>) -> String {
    let digits = n.borrow().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "1 user key" / "50,000 organization keys".
fn counted(n: usize, kind: &str) -> String {
    format!(
        "{} {kind} key{}",
        thousands(n),
        if n == 1 { "" } else { "s" }
    )
}

/// A segment's lists by (verb, context kind): "Includes"/"Excludes" and `user`, `organization`…
fn lists<'s>(s: &'s Segment) -> Vec<((&'static str, String), Vec<&'s String>)> {
    let mut out: Vec<((&'static str, String), Vec<&'s String>)> = Vec::new();
    let mut add = |verb: &'static str, kind: &str, values: &'s [String]| {
        if values.is_empty() {
            return;
        }
        match out.iter_mut().find(|((v, k), _)| *v == verb && k == kind) {
            Some((_, list)) => list.extend(values),
            None => out.push(((verb, kind.to_owned()), values.iter().collect())),
        }
    };
    add("Includes", "user", &s.included);
    for t in &s.included_contexts {
        add(
            "Includes",
            t.context_kind.as_deref().unwrap_or("user"),
            &t.values,
        );
    }
    add("Excludes", "user", &s.excluded);
    for t in &s.excluded_contexts {
        add(
            "Excludes",
            t.context_kind.as_deref().unwrap_or("user"),
            &t.values,
        );
    }
    out
}

/// How many keys a segment lists, in all its lists.
pub fn segment_size(s: &Segment) -> usize {
    lists(s).iter().map(|(_, keys)| keys.len()).sum()
}

/// A segment as sentences: each list as its count and its first keys, then each rule.
pub fn segment(s: &Segment) -> Vec<String> {
    let mut lines: Vec<String> = lists(s)
        .into_iter()
        .map(|((verb, kind), keys)| {
            format!(
                "{verb} {}: {}",
                counted(keys.len(), &kind),
                some_keys(keys.into_iter())
            )
        })
        .collect();
    for (i, r) in s.rules.iter().enumerate() {
        lines.push(format!("Rule {}: {}", i + 1, segment_rule(r)));
    }
    if lines.is_empty() {
        lines.push("Includes nobody yet".into());
    }
    lines
}

/// What changed between two versions of a segment (either may be absent: created, deleted):
/// each list as the keys added and removed — counted, with the first of them — and the rules
/// as a line diff. Its size does not grow with the lists.
pub fn segment_diff(before: Option<&Segment>, after: Option<&Segment>) -> Vec<DiffLine> {
    let empty = Vec::new();
    let before_lists = before.map(lists).unwrap_or_default();
    let after_lists = after.map(lists).unwrap_or_default();
    let mut names: Vec<&(&'static str, String)> = before_lists.iter().map(|(n, _)| n).collect();
    for (n, _) in &after_lists {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    fn find<'a>(
        side: &[((&'static str, String), Vec<&'a String>)],
        name: &(&'static str, String),
    ) -> Option<std::collections::BTreeSet<&'a str>> {
        side.iter()
            .find(|(n, _)| n == name)
            .map(|(_, keys)| keys.iter().map(|k| k.as_str()).collect())
    }
    let mut out = Vec::new();
    // The name and description first, as people know the segment by them.
    let labels = |s: Option<&Segment>| -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(name) = s.and_then(|s| s.name.as_deref()) {
            // Whole: validation bounds both (200 and 2,000 characters), and a change at the
            // end of a long description must show.
            lines.push(format!("Name: {name}"));
        }
        if let Some(description) = s.and_then(|s| s.description.as_deref()) {
            lines.push(format!("Description: {description}"));
        }
        lines
    };
    out.extend(diff(&labels(before), &labels(after)));
    for name in names {
        let old = find(&before_lists, name).unwrap_or_default();
        let new = find(&after_lists, name).unwrap_or_default();
        let (verb, kind) = name;
        let added: Vec<String> = new.difference(&old).map(|k| (*k).to_owned()).collect();
        let removed: Vec<String> = old.difference(&new).map(|k| (*k).to_owned()).collect();
        if added.is_empty() && removed.is_empty() {
            out.push(DiffLine::Same(format!(
                "{verb} {}",
                counted(new.len(), kind)
            )));
            continue;
        }
        let past = if *verb == "Includes" {
            "included"
        } else {
            "excluded"
        };
        if !removed.is_empty() {
            out.push(DiffLine::Removed(format!(
                "{} no longer {past}: {}",
                counted(removed.len(), kind),
                some_keys(removed.iter())
            )));
        }
        if !added.is_empty() {
            out.push(DiffLine::Added(format!(
                "{} {past}: {}",
                counted(added.len(), kind),
                some_keys(added.iter())
            )));
        }
        out.push(DiffLine::Same(format!(
            "{verb} {} now (was {})",
            counted(new.len(), kind),
            thousands(old.len())
        )));
    }
    let rules = |s: Option<&Segment>| -> Vec<String> {
        s.map_or(&empty, |s| &s.rules)
            .iter()
            .enumerate()
            .map(|(i, r)| format!("Rule {}: {}", i + 1, segment_rule(r)))
            .collect()
    };
    out.extend(diff(&rules(before), &rules(after)));
    if out.is_empty() {
        out.push(DiffLine::Same("Includes nobody".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| (*l).to_owned()).collect()
    }

    fn big(keys: std::ops::Range<usize>, extra: serde_json::Value) -> Segment {
        let mut v = serde_json::json!({"key": "big",
            "included": keys.map(|i| format!("u{i}")).collect::<Vec<_>>()});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_large_segment_is_described_and_diffed_in_a_few_short_lines() {
        let before = big(0..50_000, serde_json::json!({}));
        let summary = segment(&before);
        assert_eq!(summary.len(), 1);
        assert!(
            summary[0].starts_with("Includes 50,000 user keys: u0, u1,"),
            "{}",
            summary[0]
        );
        assert!(
            summary[0].ends_with("u19 and 49,980 more"),
            "{}",
            summary[0]
        );
        // Two keys gone, three added, an organization list and a rule added.
        let after = big(
            2..50_003,
            serde_json::json!({
            "includedContexts": [{"contextKind": "organization", "values": ["acme"]}],
            "rules": [{"clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]}),
        );
        let diff = segment_diff(Some(&before), Some(&after));
        let shown: Vec<String> = diff
            .iter()
            .map(|l| format!("{}{}", l.sign(), l.text()))
            .collect();
        assert_eq!(
            shown,
            vec![
                "−2 user keys no longer included: u0, u1",
                "+3 user keys included: u50000, u50001, u50002",
                " Includes 50,001 user keys now (was 50,000)",
                "+1 organization key included: acme",
                " Includes 1 organization key now (was 0)",
                "+Rule 1: if user plan is one of \"pro\", include",
            ]
        );
        let text: usize = shown.iter().map(String::len).sum();
        assert!(text < 1_000, "{text} bytes");
        // Created and deleted segments diff against nothing.
        assert!(changes(&segment_diff(None, Some(&after))));
        assert_eq!(thousands(1_234_567_usize), "1,234,567");
        assert_eq!(thousands(12_usize), "12");
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
