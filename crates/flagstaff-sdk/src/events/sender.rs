//! Posting event payloads (`ld-protocol.md` §6.2–6.3): `POST {events}/bulk` with schema 4, a
//! payload ID that the one retry reuses, optional gzip, and the status rules that decide
//! between retrying, dropping and stopping for good.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

use super::EventProcessor;
use crate::http::Http;

/// What one delivery attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Network error, 400, 408, 429, 5xx: worth one more try.
    Recoverable(String),
    /// 413: this payload is dropped, sending goes on.
    Dropped(String),
    /// 401, 403, 404, other 4xx: stop sending events for the client's lifetime.
    Fatal(String),
}

/// Posts one payload, retrying once after a second (§6.3).
pub(crate) async fn send(http: &Http, processor: &EventProcessor, events: Vec<Value>) {
    if events.is_empty() || processor.disabled.load(Ordering::Relaxed) {
        return;
    }
    let count = events.len();
    let body = match serde_json::to_vec(&events) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "could not serialise events");
            return;
        }
    };
    let (body, gzipped) = if processor.config().compress {
        let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        match encoder.write_all(&body).and_then(|()| encoder.finish()) {
            Ok(compressed) => (compressed, true),
            Err(_) => (body, false),
        }
    } else {
        (body, false)
    };
    let payload_id = payload_id();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match post(http, processor, &body, gzipped, &payload_id).await {
            Outcome::Delivered => {
                processor
                    .stats
                    .payloads_sent
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(events = count, "events delivered");
                return;
            }
            Outcome::Recoverable(why) => {
                tracing::warn!(attempt, reason = %why, "event delivery failed");
            }
            Outcome::Dropped(why) => {
                tracing::warn!(reason = %why, events = count, "events dropped");
                break;
            }
            Outcome::Fatal(why) => {
                tracing::error!(reason = %why, "event delivery refused; no more events will be sent");
                processor.disabled.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    processor
        .stats
        .payloads_failed
        .fetch_add(1, Ordering::Relaxed);
}

async fn post(
    http: &Http,
    processor: &EventProcessor,
    body: &[u8],
    gzipped: bool,
    payload_id: &str,
) -> Outcome {
    let mut request = http
        .post(&format!("{}/bulk", http.endpoints_events()))
        .header("Content-Type", "application/json")
        .header("X-LaunchDarkly-Event-Schema", "4")
        .header("X-LaunchDarkly-Payload-ID", payload_id)
        .body(body.to_vec());
    if gzipped {
        request = request.header("Content-Encoding", "gzip");
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Outcome::Recoverable(e.to_string()),
    };
    if let Some(date) = response
        .headers()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        && let Ok(since) = date.duration_since(std::time::UNIX_EPOCH)
    {
        processor
            .last_server_time
            .store(since.as_millis() as u64, Ordering::Relaxed);
    }
    classify(response.status().as_u16())
}

fn classify(status: u16) -> Outcome {
    match status {
        200..=204 => Outcome::Delivered,
        400 | 408 | 429 | 500..=599 => Outcome::Recoverable(format!("HTTP {status}")),
        413 => Outcome::Dropped("HTTP 413".into()),
        _ => Outcome::Fatal(format!("HTTP {status}")),
    }
}

/// A random (version 4) UUID, as LaunchDarkly's SDKs send.
fn payload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_sdks_do() {
        assert_eq!(classify(202), Outcome::Delivered);
        for status in [400, 408, 429, 500, 503] {
            assert!(
                matches!(classify(status), Outcome::Recoverable(_)),
                "{status}"
            );
        }
        assert!(matches!(classify(413), Outcome::Dropped(_)));
        for status in [401, 403, 404, 405, 410] {
            assert!(matches!(classify(status), Outcome::Fatal(_)), "{status}");
        }
        // 205–299 are not success for JavaScript SDKs; treat them as refusals too.
        assert!(matches!(classify(206), Outcome::Fatal(_)));
    }

    #[test]
    fn payload_ids_are_version_4_uuids() {
        let id = payload_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, payload_id());
    }
}
