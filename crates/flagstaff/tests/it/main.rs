//! Integration tests for the `flagstaff` binary, run as a real process.

// A test helper that cannot do its job should panic with the reason: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_fuzz;
mod big_segments;
#[cfg(feature = "tls")]
mod browser;
mod cluster;
mod dashboard;
mod dashboard_a11y;
mod dashboard_compare;
mod dashboard_context_kinds;
mod dashboard_entitlements;
mod dashboard_experiments;
mod dashboard_metrics;
mod dashboard_product;
mod dashboard_segments;
mod dashboard_workflows;
mod eval_command;
mod experiments;
mod fdv2;
mod fdv2_web;
mod hardening;
mod insights;
mod migrations;
mod offline;
mod ofrep_conformance;
mod ofrep_web;
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod relay;
mod relay_token;
mod rust_sdk;
mod sdks;
mod serve;
#[cfg(feature = "oidc")]
mod sso;
#[cfg(feature = "tls")]
mod tls;
mod workflows;
