//! The mutating admission webhook's decision: an `AdmissionReview` v1 for a
//! Pod in, an `AdmissionReview` out, allowing the pod with a JSONPatch that
//! adds the sidecar when the injection rules say so. It never refuses a pod:
//! a pod it cannot patch is admitted unchanged (the outcome says why, for the
//! log and the failure counter), so the mesh cannot block a deploy unless the
//! user chose `failurePolicy: Fail`.

use crate::manifests::workload_name;
use crate::patch;
use crate::rules::{Marks, Mode};
use crate::sidecar::{self, Values};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A namespace's labels and annotations, as the webhook's caller knows them.
#[derive(Debug, Clone, Default)]
pub struct NamespaceMarks {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// What the webhook did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Skipped(String),
    /// Admitted unchanged because of this problem.
    Failed(String),
}

/// The request is not an AdmissionReview at all (answered 400, not admitted).
#[derive(Debug, thiserror::Error)]
#[error("not an AdmissionReview v1 request: {0}")]
pub struct BadReview(pub String);

/// Answers one AdmissionReview. `namespace` looks up a namespace's marks by name.
pub fn review(body: &[u8], namespace: impl Fn(&str) -> Option<NamespaceMarks>, values: &Values) -> Result<(Value, Outcome), BadReview> {
    let review: Value = serde_json::from_slice(body).map_err(|e| BadReview(e.to_string()))?;
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(BadReview("kind is not AdmissionReview".into()));
    }
    let api_version = review.get("apiVersion").and_then(Value::as_str).unwrap_or("admission.k8s.io/v1").to_string();
    let request = review.get("request").ok_or_else(|| BadReview("no request".into()))?;
    let uid = request.get("uid").and_then(Value::as_str).ok_or_else(|| BadReview("request.uid is missing".into()))?;
    let allow = |patch: Option<Vec<Value>>| {
        let mut response = json!({ "uid": uid, "allowed": true });
        if let Some(ops) = patch {
            let bytes = serde_json::to_vec(&ops).unwrap_or_default();
            response["patchType"] = "JSONPatch".into();
            response["patch"] = base64::engine::general_purpose::STANDARD.encode(bytes).into();
        }
        json!({ "apiVersion": api_version, "kind": "AdmissionReview", "response": response })
    };
    let kind = request.pointer("/kind/kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "Pod" || request.get("operation").and_then(Value::as_str).is_some_and(|op| op != "CREATE") {
        return Ok((allow(None), Outcome::Skipped(format!("{kind} {}: only pod creation is injected", request.get("operation").and_then(Value::as_str).unwrap_or("?")))));
    }
    let Some(pod) = request.get("object").filter(|o| o.is_object()) else {
        return Ok((allow(None), Outcome::Failed("request.object is not a pod".into())));
    };
    let ns_name = request.get("namespace").and_then(Value::as_str).or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str)).unwrap_or("default");
    let marks = namespace(ns_name).unwrap_or_default();
    let ns = Marks { labels: Some(&marks.labels), annotations: Some(&marks.annotations) };
    let mut injected = pod.clone();
    let workload = workload_name("Pod", pod.get("metadata"));
    match sidecar::inject_template(&mut injected, Mode::OptIn, &ns, &workload, values) {
        Ok(d) if d.inject() => Ok((allow(Some(patch::diff(pod, &injected))), Outcome::Injected)),
        Ok(d) => Ok((allow(None), Outcome::Skipped(d.reason().to_string()))),
        Err(e) => Ok((allow(None), Outcome::Failed(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pod: Value, ns: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": { "uid": "u-1", "kind": { "group": "", "version": "v1", "kind": "Pod" }, "namespace": ns, "operation": "CREATE", "object": pod }
        }))
        .unwrap()
    }

    fn enabled(name: &str) -> Option<NamespaceMarks> {
        (name == "prod").then(|| NamespaceMarks { labels: [("istio-injection".to_string(), "enabled".to_string())].into(), ..Default::default() })
    }

    #[test]
    fn a_pod_in_an_enabled_namespace_gets_a_patch() {
        let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [ { "name": "app", "image": "x" } ] } });
        let (out, outcome) = review(&request(pod.clone(), "prod"), enabled, &Values::default()).unwrap();
        assert_eq!(outcome, Outcome::Injected);
        assert_eq!(out["response"]["uid"], "u-1");
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let (out, outcome) = review(&request(pod, "other"), enabled, &Values::default()).unwrap();
        assert!(matches!(outcome, Outcome::Skipped(_)));
        assert!(out["response"].get("patch").is_none());
    }

    #[test]
    fn a_pod_that_cannot_be_patched_is_admitted_unchanged() {
        let pod = json!({ "metadata": { "name": "p", "annotations": { "sidecar.istio.io/proxyCPU": "lots" } }, "spec": { "containers": [ { "name": "app" } ] } });
        let (out, outcome) = review(&request(pod, "prod"), enabled, &Values::default()).unwrap();
        assert!(matches!(&outcome, Outcome::Failed(m) if m.contains("proxyCPU")), "{outcome:?}");
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("patch").is_none());
        assert!(review(b"{}", enabled, &Values::default()).is_err());
    }
}
