//! What a workload's proxy reports: the controller's mesh-wide settings
//! (`--access-log-*`, `--tracing-*`), then the Istio `Telemetry` resources
//! that select the workload, the most specific one deciding each part
//! (workload selector, then its namespace, then the root namespace), as
//! Istio merges them.

use super::selects;
use std::collections::BTreeMap;
use weft_model::mesh::{Mesh, PolicyScope, TelemetryPolicy};
use weft_model::values::{TagValue, TraceTag};
use weft_proto::config::{AccessLog, CustomTag, IstioMetric, LabelOverride, LabelValue, OverrideReporter, Telemetry, TraceCollector, Tracing};

/// The mesh's telemetry settings, from the controller's flags.
#[derive(Debug, Clone, Default)]
pub struct MeshTelemetry {
    /// What every proxy gets before Telemetry resources: the vocabularies,
    /// the access log, tracing to the default provider.
    pub base: Telemetry,
    /// Tracing collectors by name (Istio's meshConfig.extensionProviders),
    /// for Telemetry resources to pick.
    pub providers: BTreeMap<String, TraceCollector>,
    /// Sampling when a Telemetry resource turns tracing on without saying
    /// (Istio's defaultConfig.tracing.sampling).
    pub sampling_ppm: u32,
}

/// The telemetry settings for a workload in `namespace` with `labels`.
pub fn telemetry(mesh: &Mesh, settings: &MeshTelemetry, namespace: &str, labels: &BTreeMap<String, String>) -> Telemetry {
    let base = &settings.base;
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
    out.tracing = tracing(&ordered, settings);
    out.label_overrides = label_overrides(&ordered);
    out
}

/// Every resource's `tagOverrides`, the least specific first: applied in
/// order, the most specific one for a label wins, as Istio merges them.
fn label_overrides(ordered: &[&TelemetryPolicy]) -> Vec<LabelOverride> {
    ordered
        .iter()
        .rev()
        .flat_map(|p| &p.tag_overrides)
        .filter_map(|r| {
            let metrics = match r.metric.as_deref() {
                None => vec![],
                // Validation refuses other names; one that got here applies to nothing rather than to everything.
                Some(m) => vec![IstioMetric::parse(m)?],
            };
            let reporter = match r.mode.as_deref() {
                Some("CLIENT") => Some(OverrideReporter::Source),
                Some("SERVER") => Some(OverrideReporter::Destination),
                _ => None,
            };
            let value = r.value.as_ref().map(|v| match v {
                TagValue::Literal(s) => LabelValue::Literal(s.clone()),
                TagValue::RequestPath => LabelValue::RequestPath,
                TagValue::RequestUrlPath => LabelValue::RequestUrlPath,
                TagValue::RequestHost => LabelValue::RequestHost,
                TagValue::RequestMethod => LabelValue::RequestMethod,
                TagValue::RequestHeader(h) => LabelValue::RequestHeader(h.clone()),
                TagValue::ResponseCode => LabelValue::ResponseCode,
            });
            Some(LabelOverride { metrics, reporter, label: r.tag.clone(), value })
        })
        .collect()
}

/// Tracing: the provider the most specific resource names (else the
/// default), then each of sampling, tags and "off" from the most specific
/// resource that says.
fn tracing(ordered: &[&TelemetryPolicy], settings: &MeshTelemetry) -> Option<Tracing> {
    let mut tracing = settings.base.tracing.clone();
    if let Some(name) = ordered.iter().find_map(|p| p.trace_provider.as_deref()) {
        match settings.providers.get(name) {
            Some(collector) => {
                let t = tracing.get_or_insert_with(|| Tracing { sampling_ppm: settings.sampling_ppm, ..Tracing::to(collector.clone()) });
                t.collector = collector.clone();
            }
            None => {
                tracing::warn!(provider = name, "a Telemetry resource names a tracing provider the controller does not have (--tracing-provider); its workloads are not traced");
                return None;
            }
        }
    }
    let t = tracing.as_mut()?;
    if let Some(p) = ordered.iter().find_map(|p| p.trace_sampling_percent) {
        t.sampling_ppm = Tracing::ppm(p).unwrap_or(t.sampling_ppm);
    }
    if let Some(tags) = ordered.iter().find_map(|p| p.trace_tags.as_ref()) {
        t.custom_tags = tags
            .iter()
            .map(|(k, v)| {
                let tag = match v {
                    TraceTag::Literal(value) => CustomTag::Literal { value: value.clone() },
                    TraceTag::Header { name, default_value } => CustomTag::Header { name: name.clone(), default_value: default_value.clone() },
                    TraceTag::Environment { name, default_value } => CustomTag::Environment { name: name.clone(), default_value: default_value.clone() },
                };
                (k.clone(), tag)
            })
            .collect();
    }
    if ordered.iter().find_map(|p| p.tracing_disabled) == Some(true) {
        return None;
    }
    tracing
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
        let base = MeshTelemetry::default();
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
        let json = MeshTelemetry {
            base: Telemetry { access_log: Some(AccessLog { path: "/var/log/weft.log".into(), encoding: weft_proto::config::AccessLogEncoding::Json, ..Default::default() }), ..Default::default() },
            ..Default::default()
        };
        let a = telemetry(&m, &json, "prod", &labels("reviews")).access_log.unwrap();
        assert_eq!((a.path.as_str(), a.encoding, a.min_response_code), ("/var/log/weft.log", weft_proto::config::AccessLogEncoding::Json, 400));
    }

    const TRACING: &str = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  tracing: [{randomSamplingPercentage: 10, customTags: {team: {literal: {value: shop}}}}]\n---\n\
        apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: to-zipkin, namespace: prod}\nspec:\n  tracing: [{providers: [{name: zipkin}], customTags: {user: {header: {name: x-user, defaultValue: anon}}}}]\n---\n\
        apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: quiet, namespace: prod}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  tracing: [{disableSpanReporting: true}]\n---\n\
        apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: nowhere, namespace: lost}\nspec:\n  tracing: [{providers: [{name: jaeger}]}]\n";

    #[test]
    fn tracing_takes_the_named_provider_and_each_setting_from_the_most_specific_resource() {
        let m = mesh(TRACING);
        let otel = TraceCollector::parse("otlp://otel:4317").unwrap();
        let zipkin = TraceCollector::parse("zipkin://zipkin:9411").unwrap();
        let settings = MeshTelemetry {
            base: Telemetry { tracing: Some(Tracing::to(otel.clone())), ..Default::default() },
            providers: [("otel".to_string(), otel.clone()), ("zipkin".to_string(), zipkin.clone())].into(),
            sampling_ppm: 10_000,
        };
        // The root namespace's sampling and tags apply to the default provider...
        let shop = telemetry(&m, &settings, "shop", &labels("cart")).tracing.unwrap();
        assert_eq!((shop.collector, shop.sampling_ppm), (otel.clone(), 100_000));
        assert_eq!(shop.custom_tags["team"], CustomTag::Literal { value: "shop".into() });
        // ...a namespace's picks Zipkin and its own tags, keeping the root's sampling...
        let prod = telemetry(&m, &settings, "prod", &labels("reviews")).tracing.unwrap();
        assert_eq!((prod.collector, prod.sampling_ppm), (zipkin, 100_000));
        assert!(prod.custom_tags.contains_key("user") && !prod.custom_tags.contains_key("team"));
        // ...a workload's turns it off, and an unknown provider traces nothing.
        assert_eq!(telemetry(&m, &settings, "prod", &labels("ratings")).tracing, None);
        assert_eq!(telemetry(&m, &settings, "lost", &labels("x")).tracing, None);
        // Without a default provider, only a resource naming one turns tracing on, at the mesh's sampling.
        let none = MeshTelemetry { base: Telemetry::default(), ..settings };
        assert_eq!(telemetry(&m, &none, "shop", &labels("cart")).tracing, None);
        assert_eq!(telemetry(&m, &none, "prod", &labels("reviews")).tracing.map(|t| t.sampling_ppm), Some(100_000));
    }

    #[test]
    fn tag_overrides_apply_least_specific_first_so_the_most_specific_wins() {
        let m = mesh(
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  metrics: [{overrides: [{match: {metric: REQUEST_COUNT}, tagOverrides: {request_host: {value: request.host}}}]}]\n---\n\
             apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: no-host, namespace: prod}\nspec:\n  metrics: [{overrides: [{match: {metric: REQUEST_COUNT, mode: SERVER}, tagOverrides: {request_host: {operation: REMOVE}}}]}]\n",
        );
        let prod = telemetry(&m, &MeshTelemetry::default(), "prod", &labels("reviews")).label_overrides;
        let upsert = LabelOverride { metrics: vec![IstioMetric::RequestCount], reporter: None, label: "request_host".into(), value: Some(LabelValue::RequestHost) };
        let remove = LabelOverride { reporter: Some(OverrideReporter::Destination), value: None, ..upsert.clone() };
        assert_eq!(prod, vec![upsert.clone(), remove]);
        assert_eq!(telemetry(&m, &MeshTelemetry::default(), "shop", &labels("cart")).label_overrides, vec![upsert]);
    }
}
