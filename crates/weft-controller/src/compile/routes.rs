//! A host's route rules (VirtualService, HTTPRoute, GRPCRoute, TrafficSplit,
//! ServiceProfile, already one model in weft-model) as the proxy's HTTP
//! rules: matches, weighted clusters, redirects and direct responses,
//! rewrites, header operations, timeouts, retries, faults and mirrors.

use weft_model::mesh::RouteAction;
use weft_proto::config::{DirectResponse, HeaderMatch, HttpRule, Mirror, Redirect, RequestMatch, RetryPolicy, Rewrite, StringMatch, WeightedCluster};

/// A gRPC status written as a number or by its name (`UNAVAILABLE`).
fn grpc_code(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| weft_proto::grpc::code_by_name(name))
}

fn fault(f: &weft_model::mesh::Fault) -> weft_proto::config::Fault {
    use weft_model::mesh::AbortStatus;
    weft_proto::config::Fault {
        delay: f.delay.map(|(fixed, percent)| weft_proto::config::FaultDelay { fixed, percent }),
        abort: f.abort.as_ref().map(|(status, percent)| weft_proto::config::FaultAbort {
            http_status: match status {
                AbortStatus::Http(s) => Some(*s),
                AbortStatus::Grpc(_) => None,
            },
            grpc_status: match status {
                AbortStatus::Grpc(name) => grpc_code(name).or(Some(2)),
                AbortStatus::Http(_) => None,
            },
            percent: *percent,
        }),
    }
}

fn string_match(m: &weft_model::mesh::StringMatch) -> StringMatch {
    use weft_model::mesh::StringMatch as M;
    match m {
        M::Exact(v) => StringMatch::exact(v),
        M::Prefix(v) => StringMatch::prefix(v),
        M::Regex(v) => StringMatch::regex(v),
        M::Present => StringMatch::present(),
    }
}

/// A match the proxy can evaluate, or `None` when it has conditions the proxy
/// does not evaluate yet (authority, gateways, case-insensitive paths): such
/// a match is left out, so it matches nothing rather than too much. Source
/// labels and namespace are checked by the client's proxy against itself.
fn request_match(m: &weft_model::mesh::RequestMatch) -> Option<RequestMatch> {
    let unsupported = m.ignore_case || m.authority.is_some() || !m.gateways.is_empty();
    if unsupported {
        return None;
    }
    let header = |h: &weft_model::mesh::HeaderMatch, lower: bool| HeaderMatch {
        name: if lower { h.name.to_ascii_lowercase() } else { h.name.clone() },
        value: string_match(&h.value),
        invert: h.invert,
    };
    Some(RequestMatch {
        path: m.path.as_ref().map(string_match),
        method: m.method.clone(),
        headers: m.headers.iter().map(|h| header(h, true)).collect(),
        query: m.query.iter().map(|q| header(q, false)).collect(),
        port: m.port,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    })
}

fn header_ops(h: &weft_model::mesh::HeaderOps) -> weft_proto::config::HeaderOps {
    weft_proto::config::HeaderOps {
        set: h.set.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        add: h.add.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        remove: h.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    }
}

/// The proxy's HTTP rules for one host and port: forwards become weighted
/// clusters; redirects and direct responses are answered by the proxy.
/// Rules none of whose matches the proxy can evaluate are left out.
pub fn http_rules(
    rules: &[weft_model::mesh::HttpRule],
    budget: Option<&weft_model::mesh::RetryBudget>,
    port: u16,
    cluster_for: &mut impl FnMut(&str, Option<&str>, u16) -> Option<String>,
) -> Vec<HttpRule> {
    let mut out = Vec::new();
    for r in rules {
        let matches: Vec<RequestMatch> = r.matches.iter().filter_map(request_match).collect();
        if !r.matches.is_empty() && matches.is_empty() {
            continue;
        }
        let mut rule = HttpRule {
            name: r.name.clone(),
            matches,
            clusters: vec![],
            redirect: None,
            direct_response: None,
            rewrite: r.rewrite.as_ref().map(|w| Rewrite { path: w.path.clone(), prefix_only: w.prefix_only, authority: w.authority.clone() }),
            request_headers: header_ops(&r.request_headers),
            response_headers: header_ops(&r.response_headers),
            timeout: r.timeout,
            retry: r.retry.as_ref().filter(|p| p.attempts > 0).map(|p| RetryPolicy {
                attempts: p.attempts,
                per_try_timeout: p.per_try_timeout,
                retry_on: p.retry_on.clone(),
                backoff: p.backoff,
                // A rule that only matches POST/PATCH asked for those to be retried.
                non_idempotent: !r.matches.is_empty() && r.matches.iter().all(|m| matches!(m.method.as_deref(), Some("POST" | "PATCH"))),
                budget: budget.map(|b| weft_proto::config::RetryBudget { ratio: b.ratio, min_per_second: b.min_per_second, ttl: b.ttl }),
            }),
            fault: r.fault.as_ref().map(fault),
            mirrors: r
                .mirrors
                .iter()
                .filter_map(|m| Some(Mirror { cluster: cluster_for(&m.host, m.subset.as_deref(), m.port.unwrap_or(port))?, percent: m.percent }))
                .collect(),
            failure_statuses: r.failure_statuses.clone(),
        };
        match &r.action {
            RouteAction::Forward(dests) => {
                rule.clusters = dests
                    .iter()
                    .filter_map(|d| Some(WeightedCluster { cluster: cluster_for(&d.host, d.subset.as_deref(), d.port.unwrap_or(port))?, weight: d.weight }))
                    .collect();
                if rule.clusters.iter().all(|c| c.weight == 0) {
                    continue;
                }
            }
            RouteAction::Redirect { scheme, authority, path, port, status } => {
                rule.redirect = Some(Redirect { scheme: scheme.clone(), authority: authority.clone(), path: path.clone(), port: *port, status: *status });
            }
            RouteAction::DirectResponse { status, body } => {
                rule.direct_response = Some(DirectResponse { status: *status, body: body.clone() });
            }
        }
        out.push(rule);
    }
    out
}

