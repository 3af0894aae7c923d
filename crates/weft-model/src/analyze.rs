//! Cross-resource analysis: the mistakes that pass per-resource validation
//! but break traffic (two VirtualServices for one host, a subset nobody
//! defined, STRICT mTLS against a plaintext client policy, a policy that
//! denies everything). Each analyzer emits [`Message`]s with a stable code.
//!
//! Checks that need cluster context (Services, workloads, Secrets) run only
//! when the input contains objects of that kind; otherwise one `WEFT0119`
//! info says what was skipped, so a clean result never hides a missing check.

use crate::diag::{Code, Message, ResourceRef};
use crate::load::Loaded;
use crate::mesh::{self, fqdn, service_fqdn, Mesh, MtlsMode, PolicyScope, RouteApi};
use crate::resource::Resource;
use crate::types::{common::Labels, istio};
use crate::values::closest;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Analysis settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace whose selector-less policies apply mesh-wide.
    pub root_namespace: String,
    /// The mesh's trust domain: principals of another are reported.
    pub trust_domain: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { root_namespace: mesh::DEFAULT_ROOT_NAMESPACE.to_string(), trust_domain: mesh::CLUSTER_DOMAIN.to_string() }
    }
}

/// Everything the analyzers look things up in, built once.
struct Context<'a> {
    resources: &'a [Loaded],
    mesh: Mesh,
    opts: &'a Options,
    has_services: bool,
    has_workloads: bool,
    has_secrets: bool,
    workload_namespaces: BTreeSet<String>,
    secrets: BTreeSet<(String, String)>,
    istio_gateways: BTreeSet<String>,
    k8s_gateways: BTreeSet<String>,
    /// Subset names defined for each host, over every DestinationRule.
    subsets: HashMap<String, Vec<String>>,
    out: Vec<Message>,
}

impl<'a> Context<'a> {
    fn emit(&mut self, code: Code, r: &Resource, field: impl Into<String>, text: impl Into<String>) {
        self.out.push(Message::new(code, text).resource(r.reference()).field(field));
    }

    /// Is `host` a known Service or ServiceEntry host (wildcard entries included)?
    fn host_exists(&self, host: &str) -> bool {
        if host.starts_with('*') || self.mesh.services.contains_key(host) {
            return true;
        }
        self.mesh.services.keys().any(|h| {
            h.strip_prefix('*').is_some_and(|suffix| host.ends_with(suffix))
        })
    }

    fn host_hint(&self, host: &str) -> String {
        // `reviews.prod` is a common way to write a Service that Istio does not expand.
        let parts: Vec<&str> = host.split('.').collect();
        if parts.len() == 2 || (parts.len() == 3 && parts[2] == "svc") {
            let full = service_fqdn(parts[0], parts[1]);
            if self.mesh.services.contains_key(&full) {
                return format!(" (did you mean {full:?}? names with a dot are not expanded)");
            }
        }
        closest(host, self.mesh.services.keys().map(String::as_str))
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_default()
    }

    fn workloads_match(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.mesh
            .workloads
            .iter()
            .any(|w| w.namespace == namespace && labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
    }
}

/// Analyzes a set of loaded resources.
pub fn analyze(all: &[Loaded], opts: &Options) -> Vec<Message> {
    let mut out = duplicates(all);
    // What apply would store: the last definition of each resource.
    let mut last: HashMap<ResourceRef, usize> = HashMap::new();
    for (i, l) in all.iter().enumerate() {
        last.insert(l.resource.reference(), i);
    }
    let unique: Vec<Loaded> = all
        .iter()
        .enumerate()
        .filter(|(i, l)| last.get(&l.resource.reference()) == Some(i))
        .map(|(_, l)| l.clone())
        .collect();
    let resources = unique.as_slice();
    let mesh = Mesh::build(resources, &opts.root_namespace);
    let mut subsets: HashMap<String, Vec<String>> = HashMap::new();
    let mut cx = Context {
        resources,
        opts,
        has_services: false,
        has_workloads: !mesh.workloads.is_empty(),
        has_secrets: false,
        workload_namespaces: mesh.workloads.iter().map(|w| w.namespace.clone()).collect(),
        secrets: BTreeSet::new(),
        istio_gateways: BTreeSet::new(),
        k8s_gateways: BTreeSet::new(),
        subsets: HashMap::new(),
        mesh,
        out: Vec::new(),
    };
    for l in resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("").to_string();
        match r {
            Resource::Service(_) | Resource::ServiceEntry(_) => cx.has_services = true,
            Resource::Secret(_) => {
                cx.has_secrets = true;
                cx.secrets.insert((ns, r.name().to_string()));
            }
            Resource::IstioGateway(_) => {
                cx.istio_gateways.insert(format!("{ns}/{}", r.name()));
            }
            Resource::Gateway(_) => {
                cx.k8s_gateways.insert(format!("{ns}/{}", r.name()));
            }
            Resource::DestinationRule(o) => subsets
                .entry(fqdn(&o.spec.host.0, &ns))
                .or_default()
                .extend(o.spec.subsets.iter().map(|s| s.name.clone())),
            _ => {}
        }
    }
    cx.subsets = subsets;

    virtual_services(&mut cx);
    route_sources(&mut cx);
    gateway_api_refs(&mut cx);
    destination_rules(&mut cx);
    service_ports(&mut cx);
    selectors(&mut cx);
    peer_authentications(&mut cx);
    mtls_conflicts(&mut cx);
    not_applied_yet(&mut cx);
    gateway_credentials(&mut cx);
    traffic_splits(&mut cx);
    split_overlaps(&mut cx);
    authorization(&mut cx);
    authorization_rules(&mut cx);
    authorization_targets(&mut cx);
    context_notes(&mut cx);

    // Attach where each resource came from.
    let origins: HashMap<ResourceRef, &crate::diag::Origin> =
        resources.iter().rev().map(|l| (l.resource.reference(), &l.origin)).collect();
    out.extend(cx.out);
    for m in &mut out {
        if m.origin.is_none() {
            m.origin = m.resource.as_ref().and_then(|r| origins.get(r)).map(|o| (*o).clone());
        }
    }
    out
}

fn duplicates(resources: &[Loaded]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut seen: HashMap<ResourceRef, &crate::diag::Origin> = HashMap::new();
    for l in resources {
        let r = l.resource.reference();
        if let Some(first) = seen.get(&r) {
            let text = format!("{r} is also defined at {first}; the later definition replaces it when applied");
            out.push(Message::new(Code::DuplicateResource, text).resource(r).origin(Some(l.origin.clone())));
        } else {
            seen.insert(r, &l.origin);
        }
    }
    out
}

/// Checks of a VirtualService's destinations; shared by http, tcp and tls routes.
fn check_destination(cx: &mut Context, r: &Resource, d: &istio::Destination, ns: &str, path: &str) {
    let host = fqdn(&d.host.0, ns);
    if cx.has_services && !cx.host_exists(&host) {
        let hint = cx.host_hint(&host);
        cx.emit(
            Code::DestinationHostNotFound,
            r,
            format!("{path}.host"),
            format!("host {host:?} is not a Service or ServiceEntry{hint}; requests would fail with 503 (NR)"),
        );
    }
    if let Some(subset) = &d.subset {
        match cx.subsets.get(&host) {
            None => cx.emit(
                Code::SubsetWithoutDestinationRule,
                r,
                format!("{path}.subset"),
                format!("subset {subset:?} is used but no DestinationRule defines subsets for {host:?}"),
            ),
            Some(defined) if !defined.contains(subset) => {
                let hint = closest(subset, defined.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_else(|| format!(" (defined: {})", defined.join(", ")));
                cx.emit(
                    Code::SubsetNotDefined,
                    r,
                    format!("{path}.subset"),
                    format!("subset {subset:?} of {host:?} is not defined in its DestinationRule{hint}"),
                );
            }
            _ => {}
        }
    }
}

fn check_weights(cx: &mut Context, r: &Resource, weights: &[Option<i64>], path: &str) {
    if weights.len() < 2 {
        return;
    }
    let sum: i64 = weights.iter().map(|w| w.unwrap_or(0)).sum();
    if sum != 100 {
        cx.emit(
            Code::WeightsNotHundred,
            r,
            path,
            format!("weights of {} destinations sum to {sum}, not 100", weights.len()),
        );
    }
}

fn virtual_services(cx: &mut Context) {
    let mut mesh_hosts: BTreeMap<String, ResourceRef> = BTreeMap::new();
    for l in cx.resources {
        let r = &l.resource;
        let Resource::VirtualService(o) = r else { continue };
        let ns = r.namespace().unwrap_or("default").to_string();
        let s = &o.spec;
        let bound_to_mesh = s.gateways.is_empty() || s.gateways.iter().any(|g| g == "mesh");
        for (i, h) in s.hosts.iter().enumerate() {
            let host = fqdn(&h.0, &ns);
            if bound_to_mesh {
                match mesh_hosts.get(&host) {
                    Some(first) => cx.emit(
                        Code::ConflictingVirtualServices,
                        r,
                        format!("spec.hosts[{i}]"),
                        format!(
                            "host {host:?} is also routed by {first}; sidecars use only one VirtualService per host, so merge them"
                        ),
                    ),
                    None => {
                        mesh_hosts.insert(host, r.reference());
                    }
                }
            }
        }
        for (i, g) in s.gateways.iter().enumerate() {
            if g == "mesh" {
                continue;
            }
            let q = if g.contains('/') { g.clone() } else { format!("{ns}/{g}") };
            if !cx.istio_gateways.contains(&q) {
                let hint = closest(&q, cx.istio_gateways.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default();
                cx.emit(
                    Code::GatewayNotFound,
                    r,
                    format!("spec.gateways[{i}]"),
                    format!("gateway {q:?} is not defined{hint}; these routes will not be served"),
                );
            }
        }
        for (i, h) in s.http.iter().enumerate() {
            let p = format!("spec.http[{i}]");
            if let Some((earlier, why)) = shadowed_by(&s.http[..i], h) {
                cx.emit(Code::UnreachableRoute, r, &p, format!("spec.http[{earlier}] already takes every request this route matches ({why}), so it is never used"));
            }
            for (j, d) in h.route.iter().enumerate() {
                check_destination(cx, r, &d.destination, &ns, &format!("{p}.route[{j}].destination"));
            }
            check_weights(cx, r, &h.route.iter().map(|d| d.weight).collect::<Vec<_>>(), &format!("{p}.route"));
            if let Some(m) = &h.mirror {
                check_destination(cx, r, m, &ns, &format!("{p}.mirror"));
            }
            for (j, m) in h.mirrors.iter().enumerate() {
                check_destination(cx, r, &m.destination, &ns, &format!("{p}.mirrors[{j}].destination"));
            }
            if let Some(retry) = &h.retries {
                let non_idempotent: Vec<&str> = h
                    .matches
                    .iter()
                    .filter_map(|m| m.method.as_ref().and_then(|mm| mm.exact.as_deref()))
                    .filter(|m| matches!(*m, "POST" | "PATCH"))
                    .collect();
                if retry.attempts > 0 && !non_idempotent.is_empty() {
                    cx.emit(
                        Code::RetryNonIdempotent,
                        r,
                        format!("{p}.retries"),
                        format!(
                            "retries on {} requests can apply a change twice; retry only on connect-failure/refused-stream or make the handler idempotent",
                            non_idempotent.join("/")
                        ),
                    );
                }
            }
        }
        for (kind, routes) in [("tcp", s.tcp.iter().map(|t| &t.route).collect::<Vec<_>>()), ("tls", s.tls.iter().map(|t| &t.route).collect())] {
            for (i, route) in routes.into_iter().enumerate() {
                for (j, d) in route.iter().enumerate() {
                    check_destination(cx, r, &d.destination, &ns, &format!("spec.{kind}[{i}].route[{j}].destination"));
                }
                check_weights(cx, r, &route.iter().map(|d| d.weight).collect::<Vec<_>>(), &format!("spec.{kind}[{i}].route"));
            }
        }
    }
}

/// Does string condition `a` hold for every value that satisfies `b`?
fn string_covers(a: &istio::StringMatch, b: &istio::StringMatch) -> bool {
    match (a, b) {
        (istio::StringMatch { exact: Some(x), .. }, istio::StringMatch { exact: Some(y), .. }) => x == y,
        (istio::StringMatch { prefix: Some(p), .. }, istio::StringMatch { exact: Some(v), .. } | istio::StringMatch { prefix: Some(v), .. }) => v.starts_with(p.as_str()),
        (istio::StringMatch { regex: Some(x), .. }, istio::StringMatch { regex: Some(y), .. }) => x.0 == y.0,
        // An empty condition (any value present) holds for any value.
        (istio::StringMatch { exact: None, prefix: None, regex: None }, _) => true,
        _ => false,
    }
}

fn optional_covers(a: &Option<istio::StringMatch>, b: &Option<istio::StringMatch>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), Some(b)) => string_covers(a, b),
        (Some(_), None) => false,
    }
}

/// Does match `a` take every request match `b` takes? Only what can be
/// decided from the two is claimed: conditions weft cannot compare
/// (different regexes, `ignoreUriCase`) count as not covering.
fn match_covers(a: &istio::HttpMatchRequest, b: &istio::HttpMatchRequest) -> bool {
    let keyed = |a: &BTreeMap<String, istio::StringMatch>, b: &BTreeMap<String, istio::StringMatch>| a.iter().all(|(k, am)| b.get(k).is_some_and(|bm| string_covers(am, bm)));
    // Every path starts with `/`: that prefix is no condition at all.
    let uri = |m: &istio::HttpMatchRequest| m.uri.clone().filter(|u| !(u.prefix.as_deref() == Some("/") && u.exact.is_none() && u.regex.is_none()));
    a.ignore_uri_case == b.ignore_uri_case
        && optional_covers(&uri(a), &uri(b))
        && optional_covers(&a.scheme, &b.scheme)
        && optional_covers(&a.method, &b.method)
        && optional_covers(&a.authority, &b.authority)
        && keyed(&a.headers, &b.headers)
        && keyed(&a.query_params, &b.query_params)
        // Absent headers: `b` must require at least the same absences.
        && a.without_headers.iter().all(|(k, am)| b.without_headers.get(k) == Some(am))
        && a.port.is_none_or(|p| b.port == Some(p))
        && a.source_labels.0.iter().all(|(k, v)| b.source_labels.0.get(k) == Some(v))
        && (a.gateways.is_empty() || a.gateways == b.gateways)
        && a.source_namespace.as_ref().is_none_or(|n| b.source_namespace.as_ref() == Some(n))
}

/// The earlier rule that already takes every request `rule` matches, if
/// any: each of its matches (alternatives) is covered by one of an earlier
/// rule's, or an earlier rule matches everything. With why, for the message.
fn shadowed_by(earlier: &[istio::HttpRoute], rule: &istio::HttpRoute) -> Option<(usize, String)> {
    let any = istio::HttpMatchRequest::default();
    let catch_all = |h: &istio::HttpRoute| h.matches.is_empty() || h.matches.iter().any(|m| match_covers(m, &any));
    for (i, e) in earlier.iter().enumerate() {
        if catch_all(e) {
            return Some((i, "it matches every request".into()));
        }
        if !rule.matches.is_empty() && rule.matches.iter().all(|m| e.matches.iter().any(|em| match_covers(em, m))) {
            let why = if rule.matches.len() == 1 { "its match covers this one's" } else { "its matches cover each of this one's" };
            return Some((i, why.into()));
        }
    }
    None
}

fn route_sources(cx: &mut Context) {
    let api_of = |r: &Resource| match r {
        Resource::VirtualService(_) => Some(RouteApi::VirtualService),
        Resource::HttpRoute(_) | Resource::GrpcRoute(_) => Some(RouteApi::GatewayApi),
        Resource::TrafficSplit(_) => Some(RouteApi::TrafficSplit),
        Resource::ServiceProfile(_) => Some(RouteApi::ServiceProfile),
        _ => None,
    };
    let mut notes = Vec::new();
    for l in cx.resources {
        let r = &l.resource;
        let Some(api) = api_of(r) else { continue };
        for host in routes_hosts(r) {
            let Some(routes) = cx.mesh.routes.get(&host) else { continue };
            if routes.api >= api {
                continue;
            }
            let winner = &routes.sources[0];
            let extra = if api == RouteApi::ServiceProfile { " (its retry budget still applies)" } else { "" };
            notes.push(Message::new(
                Code::RouteSourceOverlap,
                format!(
                    "{host:?} is routed by {winner}, which takes precedence (VirtualService > HTTPRoute/GRPCRoute > TrafficSplit > ServiceProfile); this resource's routes are not used{extra}"
                ),
            ).resource(r.reference()));
        }
    }
    cx.out.extend(notes);
}

/// Mesh hosts a route resource attaches to.
fn routes_hosts(r: &Resource) -> Vec<String> {
    let ns = r.namespace().unwrap_or("default");
    match r {
        Resource::VirtualService(o) if o.spec.gateways.is_empty() || o.spec.gateways.iter().any(|g| g == "mesh") => {
            o.spec.hosts.iter().map(|h| fqdn(&h.0, ns)).collect()
        }
        Resource::HttpRoute(o) => o.spec.parent_refs.iter().filter(|p| p.is_service()).map(|p| service_fqdn(&p.name, p.namespace.as_deref().unwrap_or(ns))).collect(),
        Resource::GrpcRoute(o) => o.spec.parent_refs.iter().filter(|p| p.is_service()).map(|p| service_fqdn(&p.name, p.namespace.as_deref().unwrap_or(ns))).collect(),
        Resource::TrafficSplit(o) => vec![fqdn(&o.spec.service, ns)],
        Resource::ServiceProfile(o) => vec![o.metadata.name.clone()],
        _ => vec![],
    }
}

fn gateway_api_refs(cx: &mut Context) {
    for l in cx.resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("default");
        let (parents, backends): (Vec<_>, Vec<(String, &crate::types::gateway_api::HttpBackendRef)>) = match r {
            Resource::HttpRoute(o) => (
                o.spec.parent_refs.clone(),
                o.spec.rules.iter().enumerate().flat_map(|(i, rule)| rule.backend_refs.iter().enumerate().map(move |(j, b)| (format!("spec.rules[{i}].backendRefs[{j}]"), b))).collect(),
            ),
            Resource::GrpcRoute(o) => (
                o.spec.parent_refs.clone(),
                o.spec.rules.iter().enumerate().flat_map(|(i, rule)| rule.backend_refs.iter().enumerate().map(move |(j, b)| (format!("spec.rules[{i}].backendRefs[{j}]"), b))).collect(),
            ),
            _ => continue,
        };
        for (i, p) in parents.iter().enumerate() {
            let pns = p.namespace.as_deref().unwrap_or(ns);
            if p.is_gateway() {
                let q = format!("{pns}/{}", p.name);
                if !cx.k8s_gateways.contains(&q) {
                    cx.emit(Code::GatewayNotFound, r, format!("spec.parentRefs[{i}]"), format!("Gateway {q:?} is not defined; this route will not be served"));
                }
            } else if p.is_service() && cx.has_services {
                let host = service_fqdn(&p.name, pns);
                if !cx.host_exists(&host) {
                    cx.emit(Code::DestinationHostNotFound, r, format!("spec.parentRefs[{i}]"), format!("parent Service {host:?} is not defined"));
                }
            }
        }
        for (path, b) in backends {
            let is_service = matches!(b.kind.as_deref(), None | Some("Service")) && matches!(b.group.as_deref(), None | Some(""));
            if is_service && cx.has_services {
                let host = service_fqdn(&b.name, b.namespace.as_deref().unwrap_or(ns));
                if !cx.host_exists(&host) {
                    let hint = cx.host_hint(&host);
                    cx.emit(Code::DestinationHostNotFound, r, format!("{path}.name"), format!("backend Service {host:?} is not defined{hint}"));
                }
            }
        }
        if let Resource::HttpRoute(o) = r {
            for (i, rule) in o.spec.rules.iter().enumerate() {
                let posts = rule.matches.iter().any(|m| matches!(m.method.as_deref(), Some("POST" | "PATCH")));
                if posts && rule.retry.as_ref().is_some_and(|x| x.attempts.unwrap_or(2) > 0) {
                    cx.emit(Code::RetryNonIdempotent, r, format!("spec.rules[{i}].retry"), "retries on POST/PATCH requests can apply a change twice");
                }
            }
        }
    }
}

fn destination_rules(cx: &mut Context) {
    let mut hosts: BTreeMap<(String, Option<BTreeMap<String, String>>), ResourceRef> = BTreeMap::new();
    for l in cx.resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("default");
        match r {
            Resource::DestinationRule(o) => {
                let host = fqdn(&o.spec.host.0, ns);
                if cx.has_services && !cx.host_exists(&host) {
                    let hint = cx.host_hint(&host);
                    cx.emit(Code::DestinationHostNotFound, r, "spec.host", format!("host {host:?} is not a Service or ServiceEntry{hint}; this rule applies to nothing"));
                }
                let key = (host.clone(), o.spec.workload_selector.as_ref().map(|s| s.match_labels.0.clone()));
                if let Some(first) = hosts.get(&key) {
                    cx.emit(Code::ConflictingDestinationRules, r, "spec.host", format!("host {host:?} already has {first}; only the oldest DestinationRule for a host applies"));
                } else {
                    hosts.insert(key, r.reference());
                }
                // Subsets whose labels select no running workload of the service.
                let svc = cx.mesh.services.get(&host).cloned();
                if let Some(svc) = svc.filter(|s| !s.external && cx.workload_namespaces.contains(&s.namespace)) {
                    for (i, s) in o.spec.subsets.iter().enumerate() {
                        let mut labels = svc.selector.clone();
                        labels.extend(s.labels.0.clone());
                        if !cx.workloads_match(&svc.namespace, &labels) {
                            cx.emit(
                                Code::SubsetMatchesNoWorkload,
                                r,
                                format!("spec.subsets[{i}].labels"),
                                format!("subset {:?} selects no workload of {host:?} (labels {})", s.name, fmt_labels(&labels)),
                            );
                        }
                    }
                }
            }
            Resource::ServiceProfile(o) => {
                for (i, route) in o.spec.routes.iter().enumerate() {
                    let m = &route.condition;
                    let method = m.method.as_deref().or(m.all.iter().find_map(|a| a.method.as_deref()));
                    if route.is_retryable == Some(true) && matches!(method, Some("POST" | "PATCH")) {
                        cx.emit(Code::RetryNonIdempotent, r, format!("spec.routes[{i}].isRetryable"), format!("route {:?} retries {} requests, which can apply a change twice", route.name, method.unwrap_or("")));
                    }
                }
            }
            _ => {}
        }
    }
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(","))
}

fn service_ports(cx: &mut Context) {
    for l in cx.resources {
        let r = &l.resource;
        let Resource::Service(o) = r else { continue };
        for (i, p) in o.spec.ports.iter().enumerate() {
            let named = p.app_protocol.as_deref().and_then(mesh::Protocol::from_name).is_some()
                || p.name.as_deref().and_then(mesh::Protocol::from_name).is_some();
            if !named {
                cx.emit(
                    Code::PortWithoutProtocol,
                    r,
                    format!("spec.ports[{i}]"),
                    format!(
                        "port {} ({}) does not name its protocol; name it like \"http-web\" or \"grpc\", or set appProtocol, so routing and metrics apply (the proxy will detect it otherwise)",
                        p.port.0,
                        p.name.as_deref().unwrap_or("unnamed")
                    ),
                );
            }
        }
    }
}

fn selectors(cx: &mut Context) {
    for l in cx.resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("default").to_string();
        let selector: Option<(&str, &Labels)> = match r {
            Resource::PeerAuthentication(o) => o.spec.selector.as_ref().map(|s| ("spec.selector", &s.match_labels)),
            Resource::AuthorizationPolicy(o) => o.spec.selector.as_ref().map(|s| ("spec.selector", &s.match_labels)),
            Resource::RequestAuthentication(o) => o.spec.selector.as_ref().map(|s| ("spec.selector", &s.match_labels)),
            Resource::Telemetry(o) => o.spec.selector.as_ref().map(|s| ("spec.selector", &s.match_labels)),
            Resource::Sidecar(o) => o.spec.workload_selector.as_ref().map(|s| ("spec.workloadSelector.labels", &s.labels)),
            Resource::IstioGateway(o) if !o.spec.selector.is_empty() => Some(("spec.selector", &o.spec.selector)),
            Resource::Server(o) => o.spec.pod_selector.as_ref().map(|s| ("spec.podSelector", &s.match_labels)),
            _ => None,
        };
        let Some((field, labels)) = selector else { continue };
        if labels.is_empty() {
            continue;
        }
        // An Istio Gateway selects gateway pods in any namespace.
        let matched = if matches!(r, Resource::IstioGateway(_)) {
            !cx.has_workloads || cx.mesh.workloads.iter().any(|w| labels.is_subset_of(&w.labels))
        } else {
            !cx.workload_namespaces.contains(&ns) || cx.workloads_match(&ns, &labels.0)
        };
        if !matched {
            cx.emit(
                Code::SelectorMatchesNoWorkload,
                r,
                field,
                format!("selector {} matches no workload in namespace {ns:?}; this {} has no effect", fmt_labels(&labels.0), r.kind()),
            );
        }
    }
}

fn scope_key(s: &PolicyScope) -> String {
    match s {
        PolicyScope::Mesh => "the whole mesh".into(),
        PolicyScope::Namespace(n) => format!("namespace {n:?}"),
        PolicyScope::Workload { namespace, labels } => format!("workloads {} in namespace {namespace:?}", fmt_labels(labels)),
    }
}

fn peer_authentications(cx: &mut Context) {
    let mut seen: BTreeMap<String, (ResourceRef, MtlsMode)> = BTreeMap::new();
    let mut msgs = Vec::new();
    for pa in &cx.mesh.peer_authentication {
        let key = scope_key(&pa.scope);
        match seen.get(&key) {
            Some((first, mode)) => msgs.push(
                Message::new(
                    Code::ConflictingPeerAuthentications,
                    format!(
                        "{key} already has {first} (mode {mode}); with two at one scope only the oldest applies (this one says {}): keep one",
                        pa.mode
                    ),
                )
                .resource(pa.source.clone()),
            ),
            None => {
                seen.insert(key, (pa.source.clone(), pa.mode));
            }
        }
    }
    cx.out.extend(msgs);
}

/// The effective server-side mTLS mode for a service's workloads, with the policy that set it.
fn effective_mode(m: &Mesh, svc: &mesh::Service) -> Option<(MtlsMode, ResourceRef)> {
    let pick = |pred: &dyn Fn(&PolicyScope) -> bool| {
        m.peer_authentication
            .iter()
            .find(|p| pred(&p.scope) && p.mode != MtlsMode::Unset)
            .map(|p| (p.mode, p.source.clone()))
    };
    pick(&|s| matches!(s, PolicyScope::Workload { namespace, labels } if *namespace == svc.namespace && !svc.selector.is_empty() && labels.iter().all(|(k, v)| svc.selector.get(k) == Some(v))))
        .or_else(|| pick(&|s| matches!(s, PolicyScope::Namespace(n) if *n == svc.namespace)))
        .or_else(|| pick(&|s| matches!(s, PolicyScope::Mesh)))
}

/// Valid configuration the proxy does not act on yet: said out loud, so a
/// user does not find out from traffic.
fn not_applied_yet(cx: &mut Context) {
    for l in cx.resources {
        let r = &l.resource;
        let mut found: Vec<(String, String)> = Vec::new();
        match r {
            Resource::DestinationRule(o) => {
                let origination = |t: Option<&istio::ClientTlsSettings>| {
                    t.and_then(|t| t.mode).filter(|m| matches!(m, istio::ClientTlsMode::Simple | istio::ClientTlsMode::Mutual))
                };
                let tp = o.spec.traffic_policy.as_ref();
                let mut places: Vec<(String, Option<&istio::ClientTlsSettings>)> = vec![("spec.trafficPolicy.tls.mode".into(), tp.and_then(|t| t.tls.as_ref()))];
                for (i, pl) in tp.map(|t| t.port_level_settings.as_slice()).unwrap_or(&[]).iter().enumerate() {
                    places.push((format!("spec.trafficPolicy.portLevelSettings[{i}].tls.mode"), pl.tls.as_ref()));
                }
                for (i, sub) in o.spec.subsets.iter().enumerate() {
                    places.push((format!("spec.subsets[{i}].trafficPolicy.tls.mode"), sub.traffic_policy.as_ref().and_then(|t| t.tls.as_ref())));
                }
                for (field, tls) in places {
                    if origination(tls).is_some() {
                        found.push((field, "TLS origination (SIMPLE / MUTUAL) is not done by the proxy yet: traffic to this host stays as the app sends it (auto-mTLS for meshed endpoints)".into()));
                    }
                }
            }
            Resource::VirtualService(o) => {
                for (i, h) in o.spec.http.iter().enumerate() {
                    for (j, m) in h.matches.iter().enumerate() {
                        if m.authority.is_some() {
                            found.push((format!("spec.http[{i}].match[{j}].authority"), "authority matches are not evaluated yet: this match never matches".into()));
                        }
                        if m.ignore_uri_case == Some(true) {
                            found.push((format!("spec.http[{i}].match[{j}].ignoreUriCase"), "case-insensitive URI matches are not evaluated yet: this match never matches".into()));
                        }
                    }
                }
            }
            _ => {}
        }
        for (field, msg) in found {
            cx.emit(Code::NotAppliedYet, r, field, msg);
        }
    }
}

fn mtls_conflicts(cx: &mut Context) {
    for l in cx.resources {
        let r = &l.resource;
        let Resource::DestinationRule(o) = r else { continue };
        let host = fqdn(&o.spec.host.0, r.namespace().unwrap_or("default"));
        let Some(svc) = cx.mesh.services.get(&host).filter(|s| !s.external) else { continue };
        let Some((mode, by)) = effective_mode(&cx.mesh, svc) else { continue };
        if mode != MtlsMode::Strict {
            continue;
        }
        let mut disabled: Vec<String> = Vec::new();
        let tp = o.spec.traffic_policy.as_ref();
        let off = |t: Option<&istio::ClientTlsSettings>| t.and_then(|t| t.mode) == Some(istio::ClientTlsMode::Disable);
        if off(tp.and_then(|t| t.tls.as_ref())) {
            disabled.push("spec.trafficPolicy.tls.mode".into());
        }
        for (i, pl) in tp.map(|t| t.port_level_settings.as_slice()).unwrap_or(&[]).iter().enumerate() {
            if off(pl.tls.as_ref()) {
                disabled.push(format!("spec.trafficPolicy.portLevelSettings[{i}].tls.mode"));
            }
        }
        for (i, s) in o.spec.subsets.iter().enumerate() {
            if off(s.traffic_policy.as_ref().and_then(|t| t.tls.as_ref())) {
                disabled.push(format!("spec.subsets[{i}].trafficPolicy.tls.mode"));
            }
        }
        for field in disabled {
            cx.emit(
                Code::MtlsModeConflict,
                r,
                field,
                format!("clients will send plaintext to {host:?}, but {by} requires mTLS (STRICT): every request will be refused; use ISTIO_MUTUAL or remove tls"),
            );
        }
    }
}

fn gateway_credentials(cx: &mut Context) {
    if !cx.has_secrets {
        return;
    }
    for l in cx.resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("default").to_string();
        let mut refs: Vec<(String, String, String)> = Vec::new();
        match r {
            Resource::IstioGateway(o) => {
                for (i, s) in o.spec.servers.iter().enumerate() {
                    if let Some(tls) = &s.tls {
                        for name in tls.credential_name.iter().chain(tls.credential_names.iter()) {
                            refs.push((format!("spec.servers[{i}].tls.credentialName"), ns.clone(), name.clone()));
                        }
                    }
                }
            }
            Resource::Gateway(o) => {
                for (i, li) in o.spec.listeners.iter().enumerate() {
                    for (j, c) in li.tls.iter().flat_map(|t| t.certificate_refs.iter()).enumerate() {
                        if matches!(c.kind.as_deref(), None | Some("Secret")) {
                            refs.push((format!("spec.listeners[{i}].tls.certificateRefs[{j}]"), c.namespace.clone().unwrap_or(ns.clone()), c.name.clone()));
                        }
                    }
                }
            }
            _ => continue,
        }
        for (field, sns, name) in refs {
            if !cx.secrets.contains(&(sns.clone(), name.clone())) {
                cx.emit(Code::GatewayCredentialMissing, r, field, format!("TLS secret {sns}/{name} does not exist; the gateway cannot serve TLS on this port"));
            }
        }
    }
}

fn traffic_splits(cx: &mut Context) {
    if !cx.has_services {
        return;
    }
    for l in cx.resources {
        let r = &l.resource;
        let Resource::TrafficSplit(o) = r else { continue };
        let ns = r.namespace().unwrap_or("default");
        let fields = std::iter::once(("spec.service".to_string(), &o.spec.service))
            .chain(o.spec.backends.iter().enumerate().map(|(i, b)| (format!("spec.backends[{i}].service"), &b.service)));
        for (field, svc) in fields.collect::<Vec<_>>() {
            let host = fqdn(svc, ns);
            if !cx.host_exists(&host) {
                let hint = cx.host_hint(&host);
                cx.emit(Code::TrafficSplitServiceMissing, r, field, format!("Service {svc:?} does not exist in namespace {ns:?}{hint}"));
            }
        }
    }
}

/// How many pods each workload in `namespace` stands for: a Deployment its
/// replicas (1 when unset), a Pod or WorkloadEntry one.
fn pod_counts(cx: &Context, namespace: &str) -> Vec<(String, BTreeMap<String, String>, u64)> {
    let replicas: HashMap<(String, String), u64> = cx
        .resources
        .iter()
        .filter_map(|l| match &l.resource {
            Resource::Deployment(o) => Some(((l.resource.namespace().unwrap_or("default").to_string(), o.metadata.name.clone()), o.spec.replicas.unwrap_or(1) as u64)),
            _ => None,
        })
        .collect();
    cx.mesh
        .workloads
        .iter()
        .filter(|w| w.namespace == namespace)
        .map(|w| (w.name.clone(), w.labels.clone(), replicas.get(&(w.namespace.clone(), w.name.clone())).copied().unwrap_or(1)))
        .collect()
}

/// A split over Services whose selectors pick the same pods does not split
/// as written: each Service spreads its share over all the pods it selects.
/// Returns the message, with each version's effective share, when backends overlap.
fn effective_split(cx: &Context, namespace: &str, backends: &[(String, u64)]) -> Option<String> {
    let pods = pod_counts(cx, namespace);
    let total: u64 = backends.iter().map(|(_, w)| *w).sum();
    if total == 0 || pods.is_empty() {
        return None;
    }
    let selected: Vec<Vec<usize>> = backends
        .iter()
        .map(|(svc, _)| match cx.mesh.services.get(&fqdn(svc, namespace)) {
            Some(s) if !s.selector.is_empty() => pods.iter().enumerate().filter(|(_, (_, l, _))| s.selector.iter().all(|(k, v)| l.get(k) == Some(v))).map(|(i, _)| i).collect(),
            _ => Vec::new(),
        })
        .collect();
    let overlap = (0..backends.len()).flat_map(|a| (a + 1..backends.len()).map(move |b| (a, b))).find(|(a, b)| selected[*a].iter().any(|p| selected[*b].contains(p)))?;
    // Each backend's weight goes to its pods in proportion to their replicas.
    let mut share: BTreeMap<String, f64> = BTreeMap::new();
    for ((_, w), pods_of) in backends.iter().zip(&selected) {
        let n: u64 = pods_of.iter().map(|p| pods[*p].2).sum();
        for p in pods_of {
            let (name, labels, count) = &pods[*p];
            let key = labels.get("version").cloned().unwrap_or_else(|| name.clone());
            *share.entry(key).or_default() += *w as f64 / total as f64 * *count as f64 / n.max(1) as f64;
        }
    }
    let written: Vec<String> = backends.iter().map(|(s, w)| format!("{s} {:.0}%", *w as f64 * 100.0 / total as f64)).collect();
    let actual: Vec<String> = share.iter().map(|(k, v)| format!("{k} {:.0}%", v * 100.0)).collect();
    Some(format!(
        "backends {} and {} select the same pods, so traffic does not split as written ({}): it goes {}",
        backends[overlap.0].0,
        backends[overlap.1].0,
        written.join(", "),
        actual.join(", ")
    ))
}

fn split_overlaps(cx: &mut Context) {
    if !cx.has_services || !cx.has_workloads {
        return;
    }
    let mut found = Vec::new();
    for l in cx.resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("default");
        match r {
            Resource::TrafficSplit(o) => {
                let backends: Vec<(String, u64)> = o.spec.backends.iter().map(|b| (b.service.clone(), b.weight.milli)).collect();
                if let Some(text) = effective_split(cx, ns, &backends) {
                    found.push((r.clone(), "spec.backends".to_string(), text));
                }
            }
            Resource::HttpRoute(o) => {
                for (i, rule) in o.spec.rules.iter().enumerate() {
                    let backends: Vec<(String, u64)> = rule.backend_refs.iter().map(|b| (b.name.clone(), b.weight.unwrap_or(1).max(0) as u64)).collect();
                    if let Some(text) = effective_split(cx, ns, &backends) {
                        found.push((r.clone(), format!("spec.rules[{i}].backendRefs"), text));
                    }
                }
            }
            _ => {}
        }
    }
    for (r, field, text) in found {
        cx.emit(Code::SplitBackendsOverlap, &r, field, text);
    }
}

fn authorization(cx: &mut Context) {
    let root = cx.opts.root_namespace.clone();
    for l in cx.resources {
        let r = &l.resource;
        let Resource::AuthorizationPolicy(o) = r else { continue };
        let ns = r.namespace().unwrap_or("default");
        let action = o.spec.action.unwrap_or(istio::AuthzAction::Allow);
        let rules = o.spec.rules.as_deref().unwrap_or(&[]);
        let matches_all = rules.iter().any(|x| *x == istio::AuthzRule::default());
        if action == istio::AuthzAction::Deny && matches_all {
            cx.emit(Code::DenyAllNamespace, r, "spec.rules", "a DENY rule with no conditions denies every request to the selected workloads");
            continue;
        }
        if action != istio::AuthzAction::Allow || !rules.is_empty() {
            continue;
        }
        // ALLOW with no rules allows nothing. Fine as a default-deny if some
        // other ALLOW policy grants access in this namespace or mesh-wide.
        let granted = cx.resources.iter().any(|other| match &other.resource {
            Resource::AuthorizationPolicy(p) => {
                let ons = other.resource.namespace().unwrap_or("default");
                (ons == ns || ons == root)
                    && p.spec.action.unwrap_or(istio::AuthzAction::Allow) == istio::AuthzAction::Allow
                    && p.spec.rules.as_ref().is_some_and(|r| !r.is_empty())
            }
            _ => false,
        });
        if !granted {
            let scope = if ns == root && o.spec.selector.is_none() { "the whole mesh".to_string() } else { format!("namespace {ns:?}") };
            cx.emit(
                Code::DenyAllNamespace,
                r,
                "spec",
                format!("this policy allows nothing and no ALLOW policy in {scope} grants access: every request to the selected workloads will be denied (403)"),
            );
        }
    }
}

/// What the rules of each policy say, against the rest of the config:
/// principals in the wrong form or trust domain, HTTP fields where the
/// traffic is TCP, rules that can never take effect, parts that cannot be
/// enforced exactly.
fn authorization_rules(cx: &mut Context) {
    use crate::mesh::{AuthzAction, AuthzPolicy, AuthzRule, ValueSet};
    let mut found: Vec<(ResourceRef, Code, String, String)> = Vec::new();
    let policies: Vec<AuthzPolicy> = cx.mesh.authorization.clone();
    for p in &policies {
        let r = p.source.clone();
        let istio = r.kind == "AuthorizationPolicy" && p.server.is_none();
        let field = |i: usize, rest: &str| if istio { format!("spec.rules[{i}]{rest}") } else { "spec".to_string() };
        if let Some(why) = &p.inexact {
            found.push((r.clone(), Code::InexactPolicy, "spec".into(), why.clone()));
        }
        for (i, rule) in p.rules.iter().enumerate() {
            for (j, src) in rule.from.iter().enumerate() {
                for pr in src.principals.values.iter().chain(&src.principals.not_values) {
                    if pr.contains(".serviceaccount.identity.linkerd.") {
                        found.push((
                            r.clone(),
                            Code::PrincipalForm,
                            field(i, &format!(".from[{j}].source.principals")),
                            format!("{pr:?} is a Linkerd identity; Istio principals are written TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT, so this matches nothing"),
                        ));
                        continue;
                    }
                    let td = pr.split('/').next().unwrap_or("");
                    if pr.contains('/') && !td.contains('*') && td != cx.opts.trust_domain {
                        found.push((
                            r.clone(),
                            Code::ForeignTrustDomain,
                            field(i, &format!(".from[{j}].source.principals")),
                            format!("{pr:?} is in trust domain {td:?}, but this mesh's is {:?}: no workload has that identity", cx.opts.trust_domain),
                        ));
                    }
                }
            }
            // A field whose every value is also excluded can never match.
            let contradicts = |v: &ValueSet| !v.values.is_empty() && v.values.iter().all(|x| v.not_values.contains(x));
            let never = rule.from.iter().any(|s| [&s.principals, &s.namespaces, &s.ip_blocks, &s.remote_ip_blocks, &s.request_principals].into_iter().any(contradicts))
                || rule.to.iter().any(|o| [&o.hosts, &o.ports, &o.methods, &o.paths].into_iter().any(contradicts))
                || rule.when.iter().any(|c| contradicts(&c.values));
            if istio && p.rules[..i].iter().any(|earlier| *earlier == AuthzRule::default()) {
                found.push((r.clone(), Code::UnreachableAuthzRule, field(i, ""), "an earlier rule of this policy matches every request, so this rule never decides anything".into()));
            } else if never && istio {
                found.push((r.clone(), Code::UnreachableAuthzRule, field(i, ""), "every value this rule accepts is also in its not-values: it never matches".into()));
            }
        }
        // HTTP-only fields where the traffic is TCP.
        let tcp_ports = tcp_ports_of(&cx.mesh, &p.scope);
        if tcp_ports.is_empty() || p.action == AuthzAction::Custom {
            continue;
        }
        for (i, rule) in p.rules.iter().enumerate() {
            let http_only = rule.from.iter().any(|s| !s.request_principals.is_any())
                || rule.to.iter().any(|o| !o.hosts.is_any() || !o.methods.is_any() || !o.paths.is_any())
                || rule.when.iter().any(|c| c.key.starts_with("request.headers") || c.key.starts_with("request.auth."));
            if !http_only {
                continue;
            }
            let rule_ports: Vec<u16> = rule.to.iter().flat_map(|o| o.ports.values.iter().filter_map(|x| x.parse().ok())).collect();
            let hit: Vec<u16> = tcp_ports.iter().copied().filter(|tp| rule_ports.is_empty() || rule_ports.contains(tp)).collect();
            if hit.is_empty() {
                continue;
            }
            let ports = hit.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            let text = if p.action == AuthzAction::Deny {
                format!("port {ports} carries TCP, where HTTP fields do not exist: Istio (and weft) ignore them there, so this DENY rule refuses every TCP connection its other fields match")
            } else {
                format!("port {ports} carries TCP, where HTTP fields do not exist: this rule never matches connections there (they are denied if no other rule allows them)")
            };
            found.push((r.clone(), Code::HttpFieldsOnTcp, field(i, ""), text));
        }
    }
    for (r, code, field, text) in found {
        cx.out.push(Message::new(code, text).resource(r).field(field));
    }
}

/// The TCP ports (declared by Services, or Linkerd Servers' `opaque`) of the
/// workloads a policy scope selects.
fn tcp_ports_of(m: &Mesh, scope: &PolicyScope) -> BTreeSet<u16> {
    use crate::mesh::Protocol as P;
    let overlaps = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
        !a.is_empty() && !b.is_empty() && (a.iter().all(|(k, v)| b.get(k) == Some(v)) || b.iter().all(|(k, v)| a.get(k) == Some(v)))
    };
    let in_scope = |ns: &str, sel: &BTreeMap<String, String>| match scope {
        PolicyScope::Mesh => true,
        PolicyScope::Namespace(n) => n == ns,
        PolicyScope::Workload { namespace, labels } => namespace == ns && overlaps(labels, sel),
    };
    let mut out = BTreeSet::new();
    for svc in m.services.values().filter(|s| !s.external && in_scope(&s.namespace, &s.selector)) {
        for p in &svc.ports {
            if matches!(p.protocol, P::Tcp) {
                out.insert(p.target_port.unwrap_or(p.port));
            }
        }
    }
    for s in m.servers.iter().filter(|s| in_scope(&s.namespace, &s.selector)) {
        if let (Some(P::Tcp), crate::mesh::ServerPort::Number(n)) = (s.protocol, &s.port) {
            out.insert(*n);
        }
    }
    out
}

/// Policy targets that name nothing: an Istio targetRef Service, a Linkerd
/// Server, HTTPRoute or authentication that is not in the config.
fn authorization_targets(cx: &mut Context) {
    let exists = |kinds: &[&str], ns: &str, name: &str| {
        cx.resources.iter().any(|l| kinds.contains(&l.resource.kind()) && l.resource.namespace().unwrap_or("default") == ns && l.resource.name() == name)
    };
    let mut found = Vec::new();
    for l in cx.resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("default");
        match r {
            Resource::AuthorizationPolicy(o) if cx.has_services => {
                for (path, t) in o.spec.target_ref.iter().map(|t| ("spec.targetRef".to_string(), t)).chain(o.spec.target_refs.iter().enumerate().map(|(i, t)| (format!("spec.targetRefs[{i}]"), t))) {
                    let tns = t.namespace.as_deref().unwrap_or(ns);
                    if t.kind == "Service" && !exists(&["Service"], tns, &t.name) {
                        found.push((r.reference(), format!("{path}.name"), format!("Service {tns}/{} is not in the config: this policy selects no workload", t.name)));
                    }
                }
            }
            Resource::ServerAuthorization(o) => {
                if let Some(n) = &o.spec.server.name {
                    if !exists(&["Server"], ns, n) {
                        found.push((r.reference(), "spec.server.name".into(), format!("Server {ns}/{n} is not in the config: this authorization applies to nothing")));
                    }
                }
            }
            Resource::LinkerdAuthorizationPolicy(o) => {
                let t = &o.spec.target_ref;
                let tns = t.namespace.as_deref().unwrap_or(ns);
                if matches!(t.kind.as_str(), "Server" | "HTTPRoute") && !exists(&[t.kind.as_str()], tns, &t.name) {
                    found.push((r.reference(), "spec.targetRef.name".into(), format!("{} {tns}/{} is not in the config: this policy applies to nothing", t.kind, t.name)));
                }
                for (i, a) in o.spec.required_authentication_refs.iter().enumerate() {
                    let ans = a.namespace.as_deref().unwrap_or(ns);
                    if a.kind != "ServiceAccount" && !exists(&[a.kind.as_str()], ans, &a.name) {
                        found.push((
                            r.reference(),
                            format!("spec.requiredAuthenticationRefs[{i}].name"),
                            format!("{} {ans}/{} is not in the config: no client can satisfy this policy", a.kind, a.name),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    for (r, field, text) in found {
        cx.out.push(Message::new(Code::PolicyTargetNotFound, text).resource(r).field(field));
    }
}

fn context_notes(cx: &mut Context) {
    let needs_services = cx.resources.iter().any(|l| {
        matches!(l.resource, Resource::VirtualService(_) | Resource::DestinationRule(_) | Resource::HttpRoute(_) | Resource::GrpcRoute(_) | Resource::TrafficSplit(_))
    });
    if needs_services && !cx.has_services {
        cx.out.push(Message::new(
            Code::ContextMissing,
            "the input has no Service or ServiceEntry: destination host checks were skipped; add your Services to check them",
        ));
    }
    let needs_secrets = cx.resources.iter().any(|l| match &l.resource {
        Resource::IstioGateway(o) => o.spec.servers.iter().any(|s| s.tls.as_ref().is_some_and(|t| t.credential_name.is_some())),
        Resource::Gateway(o) => o.spec.listeners.iter().any(|li| li.tls.as_ref().is_some_and(|t| !t.certificate_refs.is_empty())),
        _ => false,
    });
    if needs_secrets && !cx.has_secrets {
        cx.out.push(Message::new(
            Code::ContextMissing,
            "the input has no Secret: gateway TLS credential checks were skipped; add the Secrets (metadata only is enough) to check them",
        ));
    }
    let needs_workloads = cx.resources.iter().any(|l| match &l.resource {
        Resource::DestinationRule(o) => !o.spec.subsets.is_empty(),
        Resource::PeerAuthentication(o) => o.spec.selector.is_some(),
        Resource::AuthorizationPolicy(o) => o.spec.selector.is_some(),
        Resource::Server(_) | Resource::Sidecar(_) | Resource::Telemetry(_) => true,
        _ => false,
    });
    if needs_workloads && !cx.has_workloads {
        cx.out.push(Message::new(
            Code::ContextMissing,
            "the input has no Pod or Deployment: checks that selectors and subsets match workloads were skipped",
        ));
    }
}
