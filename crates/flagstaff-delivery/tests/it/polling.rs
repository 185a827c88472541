//! `/sdk/latest-all` and friends (`ld-protocol.md` §4.3, §4.4), the client-side FDv2 fallback (§10).

use std::io::Read;

use serde_json::{Value, json};

use crate::support::{client, create_flag, fast, start, turn_on};

#[tokio::test]
async fn latest_all_serves_every_flag_with_an_etag_and_304_until_a_change() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    let url = format!("{}/sdk/latest-all", server.base);
    let first = client()
        .get(&url)
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "application/json");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = first.json().await.unwrap();
    // Both collections are always present (Python indexes them unconditionally).
    assert_eq!(body["segments"], json!({}));
    assert_eq!(body["flags"]["alpha"]["key"], "alpha");
    assert!(body["flags"]["alpha"]["version"].is_u64());

    let again = client()
        .get(&url)
        .header("Authorization", &server.sdk_key)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());

    turn_on(&server, "alpha").await;
    // The change reaches the published state through the change feed.
    let changed = flagstaff_testkit::eventually(
        std::time::Duration::from_secs(5),
        "the change is published",
        || async {
            let response = client()
                .get(&url)
                .header("Authorization", &server.sdk_key)
                .header("If-None-Match", &etag)
                .send()
                .await
                .unwrap();
            (response.status() == 200).then_some(response)
        },
    )
    .await;
    assert_ne!(changed.headers()["etag"], etag.as_str());
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["flags"]["alpha"]["on"], true);
}

#[tokio::test]
async fn gzip_is_sent_to_clients_that_accept_it() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    let url = format!("{}/sdk/latest-all", server.base);
    let plain: Value = client()
        .get(&url)
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gzipped = client()
        .get(&url)
        .header("Authorization", &server.sdk_key)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let bytes = gzipped.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_ref())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), plain);
}

#[tokio::test]
async fn single_items_and_flags_only_documents() {
    let server = start(fast()).await;
    create_flag(&server, "alpha").await;
    let get = |path: String| {
        let key = server.sdk_key.clone();
        async move {
            let response = client()
                .get(path)
                .header("Authorization", key)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, flags) = get(format!("{}/sdk/latest-flags", server.base)).await;
    assert_eq!(status, 200);
    assert_eq!(flags["alpha"]["key"], "alpha");
    assert!(flags.get("flags").is_none(), "flags only, no wrapper");
    let (status, flag) = get(format!("{}/sdk/latest-flags/alpha", server.base)).await;
    assert_eq!((status, flag["key"].clone()), (200, json!("alpha")));
    let (status, flag) = get(format!("{}/sdk/flags/alpha", server.base)).await;
    assert_eq!((status, flag["key"].clone()), (200, json!("alpha")));
    let (status, _) = get(format!("{}/sdk/latest-flags/missing", server.base)).await;
    assert_eq!(status, 404);
    let (status, segments) = get(format!("{}/sdk/latest-segments", server.base)).await;
    assert_eq!((status, segments), (200, json!({})));
}

#[tokio::test]
async fn unknown_keys_get_401_and_other_credentials_do_not_work() {
    let server = start(fast()).await;
    let url = format!("{}/sdk/latest-all", server.base);
    for key in [None, Some("sdk-unknown"), Some("Bearer x y")] {
        let mut request = client().get(&url);
        if let Some(key) = key {
            request = request.header("Authorization", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{key:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
    }
    // The mobile key and the client-side ID of the same environment cannot read rules.
    let env = server
        .app
        .environment(&server.admin, "default", "production")
        .await
        .unwrap();
    for credential in [&env.value.client_side_id, &server.mobile_key] {
        let status = client()
            .get(&url)
            .header("Authorization", credential)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
        let status = client()
            .get(format!("{}/all", server.base))
            .header("Authorization", credential)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    // The `api_key ` form is accepted for SDK keys too.
    let status = client()
        .get(&url)
        .header("Authorization", format!("api_key {}", server.sdk_key))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_the_very_next_request() {
    let server = start(fast()).await;
    let url = format!("{}/sdk/latest-all", server.base);
    let poll = |key: String| {
        let url = url.clone();
        async move {
            client()
                .get(url)
                .header("Authorization", key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(poll(server.sdk_key.clone()).await, 200, "and now cached");
    let new_key = server
        .app
        .rotate_key(
            &server.admin,
            "default",
            "production",
            flagstaff_app::CredentialKind::Sdk,
            0,
            "",
        )
        .await
        .unwrap();
    // No wait for the change-feed worker: the cache knows this process committed since.
    assert_eq!(poll(server.sdk_key.clone()).await, 401);
    assert_eq!(poll(new_key).await, 200);
}
