//! Which pods get a sidecar: one pure decision over the namespace's and the
//! pod's labels and annotations, shared by `weft inject`, the admission
//! webhook and `weft dev`. It reads weft's own markers and, for users
//! migrating, Istio's and Linkerd's.

use std::collections::BTreeMap;

/// Label on a namespace: `enabled` meshes its pods, `disabled` never does.
pub const NAMESPACE_LABEL: &str = "weft-injection";
/// Istio's namespace label, read the same way.
pub const ISTIO_NAMESPACE_LABEL: &str = "istio-injection";
/// Per-pod switch, label or annotation, `"true"` / `"false"`.
pub const POD_SWITCH: &str = "weft.dev/inject";
/// Istio's per-pod switch, label or annotation.
pub const ISTIO_POD_SWITCH: &str = "sidecar.istio.io/inject";
/// Linkerd's annotation, on the namespace or the pod: `enabled` / `disabled`.
pub const LINKERD_INJECT: &str = "linkerd.io/inject";
/// Set on every injected pod (what was added); its presence makes injection a no-op.
pub const STATUS_ANNOTATION: &str = "weft.dev/status";

/// Who asks: an explicit `weft inject` meshes everything not opted out; the
/// webhook and `weft dev` only what a namespace or pod opted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Explicit,
    OptIn,
}

/// The labels and annotations the decision reads.
#[derive(Debug, Clone, Default)]
pub struct Marks<'a> {
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Marks<'a> {
    fn label(&self, k: &str) -> Option<&'a str> {
        self.labels.and_then(|m| m.get(k)).map(String::as_str)
    }
    fn annotation(&self, k: &str) -> Option<&'a str> {
        self.annotations.and_then(|m| m.get(k)).map(String::as_str)
    }
    /// A switch given as label or annotation (the annotation wins, as in Istio).
    fn switch(&self, k: &str) -> Option<&'a str> {
        self.annotation(k).or_else(|| self.label(k))
    }
}

/// What to do with one pod, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject(&'static str),
    Skip(&'static str),
}

impl Decision {
    pub fn inject(&self) -> bool {
        matches!(self, Decision::Inject(_))
    }
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Inject(r) | Decision::Skip(r) => r,
        }
    }
}

/// Decides for one pod. `already_injected` and `host_network` come from the pod spec.
pub fn decide(mode: Mode, namespace: &Marks, pod: &Marks, already_injected: bool, host_network: bool) -> Decision {
    if already_injected {
        return Decision::Skip("already injected");
    }
    if host_network {
        return Decision::Skip("the pod uses the host's network, whose traffic a sidecar cannot intercept");
    }
    for (key, off) in [(POD_SWITCH, "false"), (ISTIO_POD_SWITCH, "false"), (LINKERD_INJECT, "disabled")] {
        if pod.switch(key) == Some(off) {
            return Decision::Skip(match key {
                POD_SWITCH => "opted out (weft.dev/inject: \"false\")",
                ISTIO_POD_SWITCH => "opted out (sidecar.istio.io/inject: \"false\")",
                _ => "opted out (linkerd.io/inject: disabled)",
            });
        }
    }
    let pod_opt_in = pod.switch(POD_SWITCH) == Some("true") || pod.switch(ISTIO_POD_SWITCH) == Some("true") || pod.annotation(LINKERD_INJECT) == Some("enabled");
    if mode == Mode::Explicit {
        return Decision::Inject("asked for explicitly");
    }
    // A disabled namespace wins over everything but a pod's own opt-in (Istio's order).
    let ns_disabled = namespace.label(NAMESPACE_LABEL) == Some("disabled") || namespace.label(ISTIO_NAMESPACE_LABEL) == Some("disabled") || namespace.annotation(LINKERD_INJECT) == Some("disabled");
    if pod_opt_in {
        return Decision::Inject("the pod opted in");
    }
    if ns_disabled {
        return Decision::Skip("the namespace has injection disabled");
    }
    if namespace.label(NAMESPACE_LABEL) == Some("enabled") {
        return Decision::Inject("namespace label weft-injection=enabled");
    }
    if namespace.label(ISTIO_NAMESPACE_LABEL) == Some("enabled") {
        return Decision::Inject("namespace label istio-injection=enabled");
    }
    if namespace.annotation(LINKERD_INJECT) == Some("enabled") {
        return Decision::Inject("namespace annotation linkerd.io/inject: enabled");
    }
    Decision::Skip("neither the pod nor its namespace opted in")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn opt_in(ns_labels: &[(&str, &str)], ns_ann: &[(&str, &str)], pod_labels: &[(&str, &str)], pod_ann: &[(&str, &str)]) -> Decision {
        let (a, b, c, d) = (map(ns_labels), map(ns_ann), map(pod_labels), map(pod_ann));
        decide(Mode::OptIn, &Marks { labels: Some(&a), annotations: Some(&b) }, &Marks { labels: Some(&c), annotations: Some(&d) }, false, false)
    }

    #[test]
    fn namespaces_opt_in_by_weft_istio_or_linkerd_marks() {
        assert!(opt_in(&[("weft-injection", "enabled")], &[], &[], &[]).inject());
        assert!(opt_in(&[("istio-injection", "enabled")], &[], &[], &[]).inject());
        assert!(opt_in(&[], &[("linkerd.io/inject", "enabled")], &[], &[]).inject());
        assert!(!opt_in(&[], &[], &[], &[]).inject());
        // Linkerd's mark is an annotation; as a label it means nothing.
        assert!(!opt_in(&[("linkerd.io/inject", "enabled")], &[], &[], &[]).inject());
    }

    #[test]
    fn pods_opt_out_and_in_over_their_namespace() {
        let on = &[("weft-injection", "enabled")];
        assert_eq!(opt_in(on, &[], &[], &[("sidecar.istio.io/inject", "false")]), Decision::Skip("opted out (sidecar.istio.io/inject: \"false\")"));
        assert!(!opt_in(on, &[], &[("weft.dev/inject", "false")], &[]).inject());
        assert!(!opt_in(on, &[], &[], &[("linkerd.io/inject", "disabled")]).inject());
        assert!(opt_in(&[], &[], &[("sidecar.istio.io/inject", "true")], &[]).inject());
        assert!(opt_in(&[("istio-injection", "disabled")], &[], &[], &[("weft.dev/inject", "true")]).inject());
        assert!(!opt_in(&[("istio-injection", "disabled")], &[("linkerd.io/inject", "enabled")], &[], &[]).inject());
    }

    #[test]
    fn explicit_injection_still_honours_opt_outs_and_is_idempotent() {
        let none = Marks::default();
        let out = map(&[("weft.dev/inject", "false")]);
        assert!(decide(Mode::Explicit, &none, &none, false, false).inject());
        assert!(!decide(Mode::Explicit, &none, &Marks { labels: None, annotations: Some(&out) }, false, false).inject());
        assert_eq!(decide(Mode::Explicit, &none, &none, true, false), Decision::Skip("already injected"));
        assert!(!decide(Mode::Explicit, &none, &none, false, true).inject());
    }
}
