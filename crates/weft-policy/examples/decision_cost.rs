//! How long one decision takes for a policy set (the benchmark's 50 x 5 by
//! default): `cargo run --release -p weft-policy --example decision_cost -- [POLICIES.json]`
//! where the file is a proxy config `inbound:` section (tests/support/bench_authz_policies.py).

use std::time::Instant;
use weft_policy::{Authorizer, Http, Request};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "/tmp/authz-inbound.json".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (write it with tests/support/bench_authz_policies.py)"));
    let inbound: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let authz: weft_proto::authz::Authorization = serde_json::from_value(inbound["authorization"].clone()).expect("an authorization section");
    let a = Authorizer::new(&authz, Some("cluster.local")).expect("compiles");
    let headers = http::HeaderMap::new();
    let ip = "10.88.0.10".parse().unwrap();
    let http = Http { method: "GET", path: "/1k", host: "10.88.0.20:8080", headers: &headers, remote_ip: ip, jwt: None };
    let req = Request { peer_ip: ip, identity: Some("spiffe://cluster.local/ns/bench/sa/cli"), port: 8080, destination_ip: None, sni: None, http: Some(http) };
    assert!(a.evaluate(&req).allowed());
    let n = 1_000_000;
    let start = Instant::now();
    let mut allowed = 0;
    for _ in 0..n {
        allowed += a.evaluate(std::hint::black_box(&req)).allowed() as u32;
    }
    let took = start.elapsed();
    println!("{} policies: {:.0} ns per decision, prefilter made each time ({allowed} allowed)", authz.policies.len(), took.as_nanos() as f64 / n as f64);
    // As the proxy runs it: the caller's prefilter kept for its connection.
    let kept = a.prefilter(&req);
    let start = Instant::now();
    for _ in 0..n {
        allowed += a.evaluate_with(&kept, std::hint::black_box(&req)).allowed() as u32;
    }
    println!("{} policies: {:.0} ns per decision, prefilter kept per connection ({allowed} allowed in all)", authz.policies.len(), start.elapsed().as_nanos() as f64 / n as f64);
}
