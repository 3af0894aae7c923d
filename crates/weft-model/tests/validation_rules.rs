//! Per-resource rules that types alone cannot express, each with the exact
//! field and reason users see.

use weft_model::{parse_str, Code};

fn one(api: &str, kind: &str, spec: &str) -> (Code, String, String) {
    let doc = format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\nspec: {spec}\n");
    let b = parse_str("t.yaml", &doc);
    assert!(b.resources.is_empty(), "{kind} {spec} was accepted");
    assert_eq!(b.messages.len(), 1, "{:?}", b.messages);
    let m = &b.messages[0];
    (m.code, m.field.clone().unwrap_or_default(), m.text.clone())
}

const VS: &str = "networking.istio.io/v1";

#[test]
fn virtual_service_rules() {
    let cases: &[(&str, Code, &str, &str)] = &[
        ("{http: [{route: [{destination: {host: a}}]}]}", Code::MissingField, "spec.hosts", "a VirtualService needs at least one host"),
        ("{hosts: [a], http: [{timeout: 1s}]}", Code::MissingField, "spec.http[0]", "an http route needs route, redirect, directResponse or delegate"),
        ("{hosts: [a], http: [{route: [{destination: {host: a}}], redirect: {uri: /b}}]}", Code::InvalidValue, "spec.http[0]", "set only one of route, redirect, directResponse and delegate"),
        ("{hosts: [a], http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: a}}]}]}", Code::InvalidValue, "spec.http[0].match[0].uri", "set exactly one of exact, prefix and regex"),
        ("{hosts: [a], http: [{match: [{headers: {X-User: {exact: a}}}], route: [{destination: {host: a}}]}]}", Code::InvalidValue, "spec.http[0].match[0].headers.X-User", "header name \"X-User\" must be lowercase"),
        ("{hosts: [a], http: [{route: [{destination: {host: a}, weight: 101}]}]}", Code::InvalidValue, "spec.http[0].route[0].weight", "weight 101 is out of range 0-100"),
        ("{hosts: [a], http: [{route: [{destination: {host: a}}], retries: {attempts: 2, retryOn: \"5xx,gateway-eror\"}}]}", Code::InvalidValue, "spec.http[0].retries.retryOn", "unknown retry condition \"gateway-eror\" (item 1) (did you mean \"gateway-error\"?)"),
        ("{hosts: [a], http: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: 503, grpcStatus: UNAVAILABLE}}}]}", Code::InvalidValue, "spec.http[0].fault.abort", "set exactly one of httpStatus, grpcStatus and http2Error"),
        ("{hosts: [a], http: [{route: [{destination: {host: a}}], fault: {abort: {grpcStatus: UNAVAILABLEE}}}]}", Code::InvalidValue, "spec.http[0].fault.abort.grpcStatus", "\"UNAVAILABLEE\" is not a gRPC status name like UNAVAILABLE"),
        ("{hosts: [a], http: [{redirect: {uri: /b, redirectCode: 200}}]}", Code::InvalidValue, "spec.http[0].redirect.redirectCode", "200 is not a 3xx redirect code"),
        ("{hosts: [a], http: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 1s, percentage: {value: 120}}}}]}", Code::InvalidValue, "spec.http[0].fault.delay.percentage.value", "percentage 120 is out of range 0-100"),
        ("{hosts: [a], tcp: [{match: [{destinationSubnets: [10.0.0.0/33]}], route: [{destination: {host: a}}]}]}", Code::InvalidValue, "spec.tcp[0].match[0].destinationSubnets[0]", "\"10.0.0.0/33\" is not a CIDR like 10.0.0.0/8"),
        ("{hosts: ['bad host'], http: [{route: [{destination: {host: a}}]}]}", Code::InvalidValue, "spec.hosts[0]", "\"bad host\" is not a valid host (DNS name, optionally with a leading \"*.\")"),
    ];
    for (spec, code, field, text) in cases {
        assert_eq!(one(VS, "VirtualService", spec), (*code, field.to_string(), text.to_string()), "{spec}");
    }
}

#[test]
fn destination_rule_and_gateway_rules() {
    let cases: &[(&str, &str, Code, &str, &str)] = &[
        ("DestinationRule", "{host: a, trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}}", Code::InvalidValue, "spec.trafficPolicy.loadBalancer", "set simple or consistentHash, not both"),
        ("DestinationRule", "{host: a, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x, useSourceIp: true}}}}", Code::InvalidValue, "spec.trafficPolicy.loadBalancer.consistentHash", "set exactly one hash key: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName"),
        ("DestinationRule", "{host: a, trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}}", Code::InvalidValue, "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "150 is out of range 0-100"),
        ("DestinationRule", "{host: a, trafficPolicy: {tls: {mode: MUTUAL}}}", Code::MissingField, "spec.trafficPolicy.tls", "MUTUAL needs credentialName, or clientCertificate and privateKey"),
        ("Gateway", "{servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE}}]}", Code::MissingField, "spec.servers[0].tls", "a TLS-terminating server needs credentialName, or serverCertificate and privateKey"),
        ("Gateway", "{servers: [{port: {number: 80, name: http, protocol: HTTPX}, hosts: ['*']}]}", Code::InvalidValue, "spec.servers[0].port.protocol", "\"HTTPX\" is not one of HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS"),
        ("ServiceEntry", "{hosts: [a.com], resolution: STATIC}", Code::MissingField, "spec.endpoints", "resolution STATIC needs endpoints or a workloadSelector"),
    ];
    for (kind, spec, code, field, text) in cases {
        assert_eq!(one(VS, kind, spec), (*code, field.to_string(), text.to_string()), "{kind} {spec}");
    }
}

#[test]
fn security_rules() {
    let sec = "security.istio.io/v1";
    assert_eq!(
        one(sec, "PeerAuthentication", "{portLevelMtls: {8080: {mode: DISABLE}}}"),
        (Code::InvalidValue, "spec.portLevelMtls".into(), "portLevelMtls needs a workload selector (ports are a property of workloads)".into())
    );
    assert_eq!(
        one(sec, "AuthorizationPolicy", "{action: CUSTOM, rules: [{}]}"),
        (Code::Unsupported, "spec.action".into(), "action CUSTOM (an external authorizer) is not supported by weft, and a policy that is not enforced is worse than none: write ALLOW or DENY rules".into())
    );
    assert_eq!(
        one(sec, "RequestAuthentication", "{jwtRules: [{issuer: https://a.test, jwks: '{\"k\": 1}'}]}"),
        (Code::InvalidValue, "spec.jwtRules[0].jwks".into(), "a JWKS is a JSON object with a \"keys\" array".into())
    );
    assert_eq!(
        one(sec, "RequestAuthentication", "{jwtRules: [{issuer: my-issuer}]}"),
        (Code::MissingField, "spec.jwtRules[0].jwksUri".into(), "set jwksUri or jwks: the issuer is not a URL to discover the keys from".into())
    );
    assert_eq!(
        one(sec, "AuthorizationPolicy", "{rules: [{from: [{source: {serviceAccounts: [web]}}]}]}"),
        (Code::InvalidValue, "spec.rules[0].from[0].source.serviceAccounts[0]".into(), "\"web\" is not NAMESPACE/SERVICE_ACCOUNT".into())
    );
    assert_eq!(
        one(sec, "AuthorizationPolicy", "{rules: [{to: [{operation: {ports: [http]}}]}]}"),
        (Code::InvalidValue, "spec.rules[0].to[0].operation.ports[0]".into(), "\"http\" is not a port number".into())
    );
    assert_eq!(
        one(sec, "AuthorizationPolicy", "{rules: [{when: [{key: 'request.auth.claims[iss]'}]}]}"),
        (Code::MissingField, "spec.rules[0].when[0]".into(), "a condition needs values or notValues".into())
    );
}

#[test]
fn gateway_api_and_linkerd_rules() {
    let gw = "gateway.networking.k8s.io/v1";
    assert_eq!(
        one(gw, "HTTPRoute", "{rules: [{matches: [{path: {type: Prefix, value: /a}}]}]}"),
        (Code::InvalidValue, "spec.rules[0].matches[0].path.type".into(), "\"Prefix\" is not a path match type; use Exact, PathPrefix or RegularExpression".into())
    );
    assert_eq!(
        one(gw, "HTTPRoute", "{rules: [{filters: [{type: RequestMirror}]}]}"),
        (Code::MissingField, "spec.rules[0].filters[0]".into(), "filter type RequestMirror needs its requestMirror field".into())
    );
    assert_eq!(
        one(gw, "HTTPRoute", "{rules: [{backendRefs: [{name: a}]}]}"),
        (Code::MissingField, "spec.rules[0].backendRefs[0].port".into(), "a Service backendRef needs a port".into())
    );
    assert_eq!(
        one(gw, "Gateway", "{gatewayClassName: weft, listeners: [{name: a, port: 443, protocol: HTTPS}]}"),
        (Code::MissingField, "spec.listeners[0].tls.certificateRefs".into(), "a HTTPS listener that terminates TLS needs certificateRefs".into())
    );
    assert_eq!(
        one("split.smi-spec.io/v1alpha4", "TrafficSplit", "{service: a, backends: [{service: b, weight: 0}]}"),
        (Code::InvalidValue, "spec.backends".into(), "all backend weights are 0: no traffic could be routed".into())
    );
    assert_eq!(
        one("policy.linkerd.io/v1beta1", "ServerAuthorization", "{server: {}, client: {unauthenticated: true}}"),
        (Code::InvalidValue, "spec.server".into(), "set exactly one of name and selector".into())
    );
}
