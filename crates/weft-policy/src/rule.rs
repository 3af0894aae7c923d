//! One rule, compiled: its `from` sources, `to` operations and `when`
//! conditions as matchers, and the two questions asked of it: does it match
//! this request ([`Rule::matches`]), and if not, why ([`Rule::mismatch`],
//! only ever asked for a denial).
//!
//! Opaque TCP has no method, path, host, headers or JWT. As in Istio, an
//! ALLOW (or AUDIT) rule that uses any of those never matches TCP traffic,
//! and a DENY rule is checked without them: a DENY written for HTTP still
//! refuses TCP connections its other fields match (fail closed).

use crate::matcher::{Cidr, Pattern, Values};
use crate::request::{Http, Request};
use crate::PolicyError;
use weft_proto::authz as cfg;

/// How a rule treats fields a TCP connection does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Tcp {
    /// ALLOW/AUDIT: a rule with HTTP-only fields never matches TCP.
    NeverMatch,
    /// DENY: HTTP-only fields are ignored for TCP.
    Ignore,
}

#[derive(Debug, Clone)]
pub struct Rule {
    from: Vec<Source>,
    to: Vec<Operation>,
    when: Vec<Condition>,
    /// Uses a field only HTTP requests have.
    http_only: bool,
}

#[derive(Debug, Clone, Default)]
struct Source {
    principals: Values<Pattern>,
    request_principals: Values<Pattern>,
    namespaces: Values<Pattern>,
    ip_blocks: Values<Cidr>,
    remote_ip_blocks: Values<Cidr>,
}

#[derive(Debug, Clone, Default)]
struct Operation {
    hosts: Values<Pattern>,
    ports: Values<u16>,
    methods: Values<Pattern>,
    paths: Values<Pattern>,
}

#[derive(Debug, Clone)]
struct Condition {
    key: Key,
    values: Values<Pattern>,
    /// For address keys: the values as CIDRs.
    cidrs: Values<Cidr>,
    /// For `destination.port`: the values as numbers.
    ports: Values<u16>,
}

/// Istio's condition keys.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Header(http::HeaderName),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    DestinationIp,
    DestinationPort,
    Sni,
    AuthPrincipal,
    AuthAudiences,
    AuthPresenter,
    /// `request.auth.claims[a][b]`: the path into nested claims.
    AuthClaim(Vec<String>),
}

impl Key {
    fn parse(key: &str) -> Result<Key, PolicyError> {
        let bad = || PolicyError::ConditionKey(key.to_string());
        let bracketed = |prefix: &str| -> Option<Vec<String>> {
            let rest = key.strip_prefix(prefix)?;
            let mut parts = Vec::new();
            let mut s = rest;
            while !s.is_empty() {
                let inner = s.strip_prefix('[')?;
                let end = inner.find(']')?;
                parts.push(inner[..end].to_string());
                s = &inner[end + 1..];
            }
            (!parts.is_empty() && parts.iter().all(|p| !p.is_empty())).then_some(parts)
        };
        Ok(match key {
            "source.ip" => Key::SourceIp,
            "remote.ip" => Key::RemoteIp,
            "source.namespace" => Key::SourceNamespace,
            "source.principal" => Key::SourcePrincipal,
            "destination.ip" => Key::DestinationIp,
            "destination.port" => Key::DestinationPort,
            "connection.sni" => Key::Sni,
            "request.auth.principal" => Key::AuthPrincipal,
            "request.auth.audiences" => Key::AuthAudiences,
            "request.auth.presenter" => Key::AuthPresenter,
            _ if key.starts_with("request.headers") => {
                let parts = bracketed("request.headers").filter(|p| p.len() == 1).ok_or_else(bad)?;
                Key::Header(http::HeaderName::from_bytes(parts[0].to_ascii_lowercase().as_bytes()).map_err(|_| bad())?)
            }
            _ if key.starts_with("request.auth.claims") => Key::AuthClaim(bracketed("request.auth.claims").ok_or_else(bad)?),
            _ => return Err(bad()),
        })
    }

    /// As the YAML spells it.
    fn name(&self) -> String {
        match self {
            Key::Header(n) => format!("request.headers[{n}]"),
            Key::AuthClaim(p) => format!("request.auth.claims[{}]", p.join("][")),
            Key::SourceIp => "source.ip".into(),
            Key::RemoteIp => "remote.ip".into(),
            Key::SourceNamespace => "source.namespace".into(),
            Key::SourcePrincipal => "source.principal".into(),
            Key::DestinationIp => "destination.ip".into(),
            Key::DestinationPort => "destination.port".into(),
            Key::Sni => "connection.sni".into(),
            Key::AuthPrincipal => "request.auth.principal".into(),
            Key::AuthAudiences => "request.auth.audiences".into(),
            Key::AuthPresenter => "request.auth.presenter".into(),
        }
    }

    fn http_only(&self) -> bool {
        matches!(self, Key::Header(_) | Key::AuthPrincipal | Key::AuthAudiences | Key::AuthPresenter | Key::AuthClaim(_))
    }

    fn is_address(&self) -> bool {
        matches!(self, Key::SourceIp | Key::RemoteIp | Key::DestinationIp)
    }
}

fn patterns(v: &[String], not: &[String]) -> Result<Values<Pattern>, PolicyError> {
    Values::compile(v, not, Pattern::parse)
}

fn cidrs(v: &[String], not: &[String]) -> Result<Values<Cidr>, PolicyError> {
    Values::compile(v, not, Cidr::parse)
}

/// Istio principals never carry the scheme; one that does can match nothing.
fn principals(v: &[String], not: &[String]) -> Result<Values<Pattern>, PolicyError> {
    if let Some(p) = v.iter().chain(not).find(|p| p.starts_with("spiffe://")) {
        return Err(PolicyError::SpiffePrincipal(p.clone()));
    }
    patterns(v, not)
}

impl Rule {
    pub fn compile(r: &cfg::Rule) -> Result<Rule, PolicyError> {
        let from = r
            .from
            .iter()
            .map(|s| {
                Ok(Source {
                    principals: principals(&s.principals, &s.not_principals)?,
                    request_principals: patterns(&s.request_principals, &s.not_request_principals)?,
                    namespaces: patterns(&s.namespaces, &s.not_namespaces)?,
                    ip_blocks: cidrs(&s.ip_blocks, &s.not_ip_blocks)?,
                    remote_ip_blocks: cidrs(&s.remote_ip_blocks, &s.not_remote_ip_blocks)?,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let to = r
            .to
            .iter()
            .map(|o| {
                Ok(Operation {
                    hosts: patterns(&o.hosts, &o.not_hosts)?,
                    ports: Values { values: o.ports.clone(), not_values: o.not_ports.clone() },
                    methods: patterns(&o.methods, &o.not_methods)?,
                    paths: patterns(&o.paths, &o.not_paths)?,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let when = r
            .when
            .iter()
            .map(|c| {
                let key = Key::parse(&c.key)?;
                if c.values.is_empty() && c.not_values.is_empty() {
                    return Err(PolicyError::EmptyCondition(c.key.clone()));
                }
                let cidrs = if key.is_address() { cidrs(&c.values, &c.not_values)? } else { Values::default() };
                let ports = if key == Key::DestinationPort {
                    Values::compile(&c.values, &c.not_values, |v| v.parse::<u16>().map_err(|_| PolicyError::Port(v.to_string())))?
                } else {
                    Values::default()
                };
                Ok(Condition { key, values: patterns(&c.values, &c.not_values)?, cidrs, ports })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let http_only = from.iter().any(|s| !s.request_principals.is_any())
            || to.iter().any(|o| !o.hosts.is_any() || !o.methods.is_any() || !o.paths.is_any())
            || when.iter().any(|c| c.key.http_only());
        Ok(Rule { from, to, when, http_only })
    }

    pub fn http_only(&self) -> bool {
        self.http_only
    }

    /// Does the request match every part of the rule?
    pub fn matches(&self, req: &Request<'_>, tcp: Http2Tcp) -> bool {
        if req.http.is_none() && self.http_only && tcp == Http2Tcp::NeverMatch {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(req)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(req)))
            && self.when.iter().all(|c| c.matches(req))
    }

    /// Could a request of this caller (identity, address) match? False only
    /// when every source rejects the caller by principal, namespace or
    /// ipBlocks, which no request of the caller can change.
    pub fn caller_may_match(&self, caller: &Request<'_>) -> bool {
        self.from.is_empty()
            || self.from.iter().any(|s| {
                str_field(&s.principals, caller.principal()) && (s.namespaces.is_any() || str_field(&s.namespaces, caller.namespace())) && s.ip_blocks.check(|c| c.contains(caller.peer_ip))
            })
    }

    /// Why the rule does not match, in words (for the log, never the caller by default).
    pub fn mismatch(&self, req: &Request<'_>, tcp: Http2Tcp) -> Option<String> {
        if self.matches(req, tcp) {
            return None;
        }
        if req.http.is_none() && self.http_only && tcp == Http2Tcp::NeverMatch {
            return Some("the rule uses HTTP fields and the connection is opaque TCP".into());
        }
        if !self.from.is_empty() && !self.from.iter().any(|s| s.matches(req)) {
            return Some(self.from.iter().filter_map(|s| s.mismatch(req)).collect::<Vec<_>>().join("; or "));
        }
        if !self.to.is_empty() && !self.to.iter().any(|o| o.matches(req)) {
            return Some(self.to.iter().filter_map(|o| o.mismatch(req)).collect::<Vec<_>>().join("; or "));
        }
        self.when.iter().find(|c| !c.matches(req)).map(|c| c.mismatch(req))
    }
}

/// A string attribute against a field; an absent attribute is no value.
fn str_field(field: &Values<Pattern>, value: Option<&str>) -> bool {
    field.check(|p| value.is_some_and(|v| p.matches(v)))
}

/// An HTTP-only field: passes for TCP (only DENY rules get this far with one).
fn http_field(field: &Values<Pattern>, req: &Request<'_>, value: impl Fn(&Http<'_>) -> Option<bool>) -> bool {
    match &req.http {
        None => true,
        Some(h) => field.is_any() || value(h).unwrap_or(false),
    }
}

fn host_matches(p: &Pattern, host: &str) -> bool {
    // `hosts: [api.prod]` matches `api.prod` and `api.prod:8080` alike.
    let bare = host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h).unwrap_or(host);
    p.matches_ignore_case(host) || p.matches_ignore_case(bare)
}

impl Source {
    fn matches(&self, req: &Request<'_>) -> bool {
        let remote = req.http.as_ref().map(|h| h.remote_ip).unwrap_or(req.peer_ip);
        str_field(&self.principals, req.principal())
            && (self.namespaces.is_any() || str_field(&self.namespaces, req.namespace()))
            && self.ip_blocks.check(|c| c.contains(req.peer_ip))
            && self.remote_ip_blocks.check(|c| c.contains(remote))
            && http_field(&self.request_principals, req, |h| {
                Some(str_field(&self.request_principals, h.jwt.map(|j| j.principal.as_str())))
            })
    }

    fn mismatch(&self, req: &Request<'_>) -> Option<String> {
        let principal = req.principal();
        if !str_field(&self.principals, principal) {
            return Some(match principal {
                Some(p) => format!("principal {p} {}", describe(&self.principals, |x| x.matches(p))),
                None => format!("no principal (the caller is not meshed) and the rule needs principals {}", list(&self.principals.values)),
            });
        }
        if !str_field(&self.namespaces, req.namespace()) {
            return Some(match req.namespace() {
                Some(n) => format!("namespace {n} {}", describe(&self.namespaces, |x| x.matches(n))),
                None => format!("no namespace (the caller is not meshed) and the rule needs namespaces {}", list(&self.namespaces.values)),
            });
        }
        if !self.ip_blocks.check(|c| c.contains(req.peer_ip)) {
            return Some(format!("source address {} {}", req.peer_ip, describe_cidrs(&self.ip_blocks, Some(req.peer_ip))));
        }
        let remote = req.http.as_ref().map(|h| h.remote_ip).unwrap_or(req.peer_ip);
        if !self.remote_ip_blocks.check(|c| c.contains(remote)) {
            return Some(format!("remote address {remote} {}", describe_cidrs(&self.remote_ip_blocks, Some(remote))));
        }
        let jwt = req.http.as_ref().and_then(|h| h.jwt).map(|j| j.principal.as_str());
        Some(match jwt {
            Some(rp) => format!("request principal {rp} {}", describe(&self.request_principals, |x| x.matches(rp))),
            None => format!("no request principal (no valid JWT) and the rule needs {}", list(&self.request_principals.values)),
        })
    }
}

impl Operation {
    fn matches(&self, req: &Request<'_>) -> bool {
        self.ports.check(|p| *p == req.port)
            && http_field(&self.hosts, req, |h| Some(self.hosts.check(|p| host_matches(p, h.host))))
            && http_field(&self.methods, req, |h| Some(str_field(&self.methods, Some(h.method))))
            && http_field(&self.paths, req, |h| Some(str_field(&self.paths, Some(h.path))))
    }

    fn mismatch(&self, req: &Request<'_>) -> Option<String> {
        if !self.ports.check(|p| *p == req.port) {
            return Some(format!("port {} {}", req.port, describe_ports(&self.ports, req.port)));
        }
        let h = req.http.as_ref()?;
        if !self.hosts.check(|p| host_matches(p, h.host)) {
            return Some(format!("host {} {}", h.host, describe(&self.hosts, |p| host_matches(p, h.host))));
        }
        if !str_field(&self.methods, Some(h.method)) {
            return Some(format!("method {} {}", h.method, describe(&self.methods, |p| p.matches(h.method))));
        }
        Some(format!("path {} {}", h.path, describe(&self.paths, |p| p.matches(h.path))))
    }
}

impl Condition {
    fn matches(&self, req: &Request<'_>) -> bool {
        if self.key.is_address() {
            let ip = match self.key {
                Key::SourceIp => Some(req.peer_ip),
                Key::RemoteIp => Some(req.http.as_ref().map(|h| h.remote_ip).unwrap_or(req.peer_ip)),
                _ => req.destination_ip,
            };
            return self.cidrs.check(|c| ip.is_some_and(|ip| c.contains(ip)));
        }
        if self.key == Key::DestinationPort {
            return self.ports.check(|p| *p == req.port);
        }
        let hit = |p: &Pattern| -> bool {
            match &self.key {
                Key::SourceNamespace => req.namespace().is_some_and(|v| p.matches(v)),
                Key::SourcePrincipal => req.principal().is_some_and(|v| p.matches(v)),
                Key::DestinationPort => false,
                Key::Sni => req.sni.is_some_and(|v| p.matches(v)),
                Key::Header(name) => req.http.as_ref().is_some_and(|h| h.headers.get_all(name).iter().any(|v| v.to_str().is_ok_and(|v| p.matches(v)))),
                Key::AuthPrincipal => jwt(req).is_some_and(|j| p.matches(&j.principal)),
                Key::AuthPresenter => jwt(req).and_then(|j| j.claims.get("azp")).and_then(|v| v.as_str()).is_some_and(|v| p.matches(v)),
                Key::AuthAudiences => jwt(req).is_some_and(|j| claim_values(j.claims.get("aud")).any(|v| p.matches(v))),
                Key::AuthClaim(path) => jwt(req).is_some_and(|j| {
                    let mut v = Some(&j.claims);
                    for part in path {
                        v = v.and_then(|x| x.get(part));
                    }
                    claim_values(v).any(|s| p.matches(s))
                }),
                Key::SourceIp | Key::RemoteIp | Key::DestinationIp => false,
            }
        };
        if req.http.is_none() && self.key.http_only() {
            // Only DENY rules evaluate HTTP-only conditions on TCP; they are ignored there.
            return true;
        }
        self.values.check(hit)
    }

    fn mismatch(&self, req: &Request<'_>) -> String {
        let key = self.key.name();
        let actual = match &self.key {
            Key::SourceIp => Some(req.peer_ip.to_string()),
            Key::RemoteIp => Some(req.http.as_ref().map(|h| h.remote_ip).unwrap_or(req.peer_ip).to_string()),
            Key::DestinationIp => req.destination_ip.map(|ip| ip.to_string()),
            Key::DestinationPort => Some(req.port.to_string()),
            Key::SourceNamespace => req.namespace().map(str::to_string),
            Key::SourcePrincipal => req.principal().map(str::to_string),
            Key::Sni => req.sni.map(str::to_string),
            Key::Header(n) => req.http.as_ref().and_then(|h| h.headers.get(n)).and_then(|v| v.to_str().ok()).map(str::to_string),
            Key::AuthPrincipal => jwt(req).map(|j| j.principal.clone()),
            _ => None,
        };
        let wanted = match &self.key {
            Key::SourceIp | Key::RemoteIp | Key::DestinationIp => describe_cidrs(&self.cidrs, actual.as_deref().and_then(|a| a.parse().ok())),
            Key::DestinationPort => describe_ports(&self.ports, req.port),
            _ => describe(&self.values, |p| actual.as_deref().is_some_and(|a| p.matches(a))),
        };
        match actual {
            Some(a) => format!("{key} {a} {wanted}"),
            None => format!("{key} is absent and must be {}", list(&self.values.values)),
        }
    }
}

fn jwt<'a>(req: &Request<'a>) -> Option<&'a crate::jwt::Verified> {
    req.http.as_ref().and_then(|h| h.jwt)
}

/// A claim's values: a string, each string of an array, or a space-separated scope string.
fn claim_values(v: Option<&serde_json::Value>) -> impl Iterator<Item = &str> {
    let (one, many): (Option<&str>, &[serde_json::Value]) = match v {
        Some(serde_json::Value::String(s)) => (Some(s.as_str()), &[]),
        Some(serde_json::Value::Array(a)) => (None, a.as_slice()),
        _ => (None, &[]),
    };
    one.into_iter().chain(many.iter().filter_map(|x| x.as_str()))
}

fn show(p: &Pattern) -> String {
    match p {
        Pattern::Exact(e) => e.to_string(),
        Pattern::Prefix(p) => format!("{p}*"),
        Pattern::Suffix(s) => format!("*{s}"),
        Pattern::Present => "*".into(),
    }
}

fn list(v: &[Pattern]) -> String {
    format!("[{}]", v.iter().map(show).collect::<Vec<_>>().join(", "))
}

fn describe(v: &Values<Pattern>, hit: impl Fn(&Pattern) -> bool) -> String {
    if !v.values.is_empty() && !v.values.iter().any(hit) {
        format!("not in {}", list(&v.values))
    } else {
        format!("in not-values {}", list(&v.not_values))
    }
}

fn describe_cidrs(v: &Values<Cidr>, ip: Option<std::net::IpAddr>) -> String {
    let l = |c: &[Cidr]| format!("[{}]", c.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "));
    if !v.values.is_empty() && !v.values.iter().any(|c| ip.is_some_and(|ip| c.contains(ip))) {
        format!("not in {}", l(&v.values))
    } else {
        format!("in not-values {}", l(&v.not_values))
    }
}

fn describe_ports(v: &Values<u16>, port: u16) -> String {
    let l = |v: &[u16]| format!("[{}]", v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "));
    if !v.values.is_empty() && !v.values.contains(&port) {
        format!("not in {}", l(&v.values))
    } else {
        format!("in not-values {}", l(&v.not_values))
    }
}
