//! What a policy can look at: the connection (peer address and proven
//! identity, port, SNI) and, for HTTP, the request (method, normalised path,
//! host, headers, remote address, a verified JWT). Built by the proxy for
//! each connection or request, and by `weft authz check` from its flags.

use crate::jwt::Verified;
use std::net::IpAddr;

/// One connection or request, as policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The address the connection came from.
    pub peer_ip: IpAddr,
    /// The caller's proven mesh identity (`spiffe://td/ns/N/sa/S`), if any.
    pub identity: Option<&'a str>,
    /// The workload port the caller connected to.
    pub port: u16,
    /// The workload address the caller connected to.
    pub destination_ip: Option<IpAddr>,
    /// TLS server name the caller asked for (mesh TLS).
    pub sni: Option<&'a str>,
    /// None for opaque TCP.
    pub http: Option<Http<'a>>,
}

/// The HTTP part of a request.
#[derive(Debug, Clone, Copy)]
pub struct Http<'a> {
    pub method: &'a str,
    /// Normalised, without the query ([`crate::path::normalize`]).
    pub path: &'a str,
    /// `Host` / `:authority` as sent (with its port, if any).
    pub host: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The original client by `x-forwarded-for` and the trusted hops ([`remote_ip`]).
    pub remote_ip: IpAddr,
    /// The request's verified JWT, if it carried one.
    pub jwt: Option<&'a Verified>,
}

impl<'a> Request<'a> {
    /// The principal as Istio writes it: the SPIFFE ID without `spiffe://`.
    pub fn principal(&self) -> Option<&'a str> {
        self.identity.map(|id| id.strip_prefix("spiffe://").unwrap_or(id))
    }

    /// The caller's namespace, from its identity (`td/ns/NS/sa/SA`).
    pub fn namespace(&self) -> Option<&'a str> {
        let p = self.principal()?;
        let rest = &p[p.find("/ns/")? + 4..];
        Some(rest.split('/').next().unwrap_or(rest))
    }

    /// The caller's trust domain.
    pub fn trust_domain(&self) -> Option<&'a str> {
        self.principal().map(|p| p.split('/').next().unwrap_or(p))
    }
}

/// The original client's address: with `trusted` proxies in front, the
/// `x-forwarded-for` entry that the outermost trusted one added (Envoy's
/// `xff_num_trusted_hops`); otherwise, or when the header is short or
/// malformed, the peer. A client can prepend anything, so entries left of
/// that one are never used.
pub fn remote_ip(headers: &http::HeaderMap, peer: IpAddr, trusted: u32) -> IpAddr {
    if trusted == 0 {
        return peer;
    }
    let mut entries: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else { return peer };
        entries.extend(s.split(',').map(str::trim).filter(|e| !e.is_empty()));
    }
    let n = trusted as usize;
    if entries.len() < n {
        return peer;
    }
    entries[entries.len() - n].parse().unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_namespace_and_trust_domain_come_from_the_identity() {
        let r = Request {
            peer_ip: "10.0.0.1".parse().unwrap(),
            identity: Some("spiffe://cluster.local/ns/frontend/sa/frontend-app"),
            port: 80,
            destination_ip: None,
            sni: None,
            http: None,
        };
        assert_eq!(r.principal(), Some("cluster.local/ns/frontend/sa/frontend-app"));
        assert_eq!(r.namespace(), Some("frontend"));
        assert_eq!(r.trust_domain(), Some("cluster.local"));
        let anon = Request { identity: None, ..r };
        assert_eq!((anon.principal(), anon.namespace()), (None, None));
    }

    #[test]
    fn the_remote_address_counts_trusted_hops_from_the_right() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(remote_ip(&h, peer, 0), peer, "no trusted hops: the peer");
        assert_eq!(remote_ip(&h, peer, 1), "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(remote_ip(&h, peer, 2), "6.6.6.6".parse::<IpAddr>().unwrap());
        assert_eq!(remote_ip(&h, peer, 3), peer, "fewer entries than hops: the peer");
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(remote_ip(&h, peer, 1), peer);
    }
}
