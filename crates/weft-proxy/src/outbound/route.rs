//! The outbound routing decisions: which route (by `Host`, then by original
//! destination, else passthrough), which rule (the first that matches),
//! which cluster (by weight), which endpoint (by the cluster's balancer),
//! and which local reply when none can be had. Generic over the request
//! body and given their randomness, so every case is a unit test.

use super::{answer, Forward, Matched, Picked, Plan, Target, Upstream};
use crate::balance::hash::{hash64, new_hash_cookie, request_hash};
use crate::config::{ClusterState, RequestFacts, RouteTarget, Snapshot};
use crate::connection::{Connection, Destination};
use crate::local_reply::{Flag, LocalReply};
use crate::random::chance_of;
use http::Request;
use std::net::IpAddr;
use std::sync::Arc;

/// Randomness for weights, percentages and balancers (tests pass their own).
pub type Random<'a> = &'a mut dyn FnMut() -> u64;

/// An endpoint of `cluster` by its balancer (`hash`: the request's key).
pub fn pick(cluster: &ClusterState, hash: Option<u64>, random: Random<'_>) -> Result<Picked, LocalReply> {
    let (index, ep) = cluster
        .pick(hash, random)
        .ok_or_else(|| LocalReply::new(503, Flag::NoHealthyUpstream, format!("cluster {:?} has no endpoints", cluster.name())))?;
    let identity = cluster.transport(ep)?.map(str::to_string);
    Ok(Picked { address: ep.address, index: Some(index), identity })
}

fn named_cluster<'a>(snapshot: &'a Snapshot, name: &str) -> Result<&'a Arc<ClusterState>, LocalReply> {
    snapshot.cluster(name).ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, format!("cluster {name:?} is not configured")))
}

fn to_cluster(route: Arc<str>, cluster: &Arc<ClusterState>, hash: Option<u64>, random: Random<'_>) -> Result<Target, LocalReply> {
    let endpoint = pick(cluster, hash, random)?;
    Ok(Target { route, upstream: Upstream::Cluster(cluster.clone()), endpoint, hash })
}

/// Where an outbound opaque TCP connection goes: an explicit listener's
/// cluster, the route capturing the original destination, or passthrough.
pub fn tcp(snapshot: &Snapshot, conn: &Connection, dst: &Destination, random: Random<'_>) -> Result<Target, LocalReply> {
    match dst {
        Destination::Cluster(name) => to_cluster(Arc::from(conn.listener.name.as_str()), named_cluster(snapshot, name)?, None, random),
        Destination::Original(addr) => match snapshot.route_for_destination(*addr) {
            Some(t) => to_cluster(t.route.clone(), &t.cluster, None, random),
            None => Ok(Target::original("passthrough", *addr)),
        },
    }
}

/// Where an outbound HTTP request goes. `host` is its authority (`Host` or
/// `:authority`); routes match it first, then the original destination.
pub fn http<B>(snapshot: &Snapshot, conn: &Connection, dst: &Destination, host: Option<&str>, req: &Request<B>, random: Random<'_>) -> Result<Plan, LocalReply> {
    let peer = conn.peer.address.ip();
    let route = match dst {
        Destination::Cluster(name) => {
            let c = named_cluster(snapshot, name)?;
            return forward(Arc::from(conn.listener.name.as_str()), c, None, req, peer, random);
        }
        Destination::Original(addr) => match host.and_then(|h| snapshot.route_for_host(h)).or_else(|| snapshot.route_for_destination(*addr)) {
            Some(r) => r,
            None => return Ok(Plan::Forward(Box::new(Forward { target: Target::original("passthrough", *addr), matched: None, mirrors: vec![], set_cookie: None }))),
        },
    };
    rules(route, req, conn.port(), host, peer, random)
}

/// A route's rules: the first that matches answers itself, or picks a cluster by weight.
fn rules<B>(route: &RouteTarget, req: &Request<B>, port: u16, host: Option<&str>, peer: IpAddr, random: Random<'_>) -> Result<Plan, LocalReply> {
    if route.rules.is_empty() {
        return forward(route.route.clone(), &route.cluster, None, req, peer, random);
    }
    let path = req.uri().path();
    let facts = RequestFacts { method: req.method(), path, query: req.uri().query(), headers: req.headers(), port: Some(port) };
    let (rule, matched) = route
        .rules
        .iter()
        .find_map(|r| {
            if r.matches.is_empty() {
                return Some((r, None));
            }
            r.matches.iter().find(|m| m.matches(&facts)).map(|m| (r, Some(m)))
        })
        .ok_or_else(|| LocalReply::new(404, Flag::NoRouteFound, format!("no rule of route {} matches {} {path}", route.route, req.method())))?;
    let name = match &rule.name {
        Some(n) => Arc::from(format!("{}/{n}", route.route)),
        None => route.route.clone(),
    };
    let matched = Matched { rule: rule.actions.clone(), prefix: matched.and_then(|m| m.prefix()).map(str::to_string), budget: rule.budget.clone() };
    if let Some(response) = answer::own_answer(&rule.actions, req, host) {
        return Ok(Plan::Respond { route: name, response });
    }
    let cluster = rule.pick(random()).ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, format!("route {} has no cluster to send to", route.route)))?;
    let mirrors = rule.mirrors.iter().filter(|(_, pct)| chance_of(*pct, random())).map(|(c, _)| c.clone()).collect();
    match forward(name, cluster, Some(matched), req, peer, random)? {
        Plan::Forward(mut f) => {
            f.mirrors = mirrors;
            Ok(Plan::Forward(f))
        }
        respond => Ok(respond),
    }
}

/// Forwards to `cluster`, by the request's consistent-hash key when it hashes
/// (a sticky-cookie ring hands a client without the cookie a new one).
fn forward<B>(route: Arc<str>, cluster: &Arc<ClusterState>, matched: Option<Matched>, req: &Request<B>, peer: IpAddr, random: Random<'_>) -> Result<Plan, LocalReply> {
    let mut hash = request_hash(&cluster.config, req.headers(), req.uri().query(), peer);
    let mut set_cookie = None;
    if hash.is_none() {
        if let Some((value, header)) = new_hash_cookie(&cluster.config, random()) {
            hash = Some(hash64(value.as_bytes()));
            set_cookie = Some(header);
        }
    }
    let target = to_cluster(route, cluster, hash, random)?;
    Ok(Plan::Forward(Box::new(Forward { target, matched, mirrors: vec![], set_cookie })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BuildContext, Listener, ProxyConfig};
    use crate::connection::{Direction, Peer};
    use crate::local_reply::Flag;

    const CONFIG: &str = r#"
clusters:
- {name: v1, endpoints: ["10.0.0.1:8080"]}
- {name: v2, endpoints: ["10.0.0.2:8080"]}
- {name: empty, endpoints: []}
routes:
- name: reviews
  hosts: [reviews, reviews.default.svc.cluster.local]
  destinations: ["10.96.0.10:9080"]
  cluster: v1
  http:
  - matches: [{headers: [{name: x-canary, value: {exact: "true"}}]}]
    clusters: [{cluster: v2, weight: 1}]
  - name: api
    matches: [{path: {prefix: /api/}, method: POST}, {port: 9443}]
    clusters: [{cluster: v2, weight: 1}]
  - name: moved
    matches: [{path: {exact: /old}}]
    redirect: {path: /new, status: 301}
  - matches: [{path: {prefix: /}}]
    clusters: [{cluster: v1, weight: 90}, {cluster: v2, weight: 10}]
    mirrors: [{cluster: v2, percent: 50}]
- name: ratings
  destinations: ["10.96.0.11:9080"]
  cluster: v2
- name: only-get
  hosts: [strict]
  cluster: v1
  http:
  - matches: [{method: GET}]
    clusters: [{cluster: v1, weight: 1}]
- name: nobody
  hosts: [nobody]
  cluster: empty
"#;

    fn snapshot() -> Snapshot {
        let cfg: ProxyConfig = serde_norway::from_str(CONFIG).unwrap();
        cfg.check().unwrap();
        Snapshot::build(cfg, None, &BuildContext::new(tokio::sync::watch::channel(None).1)).unwrap()
    }

    fn conn(direction: Direction) -> Connection {
        let listener: Listener = serde_norway::from_str("{name: out, kind: outbound, address: '0.0.0.0:15001'}").unwrap();
        Connection { listener: Arc::new(listener), peer: Peer::at("10.0.0.9:40000".parse().unwrap()), direction, sni: None, socket: None, authz: Default::default() }
    }

    fn to(dst: &str) -> Destination {
        Destination::Original(dst.parse().unwrap())
    }

    fn get(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    /// A counter for randomness: each draw is the next number.
    fn counting() -> impl FnMut() -> u64 {
        let mut n = 0;
        move || {
            n += 1;
            n - 1
        }
    }

    /// (route, cluster, endpoint) of a forwarded request, or the reply.
    fn route(s: &Snapshot, dst: &Destination, host: Option<&str>, req: &Request<()>) -> Result<(String, String, String), LocalReply> {
        let c = conn(Direction::Outbound(dst.clone()));
        match http(s, &c, dst, host, req, &mut counting())? {
            Plan::Forward(f) => Ok((f.target.route.to_string(), f.target.cluster_name().to_string(), f.target.endpoint.address.to_string())),
            Plan::Respond { route, response } => Ok((route.to_string(), format!("answered {}", response.status()), String::new())),
        }
    }

    #[test]
    fn the_host_is_matched_before_the_original_destination_and_with_or_without_a_port() {
        let s = snapshot();
        // Sent to ratings' address, but for reviews: reviews' rules decide.
        let canary = Request::builder().uri("/").header("x-canary", "true").body(()).unwrap();
        assert_eq!(route(&s, &to("10.96.0.11:9080"), Some("reviews:9080"), &canary).unwrap().1, "v2");
        assert_eq!(route(&s, &to("10.96.0.11:9080"), Some("REVIEWS.default.svc.cluster.local"), &canary).unwrap().1, "v2");
        // An unknown host falls back to the destination.
        assert_eq!(route(&s, &to("10.96.0.11:9080"), Some("elsewhere"), &get("/")).unwrap(), ("ratings".into(), "v2".into(), "10.0.0.2:8080".into()));
    }

    #[test]
    fn unknown_destinations_pass_through_to_where_the_app_sent_them() {
        let s = snapshot();
        let (route_name, cluster, endpoint) = route(&s, &to("93.184.216.34:80"), Some("example.com"), &get("/")).unwrap();
        assert_eq!((route_name.as_str(), cluster.as_str(), endpoint.as_str()), ("passthrough", "passthrough", "93.184.216.34:80"));
        let c = conn(Direction::Outbound(to("93.184.216.34:5432")));
        let t = tcp(&s, &c, &to("93.184.216.34:5432"), &mut counting()).unwrap();
        assert!(t.cluster().is_none() && t.endpoint.address.port() == 5432 && &*t.route == "passthrough");
    }

    #[test]
    fn the_first_matching_rule_wins_and_named_rules_name_the_route() {
        let s = snapshot();
        let dst = to("10.96.0.10:9080");
        let post = Request::builder().method("POST").uri("/api/items").body(()).unwrap();
        assert_eq!(route(&s, &dst, None, &post).unwrap().0, "reviews/api");
        // GET /api/ is not the api rule's (method must match too): the catch-all takes it.
        assert_eq!(route(&s, &dst, None, &get("/api/items")).unwrap().0, "reviews");
        // Entries of one match list are alternatives: the port alone matches the api rule.
        let c = conn(Direction::Outbound(to("10.96.0.10:9443")));
        let Plan::Forward(f) = http(&s, &c, &to("10.96.0.10:9443"), Some("reviews"), &get("/x"), &mut counting()).unwrap() else { panic!() };
        assert_eq!(&*f.target.route, "reviews/api");
        // A rule that answers itself.
        assert_eq!(route(&s, &dst, None, &get("/old")).unwrap(), ("reviews/moved".into(), "answered 301 Moved Permanently".into(), String::new()));
    }

    #[test]
    fn no_matching_rule_is_404_nr_and_no_endpoints_is_503_uh() {
        let s = snapshot();
        let post = Request::builder().method("POST").uri("/").body(()).unwrap();
        let e = route(&s, &to("10.96.0.99:80"), Some("strict"), &post).unwrap_err();
        assert_eq!((e.status, e.flag), (404, Flag::NoRouteFound));
        assert_eq!(e.reason, "no rule of route only-get matches POST /");
        let e = route(&s, &to("10.96.0.99:80"), Some("nobody"), &get("/")).unwrap_err();
        assert_eq!((e.status, e.flag), (503, Flag::NoHealthyUpstream));
        assert_eq!(e.reason, "cluster \"empty\" has no endpoints");
    }

    #[test]
    fn explicit_listeners_forward_to_their_cluster_under_their_own_name() {
        let s = snapshot();
        let dst = Destination::Cluster("v2".into());
        assert_eq!(route(&s, &dst, Some("anything"), &get("/")).unwrap(), ("out".into(), "v2".into(), "10.0.0.2:8080".into()));
        let missing = Destination::Cluster("nope".into());
        let e = route(&s, &missing, None, &get("/")).unwrap_err();
        assert_eq!((e.status, e.flag, e.reason.as_str()), (503, Flag::NoRouteFound, "cluster \"nope\" is not configured"));
    }

    #[test]
    fn weights_split_exactly_over_a_uniform_draw_and_mirrors_by_their_percentage() {
        let s = snapshot();
        let dst = to("10.96.0.10:9080");
        let c = conn(Direction::Outbound(dst.clone()));
        let (mut to_v2, mut mirrored) = (0, 0);
        for i in 0..1000u64 {
            // First draw: the weight; second: the mirror's chance.
            let mut draws = [i, i * 1_000_000 / 1000].into_iter().chain(std::iter::repeat(0));
            let Plan::Forward(f) = http(&s, &c, &dst, None, &get("/"), &mut || draws.next().unwrap_or(0)).unwrap() else { panic!() };
            to_v2 += usize::from(f.target.cluster_name() == "v2");
            mirrored += f.mirrors.len();
        }
        assert_eq!(to_v2, 100, "10 of every 100 points");
        assert_eq!(mirrored, 500, "half the requests are mirrored");
    }
}
