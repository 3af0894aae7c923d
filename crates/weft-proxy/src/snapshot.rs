//! The config as the request path uses it: lookup tables built once per
//! config, and per-cluster state (balancer position, connection pools) that
//! survives reloads when the cluster itself did not change. Requests hold an
//! `Arc<Snapshot>` for their whole life, so a reload never changes a request
//! mid-flight.

use crate::config::{Cluster, ProxyConfig};
use crate::upstream::HttpClients;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Where a route sends traffic.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub route: Arc<str>,
    pub cluster: Arc<ClusterState>,
}

pub struct ClusterState {
    pub config: Cluster,
    next: AtomicUsize,
    pub clients: HttpClients,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState").field("name", &self.config.name).finish()
    }
}

impl ClusterState {
    fn new(config: Cluster, idle_timeout: std::time::Duration) -> ClusterState {
        let clients = HttpClients::new(config.connect_timeout, idle_timeout);
        ClusterState { config, next: AtomicUsize::new(0), clients }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Round robin over the endpoints; `None` when the cluster has none.
    pub fn pick(&self) -> Option<SocketAddr> {
        let eps = &self.config.endpoints;
        if eps.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(eps[i % eps.len()])
    }
}

pub struct Snapshot {
    pub config: Arc<ProxyConfig>,
    clusters: HashMap<String, Arc<ClusterState>>,
    by_destination: HashMap<SocketAddr, RouteTarget>,
    by_host: HashMap<String, RouteTarget>,
}

impl Snapshot {
    /// Builds lookup tables; clusters equal to one in `previous` keep their
    /// state (and so their pooled connections).
    pub fn build(config: ProxyConfig, previous: Option<&Snapshot>) -> Snapshot {
        let mut clusters = HashMap::new();
        for c in &config.clusters {
            let state = previous
                .and_then(|p| p.clusters.get(&c.name))
                .filter(|s| s.config == *c && previous.is_some_and(|p| p.config.limits.idle_timeout == config.limits.idle_timeout))
                .cloned()
                .unwrap_or_else(|| Arc::new(ClusterState::new(c.clone(), config.limits.idle_timeout)));
            clusters.insert(c.name.clone(), state);
        }
        let mut by_destination = HashMap::new();
        let mut by_host = HashMap::new();
        for r in &config.routes {
            // `check()` guarantees the cluster exists.
            let Some(cluster) = clusters.get(&r.cluster) else { continue };
            let target = RouteTarget { route: r.name.as_str().into(), cluster: cluster.clone() };
            for d in &r.destinations {
                by_destination.entry(*d).or_insert_with(|| target.clone());
            }
            for h in &r.hosts {
                by_host.entry(h.to_ascii_lowercase()).or_insert_with(|| target.clone());
            }
        }
        Snapshot { config: Arc::new(config), clusters, by_destination, by_host }
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<ClusterState>> {
        self.clusters.get(name)
    }

    pub fn route_for_destination(&self, dst: SocketAddr) -> Option<&RouteTarget> {
        self.by_destination.get(&dst)
    }

    /// Matches `Host`/`:authority`, with the port (`reviews:9080`) or without.
    pub fn route_for_host(&self, host: &str) -> Option<&RouteTarget> {
        let host = host.to_ascii_lowercase();
        self.by_host.get(&host).or_else(|| {
            let bare = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
            self.by_host.get(bare)
        })
    }
}
