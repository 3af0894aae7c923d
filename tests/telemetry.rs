//! Telemetry end to end: meshed pods with proven identities, real curl and
//! redis-cli traffic, the standard metrics as both proxies of a hop report
//! them (Istio's labels for both reporters, Linkerd's names), and a real
//! Prometheus (Debian's package) scraping the proxies and the controller and
//! answering the queries from Istio's and Linkerd's docs, the rules in
//! deploy/prometheus and every Grafana panel in deploy/grafana, unchanged.

use std::process::{Child, Command};
use std::time::{Duration, Instant};
use weft_testkit::{http_get, ControllerProcess, Net, Pod};

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: prod}
spec: {clusterIP: 10.96.3.10, selector: {app: reviews}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: prod}
spec: {clusterIP: 10.96.3.20, selector: {app: redis}, ports: [{name: tcp-redis, port: 6379}]}
---
apiVersion: v1
kind: Service
metadata: {name: ghost, namespace: prod}
spec: {clusterIP: 10.96.3.30, selector: {app: ghost}, ports: [{name: http, port: 80, targetPort: 9999}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: prod}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews.prod.svc.cluster.local]
  http:
  - name: pages
    match: [{uri: {prefix: /}}]
    route: [{destination: {host: reviews.prod.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ghost, namespace: prod}
spec:
  hosts: [ghost.prod.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /only-here}}]
    route: [{destination: {host: ghost.prod.svc.cluster.local}}]
"#;

struct Mesh {
    net: Net,
    ctl: ControllerProcess,
    productpage: Pod,
    reviews: Pod,
    redis: Pod,
}

const HOSTS: &[(&str, &str)] = &[
    ("reviews.prod", "10.96.3.10"),
    ("redis.prod", "10.96.3.20"),
    ("ghost.prod", "10.96.3.30"),
];

fn mesh(tag: &str) -> Mesh {
    mesh_with(tag, &[])
}

/// The mesh, its controller started with `args`.
fn mesh_with(tag: &str, args: &[&str]) -> Mesh {
    let net = Net::new().expect("network namespaces");
    let dir = std::env::temp_dir().join(format!("weft-e2e-telemetry-{tag}-{}", std::process::id()));
    let ctl = ControllerProcess::start_with(&net, &dir, args).expect("weft controller");
    ctl.apply(MESH).unwrap();
    let meshed = |name: &str, sa: &str, labels: &str| {
        let pod = net.pod(name).unwrap();
        let token = ctl.token("prod", sa).unwrap();
        pod.start_meshed_proxy(
            ctl.grpc,
            "prod",
            labels,
            &["--service-account", sa, "--token", &token],
        )
        .unwrap();
        pod.set_hosts(HOSTS).unwrap();
        pod
    };
    let productpage = meshed("productpage", "productpage", "app=productpage,version=v1");
    let reviews = meshed("reviews", "reviews", "app=reviews,version=v2");
    reviews.start_echo(8080, "v2").unwrap();
    let redis = meshed("redis", "redis", "app=redis");
    redis
        .spawn(
            "redis-server",
            &[
                "--port",
                "6379",
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        .unwrap();
    redis.wait_listening(6379, Duration::from_secs(10)).unwrap();
    ctl.wait_for_config(
        "productpage",
        "reviews and redis endpoints with identities and workloads",
        Duration::from_secs(20),
        |c| {
            let s = c.to_string();
            s.contains("spiffe://cluster.local/ns/prod/sa/reviews")
                && s.contains("spiffe://cluster.local/ns/prod/sa/redis")
                && s.contains("\"version\":\"v2\"")
        },
    );
    ctl.wait_for_config(
        "reviews",
        "the deny policy and its Service",
        Duration::from_secs(20),
        |c| {
            c["inbound"]["authorization"]["policies"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
                && c["inbound"]["services"]
                    .to_string()
                    .contains("reviews.prod.svc.cluster.local")
        },
    );
    Mesh {
        net,
        ctl,
        productpage,
        reviews,
        redis,
    }
}

/// Every sample line of the pod's `/stats/prometheus` whose name is `name`.
fn samples(pod: &Pod, name: &str) -> Vec<String> {
    let text = pod.admin("/stats/prometheus").unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(str::to_string)
        .collect()
}

/// The value of the sample `name{labels}` (labels exactly as rendered), waiting for it to reach `want`.
fn wait_value(pod: &Pod, name: &str, labels: &str, want: u64) {
    let line = format!("{name}{{{labels}}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = samples(pod, name)
            .iter()
            .find(|l| l.starts_with(&line))
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()));
        if got == Some(want) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "[{}] {line} is {got:?}, expected {want}; all {name}:\n{}",
                pod.name,
                samples(pod, name).join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn workload(side: &str, name: &str, principal: &str, app: &str, version: &str) -> String {
    format!(
        "{side}_workload=\"{name}\",{side}_workload_namespace=\"{ns}\",{side}_principal=\"{principal}\",{side}_app=\"{app}\",{side}_version=\"{version}\",{side}_cluster=\"{cluster}\"",
        ns = if name == "unknown" { "unknown" } else { "prod" },
        cluster = if name == "unknown" { "unknown" } else { "Kubernetes" },
    )
}

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/prod/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/prod/sa/reviews";

/// The labels of an `istio_requests_total` series, as the proxies render them.
fn http_series(reporter: &str, src: &str, dst: &str, svc: &str, code: u16, flags: &str, security: &str) -> String {
    format!(
        "reporter=\"{reporter}\",{src},{dst},{},request_protocol=\"http\",response_code=\"{code}\",grpc_response_status=\"\",response_flags=\"{flags}\",connection_security_policy=\"{security}\"",
        service(svc)
    )
}

fn service(name: &str) -> String {
    format!("destination_service=\"{name}.prod.svc.cluster.local\",destination_service_name=\"{name}\",destination_service_namespace=\"prod\"")
}

#[test]
fn both_reporters_label_a_meshed_call_an_unmeshed_caller_a_tcp_connection_and_local_replies() {
    let m = mesh("labels");
    for _ in 0..3 {
        assert_eq!(
            m.productpage.curl("http://reviews.prod/", &[]).unwrap().0,
            200
        );
    }
    assert_eq!(
        m.productpage
            .curl("http://reviews.prod/status/503", &[])
            .unwrap()
            .0,
        503
    );

    // A meshed call, as the client's proxy reports it (reporter="source")...
    let src = workload("source", "productpage", PRODUCTPAGE, "productpage", "v1");
    let dst = workload("destination", "reviews", REVIEWS, "reviews", "v2");
    wait_value(
        &m.productpage,
        "istio_requests_total",
        &http_series("source", &src, &dst, "reviews", 200, "-", "mutual_tls"),
        3,
    );
    // ...and as the server's proxy does (reporter="destination"): it learnt its
    // caller's workload from the caller's certificate, in the handshake.
    wait_value(
        &m.reviews,
        "istio_requests_total",
        &http_series("destination", &src, &dst, "reviews", 200, "-", "mutual_tls"),
        3,
    );
    wait_value(
        &m.reviews,
        "istio_requests_total",
        &http_series("destination", &src, &dst, "reviews", 503, "-", "mutual_tls"),
        1,
    );
    // Durations and sizes went into the histograms with them.
    let count = samples(&m.reviews, "istio_request_duration_milliseconds_count");
    assert!(
        count
            .iter()
            .any(|l| l.contains("response_code=\"200\"") && l.ends_with(" 3")),
        "{count:?}"
    );
    let bytes = samples(&m.productpage, "istio_response_bytes_sum");
    assert!(
        bytes.iter().any(|l| l.contains("response_code=\"200\"")
            && l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|b| b > 3.0 * 50.0)),
        "{bytes:?}"
    );

    // Linkerd's names for the same requests: the client side names the destination.
    wait_value(
        &m.productpage,
        "response_total",
        &format!("direction=\"outbound\",authority=\"reviews.prod.svc.cluster.local:80\",dst_service=\"reviews\",dst_deployment=\"reviews\",dst_namespace=\"prod\",server_id=\"{REVIEWS}\",tls=\"true\",rt_route=\"pages\",status_code=\"503\",classification=\"failure\""),
        1,
    );
    wait_value(&m.reviews, "request_total", &format!("direction=\"inbound\",authority=\"reviews.prod.svc.cluster.local:80\",client_id=\"{PRODUCTPAGE}\",tls=\"true\",classification=\"success\""), 3);

    // An unmeshed caller: unknown, and no mTLS.
    let outsider = m.net.pod("outsider").unwrap();
    assert_eq!(
        outsider
            .curl(&format!("http://{}:8080/", m.reviews.ip), &[])
            .unwrap()
            .0,
        200
    );
    wait_value(
        &m.reviews,
        "istio_requests_total",
        &http_series("destination", &workload("source", "unknown", "unknown", "unknown", "unknown"), &dst, "reviews", 200, "-", "none"),
        1,
    );

    // Local replies carry Envoy's flags: RBAC (the server's policy), NR (no rule
    // matched), UF (nothing listens behind the endpoint).
    assert_eq!(
        m.productpage
            .curl("http://reviews.prod/admin", &[])
            .unwrap()
            .0,
        403
    );
    wait_value(
        &m.reviews,
        "istio_requests_total",
        &http_series("destination", &src, &dst, "reviews", 403, "RBAC", "mutual_tls"),
        1,
    );
    assert_eq!(
        m.productpage
            .curl("http://ghost.prod/elsewhere", &[])
            .unwrap()
            .0,
        404
    );
    let nr = samples(&m.productpage, "istio_requests_total");
    assert!(
        nr.iter().any(|l| l.contains("response_code=\"404\"")
            && l.contains("response_flags=\"NR\"")
            && l.contains(&src)),
        "{nr:?}"
    );
    // An endpoint with nothing behind it: the unmeshed pod, where no one listens on 9999.
    let ghost = outsider.ip.to_string();
    m.ctl
        .apply(&format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: ghost-vm, namespace: prod}}\nspec: {{address: {ghost}, labels: {{app: ghost}}}}\n"))
        .unwrap();
    m.ctl.wait_for_config(
        "productpage",
        "ghost's endpoint",
        Duration::from_secs(15),
        |c| c.to_string().contains(&format!("{ghost}:9999")),
    );
    assert_eq!(
        m.productpage
            .curl("http://ghost.prod/only-here", &[])
            .unwrap()
            .0,
        503
    );
    let uf = samples(&m.productpage, "istio_requests_total");
    assert!(
        uf.iter().any(|l| l.contains("response_code=\"503\"")
            && l.contains("response_flags=\"UF\"")
            && l.contains("destination_service_name=\"ghost\"")),
        "{uf:?}"
    );

    // UO: over a circuit breaker's limit, the client's proxy answers at once.
    m.ctl
        .apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: prod}\nspec:\n  host: reviews.prod.svc.cluster.local\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}\n")
        .unwrap();
    m.ctl.wait_for_config(
        "productpage",
        "the connection pool limit",
        Duration::from_secs(15),
        |c| {
            c["clusters"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("|reviews.prod.svc.cluster.local"))
                        && c["pool"]["max_connections"] == 1
                })
            })
        },
    );
    let codes: Vec<u16> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    m.productpage
                        .curl("http://reviews.prod/delay/500", &[])
                        .map(|r| r.0)
                        .unwrap_or(0)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(
        codes.iter().filter(|c| **c == 503).count() >= 6,
        "{codes:?}"
    );
    let uo = samples(&m.productpage, "istio_requests_total");
    assert!(
        uo.iter().any(|l| l.contains("response_code=\"503\"")
            && l.contains("response_flags=\"UO\"")
            && l.contains("destination_service_name=\"reviews\"")),
        "{uo:?}"
    );

    // Opaque TCP: redis-cli PING through both proxies, under Istio's and Linkerd's TCP names.
    let pong = m
        .productpage
        .exec_ok("redis-cli", &["-h", "redis.prod", "-p", "6379", "PING"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&pong.stdout).trim(), "PONG");
    let rdst = workload(
        "destination",
        "redis",
        "spiffe://cluster.local/ns/prod/sa/redis",
        "redis",
        "unknown",
    );
    let tcp = format!("{},request_protocol=\"tcp\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"", service("redis"));
    wait_value(
        &m.productpage,
        "istio_tcp_connections_opened_total",
        &format!("reporter=\"source\",{src},{rdst},{tcp}"),
        1,
    );
    wait_value(
        &m.productpage,
        "istio_tcp_connections_closed_total",
        &format!("reporter=\"source\",{src},{rdst},{tcp}"),
        1,
    );
    wait_value(
        &m.redis,
        "istio_tcp_connections_closed_total",
        &format!("reporter=\"destination\",{src},{rdst},{tcp}"),
        1,
    );
    let received = samples(&m.redis, "istio_tcp_received_bytes_total");
    assert!(
        received.iter().any(|l| l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|b| b >= 14)),
        "PING is 14 bytes: {received:?}"
    );
    let open = samples(&m.redis, "tcp_open_total");
    assert!(open.iter().any(|l| l.contains(&format!("direction=\"inbound\",authority=\"redis.prod.svc.cluster.local:6379\",client_id=\"{PRODUCTPAGE}\",tls=\"true\",peer=\"src\"")) && l.ends_with(" 1")), "{open:?}");

    // A long-lived connection's bytes count as they move, not when it closes (a pool of
    // database connections would otherwise show no traffic for hours).
    let bytes = |pod: &Pod, name: &str| -> u64 {
        samples(pod, name).iter().filter(|l| l.contains("reporter=") && l.contains("destination_service_name=\"redis\"")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    let before = (bytes(&m.productpage, "istio_tcp_received_bytes_total"), bytes(&m.productpage, "istio_tcp_sent_bytes_total"));
    m.productpage.spawn("sh", &["-c", "(printf 'PING\\r\\n'; sleep 60) | nc redis.prod 6379"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // PING (6 bytes) went up and +PONG (7 bytes) came back, on a connection still open.
        let now = (bytes(&m.productpage, "istio_tcp_received_bytes_total"), bytes(&m.productpage, "istio_tcp_sent_bytes_total"));
        let opened = samples(&m.productpage, "istio_tcp_connections_opened_total");
        let closed = samples(&m.productpage, "istio_tcp_connections_closed_total");
        if now.0 >= before.0 + 6 && now.1 >= before.1 + 7 {
            assert!(opened.iter().any(|l| l.ends_with(" 2")) && closed.iter().all(|l| !l.ends_with(" 2")), "the second connection is open: {opened:?} {closed:?}");
            break;
        }
        assert!(Instant::now() < deadline, "bytes of the open connection never counted: {before:?} -> {now:?}\n{opened:?}\n{closed:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real Prometheus on the host, scraping every proxy and the controller each second.
struct Prometheus {
    child: Child,
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// Starts Prometheus with deploy/prometheus/prometheus-local.yml (its file
/// targets written here) and the rules beside it, 1 s scrapes.
fn prometheus(controller: std::net::SocketAddr, proxies: &[&Pod]) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("weft-e2e-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    let config = std::fs::read_to_string(repo("deploy/prometheus/prometheus-local.yml"))
        .unwrap()
        .replace(
            "scrape_interval: 15s",
            "scrape_interval: 1s\n  evaluation_interval: 1s",
        );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    std::fs::copy(repo("deploy/prometheus/rules.yml"), dir.join("rules.yml")).unwrap();
    let targets = |list: Vec<String>, job: &str| {
        serde_json::json!([{"targets": list, "labels": {"mesh": job}}]).to_string()
    };
    std::fs::write(
        dir.join("targets/controller.json"),
        targets(vec![controller.to_string()], "test"),
    )
    .unwrap();
    std::fs::write(
        dir.join("targets/proxies.json"),
        targets(
            proxies.iter().map(|p| format!("{}:15090", p.ip)).collect(),
            "test",
        ),
    )
    .unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml"))
        .output()
        .expect("promtool (Debian's prometheus package)");
    assert!(
        check.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let port = weft_testkit::free_port().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian's package)");
    let p = Prometheus { child, addr, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(p.addr, "/-/ready").is_ok_and(|r| r.contains(" 200 ")) {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready:\n{}",
            std::fs::read_to_string(p.dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    /// `/api/v1/query`: the whole answer (status and data).
    fn query(&self, q: &str) -> serde_json::Value {
        let raw = http_get(self.addr, &format!("/api/v1/query?query={}", encode(q))).unwrap();
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(&raw);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{q}: {e}: {raw}"))
    }

    /// Waits until `q` returns a non-empty vector for which `ok` holds; returns it.
    fn wait_vector(
        &self,
        q: &str,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let answer = self.query(q);
            assert_eq!(answer["status"], "success", "{q}: {answer}");
            let result = answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !result.is_empty() && ok(&result) {
                return result;
            }
            if Instant::now() > deadline {
                panic!("{q} never gave a fitting answer; last: {result:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The value of the series whose `label` is `value`.
fn value_for(result: &[serde_json::Value], label: &str, value: &str) -> Option<f64> {
    result
        .iter()
        .find(|s| s["metric"][label] == value)
        .and_then(|s| s["value"][1].as_str()?.parse().ok())
}

#[test]
fn prometheus_answers_the_istio_and_linkerd_dashboard_queries_unchanged() {
    let m = mesh("prometheus");
    // Traffic for the whole test: every other request a 500, a redis connection each round.
    m.productpage
        .spawn(
            "sh",
            &["-c", "while true; do curl -s -o /dev/null http://reviews.prod/; curl -s -o /dev/null http://reviews.prod/status/500; redis-cli -h redis.prod PING >/dev/null; sleep 0.05; done"],
        )
        .unwrap();
    let p = prometheus(m.ctl.monitoring, &[&m.productpage, &m.reviews, &m.redis]);

    let rate = p.wait_vector(r#"sum(rate(istio_requests_total{reporter="destination"}[1m])) by (destination_service_name)"#, |r| value_for(r, "destination_service_name", "reviews").is_some_and(|v| v > 0.0));
    assert!(
        value_for(&rate, "destination_service_name", "reviews").unwrap() < 200.0,
        "{rate:?}"
    );
    let errors = p.wait_vector(
        r#"sum(rate(istio_requests_total{reporter="destination",response_code=~"5.*"}[1m])) by (destination_service_name) / sum(rate(istio_requests_total{reporter="destination"}[1m])) by (destination_service_name) * 100"#,
        |r| value_for(r, "destination_service_name", "reviews").is_some(),
    );
    let pct = value_for(&errors, "destination_service_name", "reviews").unwrap();
    assert!(
        (20.0..=80.0).contains(&pct),
        "every other request fails: {pct}%"
    );
    let p99 = p.wait_vector(r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[1m])) by (destination_service_name, le))"#, |r| {
        value_for(r, "destination_service_name", "reviews").is_some_and(|v| v.is_finite())
    });
    let ms = value_for(&p99, "destination_service_name", "reviews").unwrap();
    assert!(
        ms > 0.0 && ms <= 1000.0,
        "p99 of an echo on a bridge: {ms}ms"
    );
    let open = p.wait_vector(
        r#"sum(istio_tcp_connections_opened_total) by (destination_service_name) - sum(istio_tcp_connections_closed_total) by (destination_service_name)"#,
        |r| value_for(r, "destination_service_name", "redis").is_some(),
    );
    let still_open = value_for(&open, "destination_service_name", "redis").unwrap();
    assert!(
        (0.0..=4.0).contains(&still_open),
        "redis-cli closes each connection: {still_open}"
    );
    p.wait_vector(
        r#"sum(rate(response_total{classification="failure"}[1m])) by (dst_service)"#,
        |r| value_for(r, "dst_service", "reviews").is_some_and(|v| v > 0.0),
    );
    p.wait_vector(r#"histogram_quantile(0.99, sum(rate(response_latency_ms_bucket[1m])) by (dst_service, le))"#, |r| value_for(r, "dst_service", "reviews").is_some_and(|v| v > 0.0));
    p.wait_vector(r#"rate(request_total{dst_service="reviews",classification="failure"}[5m]) / rate(request_total{dst_service="reviews"}[5m])"#, |r| !r.is_empty());
    p.wait_vector(r#"histogram_quantile(0.99, sum(rate(request_duration_ms_bucket[1m])) by (dst_service, le))"#, |r| value_for(r, "dst_service", "reviews").is_some());
    // The controller: scraped, and its proxies converged after their pushes.
    let up = p.wait_vector(r#"up{job="weft-controller"}"#, |r| {
        r.iter().all(|s| s["value"][1] == "1")
    });
    assert_eq!(up.len(), 1);
    p.wait_vector("pilot_proxy_convergence_time_bucket", |r| {
        r.iter().any(|s| {
            s["metric"]["le"] == "+Inf"
                && s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 3.0)
        })
    });
    p.wait_vector("pilot_xds", |r| r.iter().any(|s| s["value"][1] == "3"));

    // The recording rules in deploy/ evaluate to the same services.
    p.wait_vector("service:istio_request_errors:ratio_rate1m", |r| {
        value_for(r, "destination_service_name", "reviews").is_some()
    });
    p.wait_vector("dst_service:response_total:failure_ratio_rate1m", |r| {
        value_for(r, "dst_service", "reviews").is_some()
    });
    let rules = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/rules.yml"))
        .output()
        .unwrap();
    assert!(
        rules.status.success(),
        "{}",
        String::from_utf8_lossy(&rules.stdout)
    );

    // Every Grafana panel's expression is valid PromQL over these names, and returns data.
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("deploy/grafana")).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$service", ".*")
                    .replace("$workload", ".*");
                let answer = p.query(&expr);
                assert_eq!(
                    answer["status"],
                    "success",
                    "{}: panel {:?}: {expr}: {answer}",
                    path.display(),
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked} panel queries");
}

/// The proxy's access-log lines (its stdout, in the pod's log) that mention `needle`.
fn log_lines(pod: &Pod, needle: &str) -> Vec<String> {
    pod.logs().lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// Waits until the pod's log has a line with `needle`; returns the lines that have it.
fn wait_log(pod: &Pod, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = log_lines(pod, needle);
        if !lines.is_empty() {
            return lines;
        }
        assert!(Instant::now() < deadline, "[{}] no log line with {needle:?}:\n{}", pod.name, pod.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn access_logs_are_off_by_default_and_speak_istio_text_when_turned_on() {
    // Off by default (Istio's default): traffic, and no line for it.
    let quiet = mesh("log-off");
    assert_eq!(quiet.productpage.curl("http://reviews.prod/status/503", &[]).unwrap().0, 503);
    assert_eq!(quiet.reviews.curl("http://127.0.0.1:15000/ready", &[]).unwrap().0, 200);
    let metric = samples(&quiet.productpage, "istio_requests_total");
    assert!(metric.iter().any(|l| l.contains("response_code=\"503\"")), "the request was recorded: {metric:?}");
    assert!(log_lines(&quiet.productpage, "/status/503").is_empty(), "{}", quiet.productpage.logs());
    drop(quiet);

    // meshConfig.accessLogFile: /dev/stdout, Istio's default TEXT format.
    let m = mesh_with("log-text", &["--access-log-file", "/dev/stdout"]);
    assert_eq!(m.productpage.curl("http://reviews.prod/status/503", &["-H", "user-agent: curl/weft-test", "-H", "x-request-id: req-1"]).unwrap().0, 503);
    let line = wait_log(&m.productpage, "\"GET /status/503 HTTP/1.1\"").remove(0);
    // [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS DETAILS TERMINATION "FAILURE" RECEIVED SENT DURATION
    // UPSTREAM_TIME "XFF" "UA" "REQUEST_ID" "AUTHORITY" "UPSTREAM_HOST" CLUSTER UPSTREAM_LOCAL LOCAL REMOTE SNI ROUTE
    assert!(line.starts_with('[') && line[1..25].ends_with('Z') && line[1..].starts_with("20"), "{line}");
    let rest = &line[line.find("] ").unwrap() + 2..];
    let (head, tail) = rest.split_once(" \"-\" \"curl/weft-test\" \"req-1\" \"reviews.prod\" ").unwrap_or_else(|| panic!("{line}"));
    let head: Vec<&str> = head.split(' ').collect();
    assert_eq!(head[..9], ["\"GET", "/status/503", "HTTP/1.1\"", "503", "-", "via_upstream", "-", "\"-\"", "0"], "{line}");
    assert!(head[9].parse::<u64>().is_ok_and(|b| b > 0) && head[10].parse::<u64>().is_ok() && head[11] == "-", "{line}");
    let productpage_ip = m.productpage.ip.to_string();
    let expected_tail = format!("\"{}:8080\" outbound|80||reviews.prod.svc.cluster.local - 10.96.3.10:80 {productpage_ip}:", m.reviews.ip);
    assert!(tail.starts_with(&expected_tail) && tail.ends_with(" - reviews.prod.svc.cluster.local:80/pages"), "{line}");
    // The server side logs it too, with the caller's address and the app's.
    let inbound = wait_log(&m.reviews, "\"GET /status/503 HTTP/1.1\" 503 - via_upstream").remove(0);
    assert!(inbound.contains(&format!(" 127.0.0.1:8080 {productpage_ip}:")) || inbound.contains(&format!(" {}:8080 {productpage_ip}:", m.reviews.ip)), "{inbound}");
    // A reply the proxy wrote itself: its flag and Envoy's detail.
    assert_eq!(m.productpage.curl("http://ghost.prod/elsewhere", &[]).unwrap().0, 404);
    let nr = wait_log(&m.productpage, "\"GET /elsewhere HTTP/1.1\"").remove(0);
    assert!(nr.contains("\" 404 NR route_not_found - \"-\" 0 "), "{nr}");
    // Opaque TCP gets a line too: no HTTP fields, bytes both ways.
    m.productpage.exec_ok("redis-cli", &["-h", "redis.prod", "-p", "6379", "PING"]).unwrap();
    let tcp = wait_log(&m.productpage, "outbound|6379||redis.prod.svc.cluster.local").remove(0);
    assert!(tcp.contains("] \"- - -\" 0 - - - \"-\" 14 7 "), "{tcp}");
}

#[test]
fn access_logs_in_json_name_each_field_and_keep_numbers_numbers() {
    let m = mesh_with("log-json", &["--access-log-file", "/dev/stdout", "--access-log-encoding", "JSON"]);
    assert_eq!(m.productpage.curl("http://reviews.prod/", &["-H", "x-forwarded-for: 192.0.2.7"]).unwrap().0, 200);
    let line = wait_log(&m.productpage, "\"response_code\":200").remove(0);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["response_code_details"], "via_upstream");
    assert_eq!(v["authority"], "reviews.prod");
    assert_eq!(v["x_forwarded_for"], "192.0.2.7");
    assert_eq!(v["upstream_cluster"], "outbound|80||reviews.prod.svc.cluster.local");
    assert_eq!(v["upstream_host"], format!("{}:8080", m.reviews.ip));
    assert_eq!(v["route_name"], "reviews.prod.svc.cluster.local:80/pages");
    assert!(v["bytes_sent"].as_u64().is_some_and(|b| b > 0) && v["duration"].is_u64() && v["bytes_received"] == 0, "{v}");
    assert!(v["upstream_service_time"].is_null() && v["requested_server_name"].is_null(), "{v}");
    assert!(v["start_time"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24), "{v}");
    let ip = m.productpage.ip.to_string();
    assert!(v["downstream_remote_address"].as_str().is_some_and(|a| a.starts_with(&format!("{ip}:"))), "{v}");
    // No line was lost: the drop counter stayed at zero.
    let dropped = samples(&m.productpage, "weft_access_log_dropped_total");
    assert!(dropped.is_empty() || dropped.iter().all(|l| l.ends_with(" 0")), "{dropped:?}");
    let text = m.productpage.admin("/stats/prometheus").unwrap();
    assert!(text.lines().any(|l| l == "weft_access_log_dropped_total 0"), "the counter is exported");
}

#[test]
fn a_telemetry_resource_turns_the_access_log_on_for_errors_only() {
    let m = mesh("telemetry-api");
    m.ctl
        .apply("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: errors-only, namespace: prod}\nspec:\n  accessLogging:\n  - providers: [{name: envoy}]\n    filter: {expression: \"response.code >= 400\"}\n")
        .unwrap();
    m.ctl.wait_for_config("productpage", "the access log for errors", Duration::from_secs(15), |c| c["telemetry"]["access_log"]["min_response_code"] == 400);
    assert_eq!(m.productpage.curl("http://reviews.prod/status/200", &[]).unwrap().0, 200);
    assert_eq!(m.productpage.curl("http://reviews.prod/status/503", &[]).unwrap().0, 503);
    let errors = wait_log(&m.productpage, "\"GET /status/503 HTTP/1.1\" 503");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(log_lines(&m.productpage, "/status/200").is_empty(), "a 200 is below the filter: {}", m.productpage.logs());
    // An expression weft cannot evaluate is refused at apply, naming the field.
    let refused = m.ctl.apply("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: slow, namespace: prod}\nspec:\n  accessLogging:\n  - filter: {expression: \"response.duration > 1000\"}\n");
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("spec.accessLogging[0].filter.expression") && e.contains("response.code >= N"), "{e}");
}

#[test]
fn a_telemetry_resource_adds_request_labels_to_a_metric_and_removes_standard_ones() {
    let m = mesh("tag-overrides");
    m.ctl
        .apply(
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: tenants, namespace: prod}\nspec:\n  metrics:\n  - providers: [{name: prometheus}]\n    overrides:\n    \
             - match: {metric: REQUEST_COUNT, mode: CLIENT}\n      tagOverrides:\n        tenant: {operation: UPSERT, value: \"request.headers['x-tenant']\"}\n        request_host: {value: request.host}\n    \
             - tagOverrides:\n        source_principal: {operation: REMOVE}\n",
        )
        .unwrap();
    m.ctl.wait_for_config("productpage", "the tag overrides", Duration::from_secs(15), |c| c["telemetry"]["label_overrides"].as_array().is_some_and(|o| o.len() == 3));
    for tenant in ["acme", "acme", "initech"] {
        assert_eq!(m.productpage.curl("http://reviews.prod/", &["-H", &format!("x-tenant: {tenant}")]).unwrap().0, 200);
    }
    // The client's REQUEST_COUNT carries the tenant and host; no series names the source principal.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let counts = samples(&m.productpage, "istio_requests_total");
        if counts.iter().any(|l| l.contains("tenant=\"acme\"") && l.ends_with(" 2")) || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let acme = counts.iter().find(|l| l.contains("tenant=\"acme\"")).unwrap_or_else(|| panic!("{counts:#?}"));
    assert!(acme.ends_with(" 2") && acme.contains("request_host=\"reviews.prod\"") && !acme.contains("source_principal"), "{acme}");
    assert!(counts.iter().any(|l| l.contains("tenant=\"initech\"") && l.ends_with(" 1")), "{counts:#?}");
    // Other metrics get only the removal; the server side (SERVER) no tenant.
    let durations = samples(&m.productpage, "istio_request_duration_milliseconds_count");
    assert!(durations.iter().all(|l| !l.contains("tenant=") && !l.contains("source_principal")), "{durations:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let server = loop {
        let d = samples(&m.reviews, "istio_request_duration_milliseconds_count");
        if d.iter().any(|l| l.contains("reporter=\"destination\",source_workload=\"productpage\"") && l.ends_with(" 3")) || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(server.iter().any(|l| l.ends_with(" 3")) && server.iter().all(|l| !l.contains("source_principal")), "{server:#?}");
    assert!(samples(&m.reviews, "istio_requests_total").iter().all(|l| !l.contains("tenant=")));
    // An expression weft cannot evaluate is refused at apply, naming the field.
    let refused = m.ctl.apply("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: peer, namespace: prod}\nspec:\n  metrics:\n  - overrides:\n    - tagOverrides:\n        peer: {value: \"filter_state['upstream_peer']\"}\n");
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("tagOverrides[peer].value") && e.contains("request.headers['NAME']"), "{e}");
}
