//! CustomResourceDefinitions for every kind weft reads, from weft-model's
//! table of kinds and versions and its generated structural schemas: what the
//! API server accepts is what the parser accepts. Each CRD serves every
//! version users write (one schema, so no conversion webhook is needed), with
//! the newest as the storage version, and a `status` subresource.

use serde_json::{json, Value};
use weft_model::resource::{KindInfo, KINDS};

/// Families of CRDs another mesh may already have installed (`--skip-crds`).
pub const FAMILIES: &[(&str, &[&str])] = &[
    ("istio", &["networking.istio.io", "security.istio.io", "telemetry.istio.io"]),
    ("gateway-api", &["gateway.networking.k8s.io"]),
    ("linkerd", &["linkerd.io", "policy.linkerd.io"]),
    ("smi", &["split.smi-spec.io"]),
];

/// The API groups named by a family or group name, or an error naming the choices.
pub fn groups_of(name: &str) -> Result<Vec<&'static str>, String> {
    if let Some((_, groups)) = FAMILIES.iter().find(|(f, _)| *f == name) {
        return Ok(groups.to_vec());
    }
    let all: Vec<&str> = FAMILIES.iter().flat_map(|(_, g)| g.iter().copied()).collect();
    match all.iter().find(|g| **g == name) {
        Some(g) => Ok(vec![g]),
        None => Err(format!("{name:?} is not a CRD family ({}) or API group ({})", FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(", "), all.join(", "))),
    }
}

/// `VirtualService` -> `virtualservices`, `Telemetry` -> `telemetries`.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{stem}ies"),
        _ if lower.ends_with("ss") || lower.ends_with('x') => format!("{lower}es"),
        _ => format!("{lower}s"),
    }
}

/// Short names as Istio, Gateway API, SMI and Linkerd define them.
fn short_names(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("networking.istio.io", "VirtualService") => &["vs"],
        ("networking.istio.io", "DestinationRule") => &["dr"],
        ("networking.istio.io", "Gateway") => &["gw"],
        ("networking.istio.io", "ServiceEntry") => &["se"],
        ("networking.istio.io", "WorkloadEntry") => &["we"],
        ("security.istio.io", "PeerAuthentication") => &["pa"],
        ("security.istio.io", "RequestAuthentication") => &["ra"],
        ("gateway.networking.k8s.io", "Gateway") => &["gtw"],
        ("split.smi-spec.io", "TrafficSplit") => &["ts"],
        ("linkerd.io", "ServiceProfile") => &["sp"],
        ("policy.linkerd.io", "Server") => &["srv"],
        ("policy.linkerd.io", "ServerAuthorization") => &["saz", "serverauthz"],
        _ => &[],
    }
}

fn categories(group: &str) -> Vec<&'static str> {
    let mut c = vec!["weft"];
    match group {
        "networking.istio.io" => c.extend(["istio-io", "networking-istio-io"]),
        "security.istio.io" => c.extend(["istio-io", "security-istio-io"]),
        "telemetry.istio.io" => c.extend(["istio-io", "telemetry-istio-io"]),
        "gateway.networking.k8s.io" => c.push("gateway-api"),
        "linkerd.io" | "policy.linkerd.io" => c.push("linkerd"),
        "split.smi-spec.io" => c.push("smi"),
        _ => {}
    }
    c
}

/// Orders `v1` > `v1beta2` > `v1beta1` > `v1alpha3`, as Kubernetes does.
fn version_rank(v: &str) -> (u32, u32, u32) {
    let rest = v.trim_start_matches('v');
    let major_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let major = rest[..major_len].parse().unwrap_or(0);
    let tail = &rest[major_len..];
    let (stage, minor) = if let Some(n) = tail.strip_prefix("beta") {
        (1, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (0, n.parse().unwrap_or(0))
    } else {
        (2, 0)
    };
    (major, stage, minor)
}

/// The openAPIV3Schema of a whole object of `kind`.
pub fn object_schema(kind: &KindInfo) -> Option<Value> {
    let spec = (kind.spec_schema?)();
    Some(json!({
        "type": "object",
        "properties": {
            "spec": spec,
            "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
        },
    }))
}

/// The CRD for one kind, or None for Kubernetes' own kinds.
pub fn crd(kind: &KindInfo) -> Option<Value> {
    let schema = object_schema(kind)?;
    let storage = kind.versions.iter().max_by_key(|v| version_rank(v))?;
    let versions: Vec<Value> = kind
        .versions
        .iter()
        .map(|v| {
            json!({
                "name": v,
                "served": true,
                "storage": v == storage,
                "schema": { "openAPIV3Schema": schema },
                "subresources": { "status": {} },
            })
        })
        .collect();
    let plural = plural(kind.kind);
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.{}", kind.group),
            "labels": { "app.kubernetes.io/part-of": "weft" },
        },
        "spec": {
            "group": kind.group,
            "names": {
                "kind": kind.kind,
                "listKind": format!("{}List", kind.kind),
                "plural": plural,
                "singular": kind.kind.to_lowercase(),
                "shortNames": short_names(kind.group, kind.kind),
                "categories": categories(kind.group),
            },
            "scope": if kind.namespaced { "Namespaced" } else { "Cluster" },
            "versions": versions,
        },
    }))
}

/// Every CRD, except those in `skip` (API groups).
pub fn all(skip: &[&str]) -> Vec<Value> {
    KINDS.iter().filter(|k| !skip.contains(&k.group)).filter_map(crd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_versions_are_kubernetes_spelling() {
        assert_eq!(plural("VirtualService"), "virtualservices");
        assert_eq!(plural("Telemetry"), "telemetries");
        assert_eq!(plural("ServiceEntry"), "serviceentries");
        assert_eq!(plural("AuthorizationPolicy"), "authorizationpolicies");
        assert_eq!(plural("HTTPRoute"), "httproutes");
        assert_eq!(plural("Gateway"), "gateways");
        let mut v = vec!["v1alpha3", "v1", "v1beta1", "v1beta3", "v1alpha1"];
        v.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
        assert_eq!(v, ["v1", "v1beta3", "v1beta1", "v1alpha3", "v1alpha1"]);
    }

    #[test]
    fn every_crd_schema_is_structural() {
        for k in KINDS {
            let Some(schema) = object_schema(k) else { continue };
            let bad = weft_model::schema::structural_violations(&schema);
            assert!(bad.is_empty(), "{}.{}: {bad:#?}", k.kind, k.group);
        }
    }

    #[test]
    fn one_crd_per_mesh_kind_with_one_storage_version() {
        let crds = all(&[]);
        let mesh_kinds = KINDS.iter().filter(|k| k.spec_schema.is_some()).count();
        assert_eq!(crds.len(), mesh_kinds);
        let mut names: Vec<&str> = crds.iter().filter_map(|c| c["metadata"]["name"].as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), crds.len(), "names are unique");
        for c in &crds {
            let storage = c["spec"]["versions"].as_array().unwrap().iter().filter(|v| v["storage"] == true).count();
            assert_eq!(storage, 1, "{}", c["metadata"]["name"]);
        }
        let ts = crds.iter().find(|c| c["metadata"]["name"] == "trafficsplits.split.smi-spec.io").unwrap();
        assert_eq!(ts["spec"]["versions"].as_array().unwrap().len(), 4);
        assert!(all(&groups_of("istio").unwrap()).iter().all(|c| !c["spec"]["group"].as_str().unwrap().ends_with("istio.io")));
        assert!(groups_of("consul").is_err());
    }
}
