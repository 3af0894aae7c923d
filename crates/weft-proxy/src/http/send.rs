//! Sending a request upstream, and sending it again as the route's retry
//! policy allows: only outcomes `retry_on` names, only idempotent methods
//! unless the route says otherwise, only bodies small enough to replay,
//! each retry to another pick of the cluster, after a jittered backoff,
//! within the retry budget and the cluster's `max_retries`. Every try is
//! counted on its endpoint (load, latency, outlier detection).

use super::body::RequestBody;
use super::headers::is_grpc;
use super::retry::{names_grpc_status, retriable, TryOutcome};
use crate::backoff::Backoff;
use crate::balance::Outcome;
use crate::body::{full_body, Body};
use crate::budget::BudgetState;
use crate::local_reply::{Flag, LocalReply};
use crate::outbound::route::pick;
use crate::target::Target;
use crate::state::Proxy;
use crate::telemetry::{EjectionLabels, RetryLabels};
use crate::upstream::HttpClients;
use http::{HeaderValue, Request, Response};
use std::time::Duration;
use weft_proto::config::RetryPolicy;

/// The request as it will be sent upstream, body apart.
pub struct Outgoing<'a> {
    pub parts: http::request::Parts,
    pub upgrade: bool,
    /// The authority the upstream sees (HTTP/2 `:authority`).
    pub authority: Option<&'a str>,
    /// Path and query.
    pub pq: &'a str,
}

/// What a request is sent with and how it may be retried.
pub struct Sending<'a> {
    pub target: &'a Target,
    pub clients: &'a HttpClients,
    pub policy: Option<&'a RetryPolicy>,
    pub budget: Option<&'a BudgetState>,
    /// The route's timeout: how long a body may be waited for to keep it for retries.
    pub timeout: Option<Duration>,
}

/// Sends the request and retries it as `how.policy` allows.
pub async fn send(proxy: &Proxy, out: Outgoing<'_>, mut body: RequestBody, how: Sending<'_>) -> Result<Response<Body>, LocalReply> {
    let Outgoing { mut parts, upgrade, authority, pq } = out;
    let Sending { target, clients, policy, budget, timeout } = how;
    let idempotent = !matches!(parts.method, http::Method::POST | http::Method::PATCH);
    // Every gRPC call is a POST: a policy that names gRPC statuses asked for gRPC calls to be retried.
    let grpc_call = is_grpc(&parts.headers);
    let may_retry = policy.filter(|p| p.attempts > 0 && (idempotent || p.non_idempotent || (grpc_call && names_grpc_status(&p.retry_on))) && !upgrade);
    let replay = match (&body, may_retry) {
        (RequestBody::Buffered(bytes), _) => Some(bytes.clone()),
        (RequestBody::Streaming(_), Some(_)) => body.replayable(timeout).await?,
        (RequestBody::Streaming(_), None) => None,
    };
    let mut body = match body {
        RequestBody::Streaming(b) if replay.is_none() => Some(b),
        _ => None,
    };
    let http2 = parts.version == http::Version::HTTP_2;
    let cluster = target.cluster();
    // Circuit breaking: over the cluster's limits the request is refused at once (UO).
    let _admitted = match cluster {
        Some(c) => Some(c.limits(http2).admit(c.name()).await?),
        None => None,
    };
    let one_per_connection = cluster.is_some_and(|c| c.config.pool.max_requests_per_connection == Some(1));
    if let Some(b) = budget {
        b.record_request();
    }
    let mut endpoint = target.endpoint.clone();
    let mut retries = 0u32;
    let mut retry_slot = false;
    loop {
        let this_body: Body = match (&replay, body.take()) {
            (Some(bytes), _) => full_body(bytes.clone()),
            (None, Some(b)) => b,
            (None, None) => {
                return Err(LocalReply::new(500, Flag::UpstreamConnectionTermination, "internal: a request body that cannot be replayed was needed twice"))
            }
        };
        let mut req = Request::new(this_body);
        *req.method_mut() = parts.method.clone();
        *req.version_mut() = parts.version;
        // Only a request that may be tried again needs its headers kept.
        *req.headers_mut() = if may_retry.is_some() { parts.headers.clone() } else { std::mem::take(&mut parts.headers) };
        if one_per_connection && !http2 && !upgrade {
            req.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let in_flight = cluster.zip(endpoint.index).map(|(c, i)| c.balancer.start(i));
        let per_try = may_retry.and_then(|p| p.per_try_timeout);
        let sent = clients.send(req, endpoint.address, authority, pq, endpoint.identity.is_some(), upgrade);
        let result = match super::deadline::within(per_try, sent).await {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        };
        let outcome = match &result {
            Ok(resp) => TryOutcome::Response {
                status: resp.status().as_u16(),
                grpc: resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()),
            },
            Err(Some(e)) if e.is_connect() => TryOutcome::ConnectFailure,
            Err(Some(_)) => TryOutcome::Reset,
            Err(None) => TryOutcome::Timeout,
        };
        if let Some(f) = in_flight {
            let counted = match outcome {
                TryOutcome::Response { status, .. } => Outcome::Status(status),
                _ => Outcome::LocalFailure,
            };
            if f.finish(counted) {
                proxy.metrics.ejections.get_or_create(&EjectionLabels { cluster: target.cluster_name().to_string() }).inc();
                tracing::warn!(cluster = %target.cluster_name(), endpoint = %endpoint.address, "endpoint ejected by outlier detection");
            }
        }
        if retry_slot {
            // This try was a retry: its slot under max_retries is free again.
            if let Some(c) = cluster {
                c.limits(http2).retry_done();
            }
        }
        let retry = may_retry.filter(|p| {
            (replay.is_some() || body.is_some())
                && retries < p.attempts
                && retriable(&p.retry_on, outcome)
                && budget.is_none_or(|b| b.try_retry())
                && cluster.is_none_or(|c| c.limits(http2).try_retry())
        });
        let Some(policy) = retry else {
            let exhausted = retries > 0 && may_retry.is_some_and(|p| retriable(&p.retry_on, outcome));
            return match result {
                Ok(resp) => Ok(resp),
                Err(Some(e)) => {
                    let mut reply = e.explain(endpoint.address, clients.connect_timeout);
                    if exhausted {
                        reply.flag = Flag::UpstreamRetryLimitExceeded;
                        reply.reason = format!("{} (after {retries} retries)", reply.reason);
                    }
                    Err(reply)
                }
                Err(None) => Err(LocalReply::new(
                    504,
                    if exhausted { Flag::UpstreamRetryLimitExceeded } else { Flag::UpstreamRequestTimeout },
                    format!(
                        "{} did not respond within the per-try timeout of {}ms{}",
                        endpoint.address,
                        per_try.unwrap_or_default().as_millis(),
                        if exhausted { format!(" (after {retries} retries)") } else { String::new() }
                    ),
                )),
            };
        };
        retries += 1;
        retry_slot = cluster.is_some();
        proxy.metrics.retries.get_or_create(&RetryLabels { route: target.route.to_string(), cluster: target.cluster_name().to_string() }).inc();
        let base = policy.backoff.unwrap_or(Duration::from_millis(25));
        tokio::time::sleep(Backoff::retries(base).delay(retries - 1, crate::random::random_u64())).await;
        if let Some(next) = cluster.and_then(|c| pick(c, target.hash, &mut crate::random::random_u64).ok()) {
            endpoint = next;
        }
    }
}
