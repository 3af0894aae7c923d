//! One record per request and one per connection, filled along the path and
//! emitted once: by [`RequestRecord::finish`] / [`ConnectionRecord::finish`],
//! or on drop when the path ended without finishing it (a client that went
//! away mid-request is logged, not lost).

use super::access_log;
use super::access_sink::AccessSink;
use super::flow::RequestCounts;
use super::metrics::{ConnLabels, DurationLabels, ListenerLabels, Metrics, RejectLabels, RequestLabels};
pub use super::standard::Parties;
use super::standard::{HttpKey, HttpSample, Reporter, TcpKey};
pub use super::standard::TcpBytes;
pub use crate::connection::Peer;
use crate::local_reply::{Flag, LocalReply};
use weft_proto::config::HttpRule;
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use weft_proto::config::Listener;

/// Istio's `connection_security_policy` label value.
pub fn security_label(mtls: bool) -> &'static str {
    if mtls {
        "mutual_tls"
    } else {
        "none"
    }
}

/// One HTTP request.
pub struct RequestRecord {
    metrics: Arc<Metrics>,
    start: Instant,
    emitted: bool,
    pub listener: Arc<Listener>,
    pub peer: Peer,
    pub method: http::Method,
    /// Path and query, as the client sent them.
    pub path: String,
    /// The route (and rule) that handled it, `-` before one is known.
    pub route: Arc<str>,
    pub cluster: String,
    pub upstream: Option<SocketAddr>,
    /// The hop to the upstream proxy was mesh mTLS.
    pub upstream_mtls: bool,
    pub status: u16,
    /// Set when the proxy answered itself: Envoy's flag and the reason.
    pub reply: Option<(Flag, String)>,
    /// What AUDIT and dry-run policies said of it, if anything.
    pub authz: Option<String>,
    /// Who reports it (the client's proxy or the server's) and the two sides
    /// and Service it is between, for the standard metrics.
    pub parties: Parties,
    /// The rule that matched (its name is Linkerd's `rt_route`; its response
    /// classes say what a failure is).
    pub rule: Option<Arc<HttpRule>>,
    /// A gRPC request (`content-type: application/grpc...`).
    pub grpc: bool,
    pub grpc_status: Option<u16>,
    /// The request head's size, and what its body carried (when it had one).
    pub request_head_bytes: u64,
    pub request_body: Option<Arc<RequestCounts>>,
    /// The response head's size plus the body bytes sent so far.
    pub response_bytes: u64,
    pub response_messages: u64,
    /// When the response headers were ready (weft's own duration histogram).
    headers_at: Option<Duration>,
    response_head_bytes: u64,
    /// The access log, when one is configured, and what it needs of this request.
    pub access: Option<Arc<AccessSink>>,
    pub wall_start: SystemTime,
    pub captured_request: Vec<Option<String>>,
    pub captured_response: Vec<Option<String>>,
    pub version: http::Version,
    /// The address the client connected to (its original destination, or the app's).
    pub local: Option<SocketAddr>,
    pub sni: Option<Arc<str>>,
    /// The request's span, when it is sampled.
    pub span: Option<Box<super::tracer::Open>>,
    /// What `tagOverrides` read of the request (none without such overrides).
    pub label_inputs: Option<Arc<[String]>>,
}

/// The `grpc-status` in headers or trailers.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

impl RequestRecord {
    pub fn start(metrics: Arc<Metrics>, listener: Arc<Listener>, peer: Peer, method: http::Method, path: String) -> RequestRecord {
        let reporter = if listener.kind == weft_proto::config::ListenerKind::Inbound { Reporter::Destination } else { Reporter::Source };
        let access = metrics.access_sink();
        RequestRecord {
            wall_start: if access.is_some() { SystemTime::now() } else { SystemTime::UNIX_EPOCH },
            access,
            captured_request: vec![],
            captured_response: vec![],
            version: http::Version::HTTP_11,
            local: None,
            sni: None,
            span: None,
            label_inputs: None,
            response_head_bytes: 0,
            metrics,
            start: Instant::now(),
            emitted: false,
            listener,
            peer,
            method,
            path,
            route: Arc::from("-"),
            cluster: "-".to_string(),
            upstream: None,
            upstream_mtls: false,
            status: 0,
            reply: None,
            authz: None,
            parties: Parties::unknown(reporter),
            rule: None,
            grpc: false,
            grpc_status: None,
            request_head_bytes: 0,
            request_body: None,
            response_bytes: 0,
            response_messages: 0,
            headers_at: None,
        }
    }

    /// Keeps the request headers the access log's format reads.
    pub fn capture_request<B>(&mut self, req: &http::Request<B>) {
        let Some(sink) = &self.access else { return };
        self.captured_request = sink
            .request_headers
            .iter()
            .map(|name| match name.as_str() {
                ":method" => Some(req.method().to_string()),
                ":path" => req.uri().path_and_query().map(|p| p.to_string()),
                ":authority" => req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string).or_else(|| req.uri().authority().map(|a| a.to_string())),
                ":scheme" => Some(req.uri().scheme_str().unwrap_or("http").to_string()),
                h => req.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string),
            })
            .collect();
    }

    /// Keeps the response headers the access log's format reads.
    pub fn capture_response(&mut self, headers: &http::HeaderMap) {
        let Some(sink) = &self.access else { return };
        self.captured_response = sink.response_headers.iter().map(|h| headers.get(h.as_str()).and_then(|v| v.to_str().ok()).map(str::to_string)).collect();
    }

    /// Request body bytes received so far.
    pub fn request_body_bytes(&self) -> u64 {
        self.request_body.as_ref().map(|c| c.bytes.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0)
    }

    /// Response body bytes sent so far.
    pub fn response_body_bytes(&self) -> u64 {
        self.response_bytes.saturating_sub(self.response_head_bytes)
    }

    /// The response headers are ready: `head_bytes` is their size.
    pub fn responded(&mut self, status: u16, head_bytes: u64, grpc_status: Option<u16>) {
        self.status = status;
        self.response_bytes = head_bytes;
        self.response_head_bytes = head_bytes;
        self.grpc_status = grpc_status;
        self.headers_at = Some(self.start.elapsed());
    }

    /// The upstream failed mid-response.
    pub fn upstream_reset(&mut self) {
        if self.reply.is_none() {
            self.reply = Some((Flag::UpstreamConnectionTermination, "the upstream connection ended mid-response".into()));
        }
    }

    /// The client went away before the response was complete.
    pub fn client_left(&mut self) {
        if self.reply.is_none() {
            self.reply = Some((Flag::DownstreamConnectionTermination, "the client closed the connection before the response".into()));
        }
    }

    /// Linkerd's classification: the rule's response classes when it has
    /// any, else a 5xx (or a gRPC status other than OK) is a failure.
    fn failure(&self) -> bool {
        let classes = self.rule.as_ref().map(|r| r.failure_statuses.as_slice()).unwrap_or_default();
        if !classes.is_empty() {
            return classes.iter().any(|(lo, hi)| (*lo..=*hi).contains(&self.status));
        }
        self.status >= 500 || self.grpc_status.is_some_and(|s| s != 0) || self.status == 0
    }

    /// The proxy answers with `reply` (its status, flag and reason are recorded).
    pub fn local_reply(&mut self, reply: &LocalReply) {
        self.status = reply.status;
        self.reply = Some((reply.flag, reply.reason.clone()));
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Mesh mTLS on either side of this proxy.
    pub fn mtls(&self) -> bool {
        self.peer.mtls || self.upstream_mtls
    }

    pub fn flags(&self) -> &'static str {
        self.reply.as_ref().map(|(f, _)| f.code()).unwrap_or("-")
    }

    /// Emits the record: metrics and the access log.
    pub fn finish(mut self) {
        self.emit();
    }

    fn emit(&mut self) {
        if std::mem::replace(&mut self.emitted, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        let m = &self.metrics;
        let named_rule = self.rule.as_ref().is_some_and(|r| r.name.is_some());
        let key = HttpKey {
            parties: self.parties.clone(),
            grpc: self.grpc,
            code: self.status,
            grpc_status: self.grpc_status,
            flags: self.flags(),
            rt_route: named_rule.then(|| self.route.clone()),
            failure: self.failure(),
            extra: self.label_inputs.take(),
        };
        let request_messages = self.request_body.as_ref().map(|c| c.messages.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0);
        m.standard.request(
            &key,
            HttpSample {
                duration_us: elapsed.as_micros() as u64,
                request_bytes: self.request_head_bytes + self.request_body_bytes(),
                response_bytes: self.response_bytes,
                request_messages,
                response_messages: self.response_messages,
            },
        );
        m.requests
            .get_or_create(&RequestLabels {
                listener: self.listener.name.clone(),
                route: self.route.to_string(),
                cluster: self.cluster.clone(),
                response_code: self.status,
                response_flags: self.flags().to_string(),
                connection_security_policy: security_label(self.mtls()),
            })
            .inc();
        m.request_duration
            .get_or_create(&DurationLabels { listener: self.listener.name.clone(), cluster: self.cluster.clone() })
            .observe(self.headers_at.unwrap_or(elapsed).as_secs_f64());
        if let Some(sink) = &self.access {
            access_log::request(self, sink, elapsed);
        }
        if let Some(span) = self.span.take() {
            super::tracer::finish(*span, self, elapsed);
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.emitted {
            // The path ended without an answer: the client went away (hyper drops the request's future).
            self.client_left();
            self.emit();
        }
    }
}

/// How a connection ended, for the log line it gets.
enum Ending {
    /// Served as HTTP: its requests have their own records.
    Http,
    /// Refused before anything was forwarded.
    Refused { protocol: &'static str, text: String, port: Option<u16> },
    /// Opaque TCP that never reached an upstream.
    TcpFailed { endpoint: Option<SocketAddr>, reply: LocalReply },
    /// Opaque TCP relayed to an upstream.
    TcpDone(TcpRelay),
}

/// An opaque TCP connection relayed to an upstream, as it ended.
pub struct TcpRelay {
    pub endpoint: SocketAddr,
    pub route: Arc<str>,
    pub cluster: String,
    /// The hop to the upstream proxy was mesh mTLS.
    pub upstream_mtls: bool,
    /// Bytes sent to and received from the downstream.
    pub sent: u64,
    pub received: u64,
    /// One side failed (reset) rather than closed.
    pub reset: bool,
}

/// One downstream connection, from accept to close.
pub struct ConnectionRecord {
    metrics: Arc<Metrics>,
    start: Instant,
    active: Gauge,
    ending: Option<Ending>,
    /// Set once a relay to an upstream started (opaque TCP).
    relaying: Option<TcpKey>,
    access: Option<Arc<AccessSink>>,
    wall_start: SystemTime,
    pub listener: Arc<Listener>,
    pub peer: Peer,
}

impl ConnectionRecord {
    /// A connection accepted on `listener` (counted as active until the record is emitted).
    pub fn accepted(metrics: Arc<Metrics>, listener: Arc<Listener>, address: SocketAddr) -> ConnectionRecord {
        let active = metrics.active_connections.get_or_create(&ListenerLabels { listener: listener.name.clone() }).clone();
        active.inc();
        let access = metrics.access_sink();
        ConnectionRecord {
            metrics,
            start: Instant::now(),
            active,
            ending: None,
            relaying: None,
            wall_start: if access.is_some() { SystemTime::now() } else { SystemTime::UNIX_EPOCH },
            access,
            listener,
            peer: Peer::at(address),
        }
    }

    /// The protocol is known (`http1`, `http2`, `tls`, `tcp`) and the connection will be served.
    pub fn opened(&self, protocol: &str) {
        self.metrics
            .connections
            .get_or_create(&ConnLabels {
                listener: self.listener.name.clone(),
                protocol: protocol.to_string(),
                connection_security_policy: security_label(self.peer.mtls),
            })
            .inc();
    }

    /// Refused without an access-log line (counted under `label`).
    pub fn rejected(mut self, label: &'static str) {
        self.count_rejected(label);
        self.ending = Some(Ending::Http);
    }

    /// Refused, counted under `label`, and logged as `PROTOCOL PEER [-> PORT] refused: TEXT`.
    pub fn refused(mut self, label: &'static str, protocol: &'static str, port: Option<u16>, text: String) {
        self.count_rejected(label);
        self.ending = Some(Ending::Refused { protocol, text, port });
    }

    fn count_rejected(&self, label: &'static str) {
        self.metrics.rejected.get_or_create(&RejectLabels { listener: self.listener.name.clone(), reason: label.into() }).inc();
    }

    /// Served as HTTP.
    pub fn served_http(mut self) {
        self.ending = Some(Ending::Http);
    }

    /// Opaque TCP that could not be forwarded.
    pub fn tcp_failed(mut self, endpoint: Option<SocketAddr>, reply: LocalReply) {
        self.ending = Some(Ending::TcpFailed { endpoint, reply });
    }

    /// Opaque TCP is connected to its upstream and relayed between
    /// `parties`: where its bytes are counted as they move.
    pub fn relaying(&mut self, parties: Parties) -> Option<TcpBytes> {
        let key = TcpKey { parties, flags: "-" };
        let bytes = self.metrics.standard.tcp_opened(&key);
        self.relaying = Some(key);
        bytes
    }

    /// Opaque TCP relayed until both sides closed (or one failed).
    pub fn tcp_done(mut self, relay: TcpRelay) {
        if let Some(mut key) = self.relaying.take() {
            if relay.reset {
                key.flags = Flag::DownstreamConnectionTermination.code();
            }
            self.metrics.standard.tcp_closed(&key);
        }
        let labels = ListenerLabels { listener: self.listener.name.clone() };
        self.metrics.tcp_received_bytes.get_or_create(&labels).inc_by(relay.received);
        self.metrics.tcp_sent_bytes.get_or_create(&labels).inc_by(relay.sent);
        self.ending = Some(Ending::TcpDone(relay));
    }
}

impl Drop for ConnectionRecord {
    fn drop(&mut self) {
        self.active.dec();
        let elapsed = self.start.elapsed();
        match self.ending.take() {
            None | Some(Ending::Http) => {}
            Some(Ending::Refused { protocol, text, port }) => access_log::refused(&self.listener.name, protocol, &self.peer, port, &text),
            Some(Ending::TcpFailed { endpoint, reply }) => {
                if let Some(sink) = &self.access {
                    access_log::tcp(sink, &self.listener.name, &self.peer, access_log::TcpEnd::Failed { endpoint, reply: &reply }, self.wall_start, elapsed)
                }
            }
            Some(Ending::TcpDone(relay)) => {
                if let Some(sink) = &self.access {
                    access_log::tcp(sink, &self.listener.name, &self.peer, access_log::TcpEnd::Done(&relay), self.wall_start, elapsed)
                }
            }
        }
    }
}
