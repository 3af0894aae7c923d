//! Spans: the tracer in force (its sampling, custom tags and collector),
//! the span a sampled request carries along its path ([`Open`]), and the
//! finished span with Istio's attributes, which the request's record hands
//! to the exporter once, when the request is done.
//!
//! A request's trace step ([`Tracer::start`]) reads the caller's context,
//! makes this proxy's span (a client span outbound, a server span inbound),
//! and writes the context the next hop sees. Unsampled requests carry the
//! decision on and record nothing.

use super::record::RequestRecord;
use super::span_export::{ExportStats, Exporter};
use super::trace_context::{self, SpanIds};
use crate::metric_labels::Workload;
use http::header::{HeaderName, USER_AGENT};
use http::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use weft_proto::config::{CustomTag, Tracing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The outbound side: this proxy calls the upstream.
    Client,
    /// The inbound side: this proxy takes the call for its app.
    Server,
}

/// Who records the spans: OpenTelemetry's resource, Zipkin's local
/// endpoint. Istio's `service.name` is `CANONICAL_SERVICE.NAMESPACE`.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub service_name: String,
    pub attributes: Vec<(&'static str, String)>,
}

impl Resource {
    pub fn of(own: &Workload) -> Resource {
        let service = if own.app != crate::metric_labels::UNKNOWN { &own.app } else { &own.name };
        Resource {
            service_name: format!("{service}.{}", own.namespace),
            attributes: vec![
                ("istio.canonical_service", service.clone()),
                ("istio.canonical_revision", own.version.clone()),
                ("istio.namespace", own.namespace.clone()),
                ("istio.cluster_id", own.cluster.clone()),
                ("k8s.workload.name", own.name.clone()),
            ],
        }
    }
}

/// A custom tag, resolved as far as the config allows.
#[derive(Debug)]
enum Tag {
    Value(String),
    Header(HeaderName, String),
}

/// The tracing settings in force and the exporter of their collector.
pub struct Tracer {
    config: Tracing,
    tags: Vec<(String, Tag)>,
    resource: Arc<Resource>,
    exporter: Arc<Exporter>,
}

impl Tracer {
    /// The tracer for `config`, recording as `own`; the previous tracer's
    /// exporter is kept when the collector is the same (no span is lost to a config change).
    pub fn new(config: &Tracing, own: &Workload, previous: Option<&Tracer>, stats: Arc<ExportStats>) -> Result<Tracer, String> {
        let resource = Arc::new(Resource::of(own));
        let exporter = match previous.filter(|p| p.config.collector == config.collector && *p.resource == *resource) {
            Some(p) => p.exporter.clone(),
            None => Arc::new(Exporter::start(config.collector.clone(), resource.clone(), stats)?),
        };
        let tags = config
            .custom_tags
            .iter()
            .map(|(k, t)| {
                let tag = match t {
                    CustomTag::Literal { value } => Tag::Value(value.clone()),
                    CustomTag::Environment { name, default_value } => Tag::Value(std::env::var(name).ok().or_else(|| default_value.clone()).unwrap_or_default()),
                    CustomTag::Header { name, default_value } => {
                        let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| format!("custom tag {k:?}: {name:?} is not a header name"))?;
                        Tag::Header(header, default_value.clone().unwrap_or_default())
                    }
                };
                Ok((k.clone(), tag))
            })
            .collect::<Result<_, String>>()?;
        Ok(Tracer { config: config.clone(), tags, resource, exporter })
    }

    pub fn is_for(&self, config: &Tracing, own: &Workload) -> bool {
        self.config == *config && *self.resource == Resource::of(own)
    }

    /// Sampled, for a request that starts a trace.
    fn sample(&self) -> bool {
        crate::random::chance_of(f64::from(self.config.sampling_ppm) / 10_000.0, crate::random::random_u64())
    }

    /// The request's trace step: its span (when sampled), and the context
    /// the next hop sees written into its headers. `authority` is the request's.
    pub fn start<B>(self: &Arc<Self>, req: &mut Request<B>, authority: Option<&str>, kind: SpanKind) -> Option<Box<Open>> {
        let seen = trace_context::read(req.headers());
        // A caller's "not sampled" already says all the next hop needs: pass it on as it is
        // (W3C lets a proxy that records nothing forward the context untouched).
        if seen.incoming.is_some_and(|i| i.parent.is_some() && i.sampled == Some(false)) {
            return None;
        }
        let ids = trace_context::child(seen.incoming.as_ref(), || self.sample(), crate::random::random_u64);
        let zipkin = self.config.collector.protocol == weft_proto::config::TraceProtocol::Zipkin;
        trace_context::inject(req.headers_mut(), &ids, trace_context::Forms::for_request(&seen, zipkin));
        if !ids.sampled {
            return None;
        }
        let header = |name: &HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Some(Box::new(Open {
            tracer: self.clone(),
            ids,
            kind,
            start: SystemTime::now(),
            authority: authority.map(str::to_string),
            user_agent: header(&USER_AGENT),
            request_id: header(&HeaderName::from_static("x-request-id")),
            tags: self.tags.iter().map(|(k, t)| (k.clone(), match t { Tag::Value(v) => v.clone(), Tag::Header(h, d) => header(h).unwrap_or_else(|| d.clone()) })).collect(),
        }))
    }
}

/// A sampled request's span, until the request is done.
pub struct Open {
    tracer: Arc<Tracer>,
    pub ids: SpanIds,
    kind: SpanKind,
    start: SystemTime,
    authority: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    tags: Vec<(String, String)>,
}

/// A span as exported.
#[derive(Debug)]
pub struct Finished {
    pub ids: SpanIds,
    pub kind: SpanKind,
    /// Istio's operation name: `HOST:PORT/*` of the Service (else the request's authority).
    pub name: String,
    pub start: SystemTime,
    pub duration: Duration,
    pub attributes: Vec<(String, String)>,
    /// A 5xx, or no response at all.
    pub error: bool,
    /// The other side: the upstream for a client span, the caller for a server span.
    pub remote: Option<SocketAddr>,
}

/// Hands the finished span of `record` to the exporter (never waits).
pub fn finish(open: Open, record: &RequestRecord, elapsed: Duration) {
    let exporter = open.tracer.exporter.clone();
    exporter.send(finished(open, record, elapsed));
}

fn finished(open: Open, record: &RequestRecord, elapsed: Duration) -> Finished {
    let Open { tracer, ids, kind, start, authority, user_agent, request_id, tags } = open;
    let service = &record.parties.service;
    let authority = authority.unwrap_or_else(|| "-".into());
    let name = if service.host != crate::metric_labels::UNKNOWN { format!("{}:{}/*", service.host, service.port) } else { format!("{authority}/*") };
    let mut url = format!("http://{authority}{}", record.path);
    if url.len() > tracer.config.max_path_tag_length {
        let mut cut = tracer.config.max_path_tag_length;
        while !url.is_char_boundary(cut) {
            cut -= 1;
        }
        url.truncate(cut);
    }
    let (peer_principal, remote) = match kind {
        SpanKind::Client => (record.parties.destination.principal.clone(), record.upstream),
        SpanKind::Server => (record.parties.source.principal.clone(), Some(record.peer.address)),
    };
    let error = record.status >= 500 || record.status == 0;
    let mut attributes: Vec<(String, String)> = vec![
        ("http.method".into(), record.method.to_string()),
        ("http.url".into(), url),
        ("http.protocol".into(), if record.version == http::Version::HTTP_2 { "HTTP/2" } else { "HTTP/1.1" }.into()),
        ("http.status_code".into(), record.status.to_string()),
        ("response_flags".into(), record.flags().into()),
        ("upstream_cluster".into(), record.cluster.clone()),
        ("upstream_cluster.name".into(), record.cluster.clone()),
        ("peer.address".into(), record.peer.address.to_string()),
        ("peer.principal".into(), peer_principal),
        ("component".into(), "proxy".into()),
        ("downstream_cluster".into(), "-".into()),
        ("istio.mesh_id".into(), "cluster.local".into()),
    ];
    for (k, v) in &tracer.resource.attributes {
        if k.starts_with("istio.") {
            attributes.push((k.to_string(), v.clone()));
        }
    }
    if let Some(id) = request_id {
        attributes.push(("guid:x-request-id".into(), id));
    }
    if let Some(ua) = user_agent {
        attributes.push(("user_agent".into(), ua));
    }
    if let Some(s) = record.grpc_status {
        attributes.push(("grpc.status_code".into(), s.to_string()));
    }
    if error {
        attributes.push(("error".into(), "true".into()));
    }
    attributes.extend(tags);
    Finished { ids, kind, name, start, duration: elapsed, attributes, error, remote }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::config::TraceCollector;

    fn tracer(sampling_ppm: u32) -> Arc<Tracer> {
        let config = Tracing { sampling_ppm, ..Tracing::to(TraceCollector::parse("zipkin://127.0.0.1:9").unwrap()) };
        Arc::new(Tracer::new(&config, &crate::metric_labels::unknown_workload(), None, Default::default()).unwrap())
    }

    fn request(headers: &[(&'static str, &str)]) -> Request<()> {
        let mut b = Request::get("http://api.prod/checkout");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn a_new_trace_follows_the_sampling_rate_and_a_callers_decision_wins() {
        let (never, always) = (tracer(0), tracer(1_000_000));
        let mut req = request(&[]);
        assert!(never.start(&mut req, None, SpanKind::Client).is_none());
        assert!(req.headers()["traceparent"].to_str().unwrap().ends_with("-00"), "the decision travels on");
        let mut req = request(&[]);
        let open = always.start(&mut req, None, SpanKind::Client).expect("sampled");
        assert!(req.headers()["traceparent"].to_str().unwrap().ends_with("-01"));
        assert_eq!(open.ids.parent, None);
        // A caller that sampled is followed even at 0%, one that did not even at 100%.
        let mut req = request(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]);
        assert_eq!(never.start(&mut req, None, SpanKind::Server).map(|o| o.ids.parent), Some(Some(0x00f067aa0ba902b7)));
        let unsampled = request(&[("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"), ("x-b3-spanid", "00f067aa0ba902b7"), ("x-b3-sampled", "0")]);
        let mut req = request(&[("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"), ("x-b3-spanid", "00f067aa0ba902b7"), ("x-b3-sampled", "0")]);
        assert!(always.start(&mut req, None, SpanKind::Server).is_none());
        assert_eq!(req.headers(), unsampled.headers(), "an unsampled caller's context is passed on untouched");
    }

    #[test]
    fn custom_tags_take_literals_headers_with_defaults_and_the_environment() {
        let mut config = Tracing::to(TraceCollector::parse("zipkin://127.0.0.1:9").unwrap());
        config.sampling_ppm = 1_000_000;
        config.custom_tags = [
            ("team".to_string(), CustomTag::Literal { value: "shop".into() }),
            ("user".to_string(), CustomTag::Header { name: "X-User".into(), default_value: Some("anon".into()) }),
            ("home".to_string(), CustomTag::Environment { name: "WEFT_TEST_SURELY_UNSET".into(), default_value: Some("none".into()) }),
        ]
        .into();
        let t = Arc::new(Tracer::new(&config, &crate::metric_labels::unknown_workload(), None, Default::default()).unwrap());
        let tags = |req: &mut Request<()>| {
            let mut tags = t.start(req, None, SpanKind::Client).unwrap().tags;
            tags.sort();
            tags
        };
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(tags(&mut request(&[("x-user", "ada")])), pairs(&[("home", "none"), ("team", "shop"), ("user", "ada")]));
        assert_eq!(tags(&mut request(&[])), pairs(&[("home", "none"), ("team", "shop"), ("user", "anon")]));
    }
}
