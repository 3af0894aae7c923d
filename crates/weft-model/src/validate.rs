//! Per-resource validation that types alone cannot express: one-of fields,
//! ranges that depend on other fields, names, CIDRs, filter/type agreement.
//! Each finding names the field path. Cross-resource checks live in
//! [`crate::analyze`].

use crate::diag::{Code, Message};
use crate::resource::Resource;
use crate::types::{common::LabelSelector, gateway_api as gw, istio, linkerd};
use crate::values;

#[derive(Default)]
struct Findings(Vec<Message>);

impl Findings {
    fn add(&mut self, code: Code, path: impl Into<String>, text: impl Into<String>) {
        self.0.push(Message::new(code, text).field(path));
    }
    fn invalid(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.add(Code::InvalidValue, path, text);
    }
}

/// Validates one resource; an empty result means it is valid on its own.
pub fn validate(r: &Resource) -> Vec<Message> {
    let mut f = Findings::default();
    let meta = r.metadata();
    if meta.name.is_empty() && meta.generate_name.is_none() {
        f.add(Code::MissingField, "metadata.name", "every resource needs a name");
    } else if !meta.name.is_empty() {
        if let Err(e) = values::check_object_name(&meta.name) {
            f.invalid("metadata.name", e);
        }
    }
    if let Some(ns) = &meta.namespace {
        if let Err(e) = values::check_object_name(ns) {
            f.invalid("metadata.namespace", e);
        }
    }
    default_policy_annotation(&meta.annotations, "metadata.annotations", &mut f);
    if let Resource::Deployment(o) = r {
        default_policy_annotation(&o.spec.template.metadata.annotations, "spec.template.metadata.annotations", &mut f);
    }
    match r {
        Resource::VirtualService(o) => virtual_service(&o.spec, &mut f),
        Resource::DestinationRule(o) => destination_rule(&o.spec, &mut f),
        Resource::IstioGateway(o) => istio_gateway(&o.spec, &mut f),
        Resource::ServiceEntry(o) => service_entry(&o.spec, &mut f),
        Resource::PeerAuthentication(o) => {
            if !o.spec.port_level_mtls.is_empty() && o.spec.selector.is_none() {
                f.invalid(
                    "spec.portLevelMtls",
                    "portLevelMtls needs a workload selector (ports are a property of workloads)",
                );
            }
            for k in o.spec.port_level_mtls.keys() {
                if k.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
                    f.invalid(format!("spec.portLevelMtls.{k}"), format!("{k:?} is not a port number"));
                }
            }
        }
        Resource::AuthorizationPolicy(o) => authorization_policy(&o.spec, &o.metadata.annotations, &mut f),
        Resource::Telemetry(o) => telemetry(&o.spec, &mut f),
        Resource::RequestAuthentication(o) => {
            if o.spec.selector.is_some() && (o.spec.target_ref.is_some() || !o.spec.target_refs.is_empty()) {
                f.invalid("spec", "set selector or targetRef(s), not both");
            }
            policy_targets(o.spec.target_ref.as_ref(), &o.spec.target_refs, &mut f);
            for (i, rule) in o.spec.jwt_rules.iter().enumerate() {
                let at = |field: &str| format!("spec.jwtRules[{i}].{field}");
                if rule.issuer.is_empty() {
                    f.add(Code::MissingField, at("issuer"), "issuer must not be empty");
                }
                if rule.jwks_uri.is_some() && rule.jwks.is_some() {
                    f.invalid(format!("spec.jwtRules[{i}]"), "set jwksUri or jwks, not both");
                }
                if let Some(u) = &rule.jwks_uri {
                    if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(char::is_whitespace) {
                        f.invalid(at("jwksUri"), format!("{u:?} is not an http:// or https:// URL"));
                    }
                }
                if rule.jwks.is_none() && rule.jwks_uri.is_none() && !rule.issuer.starts_with("https://") && !rule.issuer.starts_with("http://") {
                    f.add(Code::MissingField, at("jwksUri"), "set jwksUri or jwks: the issuer is not a URL to discover the keys from");
                }
                if let Some(j) = &rule.jwks {
                    match serde_json::from_str::<serde_json::Value>(j) {
                        Ok(v) if v.get("keys").is_some_and(|k| k.is_array()) => {}
                        Ok(_) => f.invalid(at("jwks"), "a JWKS is a JSON object with a \"keys\" array"),
                        Err(e) => f.invalid(at("jwks"), format!("not JSON: {e}")),
                    }
                }
                let header = |name: &str, path: String, f: &mut Findings| {
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                        f.invalid(path, format!("{name:?} is not a header name"));
                    }
                };
                for (k, h) in rule.from_headers.iter().enumerate() {
                    header(&h.name, format!("spec.jwtRules[{i}].fromHeaders[{k}].name"), &mut f);
                }
                if let Some(h) = &rule.output_payload_to_header {
                    header(h, at("outputPayloadToHeader"), &mut f);
                }
                for (k, c) in rule.output_claim_to_headers.iter().enumerate() {
                    header(&c.header, format!("spec.jwtRules[{i}].outputClaimToHeaders[{k}].header"), &mut f);
                }
            }
        }
        Resource::HttpRoute(o) => {
            for (i, rule) in o.spec.rules.iter().enumerate() {
                let p = format!("spec.rules[{i}]");
                for (j, m) in rule.matches.iter().enumerate() {
                    http_route_match(m, &format!("{p}.matches[{j}]"), &mut f);
                }
                filters(&rule.filters, &format!("{p}.filters"), &mut f);
                backend_refs(&rule.backend_refs, &p, &mut f);
            }
        }
        Resource::GrpcRoute(o) => {
            for (i, rule) in o.spec.rules.iter().enumerate() {
                let p = format!("spec.rules[{i}]");
                for (j, m) in rule.matches.iter().enumerate() {
                    let mp = format!("{p}.matches[{j}]");
                    if let Some(method) = &m.method {
                        let kind = method.kind.as_deref().unwrap_or("Exact");
                        match kind {
                            "Exact" => {
                                if method.service.is_none() && method.method.is_none() {
                                    f.invalid(format!("{mp}.method"), "set service, method or both");
                                }
                            }
                            "RegularExpression" => {
                                for (n, v) in [("service", &method.service), ("method", &method.method)] {
                                    if let Some(v) = v {
                                        if let Err(e) = values::check_regex(v) {
                                            f.add(Code::InvalidRegex, format!("{mp}.method.{n}"), e);
                                        }
                                    }
                                }
                            }
                            other => f.invalid(
                                format!("{mp}.method.type"),
                                format!("{other:?} is not a method match type; use Exact or RegularExpression"),
                            ),
                        }
                    }
                    header_matches(&m.headers, &format!("{mp}.headers"), &mut f);
                }
                filters(&rule.filters, &format!("{p}.filters"), &mut f);
                backend_refs(&rule.backend_refs, &p, &mut f);
            }
        }
        Resource::Gateway(o) => {
            let mut names = std::collections::BTreeSet::new();
            for (i, l) in o.spec.listeners.iter().enumerate() {
                if !names.insert(&l.name) {
                    f.invalid(format!("spec.listeners[{i}].name"), format!("listener name {:?} is used twice", l.name));
                }
                if matches!(l.protocol.as_str(), "HTTPS" | "TLS")
                    && l.tls.as_ref().is_none_or(|t| {
                        t.mode.as_deref() != Some("Passthrough") && t.certificate_refs.is_empty()
                    })
                {
                    f.add(
                        Code::MissingField,
                        format!("spec.listeners[{i}].tls.certificateRefs"),
                        format!("a {} listener that terminates TLS needs certificateRefs", l.protocol),
                    );
                }
            }
        }
        Resource::TrafficSplit(o) => {
            if o.spec.backends.is_empty() {
                f.add(Code::MissingField, "spec.backends", "a TrafficSplit needs at least one backend");
            }
            if o.spec.backends.iter().all(|b| b.weight.milli == 0) && !o.spec.backends.is_empty() {
                f.invalid("spec.backends", "all backend weights are 0: no traffic could be routed");
            }
        }
        Resource::ServiceProfile(o) => {
            if let Some(b) = &o.spec.retry_budget {
                if !(b.retry_ratio.is_finite() && b.retry_ratio >= 0.0) {
                    f.invalid("spec.retryBudget.retryRatio", "retryRatio must be a non-negative number");
                }
            }
            for (i, route) in o.spec.routes.iter().enumerate() {
                if route.condition == linkerd::RequestMatch::default() {
                    f.add(
                        Code::MissingField,
                        format!("spec.routes[{i}].condition"),
                        "a route condition needs method, pathRegex, all, any or not",
                    );
                }
            }
        }
        Resource::Server(o) => {
            if o.spec.pod_selector.is_some() == o.spec.external_workload_selector.is_some() {
                f.invalid("spec", "set exactly one of podSelector and externalWorkloadSelector");
            }
            if let Some(p) = &o.spec.access_policy {
                if !linkerd::DEFAULT_POLICIES.contains(&p.as_str()) {
                    f.invalid("spec.accessPolicy", format!("{p:?} is not one of {}", linkerd::DEFAULT_POLICIES.join(", ")));
                }
            }
            if let Some(p) = &o.spec.proxy_protocol {
                const PROTOCOLS: &[&str] = &["unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS"];
                if !PROTOCOLS.contains(&p.as_str()) {
                    f.invalid("spec.proxyProtocol", format!("{p:?} is not one of {}", PROTOCOLS.join(", ")));
                }
            }
            if let Some(s) = &o.spec.pod_selector {
                selector(s, "spec.podSelector", &mut f);
            }
        }
        Resource::ServerAuthorization(o) => {
            if o.spec.server.name.is_some() == o.spec.server.selector.is_some() {
                f.invalid("spec.server", "set exactly one of name and selector");
            }
            networks(&o.spec.client.networks, "spec.client.networks", &mut f);
            if let Some(t) = &o.spec.client.mesh_tls {
                linkerd_identities(&t.identities, "spec.client.meshTLS.identities", &mut f);
            }
        }
        Resource::NetworkAuthentication(o) => networks(&o.spec.networks, "spec.networks", &mut f),
        Resource::MeshTlsAuthentication(o) => {
            linkerd_identities(&o.spec.identities, "spec.identities", &mut f);
            for (i, r) in o.spec.identity_refs.iter().enumerate() {
                if !matches!(r.kind.as_str(), "ServiceAccount" | "Namespace") {
                    f.invalid(format!("spec.identityRefs[{i}].kind"), format!("{:?} is not ServiceAccount or Namespace", r.kind));
                }
            }
        }
        Resource::LinkerdAuthorizationPolicy(o) => {
            if !matches!(o.spec.target_ref.kind.as_str(), "Server" | "HTTPRoute" | "Namespace" | "GRPCRoute") {
                f.invalid("spec.targetRef.kind", format!("{:?} is not Server, HTTPRoute or Namespace", o.spec.target_ref.kind));
            } else if o.spec.target_ref.kind == "GRPCRoute" {
                f.add(Code::Unsupported, "spec.targetRef.kind", "GRPCRoute targets are not supported by weft yet: target the Server");
            }
            for (i, r) in o.spec.required_authentication_refs.iter().enumerate() {
                if !matches!(r.kind.as_str(), "MeshTLSAuthentication" | "NetworkAuthentication" | "ServiceAccount") {
                    f.invalid(
                        format!("spec.requiredAuthenticationRefs[{i}].kind"),
                        format!("{:?} is not MeshTLSAuthentication, NetworkAuthentication or ServiceAccount", r.kind),
                    );
                }
            }
        }
        Resource::Deployment(o) => {
            if let Some(s) = &o.spec.selector {
                selector(s, "spec.selector", &mut f);
            }
        }
        _ => {}
    }
    f.0
}

fn string_match(m: &istio::StringMatch, path: &str, f: &mut Findings) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set != 1 {
        f.invalid(path, "set exactly one of exact, prefix and regex");
    }
}

fn virtual_service(s: &istio::VirtualServiceSpec, f: &mut Findings) {
    if s.hosts.is_empty() {
        f.add(Code::MissingField, "spec.hosts", "a VirtualService needs at least one host");
    }
    if s.http.is_empty() && s.tcp.is_empty() && s.tls.is_empty() {
        f.add(Code::MissingField, "spec", "a VirtualService needs http, tcp or tls routes");
    }
    for (i, r) in s.http.iter().enumerate() {
        let p = format!("spec.http[{i}]");
        let actions = [
            !r.route.is_empty(),
            r.redirect.is_some(),
            r.direct_response.is_some(),
            r.delegate.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if actions == 0 {
            f.add(Code::MissingField, &p, "an http route needs route, redirect, directResponse or delegate");
        } else if actions > 1 {
            f.invalid(&p, "set only one of route, redirect, directResponse and delegate");
        }
        if let Some(h) = &r.headers {
            header_operations(h, &format!("{p}.headers"), f);
        }
        for (j, d) in r.route.iter().enumerate() {
            if let Some(h) = &d.headers {
                header_operations(h, &format!("{p}.route[{j}].headers"), f);
            }
        }
        for (j, m) in r.matches.iter().enumerate() {
            let mp = format!("{p}.match[{j}]");
            for (name, sm) in [("uri", &m.uri), ("scheme", &m.scheme), ("method", &m.method), ("authority", &m.authority)] {
                if let Some(sm) = sm {
                    string_match(sm, &format!("{mp}.{name}"), f);
                }
            }
            for (kind, map) in [("headers", &m.headers), ("queryParams", &m.query_params), ("withoutHeaders", &m.without_headers)] {
                for (k, sm) in map {
                    if kind != "queryParams" {
                        if let Err(e) = values::check_header_name(k) {
                            f.invalid(format!("{mp}.{kind}.{k}"), e);
                        } else if k.to_ascii_lowercase() != *k {
                            f.invalid(format!("{mp}.{kind}.{k}"), format!("header name {k:?} must be lowercase"));
                        }
                    }
                    // An empty StringMatch on a header means "present".
                    if *sm != istio::StringMatch::default() {
                        string_match(sm, &format!("{mp}.{kind}.{k}"), f);
                    }
                }
            }
        }
        for (j, d) in r.route.iter().enumerate() {
            if let Some(w) = d.weight {
                if !(0..=100).contains(&w) {
                    f.invalid(format!("{p}.route[{j}].weight"), format!("weight {w} is out of range 0-100"));
                }
            }
        }
        if let Some(retry) = &r.retries {
            if retry.attempts < 0 {
                f.invalid(format!("{p}.retries.attempts"), "attempts must not be negative");
            }
            if let Some(on) = &retry.retry_on {
                for (k, cond) in on.split(',').map(str::trim).enumerate() {
                    if !is_retry_condition(cond) {
                        let suggestion = closest_retry(cond);
                        f.invalid(format!("{p}.retries.retryOn"), format!("unknown retry condition {cond:?} (item {k}){suggestion}"));
                    }
                }
            }
        }
        if let Some(fault) = &r.fault {
            if fault.delay.is_none() && fault.abort.is_none() {
                f.add(Code::MissingField, format!("{p}.fault"), "a fault needs delay or abort");
            }
            if let Some(d) = &fault.delay {
                if d.fixed_delay.is_none() && d.exponential_delay.is_none() {
                    f.add(Code::MissingField, format!("{p}.fault.delay.fixedDelay"), "a delay fault needs fixedDelay");
                }
                if let Some(pc) = d.percent {
                    if !(0..=100).contains(&pc) {
                        f.invalid(format!("{p}.fault.delay.percent"), format!("percent {pc} is out of range 0-100"));
                    }
                }
            }
            if let Some(a) = &fault.abort {
                let kinds = [a.http_status.is_some(), a.grpc_status.is_some(), a.http2_error.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                if kinds != 1 {
                    f.invalid(format!("{p}.fault.abort"), "set exactly one of httpStatus, grpcStatus and http2Error");
                }
                if let Some(s) = a.http_status {
                    if !(200..=599).contains(&s) {
                        f.invalid(format!("{p}.fault.abort.httpStatus"), format!("status {s} is out of range 200-599"));
                    }
                }
                if let Some(g) = &a.grpc_status {
                    if !GRPC_CODES.contains(&g.as_str()) {
                        f.invalid(format!("{p}.fault.abort.grpcStatus"), format!("{g:?} is not a gRPC status name like UNAVAILABLE"));
                    }
                }
            }
        }
        if let Some(rd) = &r.redirect {
            if let Some(code) = rd.redirect_code {
                if !(300..=399).contains(&code) {
                    f.invalid(format!("{p}.redirect.redirectCode"), format!("{code} is not a 3xx redirect code"));
                }
            }
        }
        if let Some(dr) = &r.direct_response {
            if !(200..=599).contains(&dr.status) {
                f.invalid(format!("{p}.directResponse.status"), format!("status {} is out of range 200-599", dr.status));
            }
        }
        if r.mirror_percentage.is_some() && r.mirror.is_none() {
            f.invalid(format!("{p}.mirrorPercentage"), "mirrorPercentage without mirror has no effect");
        }
    }
    for (i, r) in s.tcp.iter().enumerate() {
        if r.route.is_empty() {
            f.add(Code::MissingField, format!("spec.tcp[{i}].route"), "a tcp route needs at least one destination");
        }
        for (j, m) in r.matches.iter().enumerate() {
            for (k, c) in m.destination_subnets.iter().enumerate() {
                cidr(c, &format!("spec.tcp[{i}].match[{j}].destinationSubnets[{k}]"), f);
            }
        }
    }
    for (i, r) in s.tls.iter().enumerate() {
        if r.matches.is_empty() {
            f.add(Code::MissingField, format!("spec.tls[{i}].match"), "a tls route needs a match with sniHosts");
        }
        if r.route.is_empty() {
            f.add(Code::MissingField, format!("spec.tls[{i}].route"), "a tls route needs at least one destination");
        }
    }
}

/// gRPC status names as Istio accepts them in `grpcStatus`.
pub const GRPC_CODES: &[&str] = &[
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Retry conditions Istio/Envoy accept in `retryOn` (besides status codes).
pub const RETRY_CONDITIONS: &[&str] = &[
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal",
    "resource-exhausted", "unavailable",
];

fn is_retry_condition(c: &str) -> bool {
    RETRY_CONDITIONS.contains(&c) || c.parse::<u16>().is_ok_and(|s| (100..=599).contains(&s))
}

fn closest_retry(c: &str) -> String {
    values::closest(c, RETRY_CONDITIONS.iter().copied())
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

fn traffic_policy(t: &istio::TrafficPolicy, path: &str, f: &mut Findings) {
    if let Some(lb) = &t.load_balancer {
        if lb.simple.is_some() && lb.consistent_hash.is_some() {
            f.invalid(format!("{path}.loadBalancer"), "set simple or consistentHash, not both");
        }
        if let Some(ch) = &lb.consistent_hash {
            let keys = [
                ch.http_header_name.is_some(),
                ch.http_cookie.is_some(),
                ch.use_source_ip == Some(true),
                ch.http_query_parameter_name.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if keys != 1 {
                f.invalid(
                    format!("{path}.loadBalancer.consistentHash"),
                    "set exactly one hash key: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
                );
            }
        }
    }
    if let Some(od) = &t.outlier_detection {
        for (name, v) in [("maxEjectionPercent", od.max_ejection_percent), ("minHealthPercent", od.min_health_percent)] {
            if let Some(v) = v {
                if !(0..=100).contains(&v) {
                    f.invalid(format!("{path}.outlierDetection.{name}"), format!("{v} is out of range 0-100"));
                }
            }
        }
    }
    if let Some(tls) = &t.tls {
        if tls.mode == Some(istio::ClientTlsMode::Mutual)
            && tls.credential_name.is_none()
            && (tls.client_certificate.is_none() || tls.private_key.is_none())
        {
            f.add(
                Code::MissingField,
                format!("{path}.tls"),
                "MUTUAL needs credentialName, or clientCertificate and privateKey",
            );
        }
    }
    for (i, pl) in t.port_level_settings.iter().enumerate() {
        if pl.port.as_ref().and_then(|p| p.number).is_none() {
            f.add(Code::MissingField, format!("{path}.portLevelSettings[{i}].port.number"), "port-level settings need a port number");
        }
    }
}

fn destination_rule(s: &istio::DestinationRuleSpec, f: &mut Findings) {
    if let Some(t) = &s.traffic_policy {
        traffic_policy(t, "spec.trafficPolicy", f);
    }
    let mut seen = std::collections::BTreeMap::new();
    for (i, sub) in s.subsets.iter().enumerate() {
        let p = format!("spec.subsets[{i}]");
        if sub.name.is_empty() {
            f.add(Code::MissingField, format!("{p}.name"), "a subset needs a name");
        } else if let Some(first) = seen.insert(sub.name.as_str(), i) {
            f.add(
                Code::DuplicateSubsetName,
                format!("{p}.name"),
                format!("subset {:?} is already defined at spec.subsets[{first}]; only one can be used", sub.name),
            );
        }
        if let Some(t) = &sub.traffic_policy {
            traffic_policy(t, &format!("{p}.trafficPolicy"), f);
        }
    }
}

fn istio_gateway(s: &istio::GatewaySpec, f: &mut Findings) {
    if s.servers.is_empty() {
        f.add(Code::MissingField, "spec.servers", "a Gateway needs at least one server");
    }
    for (i, srv) in s.servers.iter().enumerate() {
        let p = format!("spec.servers[{i}]");
        if srv.hosts.is_empty() {
            f.add(Code::MissingField, format!("{p}.hosts"), "a server needs at least one host (\"*\" for any)");
        }
        const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"];
        if !PROTOCOLS.contains(&srv.port.protocol.to_ascii_uppercase().as_str()) {
            f.invalid(format!("{p}.port.protocol"), format!("{:?} is not one of {}", srv.port.protocol, PROTOCOLS.join(", ")));
        }
        if let Some(tls) = &srv.tls {
            let terminates = matches!(tls.mode, Some(istio::ServerTlsMode::Simple | istio::ServerTlsMode::Mutual | istio::ServerTlsMode::OptionalMutual));
            if terminates
                && tls.credential_name.is_none()
                && tls.credential_names.is_empty()
                && (tls.server_certificate.is_none() || tls.private_key.is_none())
            {
                f.add(
                    Code::MissingField,
                    format!("{p}.tls"),
                    "a TLS-terminating server needs credentialName, or serverCertificate and privateKey",
                );
            }
        } else if srv.port.protocol.eq_ignore_ascii_case("HTTPS") {
            f.add(Code::MissingField, format!("{p}.tls"), "an HTTPS server needs tls settings");
        }
    }
}

fn service_entry(s: &istio::ServiceEntrySpec, f: &mut Findings) {
    if s.hosts.is_empty() {
        f.add(Code::MissingField, "spec.hosts", "a ServiceEntry needs at least one host");
    }
    if s.workload_selector.is_some() && !s.endpoints.is_empty() {
        f.invalid("spec", "set endpoints or workloadSelector, not both");
    }
    if s.resolution == Some(istio::Resolution::Static) && s.endpoints.is_empty() && s.workload_selector.is_none() {
        f.add(Code::MissingField, "spec.endpoints", "resolution STATIC needs endpoints or a workloadSelector");
    }
    for (i, a) in s.addresses.iter().enumerate() {
        if a.parse::<std::net::IpAddr>().is_err() {
            cidr(a, &format!("spec.addresses[{i}]"), f);
        }
    }
}

/// What of the Telemetry API weft enforces exactly; the rest is refused
/// with a reason rather than applied approximately.
fn telemetry(s: &istio::TelemetrySpec, f: &mut Findings) {
    const METRICS: &[&str] = &[
        "ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES",
        "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES",
    ];
    for (i, m) in s.metrics.iter().enumerate() {
        for (j, o) in m.overrides.iter().enumerate() {
            let at = format!("spec.metrics[{i}].overrides[{j}]");
            if let Some(sel) = &o.matches {
                if let Some(metric) = sel.metric.as_deref().filter(|x| !METRICS.contains(x)) {
                    f.invalid(format!("{at}.match.metric"), format!("{metric:?} is not one of Istio's metrics ({})", METRICS.join(", ")));
                }
                if sel.custom_metric.is_some() {
                    f.add(Code::Unsupported, format!("{at}.match.customMetric"), "custom metrics are not supported: weft exports Istio's standard metrics");
                }
                if let Some(mode) = sel.mode.as_deref().filter(|x| !["CLIENT", "SERVER", "CLIENT_AND_SERVER"].contains(x)) {
                    f.invalid(format!("{at}.match.mode"), format!("{mode:?} is not CLIENT, SERVER or CLIENT_AND_SERVER"));
                }
            }
            for (tag, t) in &o.tag_overrides {
                let path = format!("{at}.tagOverrides[{tag}]");
                if !is_label_name(tag) {
                    f.invalid(&path, format!("{tag:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
                }
                match t.operation.as_deref() {
                    Some("REMOVE") => {}
                    None | Some("UPSERT") => match t.value.as_deref() {
                        None => f.add(Code::MissingField, format!("{path}.value"), "an UPSERT needs a value"),
                        Some(v) => {
                            if let Err(e) = crate::values::tag_value(v) {
                                f.add(Code::Unsupported, format!("{path}.value"), e);
                            }
                        }
                    },
                    Some(op) => f.invalid(format!("{path}.operation"), format!("{op:?} is not UPSERT or REMOVE")),
                }
            }
        }
    }
    for (i, a) in s.access_logging.iter().enumerate() {
        if let Some(filter) = &a.filter {
            if crate::values::access_log_code_filter(&filter.expression).is_none() {
                f.add(
                    Code::Unsupported,
                    format!("spec.accessLogging[{i}].filter.expression"),
                    format!("weft evaluates access-log filters of the form `response.code >= N` (or `>`), not {:?}", filter.expression),
                );
            }
        }
    }
    if s.access_logging.len() > 1 {
        f.add(Code::Unsupported, "spec.accessLogging[1]", "one accessLogging entry per Telemetry resource (weft has one access log per proxy)");
    }
    for (i, t) in s.tracing.iter().enumerate() {
        if let Some(mode) = t.matches.as_ref().and_then(|m| m.mode.as_deref()).filter(|m| *m != "CLIENT_AND_SERVER") {
            f.add(Code::Unsupported, format!("spec.tracing[{i}].match.mode"), format!("weft records spans on both sides of a hop (CLIENT_AND_SERVER), not only {mode}"));
        }
        if t.providers.len() > 1 {
            f.add(Code::Unsupported, format!("spec.tracing[{i}].providers[1]"), "one tracing provider per workload (as Istio)");
        }
        for (k, v) in &t.custom_tags {
            if let Err(e) = crate::values::trace_tag(v) {
                f.invalid(format!("spec.tracing[{i}].customTags[{k}]"), e);
            }
        }
    }
    if s.tracing.len() > 1 {
        f.add(Code::Unsupported, "spec.tracing[1]", "one tracing entry per Telemetry resource");
    }
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn authorization_policy(s: &istio::AuthorizationPolicySpec, annotations: &std::collections::BTreeMap<String, String>, f: &mut Findings) {
    let custom = s.action == Some(istio::AuthzAction::Custom);
    if custom {
        f.add(
            Code::Unsupported,
            "spec.action",
            "action CUSTOM (an external authorizer) is not supported by weft, and a policy that is not enforced is worse than none: write ALLOW or DENY rules",
        );
    }
    if !custom && s.provider.is_some() {
        f.invalid("spec.provider", "provider is only allowed with action CUSTOM");
    }
    if s.selector.is_some() && (s.target_ref.is_some() || !s.target_refs.is_empty()) {
        f.invalid("spec", "set selector or targetRef(s), not both");
    }
    policy_targets(s.target_ref.as_ref(), &s.target_refs, f);
    if let Some(v) = annotations.get(istio::DRY_RUN_ANNOTATION) {
        if v != "true" && v != "false" {
            f.invalid(format!("metadata.annotations[{}]", istio::DRY_RUN_ANNOTATION), format!("{v:?} is not \"true\" or \"false\""));
        }
    }
    for (i, rule) in s.rules.iter().flatten().enumerate() {
        for (j, from) in rule.from.iter().enumerate() {
            let src = &from.source;
            let at = |name: &str, k: usize| format!("spec.rules[{i}].from[{j}].source.{name}[{k}]");
            for (name, list) in [
                ("ipBlocks", &src.ip_blocks),
                ("notIpBlocks", &src.not_ip_blocks),
                ("remoteIpBlocks", &src.remote_ip_blocks),
                ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
            ] {
                for (k, c) in list.iter().enumerate() {
                    if c.parse::<std::net::IpAddr>().is_err() {
                        cidr(c, &at(name, k), f);
                    }
                }
            }
            for (name, list) in [("principals", &src.principals), ("notPrincipals", &src.not_principals)] {
                for (k, p) in list.iter().enumerate() {
                    if let Some(rest) = p.strip_prefix("spiffe://") {
                        f.invalid(at(name, k), format!("{p:?} is written with spiffe://, which Istio principals never are, so it would match nothing: write {rest:?}"));
                    } else {
                        pattern(p, &at(name, k), f);
                    }
                }
            }
            for (name, list) in [
                ("requestPrincipals", &src.request_principals),
                ("notRequestPrincipals", &src.not_request_principals),
                ("namespaces", &src.namespaces),
                ("notNamespaces", &src.not_namespaces),
            ] {
                for (k, p) in list.iter().enumerate() {
                    pattern(p, &at(name, k), f);
                }
            }
            for (name, list) in [("serviceAccounts", &src.service_accounts), ("notServiceAccounts", &src.not_service_accounts)] {
                for (k, sa) in list.iter().enumerate() {
                    if sa.split_once('/').is_none_or(|(n, a)| n.is_empty() || a.is_empty()) {
                        f.invalid(at(name, k), format!("{sa:?} is not NAMESPACE/SERVICE_ACCOUNT"));
                    }
                }
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let op = &to.operation;
            let at = |name: &str, k: usize| format!("spec.rules[{i}].to[{j}].operation.{name}[{k}]");
            for (name, list) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
                for (k, port) in list.iter().enumerate() {
                    if port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
                        f.invalid(at(name, k), format!("{port:?} is not a port number"));
                    }
                }
            }
            for (name, list) in [("hosts", &op.hosts), ("notHosts", &op.not_hosts)] {
                for (k, h) in list.iter().enumerate() {
                    pattern(h, &at(name, k), f);
                }
            }
            for (name, list) in [("methods", &op.methods), ("notMethods", &op.not_methods)] {
                for (k, m) in list.iter().enumerate() {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                        f.invalid(at(name, k), format!("{m:?} is not an HTTP method"));
                    } else {
                        pattern(m, &at(name, k), f);
                    }
                }
            }
            for (name, list) in [("paths", &op.paths), ("notPaths", &op.not_paths)] {
                for (k, p) in list.iter().enumerate() {
                    if p.contains('{') {
                        f.add(Code::Unsupported, at(name, k), format!("path templates ({p:?}) are not supported by weft; use an exact path, a prefix (/api/*) or a suffix (*.png)"));
                    } else if p != "*" && !p.starts_with('/') && !p.starts_with('*') {
                        f.invalid(at(name, k), format!("{p:?} is not a path: paths start with / (or * for a suffix match)"));
                    } else {
                        pattern(p, &at(name, k), f);
                    }
                }
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let at = format!("spec.rules[{i}].when[{j}]");
            if c.values.is_empty() && c.not_values.is_empty() {
                f.add(Code::MissingField, at.clone(), "a condition needs values or notValues");
            }
            condition(c, &at, f);
        }
    }
}

/// The `when` keys weft evaluates (the same list as the proxy's).
pub const CONDITION_KEYS: &[&str] = &[
    "request.headers[NAME]",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[NAME]",
];

fn condition(c: &istio::Condition, at: &str, f: &mut Findings) {
    let bracketed = |prefix: &str| {
        c.key.strip_prefix(prefix).is_some_and(|rest| {
            let mut s = rest;
            let mut n = 0;
            while let Some(inner) = s.strip_prefix('[') {
                let Some(end) = inner.find(']') else { return false };
                if end == 0 {
                    return false;
                }
                s = &inner[end + 1..];
                n += 1;
            }
            s.is_empty() && n > 0
        })
    };
    let key = c.key.as_str();
    let known = matches!(
        key,
        "source.ip" | "remote.ip" | "source.namespace" | "source.principal" | "destination.ip" | "destination.port" | "connection.sni" | "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter"
    ) || (key.starts_with("request.headers[") && bracketed("request.headers") && !key[16..].contains('['))
        || (key.starts_with("request.auth.claims[") && bracketed("request.auth.claims"));
    if !known {
        let code = if key.starts_with("experimental.") || key.starts_with("source.user") || key.starts_with("request.regex") { Code::Unsupported } else { Code::InvalidValue };
        f.add(code, format!("{at}.key"), format!("{key:?} is not a condition key weft evaluates; use one of {}", CONDITION_KEYS.join(", ")));
        return;
    }
    for (name, list) in [("values", &c.values), ("notValues", &c.not_values)] {
        for (k, v) in list.iter().enumerate() {
            let p = format!("{at}.{name}[{k}]");
            match key {
                "source.ip" | "remote.ip" | "destination.ip" => {
                    if v.parse::<std::net::IpAddr>().is_err() {
                        cidr(v, &p, f);
                    }
                }
                "destination.port" => {
                    if v.parse::<u16>().is_err() {
                        f.invalid(p, format!("{v:?} is not a port number"));
                    }
                }
                _ => pattern(v, &p, f),
            }
        }
    }
}

/// Istio's string match: one `*` at the start or the end, or `*` alone.
fn pattern(v: &str, path: &str, f: &mut Findings) {
    if v == "*" {
        return;
    }
    let inner = v.trim_start_matches('*').trim_end_matches('*');
    let stars = v.len() - inner.len();
    if inner.contains('*') || stars > 1 {
        f.invalid(path, format!("{v:?} is not a pattern weft (or Istio) matches: use one * at the start or the end, or * alone"));
    }
}

fn policy_targets(one: Option<&istio::PolicyTargetReference>, many: &[istio::PolicyTargetReference], f: &mut Findings) {
    let all: Vec<(String, &istio::PolicyTargetReference)> =
        one.map(|t| ("spec.targetRef".to_string(), t)).into_iter().chain(many.iter().enumerate().map(|(i, t)| (format!("spec.targetRefs[{i}]"), t))).collect();
    if all.len() > 1 {
        f.add(Code::Unsupported, "spec.targetRefs", "more than one target is not supported by weft yet: write one policy per Service");
    }
    for (path, t) in all {
        if t.kind != "Service" || !t.group.as_deref().unwrap_or("").is_empty() {
            f.add(Code::Unsupported, format!("{path}.kind"), format!("targetRef kind {:?} is not supported by weft: name a Service (group \"\"), or use a selector", t.kind));
        }
    }
}

fn default_policy_annotation(annotations: &std::collections::BTreeMap<String, String>, path: &str, f: &mut Findings) {
    if let Some(v) = annotations.get(linkerd::DEFAULT_POLICY_ANNOTATION) {
        if !linkerd::DEFAULT_POLICIES.contains(&v.as_str()) {
            f.invalid(format!("{path}[{}]", linkerd::DEFAULT_POLICY_ANNOTATION), format!("{v:?} is not one of {}", linkerd::DEFAULT_POLICIES.join(", ")));
        }
    }
}

fn networks(list: &[linkerd::Network], path: &str, f: &mut Findings) {
    for (i, n) in list.iter().enumerate() {
        cidr(&n.cidr, &format!("{path}[{i}].cidr"), f);
        for (k, e) in n.except.iter().enumerate() {
            if e.parse::<std::net::IpAddr>().is_err() {
                cidr(e, &format!("{path}[{i}].except[{k}]"), f);
            }
        }
    }
}

/// Linkerd identities: `*`, `spiffe://...`, or DNS-like names with at most a leading `*`.
fn linkerd_identities(list: &[String], path: &str, f: &mut Findings) {
    for (i, id) in list.iter().enumerate() {
        let ok = id == "*"
            || id.starts_with("spiffe://")
            || (!id.is_empty() && !id[1..].contains('*') && id.split('.').all(|l| !l.is_empty()) && !id.contains('/'));
        if !ok && id.contains("/ns/") {
            f.invalid(
                format!("{path}[{i}]"),
                format!("{id:?} is an Istio principal; Linkerd identities are written SA.NS.serviceaccount.identity.linkerd.TRUST_DOMAIN (or spiffe://TRUST_DOMAIN/ns/NS/sa/SA)"),
            );
        } else if !ok {
            f.invalid(format!("{path}[{i}]"), format!("{id:?} is not a Linkerd identity (*, spiffe://..., or SA.NS.serviceaccount.identity.linkerd.TRUST_DOMAIN)"));
        }
    }
}

fn cidr(c: &str, path: &str, f: &mut Findings) {
    let ok = match c.split_once('/') {
        Some((ip, len)) => match (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(l)) => l <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(l)) => l <= 128,
            _ => false,
        },
        None => false,
    };
    if !ok {
        f.invalid(path, format!("{c:?} is not a CIDR like 10.0.0.0/8"));
    }
}

fn selector(s: &LabelSelector, path: &str, f: &mut Findings) {
    use crate::types::common::SelectorOperator::*;
    for (i, e) in s.match_expressions.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        if let Err(err) = values::check_label_key(&e.key) {
            f.invalid(format!("{p}.key"), err);
        }
        match e.operator {
            In | NotIn if e.values.is_empty() => f.add(Code::MissingField, format!("{p}.values"), "In and NotIn need values"),
            Exists | DoesNotExist if !e.values.is_empty() => f.invalid(format!("{p}.values"), "Exists and DoesNotExist take no values"),
            _ => {}
        }
    }
}

/// Header operations name headers: each name must be one a header can have.
fn header_operations(h: &istio::Headers, path: &str, f: &mut Findings) {
    for (side, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let names = ops.set.keys().map(|k| ("set", k)).chain(ops.add.keys().map(|k| ("add", k))).chain(ops.remove.iter().map(|k| ("remove", k)));
        for (op, name) in names {
            if let Err(e) = values::check_header_name(name) {
                f.invalid(format!("{path}.{side}.{op}.{name}"), e);
            }
        }
    }
}

fn header_matches(hs: &[gw::HttpHeaderMatch], path: &str, f: &mut Findings) {
    for (i, h) in hs.iter().enumerate() {
        if path.ends_with(".headers") {
            if let Err(e) = values::check_header_name(&h.name) {
                f.invalid(format!("{path}[{i}].name"), e);
            }
        }
        match h.kind.as_deref().unwrap_or("Exact") {
            "Exact" => {}
            "RegularExpression" => {
                if let Err(e) = values::check_regex(&h.value) {
                    f.add(Code::InvalidRegex, format!("{path}[{i}].value"), e);
                }
            }
            other => f.invalid(format!("{path}[{i}].type"), format!("{other:?} is not a match type; use Exact or RegularExpression")),
        }
    }
}

fn http_route_match(m: &gw::HttpRouteMatch, path: &str, f: &mut Findings) {
    if let Some(pm) = &m.path {
        let value = pm.value.as_deref().unwrap_or("/");
        match pm.kind.as_deref().unwrap_or("PathPrefix") {
            "Exact" | "PathPrefix" => {
                if !value.starts_with('/') {
                    f.invalid(format!("{path}.path.value"), format!("path {value:?} must start with '/'"));
                }
            }
            "RegularExpression" => {
                if let Err(e) = values::check_regex(value) {
                    f.add(Code::InvalidRegex, format!("{path}.path.value"), e);
                }
            }
            other => f.invalid(
                format!("{path}.path.type"),
                format!("{other:?} is not a path match type; use Exact, PathPrefix or RegularExpression"),
            ),
        }
    }
    header_matches(&m.headers, &format!("{path}.headers"), f);
    header_matches(&m.query_params, &format!("{path}.queryParams"), f);
    if let Some(method) = &m.method {
        const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
        if !METHODS.contains(&method.as_str()) {
            f.invalid(format!("{path}.method"), format!("{method:?} is not an HTTP method"));
        }
    }
}

fn filters(fs: &[gw::HttpRouteFilter], path: &str, f: &mut Findings) {
    for (i, flt) in fs.iter().enumerate() {
        let present = match flt.kind.as_str() {
            "RequestHeaderModifier" => flt.request_header_modifier.is_some(),
            "ResponseHeaderModifier" => flt.response_header_modifier.is_some(),
            "RequestMirror" => flt.request_mirror.is_some(),
            "RequestRedirect" => flt.request_redirect.is_some(),
            "URLRewrite" => flt.url_rewrite.is_some(),
            "ExtensionRef" => flt.extension_ref.is_some(),
            "CORS" => flt.cors.is_some(),
            other => {
                f.invalid(format!("{path}[{i}].type"), format!("{other:?} is not a filter type"));
                continue;
            }
        };
        if !present {
            let field = lower_first(&flt.kind);
            f.add(
                Code::MissingField,
                format!("{path}[{i}]"),
                format!("filter type {} needs its {field} field", flt.kind),
            );
        }
        if let Some(m) = &flt.request_mirror {
            if let Some(p) = m.percent {
                if !(0..=100).contains(&p) {
                    f.invalid(format!("{path}[{i}].requestMirror.percent"), format!("{p} is out of range 0-100"));
                }
            }
        }
    }
}

fn lower_first(s: &str) -> String {
    if s == "URLRewrite" {
        return "urlRewrite".into();
    }
    if s == "CORS" {
        return "cors".into();
    }
    let mut c = s.chars();
    c.next().map(|h| h.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
}

fn backend_refs(refs: &[gw::HttpBackendRef], path: &str, f: &mut Findings) {
    for (i, b) in refs.iter().enumerate() {
        if let Some(w) = b.weight {
            if !(0..=1_000_000).contains(&w) {
                f.invalid(format!("{path}.backendRefs[{i}].weight"), format!("weight {w} is out of range 0-1000000"));
            }
        }
        let is_service = matches!(b.kind.as_deref(), None | Some("Service")) && matches!(b.group.as_deref(), None | Some(""));
        if is_service && b.port.is_none() {
            f.add(Code::MissingField, format!("{path}.backendRefs[{i}].port"), "a Service backendRef needs a port");
        }
        filters(&b.filters, &format!("{path}.backendRefs[{i}].filters"), f);
    }
}
