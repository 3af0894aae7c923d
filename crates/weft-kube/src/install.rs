//! What `weft install` prints for `kubectl apply -f -`: the CRDs (separately
//! appliable, as Linkerd splits them), and the control plane: namespace,
//! ServiceAccount, least-privilege RBAC, the CA secret, the controller
//! Deployment (two spread replicas and a PodDisruptionBudget with `ha`), its
//! Service, and the MutatingWebhookConfiguration, whose selectors keep the
//! control plane's own namespaces out so it can never block itself.

use crate::crd;
use crate::sidecar::{self, Values as SidecarValues};
use base64::Engine;
use serde_json::{json, Value};

pub const NAMESPACE: &str = "weft-system";
pub const CONTROLLER: &str = "weft-controller";
pub const CA_SECRET: &str = "weft-ca";
/// The webhook's port on the controller (Istio's 15017).
pub const WEBHOOK_PORT: u16 = 15017;

/// Where the mesh CA comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSource {
    /// A root made by `weft install` (or given with --ca-cert/--ca-key), put in the `weft-ca` secret.
    Pem { cert: String, key: String, roots: String },
    /// A `weft-ca` secret cert-manager issues from this issuer (kind/name); the
    /// webhook's caBundle is injected by cert-manager's cainjector.
    CertManager { issuer_kind: String, issuer_name: String },
}

/// Everything `--set` and `-f values.yaml` can change.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallValues {
    pub controller_image: String,
    pub ha: bool,
    pub controller_log_level: String,
    pub failure_policy: String,
    pub webhook_timeout_seconds: u32,
    pub sidecar: SidecarValues,
}

impl Default for InstallValues {
    fn default() -> Self {
        InstallValues {
            controller_image: format!("ghcr.io/weft-mesh/weft:{}", env!("CARGO_PKG_VERSION")),
            ha: false,
            controller_log_level: "info".into(),
            failure_policy: "Ignore".into(),
            webhook_timeout_seconds: 10,
            sidecar: SidecarValues::default(),
        }
    }
}

/// The keys `--set` accepts, with what each sets.
pub const KEYS: &[(&str, &str)] = &[
    ("controller.image", "the controller's image"),
    ("controller.ha", "true: two replicas on different nodes and a PodDisruptionBudget"),
    ("controller.logLevel", "the controller's log filter"),
    ("webhook.failurePolicy", "Ignore (default: a down controller never blocks a deploy) or Fail"),
    ("webhook.timeoutSeconds", "1-30"),
    ("proxy.image", "the sidecar's image"),
    ("proxy.nativeSidecar", "true (Kubernetes >= 1.29, the default) or false"),
    ("proxy.cpuRequest", "a quantity, e.g. 10m"),
    ("proxy.memoryRequest", "a quantity, e.g. 20Mi"),
    ("proxy.cpuLimit", "a quantity, or empty for none"),
    ("proxy.memoryLimit", "a quantity, or empty for none"),
    ("proxy.logLevel", "the sidecar's log filter"),
    ("trustDomain", "the SPIFFE trust domain (cluster.local)"),
    ("cluster", "the cluster's name in metrics (Kubernetes)"),
];

impl InstallValues {
    /// Applies one `key=value`; the error names the valid keys.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let boolean = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{key}: {v:?} is not true or false")),
        };
        // One definition of a resource quantity: the annotations' (sidecar::check_quantity).
        let quantity = |v: &str| -> Result<Option<String>, String> {
            if v.is_empty() {
                return Ok(None);
            }
            crate::sidecar::check_quantity(v).map(|()| Some(v.to_string())).map_err(|e| format!("{key}: {e}"))
        };
        let non_empty = |v: &str| if v.trim().is_empty() { Err(format!("{key}: must not be empty")) } else { Ok(v.trim().to_string()) };
        match key {
            "controller.image" => self.controller_image = non_empty(value)?,
            "controller.ha" => self.ha = boolean(value)?,
            "controller.logLevel" => self.controller_log_level = non_empty(value)?,
            "webhook.failurePolicy" => match value {
                "Ignore" | "Fail" => self.failure_policy = value.into(),
                _ => return Err(format!("{key}: {value:?} is not Ignore or Fail")),
            },
            "webhook.timeoutSeconds" => {
                self.webhook_timeout_seconds = value.parse().ok().filter(|t| (1..=30).contains(t)).ok_or_else(|| format!("{key}: {value:?} is not 1-30"))?;
            }
            "proxy.image" => self.sidecar.proxy_image = non_empty(value)?,
            "proxy.nativeSidecar" => self.sidecar.native_sidecar = boolean(value)?,
            "proxy.cpuRequest" => self.sidecar.cpu_request = quantity(value)?.ok_or_else(|| format!("{key}: must not be empty"))?,
            "proxy.memoryRequest" => self.sidecar.memory_request = quantity(value)?.ok_or_else(|| format!("{key}: must not be empty"))?,
            "proxy.cpuLimit" => self.sidecar.cpu_limit = quantity(value)?,
            "proxy.memoryLimit" => self.sidecar.memory_limit = quantity(value)?,
            "proxy.logLevel" => self.sidecar.log_level = non_empty(value)?,
            "trustDomain" => self.sidecar.trust_domain = non_empty(value)?,
            "cluster" => self.sidecar.cluster = non_empty(value)?,
            _ => return Err(format!("unknown key {key:?}; valid keys: {}", KEYS.iter().map(|k| k.0).collect::<Vec<_>>().join(", "))),
        }
        Ok(())
    }

    /// Applies a values file: nested mappings become dotted keys (`proxy: {image: x}`).
    pub fn set_from_yaml(&mut self, text: &str) -> Result<(), String> {
        let v: Value = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let mut pairs = Vec::new();
        flatten("", &v, &mut pairs)?;
        for (k, v) in pairs {
            self.set(&k, &v)?;
        }
        Ok(())
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out)?;
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Bool(_) | Value::Number(_) => out.push((prefix.to_string(), v.to_string())),
        Value::Array(_) => return Err(format!("{prefix}: lists are not values")),
    }
    Ok(())
}

fn labels() -> Value {
    json!({ "app.kubernetes.io/name": CONTROLLER, "app.kubernetes.io/part-of": "weft" })
}

fn meta(name: &str, namespaced: bool) -> Value {
    let mut m = json!({ "name": name, "labels": labels() });
    if namespaced {
        m["namespace"] = NAMESPACE.into();
    }
    m
}

/// Every mesh API group with its resources (plural names), for RBAC.
fn mesh_resources() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for k in weft_model::resource::KINDS.iter().filter(|k| k.spec_schema.is_some()) {
        let plural = crd::plural(k.kind);
        match out.iter_mut().find(|(g, _)| g == k.group) {
            Some((_, rs)) => rs.push(plural),
            None => out.push((k.group.to_string(), vec![plural])),
        }
    }
    out
}

fn cluster_role() -> Value {
    let mut rules = vec![
        json!({ "apiGroups": [""], "resources": ["services", "pods", "namespaces", "serviceaccounts"], "verbs": ["get", "list", "watch"] }),
        json!({ "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"] }),
        // The mesh root, published in every namespace for proxies to pin the controller.
        json!({ "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [sidecar::ROOT_CONFIG_MAP], "verbs": ["get", "update", "patch"] }),
        json!({ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "watch"] }),
        // Proxies prove their ServiceAccount with a projected token.
        json!({ "apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"] }),
    ];
    for (group, resources) in mesh_resources() {
        rules.push(json!({ "apiGroups": [group], "resources": resources, "verbs": ["get", "list", "watch"] }));
        let status: Vec<String> = resources.iter().map(|r| format!("{r}/status")).collect();
        rules.push(json!({ "apiGroups": [group], "resources": status, "verbs": ["patch", "update"] }));
    }
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(CONTROLLER, false), "rules": rules })
}

fn controller_deployment(v: &InstallValues) -> Value {
    let replicas = if v.ha { 2 } else { 1 };
    let args = vec![
        "controller".to_string(),
        "--grpc-listen".into(),
        "0.0.0.0:15012".into(),
        "--webhook-listen".into(),
        format!("0.0.0.0:{WEBHOOK_PORT}"),
        "--webhook-dns-name".into(),
        format!("{CONTROLLER}.{NAMESPACE}.svc"),
        "--trust-domain".into(),
        v.sidecar.trust_domain.clone(),
        "--ca-cert".into(),
        "/etc/weft/ca/tls.crt".into(),
        "--ca-key".into(),
        "/etc/weft/ca/tls.key".into(),
        "--ca-roots".into(),
        "/etc/weft/ca/ca.crt".into(),
        // Injected proxies prove their ServiceAccount with a projected token.
        "--kube-api".into(),
        "auto".into(),
        "--token-audience".into(),
        crate::sidecar::TOKEN_AUDIENCE.into(),
    ];
    let mut args = args;
    // What the webhook injects is what these values say, spelled out.
    let s = &v.sidecar;
    for (k, val) in [
        ("proxy.image", Some(&s.proxy_image)),
        ("proxy.nativeSidecar", Some(&s.native_sidecar.to_string())),
        ("proxy.cpuRequest", Some(&s.cpu_request)),
        ("proxy.memoryRequest", Some(&s.memory_request)),
        ("proxy.cpuLimit", s.cpu_limit.as_ref().or(Some(&String::new()))),
        ("proxy.memoryLimit", s.memory_limit.as_ref().or(Some(&String::new()))),
        ("proxy.logLevel", Some(&s.log_level)),
        ("cluster", Some(&s.cluster)),
    ] {
        if let Some(val) = val {
            args.extend(["--inject-set".to_string(), format!("{k}={val}")]);
        }
    }
    let mut pod_spec = json!({
        "serviceAccountName": CONTROLLER,
        "securityContext": { "runAsNonRoot": true, "runAsUser": 1337, "runAsGroup": 1337, "fsGroup": 1337, "seccompProfile": { "type": "RuntimeDefault" } },
        "containers": [{
            "name": "controller",
            "image": v.controller_image,
            "args": args,
            "env": [
                { "name": "WEFT_LOG", "value": v.controller_log_level },
                { "name": "WEFT_DATA_DIR", "value": "/var/lib/weft" },
            ],
            "ports": [
                { "name": "grpc-xds", "containerPort": 15012, "protocol": "TCP" },
                { "name": "https-webhook", "containerPort": WEBHOOK_PORT, "protocol": "TCP" },
                { "name": "http-monitoring", "containerPort": 15014, "protocol": "TCP" },
            ],
            "readinessProbe": { "tcpSocket": { "port": 15012 }, "periodSeconds": 3, "failureThreshold": 3 },
            "livenessProbe": { "tcpSocket": { "port": 15012 }, "initialDelaySeconds": 10, "periodSeconds": 10 },
            "resources": { "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "memory": "512Mi" } },
            "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": { "drop": ["ALL"] } },
            "volumeMounts": [
                { "name": "ca", "mountPath": "/etc/weft/ca", "readOnly": true },
                { "name": "data", "mountPath": "/var/lib/weft" },
            ],
        }],
        "volumes": [
            { "name": "ca", "secret": { "secretName": CA_SECRET } },
            { "name": "data", "emptyDir": {} },
        ],
    });
    if v.ha {
        pod_spec["affinity"] = json!({ "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": { "labelSelector": { "matchLabels": { "app.kubernetes.io/name": CONTROLLER } }, "topologyKey": "kubernetes.io/hostname" },
        }] } });
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(CONTROLLER, true),
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/name": CONTROLLER } },
            "strategy": { "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } },
            "template": {
                // The control plane is never meshed by itself.
                "metadata": { "labels": labels(), "annotations": { "weft.dev/inject": "false", "prometheus.io/scrape": "true", "prometheus.io/port": "15014", "prometheus.io/path": "/metrics" } },
                "spec": pod_spec,
            },
        },
    })
}

fn webhook(v: &InstallValues, ca: &CaSource) -> Value {
    let mut client = json!({ "service": { "name": CONTROLLER, "namespace": NAMESPACE, "path": "/inject", "port": 443 } });
    let mut metadata = meta("weft-sidecar-injector", false);
    match ca {
        CaSource::Pem { roots, .. } => client["caBundle"] = base64::engine::general_purpose::STANDARD.encode(roots).into(),
        CaSource::CertManager { .. } => {
            metadata["annotations"] = json!({ "cert-manager.io/inject-ca-from": format!("{NAMESPACE}/{CA_SECRET}") });
        }
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": [{
            "name": "sidecar-injector.weft.dev",
            "clientConfig": client,
            "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced" }],
            // Which pods are meshed is decided by the controller (namespace labels,
            // Linkerd's annotations, pod opt-outs); the selectors only keep the
            // control plane and the system namespaces out of reach.
            "namespaceSelector": { "matchExpressions": [
                { "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kube-public", "kube-node-lease", NAMESPACE] },
                { "key": "weft-injection", "operator": "NotIn", "values": ["disabled"] },
            ] },
            "objectSelector": { "matchExpressions": [ { "key": "weft.dev/inject", "operator": "NotIn", "values": ["false"] } ] },
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": v.failure_policy,
            "timeoutSeconds": v.webhook_timeout_seconds,
            "reinvocationPolicy": "Never",
        }],
    })
}

fn ca_objects(ca: &CaSource) -> Vec<Value> {
    match ca {
        CaSource::Pem { cert, key, roots } => {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            vec![json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(CA_SECRET, true),
                "type": "kubernetes.io/tls",
                "data": { "tls.crt": b64(cert), "tls.key": b64(key), "ca.crt": b64(roots) },
            })]
        }
        CaSource::CertManager { issuer_kind, issuer_name } => vec![json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": meta(CA_SECRET, true),
            "spec": {
                "secretName": CA_SECRET,
                "isCA": true,
                "commonName": "weft intermediate CA",
                "duration": "8760h",
                "renewBefore": "720h",
                "privateKey": { "algorithm": "ECDSA", "size": 256, "encoding": "PKCS8" },
                "issuerRef": { "kind": issuer_kind, "name": issuer_name, "group": "cert-manager.io" },
            },
        })],
    }
}

/// The control plane's objects, in the order `kubectl apply` needs them.
pub fn control_plane(v: &InstallValues, ca: &CaSource) -> Vec<Value> {
    let mut out = vec![
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NAMESPACE, "labels": { "weft-injection": "disabled", "app.kubernetes.io/part-of": "weft" } } }),
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(CONTROLLER, true) }),
        cluster_role(),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(CONTROLLER, false),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CONTROLLER },
            "subjects": [ { "kind": "ServiceAccount", "name": CONTROLLER, "namespace": NAMESPACE } ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(CONTROLLER, true),
            "rules": [ { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"] } ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(CONTROLLER, true),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER },
            "subjects": [ { "kind": "ServiceAccount", "name": CONTROLLER, "namespace": NAMESPACE } ],
        }),
    ];
    out.extend(ca_objects(ca));
    out.push(controller_deployment(v));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": meta(CONTROLLER, true),
        "spec": {
            "selector": { "app.kubernetes.io/name": CONTROLLER },
            "ports": [
                { "name": "grpc-xds", "port": 15012, "targetPort": 15012, "protocol": "TCP" },
                { "name": "https-webhook", "port": 443, "targetPort": WEBHOOK_PORT, "protocol": "TCP" },
                { "name": "http-monitoring", "port": 15014, "targetPort": 15014, "protocol": "TCP" },
            ],
        },
    }));
    if v.ha {
        out.push(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(CONTROLLER, true),
            "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app.kubernetes.io/name": CONTROLLER } } },
        }));
    }
    out.push(webhook(v, ca));
    out
}

/// What `weft uninstall` prints: every object install made, CRDs last (deleting
/// them deletes every mesh resource users stored, so they are only included on request).
pub fn uninstall(with_crds: bool, skip: &[&str]) -> Vec<Value> {
    let ca = CaSource::Pem { cert: String::new(), key: String::new(), roots: String::new() };
    let mut out: Vec<Value> = control_plane(&InstallValues { ha: true, ..Default::default() }, &ca)
        .into_iter()
        .rev()
        .map(|o| {
            let mut m = json!({ "name": o["metadata"]["name"] });
            if let Some(ns) = o["metadata"].get("namespace") {
                m["namespace"] = ns.clone();
            }
            json!({ "apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": m })
        })
        .collect();
    if with_crds {
        out.extend(crd::all(skip).into_iter().map(|c| json!({ "apiVersion": c["apiVersion"], "kind": c["kind"], "metadata": { "name": c["metadata"]["name"] } })));
    }
    out
}

/// Documents as one YAML stream.
pub fn to_yaml(objects: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(o).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem() -> CaSource {
        CaSource::Pem { cert: "C".into(), key: "K".into(), roots: "R".into() }
    }

    #[test]
    fn the_webhook_can_never_intercept_the_control_plane() {
        let objs = control_plane(&InstallValues::default(), &pem());
        let hook = objs.iter().find(|o| o["kind"] == "MutatingWebhookConfiguration").unwrap();
        let w = &hook["webhooks"][0];
        assert_eq!(w["failurePolicy"], "Ignore");
        let excluded = &w["namespaceSelector"]["matchExpressions"][0]["values"];
        assert!(excluded.as_array().unwrap().contains(&Value::String(NAMESPACE.into())));
        assert_eq!(w["clientConfig"]["caBundle"], "Ug==");
        let ns = objs.iter().find(|o| o["kind"] == "Namespace").unwrap();
        assert_eq!(ns["metadata"]["labels"]["weft-injection"], "disabled");
    }

    #[test]
    fn ha_adds_replicas_spread_and_a_disruption_budget() {
        let one = control_plane(&InstallValues::default(), &pem());
        let mut v = InstallValues::default();
        v.set("controller.ha", "true").unwrap();
        let two = control_plane(&v, &pem());
        assert_eq!(two.len(), one.len() + 1);
        let d = two.iter().find(|o| o["kind"] == "Deployment").unwrap();
        assert_eq!(d["spec"]["replicas"], 2);
        assert!(d["spec"]["template"]["spec"]["affinity"].is_object());
    }

    #[test]
    fn values_are_checked_by_key() {
        let mut v = InstallValues::default();
        v.set_from_yaml("proxy:\n  image: reg/proxy:1\n  memoryLimit: ''\nwebhook:\n  timeoutSeconds: 5\n").unwrap();
        assert_eq!(v.sidecar.proxy_image, "reg/proxy:1");
        assert_eq!(v.sidecar.memory_limit, None);
        assert_eq!(v.webhook_timeout_seconds, 5);
        assert!(v.set("proxy.imag", "x").unwrap_err().contains("valid keys"));
        assert!(v.set("webhook.failurePolicy", "Maybe").is_err());
        assert!(v.set("proxy.cpuRequest", "lots").is_err());
    }
}
