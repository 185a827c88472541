//! The store test suite, run against every backend: SQLite in a temporary folder, and
//! PostgreSQL in a throwaway database per test (created on the server at
//! `FLAGSTAFF_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, and
//! dropped afterwards). Without a reachable PostgreSQL the PostgreSQL half is skipped with a
//! warning, unless `FLAGSTAFF_REQUIRE_POSTGRES` is set (as on CI), where it fails.

// A test helper that cannot do its job should panic with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends;
mod big_segments;
mod events;
mod experiments;
mod nodes;
mod suite;
