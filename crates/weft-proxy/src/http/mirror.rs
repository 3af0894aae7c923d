//! Mirrors (Istio's `mirror`): a copy of the request goes to another cluster
//! and is forgotten. Its answer is read and dropped; its latency and failure
//! never reach the caller. As Istio, the copy's authority gets `-shadow`.
//! Copies are bounded: at most [`MAX_MIRRORS`] in flight per proxy, and each
//! within the mirror cluster's circuit-breaking limits; a copy over either
//! is dropped and counted (`weft_mirror_requests_total{result="dropped"}`).

use super::headers::strip_hop_by_hop;
use crate::body::full_body;
use crate::config::ClusterState;
use crate::outbound::route::pick;
use crate::state::Proxy;
use crate::telemetry::metrics::MirrorLabels;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// The authority a mirrored copy carries: `reviews:9080` becomes `reviews-shadow:9080`.
pub fn shadow_authority(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => format!("{name}-shadow:{port}"),
        _ => format!("{host}-shadow"),
    }
}

/// Copies in flight at once per proxy.
pub const MAX_MIRRORS: usize = 256;

/// Sends a copy of the request (head `parts`, path `pq`, `body`) to `cluster`.
pub fn send_copy(proxy: &Proxy, cluster: &Arc<ClusterState>, parts: &http::request::Parts, pq: &str, host: Option<&str>, body: bytes::Bytes, timeout: Option<Duration>) {
    let count = |result: &str| {
        proxy.metrics.mirrors.get_or_create(&MirrorLabels { cluster: cluster.name().to_string(), result: result.to_string() }).inc();
    };
    let http2 = parts.version == http::Version::HTTP_2;
    let (Ok(slot), Some(admitted)) = (proxy.mirrors.clone().try_acquire_owned(), cluster.limits(http2).try_admit()) else {
        return count("dropped");
    };
    let Ok(endpoint) = pick(cluster, None, &mut crate::random::random_u64) else { return count("dropped") };
    count("sent");
    let mut req = Request::new(full_body(body));
    *req.method_mut() = parts.method.clone();
    *req.version_mut() = if parts.version == http::Version::HTTP_2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    *req.headers_mut() = parts.headers.clone();
    strip_hop_by_hop(req.headers_mut(), false);
    let shadow = host.map(shadow_authority);
    if let Some(v) = shadow.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let limit = timeout.unwrap_or(Duration::from_secs(15));
    let (clients, pq) = (cluster.clients.clone(), pq.to_string());
    tokio::spawn(async move {
        let _held = (slot, admitted);
        let sent = clients.send(req, endpoint.address, shadow.as_deref(), &pq, endpoint.identity.is_some(), false);
        if let Ok(Ok(resp)) = tokio::time::timeout(limit, sent).await {
            let _ = tokio::time::timeout(limit, resp.into_body().collect()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_authorities_keep_the_port() {
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_authority("reviews"), "reviews-shadow");
        assert_eq!(shadow_authority("[::1]"), "[::1]-shadow");
    }
}
