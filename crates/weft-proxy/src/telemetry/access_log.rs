//! The access log: one line per request and per opaque TCP connection (and
//! per refused connection), written by the functions here only, from the
//! records. Lines go to the `access` tracing target, so `--log
//! access=off` silences them and `/logging` changes them at run time.

use super::record::{Peer, RequestRecord, TcpRelay};
use crate::local_reply::LocalReply;
use std::net::SocketAddr;
use std::time::Duration;

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

/// `LISTENER "METHOD PATH" STATUS FLAGS PEER route=R cluster=C upstream=U duration=Nus mtls=yes|no [peer=ID] [reason="..."] [authz="..."]`
pub fn request(r: &RequestRecord, elapsed: Duration) {
    tracing::info!(
        target: "access",
        "{} \"{} {}\" {} {} {} route={} cluster={} upstream={} duration={}us mtls={}{}{}{}",
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
    );
}

/// `LISTENER PROTOCOL PEER [-> PORT] refused: TEXT`
pub fn refused(listener: &str, protocol: &str, peer: &Peer, port: Option<u16>, text: &str) {
    let to = port.map(|p| format!(" -> {p}")).unwrap_or_default();
    tracing::info!(target: "access", "{listener} {protocol} {}{to} refused: {text}", peer.address);
}

/// `LISTENER tcp PEER -> ENDPOINT|- FLAG REASON`
pub fn tcp_failed(listener: &str, peer: &Peer, endpoint: Option<SocketAddr>, reply: &LocalReply) {
    let to = endpoint.map(|e| e.to_string()).unwrap_or("-".into());
    tracing::info!(target: "access", "{listener} tcp {} -> {to} {} {}", peer.address, reply.flag.code(), reply.reason);
}

/// `LISTENER tcp PEER -> ENDPOINT route=R FLAG sent=N received=N duration=Nms mtls=yes|no [peer=ID]`
pub fn tcp_done(listener: &str, peer: &Peer, relay: &TcpRelay, elapsed: Duration) {
    tracing::info!(
        target: "access",
        "{listener} tcp {} -> {} route={} {} sent={} received={} duration={}ms mtls={}{}",
        peer.address,
        relay.endpoint,
        relay.route,
        if relay.reset { "DC" } else { "-" },
        relay.sent,
        relay.received,
        elapsed.as_millis(),
        yes_no(peer.mtls || relay.upstream_mtls),
        peer_suffix(peer)
    );
}
