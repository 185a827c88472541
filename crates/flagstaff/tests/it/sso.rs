//! OpenID Connect single sign-on end to end (issue 18): `flagstaff serve --oidc-issuer …`
//! against a real OpenID Provider (npm `oidc-provider`, started here on 127.0.0.1), driven in
//! headless chromium: the first sign-in provisions a member with the default role, the groups
//! claim puts them in the matching team (and its roles), a replayed callback is refused, and
//! with `--password-sign-in false` passwords no longer work. Token validation failures (wrong
//! audience, expiry, nonce, foreign keys, algorithm confusion) are unit-tested beside the
//! validator (`flagstaff-dashboard` `sso.rs`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use flagstaff_testkit::sdk::Browser;
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::json;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

/// The OpenID Provider process, stopped when dropped. Its output stays open while it runs: a
/// closed pipe would kill it at its next log line.
struct Provider(
    Child,
    #[allow(dead_code)] BufReader<std::process::ChildStdout>,
);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_provider(port: u16, redirect_uri: &str) -> Provider {
    let root = flagstaff_testkit::workspace_root().join("sdk-clients/browser");
    let input = json!({"port": port, "clientId": "flagstaff", "clientSecret": "a-client-secret-of-some-length",
        "redirectUri": redirect_uri,
        "accounts": {"sam": {"email": "sam@example.com", "name": "Sam Support", "groups": ["support", "unknown-group"]}}});
    let mut child = Command::new("node")
        .arg(root.join("oidc-provider.mjs"))
        .arg(input.to_string())
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs the provider");
    let mut line = String::new();
    let mut output = BufReader::new(child.stdout.take().expect("stdout"));
    output.read_line(&mut line).expect("the provider starts");
    assert_eq!(line.trim(), "ready", "the provider said {line:?}");
    Provider(child, output)
}

#[test]
fn members_sign_in_through_an_openid_provider_with_groups_as_teams() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let args = [
        "--oidc-issuer",
        issuer.as_str(),
        "--oidc-client-id",
        "flagstaff",
        "--oidc-client-secret",
        "a-client-secret-of-some-length",
        "--oidc-groups-claim",
        "groups",
        "--password-sign-in",
        "false",
    ];
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &args);
    let base = server.base();
    let _provider = start_provider(port, &format!("{base}/sso/callback"));
    let admin = Api::new(&base, &credentials.admin_token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // An administrator exists (first run is over), made through the API.
        admin
            .post("/members", &json!({"email": "ada@example.com", "name": "Ada", "role": "admin", "password": "correct horse battery"}))
            .await;
        admin
            .post("/roles", &json!({"key": "kill-switch", "name": "Support", "policy": [
                {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]}]}))
            .await;
        admin
            .post("/teams", &json!({"key": "support", "name": "Support", "customRoles": ["kill-switch"]}))
            .await;
        admin
            .post("/teams", &json!({"key": "staff", "name": "Staff"}))
            .await;
    });

    let report = Browser::run_script("sso.mjs", &json!({"base": base, "login": "sam"}));
    eprintln!("sso report: {report:#}");
    assert_eq!(
        report["passwordForm"], 0,
        "password sign-in is off: no form"
    );
    assert_eq!(report["providerHost"], format!("127.0.0.1:{port}"));
    assert_eq!(
        report["role"], "reader",
        "provisioned with the default role: {report}"
    );
    assert_eq!(report["replayStatus"], 403, "{report}");
    assert!(
        report["replayMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("did not start here"),
        "{report}"
    );

    rt.block_on(async {
        let members = admin.get("/members").await;
        let sam = members["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == "sam@example.com")
            .cloned()
            .expect("sam was provisioned");
        assert_eq!((sam["name"].clone(), sam["role"].clone()), (json!("Sam Support"), json!("reader")));
        // The groups claim named `support` (a team) and `unknown-group` (none): only the team.
        assert_eq!(admin.get("/teams/support").await["members"], json!(["sam@example.com"]));
        assert_eq!(admin.get("/teams/staff").await["members"], json!([]));
        let check = admin
            .get("/access/check?action=updateOn&resource=proj/default:env/production:flag/x&member=sam@example.com")
            .await;
        assert_eq!((check["allowed"].clone(), check["role"].clone()), (json!(true), json!("kill-switch")));
        // Passwords are off, through the API too.
        let (status, body) = Api::new(&base, "none")
            .call(reqwest::Method::POST, "/sessions", Some(&json!({"email": "sam@example.com", "password": "whatever"})), None)
            .await;
        assert_eq!(status, 403, "{body}");
    });
}
