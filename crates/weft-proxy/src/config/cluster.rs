//! One cluster as the request path uses it: its config, this proxy's
//! certificate (for mesh mTLS to its endpoints), the balancer with per-endpoint
//! state, circuit-breaking limits, and pooled clients. Kept across reloads
//! while the cluster's config is unchanged, so pools and balancer state live on.

use crate::balance::{Balancer, Limits};
use crate::config::{Cluster, Endpoint, UpstreamTls};
use crate::local_reply::{Flag, LocalReply};
use crate::metric_labels::{self, Shared};
use crate::upstream::mesh::MeshConnector;
use crate::upstream::{HttpClients, MeshClients, H2_UPGRADE_DEFAULT};
use crate::workload_cert::Certificate;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct ClusterState {
    pub config: Cluster,
    /// This proxy's workload certificate (mTLS needs one).
    certificate: Certificate,
    pub balancer: Arc<Balancer>,
    /// Circuit breaking for HTTP/1.1 (and TCP) and for HTTP/2 requests.
    pub limits_http1: Limits,
    pub limits_http2: Limits,
    pub clients: HttpClients,
    /// The cluster's Service, and each endpoint's workload, in the standard metrics.
    pub service_labels: Shared<metric_labels::Service>,
    endpoint_labels: Vec<Shared<metric_labels::Workload>>,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState").field("name", &self.config.name).finish()
    }
}

impl ClusterState {
    pub(super) fn new(config: Cluster, idle_timeout: std::time::Duration, certificate: &Certificate) -> ClusterState {
        let idle_timeout = config.pool.idle_timeout.unwrap_or(idle_timeout);
        let mut clients = HttpClients::new(config.connect_timeout, idle_timeout);
        let identities: HashMap<SocketAddr, String> =
            config.endpoints.iter().filter_map(|e| Some((e.address, e.identity.clone()?))).collect();
        if !identities.is_empty() && config.tls != UpstreamTls::Disable {
            let connector = MeshConnector {
                certificate: certificate.clone(),
                identities: Arc::new(identities),
                alpn: crate::mesh_alpn::ALPN_H2,
                connect_timeout: config.connect_timeout,
            };
            clients.mesh = Some(MeshClients::new(connector, idle_timeout, config.pool.h2_upgrade.unwrap_or(H2_UPGRADE_DEFAULT)));
        }
        let service_labels = match metric_labels::service_of_cluster(&config.name) {
            Some((host, port)) => metric_labels::service(Some(host), port),
            None => metric_labels::service(Some(&config.name), 0),
        };
        let endpoint_labels = config.endpoints.iter().map(|e| metric_labels::workload(e.workload.as_ref(), e.identity.as_deref())).collect();
        ClusterState {
            service_labels,
            endpoint_labels,
            certificate: certificate.clone(),
            balancer: Arc::new(Balancer::new(&config)),
            limits_http1: Limits::new(&config.pool, false),
            limits_http2: Limits::new(&config.pool, true),
            config,
            clients,
        }
    }

    pub fn limits(&self, http2: bool) -> &Limits {
        if http2 {
            &self.limits_http2
        } else {
            &self.limits_http1
        }
    }

    /// How a connection to `endpoint` is made: `Ok(Some(identity))` for mesh
    /// mTLS, `Ok(None)` for plaintext, an error when policy forbids both.
    /// Auto-mTLS needs a certificate on both sides: a proxy without one yet
    /// speaks plaintext (which a PERMISSIVE server accepts).
    pub fn transport<'a>(&self, endpoint: &'a Endpoint) -> Result<Option<&'a str>, LocalReply> {
        let have_cert = self.certificate.borrow().is_some();
        match (self.config.tls, endpoint.identity.as_deref(), have_cert) {
            (UpstreamTls::Disable, _, _) => Ok(None),
            (UpstreamTls::Mutual, None, _) => Err(LocalReply::new(
                503,
                Flag::UpstreamConnectFailure,
                format!("{} has no mesh identity, and cluster {} requires mTLS (ISTIO_MUTUAL)", endpoint.address, self.config.name),
            )),
            (UpstreamTls::Mutual, Some(_), false) => Err(LocalReply::new(
                503,
                Flag::UpstreamConnectFailure,
                format!("this proxy has no workload certificate, and cluster {} requires mTLS (ISTIO_MUTUAL)", self.config.name),
            )),
            (UpstreamTls::Auto, _, false) => Ok(None),
            (_, identity, true) => Ok(identity),
        }
    }

    /// The workload at endpoint `index` in the standard metrics.
    pub fn endpoint_labels(&self, index: usize) -> Shared<metric_labels::Workload> {
        self.endpoint_labels.get(index).cloned().unwrap_or_else(metric_labels::unknown_workload)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// An endpoint by the cluster's balancer (`hash`: the request's
    /// consistent-hash key); `None` when the cluster has none.
    pub fn pick(&self, hash: Option<u64>, random: &mut dyn FnMut() -> u64) -> Option<(usize, &Endpoint)> {
        let i = self.balancer.pick(hash, random)?;
        Some((i, &self.config.endpoints[i]))
    }
}

