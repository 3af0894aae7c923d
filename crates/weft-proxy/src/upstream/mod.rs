//! Connections to upstreams: HTTP/1.1 keep-alive connections pooled per
//! endpoint and driven by the request's own task, HTTP/2 connections owned
//! per endpoint (multiplexed), hyper-util's pool for upgrades, mesh mTLS to
//! endpoints that have an identity, and plain TCP connects with a timeout. Every failure
//! becomes a [`LocalReply`] that says what happened in words.

pub mod connect;
pub mod http1_pool;
pub mod http2_pool;
pub mod mesh;

pub use connect::connect_tcp;
pub use http1_pool::Http1Pool;
pub use http2_pool::Http2Pool;

use crate::body::Body;
use crate::local_reply::{Flag, LocalReply};
use http_body_util::BodyExt;
use hyper::Response;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mesh::MeshConnector;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Whether app HTTP/1.1 travels as HTTP/2 streams between meshed proxies
/// when the destination's connection pool does not say (`h2_upgrade`).
pub const H2_UPGRADE_DEFAULT: bool = false;

/// hyper's read buffer limit for upstream HTTP/1.1 connections.
const HTTP1_MAX_BUF: usize = 64 * 1024;

/// Plaintext HTTP/1.1 and HTTP/2 clients, and for clusters with meshed
/// endpoints the mTLS ones; each pools connections per endpoint.
#[derive(Clone)]
pub struct HttpClients {
    /// HTTP/1.1 requests, on connections driven by the request's own task.
    pub http1: Http1Pool<TcpStream>,
    /// HTTP/1.1 requests that upgrade (WebSocket): hyper-util's pool, which hands the upgraded connection over.
    pub upgrades: Client<HttpConnector, Body>,
    pub http2: Http2Pool,
    pub mesh: Option<MeshClients>,
    pub connect_timeout: Duration,
}

/// Clients over mesh mTLS: HTTP/2 for the app's HTTP/2 (and its HTTP/1.1
/// when `h2_upgrade`, multiplexed as Linkerd does), HTTP/1.1 on pooled TLS
/// connections otherwise (as Istio does by default), and for upgrades.
#[derive(Clone)]
pub struct MeshClients {
    pub http2: Http2Pool,
    pub http1: Http1Pool<TlsStream<TcpStream>>,
    pub upgrades: Client<MeshConnector, Body>,
    /// App HTTP/1.1 travels as HTTP/2 streams between the proxies.
    pub h2_upgrade: bool,
    connector: MeshConnector,
}

impl MeshClients {
    pub fn new(connector: MeshConnector, idle_timeout: Duration, h2_upgrade: bool) -> MeshClients {
        let upgrades = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(HTTP1_MAX_BUF)
            .build(MeshConnector { alpn: crate::mesh_alpn::ALPN_HTTP1, ..connector.clone() });
        MeshClients { http2: Http2Pool::new(idle_timeout), http1: Http1Pool::new(idle_timeout, HTTP1_MAX_BUF), upgrades, h2_upgrade, connector }
    }
}

/// Why a request to an upstream failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// From hyper-util's pooled client (upgrades).
    Pooled(hyper_util::client::legacy::Error),
    /// No connection (refused, timed out, mTLS handshake failed): the reply says which.
    Connect(LocalReply),
    /// On an HTTP/2 connection of our own: reset, closed, protocol error.
    Http2(hyper::Error),
    /// On an HTTP/1.1 connection of our own, after the request was sent.
    Http1(hyper::Error),
}

impl UpstreamError {
    /// The request never reached the upstream (safe to retry elsewhere).
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Pooled(e) => e.is_connect(),
            UpstreamError::Connect(_) => true,
            UpstreamError::Http2(_) | UpstreamError::Http1(_) => false,
        }
    }

    /// What to tell the client.
    pub fn explain(&self, endpoint: SocketAddr, timeout: Duration) -> LocalReply {
        match self {
            UpstreamError::Pooled(e) => connect::explain(e, endpoint, timeout),
            UpstreamError::Connect(reply) => reply.clone(),
            UpstreamError::Http2(e) | UpstreamError::Http1(e) => connect::explain_response_error(e, endpoint),
        }
    }
}

impl HttpClients {
    /// Sends `req` (its URI is set here) to `endpoint`: over mesh mTLS when
    /// `mesh` (the endpoint has an identity), else plaintext in the request's
    /// own version. HTTP/2 keeps `authority` as `:authority`; HTTP/1.1 keeps
    /// the Host header the caller set (the endpoint's address when it set none).
    pub async fn send(
        &self,
        mut req: http::Request<Body>,
        endpoint: SocketAddr,
        authority: Option<&str>,
        pq: &str,
        mesh: bool,
        upgrade: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        let invalid = || UpstreamError::Connect(LocalReply::new(400, Flag::NoRouteFound, format!("request target {pq:?} is not valid")));
        let absolute = |host: &str| -> Result<http::Uri, UpstreamError> { format!("http://{host}{pq}").parse().map_err(|_| invalid()) };
        let h2_authority = || match authority.filter(|a| a.parse::<http::uri::Authority>().is_ok()) {
            Some(a) => absolute(a),
            None => absolute(&endpoint.to_string()),
        };
        // HTTP/1.1 on a connection of our own: the request line carries the path only.
        let origin_form = |req: &mut http::Request<Body>| -> Result<(), UpstreamError> {
            *req.uri_mut() = http::Uri::try_from(pq).map_err(|_| invalid())?;
            if !req.headers().contains_key(http::header::HOST) {
                if let Ok(v) = http::HeaderValue::from_str(&endpoint.to_string()) {
                    req.headers_mut().insert(http::header::HOST, v);
                }
            }
            Ok(())
        };
        let timeout = self.connect_timeout;
        if !mesh {
            if req.version() == http::Version::HTTP_2 {
                *req.uri_mut() = h2_authority()?;
                return self.http2.send(endpoint, req, || connect_tcp(endpoint, timeout)).await;
            }
            if upgrade {
                *req.uri_mut() = absolute(&endpoint.to_string())?;
                return Ok(self.upgrades.request(req).await.map_err(UpstreamError::Pooled)?.map(|b| b.boxed()));
            }
            origin_form(&mut req)?;
            return self.http1.send(endpoint, req, || connect_tcp(endpoint, timeout)).await;
        }
        let Some(m) = &self.mesh else {
            return Err(UpstreamError::Connect(LocalReply::new(503, Flag::UpstreamConnectFailure, "the endpoint needs mTLS but this cluster has no mesh clients")));
        };
        if upgrade {
            *req.uri_mut() = absolute(&endpoint.to_string())?;
            return Ok(m.upgrades.request(req).await.map_err(UpstreamError::Pooled)?.map(|b| b.boxed()));
        }
        let c = &m.connector;
        let identity = c.identities.get(&endpoint).ok_or_else(|| {
            UpstreamError::Connect(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("{endpoint} has no mesh identity to verify")))
        })?;
        if req.version() != http::Version::HTTP_2 && !m.h2_upgrade {
            origin_form(&mut req)?;
            let connect = || mesh::connect(endpoint, identity, crate::mesh_alpn::ALPN_HTTP1, &c.certificate, c.connect_timeout);
            return m.http1.send(endpoint, req, connect).await;
        }
        if req.version() != http::Version::HTTP_2 {
            req.headers_mut().insert(crate::mesh_alpn::ORIG_PROTO, http::HeaderValue::from_static("HTTP/1.1"));
            *req.version_mut() = http::Version::HTTP_2;
        }
        *req.uri_mut() = h2_authority()?;
        let identity = identity.clone();
        m.http2
            .send(endpoint, req, || async move {
                mesh::connect(endpoint, &identity, crate::mesh_alpn::ALPN_H2, &c.certificate, c.connect_timeout).await
            })
            .await
    }

    /// `idle_timeout`: how long an unused pooled connection is kept.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> HttpClients {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let upgrades = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(HTTP1_MAX_BUF)
            .build(connector.clone());
        HttpClients { http1: Http1Pool::new(idle_timeout, HTTP1_MAX_BUF), upgrades, http2: Http2Pool::new(idle_timeout), mesh: None, connect_timeout }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::empty_body;
    use bytes::Bytes;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

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
