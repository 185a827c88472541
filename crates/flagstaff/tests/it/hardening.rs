//! Attacks on a real `flagstaff serve`, each of which worked before it was fixed (issue 17), and
//! must now fail cleanly without costing the server what the attacker wanted it to spend.

use std::path::Path;

use flagstaff_testkit::server::{self, TestServer};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
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
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = format!("{}/api/v1", server.base());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
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
