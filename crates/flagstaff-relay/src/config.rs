//! The relay's configuration: a TOML file, with the command line and `FLAGSTAFF_RELAY_*`
//! environment variables taking precedence for the settings that have them (the binary's
//! `relay.rs` merges those).
//!
//! ```toml
//! upstream = "https://flags.example.com"   # a Flagstaff server, or another relay
//! listen = "0.0.0.0:8030"
//! data_dir = "/var/lib/flagstaff-relay"   # the last good data, kept for restarts
//!
//! # Either a relay token (every environment it may relay, followed live; upstream: a server)…
//! token = "fst_…"
//! # …or the environments by key:
//! [[environment]]
//! project = "shop"          # how the relay names it (status, logs, Redis prefixes)
//! key = "production"
//! sdk_key = "sdk-…"         # required: the relay reads the upstream with it
//! mobile_key = "mob-…"      # optional: serve mobile SDKs too
//! client_side_id = "…"      # optional: serve browsers too
//! secure_mode = false       # browsers must send the context's hash (§5.7)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The base URL of the upstream (a Flagstaff server or another relay).
    pub upstream: String,
    /// Where the relay listens for SDKs.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the last good data of each environment is kept.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A relay token (an API token whose roles allow `relayEnvironment`): the environments
    /// come from the upstream and follow its changes. Exclusive with `[[environment]]`.
    #[serde(default)]
    pub token: Option<String>,
    /// With a token: how often the upstream is asked whether the environments changed, in
    /// milliseconds (an unchanged answer is a bodiless `304`).
    #[serde(default = "default_auto_config_interval_ms")]
    pub auto_config_interval_ms: u64,
    /// The environments served, when there is no token.
    #[serde(default, rename = "environment")]
    pub environments: Vec<EnvironmentConfig>,
    /// Events forwarding.
    #[serde(default)]
    pub events: EventsConfig,
    /// What SDKs may hold open (as `flagstaff serve`'s options of the same names).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The longest wait between two attempts to reach the upstream, in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

/// One environment served by the relay.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// The project key the relay uses for it.
    #[serde(default = "default_project")]
    pub project: String,
    /// The environment key the relay uses for it.
    pub key: String,
    /// The SDK key: the relay reads the upstream with it, and SDKs present it.
    pub sdk_key: String,
    /// The mobile key, when mobile SDKs are served.
    #[serde(default)]
    pub mobile_key: Option<String>,
    /// The client-side ID, when browsers are served.
    #[serde(default)]
    pub client_side_id: Option<String>,
    /// Whether browsers must send the context's hash.
    #[serde(default)]
    pub secure_mode: bool,
}

/// How events are forwarded.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Payloads held in memory while the upstream is slow or down; more are dropped (counted).
    #[serde(default = "default_events_capacity")]
    pub capacity: usize,
    /// With a size above 0, payloads wait on disk (`<data_dir>/events-spool`) rather than in
    /// memory, up to this many bytes in all, so that an upstream outage (and a relay restart
    /// during it) loses nothing up to that size.
    #[serde(default)]
    pub spool_bytes: u64,
}

/// Bounds on what SDKs may hold (the relay is exposed to as many SDKs as the server).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Server-side SDK streams at once.
    pub max_sdk_streams: usize,
    /// Browser and mobile streams at once.
    pub max_client_streams: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_connections_per_address: usize,
    /// Seconds between heartbeats on idle streams.
    pub heartbeat_seconds: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let delivery = flagstaff_delivery::DeliveryConfig::default();
        LimitsConfig {
            max_sdk_streams: delivery.max_streams,
            max_client_streams: delivery.max_client_streams,
            max_connections: delivery.max_connections,
            max_connections_per_address: delivery.max_connections_per_address,
            heartbeat_seconds: delivery.heartbeat_interval.as_secs(),
        }
    }
}

impl LimitsConfig {
    /// The delivery configuration these limits make.
    pub fn delivery(&self) -> flagstaff_delivery::DeliveryConfig {
        flagstaff_delivery::DeliveryConfig {
            max_streams: self.max_sdk_streams,
            max_client_streams: self.max_client_streams,
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address.max(1),
            heartbeat_interval: Duration::from_secs(self.heartbeat_seconds.max(1)),
            // Serving the last data through an upstream outage is what a relay is for; its
            // `/status` says how old the data is.
            stale_after: None,
            ..flagstaff_delivery::DeliveryConfig::default()
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            capacity: default_events_capacity(),
            spool_bytes: 0,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8031".to_owned()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./flagstaff-relay-data")
}

fn default_project() -> String {
    "default".to_owned()
}

fn default_events_capacity() -> usize {
    10_000
}

fn default_auto_config_interval_ms() -> u64 {
    5_000
}

fn default_max_backoff_ms() -> u64 {
    5_000
}

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not TOML of this shape.
    #[error("the relay configuration: {0}")]
    Parse(String),
    /// A setting is wrong.
    #[error("the relay configuration: {field}: {message}")]
    Invalid {
        /// Where (`environment[1].key`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl RelayConfig {
    /// Reads a TOML configuration and checks it.
    pub fn from_toml(text: &str) -> Result<RelayConfig, ConfigError> {
        let config: RelayConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot: URLs, keys, duplicates.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, message: &str| ConfigError::Invalid {
            field,
            message: message.to_owned(),
        };
        if !(self.upstream.starts_with("http://") || self.upstream.starts_with("https://")) {
            return Err(invalid(
                "upstream".into(),
                "must be an http:// or https:// URL",
            ));
        }
        match &self.token {
            Some(token) if token.trim().is_empty() || token.contains(char::is_whitespace) => {
                return Err(invalid("token".into(), "an API token, without spaces"));
            }
            Some(_) if !self.environments.is_empty() => {
                return Err(invalid(
                    "environment".into(),
                    "a relay token configures the environments itself: remove [[environment]] or the token",
                ));
            }
            Some(_) => {}
            None if self.environments.is_empty() => {
                return Err(invalid(
                    "environment".into(),
                    "name at least one environment ([[environment]] with key and sdk_key), or give a relay token",
                ));
            }
            None => {}
        }
        let mut seen = std::collections::HashSet::new();
        for (i, environment) in self.environments.iter().enumerate() {
            let keyish = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            };
            if !keyish(&environment.project) {
                return Err(invalid(
                    format!("environment[{i}].project"),
                    "letters, digits, '-', '_' and '.' only",
                ));
            }
            if !keyish(&environment.key) {
                return Err(invalid(
                    format!("environment[{i}].key"),
                    "letters, digits, '-', '_' and '.' only",
                ));
            }
            if environment.sdk_key.trim().is_empty() || environment.sdk_key.contains(' ') {
                return Err(invalid(
                    format!("environment[{i}].sdk_key"),
                    "an SDK key, without spaces",
                ));
            }
            if !seen.insert((environment.project.clone(), environment.key.clone())) {
                return Err(invalid(
                    format!("environment[{i}].key"),
                    "this project and key are named twice",
                ));
            }
        }
        Ok(())
    }

    /// How often the configuration is read with a relay token.
    pub fn auto_config_interval(&self) -> Duration {
        Duration::from_millis(self.auto_config_interval_ms.max(100))
    }

    /// The longest wait between two attempts to reach the upstream.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_reads_with_defaults() {
        let config = RelayConfig::from_toml(
            r#"
upstream = "http://127.0.0.1:8030"
[[environment]]
key = "production"
sdk_key = "sdk-1"
client_side_id = "cid"
"#,
        )
        .unwrap();
        assert_eq!(config.environments[0].project, "default");
        assert_eq!(config.listen, "127.0.0.1:8031");
        assert_eq!(config.events.capacity, 10_000);
        assert!(!config.environments[0].secure_mode);
    }

    #[test]
    fn mistakes_name_their_field() {
        let error = |text: &str| RelayConfig::from_toml(text).unwrap_err().to_string();
        assert!(
            error("upstream = 'ftp://x'\n[[environment]]\nkey='p'\nsdk_key='s'")
                .contains("upstream")
        );
        assert!(error("upstream = 'http://x'").contains("environment"));
        assert!(
            error("upstream = 'http://x'\n[[environment]]\nkey='a b'\nsdk_key='s'")
                .contains("environment[0].key")
        );
        assert!(
            error("upstream = 'http://x'\n[[environment]]\nkey='a'\nsdk_key='s'\n[[environment]]\nkey='a'\nsdk_key='t'")
                .contains("environment[1].key")
        );
        assert!(error("upstream = 'http://x'\nsurprise = 1").contains("surprise"));
        assert!(
            error("upstream = 'http://x'\ntoken = 'fst_1'\n[[environment]]\nkey='a'\nsdk_key='s'")
                .contains("remove [[environment]]")
        );
        assert!(error("upstream = 'http://x'\ntoken = 'a b'").contains("token"));
        let auto = RelayConfig::from_toml("upstream = 'http://x'\ntoken = 'fst_1'").unwrap();
        assert_eq!(auto.auto_config_interval(), Duration::from_secs(5));
    }
}
