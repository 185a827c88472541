//! Following the upstream: one task per environment holds the upstream's `/all` stream with the
//! environment's SDK key (the stream every server-side SDK reads, `ld-protocol.md` §4.2, so the
//! upstream may be a Flagstaff server or another relay), and applies each `put`, `patch` and
//! `delete` to the replica with the SDKs' version rules (§2.6). When the stream ends or cannot be
//! opened, the replica keeps what it has (SDKs behind the relay keep being served), the status
//! says since when it is stale, and the task reconnects with doubling delays; the first `put`
//! after a reconnection replaces everything, so the relay converges on whatever changed in
//! between.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagstaff_delivery::EnvironmentId;
use flagstaff_delivery::replica::Replica;
use flagstaff_protocol::{Flag, FlagData, Segment};
use flagstaff_sdk::sse::{Item, Parser};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::watch;

use crate::now_millis;

/// SDKs give up on a stream that says nothing for 5 minutes (§4.2); servers send heartbeats
/// every few minutes at most.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest SSE line accepted: a whole environment's `put` is one line.
const MAX_LINE: usize = 256 * 1024 * 1024;
/// The first wait after a failure.
const FIRST_DELAY: Duration = Duration::from_millis(200);

/// What the relay knows about one environment's link to the upstream.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    /// A stream to the upstream is open and has delivered its data.
    pub connected: bool,
    /// When the data served last came from the upstream (Unix ms); from disk at start.
    pub data_received_at: Option<i64>,
    /// Since when the data may be out of date (the link went down, or the relay started from
    /// disk), `None` while connected.
    pub stale_since: Option<i64>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// The data served came from the disk copy and not (yet) from the upstream.
    pub from_disk: bool,
    /// Offline: when the bundle served was exported (Unix ms).
    pub bundle_created_at: Option<i64>,
}

/// How the relay reads an environment from its upstream.
#[derive(Clone, Debug)]
pub(crate) enum UpstreamAuth {
    /// `GET /all` with the environment's SDK key (any upstream: a server or a relay).
    SdkKey(String),
    /// `GET /relay/all/{project}/{environment}` with a relay token (a server upstream).
    Token(String),
}

impl UpstreamAuth {
    /// The stream's URL and `Authorization` value.
    fn stream(&self, upstream: &str, id: &EnvironmentId) -> (String, String) {
        let upstream = upstream.trim_end_matches('/');
        match self {
            UpstreamAuth::SdkKey(key) => (format!("{upstream}/all"), key.clone()),
            UpstreamAuth::Token(token) => (
                format!("{upstream}/relay/all/{}/{}", id.project, id.environment),
                format!("Bearer {token}"),
            ),
        }
    }
}

/// One followed environment.
pub(crate) struct Link {
    pub id: EnvironmentId,
    pub auth: UpstreamAuth,
    pub upstream: String,
    pub status: Arc<Mutex<LinkStatus>>,
    /// Told after every change, so that the disk copy follows.
    pub changed: watch::Sender<u64>,
    /// The environment's settings and credentials as configured (or, with a relay token, as
    /// last read from the upstream): withdrawn while the upstream refuses the relay's
    /// credential (revoked there), given back once it accepts it.
    pub settings: Arc<Mutex<Settings>>,
}

/// What [`Replica::set_environment`] takes for one environment.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub client_side_id: String,
    pub secure_mode: Option<flagstaff_app::SecureMode>,
    pub credentials: Vec<flagstaff_delivery::replica::ReplicaCredential>,
}

impl Link {
    fn update(&self, change: impl FnOnce(&mut LinkStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn went_down(&self, error: String) {
        self.update(|status| {
            status.connected = false;
            status.stale_since.get_or_insert_with(now_millis);
            status.last_error = Some(error);
        });
    }
}

/// Follows the upstream for one environment, forever.
pub(crate) async fn follow(
    client: reqwest::Client,
    replica: Arc<Replica>,
    link: Link,
    max_delay: Duration,
) {
    let mut delay = FIRST_DELAY;
    loop {
        let error = match stream_once(&client, &replica, &link).await {
            Ok(Received::Data) => {
                // The link worked: the next failure starts the delays over.
                delay = FIRST_DELAY;
                "the upstream ended the stream".to_owned()
            }
            Ok(Received::Nothing) => "the upstream ended the stream before sending data".into(),
            Err(error) => error,
        };
        tracing::warn!(environment = %link.id, %error, retry_in_ms = delay.as_millis() as u64, "upstream link down; serving the last data");
        link.went_down(error);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max_delay);
    }
}

enum Received {
    Data,
    Nothing,
}

/// One connection: returns when the stream ends.
async fn stream_once(
    client: &reqwest::Client,
    replica: &Replica,
    link: &Link,
) -> Result<Received, String> {
    let (url, authorization) = link.auth.stream(&link.upstream, &link.id);
    let response = client
        .get(url)
        .header(reqwest::header::AUTHORIZATION, authorization)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| format!("cannot reach the upstream: {e}"))?;
    let status = response.status();
    if matches!(status.as_u16(), 401 | 403) {
        // The key was revoked (or mistyped): the relay must not go on serving SDKs with a key
        // the server no longer accepts. Its credentials are withdrawn until the upstream takes
        // the key again.
        replica.set_environment(&link.id, String::new(), None, Vec::new());
        let what = match link.auth {
            UpstreamAuth::SdkKey(_) => "the SDK key",
            UpstreamAuth::Token(_) => "the relay token for this environment",
        };
        return Err(format!(
            "the upstream refused {what} ({status}); SDKs are refused too"
        ));
    }
    if !status.is_success() {
        return Err(format!("the upstream answered {status}"));
    }
    let settings = link
        .settings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    replica.set_environment(
        &link.id,
        settings.client_side_id,
        settings.secure_mode,
        settings.credentials,
    );
    let mut parser = Parser::new(MAX_LINE, String::new());
    let mut body = response.bytes_stream();
    let mut items = Vec::new();
    let mut received = Received::Nothing;
    loop {
        let chunk = match tokio::time::timeout(READ_TIMEOUT, body.next()).await {
            Err(_) => return Err("the upstream stream was silent for 5 minutes".into()),
            Ok(None) => return Ok(received),
            Ok(Some(Err(e))) => return Err(format!("the upstream stream broke: {e}")),
            Ok(Some(Ok(chunk))) => chunk,
        };
        parser
            .push(&chunk, &mut items)
            .map_err(|e| format!("the upstream stream: {e}"))?;
        for item in items.drain(..) {
            let Item::Event(event) = item else { continue };
            match apply(replica, link, &event.name, &event.data) {
                Ok(true) => received = Received::Data,
                Ok(false) => {}
                // A malformed event is the upstream's bug; reconnecting gets a fresh `put`.
                Err(e) => return Err(format!("a {} event from the upstream: {e}", event.name)),
            }
        }
    }
}

#[derive(Deserialize)]
struct Patch {
    path: String,
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct Delete {
    path: String,
    version: u64,
}

/// Applies one stream event; returns whether it was a `put` (the link now has full data).
fn apply(replica: &Replica, link: &Link, name: &str, data: &str) -> Result<bool, String> {
    let id = &link.id;
    match name {
        "put" => {
            let data = FlagData::from_json_str(data).map_err(|e| e.to_string())?;
            let (flags, segments) = (data.flags.len(), data.segments.len());
            replica.replace_data(id, data);
            link.update(|status| {
                status.connected = true;
                status.stale_since = None;
                status.last_error = None;
                status.from_disk = false;
                status.data_received_at = Some(now_millis());
            });
            tracing::info!(environment = %id, flags, segments, "data received from the upstream");
            link.changed.send_modify(|n| *n += 1);
            Ok(true)
        }
        "patch" => {
            let patch: Patch = serde_json::from_str(data).map_err(|e| e.to_string())?;
            if let Some(key) = patch.path.strip_prefix("/flags/") {
                let mut flag: Flag =
                    serde_json::from_value(patch.data).map_err(|e| e.to_string())?;
                key.clone_into(&mut flag.key);
                replica.upsert_flag(id, flag);
            } else if let Some(key) = patch.path.strip_prefix("/segments/") {
                let mut segment: Segment =
                    serde_json::from_value(patch.data).map_err(|e| e.to_string())?;
                key.clone_into(&mut segment.key);
                replica.upsert_segment(id, segment);
            }
            // Other paths are for kinds this relay does not know: ignored, as SDKs do.
            received(link);
            Ok(false)
        }
        "delete" => {
            let delete: Delete = serde_json::from_str(data).map_err(|e| e.to_string())?;
            if let Some(key) = delete.path.strip_prefix("/flags/") {
                replica.delete_flag(id, key, delete.version);
            } else if let Some(key) = delete.path.strip_prefix("/segments/") {
                replica.delete_segment(id, key, delete.version);
            }
            received(link);
            Ok(false)
        }
        // Unknown events are ignored, as SDKs ignore them (§4.2).
        _ => Ok(false),
    }
}

fn received(link: &Link) {
    link.update(|status| status.data_received_at = Some(now_millis()));
    link.changed.send_modify(|n| *n += 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> (Link, watch::Receiver<u64>) {
        let (changed, rx) = watch::channel(0);
        (
            Link {
                id: EnvironmentId {
                    project: "p".into(),
                    environment: "e".into(),
                },
                auth: UpstreamAuth::SdkKey("sdk".into()),
                upstream: "http://x".into(),
                status: Arc::default(),
                changed,
                settings: Arc::new(Mutex::new(Settings {
                    client_side_id: "cid".into(),
                    secure_mode: None,
                    credentials: Vec::new(),
                })),
            },
            rx,
        )
    }

    #[test]
    fn stream_events_reach_the_replica_with_version_rules() {
        let replica = Replica::default();
        let (link, rx) = link();
        replica.set_environment(&link.id, "cid".into(), None, Vec::new());
        let put = r#"{"path":"/","data":{"flags":{"a":{"key":"a","version":2,"on":true,"variations":[true,false],"fallthrough":{"variation":0}}},"segments":{}}}"#;
        assert!(apply(&replica, &link, "put", put).unwrap());
        assert!(link.status.lock().unwrap().connected);
        let patch = |version: u64| {
            format!(
                r#"{{"path":"/flags/a","data":{{"key":"a","version":{version},"on":false,"variations":[true,false]}}}}"#
            )
        };
        apply(&replica, &link, "patch", &patch(1)).unwrap();
        assert!(
            replica.data(&link.id).unwrap().flags["a"].on,
            "an older patch is ignored"
        );
        apply(&replica, &link, "patch", &patch(3)).unwrap();
        assert!(!replica.data(&link.id).unwrap().flags["a"].on);
        apply(
            &replica,
            &link,
            "delete",
            r#"{"path":"/flags/a","version":4}"#,
        )
        .unwrap();
        assert!(replica.data(&link.id).unwrap().flags.is_empty());
        assert_eq!(
            *rx.borrow(),
            4,
            "every event marks the disk copy out of date"
        );
        assert!(apply(&replica, &link, "patch", "{").is_err());
        assert!(!apply(&replica, &link, "ping", "").unwrap());
    }
}
