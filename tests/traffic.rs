//! Traffic policies end to end, each scenario named after the behaviour an
//! Istio user expects from the YAML they already have: timeouts with
//! per-try timeouts, circuit breaking, outlier detection, consistent hashing,
//! latency- and load-aware balancing, fault injection and mirroring. Real
//! proxies in network namespaces, pushed by a real controller.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weft_testkit::controller::{clusters, endpoint_count};
use weft_testkit::{Pod, TestMesh};

const REVIEWS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 8080}]
"#;

/// A controller, backends `reviews-<name>` (echo on 8080, labels
/// `app=reviews,version=<version>`) and a meshed `client`.
struct Mesh {
    mesh: TestMesh,
    backends: Vec<Pod>,
    client: Pod,
}

impl std::ops::Deref for Mesh {
    type Target = TestMesh;
    fn deref(&self) -> &TestMesh {
        &self.mesh
    }
}

fn mesh(tag: &str, backends: &[(&str, &str)]) -> Mesh {
    let mesh = TestMesh::start(&format!("traffic-{tag}"));
    let backends = backends.iter().map(|(name, version)| backend(&mesh, name, version)).collect();
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    Mesh { mesh, backends, client }
}

fn backend(mesh: &TestMesh, name: &str, version: &str) -> Pod {
    mesh.backend(&format!("reviews-{name}"), &format!("app=reviews,version={version}"), version)
}

/// The reviews clusters of a config, and how many endpoints they have.
fn reviews(cfg: &serde_json::Value) -> Vec<&serde_json::Value> {
    clusters(cfg, "reviews.default.svc.cluster.local").collect()
}

impl Mesh {
    /// Applies YAML and waits until the client runs (has acknowledged) a config in which `check` holds.
    fn apply_and_wait(&self, yaml: &str, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        self.ctl.apply(yaml).unwrap();
        self.ctl.wait_for_config("client", what, Duration::from_secs(10), check);
    }

    /// `n` GETs of `path` from the client, `concurrency` at once: answers by pod (and `status NNN`).
    fn count(&self, path: &str, n: usize, header: Option<&str>, concurrency: usize) -> BTreeMap<String, u64> {
        self.client.count(&format!("http://reviews:9080{path}"), n, header, concurrency)
    }

    fn metric_sum(&self, pod: &Pod, prefix: &str, filter: &str) -> f64 {
        let stats = pod.admin("/stats/prometheus").unwrap();
        stats.lines().filter(|l| l.starts_with(prefix) && l.contains(filter)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }
}

/// The backend's own view: requests served, most in flight at once, last authority.
fn backend_stats(pod: &Pod) -> serde_json::Value {
    pod.echo_stats().unwrap()
}

fn set(pod: &Pod, what: &str) {
    let (code, _) = pod.curl(&format!("http://127.0.0.1:8080/{what}"), &[]).unwrap();
    assert_eq!(code, 200);
}

fn dr(spec: &str) -> String {
    format!("{REVIEWS}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n{spec}")
}

#[test]
fn per_try_timeout_and_route_timeout_cut_a_5s_backend_with_504_and_count_the_tries() {
    let m = mesh("timeouts", &[("v1", "v1")]);
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - timeout: 1s\n    retries: {attempts: 5, perTryTimeout: 200ms, retryOn: \"5xx,reset\"}\n    route: [{destination: {host: reviews}}]\n";
    m.apply_and_wait(&format!("{REVIEWS}---\n{vs}"), "the timeout rule", |c| c.to_string().contains("\"per_try_timeout\":\"200ms\""));
    let start = Instant::now();
    let (code, body) = m.client.curl("http://reviews:9080/delay/5000", &["-D", "-"]).unwrap();
    let took = start.elapsed();
    assert_eq!(code, 504, "{body}");
    assert!(body.to_ascii_lowercase().contains("x-weft-flags: ut"), "{body}");
    assert!(took >= Duration::from_millis(950) && took < Duration::from_millis(2500), "answered after {took:?}, the route timeout is 1s");
    let retries = m.metric_sum(&m.client, "weft_upstream_retries_total", "");
    assert!(retries >= 2.0, "the per-try timeouts were retried ({retries} retries in metrics)");
    // Each try reached the backend: the first and the retries, all cut short.
    assert!(backend_stats(&m.backends[0])["requests"].as_u64().unwrap() >= 3);
}

#[test]
fn circuit_breaking_answers_overflow_at_once_with_503_uo_and_the_backend_sees_at_most_the_limit() {
    let m = mesh("breaker", &[("v1", "v1")]);
    m.apply_and_wait(
        &dr("  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}\n"),
        "the connection pool limits",
        |c| reviews(c).iter().any(|r| r["pool"]["max_connections"] == 1),
    );
    // 20 requests at once to a backend that takes a second each.
    let results: Vec<(u16, String, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    let start = Instant::now();
                    let (code, body) = m.client.curl("http://reviews:9080/delay/1000", &["-D", "-"]).unwrap();
                    (code, body, start.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let overflow: Vec<&(u16, String, Duration)> = results.iter().filter(|(c, _, _)| *c == 503).collect();
    let ok = results.iter().filter(|(c, _, _)| *c == 200).count();
    assert_eq!(overflow.len() + ok, 20, "{results:?}");
    assert!(overflow.len() >= 15, "at most 1 in flight + 1 pending (+ stragglers arriving after those finished): {ok} ok");
    for (_, body, took) in &overflow {
        assert!(body.to_ascii_lowercase().contains("x-weft-flags: uo"), "{body}");
        assert!(*took < Duration::from_millis(400), "an overflow is answered at once, not queued: {took:?}");
    }
    assert_eq!(backend_stats(&m.backends[0])["max_in_flight"], 1, "the backend never saw more than maxConnections");
}

#[test]
fn outlier_detection_ejects_a_failing_endpoint_and_brings_it_back_within_max_ejection_percent() {
    let m = mesh("outlier", &[("a", "v1"), ("b", "v1"), ("c", "v1")]);
    m.apply_and_wait(
        &dr("  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 34}\n"),
        "outlier detection",
        |c| reviews(c).iter().any(|r| r["outlier"]["consecutive_5xx"] == 3) && endpoint_count(c, "reviews") >= 3,
    );
    let (a, b) = (&m.backends[0], &m.backends[1]);
    set(a, "set-status/500");
    let before = backend_stats(a)["requests"].as_u64().unwrap();
    let counts = m.count("/", 90, None, 1);
    let failures = counts.get("status 500").copied().unwrap_or(0);
    let got = backend_stats(a)["requests"].as_u64().unwrap() - before;
    assert_eq!(got, 3, "a got its 3 consecutive failures, then no more traffic: {counts:?}");
    assert_eq!(failures, 3, "{counts:?}");
    assert!(m.metric_sum(&m.client, "weft_outlier_ejections_total", "") >= 1.0);
    // The client proxy's /clusters says which endpoint is out, and for how long.
    let text = m.client.admin("/clusters").unwrap();
    let clusters: serde_json::Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("[]").trim()).unwrap();
    let a_addr = format!("{}:8080", a.ip);
    let out: Vec<&serde_json::Value> =
        clusters.as_array().unwrap().iter().flat_map(|c| c["endpoints"].as_array().unwrap()).filter(|e| !e["ejected_for_ms"].is_null()).collect();
    assert_eq!(out.len(), 1, "{clusters}");
    assert_eq!(out[0]["address"], a_addr.as_str());
    let left = out[0]["ejected_for_ms"].as_u64().unwrap();
    assert!((1000..=2000).contains(&left), "baseEjectionTime is 2s, {left} ms left");
    let until = Instant::now() + Duration::from_millis(left);

    // Healthy again: it gets traffic once its ejection has run out, not before.
    set(a, "set-status/0");
    loop {
        let before = backend_stats(a)["requests"].as_u64().unwrap();
        m.count("/", 6, None, 1);
        let done = Instant::now();
        if backend_stats(a)["requests"].as_u64().unwrap() > before {
            // 50 ms for the admin call that measured `left`.
            assert!(done + Duration::from_millis(50) >= until, "a got traffic {:?} before its ejection ended", until - done);
            break;
        }
        assert!(done < until + Duration::from_secs(4), "a never came back");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Two failing endpoints, but maxEjectionPercent 34 of 3 ejects only one: the other keeps failing requests.
    set(a, "set-status/500");
    set(b, "set-status/500");
    let counts = m.count("/", 90, None, 1);
    let failures = counts.get("status 500").copied().unwrap_or(0);
    assert!(failures > 20, "one failing endpoint stays in rotation: {counts:?}");
    assert!(counts.get("reviews-c").copied().unwrap_or(0) >= 40, "{counts:?}");
}

#[test]
fn consistent_hash_keeps_each_user_on_one_endpoint_and_adding_one_moves_about_one_in_n() {
    let m = mesh("hash", &[("a", "v1"), ("b", "v1"), ("c", "v1")]);
    m.apply_and_wait(
        &dr("  trafficPolicy:\n    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n"),
        "consistent hashing",
        |c| reviews(c).iter().any(|r| r["lb"] == "ring_hash") && endpoint_count(c, "reviews") >= 3,
    );
    let users: Vec<String> = (0..120).map(|u| format!("x-user:user-{u}")).collect();
    let placement = |m: &Mesh| -> Vec<String> {
        users
            .iter()
            .map(|u| {
                let c = m.count("/", 3, Some(u), 1);
                assert_eq!(c.len(), 1, "{u} was spread over {c:?}");
                c.keys().next().cloned().unwrap_or_default()
            })
            .collect()
    };
    let three = placement(&m);
    let per: BTreeMap<&String, usize> = three.iter().fold(BTreeMap::new(), |mut acc, p| {
        *acc.entry(p).or_default() += 1;
        acc
    });
    assert_eq!(per.len(), 3, "users spread over all endpoints: {per:?}");

    let _d = backend(&m, "d", "v1");
    let start = Instant::now();
    while String::from_utf8_lossy(&m.ctl.weft(&["proxy-config", "client", "endpoints"]).unwrap().stdout).matches(":8080").count() < 4 {
        assert!(start.elapsed() < Duration::from_secs(10), "the fourth endpoint never reached the client");
        std::thread::sleep(Duration::from_millis(20));
    }
    let four = placement(&m);
    let moved = three.iter().zip(&four).filter(|(a, b)| a != b).count();
    let to_new = four.iter().filter(|p| *p == "reviews-d").count();
    assert_eq!(moved, to_new, "users only move to the new endpoint");
    // Ideal 1/4 of 120 = 30.
    assert!((12..=50).contains(&moved), "{moved} of 120 users moved");
}

#[test]
fn least_request_and_peak_ewma_prefer_the_fast_endpoint() {
    let m = mesh("latency", &[("fast", "v1"), ("slow", "v1")]);
    set(&m.backends[1], "set-latency/40");
    // No loadBalancer: peak EWMA, latency-aware.
    m.apply_and_wait(&dr("  trafficPolicy: {}\n"), "the rule", |c| reviews(c).iter().any(|r| r["lb"] == "peak_ewma") && endpoint_count(c, "reviews") >= 2);
    m.count("/", 20, None, 1); // both get measured
    let c = m.count("/", 300, None, 4);
    let fast = c.get("reviews-fast").copied().unwrap_or(0) as f64 / 300.0;
    assert!(fast > 0.75, "peak EWMA sent {:.0}% to the fast endpoint: {c:?}", fast * 100.0);

    // Least request: the slow endpoint holds its requests longer, so it has more in flight.
    m.apply_and_wait(&dr("  trafficPolicy:\n    loadBalancer: {simple: LEAST_REQUEST}\n"), "least request", |c| reviews(c).iter().any(|r| r["lb"] == "least_request"));
    let c = m.count("/", 300, None, 8);
    let fast = c.get("reviews-fast").copied().unwrap_or(0) as f64 / 300.0;
    assert!(fast > 0.65, "least request sent {:.0}% to the fast endpoint: {c:?}", fast * 100.0);
}

#[test]
fn fault_injection_aborts_10_percent_within_3_points_and_a_delay_shows_in_latency() {
    let m = mesh("faults", &[("v1", "v1")]);
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{uri: {prefix: /fast}}]\n    route: [{destination: {host: reviews}}]\n  - match: [{uri: {prefix: /slow}}]\n    fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}\n    route: [{destination: {host: reviews}}]\n  - match: [{headers: {x-fault-grpc: {exact: \"1\"}}}]\n    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: {host: reviews}}]\n  - fault: {abort: {httpStatus: 503, percentage: {value: 10}}}\n    route: [{destination: {host: reviews}}]\n";
    m.apply_and_wait(&format!("{REVIEWS}---\n{vs}"), "the faults", |c| c.to_string().contains("\"abort\""));
    let c = m.count("/other", 2000, None, 4);
    let aborted = c.get("status 503").copied().unwrap_or(0) as f64 / 2000.0;
    assert!((0.07..=0.13).contains(&aborted), "{:.1}% aborted: {c:?}", aborted * 100.0);
    assert_eq!(c.get("reviews-v1").copied().unwrap_or(0) + c.get("status 503").copied().unwrap_or(0), 2000, "{c:?}");
    let stats = m.client.admin("/stats/prometheus").unwrap();
    assert!(stats.contains("response_flags=\"FI\""), "{stats}");

    let timed = |path: &str| {
        let start = Instant::now();
        let (code, _) = m.client.curl(&format!("http://reviews:9080{path}"), &[]).unwrap();
        (code, start.elapsed())
    };
    let (code, slow) = timed("/slow");
    assert_eq!(code, 200);
    assert!(slow >= Duration::from_millis(200), "{slow:?}");
    let (fast_code, fast) = timed("/fast");
    assert_eq!(fast_code, 200);
    assert!(fast < slow, "only the delayed route is slow: {fast:?} vs {slow:?}");

    // A gRPC call gets its abort as gRPC: HTTP 200 with grpc-status 14 (UNAVAILABLE).
    let (code, head) = m
        .client
        .curl(
            "http://reviews:9080/shop.Cart/Add",
            &["--http2-prior-knowledge", "-X", "POST", "-D", "-", "-H", "content-type: application/grpc", "-H", "x-fault-grpc: 1", "--data-binary", ""],
        )
        .unwrap();
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("grpc-status: 14"), "{head}");
}

#[test]
fn mirroring_copies_to_v2_while_callers_only_ever_see_v1() {
    let m = mesh("mirror", &[("v1", "v1"), ("v2", "v2")]);
    // v2 is slow and failing: neither may reach the caller.
    set(&m.backends[1], "set-latency/1000");
    set(&m.backends[1], "set-status/500");
    let rules = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n---\n\
        apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n    mirror: {host: reviews, subset: v2}\n    mirrorPercentage: {value: 100}\n";
    m.apply_and_wait(&format!("{REVIEWS}---\n{rules}"), "the mirror", |c| c.to_string().contains("\"mirrors\""));
    let start = Instant::now();
    let c = m.count("/", 20, None, 1);
    let took = start.elapsed();
    assert_eq!(c.get("reviews-v1"), Some(&20), "callers see only v1: {c:?}");
    assert!(took < Duration::from_millis(1500), "the mirror's 1 s latency never reaches the caller: 20 requests took {took:?}");
    let start = Instant::now();
    loop {
        let s = backend_stats(&m.backends[1]);
        if s["requests"].as_u64() == Some(20) {
            assert!(s["last_authority"].as_str().is_some_and(|a| a.starts_with("reviews-shadow")), "{s}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "v2 got {s} of 20 copies");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn grpc_calls_failing_with_unavailable_are_retried_on_the_grpc_status() {
    let mesh = TestMesh::start("traffic-grpc");
    let (net, ctl) = (&mesh.net, &mesh.ctl);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/grpc_echo.py");
    let server = net.pod("greeter").unwrap();
    server.spawn("python3", &[script, "server", "50051", "greeter"]).unwrap();
    server.wait_listening(50051, Duration::from_secs(20)).unwrap();
    server.start_meshed_proxy(ctl.grpc, "default", "app=greeter", &[]).unwrap();
    let client = mesh.client("client", "app=client", &[("greeter", "10.96.0.11")]);
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: greeter, namespace: default}\nspec: {clusterIP: 10.96.0.11, selector: {app: greeter}, ports: [{name: grpc, port: 50051}]}\n";
    ctl.apply(svc).unwrap();
    let calls = |n: usize| -> BTreeMap<String, u64> {
        // grpcio's own resolver (c-ares) would ask a DNS server first; the pod has only /etc/hosts.
        let out = client
            .exec_ok("env", &["GRPC_DNS_RESOLVER=native", "python3", script, "flaky", "greeter:50051", &n.to_string()])
            .unwrap_or_else(|e| panic!("{e}\n{}", client.logs()));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Once the client has the route, every third call fails: no retries yet.
    ctl.wait_for_config("client", "the route to greeter", Duration::from_secs(10), |c| c.to_string().contains("\"10.96.0.11:50051\""));
    let before = calls(30);
    assert_eq!(before.get("UNAVAILABLE"), Some(&10), "{before:?}\n{}\n{}", client.logs(), server.logs());
    assert_eq!(before.get("OK"), Some(&20), "{before:?}");

    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: greeter}\nspec:\n  hosts: [greeter]\n  http:\n  - retries: {attempts: 2, retryOn: unavailable}\n    route: [{destination: {host: greeter}}]\n";
    ctl.apply(vs).unwrap();
    ctl.wait_for_config("client", "the retry policy", Duration::from_secs(5), |c| c.to_string().contains("\"unavailable\""));
    let stats = |p: &Pod| p.admin("/stats/prometheus").unwrap();
    let after = calls(60);
    assert_eq!(after.get("OK"), Some(&60), "every UNAVAILABLE was retried: {after:?}");
    let retried: f64 = stats(&client).lines().filter(|l| l.starts_with("weft_upstream_retries_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert!(retried >= 20.0, "retries in metrics: {retried}");
}

#[test]
fn a_grpc_route_sends_one_method_to_v2_and_the_rest_to_v1() {
    let mesh = TestMesh::start("traffic-grpcroute");
    let (net, ctl) = (&mesh.net, &mesh.ctl);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/grpc_echo.py");
    let mut servers = Vec::new();
    for version in ["v1", "v2"] {
        let pod = net.pod(&format!("greeter-{version}")).unwrap();
        pod.spawn("python3", &[script, "server", "50051", version]).unwrap();
        pod.wait_listening(50051, Duration::from_secs(20)).unwrap();
        pod.start_meshed_proxy(ctl.grpc, "default", &format!("app=greeter,version={version}"), &[]).unwrap();
        servers.push(pod);
    }
    let client = mesh.client("client", "app=client", &[("greeter", "10.96.0.11")]);
    let svc = |name: &str, ip: Option<&str>, selector: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{{}selector: {{{selector}}}, ports: [{{name: grpc, port: 50051}}]}}\n---\n",
            ip.map(|i| format!("clusterIP: {i}, ")).unwrap_or_default()
        )
    };
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: greeter, namespace: default}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: greeter, port: 50051}]\n  rules:\n  - matches: [{method: {service: weft.Echo, method: Say}}]\n    backendRefs: [{name: greeter-v2, port: 50051}]\n  - backendRefs: [{name: greeter-v1, port: 50051}]\n";
    ctl.apply(&format!(
        "{}{}{}{route}",
        svc("greeter", Some("10.96.0.11"), "app: greeter"),
        svc("greeter-v1", None, "app: greeter, version: v1"),
        svc("greeter-v2", None, "app: greeter, version: v2")
    ))
    .unwrap();
    ctl.wait_for_config("client", "the gRPC route", Duration::from_secs(10), |c| {
        c.to_string().contains("/weft.Echo/Say") && endpoint_count(c, "greeter-v1") == 1 && endpoint_count(c, "greeter-v2") == 1
    });
    // The client calls Say (unary, must reach v2) and Chat (streaming, the catch-all: v1).
    for _ in 0..5 {
        let out = client
            .exec_ok("env", &["GRPC_DNS_RESOLVER=native", "python3", script, "client", "greeter:50051"])
            .unwrap_or_else(|e| panic!("{e}\n{}", client.logs()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("unary hello mesh served-by v2") && text.contains("stream 5"), "{text}");
    }
    let stats = client.admin("/stats/prometheus").unwrap();
    assert!(stats.contains("cluster=\"outbound|50051||greeter-v1.default.svc.cluster.local\""), "Chat went to v1:\n{stats}");
}

#[test]
fn http2_requests_keep_their_authority_through_the_mesh() {
    let m = mesh("authority", &[("v1", "v1")]);
    m.apply_and_wait(REVIEWS, "the service", |c| c.to_string().contains("\"10.96.0.10:9080\""));
    let (code, body) = m.client.curl("http://reviews:9080/", &["--http2-prior-knowledge"]).unwrap();
    assert_eq!(code, 200, "{body}");
    let seen = backend_stats(&m.backends[0])["last_authority"].as_str().unwrap_or_default().to_string();
    assert_eq!(seen, "reviews:9080", "the app saw another authority");
    let (code, _) = m.client.curl("http://reviews:9080/", &[]).unwrap();
    assert_eq!(code, 200);
    assert_eq!(backend_stats(&m.backends[0])["last_authority"], "reviews:9080", "HTTP/1.1 Host");
}

#[test]
fn a_sticky_cookie_is_handed_out_and_keeps_the_client_on_its_endpoint() {
    let m = mesh("cookie", &[("a", "v1"), ("b", "v1"), ("c", "v1")]);
    m.apply_and_wait(
        &dr("  trafficPolicy:\n    loadBalancer: {consistentHash: {httpCookie: {name: sticky, ttl: 3600s}}}\n"),
        "cookie hashing",
        |c| reviews(c).iter().any(|r| !r["hash_on"]["cookie_ttl"].is_null()) && endpoint_count(c, "reviews") >= 3,
    );
    let (code, head) = m.client.curl("http://reviews:9080/", &["-s", "-D", "-", "-o", "/dev/null"]).unwrap();
    assert_eq!(code, 200, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie: sticky=").then(|| l["set-cookie: ".len()..].split(';').next().unwrap_or("").to_string()))
        .unwrap_or_else(|| panic!("no sticky cookie: {head}"));
    assert!(head.to_ascii_lowercase().contains("max-age=3600"), "{head}");
    let with_cookie = format!("cookie:{cookie}");
    let c = m.count("/", 30, Some(&with_cookie), 1);
    assert_eq!(c.len(), 1, "the cookie keeps one endpoint: {c:?}");
}
