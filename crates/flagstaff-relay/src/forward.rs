//! Events received by the relay, sent on to the upstream (`ld-protocol.md` §6).
//!
//! Delivery answers SDKs `202` as soon as a payload parses and hands it here through a bounded
//! queue ([`flagstaff_delivery::Source::Replica`]); a full queue drops the payload and counts it,
//! as the server's own pipeline does. One task sends the payloads in order, each gzipped, with
//! the SDK's payload ID (or one the relay makes) and the headers that say which SDK sent it, to
//! the path that matches how it came in: `/bulk` or `/diagnostic` with the SDK key for server
//! SDKs, `/events/bulk/{clientSideId}` for browsers and phones (or `/mobile/events/bulk` with
//! the mobile key when no client-side ID is configured). A payload that fails is retried with
//! doubling delays until the upstream takes it, so an outage shorter than the queue loses
//! nothing; the upstream drops a payload ID it has already seen, so a retry after an
//! acknowledgement that got lost counts once. With `[events] spool_bytes`, payloads wait in
//! files instead ([`Spool`]), which also outlive a restart of the relay.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flagstaff_delivery::replica::Replica;
use flagstaff_delivery::{EnvironmentId, RelayedPayload};
use tokio::sync::mpsc;

use crate::config::EnvironmentConfig;

/// Sends payloads to the upstream.
#[derive(Clone)]
pub(crate) struct Forwarder {
    pub client: reqwest::Client,
    pub upstream: String,
    pub credentials: EventsAuth,
    pub max_delay: Duration,
}

/// What the relay sends events upstream with.
#[derive(Clone)]
pub(crate) enum EventsAuth {
    /// The configured environments' keys.
    Keys(HashMap<EnvironmentId, EnvironmentConfig>),
    /// A relay token: server-side events go to `/relay/bulk/…` with it, browser and mobile
    /// events to the environment's public client-side ID route.
    Token {
        token: String,
        replica: Arc<Replica>,
    },
}

impl EventsAuth {
    /// The upstream path and `Authorization` value for a payload of an environment.
    fn destination(
        &self,
        id: &EnvironmentId,
        server_side: bool,
        diagnostic: bool,
    ) -> Option<(String, Option<String>)> {
        match self {
            EventsAuth::Keys(environments) => {
                destination(server_side, diagnostic, environments.get(id)?)
            }
            EventsAuth::Token { token, replica } => {
                let kind = if diagnostic { "diagnostic" } else { "bulk" };
                if server_side {
                    return Some((
                        format!("/relay/{kind}/{}/{}", id.project, id.environment),
                        Some(format!("Bearer {token}")),
                    ));
                }
                let client_side_id = replica.client_side_id(id)?;
                (!client_side_id.is_empty())
                    .then(|| (format!("/events/{kind}/{client_side_id}"), None))
            }
        }
    }
}

/// A payload on its way: what came in, with its payload ID fixed (spooled as JSON).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outgoing {
    project: String,
    environment: String,
    server_side: bool,
    diagnostic: bool,
    headers: Vec<(String, String)>,
    payload_id: String,
    /// The JSON text (it parsed, so it is UTF-8).
    body: String,
}

impl Outgoing {
    fn from(payload: RelayedPayload) -> Outgoing {
        Outgoing {
            project: payload.environment.project,
            environment: payload.environment.environment,
            server_side: payload.server_side,
            diagnostic: payload.diagnostic,
            headers: payload.headers,
            payload_id: payload
                .payload_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            body: String::from_utf8_lossy(&payload.body).into_owned(),
        }
    }
}

impl Forwarder {
    /// Sends one payload, retrying with doubling delays until the upstream takes it or refuses
    /// it for good.
    async fn send(&self, payload: &Outgoing) {
        let id = EnvironmentId {
            project: payload.project.clone(),
            environment: payload.environment.clone(),
        };
        let Some((path, key)) =
            self.credentials
                .destination(&id, payload.server_side, payload.diagnostic)
        else {
            tracing::warn!(environment = %id, "no credential to forward client events with");
            return;
        };
        let upstream = self.upstream.trim_end_matches('/');
        let body = gzip(payload.body.as_bytes());
        let mut delay = Duration::from_millis(200);
        loop {
            let mut request = self
                .client
                .post(format!("{upstream}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .header("x-launchdarkly-payload-id", &payload.payload_id)
                .body(body.clone());
            if let Some(key) = &key {
                request = request.header(reqwest::header::AUTHORIZATION, key);
            }
            for (name, value) in &payload.headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    metrics::counter!("flagstaff_relay_events_forwarded_total").increment(1);
                    return;
                }
                Ok(response)
                    if response.status().is_client_error()
                        && !matches!(response.status().as_u16(), 408 | 429) =>
                {
                    // The upstream will never take it (a key revoked upstream, a payload it
                    // refuses): retrying would block every payload behind it.
                    tracing::warn!(status = %response.status(), environment = %id, "the upstream refused an events payload; dropped");
                    metrics::counter!("flagstaff_relay_events_refused_total").increment(1);
                    return;
                }
                Ok(response) => {
                    tracing::debug!(status = %response.status(), "events not taken; retrying");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot reach the upstream with events; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.max_delay);
        }
    }
}

/// Sends queued payloads upstream in order, holding them in memory only, forever.
pub(crate) async fn forward(forwarder: Forwarder, mut queue: mpsc::Receiver<RelayedPayload>) {
    while let Some(payload) = queue.recv().await {
        forwarder.send(&Outgoing::from(payload)).await;
    }
}

/// The on-disk spool: each payload a file `<sequence>.json` in `dir`, written (synced, renamed
/// into place) as it arrives and removed once the upstream took it, so that payloads survive
/// an upstream outage and a relay restart, up to `max_bytes` in all (beyond it new payloads
/// are dropped and counted).
pub(crate) struct Spool {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// The spooled files, oldest first, with their sizes.
fn spooled(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Spools queued payloads and sends the spool upstream, oldest first, forever.
pub(crate) async fn forward_spooled(
    forwarder: Forwarder,
    mut queue: mpsc::Receiver<RelayedPayload>,
    spool: Spool,
) {
    if let Err(e) = std::fs::create_dir_all(&spool.dir) {
        tracing::error!(dir = %spool.dir.display(), error = %e, "cannot make the events spool; events are forwarded from memory only");
        return forward(forwarder, queue).await;
    }
    let existing = spooled(&spool.dir);
    let held = Arc::new(AtomicU64::new(existing.iter().map(|(_, size)| size).sum()));
    let next = existing
        .last()
        .and_then(|(path, _)| path.file_stem()?.to_str()?.parse::<u64>().ok())
        .map_or(1, |n| n + 1);
    if !existing.is_empty() {
        tracing::info!(
            payloads = existing.len(),
            "sending the events spooled before the restart"
        );
    }
    let written = Arc::new(tokio::sync::Notify::new());
    // The writer: from the queue into files.
    let (dir, writer_held, writer_written) =
        (spool.dir.clone(), Arc::clone(&held), Arc::clone(&written));
    tokio::spawn(async move {
        let mut sequence = next;
        while let Some(payload) = queue.recv().await {
            let Ok(json) = serde_json::to_vec(&Outgoing::from(payload)) else {
                continue;
            };
            let size = json.len() as u64;
            if writer_held.load(Ordering::SeqCst) + size > spool.max_bytes {
                metrics::counter!("flagstaff_relay_events_dropped_total").increment(1);
                tracing::warn!("the events spool is full; a payload was dropped");
                continue;
            }
            let path = dir.join(format!("{sequence:020}.json"));
            sequence += 1;
            let write = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let temporary = path.with_extension("tmp");
                let mut file = std::fs::File::create(&temporary)?;
                file.write_all(&json)?;
                file.sync_all()?;
                std::fs::rename(&temporary, &path)
            })
            .await;
            match write {
                Ok(Ok(())) => {
                    writer_held.fetch_add(size, Ordering::SeqCst);
                    writer_written.notify_one();
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot spool an events payload; dropped"),
                Err(e) => tracing::warn!(error = %e, "the spool writer failed"),
            }
        }
    });
    // The sender: from the files to the upstream, in order.
    loop {
        let files = spooled(&spool.dir);
        if files.is_empty() {
            written.notified().await;
            continue;
        }
        for (path, size) in files {
            let outgoing = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Outgoing>(&bytes).ok());
            match outgoing {
                Some(outgoing) => forwarder.send(&outgoing).await,
                None => tracing::warn!(path = %path.display(), "an unreadable spool file; removed"),
            }
            let _ = std::fs::remove_file(&path);
            held.fetch_sub(size.min(held.load(Ordering::SeqCst)), Ordering::SeqCst);
        }
    }
}

/// The upstream path and credential for a payload.
fn destination(
    server_side: bool,
    diagnostic: bool,
    environment: &EnvironmentConfig,
) -> Option<(String, Option<String>)> {
    if server_side {
        let path = if diagnostic { "/diagnostic" } else { "/bulk" };
        return Some((path.to_owned(), Some(environment.sdk_key.clone())));
    }
    if let Some(id) = &environment.client_side_id {
        let kind = if diagnostic { "diagnostic" } else { "bulk" };
        return Some((format!("/events/{kind}/{id}"), None));
    }
    let key = environment.mobile_key.clone()?;
    let path = if diagnostic {
        "/mobile/events/diagnostic"
    } else {
        "/mobile/events/bulk"
    };
    Some((path.to_owned(), Some(key)))
}

fn gzip(bytes: &[u8]) -> bytes::Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    bytes::Bytes::from(encoder.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(client_side_id: Option<&str>, mobile_key: Option<&str>) -> EnvironmentConfig {
        EnvironmentConfig {
            project: "p".into(),
            key: "e".into(),
            sdk_key: "sdk-1".into(),
            mobile_key: mobile_key.map(Into::into),
            client_side_id: client_side_id.map(Into::into),
            secure_mode: false,
        }
    }

    #[test]
    fn payloads_go_where_they_came_in_with_the_matching_credential() {
        let both = environment(Some("cid"), Some("mob-1"));
        assert_eq!(
            destination(true, false, &both),
            Some(("/bulk".into(), Some("sdk-1".into())))
        );
        assert_eq!(
            destination(true, true, &both),
            Some(("/diagnostic".into(), Some("sdk-1".into())))
        );
        assert_eq!(
            destination(false, false, &both),
            Some(("/events/bulk/cid".into(), None))
        );
        let mobile_only = environment(None, Some("mob-1"));
        assert_eq!(
            destination(false, true, &mobile_only),
            Some(("/mobile/events/diagnostic".into(), Some("mob-1".into())))
        );
        assert_eq!(destination(false, false, &environment(None, None)), None);
    }

    #[test]
    fn gzip_round_trips() {
        let packed = gzip(b"[{\"kind\":\"custom\"}]");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&packed[..]), &mut out)
            .unwrap();
        assert_eq!(out, "[{\"kind\":\"custom\"}]");
    }
}
