//! Clauses compiled for matching (`ld-protocol.md` §3.5, §3.6).
//!
//! Compiling a clause decides once what the evaluator would otherwise decide per call: which
//! operator it is, which attribute it reads, and its values parsed into the operator's domain
//! (regexes compiled, timestamps and versions parsed, string sets hashed). Clause values of the
//! wrong type for the operator are dropped at compile time, because they can never match.

use flagstaff_protocol::{AttrRef, AttrValue, Clause, Kind};
use regex::Regex;
use serde_json::Value;

use crate::keyset::KeySet;
use crate::semver::{OwnedSemVer, SemVer};
use crate::snapshot::SegmentId;
use crate::time;

/// Regexes larger than this (compiled size, bytes) are treated as invalid, so that flag data
/// cannot make the evaluator allocate without bound. LaunchDarkly's patterns are short.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled clause.
#[derive(Debug)]
pub(crate) struct CompiledClause {
    pub(crate) test: ClauseTest,
    pub(crate) negate: bool,
}

/// What a clause tests.
#[derive(Debug)]
pub(crate) enum ClauseTest {
    /// `segmentMatch`: the referenced segments that exist (unknown keys are skipped, not errors).
    Segments(Box<[SegmentId]>),
    /// The `kind` attribute: matches against the context's kind(s); `contextKind` is ignored.
    Kind(Matcher),
    /// Any other attribute of the individual context of `kind`.
    Attribute {
        kind: Box<str>,
        attribute: AttrRef,
        matcher: Matcher,
    },
    /// The attribute is undefined or an invalid reference: evaluating it is `MALFORMED_FLAG`.
    Malformed(&'static str),
}

/// An operator with its clause values in the operator's domain.
#[derive(Debug)]
pub(crate) enum Matcher {
    In(InValues),
    StartsWith(Box<[Box<str>]>),
    EndsWith(Box<[Box<str>]>),
    Contains(Box<[Box<str>]>),
    Matches(Box<[Regex]>),
    LessThan(Box<[f64]>),
    LessThanOrEqual(Box<[f64]>),
    GreaterThan(Box<[f64]>),
    GreaterThanOrEqual(Box<[f64]>),
    Before(Box<[i128]>),
    After(Box<[i128]>),
    SemVerEqual(Box<[OwnedSemVer]>),
    SemVerLessThan(Box<[OwnedSemVer]>),
    SemVerGreaterThan(Box<[OwnedSemVer]>),
    /// An unknown operator: never matches, but the flag still evaluates normally.
    Never,
}

/// The values of an `in` clause, split by JSON type: equality never crosses types (a boolean is
/// never equal to a number), and numbers compare numerically (`1 == 1.0`).
#[derive(Debug, Default)]
pub(crate) struct InValues {
    strings: KeySet,
    numbers: Box<[f64]>,
    has_true: bool,
    has_false: bool,
}

/// Compiles a `matches` pattern with the engine's size limit.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

fn strings(values: &[Value]) -> Box<[Box<str>]> {
    values
        .iter()
        .filter_map(Value::as_str)
        .map(Box::from)
        .collect()
}

fn numbers(values: &[Value]) -> Box<[f64]> {
    values.iter().filter_map(Value::as_f64).collect()
}

/// A timestamp from a clause or context value: a JSON number of milliseconds or an RFC 3339
/// string. Anything else is not a timestamp.
pub(crate) fn timestamp(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => time::from_unix_millis(n.as_f64()?),
        Value::String(s) => time::parse_rfc3339(s),
        _ => None,
    }
}

fn timestamps(values: &[Value]) -> Box<[i128]> {
    values.iter().filter_map(timestamp).collect()
}

fn semvers(values: &[Value]) -> Box<[OwnedSemVer]> {
    values
        .iter()
        .filter_map(Value::as_str)
        .filter_map(OwnedSemVer::parse)
        .collect()
}

impl Matcher {
    pub(crate) fn compile(op: &str, values: &[Value]) -> Matcher {
        match op {
            "in" => Matcher::In(InValues {
                strings: KeySet::new(values.iter().filter_map(Value::as_str)),
                numbers: numbers(values),
                has_true: values.contains(&Value::Bool(true)),
                has_false: values.contains(&Value::Bool(false)),
            }),
            "startsWith" => Matcher::StartsWith(strings(values)),
            "endsWith" => Matcher::EndsWith(strings(values)),
            "contains" => Matcher::Contains(strings(values)),
            "matches" => Matcher::Matches(
                values
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|pattern| compile_regex(pattern).ok())
                    .collect(),
            ),
            "lessThan" => Matcher::LessThan(numbers(values)),
            "lessThanOrEqual" => Matcher::LessThanOrEqual(numbers(values)),
            "greaterThan" => Matcher::GreaterThan(numbers(values)),
            "greaterThanOrEqual" => Matcher::GreaterThanOrEqual(numbers(values)),
            "before" => Matcher::Before(timestamps(values)),
            "after" => Matcher::After(timestamps(values)),
            "semVerEqual" => Matcher::SemVerEqual(semvers(values)),
            "semVerLessThan" => Matcher::SemVerLessThan(semvers(values)),
            "semVerGreaterThan" => Matcher::SemVerGreaterThan(semvers(values)),
            _ => Matcher::Never,
        }
    }

    /// Whether one (non-array) context value satisfies the operator for any clause value.
    #[inline]
    pub(crate) fn matches(&self, value: AttrValue<'_>) -> bool {
        match self {
            Matcher::In(set) => match value {
                AttrValue::Str(s) => set.strings.contains(s),
                AttrValue::Json(Value::String(s)) => set.strings.contains(s),
                AttrValue::Bool(b) | AttrValue::Json(&Value::Bool(b)) => {
                    if b {
                        set.has_true
                    } else {
                        set.has_false
                    }
                }
                AttrValue::Json(Value::Number(n)) => {
                    n.as_f64().is_some_and(|u| set.numbers.contains(&u))
                }
                AttrValue::Json(_) => false,
            },
            Matcher::StartsWith(cs) => value
                .as_str()
                .is_some_and(|u| cs.iter().any(|c| u.starts_with(&**c))),
            Matcher::EndsWith(cs) => value
                .as_str()
                .is_some_and(|u| cs.iter().any(|c| u.ends_with(&**c))),
            Matcher::Contains(cs) => value
                .as_str()
                .is_some_and(|u| cs.iter().any(|c| u.contains(&**c))),
            Matcher::Matches(cs) => value
                .as_str()
                .is_some_and(|u| cs.iter().any(|c| c.is_match(u))),
            Matcher::LessThan(cs) => number(value).is_some_and(|u| cs.iter().any(|c| u < *c)),
            Matcher::LessThanOrEqual(cs) => {
                number(value).is_some_and(|u| cs.iter().any(|c| u <= *c))
            }
            Matcher::GreaterThan(cs) => number(value).is_some_and(|u| cs.iter().any(|c| u > *c)),
            Matcher::GreaterThanOrEqual(cs) => {
                number(value).is_some_and(|u| cs.iter().any(|c| u >= *c))
            }
            Matcher::Before(cs) => instant(value).is_some_and(|u| cs.iter().any(|c| u < *c)),
            Matcher::After(cs) => instant(value).is_some_and(|u| cs.iter().any(|c| u > *c)),
            Matcher::SemVerEqual(cs) => {
                semver(value).is_some_and(|u| cs.iter().any(|c| u == c.borrow()))
            }
            Matcher::SemVerLessThan(cs) => {
                semver(value).is_some_and(|u| cs.iter().any(|c| u < c.borrow()))
            }
            Matcher::SemVerGreaterThan(cs) => {
                semver(value).is_some_and(|u| cs.iter().any(|c| u > c.borrow()))
            }
            Matcher::Never => false,
        }
    }
}

fn number(value: AttrValue<'_>) -> Option<f64> {
    match value {
        AttrValue::Json(Value::Number(n)) => n.as_f64(),
        _ => None,
    }
}

fn instant(value: AttrValue<'_>) -> Option<i128> {
    match value {
        AttrValue::Str(s) => time::parse_rfc3339(s),
        AttrValue::Json(v) => timestamp(v),
        AttrValue::Bool(_) => None,
    }
}

fn semver(value: AttrValue<'_>) -> Option<SemVer<'_>> {
    SemVer::parse(value.as_str()?)
}

impl CompiledClause {
    /// Compiles `clause`; `segment` resolves segment keys to ids (unknown keys resolve to `None`
    /// and are dropped, because an unknown segment is a non-match, not an error).
    pub(crate) fn compile(
        clause: &Clause,
        segment: impl Fn(&str) -> Option<SegmentId>,
    ) -> CompiledClause {
        let test = if clause.op == "segmentMatch" {
            ClauseTest::Segments(
                clause
                    .values
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(segment)
                    .collect(),
            )
        } else {
            // §2.8: the attribute is a reference only when the clause names a context kind.
            let context_kind = clause.context_kind.as_deref().filter(|k| !k.is_empty());
            let attribute = match context_kind {
                Some(_) => AttrRef::new(&clause.attribute),
                None => AttrRef::literal(&clause.attribute),
            };
            if clause.attribute.is_empty() {
                ClauseTest::Malformed("the clause has no attribute")
            } else if attribute.error().is_some() {
                ClauseTest::Malformed("the clause attribute is not a valid attribute reference")
            } else if attribute.is_name("kind") {
                ClauseTest::Kind(Matcher::compile(&clause.op, &clause.values))
            } else {
                ClauseTest::Attribute {
                    kind: context_kind.unwrap_or(Kind::USER).into(),
                    attribute,
                    matcher: Matcher::compile(&clause.op, &clause.values),
                }
            }
        };
        CompiledClause {
            test,
            negate: clause.negate,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(op: &str, clause_values: Value, context_value: Value) -> bool {
        let values = clause_values.as_array().unwrap().clone();
        Matcher::compile(op, &values).matches(AttrValue::Json(&context_value))
    }

    #[test]
    fn equality_is_type_strict() {
        assert!(check("in", json!([1]), json!(1.0)));
        assert!(!check("in", json!([1]), json!(true)));
        assert!(!check("in", json!([true]), json!(1)));
        assert!(!check("in", json!(["1"]), json!(1)));
        assert!(check("in", json!(["a", 3, false]), json!(false)));
        assert!(!check("in", json!([{"a": 1}]), json!({"a": 1})));
    }

    #[test]
    fn string_operators_never_coerce() {
        assert!(check("startsWith", json!(["ab"]), json!("abc")));
        assert!(!check("startsWith", json!(["1"]), json!(12)));
        assert!(check(
            "matches",
            json!(["^[A-Za-z]+"]),
            json!("matchThisName")
        ));
        assert!(
            check("matches", json!(["is"]), json!("matchThisName")),
            "regexes are unanchored"
        );
        assert!(!check("matches", json!(["(unclosed"]), json!("(unclosed")));
        assert!(!check("lessThan", json!([100]), json!("99")));
        assert!(check("lessThanOrEqual", json!([99.5]), json!(99.5)));
    }

    #[test]
    fn timestamps_and_versions() {
        assert!(check(
            "before",
            json!(["2017-12-06T07:00:00.001Z"]),
            json!(1_512_543_600_000_u64)
        ));
        assert!(!check(
            "before",
            json!([1_512_543_600_000_u64]),
            json!("2017-12-06T00:00:00-07:00")
        ));
        assert!(check(
            "semVerLessThan",
            json!(["2.0.0"]),
            json!("2.0.0-rc.1")
        ));
        assert!(!check("semVerEqual", json!(["2"]), json!(2)));
    }
}
