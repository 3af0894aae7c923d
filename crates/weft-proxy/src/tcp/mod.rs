//! Opaque TCP, one stack per direction: each function names every step in
//! order. A connection counts against its cluster's `maxConnections` and as
//! load on its endpoint while it lasts; bytes are copied both ways with
//! half-close propagated. Every connection is one [`ConnectionRecord`].

use crate::balance::Outcome;
use crate::body::Downstream;
use crate::connection::{Connection, Destination};
use crate::inbound::authz;
use crate::local_reply::LocalReply;
use crate::target::Target;
use crate::state::Proxy;
use crate::telemetry::flow::CountedIo;
use crate::telemetry::{ConnectionRecord, Parties, TcpRelay};
use crate::upstream::connect_tcp;
use crate::upstream::mesh;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Outbound: route (explicit cluster, original destination, or passthrough) -> admit -> connect -> copy.
pub async fn outbound(proxy: &Proxy, conn: &Connection, dst: &Destination, downstream: impl Downstream, record: ConnectionRecord) {
    let snapshot = proxy.snapshot();
    match crate::outbound::route::tcp(&snapshot, conn, dst, &mut crate::random::random_u64) {
        Ok(target) => {
            let parties = crate::outbound::parties(&snapshot, &target);
            relay(proxy, target, parties, downstream, record).await
        }
        Err(reply) => record.tcp_failed(None, reply),
    }
}

/// Inbound: authorize (L4 rules; a refusal resets the connection) -> the
/// local app at the original destination -> connect -> copy.
pub async fn inbound(proxy: &Proxy, conn: &Connection, app: SocketAddr, downstream: impl Downstream, record: ConnectionRecord) {
    let snapshot = proxy.snapshot();
    let authorizer = &snapshot.authorizer;
    if !authorizer.is_open() {
        let attributes = authz::tcp_request(conn, app);
        let decision = authorizer.evaluate_with(&conn.authz.get(authorizer, &attributes), &attributes);
        proxy.authz_counters(&snapshot).count(crate::telemetry::authz::Protocol::Tcp, &decision);
        if let Some(notes) = authz::side_notes(authorizer, &decision) {
            tracing::info!(target: "authz", peer = %conn.peer.address, port = app.port(), "{notes}");
        }
        if let Some(denial) = decision.denial {
            let reply = authz::denied(authorizer, &attributes, denial, false);
            tracing::info!(target: "authz", peer = %conn.peer.address, identity = conn.peer.identity.as_deref().unwrap_or("-"), "TCP to port {} denied: {}", app.port(), reply.reason);
            if let Some(fd) = conn.socket {
                crate::connection::reset_on_close(fd);
            }
            drop(downstream);
            return record.tcp_failed(None, reply);
        }
    }
    let parties = crate::inbound::parties(&snapshot, conn, None, app.port());
    relay(proxy, crate::inbound::target(app), parties, downstream, record).await
}

/// Connects to the target and copies until both sides are done.
async fn relay(proxy: &Proxy, target: Target, parties: Parties, downstream: impl Downstream, mut record: ConnectionRecord) {
    let cluster = target.cluster();
    let timeout = cluster.map(|c| c.config.connect_timeout).unwrap_or(proxy.passthrough.connect_timeout);
    let _admitted = match cluster {
        Some(c) => match c.limits(false).admit(c.name()).await {
            Ok(a) => Some(a),
            Err(reply) => return record.tcp_failed(None, reply),
        },
        None => None,
    };
    let in_flight = cluster.zip(target.endpoint.index).map(|(c, i)| c.balancer.start(i));
    let endpoint = target.endpoint.address;
    let mut upstream = match connect(proxy, &target, timeout).await {
        Ok(s) => s,
        Err(reply) => {
            if let Some(f) = in_flight {
                f.finish(Outcome::LocalFailure);
            }
            return record.tcp_failed(Some(endpoint), reply);
        }
    };
    let bytes = record.relaying(parties);
    // copy_bidirectional propagates each side's EOF as a write shutdown (half-close);
    // a connection on which nothing moved for the idle timeout is closed. Bytes are
    // counted as they move, so a reset or an idle close loses none of them.
    let activity = crate::idle::Activity::default();
    let mut downstream = CountedIo::new(activity.track(downstream), bytes);
    let idle_timeout = proxy.snapshot().config.limits.connection_idle_timeout;
    let copy = async {
        match &mut upstream {
            TcpUpstream::Plain(s) => tokio::io::copy_bidirectional(&mut downstream, s).await,
            TcpUpstream::Mesh(s) => tokio::io::copy_bidirectional(&mut downstream, s.as_mut()).await,
        }
    };
    let result = tokio::select! {
        r = copy => r,
        _ = activity.expired(idle_timeout) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle")),
    };
    let (received, sent) = (downstream.received, downstream.sent);
    let upstream_mtls = target.endpoint.identity.is_some();
    let cluster = target.cluster_name().to_string();
    record.tcp_done(TcpRelay { endpoint, route: target.route, cluster, upstream_mtls, sent, received, reset: result.is_err() });
}

enum TcpUpstream {
    Plain(TcpStream),
    Mesh(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Plain TCP, or mesh mTLS carrying `weft/tcp` when the endpoint has an identity.
async fn connect(proxy: &Proxy, target: &Target, timeout: std::time::Duration) -> Result<TcpUpstream, LocalReply> {
    let endpoint = target.endpoint.address;
    match &target.endpoint.identity {
        Some(id) => {
            let certificate = proxy.certificate.subscribe();
            mesh::connect(endpoint, id, crate::mesh_alpn::ALPN_TCP, &certificate, timeout).await.map(|s| TcpUpstream::Mesh(Box::new(s)))
        }
        None => connect_tcp(endpoint, timeout).await.map(TcpUpstream::Plain),
    }
}
