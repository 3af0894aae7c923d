//! What the app is handed: a client may not claim an identity itself (a
//! client-sent `x-forwarded-client-cert` is always removed), a mesh
//! client's identity is added (Envoy's XFCC: `By=OURS;URI=PEER`), and an
//! HTTP/1.1 request carried over HTTP/2 between proxies is HTTP/1.1 again.

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
    if peer.mtls && headers.remove(crate::mesh_alpn::ORIG_PROTO).is_some_and(|v| v == "HTTP/1.1") {
        *req.version_mut() = http::Version::HTTP_11;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn peer(identity: Option<&str>) -> Peer {
        Peer { address: "10.0.0.9:5000".parse().unwrap(), identity: identity.map(Arc::from), mtls: identity.is_some() }
    }

    #[test]
    fn a_forged_xfcc_is_replaced_by_the_proven_identity_or_removed() {
        let mut req = Request::builder().header(XFCC, "By=x;URI=spiffe://cluster.local/ns/bank/sa/admin").body(()).unwrap();
        hand_off(&mut req, &peer(None), Some("spiffe://cluster.local/ns/a/sa/web"));
        assert!(req.headers().get(XFCC).is_none(), "a plaintext client's claim is dropped");
        let mut req = Request::builder().header(XFCC, "forged").header(crate::mesh_alpn::ORIG_PROTO, "HTTP/1.1").version(http::Version::HTTP_2).body(()).unwrap();
        hand_off(&mut req, &peer(Some("spiffe://cluster.local/ns/a/sa/client")), Some("spiffe://cluster.local/ns/a/sa/web"));
        assert_eq!(req.headers()[XFCC], "By=spiffe://cluster.local/ns/a/sa/web;URI=spiffe://cluster.local/ns/a/sa/client");
        assert_eq!(req.version(), http::Version::HTTP_11);
        assert!(req.headers().get(crate::mesh_alpn::ORIG_PROTO).is_none());
    }
}
