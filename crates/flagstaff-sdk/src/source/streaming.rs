//! The streaming data source: `GET {streaming}/all` as Server-Sent Events (`ld-protocol.md`
//! §4.2), with LaunchDarkly's reconnection policy ([`crate::backoff`]), a read timeout that any
//! byte (heartbeat comments included) resets, and the status rules of §4.5.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flagstaff_protocol::{Flag, FlagData, Segment};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::{DataSourceState, Shared, is_fatal_status};
use crate::backoff::Backoff;
use crate::http::Http;
use crate::sse::{Item, Parser};
use crate::store::Update;

/// The longest line (one event's `data`) accepted: a whole environment arrives as one line.
const MAX_LINE: usize = 256 << 20;

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// Retry after the backoff delay.
    Recoverable(String),
    /// Stop for good.
    Fatal(String),
}

/// Runs until the task is aborted or the server refuses the key.
pub(crate) async fn run(
    shared: Arc<Shared>,
    http: Http,
    initial_reconnect_delay: Duration,
    read_timeout: Duration,
) {
    let mut backoff = Backoff::new(initial_reconnect_delay);
    let mut last_event_id = String::new();
    loop {
        match connect(
            &shared,
            &http,
            &mut backoff,
            &mut last_event_id,
            read_timeout,
        )
        .await
        {
            Ended::Fatal(why) => {
                tracing::error!(reason = %why, "the stream was refused; not reconnecting");
                shared.set_state(DataSourceState::Off, Some(why));
                return;
            }
            Ended::Recoverable(why) => {
                let delay = backoff.next_delay(Instant::now(), rand::random());
                tracing::warn!(reason = %why, retry_in_ms = delay.as_millis() as u64, "stream interrupted");
                shared.set_state(DataSourceState::Interrupted, Some(why));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn connect(
    shared: &Shared,
    http: &Http,
    backoff: &mut Backoff,
    last_event_id: &mut String,
    read_timeout: Duration,
) -> Ended {
    let url = format!("{}/all", http.endpoints().streaming);
    let mut request = http
        .stream_get(&url)
        .header("Accept", "text/event-stream")
        .header("Cache-Control", "no-cache");
    if !last_event_id.is_empty() {
        request = request.header("Last-Event-ID", last_event_id.as_str());
    }
    let response = match tokio::time::timeout(read_timeout, request.send()).await {
        Err(_) => return Ended::Recoverable("no response before the read timeout".into()),
        Ok(Err(e)) => return Ended::Recoverable(format!("connection failed: {e}")),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    if is_fatal_status(status) {
        return Ended::Fatal(format!("HTTP {status}"));
    }
    if status != 200 {
        return Ended::Recoverable(format!("HTTP {status}"));
    }
    backoff.connected(Instant::now());
    let mut parser = Parser::new(MAX_LINE, std::mem::take(last_event_id));
    let mut body = response.bytes_stream();
    let mut items = Vec::new();
    let ended = loop {
        let chunk = match tokio::time::timeout(read_timeout, body.next()).await {
            Err(_) => break Ended::Recoverable("read timeout: nothing received".into()),
            Ok(None) => break Ended::Recoverable("the server ended the stream".into()),
            Ok(Some(Err(e))) => break Ended::Recoverable(format!("read failed: {e}")),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if let Err(e) = parser.push(&chunk, &mut items) {
            break Ended::Recoverable(e.to_string());
        }
        let mut failed = None;
        for item in items.drain(..) {
            match item {
                Item::Event(event) => {
                    if let Err(why) = handle(shared, &event.name, &event.data) {
                        failed = Some(why);
                        break;
                    }
                }
                Item::Retry(delay) => backoff.set_initial(delay),
                Item::Comment(_) => {}
            }
        }
        if let Some(why) = failed {
            // A payload we cannot read means our data may be incomplete: reconnect for a
            // fresh `put`, as LaunchDarkly's SDKs do.
            break Ended::Recoverable(why);
        }
    };
    *last_event_id = parser.last_event_id().to_owned();
    ended
}

#[derive(Deserialize)]
struct Patch {
    path: String,
    data: Value,
}

#[derive(Deserialize)]
struct Delete {
    path: String,
    version: u64,
}

/// Applies one event. Unknown event names and paths are ignored (§4.2).
fn handle(shared: &Shared, name: &str, data: &str) -> Result<(), String> {
    match name {
        "put" => {
            let data = FlagData::from_json_str(data).map_err(|e| format!("bad put: {e}"))?;
            tracing::debug!(
                flags = data.flags.len(),
                segments = data.segments.len(),
                "put"
            );
            shared.replace(data);
        }
        "patch" => {
            let patch: Patch = serde_json::from_str(data).map_err(|e| format!("bad patch: {e}"))?;
            if let Some(key) = patch.path.strip_prefix("/flags/") {
                let flag = item::<Flag>(patch.data, key).map_err(|e| format!("bad patch: {e}"))?;
                shared.apply(Update::Flag(flag));
            } else if let Some(key) = patch.path.strip_prefix("/segments/") {
                let segment =
                    item::<Segment>(patch.data, key).map_err(|e| format!("bad patch: {e}"))?;
                shared.apply(Update::Segment(segment));
            }
        }
        "delete" => {
            let delete: Delete =
                serde_json::from_str(data).map_err(|e| format!("bad delete: {e}"))?;
            if let Some(key) = delete.path.strip_prefix("/flags/") {
                shared.apply(Update::Flag(Flag::tombstone(key, delete.version)));
            } else if let Some(key) = delete.path.strip_prefix("/segments/") {
                shared.apply(Update::Segment(Segment {
                    key: key.to_owned(),
                    version: delete.version,
                    deleted: true,
                    ..Segment::default()
                }));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads a patched item; the path's key wins over (and must agree with) the object's own.
fn item<T: serde::de::DeserializeOwned>(mut data: Value, key: &str) -> Result<T, String> {
    if let Some(object) = data.as_object_mut() {
        match object.get("key") {
            None | Some(Value::Null) => {
                object.insert("key".into(), Value::String(key.to_owned()));
            }
            Some(Value::String(own)) if own == key => {}
            Some(other) => return Err(format!("key {other} differs from the path's {key:?}")),
        }
    }
    serde_path_to_error::deserialize(data).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn put_patch_and_delete_update_the_store_in_version_order() {
        let shared = Shared::new();
        handle(
            &shared,
            "put",
            &json!({"path": "/", "data": {"flags": {"f": {"key": "f", "version": 1, "on": false,
                "variations": [1, 2], "offVariation": 0}}, "segments": {}}})
            .to_string(),
        )
        .unwrap();
        assert!(shared.initialized());
        let mut changes = shared.subscribe_changes();
        handle(
            &shared,
            "patch",
            &json!({"path": "/flags/f", "data": {"key": "f", "version": 2, "on": false,
                "variations": [1, 2], "offVariation": 1}})
            .to_string(),
        )
        .unwrap();
        assert_eq!(changes.try_recv().unwrap().key, "f");
        let snapshot = shared.store.snapshot();
        assert_eq!(
            snapshot.flag_by_key("f").unwrap().source().off_variation,
            Some(1)
        );
        drop(snapshot);
        // An older patch is ignored; unknown paths and events too.
        handle(
            &shared,
            "patch",
            &json!({"path": "/flags/f", "data": {"version": 1, "offVariation": 0}}).to_string(),
        )
        .unwrap();
        handle(
            &shared,
            "patch",
            &json!({"path": "/other/x", "data": {}}).to_string(),
        )
        .unwrap();
        handle(&shared, "something", "not json").unwrap();
        assert!(changes.try_recv().is_err());
        handle(
            &shared,
            "delete",
            &json!({"path": "/flags/f", "version": 3}).to_string(),
        )
        .unwrap();
        assert!(shared.store.snapshot().flag_by_key("f").is_none());
        assert_eq!(changes.try_recv().unwrap().key, "f");
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let shared = Shared::new();
        assert!(handle(&shared, "put", "{").is_err());
        assert!(handle(&shared, "put", r#"{"flags": true}"#).is_err());
        assert!(
            handle(
                &shared,
                "delete",
                r#"{"path": "/flags/f", "version": "no"}"#
            )
            .is_err()
        );
        assert!(
            handle(
                &shared,
                "patch",
                r#"{"path": "/flags/f", "data": {"key": "g", "version": 2}}"#
            )
            .is_err()
        );
        assert!(!shared.initialized());
    }
}
