//! The config as the request path uses it: lookup tables built once per
//! config, and per-cluster state (balancer position, connection pools) that
//! survives reloads when the cluster itself did not change. Requests hold an
//! `Arc<Snapshot>` for their whole life, so a reload never changes a request
//! mid-flight. The plain config types (shared with the controller) are
//! re-exported here from weft-proto.

pub mod cluster;
pub mod matchers;

pub use cluster::ClusterState;
pub use matchers::{CompiledMatch, CompiledRule, Matcher, RequestFacts};
pub use weft_proto::config::*;

use crate::metric_labels::{self, Shared};
use crate::workload_cert::Certificate;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a route sends traffic.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub route: Arc<str>,
    /// For opaque TCP, and HTTP when there are no rules.
    pub cluster: Arc<ClusterState>,
    /// HTTP rules in order; the first match wins.
    pub rules: Arc<Vec<CompiledRule>>,
    /// What the destination port declares (HTTP is parsed, TCP relayed, without sniffing).
    pub protocol: Protocol,
}

/// The workload this proxy serves: source-label and source-namespace
/// matches are decided against it once per config.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Who it is in metrics (workload, app, version, cluster).
    pub meta: WorkloadMeta,
    /// Its SPIFFE ID, when it has a mesh identity.
    pub principal: Option<String>,
}

/// What building a snapshot needs besides the config.
#[derive(Clone)]
pub struct BuildContext {
    pub certificate: Certificate,
    pub workload: Arc<Workload>,
}

/// One Service selecting this workload: the names a client may use for it,
/// and its labels by the workload port it sends to (made once per config).
struct InboundServiceLabels {
    names: Vec<String>,
    by_port: Vec<(u16, Shared<metric_labels::Service>)>,
    any_port: Shared<metric_labels::Service>,
}

impl InboundServiceLabels {
    fn new(s: &InboundService) -> InboundServiceLabels {
        let short = &s.name;
        let names = vec![s.host.to_ascii_lowercase(), short.clone(), format!("{short}.{}", s.namespace), format!("{short}.{}.svc", s.namespace)];
        // Labels name the Service's own port (what clients call), found by the workload port.
        InboundServiceLabels {
            names,
            by_port: s.ports.iter().map(|p| (p.target_port, metric_labels::service(Some(&s.host), p.port))).collect(),
            any_port: metric_labels::service(Some(&s.host), s.ports.first().map(|p| p.port).unwrap_or(0)),
        }
    }

    fn on_port(&self, port: u16) -> Option<&Shared<metric_labels::Service>> {
        self.by_port.iter().find(|(p, _)| *p == port).map(|(_, l)| l)
    }

    fn labels_for(&self, port: u16) -> Shared<metric_labels::Service> {
        self.on_port(port).unwrap_or(&self.any_port).clone()
    }
}

impl BuildContext {
    pub fn new(certificate: Certificate) -> BuildContext {
        BuildContext { certificate, workload: Arc::new(Workload::default()) }
    }
}

pub struct Snapshot {
    pub config: Arc<ProxyConfig>,
    /// This workload in the standard metrics.
    pub own_labels: Shared<metric_labels::Workload>,
    /// The Services that select this workload, for the inbound side's labels.
    inbound_services: Vec<InboundServiceLabels>,
    /// Who may call the workload, compiled once per config.
    pub authorizer: Arc<weft_policy::Authorizer>,
    /// The workload's JWT rules, key sets decoded once per config.
    pub jwt: Arc<weft_policy::JwtVerifier>,
    clusters: HashMap<String, Arc<ClusterState>>,
    by_destination: HashMap<SocketAddr, RouteTarget>,
    by_host: HashMap<String, RouteTarget>,
}

impl Snapshot {
    /// Builds lookup tables; clusters equal to one in `previous` keep their
    /// state (and so their pooled connections).
    /// Fails, naming the route and rule (or the policy and rule), when a
    /// match cannot be compiled: a config that would route or authorize
    /// differently from what it says is refused whole.
    pub fn build(config: ProxyConfig, previous: Option<&Snapshot>, cx: &BuildContext) -> Result<Snapshot, String> {
        let mut clusters = HashMap::new();
        for c in &config.clusters {
            let state = previous
                .and_then(|p| p.clusters.get(&c.name))
                .filter(|s| s.config == *c && previous.is_some_and(|p| p.config.limits.idle_timeout == config.limits.idle_timeout))
                .cloned()
                .unwrap_or_else(|| Arc::new(ClusterState::new(c.clone(), config.limits.idle_timeout, &cx.certificate)));
            clusters.insert(c.name.clone(), state);
        }
        let mut by_destination = HashMap::new();
        let mut by_host = HashMap::new();
        for r in &config.routes {
            // `check()` guarantees the cluster exists.
            let Some(cluster) = clusters.get(&r.cluster) else { continue };
            let target = RouteTarget {
                route: r.name.as_str().into(),
                cluster: cluster.clone(),
                rules: Arc::new(matchers::compile_rules(&r.http, &clusters, &cx.workload).map_err(|e| format!("route {:?} {e}", r.name))?),
                protocol: r.protocol,
            };
            for d in &r.destinations {
                by_destination.entry(*d).or_insert_with(|| target.clone());
            }
            for h in &r.hosts {
                by_host.entry(h.to_ascii_lowercase()).or_insert_with(|| target.clone());
            }
        }
        // A policy the proxy cannot enforce as written refuses the whole config (a NACK).
        let trust_domain = cx.certificate.borrow().as_ref().map(|c| c.spiffe_id.trust_domain.clone());
        let authz = &config.inbound.authorization;
        let authorizer = Arc::new(weft_policy::Authorizer::new(authz, trust_domain.as_deref()).map_err(|e| format!("authorization: {e}"))?);
        let jwt = Arc::new(weft_policy::JwtVerifier::new(&authz.jwt_rules).map_err(|e| format!("request authentication: {e}"))?);
        let own_labels = metric_labels::workload(Some(&cx.workload.meta), cx.workload.principal.as_deref());
        let inbound_services = config.inbound.services.iter().map(InboundServiceLabels::new).collect();
        Ok(Snapshot { config: Arc::new(config), own_labels, inbound_services, authorizer, jwt, clusters, by_destination, by_host })
    }

    /// The Service an inbound request on `port` was for: the one its `Host`
    /// names, else the one sending to that port, else the only one.
    pub fn inbound_service(&self, host: Option<&str>, port: u16) -> Shared<metric_labels::Service> {
        let services = &self.inbound_services;
        let bare = host.map(|h| h.rsplit_once(':').map(|(h, _)| h).unwrap_or(h).to_ascii_lowercase());
        let by_host = bare.and_then(|h| services.iter().find(|s| s.names.contains(&h)));
        let by_port = || services.iter().find(|s| s.on_port(port).is_some());
        let only = || (services.len() == 1).then(|| &services[0]);
        match by_host.or_else(by_port).or_else(only) {
            Some(s) => s.labels_for(port),
            None => metric_labels::unknown_service(),
        }
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Arc<ClusterState>> {
        self.clusters.values()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let cfg: ProxyConfig = serde_norway::from_str(
            "clusters:\n- {name: v1, endpoints: [\"10.0.0.1:80\"]}\n- {name: v2, endpoints: [\"10.0.0.2:80\"]}\nroutes:\n- name: r\n  hosts: [r]\n  cluster: v1\n  http:\n  - matches: [{headers: [{name: x-canary, value: {exact: \"true\"}}]}, {path: {regex: \"/api/v[0-9]+/.*\"}, method: POST}]\n    clusters: [{cluster: v2, weight: 1}]\n  - matches: [{headers: [{name: x-debug, value: {present: true}, invert: true}]}]\n    clusters: [{cluster: v1, weight: 90}, {cluster: v2, weight: 10}]\n",
        )
        .unwrap();
        Snapshot::build(cfg, None, &BuildContext::new(tokio::sync::watch::channel(None).1)).unwrap()
    }

    fn first_match<'a>(t: &'a RouteTarget, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<&'a CompiledRule> {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let m = http::Method::from_bytes(method.as_bytes()).unwrap();
        let (path, query) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
        let facts = RequestFacts { method: &m, path, query, headers: &h, port: Some(80) };
        t.rules.iter().find(|r| r.matches.is_empty() || r.matches.iter().any(|x| x.matches(&facts)))
    }

    #[test]
    fn first_matching_rule_wins() {
        let s = snapshot();
        let t = s.route_for_host("r").unwrap();
        let name = |r: Option<&CompiledRule>| r.map(|r| r.clusters.len());
        assert_eq!(name(first_match(t, "GET", "/", &[("x-canary", "true")])), Some(1));
        assert_eq!(name(first_match(t, "POST", "/api/v2/items", &[])), Some(1));
        assert_eq!(name(first_match(t, "GET", "/api/v2/items", &[])), Some(2), "method must match too");
        assert_eq!(name(first_match(t, "POST", "/api/v2", &[])), Some(2), "regex matches the whole path");
        assert!(first_match(t, "GET", "/", &[("x-debug", "1")]).is_none(), "inverted header match");
    }

    #[test]
    fn a_match_that_cannot_be_compiled_refuses_the_config_instead_of_matching_more() {
        let bad = |m: &str| -> String {
            let cfg: ProxyConfig = serde_norway::from_str(&format!(
                "clusters:\n- {{name: v1, endpoints: []}}\n- {{name: v2, endpoints: []}}\nroutes:\n- name: r\n  hosts: [r]\n  cluster: v1\n  http:\n  - matches: [{m}]\n    clusters: [{{cluster: v2, weight: 1}}]\n"
            ))
            .unwrap();
            Snapshot::build(cfg, None, &BuildContext::new(tokio::sync::watch::channel(None).1)).err().unwrap_or_default()
        };
        assert_eq!(bad("{headers: [{name: \"x canary\", value: {exact: \"1\"}}]}"), "route \"r\" rule 0: header name \"x canary\" is not a valid HTTP header name");
        assert!(bad("{path: {regex: \"/api/(v1\"}}").starts_with("route \"r\" rule 0: regex \"/api/(v1\""));
        assert_eq!(bad("{method: \"GE T\"}"), "route \"r\" rule 0: method \"GE T\" is not an HTTP method");
    }

    #[test]
    fn weights_split_traffic() {
        let s = snapshot();
        let rule = &s.route_for_host("r").unwrap().rules[1];
        let v2 = (0..1000u64).filter(|i| rule.pick(*i).unwrap().name() == "v2").count();
        assert_eq!(v2, 100, "10 of every 100 points");
    }

    #[test]
    fn auto_mtls_needs_a_certificate_on_this_side_too() {
        let cfg: ProxyConfig = serde_norway::from_str(
            "clusters:\n- {name: auto, endpoints: [{address: \"10.0.0.1:80\", identity: \"spiffe://cluster.local/ns/a/sa/b\"}]}\n- {name: strict, tls: mutual, endpoints: [{address: \"10.0.0.1:80\", identity: \"spiffe://cluster.local/ns/a/sa/b\"}]}\n",
        )
        .unwrap();
        let s = Snapshot::build(cfg, None, &BuildContext::new(tokio::sync::watch::channel(None).1)).unwrap();
        let ep = |c: &str| s.cluster(c).unwrap().config.endpoints[0].clone();
        assert_eq!(s.cluster("auto").unwrap().transport(&ep("auto")).unwrap(), None, "no certificate yet: plaintext");
        let e = s.cluster("strict").unwrap().transport(&ep("strict")).unwrap_err();
        assert!(e.reason.contains("no workload certificate"), "{}", e.reason);
    }
}
