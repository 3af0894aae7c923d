//! The config as the request path uses it: lookup tables built once per
//! config, and per-cluster state (balancer position, connection pools) that
//! survives reloads when the cluster itself did not change. Requests hold an
//! `Arc<Snapshot>` for their whole life, so a reload never changes a request
//! mid-flight.

use crate::balance::{Balancer, Limits};
use crate::config::{Cluster, Endpoint, HttpRule, ProxyConfig, StringMatch, UpstreamTls};
use crate::local_reply::{Flag, LocalReply};
use crate::mesh_tls::{Certificate, MeshConnector};
use crate::upstream::{HttpClients, MeshClients};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a route sends traffic.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub route: Arc<str>,
    /// For opaque TCP, and HTTP when there are no rules.
    pub cluster: Arc<ClusterState>,
    /// HTTP rules in order; the first match wins.
    pub rules: Arc<Vec<CompiledRule>>,
}

/// A string matcher with its regex compiled once per config.
#[derive(Debug)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
    Present,
}

impl Matcher {
    fn new(m: &StringMatch) -> Option<Matcher> {
        Some(if let Some(e) = &m.exact {
            Matcher::Exact(e.clone())
        } else if let Some(p) = &m.prefix {
            Matcher::Prefix(p.clone())
        } else if let Some(r) = &m.regex {
            // Envoy and Istio match the whole value.
            Matcher::Regex(regex::Regex::new(&format!("^(?:{r})$")).ok()?)
        } else {
            Matcher::Present
        })
    }

    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Matcher::Present, v) => v.is_some(),
            (_, None) => false,
            (Matcher::Exact(e), Some(v)) => e == v,
            (Matcher::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Matcher::Regex(r), Some(v)) => r.is_match(v),
        }
    }
}

#[derive(Debug)]
pub struct CompiledMatch {
    pub path: Option<Matcher>,
    pub method: Option<http::Method>,
    pub headers: Vec<(http::HeaderName, Matcher, bool)>,
    /// Query parameters by name.
    pub query: Vec<(String, Matcher, bool)>,
    pub port: Option<u16>,
}

/// The request facts matches look at.
pub struct RequestFacts<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    /// The destination port the client used.
    pub port: Option<u16>,
}

/// The workload this proxy serves: source-label and source-namespace
/// matches are decided against it once per config.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// What building a snapshot needs besides the config.
#[derive(Clone)]
pub struct BuildContext {
    pub certificate: Certificate,
    pub workload: Arc<Workload>,
}

impl BuildContext {
    pub fn new(certificate: Certificate) -> BuildContext {
        BuildContext { certificate, workload: Arc::new(Workload::default()) }
    }
}

impl CompiledMatch {
    /// The path prefix this match requires, for prefix rewrites.
    pub fn prefix(&self) -> Option<&str> {
        match &self.path {
            Some(Matcher::Prefix(p)) => Some(p),
            _ => None,
        }
    }

    pub fn matches(&self, r: &RequestFacts<'_>) -> bool {
        self.method.as_ref().is_none_or(|m| m == r.method)
            && self.port.is_none_or(|p| r.port == Some(p))
            && self.path.as_ref().is_none_or(|p| p.matches(Some(r.path)))
            && self.headers.iter().all(|(name, m, invert)| {
                let v = r.headers.get(name).and_then(|v| v.to_str().ok());
                m.matches(v) != *invert
            })
            && self.query.iter().all(|(name, m, invert)| {
                let v = r.query.and_then(|q| q.split('&').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).find(|(k, _)| k == name)).map(|(_, v)| v);
                m.matches(v) != *invert
            })
    }
}

#[derive(Debug)]
pub struct CompiledRule {
    pub name: Option<String>,
    /// The rule as configured: its actions (redirect, rewrite, headers, timeout...).
    pub actions: Arc<HttpRule>,
    /// Empty: every request.
    pub matches: Vec<CompiledMatch>,
    pub clusters: Vec<(Arc<ClusterState>, u32)>,
    pub total_weight: u64,
    /// The rule's retry budget, shared by all its requests.
    pub budget: Option<Arc<crate::retry::BudgetState>>,
    /// Where copies of its requests go, and which share of them.
    pub mirrors: Vec<(Arc<ClusterState>, f64)>,
}

impl CompiledRule {
    /// Picks a cluster by weight, given a uniformly random number.
    pub fn pick(&self, random: u64) -> Option<&Arc<ClusterState>> {
        let mut point = random % self.total_weight.max(1);
        for (c, w) in &self.clusters {
            if point < *w as u64 {
                return Some(c);
            }
            point -= *w as u64;
        }
        None
    }
}

fn compile_rules(rules: &[HttpRule], clusters: &HashMap<String, Arc<ClusterState>>, me: &Workload) -> Vec<CompiledRule> {
    let from_me = |m: &crate::config::RequestMatch| {
        m.source_namespace.as_ref().is_none_or(|ns| *ns == me.namespace) && m.source_labels.iter().all(|(k, v)| me.labels.get(k) == Some(v))
    };
    rules
        .iter()
        .filter_map(|r| {
            // A rule whose every match needs another source never matches here.
            let own: Vec<&crate::config::RequestMatch> = r.matches.iter().filter(|m| from_me(m)).collect();
            (r.matches.is_empty() || !own.is_empty()).then_some((r, own))
        })
        .map(|(r, own)| CompiledRule {
            name: r.name.clone(),
            actions: Arc::new(r.clone()),
            matches: own
                .into_iter()
                .map(|m| CompiledMatch {
                    path: m.path.as_ref().and_then(Matcher::new),
                    method: m.method.as_deref().and_then(|x| http::Method::from_bytes(x.as_bytes()).ok()),
                    headers: m
                        .headers
                        .iter()
                        .filter_map(|h| Some((http::HeaderName::from_bytes(h.name.as_bytes()).ok()?, Matcher::new(&h.value)?, h.invert)))
                        .collect(),
                    query: m.query.iter().filter_map(|q| Some((q.name.clone(), Matcher::new(&q.value)?, q.invert))).collect(),
                    port: m.port,
                })
                .collect(),
            clusters: r.clusters.iter().filter_map(|w| Some((clusters.get(&w.cluster)?.clone(), w.weight))).collect(),
            total_weight: r.clusters.iter().map(|w| w.weight as u64).sum(),
            budget: r.retry.as_ref().and_then(|p| p.budget.clone()).map(|b| Arc::new(crate::retry::BudgetState::new(b))),
            mirrors: r.mirrors.iter().filter_map(|m| Some((clusters.get(&m.cluster)?.clone(), m.percent))).collect(),
        })
        .collect()
}

pub struct ClusterState {
    pub config: Cluster,
    /// This proxy's workload certificate (mTLS needs one).
    certificate: Certificate,
    pub balancer: Arc<Balancer>,
    /// Circuit breaking for HTTP/1.1 (and TCP) and for HTTP/2 requests.
    pub limits_http1: Limits,
    pub limits_http2: Limits,
    pub clients: HttpClients,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState").field("name", &self.config.name).finish()
    }
}

impl ClusterState {
    fn new(config: Cluster, idle_timeout: std::time::Duration, certificate: &Certificate) -> ClusterState {
        let idle_timeout = config.pool.idle_timeout.unwrap_or(idle_timeout);
        let mut clients = HttpClients::new(config.connect_timeout, idle_timeout);
        let identities: HashMap<SocketAddr, String> =
            config.endpoints.iter().filter_map(|e| Some((e.address, e.identity.clone()?))).collect();
        if !identities.is_empty() && config.tls != UpstreamTls::Disable {
            let connector = MeshConnector {
                certificate: certificate.clone(),
                identities: Arc::new(identities),
                alpn: crate::mesh_tls::ALPN_H2,
                connect_timeout: config.connect_timeout,
            };
            clients.mesh = Some(MeshClients::new(connector, idle_timeout));
        }
        ClusterState {
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

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// An endpoint by the cluster's balancer (`hash`: the request's
    /// consistent-hash key); `None` when the cluster has none.
    pub fn pick(&self, hash: Option<u64>) -> Option<(usize, &Endpoint)> {
        let i = self.balancer.pick(hash, &mut crate::proxy::random_u64)?;
        Some((i, &self.config.endpoints[i]))
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
    pub fn build(config: ProxyConfig, previous: Option<&Snapshot>, cx: &BuildContext) -> Snapshot {
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
            let target = RouteTarget { route: r.name.as_str().into(), cluster: cluster.clone(), rules: Arc::new(compile_rules(&r.http, &clusters, &cx.workload)) };
            for d in &r.destinations {
                by_destination.entry(*d).or_insert_with(|| target.clone());
            }
            for h in &r.hosts {
                by_host.entry(h.to_ascii_lowercase()).or_insert_with(|| target.clone());
            }
        }
        Snapshot { config: Arc::new(config), clusters, by_destination, by_host }
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
        Snapshot::build(cfg, None, &BuildContext::new(tokio::sync::watch::channel(None).1))
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
        let s = Snapshot::build(cfg, None, &BuildContext::new(tokio::sync::watch::channel(None).1));
        let ep = |c: &str| s.cluster(c).unwrap().config.endpoints[0].clone();
        assert_eq!(s.cluster("auto").unwrap().transport(&ep("auto")).unwrap(), None, "no certificate yet: plaintext");
        let e = s.cluster("strict").unwrap().transport(&ep("strict")).unwrap_err();
        assert!(e.reason.contains("no workload certificate"), "{}", e.reason);
    }
}
