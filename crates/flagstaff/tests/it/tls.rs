//! HTTPS built in (issue 17): `flagstaff serve --tls-cert --tls-key` with a certificate from a
//! throwaway CA made here. LaunchDarkly's own Python and Node SDKs, told to trust that CA, stream
//! flags over it and see a change; the API and the dashboard answer over it with HSTS and
//! `__Host-` cookies; plain HTTP on the port gets nowhere; SIGHUP loads a renewed certificate
//! without dropping the SDKs, and a broken one is refused while the old one keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagstaff_testkit::sdk::{Driver, Sdk};
use flagstaff_testkit::server::{self, TestServer};
use flagstaff_testkit::tls::Authority;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

/// What one HTTPS request got: the status, the response head (lower-cased), the body, and the
/// certificate the server presented.
struct Answer {
    status: u16,
    head: String,
    body: String,
    certificate: Vec<u8>,
}

/// Sends one request over a new TLS connection that trusts only `ca_pem`.
async fn https(address: &str, ca_pem: &str, request: &str) -> Answer {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let certificate = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    // The server may close without a TLS close_notify; what arrived is the answer.
    let _ = stream.read_to_end(&mut bytes).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        head,
        body,
        certificate,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

fn request(method: &str, path: &str, token: &str, body: Option<&Value>) -> String {
    let body = body.map(Value::to_string).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_real_sdks_the_api_and_the_dashboard_work_over_tls_and_sighup_renews_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let authority = Authority::new();
    let ca_path = dir.path().join("ca.pem");
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    let ca_pem = authority.pem();
    std::fs::write(&ca_path, &ca_pem).unwrap();
    let first = authority.issue("first");
    std::fs::write(&cert_path, &first.certificate_pem).unwrap();
    std::fs::write(&key_path, &first.key_pem).unwrap();
    let first_der = first.der;

    let credentials = server::init(binary(), &data);
    let cert_arg = format!("--tls-cert={}", cert_path.display());
    let key_arg = format!("--tls-key={}", key_path.display());
    let running = TestServer::start(binary(), &data, "127.0.0.1:0", &[&cert_arg, &key_arg]);
    let address = running.address.clone();
    let base = format!("https://{address}");
    let token = credentials.admin_token.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send = |method: &str, path: &str, body: Option<&Value>| {
        runtime.block_on(https(
            &address,
            &ca_pem,
            &request(method, path, &token, body),
        ))
    };

    // The API over TLS, with HSTS; the certificate is the one in the files.
    let health = send("GET", "/health", None);
    assert_eq!(health.status, 200, "{}", health.head);
    assert!(
        health
            .head
            .contains("strict-transport-security: max-age=31536000"),
        "{}",
        health.head
    );
    assert_eq!(health.certificate, first_der);
    let created = send(
        "POST",
        "/api/v1/projects/default/flags",
        Some(&json!({"key": "tls-flag", "name": "TLS flag"})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    // The dashboard's cookies are Secure and host-only over our own TLS, even on 127.0.0.1.
    let sign_in = send("GET", "/setup", None);
    assert!(
        sign_in
            .head
            .contains("set-cookie: __host-flagstaff_signin=")
            && sign_in.head.contains("; secure"),
        "{}",
        sign_in.head
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{address}/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
    });
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP was served"
    );

    if !Sdk::available() {
        return;
    }
    let user = json!({"kind": "user", "key": "ann"});
    let mut drivers: Vec<Driver> = Sdk::ALL.iter().map(|sdk| Driver::start(*sdk)).collect();
    for driver in &mut drivers {
        let opened = driver.send(
            &json!({"cmd": "open", "id": "t", "sdkKey": credentials.sdk_key,
            "baseUri": base, "stream": true, "startWait": 10, "caCert": ca_path}),
        );
        assert_eq!(opened["initialized"], true, "{opened}");
        assert_eq!(
            driver.value("t", "tls-flag", &user, &json!("default")),
            false
        );
    }
    let targeting = "/api/v1/projects/default/environments/production/flags/tls-flag";
    let turn = |on: bool| {
        let current: Value = serde_json::from_str(&send("GET", targeting, None).body).unwrap();
        let version = current["version"].as_u64().unwrap();
        // Variations are [true, false]: on serves true to everyone, off serves false.
        let body = json!({"on": on, "fallthrough": {"variation": 0}, "offVariation": 1});
        let put = runtime.block_on(https(
            &address,
            &ca_pem,
            &request("PUT", targeting, &token, Some(&body)).replace(
                "Connection: close",
                &format!("If-Match: \"{version}\"\r\nConnection: close"),
            ),
        ));
        assert_eq!(put.status, 200, "{}", put.body);
    };
    turn(true);
    for driver in &mut drivers {
        eventually("the SDK sees the change over its TLS stream", || {
            driver.value("t", "tls-flag", &user, &json!("default")) == json!(true)
        });
    }

    // A renewed certificate (same CA) is used by new connections after SIGHUP; the SDKs' open
    // streams carry on and see the next change.
    let second = authority.issue("second");
    std::fs::write(&cert_path, &second.certificate_pem).unwrap();
    std::fs::write(&key_path, &second.key_pem).unwrap();
    let second_der = second.der;
    let hangup = |server: &TestServer| {
        let pid = server.pid().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    hangup(&running);
    eventually("new connections get the renewed certificate", || {
        send("GET", "/health", None).certificate == second_der
    });
    turn(false);
    for driver in &mut drivers {
        eventually("the SDK still streams after the reload", || {
            driver.value("t", "tls-flag", &user, &json!("default")) == json!(false)
        });
    }
    // A broken certificate file is refused on reload; the server keeps the one it has.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    hangup(&running);
    std::thread::sleep(Duration::from_millis(300));
    let after = send("GET", "/health", None);
    assert_eq!(
        (after.status, after.certificate),
        (200, second_der),
        "the previous certificate is kept"
    );
    for driver in &mut drivers {
        driver.send(&json!({"cmd": "close", "id": "t"}));
    }
}
