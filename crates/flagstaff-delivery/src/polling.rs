//! Polling (`ld-protocol.md` §4.3, §4.4): the published data as plain JSON documents.
//!
//! Bodies are serialized once per published state and shared by every request; the gzip form
//! too, made on first request. Each carries a strong `ETag` derived from its content: SDKs send
//! it back in `If-None-Match` and get `304 Not Modified` while nothing changed (real SDKs do, see
//! `real-sdk-observations.md` trap 4).

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagstaff_app::{CredentialKind, ErrorCode};

use crate::Delivery;
use crate::feed::{Payload, Published};
use crate::http::{error, with_env_id};

/// Whether the client accepts gzip (`Accept-Encoding`, ignoring `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// Whether `If-None-Match` names `etag` (or `*`); weak comparison, as RFC 9110 asks for it.
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// A JSON document response honouring `If-None-Match` and `Accept-Encoding`.
pub(crate) fn document(headers: &HeaderMap, payload: &Payload) -> Response {
    let etag = HeaderValue::from_str(&payload.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let mut response = if not_modified(headers, &payload.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) {
        let mut response = Response::new(Body::from(payload.gzip().clone()));
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        Response::new(Body::from(payload.json.clone()))
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Shared caches must neither mix environments nor serve stale flags.
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Accept-Encoding"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Serves a document taken from (or made from) the published state of the caller's
/// environment; `None` from `select` is `404`.
async fn serve(
    delivery: &Delivery,
    headers: &HeaderMap,
    select: impl FnOnce(&Published) -> Option<Cow<'_, Payload>>,
) -> Response {
    let authorized = match delivery.authorize(headers, CredentialKind::Sdk).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let state = authorized.feed.current();
    let response = match select(&state) {
        Some(payload) => document(headers, &payload),
        None => error(
            ErrorCode::NotFound,
            "no such flag or segment in this environment",
        ),
    };
    with_env_id(response, &authorized.feed)
}

/// `GET /sdk/latest-all`: `{"flags": {...}, "segments": {...}}`.
pub(crate) async fn latest_all(State(d): State<Arc<Delivery>>, headers: HeaderMap) -> Response {
    serve(&d, &headers, |s| Some(Cow::Borrowed(s.all()))).await
}

/// `GET /sdk/latest-flags` (and the PHP SDK's `/sdk/flags`): `{<key>: <flag>, ...}`.
pub(crate) async fn latest_flags(State(d): State<Arc<Delivery>>, headers: HeaderMap) -> Response {
    serve(&d, &headers, |s| Some(Cow::Borrowed(s.flags_only()))).await
}

/// `GET /sdk/latest-segments`: `{<key>: <segment>, ...}`.
pub(crate) async fn latest_segments(
    State(d): State<Arc<Delivery>>,
    headers: HeaderMap,
) -> Response {
    serve(&d, &headers, |s| {
        Some(Cow::Owned(item_payload(&items_json(&s.segments))))
    })
    .await
}

/// `GET /sdk/latest-flags/{key}` (and `/sdk/flags/{key}`): one flag, `404` if absent.
pub(crate) async fn latest_flag(
    State(d): State<Arc<Delivery>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&d, &headers, |s| {
        s.flags
            .get(&key)
            .map(|f| Cow::Owned(item_payload(f.as_ref())))
    })
    .await
}

/// `GET /sdk/latest-segments/{key}` (and `/sdk/segments/{key}`): one segment, `404` if absent.
pub(crate) async fn latest_segment(
    State(d): State<Arc<Delivery>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&d, &headers, |s| {
        s.segments
            .get(&key)
            .map(|seg| Cow::Owned(item_payload(seg.as_ref())))
    })
    .await
}

fn items_json<T: serde::Serialize>(
    items: &std::collections::BTreeMap<String, Arc<T>>,
) -> std::collections::BTreeMap<&str, &T> {
    items
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect()
}

fn item_payload(item: &impl serde::Serialize) -> Payload {
    Payload::new(crate::feed::to_json(item))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().expect("header"));
        h
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip")));
        assert!(accepts_gzip(&headers(
            header::ACCEPT_ENCODING,
            "br, GZIP;q=0.5"
        )));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip;q=0")));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_tags_weakly() {
        let h = headers(header::IF_NONE_MATCH, "\"a\", W/\"b\"");
        assert!(not_modified(&h, "\"a\""));
        assert!(not_modified(&h, "\"b\""));
        assert!(!not_modified(&h, "\"c\""));
        assert!(not_modified(&headers(header::IF_NONE_MATCH, "*"), "\"x\""));
        assert!(!not_modified(&HeaderMap::new(), "\"x\""));
    }
}
