//! The label sets of the standard metrics (Istio's and Linkerd's), made once
//! per workload or Service when a config or a peer is first seen, rendered
//! into Prometheus text then, and shared by every request that reports them.
//! A request's series key is a handful of these handles and small numbers:
//! nothing is allocated or formatted per request.
//!
//! Handles are interned, so two handles are equal exactly when their labels
//! are: the series maps hash and compare them by address.

use std::collections::HashSet;
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use weft_proto::config::WorkloadMeta;

/// Istio's value for what is not known (an unmeshed peer, a Service not in the registry).
pub const UNKNOWN: &str = "unknown";

/// An interned label set: equality and hashing by address.
pub struct Shared<T>(Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Eq for Shared<T> {}

impl<T> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state)
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Shared<T>
where
    T: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Who one side of a request is: a workload with its identity.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// The SPIFFE ID the side proved (mesh mTLS), or `unknown`.
    pub principal: String,
    pub app: String,
    pub version: String,
    pub cluster: String,
    /// Rendered once: `source_workload="..",...,source_cluster=".."`.
    pub as_source: String,
    /// `destination_workload="..",...` (without the service labels).
    pub as_destination: String,
    /// Linkerd's destination labels: `dst_deployment="..",dst_namespace=".."`.
    pub as_linkerd_dst: String,
}

/// A Service a request was for.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Service {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub namespace: String,
    /// `destination_service="..",destination_service_name="..",destination_service_namespace=".."`.
    pub as_istio: String,
    /// `authority="host:port"` (Linkerd's, from the registry, never from the request).
    pub as_authority: String,
    /// `dst_service="name"` (the short name, as Linkerd dashboards group by).
    pub as_linkerd_dst: String,
}

/// Appends `value` escaped for a Prometheus label value.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn pair(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    let _ = write!(out, "{name}=\"");
    escape_into(out, value);
    out.push('"');
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        UNKNOWN
    } else {
        s
    }
}

fn interned<T: Eq + Hash + Send + Sync + 'static>(table: &'static OnceLock<Mutex<HashSet<Arc<T>>>>, value: T) -> Shared<T> {
    let mut set = table.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = set.get(&value) {
        return Shared(found.clone());
    }
    let arc = Arc::new(value);
    set.insert(arc.clone());
    Shared(arc)
}

static WORKLOADS: OnceLock<Mutex<HashSet<Arc<Workload>>>> = OnceLock::new();
static SERVICES: OnceLock<Mutex<HashSet<Arc<Service>>>> = OnceLock::new();

/// The label set of a peer that is not known (unmeshed, or an old proxy).
pub fn unknown_workload() -> Shared<Workload> {
    static UNKNOWN_WORKLOAD: OnceLock<Shared<Workload>> = OnceLock::new();
    UNKNOWN_WORKLOAD.get_or_init(|| workload(None, None)).clone()
}

/// The label set of a Service that is not known.
pub fn unknown_service() -> Shared<Service> {
    static UNKNOWN_SERVICE: OnceLock<Shared<Service>> = OnceLock::new();
    UNKNOWN_SERVICE.get_or_init(|| service(None, 0)).clone()
}

/// The label set of a workload (`None`: not known, every label `unknown`)
/// that proved `principal` (or nothing).
pub fn workload(meta: Option<&WorkloadMeta>, principal: Option<&str>) -> Shared<Workload> {
    let empty = WorkloadMeta::default();
    let m = meta.unwrap_or(&empty);
    let (name, namespace, app, version, cluster) = (or_unknown(&m.name), or_unknown(&m.namespace), or_unknown(&m.app), or_unknown(&m.version), or_unknown(&m.cluster));
    let principal = principal.filter(|p| !p.is_empty()).unwrap_or(UNKNOWN);
    let render = |side: &str| {
        let mut s = String::new();
        pair(&mut s, &format!("{side}_workload"), name);
        pair(&mut s, &format!("{side}_workload_namespace"), namespace);
        pair(&mut s, &format!("{side}_principal"), principal);
        pair(&mut s, &format!("{side}_app"), app);
        pair(&mut s, &format!("{side}_version"), version);
        pair(&mut s, &format!("{side}_cluster"), cluster);
        s
    };
    let mut linkerd = String::new();
    pair(&mut linkerd, "dst_deployment", name);
    pair(&mut linkerd, "dst_namespace", namespace);
    interned(
        &WORKLOADS,
        Workload {
            as_source: render("source"),
            as_destination: render("destination"),
            as_linkerd_dst: linkerd,
            name: name.into(),
            namespace: namespace.into(),
            principal: principal.into(),
            app: app.into(),
            version: version.into(),
            cluster: cluster.into(),
        },
    )
}

/// The label set of the Service `host` (a Kubernetes name
/// `NAME.NAMESPACE.svc.DOMAIN` gives name and namespace; another host is its
/// own name) reached on `port`; `None` is `unknown`.
pub fn service(host: Option<&str>, port: u16) -> Shared<Service> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or(UNKNOWN);
    let (name, namespace) = match host.split('.').collect::<Vec<_>>().as_slice() {
        [name, namespace, "svc", ..] => (name.to_string(), namespace.to_string()),
        _ => (host.to_string(), UNKNOWN.to_string()),
    };
    let mut as_istio = String::new();
    pair(&mut as_istio, "destination_service", host);
    pair(&mut as_istio, "destination_service_name", &name);
    pair(&mut as_istio, "destination_service_namespace", &namespace);
    let mut as_authority = String::new();
    if host == UNKNOWN {
        pair(&mut as_authority, "authority", UNKNOWN);
    } else {
        pair(&mut as_authority, "authority", &format!("{host}:{port}"));
    }
    let mut as_linkerd_dst = String::new();
    pair(&mut as_linkerd_dst, "dst_service", &name);
    interned(&SERVICES, Service { host: host.into(), port, name, namespace, as_istio, as_authority, as_linkerd_dst })
}

/// The Service host in an Istio-style cluster name (`outbound|PORT|SUBSET|HOST`) and its port.
pub fn service_of_cluster(cluster: &str) -> Option<(&str, u16)> {
    let mut parts = cluster.split('|');
    let (_, port, _, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_labels_share_one_handle_and_render_once() {
        let meta = WorkloadMeta { name: "reviews-v1".into(), namespace: "prod".into(), app: "reviews".into(), version: "v1".into(), cluster: "Kubernetes".into() };
        let a = workload(Some(&meta), Some("spiffe://cluster.local/ns/prod/sa/reviews"));
        let b = workload(Some(&meta.clone()), Some("spiffe://cluster.local/ns/prod/sa/reviews"));
        assert!(a == b);
        assert!(a != workload(Some(&meta), None));
        assert_eq!(
            a.as_source,
            "source_workload=\"reviews-v1\",source_workload_namespace=\"prod\",source_principal=\"spiffe://cluster.local/ns/prod/sa/reviews\",source_app=\"reviews\",source_version=\"v1\",source_cluster=\"Kubernetes\""
        );
        let unknown = workload(None, None);
        assert!(unknown.as_destination.contains("destination_workload=\"unknown\"") && unknown.as_destination.contains("destination_principal=\"unknown\""));
    }

    #[test]
    fn services_are_named_as_kubernetes_names_them() {
        let s = service(Some("reviews.prod.svc.cluster.local"), 9080);
        assert_eq!(s.as_istio, "destination_service=\"reviews.prod.svc.cluster.local\",destination_service_name=\"reviews\",destination_service_namespace=\"prod\"");
        assert_eq!(s.as_authority, "authority=\"reviews.prod.svc.cluster.local:9080\"");
        assert_eq!(s.as_linkerd_dst, "dst_service=\"reviews\"");
        let e = service(Some("api.example.com"), 443);
        assert_eq!((e.name.as_str(), e.namespace.as_str()), ("api.example.com", "unknown"));
        assert_eq!(service_of_cluster("outbound|9080|v1|reviews.prod.svc.cluster.local"), Some(("reviews.prod.svc.cluster.local", 9080)));
        assert_eq!(service_of_cluster("local-app"), None);
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }
}
