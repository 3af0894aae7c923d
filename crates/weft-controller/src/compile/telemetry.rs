//! What a workload's proxy reports: the controller's mesh-wide settings
//! (`--access-log-*`), then the Istio `Telemetry` resources that select the
//! workload, the most specific one deciding each part (workload selector,
//! then its namespace, then the root namespace), as Istio merges them.

use super::selects;
use std::collections::BTreeMap;
use weft_model::mesh::{Mesh, PolicyScope, TelemetryPolicy};
use weft_proto::config::{AccessLog, Telemetry};

/// The telemetry settings for a workload in `namespace` with `labels`.
pub fn telemetry(mesh: &Mesh, base: &Telemetry, namespace: &str, labels: &BTreeMap<String, String>) -> Telemetry {
    let applies = |p: &&TelemetryPolicy, level: u8| match (&p.scope, level) {
        (PolicyScope::Workload { namespace: n, labels: sel }, 0) => n == namespace && selects(sel, labels),
        (PolicyScope::Namespace(n), 1) => n == namespace,
        (PolicyScope::Mesh, 2) => true,
        _ => false,
    };
    // Most specific first.
    let ordered: Vec<&TelemetryPolicy> = (0..3).flat_map(|level| mesh.telemetry.iter().filter(move |p| applies(p, level))).collect();
    let mut out = base.clone();
    if ordered.iter().any(|p| p.metrics_disabled) {
        out.istio_metrics = false;
    }
    if let Some(p) = ordered.iter().find(|p| p.access_log.is_some()) {
        out.access_log = match p.access_log {
            Some(true) => Some(AccessLog { min_response_code: p.access_log_min_code, ..base.access_log.clone().unwrap_or_default() }),
            _ => None,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::mesh;
    use super::*;

    const RESOURCES: &str = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  accessLogging: [{providers: [{name: envoy}]}]\n---\n\
        apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: errors-only, namespace: prod}\nspec:\n  accessLogging: [{providers: [{name: envoy}], filter: {expression: \"response.code >= 400\"}}]\n---\n\
        apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: quiet, namespace: prod}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  accessLogging: [{disabled: true}]\n  metrics: [{overrides: [{match: {metric: ALL_METRICS}, disabled: true}]}]\n";

    fn labels(app: &str) -> BTreeMap<String, String> {
        [("app".to_string(), app.to_string())].into()
    }

    #[test]
    fn the_most_specific_telemetry_decides_each_part() {
        let m = mesh(RESOURCES);
        let base = Telemetry::default();
        // The root namespace's turns the log on for everyone...
        assert_eq!(telemetry(&m, &base, "shop", &labels("cart")).access_log, Some(AccessLog::default()));
        // ...a namespace's keeps only errors...
        let prod = telemetry(&m, &base, "prod", &labels("reviews"));
        assert_eq!(prod.access_log.map(|a| a.min_response_code), Some(400));
        assert!(prod.istio_metrics);
        // ...and a workload's turns the log and Istio's metrics off.
        let ratings = telemetry(&m, &base, "prod", &labels("ratings"));
        assert_eq!(ratings.access_log, None);
        assert!(!ratings.istio_metrics && ratings.linkerd_metrics);
        // The controller's own settings are the starting point (its file, its encoding).
        let json = Telemetry { access_log: Some(AccessLog { path: "/var/log/weft.log".into(), encoding: weft_proto::config::AccessLogEncoding::Json, ..Default::default() }), ..Default::default() };
        let a = telemetry(&m, &json, "prod", &labels("reviews")).access_log.unwrap();
        assert_eq!((a.path.as_str(), a.encoding, a.min_response_code), ("/var/log/weft.log", weft_proto::config::AccessLogEncoding::Json, 400));
    }
}
