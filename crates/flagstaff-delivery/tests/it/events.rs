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
