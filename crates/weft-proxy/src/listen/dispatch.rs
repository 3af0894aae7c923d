//! One accepted connection, from its first byte to the stack that serves
//! it: where it is going (decided here, once, by the listener's kind), what
//! protocol it speaks, and for inbound connections whether its port's mTLS
//! mode lets it in and whether to terminate mesh TLS.

use super::detect::{detect, Detected};
use super::orig_dst::original_dst;
use crate::body::Downstream;
use crate::config::{Limits, Listener, ListenerKind, Protocol, Snapshot};
use crate::connection::{Connection, Destination, Direction};
use crate::inbound::{self, Admission};
use crate::mesh_alpn::{is_mesh_alpn, Carried};
use crate::state::Proxy;
use crate::telemetry::ConnectionRecord;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Where a connection on `listener` goes: the one place that looks at the listener's kind.
fn direction(listener: &Listener, stream: &TcpStream) -> Result<Direction, String> {
    let original = || match original_dst(stream) {
        // Not redirected: someone connected to the listener itself. Forwarding to ourselves would loop.
        Ok(dst) if Some(dst) == stream.local_addr().ok() => Err("direct connection to a transparent listener".to_string()),
        Ok(dst) => Ok(dst),
        Err(e) => Err(format!("no original destination: {e}")),
    };
    Ok(match listener.kind {
        ListenerKind::Explicit => Direction::Outbound(Destination::Cluster(listener.cluster.clone().unwrap_or_default())),
        ListenerKind::Outbound => Direction::Outbound(Destination::Original(original()?)),
        ListenerKind::Inbound => Direction::Inbound { app: original()? },
    })
}

/// What a port is declared to carry, by the listener, its opaque ports, the
/// Service of the destination (outbound) or of the workload (inbound).
fn declared(listener: &Listener, direction: &Direction, snapshot: &Snapshot) -> Protocol {
    let original = match direction {
        Direction::Inbound { app } => {
            let declared = snapshot.config.inbound.port_protocols.get(&app.port()).copied();
            Some((app.port(), declared.unwrap_or_default()))
        }
        Direction::Outbound(Destination::Original(dst)) => {
            Some((dst.port(), snapshot.route_for_destination(*dst).map(|r| r.protocol).unwrap_or_default()))
        }
        Direction::Outbound(Destination::Cluster(_)) => None,
    };
    match (listener.protocol, original) {
        (Protocol::Detect, Some((port, _))) if listener.opaque_ports.contains(&port) => Protocol::Tcp,
        (Protocol::Detect, Some((_, declared))) => declared,
        (forced, _) => forced,
    }
}

/// What the connection speaks. Inbound connections are always peeked at, so
/// that mesh TLS is recognised whatever the port carries (a meshed client's
/// ClientHello comes at once; on a server-first port a plaintext client
/// waits out the detect timeout); then a declared protocol wins over what
/// the bytes look like. Outbound, a declared protocol is not sniffed at all.
async fn protocol(declared: Protocol, inbound: bool, stream: &TcpStream, limits: &Limits) -> Option<Detected> {
    if !inbound && declared == Protocol::Tcp {
        return Some(Detected::Tcp);
    }
    let detected = match detect(stream, limits.detect_timeout).await {
        Ok(d) => d,
        Err(_) => return None,
    };
    Some(match (declared, detected) {
        (_, tls @ Detected::Tls { .. }) if inbound => tls,
        (Protocol::Tcp, _) => Detected::Tcp,
        (Protocol::Http, Detected::Http2) => Detected::Http2,
        (Protocol::Http, _) => Detected::Http1,
        (Protocol::Detect, d) => d,
    })
}

fn label(d: &Detected) -> &'static str {
    match d {
        Detected::Http1 => "http1",
        Detected::Http2 => "http2",
        Detected::Tls { .. } => "tls",
        Detected::Tcp => "tcp",
    }
}

/// Serves one accepted connection to the end.
pub async fn connection(proxy: &Arc<Proxy>, stream: TcpStream, record: ConnectionRecord) {
    let listener = record.listener.clone();
    let direction = match direction(&listener, &stream) {
        Ok(d) => d,
        Err(why) => {
            tracing::debug!(listener = %listener.name, peer = %record.peer.address, "{why}; closing");
            return record.rejected("no_original_destination");
        }
    };
    let snapshot = proxy.snapshot();
    let limits = snapshot.config.limits.clone();
    let declared = declared(&listener, &direction, &snapshot);
    let inbound = matches!(direction, Direction::Inbound { .. });
    let Some(detected) = protocol(declared, inbound, &stream, &limits).await else { return };
    let socket = Some(std::os::fd::AsRawFd::as_raw_fd(&stream));
    let conn = Connection { listener, peer: record.peer.clone(), direction, sni: None, socket, authz: Default::default() };
    match conn.direction.clone() {
        Direction::Outbound(_) => {
            record.opened(label(&detected));
            serve(proxy, Arc::new(conn), stream, detected, record, &limits).await
        }
        Direction::Inbound { app } => {
            let mode = proxy.snapshot().config.inbound.mode_for(app.port());
            let mesh = matches!(&detected, Detected::Tls { alpn, .. } if is_mesh_alpn(alpn));
            match inbound::admit(mode, mesh) {
                Admission::MeshTls => mesh_tls(proxy, conn, stream, record, declared, &limits).await,
                Admission::Refuse => {
                    let port = app.port();
                    let text = format!("plaintext connection, and port {port} requires mTLS (STRICT)");
                    record.refused("mtls_required", label(&detected), Some(port), text)
                }
                Admission::Plaintext => {
                    record.opened(label(&detected));
                    serve(proxy, Arc::new(conn), stream, detected, record, &limits).await
                }
            }
        }
    }
}

/// Inbound mesh mTLS: terminate it, learn the client's identity, and serve
/// what it carries (HTTP/2, HTTP/1.1 or TCP) to the local app.
async fn mesh_tls(proxy: &Arc<Proxy>, mut conn: Connection, stream: TcpStream, mut record: ConnectionRecord, declared: Protocol, limits: &Limits) {
    let Some(cert) = proxy.certificate.borrow().clone() else {
        return record.refused("no_certificate", "mtls", None, "this proxy has no workload certificate yet".into());
    };
    let (tls, peer, carried) = match inbound::tls::accept(stream, &cert, limits.header_read_timeout).await {
        Ok(x) => x,
        Err(e) => return record.refused("mtls_handshake", "mtls", None, e),
    };
    conn.sni = tls.get_ref().1.server_name().map(Arc::from);
    conn.peer.identity = peer.identity;
    conn.peer.labels = peer.labels;
    conn.peer.mtls = true;
    record.peer = conn.peer.clone();
    record.opened(carried.label());
    let detected = match (carried, declared) {
        (Carried::Http2, _) => Detected::Http2,
        (Carried::Http1, _) => Detected::Http1,
        // An HTTP port's bytes are parsed even when the client proxy sent them as
        // opaque TCP: the app's identity headers are only ever set by this proxy.
        (Carried::Tcp, Protocol::Http) => Detected::Http1,
        (Carried::Tcp, _) => Detected::Tcp,
    };
    serve(proxy, Arc::new(conn), tls, detected, record, limits).await
}

/// Hands the connection to its stack: HTTP (each request its own stack run) or opaque TCP.
async fn serve(proxy: &Arc<Proxy>, conn: Arc<Connection>, stream: impl Downstream, detected: Detected, record: ConnectionRecord, limits: &Limits) {
    let http2 = matches!(detected, Detected::Http2);
    match (detected, conn.direction.clone()) {
        (Detected::Http1 | Detected::Http2, direction) => {
            let (proxy2, conn2) = (proxy.clone(), conn.clone());
            match direction {
                Direction::Outbound(dst) => {
                    let handle = move |req| crate::http::outbound(proxy2.clone(), conn2.clone(), dst.clone(), req);
                    crate::http::server::serve(stream, http2, limits, &proxy.drain, handle).await
                }
                Direction::Inbound { app } => {
                    let handle = move |req| crate::http::inbound(proxy2.clone(), conn2.clone(), app, req);
                    crate::http::server::serve(stream, http2, limits, &proxy.drain, handle).await
                }
            }
            record.served_http();
        }
        (Detected::Tls { .. } | Detected::Tcp, Direction::Outbound(dst)) => crate::tcp::outbound(proxy, &conn, &dst, stream, record).await,
        (Detected::Tls { .. } | Detected::Tcp, Direction::Inbound { app }) => crate::tcp::inbound(proxy, &conn, app, stream, record).await,
    }
}
