//! Connections to upstreams: pooled HTTP/1.1 keep-alive and multiplexed
//! HTTP/2 clients, and plain TCP connects with a timeout. Failures become a
//! [`LocalReply`] that says what happened in words.

use crate::local_reply::{Flag, LocalReply};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// One HTTP/1.1 and one HTTP/2 client; each pools connections per endpoint.
#[derive(Clone)]
pub struct HttpClients {
    pub http1: Client<HttpConnector, Body>,
    pub http2: Client<HttpConnector, Body>,
    pub connect_timeout: Duration,
}

impl HttpClients {
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
        HttpClients { http1, http2, connect_timeout }
    }
}

/// Explains a failed upstream request.
pub fn explain(err: &hyper_util::client::legacy::Error, endpoint: SocketAddr, timeout: Duration) -> LocalReply {
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
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
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
