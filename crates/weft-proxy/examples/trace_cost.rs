//! What tracing adds to a request on the proxy's request path: the trace
//! step (read the caller's context, decide, write the next hop's headers)
//! at Istio's default 1% sampling, for a request that starts a trace and
//! for one that continues a caller's; and, for comparison, the same
//! request's headers cloned (what any header rewrite costs).
//!
//! `cargo run --release -p weft-proxy --example trace_cost`

use std::sync::Arc;
use std::time::Instant;
use weft_proto::config::{TraceCollector, Tracing};
use weft_proxy::telemetry::tracer::{SpanKind, Tracer};

fn main() {
    let config = Tracing::to(TraceCollector::parse("otlp://127.0.0.1:9").expect("a collector address"));
    let tracer = Arc::new(Tracer::new(&config, &weft_proxy::metric_labels::unknown_workload(), None, Default::default()).expect("a tracer"));
    let request = |traceparent: Option<&str>| {
        let mut b = http::Request::get("http://reviews.prod/api/v1/items").header("host", "reviews.prod").header("user-agent", "bench").header("x-request-id", "0f0e6b4c-1b6c-4b8e-9a55-9d1e3f2a7c11");
        if let Some(tp) = traceparent {
            b = b.header("traceparent", tp);
        }
        b.body(()).expect("a request")
    };
    let n = 1_000_000;
    for (what, template) in [("starts a trace", request(None)), ("continues an unsampled caller's trace", request(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")))] {
        let mut sampled = 0;
        let start = Instant::now();
        for _ in 0..n {
            let mut req = template.clone();
            if tracer.start(&mut req, Some("reviews.prod"), SpanKind::Client).is_some() {
                sampled += 1;
            }
            std::hint::black_box(&req);
        }
        let with = start.elapsed();
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(template.clone());
        }
        let clone = start.elapsed();
        println!(
            "{what}: {:.0} ns per request for the trace step ({} of {n} sampled; their open span included), over the {:.0} ns a request clone takes",
            (with.as_nanos() as f64 - clone.as_nanos() as f64) / n as f64,
            sampled,
            clone.as_nanos() as f64 / n as f64
        );
    }
}
