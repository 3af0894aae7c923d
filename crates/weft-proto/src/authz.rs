//! Who may call a workload, as its proxy receives it: authorization policies
//! (Istio `AuthorizationPolicy`, Linkerd `Server` + authorizations, the
//! default inbound policy) and request authentication (JWT rules), compiled
//! by the controller from the user's YAML into plain lists. Values keep
//! Istio's spelling (`cluster.local/ns/a/sa/b`, `/api/*`, `10.0.0.0/8`); the
//! proxy precompiles them once per config (`weft-policy`).

use serde::{Deserialize, Serialize};

/// Everything the inbound side checks before the app sees a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Every policy selecting the workload; the action says how it is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// Linkerd's default inbound policy, for ports no `Server` covers.
    #[serde(default, skip_serializing_if = "DefaultPolicy::is_all_unauthenticated")]
    pub default_policy: DefaultPolicy,
    /// Where the default came from (`--default-inbound-policy`, an annotation), for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_source: Option<String>,
    /// Ports a Linkerd `Server` covers: the default policy does not apply there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_ports: Vec<u16>,
    /// How request paths are normalised before matching (and forwarding).
    #[serde(default, skip_serializing_if = "PathNormalization::is_base")]
    pub path_normalization: PathNormalization,
    /// Proxies in front of this workload whose `x-forwarded-for` entries are
    /// trusted when finding the remote IP (`remoteIpBlocks`); 0: the peer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trusted_hops: u32,
    /// Tell an authenticated (mTLS) caller which policy refused it. Off by
    /// default: the body says only "RBAC: access denied".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explain_denials: bool,
    /// JWT rules (Istio `RequestAuthentication`) for this workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRule>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Authorization {
    pub fn is_default(&self) -> bool {
        *self == Authorization::default()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultPolicy {
    /// Every client, meshed or not (Linkerd's and Istio's default).
    #[default]
    AllUnauthenticated,
    /// Any client with a mesh identity.
    AllAuthenticated,
    /// Any client with a mesh identity of this mesh's trust domain.
    ClusterAuthenticated,
    /// No client.
    Deny,
    /// Everything allowed, and what `deny` would refuse is counted (Linkerd's audit).
    Audit,
}

impl DefaultPolicy {
    pub fn is_all_unauthenticated(&self) -> bool {
        *self == DefaultPolicy::AllUnauthenticated
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            DefaultPolicy::AllUnauthenticated => "all-unauthenticated",
            DefaultPolicy::AllAuthenticated => "all-authenticated",
            DefaultPolicy::ClusterAuthenticated => "cluster-authenticated",
            DefaultPolicy::Deny => "deny",
            DefaultPolicy::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<DefaultPolicy> {
        Some(match s {
            "all-unauthenticated" => DefaultPolicy::AllUnauthenticated,
            "all-authenticated" => DefaultPolicy::AllAuthenticated,
            "cluster-authenticated" => DefaultPolicy::ClusterAuthenticated,
            "deny" => DefaultPolicy::Deny,
            "audit" => DefaultPolicy::Audit,
            _ => return None,
        })
    }
}

/// Istio's `meshConfig.pathNormalization`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// As sent.
    None,
    /// RFC 3986: `.` and `..` segments resolved, unreserved characters decoded.
    #[default]
    Base,
    /// BASE, and `//` merged into `/`.
    MergeSlashes,
    /// MERGE_SLASHES, after decoding `%2F` and `%5C` into `/` and `\`.
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    pub fn is_base(&self) -> bool {
        *self == PathNormalization::Base
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Allow,
    Deny,
    /// Logged and counted when it matches; never decides.
    Audit,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
        }
    }
}

/// One policy, named for the people reading a denial.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The resource kind it came from: AuthorizationPolicy, Server, ...
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: Action,
    /// Evaluated, logged and counted, never enforced (`istio.io/dry-run`, Linkerd audit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Applies only to connections to these ports of the workload (a
    /// Linkerd `Server`); empty: every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Any rule matching is a match. No rules: ALLOW matches nothing, DENY nothing.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Matches when any `from` matches (or there is none), any `to` matches (or
/// there is none), and every `when` condition holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Source>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Operation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// Who is calling. Each non-empty list must match; within a list any entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

/// What is being called.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// A `when` condition: `key` is Istio's attribute name
/// (`request.headers[x-user]`, `source.ip`, `request.auth.claims[groups]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// One trusted JWT issuer (Istio `RequestAuthentication` `jwtRules[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRule {
    /// `RequestAuthentication ns/name`, for humans.
    pub source: String,
    pub issuer: String,
    /// Empty: any audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The key set as JSON (inline, or fetched from `jwksUri` by the
    /// controller). Empty when it could not be fetched: every token of this
    /// issuer is then refused.
    #[serde(default)]
    pub jwks: String,
    /// Where the key set came from, when it was fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Headers carrying the token; empty: `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters carrying the token; with no headers either: `access_token`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Header that receives the verified payload (base64url JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Keep the token on the request to the app (Istio's default: removed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    /// Claims copied into request headers for the app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtHeader {
    pub name: String,
    /// Stripped before the token (`Bearer `).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}
