//! Forwarding one request to its target: CONNECT becomes a tunnel; the
//! route's fault may delay or abort it; the request is rewritten for the
//! upstream (path, hop-by-hop headers, the route's header
//! operations and authority); mirrors get a copy; it is sent (with retries)
//! within the route's timeout; the response gets the route's header
//! operations and a sticky cookie, and an upgrade is spliced.

use super::body::RequestBody;
use super::headers::{apply_header_ops, strip_hop_by_hop};
use super::send::{send, Outgoing, Sending};
use super::{fault, mirror, tunnel};
use crate::body::Body;
use crate::local_reply::{Flag, LocalReply};
use crate::outbound::answer::rewritten_path;
use crate::outbound::{Forward, Upstream};
use crate::state::Proxy;
use http::{HeaderValue, Request, Response};

/// Sends the request to the forward's target and returns its response,
/// streaming bodies both ways.
pub async fn forward(proxy: &Proxy, mut req: Request<Body>, fwd: Forward, host: Option<&str>) -> Result<Response<Body>, LocalReply> {
    let Forward { target, matched, mirrors, set_cookie } = fwd;
    let clients = match &target.upstream {
        Upstream::Cluster(c) => &c.clients,
        Upstream::Original => &proxy.passthrough,
    };
    let endpoint = target.endpoint.address;
    if req.method() == http::Method::CONNECT {
        return tunnel::connect(req, endpoint, clients.connect_timeout).await;
    }
    let rule = matched.as_ref().map(|m| m.rule.clone());
    if let Some(f) = rule.as_ref().and_then(|r| r.fault.as_ref()) {
        fault::inject(f, req.headers()).await?;
    }
    let upgrade = req.version() < http::Version::HTTP_2 && req.headers().contains_key(http::header::UPGRADE);
    let http2 = req.version() == http::Version::HTTP_2;
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let pq = match &matched {
        Some(m) => rewritten_path(&m.rule, m.prefix.as_deref(), pq),
        None => pq.to_string(),
    };
    // The upstream's request target, checked here, before mirrors, circuit
    // breaking and retries: an invalid one is the client's or the route's
    // fault, never the endpoint's. Read back from its absolute form, the path
    // is canonical (a rewrite to "" is "/"); `HttpClients::send` sets the URI.
    let pq = match format!("http://{endpoint}{pq}").parse::<http::Uri>() {
        Ok(u) => u.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        Err(_) => return Err(LocalReply::new(400, Flag::NoRouteFound, format!("request target {pq:?} is not valid"))),
    };
    parts.version = if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, upgrade);
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !http2 && !headers.contains_key(http::header::HOST) {
        if let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(http::header::HOST, h);
        }
    }
    if upgrade {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let Some(rule) = &rule {
        apply_header_ops(headers, &rule.request_headers);
        if let Some(authority) = rule.rewrite.as_ref().and_then(|r| r.authority.as_deref()) {
            if let Ok(v) = HeaderValue::from_str(authority) {
                headers.insert(http::header::HOST, v);
            }
        }
    }
    let route_timeout = rule.as_ref().and_then(|r| r.timeout);
    let mut body = RequestBody::Streaming(body);
    if !mirrors.is_empty() && !upgrade {
        // A mirror needs its own copy of the body: only small ones are copied (as for retries).
        if let Some(bytes) = body.replayable(route_timeout).await? {
            for m in &mirrors {
                mirror::send_copy(proxy, m, &parts, &pq, host, bytes.clone(), route_timeout);
            }
        }
    }
    // The authority the upstream sees: the route's rewrite, else the client's.
    let authority = rule.as_ref().and_then(|r| r.rewrite.as_ref()).and_then(|r| r.authority.clone()).or(host.map(str::to_string));
    let out = Outgoing { parts, upgrade, authority: authority.as_deref(), pq: &pq };
    let how = Sending {
        target: &target,
        clients,
        policy: rule.as_ref().and_then(|r| r.retry.as_ref()),
        budget: matched.as_ref().and_then(|m| m.budget.as_deref()),
        timeout: route_timeout,
    };
    // Built in place (not bound to a name first): a future moved into another is held twice by this one.
    let mut resp = super::deadline::within(route_timeout, send(proxy, out, body, how)).await.map_err(|_| {
        let limit = route_timeout.unwrap_or_default().as_millis();
        LocalReply::new(504, Flag::UpstreamRequestTimeout, format!("{endpoint} did not respond within the route timeout of {limit}ms"))
    })??;
    if let Some(rule) = &rule {
        apply_header_ops(resp.headers_mut(), &rule.response_headers);
    }
    if let Some(cookie) = set_cookie {
        resp.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    match downstream_upgrade {
        Some(down) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => tunnel::splice(down, &mut resp),
        _ if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {}
        _ => strip_hop_by_hop(resp.headers_mut(), false),
    }
    Ok(resp)
}
