//! The sidecar a meshed pod gets: the iptables init container, the proxy
//! (a native sidecar, or a first container that holds the app until it is
//! ready on clusters before 1.29), its volumes and annotations. One function,
//! [`inject_template`], rewrites a pod template in place; `weft inject`, the
//! admission webhook and `weft dev` all call it, so they cannot disagree.
//!
//! The pod template is handled as JSON, not as typed Kubernetes objects:
//! every field weft does not touch (and every field a newer Kubernetes adds)
//! passes through as it was.

use crate::probes;
use crate::rules::{self, Decision, Marks, Mode};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const PROXY_CONTAINER: &str = "weft-proxy";
pub const INIT_CONTAINER: &str = "weft-init";
/// The proxy's health port: `/healthz/ready` and the rewritten app probes
/// (`/app-health/CONTAINER/livez|readyz|startupz`). Never intercepted.
pub const HEALTH_PORT: u16 = 15020;
/// Where Prometheus scrapes the proxy (`/stats/prometheus`).
pub const METRICS_PORT: u16 = 15090;
pub const PROXY_UID: u32 = 1337;
/// The ServiceAccount token audience the controller accepts.
pub const TOKEN_AUDIENCE: &str = "weft";
/// The ConfigMap holding the mesh root in every namespace.
pub const ROOT_CONFIG_MAP: &str = "weft-ca-root-cert";

/// Mesh-wide defaults for what is injected (`weft install --set` / `-f values.yaml` set them).
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    pub proxy_image: String,
    pub controller: String,
    pub trust_domain: String,
    pub cluster: String,
    /// Native sidecars (Kubernetes >= 1.29): the proxy as an init container with `restartPolicy: Always`.
    pub native_sidecar: bool,
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    pub log_level: String,
}

impl Default for Values {
    fn default() -> Self {
        Values {
            proxy_image: format!("ghcr.io/weft-mesh/weft-proxy:{}", env!("CARGO_PKG_VERSION")),
            controller: "weft-controller.weft-system.svc:15012".into(),
            trust_domain: "cluster.local".into(),
            cluster: "Kubernetes".into(),
            native_sidecar: true,
            cpu_request: "10m".into(),
            memory_request: "20Mi".into(),
            cpu_limit: None,
            memory_limit: Some("256Mi".into()),
            log_level: "info".into(),
        }
    }
}

/// Why a template could not be injected; `weft inject` passes the document
/// through unchanged and says this, the webhook admits the pod unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    #[error("{0} is not a mapping")]
    NotAMapping(&'static str),
    #[error("spec.containers is missing or empty")]
    NoContainers,
    #[error("annotation {key}: {reason}")]
    Annotation { key: String, reason: String },
    #[error("container {container}: {reason}")]
    Probe { container: String, reason: String },
}

/// Reads a string map (labels, annotations); scalars other than strings are
/// written as YAML users mean them (`version: 1`).
pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(m)) = v {
        for (k, v) in m {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            out.insert(k.clone(), s);
        }
    }
    out
}

/// True when a pod spec already carries weft's proxy.
pub fn already_injected(template: &Value) -> bool {
    let annotated = template.pointer("/metadata/annotations").and_then(|a| a.get(rules::STATUS_ANNOTATION)).is_some();
    let named = ["/spec/containers", "/spec/initContainers"].iter().any(|p| {
        template.pointer(p).and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER)))
    });
    annotated || named
}

/// Injects the sidecar into a pod template (`{metadata, spec}`) when the
/// rules say so, and returns the decision. `workload` names the Deployment
/// (or the pod) for metrics; `namespace` is the namespace's labels and annotations.
pub fn inject_template(template: &mut Value, mode: Mode, namespace: &Marks, workload: &str, values: &Values) -> Result<Decision, InjectError> {
    if !template.is_object() {
        return Err(InjectError::NotAMapping("the pod template"));
    }
    let labels = string_map(template.pointer("/metadata/labels"));
    let annotations = string_map(template.pointer("/metadata/annotations"));
    let host_network = template.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
    let decision = rules::decide(mode, namespace, &Marks { labels: Some(&labels), annotations: Some(&annotations) }, already_injected(template), host_network);
    if !decision.inject() {
        return Ok(decision);
    }
    let opts = PodOptions::read(&annotations, values)?;
    let spec = template.get_mut("spec").and_then(Value::as_object_mut).ok_or(InjectError::NotAMapping("spec"))?;
    let containers = spec.get_mut("containers").and_then(Value::as_array_mut).filter(|c| !c.is_empty()).ok_or(InjectError::NoContainers)?;
    let app_containers: Vec<String> = containers.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from)).collect();
    let mut ports: Vec<u16> = Vec::new();
    for c in containers.iter() {
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            let tcp = p.get("protocol").and_then(Value::as_str).is_none_or(|p| p == "TCP");
            if let (Some(n), true) = (p.get("containerPort").and_then(Value::as_u64), tcp) {
                if let Ok(n) = u16::try_from(n) {
                    if !ports.contains(&n) && !opts.exclude_inbound.contains(&n) {
                        ports.push(n);
                    }
                }
            }
        }
    }
    let app_probes = if opts.rewrite_probes { probes::rewrite(containers)? } else { BTreeMap::new() };

    let init = init_container(values, &opts);
    let proxy = proxy_container(values, &opts, workload, &ports, &app_probes);
    if opts.native_sidecar {
        let inits = spec.entry("initContainers").or_insert_with(|| Value::Array(vec![]));
        let inits = inits.as_array_mut().ok_or(InjectError::NotAMapping("spec.initContainers"))?;
        inits.splice(0..0, [init, proxy]);
    } else {
        if let Some(c) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            c.insert(0, proxy);
        }
        let inits = spec.entry("initContainers").or_insert_with(|| Value::Array(vec![]));
        let inits = inits.as_array_mut().ok_or(InjectError::NotAMapping("spec.initContainers"))?;
        inits.insert(0, init);
    }
    let volumes = spec.entry("volumes").or_insert_with(|| Value::Array(vec![]));
    let volumes = volumes.as_array_mut().ok_or(InjectError::NotAMapping("spec.volumes"))?;
    volumes.extend(pod_volumes());

    let annotations = annotations_mut(template)?;
    let status = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "initContainers": if opts.native_sidecar { vec![INIT_CONTAINER, PROXY_CONTAINER] } else { vec![INIT_CONTAINER] },
        "containers": if opts.native_sidecar { vec![] } else { vec![PROXY_CONTAINER] },
        "volumes": ["weft-token", "weft-ca-root", "weft-podinfo", "weft-state"],
    });
    annotations.insert(rules::STATUS_ANNOTATION.into(), Value::String(status.to_string()));
    if let Some(first) = app_containers.first() {
        // `kubectl logs` / `kubectl exec` keep going to the app, not the proxy.
        annotations.entry("kubectl.kubernetes.io/default-container").or_insert_with(|| Value::String(first.clone()));
        annotations.entry("kubectl.kubernetes.io/default-logs-container").or_insert_with(|| Value::String(first.clone()));
    }
    // An app that already asks to be scraped keeps its own target.
    if !annotations.keys().any(|k| k.starts_with("prometheus.io/")) {
        annotations.insert("prometheus.io/scrape".into(), "true".into());
        annotations.insert("prometheus.io/port".into(), METRICS_PORT.to_string().into());
        annotations.insert("prometheus.io/path".into(), "/stats/prometheus".into());
    }
    Ok(decision)
}

/// The template's `metadata.annotations`, created when absent or null.
fn annotations_mut(template: &mut Value) -> Result<&mut Map<String, Value>, InjectError> {
    let t = template.as_object_mut().ok_or(InjectError::NotAMapping("the pod template"))?;
    let metadata = t.entry("metadata").or_insert_with(|| json!({}));
    if metadata.is_null() {
        *metadata = json!({});
    }
    let metadata = metadata.as_object_mut().ok_or(InjectError::NotAMapping("metadata"))?;
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if annotations.is_null() {
        *annotations = json!({});
    }
    annotations.as_object_mut().ok_or(InjectError::NotAMapping("metadata.annotations"))
}

/// What a pod's annotations change about its sidecar.
#[derive(Debug, Clone, PartialEq, Default)]
struct PodOptions {
    exclude_inbound: Vec<u16>,
    exclude_outbound: Vec<u16>,
    exclude_cidrs: Vec<String>,
    cpu_request: String,
    memory_request: String,
    cpu_limit: Option<String>,
    memory_limit: Option<String>,
    log_level: String,
    native_sidecar: bool,
    rewrite_probes: bool,
}

/// Each setting's annotations, weft's first, then Istio's, then Linkerd's.
const EXCLUDE_INBOUND: &[&str] = &["weft.dev/exclude-inbound-ports", "traffic.sidecar.istio.io/excludeInboundPorts", "config.linkerd.io/skip-inbound-ports"];
const EXCLUDE_OUTBOUND: &[&str] = &["weft.dev/exclude-outbound-ports", "traffic.sidecar.istio.io/excludeOutboundPorts", "config.linkerd.io/skip-outbound-ports"];
const EXCLUDE_CIDRS: &[&str] = &["weft.dev/exclude-outbound-cidrs", "traffic.sidecar.istio.io/excludeOutboundIPRanges", "config.linkerd.io/skip-subnets"];
const CPU_REQUEST: &[&str] = &["weft.dev/proxy-cpu-request", "sidecar.istio.io/proxyCPU", "config.linkerd.io/proxy-cpu-request"];
const MEMORY_REQUEST: &[&str] = &["weft.dev/proxy-memory-request", "sidecar.istio.io/proxyMemory", "config.linkerd.io/proxy-memory-request"];
const CPU_LIMIT: &[&str] = &["weft.dev/proxy-cpu-limit", "sidecar.istio.io/proxyCPULimit", "config.linkerd.io/proxy-cpu-limit"];
const MEMORY_LIMIT: &[&str] = &["weft.dev/proxy-memory-limit", "sidecar.istio.io/proxyMemoryLimit", "config.linkerd.io/proxy-memory-limit"];
const LOG_LEVEL: &[&str] = &["weft.dev/proxy-log-level", "sidecar.istio.io/logLevel", "config.linkerd.io/proxy-log-level"];
const NATIVE: &[&str] = &["weft.dev/native-sidecar", "sidecar.istio.io/nativeSidecar"];
const REWRITE_PROBES: &[&str] = &["weft.dev/rewrite-app-probes", "sidecar.istio.io/rewriteAppHTTPProbers"];

fn first<'a>(annotations: &'a BTreeMap<String, String>, keys: &[&'static str]) -> Option<(&'static str, &'a str)> {
    keys.iter().find_map(|k| annotations.get(*k).map(|v| (*k, v.trim())))
}

impl PodOptions {
    fn read(a: &BTreeMap<String, String>, values: &Values) -> Result<PodOptions, InjectError> {
        let bad = |key: &str, reason: String| InjectError::Annotation { key: key.to_string(), reason };
        let ports = |keys| -> Result<Vec<u16>, InjectError> {
            match first(a, keys) {
                Some((k, v)) => parse_ports(v).map_err(|r| bad(k, r)),
                None => Ok(vec![]),
            }
        };
        let quantity = |keys, default: Option<&String>| -> Result<Option<String>, InjectError> {
            match first(a, keys) {
                Some((k, v)) => check_quantity(v).map(|()| Some(v.to_string())).map_err(|r| bad(k, r)),
                None => Ok(default.cloned()),
            }
        };
        let flag = |keys, default: bool| -> Result<bool, InjectError> {
            match first(a, keys) {
                Some((_, "true")) => Ok(true),
                Some((_, "false")) => Ok(false),
                Some((k, v)) => Err(bad(k, format!("{v:?} is not \"true\" or \"false\""))),
                None => Ok(default),
            }
        };
        let mut exclude_cidrs = Vec::new();
        if let Some((k, v)) = first(a, EXCLUDE_CIDRS) {
            for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                check_cidr(c).map_err(|r| bad(k, r))?;
                exclude_cidrs.push(c.to_string());
            }
        }
        let log_level = match first(a, LOG_LEVEL) {
            Some((k, v)) => {
                let ok = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "_=,:".contains(c));
                if !ok {
                    return Err(bad(k, format!("{v:?} is not a log level (info, debug, weft_proxy=debug)")));
                }
                v.to_string()
            }
            None => values.log_level.clone(),
        };
        Ok(PodOptions {
            exclude_inbound: ports(EXCLUDE_INBOUND)?,
            exclude_outbound: ports(EXCLUDE_OUTBOUND)?,
            exclude_cidrs,
            cpu_request: quantity(CPU_REQUEST, Some(&values.cpu_request))?.unwrap_or_default(),
            memory_request: quantity(MEMORY_REQUEST, Some(&values.memory_request))?.unwrap_or_default(),
            cpu_limit: quantity(CPU_LIMIT, values.cpu_limit.as_ref())?,
            memory_limit: quantity(MEMORY_LIMIT, values.memory_limit.as_ref())?,
            log_level,
            native_sidecar: flag(NATIVE, values.native_sidecar)?,
            rewrite_probes: flag(REWRITE_PROBES, true)?,
        })
    }
}

/// `8080,9090`, and Linkerd's ranges `4000-4010` (at most 1,000 ports per range).
pub fn parse_ports(v: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{s:?} is not a port number 1-65535"));
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (port(lo)?, port(hi)?);
                if lo > hi || hi - lo >= 1000 {
                    return Err(format!("range {part:?} must go up, by at most 1000 ports"));
                }
                out.extend(lo..=hi);
            }
            None => out.push(port(part)?),
        }
    }
    Ok(out)
}

/// A Kubernetes resource quantity (`100m`, `0.5`, `128Mi`, `1G`).
pub fn check_quantity(v: &str) -> Result<(), String> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &v[digits.len()..];
    let number_ok = !digits.is_empty() && digits.parse::<f64>().is_ok_and(|n| n >= 0.0);
    let suffix_ok = matches!(suffix, "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei");
    if number_ok && suffix_ok {
        Ok(())
    } else {
        Err(format!("{v:?} is not a resource quantity (100m, 0.5, 128Mi)"))
    }
}

fn check_cidr(c: &str) -> Result<(), String> {
    let (ip, len) = c.split_once('/').unwrap_or((c, ""));
    let max = match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return Err(format!("{c:?} is not an address range (10.0.0.0/8)")),
    };
    if len.is_empty() || len.parse::<u8>().is_ok_and(|l| l <= max) {
        Ok(())
    } else {
        Err(format!("{c:?} has a bad prefix length"))
    }
}

fn join(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

fn init_container(values: &Values, opts: &PodOptions) -> Value {
    let mut args = vec!["init".to_string(), "--proxy-uid".into(), PROXY_UID.to_string()];
    let mut inbound = vec![HEALTH_PORT];
    inbound.extend(&opts.exclude_inbound);
    args.extend(["--exclude-inbound-ports".into(), join(&inbound)]);
    if !opts.exclude_outbound.is_empty() {
        args.extend(["--exclude-outbound-ports".into(), join(&opts.exclude_outbound)]);
    }
    if !opts.exclude_cidrs.is_empty() {
        args.extend(["--exclude-outbound-cidrs".into(), opts.exclude_cidrs.join(",")]);
    }
    json!({
        "name": INIT_CONTAINER,
        "image": values.proxy_image,
        "args": args,
        "resources": { "requests": { "cpu": "10m", "memory": "10Mi" }, "limits": { "cpu": "100m", "memory": "50Mi" } },
        // iptables needs NET_ADMIN and NET_RAW, as root, and nothing else.
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": { "add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"] },
            "privileged": false,
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        },
    })
}

fn field_env(name: &str, path: &str) -> Value {
    json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } })
}

fn proxy_container(values: &Values, opts: &PodOptions, workload: &str, ports: &[u16], app_probes: &BTreeMap<String, Value>) -> Value {
    let mut args: Vec<String> = [
        "run",
        "--controller",
        &values.controller,
        "--proxy-id",
        "$(POD_NAME).$(POD_NAMESPACE)",
        "--workload",
        workload,
        "--namespace",
        "$(POD_NAMESPACE)",
        "--service-account",
        "$(SERVICE_ACCOUNT)",
        "--address",
        "$(POD_IP)",
        "--labels-file",
        "/etc/weft/pod/labels",
        "--trust-domain",
        &values.trust_domain,
        "--cluster-id",
        &values.cluster,
        "--token-file",
        "/var/run/secrets/weft/tokens/token",
        "--ca-roots",
        "/var/run/secrets/weft/ca/root-cert.pem",
        "--state-dir",
        "/var/lib/weft",
        "--health-listen",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("0.0.0.0:{HEALTH_PORT}"));
    if !ports.is_empty() {
        args.extend(["--ports".into(), join(ports)]);
    }
    let mut env = vec![field_env("POD_NAME", "metadata.name"), field_env("POD_NAMESPACE", "metadata.namespace"), field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"), field_env("POD_IP", "status.podIP"), json!({ "name": "WEFT_LOG", "value": opts.log_level })];
    if !app_probes.is_empty() {
        env.push(json!({ "name": probes::ENV, "value": Value::Object(app_probes.clone().into_iter().collect()).to_string() }));
    }
    let mut limits = Map::new();
    if let Some(c) = &opts.cpu_limit {
        limits.insert("cpu".into(), c.clone().into());
    }
    if let Some(m) = &opts.memory_limit {
        limits.insert("memory".into(), m.clone().into());
    }
    let mut resources = json!({ "requests": { "cpu": opts.cpu_request, "memory": opts.memory_request } });
    if !limits.is_empty() {
        resources["limits"] = Value::Object(limits);
    }
    let ready = json!({ "httpGet": { "path": "/healthz/ready", "port": HEALTH_PORT }, "periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 30 });
    let mut c = json!({
        "name": PROXY_CONTAINER,
        "image": values.proxy_image,
        "args": args,
        "env": env,
        "ports": [
            { "name": "weft-metrics", "containerPort": METRICS_PORT, "protocol": "TCP" },
            { "name": "weft-health", "containerPort": HEALTH_PORT, "protocol": "TCP" },
        ],
        "readinessProbe": ready,
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": true,
            "runAsUser": PROXY_UID,
        },
        "volumeMounts": [
            { "name": "weft-token", "mountPath": "/var/run/secrets/weft/tokens", "readOnly": true },
            { "name": "weft-ca-root", "mountPath": "/var/run/secrets/weft/ca", "readOnly": true },
            { "name": "weft-podinfo", "mountPath": "/etc/weft/pod", "readOnly": true },
            { "name": "weft-state", "mountPath": "/var/lib/weft" },
        ],
    });
    if opts.native_sidecar {
        // The app's containers start once this probe passes: they never run without the mesh.
        c["restartPolicy"] = "Always".into();
        c["startupProbe"] = json!({ "httpGet": { "path": "/healthz/ready", "port": HEALTH_PORT }, "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600 });
    } else {
        // Before native sidecars: the kubelet starts containers in order and waits for
        // each postStart, so the app starts after the proxy is ready.
        c["lifecycle"] = json!({ "postStart": { "exec": { "command": ["weft-proxy", "wait", "--timeout", "120s"] } } });
    }
    c
}

fn pod_volumes() -> Vec<Value> {
    vec![
        json!({ "name": "weft-token", "projected": { "sources": [ { "serviceAccountToken": { "audience": TOKEN_AUDIENCE, "expirationSeconds": 43200, "path": "token" } } ] } }),
        json!({ "name": "weft-ca-root", "configMap": { "name": ROOT_CONFIG_MAP } }),
        json!({ "name": "weft-podinfo", "downwardAPI": { "items": [ { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } }, { "path": "annotations", "fieldRef": { "fieldPath": "metadata.annotations" } } ] } }),
        json!({ "name": "weft-state", "emptyDir": { "medium": "Memory", "sizeLimit": "16Mi" } }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: Value) -> Value {
        json!({
            "metadata": { "labels": { "app": "reviews" }, "annotations": annotations },
            "spec": { "containers": [ { "name": "app", "image": "reviews:1", "ports": [ { "containerPort": 9080 }, { "containerPort": 53, "protocol": "UDP" } ] } ] }
        })
    }

    #[test]
    fn a_pod_gets_init_proxy_volumes_and_annotations() {
        let mut p = pod(json!({}));
        let d = inject_template(&mut p, Mode::Explicit, &Marks::default(), "reviews", &Values::default()).unwrap();
        assert!(d.inject());
        let inits = p["spec"]["initContainers"].as_array().unwrap();
        assert_eq!(inits[0]["name"], INIT_CONTAINER);
        assert_eq!(inits[1]["name"], PROXY_CONTAINER);
        assert_eq!(inits[1]["restartPolicy"], "Always");
        let args: Vec<&str> = inits[1]["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let ports = args.iter().position(|a| *a == "--ports").unwrap();
        assert_eq!(args[ports + 1], "9080", "UDP ports are not the proxy's");
        assert_eq!(p["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"], "app");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 4);
        assert!(already_injected(&p));
        let again = inject_template(&mut p.clone(), Mode::Explicit, &Marks::default(), "reviews", &Values::default()).unwrap();
        assert_eq!(again, Decision::Skip("already injected"));
    }

    #[test]
    fn annotations_from_istio_and_linkerd_set_exclusions_and_resources() {
        let mut p = pod(json!({
            "traffic.sidecar.istio.io/excludeOutboundPorts": "3306, 5432",
            "config.linkerd.io/skip-inbound-ports": "4000-4002",
            "sidecar.istio.io/proxyMemoryLimit": "512Mi",
            "weft.dev/native-sidecar": "false",
        }));
        inject_template(&mut p, Mode::Explicit, &Marks::default(), "reviews", &Values::default()).unwrap();
        let init = &p["spec"]["initContainers"][0];
        let args: Vec<&str> = init["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(args.windows(2).any(|w| w == ["--exclude-outbound-ports", "3306,5432"]), "{args:?}");
        assert!(args.windows(2).any(|w| w == ["--exclude-inbound-ports", "15020,4000,4001,4002"]), "{args:?}");
        let proxy = &p["spec"]["containers"][0];
        assert_eq!(proxy["name"], PROXY_CONTAINER, "before native sidecars the proxy is the first container");
        assert_eq!(proxy["resources"]["limits"]["memory"], "512Mi");
        assert!(proxy.get("lifecycle").is_some());
    }

    #[test]
    fn bad_annotations_are_refused_with_the_key() {
        for (k, v) in [("traffic.sidecar.istio.io/excludeOutboundPorts", "3306,http"), ("sidecar.istio.io/proxyCPU", "lots"), ("weft.dev/exclude-outbound-cidrs", "10.0.0.0/33"), ("weft.dev/native-sidecar", "yes")] {
            let mut p = pod(json!({ k: v }));
            let before = p.clone();
            let e = inject_template(&mut p, Mode::Explicit, &Marks::default(), "reviews", &Values::default()).unwrap_err();
            assert!(matches!(&e, InjectError::Annotation { key, .. } if key == k), "{e}");
            assert_eq!(p, before, "nothing is changed on error");
        }
    }

    #[test]
    fn ports_parse_lists_and_ranges() {
        assert_eq!(parse_ports("80, 443,").unwrap(), vec![80, 443]);
        assert_eq!(parse_ports("10-12").unwrap(), vec![10, 11, 12]);
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("5-1").is_err());
        assert!(parse_ports("1-5000").is_err());
    }
}
