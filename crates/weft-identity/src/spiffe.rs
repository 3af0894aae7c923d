//! SPIFFE IDs in the Kubernetes shape Istio and Linkerd use:
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

use crate::IdentityError;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Result<SpiffeId, IdentityError> {
        format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}").parse()
    }

    /// The principal as Istio AuthorizationPolicy writes it: `td/ns/NS/sa/SA`.
    pub fn principal(&self) -> String {
        format!("{}/ns/{}/sa/{}", self.trust_domain, self.namespace, self.service_account)
    }
}

fn is_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<SpiffeId, IdentityError> {
        let bad = |why| IdentityError::InvalidSpiffeId(s.to_string(), why);
        let rest = s.strip_prefix("spiffe://").ok_or_else(|| bad("must start with spiffe://"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => {
                if !is_segment(td) {
                    return Err(bad("the trust domain must be lowercase letters, digits, '-', '.', '_'"));
                }
                if !is_segment(ns) || !is_segment(sa) {
                    return Err(bad("namespace and service account must be lowercase letters, digits, '-', '.', '_'"));
                }
                Ok(SpiffeId { trust_domain: td.to_string(), namespace: ns.to_string(), service_account: sa.to_string() })
            }
            _ => Err(bad("expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/ns/{}/sa/{}", self.trust_domain, self.namespace, self.service_account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_principal() {
        let id: SpiffeId = "spiffe://cluster.local/ns/prod/sa/reviews".parse().unwrap();
        assert_eq!(id.namespace, "prod");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/prod/sa/reviews");
        assert_eq!(id.principal(), "cluster.local/ns/prod/sa/reviews");
        assert_eq!(SpiffeId::new("cluster.local", "prod", "reviews").unwrap(), id);
    }

    #[test]
    fn malformed_ids_say_why() {
        for (s, why) in [
            ("https://cluster.local/ns/a/sa/b", "spiffe://"),
            ("spiffe://cluster.local/ns/a", "expected"),
            ("spiffe://Cluster.Local/ns/a/sa/b", "trust domain"),
            ("spiffe://cluster.local/ns/a/sa/", "namespace and service account"),
            ("spiffe://cluster.local/ns/a/sa/b/extra", "expected"),
        ] {
            let e = s.parse::<SpiffeId>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
