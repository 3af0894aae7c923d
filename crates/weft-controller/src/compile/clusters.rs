//! A DestinationRule's traffic policy as the proxy's cluster settings:
//! which settings apply to a (subset, port), and the balancer, connection
//! pool, outlier detection and client TLS they become.

use std::time::Duration;
use weft_proto::config::{Cluster, Endpoint as ProxyEndpoint, UpstreamTls};

/// The settings a DestinationRule gives one (subset, port) of a host: each
/// field from the most specific place that sets it (the subset's port-level
/// settings, the subset, the port-level settings, the rule).
#[derive(Debug, Clone, Default)]
pub struct EffectivePolicy {
    pub load_balancer: Option<weft_model::mesh::LoadBalancer>,
    pub connection_pool: weft_model::mesh::ConnectionPool,
    pub outlier_detection: Option<weft_model::mesh::OutlierDetection>,
    pub tls: Option<weft_model::mesh::ClientTls>,
}

pub fn effective_policy(dest: Option<&weft_model::mesh::DestinationPolicy>, subset: Option<&str>, port: u16) -> EffectivePolicy {
    use weft_model::mesh::TrafficPolicy;
    let Some(dest) = dest else { return EffectivePolicy::default() };
    let with_port = |t: &TrafficPolicy| -> Vec<TrafficPolicy> {
        let mut v: Vec<TrafficPolicy> = t.port_overrides.iter().filter(|(p, _)| *p == port).map(|(_, t)| t.clone()).collect();
        v.push(t.clone());
        v
    };
    // Most specific first.
    let mut layers: Vec<TrafficPolicy> = Vec::new();
    if let Some(sp) = subset.and_then(|n| dest.subsets.iter().find(|s| s.name == n)).and_then(|s| s.policy.as_ref()) {
        layers.extend(with_port(sp));
    }
    layers.extend(with_port(&dest.policy));
    let mut out = EffectivePolicy::default();
    for l in &layers {
        out.load_balancer = out.load_balancer.take().or(l.load_balancer.clone());
        out.outlier_detection = out.outlier_detection.take().or(l.outlier_detection.clone());
        out.tls = out.tls.or(l.tls);
        let (a, b) = (&mut out.connection_pool, &l.connection_pool);
        a.max_connections = a.max_connections.or(b.max_connections);
        a.connect_timeout = a.connect_timeout.or(b.connect_timeout);
        a.idle_timeout = a.idle_timeout.or(b.idle_timeout);
        a.http1_max_pending_requests = a.http1_max_pending_requests.or(b.http1_max_pending_requests);
        a.http2_max_requests = a.http2_max_requests.or(b.http2_max_requests);
        a.max_requests_per_connection = a.max_requests_per_connection.or(b.max_requests_per_connection);
        a.max_retries = a.max_retries.or(b.max_retries);
        a.h2_upgrade = a.h2_upgrade.or(b.h2_upgrade);
    }
    out
}

/// The proxy's balancer for a DestinationRule's `loadBalancer`. Unset is
/// peak EWMA (latency-aware, Linkerd's choice; Istio's default is
/// LEAST_REQUEST, which is the same two random choices by load only).
/// Maglev becomes the ring hash (both move about 1/N of the keys when an
/// endpoint joins); PASSTHROUGH is not supported and balances round robin.
fn load_balancer(lb: Option<&weft_model::mesh::LoadBalancer>) -> (weft_proto::config::LoadBalancer, Option<weft_proto::config::HashOn>) {
    use weft_model::mesh::{HashKey, LoadBalancer as M};
    use weft_proto::config::{HashOn, LoadBalancer as P};
    match lb {
        None | Some(M::PeakEwma) => (P::PeakEwma, None),
        Some(M::RoundRobin | M::Passthrough) => (P::RoundRobin, None),
        Some(M::Random) => (P::Random, None),
        Some(M::LeastRequest) => (P::LeastRequest, None),
        Some(M::ConsistentHash { key, .. }) => (
            P::RingHash,
            Some(match key {
                HashKey::Header(h) => HashOn { header: Some(h.to_ascii_lowercase()), ..HashOn::default() },
                HashKey::Cookie { name, path, ttl } => {
                    HashOn { cookie: Some(name.clone()), cookie_ttl: *ttl, cookie_path: path.clone(), ..HashOn::default() }
                }
                HashKey::SourceIp => HashOn { source_ip: true, ..HashOn::default() },
                HashKey::QueryParameter(q) => HashOn { query_parameter: Some(q.clone()), ..HashOn::default() },
            }),
        ),
    }
}

fn connection_pool(p: &weft_model::mesh::ConnectionPool) -> weft_proto::config::ConnectionPool {
    weft_proto::config::ConnectionPool {
        max_connections: p.max_connections,
        max_pending_requests: p.http1_max_pending_requests,
        max_requests: p.http2_max_requests,
        max_requests_per_connection: p.max_requests_per_connection,
        max_retries: p.max_retries,
        idle_timeout: p.idle_timeout,
        h2_upgrade: p.h2_upgrade,
    }
}

fn upstream_tls(t: Option<weft_model::mesh::ClientTls>) -> UpstreamTls {
    use weft_model::mesh::ClientTls;
    match t {
        Some(ClientTls::MeshMutual) => UpstreamTls::Mutual,
        Some(ClientTls::Disable) => UpstreamTls::Disable,
        // Origination of TLS with the user's own roots or certificates (SIMPLE, MUTUAL)
        // is not done by the proxy yet: such clusters keep auto-mTLS.
        Some(ClientTls::Simple | ClientTls::Mutual) | None => UpstreamTls::Auto,
    }
}

/// A cluster with its endpoints and the settings `policy` gives it.
pub fn cluster(name: String, endpoints: Vec<ProxyEndpoint>, policy: &EffectivePolicy) -> Cluster {
    let (lb, hash_on) = load_balancer(policy.load_balancer.as_ref());
    Cluster {
        name,
        endpoints,
        connect_timeout: policy.connection_pool.connect_timeout.unwrap_or(Duration::from_secs(5)),
        tls: upstream_tls(policy.tls),
        lb,
        hash_on,
        pool: connection_pool(&policy.connection_pool),
        outlier: policy.outlier_detection.as_ref().map(|o| weft_proto::config::OutlierDetection {
            consecutive_5xx: o.consecutive_5xx,
            consecutive_gateway_errors: o.consecutive_gateway_errors,
            consecutive_local_origin_failures: o.consecutive_local_origin_failures,
            interval: o.interval,
            base_ejection_time: o.base_ejection_time,
            max_ejection_percent: o.max_ejection_percent,
            min_health_percent: o.min_health_percent,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::mesh;
    use super::super::compile;
    use super::*;

    #[test]
    fn destination_rule_tls_modes_reach_the_cluster() {
        let dr = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: prod}\nspec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}\n---\n\
            apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: prod}\nspec:\n  host: reviews\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n  subsets: [{name: old, labels: {version: v1}, trafficPolicy: {tls: {mode: DISABLE}}}]\n---\n\
            apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: prod}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: old}, weight: 50}, {destination: {host: reviews}, weight: 50}]}]}\n";
        let cfg = compile(&mesh(dr), &[], "prod", None);
        let tls = |name: &str| cfg.clusters.iter().find(|c| c.name == name).map(|c| c.tls);
        assert_eq!(tls("outbound|9080||reviews.prod.svc.cluster.local"), Some(UpstreamTls::Mutual));
        assert_eq!(tls("outbound|9080|old|reviews.prod.svc.cluster.local"), Some(UpstreamTls::Disable), "the subset overrides the rule");
    }

}
