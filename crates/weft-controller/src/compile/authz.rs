//! Who may call one workload, as its proxy enforces it: every
//! AuthorizationPolicy and Linkerd policy whose scope selects the workload
//! (root-namespace policies everywhere, a namespace's in it, a selector's
//! on matching labels), Linkerd Servers bound to the ports they name, the
//! default inbound policy (Pod annotation, else Namespace annotation, else
//! the controller's flag), and the JWT rules of RequestAuthentications with
//! their key sets (inline, or fetched by the controller).

use super::selects;
use std::collections::BTreeMap;
use weft_model::mesh::{AuthzAction, AuthzPolicy, AuthzRule, Mesh, PolicyScope, ValueSet, Workload, DEFAULT_POLICY_ANNOTATION};
use weft_proto::authz as cfg;

/// Mesh-wide authorization settings (the controller's flags).
#[derive(Debug, Clone, Default)]
pub struct MeshPolicy {
    /// Linkerd's default inbound policy where nothing else sets one.
    pub default_inbound_policy: cfg::DefaultPolicy,
    /// Name the refusing policy to authenticated callers (debugging).
    pub explain_denials: bool,
    pub path_normalization: cfg::PathNormalization,
}

/// The workload a proxy speaks for.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadRef<'a> {
    pub namespace: &'a str,
    /// Its name (a Pod's, as `weft-proxy run --workload` announces it).
    pub name: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
}

/// Istio's annotation for proxy settings; `gatewayTopology.numTrustedProxies` is read.
pub const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";

impl<'a> WorkloadRef<'a> {
    /// The declared Pod (or Deployment) it belongs to: same name, else one whose labels it carries.
    fn declared(&self, mesh: &'a Mesh) -> Option<&'a Workload> {
        let here = mesh.workloads.iter().filter(|w| w.namespace == self.namespace);
        let by_name = self.name.and_then(|n| here.clone().find(|w| w.name == n));
        by_name.or_else(|| here.clone().find(|w| !w.labels.is_empty() && w.labels.iter().all(|(k, v)| self.labels.get(k) == Some(v))))
    }
}

/// Does a policy scope select this workload?
pub fn scope_selects(scope: &PolicyScope, root: &str, w: &WorkloadRef<'_>) -> bool {
    match scope {
        PolicyScope::Mesh => true,
        PolicyScope::Namespace(n) => n == w.namespace,
        // A selector in the root namespace selects matching workloads in every namespace.
        PolicyScope::Workload { namespace, labels } => (namespace == w.namespace || namespace == root) && selects(labels, w.labels),
    }
}

/// The authorization section of one workload's proxy config. `jwks` gives
/// the key set fetched for a `jwksUri` (or an issuer's discovery document).
pub fn authorization(mesh: &Mesh, settings: &MeshPolicy, jwks: &dyn Fn(&str) -> Option<String>, w: &WorkloadRef<'_>) -> cfg::Authorization {
    let declared = w.declared(mesh);
    let no_ports = BTreeMap::new();
    let named_ports = declared.map(|d| &d.named_ports).unwrap_or(&no_ports);
    let root = mesh.root_namespace.as_str();
    let mut out = cfg::Authorization { explain_denials: settings.explain_denials, path_normalization: settings.path_normalization, ..Default::default() };

    let servers: BTreeMap<&str, Option<u16>> = mesh
        .servers
        .iter()
        .filter(|s| s.namespace == w.namespace && selects(&s.selector, w.labels))
        .map(|s| (s.name.as_str(), s.port_on(named_ports)))
        .collect();
    out.server_ports = servers.values().flatten().copied().collect();
    out.server_ports.sort();
    out.server_ports.dedup();

    for p in mesh.authorization.iter().filter(|p| scope_selects(&p.scope, root, w)) {
        let ports = match &p.server {
            None => vec![],
            // A Server whose named port this workload does not have covers nothing here.
            Some(name) => match servers.get(name.as_str()) {
                Some(Some(port)) => vec![*port],
                _ => continue,
            },
        };
        out.policies.push(policy(p, ports));
    }

    let (default, source) = default_policy(mesh, settings, declared, w.namespace);
    out.default_policy = default;
    out.default_source = source;
    out.trusted_hops = declared.and_then(|d| d.annotations.get(PROXY_CONFIG_ANNOTATION)).and_then(|v| trusted_hops(v)).unwrap_or(0);

    for ra in mesh.request_authentication.iter().filter(|r| scope_selects(&r.scope, root, w)) {
        for r in &ra.rules {
            let fetched_from = r.jwks_uri.clone().or_else(|| r.jwks.is_none().then(|| discovery_url(&r.issuer)));
            out.jwt_rules.push(cfg::JwtRule {
                source: ra.source.to_string(),
                issuer: r.issuer.clone(),
                audiences: r.audiences.clone(),
                jwks: r.jwks.clone().or_else(|| fetched_from.as_deref().and_then(jwks)).unwrap_or_default(),
                jwks_uri: fetched_from,
                from_headers: r.from_headers.iter().map(|(name, prefix)| cfg::JwtHeader { name: name.clone(), prefix: prefix.clone() }).collect(),
                from_params: r.from_params.clone(),
                from_cookies: r.from_cookies.clone(),
                output_payload_to_header: r.output_payload_to_header.clone(),
                forward_original_token: r.forward_original_token,
                output_claim_to_headers: r.output_claim_to_headers.iter().map(|(h, c)| cfg::ClaimToHeader { header: h.clone(), claim: c.clone() }).collect(),
            });
        }
    }
    out
}

/// Every key set the mesh's JWT rules need fetched, with how long to wait for each.
pub fn key_set_urls(mesh: &Mesh) -> Vec<(String, std::time::Duration)> {
    let mut out: Vec<(String, std::time::Duration)> = mesh
        .request_authentication
        .iter()
        .flat_map(|ra| &ra.rules)
        .filter(|r| r.jwks.is_none())
        .map(|r| (r.jwks_uri.clone().unwrap_or_else(|| discovery_url(&r.issuer)), r.timeout.unwrap_or(std::time::Duration::from_secs(5))))
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Where an issuer without `jwksUri` or `jwks` publishes its keys (OpenID discovery).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

fn policy(p: &AuthzPolicy, ports: Vec<u16>) -> cfg::Policy {
    cfg::Policy {
        kind: p.source.kind.clone(),
        namespace: p.source.namespace.clone().unwrap_or_default(),
        name: p.source.name.clone(),
        action: match p.action {
            AuthzAction::Allow => cfg::Action::Allow,
            AuthzAction::Audit => cfg::Action::Audit,
            // CUSTOM never gets past validation; were it here, refusing what it selects is the safe reading.
            AuthzAction::Deny | AuthzAction::Custom => cfg::Action::Deny,
        },
        dry_run: p.dry_run,
        ports,
        rules: p.rules.iter().map(rule).collect(),
    }
}

fn rule(r: &AuthzRule) -> cfg::Rule {
    let v = |s: &ValueSet| (s.values.clone(), s.not_values.clone());
    cfg::Rule {
        from: r
            .from
            .iter()
            .map(|s| {
                let (principals, not_principals) = v(&s.principals);
                let (request_principals, not_request_principals) = v(&s.request_principals);
                let (namespaces, not_namespaces) = v(&s.namespaces);
                let (ip_blocks, not_ip_blocks) = v(&s.ip_blocks);
                let (remote_ip_blocks, not_remote_ip_blocks) = v(&s.remote_ip_blocks);
                cfg::Source {
                    principals,
                    not_principals,
                    request_principals,
                    not_request_principals,
                    namespaces,
                    not_namespaces,
                    ip_blocks,
                    not_ip_blocks,
                    remote_ip_blocks,
                    not_remote_ip_blocks,
                }
            })
            .collect(),
        to: r
            .to
            .iter()
            .map(|o| {
                let ports = |l: &[String]| l.iter().filter_map(|p| p.parse().ok()).collect();
                let (hosts, not_hosts) = v(&o.hosts);
                let (methods, not_methods) = v(&o.methods);
                let (paths, not_paths) = v(&o.paths);
                cfg::Operation { hosts, not_hosts, ports: ports(&o.ports.values), not_ports: ports(&o.ports.not_values), methods, not_methods, paths, not_paths }
            })
            .collect(),
        when: r.when.iter().map(|c| cfg::Condition { key: c.key.clone(), values: c.values.values.clone(), not_values: c.values.not_values.clone() }).collect(),
    }
}

/// Linkerd's precedence: the Pod's annotation, its Namespace's, the controller's flag.
fn default_policy(mesh: &Mesh, settings: &MeshPolicy, declared: Option<&Workload>, namespace: &str) -> (cfg::DefaultPolicy, Option<String>) {
    let from = |annotations: Option<&BTreeMap<String, String>>| annotations.and_then(|a| a.get(DEFAULT_POLICY_ANNOTATION)).and_then(|v| cfg::DefaultPolicy::parse(v));
    if let Some(p) = from(declared.map(|d| &d.annotations)) {
        return (p, declared.map(|d| format!("{} {}/{} annotation {DEFAULT_POLICY_ANNOTATION}", d.source.kind, d.namespace, d.name)));
    }
    if let Some(p) = from(mesh.namespace_annotations.get(namespace)) {
        return (p, Some(format!("Namespace {namespace} annotation {DEFAULT_POLICY_ANNOTATION}")));
    }
    let source = (!settings.default_inbound_policy.is_all_unauthenticated()).then(|| "weft controller --default-inbound-policy".to_string());
    (settings.default_inbound_policy, source)
}

/// `gatewayTopology.numTrustedProxies` from `proxy.istio.io/config` (YAML or JSON).
fn trusted_hops(v: &str) -> Option<u32> {
    let doc: serde_json::Value = serde_norway::from_str(v).ok()?;
    doc.get("gatewayTopology")?.get("numTrustedProxies")?.as_u64().and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::tests::mesh;

    fn labels(s: &[(&str, &str)]) -> BTreeMap<String, String> {
        s.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn scopes_servers_and_defaults_select_per_workload() {
        let m = mesh(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [quarantine]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: backend}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: backend, annotations: {istio.io/dry-run: "true"}}
spec: {selector: {matchLabels: {app: api}}, rules: [{to: [{operation: {ports: ["8080"]}}]}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: backend, annotations: {config.linkerd.io/default-inbound-policy: all-authenticated}}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: backend, labels: {app: api}, annotations: {config.linkerd.io/default-inbound-policy: deny, proxy.istio.io/config: "gatewayTopology: {numTrustedProxies: 2}"}}
spec: {containers: [{name: api, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: api-http, namespace: backend}
spec: {podSelector: {matchLabels: {app: api}}, port: http}
"#,
        );
        let api = labels(&[("app", "api")]);
        let none = |_: &str| None;
        let a = authorization(&m, &MeshPolicy::default(), &none, &WorkloadRef { namespace: "backend", name: Some("api-0"), labels: &api });
        let names: Vec<(&str, &str, bool, &[u16])> = a.policies.iter().map(|p| (p.kind.as_str(), p.name.as_str(), p.dry_run, p.ports.as_slice())).collect();
        assert_eq!(
            names,
            [
                ("AuthorizationPolicy", "mesh-wide", false, &[][..]),
                ("AuthorizationPolicy", "deny-all", false, &[][..]),
                ("AuthorizationPolicy", "api", true, &[][..]),
                ("Server", "api-http", false, &[8080][..]),
            ]
        );
        assert_eq!(a.server_ports, [8080], "the Server's named port, resolved on the Pod");
        assert_eq!((a.default_policy, a.default_source.as_deref()), (cfg::DefaultPolicy::Deny, Some("Pod backend/api-0 annotation config.linkerd.io/default-inbound-policy")));
        assert_eq!(a.trusted_hops, 2);
        // Another workload of the namespace: not the selector's, the Namespace's default.
        let web = labels(&[("app", "web")]);
        let b = authorization(&m, &MeshPolicy::default(), &none, &WorkloadRef { namespace: "backend", name: Some("web-0"), labels: &web });
        assert_eq!(b.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["mesh-wide", "deny-all"]);
        assert_eq!(b.default_policy, cfg::DefaultPolicy::AllAuthenticated);
        // Elsewhere: only the mesh-wide policy, the controller's default.
        let settings = MeshPolicy { default_inbound_policy: cfg::DefaultPolicy::ClusterAuthenticated, ..Default::default() };
        let c = authorization(&m, &settings, &none, &WorkloadRef { namespace: "shop", name: None, labels: &web });
        assert_eq!(c.policies.len(), 1);
        assert_eq!(c.default_policy, cfg::DefaultPolicy::ClusterAuthenticated);
        // What the controller compiled, the proxy's evaluator accepts.
        for x in [&a, &b, &c] {
            weft_policy::Authorizer::new(x, Some("cluster.local")).unwrap();
        }
    }

    #[test]
    fn jwt_rules_carry_inline_or_fetched_keys() {
        let m = mesh(
            r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  jwtRules:
  - {issuer: "https://issuer.test", jwksUri: "http://127.0.0.1:9/jwks.json", outputPayloadToHeader: x-jwt}
  - {issuer: "https://accounts.test"}
  - {issuer: "inline", jwks: '{"keys": []}', fromHeaders: [{name: x-token, prefix: "Token "}]}
"#,
        );
        let l = labels(&[("app", "web")]);
        let fetched = |uri: &str| (uri == "http://127.0.0.1:9/jwks.json").then(|| r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_string());
        let a = authorization(&m, &MeshPolicy::default(), &fetched, &WorkloadRef { namespace: "shop", name: None, labels: &l });
        assert_eq!(a.jwt_rules.len(), 3);
        assert!(a.jwt_rules[0].jwks.contains("oct"));
        assert_eq!(a.jwt_rules[1].jwks_uri.as_deref(), Some("https://accounts.test/.well-known/openid-configuration"));
        assert_eq!(a.jwt_rules[1].jwks, "", "not fetched: every token of that issuer is refused");
        assert_eq!(a.jwt_rules[2].from_headers[0].prefix, "Token ");
        assert_eq!(a.jwt_rules[0].source, "RequestAuthentication shop/jwt");
    }
}
