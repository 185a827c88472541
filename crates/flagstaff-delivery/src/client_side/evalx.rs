//! Polling evaluation (`evalx`, §5.2–5.4): every flag the credential may see, evaluated for the
//! context in the path (base64url) or the `REPORT` body.

use super::*;

/// A polling request: every visible flag evaluated for the context.
async fn poll(
    delivery: &Delivery,
    caller: CredentialKind,
    env_id: Option<&str>,
    source: ContextIn,
    query: &ClientQuery,
    headers: &HeaderMap,
) -> Response {
    let authorized = match authorize(delivery, caller, env_id, headers).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let context = match read_context(source, headers).await {
        Ok(context) => context,
        Err(refusal) => return refusal,
    };
    if let Err(refusal) =
        check_secure_mode(delivery, &authorized, caller, &context, query.h.as_deref())
    {
        return refusal;
    }
    let state = authorized.feed.current();
    let big_segments =
        match big_segment_membership(delivery, &authorized.feed, &state, &context).await {
            Ok(membership) => membership,
            Err(refusal) => return refusal,
        };
    let body = evaluate_all(
        &state,
        caller,
        &context,
        query.with_reasons(),
        big_segments.as_ref(),
    );
    // The tag is derived from the exact body, so a client that cached these flags for this
    // context gets `304` only when nothing it would receive changed (§5.3 "ETag").
    let response = document(headers, &Payload::new(body));
    with_env_id(response, &authorized.feed)
}

/// `GET /sdk/evalx/{clientSideId}/contexts/{ctx}` and `/users/{ctx}`.
pub(crate) async fn browser_get(
    State(d): State<Arc<Delivery>>,
    Path((env_id, context)): Path<(String, String)>,
    Query(query): Query<ClientQuery>,
    headers: HeaderMap,
) -> Response {
    let source = ContextIn::Path(context);
    poll(
        &d,
        CredentialKind::ClientSide,
        Some(&env_id),
        source,
        &query,
        &headers,
    )
    .await
}

/// `REPORT /sdk/evalx/{clientSideId}/context` (and `/contexts`, `/user`, `/users`).
pub(crate) async fn browser_report(
    State(d): State<Arc<Delivery>>,
    Path(env_id): Path<String>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_report(&method) {
        return refusal;
    }
    let source = ContextIn::Body(body);
    poll(
        &d,
        CredentialKind::ClientSide,
        Some(&env_id),
        source,
        &query,
        &headers,
    )
    .await
}

/// `GET /msdk/evalx/contexts/{ctx}` (mobile key) and `/sdk/evalx/contexts/{ctx}` (SDK key).
pub(crate) async fn keyed_get(
    caller: CredentialKind,
    State(d): State<Arc<Delivery>>,
    Path(context): Path<String>,
    Query(query): Query<ClientQuery>,
    headers: HeaderMap,
) -> Response {
    poll(&d, caller, None, ContextIn::Path(context), &query, &headers).await
}

/// `REPORT /msdk/evalx/context` (mobile key) and `/sdk/evalx/context` (SDK key).
pub(crate) async fn keyed_report(
    caller: CredentialKind,
    State(d): State<Arc<Delivery>>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = require_report(&method) {
        return refusal;
    }
    poll(&d, caller, None, ContextIn::Body(body), &query, &headers).await
}
