//! Istio resources: `networking.istio.io` (VirtualService, DestinationRule,
//! Gateway, ServiceEntry, Sidecar), `security.istio.io` (PeerAuthentication,
//! AuthorizationPolicy, RequestAuthentication) and `telemetry.istio.io`
//! (Telemetry), field for field as the Istio API reference defines them.

use super::common::{constants, spec, Dur, Host, Labels, NetworkingWorkloadSelector, Pct, Port, Regex, WorkloadSelector};
use std::collections::BTreeMap;

// ---------------------------------------------------------------- VirtualService

spec! {
    pub struct VirtualServiceSpec {
        #[serde(default)]
        pub hosts: Vec<Host>,
        #[serde(default)]
        pub gateways: Vec<String>,
        #[serde(default)]
        pub http: Vec<HttpRoute>,
        #[serde(default)]
        pub tls: Vec<TlsRoute>,
        #[serde(default)]
        pub tcp: Vec<TcpRoute>,
        #[serde(default)]
        pub export_to: Vec<String>,
    }
}

spec! {
    pub struct HttpRoute {
        pub name: Option<String>,
        #[serde(default, rename = "match")]
        pub matches: Vec<HttpMatchRequest>,
        #[serde(default)]
        pub route: Vec<HttpRouteDestination>,
        pub redirect: Option<HttpRedirect>,
        pub direct_response: Option<HttpDirectResponse>,
        pub delegate: Option<Delegate>,
        pub rewrite: Option<HttpRewrite>,
        pub timeout: Option<Dur>,
        pub retries: Option<HttpRetry>,
        pub fault: Option<HttpFaultInjection>,
        pub mirror: Option<Destination>,
        #[serde(default)]
        pub mirrors: Vec<HttpMirrorPolicy>,
        pub mirror_percentage: Option<Percent>,
        #[serde(rename = "mirror_percent")]
        pub mirror_percent_deprecated: Option<u32>,
        pub mirror_percent: Option<u32>,
        pub cors_policy: Option<CorsPolicy>,
        pub headers: Option<Headers>,
    }
}

spec! {
    /// Istio `StringMatch`: exactly one of exact, prefix, regex.
    pub struct StringMatch {
        pub exact: Option<String>,
        pub prefix: Option<String>,
        pub regex: Option<Regex>,
    }
}

spec! {
    pub struct HttpMatchRequest {
        pub name: Option<String>,
        pub uri: Option<StringMatch>,
        pub scheme: Option<StringMatch>,
        pub method: Option<StringMatch>,
        pub authority: Option<StringMatch>,
        #[serde(default)]
        pub headers: BTreeMap<String, StringMatch>,
        pub port: Option<Port>,
        #[serde(default)]
        pub source_labels: Labels,
        #[serde(default)]
        pub gateways: Vec<String>,
        #[serde(default)]
        pub query_params: BTreeMap<String, StringMatch>,
        pub ignore_uri_case: Option<bool>,
        #[serde(default)]
        pub without_headers: BTreeMap<String, StringMatch>,
        pub source_namespace: Option<String>,
        pub stat_prefix: Option<String>,
    }
}

spec! {
    pub struct HttpRouteDestination {
        pub destination: Destination,
        pub weight: Option<i64>,
        pub headers: Option<Headers>,
    }
}

spec! {
    pub struct Destination {
        pub host: Host,
        pub subset: Option<String>,
        pub port: Option<PortSelector>,
    }
}

spec! {
    pub struct PortSelector {
        pub number: Option<Port>,
    }
}

spec! {
    pub struct Headers {
        pub request: Option<HeaderOperations>,
        pub response: Option<HeaderOperations>,
    }
}

spec! {
    pub struct HeaderOperations {
        #[serde(default)]
        pub set: BTreeMap<String, String>,
        #[serde(default)]
        pub add: BTreeMap<String, String>,
        #[serde(default)]
        pub remove: Vec<String>,
    }
}

spec! {
    pub struct HttpRedirect {
        pub uri: Option<String>,
        pub authority: Option<String>,
        pub port: Option<Port>,
        pub derive_port: Option<String>,
        pub scheme: Option<String>,
        pub redirect_code: Option<u16>,
    }
}

spec! {
    pub struct HttpDirectResponse {
        pub status: u16,
        pub body: Option<HttpBody>,
    }
}

spec! {
    pub struct HttpBody {
        pub string: Option<String>,
        pub bytes: Option<String>,
    }
}

spec! {
    pub struct Delegate {
        pub name: String,
        pub namespace: Option<String>,
    }
}

spec! {
    pub struct HttpRewrite {
        pub uri: Option<String>,
        pub authority: Option<String>,
        pub uri_regex_rewrite: Option<RegexRewrite>,
    }
}

spec! {
    pub struct RegexRewrite {
        #[serde(rename = "match")]
        pub matches: Regex,
        pub rewrite: String,
    }
}

spec! {
    pub struct HttpRetry {
        #[serde(default)]
        pub attempts: i64,
        pub per_try_timeout: Option<Dur>,
        pub retry_on: Option<String>,
        pub retry_remote_localities: Option<bool>,
        pub backoff: Option<Dur>,
    }
}

spec! {
    pub struct HttpFaultInjection {
        pub delay: Option<FaultDelay>,
        pub abort: Option<FaultAbort>,
    }
}

spec! {
    pub struct FaultDelay {
        pub fixed_delay: Option<Dur>,
        pub exponential_delay: Option<Dur>,
        pub percentage: Option<Percent>,
        pub percent: Option<i64>,
    }
}

spec! {
    pub struct FaultAbort {
        pub http_status: Option<u16>,
        pub grpc_status: Option<String>,
        pub http2_error: Option<String>,
        pub percentage: Option<Percent>,
    }
}

spec! {
    pub struct Percent {
        #[serde(default)]
        pub value: Pct,
    }
}

spec! {
    pub struct HttpMirrorPolicy {
        pub destination: Destination,
        pub percentage: Option<Percent>,
    }
}

spec! {
    pub struct CorsPolicy {
        #[serde(default)]
        pub allow_origins: Vec<StringMatch>,
        #[serde(default)]
        pub allow_origin: Vec<String>,
        #[serde(default)]
        pub allow_methods: Vec<String>,
        #[serde(default)]
        pub allow_headers: Vec<String>,
        #[serde(default)]
        pub expose_headers: Vec<String>,
        pub max_age: Option<Dur>,
        pub allow_credentials: Option<bool>,
        pub unmatched_preflights: Option<String>,
    }
}

spec! {
    pub struct TlsRoute {
        #[serde(default, rename = "match")]
        pub matches: Vec<TlsMatchAttributes>,
        #[serde(default)]
        pub route: Vec<RouteDestination>,
    }
}

spec! {
    pub struct TlsMatchAttributes {
        #[serde(default)]
        pub sni_hosts: Vec<Host>,
        #[serde(default)]
        pub destination_subnets: Vec<String>,
        pub port: Option<Port>,
        #[serde(default)]
        pub source_labels: Labels,
        #[serde(default)]
        pub gateways: Vec<String>,
        pub source_namespace: Option<String>,
    }
}

spec! {
    pub struct TcpRoute {
        #[serde(default, rename = "match")]
        pub matches: Vec<L4MatchAttributes>,
        #[serde(default)]
        pub route: Vec<RouteDestination>,
    }
}

spec! {
    pub struct L4MatchAttributes {
        #[serde(default)]
        pub destination_subnets: Vec<String>,
        pub port: Option<Port>,
        pub source_subnet: Option<String>,
        #[serde(default)]
        pub source_labels: Labels,
        #[serde(default)]
        pub gateways: Vec<String>,
        pub source_namespace: Option<String>,
    }
}

spec! {
    pub struct RouteDestination {
        pub destination: Destination,
        pub weight: Option<i64>,
    }
}

// ---------------------------------------------------------------- DestinationRule

spec! {
    pub struct DestinationRuleSpec {
        pub host: Host,
        pub traffic_policy: Option<TrafficPolicy>,
        #[serde(default)]
        pub subsets: Vec<Subset>,
        #[serde(default)]
        pub export_to: Vec<String>,
        pub workload_selector: Option<WorkloadSelector>,
    }
}

spec! {
    pub struct Subset {
        pub name: String,
        #[serde(default)]
        pub labels: Labels,
        pub traffic_policy: Option<TrafficPolicy>,
    }
}

spec! {
    pub struct TrafficPolicy {
        pub load_balancer: Option<LoadBalancerSettings>,
        pub connection_pool: Option<ConnectionPoolSettings>,
        pub outlier_detection: Option<OutlierDetection>,
        pub tls: Option<ClientTlsSettings>,
        #[serde(default)]
        pub port_level_settings: Vec<PortTrafficPolicy>,
        pub tunnel: Option<serde_json::Value>,
        pub proxy_protocol: Option<serde_json::Value>,
    }
}

spec! {
    pub struct PortTrafficPolicy {
        pub port: Option<PortSelector>,
        pub load_balancer: Option<LoadBalancerSettings>,
        pub connection_pool: Option<ConnectionPoolSettings>,
        pub outlier_detection: Option<OutlierDetection>,
        pub tls: Option<ClientTlsSettings>,
    }
}

constants! {
    pub enum SimpleLb {
        Unspecified = "UNSPECIFIED",
        LeastConn = "LEAST_CONN",
        Random = "RANDOM",
        Passthrough = "PASSTHROUGH",
        RoundRobin = "ROUND_ROBIN",
        LeastRequest = "LEAST_REQUEST",
    }
}

spec! {
    pub struct LoadBalancerSettings {
        pub simple: Option<SimpleLb>,
        pub consistent_hash: Option<ConsistentHashLb>,
        pub locality_lb_setting: Option<serde_json::Value>,
        pub warmup_duration_secs: Option<Dur>,
        pub warmup: Option<serde_json::Value>,
    }
}

spec! {
    pub struct ConsistentHashLb {
        pub http_header_name: Option<String>,
        pub http_cookie: Option<HttpCookie>,
        pub use_source_ip: Option<bool>,
        pub http_query_parameter_name: Option<String>,
        pub ring_hash: Option<RingHash>,
        pub maglev: Option<Maglev>,
        pub minimum_ring_size: Option<u64>,
    }
}

spec! {
    pub struct HttpCookie {
        pub name: String,
        pub path: Option<String>,
        pub ttl: Option<Dur>,
    }
}

spec! {
    pub struct RingHash {
        pub minimum_ring_size: Option<u64>,
    }
}

spec! {
    pub struct Maglev {
        pub table_size: Option<u64>,
    }
}

spec! {
    pub struct ConnectionPoolSettings {
        pub tcp: Option<TcpSettings>,
        pub http: Option<HttpSettings>,
    }
}

spec! {
    pub struct TcpSettings {
        pub max_connections: Option<u32>,
        pub connect_timeout: Option<Dur>,
        pub tcp_keepalive: Option<TcpKeepalive>,
        pub max_connection_duration: Option<Dur>,
        pub idle_timeout: Option<Dur>,
    }
}

spec! {
    pub struct TcpKeepalive {
        pub probes: Option<u32>,
        pub time: Option<Dur>,
        pub interval: Option<Dur>,
    }
}

constants! {
    pub enum H2UpgradePolicy {
        Default = "DEFAULT",
        DoNotUpgrade = "DO_NOT_UPGRADE",
        Upgrade = "UPGRADE",
    }
}

spec! {
    pub struct HttpSettings {
        pub http1_max_pending_requests: Option<u32>,
        pub http2_max_requests: Option<u32>,
        pub max_requests_per_connection: Option<u32>,
        pub max_retries: Option<u32>,
        pub idle_timeout: Option<Dur>,
        pub h2_upgrade_policy: Option<H2UpgradePolicy>,
        pub use_client_protocol: Option<bool>,
        pub max_concurrent_streams: Option<u32>,
    }
}

spec! {
    pub struct OutlierDetection {
        pub split_external_local_origin_errors: Option<bool>,
        pub consecutive_local_origin_failures: Option<u32>,
        pub consecutive_gateway_errors: Option<u32>,
        #[serde(rename = "consecutive5xxErrors")]
        pub consecutive_5xx_errors: Option<u32>,
        pub consecutive_errors: Option<u32>,
        pub interval: Option<Dur>,
        pub base_ejection_time: Option<Dur>,
        pub max_ejection_percent: Option<i64>,
        pub min_health_percent: Option<i64>,
    }
}

constants! {
    pub enum ClientTlsMode {
        Disable = "DISABLE",
        Simple = "SIMPLE",
        Mutual = "MUTUAL",
        IstioMutual = "ISTIO_MUTUAL",
    }
}

spec! {
    pub struct ClientTlsSettings {
        pub mode: Option<ClientTlsMode>,
        pub client_certificate: Option<String>,
        pub private_key: Option<String>,
        pub ca_certificates: Option<String>,
        pub credential_name: Option<String>,
        #[serde(default)]
        pub subject_alt_names: Vec<String>,
        pub sni: Option<String>,
        pub insecure_skip_verify: Option<bool>,
        pub ca_crl: Option<String>,
    }
}

// ---------------------------------------------------------------- Gateway

spec! {
    pub struct GatewaySpec {
        #[serde(default)]
        pub selector: Labels,
        #[serde(default)]
        pub servers: Vec<Server>,
    }
}

spec! {
    pub struct Server {
        pub port: ServerPort,
        pub bind: Option<String>,
        #[serde(default)]
        pub hosts: Vec<String>,
        pub tls: Option<ServerTlsSettings>,
        pub name: Option<String>,
        pub default_endpoint: Option<String>,
    }
}

spec! {
    pub struct ServerPort {
        pub number: Port,
        pub protocol: String,
        pub name: Option<String>,
        pub target_port: Option<Port>,
    }
}

constants! {
    pub enum ServerTlsMode {
        Passthrough = "PASSTHROUGH",
        Simple = "SIMPLE",
        Mutual = "MUTUAL",
        AutoPassthrough = "AUTO_PASSTHROUGH",
        IstioMutual = "ISTIO_MUTUAL",
        OptionalMutual = "OPTIONAL_MUTUAL",
    }
}

spec! {
    pub struct ServerTlsSettings {
        pub https_redirect: Option<bool>,
        pub mode: Option<ServerTlsMode>,
        pub server_certificate: Option<String>,
        pub private_key: Option<String>,
        pub ca_certificates: Option<String>,
        pub credential_name: Option<String>,
        #[serde(default)]
        pub credential_names: Vec<String>,
        #[serde(default)]
        pub subject_alt_names: Vec<String>,
        #[serde(default)]
        pub verify_certificate_spki: Vec<String>,
        #[serde(default)]
        pub verify_certificate_hash: Vec<String>,
        pub min_protocol_version: Option<String>,
        pub max_protocol_version: Option<String>,
        #[serde(default)]
        pub cipher_suites: Vec<String>,
        pub ca_crl: Option<String>,
    }
}

// ---------------------------------------------------------------- ServiceEntry

constants! {
    pub enum Location {
        MeshExternal = "MESH_EXTERNAL",
        MeshInternal = "MESH_INTERNAL",
    }
}

constants! {
    pub enum Resolution {
        None = "NONE",
        Static = "STATIC",
        Dns = "DNS",
        DnsRoundRobin = "DNS_ROUND_ROBIN",
    }
}

spec! {
    pub struct ServiceEntrySpec {
        #[serde(default)]
        pub hosts: Vec<Host>,
        #[serde(default)]
        pub addresses: Vec<String>,
        #[serde(default)]
        pub ports: Vec<ServicePort>,
        pub location: Option<Location>,
        pub resolution: Option<Resolution>,
        #[serde(default)]
        pub endpoints: Vec<WorkloadEntrySpec>,
        pub workload_selector: Option<NetworkingWorkloadSelector>,
        #[serde(default)]
        pub export_to: Vec<String>,
        #[serde(default)]
        pub subject_alt_names: Vec<String>,
    }
}

spec! {
    pub struct ServicePort {
        pub number: Port,
        pub protocol: Option<String>,
        pub name: String,
        pub target_port: Option<Port>,
    }
}

spec! {
    /// Also the spec of a `WorkloadEntry` resource.
    pub struct WorkloadEntrySpec {
        pub address: Option<String>,
        #[serde(default)]
        pub ports: BTreeMap<String, Port>,
        #[serde(default)]
        pub labels: Labels,
        pub network: Option<String>,
        pub locality: Option<String>,
        pub weight: Option<u32>,
        pub service_account: Option<String>,
    }
}

// ---------------------------------------------------------------- Sidecar

spec! {
    pub struct SidecarSpec {
        pub workload_selector: Option<NetworkingWorkloadSelector>,
        #[serde(default)]
        pub ingress: Vec<IstioIngressListener>,
        #[serde(default)]
        pub egress: Vec<IstioEgressListener>,
        pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
        pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    }
}

spec! {
    pub struct SidecarPort {
        pub number: Option<Port>,
        pub protocol: Option<String>,
        pub name: Option<String>,
        pub target_port: Option<Port>,
    }
}

spec! {
    pub struct IstioIngressListener {
        pub port: SidecarPort,
        pub bind: Option<String>,
        pub capture_mode: Option<String>,
        pub default_endpoint: Option<String>,
        pub tls: Option<ServerTlsSettings>,
        pub connection_pool: Option<ConnectionPoolSettings>,
    }
}

spec! {
    pub struct IstioEgressListener {
        pub port: Option<SidecarPort>,
        pub bind: Option<String>,
        pub capture_mode: Option<String>,
        #[serde(default)]
        pub hosts: Vec<String>,
    }
}

spec! {
    pub struct OutboundTrafficPolicy {
        pub mode: Option<String>,
        pub egress_proxy: Option<Destination>,
    }
}

// ---------------------------------------------------------------- security

constants! {
    pub enum MtlsMode {
        Unset = "UNSET",
        Disable = "DISABLE",
        Permissive = "PERMISSIVE",
        Strict = "STRICT",
    }
}

spec! {
    pub struct PeerAuthenticationSpec {
        pub selector: Option<WorkloadSelector>,
        pub mtls: Option<Mtls>,
        #[serde(default)]
        pub port_level_mtls: BTreeMap<String, Mtls>,
    }
}

spec! {
    pub struct Mtls {
        pub mode: Option<MtlsMode>,
    }
}

constants! {
    pub enum AuthzAction {
        Allow = "ALLOW",
        Deny = "DENY",
        Audit = "AUDIT",
        Custom = "CUSTOM",
    }
}

spec! {
    pub struct PolicyTargetReference {
        pub group: Option<String>,
        pub kind: String,
        pub name: String,
        pub namespace: Option<String>,
    }
}

/// Istio's dry-run annotation on an AuthorizationPolicy: evaluate, log and count, never enforce.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

spec! {
    pub struct AuthorizationPolicySpec {
        pub selector: Option<WorkloadSelector>,
        pub target_ref: Option<PolicyTargetReference>,
        #[serde(default)]
        pub target_refs: Vec<PolicyTargetReference>,
        /// `None` means the field was absent; `Some(vec![])` an explicit empty list.
        pub rules: Option<Vec<AuthzRule>>,
        pub action: Option<AuthzAction>,
        pub provider: Option<ExtensionProvider>,
    }
}

spec! {
    pub struct ExtensionProvider {
        pub name: String,
    }
}

spec! {
    pub struct AuthzRule {
        #[serde(default)]
        pub from: Vec<RuleFrom>,
        #[serde(default)]
        pub to: Vec<RuleTo>,
        #[serde(default)]
        pub when: Vec<Condition>,
    }
}

spec! {
    pub struct RuleFrom {
        pub source: AuthzSource,
    }
}

spec! {
    pub struct RuleTo {
        pub operation: AuthzOperation,
    }
}

spec! {
    pub struct AuthzSource {
        #[serde(default)] pub principals: Vec<String>,
        #[serde(default)] pub not_principals: Vec<String>,
        #[serde(default)] pub request_principals: Vec<String>,
        #[serde(default)] pub not_request_principals: Vec<String>,
        #[serde(default)] pub namespaces: Vec<String>,
        #[serde(default)] pub not_namespaces: Vec<String>,
        #[serde(default)] pub service_accounts: Vec<String>,
        #[serde(default)] pub not_service_accounts: Vec<String>,
        #[serde(default)] pub ip_blocks: Vec<String>,
        #[serde(default)] pub not_ip_blocks: Vec<String>,
        #[serde(default)] pub remote_ip_blocks: Vec<String>,
        #[serde(default)] pub not_remote_ip_blocks: Vec<String>,
    }
}

spec! {
    pub struct AuthzOperation {
        #[serde(default)] pub hosts: Vec<String>,
        #[serde(default)] pub not_hosts: Vec<String>,
        #[serde(default)] pub ports: Vec<String>,
        #[serde(default)] pub not_ports: Vec<String>,
        #[serde(default)] pub methods: Vec<String>,
        #[serde(default)] pub not_methods: Vec<String>,
        #[serde(default)] pub paths: Vec<String>,
        #[serde(default)] pub not_paths: Vec<String>,
    }
}

spec! {
    pub struct Condition {
        pub key: String,
        #[serde(default)] pub values: Vec<String>,
        #[serde(default)] pub not_values: Vec<String>,
    }
}

spec! {
    pub struct RequestAuthenticationSpec {
        pub selector: Option<WorkloadSelector>,
        pub target_ref: Option<PolicyTargetReference>,
        #[serde(default)]
        pub target_refs: Vec<PolicyTargetReference>,
        #[serde(default)]
        pub jwt_rules: Vec<JwtRule>,
    }
}

spec! {
    pub struct JwtRule {
        pub issuer: String,
        #[serde(default)] pub audiences: Vec<String>,
        pub jwks_uri: Option<String>,
        pub jwks: Option<String>,
        #[serde(default)] pub from_headers: Vec<JwtHeader>,
        #[serde(default)] pub from_params: Vec<String>,
        #[serde(default)] pub from_cookies: Vec<String>,
        pub output_payload_to_header: Option<String>,
        pub forward_original_token: Option<bool>,
        #[serde(default)] pub output_claim_to_headers: Vec<ClaimToHeader>,
        pub timeout: Option<Dur>,
    }
}

spec! {
    pub struct JwtHeader {
        pub name: String,
        pub prefix: Option<String>,
    }
}

spec! {
    pub struct ClaimToHeader {
        pub header: String,
        pub claim: String,
    }
}

// ---------------------------------------------------------------- Telemetry

spec! {
    pub struct TelemetrySpec {
        pub selector: Option<WorkloadSelector>,
        pub target_ref: Option<PolicyTargetReference>,
        #[serde(default)]
        pub target_refs: Vec<PolicyTargetReference>,
        #[serde(default)]
        pub tracing: Vec<Tracing>,
        #[serde(default)]
        pub metrics: Vec<Metrics>,
        #[serde(default)]
        pub access_logging: Vec<AccessLogging>,
    }
}

spec! {
    pub struct ProviderRef {
        pub name: String,
    }
}

spec! {
    pub struct Tracing {
        #[serde(rename = "match")]
        pub matches: Option<TracingSelector>,
        #[serde(default)]
        pub providers: Vec<ProviderRef>,
        pub random_sampling_percentage: Option<Pct>,
        pub disable_span_reporting: Option<bool>,
        #[serde(default)]
        pub custom_tags: BTreeMap<String, serde_json::Value>,
        pub use_request_id_for_trace_sampling: Option<bool>,
    }
}

spec! {
    pub struct TracingSelector {
        pub mode: Option<String>,
    }
}

spec! {
    pub struct Metrics {
        #[serde(default)]
        pub providers: Vec<ProviderRef>,
        #[serde(default)]
        pub overrides: Vec<MetricsOverride>,
        pub reporting_interval: Option<Dur>,
    }
}

spec! {
    pub struct MetricsOverride {
        #[serde(rename = "match")]
        pub matches: Option<MetricSelector>,
        pub disabled: Option<bool>,
        #[serde(default)]
        pub tag_overrides: BTreeMap<String, TagOverride>,
    }
}

spec! {
    pub struct MetricSelector {
        pub metric: Option<String>,
        pub custom_metric: Option<String>,
        pub mode: Option<String>,
    }
}

spec! {
    pub struct TagOverride {
        pub operation: Option<String>,
        pub value: Option<String>,
    }
}

spec! {
    pub struct AccessLogging {
        #[serde(rename = "match")]
        pub matches: Option<TracingSelector>,
        #[serde(default)]
        pub providers: Vec<ProviderRef>,
        pub disabled: Option<bool>,
        pub filter: Option<AccessLogFilter>,
    }
}

spec! {
    pub struct AccessLogFilter {
        pub expression: String,
    }
}
