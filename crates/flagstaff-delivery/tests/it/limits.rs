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
