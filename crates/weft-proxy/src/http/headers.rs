//! Header rules of the HTTP path: hop-by-hop headers are never forwarded
//! (RFC 9110 7.6.1), a route's header operations, request ids, and the few
//! facts read from headers (authority, gRPC, head size).

use http::{HeaderMap, HeaderName, HeaderValue, Request};

/// Hop-by-hop headers (RFC 9110 7.6.1) are never forwarded.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"];

/// Removes hop-by-hop headers and those `Connection` names; `keep_upgrade`
/// keeps `Upgrade` and `Connection` for a request or response that upgrades.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let te_trailers = headers.get(http::header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for n in named {
        if !(keep_upgrade && n == http::header::UPGRADE) {
            headers.remove(n);
        }
    }
    for h in HOP_BY_HOP {
        if keep_upgrade && (*h == "upgrade" || *h == "connection") {
            continue;
        }
        headers.remove(*h);
    }
    if te_trailers {
        // gRPC needs `te: trailers` end to end.
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A route's `set`, `add` and `remove` operations.
pub fn apply_header_ops(headers: &mut HeaderMap, ops: &weft_proto::config::HeaderOps) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (k, v) in &ops.set {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.insert(k, v);
        }
    }
    for (k, v) in &ops.add {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(k, v);
        }
    }
}

/// A gRPC call (by its content type).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A new `x-request-id`: a random UUID (version 4 layout).
pub fn request_id() -> HeaderValue {
    let (a, b) = (crate::random::random_u64(), crate::random::random_u64());
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// The request's authority: `:authority` (HTTP/2, absolute form) or `Host`.
pub fn authority<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
}

/// The size of a request head as the limit counts it: the request target
/// and every header line.
pub fn head_bytes<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(1);
    target + fields_bytes(req.headers())
}

/// A response head's size: a status line and the header fields.
pub fn response_head_bytes<B>(resp: &http::Response<B>) -> usize {
    15 + fields_bytes(resp.headers())
}

/// Header fields as they go on the wire (`name: value\r\n`).
fn fields_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep", "te"]);
    }

    #[test]
    fn upgrade_headers_survive_for_websockets() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn request_ids_look_like_uuids_and_differ() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.to_str().unwrap().len(), 36);
    }

    #[test]
    fn authority_prefers_the_uri_then_the_host_header() {
        let r = Request::builder().uri("http://reviews:9080/x").header("host", "other").body(()).unwrap();
        assert_eq!(authority(&r).as_deref(), Some("reviews:9080"));
        let r = Request::builder().uri("/x").header("host", "ratings").body(()).unwrap();
        assert_eq!(authority(&r).as_deref(), Some("ratings"));
        assert_eq!(head_bytes(&r), 2 + "host".len() + "ratings".len() + 4);
    }
}
