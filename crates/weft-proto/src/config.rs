//! The proxy's configuration: listeners, routes, clusters and endpoints as
//! plain data. Read from a static file today (YAML or JSON); the controller
//! will push the same structures. The proxy never reads user mesh YAML.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything the proxy runs with. Swapped atomically on reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// A number that changes with every new config (shown in `/config_dump`).
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    #[serde(default)]
    pub limits: Limits,
    /// Who may connect to this workload, and how (PeerAuthentication).
    #[serde(default, skip_serializing_if = "InboundPolicy::is_default")]
    pub inbound: InboundPolicy,
    /// Which metric vocabularies the proxy exports.
    #[serde(default, skip_serializing_if = "is_default")]
    pub telemetry: Telemetry,
}

/// What the proxy reports about traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// Istio's standard metrics (`istio_requests_total`, ...).
    pub istio_metrics: bool,
    /// Linkerd's (`request_total`, `response_total`, ...).
    pub linkerd_metrics: bool,
    /// Distinct label sets kept (for HTTP, and for TCP); a request with a new
    /// label set beyond it is counted in `weft_metrics_series_dropped_total`.
    /// One HTTP label set is about 106 Prometheus series with both
    /// vocabularies (their histograms' buckets), so 1,000 is about 100,000.
    pub max_series: usize,
    /// The access log; none (Istio's default) logs nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Spans for sampled requests; none (the default) propagates trace
    /// headers untouched and records nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    /// Labels removed from, added to or changed in Istio's metrics (the
    /// Telemetry API's `tagOverrides`), applied in order: a later one for
    /// the same label wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_overrides: Vec<LabelOverride>,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry { istio_metrics: true, linkerd_metrics: true, max_series: 1_000, access_log: None, tracing: None, label_overrides: vec![] }
    }
}

/// One of Istio's `tagOverrides`, for some of its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelOverride {
    /// The metrics it applies to; empty: all of Istio's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<IstioMetric>,
    /// Only the series this side reports (`source`: Istio's CLIENT mode,
    /// `destination`: SERVER); none: both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter: Option<OverrideReporter>,
    pub label: String,
    /// Its value; none removes the label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<LabelValue>,
}

/// Istio's metric names, as Telemetry resources write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IstioMetric {
    RequestCount,
    RequestDuration,
    RequestSize,
    ResponseSize,
    GrpcRequestMessages,
    GrpcResponseMessages,
    TcpOpenedConnections,
    TcpClosedConnections,
    TcpSentBytes,
    TcpReceivedBytes,
}

impl IstioMetric {
    /// `REQUEST_COUNT`, ... (the Telemetry API's name).
    pub fn parse(name: &str) -> Option<IstioMetric> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }

    /// Whether it counts opaque TCP connections (request attributes are `unknown` there).
    pub fn is_tcp(self) -> bool {
        matches!(self, IstioMetric::TcpOpenedConnections | IstioMetric::TcpClosedConnections | IstioMetric::TcpSentBytes | IstioMetric::TcpReceivedBytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideReporter {
    Source,
    Destination,
}

/// What a label added or changed by an override is set to: a literal, or
/// an attribute of the request (`unknown` on TCP series, which have none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelValue {
    Literal(String),
    /// `request.path`: path and query.
    RequestPath,
    /// `request.url_path`: the path without the query.
    RequestUrlPath,
    /// `request.host`.
    RequestHost,
    /// `request.method`.
    RequestMethod,
    /// `request.headers['NAME']` (lowercase), `unknown` when absent.
    RequestHeader(String),
    /// `response.code`.
    ResponseCode,
}

/// Distributed tracing (Istio's tracing provider and Telemetry `tracing`):
/// each proxy records a span per sampled request and exports them to one
/// collector, off the request path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    pub collector: TraceCollector,
    /// Of requests that start a trace (no sampling decision in their
    /// headers), how many are sampled, in parts per million: Istio's
    /// `randomSamplingPercentage` x 10,000 (its default 1% is 10,000).
    /// A decision in the headers is always followed (parent-based).
    #[serde(default = "Tracing::default_sampling")]
    pub sampling_ppm: u32,
    /// Extra span attributes (Istio's `customTags`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// `http.url` is cut to this many bytes (Istio's `maxPathTagLength`).
    #[serde(default = "Tracing::default_max_path")]
    pub max_path_tag_length: usize,
}

impl Tracing {
    fn default_sampling() -> u32 {
        10_000
    }
    fn default_max_path() -> usize {
        256
    }

    /// Tracing to `collector` with Istio's defaults (1%, 256-byte URLs).
    pub fn to(collector: TraceCollector) -> Tracing {
        Tracing { collector, sampling_ppm: Tracing::default_sampling(), custom_tags: BTreeMap::new(), max_path_tag_length: Tracing::default_max_path() }
    }

    /// A percentage (0 to 100, two decimals count) in parts per million.
    pub fn ppm(percent: f64) -> Result<u32, String> {
        if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
            return Err(format!("a sampling percentage is between 0 and 100, not {percent}"));
        }
        Ok((percent * 10_000.0).round() as u32)
    }
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceCollector {
    pub protocol: TraceProtocol,
    /// `host:port`, resolved when the exporter connects.
    pub address: String,
    /// The HTTP path spans are posted to (OTLP/HTTP and Zipkin).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceProtocol {
    /// OTLP over gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    OtlpGrpc,
    /// OTLP over HTTP, protobuf body (`POST /v1/traces`).
    OtlpHttp,
    /// Zipkin v2 JSON (`POST /api/v2/spans`).
    Zipkin,
}

impl TraceCollector {
    /// `otlp://HOST:PORT` (OTLP/gRPC), `otlp+http://HOST:PORT[/PATH]`
    /// (OTLP/HTTP, default path `/v1/traces`) or `zipkin://HOST:PORT[/PATH]`
    /// (default `/api/v2/spans`).
    pub fn parse(url: &str) -> Result<TraceCollector, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?}: a collector is otlp://HOST:PORT, otlp+http://HOST:PORT[/PATH] or zipkin://HOST:PORT[/PATH]"))?;
        let (protocol, default_path) = match scheme {
            "otlp" | "otlp+grpc" => (TraceProtocol::OtlpGrpc, ""),
            "otlp+http" => (TraceProtocol::OtlpHttp, "/v1/traces"),
            "zipkin" => (TraceProtocol::Zipkin, "/api/v2/spans"),
            s => return Err(format!("{url:?}: unknown collector protocol {s:?} (otlp, otlp+http or zipkin)")),
        };
        let (address, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, default_path),
        };
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {}
            _ => return Err(format!("{url:?}: the collector's address is HOST:PORT, not {address:?}")),
        }
        if protocol == TraceProtocol::OtlpGrpc && !path.is_empty() {
            return Err(format!("{url:?}: an OTLP/gRPC collector has no path"));
        }
        Ok(TraceCollector { protocol, address: address.to_string(), path: path.to_string() })
    }
}

/// One custom span attribute's value (Istio's `customTags`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CustomTag {
    Literal { value: String },
    /// A request header's value, or `default_value` without one.
    Header {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_value: Option<String>,
    },
    /// The proxy's environment variable, read when the config is taken.
    Environment {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_value: Option<String>,
    },
}

/// One line per request and per opaque TCP connection (Istio's
/// meshConfig.accessLogFile / accessLogEncoding / accessLogFormat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// `/dev/stdout` (the default), `/dev/stderr`, or a file (appended to).
    pub path: String,
    pub encoding: AccessLogEncoding,
    /// An Envoy format string for `text` (default: Istio's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `json` keys and their Envoy formats (default: Istio's keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_format: Option<BTreeMap<String, String>>,
    /// Only responses with at least this code are logged (0: all), the
    /// Telemetry API's `response.code >= N` filter.
    #[serde(skip_serializing_if = "is_default")]
    pub min_response_code: u16,
}

impl AccessLog {
    /// Compiles its formats: the error names the operator weft does not know.
    pub fn check(&self) -> Result<(), String> {
        if let Some(f) = &self.format {
            crate::access_format::Format::parse(f)?;
        }
        for (k, v) in self.json_format.iter().flatten() {
            crate::access_format::Format::parse(v).map_err(|e| format!("json field {k:?}: {e}"))?;
        }
        Ok(())
    }
}

impl Default for AccessLog {
    fn default() -> AccessLog {
        AccessLog { path: "/dev/stdout".into(), encoding: AccessLogEncoding::Text, format: None, json_format: None, min_response_code: 0 }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogEncoding {
    /// Envoy's format language (Istio's default format unless `format` says otherwise).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// weft's own line: `LISTENER "METHOD PATH" STATUS FLAGS PEER route=R cluster=C ...`.
    Weft,
}

/// Server-side mTLS, as Istio's PeerAuthentication modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Only mTLS from the mesh; plaintext connections are refused.
    Strict,
    /// mTLS and plaintext both accepted (the default, for migration).
    #[default]
    Permissive,
    /// Plaintext only: mesh TLS is not terminated.
    Disable,
}

impl MtlsMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            MtlsMode::Strict => "STRICT",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Disable => "DISABLE",
        }
    }
}

/// The inbound side's mTLS mode, with per-port exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundPolicy {
    #[serde(default)]
    pub mtls: MtlsMode,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_mtls: BTreeMap<u16, MtlsMode>,
    /// The policy that set the mode (`PeerAuthentication ns/name`), for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What the workload's ports carry, as its Services declare them (port
    /// name prefix or appProtocol): an HTTP port is always parsed as HTTP
    /// (never passed through as opaque TCP), a TCP port never sniffed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_protocols: BTreeMap<u16, Protocol>,
    /// Who may call the workload (authorization policies, JWT rules).
    #[serde(default, skip_serializing_if = "crate::authz::Authorization::is_default")]
    pub authorization: crate::authz::Authorization,
    /// The Services that select the workload, for the server side's
    /// `destination_service` labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<InboundService>,
}

/// A Service that selects the workload: its host name and its ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundService {
    /// `reviews.prod.svc.cluster.local`
    pub host: String,
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<InboundServicePort>,
}

/// A Service port, and the workload port (target port) it sends to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundServicePort {
    pub port: u16,
    pub target_port: u16,
}

impl InboundPolicy {
    pub fn is_default(&self) -> bool {
        *self == InboundPolicy::default()
    }

    /// The mode for connections to the workload's `port`.
    pub fn mode_for(&self, port: u16) -> MtlsMode {
        self.port_mtls.get(&port).copied().unwrap_or(self.mtls)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// Transparent outbound (iptables REDIRECT to it; original destination from SO_ORIGINAL_DST).
    Outbound,
    /// Transparent inbound: forwards to the local app at the original destination.
    Inbound,
    /// Explicit: a plain local port forwarding to a named cluster (no root, no iptables).
    Explicit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Peek at the first bytes: HTTP/1, HTTP/2 (gRPC), TLS, else opaque TCP.
    #[default]
    Detect,
    Http,
    Tcp,
}

impl Protocol {
    pub fn is_detect(&self) -> bool {
        *self == Protocol::Detect
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub kind: ListenerKind,
    pub address: SocketAddr,
    /// For explicit listeners: where traffic goes.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// Destination ports never sniffed (server-first protocols such as MySQL, SMTP).
    #[serde(default = "default_opaque_ports")]
    pub opaque_ports: Vec<u16>,
}

fn default_protocol() -> Protocol {
    Protocol::Detect
}

/// Istio's default server-first ports: SMTP, DNS over TCP, MySQL, MongoDB, Redis is client-first.
fn default_opaque_ports() -> Vec<u16> {
    vec![25, 3306, 4222, 5432, 27017]
}

/// Sends traffic for some destinations to a cluster. Outbound traffic matches
/// by original destination address, or for HTTP by `Host`/`:authority`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// Original destinations (`10.96.0.10:80`) this route captures.
    #[serde(default)]
    pub destinations: Vec<SocketAddr>,
    /// Host names (`reviews`, `reviews.prod.svc.cluster.local`, optionally `:port`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Where opaque TCP goes, and HTTP when `http` is empty.
    pub cluster: String,
    /// What the destination's Service port declares: traffic to `destinations`
    /// is then parsed as HTTP, or relayed as TCP, without sniffing.
    #[serde(default, skip_serializing_if = "Protocol::is_detect")]
    pub protocol: Protocol,
    /// HTTP rules, tried in order; the first that matches picks among its
    /// weighted clusters. A request no rule matches is answered 404 (NR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Any of these matches the rule; empty matches every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RequestMatch>,
    /// Where matching requests go; may be empty with `redirect` or `direct_response`.
    #[serde(default)]
    pub clusters: Vec<WeightedCluster>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
    /// The whole request, all tries included; on expiry the client gets 504 (UT).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_text")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Copies of matching requests go here too; their answers are dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// Status ranges (inclusive) that are failures in metrics (a ServiceProfile's
    /// responseClasses); empty: 5xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_statuses: Vec<(u16, u16)>,
}

/// Istio fault injection: delay and/or abort a share of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

impl Eq for Fault {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    #[serde(with = "duration_text")]
    pub fixed: Duration,
    /// 0 to 100.
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// The HTTP status to answer with, or for gRPC the grpc-status code (then HTTP 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub cluster: String,
    /// 0 to 100.
    pub percent: f64,
}

impl Eq for Mirror {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_text")]
    pub per_try_timeout: Option<Duration>,
    /// Envoy/Istio conditions: 5xx, gateway-error, reset, connect-failure, refused-stream,
    /// retriable-4xx, status codes like "503", and gRPC cancelled, deadline-exceeded,
    /// resource-exhausted, internal, unavailable (gRPC calls, all POSTs, are retried when
    /// the policy names a gRPC status).
    pub retry_on: Vec<String>,
    /// Base of the jittered exponential backoff between tries (default 25ms).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_text")]
    pub backoff: Option<Duration>,
    /// Retry methods that are not idempotent (POST, PATCH) too.
    #[serde(default)]
    pub non_idempotent: bool,
    /// Retries may add at most `ratio` of the requests, plus `min_per_second` (Linkerd's budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: u32,
    #[serde(with = "duration_text")]
    pub ttl: Duration,
}

impl Eq for RetryBudget {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// New path, or with `prefix_only` the replacement of the matched prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub prefix_only: bool,
    /// New Host / :authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

mod opt_duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::duration_text")] Duration);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// Every set condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Query parameters (`name` is the parameter's name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<HeaderMatch>,
    /// The destination port the client used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The calling workload must have these labels: the client's proxy checks its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Lowercase header name.
    pub name: String,
    pub value: StringMatch,
    /// Match when the header does not match.
    #[serde(default)]
    pub invert: bool,
}

/// Exactly one of the fields is set (`{exact: v}`, `{prefix: v}`, `{regex: v}`,
/// `{present: true}`), as in Istio's StringMatch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// RE2 syntax, matched against the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Present with any value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
}

impl StringMatch {
    pub fn exact(v: &str) -> StringMatch {
        StringMatch { exact: Some(v.into()), ..StringMatch::default() }
    }
    pub fn prefix(v: &str) -> StringMatch {
        StringMatch { prefix: Some(v.into()), ..StringMatch::default() }
    }
    pub fn regex(v: &str) -> StringMatch {
        StringMatch { regex: Some(v.into()), ..StringMatch::default() }
    }
    pub fn present() -> StringMatch {
        StringMatch { present: true, ..StringMatch::default() }
    }
    fn set_count(&self) -> usize {
        [self.exact.is_some(), self.prefix.is_some(), self.regex.is_some(), self.present].iter().filter(|b| **b).count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    #[serde(default = "default_connect_timeout", with = "duration_text")]
    pub connect_timeout: Duration,
    /// How connections to the endpoints are secured.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tls: UpstreamTls,
    /// How an endpoint is chosen for each request or connection.
    #[serde(default, skip_serializing_if = "is_default")]
    pub lb: LoadBalancer,
    /// The key of `ring_hash` (a request without it gets a random endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
    /// Limits on concurrent requests; beyond them the proxy answers 503 (UO) at once.
    #[serde(default, skip_serializing_if = "is_default")]
    pub pool: ConnectionPool,
    /// Ejects endpoints that keep failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierDetection>,
}

/// Load balancing: Istio's simple policies, consistent hashing, and the
/// latency-aware peak EWMA that Linkerd uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    #[default]
    RoundRobin,
    Random,
    /// Power of two random choices, the one with fewer requests in flight.
    LeastRequest,
    /// Power of two random choices by peak-EWMA latency times load.
    PeakEwma,
    /// A ring of virtual nodes keyed by a hash of the request (Istio
    /// `consistentHash`, see `hash_on`): the same key keeps its endpoint,
    /// and adding an endpoint moves about 1/N of the keys.
    RingHash,
}

/// What a consistent hash is computed from: one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashOn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// With `cookie`: a request without it gets one (Set-Cookie) that lives this long,
    /// so the client sticks to the endpoint chosen for it (Istio `httpCookie.ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_text")]
    pub cookie_ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameter: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_ip: bool,
}

/// Istio's connectionPool settings as the proxy applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPool {
    /// HTTP/1.1 and TCP: connections (so requests) in progress at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// HTTP/1.1: requests that may wait for a connection; more are refused (UO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// HTTP/2: requests in progress at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// 1 turns keep-alive off (a connection per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// Retries in progress at once across the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Unused pooled connections are closed after this long.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_text")]
    pub idle_timeout: Option<Duration>,
    /// Between meshed proxies, carry the app's HTTP/1.1 as HTTP/2 streams
    /// (Istio's `h2UpgradePolicy: UPGRADE`); false keeps it HTTP/1.1 on pooled
    /// TLS connections (`DO_NOT_UPGRADE`); unset, the proxy's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_upgrade: Option<bool>,
}

/// Istio's outlierDetection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers (including the proxy's own 503 for a failed connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    /// Consecutive 502, 503 and 504 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive connect failures, resets and timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    #[serde(with = "duration_text")]
    pub interval: Duration,
    /// An endpoint's n-th ejection lasts n times this.
    #[serde(with = "duration_text")]
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints, ejection is ignored (panic mode).
    #[serde(default)]
    pub min_health_percent: u32,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Cluster {
    /// Everything but the endpoints is the same (an endpoint delta can carry the change).
    fn same_settings(&self, other: &Cluster) -> bool {
        let Cluster { name, endpoints: _, connect_timeout, tls, lb, hash_on, pool, outlier } = self;
        *name == other.name
            && *connect_timeout == other.connect_timeout
            && *tls == other.tls
            && *lb == other.lb
            && *hash_on == other.hash_on
            && *pool == other.pool
            && *outlier == other.outlier
    }
}

/// Client-side TLS towards a cluster's endpoints (DestinationRule `tls.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamTls {
    /// Auto-mTLS: mesh mTLS to endpoints that have an identity (a proxy), plaintext to the rest.
    #[default]
    Auto,
    /// Mesh mTLS always; an endpoint without an identity cannot be reached.
    Mutual,
    /// Plaintext always.
    Disable,
}

/// One address of a cluster, and the SPIFFE identity its proxy must present
/// when it has one (then the connection is mesh mTLS). Written as
/// `"10.0.0.1:80"` or `{address: "10.0.0.1:80", identity: "spiffe://..."}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "EndpointText", into = "EndpointText")]
pub struct Endpoint {
    pub address: SocketAddr,
    pub identity: Option<String>,
    /// Relative share of traffic (1 when not set).
    pub weight: u32,
    /// The workload behind the address, for the client side's telemetry labels.
    pub workload: Option<WorkloadMeta>,
}

impl Endpoint {
    pub fn plain(address: SocketAddr) -> Endpoint {
        Endpoint { address, identity: None, weight: 1, workload: None }
    }
}

/// Who a workload is, for telemetry labels (Istio's peer metadata: the
/// `*_workload`, `*_app`, `*_version`, `*_cluster` labels). The controller
/// puts it on endpoints (what a client proxy knows of its destination) and
/// the CA signs it into each workload certificate (what a server proxy
/// learns of its caller in the handshake). It names, it never authorizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadMeta {
    /// The workload (Deployment, StatefulSet, ...) name.
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
}

impl WorkloadMeta {
    /// Istio's rules: `app` from the `app` label (else `app.kubernetes.io/name`),
    /// `version` from `version` (else `app.kubernetes.io/version`).
    pub fn from_labels<'a>(name: &str, namespace: &str, labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> WorkloadMeta {
        let (mut app, mut version, mut k8s_app, mut k8s_version) = (None, None, None, None);
        for (k, v) in labels {
            match k.as_str() {
                "app" => app = Some(v.clone()),
                "version" => version = Some(v.clone()),
                "app.kubernetes.io/name" => k8s_app = Some(v.clone()),
                "app.kubernetes.io/version" => k8s_version = Some(v.clone()),
                _ => {}
            }
        }
        WorkloadMeta {
            name: name.to_string(),
            namespace: namespace.to_string(),
            app: app.or(k8s_app).unwrap_or_default(),
            version: version.or(k8s_version).unwrap_or_default(),
            cluster: String::new(),
        }
    }

    /// The longest text accepted in a certificate (what a proxy may ask the CA to sign).
    pub const MAX_ENCODED: usize = 1024;
}

impl From<SocketAddr> for Endpoint {
    fn from(address: SocketAddr) -> Endpoint {
        Endpoint::plain(address)
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum EndpointText {
    Address(SocketAddr),
    Full {
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<String>,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        weight: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workload: Option<WorkloadMeta>,
    },
}

fn one() -> u32 {
    1
}

fn is_one(w: &u32) -> bool {
    *w == 1
}

impl From<EndpointText> for Endpoint {
    fn from(t: EndpointText) -> Endpoint {
        match t {
            EndpointText::Address(address) => Endpoint::plain(address),
            EndpointText::Full { address, identity, weight, workload } => Endpoint { address, identity, weight, workload },
        }
    }
}

impl From<Endpoint> for EndpointText {
    fn from(e: Endpoint) -> EndpointText {
        match (e.identity, e.weight, e.workload) {
            (None, 1, None) => EndpointText::Address(e.address),
            (identity, weight, workload) => EndpointText::Full { address: e.address, identity, weight, workload },
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Protection against slow or hostile peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent downstream connections per listener; more are refused at once.
    pub max_connections: usize,
    /// How long protocol detection waits for the client's first bytes.
    #[serde(with = "duration_text")]
    pub detect_timeout: Duration,
    /// A request's headers must arrive within this time (slowloris).
    #[serde(with = "duration_text")]
    pub header_read_timeout: Duration,
    /// Pooled upstream connections unused for this long are closed.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// A downstream connection (HTTP or opaque TCP) on which no byte moved
    /// either way for this long is closed (Istio's idleTimeout).
    #[serde(with = "duration_text")]
    pub connection_idle_timeout: Duration,
    /// Largest request or response header block, in bytes (431 / 502 beyond).
    pub max_header_bytes: usize,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[serde(with = "duration_text")]
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            detect_timeout: Duration::from_millis(100),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            connection_idle_timeout: Duration::from_secs(3600),
            max_header_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Durations in config files are written like users write them (`100ms`, `5s`).
mod duration_text {
    use serde::{de, Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let (num, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.trim().len()));
        let n: f64 = num.parse().map_err(|_| de::Error::custom(format!("duration {s:?}: write it like \"100ms\" or \"5s\"")))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            _ => return Err(de::Error::custom(format!("duration {s:?}: unit must be ms, s or m"))),
        };
        Ok(Duration::from_secs_f64(secs))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl ProxyConfig {
    /// The transparent sidecar's listeners (outbound 15001, inbound 15006) and
    /// nothing else: what a proxy runs before its first push from the controller.
    pub fn sidecar_default() -> ProxyConfig {
        let listener = |name: &str, kind, port: u16| Listener {
            name: name.into(),
            kind,
            address: SocketAddr::from(([0, 0, 0, 0], port)),
            cluster: None,
            protocol: default_protocol(),
            opaque_ports: default_opaque_ports(),
        };
        ProxyConfig {
            version: String::new(),
            listeners: vec![listener("outbound", ListenerKind::Outbound, 15001), listener("inbound", ListenerKind::Inbound, 15006)],
            routes: vec![],
            clusters: vec![],
            limits: Limits::default(),
            inbound: InboundPolicy::default(),
            telemetry: Telemetry::default(),
        }
    }

    /// Reads and checks a config file (`.json` as JSON, anything else as YAML).
    pub fn load(path: &std::path::Path) -> Result<ProxyConfig, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        let cfg: ProxyConfig = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| ConfigError::Parse { path: p.clone(), reason: e.to_string() })?
        } else {
            serde_norway::from_str(&text).map_err(|e| ConfigError::Parse { path: p.clone(), reason: e.to_string() })?
        };
        cfg.check().map_err(|reason| ConfigError::Invalid { path: p, reason })?;
        Ok(cfg)
    }

    /// Cross-references: every route and explicit listener names an existing
    /// cluster, names are unique. A config that fails is never applied.
    pub fn check(&self) -> Result<(), String> {
        if let Some(a) = &self.telemetry.access_log {
            a.check().map_err(|e| format!("access log: {e}"))?;
        }
        if let Some(t) = &self.telemetry.tracing {
            if t.sampling_ppm > 1_000_000 {
                return Err(format!("tracing: sampling_ppm is at most 1000000 (100%), not {}", t.sampling_ppm));
            }
            if !t.collector.address.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) {
                return Err(format!("tracing: the collector's address is HOST:PORT, not {:?}", t.collector.address));
            }
        }
        let mut clusters = BTreeMap::new();
        for c in &self.clusters {
            if clusters.insert(c.name.as_str(), c).is_some() {
                return Err(format!("cluster {:?} is defined twice", c.name));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for l in &self.listeners {
            if !names.insert(&l.name) {
                return Err(format!("listener {:?} is defined twice", l.name));
            }
            match (&l.kind, &l.cluster) {
                (ListenerKind::Explicit, None) => return Err(format!("explicit listener {:?} needs a cluster", l.name)),
                (_, Some(c)) if !clusters.contains_key(c.as_str()) => {
                    return Err(format!("listener {:?} refers to unknown cluster {c:?}", l.name))
                }
                _ => {}
            }
        }
        for r in &self.routes {
            if !clusters.contains_key(r.cluster.as_str()) {
                return Err(format!("route {:?} refers to unknown cluster {:?}", r.name, r.cluster));
            }
            for (i, rule) in r.http.iter().enumerate() {
                let matchers = rule
                    .matches
                    .iter()
                    .flat_map(|m| m.path.iter().chain(m.headers.iter().map(|h| &h.value)).chain(m.query.iter().map(|q| &q.value)));
                for sm in matchers {
                    if sm.set_count() != 1 {
                        return Err(format!("route {:?} rule {i}: a string match needs exactly one of exact, prefix, regex, present", r.name));
                    }
                }
                let answers_itself = rule.redirect.is_some() || rule.direct_response.is_some();
                if !answers_itself && rule.clusters.iter().map(|c| c.weight as u64).sum::<u64>() == 0 {
                    return Err(format!("route {:?} rule {i} has no cluster with a weight above 0", r.name));
                }
                for c in rule.clusters.iter().map(|c| &c.cluster).chain(rule.mirrors.iter().map(|m| &m.cluster)) {
                    if !clusters.contains_key(c.as_str()) {
                        return Err(format!("route {:?} rule {i} refers to unknown cluster {c:?}", r.name));
                    }
                }
                let percents = rule.mirrors.iter().map(|m| m.percent).chain(rule.fault.iter().flat_map(|f| {
                    f.delay.iter().map(|d| d.percent).chain(f.abort.iter().map(|a| a.percent))
                }));
                for p in percents {
                    if !(0.0..=100.0).contains(&p) {
                        return Err(format!("route {:?} rule {i}: percentage {p} is not between 0 and 100", r.name));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The endpoint changes that turn `self` into `next`, when that is all
    /// that differs (same listeners, routes, limits and cluster settings);
    /// `None` when something else changed and the whole config must be sent.
    pub fn endpoint_delta(&self, next: &ProxyConfig) -> Option<BTreeMap<String, Vec<Endpoint>>> {
        // Every field but the endpoints must be the same; naming them all here
        // makes a new field a compile error until it is compared too.
        let ProxyConfig { version: _, listeners, routes, clusters, limits, inbound, telemetry } = self;
        if *listeners != next.listeners
            || *routes != next.routes
            || *limits != next.limits
            || *inbound != next.inbound
            || *telemetry != next.telemetry
            || clusters.len() != next.clusters.len()
        {
            return None;
        }
        let mut delta = BTreeMap::new();
        for (a, b) in self.clusters.iter().zip(&next.clusters) {
            if !a.same_settings(b) {
                return None;
            }
            if a.endpoints != b.endpoints {
                delta.insert(b.name.clone(), b.endpoints.clone());
            }
        }
        Some(delta)
    }

    /// Applies an endpoint delta; fails if it names a cluster this config lacks.
    pub fn with_endpoints(&self, delta: &BTreeMap<String, Vec<Endpoint>>) -> Result<ProxyConfig, String> {
        let mut next = self.clone();
        for (name, endpoints) in delta {
            let c = next
                .clusters
                .iter_mut()
                .find(|c| &c.name == name)
                .ok_or_else(|| format!("endpoint update for unknown cluster {name:?}"))?;
            c.endpoints = endpoints.clone();
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_urls_name_protocol_address_and_path() {
        let c = TraceCollector::parse("otlp://otel.observability:4317").unwrap();
        assert_eq!((c.protocol, c.address.as_str(), c.path.as_str()), (TraceProtocol::OtlpGrpc, "otel.observability:4317", ""));
        assert_eq!(TraceCollector::parse("otlp+http://10.0.0.1:4318").unwrap().path, "/v1/traces");
        let z = TraceCollector::parse("zipkin://zipkin:9411/custom/spans").unwrap();
        assert_eq!((z.protocol, z.path.as_str()), (TraceProtocol::Zipkin, "/custom/spans"));
        for bad in ["jaeger://x:1", "otlp://nohost", "otlp://h:0", "zipkin:9411", "otlp://h:4317/v1/traces"] {
            assert!(TraceCollector::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Tracing::ppm(1.0), Ok(10_000));
        assert_eq!(Tracing::ppm(0.01), Ok(100));
        assert!(Tracing::ppm(101.0).is_err() && Tracing::ppm(f64::NAN).is_err());
    }

    #[test]
    fn minimal_yaml_with_defaults() {
        let cfg: ProxyConfig = serde_norway::from_str(
            "listeners:\n- {name: out, kind: outbound, address: '127.0.0.1:15001'}\nlimits: {detect_timeout: 250ms}\n",
        )
        .unwrap();
        assert_eq!(cfg.listeners[0].protocol, Protocol::Detect);
        assert!(cfg.listeners[0].opaque_ports.contains(&3306));
        assert_eq!(cfg.limits.detect_timeout, Duration::from_millis(250));
        assert_eq!(cfg.limits.drain_timeout, Duration::from_secs(5));
        assert!(cfg.check().is_ok());
    }

    #[test]
    fn dangling_references_are_refused() {
        let cfg: ProxyConfig = serde_norway::from_str(
            "listeners:\n- {name: redis, kind: explicit, address: '127.0.0.1:16379', cluster: redis}\n",
        )
        .unwrap();
        assert_eq!(cfg.check().unwrap_err(), "listener \"redis\" refers to unknown cluster \"redis\"");
        let cfg: ProxyConfig = serde_norway::from_str("routes:\n- {name: r, cluster: nope}\n").unwrap();
        assert_eq!(cfg.check().unwrap_err(), "route \"r\" refers to unknown cluster \"nope\"");
    }

    #[test]
    fn endpoint_deltas() {
        let base: ProxyConfig = serde_norway::from_str(
            "clusters:\n- {name: a, endpoints: [\"10.0.0.1:80\"]}\n- {name: b, endpoints: [\"10.0.0.2:80\"]}\nroutes:\n- {name: r, hosts: [a], cluster: a}\n",
        )
        .unwrap();
        let mut next = base.clone();
        next.clusters[1].endpoints.push(Endpoint { address: "10.0.0.3:80".parse().unwrap(), identity: Some("spiffe://cluster.local/ns/default/sa/b".into()), weight: 3, workload: None });
        let delta = base.endpoint_delta(&next).unwrap();
        assert_eq!(delta.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(base.with_endpoints(&delta).unwrap(), next);
        let mut rerouted = next.clone();
        rerouted.routes[0].cluster = "b".into();
        assert!(base.endpoint_delta(&rerouted).is_none(), "a route change needs the whole config");
        let mut strict = next.clone();
        strict.inbound.mtls = MtlsMode::Strict;
        assert!(next.endpoint_delta(&strict).is_none(), "a policy change needs the whole config");
        let mut logged = next.clone();
        logged.telemetry.access_log = Some(AccessLog::default());
        assert!(next.endpoint_delta(&logged).is_none(), "a telemetry change needs the whole config");
        let bad: BTreeMap<String, Vec<Endpoint>> = [("zz".to_string(), vec![])].into();
        assert_eq!(base.with_endpoints(&bad).unwrap_err(), "endpoint update for unknown cluster \"zz\"");
    }

    #[test]
    fn http_rules_parse_and_are_checked() {
        let cfg: ProxyConfig = serde_norway::from_str(
            "clusters:\n- {name: v1, endpoints: []}\n- {name: v2, endpoints: []}\nroutes:\n- name: r\n  hosts: [r]\n  cluster: v1\n  http:\n  - matches: [{headers: [{name: x-canary, value: {exact: \"true\"}}]}, {path: {regex: \"/api/v[0-9]+\"}, method: GET}]\n    clusters: [{cluster: v2, weight: 100}]\n  - clusters: [{cluster: v1, weight: 90}, {cluster: v2, weight: 10}]\n",
        )
        .unwrap();
        assert_eq!(cfg.routes[0].http[0].matches[1].path, Some(StringMatch::regex("/api/v[0-9]+")));
        assert!(cfg.check().is_ok());
        let mut bad = cfg.clone();
        bad.routes[0].http[1].clusters[0].cluster = "v9".into();
        assert_eq!(bad.check().unwrap_err(), "route \"r\" rule 1 refers to unknown cluster \"v9\"");
        let mut zero = cfg;
        zero.routes[0].http[0].clusters[0].weight = 0;
        assert!(zero.check().unwrap_err().contains("no cluster with a weight above 0"));
    }

    #[test]
    fn endpoints_are_addresses_or_addresses_with_identities() {
        let cfg: ProxyConfig = serde_norway::from_str(
            "clusters:\n- name: a\n  tls: mutual\n  endpoints: [\"10.0.0.1:80\", {address: \"10.0.0.2:80\", identity: \"spiffe://cluster.local/ns/x/sa/y\"}]\ninbound: {mtls: STRICT, port_mtls: {8080: PERMISSIVE}}\n",
        )
        .unwrap();
        let eps = &cfg.clusters[0].endpoints;
        assert_eq!(eps[0], Endpoint::plain("10.0.0.1:80".parse().unwrap()));
        assert_eq!(eps[1].identity.as_deref(), Some("spiffe://cluster.local/ns/x/sa/y"));
        assert_eq!(cfg.clusters[0].tls, UpstreamTls::Mutual);
        assert_eq!(cfg.inbound.mode_for(8080), MtlsMode::Permissive);
        assert_eq!(cfg.inbound.mode_for(9090), MtlsMode::Strict);
        let json = serde_json::to_value(&cfg.clusters[0]).unwrap();
        assert_eq!(json["endpoints"][0], "10.0.0.1:80", "a plain endpoint stays a string");
        assert_eq!(json["endpoints"][1]["identity"], "spiffe://cluster.local/ns/x/sa/y");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = serde_norway::from_str::<ProxyConfig>("listners: []\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `listners`"), "{e}");
    }
}

#[cfg(test)]
mod docs_example {
    /// The annotated config in docs/proxy.md is a real, valid config.
    #[test]
    fn the_documented_config_file_loads() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/proxy.md")).unwrap();
        let start = doc.find("## Config file").unwrap();
        let yaml = doc[start..].split("```yaml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
        let cfg: super::ProxyConfig = serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("docs/proxy.md example: {e}"));
        cfg.check().unwrap_or_else(|e| panic!("docs/proxy.md example: {e}"));
        assert!(cfg.clusters[0].outlier.is_some() && cfg.routes[0].http[0].fault.is_some());
    }
}
