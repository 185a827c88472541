//! `GET /all` and the legacy `GET /flags` (`ld-protocol.md` §4.2, §4.4).

use flagstaff_app::CredentialKind;
use flagstaff_delivery::DeliveryConfig;
use flagstaff_protocol::Segment;
use serde_json::json;

use crate::support::{Stream, client, create_flag, fast, start, turn_on};

#[tokio::test]
async fn a_stream_starts_with_a_put_then_carries_patches_and_deletes() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    let mut stream = Stream::open(&server.base, "/all", &server.sdk_key).await;
    let headers = &stream.response_headers;
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    // Chunked: Python's SSE client reads nothing from a close-delimited body.
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-cache")
    );
    assert!(stream.read_until("event: put").await);
    assert!(stream.read_until("\n\n").await);
    let put = stream.events("put");
    assert_eq!(put.len(), 1);
    assert_eq!(put[0]["path"], "/");
    assert_eq!(put[0]["data"]["flags"]["alpha"]["key"], "alpha");
    assert_eq!(put[0]["data"]["segments"], json!({}));
    let first_version = put[0]["data"]["flags"]["alpha"]["version"]
        .as_u64()
        .unwrap();

    turn_on(&server, "alpha").await;
    assert!(stream.read_until("event: patch").await, "{}", stream.text);
    assert!(stream.read_until("}\n\n").await);
    let patch = &stream.events("patch")[0];
    assert_eq!(patch["path"], "/flags/alpha");
    assert_eq!(patch["data"]["on"], true);
    assert!(patch["data"]["version"].as_u64().unwrap() > first_version);

    let segment: Segment =
        serde_json::from_value(json!({"key": "beta", "included": ["bob"]})).unwrap();
    server
        .app
        .put_segment(&server.admin, "default", "production", segment, None, "")
        .await
        .unwrap();
    assert!(stream.read_until("/segments/beta").await, "{}", stream.text);
    assert!(stream.read_until("}}\n\n").await);

    let flag = server
        .app
        .flag(&server.admin, "default", "alpha")
        .await
        .unwrap();
    let patched_version = stream.events("patch")[0]["data"]["version"]
        .as_u64()
        .unwrap();
    server
        .app
        .delete_flag(&server.admin, "default", "alpha", flag.version, "")
        .await
        .unwrap();
    assert!(stream.read_until("event: delete").await, "{}", stream.text);
    assert!(stream.read_until("}\n\n").await);
    let delete = &stream.events("delete")[0];
    assert_eq!(delete["path"], "/flags/alpha");
    assert!(delete["version"].as_u64().unwrap() > patched_version);

    // Heartbeat comments keep the connection alive.
    assert!(stream.read_until("\n:\n").await || stream.text.starts_with(":\n"));
}

#[tokio::test]
async fn the_legacy_flags_stream_has_no_wrapper_and_short_paths() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    let mut stream = Stream::open(&server.base, "/flags", &server.sdk_key).await;
    assert!(stream.read_until("}}\n\n").await);
    let put = &stream.events("put")[0];
    assert_eq!(put["data"]["alpha"]["key"], "alpha");
    turn_on(&server, "alpha").await;
    assert!(stream.read_until("event: patch").await);
    assert!(stream.read_until("}}\n\n").await);
    assert_eq!(stream.events("patch")[0]["path"], "/alpha");
}

#[tokio::test]
async fn rotating_a_key_without_grace_ends_its_streams_and_refuses_it() {
    let server = start(fast()).await;
    let mut stream = Stream::open(&server.base, "/all", &server.sdk_key).await;
    assert!(stream.read_until("event: put").await);
    let new_key = server
        .app
        .rotate_key(
            &server.admin,
            "default",
            "production",
            CredentialKind::Sdk,
            0,
            "leaked",
        )
        .await
        .unwrap();
    assert!(
        stream.read_to_end().await,
        "the stream of the revoked key ends"
    );
    let status = client()
        .get(format!("{}/all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let mut fresh = Stream::open(&server.base, "/all", &new_key).await;
    assert!(fresh.read_until("event: put").await);
}

#[tokio::test]
async fn a_rotated_key_keeps_streaming_during_its_grace_period() {
    let server = start(fast()).await;
    let mut stream = Stream::open(&server.base, "/all", &server.sdk_key).await;
    assert!(stream.read_until("event: put").await);
    server
        .app
        .rotate_key(
            &server.admin,
            "default",
            "production",
            CredentialKind::Sdk,
            3600,
            "",
        )
        .await
        .unwrap();
    create_flag(&server, "after-rotation").await;
    assert!(
        stream.read_until("after-rotation").await,
        "still open: {}",
        stream.text
    );
}

#[tokio::test]
async fn deleting_the_environment_ends_its_streams() {
    let server = start(fast()).await;
    let mut stream = Stream::open(&server.base, "/all", &server.sdk_key).await;
    assert!(stream.read_until("event: put").await);
    let env = server
        .app
        .environment(&server.admin, "default", "production")
        .await
        .unwrap();
    server
        .app
        .delete_environment(&server.admin, "default", "production", env.version, "")
        .await
        .unwrap();
    assert!(stream.read_to_end().await);
}

#[tokio::test]
async fn over_the_stream_limit_and_after_shutdown_streams_are_told_to_retry() {
    let server = start(DeliveryConfig {
        max_streams: 1,
        ..fast()
    })
    .await;
    let mut first = Stream::open(&server.base, "/all", &server.sdk_key).await;
    assert!(first.read_until("event: put").await);
    let refused = client()
        .get(format!("{}/all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(server.delivery.open_streams(), 1);

    server.delivery.shutdown();
    assert!(first.read_to_end().await, "shutdown ends open streams");
    let refused = client()
        .get(format!("{}/all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    drop(first);
    flagstaff_testkit::eventually(
        std::time::Duration::from_secs(5),
        "closed streams release their place",
        || async { (server.delivery.open_streams() == 0).then_some(()) },
    )
    .await;
    assert_eq!(
        server.delivery.open_streams(),
        0,
        "closed streams release their place"
    );
}

#[tokio::test]
async fn many_streams_receive_one_change() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut stream = Stream::open(&server.base, "/all", &server.sdk_key).await;
        assert!(stream.read_until("event: put").await);
        streams.push(stream);
    }
    turn_on(&server, "alpha").await;
    for stream in &mut streams {
        assert!(stream.read_until("event: patch").await);
    }
}

#[tokio::test]
async fn a_stream_requested_on_a_reused_connection_is_served_too() {
    // The lean path sees only a connection's first request; later ones reach the router.
    let server = start(fast()).await;
    let pooled = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let first = pooled
        .get(format!("{}/sdk/latest-all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    let mut stream = pooled
        .get(format!("{}/all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).starts_with("event: put"));
}

#[tokio::test]
async fn a_malformed_stream_request_gets_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(fast()).await;
    let address = server.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket
        .write_all(b"GET /all HTTP/1.1\r\nBad Header Line\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

/// A raw `/all` stream that reads only when asked, its chunked body decoded by hand.
struct SlowReader {
    socket: tokio::net::TcpStream,
    raw: Vec<u8>,
}

impl SlowReader {
    async fn open(server: &crate::support::Server) -> SlowReader {
        use tokio::io::AsyncWriteExt;
        // The receive buffer keeps its default size: a tiny one would also make reading
        // afterwards crawl (a small window waits for delayed acknowledgements).
        let address = server.base.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "GET /all HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\r\n",
            server.sdk_key
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        SlowReader {
            socket,
            raw: Vec::new(),
        }
    }

    /// Reads until the decoded body holds `events` complete events, or 10 s pass.
    async fn read_events(&mut self, events: usize) -> Vec<(String, serde_json::Value)> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let decoded = self.decoded();
            if decoded.len() >= events {
                return decoded;
            }
            let mut buf = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.socket.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.raw.extend_from_slice(&buf[..n]),
                _ => return decoded,
            }
        }
    }

    /// The complete SSE events of the body so far, heartbeats left out.
    fn decoded(&self) -> Vec<(String, serde_json::Value)> {
        let raw = &self.raw;
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        let Some(mut at) = head_end else {
            return Vec::new();
        };
        assert!(raw.starts_with(b"HTTP/1.1 200"), "a stream response");
        let mut body = Vec::new();
        while let Some(line_end) = raw[at..].windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                std::str::from_utf8(&raw[at..at + line_end]).expect("a chunk size"),
                16,
            )
            .expect("a hexadecimal chunk size");
            let start = at + line_end + 2;
            if raw.len() < start + size + 2 {
                break;
            }
            assert_eq!(
                &raw[start + size..start + size + 2],
                b"\r\n",
                "a chunk ends"
            );
            body.extend_from_slice(&raw[start..start + size]);
            at = start + size + 2;
        }
        let text = String::from_utf8(body).expect("UTF-8 events");
        let complete = &text[..text.rfind("\n\n").map_or(0, |i| i + 2)];
        complete
            .split("\n\n")
            .filter_map(|block| {
                let event = block.lines().find_map(|l| l.strip_prefix("event: "))?;
                let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
                Some((event.to_owned(), serde_json::from_str(data).unwrap()))
            })
            .collect()
    }
}

#[tokio::test]
async fn a_stream_that_stops_reading_catches_up_in_order_when_it_reads_again() {
    // The fan-out writes each change straight into every stream's socket (`direct.rs`). A
    // client that stops reading fills its socket: what does not fit is queued for the
    // stream's own task, and past 64 queued changes the stream is sent the whole state
    // instead. Either way, once it reads again, it must end with exactly the server's state,
    // having never seen a flag go back to an older version.
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    create_flag(&server, "wide").await;
    let mut reader = SlowReader::open(&server).await;
    let opening = reader.read_events(1).await;
    assert_eq!(opening[0].0, "put");
    // About 200 changes of about 40 KB each: more than the kernel buffers between the two
    // ends hold (4 MiB at most here), so writes would block and more than 64 changes queue.
    let rounds = 200;
    for round in 0..rounds {
        crate::support::set_targeting(&server, "wide", |t| {
            t.targets = vec![flagstaff_protocol::Target {
                context_kind: None,
                values: (0..2000).map(|i| format!("user-{round}-{i:08}")).collect(),
                variation: 0,
            }];
        })
        .await;
        server.caught_up().await;
    }
    turn_on(&server, "alpha").await;
    server.caught_up().await;
    // What polling SDKs are served now: the state the stream must reach.
    let latest: serde_json::Value = client()
        .get(format!("{}/sdk/latest-all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want: Vec<(String, u64)> = ["alpha", "wide"]
        .iter()
        .map(|key| {
            let version = latest["flags"][key]["version"].as_u64().unwrap();
            (key.to_string(), version)
        })
        .collect();
    assert!(want[1].1 > rounds, "every change was published: {want:?}");
    // Reads until the last change is in, applying events as an SDK does.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut held: std::collections::HashMap<String, u64> = Default::default();
    let mut puts = 0;
    let mut read = 0;
    loop {
        let events = reader.read_events(read + 1).await;
        for (name, data) in &events[read..] {
            match name.as_str() {
                "put" => {
                    puts += 1;
                    for (key, flag) in data["data"]["flags"].as_object().unwrap() {
                        let version = flag["version"].as_u64().unwrap();
                        let old = held.insert(key.clone(), version).unwrap_or(0);
                        assert!(version >= old, "{key} went back from {old} to {version}");
                    }
                }
                "patch" => {
                    let Some(key) = data["path"].as_str().unwrap().strip_prefix("/flags/") else {
                        continue;
                    };
                    let version = data["data"]["version"].as_u64().unwrap();
                    let old = held.get(key).copied().unwrap_or(0);
                    assert!(version > old, "{key} patched from {old} to {version}");
                    held.insert(key.to_owned(), version);
                }
                other => panic!("unexpected event {other}"),
            }
        }
        read = events.len();
        if want.iter().all(|(key, v)| held.get(key) == Some(v)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "caught up: {held:?}, want {want:?}"
        );
    }
    assert!(
        puts >= 2,
        "more than 64 changes waited, so the stream got the whole state again ({puts} puts, {read} events)"
    );
}
