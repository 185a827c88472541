//! The Flagstaff server-side SDK for Rust.
//!
//! A service adds this crate, gives it an SDK key and the address of its Flagstaff server, and
//! evaluates feature flags in memory: no network call per evaluation. The client receives every
//! flag rule ahead of time over a persistent Server-Sent Events stream (or by polling, or from
//! files), keeps them current within milliseconds of a change, and keeps serving the last-known
//! rules while the server is unreachable. Evaluation is the same engine the server uses
//! ([`flagstaff_eval`]), so a value here is the value the dashboard's "test a context" shows.
//!
//! It speaks the LaunchDarkly server-side SDK protocol (`ld-protocol.md` §4, §6), so it also
//! works against a LaunchDarkly Relay Proxy or any LaunchDarkly-compatible endpoint.
//!
//! ```no_run
//! use std::time::Duration;
//! use flagstaff_sdk::{Client, Config, ContextBuilder};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder(std::env::var("FLAGSTAFF_SDK_KEY")?)
//!     .base_uri("http://localhost:8080")
//!     .build()?;
//! let client = Client::new(config)?;
//! if let Err(e) = client.wait_for_initialization(Duration::from_secs(5)).await {
//!     // Not fatal: evaluations return the defaults until data arrives.
//!     eprintln!("flags not loaded yet: {e}");
//! }
//! let context = ContextBuilder::new("user-42").set("plan", "gold").build()?;
//! let limit = client.int_variation(&context, "upload-limit-mb", 10);
//! # let _ = limit;
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! What is where:
//! - [`Config`]: endpoints, data source ([`DataSourceConfig`]), events ([`EventsConfig`]),
//!   offline mode.
//! - [`Client`]: typed variations and their `*_detail` forms, [`Client::all_flags_state`] for
//!   browser bootstrap, [`Client::flag_changes`], [`Client::track`], [`Client::identify`],
//!   [`Client::flush`], [`Client::close`].
//! - [`ContextBuilder`]: evaluation contexts (single or multi-kind).
//! - [`sse`]: the Server-Sent Events parser, public so that it can be tested and fuzzed alone.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod client;
mod config;
mod context;
mod events;
mod hmac;
mod http;
mod source;
pub mod sse;
mod store;

pub use client::{AllFlagsState, Client, EvaluationDetail, InitializationError};
pub use config::{
    Config, ConfigBuilder, ConfigError, DataSourceConfig, EventsConfig, ServiceEndpoints,
};
pub use context::ContextBuilder;
pub use flagstaff_eval::BootstrapOptions;
pub use flagstaff_protocol::{AttrRef, Context, ContextError, ErrorKind, Reason, ReasonKind};
pub use http::USER_AGENT;
pub use source::file::load as load_flag_files;
pub use source::{DataSourceState, DataSourceStatus, FlagChange};
