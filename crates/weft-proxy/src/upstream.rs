//! Connections to upstreams: pooled HTTP/1.1 keep-alive and multiplexed
//! HTTP/2 clients, and plain TCP connects with a timeout. Failures become a
//! [`LocalReply`] that says what happened in words.

use crate::local_reply::{Flag, LocalReply};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use crate::mesh_tls::{MeshConnectError, MeshConnector};
use hyper_util::client::legacy::{connect::HttpConnector, Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Plaintext HTTP/1.1 and HTTP/2 clients, and for clusters with meshed
/// endpoints the mTLS ones; each pools connections per endpoint.
#[derive(Clone)]
pub struct HttpClients {
    pub http1: Client<HttpConnector, Body>,
    pub http2: Client<HttpConnector, Body>,
    pub mesh: Option<MeshClients>,
    pub connect_timeout: Duration,
}

/// Clients over mesh mTLS: HTTP/2 for every request that can be multiplexed,
/// HTTP/1.1 for upgrades.
#[derive(Clone)]
pub struct MeshClients {
    pub http2: Client<MeshConnector, Body>,
    pub http1: Client<MeshConnector, Body>,
}

impl MeshClients {
    pub fn new(connector: MeshConnector, idle_timeout: Duration) -> MeshClients {
        let http2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(MeshConnector { alpn: crate::mesh_tls::ALPN_H2, ..connector.clone() });
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(64 * 1024)
            .build(MeshConnector { alpn: crate::mesh_tls::ALPN_HTTP1, ..connector });
        MeshClients { http2, http1 }
    }
}

impl HttpClients {
    /// Sends `req` to the endpoint in its URI: over mesh mTLS when `mesh` (the
    /// endpoint has an identity), else plaintext in the request's own version.
    pub fn send(&self, mut req: http::Request<Body>, mesh: bool, upgrade: bool) -> Result<ResponseFuture, LocalReply> {
        if !mesh {
            let client = if req.version() == http::Version::HTTP_2 { &self.http2 } else { &self.http1 };
            return Ok(client.request(req));
        }
        let Some(m) = &self.mesh else {
            return Err(LocalReply::new(503, Flag::UpstreamConnectFailure, "the endpoint needs mTLS but this cluster has no mesh clients"));
        };
        if upgrade {
            return Ok(m.http1.request(req));
        }
        if req.version() != http::Version::HTTP_2 {
            req.headers_mut().insert(crate::mesh_tls::ORIG_PROTO, http::HeaderValue::from_static("HTTP/1.1"));
            *req.version_mut() = http::Version::HTTP_2;
        }
        Ok(m.http2.request(req))
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
        let http2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        HttpClients { http1, http2, mesh: None, connect_timeout }
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
