//! From the mesh model and the live endpoints to one proxy's configuration.
//!
//! Every Service port becomes a cluster (`outbound|PORT||HOST`) whose
//! endpoints are the workloads its selector picks, and a route that captures
//! the Service's cluster IP and its host names. A VirtualService (or another
//! route source) for the host sends that route to its destination instead,
//! with subsets becoming their own clusters (`outbound|PORT|SUBSET|HOST`).
//! Today a host's routing takes the catch-all rule's heaviest destination;
//! matches, splits and retries come with traffic management.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use weft_model::mesh::{Mesh, RouteAction, Service, SidecarScope};
use weft_proto::config::{
    Cluster, DirectResponse, Endpoint as ProxyEndpoint, HeaderMatch, HttpRule, InboundPolicy, Mirror, MtlsMode, ProxyConfig, Redirect, RequestMatch, RetryPolicy,
    Rewrite, Route, StringMatch, UpstreamTls, WeightedCluster,
};

/// A live endpoint: a connected proxy's workload, or a declared one (Pod with
/// an IP, WorkloadEntry).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub address: IpAddr,
    /// The SPIFFE ID of the workload's proxy, when it has one with a certificate.
    pub identity: Option<String>,
    /// Relative share of traffic (1 unless a WorkloadEntry says otherwise).
    pub weight: u32,
}

/// The server-side mTLS policy of a workload, by Istio's precedence: a
/// PeerAuthentication selecting the workload, else its namespace's, else the
/// mesh-wide one in the root namespace, else PERMISSIVE. An UNSET mode
/// inherits from the next scope; port-level modes come from the workload's
/// own policy. With two policies at one scope the first (oldest) applies.
pub fn inbound_policy(mesh: &Mesh, namespace: &str, labels: &BTreeMap<String, String>) -> InboundPolicy {
    use weft_model::mesh::{MtlsMode as M, PolicyScope};
    let mode = |m: M| match m {
        M::Strict => Some(MtlsMode::Strict),
        M::Permissive => Some(MtlsMode::Permissive),
        M::Disable => Some(MtlsMode::Disable),
        M::Unset => None,
    };
    let find = |pred: &dyn Fn(&PolicyScope) -> bool| mesh.peer_authentication.iter().find(|p| pred(&p.scope));
    let workload = find(&|s| matches!(s, PolicyScope::Workload { namespace: n, labels: sel } if n == namespace && selects(sel, labels)));
    let ns = find(&|s| matches!(s, PolicyScope::Namespace(n) if n == namespace));
    let root = find(&|s| matches!(s, PolicyScope::Mesh));
    let mut policy = InboundPolicy::default();
    for p in [root, ns, workload].into_iter().flatten() {
        if let Some(m) = mode(p.mode) {
            policy.mtls = m;
            policy.source = Some(p.source.to_string());
        }
    }
    if let Some(w) = workload {
        policy.port_mtls = w.port_modes.iter().map(|(port, m)| (*port, mode(*m).unwrap_or(policy.mtls))).collect();
    }
    policy
}

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
    }
}

/// A gRPC status written as a number or by its name (`UNAVAILABLE`).
fn grpc_code(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| weft_proto::grpc::code_by_name(name))
}

fn fault(f: &weft_model::mesh::Fault) -> weft_proto::config::Fault {
    use weft_model::mesh::AbortStatus;
    weft_proto::config::Fault {
        delay: f.delay.map(|(fixed, percent)| weft_proto::config::FaultDelay { fixed, percent }),
        abort: f.abort.as_ref().map(|(status, percent)| weft_proto::config::FaultAbort {
            http_status: match status {
                AbortStatus::Http(s) => Some(*s),
                AbortStatus::Grpc(_) => None,
            },
            grpc_status: match status {
                AbortStatus::Grpc(name) => grpc_code(name).or(Some(2)),
                AbortStatus::Http(_) => None,
            },
            percent: *percent,
        }),
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

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Workloads declared in the config store that have an address.
pub fn declared_endpoints(mesh: &Mesh) -> Vec<Endpoint> {
    mesh.workloads
        .iter()
        .filter_map(|w| {
            Some(Endpoint {
                namespace: w.namespace.clone(),
                labels: w.labels.clone(),
                address: w.address.as_deref()?.parse().ok()?,
                identity: None,
                weight: w.weight.unwrap_or(1),
            })
        })
        .collect()
}

/// The names a Service answers to, as clients write them in `Host`.
fn host_names(svc: &Service, port: u16, only_port: bool) -> Vec<String> {
    let fqdn = svc.host.clone();
    let mut bases = vec![fqdn.clone()];
    if let Some(short) = fqdn.strip_suffix(&format!(".{}.svc.{}", svc.namespace, weft_model::mesh::CLUSTER_DOMAIN)) {
        bases.push(short.to_string());
        bases.push(format!("{short}.{}", svc.namespace));
        bases.push(format!("{short}.{}.svc", svc.namespace));
    }
    let mut names: Vec<String> = bases.iter().map(|b| format!("{b}:{port}")).collect();
    if only_port || port == 80 {
        names.extend(bases);
    }
    names
}

/// The config for proxies of workloads in `namespace` under `scope` (their
/// Sidecar, if any): only the services the scope lets them reach.
pub fn compile(mesh: &Mesh, endpoints: &[Endpoint], namespace: &str, scope: Option<&SidecarScope>) -> ProxyConfig {
    let mut cfg = ProxyConfig::sidecar_default();
    let mut clusters: BTreeMap<String, Cluster> = BTreeMap::new();
    let mut cluster_for = |host: &str, subset: Option<&str>, port: u16| -> Option<String> {
        let svc = mesh.services.get(host)?;
        let sp = svc.ports.iter().find(|p| p.port == port).or_else(|| svc.ports.first())?;
        let target = sp.target_port.unwrap_or(sp.port);
        let mut selector = svc.selector.clone();
        let dest = mesh.destinations.get(host);
        if let Some(subset) = subset {
            let s = dest?.subsets.iter().find(|s| s.name == subset)?;
            selector.extend(s.labels.clone());
        }
        let name = format!("outbound|{}|{}|{}", sp.port, subset.unwrap_or(""), host);
        if !clusters.contains_key(&name) {
            let policy = effective_policy(dest, subset, sp.port);
            let eps: BTreeSet<ProxyEndpoint> = endpoints
                .iter()
                .filter(|e| e.namespace == svc.namespace && selects(&selector, &e.labels))
                .map(|e| ProxyEndpoint {
                    address: SocketAddr::new(e.address, target),
                    weight: e.weight.max(1),
                    // Auto-mTLS: to a workload with a proxy, unless its PeerAuthentication disables mTLS.
                    identity: e
                        .identity
                        .clone()
                        .filter(|_| inbound_policy(mesh, &e.namespace, &e.labels).mode_for(target) != MtlsMode::Disable),
                })
                .collect();
            let connect_timeout = policy.connection_pool.connect_timeout.unwrap_or(Duration::from_secs(5));
            clusters.insert(
                name.clone(),
                Cluster {
                    name: name.clone(),
                    endpoints: eps.into_iter().collect(),
                    connect_timeout,
                    tls: upstream_tls(policy.tls),
                    lb: load_balancer(policy.load_balancer.as_ref()).0,
                    hash_on: load_balancer(policy.load_balancer.as_ref()).1,
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
                },
            );
        }
        Some(name)
    };
    let visible = |svc: &&Service| scope.is_none_or(|sc| sc.allows(namespace, &svc.host, &svc.namespace));
    for svc in mesh.services.values().filter(|s| !s.external).filter(visible) {
        let only_port = svc.ports.len() == 1;
        for p in &svc.ports {
            // Where the host's routes send traffic: its own endpoints unless a route source says otherwise.
            let routed = mesh.routes.get(&svc.host).and_then(|r| {
                let rule = r.http.iter().find(|h| h.matches.is_empty()).or(r.http.first())?;
                let RouteAction::Forward(dests) = &rule.action else { return None };
                let d = dests.iter().max_by_key(|d| d.weight)?;
                Some((d.host.clone(), d.subset.clone(), d.port.unwrap_or(p.port)))
            });
            let cluster = match routed {
                Some((host, subset, port)) => cluster_for(&host, subset.as_deref(), port),
                None => None,
            }
            .or_else(|| cluster_for(&svc.host, None, p.port));
            let Some(cluster) = cluster else { continue };
            let http = mesh
                .routes
                .get(&svc.host)
                .map(|r| http_rules(&r.http, r.retry_budget.as_ref(), p.port, &mut cluster_for))
                .unwrap_or_default();
            cfg.routes.push(Route {
                name: format!("{}:{}", svc.host, p.port),
                destinations: svc.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).map(|ip| SocketAddr::new(ip, p.port)).into_iter().collect(),
                hosts: host_names(svc, p.port, only_port),
                cluster,
                http,
            });
        }
    }
    cfg.clusters = clusters.into_values().collect();
    cfg
}

fn string_match(m: &weft_model::mesh::StringMatch) -> StringMatch {
    use weft_model::mesh::StringMatch as M;
    match m {
        M::Exact(v) => StringMatch::exact(v),
        M::Prefix(v) => StringMatch::prefix(v),
        M::Regex(v) => StringMatch::regex(v),
        M::Present => StringMatch::present(),
    }
}

/// A match the proxy can evaluate, or `None` when it has conditions the proxy
/// does not evaluate yet (authority, gateways, case-insensitive paths): such
/// a match is left out, so it matches nothing rather than too much. Source
/// labels and namespace are checked by the client's proxy against itself.
fn request_match(m: &weft_model::mesh::RequestMatch) -> Option<RequestMatch> {
    let unsupported = m.ignore_case || m.authority.is_some() || !m.gateways.is_empty();
    if unsupported {
        return None;
    }
    let header = |h: &weft_model::mesh::HeaderMatch, lower: bool| HeaderMatch {
        name: if lower { h.name.to_ascii_lowercase() } else { h.name.clone() },
        value: string_match(&h.value),
        invert: h.invert,
    };
    Some(RequestMatch {
        path: m.path.as_ref().map(string_match),
        method: m.method.clone(),
        headers: m.headers.iter().map(|h| header(h, true)).collect(),
        query: m.query.iter().map(|q| header(q, false)).collect(),
        port: m.port,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    })
}

fn header_ops(h: &weft_model::mesh::HeaderOps) -> weft_proto::config::HeaderOps {
    weft_proto::config::HeaderOps {
        set: h.set.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        add: h.add.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        remove: h.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    }
}

/// The proxy's HTTP rules for one host and port: forwards become weighted
/// clusters; redirects and direct responses are answered by the proxy.
/// Rules none of whose matches the proxy can evaluate are left out.
fn http_rules(
    rules: &[weft_model::mesh::HttpRule],
    budget: Option<&weft_model::mesh::RetryBudget>,
    port: u16,
    cluster_for: &mut impl FnMut(&str, Option<&str>, u16) -> Option<String>,
) -> Vec<HttpRule> {
    let mut out = Vec::new();
    for r in rules {
        let matches: Vec<RequestMatch> = r.matches.iter().filter_map(request_match).collect();
        if !r.matches.is_empty() && matches.is_empty() {
            continue;
        }
        let mut rule = HttpRule {
            name: r.name.clone(),
            matches,
            clusters: vec![],
            redirect: None,
            direct_response: None,
            rewrite: r.rewrite.as_ref().map(|w| Rewrite { path: w.path.clone(), prefix_only: w.prefix_only, authority: w.authority.clone() }),
            request_headers: header_ops(&r.request_headers),
            response_headers: header_ops(&r.response_headers),
            timeout: r.timeout,
            retry: r.retry.as_ref().filter(|p| p.attempts > 0).map(|p| RetryPolicy {
                attempts: p.attempts,
                per_try_timeout: p.per_try_timeout,
                retry_on: p.retry_on.clone(),
                backoff: p.backoff,
                // A rule that only matches POST/PATCH asked for those to be retried.
                non_idempotent: !r.matches.is_empty() && r.matches.iter().all(|m| matches!(m.method.as_deref(), Some("POST" | "PATCH"))),
                budget: budget.map(|b| weft_proto::config::RetryBudget { ratio: b.ratio, min_per_second: b.min_per_second, ttl: b.ttl }),
            }),
            fault: r.fault.as_ref().map(fault),
            mirrors: r
                .mirrors
                .iter()
                .filter_map(|m| Some(Mirror { cluster: cluster_for(&m.host, m.subset.as_deref(), m.port.unwrap_or(port))?, percent: m.percent }))
                .collect(),
        };
        match &r.action {
            RouteAction::Forward(dests) => {
                rule.clusters = dests
                    .iter()
                    .filter_map(|d| Some(WeightedCluster { cluster: cluster_for(&d.host, d.subset.as_deref(), d.port.unwrap_or(port))?, weight: d.weight }))
                    .collect();
                if rule.clusters.iter().all(|c| c.weight == 0) {
                    continue;
                }
            }
            RouteAction::Redirect { scheme, authority, path, port, status } => {
                rule.redirect = Some(Redirect { scheme: scheme.clone(), authority: authority.clone(), path: path.clone(), port: *port, status: *status });
            }
            RouteAction::DirectResponse { status, body } => {
                rule.direct_response = Some(DirectResponse { status: *status, body: body.clone() });
            }
        }
        out.push(rule);
    }
    out
}

/// One line of `weft tls-check`: how a proxy reaches one endpoint, and
/// whether the destination will accept it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TlsCheck {
    pub cluster: String,
    pub endpoint: String,
    /// The client side's mode: AUTO (auto-mTLS), ISTIO_MUTUAL or DISABLE.
    pub client: &'static str,
    /// The destination's PeerAuthentication mode for the port; `-` without a proxy.
    pub server: String,
    /// What the client proxy will do: mTLS or plaintext.
    pub transport: &'static str,
    /// OK, or CONFLICT with the reason.
    pub status: String,
    /// The SPIFFE ID the client will require of the server.
    pub identity: Option<String>,
    /// The PeerAuthentication that set the server mode.
    pub server_policy: Option<String>,
}

/// The TLS view of a proxy's clusters: for each endpoint, client mode against server mode.
pub fn tls_report(mesh: &Mesh, endpoints: &[Endpoint], cfg: &ProxyConfig) -> Vec<TlsCheck> {
    let mut rows = Vec::new();
    for c in &cfg.clusters {
        let client = match c.tls {
            UpstreamTls::Auto => "AUTO",
            UpstreamTls::Mutual => "ISTIO_MUTUAL",
            UpstreamTls::Disable => "DISABLE",
        };
        if c.endpoints.is_empty() {
            rows.push(TlsCheck {
                cluster: c.name.clone(),
                endpoint: "-".into(),
                client,
                server: "-".into(),
                transport: "-",
                status: "no endpoints".into(),
                identity: None,
                server_policy: None,
            });
        }
        for e in &c.endpoints {
            let live = endpoints.iter().find(|l| l.address == e.address.ip());
            let server = live.filter(|l| l.identity.is_some()).map(|l| inbound_policy(mesh, &l.namespace, &l.labels));
            let mode = server.as_ref().map(|p| p.mode_for(e.address.port()));
            let mtls = e.identity.is_some() && c.tls != UpstreamTls::Disable;
            let status = match (mtls, c.tls, mode) {
                (false, UpstreamTls::Mutual, _) => "CONFLICT: ISTIO_MUTUAL, but the workload has no proxy that accepts mTLS".to_string(),
                (false, _, Some(MtlsMode::Strict)) => "CONFLICT: plaintext to a STRICT workload is refused".to_string(),
                _ => "OK".to_string(),
            };
            rows.push(TlsCheck {
                cluster: c.name.clone(),
                endpoint: e.address.to_string(),
                client,
                server: mode.map(|m| m.as_str().to_string()).unwrap_or_else(|| "-".into()),
                transport: if mtls { "mTLS" } else { "plaintext" },
                status,
                identity: e.identity.clone().filter(|_| mtls),
                server_policy: server.and_then(|p| p.source),
            });
        }
    }
    rows
}

/// A stable version for a config: the same config always gets the same version.
pub fn version_of(cfg: &ProxyConfig) -> String {
    use std::hash::{Hash, Hasher};
    let json = serde_json::to_string(cfg).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(yaml: &str) -> Mesh {
        let b = weft_model::parse_str("t.yaml", yaml);
        assert!(b.messages.is_empty(), "{:?}", b.messages);
        Mesh::build(&b.resources, "istio-system")
    }

    const BASE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: prod}\nspec: {clusterIP: 10.96.0.10, selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 8080}]}\n---\n\
        apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: prod}\nspec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}\n";

    fn ep(ip: &str, version: &str) -> Endpoint {
        Endpoint {
            namespace: "prod".into(),
            labels: [("app".to_string(), "reviews".to_string()), ("version".to_string(), version.to_string())].into(),
            address: ip.parse().unwrap(),
            identity: None,
            weight: 1,
        }
    }

    fn plain(list: &[&str]) -> Vec<ProxyEndpoint> {
        list.iter().map(|a| ProxyEndpoint::plain(a.parse().unwrap())).collect()
    }

    #[test]
    fn service_ports_become_routes_and_clusters() {
        let cfg = compile(&mesh(BASE), &[ep("10.0.0.1", "v1"), ep("10.0.0.2", "v2")], "prod", None);
        assert_eq!(cfg.routes.len(), 1);
        let r = &cfg.routes[0];
        assert_eq!(r.destinations, vec!["10.96.0.10:9080".parse::<SocketAddr>().unwrap()]);
        assert!(r.hosts.contains(&"reviews".to_string()) && r.hosts.contains(&"reviews.prod.svc.cluster.local:9080".to_string()));
        assert_eq!(r.cluster, "outbound|9080||reviews.prod.svc.cluster.local");
        let c = &cfg.clusters[0];
        assert_eq!(c.endpoints, plain(&["10.0.0.1:8080", "10.0.0.2:8080"]));
        assert!(cfg.check().is_ok());
    }

    #[test]
    fn a_virtual_service_sends_the_route_to_its_subset() {
        let vs = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: prod}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{headers: {x-canary: {exact: \"true\"}}}]\n    route: [{destination: {host: reviews, subset: v1}}]\n  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 10}\n    - {destination: {host: reviews, subset: v2}, weight: 90}\n";
        let cfg = compile(&mesh(&format!("{BASE}{vs}")), &[ep("10.0.0.1", "v1"), ep("10.0.0.2", "v2")], "prod", None);
        assert_eq!(cfg.routes[0].cluster, "outbound|9080|v2|reviews.prod.svc.cluster.local");
        let http = &cfg.routes[0].http;
        assert_eq!(http.len(), 2);
        assert_eq!(http[0].matches[0].headers[0].name, "x-canary");
        assert_eq!(http[0].clusters, vec![WeightedCluster { cluster: "outbound|9080|v1|reviews.prod.svc.cluster.local".into(), weight: 100 }]);
        assert_eq!(http[1].clusters.iter().map(|c| c.weight).collect::<Vec<_>>(), [10, 90]);
        assert!(http[1].matches.is_empty());
        assert!(cfg.check().is_ok(), "{:?}", cfg.check());
        let c = cfg.clusters.iter().find(|c| c.name == cfg.routes[0].cluster).unwrap();
        assert_eq!(c.endpoints, plain(&["10.0.0.2:8080"]));
        assert_eq!(version_of(&cfg), version_of(&cfg.clone()));
    }

    #[test]
    fn pods_with_an_ip_and_workload_entries_are_endpoints_without_a_proxy() {
        let extra = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: r1, namespace: prod, labels: {app: reviews, version: v1}}\nspec: {}\nstatus: {podIP: 10.1.0.9}\n---\n\
            apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm, namespace: prod}\nspec: {address: 10.2.0.3, labels: {app: reviews, version: v2}}\n---\n\
            apiVersion: v1\nkind: Pod\nmetadata: {name: pending, namespace: prod, labels: {app: reviews}}\nspec: {}\n";
        let m = mesh(&format!("{BASE}{extra}"));
        let eps = declared_endpoints(&m);
        assert_eq!(eps.iter().map(|e| e.address.to_string()).collect::<Vec<_>>(), ["10.1.0.9", "10.2.0.3"], "a pod without an IP is not an endpoint");
        let cfg = compile(&m, &eps, "prod", None);
        assert_eq!(cfg.clusters[0].endpoints, plain(&["10.1.0.9:8080", "10.2.0.3:8080"]));
        // A WorkloadEntry's weight reaches the endpoint.
        let weighted = mesh(&format!("{BASE}{}", extra.replace("labels: {app: reviews, version: v2}}", "labels: {app: reviews, version: v2}, weight: 3}")));
        let cfg = compile(&weighted, &declared_endpoints(&weighted), "prod", None);
        assert_eq!(cfg.clusters[0].endpoints.iter().map(|e| e.weight).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn a_sidecar_scope_limits_what_a_proxy_is_sent() {
        let more = "---\napiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: prod}\nspec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: data}\nspec: {selector: {app: db}, ports: [{name: tcp, port: 5432}]}\n---\n\
            apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: prod}\nspec: {egress: [{hosts: [\"./ratings.prod.svc.cluster.local\", \"data/*\"]}]}\n";
        let m = mesh(&format!("{BASE}{more}"));
        let no_labels = BTreeMap::new();
        let scope = m.sidecar_for("prod", &no_labels);
        assert!(scope.is_some());
        let cfg = compile(&m, &[], "prod", scope);
        let names: Vec<&str> = cfg.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["db.data.svc.cluster.local:5432", "ratings.prod.svc.cluster.local:9080"]);
        // Another namespace has no Sidecar: it sees everything.
        assert!(m.sidecar_for("other", &no_labels).is_none());
        assert_eq!(compile(&m, &[], "other", None).routes.len(), 3);
    }

    #[test]
    fn peer_authentication_follows_istios_precedence() {
        let pa = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\n\
            apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: legacy, namespace: prod}\nspec: {mtls: {mode: PERMISSIVE}}\n---\n\
            apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: reviews, namespace: prod}\nspec: {selector: {matchLabels: {app: reviews}}, portLevelMtls: {\"8080\": {mode: DISABLE}}}\n";
        let m = mesh(&format!("{BASE}{pa}"));
        let labels = |app: &str| -> BTreeMap<String, String> { [("app".to_string(), app.to_string())].into() };
        let other = inbound_policy(&m, "shop", &labels("cart"));
        assert_eq!((other.mtls, other.source.as_deref()), (MtlsMode::Strict, Some("PeerAuthentication istio-system/default")));
        assert_eq!(inbound_policy(&m, "prod", &labels("ratings")).mtls, MtlsMode::Permissive, "the namespace overrides the mesh");
        let reviews = inbound_policy(&m, "prod", &labels("reviews"));
        assert_eq!(reviews.mtls, MtlsMode::Permissive, "an UNSET workload mode inherits the namespace's");
        assert_eq!(reviews.mode_for(8080), MtlsMode::Disable);
        assert_eq!(reviews.mode_for(9090), MtlsMode::Permissive);

        // Auto-mTLS: endpoints with a proxy get an identity, except where their port is DISABLE.
        let mut e = ep("10.0.0.1", "v1");
        e.identity = Some("spiffe://cluster.local/ns/prod/sa/reviews".into());
        let cfg = compile(&m, &[e.clone()], "prod", None);
        assert_eq!(cfg.clusters[0].endpoints[0].identity, None, "port 8080 is DISABLE");
        let strict = mesh(&format!("{BASE}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: prod}}\nspec: {{mtls: {{mode: STRICT}}}}\n"));
        let cfg = compile(&strict, &[e], "prod", None);
        assert_eq!(cfg.clusters[0].endpoints[0].identity.as_deref(), Some("spiffe://cluster.local/ns/prod/sa/reviews"));
        assert_eq!(cfg.clusters[0].tls, UpstreamTls::Auto);
    }

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

    #[test]
    fn tls_check_finds_plaintext_to_strict() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\nspec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}\n---\n\
            apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: prod}\nspec: {mtls: {mode: STRICT}}\n";
        let web = Endpoint {
            namespace: "prod".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            address: "10.0.0.7".parse().unwrap(),
            identity: Some("spiffe://cluster.local/ns/prod/sa/web".into()),
            weight: 1,
        };
        let m = mesh(yaml);
        let cfg = compile(&m, std::slice::from_ref(&web), "prod", None);
        let rows = tls_report(&m, std::slice::from_ref(&web), &cfg);
        assert_eq!((rows[0].transport, rows[0].server.as_str(), rows[0].status.as_str()), ("mTLS", "STRICT", "OK"));
        assert_eq!(rows[0].identity.as_deref(), Some("spiffe://cluster.local/ns/prod/sa/web"));
        let off = mesh(&format!("{yaml}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: prod}}\nspec: {{host: web, trafficPolicy: {{tls: {{mode: DISABLE}}}}}}\n"));
        let cfg = compile(&off, std::slice::from_ref(&web), "prod", None);
        let rows = tls_report(&off, &[web], &cfg);
        assert_eq!((rows[0].client, rows[0].transport), ("DISABLE", "plaintext"));
        assert!(rows[0].status.starts_with("CONFLICT: plaintext to a STRICT"), "{}", rows[0].status);
    }
}
