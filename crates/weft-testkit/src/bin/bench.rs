//! `weft-bench`: the side-by-side benchmark of the data plane. In one run,
//! with pods in network namespaces: the direct path (client pod -> server
//! pod), the meshed path (client -> outbound proxy -> inbound proxy ->
//! server, with iptables interception) in plaintext and with mesh mTLS
//! between the proxies, and nginx as a two-hop plaintext
//! reverse proxy for reference; HTTP/1.1 and gRPC-shaped HTTP/2; at a fixed
//! rate with latency measured from each request's due time. Also one proxy
//! on one worker at full speed. Prints Markdown for docs/benchmarks.md.
//!
//! Run: `cargo build --release --workspace --bins && sudo target/release/weft-bench [--rate 1000] [--duration 15]`

use anyhow::Context;
use std::time::Duration;
use weft_testkit::{workspace_bin, Net, Pod};

const SIDECAR: &str = r#"
listeners:
- {name: outbound, kind: outbound, address: "0.0.0.0:15001"}
- {name: inbound, kind: inbound, address: "0.0.0.0:15006"}
"#;

fn arg(flag: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.into())
}

#[derive(Default, Clone)]
struct Load {
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    errors: u64,
}

fn load(pod: &Pod, url: &str, rate: &str, conns: &str, secs: &str, h2: bool) -> anyhow::Result<Load> {
    let mut args = vec!["load", url, "--rate", rate, "--connections", conns, "--duration", secs];
    if h2 {
        args.push("--h2");
    }
    let out = pod.exec_ok(workspace_bin("weft-echo"), &args)?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("load output")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Load { rps: f("achieved_rps"), p50: f("p50_ms"), p90: f("p90_ms"), p99: f("p99_ms"), p999: f("p999_ms"), errors: v["errors"].as_u64().unwrap_or(0) })
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn row(name: &str, l: &Load, base: Option<&Load>) -> String {
    let added = base.map(|b| format!("+{:.3} / +{:.3}", l.p50 - b.p50, l.p99 - b.p99)).unwrap_or_else(|| "-".into());
    format!(
        "| {name} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {added} | {} |",
        l.rps, l.p50, l.p90, l.p99, l.p999, l.errors
    )
}

fn nginx_conf(pod: &Pod, listen: &str, upstream: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{}-nginx", pod.ns));
    std::fs::create_dir_all(&dir)?;
    let conf = format!(
        "worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir};\n\
           upstream up {{ server {upstream}; keepalive 64; }}\n\
           server {{ listen {listen}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// Writes a workload certificate for `spiffe://cluster.local/ns/bench/sa/SA`
/// in the file-mounted layout `weft-proxy run --cert-dir` reads.
fn cert_dir(ca: &weft_identity::CertificateAuthority, pod: &Pod, sa: &str) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let id = weft_identity::SpiffeId::new("cluster.local", "bench", sa)?;
    let kc = weft_identity::csr::generate(&id)?;
    let issued = ca.sign_csr(&kc.csr_pem, &id, Duration::from_secs(3600))?;
    let dir = std::env::temp_dir().join(format!("{}-certs", pod.ns));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    for (name, text) in [("cert-chain.pem", issued.chain_pem.as_str()), ("key.pem", kc.key_pem.as_str()), ("root-cert.pem", &ca.trust_bundle_pem())] {
        std::fs::write(dir.join(name), text)?;
        // The proxy runs as its own uid.
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(dir)
}

/// A client proxy config with 50 routes; the one for `server_ip:8080` has 49
/// rules with a header and a regex path match before its catch-all.
fn route_table(server_ip: &str) -> String {
    let mut rules = String::new();
    for i in 0..49 {
        rules += &format!(
            "  - matches: [{{headers: [{{name: x-tenant, value: {{exact: tenant-{i}}}}}]}}, {{path: {{regex: \"/api/v{i}/items/[0-9]+\"}}, method: POST}}]\n    clusters: [{{cluster: server, weight: 1}}]\n"
        );
    }
    let mut others = String::new();
    for i in 0..49 {
        others += &format!("- {{name: svc-{i}, hosts: [svc-{i}.bench.svc.cluster.local], destinations: [\"10.97.0.{}:80\"], cluster: server}}\n", i + 1);
    }
    format!(
        "{SIDECAR}clusters:\n- {{name: server, endpoints: [\"{server_ip}:8080\"]}}\nroutes:\n- name: server\n  destinations: [\"{server_ip}:8080\"]\n  cluster: server\n  http:\n{rules}  - clusters: [{{cluster: server, weight: 1}}]\n{others}"
    )
}

fn main() -> anyhow::Result<()> {
    let rate = arg("--rate", "1000");
    let secs = arg("--duration", "15");
    let conns = arg("--connections", "16");
    let workers = arg("--proxy-workers", "1");
    let net = Net::new()?;
    let path = "/bytes/1024";

    // Direct path.
    let c0 = net.pod("client-direct")?;
    let s0 = net.pod("server-direct")?;
    s0.start_echo(8080, "v1")?;
    let direct_url = format!("http://{}:8080{path}", s0.ip);
    let direct_h1 = load(&c0, &direct_url, &rate, &conns, &secs, false)?;
    let direct_h2 = load(&c0, &direct_url, &rate, &conns, &secs, true)?;

    // Meshed path: both pods intercepted, proxies as uid 1337, access log off (Istio's default).
    let c1 = net.pod("client-meshed")?;
    let s1 = net.pod("server-meshed")?;
    let proxy = workspace_bin("weft-proxy");
    c1.exec_ok(&proxy, &["init"])?;
    s1.exec_ok(&proxy, &["init"])?;
    let out_pid = c1.start_proxy_with_args(SIDECAR, &["--log", "warn", "--workers", &workers])?;
    let in_pid = s1.start_proxy_with_args(SIDECAR, &["--log", "warn", "--workers", &workers])?;
    s1.start_echo(8080, "v1")?;
    let idle_rss = (status_kib(out_pid, "VmRSS:"), status_kib(in_pid, "VmRSS:"));
    let meshed_url = format!("http://{}:8080{path}", s1.ip);
    let cpu0 = (cpu_seconds(out_pid), cpu_seconds(in_pid));
    let meshed_h1 = load(&c1, &meshed_url, &rate, &conns, &secs, false)?;
    let cpu1 = (cpu_seconds(out_pid), cpu_seconds(in_pid));
    let meshed_h2 = load(&c1, &meshed_url, &rate, &conns, &secs, true)?;
    let cpu2 = (cpu_seconds(out_pid), cpu_seconds(in_pid));
    let peak_rss = (status_kib(out_pid, "VmHWM:"), status_kib(in_pid, "VmHWM:"));

    // Meshed with mTLS between the proxies: certificates from files, the client
    // proxy routes the server's address to a cluster whose endpoint has the
    // server's identity, the server's inbound is STRICT.
    let ca = weft_identity::CertificateAuthority::generate_root("cluster.local")?;
    let c3 = net.pod("client-mtls")?;
    let s3 = net.pod("server-mtls")?;
    c3.exec_ok(&proxy, &["init"])?;
    s3.exec_ok(&proxy, &["init"])?;
    let client_certs = cert_dir(&ca, &c3, "client")?;
    let server_certs = cert_dir(&ca, &s3, "server")?;
    let client_conf = format!(
        "{SIDECAR}clusters:\n- name: server\n  endpoints: [{{address: \"{ip}:8080\", identity: \"spiffe://cluster.local/ns/bench/sa/server\"}}]\nroutes:\n- {{name: server, destinations: [\"{ip}:8080\"], cluster: server}}\n",
        ip = s3.ip
    );
    let mtls_out_pid = c3.start_proxy_with_args(&client_conf, &["--log", "warn", "--workers", &workers, "--cert-dir", client_certs.to_str().unwrap_or_default()])?;
    let mtls_in_pid = s3.start_proxy_with_args(
        &format!("{SIDECAR}inbound: {{mtls: STRICT}}\n"),
        &["--log", "warn", "--workers", &workers, "--cert-dir", server_certs.to_str().unwrap_or_default()],
    )?;
    s3.start_echo(8080, "v1")?;
    let mtls_url = format!("http://{}:8080{path}", s3.ip);
    let mcpu0 = (cpu_seconds(mtls_out_pid), cpu_seconds(mtls_in_pid));
    let mtls_h1 = load(&c3, &mtls_url, &rate, &conns, &secs, false)?;
    let mcpu1 = (cpu_seconds(mtls_out_pid), cpu_seconds(mtls_in_pid));
    let mtls_h2 = load(&c3, &mtls_url, &rate, &conns, &secs, true)?;
    let mcpu2 = (cpu_seconds(mtls_out_pid), cpu_seconds(mtls_in_pid));
    let mtls_peak_rss = (status_kib(mtls_out_pid, "VmHWM:"), status_kib(mtls_in_pid, "VmHWM:"));
    // The server's proxy must have seen mTLS: a plaintext fallback would make the figures meaningless.
    let stats = s3.admin("/stats/prometheus")?;
    anyhow::ensure!(stats.contains("connection_security_policy=\"mutual_tls\""), "the mTLS run was not mTLS:\n{stats}");

    // Meshed with a realistic route table in front of the destination: 50 routes, and for
    // the destination 50 rules (49 with a header and a regex match that the benchmark's
    // requests miss, then the catch-all), so every request walks the whole table.
    let c4 = net.pod("client-routes")?;
    let s4 = net.pod("server-routes")?;
    c4.exec_ok(&proxy, &["init"])?;
    s4.exec_ok(&proxy, &["init"])?;
    let table = route_table(&s4.ip.to_string());
    let rt_out_pid = c4.start_proxy_with_args(&table, &["--log", "warn", "--workers", &workers])?;
    s4.start_proxy_with_args(SIDECAR, &["--log", "warn", "--workers", &workers])?;
    s4.start_echo(8080, "v1")?;
    let routes_url = format!("http://{}:8080{path}", s4.ip);
    let rcpu0 = cpu_seconds(rt_out_pid);
    let routes_h1 = load(&c4, &routes_url, &rate, &conns, &secs, false)?;
    let rcpu1 = cpu_seconds(rt_out_pid);
    let routes_h2 = load(&c4, &routes_url, &rate, &conns, &secs, true)?;
    let stats = c4.admin("/stats/prometheus")?;
    anyhow::ensure!(stats.contains("route=\"server\""), "the route table was not used:\n{stats}");

    // nginx, two hops: client-side nginx on localhost -> server-side nginx -> echo.
    let c2 = net.pod("client-nginx")?;
    let s2 = net.pod("server-nginx")?;
    s2.start_echo(8080, "v1")?;
    let server_conf = nginx_conf(&s2, "0.0.0.0:8082", "127.0.0.1:8080")?;
    s2.spawn("nginx", &["-c", server_conf.to_str().unwrap_or_default()])?;
    s2.wait_listening(8082, Duration::from_secs(10))?;
    let client_conf = nginx_conf(&c2, "127.0.0.1:8081", &format!("{}:8082", s2.ip))?;
    c2.spawn("nginx", &["-c", client_conf.to_str().unwrap_or_default()])?;
    c2.wait_listening(8081, Duration::from_secs(10))?;
    let nginx_h1 = load(&c2, &format!("http://127.0.0.1:8081{path}"), &rate, &conns, &secs, false)?;

    // One proxy, one worker, as fast as it goes (small responses, 64 connections).
    let t = net.pod("throughput")?;
    t.start_echo(8080, "v1")?;
    let tp_conf = "listeners:\n- {name: app, kind: explicit, address: \"127.0.0.1:18080\", cluster: app}\nclusters:\n- {name: app, endpoints: [\"127.0.0.1:8080\"]}\n";
    let tp_pid = t.start_proxy_with_args(tp_conf, &["--log", "warn", "--workers", "1"])?;
    let tcpu0 = cpu_seconds(tp_pid);
    let tp = load(&t, "http://127.0.0.1:18080/bytes/16", "0", "64", "10", false)?;
    let tcpu1 = cpu_seconds(tp_pid);

    let d: f64 = secs.parse()?;
    println!("Load: {rate} req/s, {conns} connections, {secs} s per run, 1 KiB responses, {workers} worker thread(s) per proxy; latency in ms (see the load generator's notes).\n");
    println!("| path | achieved req/s | p50 | p90 | p99 | p99.9 | added p50 / p99 vs direct | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", row("direct, HTTP/1.1", &direct_h1, None));
    println!("{}", row("weft, 2 proxies, HTTP/1.1", &meshed_h1, Some(&direct_h1)));
    println!("{}", row("weft, 2 proxies, mTLS between them, HTTP/1.1", &mtls_h1, Some(&direct_h1)));
    println!("{}", row("weft, 2 proxies, 50-route table, HTTP/1.1", &routes_h1, Some(&direct_h1)));
    println!("{}", row("nginx, 2 hops, HTTP/1.1", &nginx_h1, Some(&direct_h1)));
    println!("{}", row("direct, gRPC-shaped HTTP/2", &direct_h2, None));
    println!("{}", row("weft, 2 proxies, gRPC-shaped HTTP/2", &meshed_h2, Some(&direct_h2)));
    println!("{}", row("weft, 2 proxies, mTLS between them, gRPC-shaped HTTP/2", &mtls_h2, Some(&direct_h2)));
    println!("{}", row("weft, 2 proxies, 50-route table, gRPC-shaped HTTP/2", &routes_h2, Some(&direct_h2)));
    println!();
    println!("| proxy | CPU during HTTP/1.1 run (cores) | CPU during HTTP/2 run (cores) | RSS idle | peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| outbound (client pod) | {:.3} | {:.3} | {:.1} MiB | {:.1} MiB |",
        (cpu1.0 - cpu0.0) / d,
        (cpu2.0 - cpu1.0) / d,
        idle_rss.0 as f64 / 1024.0,
        peak_rss.0 as f64 / 1024.0
    );
    println!(
        "| inbound (server pod) | {:.3} | {:.3} | {:.1} MiB | {:.1} MiB |",
        (cpu1.1 - cpu0.1) / d,
        (cpu2.1 - cpu1.1) / d,
        idle_rss.1 as f64 / 1024.0,
        peak_rss.1 as f64 / 1024.0
    );
    println!(
        "| outbound, mTLS (client pod) | {:.3} | {:.3} | - | {:.1} MiB |",
        (mcpu1.0 - mcpu0.0) / d,
        (mcpu2.0 - mcpu1.0) / d,
        mtls_peak_rss.0 as f64 / 1024.0
    );
    println!(
        "| inbound, mTLS (server pod) | {:.3} | {:.3} | - | {:.1} MiB |",
        (mcpu1.1 - mcpu0.1) / d,
        (mcpu2.1 - mcpu1.1) / d,
        mtls_peak_rss.1 as f64 / 1024.0
    );
    println!("| outbound, 50-route table (client pod) | {:.3} | - | - | - |", (rcpu1 - rcpu0) / d);
    println!();
    println!(
        "Throughput, one proxy on one worker, 64 connections, 16-byte responses, load generator and echo on the same 2 cores: {:.0} req/s (p50 {:.3} ms, p99 {:.3} ms, errors {}), proxy CPU {:.2} cores.",
        tp.rps,
        tp.p50,
        tp.p99,
        tp.errors,
        (tcpu1 - tcpu0) / 10.0
    );
    Ok(())
}
