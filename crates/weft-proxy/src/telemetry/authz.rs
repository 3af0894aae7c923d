//! Authorization counters for one config's policies. Each (policy, rule,
//! decision) gets its counter the first time it happens (so only decisions
//! that occurred are exported, as Linkerd does) and keeps it: after that a
//! decision is one atomic add, with no label built and nothing allocated.

use super::metrics::{AuthzLabels, DryRunLabels, Metrics};
use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, OnceLock};
use weft_policy::{Authorizer, Decision, Denial, DryRun, Hit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

/// What a counter counts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Allow(Protocol),
    Deny(Protocol),
    Audit,
    DryRun(Protocol, &'static str),
}

const KINDS: usize = 9;

fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Allow(Protocol::Http) => 0,
        Kind::Allow(Protocol::Tcp) => 1,
        Kind::Deny(Protocol::Http) => 2,
        Kind::Deny(Protocol::Tcp) => 3,
        Kind::Audit => 4,
        Kind::DryRun(Protocol::Http, "deny") => 5,
        Kind::DryRun(Protocol::Http, _) => 6,
        Kind::DryRun(Protocol::Tcp, "deny") => 7,
        Kind::DryRun(Protocol::Tcp, _) => 8,
    }
}

/// The counters of one authorizer's policies.
pub struct AuthzCounters {
    authorizer: Arc<Authorizer>,
    metrics: Arc<Metrics>,
    /// Rows: each policy, then the default policy; columns: no rule, then each rule.
    width: usize,
    slots: Vec<OnceLock<Counter>>,
}

impl AuthzCounters {
    pub fn new(metrics: Arc<Metrics>, authorizer: Arc<Authorizer>) -> AuthzCounters {
        let rows = authorizer.policies().len() + 1;
        let width = authorizer.policies().iter().map(|p| p.rules.len()).max().unwrap_or(0) + 1;
        let n = rows * width;
        AuthzCounters {
            authorizer,
            metrics,
            width,
            slots: (0..n * KINDS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// For this authorizer (the cache key of [`crate::state::Proxy::authz_counters`]).
    pub fn is_for(&self, authorizer: &Arc<Authorizer>) -> bool {
        Arc::ptr_eq(&self.authorizer, authorizer)
    }

    fn labels(&self, hit: Option<Hit>) -> AuthzLabels {
        match hit {
            Some(h) => {
                let p = &self.authorizer.policies()[h.policy];
                AuthzLabels {
                    authz_kind: p.kind.clone(),
                    authz_namespace: p.namespace.clone(),
                    authz_name: p.name.clone(),
                    authz_rule: h.rule.map(|r| format!("rules[{r}]")).unwrap_or_else(|| "-".into()),
                }
            }
            None => AuthzLabels {
                authz_kind: "default".into(),
                authz_namespace: String::new(),
                authz_name: self.authorizer.default_policy().as_str().into(),
                authz_rule: "-".into(),
            },
        }
    }

    fn bump(&self, hit: Option<Hit>, kind: Kind) {
        let row = hit.map(|h| h.policy).unwrap_or(self.authorizer.policies().len());
        let col = hit.and_then(|h| h.rule).map(|r| r + 1).unwrap_or(0).min(self.width - 1);
        let cell = row * self.width + col;
        self.slots[cell * KINDS + kind_index(kind)].get_or_init(|| {
            let a = &self.metrics.authz;
            let l = self.labels(hit);
            match kind {
                Kind::Allow(Protocol::Http) => a.http_allow.get_or_create(&l).clone(),
                Kind::Allow(Protocol::Tcp) => a.tcp_allow.get_or_create(&l).clone(),
                Kind::Deny(Protocol::Http) => a.http_deny.get_or_create(&l).clone(),
                Kind::Deny(Protocol::Tcp) => a.tcp_deny.get_or_create(&l).clone(),
                Kind::Audit => a.audit.get_or_create(&l).clone(),
                Kind::DryRun(protocol, would) => a
                    .dry_run
                    .get_or_create(&DryRunLabels {
                        authz_kind: l.authz_kind,
                        authz_namespace: l.authz_namespace,
                        authz_name: l.authz_name,
                        authz_rule: l.authz_rule,
                        protocol: if protocol == Protocol::Http { "http" } else { "tcp" },
                        would,
                    })
                    .clone(),
            }
        })
        .inc();
    }

    /// Counts one decision: allowed or denied by whom, and what AUDIT and dry-run policies said.
    pub fn count(&self, protocol: Protocol, d: &Decision) {
        match d.denial {
            None => self.bump(d.allowed_by, Kind::Allow(protocol)),
            Some(Denial::Denied(h) | Denial::NotAllowed(h)) => self.bump(Some(h), Kind::Deny(protocol)),
            Some(Denial::Default(_)) => self.bump(None, Kind::Deny(protocol)),
        }
        if let Some(h) = d.audit {
            self.bump(Some(h), Kind::Audit);
        }
        match d.dry_run {
            Some(DryRun::WouldDeny(h)) => self.bump(Some(h), Kind::DryRun(protocol, "deny")),
            Some(DryRun::WouldAllow(h)) => self.bump(Some(h), Kind::DryRun(protocol, "allow")),
            Some(DryRun::WouldDenyByDefault) => self.bump(None, Kind::DryRun(protocol, "deny")),
            None => {}
        }
    }
}
