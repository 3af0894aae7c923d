//! The inbound policy steps for one HTTP request, in order: normalise the
//! path (the app receives the normalised path, so a rule for `/api/*`
//! cannot be passed by `/api/../admin`), authenticate its JWT (claim headers
//! a client sent itself are removed first), authorize it. Each refusal is a
//! [`LocalReply`]; the decision is counted and noted on the request record.

use crate::connection::Connection;
use crate::config::Snapshot;
use crate::inbound::authz;
use crate::local_reply::{Flag, LocalReply};
use crate::state::Proxy;
use crate::telemetry::authz::Protocol;
use crate::telemetry::RequestRecord;
use http::Request;
use std::borrow::Cow;
use std::net::SocketAddr;

pub fn check<B>(proxy: &Proxy, snapshot: &Snapshot, conn: &Connection, app: SocketAddr, host: Option<&str>, req: &mut Request<B>, record: &mut RequestRecord) -> Result<(), LocalReply> {
    let settings = &snapshot.config.inbound.authorization;
    normalize(req, settings.path_normalization)?;
    let verified = if snapshot.jwt.is_empty() {
        None
    } else {
        snapshot.jwt.strip_forgeable(req.headers_mut());
        match snapshot.jwt.authenticate(req.headers(), req.uri().query()) {
            Ok(Some(found)) => {
                found.apply(req.headers_mut());
                Some(found.verified)
            }
            Ok(None) => None,
            Err(e) => {
                proxy.metrics.authz.jwt_rejected.get_or_create(&crate::telemetry::metrics::ListenerLabels { listener: conn.listener.name.clone() }).inc();
                tracing::info!(target: "authz", peer = %conn.peer.address, path = %req.uri().path(), "JWT refused: {e}");
                return Err(authz::unauthenticated(&e, super::headers::is_grpc(req.headers())));
            }
        }
    };
    let authorizer = &snapshot.authorizer;
    if authorizer.is_open() {
        return Ok(());
    }
    let attributes = authz::http_request(conn, app, req.method().as_str(), req.uri().path(), host.unwrap_or(""), req.headers(), verified.as_ref(), settings.trusted_hops);
    let decision = authorizer.evaluate_with(&conn.authz.get(authorizer, &attributes), &attributes);
    proxy.authz_counters(snapshot).count(Protocol::Http, &decision);
    record.authz = authz::side_notes(authorizer, &decision);
    match decision.denial {
        None => Ok(()),
        Some(denial) => {
            let reply = authz::denied(authorizer, &attributes, denial, super::headers::is_grpc(req.headers()));
            tracing::info!(target: "authz", peer = %conn.peer.address, identity = conn.peer.identity.as_deref().unwrap_or("-"), "{} {} denied: {}", req.method(), req.uri().path(), reply.reason);
            Err(reply)
        }
    }
}

/// Rewrites the request's path to its normalised form; 400 for one that cannot be.
fn normalize<B>(req: &mut Request<B>, mode: weft_proto::authz::PathNormalization) -> Result<(), LocalReply> {
    let Some(pq) = req.uri().path_and_query() else { return Ok(()) };
    let (path, query) = weft_policy::path::normalize(pq.as_str(), mode).map_err(|e| LocalReply::new(400, Flag::DownstreamProtocolError, e.to_string()))?;
    let Cow::Owned(path) = path else { return Ok(()) };
    let joined = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(joined.parse().map_err(|_| LocalReply::new(400, Flag::DownstreamProtocolError, "invalid request path"))?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| LocalReply::new(400, Flag::DownstreamProtocolError, "invalid request path"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::authz::PathNormalization;

    #[test]
    fn the_app_receives_the_path_policy_saw() {
        let mut req = Request::get("/api/../admin?x=1").body(()).unwrap();
        normalize(&mut req, PathNormalization::Base).unwrap();
        assert_eq!(req.uri().path_and_query().unwrap().as_str(), "/admin?x=1");
        let mut req = Request::get("http://api:8080/a//b").body(()).unwrap();
        normalize(&mut req, PathNormalization::MergeSlashes).unwrap();
        assert_eq!(req.uri().to_string(), "http://api:8080/a/b");
        let mut req = Request::get("/bad%zz").body(()).unwrap();
        assert_eq!(normalize(&mut req, PathNormalization::Base).unwrap_err().status, 400);
    }
}
