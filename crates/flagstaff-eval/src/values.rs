//! Checks on clause values, for validating flag data before it is stored. They use the same
//! parsers as evaluation, so "accepted at write time" and "meaningful at evaluation time" agree.

use serde_json::Value;

/// The operators this engine knows (`ld-protocol.md` §3.6).
pub const OPERATORS: [&str; 15] = [
    "in",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "lessThan",
    "lessThanOrEqual",
    "greaterThan",
    "greaterThanOrEqual",
    "before",
    "after",
    "semVerEqual",
    "semVerLessThan",
    "semVerGreaterThan",
    "segmentMatch",
];

/// Whether `value` is a timestamp for `before`/`after`: Unix milliseconds or RFC 3339 with a zone.
pub fn is_timestamp(value: &Value) -> bool {
    crate::clause::timestamp(value).is_some()
}

/// Whether `text` is a (lenient) semantic version for the `semVer*` operators.
pub fn is_semver(text: &str) -> bool {
    crate::semver::SemVer::parse(text).is_some()
}

/// Why `pattern` cannot be used by `matches`, if it cannot: the engine's regex dialect (Rust's
/// `regex`, RE2-like: no backreferences or lookaround) and size limit.
pub fn regex_error(pattern: &str) -> Option<String> {
    crate::clause::compile_regex(pattern).err()
}
