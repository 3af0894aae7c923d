//! Route rules as the request path evaluates them: string matchers with
//! regexes compiled once per config, request matches, and rules with their
//! weighted clusters, retry budget and mirrors resolved to cluster state.

use super::cluster::ClusterState;
use super::Workload;
use crate::config::{HttpRule, RequestMatch, StringMatch};
use std::collections::HashMap;
use std::sync::Arc;

/// A string matcher with its regex compiled once per config.
#[derive(Debug)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
    Present,
}

impl Matcher {
    fn new(m: &StringMatch) -> Result<Matcher, String> {
        Ok(if let Some(e) = &m.exact {
            Matcher::Exact(e.clone())
        } else if let Some(p) = &m.prefix {
            Matcher::Prefix(p.clone())
        } else if let Some(r) = &m.regex {
            // Envoy and Istio match the whole value.
            Matcher::Regex(regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| format!("regex {r:?}: {e}"))?)
        } else {
            Matcher::Present
        })
    }

    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Matcher::Present, v) => v.is_some(),
            (_, None) => false,
            (Matcher::Exact(e), Some(v)) => e == v,
            (Matcher::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Matcher::Regex(r), Some(v)) => r.is_match(v),
        }
    }
}

#[derive(Debug)]
pub struct CompiledMatch {
    pub path: Option<Matcher>,
    pub method: Option<http::Method>,
    pub headers: Vec<(http::HeaderName, Matcher, bool)>,
    /// Query parameters by name.
    pub query: Vec<(String, Matcher, bool)>,
    pub port: Option<u16>,
}

/// The request facts matches look at.
pub struct RequestFacts<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    /// The destination port the client used.
    pub port: Option<u16>,
}

impl CompiledMatch {
    /// The path prefix this match requires, for prefix rewrites.
    pub fn prefix(&self) -> Option<&str> {
        match &self.path {
            Some(Matcher::Prefix(p)) => Some(p),
            _ => None,
        }
    }

    pub fn matches(&self, r: &RequestFacts<'_>) -> bool {
        self.method.as_ref().is_none_or(|m| m == r.method)
            && self.port.is_none_or(|p| r.port == Some(p))
            && self.path.as_ref().is_none_or(|p| p.matches(Some(r.path)))
            && self.headers.iter().all(|(name, m, invert)| {
                let v = r.headers.get(name).and_then(|v| v.to_str().ok());
                m.matches(v) != *invert
            })
            && self.query.iter().all(|(name, m, invert)| {
                let v = r.query.and_then(|q| q.split('&').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).find(|(k, _)| k == name)).map(|(_, v)| v);
                m.matches(v) != *invert
            })
    }
}

#[derive(Debug)]
pub struct CompiledRule {
    pub name: Option<String>,
    /// The rule as configured: its actions (redirect, rewrite, headers, timeout...).
    pub actions: Arc<HttpRule>,
    /// Empty: every request.
    pub matches: Vec<CompiledMatch>,
    pub clusters: Vec<(Arc<ClusterState>, u32)>,
    pub total_weight: u64,
    /// The rule's retry budget, shared by all its requests.
    pub budget: Option<Arc<crate::budget::BudgetState>>,
    /// Where copies of its requests go, and which share of them.
    pub mirrors: Vec<(Arc<ClusterState>, f64)>,
}

impl CompiledRule {
    /// Picks a cluster by weight, given a uniformly random number.
    pub fn pick(&self, random: u64) -> Option<&Arc<ClusterState>> {
        let mut point = random % self.total_weight.max(1);
        for (c, w) in &self.clusters {
            if point < *w as u64 {
                return Some(c);
            }
            point -= *w as u64;
        }
        None
    }
}

pub(super) fn compile_rules(rules: &[HttpRule], clusters: &HashMap<String, Arc<ClusterState>>, me: &Workload) -> Result<Vec<CompiledRule>, String> {
    let from_me = |m: &RequestMatch| {
        m.source_namespace.as_ref().is_none_or(|ns| *ns == me.namespace) && m.source_labels.iter().all(|(k, v)| me.labels.get(k) == Some(v))
    };
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        // A rule whose every match needs another source never matches here.
        let own: Vec<&RequestMatch> = r.matches.iter().filter(|m| from_me(m)).collect();
        if !r.matches.is_empty() && own.is_empty() {
            continue;
        }
        let matches = own.into_iter().map(compile_match).collect::<Result<Vec<_>, String>>().map_err(|e| format!("rule {i}: {e}"))?;
        out.push(CompiledRule {
            name: r.name.clone(),
            actions: Arc::new(r.clone()),
            matches,
            clusters: r.clusters.iter().filter_map(|w| Some((clusters.get(&w.cluster)?.clone(), w.weight))).collect(),
            total_weight: r.clusters.iter().map(|w| w.weight as u64).sum(),
            budget: r.retry.as_ref().and_then(|p| p.budget.clone()).map(|b| Arc::new(crate::budget::BudgetState::new(b))),
            mirrors: r.mirrors.iter().filter_map(|m| Some((clusters.get(&m.cluster)?.clone(), m.percent))).collect(),
        });
    }
    Ok(out)
}

/// One match, every condition compiled; a condition that cannot be is an
/// error, never left out (that would match more than the rule says).
fn compile_match(m: &RequestMatch) -> Result<CompiledMatch, String> {
    let header = |h: &crate::config::HeaderMatch| -> Result<(http::HeaderName, Matcher, bool), String> {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| format!("header name {:?} is not a valid HTTP header name", h.name))?;
        Ok((name, Matcher::new(&h.value)?, h.invert))
    };
    let method = match m.method.as_deref() {
        Some(x) => Some(http::Method::from_bytes(x.as_bytes()).map_err(|_| format!("method {x:?} is not an HTTP method"))?),
        None => None,
    };
    Ok(CompiledMatch {
        path: m.path.as_ref().map(Matcher::new).transpose()?,
        method,
        headers: m.headers.iter().map(header).collect::<Result<_, _>>()?,
        query: m.query.iter().map(|q| Ok((q.name.clone(), Matcher::new(&q.value)?, q.invert))).collect::<Result<_, String>>()?,
        port: m.port,
    })
}

