//! What the request path knows about one downstream connection: the
//! listener it came in on, who the peer is, and which way it is going,
//! decided once when it is accepted.

use crate::metric_labels::{self, Shared};
use std::net::SocketAddr;
use std::sync::Arc;
use weft_proto::config::Listener;

/// Who is on the other end of a downstream connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub address: SocketAddr,
    /// The client's SPIFFE ID, when it came over mesh mTLS.
    pub identity: Option<Arc<str>>,
    /// The connection arrived over mesh mTLS.
    pub mtls: bool,
    /// Who the peer is in metrics: what its certificate says, else unknown.
    pub labels: Shared<metric_labels::Workload>,
}

impl Peer {
    /// A peer that proved nothing (yet).
    pub fn at(address: SocketAddr) -> Peer {
        Peer { address, identity: None, mtls: false, labels: metric_labels::unknown_workload() }
    }
}

/// Where a connection's traffic goes, by the kind of listener it came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Leaving the workload: routed by the config.
    Outbound(Destination),
    /// For the workload: handed to the local app at its original destination.
    Inbound { app: SocketAddr },
}

/// What an outbound connection asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A transparent listener: the address the app connected to.
    Original(SocketAddr),
    /// An explicit listener: the cluster it forwards to.
    Cluster(String),
}

/// One accepted downstream connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub listener: Arc<Listener>,
    pub peer: Peer,
    pub direction: Direction,
    /// The server name a mesh TLS client asked for.
    pub sni: Option<Arc<str>>,
    /// The accepted socket, to reset it when policy refuses the connection.
    pub socket: Option<std::os::fd::RawFd>,
    /// Which authorization rules this caller could match, worked out on its
    /// first request and kept until the config changes.
    pub authz: weft_policy::PrefilterCache,
}

/// Makes closing `socket` send a TCP reset instead of a FIN (SO_LINGER 0):
/// a refused client learns at once that it was refused, not that the
/// server finished. Call it only while the stream owning `socket` is alive.
pub fn reset_on_close(socket: std::os::fd::RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `socket` belongs to a stream the caller still holds, and the
    // option struct lives across the call; a failure only means a FIN is sent.
    unsafe {
        libc::setsockopt(socket, libc::SOL_SOCKET, libc::SO_LINGER, &linger as *const libc::linger as *const libc::c_void, std::mem::size_of::<libc::linger>() as libc::socklen_t);
    }
}

impl Connection {
    /// The destination port the client used (for port matches and policy).
    pub fn port(&self) -> u16 {
        match &self.direction {
            Direction::Inbound { app } | Direction::Outbound(Destination::Original(app)) => app.port(),
            Direction::Outbound(Destination::Cluster(_)) => self.listener.address.port(),
        }
    }
}
