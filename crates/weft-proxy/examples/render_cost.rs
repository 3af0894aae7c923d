//! How long a scrape takes with many series: HTTP label sets in the standard
//! metrics, each rendered under Istio's and Linkerd's names with their
//! histograms (about 106 Prometheus series per label set: 100 label sets
//! are about 10,000 series), and what recording one request costs.
//! `cargo run --release -p weft-proxy --example render_cost`

use std::time::Instant;
use weft_proto::config::WorkloadMeta;
use weft_proxy::metric_labels::{service, workload};
use weft_proxy::telemetry::standard::{HttpKey, HttpSample, Parties, Reporter, Standard};

fn main() {
    let m = Standard::default();
    let dst = workload(Some(&WorkloadMeta { name: "reviews".into(), namespace: "prod".into(), app: "reviews".into(), version: "v1".into(), cluster: "Kubernetes".into() }), Some("spiffe://cluster.local/ns/prod/sa/reviews"));
    let svc = service(Some("reviews.prod.svc.cluster.local"), 9080);
    let sources: Vec<_> = (0..2_000)
        .map(|i| workload(Some(&WorkloadMeta { name: format!("caller-{i}"), namespace: "prod".into(), app: format!("caller-{i}"), version: "v1".into(), cluster: "Kubernetes".into() }), Some(&format!("spiffe://cluster.local/ns/prod/sa/caller-{i}"))))
        .collect();
    let key = |i: usize| HttpKey {
        parties: Parties { reporter: Reporter::Destination, source: sources[i % sources.len()].clone(), destination: dst.clone(), service: svc.clone(), mtls: true },
        grpc: false,
        code: [200, 201, 404, 500, 503][i % 5],
        grpc_status: None,
        flags: "-",
        rt_route: None,
        failure: false,
        extra: None,
    };
    let sets: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    for i in 0..sets {
        m.request(&key(i), HttpSample { duration_us: 900, request_bytes: 200, response_bytes: 1_200, ..Default::default() });
    }
    let sample = HttpSample { duration_us: 900, request_bytes: 200, response_bytes: 1_200, ..Default::default() };
    let k = key(77);
    let n = 1_000_000;
    let start = Instant::now();
    for _ in 0..n {
        m.request(std::hint::black_box(&k), sample);
    }
    println!("recording one request into an existing series: {:.0} ns", start.elapsed().as_nanos() as f64 / n as f64);
    for round in 0..3 {
        let start = Instant::now();
        let mut out = String::new();
        m.render(&mut out);
        let took = start.elapsed();
        let series = out.lines().filter(|l| !l.starts_with('#')).count();
        println!("render {round}: {sets} label sets, {series} series, {} KiB, {:.1} ms", out.len() / 1024, took.as_secs_f64() * 1000.0);
    }
}
