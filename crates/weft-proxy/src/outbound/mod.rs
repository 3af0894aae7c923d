//! Where traffic leaving the workload goes. Pure decisions over the config
//! snapshot, with no I/O, so each is unit-tested: [`route`] picks the route,
//! rule, cluster and endpoint (or passthrough, or the route's own answer);
//! [`answer`] builds a route's redirects and direct responses and rewrites
//! paths. The result is one typed [`Target`] (opaque TCP) or [`Plan`] (HTTP).

pub mod answer;
pub mod route;

pub use crate::target::{Picked, Target, Upstream};

use crate::body::Body;
use crate::config::{ClusterState, HttpRule, Snapshot};
use crate::telemetry::standard::Reporter;
use crate::telemetry::Parties;
use std::sync::Arc;

/// Who an outbound request or connection is between, in the standard
/// metrics: this workload, and the endpoint's workload and cluster's Service
/// (unknown for an original destination outside any cluster).
pub fn parties(snapshot: &Snapshot, target: &Target) -> Parties {
    let mut p = Parties { source: snapshot.own_labels.clone(), mtls: target.endpoint.identity.is_some(), ..Parties::unknown(Reporter::Source) };
    if let Some(c) = target.cluster() {
        p.service = c.service_labels.clone();
        if let Some(i) = target.endpoint.index {
            p.destination = c.endpoint_labels(i);
        }
    }
    p
}

/// The rule that matched a request, and what of the request it matched.
#[derive(Debug, Clone)]
pub struct Matched {
    /// The rule as configured: rewrites, header changes, timeout, retries, fault.
    pub rule: Arc<HttpRule>,
    /// The path prefix the match required (a prefix rewrite replaces it).
    pub prefix: Option<String>,
    /// The rule's retry budget.
    pub budget: Option<Arc<crate::budget::BudgetState>>,
}

/// An HTTP request to forward.
#[derive(Debug)]
pub struct Forward {
    pub target: Target,
    pub matched: Option<Matched>,
    /// Clusters that get a copy of the request (fire and forget).
    pub mirrors: Vec<Arc<ClusterState>>,
    /// A consistent-hash cookie made for this client, sent back with the response.
    pub set_cookie: Option<http::HeaderValue>,
}

/// What to do with one HTTP request.
pub enum Plan {
    Forward(Box<Forward>),
    /// The route answers itself (redirect, direct response).
    Respond { route: Arc<str>, response: http::Response<Body> },
}
