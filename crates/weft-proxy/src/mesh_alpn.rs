//! What a mesh TLS connection between two weft proxies carries, named in
//! ALPN by the client proxy:
//!
//! - `weft/h2`: HTTP/2; application HTTP/1.1 requests are carried as HTTP/2
//!   streams too when the destination asks for it (`h2_upgrade`,
//!   multiplexed on one connection), marked with [`ORIG_PROTO`] so the
//!   server side hands them to the app as HTTP/1.1;
//! - `weft/http1`: HTTP/1.1 (the default for the app's HTTP/1.1, on pooled
//!   connections), and requests that upgrade (WebSocket);
//! - `weft/tcp`: the opaque bytes of a TCP connection.
//!
//! The inbound side recognises mesh TLS by these values in the peeked
//! ClientHello: a TLS connection without them is the app's own TLS and is
//! passed through untouched.

pub const ALPN_H2: &[u8] = b"weft/h2";
pub const ALPN_HTTP1: &[u8] = b"weft/http1";
pub const ALPN_TCP: &[u8] = b"weft/tcp";
/// What the server side accepts, in its order of preference.
pub const ALPNS: &[&[u8]] = &[ALPN_H2, ALPN_HTTP1, ALPN_TCP];

/// Set by the client proxy on an HTTP/1.1 request it carries over HTTP/2
/// (as Linkerd's `l5d-orig-proto`); removed by the server proxy.
pub const ORIG_PROTO: &str = "x-weft-orig-proto";

/// Does a ClientHello's ALPN list say it is mesh TLS?
pub fn is_mesh_alpn(alpn: &[Vec<u8>]) -> bool {
    alpn.iter().any(|a| ALPNS.contains(&a.as_slice()))
}

/// The carried protocol the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Http2,
    Http1,
    Tcp,
}

impl Carried {
    /// From the negotiated ALPN value (anything else is opaque TCP).
    pub fn from_alpn(alpn: Option<&[u8]>) -> Carried {
        match alpn {
            Some(ALPN_H2) => Carried::Http2,
            Some(ALPN_HTTP1) => Carried::Http1,
            _ => Carried::Tcp,
        }
    }

    /// The `protocol` label of connection metrics.
    pub fn label(self) -> &'static str {
        match self {
            Carried::Http2 => "http2",
            Carried::Http1 => "http1",
            Carried::Tcp => "tcp",
        }
    }
}
