//! Parts fail while traffic flows, and no request fails where the mesh can
//! prevent it: an endpoint killed under load (retries and outlier detection
//! hide it), the controller killed and restarted under load with a config
//! change in between, a pod cut off from the controller for 30 s, a proxy
//! restarted under keep-alive load with a slow request in flight. Real pods,
//! real proxies, a real controller; load from weft-echo inside the client pod.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weft_testkit::controller::endpoint_count;
use weft_testkit::{Pod, TestMesh};

const REVIEWS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec: {clusterIP: 10.96.0.10, selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 8080}]}\n---\n\
    apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n";

fn failures(counts: &BTreeMap<String, u64>) -> u64 {
    counts.iter().filter(|(k, _)| !k.starts_with("reviews-")).map(|(_, n)| n).sum()
}

/// Load from the client in the background: `n` requests, `concurrency` at once.
fn load(client: &Pod, n: usize, concurrency: usize) -> std::thread::JoinHandle<BTreeMap<String, u64>> {
    let mut cmd = client.command(weft_testkit::workspace_bin("weft-echo"));
    cmd.args(["count", "http://reviews:9080/", &n.to_string(), "--concurrency", &concurrency.to_string()]);
    std::thread::spawn(move || {
        let out = cmd.output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("weft-echo count: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    })
}

fn served(pod: &Pod) -> u64 {
    pod.echo_stats().map(|s| s["requests"].as_u64().unwrap_or(0)).unwrap_or(0)
}

fn wait(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_endpoint_killed_under_load_costs_no_request() {
    let mesh = TestMesh::start("chaos-kill");
    let ctl = &mesh.ctl;
    let keep: Vec<Pod> = ["a", "b"].iter().map(|n| mesh.backend(&format!("reviews-{n}"), "app=reviews,version=v1", "v1")).collect();
    let doomed = mesh.net.pod("reviews-c").unwrap();
    let echo = doomed.start_echo(8080, "v1").unwrap();
    let proxy = doomed.start_meshed_proxy(ctl.grpc, "default", "app=reviews,version=v1", &[]).unwrap();
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    let policy = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - retries: {attempts: 3, perTryTimeout: 1s, retryOn: \"connect-failure,reset,5xx\"}\n    route: [{destination: {host: reviews}}]\n---\n\
        apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}\n";
    ctl.apply(&format!("{}{policy}", REVIEWS.split("---").next().unwrap())).unwrap();
    ctl.wait_for_config("client", "three endpoints with retries", Duration::from_secs(10), |c| endpoint_count(c, "reviews") == 3 && c.to_string().contains("connect-failure"));

    let running = load(&client, 3000, 4);
    wait("traffic on the doomed endpoint", Duration::from_secs(10), || served(&doomed) >= 100);
    doomed.signal(echo, "KILL").unwrap();
    doomed.signal(proxy, "KILL").unwrap();
    let counts = running.join().unwrap();
    assert_eq!(failures(&counts), 0, "requests failed when one of three endpoints died: {counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 3000);
    assert!(keep.iter().all(|p| served(p) > 500), "the others took the load: {counts:?}");
}

#[test]
fn the_controller_killed_and_restarted_under_load_with_a_change_in_between_costs_no_request() {
    let mut mesh = TestMesh::start("chaos-controller");
    let v1 = mesh.backend("reviews-v1", "app=reviews,version=v1", "v1");
    let v2 = mesh.backend("reviews-v2", "app=reviews,version=v2", "v2");
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    let to = |v1: u32, v2: u32| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}\n    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}\n")
    };
    mesh.ctl.apply(&format!("{REVIEWS}---\n{}", to(100, 0))).unwrap();
    mesh.ctl.wait_for_config("client", "all to v1", Duration::from_secs(10), |c| c.to_string().contains("\"weight\":100"));

    let running = load(&client, 10_000, 4);
    wait("traffic", Duration::from_secs(10), || served(&v1) >= 200);
    mesh.ctl.stop();
    std::thread::sleep(Duration::from_millis(500));
    mesh.ctl.restart().unwrap();
    mesh.ctl.apply(&to(50, 50)).unwrap();
    mesh.ctl.wait_for_config("client", "the 50/50 split", Duration::from_secs(15), |c| c.to_string().contains("\"weight\":50"));
    let counts = running.join().unwrap();
    assert_eq!(failures(&counts), 0, "requests failed while the controller went away and came back: {counts:?}");
    assert!(served(&v2) > 0, "the change made while the load ran reached the client: {counts:?}");
}

#[test]
fn a_proxy_restarted_under_keep_alive_load_finishes_its_in_flight_request_and_costs_no_request() {
    let mesh = TestMesh::start("chaos-restart");
    let ctl = &mesh.ctl;
    let a = mesh.net.pod("reviews-a").unwrap();
    a.start_echo(8080, "v1").unwrap();
    let labels = "app=reviews,version=v1";
    let proxy = a.start_meshed_proxy(ctl.grpc, "default", labels, &[]).unwrap();
    let b = mesh.backend("reviews-b", "app=reviews,version=v2", "v2");
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    // A header pins a request to reviews-a (subset v1); everything else is balanced over both.
    let pin = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{headers: {x-pin: {exact: a}}}]\n    route: [{destination: {host: reviews, subset: v1}}]\n  - route: [{destination: {host: reviews}}]\n";
    ctl.apply(&format!("{REVIEWS}{pin}")).unwrap();
    ctl.wait_for_config("client", "both endpoints and the pin", Duration::from_secs(10), |c| endpoint_count(c, "reviews") >= 2 && c.to_string().contains("x-pin"));

    // Keep-alive load over four connections, and a slow request held by reviews-a.
    let running = load(&client, 12_000, 4);
    wait("traffic on reviews-a", Duration::from_secs(10), || served(&a) >= 200);
    let slow = {
        let mut cmd = client.command("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "x-pin: a", "--max-time", "10", "http://reviews:9080/delay/1500"]);
        std::thread::spawn(move || String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned())
    };
    wait("the slow request in flight at reviews-a", Duration::from_secs(5), || a.echo_stats().is_ok_and(|s| s["delayed_in_flight"].as_u64() == Some(1)));

    // The proxy restarts: it says it is leaving, drains (the slow request finishes), exits; a new one starts.
    a.signal(proxy, "TERM").unwrap();
    let status = a.wait(proxy, Duration::from_secs(15)).unwrap();
    assert!(status.success(), "the old proxy exited with {status}: {}", a.logs());
    assert_eq!(slow.join().unwrap(), "200", "the request in flight when the proxy was told to stop did not finish: {}", a.logs());
    let before = served(&a);
    a.spawn_meshed_proxy(ctl.grpc, "default", labels, &[]).unwrap();
    wait("reviews-a serving again after its proxy restarted", Duration::from_secs(10), || served(&a) > before + 50);

    let counts = running.join().unwrap();
    assert_eq!(failures(&counts), 0, "requests failed while reviews-a's proxy restarted: {counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 12_000);
    assert!(served(&b) > 0);
}

#[test]
fn a_pod_cut_off_from_the_controller_keeps_serving_and_catches_up_when_the_partition_heals() {
    let mesh = TestMesh::start_with("chaos-partition", &["--insecure-dev", "--proxy-keepalive", "1s"]);
    let ctl = &mesh.ctl;
    let _v1 = mesh.backend("reviews-v1", "app=reviews,version=v1", "v1");
    let _v2 = mesh.backend("reviews-v2", "app=reviews,version=v2", "v2");
    let client = mesh.client("client", "app=client", &[("reviews", "10.96.0.10")]);
    let route = |subset: &str| format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]\n");
    ctl.apply(&format!("{REVIEWS}---\n{}", route("v1"))).unwrap();
    ctl.wait_for_config("client", "v1", Duration::from_secs(10), |c| c.to_string().contains("outbound|9080|v1|"));

    // Every packet between the client pod and the controller's port is dropped.
    let port = ctl.grpc.port().to_string();
    let gw = ctl.grpc.ip().to_string();
    for chain in [["-I", "OUTPUT", "-d"], ["-I", "INPUT", "-s"]] {
        client.exec_ok("iptables", &[chain[0], chain[1], "-p", "tcp", chain[2], &gw, if chain[1] == "OUTPUT" { "--dport" } else { "--sport" }, &port, "-j", "DROP"]).unwrap();
    }
    let cut = Instant::now();
    // The controller notices (keepalive) and a change is made meanwhile.
    wait("the client DISCONNECTED", Duration::from_secs(15), || ctl.proxy_status().lines().any(|l| l.starts_with("client ") && l.contains("DISCONNECTED")));
    ctl.apply(&route("v2")).unwrap();
    // The client keeps serving on its last config.
    let counts = client.count("http://reviews:9080/", 200, None, 2);
    assert_eq!(counts.get("reviews-v1"), Some(&200), "cut off, the client still serves its last config: {counts:?}");
    std::thread::sleep(Duration::from_secs(30).saturating_sub(cut.elapsed()));

    for chain in [["-D", "OUTPUT", "-d"], ["-D", "INPUT", "-s"]] {
        client.exec_ok("iptables", &[chain[0], chain[1], "-p", "tcp", chain[2], &gw, if chain[1] == "OUTPUT" { "--dport" } else { "--sport" }, &port, "-j", "DROP"]).unwrap();
    }
    let healed = Instant::now();
    ctl.wait_for_config("client", "the change made during the partition", Duration::from_secs(20), |c| c.to_string().contains("outbound|9080|v2|"));
    eprintln!("caught up {:?} after the partition healed", healed.elapsed());
    let counts = client.count("http://reviews:9080/", 50, None, 1);
    assert_eq!(counts.get("reviews-v2"), Some(&50), "{counts:?}");
}
