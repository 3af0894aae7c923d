//! `weft-bench-controller`: the control plane at scale, with simulated
//! proxies that speak the real protocol (one gRPC stream each, Hello, ACK
//! every push) from one process. It starts `weft controller`, applies a
//! mesh of 1,000 services in 100 namespaces (each with a namespace-local
//! Sidecar, the usual scoping), connects the proxies, and measures:
//!
//! - the connect storm: all proxies connecting at once, until every one has
//!   received and acknowledged its config;
//! - a route change: from the start of `weft apply` until every affected
//!   proxy (those in the changed service's namespace) has acknowledged the
//!   new config (p50, p99, max);
//! - the controller's peak RSS and CPU time.
//!
//! Run: `cargo build --release --workspace --bins && target/release/weft-bench-controller --proxies 10000`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use weft_proto::v1::{proxy_config_service_client::ProxyConfigServiceClient, proxy_message, Ack, Hello, ProxyMessage};

const NAMESPACES: usize = 100;
const SERVICES_PER_NS: usize = 10;

fn arg(flag: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.into())
}

fn bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent().expect("dir").join(name)
}

fn mesh_yaml(route_subset: &str) -> String {
    let mut docs = Vec::new();
    for n in 0..NAMESPACES {
        docs.push(format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: ns-{n}}}\nspec: {{egress: [{{hosts: [\"./*\"]}}]}}\n"));
        for s in 0..SERVICES_PER_NS {
            docs.push(format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: ns-{n}}}\nspec: {{clusterIP: 10.96.{n}.{}, selector: {{app: svc-{s}}}, ports: [{{name: http, port: 8080}}]}}\n",
                s + 1
            ));
        }
        docs.push(format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc-0, namespace: ns-{n}}}\nspec: {{host: svc-0, subsets: [{{name: a, labels: {{track: a}}}}, {{name: b, labels: {{track: b}}}}]}}\n"));
    }
    docs.push(route_change(route_subset));
    docs.join("---\n")
}

/// The route in namespace ns-0 that the benchmark flips between subsets.
fn route_change(subset: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc-0, namespace: ns-0}}\nspec:\n  hosts: [svc-0]\n  http:\n  - route:\n    - destination: {{host: svc-0, subset: {subset}}}\n")
}

fn apply(api: &str, dir: &std::path::Path, name: &str, yaml: &str) -> Duration {
    let f = dir.join(name);
    std::fs::write(&f, yaml).expect("write");
    let start = Instant::now();
    let out = std::process::Command::new(bin("weft")).args(["--controller", api, "apply", "-f", f.to_str().unwrap_or_default()]).output().expect("weft apply");
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    start.elapsed()
}

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu = (f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)) / 100.0;
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

/// When a simulated proxy received each version.
type Received = HashMap<usize, Vec<(String, Instant)>>;
type Seen = Arc<Mutex<Received>>;

async fn proxy(i: usize, channel: tonic::transport::Channel, seen: Seen) {
    let mut client = ProxyConfigServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let (tx, rx) = mpsc::channel(4);
    let hello = Hello {
        proxy_id: format!("sim-{i}"),
        workload: format!("sim-{i}"),
        namespace: format!("ns-{}", i % NAMESPACES),
        service_account: "default".into(),
        labels: [("app".to_string(), format!("svc-{}", (i / NAMESPACES) % SERVICES_PER_NS)), ("track".to_string(), if i.is_multiple_of(2) { "a" } else { "b" }.to_string())].into(),
        address: format!("10.{}.{}.{}", 100 + i / 62_500, (i / 250) % 250, i % 250 + 1),
        ports: vec![8080],
        ready: true,
        version: String::new(),
        mtls: false,
        cluster_id: String::new(),
    };
    if tx.send(ProxyMessage { kind: Some(proxy_message::Kind::Hello(hello)) }).await.is_err() {
        return;
    }
    let Ok(resp) = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await else {
        eprintln!("sim-{i}: stream refused");
        return;
    };
    let mut pushes = resp.into_inner();
    while let Ok(Some(push)) = pushes.message().await {
        // A real proxy parses and applies the config; the simulation checks it parses.
        let ok = serde_json::from_slice::<serde_json::Value>(&push.config_json).is_ok();
        seen.lock().unwrap_or_else(|e| e.into_inner()).entry(i).or_default().push((push.version.clone(), Instant::now()));
        let ack = Ack { version: push.version, nonce: push.nonce, accepted: ok, error: String::new() };
        if tx.send(ProxyMessage { kind: Some(proxy_message::Kind::Ack(ack)) }).await.is_err() {
            return;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let proxies: usize = arg("--proxies", "1000").parse()?;
    let dir = std::env::temp_dir().join(format!("weft-bench-controller-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let api = "127.0.0.1:25010".to_string();
    let grpc = "127.0.0.1:25012".to_string();
    let mut ctl = std::process::Command::new(bin("weft"))
        .args(["controller", "--data-dir", dir.join("data").to_str().unwrap_or_default(), "--listen", &api, "--grpc-listen", &grpc, "--monitoring-listen", "off"])
        .env("WEFT_LOG", "warn")
        .spawn()?;
    let pid = ctl.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&grpc).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "controller did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let initial_apply = apply(&api, &dir, "mesh.yaml", &mesh_yaml("a"));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    // Connect storm: every proxy at once, 100 streams per HTTP/2 connection.
    let storm_start = Instant::now();
    rt.block_on(async {
        let mut channel = None;
        for i in 0..proxies {
            if i % 100 == 0 {
                channel = Some(tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?.connect_lazy());
            }
            if let Some(ch) = channel.clone() {
                tokio::spawn(proxy(i, ch, seen.clone()));
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let wait_all = |pred: &dyn Fn(&Received) -> bool, limit: Duration| -> bool {
        let start = Instant::now();
        loop {
            if pred(&seen.lock().unwrap_or_else(|e| e.into_inner())) {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let all_configured = wait_all(&|m| m.len() == proxies, Duration::from_secs(120));
    let storm = storm_start.elapsed();
    anyhow::ensure!(all_configured, "only {} of {proxies} proxies got a config", seen.lock().map(|m| m.len()).unwrap_or(0));
    // Let the pushes caused by the storm (new endpoints) settle.
    let settle_start = Instant::now();
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let n: usize = seen.lock().map(|m| m.values().map(|v| v.len()).sum()).unwrap_or(0);
        if n == last || settle_start.elapsed() > Duration::from_secs(60) {
            break;
        }
        last = n;
    }
    let (cpu_before, _) = proc_stat(pid);

    // The route change: svc-0 in ns-0 moves to subset b. Affected: proxies in ns-0.
    let affected: Vec<usize> = (0..proxies).filter(|i| i % NAMESPACES == 0).collect();
    let before: HashMap<usize, usize> = seen.lock().map(|m| affected.iter().map(|i| (*i, m.get(i).map(|v| v.len()).unwrap_or(0))).collect()).unwrap_or_default();
    let change_start = Instant::now();
    let apply_took = apply(&api, &dir, "change.yaml", &route_change("b"));
    let converged = wait_all(&|m| affected.iter().all(|i| m.get(i).map(|v| v.len()).unwrap_or(0) > before[i]), Duration::from_secs(60));
    anyhow::ensure!(converged, "not every affected proxy got the route change");
    let mut lat: Vec<f64> = seen
        .lock()
        .map(|m| affected.iter().filter_map(|i| m.get(i)?.last().map(|(_, t)| t.duration_since(change_start).as_secs_f64() * 1000.0)).collect())
        .unwrap_or_default();
    lat.sort_by(|a, b| a.total_cmp(b));
    let (cpu_after, hwm) = proc_stat(pid);
    let pushes_total: usize = seen.lock().map(|m| m.values().map(|v| v.len()).sum()).unwrap_or(0);
    println!(
        "| {proxies} | {} | {:.2} s | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} MiB | {:.2} s |",
        NAMESPACES * SERVICES_PER_NS,
        storm.as_secs_f64(),
        affected.len(),
        apply_took.as_secs_f64() * 1000.0,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0),
        hwm as f64 / 1024.0,
        cpu_after - cpu_before,
    );
    eprintln!("initial apply of the mesh took {:.0} ms; {pushes_total} pushes received in all", initial_apply.as_secs_f64() * 1000.0);
    let _ = ctl.kill();
    let _ = ctl.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
