//! Auto-configuration with a relay token (issue 22): the relay asks its upstream which
//! environments the token may relay (`GET /api/v1/relay/environments`, polled with
//! `If-None-Match` so that an unchanged answer is a bodiless `304`), follows each one's stream
//! with the token (`/relay/all/{project}/{environment}`), and applies every difference as it
//! appears: an environment added starts being served, one removed (or no longer allowed) stops
//! at once (its credentials are withdrawn, its disk copy deleted), and a key rotation changes
//! the fingerprints SDKs are checked against. The relay never receives a plaintext SDK or
//! mobile key; it checks what SDKs present by fingerprint, as the server does.
//!
//! The last configuration read is kept on disk (`<data_dir>/relay-environments.json`, written
//! atomically and readable by the relay's user only: it holds secure-mode key schedules), so a
//! relay restarted while the upstream is down authenticates SDKs as before and serves the data
//! it saved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagstaff_delivery::EnvironmentId;
use flagstaff_delivery::replica::Replica;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::bundle::BundledCredential;
use crate::upstream::{self, LinkStatus, UpstreamAuth};
use crate::{Links, now_millis};

/// One environment as the upstream lists it for the token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AutoEnvironment {
    pub project: String,
    pub key: String,
    pub client_side_id: String,
    pub secure_mode: bool,
    pub credentials: Vec<BundledCredential>,
}

impl AutoEnvironment {
    fn id(&self) -> EnvironmentId {
        EnvironmentId {
            project: self.project.clone(),
            environment: self.key.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Listing {
    environments: Vec<AutoEnvironment>,
}

/// What the relay knows about its configuration source, for `/status`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// When the upstream last answered the configuration request (Unix ms).
    pub checked_at: Option<i64>,
    /// When the configuration last changed (Unix ms).
    pub changed_at: Option<i64>,
    /// The configuration came from the disk copy and the upstream has not answered yet.
    pub from_disk: bool,
    /// The last failure, in words.
    pub last_error: Option<String>,
}

/// Everything a new environment's tasks need.
pub(crate) struct Context {
    pub client: reqwest::Client,
    pub upstream: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub replica: Arc<Replica>,
    pub links: Links,
    pub max_backoff: Duration,
    pub interval: Duration,
    pub status: Arc<Mutex<ConfigStatus>>,
}

/// An environment being served, with its tasks.
struct Running {
    config: AutoEnvironment,
    settings: Arc<Mutex<upstream::Settings>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The file the last configuration is kept in.
fn saved_path(data_dir: &Path) -> PathBuf {
    data_dir.join("relay-environments.json")
}

/// Keys become file names and URL segments: only what Flagstaff itself allows in keys.
fn keyish(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s != "."
        && s != ".."
}

fn save(data_dir: &Path, environments: &[AutoEnvironment]) -> std::io::Result<()> {
    let path = saved_path(data_dir);
    let temporary = path.with_extension("json.tmp");
    let json = serde_json::to_vec(environments).map_err(std::io::Error::other)?;
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        std::io::Write::write_all(&mut file, &json)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)
}

fn load(data_dir: &Path) -> Option<Vec<AutoEnvironment>> {
    let bytes = std::fs::read(saved_path(data_dir)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(environments) => Some(environments),
        Err(e) => {
            tracing::warn!(error = %e, "the saved relay configuration does not parse; waiting for the upstream");
            None
        }
    }
}

/// Follows the upstream's configuration for the token, forever.
pub(crate) async fn run(context: Context) {
    let mut running: HashMap<EnvironmentId, Running> = HashMap::new();
    if let Some(saved) = load(&context.data_dir) {
        tracing::info!(
            environments = saved.len(),
            "serving the relay configuration saved on disk until the upstream answers"
        );
        apply(&context, &mut running, saved);
        context
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .from_disk = true;
    }
    let url = format!(
        "{}/api/v1/relay/environments",
        context.upstream.trim_end_matches('/')
    );
    let mut etag: Option<String> = None;
    let mut delay = context.interval;
    loop {
        let mut request = context
            .client
            .get(&url)
            .bearer_auth(&context.token)
            .timeout(Duration::from_secs(30));
        if let Some(etag) = &etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let outcome = match request.send().await {
            Err(e) => Err(format!(
                "cannot reach the upstream for the configuration: {e}"
            )),
            Ok(response) => {
                let status = response.status();
                let tag = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if status == reqwest::StatusCode::NOT_MODIFIED {
                    Ok(None)
                } else if matches!(status.as_u16(), 401 | 403) {
                    // The token was revoked or lost its role: nothing may be served with it.
                    for (id, environment) in running.drain() {
                        stop(&context, &id, environment, false);
                    }
                    etag = None;
                    Err(format!(
                        "the upstream refused the relay token ({status}); every environment is withdrawn"
                    ))
                } else if !status.is_success() {
                    Err(format!(
                        "the upstream answered {status} for the configuration"
                    ))
                } else {
                    match response.json::<Listing>().await {
                        Ok(listing) => {
                            etag = tag;
                            Ok(Some(listing.environments))
                        }
                        Err(e) => Err(format!("the configuration does not parse: {e}")),
                    }
                }
            }
        };
        match outcome {
            Ok(listing) => {
                delay = context.interval;
                let changed = match &listing {
                    Some(environments) => {
                        if let Err(e) = save(&context.data_dir, environments) {
                            tracing::warn!(error = %e, "cannot save the relay configuration");
                        }
                        apply(&context, &mut running, environments.clone())
                    }
                    None => false,
                };
                let mut status = context.status.lock().unwrap_or_else(|e| e.into_inner());
                status.checked_at = Some(now_millis());
                status.last_error = None;
                if listing.is_some() {
                    status.from_disk = false;
                }
                if changed {
                    status.changed_at = Some(now_millis());
                }
            }
            Err(error) => {
                tracing::warn!(%error, "relay configuration");
                context
                    .status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_error = Some(error);
                delay = (delay * 2).min(context.max_backoff.max(context.interval));
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// Makes the served environments those listed; returns whether anything changed.
fn apply(
    context: &Context,
    running: &mut HashMap<EnvironmentId, Running>,
    environments: Vec<AutoEnvironment>,
) -> bool {
    let mut changed = false;
    let mut listed = Vec::new();
    for environment in environments {
        if !keyish(&environment.project) || !keyish(&environment.key) {
            tracing::warn!(project = %environment.project, environment = %environment.key, "an environment with an unusable key; ignored");
            continue;
        }
        let id = environment.id();
        listed.push(id.clone());
        let settings = crate::settings_of(
            &environment.client_side_id,
            environment.secure_mode,
            &environment.credentials,
        );
        match running.get_mut(&id) {
            Some(current) if current.config == environment => {}
            Some(current) => {
                // A rotation, secure mode turned on or off: SDKs are checked against the new
                // fingerprints from now on.
                tracing::info!(environment = %id, "environment settings changed upstream");
                *current.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings.clone();
                context.replica.set_environment(
                    &id,
                    settings.client_side_id,
                    settings.secure_mode,
                    settings.credentials,
                );
                current.config = environment;
                changed = true;
            }
            None => {
                tracing::info!(environment = %id, "serving an environment the token may relay");
                let started = start(context, &id, settings);
                running.insert(
                    id,
                    Running {
                        config: environment,
                        settings: started.0,
                        tasks: started.1,
                    },
                );
                changed = true;
            }
        }
    }
    let gone: Vec<EnvironmentId> = running
        .keys()
        .filter(|id| !listed.contains(id))
        .cloned()
        .collect();
    for id in gone {
        if let Some(environment) = running.remove(&id) {
            tracing::info!(environment = %id, "no longer relayed: its keys are refused from now on");
            stop(context, &id, environment, true);
            changed = true;
        }
    }
    changed
}

/// Starts serving an environment: its credentials, its disk copy, its upstream stream.
fn start(
    context: &Context,
    id: &EnvironmentId,
    settings: upstream::Settings,
) -> (Arc<Mutex<upstream::Settings>>, Vec<JoinHandle<()>>) {
    let (status, path, changed_rx, link) = crate::prepare_link(
        &context.replica,
        &context.data_dir,
        id,
        settings,
        UpstreamAuth::Token(context.token.clone()),
        &context.upstream,
    );
    let settings = Arc::clone(&link.settings);
    let mut links = context.links.lock().unwrap_or_else(|e| e.into_inner());
    // An environment served again after the token was refused a while gets a fresh status.
    links.retain(|(known, _)| known != id);
    links.push((id.clone(), status));
    drop(links);
    let tasks = vec![
        tokio::spawn(crate::persist::follow(
            Arc::clone(&context.replica),
            id.clone(),
            path,
            changed_rx,
        )),
        tokio::spawn(upstream::follow(
            context.client.clone(),
            Arc::clone(&context.replica),
            link,
            context.max_backoff,
        )),
    ];
    (settings, tasks)
}

/// Stops serving an environment: its tasks end, SDKs presenting its keys are refused. With
/// `forget`, its status entry and disk copy go too (it was removed upstream, not refused).
fn stop(context: &Context, id: &EnvironmentId, environment: Running, forget: bool) {
    for task in environment.tasks {
        task.abort();
    }
    context
        .replica
        .set_environment(id, String::new(), None, Vec::new());
    let mut links = context.links.lock().unwrap_or_else(|e| e.into_inner());
    if forget {
        links.retain(|(known, _)| known != id);
        let _ = std::fs::remove_file(crate::persist::path_of(&context.data_dir, id));
    } else if let Some((_, status)) = links.iter().find(|(known, _)| known == id) {
        let mut status: std::sync::MutexGuard<'_, LinkStatus> =
            status.lock().unwrap_or_else(|e| e.into_inner());
        status.connected = false;
        status.last_error = Some("the upstream refused the relay token".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_would_escape_a_folder_or_a_url_are_unusable() {
        for good in ["production", "shop-2", "a_b.c"] {
            assert!(keyish(good), "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "a%2f"] {
            assert!(!keyish(bad), "{bad}");
        }
    }
}
