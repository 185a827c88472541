//! Connection limits over real sockets (issue 17): half-open connections are closed after the
//! head timeout, and one address cannot hold more than its share, while well-behaved clients
//! keep being served.

use std::time::{Duration, Instant};

use flagstaff_delivery::DeliveryConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{fast, start};

/// Reads until the server closes the connection; how long that took.
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn half_open_connections_are_closed_after_the_head_timeout() {
    let server = start(DeliveryConfig {
        header_read_timeout: Duration::from_millis(300),
        ..fast()
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    // Half a request head (not a stream request, so hyper reads it), and silence.
    let mut sockets = Vec::new();
    for _ in 0..200 {
        let mut socket = TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(b"GET /sdk/latest-all HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        sockets.push(socket);
    }
    // A silent connection, and a stream request that stops halfway.
    let mut silent = TcpStream::connect(&address).await.unwrap();
    let mut half_stream = TcpStream::connect(&address).await.unwrap();
    half_stream
        .write_all(b"GET /all HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    // Meanwhile a real client is served.
    let reply = reqwest::Client::new()
        .get(format!("{}/sdk/latest-all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);

    for socket in sockets.iter_mut().chain([&mut silent, &mut half_stream]) {
        let closed = closed_within(socket, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "a half-open connection is still open after 5 s"
        );
    }
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_and_is_told_to_retry() {
    let server = start(DeliveryConfig {
        max_connections_per_address: 10,
        ..fast()
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..10 {
        // Kept-alive connections, each having made a request.
        let mut socket = TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "GET /sdk/latest-all HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
            server.sdk_key
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).await.unwrap();
        held.push(socket);
    }
    let mut refused = TcpStream::connect(&address).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), refused.read_to_string(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 5"), "{answer}");
    // A freed place is free again.
    drop(held.pop());
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let reply = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
                .get(format!("{}/sdk/latest-all", server.base))
                .header("Authorization", &server.sdk_key)
                .send()
                .await;
            if let Ok(reply) = reply
                && reply.status() == 200
            {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("served once a place is free");
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn browser_streams_cannot_take_the_places_of_server_streams() {
    let server = start(DeliveryConfig {
        max_streams: 3,
        max_client_streams: 4,
        max_client_streams_per_environment: 2,
        ..fast()
    })
    .await;
    let http = reqwest::Client::new();
    let context = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"kind":"user","key":"flood"}"#,
    );
    let browser = |http: reqwest::Client| {
        let url = format!("{}/eval/{}/{context}", server.base, server.client_side_id);
        async move { http.get(url).send().await.unwrap() }
    };
    // A flood of browser streams with the public client-side ID: two are served, the rest are
    // told to retry.
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = browser(http.clone()).await;
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    for _ in 0..5 {
        let response = browser(http.clone()).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    // Server SDKs still get all of their places.
    for _ in 0..3 {
        let response = http
            .get(format!("{}/all", server.base))
            .header("Authorization", &server.sdk_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let over = http
        .get(format!("{}/all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 503, "server streams have their own limit");
}

#[tokio::test]
async fn contexts_larger_than_a_few_kilobytes_are_refused_on_every_client_path() {
    let server = start(fast()).await;
    let http = reqwest::Client::new();
    let cid = &server.client_side_id;
    let context = |bytes: usize| {
        serde_json::json!({"kind": "user", "key": "k", "padding": "x".repeat(bytes)}).to_string()
    };
    let encode = |json: &str| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, json)
    };
    let small = context(4 * 1024);
    let large = context(flagstaff_delivery::MAX_CONTEXT_BYTES);
    for (json, want) in [(&small, 200), (&large, 413)] {
        let polled = http
            .get(format!(
                "{}/sdk/evalx/{cid}/contexts/{}",
                server.base,
                encode(json)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(polled.status().as_u16(), want, "evalx GET");
        let reported = http
            .request(
                reqwest::Method::from_bytes(b"REPORT").unwrap(),
                format!("{}/sdk/evalx/{cid}/context", server.base),
            )
            .header("content-type", "application/json")
            .body(json.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(reported.status().as_u16(), want, "evalx REPORT");
        let streamed = http
            .get(format!("{}/eval/{cid}/{}", server.base, encode(json)))
            .send()
            .await
            .unwrap();
        assert_eq!(streamed.status().as_u16(), want, "stream");
        if want != 200 {
            let body: serde_json::Value = streamed.json().await.unwrap();
            assert_eq!(body["code"], "payload_too_large");
        }
    }
}
