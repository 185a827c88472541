//! Offline bundles as real processes: `flagstaff export` signs an environment's data (with a key
//! made by openssl, as an operator would), `flagstaff relay --offline` serves it with no
//! upstream to LaunchDarkly's Python and Node SDKs, a replaced bundle reaches them live, and a
//! bundle signed by another key or half written is refused while the last good one is served.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flagstaff_testkit::sdk::{Driver, Sdk};
use serde_json::{Value, json};

use crate::sdks::{binary, eventually, fresh_server, runtime};

/// An Ed25519 key pair in PEM files (`name.pem`, `name.pub`), made by openssl.
fn key_pair(dir: &Path, name: &str) -> bool {
    let private = dir.join(format!("{name}.pem"));
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private)
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(dir.join(format!("{name}.pub")))
            .output()
            .is_ok_and(|o| o.status.success());
    if !made {
        eprintln!(
            "!!! openssl cannot make Ed25519 keys here: skipping the offline bundle test !!!"
        );
    }
    made
}

fn export(data_dir: &Path, out: &Path, key: &Path) {
    let output = Command::new(binary())
        .args([
            "export",
            "--project",
            "default",
            "--environments",
            "production,test",
            "--data-dir",
        ])
        .arg(data_dir)
        .arg("--out")
        .arg(out)
        .arg("--signing-key")
        .arg(key)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "export: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts `flagstaff relay --offline` on a free port; returns it and its base URL.
fn offline_relay(bundle: &Path, verify_key: &Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary())
        .args(["relay", "--offline"])
        .arg(bundle)
        .arg("--verify-key")
        .arg(verify_key)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("FLAGSTAFF_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(20), || status(&base).is_some()),
        "the offline relay answers"
    );
    (child, base)
}

fn status(base: &str) -> Option<Value> {
    runtime().block_on(async {
        reqwest::get(format!("{base}/status"))
            .await
            .ok()?
            .json()
            .await
            .ok()
    })
}

#[test]
fn a_signed_bundle_is_served_offline_reloaded_live_and_a_forged_one_refused() {
    let keys = tempfile::tempdir().unwrap();
    if !key_pair(keys.path(), "ours") || !key_pair(keys.path(), "theirs") {
        return;
    }
    if !Sdk::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, api, sdk_key) = fresh_server(dir.path());
    let rt = runtime();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "launch", "name": "Launch"}),
    ));
    let targeting = "/projects/default/environments/production/flags/launch";
    // Browsers must prove the context with the SDK key's HMAC (secure mode): the bundle carries
    // the key schedule, not the key, and the offline relay checks hashes with it.
    let environment = rt.block_on(api.get("/projects/default/environments/production"));
    let client_side_id = environment["clientSideId"].as_str().unwrap().to_owned();
    rt.block_on(api.put(
        "/projects/default/environments/production",
        &json!({"name": environment["name"], "secureMode": true}),
        environment["version"].as_u64(),
    ));
    // `export` reads the database directly, as an operator would in the air-gapped copy.
    let data_dir = dir.path();
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle.tar.gz");
    export(data_dir, &bundle, &keys.path().join("ours.pem"));

    // The bundle carries fingerprints, never keys.
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&bundle).unwrap()),
        &mut unpacked,
    )
    .unwrap();
    let unpacked = String::from_utf8_lossy(&unpacked);
    assert!(unpacked.contains("\"launch\""));
    assert!(!unpacked.contains(&sdk_key), "the SDK key is in the bundle");

    let (mut relay, base) = offline_relay(&bundle, &keys.path().join("ours.pub"));
    let status_now = status(&base).unwrap();
    assert_eq!(
        status_now["environments"][0]["state"], "offline bundle",
        "{status_now}"
    );
    let mut drivers: Vec<Driver> = Sdk::ALL.into_iter().map(Driver::start).collect();
    let ann = json!({"kind": "user", "key": "ann"});
    for driver in &mut drivers {
        assert!(
            driver.open("o", &sdk_key, &base, true),
            "{} initializes",
            driver.sdk.name()
        );
        assert_eq!(
            driver.value("o", "launch", &ann, &json!("default")),
            json!(false)
        );
    }
    // A key the bundle does not hold is refused by the relay as by the server.
    let code = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/sdk/latest-all"))
            .header("Authorization", "sdk-unknown")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(code, 401);
    let evalx = |hash: &str| {
        // base64url of {"kind":"user","key":"ann"}
        let context = "eyJraW5kIjoidXNlciIsImtleSI6ImFubiJ9";
        rt.block_on(async {
            reqwest::get(format!(
                "{base}/sdk/evalx/{client_side_id}/contexts/{context}?h={hash}"
            ))
            .await
            .unwrap()
            .status()
            .as_u16()
        })
    };
    let sign = |message: &str| {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(sdk_key.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(evalx(&sign("ann")), 200, "the right hash is accepted");
    assert_eq!(
        evalx(&sign("bob")),
        400,
        "another context's hash is refused"
    );

    // The flag is turned on upstream and a new bundle is dropped in place: the SDKs see it.
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    export(data_dir, &bundle, &keys.path().join("ours.pem"));
    let all_see = |drivers: &mut Vec<Driver>, expected: &Value| {
        drivers.iter_mut().all(|d| {
            eventually(Duration::from_secs(10), || {
                d.value("o", "launch", &ann, &json!("default")) == *expected
            })
        })
    };
    assert!(
        all_see(&mut drivers, &json!(true)),
        "the new bundle reaches the SDKs"
    );

    // The flag goes off again, but the bundle that says so is signed by someone else, then
    // written half: both refused, the last good data served, and the status says why.
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": false, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    let forged = out.path().join("forged.tar.gz");
    export(data_dir, &forged, &keys.path().join("theirs.pem"));
    std::fs::copy(&forged, &bundle).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        status(&base).unwrap()["environments"][0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("signature"))
    }));
    let good = out.path().join("good.tar.gz");
    export(data_dir, &good, &keys.path().join("ours.pem"));
    let whole = std::fs::read(&good).unwrap();
    std::fs::write(&bundle, &whole[..whole.len() / 2]).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        status(&base).unwrap()["environments"][0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("not a readable bundle"))
    }));
    std::thread::sleep(Duration::from_secs(1));
    for driver in &mut drivers {
        assert_eq!(
            driver.value("o", "launch", &ann, &json!("default")),
            json!(true),
            "{} keeps the last good bundle",
            driver.sdk.name()
        );
    }
    // The whole file, at last: served.
    std::fs::write(&bundle, &whole).unwrap();
    assert!(
        all_see(&mut drivers, &json!(false)),
        "the completed bundle is served"
    );
    assert_eq!(status(&base).unwrap()["status"], "healthy");
    let _ = relay.kill();
    let _ = relay.wait();

    // Promotion into another installation: its own keys, the same flags. A forged bundle is
    // refused and imports nothing.
    let other = tempfile::tempdir().unwrap();
    let credentials = flagstaff_testkit::server::init(binary(), other.path());
    let import = |bundle: &Path| {
        Command::new(binary())
            .args(["admin", "import-bundle", "--data-dir"])
            .arg(other.path())
            .arg(bundle)
            .arg("--verify-key")
            .arg(keys.path().join("ours.pub"))
            .output()
            .unwrap()
    };
    let refused = import(&forged);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let imported = import(&bundle);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(String::from_utf8_lossy(&imported.stdout).contains("default/production: 1 flags"));
    let promoted =
        flagstaff_testkit::server::TestServer::start(binary(), other.path(), "127.0.0.1:0", &[]);
    let served = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/sdk/latest-all", promoted.base()))
            .header("Authorization", &credentials.sdk_key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    assert_eq!(served["flags"]["launch"]["on"], false, "{served}");
    assert_ne!(
        credentials.sdk_key, sdk_key,
        "each installation keeps its own keys"
    );
    drop(server);
}
