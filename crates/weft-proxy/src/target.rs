//! Where one request or connection is forwarded, as the decisions of both
//! directions name it: the route, what the endpoint was picked from (a
//! cluster or the original destination), the endpoint, and the identity
//! its proxy must prove.

use crate::config::ClusterState;
use std::net::SocketAddr;
use std::sync::Arc;

/// An endpoint to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub address: SocketAddr,
    /// Its place in the cluster, for load and outlier accounting (`None` for an original destination).
    pub index: Option<usize>,
    /// The SPIFFE ID the endpoint's proxy must present: set, the connection is mesh mTLS.
    pub identity: Option<String>,
}

impl Picked {
    /// An address outside any cluster (passthrough, or the local app).
    pub fn original(address: SocketAddr) -> Picked {
        Picked { address, index: None, identity: None }
    }
}

/// What the endpoint was picked from.
#[derive(Debug, Clone)]
pub enum Upstream {
    Cluster(Arc<ClusterState>),
    /// The original destination: no route captured it (or it is the local app).
    Original,
}

/// Where one request or connection is forwarded.
#[derive(Debug, Clone)]
pub struct Target {
    /// The route, with `/rule` when a named rule matched; `passthrough` or `inbound` otherwise.
    pub route: Arc<str>,
    pub upstream: Upstream,
    pub endpoint: Picked,
    /// The request's consistent-hash key, so a retry picks by it again.
    pub hash: Option<u64>,
}

impl Target {
    /// The cluster's name, or the route's for an original destination (metrics and the access log).
    pub fn cluster_name(&self) -> &str {
        match &self.upstream {
            Upstream::Cluster(c) => c.name(),
            Upstream::Original => &self.route,
        }
    }

    pub fn cluster(&self) -> Option<&Arc<ClusterState>> {
        match &self.upstream {
            Upstream::Cluster(c) => Some(c),
            Upstream::Original => None,
        }
    }

    /// Passthrough to `address`, under the route name `route`.
    pub fn original(route: &str, address: SocketAddr) -> Target {
        Target { route: Arc::from(route), upstream: Upstream::Original, endpoint: Picked::original(address), hash: None }
    }
}

