//! `weft inject` over a stream of manifests: finds the pod templates in
//! Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs
//! and `kind: List`, injects them, and leaves every other document as the
//! bytes it was, so `kubectl get deploy -o yaml | weft inject -f - | kubectl
//! apply -f -` changes nothing but the sidecar. A document that cannot be
//! parsed or injected is passed through unchanged, with a notice.

use crate::rules::{Marks, Mode};
use crate::sidecar::{self, Values};
use serde_json::Value;

/// What happened to one workload (or document), for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `deployment/reviews`, or `document 3` when the document has no name.
    pub target: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Skipped(String),
    /// Passed through unchanged because of this problem.
    Failed(String),
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Injected => write!(f, "{} injected", self.target),
            Outcome::Skipped(why) => write!(f, "{} skipped: {why}", self.target),
            Outcome::Failed(why) => write!(f, "{} left unchanged: {why}", self.target),
        }
    }
}

/// Where a kind keeps its pod template.
pub fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// The workload a pod belongs to, as metrics name it: the object's name, or for
/// a pod made by a Deployment (`reviews-v1-5d8f9c7b4-x2x9z`) the Deployment's.
pub fn workload_name(kind: &str, metadata: Option<&Value>) -> String {
    let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    if kind != "Pod" {
        return name.to_string();
    }
    let generate = metadata.and_then(|m| m.get("generateName")).and_then(Value::as_str).unwrap_or_default();
    let base = if generate.is_empty() { name } else { generate.trim_end_matches('-') };
    let hash = metadata.and_then(|m| m.pointer("/labels/pod-template-hash")).and_then(Value::as_str);
    match hash.and_then(|h| base.strip_suffix(h)).and_then(|b| b.strip_suffix('-')) {
        Some(deployment) if !generate.is_empty() => deployment.to_string(),
        _ => base.to_string(),
    }
}

/// Injects every workload in one parsed object (recursing into `kind: List`).
/// Returns whether anything changed.
pub fn inject_object(doc: &mut Value, values: &Values, notices: &mut Vec<Notice>, fallback: &str) -> bool {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind == "List" || (kind.ends_with("List") && doc.get("items").is_some()) {
        let mut changed = false;
        if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            for (i, item) in items.iter_mut().enumerate() {
                changed |= inject_object(item, values, notices, &format!("{fallback} item {}", i + 1));
            }
        }
        return changed;
    }
    let Some(pointer) = template_pointer(&kind) else { return false };
    let workload = workload_name(&kind, doc.get("metadata"));
    let target = if workload.is_empty() { fallback.to_string() } else { format!("{}/{workload}", kind.to_lowercase()) };
    let Some(template) = doc.pointer_mut(pointer) else {
        notices.push(Notice { target, outcome: Outcome::Failed(format!("no pod template at {pointer}")) });
        return false;
    };
    let mut injected = template.clone();
    match sidecar::inject_template(&mut injected, Mode::Explicit, &Marks::default(), &workload, values) {
        Ok(d) if d.inject() => {
            *template = injected;
            notices.push(Notice { target, outcome: Outcome::Injected });
            true
        }
        Ok(d) => {
            notices.push(Notice { target, outcome: Outcome::Skipped(d.reason().to_string()) });
            false
        }
        Err(e) => {
            notices.push(Notice { target, outcome: Outcome::Failed(e.to_string()) });
            false
        }
    }
}

/// One document of a YAML stream: its separator line (if any) and its text.
struct Document<'a> {
    separator: &'a str,
    body: &'a str,
}

/// Splits a YAML stream at `---` lines, keeping every byte.
fn documents(text: &str) -> Vec<Document<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sep = "";
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_sep = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") || bare.starts_with("---#");
        if is_sep {
            out.push(Document { separator: sep, body: &text[start..pos] });
            sep = &text[pos..pos + line.len()];
            start = pos + line.len();
        }
        pos += line.len();
    }
    out.push(Document { separator: sep, body: &text[start..] });
    out
}

fn is_blank(body: &str) -> bool {
    body.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "..."
    })
}

/// Injects every workload in a YAML (or JSON) stream; returns the new text
/// and what happened to each workload.
pub fn inject_stream(text: &str, values: &Values) -> (String, Vec<Notice>) {
    let mut out = String::with_capacity(text.len() * 2);
    let mut notices = Vec::new();
    for (i, doc) in documents(text).into_iter().enumerate() {
        out.push_str(doc.separator);
        if is_blank(doc.body) {
            out.push_str(doc.body);
            continue;
        }
        let label = format!("document {}", i + 1);
        let parsed: Result<Value, String> = serde_norway::from_str::<Value>(doc.body).map_err(|e| e.to_string());
        let mut value = match parsed {
            Ok(v) => v,
            Err(e) => {
                notices.push(Notice { target: label, outcome: Outcome::Failed(format!("not YAML weft can read: {e}")) });
                out.push_str(doc.body);
                continue;
            }
        };
        if !inject_object(&mut value, values, &mut notices, &label) {
            out.push_str(doc.body);
            continue;
        }
        let json = doc.body.trim_start().starts_with('{');
        let rendered = if json { serde_json::to_string_pretty(&value).map(|s| s + "\n").map_err(|e| e.to_string()) } else { serde_norway::to_string(&value).map_err(|e| e.to_string()) };
        match rendered {
            Ok(s) => out.push_str(&s),
            Err(e) => {
                notices.push(Notice { target: label, outcome: Outcome::Failed(format!("could not write the result: {e}")) });
                out.push_str(doc.body);
            }
        }
    }
    (out, notices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_every_byte() {
        let text = "# head\na: 1\n---\nb: 2\n--- # c\n\n...\n---\n";
        let joined: String = documents(text).iter().map(|d| format!("{}{}", d.separator, d.body)).collect();
        assert_eq!(joined, text);
        assert_eq!(documents(text).len(), 4);
    }

    #[test]
    fn pods_from_deployments_are_named_after_the_deployment() {
        let m = serde_json::json!({ "generateName": "reviews-v1-5d8f9c7b4-", "name": "reviews-v1-5d8f9c7b4-x2x9z", "labels": { "pod-template-hash": "5d8f9c7b4" } });
        assert_eq!(workload_name("Pod", Some(&m)), "reviews-v1");
        let j = serde_json::json!({ "generateName": "backup-28000000-" });
        assert_eq!(workload_name("Pod", Some(&j)), "backup-28000000");
        assert_eq!(workload_name("Pod", Some(&serde_json::json!({ "name": "solo" }))), "solo");
    }

    #[test]
    fn other_documents_and_unreadable_ones_pass_through() {
        let text = "apiVersion: v1\nkind: Service   # keep this comment\nmetadata: {name: a}\n---\nkind: [unclosed\n";
        let (out, notices) = inject_stream(text, &Values::default());
        assert_eq!(out, text);
        assert_eq!(notices.len(), 1);
        assert!(matches!(&notices[0].outcome, Outcome::Failed(m) if m.contains("not YAML")), "{notices:?}");
    }
}
