//! The HTTP server loop, with a lean path for SDK streams.
//!
//! An idle SDK stream should cost little more than its socket: the goal is under 4 KiB of our
//! own memory per stream at 10,000 streams (BENCHMARKS.md). A stream served through hyper keeps
//! hyper's per-connection read and write buffers (8 KiB and more) for as long as it is open,
//! about 48 KiB per stream as measured. So [`serve`] looks at the first bytes of every new
//! connection without consuming them (`peek`): a `GET /all` or `GET /flags` is served here,
//! with a small head buffer that is freed once the head is parsed, and its changes are
//! written by the fan-out thread as pre-built HTTP/1.1 chunks shared by every stream
//! (`direct.rs`); so are the browser and mobile streams
//! (`GET /eval/{id}/{context}`, `/ping/{id}`, `/meval/{context}`, `/mping`), whose events are
//! their own and framed as chunks here, with the browser routes' CORS headers. Anything else
//! goes to hyper and the axum router untouched. A stream request that arrives later on a
//! keep-alive connection (or whose request line does not fit in the first 4 KiB) is still
//! served, by the router's own routes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use flagstaff_app::CredentialKind;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::Delivery;
use crate::stream::{Format, Opening, STREAM_HEADERS};

/// The first bytes of a connection looked at to choose the lean path.
const PEEKED_BYTES: usize = 4096;
/// The longest request head accepted on the stream path.
const MAX_HEAD: usize = 16 * 1024;
/// How long a graceful shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream the lean path serves.
enum Lean {
    /// A server-side SDK's `/all` or `/flags`.
    Server(Format),
    /// A server-side SDK's FDv2 `/sdk/stream`, with the request's query (its basis).
    Fdv2(String),
    /// A browser's or phone's `/eval`, `/ping`, `/meval` or `/mping`.
    Client(Box<crate::client_side::LeanRoute>),
}

/// Which stream a request line asks for, if any. The whole request target must be in `head`.
fn lean_request(head: &[u8]) -> Option<Lean> {
    let rest = head.strip_prefix(b"GET ")?;
    let end = rest.iter().position(|b| *b == b' ')?;
    let target = &rest[..end];
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    match path {
        b"/all" => Some(Lean::Server(Format::All)),
        b"/flags" => Some(Lean::Server(Format::FlagsOnly)),
        b"/sdk/stream" => {
            let query = target.splitn(2, |b| *b == b'?').nth(1).unwrap_or_default();
            Some(Lean::Fdv2(String::from_utf8(query.to_vec()).ok()?))
        }
        _ => crate::client_side::LeanRoute::parse(std::str::from_utf8(target).ok()?)
            .map(|route| Lean::Client(Box::new(route))),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then ends SDK streams, stops
/// accepting and waits (up to 30 s) for requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    delivery: Arc<Delivery>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with(listener, router, delivery, None, shutdown).await
}

/// [`serve`] over TLS: every connection is a TLS handshake first (within the header-read
/// timeout), then HTTP/1.1 through hyper, requests marked `X-Forwarded-Proto: https` so that
/// the dashboard's cookies are `Secure`. See `tls.rs`.
#[cfg(feature = "tls")]
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    delivery: Arc<Delivery>,
    tls: Arc<crate::tls::Tls>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with(listener, router, delivery, Some(tls), shutdown).await
}

#[cfg(feature = "tls")]
type TlsSetting = Option<Arc<crate::tls::Tls>>;
#[cfg(not(feature = "tls"))]
type TlsSetting = Option<std::convert::Infallible>;

async fn serve_with(
    listener: TcpListener,
    router: Router,
    delivery: Arc<Delivery>,
    tls: TlsSetting,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Without a timer hyper never times out a request head: a client that sends half a header
    // would hold its connection (and a file descriptor) forever.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(delivery.config.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = socket.set_nodelay(true);
        let place = match delivery.connections.admit(peer.ip()) {
            Ok(place) => place,
            Err(_) => {
                // Answered without reading the request, off the accept loop. (Over TLS the
                // connection is simply closed: an answer would need a handshake first.)
                if tls.is_none() {
                    tokio::spawn(async move {
                        let mut socket = socket;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            socket.write_all(crate::limits::REFUSAL),
                        )
                        .await;
                    });
                }
                continue;
            }
        };
        let (delivery, router, builder) = (Arc::clone(&delivery), router.clone(), builder.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            // The connection's place is held until this task ends.
            let _place = place;
            let timeout = delivery.config.header_read_timeout;
            if let Some(tls) = tls {
                #[cfg(feature = "tls")]
                {
                    // The handshake is part of the head: a client that stalls in it is let go
                    // after the same timeout.
                    // Boxed, like the hyper path below: the state of a TLS connection (rustls
                    // and hyper, kilobytes) must not be part of every connection task's
                    // future, which lean SDK streams keep for as long as they are open.
                    Box::pin(async move {
                        let handshake =
                            tokio::time::timeout(timeout, tls.acceptor().accept(socket));
                        if let Ok(Ok(stream)) = handshake.await {
                            serve_http(&builder, stream, router, peer, true, watcher).await;
                        }
                    })
                    .await;
                    return;
                }
                #[cfg(not(feature = "tls"))]
                match tls {}
            }
            // Looking at the first bytes may wait for the client: never in the accept loop.
            match peek_stream_request(&socket, timeout).await {
                Peeked::Stream(Lean::Server(format)) => {
                    delivery.serve_stream_connection(socket, format, None).await;
                    return;
                }
                Peeked::Stream(Lean::Fdv2(query)) => {
                    delivery
                        .serve_stream_connection(socket, Format::Fdv2, Some(query))
                        .await;
                    return;
                }
                Peeked::Stream(Lean::Client(route)) => {
                    // Boxed: its state while opening (a context being read) must not be part
                    // of every connection task's future.
                    Box::pin(delivery.serve_client_stream_connection(socket, *route)).await;
                    return;
                }
                // A client that says nothing within the head timeout is let go.
                Peeked::Silent => return,
                Peeked::Other => {}
            }
            Box::pin(serve_http(&builder, socket, router, peer, false, watcher)).await;
        });
    }
    drop(listener);
    delivery.shutdown();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 30 s; stopping anyway");
    }
    Ok(())
}

/// Serves one connection's requests with hyper and the router, until it closes or the server
/// shuts down.
async fn serve_http<I>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    router: Router,
    peer: std::net::SocketAddr,
    over_tls: bool,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Requests carry the client's address (`ConnectInfo`), for sign-in throttling, and say when
    // they came over our own TLS (as a proxy in front would with `X-Forwarded-Proto`).
    let router = tower::ServiceExt::map_request(
        router,
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            if over_tls {
                request.headers_mut().insert(
                    HeaderName::from_static("x-forwarded-proto"),
                    HeaderValue::from_static("https"),
                );
            }
            request
        },
    );
    let service = hyper_util::service::TowerToHyperService::new(router);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let _ = watcher.watch(connection).await;
}

/// What the first bytes of a connection say.
enum Peeked {
    /// An SDK stream request, served on the lean path.
    Stream(Lean),
    /// Anything else, served by hyper.
    Other,
    /// Nothing within the head timeout, or the connection failed.
    Silent,
}

/// Waits for the first bytes of a connection and says whether it asks for an SDK stream.
async fn peek_stream_request(socket: &TcpStream, timeout: Duration) -> Peeked {
    // A request line split across packets, or one longer than this (a browser's context in
    // the path can be long), is not recognised here and goes to hyper, which serves every
    // stream route too. On the heap and freed at once: a buffer here would otherwise stay in
    // the connection task's future for the stream's life.
    let mut first = vec![0u8; PEEKED_BYTES];
    match tokio::time::timeout(timeout, socket.peek(&mut first)).await {
        Ok(Ok(peeked)) if peeked > 0 => match lean_request(&first[..peeked]) {
            Some(lean) => Peeked::Stream(lean),
            None => Peeked::Other,
        },
        _ => Peeked::Silent,
    }
}

impl Delivery {
    /// Serves one SDK stream connection whose request line asked for `format` (with its
    /// query, for FDv2).
    async fn serve_stream_connection(
        self: Arc<Self>,
        mut socket: TcpStream,
        format: Format,
        query: Option<String>,
    ) {
        // Every step before the stream is boxed: an async function's state is as large as its
        // largest step, and a step inlined here (reading the head keeps a 1 KiB buffer,
        // opening a stream reads a context) would stay in every idle stream's memory.
        let Some(headers) = Box::pin(read_head(&mut socket, self.config.header_read_timeout)).await
        else {
            return;
        };
        let opened = Box::pin(self.open_server_stream(&headers, CredentialKind::Sdk)).await;
        drop(headers);
        let opened = match (opened, query) {
            (Ok(open), Some(query)) => {
                // FDv2: the basis decides how the stream starts (`fdv2.rs`).
                Box::pin(self.fdv2_opening(&open.feed, &query))
                    .await
                    .map(|opening| (open, opening))
            }
            (Ok(open), None) => Ok((open, Opening::Put)),
            (Err(refusal), _) => Err(refusal),
        };
        let (open, opening) = match opened {
            Ok((open, opening)) => {
                if !write_stream_head(&mut socket, &open.feed, &HeaderMap::new()).await {
                    return;
                }
                (open, opening)
            }
            Err(refusal) => {
                Box::pin(write_refusal(&mut socket, refusal)).await;
                return;
            }
        };
        // From here the fan-out thread writes the stream's changes (`direct.rs`).
        crate::direct::serve(socket, open, format, opening).await;
    }

    /// Serves one browser or mobile stream connection: the same admission, context reading,
    /// secure mode and events as the routes (`client_side/streams.rs`), and for browsers the
    /// routes' CORS headers, on refusals too.
    async fn serve_client_stream_connection(
        self: Arc<Self>,
        mut socket: TcpStream,
        route: crate::client_side::LeanRoute,
    ) {
        // Every step before the stream is boxed: an async function's state is as large as its
        // largest step, and a step inlined here (reading the head keeps a 1 KiB buffer,
        // opening a stream reads a context) would stay in every idle stream's memory.
        let Some(headers) = Box::pin(read_head(&mut socket, self.config.header_read_timeout)).await
        else {
            return;
        };
        let browser = route.is_browser();
        let origin = headers.get(axum::http::header::ORIGIN).cloned();
        let opened = Box::pin(route.open(&self, &headers)).await;
        // The request's headers are not needed once the stream is open; freed now, they do not
        // weigh on every idle stream.
        drop(headers);
        let stream = match opened {
            Ok((feed, stream)) => {
                let mut cors = HeaderMap::new();
                if browser {
                    crate::client_side::stream_cors_headers(&mut cors, origin);
                }
                if !write_stream_head(&mut socket, &feed, &cors).await {
                    return;
                }
                stream
            }
            Err(mut refusal) => {
                if browser {
                    crate::client_side::stream_cors_headers(refusal.headers_mut(), origin);
                }
                Box::pin(write_refusal(&mut socket, refusal)).await;
                return;
            }
        };
        stream_until_closed(socket, stream).await;
    }
}

/// Writes a stream response's head (the SSE headers, `extra`, the environment's id, chunked
/// encoding); whether the client is still there.
async fn write_stream_head(
    socket: &mut TcpStream,
    feed: &crate::feed::EnvFeed,
    extra: &HeaderMap,
) -> bool {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for (name, value) in STREAM_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    for (name, value) in extra {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "x-ld-envid: {}\r\ndate: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        feed.env_id(),
        httpdate::fmt_http_date(std::time::SystemTime::now())
    ));
    socket.write_all(head.as_bytes()).await.is_ok()
}

/// Reads and parses the request head; `None` (after answering 400 where possible) when it is
/// malformed, too long or too slow.
async fn read_head(socket: &mut TcpStream, timeout: Duration) -> Option<HeaderMap> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::io::AsyncReadExt::read(socket, &mut chunk)
                .await
                .ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut parsed = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut parsed);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let mut headers = HeaderMap::new();
                    for header in request.headers.iter() {
                        if let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(header.name.as_bytes()),
                            HeaderValue::from_bytes(header.value),
                        ) {
                            headers.append(name, value);
                        }
                    }
                    return Some(headers);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
                _ => return None,
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Some(headers)) => Some(headers),
        _ => {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            None
        }
    }
}

/// Writes a refusal (401, 503) built by the shared handlers, then closes.
async fn write_refusal(socket: &mut TcpStream, refusal: axum::response::Response) {
    let (parts, body) = refusal.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "content-length: {}\r\ndate: {}\r\nconnection: close\r\n\r\n",
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now())
    ));
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(&body).await;
    let _ = socket.shutdown().await;
}

/// Writes a client stream's events, each framed as one HTTP/1.1 chunk, until it ends (then
/// the final chunk) or the client leaves.
async fn stream_until_closed(mut socket: TcpStream, mut source: impl crate::stream::EventSource) {
    loop {
        tokio::select! {
            next = source.next_bytes() => match next {
                Some(bytes) => {
                    let mut chunk = Vec::with_capacity(bytes.len() + 12);
                    chunk.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
                    chunk.extend_from_slice(&bytes);
                    chunk.extend_from_slice(b"\r\n");
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                    let _ = socket.shutdown().await;
                    return;
                }
            },
            // The client sends nothing after its request; readable means it closed (or broke
            // the protocol): either way the stream is over.
            readable = socket.readable() => {
                if readable.is_err() {
                    return;
                }
                let mut scratch = [0u8; 64];
                match socket.try_read(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the lean path makes of a request line: the server format, the client route's
    /// caller, or `None` (hyper).
    fn lean(head: &[u8]) -> Option<String> {
        lean_request(head).map(|lean| match lean {
            Lean::Server(format) => format!("{format:?}"),
            Lean::Fdv2(query) => format!("Fdv2({query:?})"),
            Lean::Client(route) => format!("{route:?}"),
        })
    }

    #[test]
    fn only_stream_request_lines_take_the_lean_path() {
        assert_eq!(lean(b"GET /all HTTP/1.1\r\n").as_deref(), Some("All"));
        assert_eq!(lean(b"GET /all?filter=x HTTP/1.1").as_deref(), Some("All"));
        assert_eq!(lean(b"GET /flags HTTP/1.1").as_deref(), Some("FlagsOnly"));
        assert_eq!(
            lean(b"GET /sdk/stream?basis=fs1.db.0a.7 HTTP/1.1").as_deref(),
            Some("Fdv2(\"basis=fs1.db.0a.7\")")
        );
        assert_eq!(
            lean(b"GET /sdk/stream HTTP/1.1").as_deref(),
            Some("Fdv2(\"\")")
        );
        for other in [
            &b"GET /all/x HTTP/1.1"[..],
            b"POST /all HTTP/1.1",
            b"GET /sdk/latest-all HTTP/1.1",
            b"GET /al",
            // Client routes the router answers in its own way.
            b"GET /eval/env HTTP/1.1",
            b"GET /eval/env/ HTTP/1.1",
            b"GET /eval/env/ctx/more HTTP/1.1",
            b"REPORT /eval/env HTTP/1.1",
            b"GET /eval/env/a%2Fb HTTP/1.1",
            b"GET /meval HTTP/1.1",
            b"GET /ping HTTP/1.1",
            b"GET /mping/x HTTP/1.1",
            // A request line cut off before its end.
            b"GET /eval/env/eyJrZXkiOiJ1In0",
        ] {
            assert_eq!(lean(other), None, "{}", String::from_utf8_lossy(other));
        }
        let browser =
            lean(b"GET /eval/env/eyJrZXkiOiJ1In0?withReasons=true&h=abc HTTP/1.1").unwrap();
        assert!(
            browser.contains("ClientSide") && browser.contains("eyJrZXkiOiJ1In0"),
            "{browser}"
        );
        assert!(
            browser.contains("with_reasons: Some(\"true\")")
                && browser.contains("h: Some(\"abc\")"),
            "{browser}"
        );
        assert!(
            lean(b"GET /ping/env HTTP/1.1")
                .unwrap()
                .contains("ClientSide")
        );
        assert!(
            lean(b"GET /meval/eyJrZXkiOiJ1In0 HTTP/1.1")
                .unwrap()
                .contains("Mobile")
        );
        assert!(lean(b"GET /mping HTTP/1.1").unwrap().contains("Mobile"));
    }
}
