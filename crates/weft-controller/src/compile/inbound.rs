//! A workload's server-side mTLS policy (PeerAuthentication) as its proxy's
//! inbound side applies it, by Istio's precedence.

use super::selects;
use std::collections::BTreeMap;
use weft_model::mesh::Mesh;
use weft_proto::config::{InboundPolicy, MtlsMode, Protocol};

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

/// What the proxy does with a port the Services declare: HTTP (http, http2,
/// grpc by name prefix or appProtocol) is always parsed, TCP (tcp, tls,
/// https, databases) never sniffed; undeclared ports are detected.
pub fn proxy_protocol(p: weft_model::mesh::Protocol) -> Protocol {
    use weft_model::mesh::Protocol as M;
    match p {
        M::Http | M::Http2 | M::Grpc => Protocol::Http,
        M::Tcp | M::Tls | M::Https => Protocol::Tcp,
        M::Detect => Protocol::Detect,
    }
}

/// What a workload's ports carry: for every Service of its namespace that
/// selects it, the declared protocol of each port, at the target port the
/// workload listens on. Two Services declaring one port differently leave it
/// detected. A Linkerd Server's `proxyProtocol` (on a numbered port) wins.
pub fn port_protocols(mesh: &Mesh, namespace: &str, labels: &BTreeMap<String, String>) -> BTreeMap<u16, Protocol> {
    let mut out: BTreeMap<u16, Protocol> = BTreeMap::new();
    let mut conflicting = Vec::new();
    for svc in mesh.services.values().filter(|s| !s.external && s.namespace == namespace && selects(&s.selector, labels)) {
        for p in &svc.ports {
            let (port, proto) = (p.target_port.unwrap_or(p.port), proxy_protocol(p.protocol));
            if proto == Protocol::Detect {
                continue;
            }
            if out.insert(port, proto).is_some_and(|was| was != proto) {
                conflicting.push(port);
            }
        }
    }
    for port in conflicting {
        out.remove(&port);
    }
    // A Linkerd Server's proxyProtocol is the most explicit statement of all.
    for s in mesh.servers.iter().filter(|s| s.namespace == namespace && selects(&s.selector, labels)) {
        if let (weft_model::mesh::ServerPort::Number(port), Some(p)) = (&s.port, s.protocol) {
            out.insert(*port, proxy_protocol(p));
        }
    }
    out
}

/// The Services that select a workload, with the workload ports they send
/// to: the server side names the Service a request was for in its metrics.
pub fn inbound_services(mesh: &Mesh, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<weft_proto::config::InboundService> {
    mesh.services
        .values()
        .filter(|s| !s.external && s.namespace == namespace && selects(&s.selector, labels))
        .map(|s| {
            let mut ports: Vec<weft_proto::config::InboundServicePort> =
                s.ports.iter().map(|p| weft_proto::config::InboundServicePort { port: p.port, target_port: p.target_port.unwrap_or(p.port) }).collect();
            ports.sort();
            ports.dedup();
            weft_proto::config::InboundService { host: s.host.clone(), name: s.host.split('.').next().unwrap_or(&s.host).to_string(), namespace: s.namespace.clone(), ports }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ep, mesh, BASE};
    use super::super::compile;
    use super::*;
    use weft_proto::config::UpstreamTls;

    #[test]
    fn declared_ports_are_parsed_or_passed_as_declared_at_the_target_port() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\nspec: {selector: {app: web}, ports: [{name: http-web, port: 80, targetPort: 8080}, {name: grpc, port: 9090}, {name: db, port: 5432, appProtocol: postgres}, {name: misc, port: 7000}]}\n";
        let m = mesh(yaml);
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let ports = port_protocols(&m, "prod", &web);
        assert_eq!(ports, [(8080, Protocol::Http), (9090, Protocol::Http), (5432, Protocol::Tcp)].into());
        assert!(port_protocols(&m, "other", &web).is_empty(), "another namespace's Service does not select it");
        let cfg = compile(&m, &[], "prod", None);
        let by_name = |n: &str| cfg.routes.iter().find(|r| r.name.ends_with(n)).map(|r| r.protocol);
        assert_eq!(by_name(":80"), Some(Protocol::Http));
        assert_eq!(by_name(":5432"), Some(Protocol::Tcp));
        assert_eq!(by_name(":7000"), Some(Protocol::Detect));
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

}
