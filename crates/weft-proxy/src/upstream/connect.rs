//! Opening connections to upstreams, and what to tell the client when that
//! or the request fails: one place turns an I/O error, a timeout or a
//! protocol error into a [`LocalReply`] with Envoy's flag and a reason.

use crate::local_reply::{Flag, LocalReply};
use super::mesh::MeshConnectError;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Opens a TCP connection to an upstream, bounded by `timeout`.
pub async fn connect_tcp(endpoint: SocketAddr, timeout: Duration) -> Result<TcpStream, LocalReply> {
    match tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(connect_failed(endpoint, timeout, Some(e.kind()), &e.to_string())),
        Err(_) => Err(connect_failed(endpoint, timeout, Some(ErrorKind::TimedOut), "")),
    }
}

/// The reply for a connection to `endpoint` that could not be made: refused,
/// timed out (after `timeout`), or failed for the reason `detail` gives.
fn connect_failed(endpoint: SocketAddr, timeout: Duration, kind: Option<ErrorKind>, detail: &str) -> LocalReply {
    let reason = match kind {
        Some(ErrorKind::ConnectionRefused) => format!("connect to {endpoint} refused"),
        Some(ErrorKind::TimedOut) => format!("connect to {endpoint} timed out after {}ms", timeout.as_millis()),
        _ => format!("connect to {endpoint} failed: {detail}"),
    };
    LocalReply::new(503, Flag::UpstreamConnectFailure, reason)
}

/// Explains a failed request of the pooled HTTP/1.1 clients.
pub fn explain(err: &hyper_util::client::legacy::Error, endpoint: SocketAddr, timeout: Duration) -> LocalReply {
    if let Some(mesh) = cause::<MeshConnectError>(err) {
        return mesh.0.clone();
    }
    if err.is_connect() {
        // hyper-util reports its own connect timeout without an io::Error.
        let timed_out = err.to_string().contains("timed out") || format!("{err:?}").contains("ConnectTimeout");
        let kind = match cause::<std::io::Error>(err).map(|e| e.kind()) {
            Some(k @ (ErrorKind::ConnectionRefused | ErrorKind::TimedOut)) => Some(k),
            _ if timed_out => Some(ErrorKind::TimedOut),
            k => k,
        };
        return connect_failed(endpoint, timeout, kind, &chain(err));
    }
    explain_response_error(err, endpoint)
}

/// Explains a failure after the connection was made.
pub fn explain_response_error(err: &(dyn std::error::Error + 'static), endpoint: SocketAddr) -> LocalReply {
    let text = chain(err);
    if text.contains("message head is too large") || text.contains("header") && text.contains("too large") {
        return LocalReply::new(502, Flag::UpstreamProtocolError, format!("response headers from {endpoint} are too large"));
    }
    if text.contains("parse") || text.contains("invalid") {
        return LocalReply::new(502, Flag::UpstreamProtocolError, format!("{endpoint} sent an invalid response: {text}"));
    }
    LocalReply::new(503, Flag::UpstreamConnectionTermination, format!("{endpoint} closed the connection before responding: {text}"))
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

