//! `weft-soak`: the long run of issue 17. Two meshed pods (a client and an
//! echo server, each with its proxy joined to a real controller, mTLS
//! between them), a constant load through both proxies, a VirtualService
//! change every 10 s (each pushed to and acknowledged by the proxies) and
//! workload certificates that live 60 s (so each proxy renews about every
//! 30 s). Samples the proxies' and the controller's RSS every 10 s and
//! prints Markdown for docs/benchmarks.md: errors, latency, the pushes and
//! renewals seen, and memory over time.
//!
//! Run: `cargo build --release --workspace --bins && sudo target/release/weft-soak [--minutes 10] [--rate 1000]`

use anyhow::Context;
use std::time::{Duration, Instant};
use weft_testkit::{workspace_bin, ControllerProcess, Net};

const MESH: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: soak}\nspec: {clusterIP: 10.96.9.10, selector: {app: api}, ports: [{name: http, port: 80, targetPort: 8080}]}\n";

fn route(round: u64) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: api, namespace: soak}}\nspec:\n  hosts: [api.soak.svc.cluster.local]\n  http:\n  - name: all\n    route: [{{destination: {{host: api.soak.svc.cluster.local}}}}]\n    headers: {{request: {{set: {{x-soak-round: \"{round}\"}}}}}}\n"
    )
}

fn arg(flag: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.into())
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

fn main() -> anyhow::Result<()> {
    let minutes: u64 = arg("--minutes", "10").parse()?;
    let rate = arg("--rate", "1000");
    let net = Net::new()?;
    let dir = std::env::temp_dir().join(format!("weft-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ctl = ControllerProcess::start_with(&net, &dir, &["--cert-ttl", "60s"])?;
    ctl.apply(MESH)?;
    ctl.apply(&route(0))?;
    let meshed = |name: &str| -> anyhow::Result<(weft_testkit::Pod, u32)> {
        let pod = net.pod(name)?;
        let token = ctl.token("soak", name)?;
        let pid = pod.start_meshed_proxy(ctl.grpc, "soak", &format!("app={name}"), &["--service-account", name, "--token", &token])?;
        pod.set_hosts(&[("api.soak", "10.96.9.10")])?;
        Ok((pod, pid))
    };
    let (client, client_proxy) = meshed("client")?;
    let (server, server_proxy) = meshed("api")?;
    server.start_echo(8080, "v1")?;
    ctl.wait_for_config("client", "the api endpoint", Duration::from_secs(30), |c| c.to_string().contains("spiffe://cluster.local/ns/soak/sa/api"));
    let controller = ctl.pid().context("the controller runs")?;
    // The load runs in the client pod for the whole soak; its report comes at the end.
    let secs = (minutes * 60).to_string();
    let load = client
        .command(workspace_bin("weft-echo"))
        .args(["load", "http://api.soak/", "--rate", &rate, "--connections", "16", "--duration", &secs])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    let mut samples = vec![];
    let (mut round, mut acked) = (0u64, 0u64);
    while start.elapsed() < Duration::from_secs(minutes * 60) {
        // On the 10 s marks of the run, whatever the last change took.
        let next = Duration::from_secs((start.elapsed().as_secs() / 10 + 1) * 10);
        std::thread::sleep(next.saturating_sub(start.elapsed()));
        samples.push((start.elapsed().as_secs(), rss_mib(client_proxy), rss_mib(server_proxy), rss_mib(controller)));
        round += 1;
        ctl.apply(&route(round))?;
        let want = format!("\"{round}\"");
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            let versions: Vec<_> = ctl.proxies().into_iter().map(|p| (p["proxy_id"].as_str().unwrap_or("").to_string(), p["acked_version"].clone())).collect();
            let done = ["client", "api"].iter().all(|id| {
                let sent = ctl.sent_config(id);
                sent.is_some_and(|c| c.to_string().contains(&want) && versions.iter().any(|(p, v)| p == id && *v == c["version"]))
            });
            if done {
                acked += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let out = load.wait_with_output()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).context("the load generator's report")?;
    let renewals = |pod: &weft_testkit::Pod| pod.logs().matches("workload certificate installed").count();
    println!("| minute | client proxy RSS MiB | server proxy RSS MiB | controller RSS MiB |\n|---:|---:|---:|---:|");
    for (t, c, s, k) in samples.iter().filter(|s| s.0 % 60 < 10) {
        println!("| {} | {c:.1} | {s:.1} | {k:.1} |", t / 60);
    }
    let from_minute_2: Vec<_> = samples.iter().filter(|s| s.0 >= 120).collect();
    let spread = |f: fn(&(u64, f64, f64, f64)) -> f64| {
        let v: Vec<f64> = from_minute_2.iter().map(|s| f(s)).collect();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    println!(
        "\n{minutes} min at {rate} rps: {} requests, {} errors, p50 {} ms, p99 {} ms, p99.9 {} ms; {round} route changes, {acked} acknowledged by both proxies within 8 s; certificates installed: client {}, server {}; RSS spread from minute 2: client {:.1} MiB, server {:.1} MiB, controller {:.1} MiB",
        report["requests"], report["errors"], report["p50_ms"], report["p99_ms"], report["p999_ms"],
        renewals(&client), renewals(&server), spread(|s| s.1), spread(|s| s.2), spread(|s| s.3)
    );
    drop(server);
    drop(client);
    Ok(())
}
