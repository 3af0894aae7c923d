//! The control plane end to end: `weft controller` on the host, proxies in
//! pods streaming their config from it. Users apply YAML; traffic follows;
//! the controller can go away without the mesh noticing.

use std::time::{Duration, Instant};
use weft_testkit::controller::endpoint_count;
use weft_testkit::{ControllerProcess, Pod, TestMesh};

const REVIEWS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

fn route_to(subset: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: {subset}}}\n")
}

/// Which pod answered `http://reviews:9080/` from `client`.
fn answer(client: &Pod) -> String {
    match client.curl("http://reviews:9080/", &[]) {
        Ok((200, body)) => body.split("\"pod\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?").to_string(),
        Ok((code, body)) => format!("{code}: {body}"),
        Err(e) => format!("error: {e}"),
    }
}

fn wait_for_answer(client: &Pod, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = answer(client);
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "still {got:?} instead of {want:?} after {within:?}\n{}", client.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `proxy` has acknowledged a config with a route capturing
/// `destination`: before that its traffic to the virtual IP goes nowhere.
fn wait_for_route(c: &ControllerProcess, proxy: &str, destination: &str) {
    let quoted = format!("\"{destination}\"");
    c.wait_for_config(proxy, &format!("a route to {destination}"), Duration::from_secs(5), |cfg| cfg["routes"].to_string().contains(&quoted));
}

fn statuses(c: &ControllerProcess) -> String {
    c.proxy_status()
}

fn wait_all_synced(c: &ControllerProcess, n: usize, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = statuses(c);
        if text.lines().filter(|l| l.contains(" SYNCED ")).count() == n {
            return text;
        }
        assert!(start.elapsed() < within, "not all {n} proxies SYNCED after {within:?}:\n{text}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn route_change_is_followed_within_a_second_and_survives_the_controller_going_away() {
    let mut mesh = TestMesh::start("ctl-route");
    let _v1 = mesh.backend("reviews-v1", "app=reviews,version=v1", "v1");
    let v2 = mesh.backend("reviews-v2", "app=reviews,version=v2", "v2");
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    let ctl = &mut mesh.ctl;

    ctl.apply(&format!("{REVIEWS}---\n{}", route_to("v1"))).unwrap();
    wait_for_route(ctl, "client", "10.96.0.10:9080");
    wait_for_answer(&client, "reviews-v1", Duration::from_secs(5));
    let text = wait_all_synced(ctl, 3, Duration::from_secs(5));
    assert!(text.starts_with("NAME"), "{text}");

    // The route change reaches the client's proxy and its traffic within a second.
    ctl.apply(&route_to("v2")).unwrap();
    let took = wait_for_answer(&client, "reviews-v2", Duration::from_secs(1));
    eprintln!("route change followed after {took:?}");
    wait_all_synced(ctl, 3, Duration::from_secs(2));

    // What the controller sent is visible per proxy.
    let cfg = ctl.weft(&["proxy-config", "client", "clusters"]).unwrap();
    let cfg = String::from_utf8_lossy(&cfg.stdout);
    let row = cfg.lines().find(|l| l.starts_with("outbound|9080|v2|reviews.default.svc.cluster.local ")).unwrap_or_default();
    assert!(row.contains(&format!("{}:8080", v2.ip)) && row.contains("peak_ewma"), "{cfg}");

    // The controller goes away: traffic keeps flowing on the last config.
    ctl.stop();
    for _ in 0..20 {
        let got = answer(&client);
        assert_eq!(got, "reviews-v2", "client:\n{}\ncontroller:\n{}", client.logs(), ctl.logs());
    }
    // It comes back on the same data: the proxies reconnect and are in sync.
    ctl.restart().unwrap();
    wait_all_synced(ctl, 3, Duration::from_secs(10));
    assert_eq!(answer(&client), "reviews-v2");
}

#[test]
fn a_config_the_proxy_cannot_apply_is_nacked_and_traffic_stays_on_the_previous_config() {
    let mesh = TestMesh::start("ctl-nack");
    let (net, ctl) = (&mesh.net, &mesh.ctl);
    let backend = net.pod("backend").unwrap();
    backend.start_echo(8080, "v1").unwrap();
    let odd = net.pod("odd").unwrap();
    // This proxy was started with an extra explicit listener; the controller's
    // pushes carry only the sidecar listeners, which this proxy cannot switch to live.
    let bootstrap = odd
        .write_file(
            "bootstrap.yaml",
            &format!(
                "listeners:\n- {{name: outbound, kind: outbound, address: \"0.0.0.0:15001\"}}\n- {{name: inbound, kind: inbound, address: \"0.0.0.0:15006\"}}\n- {{name: legacy, kind: explicit, address: \"127.0.0.1:18080\", cluster: legacy}}\nclusters:\n- {{name: legacy, endpoints: [\"{}:8080\"]}}\n",
                backend.ip
            ),
        )
        .unwrap();
    odd.start_meshed_proxy(ctl.grpc, "default", "app=odd", &["--config", bootstrap.to_str().unwrap()]).unwrap();
    ctl.apply(REVIEWS).unwrap();
    let start = Instant::now();
    let text = loop {
        let text = statuses(ctl);
        if text.contains("NACKED") {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no NACK:\n{text}\n{}", odd.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("listener changes need a proxy restart"), "{text}");
    let (code, body) = odd.curl("http://127.0.0.1:18080/", &[]).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"pod\":\"backend\""), "the bootstrap config still serves: {body}");
}

#[test]
fn scaling_a_backend_from_one_to_three_pods_spreads_traffic() {
    let mesh = TestMesh::start("ctl-scale");
    let ctl = &mesh.ctl;
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    ctl.apply(REVIEWS).unwrap();
    wait_for_route(ctl, "client", "10.96.0.10:9080");
    let _first = mesh.backend("reviews-1", "app=reviews,version=v1", "v1");
    wait_for_answer(&client, "reviews-1", Duration::from_secs(5));
    let _more: Vec<Pod> = (2..=3).map(|i| mesh.backend(&format!("reviews-{i}"), "app=reviews,version=v1", "v1")).collect();
    wait_all_synced(ctl, 4, Duration::from_secs(5));
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        *seen.entry(answer(&client)).or_insert(0) += 1;
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ["reviews-1", "reviews-2", "reviews-3"], "{seen:?}");
    // New pods only changed endpoints: the client got them as deltas, not whole configs.
    let stats = client.admin("/stats/prometheus").unwrap();
    let deltas: f64 = stats
        .lines()
        .filter(|l| l.starts_with("weft_config_reloads_total{source=\"controller-delta\",result=\"applied\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(deltas >= 1.0, "{stats}");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

fn services(range: std::ops::Range<u32>) -> String {
    range
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: default}}\nspec: {{clusterIP: 10.97.{}.{}, selector: {{app: svc-{i}}}, ports: [{{name: http, port: 8080}}]}}\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn route_count(c: &ControllerProcess, proxy: &str) -> usize {
    let out = c.weft(&["proxy-config", proxy, "routes", "-o", "json"]).unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).ok().and_then(|v| v.as_array().map(|a| a.len())).unwrap_or(0)
}

#[test]
fn proxy_memory_does_not_grow_with_the_size_of_the_mesh() {
    let mesh = TestMesh::start("ctl-scope");
    let (net, ctl) = (&mesh.net, &mesh.ctl);
    // A Sidecar says what workloads in `default` call: 3 services.
    let sidecar = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  egress:\n  - hosts: [\"./svc-0.default.svc.cluster.local\", \"./svc-1.default.svc.cluster.local\", \"./svc-2.default.svc.cluster.local\"]\n";
    ctl.apply(&format!("{sidecar}---\n{}", services(0..10))).unwrap();
    let scoped = net.pod("scoped").unwrap();
    let scoped_pid = scoped.start_meshed_proxy(ctl.grpc, "default", "app=scoped", &[]).unwrap();
    // A proxy in a namespace without a Sidecar sees everything, as in Istio.
    let unscoped = net.pod("unscoped").unwrap();
    let unscoped_pid = unscoped.start_meshed_proxy(ctl.grpc, "other", "app=unscoped", &[]).unwrap();
    let wait_routes = |proxy: &str, n: usize, within: Duration| {
        let start = Instant::now();
        while route_count(ctl, proxy) != n {
            assert!(start.elapsed() < within, "{proxy} never got {n} routes (has {})", route_count(ctl, proxy));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_routes("scoped", 3, Duration::from_secs(10));
    wait_routes("unscoped", 10, Duration::from_secs(10));
    wait_all_synced(ctl, 2, Duration::from_secs(10));
    let (scoped_small, unscoped_small) = (rss_kib(scoped_pid), rss_kib(unscoped_pid));

    // The mesh grows to 10,000 services.
    ctl.apply(&services(10..10_000)).unwrap();
    wait_routes("unscoped", 10_000, Duration::from_secs(120));
    wait_all_synced(ctl, 2, Duration::from_secs(60));
    assert_eq!(route_count(ctl, "scoped"), 3);
    let (scoped_big, unscoped_big) = (rss_kib(scoped_pid), rss_kib(unscoped_pid));
    eprintln!("scoped proxy RSS: {scoped_small} KiB -> {scoped_big} KiB; unscoped: {unscoped_small} KiB -> {unscoped_big} KiB");
    assert!(scoped_big.abs_diff(scoped_small) < 2 * 1024, "scoped proxy RSS went {scoped_small} -> {scoped_big} KiB");
    // And the measurement can tell: without scoping, the same growth shows.
    let dump = unscoped.admin("/config_dump").unwrap();
    let running_routes = dump.matches("\"cluster\": \"outbound|").count();
    assert!(running_routes >= 10_000, "the unscoped proxy runs {running_routes} routes");
    assert!(unscoped_big > unscoped_small + 2 * 1024, "unscoped proxy RSS went {unscoped_small} -> {unscoped_big} KiB");
}

#[test]
fn a_proxy_that_goes_away_leaves_the_endpoints_after_the_grace_period() {
    let mesh = TestMesh::start("ctl-grace");
    let (net, ctl) = (&mesh.net, &mesh.ctl);
    let _client = mesh.client("client", "app=client", &[]);
    ctl.apply(REVIEWS).unwrap();
    wait_for_route(ctl, "client", "10.96.0.10:9080");
    let staying = mesh.backend("reviews-1", "app=reviews,version=v1", "v1");
    let leaving = net.pod("reviews-2").unwrap();
    leaving.start_echo(8080, "v1").unwrap();
    let pid = leaving.start_meshed_proxy(ctl.grpc, "default", "app=reviews,version=v1", &[]).unwrap();
    let endpoints = || String::from_utf8_lossy(&ctl.weft(&["proxy-config", "client", "endpoints"]).unwrap().stdout).into_owned();
    let start = Instant::now();
    while !endpoints().contains(&leaving.ip.to_string()) {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", endpoints());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pod's proxy dies; within the grace period (2 s here) it is still an endpoint,
    // so a blip does not empty a service; after it, it is gone from every config.
    leaving.signal(pid, "KILL").unwrap();
    let killed = Instant::now();
    let gone = loop {
        if !endpoints().contains(&leaving.ip.to_string()) {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(6), "still an endpoint:\n{}\n{}", endpoints(), statuses(ctl));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(gone >= Duration::from_millis(1900), "removed after {gone:?}, before the 2 s grace period");
    assert!(endpoints().contains(&staying.ip.to_string()));
    let status = statuses(ctl);
    assert!(!status.contains("reviews-2"), "{status}");
}

/// `n` requests from `client` to `http://reviews:9080/`, counted by answering pod.
fn split(client: &Pod, n: usize, header: Option<&str>) -> std::collections::BTreeMap<String, u64> {
    client.count("http://reviews:9080/", n, header, 1)
}

fn weighted(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n  - match:\n    - headers: {{x-canary: {{exact: \"true\"}}}}\n    - headers: {{x-beta-user: {{exact: \"true\"}}}}\n    route:\n    - destination: {{host: reviews, subset: v2}}\n  - route:\n    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}\n    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}\n"
    )
}

#[test]
fn canary_split_90_10_holds_within_3_points_and_header_users_always_reach_v2() {
    let mesh = TestMesh::start("ctl-split");
    let ctl = &mesh.ctl;
    let _v1 = mesh.backend("reviews-v1", "app=reviews,version=v1", "v1");
    let _v2 = mesh.backend("reviews-v2", "app=reviews,version=v2", "v2");
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    ctl.apply(&format!("{REVIEWS}---\n{}", weighted(90, 10))).unwrap();
    wait_for_route(ctl, "client", "10.96.0.10:9080");
    wait_all_synced(ctl, 3, Duration::from_secs(5));

    let counts = split(&client, 2000, None);
    let (a, b) = (counts.get("reviews-v1").copied().unwrap_or(0), counts.get("reviews-v2").copied().unwrap_or(0));
    assert_eq!(a + b, 2000, "every request answered by v1 or v2: {counts:?}");
    let share = b as f64 / 2000.0 * 100.0;
    assert!((7.0..=13.0).contains(&share), "v2 got {share:.1}% of 2000 requests, not 10 +- 3: {counts:?}");
    for header in ["x-canary:true", "x-beta-user:true"] {
        assert_eq!(split(&client, 200, Some(header)), [("reviews-v2".to_string(), 200)].into(), "{header} always reaches v2");
    }

    // 50/50, applied while traffic flows: followed within a second, and no request fails.
    let mut counter = client.command(weft_testkit::workspace_bin("weft-echo"));
    counter.args(["count", "http://reviews:9080/", "3000"]);
    let during = std::thread::spawn(move || counter.output());
    ctl.apply(&weighted(50, 50)).unwrap();
    let changed = Instant::now();
    loop {
        let c = split(&client, 200, None);
        let b = c.get("reviews-v2").copied().unwrap_or(0);
        if (70..=130).contains(&b) {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "still not 50/50 a second after the change: {c:?}");
    }
    let during: std::collections::BTreeMap<String, u64> = serde_json::from_slice(&during.join().unwrap().unwrap().stdout).unwrap();
    assert_eq!(during.keys().filter(|k| k.starts_with("reviews-")).count(), 2, "{during:?}");
    assert_eq!(during.values().sum::<u64>(), during.get("reviews-v1").copied().unwrap_or(0) + during.get("reviews-v2").copied().unwrap_or(0), "no request failed during the change: {during:?}");
    let counts = split(&client, 2000, None);
    let share = counts.get("reviews-v2").copied().unwrap_or(0) as f64 / 20.0;
    assert!((47.0..=53.0).contains(&share), "v2 got {share:.1}% after 50/50: {counts:?}");
}

#[test]
fn route_actions_rewrite_headers_redirect_direct_response_and_timeout() {
    let mesh = TestMesh::start("ctl-actions");
    let ctl = &mesh.ctl;
    let _backend = mesh.backend("reviews-v1", "app=reviews,version=v1", "v1");
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/}
    headers:
      request: {set: {x-env: prod}, remove: [x-drop]}
      response: {set: {x-served-by: weft}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /here, authority: example.com, redirectCode: 308}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout\n"}}
  - match: [{uri: {prefix: /delay/}}]
    timeout: 300ms
    route: [{destination: {host: reviews, subset: v1}}]
"#;
    ctl.apply(&format!("{REVIEWS}---\n{vs}")).unwrap();
    wait_for_route(ctl, "client", "10.96.0.10:9080");

    let (code, out) = client.curl("http://reviews:9080/old/page?q=1", &["-i", "-H", "x-drop: secret"]).unwrap();
    assert_eq!(code, 200, "{out}");
    assert!(out.contains("\"path\":\"/new/page\""), "prefix rewritten, rest kept: {out}");
    assert!(out.contains("\"x-env\":\"prod\"") && !out.contains("x-drop"), "request headers set and removed: {out}");
    assert!(out.to_ascii_lowercase().contains("x-served-by: weft"), "response header set: {out}");

    let (code, out) = client.curl("http://reviews:9080/moved", &["-i"]).unwrap();
    assert_eq!(code, 308, "{out}");
    assert!(out.to_ascii_lowercase().contains("location: http://example.com/here"), "{out}");

    let (code, body) = client.curl("http://reviews:9080/teapot", &[]).unwrap();
    assert_eq!((code, body.as_str()), (418, "short and stout\n"));

    let start = Instant::now();
    let (code, out) = client.curl("http://reviews:9080/delay/3000", &["-i"]).unwrap();
    let took = start.elapsed();
    assert_eq!(code, 504, "{out}");
    assert!(out.to_ascii_lowercase().contains("x-weft-flags: ut"), "{out}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}, not at the 300 ms route timeout");

    let (code, _) = client.curl("http://reviews:9080/nothing-matches", &[]).unwrap();
    assert_eq!(code, 404, "no rule matched: 404 NR");
}

fn backend_served(pod: &Pod) -> u64 {
    pod.echo_stats().unwrap()["requests"].as_u64().unwrap()
}

#[test]
fn retries_hide_a_flaky_backend_and_a_budget_caps_them() {
    let mesh = TestMesh::start("ctl-retries");
    let ctl = &mesh.ctl;
    let backend = mesh.backend("reviews-v1", "app=reviews,version=v1", "v1");
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - retries: {attempts: 3, retryOn: 5xx}\n    route: [{destination: {host: reviews}}]\n";
    ctl.apply(&format!("{REVIEWS}---\n{vs}")).unwrap();
    wait_for_route(ctl, "client", "10.96.0.10:9080");
    let count = |n: usize| client.count("http://reviews:9080/flaky/3", n, None, 1);

    // One request in three fails at the backend; with 3 retries the client sees none of it.
    let c = count(1000);
    let ok = c.get("reviews-v1").copied().unwrap_or(0);
    assert!(ok >= 999, "{ok} of 1000 succeeded: {c:?}");
    let stats = client.admin("/stats/prometheus").unwrap();
    let retried: f64 = stats.lines().filter(|l| l.starts_with("weft_upstream_retries_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert!(retried >= 300.0, "retries visible in metrics: {retried}\n{stats}");

    // A budget of 20% (Linkerd's ServiceProfile, which applies under the VirtualService):
    // the backend never sees more than 1.2x the client's requests, plus the minimum.
    let profile = "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: reviews.default.svc.cluster.local, namespace: default}\nspec:\n  routes: [{name: all, condition: {pathRegex: \"/.*\"}}]\n  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 1, ttl: 10s}\n";
    ctl.apply(profile).unwrap();
    ctl.wait_for_config("client", "the retry budget", Duration::from_secs(5), |c| c["routes"].to_string().contains("\"ratio\":0.2"));
    let before = backend_served(&backend);
    count(1000);
    let received = backend_served(&backend) - before;
    let cap = 1000.0 * 1.2 + 10.0; // 20% plus minRetriesPerSecond x ttl
    assert!(received as f64 <= cap, "backend received {received} for 1000 client requests (cap {cap})");
    assert!(received > 1000, "some retries still happen within the budget: {received}");
}

#[test]
fn a_frozen_proxy_holds_up_no_other_proxy_and_is_dropped_once_it_stops_answering() {
    let mesh = TestMesh::start_with("ctl-frozen", &["--insecure-dev", "--proxy-keepalive", "1s"]);
    let ctl = &mesh.ctl;
    let _v1 = mesh.backend("reviews-v1", "app=reviews,version=v1", "v1");
    let _v2 = mesh.backend("reviews-v2", "app=reviews,version=v2", "v2");
    let frozen = mesh.net.pod("frozen").unwrap();
    frozen.start_echo(8080, "v1").unwrap();
    let pid = frozen.start_meshed_proxy(ctl.grpc, "default", "app=frozen", &[]).unwrap();
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    // A mesh big enough that every push is about a megabyte; the frozen pod is a service of its own.
    let own = "apiVersion: v1\nkind: Service\nmetadata: {name: frozen, namespace: default}\nspec: {selector: {app: frozen}, ports: [{name: http, port: 8080}]}\n";
    ctl.apply(&format!("{REVIEWS}---\n{}---\n{own}---\n{}", route_to("v1"), services(0..2000))).unwrap();
    wait_all_synced(ctl, 4, Duration::from_secs(60));
    let frozen_ip = frozen.ip.to_string();
    ctl.wait_for_config("client", "the frozen service's endpoint", Duration::from_secs(10), |c| endpoint_count(c, "frozen.default") == 1);

    // The frozen proxy stops reading; pushes to it pile up wherever they can.
    frozen.signal(pid, "STOP").unwrap();
    for i in 0..8 {
        ctl.apply(&services(2000 + i..2001 + i)).unwrap();
    }
    // Everyone else still follows a route change, promptly: with one slot per
    // proxy the push loop never waits (it used to wait for good). Each push here
    // is a megabyte of config parsed by a debug build, hence the 3 s bound.
    ctl.apply(&route_to("v2")).unwrap();
    let took = wait_for_answer(&client, "reviews-v2", Duration::from_secs(3));
    eprintln!("route change followed in {took:?} with a frozen proxy in the mesh");

    // It does not answer keepalive pings: disconnected, then out of every config after the grace period.
    let cfg = ctl.wait_for_config("client", "the frozen service without its endpoint", Duration::from_secs(15), |c| {
        endpoint_count(c, "frozen.default") == 0 && !c.to_string().contains(&format!("\"{frozen_ip}:8080\""))
    });
    assert!(!cfg.to_string().contains(&frozen_ip));
    frozen.signal(pid, "CONT").unwrap();
}
