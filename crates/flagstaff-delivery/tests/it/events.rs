//! `POST /bulk` and `/diagnostic` (`ld-protocol.md` §6): SDKs must never be told to stop.

use std::io::Write;

use serde_json::json;

use crate::support::{client, fast, start};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn events_are_accepted_plain_gzipped_and_chunked() {
    let server = start(fast()).await;
    let events = json!([
        {"kind": "index", "creationDate": 1, "context": {"kind": "user", "key": "a"}},
        {"kind": "summary", "startDate": 1, "endDate": 2, "features": {}},
        {"kind": "something-new", "x": 1}
    ])
    .to_string();
    let post = |body: reqwest::Body, gzipped: bool| {
        let mut request = client()
            .post(format!("{}/bulk", server.base))
            .header("Authorization", &server.sdk_key)
            .header("Content-Type", "application/json")
            .header("x-launchDarkly-event-schema", "4")
            .header(
                "X-LaunchDarkly-Payload-ID",
                "7d3a6a5e-0000-4000-8000-000000000000",
            )
            .body(body);
        if gzipped {
            request = request.header("Content-Encoding", "gzip");
        }
        request.send()
    };
    assert_eq!(
        post(events.clone().into(), false).await.unwrap().status(),
        202
    );
    assert_eq!(
        post(gzip(events.as_bytes()).into(), true)
            .await
            .unwrap()
            .status(),
        202
    );
    // A streamed body has no Content-Length and goes out chunked, as Node sends it.
    let chunks = futures_util::stream::iter(
        events
            .as_bytes()
            .chunks(7)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = post(reqwest::Body::wrap_stream(chunks), false)
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(
        response.headers().contains_key("date"),
        "SDKs read server time from Date"
    );

    let diagnostic = client()
        .post(format!("{}/diagnostic", server.base))
        .header("Authorization", &server.sdk_key)
        .body(json!({"kind": "diagnostic-init", "id": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(diagnostic.status(), 202);
}

#[tokio::test]
async fn broken_payloads_get_clear_errors_and_unknown_keys_401() {
    let server = start(flagstaff_delivery::DeliveryConfig {
        max_event_payload_bytes: 1000,
        ..fast()
    })
    .await;
    let post = |key: &str, body: Vec<u8>, gzipped: bool| {
        let mut request = client()
            .post(format!("{}/bulk", server.base))
            .header("Authorization", key)
            .body(body);
        if gzipped {
            request = request.header("Content-Encoding", "gzip");
        }
        request.send()
    };
    let key = server.sdk_key.clone();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(post(&key, b"[1,".to_vec(), false).await.unwrap()),
        400
    );
    assert_eq!(
        status(post(&key, b"{}".to_vec(), false).await.unwrap()),
        400
    );
    assert_eq!(
        status(post(&key, b"not gzip".to_vec(), true).await.unwrap()),
        400
    );
    assert_eq!(
        status(post(&key, vec![b' '; 2000], false).await.unwrap()),
        413
    );
    // A small gzip body that inflates past the limit is refused too.
    assert_eq!(
        status(post(&key, gzip(&vec![b' '; 5000]), true).await.unwrap()),
        413
    );
    assert_eq!(
        status(post("sdk-unknown", b"[]".to_vec(), false).await.unwrap()),
        401
    );
    // After all of that, the intake still works.
    assert_eq!(
        status(post(&key, b"[]".to_vec(), false).await.unwrap()),
        202
    );
}

#[tokio::test]
async fn browser_and_mobile_event_payloads_are_rate_limited_per_environment_but_server_sdks_are_not()
 {
    let server = start(flagstaff_delivery::DeliveryConfig {
        // A bucket of two payloads, refilled at one per second.
        max_client_event_payloads_per_second: 1,
        ..fast()
    })
    .await;
    let browser = || {
        client()
            .post(format!(
                "{}/events/bulk/{}",
                server.base, server.client_side_id
            ))
            .header("Content-Type", "application/json")
            .body("[]")
            .send()
    };
    assert_eq!(browser().await.unwrap().status(), 202);
    assert_eq!(browser().await.unwrap().status(), 202);
    let limited = browser().await.unwrap();
    assert_eq!(limited.status(), 429, "SDKs retry a 429 and keep sending");
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.json::<serde_json::Value>().await.unwrap()["code"],
        "too_many_requests"
    );
    // The mobile key of the same environment draws on the same bucket.
    let mobile = client()
        .post(format!("{}/mobile/events/bulk", server.base))
        .header("Authorization", &server.mobile_key)
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(mobile.status(), 429);
    // Server SDKs, with the secret key, are not limited by it.
    for _ in 0..5 {
        let response = client()
            .post(format!("{}/bulk", server.base))
            .header("Authorization", &server.sdk_key)
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    // An unknown client-side ID is refused as unknown, not counted against anybody's rate.
    let unknown = client()
        .post(format!("{}/events/bulk/nobody", server.base))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // A second later the bucket holds a payload again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(browser().await.unwrap().status(), 202);
}
