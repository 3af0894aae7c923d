//! From the mesh model and the live endpoints to one proxy's configuration.
//!
//! Every Service port becomes a cluster (`outbound|PORT||HOST`) whose
//! endpoints are the workloads its selector picks, and a route that captures
//! the Service's cluster IP and its host names. A VirtualService (or another
//! route source) for the host sends that route to its destination instead,
//! with subsets becoming their own clusters (`outbound|PORT|SUBSET|HOST`).
//! The route's rules come from [`routes`], a cluster's settings from its
//! DestinationRule by [`clusters`], a workload's inbound mTLS mode from
//! [`inbound`], who may call it from [`authz`]; [`tls_check`] reports how a
//! proxy reaches each endpoint.

pub mod authz;
pub mod clusters;
pub mod inbound;
pub mod routes;
pub mod telemetry;
pub mod tls_check;

pub use inbound::{inbound_policy, inbound_services, port_protocols};
pub use tls_check::{tls_report, TlsCheck};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use weft_model::mesh::{Mesh, RouteAction, Service, SidecarScope};
use weft_proto::config::{Cluster, Endpoint as ProxyEndpoint, MtlsMode, ProxyConfig, Route};

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
    /// Its workload proved who it is (a certificate), or it was declared in
    /// the store (a Pod, a WorkloadEntry). Unverified proxies (`--insecure-dev`)
    /// are never endpoints of a service that has verified ones.
    pub verified: bool,
    /// Who it is in metrics (its workload name and labels).
    pub workload: Option<weft_proto::config::WorkloadMeta>,
}

pub(crate) fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
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
                verified: true,
                workload: Some(weft_proto::config::WorkloadMeta::from_labels(&w.name, &w.namespace, &w.labels)),
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
    let mut built: BTreeMap<String, Cluster> = BTreeMap::new();
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
        if !built.contains_key(&name) {
            let policy = clusters::effective_policy(dest, subset, sp.port);
            let selected: Vec<&Endpoint> = endpoints.iter().filter(|e| e.namespace == svc.namespace && selects(&selector, &e.labels)).collect();
            // A proxy that proved nothing cannot join a service whose other endpoints proved who they are.
            let any_verified = selected.iter().any(|e| e.verified);
            let eps: BTreeSet<ProxyEndpoint> = selected
                .into_iter()
                .filter(|e| e.verified || !any_verified)
                .map(|e| ProxyEndpoint {
                    address: SocketAddr::new(e.address, target),
                    weight: e.weight.max(1),
                    // Auto-mTLS: to a workload with a proxy, unless its PeerAuthentication disables mTLS.
                    identity: e
                        .identity
                        .clone()
                        .filter(|_| inbound_policy(mesh, &e.namespace, &e.labels).mode_for(target) != MtlsMode::Disable),
                    workload: e.workload.clone(),
                })
                .collect();
            built.insert(name.clone(), clusters::cluster(name.clone(), eps.into_iter().collect(), &policy));
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
                .map(|r| routes::http_rules(&r.http, r.retry_budget.as_ref(), p.port, &mut cluster_for))
                .unwrap_or_default();
            cfg.routes.push(Route {
                protocol: inbound::proxy_protocol(p.protocol),
                name: format!("{}:{}", svc.host, p.port),
                destinations: svc.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).map(|ip| SocketAddr::new(ip, p.port)).into_iter().collect(),
                hosts: host_names(svc, p.port, only_port),
                cluster,
                http,
            });
        }
    }
    cfg.clusters = built.into_values().collect();
    cfg
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
pub(crate) mod tests {
    use super::*;
    use weft_proto::config::WeightedCluster;

    pub(crate) fn mesh(yaml: &str) -> Mesh {
        let b = weft_model::parse_str("t.yaml", yaml);
        assert!(b.messages.is_empty(), "{:?}", b.messages);
        Mesh::build(&b.resources, "istio-system")
    }

    pub(crate) const BASE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: prod}\nspec: {clusterIP: 10.96.0.10, selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 8080}]}\n---\n\
        apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: prod}\nspec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}\n";

    pub(crate) fn ep(ip: &str, version: &str) -> Endpoint {
        Endpoint {
            namespace: "prod".into(),
            labels: [("app".to_string(), "reviews".to_string()), ("version".to_string(), version.to_string())].into(),
            address: ip.parse().unwrap(),
            identity: None,
            weight: 1,
            verified: true,
            workload: None,
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
        let addresses: Vec<ProxyEndpoint> = cfg.clusters[0].endpoints.iter().map(|e| ProxyEndpoint { workload: None, ..e.clone() }).collect();
        assert_eq!(addresses, plain(&["10.1.0.9:8080", "10.2.0.3:8080"]));
        // Each carries who it is, for the client side's metrics.
        let named: Vec<(String, String, String)> = cfg.clusters[0].endpoints.iter().filter_map(|e| e.workload.clone()).map(|w| (w.name, w.app, w.version)).collect();
        assert_eq!(named, [("r1".to_string(), "reviews".to_string(), "v1".to_string()), ("vm".into(), "reviews".into(), "v2".into())]);
        // A WorkloadEntry's weight reaches the endpoint.
        let weighted = mesh(&format!("{BASE}{}", extra.replace("labels: {app: reviews, version: v2}}", "labels: {app: reviews, version: v2}, weight: 3}")));
        let cfg = compile(&weighted, &declared_endpoints(&weighted), "prod", None);
        assert_eq!(cfg.clusters[0].endpoints.iter().map(|e| e.weight).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn unverified_proxies_never_join_a_service_with_verified_endpoints() {
        let mut real = ep("10.0.0.1", "v1");
        real.identity = Some("spiffe://cluster.local/ns/prod/sa/reviews".into());
        let mut intruder = ep("10.0.0.66", "v1");
        intruder.verified = false;
        let cfg = compile(&mesh(BASE), &[real.clone(), intruder.clone()], "prod", None);
        let addrs: Vec<String> = cfg.clusters[0].endpoints.iter().map(|e| e.address.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:8080"]);
        // A development mesh of unverified proxies only still works.
        let mut other = ep("10.0.0.2", "v2");
        other.verified = false;
        let cfg = compile(&mesh(BASE), &[intruder, other], "prod", None);
        assert_eq!(cfg.clusters[0].endpoints.len(), 2);
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

}
