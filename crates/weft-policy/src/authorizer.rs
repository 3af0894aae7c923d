//! The decision: a workload's policies compiled once, asked once per
//! request (or TCP connection), in Istio's order: a matching DENY refuses;
//! then, if any ALLOW policy applies, one must match; with none, Linkerd's
//! default inbound policy decides on ports no `Server` covers. AUDIT
//! policies and dry-run ones are evaluated on the side and only reported.
//!
//! The allow path allocates nothing: a [`Decision`] is indices. Words are
//! built only for a denial ([`Authorizer::explain`]).
//!
//! What a rule says about who calls (principals, namespaces, addresses) is
//! the same for every request of one caller, so it is decided once per
//! caller ([`Authorizer::prefilter`], kept by the proxy per connection): a
//! request is then checked only against the rules that caller could match.
//! [`Authorizer::evaluate`] is the same decision without a kept prefilter.

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
    /// Where this policy's rules start in a [`Prefilter`].
    offset: usize,
}

/// The rules one caller (identity and address) could match, by what the
/// rules say about callers alone. Exact: a rule left out cannot match any
/// request of that caller. Valid for the authorizer that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefilter {
    authorizer: usize,
    bits: Vec<u64>,
    /// Policies with at least one candidate rule (most have none for a given caller).
    policies: Vec<bool>,
}

impl Prefilter {
    fn has(&self, i: usize) -> bool {
        self.bits.get(i / 64).is_some_and(|b| b & (1 << (i % 64)) != 0)
    }

    /// Every rule a candidate (what a prefilter must never change the decision from).
    #[cfg(test)]
    pub(crate) fn all(a: &Authorizer) -> Prefilter {
        Prefilter { authorizer: a.id(), bits: vec![u64::MAX; a.rule_count.div_ceil(64)], policies: vec![true; a.policies.len()] }
    }

    /// Made by this authorizer (and so valid for it)?
    pub fn is_for(&self, a: &Authorizer) -> bool {
        self.authorizer == a.id()
    }
}

/// A connection's prefilter, made on its first request and remade only
/// when the config (the authorizer) changes.
#[derive(Debug, Default)]
pub struct PrefilterCache(std::sync::Mutex<Option<std::sync::Arc<Prefilter>>>);

impl Clone for PrefilterCache {
    /// A copy starts empty: it may be used for another caller.
    fn clone(&self) -> Self {
        PrefilterCache::default()
    }
}

impl PrefilterCache {
    /// The caller's prefilter for `a`, made now if there is none for it.
    pub fn get(&self, a: &Authorizer, caller: &Request<'_>) -> std::sync::Arc<Prefilter> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(p) if p.is_for(a) => p.clone(),
            _ => {
                let p = std::sync::Arc::new(a.prefilter(caller));
                *slot = Some(p.clone());
                p
            }
        }
    }
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
    rule_count: usize,
    id: usize,
    /// The policies of each kind, in order: DENY, ALLOW, AUDIT, dry-run DENY, dry-run ALLOW.
    lists: [Vec<usize>; 5],
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
        let mut offset = 0;
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
                let c = Compiled { offset, rules };
                offset += c.rules.len();
                Ok(c)
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let mut lists: [Vec<usize>; 5] = Default::default();
        for (i, p) in a.policies.iter().enumerate() {
            lists[list_of(p.action, p.dry_run)].push(i);
        }
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Ok(Authorizer {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rule_count: offset,
            lists,
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

    /// Identifies this authorizer for the prefilters it makes (never reused,
    /// unlike an address).
    fn id(&self) -> usize {
        self.id
    }

    /// The rules `caller` could match, judged by their sources alone (see [`Prefilter`]).
    pub fn prefilter(&self, caller: &Request<'_>) -> Prefilter {
        let mut bits = vec![0u64; self.rule_count.div_ceil(64)];
        let mut policies = vec![false; self.compiled.len()];
        for (p, c) in self.compiled.iter().enumerate() {
            for (r, rule) in c.rules.iter().enumerate() {
                if rule.caller_may_match(caller) {
                    let i = c.offset + r;
                    bits[i / 64] |= 1 << (i % 64);
                    policies[p] = true;
                }
            }
        }
        Prefilter { authorizer: self.id(), bits, policies }
    }

    fn first_match(&self, pre: &Prefilter, req: &Request<'_>, action: Action, dry_run: bool) -> (bool, Option<Hit>) {
        let tcp = if action == Action::Deny { Http2Tcp::Ignore } else { Http2Tcp::NeverMatch };
        let mut applicable = false;
        for &i in &self.lists[list_of(action, dry_run)] {
            if !self.applies(i, req.port) {
                continue;
            }
            applicable = true;
            if !pre.policies.get(i).copied().unwrap_or(false) {
                continue;
            }
            let c = &self.compiled[i];
            if let Some(r) = c.rules.iter().enumerate().position(|(r, rule)| pre.has(c.offset + r) && rule.matches(req, tcp)) {
                return (true, Some(Hit { policy: i, rule: Some(r) }));
            }
        }
        (applicable, None)
    }

    /// The first applicable policy with `action` (for naming a refusal).
    fn first_applicable(&self, port: u16, action: Action, dry_run: bool) -> Option<usize> {
        self.lists[list_of(action, dry_run)].iter().copied().find(|&i| self.applies(i, port))
    }

    /// The decision for one request or connection.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        if !self.any {
            return Decision { denial: None, allowed_by: None, audit: None, dry_run: None };
        }
        self.evaluate_with(&self.prefilter(req), req)
    }

    /// The decision, with the caller's prefilter made before (per connection).
    pub fn evaluate_with(&self, pre: &Prefilter, req: &Request<'_>) -> Decision {
        let mut d = Decision { denial: None, allowed_by: None, audit: None, dry_run: None };
        if !self.any {
            return d;
        }
        debug_assert!(pre.is_for(self), "a prefilter of another authorizer");
        if let (_, Some(hit)) = self.first_match(pre, req, Action::Deny, false) {
            d.denial = Some(Denial::Denied(hit));
        } else {
            let (applicable, hit) = self.first_match(pre, req, Action::Allow, false);
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
        d.audit = self.first_match(pre, req, Action::Audit, false).1;
        d.dry_run = self.dry_run(pre, req);
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

    fn dry_run(&self, pre: &Prefilter, req: &Request<'_>) -> Option<DryRun> {
        if let (_, Some(hit)) = self.first_match(pre, req, Action::Deny, true) {
            return Some(DryRun::WouldDeny(hit));
        }
        match self.first_match(pre, req, Action::Allow, true) {
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

/// The index of a policy kind in `Authorizer::lists`.
fn list_of(action: Action, dry_run: bool) -> usize {
    match (action, dry_run) {
        (Action::Deny, false) => 0,
        (Action::Allow, false) => 1,
        (Action::Audit, _) => 2,
        (Action::Deny, true) => 3,
        (Action::Allow, true) => 4,
    }
}

#[cfg(test)]
mod tests;
