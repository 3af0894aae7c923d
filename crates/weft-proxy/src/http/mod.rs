//! HTTP requests, one stack per direction. Each function below names every
//! step a request goes through, in order; a new step is one line here and
//! one module. The steps' mechanics live beside: the server side
//! ([`server`]), forwarding ([`forward`]: faults, mirrors, rewrites, header
//! rules, tunnels), sending with retries ([`send`], [`retry`], [`body`]).
//! Every request is one [`RequestRecord`], emitted once.

pub mod body;
pub mod deadline;
pub mod fault;
pub mod forward;
pub mod headers;
pub mod mirror;
pub mod policy;
pub mod retry;
pub mod send;
pub mod server;
pub mod tunnel;

use crate::body::Body;
use crate::connection::{Connection, Destination};
use crate::local_reply::{Flag, LocalReply};
use crate::outbound::{Forward, Plan};
use crate::target::Target;
use crate::state::Proxy;
use crate::telemetry::flow::{CountedRequest, RecordedResponse, RequestCounts};
use crate::telemetry::tracer::SpanKind;
use crate::telemetry::RequestRecord;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use std::net::SocketAddr;
use std::sync::Arc;

/// Outbound: request id and client span -> size limit -> route (rule,
/// cluster, endpoint) -> forward, or the route's own answer.
pub async fn outbound(proxy: Arc<Proxy>, conn: Arc<Connection>, dst: Destination, mut req: Request<Incoming>) -> Response<Body> {
    let host = headers::authority(&req);
    let mut record = start(&proxy, &conn, &mut req, host.as_deref(), SpanKind::Client);
    let snapshot = proxy.snapshot();
    // Until a target is known (and for the route's own answers), only this side is.
    record.parties.source = snapshot.own_labels.clone();
    let result = async {
        within_header_limit(&req, snapshot.config.limits.max_header_bytes)?;
        match crate::outbound::route::http(&snapshot, &conn, &dst, host.as_deref(), &req, &mut crate::random::random_u64)? {
            Plan::Respond { route, response } => {
                record.route = route;
                Ok(response)
            }
            Plan::Forward(fwd) => {
                targeted(&mut record, &fwd.target);
                record.parties = crate::outbound::parties(&snapshot, &fwd.target);
                record.rule = fwd.matched.as_ref().map(|m| m.rule.clone());
                let req = counted(req, &mut record);
                forward::forward(&proxy, req, *fwd, host.as_deref()).await
            }
        }
    }
    .await;
    answer(record, result)
}

/// Inbound: hand-off rules (identity headers) -> request id and server
/// span -> size limit -> path, JWT, authorization ([`policy`]) -> the local app.
pub async fn inbound(proxy: Arc<Proxy>, conn: Arc<Connection>, app: SocketAddr, mut req: Request<Incoming>) -> Response<Body> {
    crate::inbound::app::hand_off(&mut req, &conn.peer, proxy.own_identity().as_deref());
    let host = headers::authority(&req);
    let mut record = start(&proxy, &conn, &mut req, host.as_deref(), SpanKind::Server);
    let snapshot = proxy.snapshot();
    record.parties = crate::inbound::parties(&snapshot, &conn, host.as_deref(), app.port());
    let result = async {
        within_header_limit(&req, snapshot.config.limits.max_header_bytes)?;
        policy::check(&proxy, &snapshot, &conn, app, host.as_deref(), &mut req, &mut record)?;
        let target = crate::inbound::target(app);
        targeted(&mut record, &target);
        let req = counted(req, &mut record);
        forward::forward(&proxy, req, Forward { target, matched: None, mirrors: vec![], set_cookie: None }, host.as_deref()).await
    }
    .await;
    answer(record, result)
}

/// The request's record, started: its id (`x-request-id`, made when the
/// client sent none) and its span (the trace headers the next hop sees)
/// are set first, so the access log shows them as they are forwarded.
/// `host` is the request's authority.
fn start(proxy: &Proxy, conn: &Connection, req: &mut Request<Incoming>, host: Option<&str>, kind: SpanKind) -> RequestRecord {
    if !req.headers().contains_key("x-request-id") {
        req.headers_mut().insert("x-request-id", headers::request_id());
    }
    let span = proxy.metrics.tracer().and_then(|t| t.start(req, host, kind));
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let mut record = RequestRecord::start(proxy.metrics.clone(), conn.listener.clone(), conn.peer.clone(), req.method().clone(), path);
    record.span = span;
    record.label_inputs = proxy.metrics.standard.capture(req, host);
    record.version = req.version();
    record.grpc = headers::is_grpc(req.headers());
    record.request_head_bytes = headers::head_bytes(req) as u64;
    if record.access.is_some() {
        record.capture_request(req);
        record.sni = conn.sni.clone();
        record.local = match &conn.direction {
            crate::connection::Direction::Inbound { app } | crate::connection::Direction::Outbound(Destination::Original(app)) => Some(*app),
            crate::connection::Direction::Outbound(Destination::Cluster(_)) => Some(conn.listener.address),
        };
    }
    record
}

/// The request with its body boxed for forwarding, counted for the record
/// when it has one (a GET's empty body costs nothing).
fn counted(req: Request<Incoming>, record: &mut RequestRecord) -> Request<Body> {
    if req.body().is_end_stream() {
        return req.map(|b| b.boxed());
    }
    let counts = Arc::new(RequestCounts::default());
    record.request_body = Some(counts.clone());
    let grpc = record.grpc;
    req.map(|b| CountedRequest::new(b, counts, grpc).boxed())
}

fn targeted(record: &mut RequestRecord, target: &Target) {
    record.route = target.route.clone();
    record.cluster = target.cluster_name().to_string();
    record.upstream = Some(target.endpoint.address);
    record.upstream_mtls = target.endpoint.identity.is_some();
}

/// 431 for a head over the limit: hyper's own limit is twice this, so the
/// client gets a reply with a flag and a reason instead of a reset.
fn within_header_limit<B>(req: &Request<B>, limit: usize) -> Result<(), LocalReply> {
    let size = headers::head_bytes(req);
    if size > limit {
        return Err(LocalReply::new(431, Flag::DownstreamProtocolError, format!("request headers are {size} bytes, over the {limit}-byte limit")));
    }
    Ok(())
}

/// The response to send, carrying the record to its end: a reply the proxy
/// writes itself keeps its own status, its flag and reason go to the record.
fn answer(mut record: RequestRecord, result: Result<Response<Body>, LocalReply>) -> Response<Body> {
    let resp = match result {
        Ok(resp) => resp,
        Err(reply) => {
            record.local_reply(&reply);
            reply.into_response()
        }
    };
    record.capture_response(resp.headers());
    record.responded(resp.status().as_u16(), headers::response_head_bytes(&resp) as u64, crate::telemetry::record::grpc_status(resp.headers()));
    resp.map(|b| RecordedResponse::new(b, record).boxed())
}

/// The request's future is moved on each await of its callers (and into
/// hyper's slot for it), so its size is CPU on every request: before the
/// connection handshakes were boxed it was 11 KiB, and copying it was 12% of
/// the client proxy's instructions (docs/benchmarks.md).
#[cfg(test)]
mod future_sizes {
    /// The size of the future an async fn of four arguments returns.
    fn size4<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size7<A, B, C, D, E, G, H, F>(_: fn(A, B, C, D, E, G, H) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_request_future_stays_small_and_new_connections_are_boxed() {
        let (outbound, inbound) = (size4(super::outbound), size4(super::inbound));
        assert!(outbound <= 8 * 1024 && inbound <= 8 * 1024, "outbound {outbound} bytes, inbound {inbound}");
        // A TLS or HTTP/2 handshake inline would make this several KiB.
        let send = size7(crate::upstream::HttpClients::send);
        assert!(send <= 2 * 1024, "HttpClients::send: {send} bytes");
    }
}
