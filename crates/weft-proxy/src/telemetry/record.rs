//! One record per request and one per connection, filled along the path and
//! emitted once: by [`RequestRecord::finish`] / [`ConnectionRecord::finish`],
//! or on drop when the path ended without finishing it (a client that went
//! away mid-request is logged, not lost).

use super::access_log;
use super::metrics::{ConnLabels, DurationLabels, ListenerLabels, Metrics, RejectLabels, RequestLabels};
pub use crate::connection::Peer;
use crate::local_reply::{Flag, LocalReply};
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
}

impl RequestRecord {
    pub fn start(metrics: Arc<Metrics>, listener: Arc<Listener>, peer: Peer, method: http::Method, path: String) -> RequestRecord {
        RequestRecord {
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
        }
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
            .observe(elapsed.as_secs_f64());
        access_log::request(self, elapsed);
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.emitted {
            // The path ended without an answer: the client went away (hyper drops the request's future).
            if self.reply.is_none() {
                self.reply = Some((Flag::DownstreamConnectionTermination, "the client closed the connection before the response".into()));
            }
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
    pub listener: Arc<Listener>,
    pub peer: Peer,
}

impl ConnectionRecord {
    /// A connection accepted on `listener` (counted as active until the record is emitted).
    pub fn accepted(metrics: Arc<Metrics>, listener: Arc<Listener>, address: SocketAddr) -> ConnectionRecord {
        let active = metrics.active_connections.get_or_create(&ListenerLabels { listener: listener.name.clone() }).clone();
        active.inc();
        ConnectionRecord {
            metrics,
            start: Instant::now(),
            active,
            ending: None,
            listener,
            peer: Peer { address, identity: None, mtls: false },
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

    /// Opaque TCP relayed until both sides closed.
    pub fn tcp_done(mut self, relay: TcpRelay) {
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
            Some(Ending::TcpFailed { endpoint, reply }) => access_log::tcp_failed(&self.listener.name, &self.peer, endpoint, &reply),
            Some(Ending::TcpDone(relay)) => access_log::tcp_done(&self.listener.name, &self.peer, &relay, elapsed),
        }
    }
}
