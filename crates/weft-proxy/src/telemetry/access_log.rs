//! The access log: one line per request and per opaque TCP connection,
//! written by the functions here only, from the records, in the encoding
//! the config asks for (Envoy's format language with Istio's default, JSON,
//! or weft's own line), through the sink's queue. Off unless configured.
//! Connections refused before anything was forwarded are the proxy's own
//! log (they are not traffic).

use super::access_format::{json_line, text_line, LogFields};
use super::access_sink::{AccessSink, Encoding};
use super::record::{Peer, RequestRecord, TcpRelay};
use crate::local_reply::{Flag, LocalReply};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn peer_suffix(peer: &Peer) -> String {
    peer.identity.as_ref().map(|p| format!(" peer={p}")).unwrap_or_default()
}

/// Envoy's `%RESPONSE_CODE_DETAILS%` for a reply the proxy wrote itself.
fn details(flag: Flag) -> &'static str {
    match flag {
        Flag::UpstreamConnectFailure => "upstream_reset_before_response_started{connection_failure}",
        Flag::UpstreamConnectionTermination => "upstream_reset_after_response_started{connection_termination}",
        Flag::NoHealthyUpstream => "no_healthy_upstream",
        Flag::UpstreamOverflow => "upstream_reset_before_response_started{overflow}",
        Flag::UpstreamRequestTimeout => "response_timeout",
        Flag::NoRouteFound => "route_not_found",
        Flag::DownstreamConnectionTermination => "downstream_remote_disconnect",
        Flag::UpstreamProtocolError => "upstream_reset_before_response_started{protocol_error}",
        Flag::DownstreamProtocolError => "downstream_protocol_error",
        Flag::UpstreamRetryLimitExceeded => "upstream_reset_before_response_started{retry_limit_exceeded}",
        Flag::FaultInjected => "fault_filter_abort",
        Flag::Rbac => "rbac_access_denied_matched_policy",
        Flag::JwtRejected => "jwt_authn_access_denied",
    }
}

/// A request as the format language sees it.
struct RequestView<'a> {
    r: &'a RequestRecord,
    sink: &'a AccessSink,
    elapsed: Duration,
}

impl LogFields for RequestView<'_> {
    fn start(&self) -> SystemTime {
        self.r.wall_start
    }
    fn request_header(&self, name: &str) -> Option<&str> {
        let i = self.sink.request_headers.iter().position(|h| h == name)?;
        self.r.captured_request.get(i)?.as_deref()
    }
    fn response_header(&self, name: &str) -> Option<&str> {
        let i = self.sink.response_headers.iter().position(|h| h == name)?;
        self.r.captured_response.get(i)?.as_deref()
    }
    fn protocol(&self) -> Option<&'static str> {
        Some(match self.r.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        })
    }
    fn response_code(&self) -> u16 {
        self.r.status
    }
    fn response_flags(&self) -> &str {
        self.r.flags()
    }
    fn response_code_details(&self) -> Option<&str> {
        Some(self.r.reply.as_ref().map(|(f, _)| details(*f)).unwrap_or("via_upstream"))
    }
    fn failure_reason(&self) -> Option<&str> {
        match &self.r.reply {
            Some((Flag::UpstreamConnectFailure | Flag::UpstreamConnectionTermination, reason)) => Some(reason),
            _ => None,
        }
    }
    fn bytes_received(&self) -> u64 {
        self.r.request_body_bytes()
    }
    fn bytes_sent(&self) -> u64 {
        self.r.response_body_bytes()
    }
    fn duration_ms(&self) -> u64 {
        self.elapsed.as_millis() as u64
    }
    fn upstream_host(&self) -> Option<String> {
        self.r.upstream.map(|u| u.to_string())
    }
    fn upstream_cluster(&self) -> Option<&str> {
        Some(self.r.cluster.as_str()).filter(|c| *c != "-")
    }
    fn downstream_local(&self) -> Option<String> {
        self.r.local.map(|l| l.to_string())
    }
    fn downstream_remote(&self) -> String {
        self.r.peer.address.to_string()
    }
    fn peer_uri_san(&self) -> Option<&str> {
        self.r.peer.identity.as_deref()
    }
    fn server_name(&self) -> Option<&str> {
        self.r.sni.as_deref()
    }
    fn route(&self) -> Option<&str> {
        Some(&*self.r.route).filter(|r| *r != "-")
    }
}

/// Logs one request, if the sink's filter takes it.
pub fn request(r: &RequestRecord, sink: &AccessSink, elapsed: Duration) {
    if r.status < sink.min_code {
        return;
    }
    let view = RequestView { r, sink, elapsed };
    let line = match &sink.encoding {
        Encoding::Text(f) => text_line(f, &view),
        Encoding::Json(fields) => json_line(fields, &view),
        Encoding::Weft => weft_request_line(r, elapsed),
    };
    sink.write(line);
}

/// `LISTENER "METHOD PATH" STATUS FLAGS PEER route=R cluster=C upstream=U duration=Nus mtls=yes|no [peer=ID] [reason="..."] [authz="..."]`
fn weft_request_line(r: &RequestRecord, elapsed: Duration) -> String {
    format!(
        "{} \"{} {}\" {} {} {} route={} cluster={} upstream={} duration={}us mtls={}{}{}{}\n",
        r.listener.name,
        r.method,
        r.path,
        r.status,
        r.flags(),
        r.peer.address,
        r.route,
        r.cluster,
        r.upstream.map(|e| e.to_string()).unwrap_or("-".into()),
        elapsed.as_micros(),
        yes_no(r.mtls()),
        peer_suffix(&r.peer),
        r.reply.as_ref().map(|(_, reason)| format!(" reason=\"{reason}\"")).unwrap_or_default(),
        r.authz.as_ref().map(|a| format!(" authz=\"{a}\"")).unwrap_or_default()
    )
}

/// `LISTENER PROTOCOL PEER [-> PORT] refused: TEXT` (the proxy's log).
pub fn refused(listener: &str, protocol: &str, peer: &Peer, port: Option<u16>, text: &str) {
    let to = port.map(|p| format!(" -> {p}")).unwrap_or_default();
    tracing::info!(target: "connections", "{listener} {protocol} {}{to} refused: {text}", peer.address);
}

/// How an opaque TCP connection ended, for its line.
pub enum TcpEnd<'a> {
    Failed { endpoint: Option<SocketAddr>, reply: &'a LocalReply },
    Done(&'a TcpRelay),
}

/// An opaque TCP connection as the format language sees it.
struct TcpView<'a> {
    peer: &'a Peer,
    end: &'a TcpEnd<'a>,
    start: SystemTime,
    elapsed: Duration,
}

impl LogFields for TcpView<'_> {
    fn start(&self) -> SystemTime {
        self.start
    }
    fn request_header(&self, _: &str) -> Option<&str> {
        None
    }
    fn response_header(&self, _: &str) -> Option<&str> {
        None
    }
    fn protocol(&self) -> Option<&'static str> {
        None
    }
    fn response_code(&self) -> u16 {
        0
    }
    fn response_flags(&self) -> &str {
        match self.end {
            TcpEnd::Failed { reply, .. } => reply.flag.code(),
            TcpEnd::Done(r) if r.reset => "DC",
            TcpEnd::Done(_) => "-",
        }
    }
    fn response_code_details(&self) -> Option<&str> {
        None
    }
    fn failure_reason(&self) -> Option<&str> {
        match self.end {
            TcpEnd::Failed { reply, .. } => Some(&reply.reason),
            TcpEnd::Done(_) => None,
        }
    }
    fn bytes_received(&self) -> u64 {
        match self.end {
            TcpEnd::Done(r) => r.received,
            TcpEnd::Failed { .. } => 0,
        }
    }
    fn bytes_sent(&self) -> u64 {
        match self.end {
            TcpEnd::Done(r) => r.sent,
            TcpEnd::Failed { .. } => 0,
        }
    }
    fn duration_ms(&self) -> u64 {
        self.elapsed.as_millis() as u64
    }
    fn upstream_host(&self) -> Option<String> {
        match self.end {
            TcpEnd::Done(r) => Some(r.endpoint.to_string()),
            TcpEnd::Failed { endpoint, .. } => endpoint.map(|e| e.to_string()),
        }
    }
    fn upstream_cluster(&self) -> Option<&str> {
        match self.end {
            TcpEnd::Done(r) => Some(&r.cluster),
            TcpEnd::Failed { .. } => None,
        }
    }
    fn downstream_local(&self) -> Option<String> {
        None
    }
    fn downstream_remote(&self) -> String {
        self.peer.address.to_string()
    }
    fn peer_uri_san(&self) -> Option<&str> {
        self.peer.identity.as_deref()
    }
    fn server_name(&self) -> Option<&str> {
        None
    }
    fn route(&self) -> Option<&str> {
        match self.end {
            TcpEnd::Done(r) => Some(&r.route),
            TcpEnd::Failed { .. } => None,
        }
    }
}

/// Logs one opaque TCP connection.
pub fn tcp(sink: &AccessSink, listener: &str, peer: &Peer, end: TcpEnd<'_>, start: SystemTime, elapsed: Duration) {
    let view = TcpView { peer, end: &end, start, elapsed };
    let line = match &sink.encoding {
        Encoding::Text(f) => text_line(f, &view),
        Encoding::Json(fields) => json_line(fields, &view),
        Encoding::Weft => match &end {
            // `LISTENER tcp PEER -> ENDPOINT|- FLAG REASON`
            TcpEnd::Failed { endpoint, reply } => {
                let to = endpoint.map(|e| e.to_string()).unwrap_or("-".into());
                format!("{listener} tcp {} -> {to} {} {}\n", peer.address, reply.flag.code(), reply.reason)
            }
            // `LISTENER tcp PEER -> ENDPOINT route=R FLAG sent=N received=N duration=Nms mtls=yes|no [peer=ID]`
            TcpEnd::Done(relay) => format!(
                "{listener} tcp {} -> {} route={} {} sent={} received={} duration={}ms mtls={}{}\n",
                peer.address,
                relay.endpoint,
                relay.route,
                if relay.reset { "DC" } else { "-" },
                relay.sent,
                relay.received,
                elapsed.as_millis(),
                yes_no(peer.mtls || relay.upstream_mtls),
                peer_suffix(peer)
            ),
        },
    };
    sink.write(line);
}
