//! The shared edge over a real axum router in process: the same answers for the same mistakes.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use flagstaff_app::{AppError, ErrorCode};
use flagstaff_http::{ApiError, JsonBody, MAX_BODY_BYTES};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Thing {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    tags: Vec<String>,
}

async fn post_thing(body: Body, length: Option<usize>) -> (StatusCode, Value) {
    let (status, _, body) = post_thing_with_headers(body, length).await;
    (status, body)
}

async fn post_thing_with_headers(
    body: Body,
    length: Option<usize>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let router: Router = Router::new().route(
        "/",
        post(|JsonBody(_): JsonBody<Thing>| async { StatusCode::NO_CONTENT }),
    );
    let mut request = Request::post("/").header("content-type", "application/json");
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    let response = router
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_well_formed_body_passes() {
    let body = json!({"name": "x", "tags": []}).to_string();
    assert_eq!(
        post_thing(Body::from(body), None).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_wrong_shape_is_400_invalid_body_naming_the_field() {
    let body = json!({"name": "x", "tags": [1]}).to_string();
    let (status, error) = post_thing(Body::from(body), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "invalid_body");
    assert_eq!(error["field"], "tags[0]");
    let (status, error) = post_thing(Body::from("{\"name\": "), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "invalid_body");
}

#[tokio::test]
async fn an_oversized_body_is_413_whether_declared_or_streamed() {
    let big = format!(
        "{{\"name\": \"{}\", \"tags\": []}}",
        "x".repeat(MAX_BODY_BYTES)
    );
    let declared = big.len();
    let (status, headers, error) =
        post_thing_with_headers(Body::from(big.clone()), Some(declared)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "payload_too_large");
    // The unread rest of the body makes the connection unusable: clients are told to close it.
    assert_eq!(headers["connection"], "close");
    // Without a length (chunked), the reader stops at the limit.
    let stream = futures_like_stream(big);
    let (status, error) = post_thing(stream, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "payload_too_large");
}

/// A body of unknown length, as a chunked request has.
fn futures_like_stream(text: String) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn app_errors_get_their_code_s_status_and_storage_details_stay_in_the_log() {
    use axum::response::IntoResponse;
    let cases = [
        (AppError::NotFound("flag \"x\"".into()), 404, "not_found"),
        (AppError::Unauthorized, 401, "unauthorized"),
        (AppError::Forbidden("no".into()), 403, "forbidden"),
        (AppError::AlreadyExists("x".into()), 409, "already_exists"),
        (
            AppError::Conflict { current: Some(3) },
            409,
            "version_conflict",
        ),
        (
            AppError::invalid(ErrorCode::InvalidKey, "key", "bad"),
            400,
            "invalid_key",
        ),
    ];
    for (error, status, code) in cases {
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status().as_u16(), status);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["code"], code);
    }
    let conflict = ApiError::from(AppError::Conflict { current: Some(3) }).into_response();
    let bytes = axum::body::to_bytes(conflict.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).expect("JSON")["currentVersion"],
        3
    );

    let storage = AppError::Store(flagstaff_store::StoreError::Corrupt(
        "row 7 of documents: secret detail".into(),
    ));
    let response = ApiError::from(storage).into_response();
    assert_eq!(response.status().as_u16(), 500);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(body["code"], "internal");
    assert!(!body.to_string().contains("secret detail"), "{body}");
}

#[tokio::test]
async fn a_body_slower_than_the_timeout_is_refused_and_a_prompt_one_is_read() {
    use flagstaff_http::{BodyRefused, read_limited_within};
    use std::time::Duration;
    // A client that sends ten bytes and then nothing more, holding its connection open.
    let trickle = futures_util::stream::iter([Ok::<_, std::io::Error>(b"[1,2,3,4,".to_vec())])
        .chain(futures_util::stream::pending());
    let headers = axum::http::HeaderMap::new();
    let refused = read_limited_within(
        &headers,
        Body::from_stream(trickle),
        1024,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(refused, Err(BodyRefused::TooSlow));
    let answer = ApiError::from(BodyRefused::TooSlow);
    assert_eq!(answer.code(), ErrorCode::RequestTimeout);
    let read = read_limited_within(
        &headers,
        Body::from("[1,2]"),
        1024,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(read.as_deref(), Ok(&b"[1,2]"[..]));
}
