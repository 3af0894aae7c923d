//! Linkerd and SMI resources: `split.smi-spec.io` TrafficSplit,
//! `linkerd.io` ServiceProfile, and `policy.linkerd.io` Server,
//! ServerAuthorization, AuthorizationPolicy, MeshTLSAuthentication and
//! NetworkAuthentication.

use super::common::{spec, Dur, LabelSelector, PortRef, Regex};
use serde::{de, Deserialize, Deserializer};

spec! {
    pub struct TrafficSplitSpec {
        pub service: String,
        #[serde(default)]
        pub backends: Vec<TrafficSplitBackend>,
        #[serde(default)]
        pub matches: Vec<TrafficSplitMatch>,
    }
}

spec! {
    pub struct TrafficSplitBackend {
        pub service: String,
        pub weight: SplitWeight,
    }
}

spec! {
    pub struct TrafficSplitMatch {
        pub kind: String,
        pub name: String,
        pub api_group: Option<String>,
    }
}

/// A TrafficSplit weight. v1alpha1 used Kubernetes quantities (`500m`, `1`),
/// later versions plain integers; both become milli-units so relative weights
/// compare exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitWeight {
    pub milli: u64,
}

impl<'de> Deserialize<'de> for SplitWeight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let bad = || de::Error::custom(format!("weight must be a non-negative number or quantity like \"500m\", found {v}"));
        let milli = match &v {
            serde_json::Value::Number(n) => n.as_u64().map(|n| n.saturating_mul(1000)).ok_or_else(bad)?,
            serde_json::Value::String(s) => {
                if let Some(m) = s.strip_suffix('m') {
                    m.parse::<u64>().map_err(|_| bad())?
                } else {
                    let f: f64 = s.parse().map_err(|_| bad())?;
                    if !(f.is_finite() && f >= 0.0) {
                        return Err(bad());
                    }
                    (f * 1000.0).round() as u64
                }
            }
            _ => return Err(bad()),
        };
        Ok(SplitWeight { milli })
    }
}

spec! {
    pub struct ServiceProfileSpec {
        #[serde(default)]
        pub routes: Vec<ProfileRoute>,
        pub retry_budget: Option<RetryBudget>,
        #[serde(default)]
        pub dst_overrides: Vec<WeightedDst>,
        #[serde(default)]
        pub opaque_ports: Vec<u16>,
    }
}

spec! {
    pub struct ProfileRoute {
        pub name: String,
        pub condition: RequestMatch,
        #[serde(default)]
        pub response_classes: Vec<ResponseClass>,
        pub is_retryable: Option<bool>,
        pub timeout: Option<Dur>,
    }
}

spec! {
    pub struct RequestMatch {
        pub method: Option<String>,
        pub path_regex: Option<Regex>,
        #[serde(default)]
        pub all: Vec<RequestMatch>,
        #[serde(default)]
        pub any: Vec<RequestMatch>,
        pub not: Option<Box<RequestMatch>>,
    }
}

spec! {
    pub struct ResponseClass {
        pub condition: ResponseMatch,
        pub is_failure: Option<bool>,
    }
}

spec! {
    pub struct ResponseMatch {
        pub status: Option<StatusRange>,
        #[serde(default)]
        pub all: Vec<ResponseMatch>,
        #[serde(default)]
        pub any: Vec<ResponseMatch>,
        pub not: Option<Box<ResponseMatch>>,
    }
}

spec! {
    pub struct StatusRange {
        pub min: Option<u16>,
        pub max: Option<u16>,
    }
}

spec! {
    pub struct RetryBudget {
        pub retry_ratio: f64,
        pub min_retries_per_second: u32,
        pub ttl: Dur,
    }
}

spec! {
    pub struct WeightedDst {
        pub authority: String,
        pub weight: super::linkerd::SplitWeight,
    }
}

/// Linkerd's default inbound policy annotation (on a Namespace or a Pod).
pub const DEFAULT_POLICY_ANNOTATION: &str = "config.linkerd.io/default-inbound-policy";

/// The default inbound policies (and Server `accessPolicy` values) Linkerd knows.
pub const DEFAULT_POLICIES: &[&str] = &["all-unauthenticated", "all-authenticated", "cluster-authenticated", "deny", "audit"];

spec! {
    pub struct ServerSpec {
        pub pod_selector: Option<LabelSelector>,
        pub external_workload_selector: Option<LabelSelector>,
        pub port: PortRef,
        pub proxy_protocol: Option<String>,
        pub access_policy: Option<String>,
    }
}

spec! {
    pub struct ServerAuthorizationSpec {
        pub server: ServerRef,
        pub client: ServerAuthzClient,
    }
}

spec! {
    pub struct ServerRef {
        pub name: Option<String>,
        pub selector: Option<LabelSelector>,
    }
}

spec! {
    pub struct ServerAuthzClient {
        #[serde(default)]
        pub networks: Vec<Network>,
        #[serde(rename = "meshTLS")]
        pub mesh_tls: Option<MeshTlsClient>,
        pub unauthenticated: Option<bool>,
    }
}

spec! {
    pub struct Network {
        pub cidr: String,
        #[serde(default)]
        pub except: Vec<String>,
    }
}

spec! {
    pub struct MeshTlsClient {
        #[serde(rename = "unauthenticatedTLS")]
        pub unauthenticated_tls: Option<bool>,
        #[serde(default)]
        pub identities: Vec<String>,
        #[serde(default)]
        pub service_accounts: Vec<ServiceAccountRef>,
    }
}

spec! {
    pub struct ServiceAccountRef {
        pub name: String,
        pub namespace: Option<String>,
    }
}

spec! {
    pub struct LinkerdAuthorizationPolicySpec {
        pub target_ref: TargetRef,
        #[serde(default)]
        pub required_authentication_refs: Vec<TargetRef>,
    }
}

spec! {
    pub struct TargetRef {
        pub group: Option<String>,
        pub kind: String,
        pub name: String,
        pub namespace: Option<String>,
    }
}

spec! {
    pub struct MeshTlsAuthenticationSpec {
        #[serde(default)]
        pub identities: Vec<String>,
        #[serde(default)]
        pub identity_refs: Vec<TargetRef>,
    }
}

spec! {
    pub struct NetworkAuthenticationSpec {
        #[serde(default)]
        pub networks: Vec<Network>,
    }
}
