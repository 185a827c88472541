//! CORS for the browser routes (§5.8).

use super::*;

// ----- CORS ------------------------------------------------------------------------------------

/// Request headers browser SDKs send (§5.8).
const ALLOWED_HEADERS: &str = "Cache-Control, Content-Type, Content-Length, Accept-Encoding, \
     If-None-Match, X-LaunchDarkly-User-Agent, X-LaunchDarkly-Payload-ID, X-LaunchDarkly-Wrapper, \
     X-LaunchDarkly-Event-Schema, X-LaunchDarkly-Tags";

/// What client-side FDv2 SDKs send: a mobile SDK in a web view may send its key in a header.
const FDV2_ALLOWED_HEADERS: &str = "Authorization, Cache-Control, Content-Type, Content-Length, \
     Accept-Encoding, If-None-Match, X-LaunchDarkly-User-Agent, X-LaunchDarkly-Payload-ID, \
     X-LaunchDarkly-Wrapper, X-LaunchDarkly-Event-Schema, X-LaunchDarkly-Tags, \
     X-LaunchDarkly-Instance-Id";

/// What OFREP's web provider sends.
const OFREP_ALLOWED_HEADERS: &str =
    "Authorization, X-API-Key, Content-Type, If-None-Match, Cache-Control";

/// CORS for the browser routes (§5.8), on every response including errors, and preflights
/// answered here without authentication (a preflight carries no credential).
pub(crate) async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let path = request.uri().path();
    let (methods, allowed_headers) = if path.starts_with("/ofrep/") {
        // OpenFeature's web provider sends the credential in a header.
        ("GET, POST, OPTIONS", OFREP_ALLOWED_HEADERS)
    } else if path.starts_with("/sdk/poll/eval") || path.starts_with("/sdk/stream/eval") {
        ("GET, POST, REPORT, OPTIONS", FDV2_ALLOWED_HEADERS)
    } else if path.starts_with("/events/") {
        ("POST, OPTIONS", ALLOWED_HEADERS)
    } else {
        ("GET, REPORT, OPTIONS", ALLOWED_HEADERS)
    };
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    add_cors_headers(response.headers_mut(), origin, methods, allowed_headers);
    response
}

/// The CORS headers of a browser stream served on the lean path (`raw.rs`), the same as
/// [`cors`] adds to the `/eval` and `/ping` routes.
pub(crate) fn stream_cors_headers(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    add_cors_headers(headers, origin, "GET, REPORT, OPTIONS", ALLOWED_HEADERS);
}

fn add_cors_headers(
    headers: &mut HeaderMap,
    origin: Option<HeaderValue>,
    methods: &'static str,
    allowed_headers: &'static str,
) {
    let allow_origin = origin.unwrap_or(HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(allowed_headers),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("false"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("300"),
    );
    // Browser SDKs read `Date` from event responses to bound debug events (§5.8, §6.6), and
    // FDv2 ones the environment ID and the FDv1 fallback headers of a poll (§10).
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Date, ETag, X-LD-EnvID, X-LD-FD-Fallback, X-LD-FD-Fallback-TTL"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}
