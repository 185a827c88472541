//! The use-case tier: `flagstaff-app` in process, over real SQLite in a temporary directory, with
//! a manual clock. No HTTP, no sleeping: every case here runs in milliseconds, so the rules of
//! validation, authorization and expiry are covered here and the HTTP tests only prove the wiring.

mod access;
mod clock;
mod expiry;
mod overview;
mod support;
mod validation;
