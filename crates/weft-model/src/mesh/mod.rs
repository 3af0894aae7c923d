//! The one internal model the rest of the mesh uses. Whatever API a user
//! wrote (Istio, Gateway API, SMI, Linkerd), routing, destination policy,
//! peer authentication, authorization and telemetry end up as these plain
//! structs, keyed by fully-qualified host.
//!
//! Where several APIs route the same host, one source wins, in this order
//! (most expressive and most explicit first): VirtualService, then
//! HTTPRoute/GRPCRoute attached to the Service (GAMMA), then TrafficSplit,
//! then ServiceProfile. Analysis reports the overlap as `WEFT0117`.

mod authz;

pub use authz::*;

use crate::diag::ResourceRef;
use crate::load::Loaded;
use crate::resource::Resource;
use crate::types::{gateway_api as gw, istio, linkerd};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The Kubernetes cluster DNS suffix used to qualify short names.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Qualifies a host as Istio does: a name without dots is a Service in the
/// resource's namespace (`reviews` -> `reviews.ns.svc.cluster.local`); any
/// name with a dot is taken as written.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') || host == "*" {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{CLUSTER_DOMAIN}")
    }
}

/// The FQDN of a Kubernetes Service.
pub fn service_fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// How a port's traffic is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
    /// Not declared: the proxy detects it.
    Detect,
}

impl Protocol {
    /// Protocol from a port name (`http-web`, `grpc`) or appProtocol, Istio's convention.
    pub fn from_name(name: &str) -> Option<Protocol> {
        let prefix = name.split('-').next().unwrap_or("").to_ascii_lowercase();
        Some(match prefix.as_str() {
            "http" | "http1" => Protocol::Http,
            "http2" | "h2c" | "kubernetes.io/h2c" => Protocol::Http2,
            "grpc" | "grpc-web" => Protocol::Grpc,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" | "mongo" | "mysql" | "redis" | "udp" | "kafka" | "postgres" => Protocol::Tcp,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePort {
    pub port: u16,
    pub target_port: Option<u16>,
    pub name: Option<String>,
    pub protocol: Protocol,
}

/// A destination the mesh can route to: a Kubernetes Service or a ServiceEntry host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub host: String,
    pub namespace: String,
    pub ports: Vec<ServicePort>,
    /// Workload labels selecting the endpoints (empty for external entries).
    pub selector: BTreeMap<String, String>,
    /// The virtual IP clients connect to (a Kubernetes Service's clusterIP).
    pub cluster_ip: Option<String>,
    pub external: bool,
    pub source: ResourceRef,
}

/// A running (or declared) workload: a Pod, a Deployment's pods, a WorkloadEntry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub address: Option<String>,
    /// Share of its services' traffic relative to other endpoints (WorkloadEntry `weight`).
    pub weight: Option<u32>,
    /// Pod (template) annotations.
    pub annotations: BTreeMap<String, String>,
    /// Named container ports (a Linkerd `Server` may name its port).
    pub named_ports: BTreeMap<String, u16>,
    pub source: ResourceRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    /// The header or parameter is present, any value.
    Present,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderMatch {
    pub name: String,
    pub value: StringMatch,
    /// Matches when the header does NOT match (Istio `withoutHeaders`).
    pub invert: bool,
}

/// All conditions of one match must hold; a rule matches when any of its matches does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestMatch {
    pub path: Option<StringMatch>,
    pub ignore_case: bool,
    pub method: Option<String>,
    pub authority: Option<StringMatch>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<HeaderMatch>,
    pub port: Option<u16>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
    /// Gateways the match is limited to (Istio `match.gateways`).
    pub gateways: Vec<String>,
}

impl RequestMatch {
    /// True when this match accepts every request.
    pub fn is_catch_all(&self) -> bool {
        let any_path = match &self.path {
            None => true,
            Some(StringMatch::Prefix(p)) => p == "/" || p.is_empty(),
            _ => false,
        };
        any_path && RequestMatch { path: None, ignore_case: false, ..self.clone() } == RequestMatch::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedDestination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub weight: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Appends another set of operations after these.
    pub fn extend(&mut self, other: HeaderOps) {
        self.set.extend(other.set);
        self.add.extend(other.add);
        self.remove.extend(other.remove);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    Forward(Vec<WeightedDestination>),
    Redirect {
        scheme: Option<String>,
        authority: Option<String>,
        path: Option<String>,
        port: Option<u16>,
        status: u16,
    },
    DirectResponse { status: u16, body: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    pub path: Option<String>,
    /// Replace only the matched prefix (Gateway API `ReplacePrefixMatch`).
    pub prefix_only: bool,
    pub authority: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    /// Envoy/Istio retry conditions (`5xx`, `connect-failure`, `503`, `unavailable`, ...).
    pub retry_on: Vec<String>,
    pub backoff: Option<Duration>,
}

/// A Linkerd-style retry budget: retries may add at most `ratio` of the
/// request rate, plus `min_per_second`, measured over `ttl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: u32,
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortStatus {
    Http(u16),
    Grpc(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    pub delay: Option<(Duration, f64)>,
    pub abort: Option<(AbortStatus, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub percent: f64,
}

/// One HTTP (or gRPC) routing rule. Rules are evaluated in order; the first match wins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRule {
    pub name: Option<String>,
    /// Empty means "every request".
    pub matches: Vec<RequestMatch>,
    pub action: RouteAction,
    pub rewrite: Option<Rewrite>,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub fault: Option<Fault>,
    pub mirrors: Vec<Mirror>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// Linkerd ServiceProfile: responses counted as failures by status range.
    pub failure_statuses: Vec<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpRule {
    pub port: Option<u16>,
    pub sni_hosts: Vec<String>,
    pub destinations: Vec<WeightedDestination>,
}

/// Which API a host's routes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum RouteApi {
    VirtualService,
    GatewayApi,
    TrafficSplit,
    ServiceProfile,
}

/// The routes for one host as seen from one place (`mesh` = every sidecar,
/// or a named gateway).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRoutes {
    pub host: String,
    pub api: RouteApi,
    pub sources: Vec<ResourceRef>,
    pub http: Vec<HttpRule>,
    pub tcp: Vec<TcpRule>,
    pub retry_budget: Option<RetryBudget>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    Header(String),
    Cookie { name: String, path: Option<String>, ttl: Option<Duration> },
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    RoundRobin,
    Random,
    LeastRequest,
    /// Latency-aware (peak EWMA), the default when nothing is configured.
    PeakEwma,
    ConsistentHash { key: HashKey, maglev: bool, table_size: Option<u64> },
    Passthrough,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectionPool {
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub http1_max_pending_requests: Option<u32>,
    pub http2_max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    /// `h2UpgradePolicy`: app HTTP/1.1 carried as HTTP/2 between meshed proxies (unset: the mesh default).
    pub h2_upgrade: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub consecutive_local_origin_failures: Option<u32>,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    pub min_health_percent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTls {
    /// Plaintext.
    Disable,
    /// TLS to an external server, verified against configured roots.
    Simple,
    /// TLS with a client certificate the user supplies.
    Mutual,
    /// Mesh mTLS with SPIFFE identities.
    MeshMutual,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancer>,
    pub connection_pool: ConnectionPool,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTls>,
    pub sni: Option<String>,
    pub port_overrides: Vec<(u16, TrafficPolicy)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub policy: Option<TrafficPolicy>,
}

/// What the client side does when talking to a host (Istio DestinationRule).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationPolicy {
    pub host: String,
    pub source: ResourceRef,
    pub policy: TrafficPolicy,
    pub subsets: Vec<Subset>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    Strict,
    Permissive,
    Disable,
    /// Inherit from the enclosing scope.
    Unset,
}

impl std::fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MtlsMode::Strict => "STRICT",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Unset => "UNSET",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyScope {
    Mesh,
    Namespace(String),
    Workload { namespace: String, labels: BTreeMap<String, String> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerAuthnPolicy {
    pub scope: PolicyScope,
    pub mode: MtlsMode,
    pub port_modes: BTreeMap<u16, MtlsMode>,
    pub source: ResourceRef,
}

/// What a set of workloads may reach (Istio `Sidecar` egress): only these
/// hosts are compiled into their proxies' config, which keeps proxy memory
/// independent of the size of the mesh.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SidecarScope {
    pub namespace: String,
    /// Workload labels; `None` for the namespace-wide (or, in the root namespace, mesh-wide) default.
    pub selector: Option<BTreeMap<String, String>>,
    /// `namespace/host` patterns: `./*`, `*/*`, `prod/reviews.prod.svc.cluster.local`, `*/*.example.com`.
    pub egress_hosts: Vec<String>,
    pub source: ResourceRef,
}

impl SidecarScope {
    /// Is a service (its host and namespace) visible to workloads in `proxy_ns` under this scope?
    pub fn allows(&self, proxy_ns: &str, host: &str, service_ns: &str) -> bool {
        self.egress_hosts.iter().any(|pattern| {
            let (ns, h) = pattern.split_once('/').unwrap_or(("*", pattern.as_str()));
            let ns_ok = match ns {
                "*" => true,
                "." => service_ns == proxy_ns,
                "~" => false,
                other => other == service_ns,
            };
            let host_ok = match h {
                "*" => true,
                _ if h.starts_with("*.") => host.ends_with(&h[1..]),
                _ => h == host || fqdn(h, if ns == "." || ns == "*" { service_ns } else { ns }) == host,
            };
            ns_ok && host_ok
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryPolicy {
    pub scope: PolicyScope,
    /// Its `tracing`: the provider named (the first), the sampling
    /// percentage, whether span reporting is off, the custom tags (each
    /// `None` when it says nothing of that part).
    pub trace_provider: Option<String>,
    pub trace_sampling_percent: Option<f64>,
    pub tracing_disabled: Option<bool>,
    pub trace_tags: Option<BTreeMap<String, crate::values::TraceTag>>,
    /// Its metrics `tagOverrides`, in order.
    pub tag_overrides: Vec<TagOverrideRule>,
    pub metrics_disabled: bool,
    pub access_log_disabled: Option<bool>,
    /// What its `accessLogging` says: `Some(true)` on, `Some(false)` off, `None` nothing.
    pub access_log: Option<bool>,
    /// Its access-log filter `response.code >= N` (0: none).
    pub access_log_min_code: u16,
    pub source: ResourceRef,
}

pub use crate::values::access_log_code_filter;

/// One metrics `tagOverrides` entry: for `metric` (none: ALL_METRICS) as
/// `mode` reports it (none: CLIENT_AND_SERVER), `tag` set to `value` (none: REMOVE).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagOverrideRule {
    pub metric: Option<String>,
    pub mode: Option<String>,
    pub tag: String,
    pub value: Option<crate::values::TagValue>,
}

/// The whole mesh configuration in one normalised form.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mesh {
    /// The namespace whose selector-less policies apply mesh-wide.
    pub root_namespace: String,
    pub services: BTreeMap<String, Service>,
    pub workloads: Vec<Workload>,
    /// Routes used by every sidecar, by host.
    pub routes: BTreeMap<String, HostRoutes>,
    /// Routes bound to gateways: (gateway `ns/name`, host) -> routes.
    pub gateway_routes: BTreeMap<(String, String), HostRoutes>,
    pub destinations: BTreeMap<String, DestinationPolicy>,
    pub peer_authentication: Vec<PeerAuthnPolicy>,
    pub authorization: Vec<AuthzPolicy>,
    /// JWT rules (RequestAuthentication), by scope.
    pub request_authentication: Vec<JwtPolicy>,
    /// Linkerd `Server`s: a port of some workloads that has its own authorizations.
    pub servers: Vec<LinkerdServer>,
    /// Annotations of the Namespace objects in the config (Linkerd's default inbound policy).
    pub namespace_annotations: BTreeMap<String, BTreeMap<String, String>>,
    pub telemetry: Vec<TelemetryPolicy>,
    pub sidecars: Vec<SidecarScope>,
}

/// The root namespace Istio uses for mesh-wide policy.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

impl Mesh {
    /// Builds the model from validated resources. Overlapping route sources
    /// are resolved by the precedence in the module docs.
    pub fn build(resources: &[Loaded], root_namespace: &str) -> Mesh {
        let mut m = Mesh { root_namespace: root_namespace.to_string(), ..Mesh::default() };
        let mut candidates: Vec<HostRoutes> = Vec::new();
        for l in resources {
            let r = &l.resource;
            let ns = r.namespace().unwrap_or("default").to_string();
            let src = r.reference();
            match r {
                Resource::Service(o) => {
                    let host = service_fqdn(&o.metadata.name, &ns);
                    let ports = o
                        .spec
                        .ports
                        .iter()
                        .map(|p| ServicePort {
                            port: p.port.0,
                            target_port: match &p.target_port {
                                Some(crate::types::common::PortRef::Number(n)) => Some(*n),
                                _ => None,
                            },
                            name: p.name.clone(),
                            protocol: p
                                .app_protocol
                                .as_deref()
                                .and_then(Protocol::from_name)
                                .or_else(|| p.name.as_deref().and_then(Protocol::from_name))
                                .unwrap_or(Protocol::Detect),
                        })
                        .collect();
                    m.services.insert(
                        host.clone(),
                        Service {
                            host,
                            namespace: ns,
                            ports,
                            selector: o.spec.selector.0.clone(),
                            cluster_ip: o.spec.cluster_ip.clone().filter(|ip| ip != "None" && !ip.is_empty()),
                            external: false,
                            source: src,
                        },
                    );
                }
                Resource::ServiceEntry(o) => {
                    for h in &o.spec.hosts {
                        let ports = o
                            .spec
                            .ports
                            .iter()
                            .map(|p| ServicePort {
                                port: p.number.0,
                                target_port: p.target_port.map(|t| t.0),
                                name: Some(p.name.clone()),
                                protocol: p
                                    .protocol
                                    .as_deref()
                                    .and_then(Protocol::from_name)
                                    .unwrap_or(Protocol::Detect),
                            })
                            .collect();
                        m.services.entry(h.0.clone()).or_insert(Service {
                            host: h.0.clone(),
                            namespace: ns.clone(),
                            ports,
                            selector: o.spec.workload_selector.as_ref().map(|s| s.labels.0.clone()).unwrap_or_default(),
                            cluster_ip: o.spec.addresses.first().cloned(),
                            external: o.spec.location != Some(istio::Location::MeshInternal),
                            source: src.clone(),
                        });
                    }
                }
                Resource::Pod(o) => m.workloads.push(Workload {
                    namespace: ns,
                    name: o.metadata.name.clone(),
                    labels: o.metadata.labels.0.clone(),
                    service_account: o.spec.spec.service_account_name.clone().unwrap_or_else(|| "default".into()),
                    address: o.spec.status.pod_ip.clone(),
                    weight: None,
                    annotations: o.metadata.annotations.clone(),
                    named_ports: named_ports(&o.spec.spec),
                    source: src,
                }),
                Resource::Deployment(o) => m.workloads.push(Workload {
                    namespace: ns,
                    name: o.metadata.name.clone(),
                    labels: o.spec.template.metadata.labels.0.clone(),
                    service_account: o.spec.template.spec.service_account_name.clone().unwrap_or_else(|| "default".into()),
                    address: None,
                    weight: None,
                    annotations: o.spec.template.metadata.annotations.clone(),
                    named_ports: named_ports(&o.spec.template.spec),
                    source: src,
                }),
                Resource::WorkloadEntry(o) => m.workloads.push(Workload {
                    namespace: ns,
                    name: o.metadata.name.clone(),
                    labels: o.spec.labels.0.clone(),
                    service_account: o.spec.service_account.clone().unwrap_or_else(|| "default".into()),
                    address: o.spec.address.clone(),
                    weight: o.spec.weight.filter(|w| *w > 0),
                    annotations: o.metadata.annotations.clone(),
                    named_ports: BTreeMap::new(),
                    source: src,
                }),
                Resource::VirtualService(o) => {
                    let gateways: Vec<String> = if o.spec.gateways.is_empty() {
                        vec!["mesh".into()]
                    } else {
                        o.spec.gateways.iter().map(|g| qualify_gateway(g, &ns)).collect()
                    };
                    let http: Vec<HttpRule> = o.spec.http.iter().map(|h| vs_http_rule(h, &ns)).collect();
                    let tcp: Vec<TcpRule> = o
                        .spec
                        .tcp
                        .iter()
                        .flat_map(|t| tcp_rules(t.matches.iter().map(|m| (m.port.map(|p| p.0), vec![])), &t.route, &ns))
                        .chain(o.spec.tls.iter().flat_map(|t| {
                            tcp_rules(
                                t.matches.iter().map(|m| (m.port.map(|p| p.0), m.sni_hosts.iter().map(|h| h.0.clone()).collect())),
                                &t.route,
                                &ns,
                            )
                        }))
                        .collect();
                    for h in &o.spec.hosts {
                        let host = fqdn(&h.0, &ns);
                        let routes = HostRoutes {
                            host: host.clone(),
                            api: RouteApi::VirtualService,
                            sources: vec![src.clone()],
                            http: http.clone(),
                            tcp: tcp.clone(),
                            retry_budget: None,
                        };
                        for g in &gateways {
                            if g == "mesh" {
                                candidates.push(routes.clone());
                            } else {
                                // Istio merges gateway VirtualServices for one host: rules append.
                                m.gateway_routes
                                    .entry((g.clone(), host.clone()))
                                    .and_modify(|e| {
                                        e.http.extend(routes.http.iter().cloned());
                                        e.tcp.extend(routes.tcp.iter().cloned());
                                        e.sources.push(src.clone());
                                    })
                                    .or_insert_with(|| routes.clone());
                            }
                        }
                    }
                }
                Resource::HttpRoute(o) => {
                    let rules: Vec<HttpRule> = o.spec.rules.iter().map(|r| gw_http_rule(r, &ns)).collect();
                    attach_gateway_api(&mut m, &mut candidates, &o.spec.parent_refs, &o.spec.hostnames, rules, &ns, &src);
                }
                Resource::GrpcRoute(o) => {
                    let rules: Vec<HttpRule> = o.spec.rules.iter().map(|r| grpc_rule(r, &ns)).collect();
                    attach_gateway_api(&mut m, &mut candidates, &o.spec.parent_refs, &o.spec.hostnames, rules, &ns, &src);
                }
                Resource::TrafficSplit(o) => {
                    let total: u64 = o.spec.backends.iter().map(|b| b.weight.milli).sum();
                    let dests = o
                        .spec
                        .backends
                        .iter()
                        .map(|b| WeightedDestination {
                            host: fqdn(&b.service, &ns),
                            subset: None,
                            port: None,
                            // Normalise relative weights to parts per 10,000.
                            weight: (b.weight.milli * 10_000).checked_div(total).unwrap_or(0) as u32,
                        })
                        .collect();
                    candidates.push(HostRoutes {
                        host: fqdn(&o.spec.service, &ns),
                        api: RouteApi::TrafficSplit,
                        sources: vec![src],
                        http: vec![HttpRule::forward(vec![], dests)],
                        tcp: vec![],
                        retry_budget: None,
                    });
                }
                Resource::ServiceProfile(o) => {
                    // A ServiceProfile is named after the FQDN it describes.
                    let host = o.metadata.name.clone();
                    let http = o.spec.routes.iter().map(|r| profile_rule(r, &host)).collect();
                    candidates.push(HostRoutes {
                        host,
                        api: RouteApi::ServiceProfile,
                        sources: vec![src],
                        http,
                        tcp: vec![],
                        retry_budget: o.spec.retry_budget.as_ref().map(|b| RetryBudget {
                            ratio: b.retry_ratio,
                            min_per_second: b.min_retries_per_second,
                            ttl: b.ttl.0,
                        }),
                    });
                }
                Resource::DestinationRule(o) => {
                    let host = fqdn(&o.spec.host.0, &ns);
                    // The first DestinationRule for a host wins, as in Istio (oldest first).
                    m.destinations.entry(host.clone()).or_insert_with(|| DestinationPolicy {
                        host,
                        source: src,
                        policy: o.spec.traffic_policy.as_ref().map(traffic_policy).unwrap_or_default(),
                        subsets: o
                            .spec
                            .subsets
                            .iter()
                            .map(|s| Subset {
                                name: s.name.clone(),
                                labels: s.labels.0.clone(),
                                policy: s.traffic_policy.as_ref().map(traffic_policy),
                            })
                            .collect(),
                    });
                }
                Resource::PeerAuthentication(o) => {
                    let scope = scope(&ns, o.spec.selector.as_ref().map(|s| &s.match_labels.0), root_namespace);
                    m.peer_authentication.push(PeerAuthnPolicy {
                        scope,
                        mode: o.spec.mtls.as_ref().and_then(|x| x.mode).map(mtls_mode).unwrap_or(MtlsMode::Unset),
                        port_modes: o
                            .spec
                            .port_level_mtls
                            .iter()
                            .filter_map(|(p, x)| Some((p.parse().ok()?, x.mode.map(mtls_mode).unwrap_or(MtlsMode::Unset))))
                            .collect(),
                        source: src,
                    });
                }
                Resource::Sidecar(o) => m.sidecars.push(SidecarScope {
                    namespace: ns.clone(),
                    selector: o.spec.workload_selector.as_ref().map(|s| s.labels.0.clone()).filter(|l| !l.is_empty()),
                    egress_hosts: if o.spec.egress.is_empty() {
                        vec!["*/*".into()]
                    } else {
                        o.spec.egress.iter().flat_map(|e| e.hosts.iter().cloned()).collect()
                    },
                    source: src,
                }),
                Resource::Telemetry(o) => m.telemetry.push(TelemetryPolicy {
                    scope: scope(&ns, o.spec.selector.as_ref().map(|s| &s.match_labels.0), root_namespace),
                    trace_provider: o.spec.tracing.iter().find_map(|t| t.providers.first().map(|p| p.name.clone())),
                    trace_sampling_percent: o.spec.tracing.iter().find_map(|t| t.random_sampling_percentage.map(|p| p.0)),
                    tracing_disabled: o.spec.tracing.iter().find_map(|t| t.disable_span_reporting),
                    // Tags that do not parse are refused by validation; none gets here.
                    trace_tags: o
                        .spec
                        .tracing
                        .iter()
                        .find(|t| !t.custom_tags.is_empty())
                        .map(|t| t.custom_tags.iter().filter_map(|(k, v)| Some((k.clone(), crate::values::trace_tag(v).ok()?))).collect()),
                    metrics_disabled: o
                        .spec
                        .metrics
                        .iter()
                        .flat_map(|x| &x.overrides)
                        .any(|ov| ov.disabled == Some(true) && ov.matches.as_ref().is_none_or(|s| s.metric.as_deref().is_none_or(|x| x == "ALL_METRICS"))),
                    // Entries that do not parse are refused by validation; none gets here.
                    tag_overrides: o
                        .spec
                        .metrics
                        .iter()
                        .flat_map(|x| &x.overrides)
                        .flat_map(|ov| {
                            let (metric, mode) = ov.matches.as_ref().map(|s| (s.metric.clone().filter(|m| m != "ALL_METRICS"), s.mode.clone())).unwrap_or_default();
                            ov.tag_overrides.iter().filter_map(move |(tag, t)| {
                                let value = match t.operation.as_deref() {
                                    Some("REMOVE") => None,
                                    _ => Some(crate::values::tag_value(t.value.as_deref()?).ok()?),
                                };
                                Some(TagOverrideRule { metric: metric.clone(), mode: mode.clone(), tag: tag.clone(), value })
                            })
                        })
                        .collect(),
                    access_log_disabled: o.spec.access_logging.iter().find_map(|a| a.disabled),
                    access_log: o.spec.access_logging.first().map(|a| a.disabled != Some(true)),
                    access_log_min_code: o
                        .spec
                        .access_logging
                        .first()
                        .and_then(|a| a.filter.as_ref())
                        .and_then(|f| access_log_code_filter(&f.expression))
                        .unwrap_or(0),
                    source: src,
                }),
                _ => {}
            }
        }
        authz::build(resources, &mut m);
        // Resolve overlapping route sources: lowest RouteApi wins; within one
        // API the first resource in input order wins (Istio: oldest wins).
        for c in candidates {
            match m.routes.get_mut(&c.host) {
                None => {
                    m.routes.insert(c.host.clone(), c);
                }
                Some(existing) if existing.api == RouteApi::GatewayApi && c.api == RouteApi::GatewayApi => {
                    // Gateway API merges the rules of every route attached to one parent.
                    existing.http.extend(c.http);
                    existing.sources.extend(c.sources);
                }
                Some(existing) if c.api < existing.api => {
                    // A ServiceProfile's retry budget still applies under the winning routes.
                    let budget = existing.retry_budget.take();
                    *existing = c;
                    existing.retry_budget = existing.retry_budget.take().or(budget);
                }
                Some(existing) => existing.retry_budget = existing.retry_budget.take().or(c.retry_budget),
            }
        }
        m
    }

    /// The Sidecar scope that applies to a workload, with Istio's precedence:
    /// a selector matching the workload in its namespace, else the namespace's
    /// default, else the root namespace's default. `None`: everything is visible.
    pub fn sidecar_for(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Option<&SidecarScope> {
        self.sidecars
            .iter()
            .find(|s| s.namespace == namespace && s.selector.as_ref().is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v))))
            .or_else(|| self.sidecars.iter().find(|s| s.namespace == namespace && s.selector.is_none()))
            .or_else(|| self.sidecars.iter().find(|s| s.namespace == self.root_namespace && s.selector.is_none()))
    }

    /// The services whose selector matches `labels` in `namespace`.
    pub fn services_for(&self, namespace: &str, labels: &BTreeMap<String, String>) -> impl Iterator<Item = &Service> {
        let namespace = namespace.to_string();
        let labels = labels.clone();
        self.services.values().filter(move |s| {
            !s.external && s.namespace == namespace && !s.selector.is_empty() && s.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
    }
}

impl HttpRule {
    fn forward(matches: Vec<RequestMatch>, dests: Vec<WeightedDestination>) -> HttpRule {
        HttpRule {
            name: None,
            matches,
            action: RouteAction::Forward(dests),
            rewrite: None,
            timeout: None,
            retry: None,
            fault: None,
            mirrors: vec![],
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            failure_statuses: vec![],
        }
    }
}

fn qualify_gateway(g: &str, ns: &str) -> String {
    if g == "mesh" || g.contains('/') {
        g.to_string()
    } else {
        format!("{ns}/{g}")
    }
}

fn named_ports(spec: &crate::types::core::PodSpec) -> BTreeMap<String, u16> {
    spec.containers.iter().flat_map(|c| &c.ports).filter_map(|p| Some((p.name.clone()?, p.container_port.0))).collect()
}

fn scope(ns: &str, labels: Option<&BTreeMap<String, String>>, root: &str) -> PolicyScope {
    match labels {
        Some(l) if !l.is_empty() => PolicyScope::Workload { namespace: ns.to_string(), labels: l.clone() },
        _ if ns == root => PolicyScope::Mesh,
        _ => PolicyScope::Namespace(ns.to_string()),
    }
}

fn mtls_mode(m: istio::MtlsMode) -> MtlsMode {
    match m {
        istio::MtlsMode::Strict => MtlsMode::Strict,
        istio::MtlsMode::Permissive => MtlsMode::Permissive,
        istio::MtlsMode::Disable => MtlsMode::Disable,
        istio::MtlsMode::Unset => MtlsMode::Unset,
    }
}

fn istio_string_match(m: &istio::StringMatch) -> StringMatch {
    if let Some(e) = &m.exact {
        StringMatch::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        StringMatch::Prefix(p.clone())
    } else if let Some(r) = &m.regex {
        StringMatch::Regex(r.0.clone())
    } else {
        StringMatch::Present
    }
}

fn header_ops(h: Option<&istio::HeaderOperations>) -> HeaderOps {
    h.map(|h| HeaderOps {
        set: h.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        add: h.add.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        remove: h.remove.clone(),
    })
    .unwrap_or_default()
}

fn istio_destination(d: &istio::Destination, ns: &str, weight: u32) -> WeightedDestination {
    WeightedDestination {
        host: fqdn(&d.host.0, ns),
        subset: d.subset.clone(),
        port: d.port.as_ref().and_then(|p| p.number).map(|p| p.0),
        weight,
    }
}

fn vs_http_rule(h: &istio::HttpRoute, ns: &str) -> HttpRule {
    let matches = h
        .matches
        .iter()
        .map(|m| RequestMatch {
            path: m.uri.as_ref().map(istio_string_match),
            ignore_case: m.ignore_uri_case == Some(true),
            method: m.method.as_ref().and_then(|s| s.exact.clone()),
            authority: m.authority.as_ref().map(istio_string_match),
            headers: m
                .headers
                .iter()
                .map(|(k, v)| HeaderMatch { name: k.clone(), value: istio_string_match(v), invert: false })
                .chain(m.without_headers.iter().map(|(k, v)| HeaderMatch { name: k.clone(), value: istio_string_match(v), invert: true }))
                .collect(),
            query: m
                .query_params
                .iter()
                .map(|(k, v)| HeaderMatch { name: k.clone(), value: istio_string_match(v), invert: false })
                .collect(),
            port: m.port.map(|p| p.0),
            source_labels: m.source_labels.0.clone(),
            source_namespace: m.source_namespace.clone(),
            gateways: m.gateways.clone(),
        })
        .collect();
    let action = if let Some(r) = &h.redirect {
        RouteAction::Redirect {
            scheme: r.scheme.clone(),
            authority: r.authority.clone(),
            path: r.uri.clone(),
            port: r.port.map(|p| p.0),
            status: r.redirect_code.unwrap_or(301),
        }
    } else if let Some(d) = &h.direct_response {
        RouteAction::DirectResponse { status: d.status, body: d.body.as_ref().and_then(|b| b.string.clone().or(b.bytes.clone())) }
    } else {
        // A single destination without a weight gets all traffic.
        let single = h.route.len() == 1;
        RouteAction::Forward(
            h.route
                .iter()
                .map(|d| istio_destination(&d.destination, ns, d.weight.map(|w| w as u32).unwrap_or(if single { 100 } else { 0 })))
                .collect(),
        )
    };
    let mut request_headers = header_ops(h.headers.as_ref().and_then(|x| x.request.as_ref()));
    let mut response_headers = header_ops(h.headers.as_ref().and_then(|x| x.response.as_ref()));
    // Per-destination header operations apply whichever destination is picked;
    // the model keeps them on the rule when there is one destination.
    if let [d] = h.route.as_slice() {
        request_headers.extend(header_ops(d.headers.as_ref().and_then(|x| x.request.as_ref())));
        response_headers.extend(header_ops(d.headers.as_ref().and_then(|x| x.response.as_ref())));
    }
    let pct = |p: &Option<istio::Percent>| p.as_ref().map_or(100.0, |p| p.value.0);
    let mut mirrors: Vec<Mirror> = h
        .mirror
        .iter()
        .map(|d| {
            let dest = istio_destination(d, ns, 0);
            Mirror {
                host: dest.host,
                subset: dest.subset,
                port: dest.port,
                percent: h
                    .mirror_percentage
                    .as_ref()
                    .map(|p| p.value.0)
                    .or(h.mirror_percent.or(h.mirror_percent_deprecated).map(f64::from))
                    .unwrap_or(100.0),
            }
        })
        .collect();
    mirrors.extend(h.mirrors.iter().map(|mp| {
        let dest = istio_destination(&mp.destination, ns, 0);
        Mirror { host: dest.host, subset: dest.subset, port: dest.port, percent: pct(&mp.percentage) }
    }));
    HttpRule {
        name: h.name.clone(),
        matches,
        action,
        rewrite: h.rewrite.as_ref().map(|r| Rewrite { path: r.uri.clone(), prefix_only: true, authority: r.authority.clone() }),
        timeout: h.timeout.map(|d| d.0),
        retry: h.retries.as_ref().map(|r| RetryPolicy {
            attempts: r.attempts.max(0) as u32,
            per_try_timeout: r.per_try_timeout.map(|d| d.0),
            retry_on: r
                .retry_on
                .as_deref()
                // Istio's default retry conditions.
                .unwrap_or("connect-failure,refused-stream,unavailable,cancelled,503")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            backoff: r.backoff.map(|d| d.0),
        }),
        fault: h.fault.as_ref().map(|f| Fault {
            delay: f.delay.as_ref().and_then(|d| {
                let p = d.percentage.as_ref().map(|p| p.value.0).or(d.percent.map(|p| p as f64)).unwrap_or(100.0);
                d.fixed_delay.or(d.exponential_delay).map(|x| (x.0, p))
            }),
            abort: f.abort.as_ref().and_then(|a| {
                let p = pct(&a.percentage);
                a.http_status
                    .map(AbortStatus::Http)
                    .or(a.grpc_status.clone().map(AbortStatus::Grpc))
                    .map(|s| (s, p))
            }),
        }),
        mirrors,
        request_headers,
        response_headers,
        failure_statuses: vec![],
    }
}

fn tcp_rules(
    matches: impl Iterator<Item = (Option<u16>, Vec<String>)>,
    route: &[istio::RouteDestination],
    ns: &str,
) -> Vec<TcpRule> {
    let single = route.len() == 1;
    let dests: Vec<WeightedDestination> = route
        .iter()
        .map(|d| istio_destination(&d.destination, ns, d.weight.map(|w| w as u32).unwrap_or(if single { 100 } else { 0 })))
        .collect();
    let mut rules: Vec<TcpRule> = matches
        .map(|(port, sni_hosts)| TcpRule { port, sni_hosts, destinations: dests.clone() })
        .collect();
    if rules.is_empty() {
        rules.push(TcpRule { port: None, sni_hosts: vec![], destinations: dests });
    }
    rules
}

fn gw_string_match(kind: Option<&str>, value: &str) -> StringMatch {
    match kind {
        Some("RegularExpression") => StringMatch::Regex(value.to_string()),
        Some("PathPrefix") => StringMatch::Prefix(value.to_string()),
        _ => StringMatch::Exact(value.to_string()),
    }
}

fn gw_header_ops(m: Option<&gw::HeaderModifier>) -> HeaderOps {
    m.map(|m| HeaderOps {
        set: m.set.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.clone())).collect(),
        add: m.add.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.clone())).collect(),
        remove: m.remove.iter().map(|h| h.to_ascii_lowercase()).collect(),
    })
    .unwrap_or_default()
}

fn gw_backends(refs: &[gw::HttpBackendRef], ns: &str) -> Vec<WeightedDestination> {
    refs.iter()
        .map(|b| WeightedDestination {
            host: service_fqdn(&b.name, b.namespace.as_deref().unwrap_or(ns)),
            subset: None,
            port: b.port.map(|p| p.0),
            // Gateway API weights are relative; 1 is the default.
            weight: b.weight.unwrap_or(1).clamp(0, 1_000_000) as u32,
        })
        .collect()
}

fn apply_filters(rule: &mut HttpRule, filters: &[gw::HttpRouteFilter], ns: &str) {
    for f in filters {
        rule.request_headers.extend(gw_header_ops(f.request_header_modifier.as_ref()));
        rule.response_headers.extend(gw_header_ops(f.response_header_modifier.as_ref()));
        if let Some(m) = &f.request_mirror {
            let percent = m
                .percent
                .map(|p| p as f64)
                .or(m.fraction.as_ref().map(|fr| 100.0 * fr.numerator as f64 / fr.denominator.unwrap_or(100).max(1) as f64))
                .unwrap_or(100.0);
            rule.mirrors.push(Mirror {
                host: service_fqdn(&m.backend_ref.name, m.backend_ref.namespace.as_deref().unwrap_or(ns)),
                subset: None,
                port: m.backend_ref.port.map(|p| p.0),
                percent,
            });
        }
        if let Some(r) = &f.request_redirect {
            rule.action = RouteAction::Redirect {
                scheme: r.scheme.clone(),
                authority: r.hostname.clone(),
                path: r.path.as_ref().and_then(|p| p.replace_full_path.clone().or(p.replace_prefix_match.clone())),
                port: r.port.map(|p| p.0),
                status: r.status_code.unwrap_or(302),
            };
        }
        if let Some(u) = &f.url_rewrite {
            rule.rewrite = Some(Rewrite {
                path: u.path.as_ref().and_then(|p| p.replace_full_path.clone().or(p.replace_prefix_match.clone())),
                prefix_only: u.path.as_ref().is_some_and(|p| p.kind == "ReplacePrefixMatch"),
                authority: u.hostname.clone(),
            });
        }
    }
}

fn gw_http_rule(r: &gw::HttpRouteRule, ns: &str) -> HttpRule {
    let matches = r
        .matches
        .iter()
        .map(|m| RequestMatch {
            path: m.path.as_ref().map(|p| gw_string_match(Some(p.kind.as_deref().unwrap_or("PathPrefix")), p.value.as_deref().unwrap_or("/"))),
            method: m.method.clone(),
            headers: m
                .headers
                .iter()
                .map(|h| HeaderMatch { name: h.name.to_ascii_lowercase(), value: gw_string_match(h.kind.as_deref(), &h.value), invert: false })
                .collect(),
            query: m
                .query_params
                .iter()
                .map(|h| HeaderMatch { name: h.name.clone(), value: gw_string_match(h.kind.as_deref(), &h.value), invert: false })
                .collect(),
            ..RequestMatch::default()
        })
        .collect();
    let mut rule = HttpRule::forward(matches, gw_backends(&r.backend_refs, ns));
    rule.name = r.name.clone();
    rule.timeout = r.timeouts.as_ref().and_then(|t| t.request).map(|d| d.0);
    if let Some(retry) = &r.retry {
        rule.retry = Some(RetryPolicy {
            attempts: retry.attempts.unwrap_or(2).max(0) as u32,
            per_try_timeout: r.timeouts.as_ref().and_then(|t| t.backend_request).map(|d| d.0),
            retry_on: if retry.codes.is_empty() {
                vec!["connect-failure".into(), "refused-stream".into(), "503".into()]
            } else {
                retry.codes.iter().map(|c| c.to_string()).collect()
            },
            backoff: retry.backoff.map(|d| d.0),
        });
    }
    apply_filters(&mut rule, &r.filters, ns);
    rule
}

fn grpc_rule(r: &gw::GrpcRouteRule, ns: &str) -> HttpRule {
    let matches = r
        .matches
        .iter()
        .map(|m| {
            // gRPC calls are POSTs to /<service>/<method>.
            let path = m.method.as_ref().map(|mm| {
                let svc = mm.service.as_deref();
                let method = mm.method.as_deref();
                if mm.kind.as_deref() == Some("RegularExpression") {
                    StringMatch::Regex(format!("/{}/{}", svc.unwrap_or("[^/]+"), method.unwrap_or("[^/]+")))
                } else {
                    match (svc, method) {
                        (Some(s), Some(me)) => StringMatch::Exact(format!("/{s}/{me}")),
                        (Some(s), None) => StringMatch::Prefix(format!("/{s}/")),
                        (None, Some(me)) => StringMatch::Regex(format!("/[^/]+/{}", regex::escape(me))),
                        (None, None) => StringMatch::Prefix("/".into()),
                    }
                }
            });
            RequestMatch {
                path,
                headers: m
                    .headers
                    .iter()
                    .map(|h| HeaderMatch { name: h.name.to_ascii_lowercase(), value: gw_string_match(h.kind.as_deref(), &h.value), invert: false })
                    .collect(),
                ..RequestMatch::default()
            }
        })
        .collect();
    let mut rule = HttpRule::forward(matches, gw_backends(&r.backend_refs, ns));
    rule.name = r.name.clone();
    apply_filters(&mut rule, &r.filters, ns);
    rule
}

#[allow(clippy::too_many_arguments)]
fn attach_gateway_api(
    m: &mut Mesh,
    candidates: &mut Vec<HostRoutes>,
    parents: &[gw::ParentReference],
    hostnames: &[crate::types::common::Host],
    rules: Vec<HttpRule>,
    ns: &str,
    src: &ResourceRef,
) {
    for p in parents {
        let pns = p.namespace.as_deref().unwrap_or(ns);
        if p.is_service() {
            let mut rules = rules.clone();
            // A rule without backends sends to the parent Service itself.
            for r in &mut rules {
                if let RouteAction::Forward(d) = &mut r.action {
                    if d.is_empty() {
                        d.push(WeightedDestination { host: service_fqdn(&p.name, pns), subset: None, port: p.port.map(|x| x.0), weight: 1 });
                    }
                }
            }
            candidates.push(HostRoutes {
                host: service_fqdn(&p.name, pns),
                api: RouteApi::GatewayApi,
                sources: vec![src.clone()],
                http: rules,
                tcp: vec![],
                retry_budget: None,
            });
        } else if p.is_gateway() {
            let hosts: Vec<String> = if hostnames.is_empty() { vec!["*".into()] } else { hostnames.iter().map(|h| h.0.clone()).collect() };
            for h in hosts {
                m.gateway_routes
                    .entry((format!("{pns}/{}", p.name), h.clone()))
                    .and_modify(|e| {
                        e.http.extend(rules.iter().cloned());
                        e.sources.push(src.clone());
                    })
                    .or_insert_with(|| HostRoutes {
                        host: h,
                        api: RouteApi::GatewayApi,
                        sources: vec![src.clone()],
                        http: rules.clone(),
                        tcp: vec![],
                        retry_budget: None,
                    });
            }
        }
    }
}

fn profile_condition(c: &linkerd::RequestMatch) -> RequestMatch {
    let mut m = RequestMatch {
        method: c.method.clone(),
        path: c.path_regex.as_ref().map(|r| StringMatch::Regex(r.0.clone())),
        ..RequestMatch::default()
    };
    // `all` narrows the same match; `any`/`not` are kept as the first branch
    // only when simple, which covers the conditions `linkerd profile` generates.
    for sub in &c.all {
        let s = profile_condition(sub);
        m.method = m.method.or(s.method);
        m.path = m.path.or(s.path);
    }
    m
}

fn profile_rule(r: &linkerd::ProfileRoute, host: &str) -> HttpRule {
    let mut rule = HttpRule::forward(
        vec![profile_condition(&r.condition)],
        vec![WeightedDestination { host: host.to_string(), subset: None, port: None, weight: 100 }],
    );
    rule.name = Some(r.name.clone());
    // Linkerd's default route timeout is 10s.
    rule.timeout = r.timeout.map(|d| d.0);
    if r.is_retryable == Some(true) {
        // Linkerd bounds retries by the retry budget, not by a count.
        rule.retry = Some(RetryPolicy { attempts: u32::MAX, per_try_timeout: None, retry_on: vec!["5xx".into()], backoff: None });
    }
    rule.failure_statuses = r
        .response_classes
        .iter()
        .filter(|c| c.is_failure == Some(true))
        .filter_map(|c| c.condition.status.as_ref().map(|s| (s.min.unwrap_or(100), s.max.unwrap_or(599))))
        .collect();
    rule
}

fn traffic_policy(t: &istio::TrafficPolicy) -> TrafficPolicy {
    fn one(
        lb: Option<&istio::LoadBalancerSettings>,
        pool: Option<&istio::ConnectionPoolSettings>,
        od: Option<&istio::OutlierDetection>,
        tls: Option<&istio::ClientTlsSettings>,
    ) -> TrafficPolicy {
        TrafficPolicy {
            load_balancer: lb.and_then(|lb| {
                if let Some(ch) = &lb.consistent_hash {
                    let key = if let Some(h) = &ch.http_header_name {
                        HashKey::Header(h.to_ascii_lowercase())
                    } else if let Some(c) = &ch.http_cookie {
                        HashKey::Cookie { name: c.name.clone(), path: c.path.clone(), ttl: c.ttl.map(|d| d.0) }
                    } else if let Some(q) = &ch.http_query_parameter_name {
                        HashKey::QueryParameter(q.clone())
                    } else {
                        HashKey::SourceIp
                    };
                    Some(LoadBalancer::ConsistentHash {
                        key,
                        maglev: ch.maglev.is_some(),
                        table_size: ch.maglev.as_ref().and_then(|m| m.table_size).or(ch.ring_hash.as_ref().and_then(|r| r.minimum_ring_size)).or(ch.minimum_ring_size),
                    })
                } else {
                    lb.simple.map(|s| match s {
                        istio::SimpleLb::RoundRobin => LoadBalancer::RoundRobin,
                        istio::SimpleLb::Random => LoadBalancer::Random,
                        istio::SimpleLb::LeastRequest | istio::SimpleLb::LeastConn => LoadBalancer::LeastRequest,
                        istio::SimpleLb::Passthrough => LoadBalancer::Passthrough,
                        istio::SimpleLb::Unspecified => LoadBalancer::PeakEwma,
                    })
                }
            }),
            connection_pool: pool
                .map(|p| ConnectionPool {
                    max_connections: p.tcp.as_ref().and_then(|t| t.max_connections),
                    connect_timeout: p.tcp.as_ref().and_then(|t| t.connect_timeout).map(|d| d.0),
                    idle_timeout: p.http.as_ref().and_then(|h| h.idle_timeout).or(p.tcp.as_ref().and_then(|t| t.idle_timeout)).map(|d| d.0),
                    http1_max_pending_requests: p.http.as_ref().and_then(|h| h.http1_max_pending_requests),
                    http2_max_requests: p.http.as_ref().and_then(|h| h.http2_max_requests),
                    max_requests_per_connection: p.http.as_ref().and_then(|h| h.max_requests_per_connection),
                    max_retries: p.http.as_ref().and_then(|h| h.max_retries),
                    h2_upgrade: p.http.as_ref().and_then(|h| h.h2_upgrade_policy).and_then(|u| match u {
                        istio::H2UpgradePolicy::Upgrade => Some(true),
                        istio::H2UpgradePolicy::DoNotUpgrade => Some(false),
                        istio::H2UpgradePolicy::Default => None,
                    }),
                })
                .unwrap_or_default(),
            outlier_detection: od.map(|o| OutlierDetection {
                // Istio: consecutiveErrors (deprecated) means 5xx; default 5.
                consecutive_5xx: o.consecutive_5xx_errors.or(o.consecutive_errors).or(Some(5)).filter(|n| *n > 0),
                consecutive_gateway_errors: o.consecutive_gateway_errors.filter(|n| *n > 0),
                consecutive_local_origin_failures: o.consecutive_local_origin_failures.filter(|n| *n > 0),
                interval: o.interval.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
                base_ejection_time: o.base_ejection_time.map(|d| d.0).unwrap_or(Duration::from_secs(30)),
                max_ejection_percent: o.max_ejection_percent.unwrap_or(10).clamp(0, 100) as u32,
                min_health_percent: o.min_health_percent.unwrap_or(0).clamp(0, 100) as u32,
            }),
            tls: tls.and_then(|t| t.mode).map(|m| match m {
                istio::ClientTlsMode::Disable => ClientTls::Disable,
                istio::ClientTlsMode::Simple => ClientTls::Simple,
                istio::ClientTlsMode::Mutual => ClientTls::Mutual,
                istio::ClientTlsMode::IstioMutual => ClientTls::MeshMutual,
            }),
            sni: tls.and_then(|t| t.sni.clone()),
            port_overrides: vec![],
        }
    }
    let mut p = one(t.load_balancer.as_ref(), t.connection_pool.as_ref(), t.outlier_detection.as_ref(), t.tls.as_ref());
    p.port_overrides = t
        .port_level_settings
        .iter()
        .filter_map(|pl| {
            let port = pl.port.as_ref()?.number?.0;
            Some((port, one(pl.load_balancer.as_ref(), pl.connection_pool.as_ref(), pl.outlier_detection.as_ref(), pl.tls.as_ref())))
        })
        .collect();
    p
}

