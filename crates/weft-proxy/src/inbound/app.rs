//! What the app is handed: a client may not claim an identity itself (a
//! client-sent `x-forwarded-client-cert` and every `x-weft-*` header are
//! always removed), a mesh client's identity is added (Envoy's XFCC:
//! `By=OURS;URI=PEER`), and an HTTP/1.1 request carried over HTTP/2 between
//! proxies is HTTP/1.1 again.
//!
//! The rule these headers follow: the app may trust them on requests the
//! proxy parsed, which is every request to a port declared HTTP (port name
//! `http-*`, `grpc-*`, or `appProtocol`) and every request detected as HTTP.
//! Bytes relayed as opaque TCP (a port declared TCP, or one whose client
//! sent nothing HTTP-shaped within the detect timeout) are not looked at:
//! an app that reads identity headers must declare its port HTTP.

use crate::connection::Peer;
use http::{HeaderValue, Request};

/// The header that tells an app which mesh identity called it (Envoy's XFCC).
pub const XFCC: &str = "x-forwarded-client-cert";

/// Rewrites a request for the app; `own` is this proxy's SPIFFE ID.
pub fn hand_off<B>(req: &mut Request<B>, peer: &Peer, own: Option<&str>) {
    let headers = req.headers_mut();
    headers.remove(XFCC);
    if let Some(id) = &peer.identity {
        if let Ok(v) = HeaderValue::from_str(&format!("By={};URI={id}", own.unwrap_or_default())) {
            headers.insert(XFCC, v);
        }
    }
    if peer.mtls && headers.get(crate::mesh_alpn::ORIG_PROTO).is_some_and(|v| v == "HTTP/1.1") {
        *req.version_mut() = http::Version::HTTP_11;
    }
    let ours: Vec<http::HeaderName> = req.headers().keys().filter(|k| k.as_str().starts_with("x-weft-")).cloned().collect();
    for name in ours {
        req.headers_mut().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn peer(identity: Option<&str>) -> Peer {
        Peer { identity: identity.map(Arc::from), mtls: identity.is_some(), ..Peer::at("10.0.0.9:5000".parse().unwrap()) }
    }

    #[test]
    fn a_forged_xfcc_is_replaced_by_the_proven_identity_or_removed() {
        let mut req = Request::builder().header(XFCC, "By=x;URI=spiffe://cluster.local/ns/bank/sa/admin").body(()).unwrap();
        hand_off(&mut req, &peer(None), Some("spiffe://cluster.local/ns/a/sa/web"));
        assert!(req.headers().get(XFCC).is_none(), "a plaintext client's claim is dropped");
        let mut req = Request::builder().header("x-weft-orig-proto", "HTTP/1.1").header("x-weft-anything", "1").version(http::Version::HTTP_2).body(()).unwrap();
        hand_off(&mut req, &peer(None), None);
        assert!(req.headers().is_empty() && req.version() == http::Version::HTTP_2, "weft's headers are weft's alone: {:?}", req.headers());
        let mut req = Request::builder().header(XFCC, "forged").header(crate::mesh_alpn::ORIG_PROTO, "HTTP/1.1").version(http::Version::HTTP_2).body(()).unwrap();
        hand_off(&mut req, &peer(Some("spiffe://cluster.local/ns/a/sa/client")), Some("spiffe://cluster.local/ns/a/sa/web"));
        assert_eq!(req.headers()[XFCC], "By=spiffe://cluster.local/ns/a/sa/web;URI=spiffe://cluster.local/ns/a/sa/client");
        assert_eq!(req.version(), http::Version::HTTP_11);
        assert!(req.headers().get(crate::mesh_alpn::ORIG_PROTO).is_none());
    }
}
