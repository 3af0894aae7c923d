//! Istio's `tagOverrides`: labels removed from, added to or changed in
//! Istio's metric families. The request attributes the overrides read are
//! captured once per request ([`Overrides::capture`], nothing when no
//! override reads one) and become part of the series key; everything else
//! happens at scrape time: a family with overrides is rendered from its
//! label list with the overrides applied in order, and series whose labels
//! become equal (a label removed) are summed.

use http::Request;
use std::sync::Arc;
use weft_proto::config::{IstioMetric, LabelOverride, LabelValue, OverrideReporter};

/// The overrides in force.
#[derive(Debug, Default, PartialEq)]
pub struct Overrides {
    rules: Vec<LabelOverride>,
    /// The request attributes the rules read, in the order a key holds them.
    inputs: Vec<LabelValue>,
}

/// A series' labels, in Istio's order, before rendering.
pub type Labels = Vec<(&'static str, String)>;

impl Overrides {
    pub fn new(rules: &[LabelOverride]) -> Overrides {
        let mut inputs = vec![];
        for r in rules {
            if let Some(v) = &r.value {
                if reads_request(v) && !inputs.contains(v) {
                    inputs.push(v.clone());
                }
            }
        }
        Overrides { rules: rules.to_vec(), inputs }
    }

    /// Some override reads an attribute of the request.
    pub fn reads_requests(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// The request attributes the overrides read, for the series key; none
    /// when no override reads one (the common case costs nothing). `host`
    /// is the request's authority.
    pub fn capture<B>(&self, req: &Request<B>, host: Option<&str>) -> Option<Arc<[String]>> {
        if self.inputs.is_empty() {
            return None;
        }
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Some(
            self.inputs
                .iter()
                .map(|v| {
                    match v {
                        LabelValue::RequestPath => req.uri().path_and_query().map(|p| p.to_string()),
                        LabelValue::RequestUrlPath => Some(req.uri().path().to_string()),
                        LabelValue::RequestHost => host.map(str::to_string),
                        LabelValue::RequestMethod => Some(req.method().to_string()),
                        LabelValue::RequestHeader(name) => header(name),
                        LabelValue::Literal(_) | LabelValue::ResponseCode => None,
                    }
                    .unwrap_or_else(|| crate::metric_labels::UNKNOWN.to_string())
                })
                .collect(),
        )
    }

    /// Some override applies to `metric`.
    pub fn touches(&self, metric: IstioMetric) -> bool {
        self.rules.iter().any(|r| r.metrics.is_empty() || r.metrics.contains(&metric))
    }

    /// `labels` of a series of `metric` reported by `reporter`, with the
    /// overrides applied: `captured` is what [`Overrides::capture`] kept of
    /// its request (none for TCP), `code` its response code.
    pub fn apply(&self, metric: IstioMetric, reporter: OverrideReporter, labels: &mut Labels, captured: Option<&[String]>, code: Option<u16>) {
        for r in &self.rules {
            if !(r.metrics.is_empty() || r.metrics.contains(&metric)) || r.reporter.is_some_and(|x| x != reporter) {
                continue;
            }
            let Some(value) = &r.value else {
                labels.retain(|(name, _)| *name != r.label);
                continue;
            };
            let value = match value {
                LabelValue::Literal(s) => s.clone(),
                LabelValue::ResponseCode => code.map(|c| c.to_string()).unwrap_or_else(|| crate::metric_labels::UNKNOWN.into()),
                v => self.inputs.iter().position(|i| i == v).and_then(|i| captured?.get(i).cloned()).unwrap_or_else(|| crate::metric_labels::UNKNOWN.into()),
            };
            match labels.iter_mut().find(|(name, _)| *name == r.label) {
                Some(l) => l.1 = value,
                None => labels.push((intern(&r.label), value)),
            }
        }
    }
}

fn reads_request(v: &LabelValue) -> bool {
    !matches!(v, LabelValue::Literal(_) | LabelValue::ResponseCode)
}

/// A label name as `&'static str`: the few names overrides add live for
/// the process (leaked once each, never per request or scrape).
fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Renders `labels` as Prometheus text (`a="x",b="y"`).
pub fn render(labels: &Labels) -> String {
    let mut out = String::new();
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        crate::metric_labels::escape_into(&mut out, value);
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(metrics: &[IstioMetric], reporter: Option<OverrideReporter>, label: &str, value: Option<LabelValue>) -> LabelOverride {
        LabelOverride { metrics: metrics.to_vec(), reporter, label: label.into(), value }
    }

    fn labels() -> Labels {
        vec![("reporter", "destination".into()), ("source_workload", "web".into()), ("response_code", "200".into())]
    }

    #[test]
    fn overrides_remove_add_and_change_labels_in_order_for_their_metrics_and_side() {
        let o = Overrides::new(&[
            rule(&[], None, "source_workload", None),
            rule(&[IstioMetric::RequestCount], None, "request_host", Some(LabelValue::RequestHost)),
            rule(&[IstioMetric::RequestCount], Some(OverrideReporter::Source), "only_client", Some(LabelValue::Literal("x".into()))),
            rule(&[], None, "tenant", Some(LabelValue::RequestHeader("x-tenant".into()))),
            rule(&[], None, "tenant", Some(LabelValue::Literal("fixed".into()))),
            rule(&[], None, "code_again", Some(LabelValue::ResponseCode)),
        ]);
        let req = Request::get("http://reviews.prod/a?b").header("host", "reviews.prod").header("x-tenant", "acme").body(()).unwrap();
        let captured = o.capture(&req, Some("reviews.prod")).unwrap();
        assert_eq!(&captured[..], ["reviews.prod".to_string(), "acme".to_string()]);
        let mut l = labels();
        o.apply(IstioMetric::RequestCount, OverrideReporter::Destination, &mut l, Some(&captured), Some(200));
        assert_eq!(render(&l), "reporter=\"destination\",response_code=\"200\",request_host=\"reviews.prod\",tenant=\"fixed\",code_again=\"200\"");
        // Another metric: only the rules for all metrics; TCP has no request: unknown.
        let mut l = labels();
        o.apply(IstioMetric::TcpSentBytes, OverrideReporter::Source, &mut l, None, None);
        assert_eq!(render(&l), "reporter=\"destination\",response_code=\"200\",tenant=\"fixed\",code_again=\"unknown\"");
        // Nothing read from requests: nothing captured.
        assert_eq!(Overrides::new(&[rule(&[], None, "x", None)]).capture(&req, Some("reviews.prod")), None);
        assert!(!Overrides::new(&[rule(&[IstioMetric::RequestSize], None, "x", None)]).touches(IstioMetric::RequestCount));
    }
}
