//! The standard metrics: Istio's (`istio_requests_total`, ...) and Linkerd's
//! (`request_total`, `response_total`, ...), from one recording per request
//! or connection. A series is keyed by interned label sets
//! ([`crate::metric_labels`]) and a few numbers, so recording is a hash of
//! pointers, a read lock and atomic adds; both vocabularies are rendered from
//! the same series at scrape time (on the admin thread), each with its own
//! buckets: durations are kept in the union of Istio's and Linkerd's bounds.
//!
//! Cardinality is bounded: label values come from the controller's registry
//! and the proxy's certificate, never from request input, and each family
//! keeps at most `max_series` label sets (a request with a new one beyond it
//! is counted in `weft_metrics_series_dropped_total`, not recorded).

use super::label_overrides::{self, Labels, Overrides};
use crate::metric_labels::{self, escape_into, Service, Shared, Workload};
use weft_proto::config::{IstioMetric, OverrideReporter};
use std::collections::HashMap;
use std::fmt::Write;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

/// Which proxy of a hop reports: the client's (`source`) or the server's (`destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    Source,
    Destination,
}

impl Reporter {
    fn istio(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }

    fn linkerd(self) -> &'static str {
        match self {
            Reporter::Source => "outbound",
            Reporter::Destination => "inbound",
        }
    }
}

/// Istio's duration buckets (ms).
const ISTIO_MS: &[f64] = &[0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0];
/// Linkerd's latency buckets (ms).
const LINKERD_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];
/// Both, as kept (µs): every bound of either vocabulary is one of these.
const KEPT_US: &[u64] = &[
    500, 1_000, 2_000, 3_000, 4_000, 5_000, 10_000, 20_000, 25_000, 30_000, 40_000, 50_000, 100_000, 200_000, 250_000, 300_000, 400_000, 500_000, 1_000_000, 2_000_000, 2_500_000, 3_000_000, 4_000_000,
    5_000_000, 10_000_000, 20_000_000, 30_000_000, 40_000_000, 50_000_000, 60_000_000, 300_000_000, 600_000_000, 1_800_000_000, 3_600_000_000,
];
/// Istio's size buckets (bytes).
const SIZES: &[u64] = &[1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];

/// Counts per bucket (not cumulative; the last is over every bound), the sum and the count.
struct Buckets {
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Buckets {
    fn new(bounds: usize) -> Buckets {
        Buckets { counts: (0..=bounds).map(|_| AtomicU64::new(0)).collect(), sum: AtomicU64::new(0) }
    }

    fn observe(&self, bounds: &[u64], value: u64) {
        let i = bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    fn read(&self) -> (Vec<u64>, u64) {
        (self.counts.iter().map(|c| c.load(Relaxed)).collect(), self.sum.load(Relaxed))
    }
}

/// The sides of one request or connection, as the standard metrics label
/// them: who reports (the client's proxy or the server's), the two
/// workloads, the Service, and whether the reported hop was mesh mTLS (the
/// caller's inbound, or the upstream outbound).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Parties {
    pub reporter: Reporter,
    pub source: Shared<Workload>,
    pub destination: Shared<Workload>,
    pub service: Shared<Service>,
    pub mtls: bool,
}

impl Parties {
    pub fn unknown(reporter: Reporter) -> Parties {
        Parties { reporter, source: metric_labels::unknown_workload(), destination: metric_labels::unknown_workload(), service: metric_labels::unknown_service(), mtls: false }
    }
}

/// One HTTP series: the request label set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpKey {
    pub parties: Parties,
    pub grpc: bool,
    pub code: u16,
    /// The `grpc-status` the response ended with, when it had one.
    pub grpc_status: Option<u16>,
    /// Envoy's response flags, `-` for none.
    pub flags: &'static str,
    /// `ROUTE/RULE` when a named rule matched (Linkerd's `rt_route` is the
    /// rule: a ServiceProfile route's name, a VirtualService http route's).
    pub rt_route: Option<Arc<str>>,
    /// Linkerd's classification: a 5xx, or what the route's response classes call a failure.
    pub failure: bool,
    /// The request attributes `tagOverrides` read (none without such overrides).
    pub extra: Option<Arc<[String]>>,
}

/// What one request adds to its series.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpSample {
    pub duration_us: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub request_messages: u64,
    pub response_messages: u64,
}

struct HttpSeries {
    requests: AtomicU64,
    duration: Buckets,
    request_bytes: Buckets,
    response_bytes: Buckets,
    request_messages: AtomicU64,
    response_messages: AtomicU64,
}

impl Default for HttpSeries {
    fn default() -> HttpSeries {
        HttpSeries {
            requests: AtomicU64::new(0),
            duration: Buckets::new(KEPT_US.len()),
            request_bytes: Buckets::new(SIZES.len()),
            response_bytes: Buckets::new(SIZES.len()),
            request_messages: AtomicU64::new(0),
            response_messages: AtomicU64::new(0),
        }
    }
}

/// One opaque TCP series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpKey {
    pub parties: Parties,
    pub flags: &'static str,
}

#[derive(Default)]
pub struct TcpSeries {
    opened: AtomicU64,
    closed: AtomicU64,
    /// To the downstream peer, and from it.
    sent: AtomicU64,
    received: AtomicU64,
}

/// Where an open connection's bytes are counted, as they move: long-lived
/// connections (a database pool) show their traffic while they last.
#[derive(Clone)]
pub struct TcpBytes(Arc<TcpSeries>);

impl TcpBytes {
    /// Bytes written to the downstream peer.
    pub fn sent(&self, n: u64) {
        self.0.sent.fetch_add(n, Relaxed);
    }

    /// Bytes read from the downstream peer.
    pub fn received(&self, n: u64) {
        self.0.received.fetch_add(n, Relaxed);
    }
}

/// A family's series, at most `max` of them.
struct Family<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K: Hash + Eq, V: Default> Family<K, V> {
    fn new() -> Self {
        Family { map: RwLock::new(HashMap::new()) }
    }

    /// Runs `f` on `key`'s series, made if there is room; false when there was none.
    fn with(&self, key: &K, max: usize, f: impl FnOnce(&V)) -> bool
    where
        K: Clone,
    {
        if let Some(v) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            f(v);
            return true;
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(key) && map.len() >= max {
            return false;
        }
        f(map.entry(key.clone()).or_default());
        true
    }
}

/// The standard metrics of one proxy.
pub struct Standard {
    http: Family<HttpKey, HttpSeries>,
    tcp: Family<TcpKey, Arc<TcpSeries>>,
    max_series: AtomicUsize,
    pub istio: std::sync::atomic::AtomicBool,
    pub linkerd: std::sync::atomic::AtomicBool,
    dropped: AtomicU64,
    overrides: RwLock<Arc<Overrides>>,
    /// Some override reads the request (so records must capture it).
    reads_requests: std::sync::atomic::AtomicBool,
}

impl Default for Standard {
    fn default() -> Standard {
        Standard {
            http: Family::new(),
            tcp: Family::new(),
            max_series: AtomicUsize::new(weft_proto::config::Telemetry::default().max_series),
            istio: true.into(),
            linkerd: true.into(),
            dropped: AtomicU64::new(0),
            overrides: Default::default(),
            reads_requests: false.into(),
        }
    }
}

impl Standard {
    /// What the config says to export.
    pub fn configure(&self, t: &weft_proto::config::Telemetry) {
        self.max_series.store(t.max_series, Relaxed);
        self.istio.store(t.istio_metrics, Relaxed);
        self.linkerd.store(t.linkerd_metrics, Relaxed);
        let next = Overrides::new(&t.label_overrides);
        let mut current = self.overrides.write().unwrap_or_else(|e| e.into_inner());
        self.reads_requests.store(next.reads_requests(), Relaxed);
        if **current != next {
            *current = Arc::new(next);
        }
    }

    /// The `tagOverrides` in force.
    pub fn overrides(&self) -> Arc<Overrides> {
        self.overrides.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the overrides read of `req` (whose authority is `host`), for
    /// its series key (nothing, and no lock, without such overrides).
    pub fn capture<B>(&self, req: &http::Request<B>, host: Option<&str>) -> Option<Arc<[String]>> {
        if !self.reads_requests.load(Relaxed) {
            return None;
        }
        self.overrides().capture(req, host)
    }

    fn enabled(&self) -> bool {
        self.istio.load(Relaxed) || self.linkerd.load(Relaxed)
    }

    pub fn request(&self, key: &HttpKey, s: HttpSample) {
        if !self.enabled() {
            return;
        }
        let recorded = self.http.with(key, self.max_series.load(Relaxed), |v| {
            v.requests.fetch_add(1, Relaxed);
            v.duration.observe(KEPT_US, s.duration_us);
            v.request_bytes.observe(SIZES, s.request_bytes);
            v.response_bytes.observe(SIZES, s.response_bytes);
            if key.grpc {
                v.request_messages.fetch_add(s.request_messages, Relaxed);
                v.response_messages.fetch_add(s.response_messages, Relaxed);
            }
        });
        if !recorded {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// A relayed connection opened (counted under flags `-`): the handle
    /// its bytes are counted into while they move (none when the family is
    /// full or the vocabularies are off).
    pub fn tcp_opened(&self, key: &TcpKey) -> Option<TcpBytes> {
        if !self.enabled() {
            return None;
        }
        let mut handle = None;
        let recorded = self.tcp.with(key, self.max_series.load(Relaxed), |v| {
            v.opened.fetch_add(1, Relaxed);
            handle = Some(TcpBytes(v.clone()));
        });
        if !recorded {
            self.dropped.fetch_add(1, Relaxed);
        }
        handle
    }

    /// A relayed connection closed (its bytes were counted as they moved).
    pub fn tcp_closed(&self, key: &TcpKey) {
        if !self.enabled() {
            return;
        }
        if !self.tcp.with(key, self.max_series.load(Relaxed), |v| {
            v.closed.fetch_add(1, Relaxed);
        }) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Series not recorded because a family was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Both vocabularies (those turned on) in Prometheus text.
    pub fn render(&self, out: &mut String) {
        let http: Vec<(HttpKey, HttpTotals)> = self.http.map.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), HttpTotals::of(v))).collect();
        let tcp: Vec<(TcpKey, [u64; 4])> = self
            .tcp
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), [v.opened.load(Relaxed), v.closed.load(Relaxed), v.sent.load(Relaxed), v.received.load(Relaxed)]))
            .collect();
        if self.istio.load(Relaxed) {
            render_istio(out, &http, &tcp, &self.overrides());
        }
        if self.linkerd.load(Relaxed) {
            render_linkerd(out, &http, &tcp);
        }
    }
}

/// A series read at scrape time (and summed, where a vocabulary merges series).
#[derive(Clone, Default)]
struct HttpTotals {
    requests: u64,
    duration: (Vec<u64>, u64),
    request_bytes: (Vec<u64>, u64),
    response_bytes: (Vec<u64>, u64),
    request_messages: u64,
    response_messages: u64,
}

impl HttpTotals {
    fn of(v: &HttpSeries) -> HttpTotals {
        HttpTotals {
            requests: v.requests.load(Relaxed),
            duration: v.duration.read(),
            request_bytes: v.request_bytes.read(),
            response_bytes: v.response_bytes.read(),
            request_messages: v.request_messages.load(Relaxed),
            response_messages: v.response_messages.load(Relaxed),
        }
    }

    fn add(&mut self, o: &HttpTotals) {
        fn sum(a: &mut (Vec<u64>, u64), b: &(Vec<u64>, u64)) {
            if a.0.is_empty() {
                a.0 = vec![0; b.0.len()];
            }
            for (x, y) in a.0.iter_mut().zip(&b.0) {
                *x += y;
            }
            a.1 += b.1;
        }
        self.requests += o.requests;
        sum(&mut self.duration, &o.duration);
        sum(&mut self.request_bytes, &o.request_bytes);
        sum(&mut self.response_bytes, &o.response_bytes);
        self.request_messages += o.request_messages;
        self.response_messages += o.response_messages;
    }
}

/// `# HELP` and `# TYPE` lines of a family.
pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `NAME_bucket{LABELS,le=".."}` lines at `bounds` (in the unit the kept
/// bounds are divided by `unit` to reach), then `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, labels: &str, kept: &[u64], unit: f64, bounds: &[f64], (counts, sum): &(Vec<u64>, u64)) {
    let mut cumulative = 0;
    let mut next = 0;
    for &b in bounds {
        while next < kept.len() && (kept[next] as f64 / unit) <= b {
            cumulative += counts[next];
            next += 1;
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
    }
    let total: u64 = counts.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", *sum as f64 / unit);
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

const SIZE_BOUNDS: &[f64] = &[1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

fn istio_labels(p: &Parties, protocol: &str) -> String {
    format!("reporter=\"{}\",{},{},{},request_protocol=\"{protocol}\"", p.reporter.istio(), p.source.as_source, p.destination.as_destination, p.service.as_istio)
}

/// Istio merges what Linkerd's labels split (the route, the classification).
#[derive(PartialEq, Eq, Hash)]
struct IstioHttp {
    parties: Parties,
    grpc: bool,
    code: u16,
    grpc_status: Option<u16>,
    flags: &'static str,
}

fn security(mtls: bool) -> &'static str {
    if mtls {
        "mutual_tls"
    } else {
        "none"
    }
}

fn side(r: Reporter) -> OverrideReporter {
    match r {
        Reporter::Source => OverrideReporter::Source,
        Reporter::Destination => OverrideReporter::Destination,
    }
}

/// A series' Istio labels as a list (what overrides work on); rendered
/// without overrides it is exactly the prebuilt string.
fn istio_label_list(p: &Parties, protocol: &str) -> Labels {
    let (s, d, svc) = (&p.source, &p.destination, &p.service);
    vec![
        ("reporter", p.reporter.istio().into()),
        ("source_workload", s.name.clone()),
        ("source_workload_namespace", s.namespace.clone()),
        ("source_principal", s.principal.clone()),
        ("source_app", s.app.clone()),
        ("source_version", s.version.clone()),
        ("source_cluster", s.cluster.clone()),
        ("destination_workload", d.name.clone()),
        ("destination_workload_namespace", d.namespace.clone()),
        ("destination_principal", d.principal.clone()),
        ("destination_app", d.app.clone()),
        ("destination_version", d.version.clone()),
        ("destination_cluster", d.cluster.clone()),
        ("destination_service", svc.host.clone()),
        ("destination_service_name", svc.name.clone()),
        ("destination_service_namespace", svc.namespace.clone()),
        ("request_protocol", protocol.into()),
    ]
}

fn http_label_list(k: &HttpKey) -> Labels {
    let mut l = istio_label_list(&k.parties, if k.grpc { "grpc" } else { "http" });
    l.extend([
        ("response_code", k.code.to_string()),
        ("grpc_response_status", k.grpc_status.map(|s| s.to_string()).unwrap_or_default()),
        ("response_flags", k.flags.to_string()),
        ("connection_security_policy", security(k.parties.mtls).to_string()),
    ]);
    l
}

fn tcp_label_list(k: &TcpKey) -> Labels {
    let mut l = istio_label_list(&k.parties, "tcp");
    l.extend([("response_flags", k.flags.to_string()), ("connection_security_policy", security(k.parties.mtls).to_string())]);
    l
}

/// The rows of one HTTP family: the shared ones, or (when overrides touch
/// it) its own, labels overridden and equal ones summed. `grpc`: gRPC series only.
fn http_rows<'a>(metric: IstioMetric, shared: &'a [(String, &'a HttpTotals, bool)], http: &[(HttpKey, HttpTotals)], o: &Overrides, grpc: bool) -> Vec<(std::borrow::Cow<'a, str>, std::borrow::Cow<'a, HttpTotals>)> {
    use std::borrow::Cow;
    if !o.touches(metric) {
        return shared.iter().filter(|r| !grpc || r.2).map(|(l, v, _)| (Cow::Borrowed(l.as_str()), Cow::Borrowed(*v))).collect();
    }
    let mut merged: HashMap<String, HttpTotals> = HashMap::new();
    for (k, v) in http.iter().filter(|(k, _)| !grpc || k.grpc) {
        let mut labels = http_label_list(k);
        o.apply(metric, side(k.parties.reporter), &mut labels, k.extra.as_deref(), Some(k.code));
        merged.entry(label_overrides::render(&labels)).or_default().add(v);
    }
    merged.into_iter().map(|(l, v)| (Cow::Owned(l), Cow::Owned(v))).collect()
}

fn render_istio(out: &mut String, http: &[(HttpKey, HttpTotals)], tcp: &[(TcpKey, [u64; 4])], o: &Overrides) {
    let mut merged: HashMap<IstioHttp, HttpTotals> = HashMap::new();
    for (k, v) in http {
        let view = IstioHttp { parties: k.parties.clone(), grpc: k.grpc, code: k.code, grpc_status: k.grpc_status, flags: k.flags };
        merged.entry(view).or_default().add(v);
    }
    let shared: Vec<(String, &HttpTotals, bool)> = merged
        .iter()
        .map(|(k, v)| {
            let mut l = istio_labels(&k.parties, if k.grpc { "grpc" } else { "http" });
            let grpc = k.grpc_status.map(|s| s.to_string()).unwrap_or_default();
            let _ = write!(l, ",response_code=\"{}\",grpc_response_status=\"{grpc}\",response_flags=\"{}\",connection_security_policy=\"{}\"", k.code, k.flags, security(k.parties.mtls));
            (l, v, k.grpc)
        })
        .collect();
    if !shared.is_empty() {
        let rows = http_rows(IstioMetric::RequestCount, &shared, http, o, false);
        header(out, "istio_requests_total", "counter", "Requests, by both sides' workloads, the service, the response code and flags");
        for (l, v) in &rows {
            let _ = writeln!(out, "istio_requests_total{{{l}}} {}", v.requests);
        }
        header(out, "istio_request_duration_milliseconds", "histogram", "Request duration (to the end of the response)");
        for (l, v) in &http_rows(IstioMetric::RequestDuration, &shared, http, o, false) {
            histogram(out, "istio_request_duration_milliseconds", l, KEPT_US, 1000.0, ISTIO_MS, &v.duration);
        }
        header(out, "istio_request_bytes", "histogram", "Request size: headers and body");
        for (l, v) in &http_rows(IstioMetric::RequestSize, &shared, http, o, false) {
            histogram(out, "istio_request_bytes", l, SIZES, 1.0, SIZE_BOUNDS, &v.request_bytes);
        }
        header(out, "istio_response_bytes", "histogram", "Response size: headers and body");
        for (l, v) in &http_rows(IstioMetric::ResponseSize, &shared, http, o, false) {
            histogram(out, "istio_response_bytes", l, SIZES, 1.0, SIZE_BOUNDS, &v.response_bytes);
        }
        if shared.iter().any(|r| r.2) {
            header(out, "istio_request_messages_total", "counter", "gRPC messages the client sent");
            for (l, v) in &http_rows(IstioMetric::GrpcRequestMessages, &shared, http, o, true) {
                let _ = writeln!(out, "istio_request_messages_total{{{l}}} {}", v.request_messages);
            }
            header(out, "istio_response_messages_total", "counter", "gRPC messages the server sent");
            for (l, v) in &http_rows(IstioMetric::GrpcResponseMessages, &shared, http, o, true) {
                let _ = writeln!(out, "istio_response_messages_total{{{l}}} {}", v.response_messages);
            }
        }
    }
    if !tcp.is_empty() {
        let shared: Vec<(String, [u64; 4])> = tcp
            .iter()
            .map(|(k, v)| {
                let mut l = istio_labels(&k.parties, "tcp");
                let _ = write!(l, ",response_flags=\"{}\",connection_security_policy=\"{}\"", k.flags, security(k.parties.mtls));
                (l, *v)
            })
            .collect();
        for (name, i, help, metric) in [
            ("istio_tcp_connections_opened_total", 0, "TCP connections opened", IstioMetric::TcpOpenedConnections),
            ("istio_tcp_connections_closed_total", 1, "TCP connections closed", IstioMetric::TcpClosedConnections),
            ("istio_tcp_sent_bytes_total", 2, "Bytes sent to the downstream peer", IstioMetric::TcpSentBytes),
            ("istio_tcp_received_bytes_total", 3, "Bytes received from the downstream peer", IstioMetric::TcpReceivedBytes),
        ] {
            header(out, name, "counter", help);
            if !o.touches(metric) {
                for (l, v) in &shared {
                    let _ = writeln!(out, "{name}{{{l}}} {}", v[i]);
                }
                continue;
            }
            let mut merged: HashMap<String, u64> = HashMap::new();
            for (k, v) in tcp {
                let mut labels = tcp_label_list(k);
                o.apply(metric, side(k.parties.reporter), &mut labels, None, None);
                *merged.entry(label_overrides::render(&labels)).or_default() += v[i];
            }
            for (l, v) in &merged {
                let _ = writeln!(out, "{name}{{{l}}} {v}");
            }
        }
    }
}

/// Linkerd's labels: the direction, the authority, the destination (outbound
/// only), the peer's identity, TLS, the route.
fn linkerd_labels(p: &Parties) -> String {
    let Parties { reporter, source, destination, service, mtls } = p;
    let mtls = *mtls;
    let mut l = format!("direction=\"{}\",{}", reporter.linkerd(), service.as_authority);
    match reporter {
        Reporter::Source => {
            let _ = write!(l, ",{},{},server_id=\"", service.as_linkerd_dst, destination.as_linkerd_dst);
            escape_into(&mut l, if mtls { &destination.principal } else { "" });
        }
        Reporter::Destination => {
            l.push_str(",client_id=\"");
            escape_into(&mut l, if mtls { &source.principal } else { "" });
        }
    }
    let _ = write!(l, "\",tls=\"{}\"", if mtls { "true" } else { "no_identity" });
    l
}

fn render_linkerd(out: &mut String, http: &[(HttpKey, HttpTotals)], tcp: &[(TcpKey, [u64; 4])]) {
    // Linkerd's label sets are coarser than the series (no source workload
    // outbound...): merge by the rendered labels.
    let mut requests: HashMap<String, HttpTotals> = HashMap::new();
    let mut responses: HashMap<String, HttpTotals> = HashMap::new();
    for (k, v) in http {
        let mut l = linkerd_labels(&k.parties);
        if let Some(r) = &k.rt_route {
            // The record's route is `ROUTE/RULE`; Linkerd names the rule.
            l.push_str(",rt_route=\"");
            escape_into(&mut l, r.split_once('/').map(|(_, rule)| rule).unwrap_or(r));
            l.push('"');
        }
        let classification = if k.failure { "failure" } else { "success" };
        let request = format!("{l},classification=\"{classification}\"");
        requests.entry(request).or_default().add(v);
        let response = format!("{l},status_code=\"{}\",classification=\"{classification}\"", k.code);
        responses.entry(response).or_default().add(v);
    }
    if !requests.is_empty() {
        let mut requests: Vec<_> = requests.into_iter().collect();
        requests.sort_by(|a, b| a.0.cmp(&b.0));
        let mut responses: Vec<_> = responses.into_iter().collect();
        responses.sort_by(|a, b| a.0.cmp(&b.0));
        header(out, "request_total", "counter", "Requests (Linkerd's), by destination and classification");
        for (l, v) in &requests {
            let _ = writeln!(out, "request_total{{{l}}} {}", v.requests);
        }
        header(out, "response_total", "counter", "Responses (Linkerd's), by status code and classification");
        for (l, v) in &responses {
            let _ = writeln!(out, "response_total{{{l}}} {}", v.requests);
        }
        for (name, help) in [("response_latency_ms", "Response latency (Linkerd's buckets)"), ("request_duration_ms", "Request duration (the same histogram, the name some dashboards use)")] {
            header(out, name, "histogram", help);
            for (l, v) in &responses {
                histogram(out, name, l, KEPT_US, 1000.0, LINKERD_MS, &v.duration);
            }
        }
    }
    if !tcp.is_empty() {
        let mut merged: HashMap<String, [u64; 4]> = HashMap::new();
        for (k, v) in tcp {
            let l = format!("{},peer=\"src\"", linkerd_labels(&k.parties));
            let m = merged.entry(l).or_default();
            for i in 0..4 {
                m[i] += v[i];
            }
        }
        let mut rows: Vec<_> = merged.into_iter().collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, i, help) in [
            ("tcp_open_total", 0, "TCP connections opened (Linkerd's)"),
            ("tcp_close_total", 1, "TCP connections closed (Linkerd's)"),
            ("tcp_write_bytes_total", 2, "Bytes written to the peer (Linkerd's)"),
            ("tcp_read_bytes_total", 3, "Bytes read from the peer (Linkerd's)"),
        ] {
            header(out, name, "counter", help);
            for (l, v) in &rows {
                let _ = writeln!(out, "{name}{{{l}}} {}", v[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric_labels::{service, workload};
    use weft_proto::config::WorkloadMeta;

    fn meta(name: &str, ns: &str) -> WorkloadMeta {
        WorkloadMeta { name: name.into(), namespace: ns.into(), app: name.into(), version: "v1".into(), cluster: "Kubernetes".into() }
    }

    fn key(reporter: Reporter, code: u16, route: Option<&str>) -> HttpKey {
        HttpKey {
            parties: Parties {
                reporter,
                source: workload(Some(&meta("productpage", "prod")), Some("spiffe://cluster.local/ns/prod/sa/productpage")),
                destination: workload(Some(&meta("reviews", "prod")), Some("spiffe://cluster.local/ns/prod/sa/reviews")),
                service: service(Some("reviews.prod.svc.cluster.local"), 9080),
                mtls: true,
            },
            grpc: false,
            code,
            grpc_status: None,
            flags: "-",
            rt_route: route.map(Arc::from),
            failure: code >= 500,
            extra: None,
        }
    }

    #[test]
    fn the_label_list_renders_as_the_prebuilt_labels() {
        let k = key(Reporter::Source, 503, None);
        let mut prebuilt = istio_labels(&k.parties, "http");
        let _ = write!(prebuilt, ",response_code=\"503\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"");
        assert_eq!(label_overrides::render(&http_label_list(&k)), prebuilt);
    }

    #[test]
    fn tag_overrides_add_request_labels_to_their_metrics_and_removed_labels_merge_series() {
        use weft_proto::config::{LabelOverride, LabelValue};
        let m = Standard::default();
        let rules = vec![
            LabelOverride { metrics: vec![IstioMetric::RequestCount], reporter: None, label: "request_host".into(), value: Some(LabelValue::RequestHost) },
            LabelOverride { metrics: vec![], reporter: None, label: "response_code".into(), value: None },
        ];
        m.configure(&weft_proto::config::Telemetry { label_overrides: rules, ..Default::default() });
        for (code, host) in [(200, "a.prod"), (503, "a.prod"), (200, "b.prod")] {
            let req = http::Request::get("/").header("host", host).body(()).unwrap();
            let k = HttpKey { extra: m.capture(&req, Some(host)), ..key(Reporter::Source, code, None) };
            m.request(&k, HttpSample { duration_us: 100, ..Default::default() });
        }
        let mut out = String::new();
        m.render(&mut out);
        let counts: Vec<_> = out.lines().filter(|l| l.starts_with("istio_requests_total{")).collect();
        assert_eq!(counts.len(), 2, "one series per host, the codes merged: {counts:#?}");
        assert!(counts.iter().any(|l| l.contains("request_host=\"a.prod\"") && l.ends_with(" 2") && !l.contains("response_code")), "{counts:#?}");
        // The duration histogram gets the removal (every metric) but not the host (REQUEST_COUNT only).
        let durations: Vec<_> = out.lines().filter(|l| l.starts_with("istio_request_duration_milliseconds_count{")).collect();
        assert_eq!(durations.len(), 1, "{durations:#?}");
        assert!(durations[0].ends_with(" 3") && !durations[0].contains("request_host"));
        // Linkerd's vocabulary is not Istio's Telemetry's to change.
        assert!(out.lines().any(|l| l.starts_with("response_total{") && l.contains("status_code=\"503\"")));
    }

    #[test]
    fn both_vocabularies_render_from_the_same_series() {
        let m = Standard::default();
        m.request(&key(Reporter::Source, 200, Some("reviews:80/GET /a")), HttpSample { duration_us: 1_500, request_bytes: 120, response_bytes: 2_000, ..Default::default() });
        m.request(&key(Reporter::Source, 200, Some("reviews:80/GET /b")), HttpSample { duration_us: 7_000, ..Default::default() });
        m.request(&key(Reporter::Source, 503, None), HttpSample { duration_us: 40, ..Default::default() });
        let mut out = String::new();
        m.render(&mut out);
        // Istio merges the two routes into one series.
        let line = out.lines().find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\"")).unwrap();
        assert!(line.ends_with(" 2"), "{line}");
        assert!(line.contains("reporter=\"source\",source_workload=\"productpage\""), "{line}");
        assert!(line.contains("destination_service_name=\"reviews\"") && line.contains("connection_security_policy=\"mutual_tls\""), "{line}");
        // 1.5 ms and 7 ms: Istio's le=5 holds one, le=10 both; Linkerd's le=2 one, le=10 both.
        assert!(out.lines().any(|l| l.starts_with("istio_request_duration_milliseconds_bucket{") && l.contains("response_code=\"200\"") && l.contains("le=\"5\"} 1")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("istio_request_duration_milliseconds_bucket{") && l.contains("response_code=\"200\"") && l.contains("le=\"10\"} 2")));
        assert!(out.lines().any(|l| l.starts_with("istio_request_duration_milliseconds_sum{") && l.contains("response_code=\"200\"") && l.ends_with(" 8.5")));
        assert!(out.lines().any(|l| l.starts_with("istio_response_bytes_bucket{") && l.contains("response_code=\"200\"") && l.contains("le=\"10000\"} 2")));
        // Linkerd keeps the routes apart, and classifies.
        let routes: Vec<_> = out.lines().filter(|l| l.starts_with("response_total{") && l.contains("rt_route")).collect();
        assert_eq!(routes.len(), 2, "{out}");
        assert!(out.lines().any(|l| l.starts_with("response_total{")
            && l.contains("direction=\"outbound\",authority=\"reviews.prod.svc.cluster.local:9080\",dst_service=\"reviews\",dst_deployment=\"reviews\",dst_namespace=\"prod\",server_id=\"spiffe://cluster.local/ns/prod/sa/reviews\",tls=\"true\",status_code=\"503\",classification=\"failure\"} 1")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("response_latency_ms_bucket{") && l.contains("rt_route=\"GET /a\"") && l.contains("le=\"2\"} 1")));
        assert!(out.lines().any(|l| l.starts_with("request_duration_ms_bucket{") && l.contains("status_code=\"503\"") && l.contains("le=\"1\"} 1")));
        assert!(out.lines().any(|l| l.starts_with("request_total{") && l.contains("classification=\"failure\"")));
    }

    #[test]
    fn families_stop_growing_at_the_cap_and_count_what_they_drop() {
        let m = Standard::default();
        m.configure(&weft_proto::config::Telemetry { max_series: 2, ..Default::default() });
        for code in [200, 201, 202, 200] {
            m.request(&key(Reporter::Destination, code, None), HttpSample::default());
        }
        assert_eq!(m.dropped(), 1);
        let mut out = String::new();
        m.render(&mut out);
        assert_eq!(out.lines().filter(|l| l.starts_with("istio_requests_total{")).count(), 2);
        // Inbound, Linkerd names the client, not the destination.
        assert!(out.lines().any(|l| l.starts_with("request_total{direction=\"inbound\",authority=\"reviews.prod.svc.cluster.local:9080\",client_id=\"spiffe://cluster.local/ns/prod/sa/productpage\",tls=\"true\"")), "{out}");
    }

    #[test]
    fn turned_off_vocabularies_are_neither_kept_nor_shown() {
        let m = Standard::default();
        m.configure(&weft_proto::config::Telemetry { istio_metrics: false, linkerd_metrics: true, max_series: 10, access_log: None, tracing: None, label_overrides: vec![] });
        m.request(&key(Reporter::Source, 200, None), HttpSample::default());
        let mut out = String::new();
        m.render(&mut out);
        assert!(!out.contains("istio_") && out.contains("response_total{"));
        m.configure(&weft_proto::config::Telemetry { istio_metrics: false, linkerd_metrics: false, max_series: 10, access_log: None, tracing: None, label_overrides: vec![] });
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn tcp_connections_open_and_close_under_both_names() {
        let m = Standard::default();
        let k = TcpKey {
            parties: Parties {
                reporter: Reporter::Destination,
                source: workload(None, None),
                destination: workload(Some(&meta("redis", "data")), Some("spiffe://cluster.local/ns/data/sa/redis")),
                service: service(Some("redis.data.svc.cluster.local"), 6379),
                mtls: false,
            },
            flags: "-",
        };
        let first = m.tcp_opened(&k).unwrap();
        m.tcp_opened(&k);
        // Bytes show while the connection is open, before it closes.
        first.received(20);
        first.sent(10);
        let mut open = String::new();
        m.render(&mut open);
        assert!(open.lines().any(|l| l.starts_with("istio_tcp_received_bytes_total{") && l.ends_with(" 20")), "{open}");
        assert!(open.lines().any(|l| l.starts_with("istio_tcp_connections_closed_total{") && l.ends_with(" 0")), "{open}");
        m.tcp_closed(&k);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.lines().any(|l| l.starts_with("istio_tcp_connections_opened_total{reporter=\"destination\",source_workload=\"unknown\"") && l.ends_with(" 2")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("istio_tcp_connections_closed_total{") && l.contains("request_protocol=\"tcp\"") && l.ends_with(" 1")));
        assert!(out.lines().any(|l| l.starts_with("istio_tcp_received_bytes_total{") && l.ends_with(" 20")));
        assert!(out.lines().any(|l| l.starts_with("tcp_open_total{direction=\"inbound\"") && l.contains("client_id=\"\",tls=\"no_identity\",peer=\"src\"} 2")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("tcp_read_bytes_total{") && l.ends_with(" 20")));
    }
}
