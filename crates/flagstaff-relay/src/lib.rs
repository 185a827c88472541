//! `flagstaff relay`: every SDK endpoint the server serves, inside the customer's network, from
//! a copy of an upstream Flagstaff (a server, or another relay) that survives the upstream being
//! unreachable and the relay restarting.
//!
//! The relay is not a second delivery plane: it fills a [`Replica`] (the delivery crate's
//! in-memory source of environments, credentials and a change log) and starts the same
//! [`flagstaff_delivery::Delivery`] over it, so streams, polling, client-side evaluation, secure
//! mode, OFREP, limits and the Redis store behave exactly as on the server.
//!
//! - `upstream.rs`: per environment, the upstream's `/all` stream with the environment's SDK key
//!   (or `/relay/all/…` with the relay token) → the replica; reconnection with doubling delays; the link's status.
//! - `persist.rs`: the last good data on disk, read at start.
//! - `autoconfig.rs`: with a relay token, which environments to serve (and their credential
//!   fingerprints), read from the upstream and followed as they change.
//! - `forward.rs`: received events → the upstream, retried until taken.
//! - `config.rs`: the TOML file.

#![forbid(unsafe_code)]

mod autoconfig;
pub mod bundle;
pub mod config;
mod forward;
mod persist;
mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flagstaff_app::{CredentialKind, HmacKey, SecureMode};
use flagstaff_delivery::replica::{Replica, ReplicaCredential};
use flagstaff_delivery::{Delivery, EnvironmentId, Source};
use tokio::sync::{mpsc, watch};

pub use config::{ConfigError, EnvironmentConfig, LimitsConfig, RelayConfig};
pub use upstream::LinkStatus;

/// Each environment's link status (a list that an offline bundle's reload may grow).
type Links = Arc<Mutex<Vec<(EnvironmentId, Arc<Mutex<LinkStatus>>)>>>;

/// Renders `/metrics` (the binary installs the Prometheus recorder).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Unix milliseconds now.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A relay being started: its replica, delivery and links, before it listens.
#[derive(Debug)]
pub struct Relay {
    /// The delivery plane over the replica.
    pub delivery: Arc<Delivery>,
    replica: Arc<Replica>,
    links: Links,
    /// With a relay token: how reading the configuration goes.
    configuration: Option<Arc<Mutex<autoconfig::ConfigStatus>>>,
}

/// The relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder cannot be made.
    #[error("cannot use the data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Delivery did not start.
    #[error(transparent)]
    Delivery(#[from] flagstaff_delivery::StartError),
    /// The bundle is refused.
    #[error("the bundle: {0}")]
    Bundle(#[from] bundle::BundleError),
    /// The HTTP client could not be built.
    #[error("cannot build the upstream client: {0}")]
    Client(String),
}

impl Relay {
    /// Loads what is on disk, starts delivery and the upstream links, the disk copies and the
    /// events forwarder. With a relay token, the environments come from the upstream
    /// (`autoconfig.rs`) and follow its changes; otherwise they are the configured ones.
    pub async fn start(config: &RelayConfig) -> Result<Relay, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let replica = Arc::new(Replica::default());
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("FlagstaffRelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        let links: Links = Arc::default();
        let mut environments = HashMap::new();
        let mut starts = Vec::new();
        for environment in &config.environments {
            let id = EnvironmentId {
                project: environment.project.clone(),
                environment: environment.key.clone(),
            };
            let settings = upstream::Settings {
                client_side_id: environment.client_side_id.clone().unwrap_or_default(),
                secure_mode: environment.secure_mode.then(|| SecureMode {
                    keys: vec![(HmacKey::new(environment.sdk_key.as_bytes()), None)],
                }),
                credentials: credentials(environment),
            };
            let (status, path, changed_rx, link) = prepare_link(
                &replica,
                &config.data_dir,
                &id,
                settings,
                upstream::UpstreamAuth::SdkKey(environment.sdk_key.clone()),
                &config.upstream,
            );
            starts.push((link, path, changed_rx));
            lock(&links).push((id.clone(), status));
            environments.insert(id, environment.clone());
        }
        let (events, queue) = mpsc::channel(config.events.capacity.max(1));
        let delivery = Delivery::start_from(
            Source::Replica {
                replica: Arc::clone(&replica),
                events: Some(events),
            },
            config.limits.delivery(),
        )
        .await?;
        for (link, path, changed) in starts {
            tokio::spawn(persist::follow(
                Arc::clone(&replica),
                link.id.clone(),
                path,
                changed,
            ));
            tokio::spawn(upstream::follow(
                client.clone(),
                Arc::clone(&replica),
                link,
                config.max_backoff(),
            ));
        }
        let configuration = Arc::new(Mutex::new(autoconfig::ConfigStatus::default()));
        let credentials = match &config.token {
            Some(token) => {
                tokio::spawn(autoconfig::run(autoconfig::Context {
                    client: client.clone(),
                    upstream: config.upstream.clone(),
                    token: token.clone(),
                    data_dir: config.data_dir.clone(),
                    replica: Arc::clone(&replica),
                    links: Arc::clone(&links),
                    max_backoff: config.max_backoff(),
                    interval: config.auto_config_interval(),
                    status: Arc::clone(&configuration),
                }));
                forward::EventsAuth::Token {
                    token: token.clone(),
                    replica: Arc::clone(&replica),
                }
            }
            None => forward::EventsAuth::Keys(environments),
        };
        let forwarder = forward::Forwarder {
            client,
            upstream: config.upstream.clone(),
            credentials,
            max_delay: config.max_backoff(),
        };
        if config.events.spool_bytes > 0 {
            tokio::spawn(forward::forward_spooled(
                forwarder,
                queue,
                forward::Spool {
                    dir: config.data_dir.join("events-spool"),
                    max_bytes: config.events.spool_bytes,
                },
            ));
        } else {
            tokio::spawn(forward::forward(forwarder, queue));
        }
        Ok(Relay {
            delivery,
            replica,
            links,
            configuration: config.token.is_some().then_some(configuration),
        })
    }

    /// Serves an offline bundle with no upstream, and reloads it when the file changes (a
    /// bundle that does not read or verify is refused and the last good one kept, which
    /// `/status` says).
    pub async fn start_offline(config: &OfflineConfig) -> Result<Relay, StartError> {
        let bytes = std::fs::read(&config.bundle).map_err(|source| StartError::DataDir {
            path: config.bundle.display().to_string(),
            source,
        })?;
        let bundle = bundle::read(&bytes, config.verifying_key.as_ref())?;
        let replica = Arc::new(Replica::default());
        let links: Links = Arc::default();
        apply_bundle(&replica, &links, bundle);
        // Received events have nowhere to go: they are parsed (so SDKs get the same answers)
        // and dropped.
        let delivery = Delivery::start_from(
            Source::Replica {
                replica: Arc::clone(&replica),
                events: None,
            },
            config.limits.delivery(),
        )
        .await?;
        tokio::spawn(reload_bundle(
            config.clone(),
            file_stamp(&config.bundle),
            Arc::clone(&replica),
            Arc::clone(&links),
        ));
        Ok(Relay {
            delivery,
            replica,
            links,
            configuration: None,
        })
    }

    /// Every SDK route, plus `/status` and (with a render) `/metrics`.
    pub fn router(&self, metrics: Option<MetricsRender>) -> Router {
        let mut router = flagstaff_delivery::router(Arc::clone(&self.delivery)).merge(
            Router::new()
                .route("/status", get(status))
                .with_state(StatusState {
                    replica: Arc::clone(&self.replica),
                    links: Arc::clone(&self.links),
                    configuration: self.configuration.clone(),
                }),
        );
        if let Some(render) = metrics {
            router = router.route("/metrics", get(move || async move { render() }));
        }
        router
    }
}

/// The credentials of a configured environment, by fingerprint (the relay keeps no plaintext
/// key beyond its configuration, and compares digests as the server does).
fn credentials(environment: &EnvironmentConfig) -> Vec<ReplicaCredential> {
    let mut credentials = vec![ReplicaCredential {
        fingerprint: flagstaff_app::fingerprint(&environment.sdk_key),
        kind: CredentialKind::Sdk,
        expires_at: None,
    }];
    if let Some(key) = &environment.mobile_key {
        credentials.push(ReplicaCredential {
            fingerprint: flagstaff_app::fingerprint(key),
            kind: CredentialKind::Mobile,
            expires_at: None,
        });
    }
    if let Some(id) = &environment.client_side_id {
        credentials.push(ReplicaCredential {
            fingerprint: flagstaff_app::fingerprint(id),
            kind: CredentialKind::ClientSide,
            expires_at: None,
        });
    }
    credentials
}

fn status_json(replica: &Replica, links: &Links) -> serde_json::Value {
    let now = now_millis();
    let links = links.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let statuses: Vec<(EnvironmentId, LinkStatus)> = links
        .iter()
        .map(|(id, status)| {
            let status = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (id.clone(), status)
        })
        .collect();
    let environments: Vec<serde_json::Value> = statuses
        .iter()
        .map(|(id, status)| {
            let (flags, segments) = replica.counts(id);
            let state = match (status.connected, status.stale_since) {
                (true, _) if status.bundle_created_at.is_some() => "offline bundle",
                (true, _) => "connected",
                (false, Some(_)) => "stale",
                (false, None) => "waiting for the upstream",
            };
            serde_json::json!({
                "project": id.project,
                "environment": id.environment,
                "state": state,
                "connected": status.connected,
                "staleSince": status.stale_since,
                "fromDisk": status.from_disk,
                "bundleCreatedAt": status.bundle_created_at,
                "dataAgeMs": status.data_received_at.map(|at| now.saturating_sub(at)),
                "lastError": status.last_error,
                "flags": flags,
                "segments": segments,
            })
        })
        .collect();
    let healthy = statuses
        .iter()
        .all(|(_, s)| s.connected && s.last_error.is_none());
    serde_json::json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "environments": environments,
    })
}

#[derive(Clone)]
struct StatusState {
    replica: Arc<Replica>,
    links: Links,
    configuration: Option<Arc<Mutex<autoconfig::ConfigStatus>>>,
}

/// `GET /status`: per environment, whether the link is up, how old the data is and the last
/// error; with a relay token, how reading the configuration goes. No rules and no keys: what an
/// operator's monitoring needs.
async fn status(State(state): State<StatusState>) -> Response {
    let mut body = status_json(&state.replica, &state.links);
    if let Some(configuration) = &state.configuration {
        let configuration = lock(configuration).clone();
        if configuration.last_error.is_some() {
            body["status"] = serde_json::json!("degraded");
        }
        body["configuration"] = serde_json::to_value(configuration).unwrap_or_default();
    }
    axum::Json(body).into_response()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers an environment in the replica with its settings, loads its disk copy if there is
/// one, and makes the link that follows it upstream (not started).
pub(crate) fn prepare_link(
    replica: &Replica,
    data_dir: &std::path::Path,
    id: &EnvironmentId,
    settings: upstream::Settings,
    auth: upstream::UpstreamAuth,
    upstream: &str,
) -> (
    Arc<Mutex<LinkStatus>>,
    std::path::PathBuf,
    watch::Receiver<u64>,
    upstream::Link,
) {
    replica.set_environment(
        id,
        settings.client_side_id.clone(),
        settings.secure_mode.clone(),
        settings.credentials.clone(),
    );
    let status = Arc::new(Mutex::new(LinkStatus::default()));
    let path = persist::path_of(data_dir, id);
    if let Some((data, saved_at)) = persist::load(&path) {
        tracing::info!(environment = %id, flags = data.flags.len(), "serving the data saved on disk until the upstream answers");
        replica.replace_data(id, data);
        let mut status = lock(&status);
        status.from_disk = true;
        status.data_received_at = Some(saved_at);
        status.stale_since = Some(saved_at);
    }
    let (changed, changed_rx) = watch::channel(0);
    let link = upstream::Link {
        id: id.clone(),
        auth,
        upstream: upstream.to_owned(),
        status: Arc::clone(&status),
        changed,
        settings: Arc::new(Mutex::new(settings)),
    };
    (status, path, changed_rx, link)
}

/// The settings an environment listed by fingerprint (a bundle, or the upstream's answer to a
/// relay token) is served with: its credentials, and secure mode with the SDK keys' HMAC key
/// schedules.
pub(crate) fn settings_of(
    client_side_id: &str,
    secure_mode: bool,
    credentials: &[bundle::BundledCredential],
) -> upstream::Settings {
    upstream::Settings {
        client_side_id: client_side_id.to_owned(),
        secure_mode: secure_mode.then(|| SecureMode {
            keys: credentials
                .iter()
                .filter(|c| c.kind == "sdk")
                .filter_map(|c| {
                    Some((
                        HmacKey::from_hex(c.secure_mode_key.as_deref()?)?,
                        c.expires_at,
                    ))
                })
                .collect(),
        }),
        credentials: credentials
            .iter()
            .filter_map(|c| {
                Some(ReplicaCredential {
                    fingerprint: c.fingerprint.clone(),
                    kind: CredentialKind::parse(&c.kind)?,
                    expires_at: c.expires_at,
                })
            })
            .collect(),
    }
}

/// How an offline relay runs.
#[derive(Clone, Debug)]
pub struct OfflineConfig {
    /// The bundle file (`flagstaff export`).
    pub bundle: std::path::PathBuf,
    /// Only bundles signed by this key's private half are served.
    pub verifying_key: Option<ed25519_dalek::VerifyingKey>,
    /// Bounds on what SDKs may hold.
    pub limits: config::LimitsConfig,
    /// How often the file is checked for a change.
    pub reload_interval: Duration,
}

/// What identifies a version of the file: its modification time and length.
fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Serves a bundle's environments: each one's settings, credentials (fingerprints) and data;
/// environments the previous bundle had and this one lacks lose their credentials (SDKs are
/// refused) rather than being served stale.
fn apply_bundle(replica: &Replica, links: &Links, bundle: bundle::Bundle) {
    let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
    let mut present = Vec::new();
    for environment in bundle.environments {
        let id = EnvironmentId {
            project: environment.project,
            environment: environment.key,
        };
        let settings = settings_of(
            &environment.client_side_id,
            environment.secure_mode,
            &environment.credentials,
        );
        replica.set_environment(
            &id,
            settings.client_side_id,
            settings.secure_mode,
            settings.credentials,
        );
        replica.replace_data(&id, environment.data);
        let status = match links.iter().find(|(known, _)| *known == id) {
            Some((_, status)) => Arc::clone(status),
            None => {
                let status = Arc::new(Mutex::new(LinkStatus::default()));
                links.push((id.clone(), Arc::clone(&status)));
                status
            }
        };
        *status.lock().unwrap_or_else(|e| e.into_inner()) = LinkStatus {
            connected: true,
            data_received_at: Some(bundle.created_at),
            bundle_created_at: Some(bundle.created_at),
            ..LinkStatus::default()
        };
        present.push(id);
    }
    for (id, status) in links.iter() {
        if !present.contains(id) {
            replica.set_environment(id, String::new(), None, Vec::new());
            let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
            status.connected = false;
            status.last_error = Some("not in the current bundle: its keys are refused".into());
        }
    }
}

/// Checks the bundle file every `reload_interval` and serves a new version once it reads and
/// verifies whole. A file being written is refused (gzip's checksum, the signature) until it is
/// complete, so a half-written bundle is never served.
async fn reload_bundle(
    config: OfflineConfig,
    mut stamp: Option<(std::time::SystemTime, u64)>,
    replica: Arc<Replica>,
    links: Links,
) {
    loop {
        tokio::time::sleep(config.reload_interval).await;
        let now = file_stamp(&config.bundle);
        if now.is_none() || now == stamp {
            continue;
        }
        stamp = now;
        let path = config.bundle.clone();
        let key = config.verifying_key;
        let read = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
            bundle::read(&bytes, key.as_ref()).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match read {
            Ok(bundle) => {
                tracing::info!(
                    environments = bundle.environments.len(),
                    created_at = bundle.created_at,
                    "serving the new bundle"
                );
                apply_bundle(&replica, &links, bundle);
            }
            Err(error) => {
                tracing::warn!(%error, "the bundle file changed but is refused; serving the last good one");
                for (_, status) in links.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    status.lock().unwrap_or_else(|e| e.into_inner()).last_error =
                        Some(format!("the bundle file was refused: {error}"));
                }
            }
        }
    }
}
