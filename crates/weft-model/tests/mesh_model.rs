//! Translation from each API into the one internal model, and the precedence
//! between APIs that route the same host.

use std::time::Duration;
use weft_model::mesh::*;

fn build(yaml: &str) -> Mesh {
    let b = weft_model::parse_str("t.yaml", yaml);
    assert!(b.messages.is_empty(), "{:?}", b.messages);
    Mesh::build(&b.resources, DEFAULT_ROOT_NAMESPACE)
}

const REVIEWS: &str = "reviews.prod.svc.cluster.local";

#[test]
fn virtual_service_split_and_header_override() {
    let m = build(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
    timeout: 6s
"#,
    );
    let r = &m.routes[REVIEWS];
    assert_eq!(r.api, RouteApi::VirtualService);
    assert_eq!(r.http[0].matches[0].headers[0], HeaderMatch { name: "x-canary".into(), value: StringMatch::Exact("true".into()), invert: false });
    assert_eq!(r.http[0].action, RouteAction::Forward(vec![WeightedDestination { host: REVIEWS.into(), subset: Some("v2".into()), port: None, weight: 100 }]));
    let RouteAction::Forward(d) = &r.http[1].action else { panic!() };
    assert_eq!(d.iter().map(|d| (d.subset.as_deref().unwrap(), d.weight)).collect::<Vec<_>>(), [("v1", 90), ("v2", 10)]);
    assert!(r.http[1].matches.is_empty());
    assert_eq!(r.http[1].timeout, Some(Duration::from_secs(6)));
    let retry = r.http[1].retry.as_ref().unwrap();
    assert_eq!((retry.attempts, retry.per_try_timeout, retry.retry_on.clone()), (3, Some(Duration::from_secs(2)), vec!["5xx".to_string(), "connect-failure".into()]));
}

#[test]
fn route_sources_follow_documented_precedence() {
    let sources = r#"
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: reviews.prod.svc.cluster.local, namespace: prod}
spec:
  routes: [{name: get, condition: {method: GET}}]
  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: reviews, namespace: prod}
spec:
  service: reviews
  backends: [{service: reviews-v1, weight: 900}, {service: reviews-v2, weight: 100}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{backendRefs: [{name: reviews-v2, port: 9080}]}]
"#;
    let vs = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: prod}\nspec:\n  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews}}]}]\n";

    // Each source alone.
    let sp_only = build(&sources[..sources.find("---\napiVersion: split").unwrap()]);
    assert_eq!(sp_only.routes[REVIEWS].api, RouteApi::ServiceProfile);
    let ts = build(&sources[..sources.find("---\napiVersion: gateway").unwrap()]);
    assert_eq!(ts.routes[REVIEWS].api, RouteApi::TrafficSplit);
    let RouteAction::Forward(d) = &ts.routes[REVIEWS].http[0].action else { panic!() };
    assert_eq!(d.iter().map(|d| d.weight).collect::<Vec<_>>(), [9000, 1000], "relative weights normalised to parts per 10,000");
    assert_eq!(ts.routes[REVIEWS].retry_budget.as_ref().unwrap().ratio, 0.2, "the profile's budget survives");

    let gw = build(sources);
    assert_eq!(gw.routes[REVIEWS].api, RouteApi::GatewayApi);
    let all = build(&format!("{sources}{vs}"));
    assert_eq!(all.routes[REVIEWS].api, RouteApi::VirtualService);
    assert_eq!(all.routes[REVIEWS].sources[0].to_string(), "VirtualService prod/reviews");
    assert_eq!(all.routes[REVIEWS].retry_budget.as_ref().unwrap().min_per_second, 10);
}

#[test]
fn grpc_route_methods_become_paths() {
    let m = build(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: inv, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: inv}]
  rules:
  - matches: [{method: {service: store.Inventory, method: Reserve}}, {method: {service: store.Admin}}]
    backendRefs: [{name: inv, port: 50051}]
"#,
    );
    let r = &m.routes["inv.prod.svc.cluster.local"].http[0];
    assert_eq!(r.matches[0].path, Some(StringMatch::Exact("/store.Inventory/Reserve".into())));
    assert_eq!(r.matches[1].path, Some(StringMatch::Prefix("/store.Admin/".into())));
}

#[test]
fn destination_rule_policy_with_istio_defaults() {
    let m = build(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: prod}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: X-User}}
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
    outlierDetection: {consecutive5xxErrors: 2}
    tls: {mode: ISTIO_MUTUAL}
  subsets: [{name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}]
"#,
    );
    let d = &m.destinations["httpbin.prod.svc.cluster.local"];
    assert_eq!(d.policy.load_balancer, Some(LoadBalancer::ConsistentHash { key: HashKey::Header("x-user".into()), maglev: false, table_size: None }));
    assert_eq!((d.policy.connection_pool.max_connections, d.policy.connection_pool.http1_max_pending_requests), (Some(1), Some(1)));
    let od = d.policy.outlier_detection.as_ref().unwrap();
    assert_eq!((od.consecutive_5xx, od.interval, od.base_ejection_time, od.max_ejection_percent), (Some(2), Duration::from_secs(10), Duration::from_secs(30), 10));
    assert_eq!(d.policy.tls, Some(ClientTls::MeshMutual));
    assert_eq!(d.subsets[0].policy.as_ref().unwrap().load_balancer, Some(LoadBalancer::RoundRobin));
}

#[test]
fn peer_authentication_scopes() {
    let m = build(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: legacy}\nspec: {mtls: {mode: PERMISSIVE}}\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: db, namespace: legacy}\nspec: {selector: {matchLabels: {app: db}}, portLevelMtls: {5432: {mode: DISABLE}}}\n",
    );
    let scopes: Vec<(&PolicyScope, MtlsMode)> = m.peer_authentication.iter().map(|p| (&p.scope, p.mode)).collect();
    assert_eq!(scopes[0], (&PolicyScope::Mesh, MtlsMode::Strict));
    assert_eq!(scopes[1], (&PolicyScope::Namespace("legacy".into()), MtlsMode::Permissive));
    assert!(matches!(scopes[2], (PolicyScope::Workload { .. }, MtlsMode::Unset)));
    assert_eq!(m.peer_authentication[2].port_modes[&5432], MtlsMode::Disable);
}

#[test]
fn istio_and_linkerd_authorization_share_one_model() {
    let m = build(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger, namespace: pay}
spec:
  selector: {matchLabels: {app: ledger}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/pay/sa/checkout"]}}, {source: {namespaces: [monitoring]}}]
    to: [{operation: {methods: [GET]}}]
---
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: books-http, namespace: booksapp}
spec: {podSelector: {matchLabels: {app: books}}, port: 7002}
---
apiVersion: policy.linkerd.io/v1beta1
kind: ServerAuthorization
metadata: {name: books-from-webapp, namespace: booksapp}
spec:
  server: {name: books-http}
  client: {meshTLS: {serviceAccounts: [{name: webapp}]}}
"#,
    );
    // The Istio policy, and for the Linkerd Server its own (deny unless authorized) and its authorization.
    assert_eq!(m.authorization.len(), 3);
    let istio = &m.authorization[0];
    assert_eq!(istio.action, AuthzAction::Allow);
    assert_eq!(istio.rules.len(), 1, "from/to alternatives stay in one rule, as Istio numbers them");
    assert_eq!(istio.rules[0].from[0].principals.values, ["cluster.local/ns/pay/sa/checkout"]);
    assert_eq!(istio.rules[0].from[1].namespaces.values, ["monitoring"]);
    assert_eq!(istio.rules[0].to[0].methods.values, ["GET"]);
    assert_eq!(m.servers[0].port, weft_model::mesh::ServerPort::Number(7002));
    let server = &m.authorization[1];
    assert_eq!((server.source.kind.as_str(), server.rules.len(), server.server.as_deref()), ("Server", 0, Some("books-http")));
    let linkerd = &m.authorization[2];
    assert_eq!(linkerd.source.kind, "ServerAuthorization");
    assert_eq!(linkerd.rules[0].from[0].principals.values, ["cluster.local/ns/booksapp/sa/webapp"]);
    assert!(matches!(&linkerd.scope, PolicyScope::Workload { namespace, labels } if namespace == "booksapp" && labels["app"] == "books"));
}

#[test]
fn linkerd_identities_routes_and_access_policies_become_istio_shaped_rules() {
    use weft_model::mesh::linkerd_identity;
    assert_eq!(linkerd_identity("web.shop.serviceaccount.identity.linkerd.cluster.local"), "cluster.local/ns/shop/sa/web");
    assert_eq!(linkerd_identity("*.shop.serviceaccount.identity.linkerd.cluster.local"), "cluster.local/ns/shop/sa/*");
    assert_eq!(linkerd_identity("spiffe://cluster.local/ns/a/sa/b"), "cluster.local/ns/a/sa/b");
    let m = build(
        r#"
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: api, namespace: shop}
spec: {podSelector: {matchLabels: {app: api}}, port: http, proxyProtocol: HTTP/1, accessPolicy: audit}
---
apiVersion: policy.linkerd.io/v1beta3
kind: HTTPRoute
metadata: {name: api-reads, namespace: shop}
spec:
  parentRefs: [{group: policy.linkerd.io, kind: Server, name: api}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /books}, method: GET}, {path: {type: RegularExpression, value: "/a.*"}}]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: reads, namespace: shop}
spec:
  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: api-reads}
  requiredAuthenticationRefs: [{kind: MeshTLSAuthentication, name: web}, {kind: NetworkAuthentication, name: cluster}]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: web, namespace: shop}
spec: {identityRefs: [{kind: ServiceAccount, name: web}]}
---
apiVersion: policy.linkerd.io/v1alpha1
kind: NetworkAuthentication
metadata: {name: cluster, namespace: shop}
spec: {networks: [{cidr: 10.0.0.0/8, except: [10.9.0.0/16]}]}
"#,
    );
    assert_eq!(m.servers[0].port, weft_model::mesh::ServerPort::Name("http".into()));
    assert_eq!(m.servers[0].protocol, Some(weft_model::mesh::Protocol::Http));
    let reads = m.authorization.iter().find(|p| p.source.name == "reads").unwrap();
    assert!(reads.dry_run, "the Server's accessPolicy is audit");
    assert_eq!(reads.rules.len(), 1, "the regex match authorizes nothing: {:?}", reads.rules);
    assert!(reads.inexact.as_deref().unwrap().contains("RegularExpression"));
    let r = &reads.rules[0];
    assert_eq!(r.to[0].paths.values, ["/books", "/books/*"], "PathPrefix matches whole segments");
    assert_eq!(r.to[0].methods.values, ["GET"]);
    assert_eq!(r.from[0].principals.values, ["cluster.local/ns/shop/sa/web"]);
    assert_eq!((r.from[0].ip_blocks.values.as_slice(), r.from[0].ip_blocks.not_values.as_slice()), (&["10.0.0.0/8".to_string()][..], &["10.9.0.0/16".to_string()][..]));
}

#[test]
fn services_and_workloads_from_core_objects() {
    let m = build(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {selector: {app: web}, ports: [{name: grpc-api, port: 9000}, {name: metrics, port: 9100}, {port: 80, appProtocol: http}]}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\nspec: {serviceAccountName: web}\nstatus: {podIP: 10.0.0.7}\n",
    );
    let s = &m.services["web.shop.svc.cluster.local"];
    assert_eq!(s.ports.iter().map(|p| p.protocol).collect::<Vec<_>>(), [Protocol::Grpc, Protocol::Detect, Protocol::Http]);
    let w = &m.workloads[0];
    assert_eq!((w.service_account.as_str(), w.address.as_deref()), ("web", Some("10.0.0.7")));
    assert_eq!(m.services_for("shop", &w.labels).count(), 1);
}

#[test]
fn header_operations_from_both_apis() {
    let m = build(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: prod}
spec:
  hosts: [web]
  http:
  - headers: {request: {set: {x-env: prod}}, response: {remove: [server]}}
    route:
    - destination: {host: web}
      headers: {request: {add: {x-dest: web}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: api}]
  rules:
  - filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Env, value: prod}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Served, value: api}]}}
    backendRefs: [{name: api, port: 80}]
"#,
    );
    let vs = &m.routes["web.prod.svc.cluster.local"].http[0];
    assert_eq!(vs.request_headers.set, [("x-env".to_string(), "prod".to_string())]);
    assert_eq!(vs.request_headers.add, [("x-dest".to_string(), "web".to_string())], "single-destination headers apply to the rule");
    assert_eq!(vs.response_headers.remove, ["server"]);
    let gw = &m.routes["api.prod.svc.cluster.local"].http[0];
    assert_eq!(gw.request_headers.set, [("x-env".to_string(), "prod".to_string())]);
    assert_eq!(gw.response_headers.add, [("x-served".to_string(), "api".to_string())]);
    assert!(gw.request_headers.remove.is_empty() && gw.response_headers.set.is_empty());
}
