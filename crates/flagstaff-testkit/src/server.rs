//! `flagstaff serve` as a real process, and a client for its management API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The credentials `flagstaff admin init --json` printed.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The administrator's API token.
    pub admin_token: String,
    /// The SDK key of `default/production`.
    pub sdk_key: String,
}

/// Initializes a data folder with `flagstaff admin init --json`.
pub fn init(binary: &Path, data_dir: &Path) -> Credentials {
    let output = Command::new(binary)
        .args(["admin", "init", "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run flagstaff admin init");
    assert!(
        output.status.success(),
        "admin init failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let init: Value = serde_json::from_slice(&output.stdout).expect("admin init prints JSON");
    Credentials {
        admin_token: init["adminToken"].as_str().unwrap().to_owned(),
        sdk_key: init["environments"][0]["keys"]["sdkKey"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

/// A running `flagstaff serve`. Killed when dropped.
#[derive(Debug)]
pub struct TestServer {
    child: Child,
    /// `127.0.0.1:port`.
    pub address: String,
    binary: PathBuf,
    data_dir: PathBuf,
    extra_args: Vec<String>,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl TestServer {
    /// Starts `binary serve` on `listen` (`127.0.0.1:0` for a free port) over `data_dir`.
    pub fn start(binary: &Path, data_dir: &Path, listen: &str, extra_args: &[&str]) -> TestServer {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env("FLAGSTAFF_LOG", "warn,flagstaff::server=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flagstaff serve");
        // What the server prints on stdout (the credentials of a first start), kept.
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout is piped");
        let kept = std::sync::Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let address = read_address(&mut child, "server");
        TestServer {
            child,
            address,
            binary: binary.to_owned(),
            data_dir: data_dir.to_owned(),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            stdout,
        }
    }

    /// What the server printed on stdout so far (on a first start: the credentials).
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits up to `timeout` until what the server printed on stdout satisfies `done`, and
    /// returns it either way. The server writes before it listens, but the thread that keeps
    /// the output may not have read the pipe yet when the test looks.
    pub fn stdout_when(&self, done: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let printed = self.stdout();
            if done(&printed) || Instant::now() >= deadline {
                return printed;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process with SIGKILL (no chance to finish anything) and waits for it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's resident memory now (KiB, from `/proc`), for tests that check an attack
    /// does not make it grow.
    pub fn resident_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same address and data (after [`TestServer::stop`]).
    pub fn restart(&mut self) {
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let mut server =
            retry_start(|| TestServer::start(&self.binary, &self.data_dir, &self.address, &extra));
        // The old, stopped process is dropped with `server`.
        std::mem::swap(self, &mut server);
    }
}

/// Reads a starting process's stderr until it says `listening on http(s)://<address>` and
/// returns the address; later lines are echoed (prefixed with `label`) when
/// `FLAGSTAFF_TEST_SERVER_LOG` is set.
pub(crate) fn read_address(child: &mut Child, label: &'static str) -> String {
    let (address_tx, address_rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let said = ["listening on http://", "listening on https://"]
                .iter()
                .find_map(|prefix| line.find(prefix).map(|at| at + prefix.len()));
            if let Some(at) = said {
                let address = line[at..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = address_tx.send(address);
            } else if std::env::var_os("FLAGSTAFF_TEST_SERVER_LOG").is_some() {
                eprintln!("{label}: {line}");
            }
        }
    });
    address_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("the {label} reports its address"))
}

/// Starts a process again on a port it just released; binding it again can race with the
/// kernel for a moment, so a failed start is retried for a few seconds.
pub(crate) fn retry_start<T>(start: impl Fn() -> T + std::panic::RefUnwindSafe) -> T {
    let mut last = None;
    for _ in 0..50 {
        match std::panic::catch_unwind(&start) {
            Ok(started) => return started,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::panic::resume_unwind(last.expect("at least one attempt"));
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for the management API with an API token.
#[derive(Clone, Debug)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// A client for the server at `base` (`http://...`).
    pub fn new(base: &str, token: &str) -> Api {
        Api::with_client(base, token, reqwest::Client::builder())
    }

    /// A client for a server at `base` (`https://...`) whose certificate comes from the
    /// certificate authority `ca_pem` (a test's own), the only one it trusts.
    pub fn trusting(base: &str, token: &str, ca_pem: &str) -> Api {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("a PEM certificate");
        Api::with_client(
            base,
            token,
            reqwest::Client::builder().add_root_certificate(ca),
        )
    }

    fn with_client(base: &str, token: &str, builder: reqwest::ClientBuilder) -> Api {
        Api {
            // No pooled connections: tests restart the server under the client.
            client: builder.pool_max_idle_per_host(0).build().expect("a client"),
            base: format!("{base}/api/v1"),
            token: token.to_owned(),
        }
    }

    /// The API token this client sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sends a request; returns the status and the JSON body (`null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<u64>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(version) = if_match {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// GET, expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// POST, expecting 200 or 201.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = self
            .call(reqwest::Method::POST, path, Some(body), None)
            .await;
        assert!(
            status == 200 || status == 201,
            "POST {path}: {status} {answer}"
        );
        answer
    }

    /// PUT with `If-Match: version`, expecting 200 or 201.
    pub async fn put(&self, path: &str, body: &Value, version: Option<u64>) -> Value {
        let (status, answer) = self
            .call(reqwest::Method::PUT, path, Some(body), version)
            .await;
        assert!(
            status == 200 || status == 201,
            "PUT {path}: {status} {answer}"
        );
        answer
    }

    /// DELETE with `If-Match: version`, expecting 204 or 200.
    pub async fn delete(&self, path: &str, version: u64) {
        let (status, answer) = self
            .call(reqwest::Method::DELETE, path, None, Some(version))
            .await;
        assert!(
            status == 204 || status == 200,
            "DELETE {path}: {status} {answer}"
        );
    }
}
