//! Kubelet probes through the sidecar. Under STRICT mTLS the kubelet's
//! plaintext probes to the app's port would be refused, so, as Istio does,
//! each HTTP and TCP probe is rewritten to the proxy's health port
//! (`/app-health/CONTAINER/livez|readyz|startupz` on 15020, never
//! intercepted), and the proxy, told the original probes in `WEFT_APP_PROBES`,
//! runs them against the app over loopback. HTTPS, gRPC and exec probes, and
//! probes to another host, are left as written.

use crate::sidecar::{InjectError, HEALTH_PORT};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The proxy's environment variable with the original probes, by rewritten path.
pub const ENV: &str = "WEFT_APP_PROBES";

const KINDS: [(&str, &str); 3] = [("livenessProbe", "livez"), ("readinessProbe", "readyz"), ("startupProbe", "startupz")];

/// Rewrites the probes of `containers`; returns what the proxy must run, by path.
/// Nothing is changed when an error is returned.
pub fn rewrite(containers: &mut [Value]) -> Result<BTreeMap<String, Value>, InjectError> {
    let mut originals = BTreeMap::new();
    let mut changes = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        for (key, suffix) in KINDS {
            let Some(probe) = c.get(key) else { continue };
            let path = format!("/app-health/{name}/{suffix}");
            let bad = |reason: String| InjectError::Probe { container: name.to_string(), reason: format!("{key}: {reason}") };
            let original = if let Some(get) = probe.get("httpGet") {
                let scheme = get.get("scheme").and_then(Value::as_str).unwrap_or("HTTP");
                if scheme != "HTTP" || get.get("host").is_some() {
                    continue;
                }
                let port = resolve_port(c, get.get("port")).map_err(bad)?;
                let mut g = json!({ "path": get.get("path").cloned().unwrap_or_else(|| "/".into()), "port": port });
                if let Some(h) = get.get("httpHeaders") {
                    g["httpHeaders"] = h.clone();
                }
                json!({ "httpGet": g })
            } else if let Some(tcp) = probe.get("tcpSocket") {
                if tcp.get("host").is_some() {
                    continue;
                }
                json!({ "tcpSocket": { "port": resolve_port(c, tcp.get("port")).map_err(bad)? } })
            } else {
                continue;
            };
            let mut original = original;
            if let Some(t) = probe.get("timeoutSeconds") {
                original["timeoutSeconds"] = t.clone();
            }
            let mut new = probe.clone();
            if let Some(m) = new.as_object_mut() {
                m.remove("httpGet");
                m.remove("tcpSocket");
                m.insert("httpGet".into(), json!({ "path": path, "port": HEALTH_PORT, "scheme": "HTTP" }));
            }
            originals.insert(path, original);
            changes.push((i, key, new));
        }
    }
    for (i, key, new) in changes {
        containers[i][key] = new;
    }
    Ok(originals)
}

/// A probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(container: &Value, port: Option<&Value>) -> Result<u16, String> {
    match port {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0).ok_or_else(|| format!("port {n} is not 1-65535")),
        Some(Value::String(s)) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(s))
                .and_then(|p| p.get("containerPort")?.as_u64())
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| format!("port {s:?} names no port of the container"))
        }
        _ => Err("no port".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_tcp_probes_go_through_the_health_port() {
        let mut cs = vec![json!({
            "name": "web",
            "ports": [ { "name": "http", "containerPort": 8080 } ],
            "readinessProbe": { "httpGet": { "path": "/ready", "port": "http" }, "periodSeconds": 5 },
            "livenessProbe": { "tcpSocket": { "port": 8080 }, "timeoutSeconds": 2 },
            "startupProbe": { "exec": { "command": ["true"] } },
        })];
        let got = rewrite(&mut cs).unwrap();
        assert_eq!(got["/app-health/web/readyz"], json!({ "httpGet": { "path": "/ready", "port": 8080 } }));
        assert_eq!(got["/app-health/web/livez"], json!({ "tcpSocket": { "port": 8080 }, "timeoutSeconds": 2 }));
        assert_eq!(cs[0]["readinessProbe"], json!({ "httpGet": { "path": "/app-health/web/readyz", "port": 15020, "scheme": "HTTP" }, "periodSeconds": 5 }));
        assert_eq!(cs[0]["startupProbe"], json!({ "exec": { "command": ["true"] } }), "exec probes need no network");
    }

    #[test]
    fn a_probe_naming_a_missing_port_changes_nothing() {
        let mut cs = vec![json!({ "name": "web", "livenessProbe": { "tcpSocket": { "port": 80 } }, "readinessProbe": { "httpGet": { "port": "nope" } } })];
        let before = cs.clone();
        assert!(rewrite(&mut cs).is_err());
        assert_eq!(cs, before);
    }
}
