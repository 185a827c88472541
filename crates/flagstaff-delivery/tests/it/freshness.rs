//! A node that cannot read its database stops vouching for its data (issue 23, point 3):
//! streams end, SDK requests get `503` with `Retry-After`, so SDKs go to a node that can.

use std::time::Duration;

use flagstaff_delivery::DeliveryConfig;

use crate::support::{Stream, client, create_flag, fast, start};

#[tokio::test]
async fn a_node_cut_off_from_its_database_ends_streams_and_refuses_sdks() {
    let server = start(DeliveryConfig {
        stale_after: Some(Duration::from_millis(400)),
        ..fast()
    })
    .await;
    create_flag(&server, "alpha").await;
    server.caught_up().await;
    let mut stream = Stream::open(&server.base, "/all", &server.sdk_key).await;
    assert!(stream.read_until("event: put").await);
    let poll = || async {
        client()
            .get(format!("{}/sdk/latest-all", server.base))
            .header("Authorization", &server.sdk_key)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(poll().await.status(), 200);
    // Well inside the bound, nothing changes: a slow poll is not an outage.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(server.delivery.is_fresh());

    // The database goes away (what a partition looks like from here: every read fails).
    server.store.close().await;
    assert!(
        stream.read_to_end().await,
        "the stream is ended once the bound passes"
    );
    assert!(!server.delivery.is_fresh());
    let refused = poll().await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    // New streams too, browser ones included: nothing is served as if it were current.
    let stream = client()
        .get(format!("{}/all", server.base))
        .header("Authorization", &server.sdk_key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 503);
    let browser = client()
        .get(format!(
            "{}/sdk/evalx/{}/contexts/eyJrZXkiOiJ1In0",
            server.base, server.client_side_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 503);
}

#[tokio::test]
async fn without_a_bound_the_last_data_is_served_however_old() {
    let server = start(DeliveryConfig {
        stale_after: None,
        ..fast()
    })
    .await;
    create_flag(&server, "alpha").await;
    server.caught_up().await;
    let mut stream = Stream::open(&server.base, "/all", &server.sdk_key).await;
    assert!(stream.read_until("event: put").await);
    server.store.close().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(server.delivery.is_fresh());
    assert!(!stream.read_to_end().await, "the stream stays open");
}
