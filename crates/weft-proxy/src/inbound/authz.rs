//! Authorization and request authentication, as steps of the inbound
//! stack, without the I/O: what policy sees of a connection or request
//! ([`tcp_request`], [`http_request`]), the decision (by `weft-policy`, the
//! code `weft authz check` runs too), and what the caller is told: 403
//! "RBAC: access denied" (flag `RBAC`), 401 for a JWT that does not verify.
//! Why a request was refused goes to the log and the access log; the caller
//! learns it only when the mesh allows (`--authz-debug`) and it is meshed.

use crate::connection::Connection;
use crate::local_reply::{Flag, LocalReply};
use std::net::SocketAddr;
use weft_policy::{Authorizer, Decision, Denial, JwtError, Request, Verified};

/// The body of every authorization denial (Envoy's).
pub const DENIED: &str = "RBAC: access denied";

/// A connection to the workload as policy sees it (opaque TCP).
pub fn tcp_request<'a>(conn: &'a Connection, app: SocketAddr) -> Request<'a> {
    Request {
        peer_ip: conn.peer.address.ip(),
        identity: conn.peer.identity.as_deref(),
        port: app.port(),
        destination_ip: Some(app.ip()),
        sni: conn.sni.as_deref(),
        http: None,
    }
}

/// An HTTP request to the workload as policy sees it.
#[allow(clippy::too_many_arguments)]
pub fn http_request<'a>(
    conn: &'a Connection,
    app: SocketAddr,
    method: &'a str,
    path: &'a str,
    host: &'a str,
    headers: &'a http::HeaderMap,
    jwt: Option<&'a Verified>,
    trusted_hops: u32,
) -> Request<'a> {
    let peer_ip = conn.peer.address.ip();
    Request {
        http: Some(weft_policy::Http { method, path, host, headers, remote_ip: weft_policy::remote_ip(headers, peer_ip, trusted_hops), jwt }),
        ..tcp_request(conn, app)
    }
}

/// The reply for a denial: the fixed text, or with `explain` the reason too.
pub fn denied(authorizer: &Authorizer, req: &Request<'_>, denial: Denial, grpc: bool) -> LocalReply {
    let reason = authorizer.explain(req, denial);
    // Only a caller who proved a mesh identity may be told which policy refused it, and only when asked for.
    let mut reply = if authorizer.explain_denials() && req.identity.is_some() {
        LocalReply::new(403, Flag::Rbac, format!("{DENIED}: {reason}"))
    } else {
        LocalReply::private(403, Flag::Rbac, DENIED, reason)
    };
    if grpc {
        reply.grpc_status = Some(7); // PERMISSION_DENIED
    }
    reply
}

/// The reply for a JWT that did not verify (Envoy's texts).
pub fn unauthenticated(err: &JwtError, grpc: bool) -> LocalReply {
    let mut reply = LocalReply::new(401, Flag::JwtRejected, err.to_string());
    if grpc {
        reply.grpc_status = Some(16); // UNAUTHENTICATED
    }
    reply
}

/// `kind ns/name rules[i]`, or `kind ns/name` when no rule decided.
pub fn hit_name(authorizer: &Authorizer, hit: weft_policy::Hit) -> String {
    match hit.rule {
        Some(r) => format!("{} rules[{r}]", authorizer.name(hit.policy)),
        None => authorizer.name(hit.policy),
    }
}

/// One line for the log: what the side-evaluated policies (AUDIT, dry-run) said.
pub fn side_notes(authorizer: &Authorizer, d: &Decision) -> Option<String> {
    let audit = d.audit.map(|h| format!("audited by {}", hit_name(authorizer, h)));
    let dry = d.dry_run.map(|x| match x {
        weft_policy::DryRun::WouldDeny(h) => format!("dry run: {} would deny", hit_name(authorizer, h)),
        weft_policy::DryRun::WouldAllow(h) => format!("dry run: {} would allow", hit_name(authorizer, h)),
        weft_policy::DryRun::WouldDenyByDefault => "dry run: the default policy audit would deny (as deny)".to_string(),
    });
    match (audit, dry) {
        (None, None) => None,
        (a, b) => Some([a, b].into_iter().flatten().collect::<Vec<_>>().join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Direction, Peer};
    use std::sync::Arc;
    use weft_proto::authz::Authorization;

    fn conn(identity: Option<&str>) -> Connection {
        let listener = weft_proto::config::Listener {
            name: "inbound".into(),
            kind: weft_proto::config::ListenerKind::Inbound,
            address: "0.0.0.0:15006".parse().unwrap(),
            cluster: None,
            protocol: weft_proto::config::Protocol::Detect,
            opaque_ports: vec![],
        };
        let app: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        Connection {
            listener: Arc::new(listener),
            peer: Peer { identity: identity.map(Arc::from), mtls: identity.is_some(), ..Peer::at("10.0.0.9:5000".parse().unwrap()) },
            direction: Direction::Inbound { app },
            sni: None,
            socket: None,
            authz: Default::default(),
        }
    }

    #[test]
    fn a_denial_tells_the_caller_nothing_unless_the_mesh_allows_and_the_caller_is_meshed() {
        let json = |explain: bool| {
            format!(r#"{{"explain_denials":{explain},"policies":[{{"kind":"AuthorizationPolicy","namespace":"backend","name":"deny-all","action":"ALLOW","rules":[]}}]}}"#)
        };
        let quiet = Authorizer::new(&serde_json::from_str::<Authorization>(&json(false)).unwrap(), None).unwrap();
        let c = conn(Some("spiffe://cluster.local/ns/frontend/sa/web"));
        let app: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let h = http::HeaderMap::new();
        let req = http_request(&c, app, "GET", "/", "api", &h, None, 0);
        let d = quiet.evaluate(&req).denial.unwrap();
        let reply = denied(&quiet, &req, d, false);
        assert_eq!((reply.status, reply.flag, reply.public), (403, Flag::Rbac, Some(DENIED)));
        assert!(reply.reason.contains("AuthorizationPolicy backend/deny-all allows nothing"), "the log still says why: {}", reply.reason);
        let resp = reply.into_response();
        assert!(resp.headers().get(crate::local_reply::ERROR_HEADER).is_none(), "no reason header for the caller");

        let debug = Authorizer::new(&serde_json::from_str::<Authorization>(&json(true)).unwrap(), None).unwrap();
        let told = denied(&debug, &req, d, false);
        assert!(told.public.is_none() && told.reason.starts_with("RBAC: access denied: no ALLOW policy matched"));
        let anon = conn(None);
        let req = http_request(&anon, app, "GET", "/", "api", &h, None, 0);
        assert_eq!(denied(&debug, &req, d, true).public, Some(DENIED), "a plaintext caller is never told");
        assert_eq!(denied(&debug, &req, d, true).grpc_status, Some(7));
    }
}
