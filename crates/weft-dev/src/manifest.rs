//! What `weft dev up -f` reads: the Kubernetes objects it runs (Namespaces,
//! ServiceAccounts, Services, Deployments, StatefulSets, ReplicaSets, Pods)
//! and the mesh resources it hands to the controller untouched. The fields it
//! uses are type-checked, and a mistake names the file, the document and the
//! field; nothing is started unless every document reads.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a document came from: `FILE#N`, numbered from 0 as `weft analyze` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.file, self.document)
    }
}

#[derive(Debug, Clone, Default)]
pub struct NamespaceMarks {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    /// A number, or the name of a container port.
    pub target: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    pub cluster_ip: Option<String>,
    /// The document as written, applied to the controller with its ClusterIP filled in.
    pub doc: Value,
}

/// A Deployment, StatefulSet, ReplicaSet or bare Pod: what makes pods.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub replicas: u32,
    /// `{metadata, spec}` of the pods it makes.
    pub template: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub namespaces: BTreeMap<String, NamespaceMarks>,
    pub service_accounts: Vec<(String, String)>,
    pub services: Vec<Service>,
    pub workloads: Vec<Workload>,
    /// Mesh resources (and anything else the controller reads), as JSON documents.
    pub mesh: Vec<Value>,
    /// Kinds weft dev does not run (ConfigMaps, Ingresses, ...), said once each.
    pub ignored: Vec<String>,
}

fn bad(origin: &Origin, field: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{origin}: {field}: {why}")
}

fn string_map(origin: &Origin, v: Option<&Value>, field: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(bad(origin, &format!("{field}.{k}"), format!("must be a string, not {other}"))),
                };
                out.insert(k.clone(), s);
            }
        }
        Some(other) => return Err(bad(origin, field, format!("must be a mapping, not {other}"))),
    }
    Ok(out)
}

fn port_number(origin: &Origin, v: Option<&Value>, field: &str) -> anyhow::Result<u16> {
    v.and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0).ok_or_else(|| bad(origin, field, format!("must be a port number 1-65535, not {}", v.cloned().unwrap_or(Value::Null))))
}

/// Checks what the runtime reads of a pod template.
fn check_template(origin: &Origin, t: &Value, at: &str) -> anyhow::Result<()> {
    let spec = t.get("spec").filter(|s| s.is_object()).ok_or_else(|| bad(origin, &format!("{at}.spec"), "missing"))?;
    string_map(origin, t.pointer("/metadata/labels"), &format!("{at}.metadata.labels"))?;
    string_map(origin, t.pointer("/metadata/annotations"), &format!("{at}.metadata.annotations"))?;
    let containers = spec.get("containers").and_then(Value::as_array).filter(|c| !c.is_empty()).ok_or_else(|| bad(origin, &format!("{at}.spec.containers"), "must be a non-empty list"))?;
    for (i, c) in containers.iter().enumerate() {
        let f = format!("{at}.spec.containers[{i}]");
        c.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| bad(origin, &format!("{f}.name"), "must be a non-empty string"))?;
        c.get("image").and_then(Value::as_str).ok_or_else(|| bad(origin, &format!("{f}.image"), "must be a string"))?;
        for key in ["command", "args"] {
            if let Some(v) = c.get(key) {
                if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(bad(origin, &format!("{f}.{key}"), "must be a list of strings"));
                }
            }
        }
        for (j, p) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
            port_number(origin, p.get("containerPort"), &format!("{f}.ports[{j}].containerPort"))?;
        }
        for (j, e) in c.get("env").and_then(Value::as_array).into_iter().flatten().enumerate() {
            e.get("name").and_then(Value::as_str).ok_or_else(|| bad(origin, &format!("{f}.env[{j}].name"), "must be a string"))?;
            if let Some(v) = e.get("value") {
                if !v.is_string() {
                    return Err(bad(origin, &format!("{f}.env[{j}].value"), format!("must be a string, not {v} (quote it)")));
                }
            }
        }
    }
    Ok(())
}

impl Manifests {
    /// Adds one parsed document.
    pub fn add(&mut self, origin: Origin, doc: Value) -> anyhow::Result<()> {
        if doc.is_null() {
            return Ok(());
        }
        let kind = doc.get("kind").and_then(Value::as_str).ok_or_else(|| bad(&origin, "kind", "missing"))?.to_string();
        if kind == "List" {
            for item in doc.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
                self.add(origin.clone(), item)?;
            }
            return Ok(());
        }
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| bad(&origin, "metadata.name", "missing"))?.to_string();
        let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
        match kind.as_str() {
            "Namespace" => {
                let marks = NamespaceMarks { labels: string_map(&origin, doc.pointer("/metadata/labels"), "metadata.labels")?, annotations: string_map(&origin, doc.pointer("/metadata/annotations"), "metadata.annotations")? };
                self.namespaces.insert(name, marks);
                self.mesh.push(doc);
            }
            "ServiceAccount" => self.service_accounts.push((namespace, name)),
            "Service" => {
                let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
                let mut ports = Vec::new();
                for (i, p) in spec.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let port = port_number(&origin, p.get("port"), &format!("spec.ports[{i}].port"))?;
                    let target = p.get("targetPort").cloned().unwrap_or_else(|| Value::from(port));
                    if !(target.is_u64() || target.is_string()) {
                        return Err(bad(&origin, &format!("spec.ports[{i}].targetPort"), "must be a number or a port name"));
                    }
                    ports.push(ServicePort { name: p.get("name").and_then(Value::as_str).map(String::from), port, target });
                }
                let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).map(String::from);
                if let Some(ip) = &cluster_ip {
                    if ip != "None" && ip.parse::<std::net::Ipv4Addr>().is_err() {
                        return Err(bad(&origin, "spec.clusterIP", format!("{ip:?} is not an IPv4 address")));
                    }
                }
                let selector = string_map(&origin, spec.get("selector"), "spec.selector")?;
                self.services.push(Service { name, namespace, selector, ports, cluster_ip, doc });
            }
            "Deployment" | "StatefulSet" | "ReplicaSet" => {
                let replicas = match doc.pointer("/spec/replicas") {
                    None | Some(Value::Null) => 1,
                    Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| *n <= 64).ok_or_else(|| bad(&origin, "spec.replicas", format!("must be a number 0-64, not {v}")))?,
                };
                let template = doc.pointer("/spec/template").cloned().ok_or_else(|| bad(&origin, "spec.template", "missing"))?;
                check_template(&origin, &template, "spec.template")?;
                self.workloads.push(Workload { kind, name, namespace, replicas, template, origin });
            }
            "Pod" => {
                check_template(&origin, &doc, "")?;
                let template = serde_json::json!({ "metadata": doc.get("metadata").cloned().unwrap_or_default(), "spec": doc.get("spec").cloned().unwrap_or_default() });
                self.workloads.push(Workload { kind, name, namespace, replicas: 1, template, origin });
            }
            "DaemonSet" | "Job" | "CronJob" | "ReplicationController" => {
                return Err(bad(&origin, "kind", format!("{kind} is not run by weft dev (Deployments, StatefulSets, ReplicaSets and Pods are)")));
            }
            _ => {
                let group = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
                if group.contains('/') && !group.starts_with("apps/") && !group.starts_with("batch/") && !group.starts_with("networking.k8s.io/") {
                    self.mesh.push(doc);
                } else if !self.ignored.contains(&kind) {
                    self.ignored.push(kind);
                }
            }
        }
        Ok(())
    }

    /// Reads YAML or JSON text (several documents, `kind: List`), with the
    /// model's reader (bounded alias expansion). Mesh resources are validated
    /// as `weft analyze` validates them.
    pub fn add_text(&mut self, file: &str, text: &str) -> anyhow::Result<()> {
        let (docs, messages) = weft_model::load::split_documents(file, text);
        if let Some(m) = messages.first() {
            anyhow::bail!("{m}");
        }
        for (o, value) in docs {
            let origin = Origin { file: o.file.clone(), document: o.document };
            let before = self.mesh.len();
            self.add(origin, value)?;
            if self.mesh.len() > before {
                let mut bundle = weft_model::load::Bundle::default();
                weft_model::load::parse_value(o, self.mesh[before].clone(), &mut bundle);
                let errors: Vec<String> = bundle.messages.iter().filter(|m| m.severity == weft_model::diag::Severity::Error).map(|m| m.to_string()).collect();
                if !errors.is_empty() {
                    anyhow::bail!("{}", errors.join("\n"));
                }
            }
        }
        Ok(())
    }

    /// Reads files and directories (`*.yaml`, `*.yml`, `*.json`), `-` for stdin.
    pub fn read(paths: &[PathBuf]) -> anyhow::Result<Manifests> {
        let mut m = Manifests::default();
        for p in paths {
            if p.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
                m.add_text("stdin", &text)?;
                continue;
            }
            for f in weft_model::load::find_files(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))? {
                let text = std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                m.add_text(&f.display().to_string(), &text)?;
            }
        }
        m.check_references()?;
        Ok(m)
    }

    /// Names that must agree across documents.
    fn check_references(&self) -> anyhow::Result<()> {
        let mut seen = BTreeMap::new();
        for w in &self.workloads {
            if let Some(first) = seen.insert((w.namespace.clone(), w.name.clone(), w.kind.clone()), w.origin.clone()) {
                anyhow::bail!("{}: {} {}/{} is also defined at {first}", w.origin, w.kind, w.namespace, w.name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_name_the_file_document_and_field() {
        let mut m = Manifests::default();
        let e = m.add_text("a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: two\n  template: {spec: {containers: [{name: a, image: x}]}}\n").unwrap_err();
        assert_eq!(e.to_string(), "a.yaml#1: spec.replicas: must be a number 0-64, not \"two\"");
        let e = m.add_text("b.yaml", "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: x, env: [{name: N, value: 3}]}]}\n").unwrap_err();
        assert!(e.to_string().starts_with("b.yaml#0: .spec.containers[0].env[0].value: must be a string"), "{e}");
    }

    #[test]
    fn kinds_are_sorted_into_what_runs_and_what_the_controller_reads() {
        let mut m = Manifests::default();
        m.add_text("a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: {istio-injection: enabled}}\n---\napiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec: {service: s, backends: [{service: a, weight: 1}]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap();
        assert_eq!(m.namespaces["n"].labels["istio-injection"], "enabled");
        assert_eq!(m.mesh.len(), 2, "the namespace and the TrafficSplit go to the controller");
        assert_eq!(m.ignored, vec!["ConfigMap".to_string()]);
    }
}
