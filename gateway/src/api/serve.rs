//! Serving the HTTP API: the accept loop in front of the router, with the
//! limits a service on a compound's network needs (docs/api-hardening.md).
//!
//! - **Connections**: at most `http.max_connections` open, and at most
//!   `http.max_connections_per_client` of them from one address when that is
//!   set; one more is closed at once and counted
//!   (`fm_http_connections_refused_total`, `..._per_client_total`).
//! - **Header timeout**: hyper's own HTTP/1 connection with a timer, so a
//!   client that does not finish its request line and headers (or its TLS
//!   handshake) within `http.header_timeout` is closed; so is a kept-alive
//!   connection idle that long. `axum::serve` has no timer, so there this
//!   timeout is off. A response being written, such as the event stream
//!   `/api/v1/events`, is not limited.
//! - **Bodies**: a body is read only when a handler asks for it (after the
//!   token was checked), at most `http.max_body_bytes` (413) and within
//!   `http.body_timeout` of the end of the headers (408), both answered
//!   with the API's JSON error and the connection closed.
//! - **TLS** (rustls, ring) with `http.tls_cert_file` and `http.tls_key_file`:
//!   then only HTTPS is spoken on the port.
//! - **Headers** on every response: a Content-Security-Policy (the console's
//!   allows only its own script and style files), no framing, no sniffing,
//!   no referrer, no caching; HSTS under TLS.
//! - The client's address reaches [`super::auth::middleware`], whose
//!   [`Limiter`] answers 429 to an address that sent too many unknown tokens.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::ApiError;
use crate::app::config::{HttpConfig, HttpLimits};
use crate::app::shared::Shared;
use crate::limiter::{Limiter, client_key};
use crate::metrics::HttpMetrics;

/// Most a connection buffers: hyper's default is ~400 KiB, times every
/// open connection.
const MAX_BUF: usize = 64 * 1024;

/// The largest request line and headers (431 beyond): a token and a few
/// headers need far less; common proxies stop at 8 to 16 KiB too.
const MAX_HEAD: usize = 16 * 1024;

/// How long connections get to finish at shutdown, after the event streams
/// were ended and idle connections closed.
const DRAIN: Duration = Duration::from_secs(10);

/// The console's policy: its own script, style and API, nothing inline,
/// nothing from elsewhere, never in a frame.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                               img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every other response's policy: data, never a document.
pub const API_CSP: &str = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox";

const CONSOLE_JS: &str = include_str!("../../../dashboards/console/console.js");
const CONSOLE_CSS: &str = include_str!("../../../dashboards/console/console.css");
const CHART_JS: &str = include_str!("../../../dashboards/console/console-chart.js");

/// The API's listening socket, its limits and TLS, ready to serve.
pub struct Server {
    listener: TcpListener,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Checks the limits, loads the certificate and key, and binds
    /// `http.listen`: what can fail, fails before anything else starts.
    ///
    /// # Errors
    /// A limit out of range, an unreadable certificate or key (naming the
    /// field), or an address that is taken.
    pub async fn bind(config: &HttpConfig) -> anyhow::Result<Server> {
        let field = |(f, m): (&str, String)| anyhow::anyhow!("{f}: {m}");
        let limits = config.limits().map_err(field)?;
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(tls_config(cert, key).map_err(field)?)),
            (None, None) => None,
            _ => anyhow::bail!("http.tls_cert_file and http.tls_key_file: give both, or neither"),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("http.listen {} is not available", config.listen))?;
        tracing::info!(
            listen = %config.listen,
            tls = tls.is_some(),
            max_connections = limits.max_connections,
            "HTTP API listening"
        );
        Ok(Server { listener, limits, tls })
    }

    /// The bound address.
    ///
    /// # Errors
    /// As the OS's.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets
    /// requests in flight finish (10 s at most) and returns.
    ///
    /// # Errors
    /// None so far: accept errors are logged and retried.
    pub async fn run(self, shared: Shared, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let metrics = shared.metrics().http.clone();
        let app = app(shared, &self.limits, self.tls.is_some());
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let (stop, stopping) = watch::channel(false);
        let mut conns = tokio::task::JoinSet::new();
        let mut refusals = Refusals::default();
        let mut crowded = Refusals::default();
        let per_client = PerClient::default();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait for some to close.
                        tracing::error!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let client = match self.limits.max_connections_per_client {
                None => None,
                Some(max) => {
                    let Some(slot) = per_client.enter(peer.ip(), max) else {
                        metrics.refused_client.inc();
                        crowded.note_client(peer.ip(), max);
                        drop(stream);
                        continue;
                    };
                    Some(slot)
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics.refused.inc();
                refusals.note(self.limits.max_connections);
                drop(stream);
                continue;
            };
            metrics.connections.inc();
            let _ = stream.set_nodelay(true);
            conns.spawn(connection(Connection {
                stream,
                peer,
                app: app.clone(),
                tls: self.tls.clone(),
                header_timeout: self.limits.header_timeout,
                stopping: stopping.clone(),
                metrics: metrics.clone(),
                _permit: permit,
                _client: client,
            }));
        }
        drop(self.listener);
        let _ = stop.send(true);
        let open = conns.len();
        let drained = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(open, left = conns.len(), "HTTP connections cut off at shutdown");
            conns.abort_all();
        }
        Ok(())
    }
}

/// Refused connections since the last log line: logged at most every 10 s,
/// with how many, so a flood is seen without flooding the log.
#[derive(Default)]
struct Refusals {
    since: u64,
    logged: Option<Instant>,
}

impl Refusals {
    /// Counts one refusal; the count to log when a line is due.
    fn due(&mut self) -> Option<u64> {
        self.since += 1;
        if self.logged.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return None;
        }
        self.logged = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }

    fn note(&mut self, max: usize) {
        if let Some(refused) = self.due() {
            tracing::warn!(
                max_connections = max,
                refused,
                "HTTP connections at their limit: new ones are closed at once"
            );
        }
    }

    fn note_client(&mut self, ip: IpAddr, max: usize) {
        if let Some(refused) = self.due() {
            tracing::warn!(
                client = %client_key(ip),
                max_connections_per_client = max,
                refused,
                "one address holds its most HTTP connections: its new ones are closed at once"
            );
        }
    }
}

/// Connections open per client address (`max_connections_per_client`): an
/// entry lives while its address has a connection open, so the table never
/// holds more than `max_connections` addresses.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerClient {
    /// A place for one more connection of `ip`'s client, unless it holds `max`.
    fn enter(&self, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            key,
        })
    }
}

/// One connection's place under its address's limit, given back on drop.
struct ClientSlot {
    table: PerClient,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Errors of one connection that `accept` reports, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// The router with the console's files, the body guard, the auth failure
/// limiter and the security headers: what [`Server::run`] serves.
pub fn app(shared: Shared, limits: &HttpLimits, tls: bool) -> Router {
    let metrics = shared.metrics().http.clone();
    let limiter = Arc::new(Limiter::new(
        limits.auth_failure_limit,
        limits.auth_failure_window,
        limits.auth_failure_clients,
        crate::limiter::Counters {
            limited: metrics.auth_limited.clone(),
            evicted: metrics.auth_evicted.clone(),
            door: "HTTP API",
        },
    ));
    let bodies = BodyPolicy {
        max: limits.max_body_bytes,
        timeout: limits.body_timeout,
        metrics,
    };
    super::router(shared)
        .route(
            "/console.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CONSOLE_JS) }),
        )
        .route(
            "/console.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CONSOLE_CSS) }),
        )
        .route(
            "/console-chart.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CHART_JS) }),
        )
        .layer(middleware::from_fn_with_state(bodies, guard_bodies))
        .layer(axum::Extension(limiter))
        .layer(middleware::from_fn_with_state(tls, security_headers))
}

/// One accepted connection and what it is served with.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    stopping: watch::Receiver<bool>,
    metrics: HttpMetrics,
    /// Its place under `max_connections`, given back when it ends.
    _permit: OwnedSemaphorePermit,
    /// And under `max_connections_per_client`, when that is set.
    _client: Option<ClientSlot>,
}

/// Serves one connection to its end: the TLS handshake first (within the
/// header timeout), then HTTP/1.1 requests until either side closes, the
/// header timeout strikes, or shutdown.
async fn connection(mut c: Connection) {
    let _open = Open::new(&c.metrics);
    let result = match c.tls.take() {
        None => http(c.stream, c.peer, c.app, c.header_timeout, &mut c.stopping).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                r = tokio::time::timeout(c.header_timeout, acceptor.accept(c.stream)) => r,
                () = stopped(&mut c.stopping) => Ok(Err(std::io::Error::other("shutting down"))),
            };
            match handshake {
                Ok(Ok(stream)) => http(stream, c.peer, c.app, c.header_timeout, &mut c.stopping).await,
                Ok(Err(e)) => {
                    c.metrics.tls_failures.inc();
                    tracing::debug!(client = %c.peer, error = %e, "TLS handshake failed");
                    Ok(())
                }
                Err(_) => {
                    c.metrics.header_timeouts.inc();
                    tracing::debug!(client = %c.peer, "no TLS handshake within header_timeout");
                    Ok(())
                }
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            c.metrics.header_timeouts.inc();
            tracing::debug!(client = %c.peer, "no request head within header_timeout");
        } else {
            tracing::debug!(client = %c.peer, error = %e, "HTTP connection ended");
        }
    }
}

/// Counts a connection in `fm_http_connections_open` while it lives (a
/// panicking task included).
struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    fn new(m: &HttpMetrics) -> Open {
        m.open.inc();
        Open(m.open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// HTTP/1.1 over `io` with the header timeout, each request carrying the
/// client's address; at shutdown the connection finishes the request in
/// flight and closes, and one with none in flight closes at once.
async fn http<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    stopping: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Requests of this connection being answered: at shutdown, one without
    // any (idle, or still sending its head) is closed at once rather than
    // drained, whether or not hyper has read the first bytes of a head.
    let busy = Arc::new(AtomicUsize::new(0));
    let in_flight = busy.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = tower_service::Service::call(&mut app.clone(), req);
        let busy = in_flight.clone();
        busy.fetch_add(1, Ordering::SeqCst);
        async move {
            let answer = call.await;
            busy.fetch_sub(1, Ordering::SeqCst);
            answer
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_BUF);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(stopping) => {
            if busy.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Resolves once shutdown began (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// The certificate chain and key for the API's TLS (rustls with ring;
/// TLS 1.2 and 1.3; HTTP/1.1 by ALPN).
///
/// # Errors
/// The field (`http.tls_cert_file`, `http.tls_key_file`) and what is wrong.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, (&'static str, String)> {
    let mut config = crate::tls::server_config(cert, key, ("http.tls_cert_file", "http.tls_key_file"), None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Headers on every response (the router's own 404 and 405 too).
async fn security_headers(State(tls): State<bool>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let page = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let csp = if page { CONSOLE_CSP } else { API_CSP };
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    // Nothing the gateway answers is to be kept: tokens' data, the event
    // stream (which says `no-cache`), the console (a new gateway's is never stale).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// How request bodies are read: at most `max` bytes, within `timeout` of
/// the end of the headers.
#[derive(Clone)]
struct BodyPolicy {
    max: usize,
    timeout: Duration,
    metrics: HttpMetrics,
}

/// What became of one request's body, shared by its [`Guarded`] body and
/// [`guard_bodies`]; a route may change its limit with [`route_body_limit`]
/// until the body is read.
#[derive(Debug)]
pub struct BodyGuard {
    limit: AtomicUsize,
    outcome: AtomicU8,
}

const BODY_OK: u8 = 0;
const BODY_TOO_LARGE: u8 = 1;
const BODY_TOO_SLOW: u8 = 2;

/// Wraps a request's body so that reading it stops at the limit or the
/// deadline; a handler that read too much or too long is answered 413 or
/// 408 (JSON, `Connection: close`) whatever it made of the failed read. A
/// body is read only when the handler asks, after the token check: an
/// unauthenticated client never gets its body read.
async fn guard_bodies(State(p): State<BodyPolicy>, req: Request, next: Next) -> Response {
    use http_body::Body as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let guard = Arc::new(BodyGuard {
        limit: AtomicUsize::new(p.max),
        outcome: AtomicU8::new(BODY_OK),
    });
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let deadline = tokio::time::Instant::now() + p.timeout;
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(guard.clone());
    let body = Body::new(Guarded {
        inner: body,
        guard: guard.clone(),
        declared,
        read: 0,
        deadline,
        sleep: None,
    });
    let res = next.run(Request::from_parts(parts, body)).await;
    let limit = guard.limit.load(Ordering::Relaxed);
    let refused = match guard.outcome.load(Ordering::Relaxed) {
        BODY_TOO_LARGE => {
            p.metrics.body_too_large.inc();
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is over {limit} bytes"),
            )
        }
        BODY_TOO_SLOW => {
            p.metrics.body_timeouts.inc();
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(p.timeout)
                ),
            )
        }
        _ => return res,
    };
    let mut res = refused.into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A route's own body limit instead of `http.max_body_bytes`, for a route
/// that takes more (or less) than a small JSON object:
/// `post(handler).route_layer(middleware::from_fn_with_state(64 * 1024, serve::route_body_limit))`.
pub async fn route_body_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if let Some(g) = req.extensions().get::<Arc<BodyGuard>>() {
        g.limit.store(limit, Ordering::Relaxed);
    }
    next.run(req).await
}

/// A request body that fails once it is over its limit (at once when its
/// `Content-Length` says so) or past its deadline.
struct Guarded {
    inner: Body,
    guard: Arc<BodyGuard>,
    declared: Option<u64>,
    read: usize,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Why [`Guarded`] stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(&'static str);

impl Guarded {
    fn refuse(&self, outcome: u8) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.guard.outcome.store(outcome, Ordering::Relaxed);
        let why = if outcome == BODY_TOO_LARGE {
            "request body over its limit"
        } else {
            "request body too slow"
        };
        Poll::Ready(Some(Err(axum::Error::new(Refused(why)))))
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let limit = self.guard.limit.load(Ordering::Relaxed);
        if self.declared.is_some_and(|d| d > limit as u64) {
            return self.refuse(BODY_TOO_LARGE);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len();
                    if self.read > limit {
                        return self.refuse(BODY_TOO_LARGE);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = self.deadline;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return self.refuse(BODY_TOO_SLOW);
                }
                Poll::Pending
            }
            other @ Poll::Ready(_) => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POST route that reads its body, behind the guard of `max` bytes
    /// and `timeout`; the second route takes up to 64 bytes.
    fn app(max: usize, timeout: Duration) -> (Router, HttpMetrics) {
        let metrics = HttpMetrics::default();
        let policy = BodyPolicy {
            max,
            timeout,
            metrics: metrics.clone(),
        };
        let echo = |body: Bytes| async move { format!("{} bytes", body.len()) };
        let router = Router::new()
            .route("/small", axum::routing::post(echo))
            .route(
                "/large",
                axum::routing::post(echo).route_layer(middleware::from_fn_with_state(64, route_body_limit)),
            )
            .route("/ignores", axum::routing::post(|| async { "not read" }))
            .layer(middleware::from_fn_with_state(policy, guard_bodies));
        (router, metrics)
    }

    async fn call(app: &Router, path: &str, body: Body) -> (StatusCode, Option<HeaderValue>, String) {
        let req = Request::post(path).body(body).unwrap();
        let res = tower_service::Service::call(&mut app.clone(), req).await.unwrap();
        let status = res.status();
        let connection = res.headers().get(header::CONNECTION).cloned();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        (status, connection, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn bodies_over_their_routes_limit_are_413_in_the_api_shape() {
        let (app, metrics) = app(16, Duration::from_secs(5));
        assert_eq!(call(&app, "/small", Body::from("x".repeat(16))).await.2, "16 bytes");
        let (status, connection, body) = call(&app, "/small", Body::from("x".repeat(17))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(connection, Some(HeaderValue::from_static("close")));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "payload_too_large");
        assert_eq!(json["detail"], "the body is over 16 bytes");
        // A route with its own limit.
        assert_eq!(call(&app, "/large", Body::from("x".repeat(64))).await.2, "64 bytes");
        let (status, _, body) = call(&app, "/large", Body::from("x".repeat(65))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert!(body.contains("over 64 bytes"), "{body}");
        // A handler that never reads its body is not refused for it.
        assert_eq!(call(&app, "/ignores", Body::from("x".repeat(1000))).await.2, "not read");
        assert_eq!(metrics.body_too_large.get(), 2);
    }

    /// On tokio's paused clock: the 200 ms pass without being waited for.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_is_408_after_the_timeout() {
        use futures_util::StreamExt as _;
        let (app, metrics) = app(1024, Duration::from_millis(200));
        let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"by\":"))])
            .chain(futures_util::stream::pending());
        let t = tokio::time::Instant::now();
        let (status, connection, body) = call(&app, "/small", Body::from_stream(stalled)).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert_eq!(connection, Some(HeaderValue::from_static("close")));
        assert!(body.contains("\"error\":\"request_timeout\""), "{body}");
        assert_eq!(metrics.body_timeouts.get(), 1);
    }
}
