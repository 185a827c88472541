//! Goals and the browser and mobile event endpoints (§6.1).

use super::*;

// ----- goals and events --------------------------------------------------------------------------

/// `GET /sdk/goals/{clientSideId}`: the click and page-view goals of the project's metrics
/// (§5.9), for which browser SDKs then send `click` and `pageview` events. A goal says only
/// what to watch on which pages, never who gets what, so it is fit for the public ID.
pub(crate) async fn goals(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match authorize(&d, CredentialKind::ClientSide, Some(&env_id), &headers).await {
        Ok(authorized) => match d.source.browser_goals(&authorized.grant.project).await {
            Ok(goals) => with_env_id(
                axum::Json(goals.as_ref().clone()).into_response(),
                &authorized.feed,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the browser goals");
                // Browser SDKs only log a failed goals fetch (§5.9): say so, briefly.
                error(ErrorCode::Unavailable, "the goals cannot be read now")
            }
        },
        Err(refusal) => refusal,
    }
}

/// Takes a place in the environment's rate of client-side event payloads, or answers `429`
/// with `Retry-After` (SDKs retry a `429` and keep sending afterwards, §6.3).
#[allow(clippy::result_large_err)]
fn within_rate(d: &Delivery, grant: &Grant) -> Result<(), Response> {
    let environment = format!("{}/{}", grant.project, grant.environment);
    if d.client_event_rate
        .take(&environment, std::time::Instant::now())
    {
        return Ok(());
    }
    d.source.record_rejected_events();
    let mut refusal = error(
        ErrorCode::TooManyRequests,
        "too many event payloads for this environment; retry in a second",
    );
    refusal
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Err(refusal)
}

/// Reads and queues a client-side events payload within the environment's rate.
async fn accept_client_events(
    d: &Delivery,
    grant: &Grant,
    headers: &HeaderMap,
    body: Body,
    diagnostic: bool,
) -> Response {
    match within_rate(d, grant) {
        // Browsers and phones: the client-side ID is public, a mobile key ships in every app.
        Ok(()) => events::accept(d, grant, headers, body, diagnostic, false).await,
        Err(refusal) => refusal,
    }
}

/// `POST /events/bulk/{clientSideId}` and `/events/diagnostic/{clientSideId}`.
async fn browser_events(
    d: &Delivery,
    env_id: &str,
    headers: &HeaderMap,
    body: Body,
    diagnostic: bool,
) -> Response {
    match authorize(d, CredentialKind::ClientSide, Some(env_id), headers).await {
        Ok(authorized) => {
            accept_client_events(d, &authorized.grant, headers, body, diagnostic).await
        }
        Err(refusal) => refusal,
    }
}

pub(crate) async fn browser_bulk(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    browser_events(&d, &env_id, &headers, body, false).await
}

pub(crate) async fn browser_diagnostic(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    browser_events(&d, &env_id, &headers, body, true).await
}

/// A transparent 1×1 GIF, the answer to the image-beacon event endpoint.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[derive(Debug, serde::Deserialize)]
pub(crate) struct BeaconQuery {
    d: Option<String>,
}

/// `GET /a/{clientSideId}.gif?d=<base64 events>`: the legacy image-beacon events (§5.1). It
/// answers with the image whatever happens, since an image tag cannot report errors anyway;
/// what was accepted is counted.
pub(crate) async fn beacon(
    State(d): State<Arc<Delivery>>,
    Path(file): Path<String>,
    Query(query): Query<BeaconQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(env_id) = file.strip_suffix(".gif") else {
        return unknown_environment();
    };
    let authorized = match authorize(&d, CredentialKind::ClientSide, Some(env_id), &headers).await {
        Ok(authorized) => authorized,
        Err(refusal) => return refusal,
    };
    if within_rate(&d, &authorized.grant).is_err() {
        // The image is answered anyway (an image tag cannot report errors); the payload is
        // dropped and counted as rejected.
    } else if let Some(decoded) = query.d.as_deref().and_then(|data| {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data))
            .ok()
    }) {
        let _ = events::ingest(
            &d.source,
            &authorized.grant,
            &headers,
            &decoded,
            false,
            false,
        );
    }
    let mut response = Response::new(Body::from(Bytes::from_static(PIXEL)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /mobile`, `/mobile/events`, `/mobile/events/bulk` (mobile key).
pub(crate) async fn mobile_bulk(
    State(d): State<Arc<Delivery>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match d.authorize(&headers, CredentialKind::Mobile).await {
        Ok(authorized) => accept_client_events(&d, &authorized.grant, &headers, body, false).await,
        Err(refusal) => refusal,
    }
}

/// `POST /mobile/events/diagnostic` (mobile key).
pub(crate) async fn mobile_diagnostic(
    State(d): State<Arc<Delivery>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match d.authorize(&headers, CredentialKind::Mobile).await {
        Ok(authorized) => accept_client_events(&d, &authorized.grant, &headers, body, true).await,
        Err(refusal) => refusal,
    }
}
