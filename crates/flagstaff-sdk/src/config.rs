//! Client configuration: where the server is, how data arrives, what events are sent.
//!
//! Names follow LaunchDarkly's SDKs (`ld-protocol.md` §7.1) so that a team moving a service over
//! recognises every setting. Unlike LaunchDarkly's SDKs there are no default hosts: a Flagstaff
//! client is always pointed at its own server, and setting one base URI sets all three services,
//! which avoids the "partial endpoint configuration" trap of §7.2 item 1.

use std::path::PathBuf;
use std::time::Duration;

use flagstaff_protocol::AttrRef;

/// The three services an SDK talks to (§7.1). Trailing slashes are removed; a path prefix is
/// kept (`https://ff.example.com/ld`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoints {
    /// Polling: `{polling}/sdk/latest-all`.
    pub polling: String,
    /// Streaming: `{streaming}/all`.
    pub streaming: String,
    /// Events: `{events}/bulk`.
    pub events: String,
}

impl ServiceEndpoints {
    /// One server for everything: Flagstaff (or a LaunchDarkly Relay Proxy) serves all three.
    pub fn all(base: &str) -> ServiceEndpoints {
        let base = trim(base);
        ServiceEndpoints {
            polling: base.clone(),
            streaming: base.clone(),
            events: base,
        }
    }
}

fn trim(uri: &str) -> String {
    uri.trim().trim_end_matches('/').to_owned()
}

/// How flag data reaches the client.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSourceConfig {
    /// A persistent Server-Sent Events connection to `{streaming}/all` (the default).
    Streaming {
        /// The first reconnection delay; doubles up to 30 s (default 1 s).
        initial_reconnect_delay: Duration,
        /// Reconnect when nothing, not even a heartbeat, arrived for this long (default 5 min).
        read_timeout: Duration,
    },
    /// `GET {polling}/sdk/latest-all` every `interval`, with `If-None-Match`; for networks that
    /// buffer or cut long-lived responses, and for short-lived processes.
    Polling {
        /// Between two polls (default 30 s, as LaunchDarkly's SDKs).
        interval: Duration,
    },
    /// Flag data from local JSON files, for tests and air-gapped use. See
    /// [`crate::FileDataSource`] for the format.
    File {
        /// The files, merged in order; a key defined twice is an error.
        paths: Vec<PathBuf>,
        /// Re-read the files when they change, checking this often (`None`: read once).
        reload: Option<Duration>,
    },
}

impl DataSourceConfig {
    /// Streaming with LaunchDarkly's defaults.
    pub fn streaming() -> DataSourceConfig {
        DataSourceConfig::Streaming {
            initial_reconnect_delay: Duration::from_secs(1),
            read_timeout: Duration::from_secs(5 * 60),
        }
    }

    /// Polling every `interval` (at least one second).
    pub fn polling(interval: Duration) -> DataSourceConfig {
        DataSourceConfig::Polling {
            interval: interval.max(Duration::from_secs(1)),
        }
    }

    /// Files read once.
    pub fn file<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> DataSourceConfig {
        DataSourceConfig::File {
            paths: paths.into_iter().map(Into::into).collect(),
            reload: None,
        }
    }
}

/// What analytics events are sent (§6).
#[derive(Clone, Debug, PartialEq)]
pub struct EventsConfig {
    /// Whether events are sent at all (default true).
    pub enabled: bool,
    /// How many full events (feature, custom, identify, index) wait for the next flush; beyond
    /// it events are dropped and counted, never waited for (default 10,000). Summaries are not
    /// limited by this.
    pub capacity: usize,
    /// Between two flushes (default 5 s).
    pub flush_interval: Duration,
    /// Redact every attribute but `kind`, `key` and `anonymous` from events.
    pub all_attributes_private: bool,
    /// Attributes redacted from every context in events (attribute references: `email`,
    /// `/address/city`).
    pub private_attributes: Vec<AttrRef>,
    /// How many context keys are remembered to avoid sending the same `index` event twice
    /// (default 1,000).
    pub context_keys_capacity: usize,
    /// How often those remembered keys are forgotten (default 5 min).
    pub context_keys_flush_interval: Duration,
    /// Gzip event payloads (default true).
    pub compress: bool,
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            enabled: true,
            capacity: 10_000,
            flush_interval: Duration::from_secs(5),
            all_attributes_private: false,
            private_attributes: Vec::new(),
            context_keys_capacity: 1_000,
            context_keys_flush_interval: Duration::from_secs(5 * 60),
            compress: true,
        }
    }
}

/// Everything a [`crate::Client`] needs. Built with [`Config::builder`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) sdk_key: String,
    pub(crate) endpoints: Option<ServiceEndpoints>,
    pub(crate) data_source: DataSourceConfig,
    pub(crate) events: EventsConfig,
    pub(crate) offline: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) wrapper: Option<String>,
    pub(crate) tags: Option<String>,
}

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Streaming, polling or events need a server, and none was given.
    #[error(
        "no base URI: call ConfigBuilder::base_uri (or endpoints) unless the client is offline with a file data source"
    )]
    MissingEndpoints,
    /// A URI that is not `http://` or `https://`.
    #[error("{0:?} is not an http:// or https:// URI")]
    InvalidUri(String),
    /// An `https://` URI without TLS support compiled in.
    #[error("{0:?} needs TLS: enable the `rustls` feature of flagstaff-sdk")]
    TlsNotEnabled(String),
    /// The SDK key would not fit in an HTTP header.
    #[error("the SDK key contains characters not allowed in an HTTP header")]
    InvalidSdkKey,
    /// The file data source has no files.
    #[error("the file data source needs at least one path")]
    NoFiles,
    /// The HTTP client could not be set up (for example, TLS could not load root certificates).
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
    /// [`crate::Client::new`] was called outside a Tokio runtime.
    #[error("the client must be created inside a Tokio runtime (it runs its connections there)")]
    NoRuntime,
}

impl Config {
    /// Starts a configuration for `sdk_key`.
    pub fn builder(sdk_key: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                sdk_key: sdk_key.into(),
                endpoints: None,
                data_source: DataSourceConfig::streaming(),
                events: EventsConfig::default(),
                offline: false,
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(30),
                wrapper: None,
                tags: None,
            },
        }
    }

    /// Whether the client makes no network connection at all.
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// The data source.
    pub fn data_source(&self) -> &DataSourceConfig {
        &self.data_source
    }

    /// The events settings.
    pub fn events(&self) -> &EventsConfig {
        &self.events
    }

    /// Whether events go out: enabled, not offline, and somewhere to send them.
    pub(crate) fn sends_events(&self) -> bool {
        self.events.enabled && !self.offline && self.endpoints.is_some()
    }
}

/// Builds a [`Config`].
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// One server for streaming, polling and events (`http://localhost:8080`).
    pub fn base_uri(mut self, uri: &str) -> ConfigBuilder {
        self.config.endpoints = Some(ServiceEndpoints::all(uri));
        self
    }

    /// Separate URIs per service.
    pub fn endpoints(mut self, endpoints: ServiceEndpoints) -> ConfigBuilder {
        self.config.endpoints = Some(ServiceEndpoints {
            polling: trim(&endpoints.polling),
            streaming: trim(&endpoints.streaming),
            events: trim(&endpoints.events),
        });
        self
    }

    /// How flag data arrives (default: streaming).
    pub fn data_source(mut self, data_source: DataSourceConfig) -> ConfigBuilder {
        self.config.data_source = data_source;
        self
    }

    /// Events settings.
    pub fn events(mut self, events: EventsConfig) -> ConfigBuilder {
        self.config.events = events;
        self
    }

    /// Turns events off (or on).
    pub fn send_events(mut self, send: bool) -> ConfigBuilder {
        self.config.events.enabled = send;
        self
    }

    /// No network at all: no streaming, polling or events. Evaluations use the file data
    /// source when one is configured, else return the caller's default.
    pub fn offline(mut self, offline: bool) -> ConfigBuilder {
        self.config.offline = offline;
        self
    }

    /// TCP connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ConfigBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// Whole-request timeout for polls and event posts (default 30 s); streams use
    /// the data source's read timeout instead.
    pub fn request_timeout(mut self, timeout: Duration) -> ConfigBuilder {
        self.config.request_timeout = timeout;
        self
    }

    /// A wrapper around this SDK (for example an OpenFeature provider), sent as
    /// `X-LaunchDarkly-Wrapper: name/version` (§4.1).
    pub fn wrapper(mut self, name: &str, version: Option<&str>) -> ConfigBuilder {
        self.config.wrapper = Some(match version {
            Some(v) => format!("{name}/{v}"),
            None => name.to_owned(),
        });
        self
    }

    /// The application's ID and version, sent as `X-LaunchDarkly-Tags` (§4.1). Values outside
    /// `[A-Za-z0-9._-]` or longer than 64 characters are dropped, as LaunchDarkly's SDKs do.
    pub fn application_info(mut self, id: Option<&str>, version: Option<&str>) -> ConfigBuilder {
        let valid = |v: &&str| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        let mut tags = Vec::new();
        if let Some(id) = id.filter(valid) {
            tags.push(format!("application-id/{id}"));
        }
        if let Some(version) = version.filter(valid) {
            tags.push(format!("application-version/{version}"));
        }
        self.config.tags = (!tags.is_empty()).then(|| tags.join(" "));
        self
    }

    /// Checks and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let config = self.config;
        if config.sdk_key.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(ConfigError::InvalidSdkKey);
        }
        if let DataSourceConfig::File { paths, .. } = &config.data_source
            && paths.is_empty()
        {
            return Err(ConfigError::NoFiles);
        }
        let needs_server = !config.offline
            && (config.events.enabled
                || !matches!(config.data_source, DataSourceConfig::File { .. }));
        match &config.endpoints {
            None if needs_server => return Err(ConfigError::MissingEndpoints),
            None => {}
            Some(endpoints) => {
                for uri in [&endpoints.polling, &endpoints.streaming, &endpoints.events] {
                    check_uri(uri)?;
                }
            }
        }
        Ok(config)
    }
}

fn check_uri(uri: &str) -> Result<(), ConfigError> {
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with("https://") {
        if cfg!(feature = "rustls") {
            return Ok(());
        }
        return Err(ConfigError::TlsNotEnabled(uri.to_owned()));
    }
    if !lower.starts_with("http://") || reqwest::Url::parse(uri).is_err() {
        return Err(ConfigError::InvalidUri(uri.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_base_uri_sets_all_three_without_trailing_slashes() {
        let config = Config::builder("sdk-1")
            .base_uri("http://ff.example.com/ld/")
            .build()
            .unwrap();
        assert_eq!(
            config.endpoints,
            Some(ServiceEndpoints::all("http://ff.example.com/ld"))
        );
        assert_eq!(config.endpoints.unwrap().events, "http://ff.example.com/ld");
    }

    #[test]
    fn a_server_is_required_unless_offline_or_file_without_events() {
        assert_eq!(
            Config::builder("k").build().unwrap_err(),
            ConfigError::MissingEndpoints
        );
        assert!(Config::builder("k").offline(true).build().is_ok());
        let file = Config::builder("k").data_source(DataSourceConfig::file(["flags.json"]));
        assert_eq!(
            file.clone().build().unwrap_err(),
            ConfigError::MissingEndpoints
        );
        assert!(file.send_events(false).build().is_ok());
        assert_eq!(
            Config::builder("k")
                .offline(true)
                .data_source(DataSourceConfig::file(Vec::<PathBuf>::new()))
                .build()
                .unwrap_err(),
            ConfigError::NoFiles
        );
    }

    #[test]
    fn bad_uris_and_keys_are_refused() {
        assert!(matches!(
            Config::builder("k").base_uri("ftp://x").build(),
            Err(ConfigError::InvalidUri(_))
        ));
        assert!(matches!(
            Config::builder("k\n").base_uri("http://x").build(),
            Err(ConfigError::InvalidSdkKey)
        ));
        let https = Config::builder("k")
            .base_uri("https://ff.example.com")
            .build();
        if cfg!(feature = "rustls") {
            assert!(https.is_ok());
        } else {
            assert!(matches!(https, Err(ConfigError::TlsNotEnabled(_))));
        }
    }

    #[test]
    fn application_tags_keep_only_valid_values() {
        let config = Config::builder("k")
            .offline(true)
            .application_info(Some("checkout"), Some("1.2.3+build"))
            .build()
            .unwrap();
        assert_eq!(config.tags.as_deref(), Some("application-id/checkout"));
        let config = Config::builder("k")
            .offline(true)
            .application_info(Some("a"), Some("1.2"))
            .build()
            .unwrap();
        assert_eq!(
            config.tags.as_deref(),
            Some("application-id/a application-version/1.2")
        );
    }
}
