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
//! acknowledgement that got lost counts once.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use flagstaff_delivery::{EnvironmentId, RelayedPayload};
use tokio::sync::mpsc;

use crate::config::EnvironmentConfig;

/// Sends queued payloads upstream, forever.
pub(crate) async fn forward(
    client: reqwest::Client,
    upstream: String,
    environments: HashMap<EnvironmentId, EnvironmentConfig>,
    mut queue: mpsc::Receiver<RelayedPayload>,
    max_delay: Duration,
) {
    let upstream = upstream.trim_end_matches('/').to_owned();
    while let Some(mut payload) = queue.recv().await {
        let Some(environment) = environments.get(&payload.environment) else {
            continue;
        };
        let Some((path, key)) = destination(&payload, environment) else {
            tracing::warn!(environment = %payload.environment, "no credential to forward client events with");
            continue;
        };
        let payload_id = payload
            .payload_id
            .take()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let body = gzip(&payload.body);
        let mut delay = Duration::from_millis(200);
        loop {
            let mut request = client
                .post(format!("{upstream}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .header("x-launchdarkly-payload-id", &payload_id)
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
                    break;
                }
                Ok(response)
                    if response.status().is_client_error()
                        && !matches!(response.status().as_u16(), 408 | 429) =>
                {
                    // The upstream will never take it (a key revoked upstream, a payload it
                    // refuses): retrying would block every payload behind it.
                    tracing::warn!(status = %response.status(), environment = %payload.environment, "the upstream refused an events payload; dropped");
                    metrics::counter!("flagstaff_relay_events_refused_total").increment(1);
                    break;
                }
                Ok(response) => {
                    tracing::debug!(status = %response.status(), "events not taken; retrying");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot reach the upstream with events; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(max_delay);
        }
    }
}

/// The upstream path and credential for a payload.
fn destination(
    payload: &RelayedPayload,
    environment: &EnvironmentConfig,
) -> Option<(String, Option<String>)> {
    if payload.server_side {
        let path = if payload.diagnostic {
            "/diagnostic"
        } else {
            "/bulk"
        };
        return Some((path.to_owned(), Some(environment.sdk_key.clone())));
    }
    if let Some(id) = &environment.client_side_id {
        let kind = if payload.diagnostic {
            "diagnostic"
        } else {
            "bulk"
        };
        return Some((format!("/events/{kind}/{id}"), None));
    }
    let key = environment.mobile_key.clone()?;
    let path = if payload.diagnostic {
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

    fn payload(server_side: bool, diagnostic: bool) -> RelayedPayload {
        RelayedPayload {
            environment: EnvironmentId {
                project: "p".into(),
                environment: "e".into(),
            },
            server_side,
            diagnostic,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"[]"),
            payload_id: None,
        }
    }

    #[test]
    fn payloads_go_where_they_came_in_with_the_matching_credential() {
        let both = environment(Some("cid"), Some("mob-1"));
        assert_eq!(
            destination(&payload(true, false), &both),
            Some(("/bulk".into(), Some("sdk-1".into())))
        );
        assert_eq!(
            destination(&payload(true, true), &both),
            Some(("/diagnostic".into(), Some("sdk-1".into())))
        );
        assert_eq!(
            destination(&payload(false, false), &both),
            Some(("/events/bulk/cid".into(), None))
        );
        let mobile_only = environment(None, Some("mob-1"));
        assert_eq!(
            destination(&payload(false, true), &mobile_only),
            Some(("/mobile/events/diagnostic".into(), Some("mob-1".into())))
        );
        assert_eq!(
            destination(&payload(false, false), &environment(None, None)),
            None
        );
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
