//! weft-policy: who may call a workload, decided by one piece of code that
//! the proxy runs on every inbound request and `weft authz check` runs
//! offline, so the two can never disagree.
//!
//! - [`matcher`]: Istio's string patterns, CIDRs, `values`/`notValues`.
//! - [`path`]: request path normalisation (Istio's `pathNormalization`).
//! - [`request`]: the attributes a decision looks at.
//! - [`rule`]: one compiled rule; whether it matches, and why not.
//! - [`authorizer`]: a workload's policies and the decision, in Istio's order.
//! - [`jwt`]: request authentication with JWTs.
//!
//! Input is the proxy config's [`weft_proto::authz`] section, compiled by
//! the controller from Istio and Linkerd YAML.

pub mod authorizer;
pub mod jwt;
pub mod matcher;
pub mod path;
pub mod request;
pub mod rule;

pub use authorizer::{Authorizer, Decision, Denial, DryRun, Hit, Prefilter, PrefilterCache};
pub use jwt::{Authenticated, JwtError, JwtVerifier, Verified};
pub use request::{remote_ip, Http, Request};

/// A policy the proxy cannot enforce as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0:?} is not a pattern: use one `*` at the start or the end, or `*` alone")]
    Pattern(String),
    #[error("{0:?} is not an address or CIDR like 10.0.0.0/8")]
    Cidr(String),
    #[error("{0:?} is not a port number")]
    Port(String),
    #[error("principal {0:?} is written with spiffe://; Istio principals are written without it (cluster.local/ns/NS/sa/SA)")]
    SpiffePrincipal(String),
    #[error("{0:?} is not a condition key weft supports (request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, destination.ip, destination.port, connection.sni, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME])")]
    ConditionKey(String),
    #[error("condition {0:?} needs values or notValues")]
    EmptyCondition(String),
    #[error("{0:?} is not a header name")]
    HeaderName(String),
    #[error("the key set of issuer {issuer:?} is not a JWKS: {error}")]
    Jwks { issuer: String, error: String },
    #[error("{policy} rules[{rule}]: {error}")]
    In { policy: String, rule: usize, error: Box<PolicyError> },
}
