//! The HTTP client every data source and the event sender share, with the headers LaunchDarkly's
//! server-side SDKs send (`ld-protocol.md` §4.1).

use reqwest::header::{HeaderMap, HeaderValue};

use crate::config::{Config, ConfigError, ServiceEndpoints};

/// The `User-Agent` of this SDK.
pub const USER_AGENT: &str = concat!("FlagstaffRustSDK/", env!("CARGO_PKG_VERSION"));

/// A configured client plus the endpoints.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    endpoints: ServiceEndpoints,
    request_timeout: std::time::Duration,
}

impl Http {
    pub(crate) fn new(config: &Config) -> Result<Http, ConfigError> {
        let mut headers = HeaderMap::new();
        let key = HeaderValue::from_str(&config.sdk_key).map_err(|_| ConfigError::InvalidSdkKey)?;
        headers.insert("authorization", key);
        headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
        if let Some(wrapper) = config
            .wrapper
            .as_deref()
            .and_then(|w| HeaderValue::from_str(w).ok())
        {
            headers.insert("x-launchdarkly-wrapper", wrapper);
        }
        if let Some(tags) = config
            .tags
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            headers.insert("x-launchdarkly-tags", tags);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(Http {
            client,
            endpoints: config
                .endpoints
                .clone()
                .unwrap_or_else(|| ServiceEndpoints::all("http://127.0.0.1")),
            request_timeout: config.request_timeout,
        })
    }

    /// A GET without an overall timeout (streams end when the server or the read timeout says).
    pub(crate) fn stream_get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url)
    }

    /// A GET bounded by the request timeout.
    pub(crate) fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url).timeout(self.request_timeout)
    }

    /// A POST bounded by the request timeout.
    pub(crate) fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.post(url).timeout(self.request_timeout)
    }

    pub(crate) fn endpoints(&self) -> &ServiceEndpoints {
        &self.endpoints
    }

    pub(crate) fn endpoints_events(&self) -> &str {
        &self.endpoints.events
    }
}
