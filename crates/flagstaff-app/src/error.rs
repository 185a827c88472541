//! Errors of the use cases, with the stable codes the API reports.

use flagstaff_store::StoreError;

/// Why a use case refused or failed. Every variant maps to one HTTP status and a stable `code`
/// in the API's error table (`flagstaff-api`).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input is invalid; `field` is the JSON path of the offending field.
    #[error("{field}: {message}")]
    Invalid {
        /// Stable machine-readable code, e.g. `variation_out_of_range`.
        code: &'static str,
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
    Forbidden(String),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl AppError {
    /// An invalid-input error.
    pub fn invalid(
        code: &'static str,
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
