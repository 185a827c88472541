//! Errors of the use cases, and the one table of stable error codes that every HTTP answer of
//! Flagstaff uses (the management API, the dashboard's JSON endpoints and SDK delivery): each
//! [`ErrorCode`] carries its string, its HTTP status and what it means. The public table in
//! `docs/errors.md` is generated from it, and a test fails when the two differ.

use flagstaff_store::StoreError;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident => $text:literal, $status:literal;)*) => {
        /// A stable, machine-readable error code (meilisearch's `Code` is the model): the string
        /// clients match on never changes meaning, and each code has exactly one HTTP status.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The string in error bodies (`"code": "..."`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            /// The HTTP status answered with this code.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// When it is answered, for the public table.
            pub fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),*).trim_ascii(),)*
                }
            }
        }
    };
}

error_codes! {
    /// The body is not JSON of the expected shape (`field` names where).
    InvalidBody => "invalid_body", 400;
    /// A JSON Patch operation failed (`field` is the operation's index).
    InvalidPatch => "invalid_patch", 400;
    /// A query parameter is not a valid value (`field` names it).
    InvalidQuery => "invalid_query", 400;
    /// An insights request without the `environment` it needs.
    MissingEnvironment => "missing_environment", 400;
    /// An insights range other than 1h, 24h, 7d, 30d, 90d.
    InvalidRange => "invalid_range", 400;
    /// A status window outside 1 to 365 days.
    InvalidDays => "invalid_days", 400;
    /// Migration insights asked of a flag that is not a migration flag.
    NotAMigrationFlag => "not_a_migration_flag", 400;
    /// A key has characters other than letters, digits, `.`, `_`, `-`, or is empty or too long.
    InvalidKey => "invalid_key", 400;
    /// A field has the wrong shape or value.
    InvalidField => "invalid_field", 400;
    /// The variations do not fit the flag kind, or repeat a value.
    InvalidVariations => "invalid_variations", 400;
    /// A variation index points outside the flag's variations.
    VariationOutOfRange => "variation_out_of_range", 400;
    /// A rule or fallthrough serves neither a variation nor a rollout.
    MissingVariation => "missing_variation", 400;
    /// A rollout's buckets are empty, weights are out of range or do not add up to 100%.
    InvalidRollout => "invalid_rollout", 400;
    /// A clause names an operator the evaluator does not know.
    UnknownOperator => "unknown_operator", 400;
    /// An attribute reference is empty or malformed.
    InvalidAttributeReference => "invalid_attribute_reference", 400;
    /// A clause's values are empty or of the wrong type for its operator.
    InvalidClauseValues => "invalid_clause_values", 400;
    /// A `matches` pattern does not compile.
    InvalidRegex => "invalid_regex", 400;
    /// A context kind name is invalid.
    InvalidContextKind => "invalid_context_kind", 400;
    /// An individual target is malformed.
    InvalidTarget => "invalid_target", 400;
    /// A `segmentMatch` clause names a segment that does not exist.
    UnknownSegment => "unknown_segment", 400;
    /// Segments would include each other in a cycle.
    SegmentCycle => "segment_cycle", 400;
    /// A prerequisite names a flag that does not exist.
    UnknownPrerequisite => "unknown_prerequisite", 400;
    /// Prerequisites would form a cycle.
    PrerequisiteCycle => "prerequisite_cycle", 400;
    /// Secure mode cannot be turned on: no SDK key has a stored HMAC key schedule (keys made before Flagstaff kept one); rotating the SDK key once fixes it.
    SecureModeNeedsRotation => "secure_mode_needs_rotation", 400;
    /// SDK delivery: the context in the path or body is not a valid context.
    InvalidContext => "invalid_context", 400;
    /// SDK delivery: the environment is in secure mode and the context's hash does not match.
    SecureModeHashMismatch => "secure_mode_hash_mismatch", 400;
    /// SDK delivery: an events body says `Content-Encoding: gzip` but does not decompress.
    InvalidGzip => "invalid_gzip", 400;
    /// SDK delivery: an events body is not JSON.
    InvalidJson => "invalid_json", 400;
    /// SDK delivery: an events body is JSON of the wrong shape (not an array, or not an object).
    InvalidPayload => "invalid_payload", 400;
    /// No valid credential (API token, session, or SDK key that exists).
    Unauthorized => "unauthorized", 401;
    /// The credential's role, projects or environments do not allow this.
    Forbidden => "forbidden", 403;
    /// A dashboard request without the session's CSRF token, or from another origin.
    Csrf => "csrf", 403;
    /// No such resource or endpoint.
    NotFound => "not_found", 404;
    /// SDK delivery: the credential's environment no longer exists.
    UnknownEnvironment => "unknown_environment", 404;
    /// SDK delivery: the method is not one the endpoint takes.
    MethodNotAllowed => "method_not_allowed", 405;
    /// A create for a key that exists.
    AlreadyExists => "already_exists", 409;
    /// A semantic-patch instruction cannot apply to the document as it is now (its rule was removed, a prerequisite is already there, …); `field` names the instruction.
    InstructionConflict => "instruction_conflict", 409;
    /// Something still in use cannot be removed: a custom role held by members, teams or tokens, or a flag variation that targeting or another flag's prerequisite still serves (or that a pending scheduled change or request names); the message says where.
    InUse => "in_use", 409;
    /// The environment requires approval for changes to targeting and segments: open a change request instead (the message says how).
    ApprovalRequired => "approval_required", 409;
    /// A change request or scheduled change is not in a state that allows this (e.g. applying a request that is not approved, rescheduling one that has run).
    InvalidState => "invalid_state", 409;
    /// `If-Match` is stale; `currentVersion` is the version now stored.
    VersionConflict => "version_conflict", 409;
    /// The body did not arrive within the body-read timeout (`--body-read-timeout-ms`).
    RequestTimeout => "request_timeout", 408;
    /// The body is over the endpoint's limit.
    PayloadTooLarge => "payload_too_large", 413;
    /// SDK delivery: a `REPORT` body that is not `application/json`.
    UnsupportedMediaType => "unsupported_media_type", 415;
    /// An update or delete without `If-Match`.
    VersionRequired => "version_required", 428;
    /// Too many failed sign-ins for this account or from this address; wait `Retry-After` seconds.
    TooManyRequests => "too_many_requests", 429;
    /// A storage failure (details are logged, not returned).
    Internal => "internal", 500;
    /// Something transient (the database did not answer); retry after `Retry-After`.
    Unavailable => "unavailable", 503;
}

impl ErrorCode {
    /// The code a stored or sent string names, if any.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == text)
    }

    /// The public error table (Markdown), as `docs/errors.md` holds it.
    pub fn table() -> String {
        let mut out = String::from(
            "# Error codes\n\nEvery error Flagstaff answers over HTTP (the management API, the \
             dashboard's JSON endpoints, SDK delivery) is JSON: `{\"code\", \"message\", \
             \"field\"?, \"currentVersion\"?}`. `field` is the JSON path of the offending \
             field; `currentVersion` comes with `version_conflict`. A code never changes its \
             meaning or its status.\n\nThis file is generated from `ErrorCode` in \
             `crates/flagstaff-app/src/error.rs` (regenerate with \
             `FLAGSTAFF_UPDATE_DOCS=1 cargo test -p flagstaff-app error_table`).\n\n\
             | code | status | when |\n|---|---|---|\n",
        );
        for code in ErrorCode::ALL {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                code.as_str(),
                code.status(),
                code.description()
            ));
        }
        out
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a use case refused or failed. Every variant maps to one HTTP status and a stable `code`
/// in the API's error table (`flagstaff-api`).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input is invalid; `field` is the JSON path of the offending field.
    #[error("{field}: {message}")]
    Invalid {
        /// Stable machine-readable code, e.g. `variation_out_of_range`.
        code: ErrorCode,
        /// What is wrong, for people.
        message: String,
        /// Where, e.g. `rules[2].clauses[0].op`.
        field: String,
    },
    /// No such resource.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The caller's version is stale; `current` is the version now stored.
    #[error("version conflict: the current version is {current:?}")]
    Conflict {
        /// The version now stored (none if the resource was deleted meanwhile).
        current: Option<u64>,
    },
    /// No valid credential.
    #[error("authentication required")]
    Unauthorized,
    /// The credential may not do this.
    #[error("forbidden: {0}")]
    Forbidden(Refusal),
    /// Too many attempts (sign-in): try again after `retry_after_ms`.
    #[error("too many attempts; try again in {} s", retry_after_ms.saturating_add(999) / 1000)]
    RateLimited {
        /// How long to wait, in milliseconds.
        retry_after_ms: i64,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Why something is forbidden: a sentence, and for policy decisions the action refused and the
/// resource it was refused on, so that people know what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// For people.
    pub message: String,
    /// The action refused, e.g. `updateRules` (policy decisions only).
    pub action: Option<String>,
    /// The resource, e.g. `proj/default:env/production;critical:flag/checkout`.
    pub resource: Option<String>,
}

impl Refusal {
    /// A policy decision's refusal.
    pub fn denied(
        action: impl Into<String>,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Refusal {
        Refusal {
            message: message.into(),
            action: Some(action.into()),
            resource: Some(resource.into()),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal {
            message,
            action: None,
            resource: None,
        }
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Refusal {
        Refusal::from(message.to_owned())
    }
}

impl AppError {
    /// An invalid-input error.
    pub fn invalid(
        code: ErrorCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> AppError {
        AppError::Invalid {
            code,
            message: message.into(),
            field: field.into(),
        }
    }
}

impl AppError {
    /// The code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Invalid { code, .. } => *code,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            AppError::Conflict { .. } => ErrorCode::VersionConflict,
            AppError::Unauthorized => ErrorCode::Unauthorized,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::RateLimited { .. } => ErrorCode::TooManyRequests,
            AppError::Store(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> AppError {
        match error {
            StoreError::Conflict { current, .. } => AppError::Conflict { current },
            other => AppError::Store(other),
        }
    }
}

/// Result of use cases.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table_in_the_docs_is_the_one_the_codes_make() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let table = ErrorCode::table();
        if std::env::var_os("FLAGSTAFF_UPDATE_DOCS").is_some() {
            std::fs::write(path, &table).expect("write docs/errors.md");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == table,
            "docs/errors.md is stale; regenerate it with FLAGSTAFF_UPDATE_DOCS=1 cargo test -p flagstaff-app error_table"
        );
    }

    #[test]
    fn codes_are_unique_snake_case_errors_with_descriptions() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert!((400..600).contains(&code.status()), "{text}");
            assert!(!code.description().is_empty(), "{text}");
            assert_eq!(ErrorCode::parse(text), Some(*code));
        }
    }

    #[test]
    fn every_use_case_error_maps_to_its_code() {
        let cases = [
            (AppError::NotFound("x".into()), "not_found", 404),
            (AppError::AlreadyExists("x".into()), "already_exists", 409),
            (
                AppError::Conflict { current: None },
                "version_conflict",
                409,
            ),
            (AppError::Unauthorized, "unauthorized", 401),
            (AppError::Forbidden("x".into()), "forbidden", 403),
            (
                AppError::Store(StoreError::Corrupt("x".into())),
                "internal",
                500,
            ),
            (
                AppError::invalid(ErrorCode::InvalidRegex, "f", "m"),
                "invalid_regex",
                400,
            ),
        ];
        for (error, code, status) in cases {
            assert_eq!(error.code().as_str(), code);
            assert_eq!(error.code().status(), status);
        }
    }
}
