//! Distributed tracing end to end: three meshed pods (client -> api -> db,
//! the api app copying the trace headers to its own call, as Istio asks
//! apps to), real proxies recording a span per hop side, and a collector
//! (tests/support/trace_collector.py) that decodes OTLP with the official
//! OpenTelemetry Python protos over gRPC and HTTP, and Zipkin v2 JSON.
//! Which collector a proxy exports to is switched live by a Telemetry
//! resource; sampling is checked over 2,000 requests.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_testkit::{free_port, ControllerProcess, Net, Pod};

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: prod}
spec: {clusterIP: 10.96.4.10, selector: {app: api}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod}
spec: {clusterIP: 10.96.4.20, selector: {app: db}, ports: [{name: http, port: 80, targetPort: 8080}]}
"#;

const HOSTS: &[(&str, &str)] = &[("api.prod", "10.96.4.10"), ("db.prod", "10.96.4.20")];

/// The test collector, its spans written to a file as JSON lines.
struct Collector {
    child: Child,
    out: std::path::PathBuf,
    grpc: u16,
    http: u16,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Collector {
    fn start(host: std::net::Ipv4Addr) -> Collector {
        let grpc = free_port().unwrap();
        let http = loop {
            let p = free_port().unwrap();
            if p != grpc {
                break p;
            }
        };
        let out = std::env::temp_dir().join(format!("weft-e2e-spans-{}-{grpc}.jsonl", std::process::id()));
        let child = Command::new("python3")
            .arg(repo("tests/support/trace_collector.py"))
            .args([host.to_string(), grpc.to_string(), http.to_string()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with grpcio and opentelemetry-proto");
        for port in [grpc, http] {
            weft_testkit::wait_for_tcp((host, port).into(), Duration::from_secs(20)).expect("the collector listens");
        }
        Collector { child, out, grpc, http }
    }

    fn spans(&self) -> Vec<serde_json::Value> {
        let file = std::fs::File::open(&self.out).unwrap();
        std::io::BufReader::new(file).lines().map_while(Result::ok).filter_map(|l| serde_json::from_str(&l).ok()).collect()
    }

    /// Waits for `n` spans of `trace_id` and returns them.
    fn trace(&self, trace_id: &str, n: usize, pods: &[&Pod]) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<_> = self.spans().into_iter().filter(|s| s["trace_id"] == trace_id).collect();
            if spans.len() >= n {
                return spans;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = pods.iter().map(|p| format!("[{}]\n{}", p.name, p.logs())).collect();
                panic!("trace {trace_id}: {} spans of {n} arrived:\n{spans:#?}\n{}", spans.len(), logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

struct Mesh {
    // Fields drop in order: pods before the network and the controller.
    client: Pod,
    api: Pod,
    db: Pod,
    collector: Collector,
    ctl: ControllerProcess,
    _net: Net,
}

/// The three pods, their controller tracing to the test collector: the
/// default provider OTLP/gRPC at `sampling` percent, OTLP/HTTP and Zipkin
/// there to be picked by name.
fn mesh(tag: &str, sampling: &str) -> Mesh {
    let net = Net::new().expect("network namespaces");
    let collector = Collector::start(net.gateway());
    let gw = net.gateway();
    let providers = [
        format!("otel=otlp://{gw}:{}", collector.grpc),
        format!("otel-http=otlp+http://{gw}:{}", collector.http),
        format!("zipkin=zipkin://{gw}:{}", collector.http),
    ];
    let mut args = vec!["--tracing-default-provider", "otel", "--tracing-sampling", sampling];
    for p in &providers {
        args.extend(["--tracing-provider", p.as_str()]);
    }
    let dir = std::env::temp_dir().join(format!("weft-e2e-tracing-{tag}-{}", std::process::id()));
    let ctl = ControllerProcess::start_with(&net, &dir, &args).expect("weft controller");
    ctl.apply(MESH).unwrap();
    let meshed = |name: &str| {
        let pod = net.pod(name).unwrap();
        let token = ctl.token("prod", name).unwrap();
        pod.start_meshed_proxy(ctl.grpc, "prod", &format!("app={name},version=v1"), &["--service-account", name, "--token", &token]).unwrap();
        pod.set_hosts(HOSTS).unwrap();
        pod
    };
    let client = meshed("client");
    let api = meshed("api");
    let db = meshed("db");
    db.start_echo(8080, "v1").unwrap();
    let hop = repo("tests/support/trace_hop.py");
    api.spawn("python3", &[hop.to_str().unwrap(), "8080", "db.prod", "/rows"]).unwrap();
    // A Python start-up can be slow on a loaded machine.
    api.wait_listening(8080, Duration::from_secs(30)).unwrap();
    for pod in ["client", "api"] {
        ctl.wait_for_config(pod, "endpoints with identities and tracing", Duration::from_secs(20), |c| {
            let s = c.to_string();
            s.contains("spiffe://cluster.local/ns/prod/sa/db") && s.contains("spiffe://cluster.local/ns/prod/sa/api") && c["telemetry"]["tracing"]["collector"]["protocol"] == "otlp_grpc"
        });
    }
    Mesh { client, api, db, collector, ctl, _net: net }
}

/// The parent id in a `traceparent`.
fn parent_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap_or("")
}

/// One trace of four spans, as client -> api -> db makes it, checked link by link.
fn check_three_pod_trace(m: &Mesh, via: &str, extra: &[&str]) -> (String, Vec<serde_json::Value>) {
    let (code, body) = m.client.curl("http://api.prod/checkout", extra).unwrap();
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The api app and the db app each got a traceparent.
    let at_api = answer["received"]["traceparent"].as_str().expect("the api app gets a traceparent").to_string();
    let at_db = answer["upstream"]["headers"]["traceparent"].as_str().expect("the db app gets a traceparent").to_string();
    let trace_id = at_api.split('-').nth(1).unwrap().to_string();
    assert_eq!(at_db.split('-').nth(1), Some(trace_id.as_str()), "one trace end to end");
    assert!(at_api.ends_with("-01") && at_db.ends_with("-01"), "sampled: {at_api} {at_db}");
    let spans = m.collector.trace(&trace_id, 4, &[&m.client, &m.api, &m.db]);
    assert_eq!(spans.len(), 4, "two spans per hop, no more: {spans:#?}");
    assert!(spans.iter().all(|s| s["via"] == via), "all through {via}: {spans:#?}");
    let find = |service: &str, kind: &str| {
        spans.iter().find(|s| s["service"] == service && s["kind"] == kind).unwrap_or_else(|| panic!("no {kind} span of {service}: {spans:#?}")).clone()
    };
    let c1 = find("client.prod", "CLIENT");
    let s1 = find("api.prod", "SERVER");
    let c2 = find("api.prod", "CLIENT");
    let s2 = find("db.prod", "SERVER");
    // Each side's span is the parent of the next: the client proxy's of the
    // api proxy's, whose span the app sees as its parent and passes on...
    assert_eq!(s1["parent_id"], c1["span_id"]);
    assert_eq!(parent_of(&at_api), s1["span_id"].as_str().unwrap());
    assert_eq!(c2["parent_id"], s1["span_id"], "the api app's call continues the api proxy's span");
    assert_eq!(s2["parent_id"], c2["span_id"]);
    assert_eq!(parent_of(&at_db), s2["span_id"].as_str().unwrap());
    // Istio's span names and attributes.
    assert_eq!(c1["name"], "api.prod.svc.cluster.local:80/*");
    assert_eq!(s2["name"], "db.prod.svc.cluster.local:80/*");
    for s in [&c1, &s1, &c2, &s2] {
        let a = &s["attributes"];
        assert_eq!(a["http.method"], "GET", "{s:#}");
        assert_eq!(a["http.status_code"], "200", "{s:#}");
        assert_eq!(a["response_flags"], "-", "{s:#}");
        assert_eq!(a["component"], "proxy", "{s:#}");
        assert!(a["guid:x-request-id"].as_str().is_some_and(|id| id.len() == 36), "{s:#}");
        assert_eq!(s["error"], false);
    }
    assert_eq!(c1["attributes"]["http.url"], "http://api.prod/checkout");
    assert_eq!(s2["attributes"]["http.url"], "http://db.prod/rows");
    assert_eq!(c1["attributes"]["peer.principal"], "spiffe://cluster.local/ns/prod/sa/api", "a client span names the server it proved");
    assert_eq!(s1["attributes"]["peer.principal"], "spiffe://cluster.local/ns/prod/sa/client", "a server span names the caller it proved");
    assert!(c1["attributes"]["upstream_cluster"].as_str().is_some_and(|c| c.contains("api.prod.svc.cluster.local")), "{c1:#}");
    // One request id along the whole path.
    let id = &c1["attributes"]["guid:x-request-id"];
    assert!(spans.iter().all(|s| s["attributes"]["guid:x-request-id"] == *id));
    assert_eq!(answer["upstream"]["headers"]["x-request-id"], *id);
    (trace_id, spans)
}

fn use_provider(m: &Mesh, name: &str, protocol: &str) {
    m.ctl
        .apply(&format!("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: mesh-default, namespace: istio-system}}\nspec:\n  tracing: [{{providers: [{{name: {name}}}]}}]\n"))
        .unwrap();
    for pod in ["client", "api", "db"] {
        m.ctl.wait_for_config(pod, &format!("tracing to {name}"), Duration::from_secs(20), |c| c["telemetry"]["tracing"]["collector"]["protocol"] == protocol);
    }
}

#[test]
fn a_call_across_three_pods_is_one_trace_of_four_spans_over_otlp_grpc_otlp_http_and_zipkin() {
    let m = mesh("hops", "100");
    check_three_pod_trace(&m, "otlp-grpc", &[]);
    assert!(m.collector.spans().iter().all(|s| s["scope"] == "weft-proxy" || s["via"] == "zipkin"));

    // A Telemetry resource switches every proxy to Zipkin, live.
    use_provider(&m, "zipkin", "zipkin");
    check_three_pod_trace(&m, "zipkin", &[]);

    // And to OTLP over HTTP; a caller's B3 context (single header) is continued, not replaced.
    use_provider(&m, "otel-http", "otlp_http");
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1";
    let (trace_id, spans) = check_three_pod_trace(&m, "otlp-http", &["-H", &format!("b3: {caller}")]);
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    let root = spans.iter().find(|s| s["service"] == "client.prod").unwrap();
    assert_eq!(root["parent_id"], "00f067aa0ba902b7", "the caller's span is the client proxy's parent");

    // Nothing was dropped on the way.
    for pod in [&m.client, &m.api, &m.db] {
        assert_eq!(counter(pod, "weft_tracing_spans_dropped_total"), 0, "[{}]", pod.name);
    }
}

/// A counter of the pod's proxy (no labels).
fn counter(pod: &Pod, name: &str) -> u64 {
    let text = pod.admin("/stats/prometheus").unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok())).unwrap_or_else(|| panic!("[{}] no {name}", pod.name))
}

/// The sum of a family's samples whose labels contain every one of `labels`.
fn sum(pod: &Pod, name: &str, labels: &[&str]) -> u64 {
    let text = pod.admin("/stats/prometheus").unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

#[test]
fn ten_percent_sampling_holds_over_2000_requests_and_every_hop_follows_the_decision() {
    let m = mesh("sampling", "10");
    let n = 2000;
    let answers = m.client.count("http://db.prod/", n, None, 4);
    assert_eq!(answers.values().sum::<u64>(), n as u64, "{answers:?}");
    assert_eq!(answers.get("db"), Some(&(n as u64)), "{answers:?}");
    // Each record (and span) is emitted when its response ends: wait for all 2,000.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sum(&m.client, "istio_requests_total", &["reporter=\"source\"", "destination_service_name=\"db\""]) < n as u64 {
        assert!(Instant::now() < deadline, "the client proxy never recorded {n} requests");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sampled = counter(&m.client, "weft_tracing_spans_recorded_total");
    assert!((140..=260).contains(&sampled), "10% of {n} within 3 points is 140 to 260, not {sampled}");
    // The db proxy follows the client's decision: exactly its spans, each a child of one of the client's.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = m.collector.spans();
        let exported = |p: &Pod| counter(p, "weft_tracing_spans_exported_total");
        if exported(&m.client) == sampled && exported(&m.db) == sampled && spans.len() as u64 == 2 * sampled {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "client exported {} of {sampled}, db recorded {} and exported {}, the collector has {} spans",
            exported(&m.client),
            counter(&m.db, "weft_tracing_spans_recorded_total"),
            exported(&m.db),
            spans.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(counter(&m.db, "weft_tracing_spans_recorded_total"), sampled, "the server proxy samples exactly what the client did");
    let clients: BTreeMap<&str, &str> = spans.iter().filter(|s| s["kind"] == "CLIENT").map(|s| (s["span_id"].as_str().unwrap(), s["trace_id"].as_str().unwrap())).collect();
    assert_eq!(clients.len() as u64, sampled);
    for s in spans.iter().filter(|s| s["kind"] == "SERVER") {
        let parent = s["parent_id"].as_str().unwrap_or("");
        assert_eq!(clients.get(parent), s["trace_id"].as_str().as_ref(), "a server span's parent is a client span of its trace: {s:#}");
    }
    // An unsampled request still carries the decision to the app.
    let (_, body) = m.client.curl("http://db.prod/", &["-H", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"]).unwrap();
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tp = got["headers"]["traceparent"].as_str().unwrap();
    assert!(tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && tp.ends_with("-00"), "{tp}");
}
