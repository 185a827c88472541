//! `flagstaff serve` as a real process on a random port: first start, health, graceful
//! shutdown, and no acknowledged write lost to `kill -9`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running server and the address it listens on.
struct Server {
    child: Child,
    address: String,
    stdout: mpsc::Receiver<String>,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flagstaff"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flagstaff serve");
        let (address_tx, address_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let address = line[at + "listening on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = address_tx.send(address);
                }
            }
        });
        let (stdout_tx, stdout_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = stdout_tx.send(line);
            }
        });
        let address = address_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server reports its address");
        Server {
            child,
            address,
            stdout: stdout_rx,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET returning the raw body text.
fn get_text(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}

/// A minimal HTTP/1.1 client: one request per connection.
fn http(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let payload = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Ok((status, serde_json::from_str(payload).unwrap_or(Value::Null)))
}

#[test]
fn first_start_prints_credentials_once_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let token = loop {
        let line = server
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("credentials on first start");
        if let Some(token) = line.trim().strip_prefix("admin API token:") {
            break token.trim().to_owned();
        }
    };
    assert_eq!(
        http(&server.address, "GET", "/health", None, None)
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        http(&server.address, "GET", "/ready", None, None)
            .unwrap()
            .0,
        200
    );
    let (status, projects) = http(
        &server.address,
        "GET",
        "/api/v1/projects",
        Some(&token),
        None,
    )
    .unwrap();
    assert_eq!(
        (status, projects["items"][0]["key"].clone()),
        (200, json!("default"))
    );
    let environments = http(
        &server.address,
        "GET",
        "/api/v1/projects/default/environments",
        Some(&token),
        None,
    )
    .unwrap()
    .1;
    let keys: Vec<&str> = environments["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["production", "test"]);
    // Prometheus metrics: requests by route pattern, never by concrete path.
    let (status, metrics) = get_text(&server.address, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"flagstaff_http_requests_total{method="GET",route="/api/v1/projects/{project}/environments",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("/api/v1/projects/default"),
        "concrete paths would make series unbounded"
    );

    // SIGTERM: finish and exit cleanly.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");

    // A second start finds the data and prints no credentials.
    let second = Server::start(dir.path());
    assert_eq!(
        http(
            &second.address,
            "GET",
            "/api/v1/projects",
            Some(&token),
            None
        )
        .unwrap()
        .0,
        200
    );
    assert!(
        second
            .stdout
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "credentials are printed only once"
    );
}

#[test]
fn kill_9_loses_no_acknowledged_write_and_the_audit_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_flagstaff"))
        .args(["admin", "init", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let token = serde_json::from_slice::<Value>(&init.stdout).unwrap()["adminToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut server = Server::start(dir.path());
    let address = server.address.clone();
    // Write flags as fast as the server acknowledges them, from another thread, and kill -9
    // the server while that goes on.
    let writer_token = token.clone();
    let writer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..10_000 {
            let key = format!("flag-{i}");
            match http(
                &address,
                "POST",
                "/api/v1/projects/default/flags",
                Some(&writer_token),
                Some(&json!({"key": key, "name": key})),
            ) {
                Ok((201, _)) => acknowledged.push(key),
                Ok((status, body)) => panic!("unexpected {status}: {body}"),
                Err(_) => break, // the server is gone
            }
        }
        acknowledged
    });
    std::thread::sleep(Duration::from_millis(400));
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let acknowledged = writer.join().unwrap();
    assert!(
        acknowledged.len() > 5,
        "the writer barely ran: {}",
        acknowledged.len()
    );

    let restarted = Server::start(dir.path());
    for key in &acknowledged {
        let (status, _) = http(
            &restarted.address,
            "GET",
            &format!("/api/v1/projects/default/flags/{key}"),
            Some(&token),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "acknowledged flag {key} was lost");
    }
    drop(restarted);
    let verify = Command::new(env!("CARGO_BIN_EXE_flagstaff"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    println!(
        "kill -9: {} acknowledged writes, all present after restart; {}",
        acknowledged.len(),
        String::from_utf8_lossy(&verify.stdout).trim()
    );
}
