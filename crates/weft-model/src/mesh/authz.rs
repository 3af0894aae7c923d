//! Authorization and request authentication in the model. Istio's
//! `AuthorizationPolicy` and `RequestAuthentication` keep their shape (rules
//! of from / to / when). Linkerd's `Server`, `ServerAuthorization`, and
//! `AuthorizationPolicy` (with `MeshTLSAuthentication`,
//! `NetworkAuthentication`, `ServiceAccount` and `HTTPRoute` references)
//! become ALLOW policies of the same shape, bound to their Server's port,
//! so the controller compiles one list and the proxy evaluates one list.
//!
//! Linkerd identities (`web.shop.serviceaccount.identity.linkerd.cluster.local`,
//! `*.shop.serviceaccount...`, `spiffe://...`, `*`) become Istio principals
//! (`cluster.local/ns/shop/sa/web`, `cluster.local/ns/shop/sa/*`).

use super::{fqdn, scope, Mesh, PolicyScope, Protocol};
use crate::diag::ResourceRef;
use crate::load::Loaded;
use crate::resource::{Object, Resource};
use crate::types::{gateway_api as gw, istio, linkerd};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::types::istio::DRY_RUN_ANNOTATION;
pub use crate::types::linkerd::{DEFAULT_POLICY_ANNOTATION, DEFAULT_POLICIES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthzAction {
    Allow,
    Deny,
    Audit,
    /// An external authorizer (not supported: validation refuses it).
    Custom,
}

/// One list of a rule: a value matches if it matches any entry of `values`
/// and none of `not_values`. Empty `values` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValueSet {
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

impl ValueSet {
    pub fn new(values: &[String], not_values: &[String]) -> ValueSet {
        ValueSet { values: values.to_vec(), not_values: not_values.to_vec() }
    }
    pub fn of(values: Vec<String>) -> ValueSet {
        ValueSet { values, not_values: vec![] }
    }
    pub fn is_any(&self) -> bool {
        self.values.is_empty() && self.not_values.is_empty()
    }
}

/// Who is calling: every non-empty list must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthzSource {
    /// Istio principals: `cluster.local/ns/a/sa/b`, no `spiffe://`.
    pub principals: ValueSet,
    pub request_principals: ValueSet,
    pub namespaces: ValueSet,
    pub ip_blocks: ValueSet,
    pub remote_ip_blocks: ValueSet,
}

/// What is called: every non-empty list must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthzOperation {
    pub hosts: ValueSet,
    pub ports: ValueSet,
    pub methods: ValueSet,
    pub paths: ValueSet,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthzCondition {
    pub key: String,
    pub values: ValueSet,
}

/// Matches when any `from` (or none given), any `to` (or none given) and every `when` match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthzRule {
    pub from: Vec<AuthzSource>,
    pub to: Vec<AuthzOperation>,
    pub when: Vec<AuthzCondition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthzPolicy {
    pub scope: PolicyScope,
    pub action: AuthzAction,
    /// Evaluated and reported, never enforced.
    pub dry_run: bool,
    /// ALLOW with no rules allows nothing; DENY with none denies nothing.
    pub rules: Vec<AuthzRule>,
    /// Bound to this Linkerd Server (same namespace): only its port.
    pub server: Option<String>,
    /// Some of the YAML could not be expressed exactly (a regex route match):
    /// those parts match nothing, and analysis says so.
    pub inexact: Option<String>,
    pub source: ResourceRef,
}

/// The port of a Linkerd Server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ServerPort {
    Number(u16),
    /// A container port name, resolved per workload.
    Name(String),
}

/// A Linkerd `Server`: a port of the workloads it selects, with its own authorizations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkerdServer {
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub port: ServerPort,
    /// `proxyProtocol`, as a declared protocol.
    pub protocol: Option<Protocol>,
    /// `accessPolicy` (v1beta3): what clients with no authorization get; default deny.
    pub access_policy: Option<String>,
    pub source: ResourceRef,
}

impl LinkerdServer {
    /// The port on a workload with these named ports.
    pub fn port_on(&self, named: &BTreeMap<String, u16>) -> Option<u16> {
        match &self.port {
            ServerPort::Number(n) => Some(*n),
            ServerPort::Name(n) => named.get(n).copied(),
        }
    }
}

/// One JWT issuer a workload trusts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Inline key set (JSON).
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    /// (header, prefix)
    pub from_headers: Vec<(String, String)>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    pub output_payload_to_header: Option<String>,
    pub forward_original_token: bool,
    /// (header, claim)
    pub output_claim_to_headers: Vec<(String, String)>,
    /// How long the controller waits for `jwksUri`.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JwtPolicy {
    pub scope: PolicyScope,
    pub rules: Vec<JwtRule>,
    pub source: ResourceRef,
}

/// Fills the model's authorization from every policy resource; runs after
/// the Services are known (a `targetRef` names one).
pub(super) fn build(resources: &[Loaded], m: &mut Mesh) {
    for l in resources {
        let r = &l.resource;
        let ns = r.namespace().unwrap_or("default").to_string();
        match r {
            Resource::Namespace(o) => {
                m.namespace_annotations.insert(o.metadata.name.clone(), o.metadata.annotations.clone());
            }
            Resource::AuthorizationPolicy(o) => {
                let action = match o.spec.action.unwrap_or(istio::AuthzAction::Allow) {
                    istio::AuthzAction::Allow => AuthzAction::Allow,
                    istio::AuthzAction::Deny => AuthzAction::Deny,
                    istio::AuthzAction::Audit => AuthzAction::Audit,
                    istio::AuthzAction::Custom => AuthzAction::Custom,
                };
                m.authorization.push(AuthzPolicy {
                    scope: istio_scope(m, &ns, o.spec.selector.as_ref(), o.spec.target_ref.iter().chain(&o.spec.target_refs)),
                    action,
                    dry_run: o.metadata.annotations.get(DRY_RUN_ANNOTATION).is_some_and(|v| v == "true"),
                    rules: o.spec.rules.iter().flatten().map(istio_rule).collect(),
                    server: None,
                    inexact: None,
                    source: r.reference(),
                });
            }
            Resource::RequestAuthentication(o) => m.request_authentication.push(JwtPolicy {
                scope: istio_scope(m, &ns, o.spec.selector.as_ref(), o.spec.target_ref.iter().chain(&o.spec.target_refs)),
                rules: o.spec.jwt_rules.iter().map(jwt_rule).collect(),
                source: r.reference(),
            }),
            Resource::Server(o) => m.servers.push(LinkerdServer {
                namespace: ns.clone(),
                name: o.metadata.name.clone(),
                selector: o.spec.pod_selector.as_ref().map(|p| p.match_labels.0.clone()).unwrap_or_default(),
                port: match &o.spec.port {
                    crate::types::common::PortRef::Number(n) => ServerPort::Number(*n),
                    crate::types::common::PortRef::Name(n) => ServerPort::Name(n.clone()),
                },
                protocol: o.spec.proxy_protocol.as_deref().and_then(server_protocol),
                access_policy: o.spec.access_policy.clone(),
                source: r.reference(),
            }),
            _ => {}
        }
    }
    linkerd(resources, m);
}

/// A Linkerd `proxyProtocol` as a declared protocol; `unknown` is detected.
fn server_protocol(p: &str) -> Option<Protocol> {
    match p {
        "HTTP/1" => Some(Protocol::Http),
        "HTTP/2" => Some(Protocol::Http2),
        "gRPC" => Some(Protocol::Grpc),
        "opaque" => Some(Protocol::Tcp),
        "TLS" => Some(Protocol::Tls),
        _ => None,
    }
}

/// Istio's scope: a selector, else targetRefs naming Services (their
/// selectors), else the namespace (the mesh in the root namespace).
fn istio_scope<'a>(
    m: &Mesh,
    ns: &str,
    selector: Option<&crate::types::common::WorkloadSelector>,
    targets: impl Iterator<Item = &'a istio::PolicyTargetReference>,
) -> PolicyScope {
    let targets: Vec<&istio::PolicyTargetReference> = targets.collect();
    if let Some(t) = targets.first() {
        // A Service's workloads are those its selector picks; anything else selects none
        // (analysis reports it). One policy with several Services takes the first.
        let labels = if t.kind == "Service" && t.group.as_deref().unwrap_or("").is_empty() {
            m.services.get(&fqdn(&t.name, t.namespace.as_deref().unwrap_or(ns))).map(|s| s.selector.clone()).unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        return PolicyScope::Workload { namespace: ns.to_string(), labels };
    }
    scope(ns, selector.map(|s| &s.match_labels.0), &m.root_namespace)
}

fn istio_rule(r: &istio::AuthzRule) -> AuthzRule {
    AuthzRule {
        from: r
            .from
            .iter()
            .map(|f| {
                let s = &f.source;
                let mut principals = ValueSet::new(&s.principals, &s.not_principals);
                // `serviceAccounts: [ns/sa]` is shorthand for a principal.
                let sa = |list: &[String]| -> Vec<String> {
                    list.iter().filter_map(|x| x.split_once('/')).map(|(n, a)| format!("{}/ns/{n}/sa/{a}", super::CLUSTER_DOMAIN)).collect()
                };
                principals.values.extend(sa(&s.service_accounts));
                principals.not_values.extend(sa(&s.not_service_accounts));
                AuthzSource {
                    principals,
                    request_principals: ValueSet::new(&s.request_principals, &s.not_request_principals),
                    namespaces: ValueSet::new(&s.namespaces, &s.not_namespaces),
                    ip_blocks: ValueSet::new(&s.ip_blocks, &s.not_ip_blocks),
                    remote_ip_blocks: ValueSet::new(&s.remote_ip_blocks, &s.not_remote_ip_blocks),
                }
            })
            .collect(),
        to: r
            .to
            .iter()
            .map(|t| {
                let o = &t.operation;
                AuthzOperation {
                    hosts: ValueSet::new(&o.hosts, &o.not_hosts),
                    ports: ValueSet::new(&o.ports, &o.not_ports),
                    methods: ValueSet::new(&o.methods, &o.not_methods),
                    paths: ValueSet::new(&o.paths, &o.not_paths),
                }
            })
            .collect(),
        when: r.when.iter().map(|c| AuthzCondition { key: c.key.clone(), values: ValueSet::new(&c.values, &c.not_values) }).collect(),
    }
}

fn jwt_rule(r: &istio::JwtRule) -> JwtRule {
    JwtRule {
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        jwks: r.jwks.clone(),
        jwks_uri: r.jwks_uri.clone(),
        from_headers: r.from_headers.iter().map(|h| (h.name.clone(), h.prefix.clone().unwrap_or_default())).collect(),
        from_params: r.from_params.clone(),
        from_cookies: r.from_cookies.clone(),
        output_payload_to_header: r.output_payload_to_header.clone(),
        forward_original_token: r.forward_original_token == Some(true),
        output_claim_to_headers: r.output_claim_to_headers.iter().map(|c| (c.header.clone(), c.claim.clone())).collect(),
        timeout: r.timeout.map(|d| d.0),
    }
}

/// A Linkerd identity as an Istio principal: `*` stays (any mesh identity),
/// `spiffe://X` is `X`, `SA.NS.serviceaccount.identity.linkerd.TD` is
/// `TD/ns/NS/sa/SA`, with `*` for SA meaning every account of NS.
pub fn linkerd_identity(id: &str) -> String {
    if id == "*" {
        return "*".into();
    }
    if let Some(s) = id.strip_prefix("spiffe://") {
        return s.to_string();
    }
    let parts: Vec<&str> = id.splitn(4, '.').collect();
    if let [sa, ns, "serviceaccount", rest] = parts.as_slice() {
        if let Some(td) = rest.strip_prefix("identity.linkerd.") {
            return format!("{td}/ns/{ns}/sa/{sa}");
        }
    }
    id.to_string()
}

/// A Linkerd network list: CIDRs allowed, with their exceptions.
fn networks(list: &[linkerd::Network]) -> (Vec<String>, Vec<String>) {
    (list.iter().map(|n| n.cidr.clone()).collect(), list.iter().flat_map(|n| n.except.iter().cloned()).collect())
}

fn sa_principal(ns: &str, name: &str) -> String {
    format!("{}/ns/{ns}/sa/{name}", super::CLUSTER_DOMAIN)
}

fn linkerd(resources: &[Loaded], m: &mut Mesh) {
    let servers = m.servers.clone();
    let server_scope = |s: &LinkerdServer| PolicyScope::Workload { namespace: s.namespace.clone(), labels: s.selector.clone() };
    let push = |m: &mut Mesh, s: &LinkerdServer, rules: Vec<AuthzRule>, inexact: Option<String>, source: ResourceRef, dry_run: bool| {
        m.authorization.push(AuthzPolicy { scope: server_scope(s), action: AuthzAction::Allow, dry_run, rules, server: Some(s.name.clone()), inexact, source });
    };
    // Every Server is an ALLOW policy on its port: what its accessPolicy lets
    // through (nothing by default); its authorizations add their own.
    for s in &servers {
        let audit = s.access_policy.as_deref() == Some("audit");
        let rules = match s.access_policy.as_deref() {
            Some("all-unauthenticated") => vec![AuthzRule::default()],
            Some("all-authenticated") => vec![AuthzRule { from: vec![AuthzSource { principals: ValueSet::of(vec!["*".into()]), ..Default::default() }], ..Default::default() }],
            Some("cluster-authenticated") => vec![AuthzRule {
                from: vec![AuthzSource { principals: ValueSet::of(vec![format!("{}/*", super::CLUSTER_DOMAIN)]), ..Default::default() }],
                ..Default::default()
            }],
            _ => vec![],
        };
        push(m, s, rules, None, s.source.clone(), audit);
    }
    let audit_of = |s: &LinkerdServer| s.access_policy.as_deref() == Some("audit");
    for l in resources {
        let ns = l.resource.namespace().unwrap_or("default");
        match &l.resource {
            Resource::ServerAuthorization(o) => {
                let c = &o.spec.client;
                let (ips, not_ips) = networks(&c.networks);
                let principals = match &c.mesh_tls {
                    Some(t) if t.unauthenticated_tls == Some(true) => ValueSet::of(vec!["*".into()]),
                    Some(t) => ValueSet::of(
                        t.identities.iter().map(|i| linkerd_identity(i)).chain(t.service_accounts.iter().map(|sa| sa_principal(sa.namespace.as_deref().unwrap_or(ns), &sa.name))).collect(),
                    ),
                    // No meshTLS and not unauthenticated: Linkerd requires an identity.
                    None if c.unauthenticated != Some(true) => ValueSet::of(vec!["*".into()]),
                    None => ValueSet::default(),
                };
                let rule = AuthzRule { from: vec![AuthzSource { principals, ip_blocks: ValueSet::new(&ips, &not_ips), ..Default::default() }], ..Default::default() };
                for s in servers.iter().filter(|s| s.namespace == ns) {
                    let selected = match (&o.spec.server.name, &o.spec.server.selector) {
                        (Some(n), _) => &s.name == n,
                        (None, Some(sel)) => sel.matches(&server_labels(resources, s)),
                        (None, None) => false,
                    };
                    if selected {
                        push(m, s, vec![rule.clone()], None, l.resource.reference(), audit_of(s));
                    }
                }
            }
            Resource::LinkerdAuthorizationPolicy(o) => {
                let from = required_sources(resources, ns, &o.spec.required_authentication_refs);
                let t = &o.spec.target_ref;
                let tns = t.namespace.as_deref().unwrap_or(ns);
                let whole = |s: &'_ LinkerdServer| Target { server: s.clone(), route: None, inexact: None };
                let targets: Vec<Target> = match t.kind.as_str() {
                    "Server" => servers.iter().filter(|s| s.namespace == tns && s.name == t.name).map(whole).collect(),
                    "Namespace" => servers.iter().filter(|s| s.namespace == t.name).map(whole).collect(),
                    "HTTPRoute" => route_targets(resources, &servers, tns, &t.name),
                    _ => vec![],
                };
                for Target { server, route, inexact } in targets {
                    let rules = match (from.as_ref(), route) {
                        // A reference to a missing authentication: nothing is authorized.
                        (None, _) => vec![],
                        (Some(sources), None) => vec![AuthzRule { from: sources.clone(), ..Default::default() }],
                        // One rule per route match: its path and method, its headers as conditions.
                        (Some(sources), Some(matches)) => {
                            matches.into_iter().map(|(op, when)| AuthzRule { from: sources.clone(), to: vec![op], when }).collect()
                        }
                    };
                    let audit = audit_of(&server);
                    push(m, &server, rules, inexact, l.resource.reference(), audit);
                }
            }
            _ => {}
        }
    }
}

/// Labels of the Server object (a ServerAuthorization may select Servers by label).
fn server_labels(resources: &[Loaded], s: &LinkerdServer) -> BTreeMap<String, String> {
    resources
        .iter()
        .find(|l| matches!(&l.resource, Resource::Server(_)) && l.resource.namespace() == Some(s.namespace.as_str()) && l.resource.name() == s.name)
        .map(|l| l.resource.metadata().labels.0.clone())
        .unwrap_or_default()
}

/// The sources a Linkerd AuthorizationPolicy requires, all at once (AND):
/// identities from MeshTLSAuthentication / ServiceAccount refs, networks
/// from NetworkAuthentication. `None` when a reference names nothing.
fn required_sources(resources: &[Loaded], ns: &str, refs: &[linkerd::TargetRef]) -> Option<Vec<AuthzSource>> {
    let mut src = AuthzSource::default();
    for a in refs {
        let ans = a.namespace.as_deref().unwrap_or(ns);
        if a.kind == "ServiceAccount" {
            src.principals.values.push(sa_principal(ans, &a.name));
            continue;
        }
        let found = resources.iter().find(|r| r.resource.namespace() == Some(ans) && r.resource.name() == a.name && r.resource.kind() == a.kind);
        match found.map(|r| &r.resource) {
            Some(Resource::MeshTlsAuthentication(mt)) => {
                src.principals.values.extend(mt.spec.identities.iter().map(|i| linkerd_identity(i)));
                for i in &mt.spec.identity_refs {
                    match i.kind.as_str() {
                        "ServiceAccount" => src.principals.values.push(sa_principal(i.namespace.as_deref().unwrap_or(ans), &i.name)),
                        "Namespace" => src.principals.values.push(format!("{}/ns/{}/sa/*", super::CLUSTER_DOMAIN, i.name)),
                        _ => {}
                    }
                }
                if src.principals.values.is_empty() {
                    return None;
                }
            }
            Some(Resource::NetworkAuthentication(na)) => {
                let (ips, not_ips) = networks(&na.spec.networks);
                src.ip_blocks.values.extend(ips);
                src.ip_blocks.not_values.extend(not_ips);
            }
            _ => return None,
        }
    }
    Some(vec![src])
}

/// What a Linkerd AuthorizationPolicy authorizes on one Server: all of it,
/// or the requests matching a route's matches (operation, conditions).
struct Target {
    server: LinkerdServer,
    route: Option<Vec<(AuthzOperation, Vec<AuthzCondition>)>>,
    inexact: Option<String>,
}

/// The Servers an HTTPRoute is attached to, with its matches. Gateway API's
/// PathPrefix matches whole segments, so `/api` is `/api` and `/api/*`. A
/// match that cannot be expressed exactly (a regex) authorizes nothing.
fn route_targets(resources: &[Loaded], servers: &[LinkerdServer], ns: &str, name: &str) -> Vec<Target> {
    let route: Option<&Object<gw::HttpRouteSpec>> = resources.iter().find_map(|l| match &l.resource {
        Resource::HttpRoute(o) | Resource::LinkerdHttpRoute(o) if l.resource.namespace() == Some(ns) && o.metadata.name == name => Some(o),
        _ => None,
    });
    let Some(route) = route else { return vec![] };
    let mut out = Vec::new();
    let mut inexact = None;
    let matches: Vec<&gw::HttpRouteMatch> = route.spec.rules.iter().flat_map(|r| &r.matches).collect();
    let default_match = gw::HttpRouteMatch::default();
    let matches = if matches.is_empty() { vec![&default_match] } else { matches };
    'matches: for mt in matches {
        let mut op = AuthzOperation::default();
        match mt.path.as_ref().map(|p| (p.kind.as_deref().unwrap_or("PathPrefix"), p.value.as_deref().unwrap_or("/"))) {
            None | Some(("PathPrefix", "/")) => {}
            Some(("Exact", v)) => op.paths.values.push(v.to_string()),
            Some(("PathPrefix", v)) => {
                let v = v.trim_end_matches('/');
                op.paths.values.extend([v.to_string(), format!("{v}/*")]);
            }
            Some((kind, v)) => {
                inexact = Some(format!("route match {kind} {v:?} cannot be enforced exactly; requests it would match are not authorized"));
                continue;
            }
        }
        if let Some(m) = &mt.method {
            op.methods.values.push(m.clone());
        }
        let mut when = Vec::new();
        for h in &mt.headers {
            if h.kind.as_deref().unwrap_or("Exact") != "Exact" {
                inexact = Some(format!("header match {} {:?} cannot be enforced exactly; requests it would match are not authorized", h.name, h.value));
                continue 'matches;
            }
            when.push(AuthzCondition { key: format!("request.headers[{}]", h.name.to_ascii_lowercase()), values: ValueSet::of(vec![h.value.clone()]) });
        }
        if !mt.query_params.is_empty() {
            inexact = Some("query parameter matches cannot be enforced exactly; requests they would match are not authorized".into());
            continue;
        }
        out.push((op, when));
    }
    servers
        .iter()
        .filter(|s| {
            route.spec.parent_refs.iter().any(|p| p.kind.as_deref() == Some("Server") && p.namespace.as_deref().unwrap_or(ns) == s.namespace && p.name == s.name)
        })
        .map(|s| Target { server: s.clone(), route: Some(out.clone()), inexact: inexact.clone() })
        .collect()
}
