//! Gateway API resources (`gateway.networking.k8s.io`): Gateway, HTTPRoute and
//! GRPCRoute, including the GAMMA mesh use where a route's parent is a Service.

use super::common::{spec, Dur, Host, Port};

spec! {
    pub struct GatewaySpec {
        pub gateway_class_name: String,
        #[serde(default)]
        pub listeners: Vec<Listener>,
        #[serde(default)]
        pub addresses: Vec<GatewayAddress>,
        pub infrastructure: Option<serde_json::Value>,
        pub backend_tls: Option<serde_json::Value>,
    }
}

spec! {
    pub struct GatewayAddress {
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub value: String,
    }
}

spec! {
    pub struct Listener {
        pub name: String,
        pub hostname: Option<Host>,
        pub port: Port,
        pub protocol: String,
        pub tls: Option<GatewayTlsConfig>,
        pub allowed_routes: Option<AllowedRoutes>,
    }
}

spec! {
    pub struct GatewayTlsConfig {
        pub mode: Option<String>,
        #[serde(default)]
        pub certificate_refs: Vec<ObjectReference>,
        #[serde(default)]
        pub options: std::collections::BTreeMap<String, String>,
        pub frontend_validation: Option<serde_json::Value>,
    }
}

spec! {
    /// `SecretObjectReference`, `BackendObjectReference` and friends.
    pub struct ObjectReference {
        pub group: Option<String>,
        pub kind: Option<String>,
        pub name: String,
        pub namespace: Option<String>,
        pub port: Option<Port>,
    }
}

spec! {
    pub struct AllowedRoutes {
        pub namespaces: Option<RouteNamespaces>,
        #[serde(default)]
        pub kinds: Vec<RouteGroupKind>,
    }
}

spec! {
    pub struct RouteNamespaces {
        pub from: Option<String>,
        pub selector: Option<super::common::LabelSelector>,
    }
}

spec! {
    pub struct RouteGroupKind {
        pub group: Option<String>,
        pub kind: String,
    }
}

spec! {
    pub struct ParentReference {
        pub group: Option<String>,
        pub kind: Option<String>,
        pub namespace: Option<String>,
        pub name: String,
        pub section_name: Option<String>,
        pub port: Option<Port>,
    }
}

impl ParentReference {
    /// A GAMMA (mesh) parent: a Service rather than a Gateway.
    pub fn is_service(&self) -> bool {
        self.kind.as_deref() == Some("Service")
            && matches!(self.group.as_deref(), None | Some("") | Some("core"))
    }
    pub fn is_gateway(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("Gateway"))
            && matches!(
                self.group.as_deref(),
                None | Some("gateway.networking.k8s.io")
            )
    }
}

spec! {
    pub struct HttpRouteSpec {
        #[serde(default)]
        pub parent_refs: Vec<ParentReference>,
        #[serde(default)]
        pub hostnames: Vec<Host>,
        #[serde(default)]
        pub rules: Vec<HttpRouteRule>,
    }
}

spec! {
    pub struct HttpRouteRule {
        pub name: Option<String>,
        #[serde(default)]
        pub matches: Vec<HttpRouteMatch>,
        #[serde(default)]
        pub filters: Vec<HttpRouteFilter>,
        #[serde(default)]
        pub backend_refs: Vec<HttpBackendRef>,
        pub timeouts: Option<HttpRouteTimeouts>,
        pub retry: Option<HttpRouteRetry>,
        pub session_persistence: Option<serde_json::Value>,
    }
}

spec! {
    pub struct HttpRouteMatch {
        pub path: Option<HttpPathMatch>,
        #[serde(default)]
        pub headers: Vec<HttpHeaderMatch>,
        #[serde(default)]
        pub query_params: Vec<HttpHeaderMatch>,
        pub method: Option<String>,
    }
}

spec! {
    pub struct HttpPathMatch {
        /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub value: Option<String>,
    }
}

spec! {
    /// Header and query-parameter matches share a shape.
    pub struct HttpHeaderMatch {
        /// `Exact` (default) or `RegularExpression`.
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub name: String,
        pub value: String,
    }
}

spec! {
    pub struct HttpRouteFilter {
        #[serde(rename = "type")]
        pub kind: String,
        pub request_header_modifier: Option<HeaderModifier>,
        pub response_header_modifier: Option<HeaderModifier>,
        pub request_mirror: Option<RequestMirror>,
        pub request_redirect: Option<RequestRedirect>,
        pub url_rewrite: Option<UrlRewrite>,
        pub extension_ref: Option<serde_json::Value>,
        pub cors: Option<serde_json::Value>,
    }
}

spec! {
    pub struct HeaderModifier {
        #[serde(default)]
        pub set: Vec<HttpHeader>,
        #[serde(default)]
        pub add: Vec<HttpHeader>,
        #[serde(default)]
        pub remove: Vec<String>,
    }
}

spec! {
    pub struct HttpHeader {
        pub name: String,
        pub value: String,
    }
}

spec! {
    pub struct RequestMirror {
        pub backend_ref: ObjectReference,
        pub percent: Option<i64>,
        pub fraction: Option<Fraction>,
    }
}

spec! {
    pub struct Fraction {
        pub numerator: i64,
        pub denominator: Option<i64>,
    }
}

spec! {
    pub struct RequestRedirect {
        pub scheme: Option<String>,
        pub hostname: Option<String>,
        pub path: Option<PathModifier>,
        pub port: Option<Port>,
        pub status_code: Option<u16>,
    }
}

spec! {
    pub struct UrlRewrite {
        pub hostname: Option<String>,
        pub path: Option<PathModifier>,
    }
}

spec! {
    pub struct PathModifier {
        #[serde(rename = "type")]
        pub kind: String,
        pub replace_full_path: Option<String>,
        pub replace_prefix_match: Option<String>,
    }
}

spec! {
    pub struct HttpBackendRef {
        pub group: Option<String>,
        pub kind: Option<String>,
        pub name: String,
        pub namespace: Option<String>,
        pub port: Option<Port>,
        pub weight: Option<i64>,
        #[serde(default)]
        pub filters: Vec<HttpRouteFilter>,
    }
}

spec! {
    pub struct HttpRouteTimeouts {
        pub request: Option<Dur>,
        pub backend_request: Option<Dur>,
    }
}

spec! {
    pub struct HttpRouteRetry {
        #[serde(default)]
        pub codes: Vec<u16>,
        pub attempts: Option<i64>,
        pub backoff: Option<Dur>,
    }
}

spec! {
    pub struct GrpcRouteSpec {
        #[serde(default)]
        pub parent_refs: Vec<ParentReference>,
        #[serde(default)]
        pub hostnames: Vec<Host>,
        #[serde(default)]
        pub rules: Vec<GrpcRouteRule>,
    }
}

spec! {
    pub struct GrpcRouteRule {
        pub name: Option<String>,
        #[serde(default)]
        pub matches: Vec<GrpcRouteMatch>,
        #[serde(default)]
        pub filters: Vec<HttpRouteFilter>,
        #[serde(default)]
        pub backend_refs: Vec<HttpBackendRef>,
        pub session_persistence: Option<serde_json::Value>,
    }
}

spec! {
    pub struct GrpcRouteMatch {
        pub method: Option<GrpcMethodMatch>,
        #[serde(default)]
        pub headers: Vec<HttpHeaderMatch>,
    }
}

spec! {
    pub struct GrpcMethodMatch {
        /// `Exact` (default) or `RegularExpression`.
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub service: Option<String>,
        pub method: Option<String>,
    }
}
