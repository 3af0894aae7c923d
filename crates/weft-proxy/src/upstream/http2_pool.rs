//! HTTP/2 connections the proxy owns, one per endpoint, each multiplexing
//! every request to it. hyper-util's pool keys connections by URI; owning
//! them lets a request keep its own URI, so the server sees the client's
//! `:authority`, not the endpoint's address.

use super::UpstreamError;
use crate::body::Body;
use crate::local_reply::{Flag, LocalReply};
use http_body_util::BodyExt;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    pub(super) async fn send<IO, Fut>(&self, endpoint: SocketAddr, req: http::Request<Body>, connect: impl FnOnce() -> Fut) -> Result<Response<Body>, UpstreamError>
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
            // Boxed: a new connection is the rare case, and its handshake future would
            // otherwise make every request's future kilobytes larger.
            None => Box::pin(async {
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
                Ok::<_, UpstreamError>(sender)
            })
            .await?,
        };
        sender.ready().await.map_err(UpstreamError::Http2)?;
        Ok(sender.send_request(req).await.map_err(UpstreamError::Http2)?.map(|b| b.boxed()))
    }
}

