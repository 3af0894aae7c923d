//! What the request path knows about one downstream connection: the
//! listener it came in on, who the peer is, and which way it is going,
//! decided once when it is accepted.

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
