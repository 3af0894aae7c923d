//! One test per supported kind: a minimal document parses into the right
//! typed resource, and a misspelt field in it is rejected with its path.

use weft_model::{parse_str, Code, Resource};

/// (apiVersion, kind, spec body as YAML flow mapping, misspelt field path to inject)
fn minimal(api: &str, kind: &str, spec: &str) -> String {
    format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec: {spec}\n")
}

fn parses(api: &str, kind: &str, spec: &str) -> Resource {
    let doc = minimal(api, kind, spec);
    let b = parse_str("t.yaml", &doc);
    assert!(b.messages.is_empty(), "{kind}: {:?}", b.messages);
    assert_eq!(b.resources.len(), 1);
    let r = b.resources.into_iter().next().unwrap().resource;
    assert_eq!(r.kind(), kind);
    assert_eq!(r.namespace(), Some("ns"));
    r
}

fn rejects_typo(api: &str, kind: &str, spec_with_typo: &str, path: &str) {
    let b = parse_str("t.yaml", &minimal(api, kind, spec_with_typo));
    assert!(b.resources.is_empty(), "{kind} accepted a typo");
    assert_eq!(b.messages.len(), 1, "{:?}", b.messages);
    let m = &b.messages[0];
    assert_eq!(m.code, Code::UnknownField, "{m}");
    assert_eq!(m.field.as_deref(), Some(path), "{m}");
    assert_eq!(m.resource.as_ref().unwrap().to_string(), format!("{kind} ns/x"));
}

#[test]
fn virtual_service() {
    let r = parses("networking.istio.io/v1", "VirtualService", "{hosts: [a], http: [{route: [{destination: {host: a, subset: v1}, weight: 100}], timeout: 1.5s}]}");
    let Resource::VirtualService(o) = r else { panic!() };
    assert_eq!(o.spec.http[0].timeout.unwrap().0, std::time::Duration::from_millis(1500));
    assert_eq!(o.spec.http[0].route[0].destination.subset.as_deref(), Some("v1"));
    rejects_typo("networking.istio.io/v1beta1", "VirtualService", "{hosts: [a], http: [{route: [{destination: {host: a}}], timout: 1s}]}", "spec.http[0].timout");
}

#[test]
fn destination_rule() {
    let r = parses("networking.istio.io/v1alpha3", "DestinationRule", "{host: a, trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3, baseEjectionTime: 30s}}, subsets: [{name: v1, labels: {version: v1}}]}");
    let Resource::DestinationRule(o) = r else { panic!() };
    assert_eq!(o.spec.traffic_policy.unwrap().outlier_detection.unwrap().consecutive_5xx_errors, Some(3));
    rejects_typo("networking.istio.io/v1", "DestinationRule", "{host: a, trafficPolicy: {connectionPool: {tcp: {maxConnection: 1}}}}", "spec.trafficPolicy.connectionPool.tcp.maxConnection");
}

#[test]
fn istio_gateway() {
    let r = parses("networking.istio.io/v1", "Gateway", "{selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}");
    let Resource::IstioGateway(o) = r else { panic!() };
    assert_eq!(o.spec.servers[0].port.number.0, 80);
    rejects_typo("networking.istio.io/v1", "Gateway", "{servers: [{port: {number: 80, name: http, protocol: HTTP}, host: ['*']}]}", "spec.servers[0].host");
}

#[test]
fn service_entry() {
    let r = parses("networking.istio.io/v1", "ServiceEntry", "{hosts: [api.example.com], ports: [{number: 443, name: https, protocol: HTTPS}], resolution: DNS}");
    let Resource::ServiceEntry(o) = r else { panic!() };
    assert_eq!(o.spec.hosts[0].0, "api.example.com");
    rejects_typo("networking.istio.io/v1", "ServiceEntry", "{hosts: [a.com], resolutions: DNS}", "spec.resolutions");
}

#[test]
fn workload_entry() {
    let r = parses("networking.istio.io/v1", "WorkloadEntry", "{address: 10.0.0.9, labels: {app: vm}, serviceAccount: vm}");
    let Resource::WorkloadEntry(o) = r else { panic!() };
    assert_eq!(o.spec.address.as_deref(), Some("10.0.0.9"));
    rejects_typo("networking.istio.io/v1", "WorkloadEntry", "{adress: 10.0.0.9}", "spec.adress");
}

#[test]
fn sidecar() {
    let r = parses("networking.istio.io/v1", "Sidecar", "{workloadSelector: {labels: {app: a}}, egress: [{hosts: ['./*']}]}");
    let Resource::Sidecar(o) = r else { panic!() };
    assert_eq!(o.spec.egress[0].hosts, vec!["./*"]);
    rejects_typo("networking.istio.io/v1", "Sidecar", "{egres: []}", "spec.egres");
}

#[test]
fn peer_authentication() {
    let r = parses("security.istio.io/v1", "PeerAuthentication", "{selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}");
    let Resource::PeerAuthentication(o) = r else { panic!() };
    assert_eq!(o.spec.mtls.unwrap().mode, Some(weft_model::types::istio::MtlsMode::Strict));
    rejects_typo("security.istio.io/v1beta1", "PeerAuthentication", "{mtl: {mode: STRICT}}", "spec.mtl");
}

#[test]
fn authorization_policy() {
    let r = parses("security.istio.io/v1", "AuthorizationPolicy", "{action: DENY, rules: [{from: [{source: {notNamespaces: [a]}}], to: [{operation: {paths: ['/admin*']}}]}]}");
    let Resource::AuthorizationPolicy(o) = r else { panic!() };
    assert_eq!(o.spec.rules.unwrap()[0].from[0].source.not_namespaces, vec!["a"]);
    rejects_typo("security.istio.io/v1", "AuthorizationPolicy", "{rules: [{from: [{source: {principal: [a]}}]}]}", "spec.rules[0].from[0].source.principal");
}

#[test]
fn request_authentication() {
    let r = parses("security.istio.io/v1", "RequestAuthentication", "{jwtRules: [{issuer: me, jwksUri: 'https://x/jwks'}]}");
    let Resource::RequestAuthentication(o) = r else { panic!() };
    assert_eq!(o.spec.jwt_rules[0].issuer, "me");
    rejects_typo("security.istio.io/v1", "RequestAuthentication", "{jwtRules: [{issuer: me, jwksUrl: x}]}", "spec.jwtRules[0].jwksUrl");
}

#[test]
fn telemetry() {
    let r = parses("telemetry.istio.io/v1", "Telemetry", "{tracing: [{randomSamplingPercentage: 25.0}]}");
    let Resource::Telemetry(o) = r else { panic!() };
    assert_eq!(o.spec.tracing[0].random_sampling_percentage.unwrap().0, 25.0);
    rejects_typo("telemetry.istio.io/v1alpha1", "Telemetry", "{tracing: [{randomSamplingPercent: 25}]}", "spec.tracing[0].randomSamplingPercent");
}

#[test]
fn k8s_gateway() {
    let r = parses("gateway.networking.k8s.io/v1", "Gateway", "{gatewayClassName: weft, listeners: [{name: http, port: 80, protocol: HTTP}]}");
    let Resource::Gateway(o) = r else { panic!() };
    assert_eq!(o.spec.listeners[0].port.0, 80);
    rejects_typo("gateway.networking.k8s.io/v1", "Gateway", "{gatewayClassName: weft, listener: []}", "spec.listener");
}

#[test]
fn http_route() {
    let r = parses("gateway.networking.k8s.io/v1", "HTTPRoute", "{parentRefs: [{kind: Service, group: '', name: a}], rules: [{backendRefs: [{name: a, port: 80, weight: 3}]}]}");
    let Resource::HttpRoute(o) = r else { panic!() };
    assert!(o.spec.parent_refs[0].is_service());
    assert_eq!(o.spec.rules[0].backend_refs[0].weight, Some(3));
    rejects_typo("gateway.networking.k8s.io/v1beta1", "HTTPRoute", "{rules: [{backendRef: []}]}", "spec.rules[0].backendRef");
}

#[test]
fn grpc_route() {
    let r = parses("gateway.networking.k8s.io/v1", "GRPCRoute", "{rules: [{matches: [{method: {service: pkg.Svc, method: Get}}], backendRefs: [{name: a, port: 50051}]}]}");
    let Resource::GrpcRoute(o) = r else { panic!() };
    assert_eq!(o.spec.rules[0].matches[0].method.as_ref().unwrap().service.as_deref(), Some("pkg.Svc"));
    rejects_typo("gateway.networking.k8s.io/v1", "GRPCRoute", "{rules: [{matches: [{methods: {}}]}]}", "spec.rules[0].matches[0].methods");
}

#[test]
fn traffic_split_all_versions_and_quantities() {
    for v in ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"] {
        let r = parses(&format!("split.smi-spec.io/{v}"), "TrafficSplit", "{service: a, backends: [{service: a-v1, weight: 900m}, {service: a-v2, weight: 1}]}");
        let Resource::TrafficSplit(o) = r else { panic!() };
        assert_eq!(o.spec.backends[0].weight.milli, 900);
        assert_eq!(o.spec.backends[1].weight.milli, 1000);
    }
    rejects_typo("split.smi-spec.io/v1alpha2", "TrafficSplit", "{service: a, backend: []}", "spec.backend");
}

#[test]
fn service_profile() {
    let r = parses("linkerd.io/v1alpha2", "ServiceProfile", "{routes: [{name: r, condition: {method: GET, pathRegex: '/x/[^/]*'}, isRetryable: true, timeout: 300ms}], retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}}");
    let Resource::ServiceProfile(o) = r else { panic!() };
    assert_eq!(o.spec.retry_budget.unwrap().min_retries_per_second, 10);
    rejects_typo("linkerd.io/v1alpha2", "ServiceProfile", "{routes: [{name: r, condition: {method: GET}, isRetriable: true}]}", "spec.routes[0].isRetriable");
}

#[test]
fn linkerd_server() {
    let r = parses("policy.linkerd.io/v1beta3", "Server", "{podSelector: {matchLabels: {app: a}}, port: http, proxyProtocol: HTTP/1}");
    let Resource::Server(o) = r else { panic!() };
    assert_eq!(o.spec.port, weft_model::types::common::PortRef::Name("http".into()));
    rejects_typo("policy.linkerd.io/v1beta1", "Server", "{podSelector: {}, port: 80, protocol: HTTP/1}", "spec.protocol");
}

#[test]
fn linkerd_server_authorization() {
    let r = parses("policy.linkerd.io/v1beta1", "ServerAuthorization", "{server: {name: s}, client: {meshTLS: {serviceAccounts: [{name: web}]}}}");
    let Resource::ServerAuthorization(o) = r else { panic!() };
    assert_eq!(o.spec.client.mesh_tls.unwrap().service_accounts[0].name, "web");
    rejects_typo("policy.linkerd.io/v1beta1", "ServerAuthorization", "{server: {name: s}, client: {meshTls: {}}}", "spec.client.meshTls");
}

#[test]
fn linkerd_authorization_policy_and_authentications() {
    let r = parses("policy.linkerd.io/v1alpha1", "AuthorizationPolicy", "{targetRef: {group: policy.linkerd.io, kind: Server, name: s}, requiredAuthenticationRefs: [{kind: MeshTLSAuthentication, name: m}]}");
    assert!(matches!(r, Resource::LinkerdAuthorizationPolicy(_)));
    let r = parses("policy.linkerd.io/v1alpha1", "MeshTLSAuthentication", "{identities: ['*.ns.serviceaccount.identity.linkerd.cluster.local']}");
    assert!(matches!(r, Resource::MeshTlsAuthentication(_)));
    let r = parses("policy.linkerd.io/v1alpha1", "NetworkAuthentication", "{networks: [{cidr: 10.0.0.0/8}]}");
    assert!(matches!(r, Resource::NetworkAuthentication(_)));
    rejects_typo("policy.linkerd.io/v1alpha1", "AuthorizationPolicy", "{targetRef: {kind: Server, name: s}, requiredAuthenticationRef: []}", "spec.requiredAuthenticationRef");
}

#[test]
fn core_objects_keep_only_what_the_mesh_needs() {
    let b = parse_str(
        "t.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec: {selector: {app: a}, ports: [{name: http, port: 80, targetPort: web}], sessionAffinity: None}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a, namespace: ns}\nspec: {selector: {matchLabels: {app: a}}, strategy: {}, template: {metadata: {labels: {app: a}}, spec: {serviceAccountName: sa, containers: [{name: c, image: i}]}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns, labels: {app: a}}\nspec: {containers: []}\nstatus: {podIP: 10.0.0.1, phase: Running}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: ns}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n",
    );
    assert!(b.messages.is_empty(), "{:?}", b.messages);
    let kinds: Vec<&str> = b.resources.iter().map(|l| l.resource.kind()).collect();
    assert_eq!(kinds, ["Service", "Deployment", "Pod", "Secret", "ServiceAccount", "Namespace"]);
    let Resource::Pod(p) = &b.resources[2].resource else { panic!() };
    assert_eq!(p.spec.status.pod_ip.as_deref(), Some("10.0.0.1"));
    let Resource::Secret(s) = &b.resources[3].resource else { panic!() };
    assert_eq!(s.spec.kind.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(b.resources[5].resource.namespace(), None, "Namespace is cluster-scoped");
}

#[test]
fn anything_else_is_ignored_with_an_info() {
    let b = parse_str("t.yaml", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: x}\n");
    assert!(b.resources.is_empty());
    let text: Vec<String> = b.messages.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        text,
        [
            "Info [WEFT0002] (StatefulSet default/db, t.yaml#0) apps/v1 StatefulSet is not a mesh resource, ignored",
            "Info [WEFT0002] (VirtualServce default/x, t.yaml#1) networking.istio.io/v1 VirtualServce is not a kind weft knows (did you mean \"VirtualService\"?), ignored",
        ]
    );
}

#[test]
fn json_lists_and_empty_documents() {
    let json = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a"},"spec":{"hosts":["a"],"http":[{"route":[{"destination":{"host":"a"}}]}]}},
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"name":"http","port":80}]}}]}"#;
    let b = parse_str("list.json", json);
    assert!(b.messages.is_empty(), "{:?}", b.messages);
    assert_eq!(b.resources.len(), 2);
    let b = parse_str("t.yaml", "---\n---\n# nothing\n");
    assert!(b.messages.is_empty() && b.resources.is_empty());
}

#[test]
fn nulls_mean_absent_as_in_kubernetes() {
    let b = parse_str("t.yaml", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec:\n  host: a\n  subsets:\n  trafficPolicy: ~\n");
    assert!(b.messages.is_empty(), "{:?}", b.messages);
}

#[test]
fn every_kind_in_the_table_has_a_test_here() {
    // Guards against adding a kind without a test above.
    let tested = [
        "VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "WorkloadEntry", "Sidecar",
        "PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication", "Telemetry", "HTTPRoute",
        "GRPCRoute", "TrafficSplit", "ServiceProfile", "Server", "ServerAuthorization",
        "MeshTLSAuthentication", "NetworkAuthentication", "Namespace", "Service", "Deployment", "Pod",
        "ServiceAccount", "Secret",
    ];
    for k in weft_model::resource::KINDS {
        assert!(tested.contains(&k.kind), "{} has no test", k.kind);
    }
}
