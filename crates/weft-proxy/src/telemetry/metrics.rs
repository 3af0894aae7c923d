//! The proxy's Prometheus metrics. Recording is a few atomic adds (done by
//! the records in [`super::record`]); rendering happens on the admin thread,
//! never on a worker.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: String,
    pub route: String,
    pub cluster: String,
    pub response_code: u16,
    /// Envoy-style response flags, `-` when none.
    pub response_flags: String,
    /// `mutual_tls` when the hop to the peer proxy was mesh mTLS, else `none` (Istio's label).
    pub connection_security_policy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub listener: String,
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    pub listener: String,
    /// http1, http2, tls, tcp.
    pub protocol: String,
    pub connection_security_policy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub listener: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub route: String,
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EjectionLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    pub cluster: String,
    /// sent, or dropped (over the proxy's or the cluster's limits).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// Where the config came from: file, sighup, controller, controller-delta.
    pub source: String,
    /// applied or rejected.
    pub result: String,
}

/// Which policy and rule decided (Linkerd's `authz_kind` / `authz_name` shape).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzLabels {
    /// AuthorizationPolicy, Server, ServerAuthorization, ... or `default`.
    pub authz_kind: String,
    pub authz_namespace: String,
    pub authz_name: String,
    /// `rules[N]`, or `-` when no rule decided (nothing matched, a default).
    pub authz_rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DryRunLabels {
    pub authz_kind: String,
    pub authz_namespace: String,
    pub authz_name: String,
    pub authz_rule: String,
    pub protocol: &'static str,
    /// What the policy would have done: allow or deny.
    pub would: &'static str,
}

/// The authorization counters, one family per decision.
#[derive(Clone, Default)]
pub struct AuthzFamilies {
    pub http_allow: Family<AuthzLabels, Counter>,
    pub http_deny: Family<AuthzLabels, Counter>,
    pub tcp_allow: Family<AuthzLabels, Counter>,
    pub tcp_deny: Family<AuthzLabels, Counter>,
    pub audit: Family<AuthzLabels, Counter>,
    pub dry_run: Family<DryRunLabels, Counter>,
    pub jwt_rejected: Family<ListenerLabels, Counter>,
}

pub struct Metrics {
    pub registry: Registry,
    /// The configured access log, if any (swapped when the config changes).
    access: std::sync::RwLock<Option<std::sync::Arc<super::access_sink::AccessSink>>>,
    access_dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The tracer in force, if tracing is on (swapped when the config changes).
    tracer: std::sync::RwLock<Option<std::sync::Arc<super::tracer::Tracer>>>,
    spans: std::sync::Arc<super::span_export::ExportStats>,
    /// Istio's and Linkerd's vocabularies (rendered after weft's own).
    pub standard: super::standard::Standard,
    pub authz: AuthzFamilies,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<DurationLabels, Histogram>,
    pub connections: Family<ConnLabels, Counter>,
    pub active_connections: Family<ListenerLabels, Gauge>,
    pub rejected: Family<RejectLabels, Counter>,
    pub tcp_sent_bytes: Family<ListenerLabels, Counter>,
    pub tcp_received_bytes: Family<ListenerLabels, Counter>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    pub ejections: Family<EjectionLabels, Counter>,
    pub mirrors: Family<MirrorLabels, Counter>,
    /// Seconds until the workload certificate expires (negative once it has), set at each scrape.
    pub certificate_expiry: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weft");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "HTTP requests handled, by response code and flags", requests.clone());
        let request_duration = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("request_duration_seconds", "Time from request received to response headers sent", request_duration.clone());
        let connections = Family::<ConnLabels, Counter>::default();
        registry.register("downstream_connections", "Accepted downstream connections, by detected protocol", connections.clone());
        let active_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register("downstream_connections_active", "Open downstream connections", active_connections.clone());
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register("downstream_connections_rejected", "Connections refused (overflow, loop, no original destination)", rejected.clone());
        let tcp_sent_bytes = Family::<ListenerLabels, Counter>::default();
        registry.register("tcp_sent_bytes", "Bytes sent to downstream on opaque TCP connections", tcp_sent_bytes.clone());
        let tcp_received_bytes = Family::<ListenerLabels, Counter>::default();
        registry.register("tcp_received_bytes", "Bytes received from downstream on opaque TCP connections", tcp_received_bytes.clone());
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("config_reloads", "Config reloads, by source and result", config_reloads.clone());
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register("upstream_retries", "Retries sent, by route and cluster", retries.clone());
        let ejections = Family::<EjectionLabels, Counter>::default();
        registry.register("outlier_ejections", "Endpoints ejected by outlier detection, by cluster", ejections.clone());
        let mirrors = Family::<MirrorLabels, Counter>::default();
        registry.register("mirror_requests", "Mirrored copies of requests, sent or dropped over the limits", mirrors.clone());
        let authz = AuthzFamilies::default();
        registry.register("inbound_http_authz_allow", "HTTP requests allowed, by the policy and rule that allowed them", authz.http_allow.clone());
        registry.register("inbound_http_authz_deny", "HTTP requests refused (403), by the policy and rule that refused them", authz.http_deny.clone());
        registry.register("inbound_tcp_authz_allow", "TCP connections allowed, by the policy and rule that allowed them", authz.tcp_allow.clone());
        registry.register("inbound_tcp_authz_deny", "TCP connections refused (reset), by the policy and rule that refused them", authz.tcp_deny.clone());
        registry.register("inbound_authz_audit", "Requests and connections an AUDIT policy matched", authz.audit.clone());
        registry.register("inbound_authz_dry_run", "What dry-run policies would have done (never enforced)", authz.dry_run.clone());
        registry.register("inbound_jwt_rejected", "Requests refused (401) because their JWT did not verify", authz.jwt_rejected.clone());
        let certificate_expiry = Gauge::default();
        registry.register(
            "workload_certificate_expiry_seconds",
            "Seconds until the workload certificate expires (negative once it has; 0 without one)",
            certificate_expiry.clone(),
        );
        Metrics {
            access: Default::default(),
            access_dropped: Default::default(),
            tracer: Default::default(),
            spans: Default::default(),
            standard: Default::default(),
            authz,
            mirrors,
            certificate_expiry,
            retries,
            ejections,
            registry,
            requests,
            request_duration,
            connections,
            active_connections,
            rejected,
            tcp_sent_bytes,
            tcp_received_bytes,
            config_reloads,
        }
    }

    /// Takes a config's telemetry settings: the vocabularies, the access
    /// log and tracing, recording as `own` (a format that does not compile
    /// refuses the config, and nothing changes).
    pub fn configure(&self, t: &weft_proto::config::Telemetry, own: &crate::metric_labels::Workload) -> Result<(), String> {
        let current = self.access_sink();
        let access = match (&t.access_log, current) {
            (None, _) => None,
            (Some(a), Some(c)) if c.is_for(a) => Some(c),
            (Some(a), c) => Some(std::sync::Arc::new(super::access_sink::AccessSink::new(a, c.as_deref(), self.access_dropped.clone()).map_err(|e| format!("access log: {e}"))?)),
        };
        let current = self.tracer();
        let tracer = match (&t.tracing, current) {
            (None, _) => None,
            (Some(c), Some(t)) if t.is_for(c, own) => Some(t),
            (Some(c), t) => Some(std::sync::Arc::new(super::tracer::Tracer::new(c, own, t.as_deref(), self.spans.clone()).map_err(|e| format!("tracing: {e}"))?)),
        };
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = access;
        *self.tracer.write().unwrap_or_else(|e| e.into_inner()) = tracer;
        self.standard.configure(t);
        Ok(())
    }

    /// The access log in force, if any.
    pub fn access_sink(&self) -> Option<std::sync::Arc<super::access_sink::AccessSink>> {
        self.access.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The tracer in force, if any.
    pub fn tracer(&self) -> Option<std::sync::Arc<super::tracer::Tracer>> {
        self.tracer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        if out.ends_with("# EOF\n") {
            out.truncate(out.len() - "# EOF\n".len());
        }
        self.standard.render(&mut out);
        use super::standard::header;
        header(&mut out, "weft_metrics_series_dropped_total", "counter", "Requests and connections not recorded in the standard metrics: a family had max_series label sets");
        out.push_str(&format!("weft_metrics_series_dropped_total {}\n", self.standard.dropped()));
        header(&mut out, "weft_access_log_dropped_total", "counter", "Access-log lines dropped because the writer was behind (the request path never waits for it)");
        out.push_str(&format!("weft_access_log_dropped_total {}\n", self.access_dropped.load(std::sync::atomic::Ordering::Relaxed)));
        use std::sync::atomic::Ordering::Relaxed;
        for (name, help, value) in [
            ("weft_tracing_spans_recorded_total", "Spans of sampled requests finished and handed to the exporter", &self.spans.recorded),
            ("weft_tracing_spans_exported_total", "Spans the collector took", &self.spans.exported),
            ("weft_tracing_spans_dropped_total", "Spans dropped: the export queue was full, or the collector did not take them", &self.spans.dropped),
        ] {
            header(&mut out, name, "counter", help);
            out.push_str(&format!("{name} {}\n", value.load(Relaxed)));
        }
        out.push_str("# EOF\n");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
