//! Attacks on a real `flagstaff serve`, each of which worked before it was fixed (issue 17), and
//! must now fail cleanly without costing the server what the attacker wanted it to spend.

use std::path::Path;

use flagstaff_testkit::server::{self, TestServer};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

/// A fresh `flagstaff serve` with its first-start credentials and its API's base URL.
struct Running {
    credentials: server::Credentials,
    server: TestServer,
    base: String,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        Running::with(&[])
    }

    /// A fresh server started with these extra arguments.
    fn with(args: &[&str]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let credentials = server::init(binary(), dir.path());
        let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", args);
        let base = format!("{}/api/v1", server.base());
        Running {
            credentials,
            server,
            base,
            _dir: dir,
        }
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// `[add /z [0]]` followed by `copies` × `copy /z → /z/-`: each copy doubles `/z`, so 30 or so
/// operations ask for gigabytes.
fn patch_bomb(copies: usize) -> Value {
    let mut operations = vec![json!({"op": "add", "path": "/z", "value": [0]})];
    operations.extend((0..copies).map(|_| json!({"op": "copy", "from": "/z", "path": "/z/-"})));
    Value::Array(operations)
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    if_match: Option<&str>,
    body: String,
) -> (u16, Value) {
    let mut request = http
        .request(method, url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body);
    if let Some(version) = if_match {
        request = request.header("if-match", version);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[test]
fn a_patch_bomb_is_refused_before_it_grows_the_server() {
    let Running {
        credentials,
        server,
        base,
        _dir,
    } = Running::start();
    block_on(async {
        let http = reqwest::Client::new();
        let admin = &credentials.admin_token;
        let token = |role: &'static str| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let (status, created) = send(
                    &http,
                    reqwest::Method::POST,
                    &format!("{base}/tokens"),
                    admin,
                    None,
                    json!({"name": role, "role": role}).to_string(),
                )
                .await;
                assert_eq!(status, 201, "{created}");
                created["secret"].as_str().unwrap().to_owned()
            }
        };
        let reader = token("reader").await;
        let writer = token("writer").await;
        let (status, _) = send(
            &http,
            reqwest::Method::POST,
            &format!("{base}/projects/default/flags"),
            admin,
            None,
            json!({"key": "x", "name": "X"}).to_string(),
        )
        .await;
        assert_eq!(status, 201);
        let flag = format!("{base}/projects/default/flags/x");
        let before = server.resident_kib();

        // A reader is refused before anything is parsed or applied: even a body that is not
        // JSON gets the 403, not a 400.
        let bomb = patch_bomb(40).to_string();
        let (status, refused) = send(
            &http,
            reqwest::Method::PATCH,
            &flag,
            &reader,
            Some("\"1\""),
            bomb.clone(),
        )
        .await;
        assert_eq!(status, 403, "{refused}");
        assert_eq!(refused["code"], "forbidden");
        let (status, refused) = send(
            &http,
            reqwest::Method::PATCH,
            &flag,
            &reader,
            Some("\"1\""),
            "{not json".into(),
        )
        .await;
        assert_eq!(status, 403, "{refused}");
        // A writer's bomb is refused by size, at the operation that would cross the limit.
        let (status, refused) = send(
            &http,
            reqwest::Method::PATCH,
            &flag,
            &writer,
            Some("\"1\""),
            bomb,
        )
        .await;
        assert_eq!(status, 413, "{refused}");
        assert_eq!(refused["code"], "payload_too_large");
        let at: usize = refused["field"]
            .as_str()
            .and_then(|f| f.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
            .expect("the operation's index");
        assert!((10..=40).contains(&at), "stopped at operation {at}");

        let after = server.resident_kib();
        // The original exploit grew the server from 14 MiB to 342 MiB with 22 operations; 40
        // would need terabytes. Allow for allocator noise, not for the bomb.
        assert!(
            after < before + 16 * 1024,
            "resident memory grew from {before} KiB to {after} KiB"
        );
        // The server still answers, and the flag is unchanged.
        let (status, unchanged) = send(
            &http,
            reqwest::Method::GET,
            &flag,
            admin,
            None,
            String::new(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(unchanged["version"], 1);
    });
}

#[test]
fn sign_in_guessing_is_throttled_per_client_address() {
    // The server and its directory live until the end of the test.
    let Running {
        credentials,
        server: _server,
        base,
        _dir,
    } = Running::start();
    block_on(async {
        let http = reqwest::Client::new();
        let (status, _) = send(
            &http,
            reqwest::Method::POST,
            &format!("{base}/members"),
            &credentials.admin_token,
            None,
            json!({"email": "ada@example.com", "name": "Ada", "role": "reader", "password": "correct horse battery"}).to_string(),
        )
        .await;
        assert_eq!(status, 201);
        let sign_in = |email: String, password: &'static str| {
            let http = http.clone();
            let url = format!("{base}/sessions");
            async move {
                let response = http
                    .post(url)
                    .json(&json!({"email": email, "password": password}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                (status, retry_after)
            }
        };
        // Six guesses, each at another account, all from this address.
        for i in 0..6 {
            assert_eq!(
                sign_in(format!("guess{i}@example.com"), "password1")
                    .await
                    .0,
                401
            );
        }
        // The address now waits, whatever account it tries, with a Retry-After to say how long.
        let (status, retry_after) =
            sign_in("ada@example.com".into(), "correct horse battery").await;
        assert_eq!(status, 429);
        assert_eq!(retry_after, Some(1));
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        assert_eq!(
            sign_in("ada@example.com".into(), "correct horse battery")
                .await
                .0,
            201
        );
    });
}

#[test]
fn the_data_directory_is_private_and_no_response_can_be_sniffed() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let credentials = server::init(binary(), &data);
    let server = TestServer::start(binary(), &data, "127.0.0.1:0", &[]);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            files += 1;
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }
    assert!(files >= 2, "the main and the events database");

    block_on(async {
        let http = reqwest::Client::new();
        for path in [
            "/health",
            "/api/v1/projects",
            "/sign-in",
            "/nowhere",
            "/sdk/latest-all",
        ] {
            let response = http
                .get(format!("{}{path}", server.base()))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response
                    .headers()
                    .get("x-content-type-options")
                    .map(|v| v.to_str().unwrap()),
                Some("nosniff"),
                "{path}"
            );
        }
    });
    // An SDK stream takes the lean path, without the router: it says nosniff too.
    let mut socket = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        socket,
        "GET /all HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        credentials.sdk_key
    )
    .unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 1024];
    let n = socket.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

/// A gzip body of about 10 KB that inflates to just under 10 MiB (the largest payload
/// accepted) of `[0,0,…]`: five million elements that are not events.
fn compression_bomb() -> Vec<u8> {
    use std::io::Write as _;
    let elements = (10 * 1024 * 1024 - 2) / 2;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(b"[0").unwrap();
    let chunk = ",0".repeat(64 * 1024);
    let mut written = 1;
    while written < elements {
        let n = (elements - written).min(64 * 1024);
        encoder.write_all(&chunk.as_bytes()[..n * 2]).unwrap();
        written += n;
    }
    encoder.write_all(b"]").unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_compression_bomb_flood_neither_stalls_sdk_streams_nor_grows_memory_past_its_bound() {
    use futures_util::StreamExt as _;
    use std::time::{Duration, Instant};

    let Running {
        credentials,
        server,
        base: _,
        _dir,
    } = Running::start();
    let bomb = compression_bomb();
    assert!(bomb.len() < 20 * 1024, "a {} byte bomb", bomb.len());
    block_on(async {
        let api = flagstaff_testkit::server::Api::new(&server.base(), &credentials.admin_token);
        api.post(
            "/projects/default/flags",
            &json!({"key": "kill-switch", "name": "Kill switch"}),
        )
        .await;
        let http = reqwest::Client::new();
        // A server SDK's stream, read in the background: when each flag patch arrives.
        let stream = http
            .get(format!("{}/all", server.base()))
            .header("Authorization", &credentials.sdk_key)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let (patches, mut patched) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        tokio::spawn(async move {
            let mut body = stream.bytes_stream();
            let mut text = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    if text[..end].starts_with("event: patch") {
                        let _ = patches.send(Instant::now());
                    }
                    text.drain(..end + 2);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = server.resident_kib();

        // Fifty bombs at once, each on its own connection.
        let flood_started = Instant::now();
        let bombs: Vec<_> = (0..50)
            .map(|_| {
                let http = http.clone();
                let url = format!("{}/bulk", server.base());
                let key = credentials.sdk_key.clone();
                let bomb = bomb.clone();
                tokio::spawn(async move {
                    let response = http
                        .post(url)
                        .header("Authorization", key)
                        .header("Content-Encoding", "gzip")
                        .header("Content-Type", "application/json")
                        .body(bomb)
                        .send()
                        .await
                        .unwrap();
                    (response.status().as_u16(), Instant::now())
                })
            })
            .collect();
        // While they are being inflated and read, the kill switch is turned on, and memory is
        // watched.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let targeting = "/projects/default/environments/production/flags/kill-switch";
        let current = api.get(targeting).await;
        let turned_on = json!({"on": true, "fallthrough": current["fallthrough"],
            "offVariation": current["offVariation"]});
        let changed_at = Instant::now();
        api.put(targeting, &turned_on, current["version"].as_u64())
            .await;
        let delivered_at = tokio::time::timeout(Duration::from_secs(30), patched.recv())
            .await
            .expect("the patch reaches the stream during the flood")
            .unwrap();
        let mut peak = server.resident_kib();
        let mut answers = Vec::new();
        let mut pending = bombs;
        while !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            peak = peak.max(server.resident_kib());
            let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|b| b.is_finished());
            pending = rest;
            for bomb in done {
                answers.push(bomb.await.unwrap());
            }
        }
        let flood_ended = answers.iter().map(|(_, at)| *at).max().unwrap();
        eprintln!(
            "compression-bomb flood: patch delivered {:?} after the change; the 50 bombs took {:?}; \
             resident {before} KiB before, {peak} KiB at peak",
            delivered_at - changed_at,
            flood_ended - flood_started
        );
        // Every bomb is answered as a payload that parses (202: SDKs keep sending), and the
        // change was delivered before the flood was over: streams were not waiting for it.
        assert!(
            answers.iter().all(|(status, _)| *status == 202),
            "{answers:?}"
        );
        assert!(
            delivered_at < flood_ended,
            "the patch arrived only after the flood ({:?} after the change)",
            delivered_at - changed_at
        );
        // Two payloads are inflated at a time (10 MiB each, read one element at a time); the
        // rest wait as 10 KB bodies. Allow 64 MiB over the start for that and the allocator.
        assert!(
            peak < before + 64 * 1024,
            "resident memory grew from {before} KiB to {peak} KiB"
        );
    });
}

#[test]
fn with_an_audit_key_verify_detects_the_deletion_of_the_newest_entries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("audit.key");
    std::fs::write(
        &key_file,
        "a secret of more than thirty-two bytes, kept apart\n",
    )
    .unwrap();
    let key_arg = format!("--audit-key-file={}", key_file.display());
    let credentials = server::init(binary(), &data);
    let mut running = TestServer::start(binary(), &data, "127.0.0.1:0", &[&key_arg]);
    block_on(async {
        let api = flagstaff_testkit::server::Api::new(&running.base(), &credentials.admin_token);
        for key in ["one", "two", "three"] {
            api.post("/projects/default/flags", &json!({"key": key, "name": key}))
                .await;
        }
    });
    running.stop();
    let verify = |with_key: bool| {
        let mut command = std::process::Command::new(binary());
        command.args(["audit", "verify", "--data-dir"]).arg(&data);
        if with_key {
            command.arg(&key_arg);
        }
        let output = command.output().unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, said) = verify(true);
    assert!(ok && said.contains("matches the anchored head"), "{said}");
    // Someone with access to the database removes the newest two entries (the last two flags'
    // creation), leaving a shorter chain whose every link still holds.
    let database = data.join("flagstaff.db");
    let removed = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute('DELETE FROM audit_log WHERE seq > (SELECT MAX(seq) - 2 FROM audit_log)'); \
             c.commit()",
        )
        .arg(&database)
        .status()
        .unwrap();
    assert!(removed.success());
    let (ok, said) = verify(false);
    assert!(ok, "without the key the shorter chain verifies: {said}");
    assert!(said.contains("not anchored"), "{said}");
    let (ok, said) = verify(true);
    assert!(!ok, "with the key the deletion is found: {said}");
    assert!(said.contains("were removed"), "{said}");
}

#[test]
fn two_thousand_half_open_connections_are_closed_and_a_real_sdk_is_served_meanwhile() {
    use flagstaff_testkit::sdk::{Driver, Sdk};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let Running {
        credentials,
        server,
        _dir,
        ..
    } = Running::with(&["--header-read-timeout-ms", "8000"]);
    let target: std::net::SocketAddr = server.address.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The attacker: 2,000 connections from another loopback address (127.0.0.2, so the
    // per-address cap of 2,000 admits them all), each sending half a request head, then nothing.
    let opened = Instant::now();
    let sockets: Vec<tokio::net::TcpStream> = runtime.block_on(async {
        let mut sockets = Vec::new();
        for _ in 0..2_000 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let mut stream = socket.connect(target).await.unwrap();
            stream
                .write_all(b"GET /sdk/latest-all HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            sockets.push(stream);
        }
        sockets
    });
    // Each one is watched for the server closing it.
    let closed: Vec<_> = sockets
        .into_iter()
        .map(|mut stream| {
            runtime.spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return Instant::now(),
                        Ok(_) => {}
                    }
                }
            })
        })
        .collect();

    // Meanwhile a real SDK connects, initializes and receives a change.
    if Sdk::available() {
        let mut python = Driver::start(Sdk::Python);
        let user = json!({"kind": "user", "key": "ann"});
        assert!(python.open("p", &credentials.sdk_key, &server.base(), true));
        let api = flagstaff_testkit::server::Api::new(&server.base(), &credentials.admin_token);
        runtime.block_on(api.post(
            "/projects/default/flags",
            &json!({"key": "during-the-attack", "name": "During the attack"}),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while python.value("p", "during-the-attack", &user, &json!("missing")) == json!("missing") {
            assert!(
                Instant::now() < deadline,
                "the SDK never saw the new flag while the connections were open"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            closed.iter().filter(|c| c.is_finished()).count() < 2_000,
            "the change must arrive while the half-open connections are still held"
        );
        python.close("p");
    }
    // Every half-open connection is closed by the server after the head timeout (8 s).
    let latest = runtime.block_on(async {
        let mut latest = opened;
        for watcher in closed {
            let at = tokio::time::timeout(Duration::from_secs(30), watcher)
                .await
                .expect("a half-open connection is still open 30 s later")
                .unwrap();
            latest = latest.max(at);
        }
        latest
    });
    eprintln!(
        "2,000 half-open connections: all closed {:?} after the first was opened",
        latest - opened
    );
}

#[test]
fn a_body_that_trickles_in_is_answered_408_after_the_body_timeout() {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};

    let Running {
        credentials,
        server,
        _dir,
        ..
    } = Running::with(&["--body-read-timeout-ms", "500"]);
    // The management API and the SDK events intake: a head that promises 100 bytes, then a few.
    for (path, authorization) in [
        (
            "/api/v1/projects/default/flags",
            format!("Bearer {}", credentials.admin_token),
        ),
        ("/bulk", credentials.sdk_key.clone()),
    ] {
        let mut socket = std::net::TcpStream::connect(&server.address).unwrap();
        write!(
            socket,
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{\"key\""
        )
        .unwrap();
        let started = Instant::now();
        // Without a body timeout no answer would ever come: the read would fail here.
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = [0u8; 512];
        let n = socket.read(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("request_timeout"), "{path}: {answer}");
        eprintln!("{path}: 408 after {:?}", started.elapsed());
    }
}
