//! What differs between SQLite and PostgreSQL, and nothing else.

use std::borrow::Cow;

use crate::{Result, StoreError};

/// The database behind a [`Store`](crate::Store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file under the data directory.
    Sqlite,
    /// For several Flagstaff nodes sharing one database.
    Postgres,
}

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_documents_and_audit.sql"),
    ),
    (
        2,
        include_str!("../migrations/sqlite/0002_audit_anchor.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_outbox.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_big_segments.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/postgres/0001_documents_and_audit.sql"),
    ),
    (
        2,
        include_str!("../migrations/postgres/0002_audit_anchor.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_outbox.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_big_segments.sql"),
    ),
];

const SQLITE_EVENT_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/events/sqlite/0001_insights.sql"),
    ),
    (
        2,
        include_str!("../migrations/events/sqlite/0002_migration_ops.sql"),
    ),
    (
        3,
        include_str!("../migrations/events/sqlite/0003_experiments.sql"),
    ),
    (
        4,
        include_str!("../migrations/events/sqlite/0004_payload_ids.sql"),
    ),
];
const POSTGRES_EVENT_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/events/postgres/0001_insights.sql"),
    ),
    (
        2,
        include_str!("../migrations/events/postgres/0002_migration_ops.sql"),
    ),
    (
        3,
        include_str!("../migrations/events/postgres/0003_experiments.sql"),
    ),
    (
        4,
        include_str!("../migrations/events/postgres/0004_payload_ids.sql"),
    ),
];

impl Backend {
    pub(crate) fn from_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config(format!(
                "unsupported database URL {url:?}: use sqlite://PATH or postgres://..."
            )))
        }
    }

    /// SQLite creates the file if missing only when asked to.
    pub(crate) fn connect_url(self, url: &str) -> String {
        match self {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        }
    }

    pub(crate) fn max_connections(self) -> u32 {
        match self {
            // One writer at a time (see `Store::commit_lock`); the rest serve concurrent reads.
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        }
    }

    /// Statements run on every new connection. For SQLite: write-ahead logging, so readers never
    /// block the writer, and `synchronous = FULL`, so that a commit is fsynced before it returns
    /// (in WAL mode the default `NORMAL` can lose the last commits on power loss).
    pub(crate) fn connection_setup(self) -> &'static [&'static str] {
        match self {
            Backend::Sqlite => &[
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = FULL",
                "PRAGMA busy_timeout = 5000",
            ],
            Backend::Postgres => &[],
        }
    }

    /// Connection setup of the events database. Analytics are acknowledged before they are
    /// stored (`ld-protocol.md` §6.3: `202` at once), so fsyncing each of their commits would buy
    /// nothing: SQLite's `NORMAL` in WAL mode keeps the database consistent after a crash and
    /// may lose only the last commits, which the acknowledgement never promised.
    pub(crate) fn event_connection_setup(self) -> &'static [&'static str] {
        match self {
            Backend::Sqlite => &[
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                "PRAGMA busy_timeout = 5000",
            ],
            Backend::Postgres => &[],
        }
    }

    pub(crate) fn event_migrations(self) -> &'static [(i64, &'static str)] {
        match self {
            Backend::Sqlite => SQLITE_EVENT_MIGRATIONS,
            Backend::Postgres => POSTGRES_EVENT_MIGRATIONS,
        }
    }

    pub(crate) fn migrations(self) -> &'static [(i64, &'static str)] {
        match self {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    /// Queries are written with PostgreSQL's `$1` placeholders; SQLite's equivalent is `?1`.
    /// (Our SQL has no other `$`.)
    pub(crate) fn sql(self, sql: &str) -> Cow<'_, str> {
        match self {
            Backend::Postgres => Cow::Borrowed(sql),
            Backend::Sqlite => Cow::Owned(sql.replace('$', "?")),
        }
    }
}
