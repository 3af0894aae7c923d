//! The decision: a workload's policies compiled once, asked once per
//! request (or TCP connection), in Istio's order: a matching DENY refuses;
//! then, if any ALLOW policy applies, one must match; with none, Linkerd's
//! default inbound policy decides on ports no `Server` covers. AUDIT
//! policies and dry-run ones are evaluated on the side and only reported.
//!
//! The allow path allocates nothing: a [`Decision`] is indices. Words are
//! built only for a denial ([`Authorizer::explain`]).

use crate::request::Request;
use crate::rule::{Http2Tcp, Rule};
use crate::PolicyError;
use weft_proto::authz::{Action, Authorization, DefaultPolicy, Policy};

/// A policy and, when a rule matched, which (its index in `rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub policy: usize,
    pub rule: Option<usize>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A DENY policy's rule matched.
    Denied(Hit),
    /// ALLOW policies apply and none matched (the first is named).
    NotAllowed(Hit),
    /// The default inbound policy refused it.
    Default(DefaultPolicy),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `None`: allowed.
    pub denial: Option<Denial>,
    /// The ALLOW policy and rule that let it through, when one did.
    pub allowed_by: Option<Hit>,
    /// The first AUDIT policy that matched.
    pub audit: Option<Hit>,
    /// What the dry-run policies would have done: a denial names one.
    pub dry_run: Option<DryRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    WouldDeny(Hit),
    WouldAllow(Hit),
    /// The default policy is `audit`: `deny` would have refused this.
    WouldDenyByDefault,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}

struct Compiled {
    rules: Vec<Rule>,
}

/// One workload's authorization, ready to evaluate.
pub struct Authorizer {
    policies: Vec<Policy>,
    compiled: Vec<Compiled>,
    default_policy: DefaultPolicy,
    server_ports: Vec<u16>,
    trust_domain: Option<String>,
    explain_denials: bool,
    any: bool,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").field("policies", &self.policies.len()).field("default_policy", &self.default_policy).finish()
    }
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer::new(&Authorization::default(), None).unwrap_or_else(|_| unreachable!("the empty authorization compiles"))
    }
}

impl Authorizer {
    /// Compiles every policy; one that cannot be enforced exactly is an
    /// error (the proxy refuses the config rather than enforce less).
    /// `trust_domain` is this mesh's, for `cluster-authenticated`.
    pub fn new(a: &Authorization, trust_domain: Option<&str>) -> Result<Authorizer, PolicyError> {
        let compiled = a
            .policies
            .iter()
            .map(|p| {
                let rules = p
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Rule::compile(r).map_err(|e| PolicyError::In { policy: format!("{} {}/{}", p.kind, p.namespace, p.name), rule: i, error: Box::new(e) }))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Compiled { rules })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Ok(Authorizer {
            any: !a.policies.is_empty() || a.default_policy != DefaultPolicy::AllUnauthenticated,
            policies: a.policies.clone(),
            compiled,
            default_policy: a.default_policy,
            server_ports: a.server_ports.clone(),
            trust_domain: trust_domain.map(str::to_string),
            explain_denials: a.explain_denials,
        })
    }

    /// Nothing to check: every request is allowed (the common case, one branch).
    pub fn is_open(&self) -> bool {
        !self.any
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn default_policy(&self) -> DefaultPolicy {
        self.default_policy
    }

    pub fn explain_denials(&self) -> bool {
        self.explain_denials
    }

    fn applies(&self, i: usize, port: u16) -> bool {
        let ports = &self.policies[i].ports;
        ports.is_empty() || ports.contains(&port)
    }

    fn first_match(&self, req: &Request<'_>, action: Action, dry_run: bool) -> (bool, Option<Hit>) {
        let tcp = if action == Action::Deny { Http2Tcp::Ignore } else { Http2Tcp::NeverMatch };
        let mut applicable = false;
        for (i, p) in self.policies.iter().enumerate() {
            if p.action != action || p.dry_run != dry_run || !self.applies(i, req.port) {
                continue;
            }
            applicable = true;
            if let Some(r) = self.compiled[i].rules.iter().position(|r| r.matches(req, tcp)) {
                return (true, Some(Hit { policy: i, rule: Some(r) }));
            }
        }
        (applicable, None)
    }

    /// The first applicable policy with `action` (for naming a refusal).
    fn first_applicable(&self, port: u16, action: Action, dry_run: bool) -> Option<usize> {
        (0..self.policies.len()).find(|&i| self.policies[i].action == action && self.policies[i].dry_run == dry_run && self.applies(i, port))
    }

    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut d = Decision { denial: None, allowed_by: None, audit: None, dry_run: None };
        if !self.any {
            return d;
        }
        if let (_, Some(hit)) = self.first_match(req, Action::Deny, false) {
            d.denial = Some(Denial::Denied(hit));
        } else {
            let (applicable, hit) = self.first_match(req, Action::Allow, false);
            if applicable {
                match hit {
                    Some(h) => d.allowed_by = Some(h),
                    None => {
                        let first = self.first_applicable(req.port, Action::Allow, false).unwrap_or(0);
                        d.denial = Some(Denial::NotAllowed(Hit { policy: first, rule: None }));
                    }
                }
            } else if !self.server_ports.contains(&req.port) && !self.default_allows(req) {
                d.denial = Some(Denial::Default(self.default_policy));
            }
        }
        d.audit = self.first_match(req, Action::Audit, false).1;
        d.dry_run = self.dry_run(req);
        d
    }

    fn default_allows(&self, req: &Request<'_>) -> bool {
        match self.default_policy {
            DefaultPolicy::AllUnauthenticated | DefaultPolicy::Audit => true,
            DefaultPolicy::AllAuthenticated => req.principal().is_some(),
            DefaultPolicy::ClusterAuthenticated => req.trust_domain().is_some() && req.trust_domain() == self.trust_domain.as_deref(),
            DefaultPolicy::Deny => false,
        }
    }

    fn dry_run(&self, req: &Request<'_>) -> Option<DryRun> {
        if let (_, Some(hit)) = self.first_match(req, Action::Deny, true) {
            return Some(DryRun::WouldDeny(hit));
        }
        match self.first_match(req, Action::Allow, true) {
            (true, Some(hit)) => return Some(DryRun::WouldAllow(hit)),
            (true, None) => {
                let first = self.first_applicable(req.port, Action::Allow, true).unwrap_or(0);
                return Some(DryRun::WouldDeny(Hit { policy: first, rule: None }));
            }
            (false, _) => {}
        }
        let enforced_allow = self.first_applicable(req.port, Action::Allow, false).is_some();
        (self.default_policy == DefaultPolicy::Audit && !enforced_allow && !self.server_ports.contains(&req.port)).then_some(DryRun::WouldDenyByDefault)
    }

    /// `kind ns/name`.
    pub fn name(&self, i: usize) -> String {
        let p = &self.policies[i];
        format!("{} {}/{}", p.kind, p.namespace, p.name)
    }

    /// A denial in words: which policy, which rule, and the reason
    /// (`principal cluster.local/ns/frontend/sa/web not in [...]`).
    pub fn explain(&self, req: &Request<'_>, denial: Denial) -> String {
        match denial {
            Denial::Denied(hit) => format!("{} rules[{}] matched (DENY)", self.name(hit.policy), hit.rule.unwrap_or(0)),
            Denial::NotAllowed(_) => {
                let mut parts = Vec::new();
                for (i, p) in self.policies.iter().enumerate() {
                    if p.action != Action::Allow || p.dry_run || !self.applies(i, req.port) {
                        continue;
                    }
                    if self.compiled[i].rules.is_empty() {
                        parts.push(format!("{} allows nothing", self.name(i)));
                    }
                    for (r, rule) in self.compiled[i].rules.iter().enumerate() {
                        if let Some(why) = rule.mismatch(req, Http2Tcp::NeverMatch) {
                            parts.push(format!("{} rules[{r}]: {why}", self.name(i)));
                        }
                    }
                }
                format!("no ALLOW policy matched: {}", parts.join("; "))
            }
            Denial::Default(p) => match p {
                DefaultPolicy::AllAuthenticated => "the default inbound policy all-authenticated needs a mesh identity".into(),
                DefaultPolicy::ClusterAuthenticated => format!(
                    "the default inbound policy cluster-authenticated needs a mesh identity of trust domain {}",
                    self.trust_domain.as_deref().unwrap_or("?")
                ),
                other => format!("the default inbound policy is {}", other.as_str()),
            },
        }
    }

    /// Rule `i` of policy `p`, compiled (for `weft authz check`).
    pub fn rule(&self, policy: usize, rule: usize) -> Option<&Rule> {
        self.compiled.get(policy)?.rules.get(rule)
    }
}

#[cfg(test)]
mod tests;
