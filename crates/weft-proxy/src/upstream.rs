//! Connections to upstreams: pooled HTTP/1.1 keep-alive clients, HTTP/2
//! connections owned per endpoint (multiplexed), and plain TCP connects with
//! a timeout. Failures become a
//! [`LocalReply`] that says what happened in words.

use crate::local_reply::{Flag, LocalReply};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use crate::mesh_tls::{MeshConnectError, MeshConnector};
use hyper::body::Incoming;
use hyper::Response;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body of these bytes.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn empty_body() -> Body {
    use http_body_util::BodyExt;
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// Plaintext HTTP/1.1 and HTTP/2 clients, and for clusters with meshed
/// endpoints the mTLS ones; each pools connections per endpoint.
#[derive(Clone)]
pub struct HttpClients {
    pub http1: Client<HttpConnector, Body>,
    pub http2: Http2Pool,
    pub mesh: Option<MeshClients>,
    pub connect_timeout: Duration,
}

/// Clients over mesh mTLS: HTTP/2 for every request that can be multiplexed,
/// HTTP/1.1 for upgrades.
#[derive(Clone)]
pub struct MeshClients {
    pub http2: Http2Pool,
    pub http1: Client<MeshConnector, Body>,
    connector: MeshConnector,
}

impl MeshClients {
    pub fn new(connector: MeshConnector, idle_timeout: Duration) -> MeshClients {
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(64 * 1024)
            .build(MeshConnector { alpn: crate::mesh_tls::ALPN_HTTP1, ..connector.clone() });
        MeshClients { http2: Http2Pool::new(idle_timeout), http1, connector }
    }
}

/// HTTP/2 connections the proxy owns, one per endpoint, multiplexing every
/// request to it. Unlike a pool keyed by URI, the request keeps its own URI,
/// so the server sees the client's `:authority`, not the endpoint's address.
#[derive(Clone)]
pub struct Http2Pool {
    conns: Arc<Mutex<PoolState>>,
    /// A connection unused this long is let go (closed once its last stream ends).
    idle_timeout: Duration,
}

/// Above this many endpoints in use at once (passthrough can reach many),
/// the pool starts over rather than grow.
const MAX_HTTP2_ENDPOINTS: usize = 1024;

/// Connections by endpoint with when each was last used, and when idle ones were last let go.
struct PoolState {
    conns: HashMap<SocketAddr, (hyper::client::conn::http2::SendRequest<Body>, std::time::Instant)>,
    swept: std::time::Instant,
}

impl Http2Pool {
    pub fn new(idle_timeout: Duration) -> Http2Pool {
        Http2Pool { conns: Arc::new(Mutex::new(PoolState { conns: HashMap::new(), swept: std::time::Instant::now() })), idle_timeout }
    }

    async fn send<IO, Fut>(&self, endpoint: SocketAddr, req: http::Request<Body>, connect: impl FnOnce() -> Fut) -> Result<Response<Incoming>, UpstreamError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        Fut: std::future::Future<Output = Result<IO, LocalReply>>,
    {
        let cached = {
            let mut pool = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            let idle = self.idle_timeout;
            // Now and then (at most once a second): connections closed, or unused for the idle timeout, are let go.
            if now.duration_since(pool.swept) >= idle.min(Duration::from_secs(1)) {
                pool.swept = now;
                pool.conns.retain(|_, (s, used)| !s.is_closed() && now.duration_since(*used) < idle);
            }
            pool.conns.get_mut(&endpoint).filter(|(s, _)| !s.is_closed()).map(|(s, used)| {
                *used = now;
                s.clone()
            })
        };
        let mut sender = match cached {
            Some(s) => s,
            None => {
                let io = connect().await.map_err(UpstreamError::Connect)?;
                let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(|e| UpstreamError::Connect(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("HTTP/2 handshake with {endpoint} failed: {e}"))))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%endpoint, "upstream HTTP/2 connection: {e}");
                    }
                });
                let mut pool = self.conns.lock().unwrap_or_else(|p| p.into_inner());
                if pool.conns.len() >= MAX_HTTP2_ENDPOINTS {
                    pool.conns.clear();
                }
                pool.conns.insert(endpoint, (sender.clone(), std::time::Instant::now()));
                sender
            }
        };
        sender.ready().await.map_err(UpstreamError::Http2)?;
        sender.send_request(req).await.map_err(UpstreamError::Http2)
    }
}

/// Why a request to an upstream failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// From the pooled HTTP/1.1 clients.
    Pooled(hyper_util::client::legacy::Error),
    /// No connection (refused, timed out, mTLS handshake failed): the reply says which.
    Connect(LocalReply),
    /// On an HTTP/2 connection of our own: reset, closed, protocol error.
    Http2(hyper::Error),
}

impl UpstreamError {
    /// The request never reached the upstream (safe to retry elsewhere).
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Pooled(e) => e.is_connect(),
            UpstreamError::Connect(_) => true,
            UpstreamError::Http2(_) => false,
        }
    }

    /// What to tell the client.
    pub fn explain(&self, endpoint: SocketAddr, timeout: Duration) -> LocalReply {
        match self {
            UpstreamError::Pooled(e) => explain(e, endpoint, timeout),
            UpstreamError::Connect(reply) => reply.clone(),
            UpstreamError::Http2(e) => explain_response_error(e, endpoint),
        }
    }
}

impl HttpClients {
    /// Sends `req` (its URI is set here) to `endpoint`: over mesh mTLS when
    /// `mesh` (the endpoint has an identity), else plaintext in the request's
    /// own version. HTTP/2 keeps `authority` as `:authority`; HTTP/1.1 keeps
    /// the Host header the caller set.
    pub async fn send(
        &self,
        mut req: http::Request<Body>,
        endpoint: SocketAddr,
        authority: Option<&str>,
        pq: &str,
        mesh: bool,
        upgrade: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let uri = |host: &str| -> Result<http::Uri, UpstreamError> {
            format!("http://{host}{pq}")
                .parse()
                .map_err(|_| UpstreamError::Connect(LocalReply::new(400, Flag::NoRouteFound, format!("request target {pq:?} is not valid"))))
        };
        let endpoint_text = endpoint.to_string();
        let h2_authority = authority.filter(|a| a.parse::<http::uri::Authority>().is_ok()).unwrap_or(&endpoint_text);
        if !mesh {
            if req.version() == http::Version::HTTP_2 {
                *req.uri_mut() = uri(h2_authority)?;
                let timeout = self.connect_timeout;
                return self.http2.send(endpoint, req, || connect_tcp(endpoint, timeout)).await;
            }
            *req.uri_mut() = uri(&endpoint_text)?;
            return self.http1.request(req).await.map_err(UpstreamError::Pooled);
        }
        let Some(m) = &self.mesh else {
            return Err(UpstreamError::Connect(LocalReply::new(503, Flag::UpstreamConnectFailure, "the endpoint needs mTLS but this cluster has no mesh clients")));
        };
        if upgrade {
            *req.uri_mut() = uri(&endpoint_text)?;
            return m.http1.request(req).await.map_err(UpstreamError::Pooled);
        }
        if req.version() != http::Version::HTTP_2 {
            req.headers_mut().insert(crate::mesh_tls::ORIG_PROTO, http::HeaderValue::from_static("HTTP/1.1"));
            *req.version_mut() = http::Version::HTTP_2;
        }
        *req.uri_mut() = uri(h2_authority)?;
        let c = &m.connector;
        let identity = c.identities.get(&endpoint).cloned().ok_or_else(|| {
            UpstreamError::Connect(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("{endpoint} has no mesh identity to verify")))
        })?;
        m.http2
            .send(endpoint, req, || async move {
                crate::mesh_tls::connect(endpoint, &identity, crate::mesh_tls::ALPN_H2, &c.certificate, c.connect_timeout).await
            })
            .await
    }

    /// `idle_timeout`: how long an unused pooled connection is kept.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> HttpClients {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(64 * 1024)
            .build(connector.clone());
        HttpClients { http1, http2: Http2Pool::new(idle_timeout), mesh: None, connect_timeout }
    }
}

/// Explains a failed upstream request.
pub fn explain(err: &hyper_util::client::legacy::Error, endpoint: SocketAddr, timeout: Duration) -> LocalReply {
    if let Some(mesh) = cause::<MeshConnectError>(err) {
        return mesh.0.clone();
    }
    if err.is_connect() {
        let detail = io_cause(err);
        return match detail.map(|e| e.kind()) {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                LocalReply::new(503, Flag::UpstreamConnectFailure, format!("connect to {endpoint} refused"))
            }
            Some(std::io::ErrorKind::TimedOut) => LocalReply::new(
                503,
                Flag::UpstreamConnectFailure,
                format!("connect to {endpoint} timed out after {}ms", timeout.as_millis()),
            ),
            _ if err.to_string().contains("timed out") || format!("{err:?}").contains("ConnectTimeout") => LocalReply::new(
                503,
                Flag::UpstreamConnectFailure,
                format!("connect to {endpoint} timed out after {}ms", timeout.as_millis()),
            ),
            _ => LocalReply::new(503, Flag::UpstreamConnectFailure, format!("connect to {endpoint} failed: {}", chain(err))),
        };
    }
    explain_response_error(err, endpoint)
}

/// Explains a failure after the connection was made.
fn explain_response_error(err: &(dyn std::error::Error + 'static), endpoint: SocketAddr) -> LocalReply {
    let text = chain(err);
    if text.contains("message head is too large") || text.contains("header") && text.contains("too large") {
        return LocalReply::new(502, Flag::UpstreamProtocolError, format!("response headers from {endpoint} are too large"));
    }
    if text.contains("parse") || text.contains("invalid") {
        return LocalReply::new(502, Flag::UpstreamProtocolError, format!("{endpoint} sent an invalid response: {text}"));
    }
    LocalReply::new(503, Flag::UpstreamConnectionTermination, format!("{endpoint} closed the connection before responding: {text}"))
}

fn io_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    cause::<std::io::Error>(err)
}

fn cause<'a, E: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// The error and its causes on one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Opens a TCP connection to an upstream, bounded by `timeout`.
pub async fn connect_tcp(endpoint: SocketAddr, timeout: Duration) -> Result<TcpStream, LocalReply> {
    match tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("connect to {endpoint} refused")))
        }
        Ok(Err(e)) => Err(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("connect to {endpoint} failed: {e}"))),
        Err(_) => Err(LocalReply::new(
            503,
            Flag::UpstreamConnectFailure,
            format!("connect to {endpoint} timed out after {}ms", timeout.as_millis()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An h2c server that answers with the :authority it saw, counting connections.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                        let authority = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(Bytes::from(authority))))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> http::Request<Body> {
        let mut req = http::Request::new(empty_body());
        *req.version_mut() = http::Version::HTTP_2;
        req
    }

    #[tokio::test]
    async fn http2_keeps_the_authority_shares_one_connection_and_lets_idle_ones_go() {
        use http_body_util::BodyExt;
        let (addr, accepted) = server().await;
        let clients = HttpClients::new(Duration::from_secs(1), Duration::from_millis(100));
        for _ in 0..3 {
            let resp = clients.send(get(), addr, Some("reviews:9080"), "/x", false, false).await.unwrap();
            assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "reviews:9080");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "multiplexed on one connection");
        // Unused past the idle timeout: let go, and the next request opens a new one.
        tokio::time::sleep(Duration::from_millis(150)).await;
        clients.send(get(), addr, None, "/", false, false).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
