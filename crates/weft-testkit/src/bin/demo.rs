//! `weft-demo`: the local demo mesh, up and shown working in about ten
//! seconds, then torn down. A controller on the host; two pods (network
//! namespaces) with sidecar proxies that got their certificates from it:
//! `hello` (an echo server) and `client`. The client calls `http://hello/`;
//! the request crosses the wire in mTLS, and the app sees the caller's
//! SPIFFE identity. Then `weft proxy-status` and `weft tls-check` say the
//! same from the controller's side. Needs root (network namespaces,
//! iptables). `--keep` leaves it running until Ctrl-C.

use anyhow::Context;
use std::time::{Duration, Instant};
use weft_testkit::{ControllerProcess, Net, Pod};

const MESH: &str = include_str!("../../../../examples/demo/mesh.yaml");

fn step(text: &str) {
    println!("\n==> {text}");
}

fn run_weft(ctl: &ControllerProcess, args: &[&str]) -> anyhow::Result<String> {
    println!("$ weft {}", args.join(" "));
    let out = ctl.weft(args)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    Ok(text)
}

fn wait_synced(ctl: &ControllerProcess, n: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&ctl.weft(&["proxy-status"])?.stdout).into_owned();
        let tls = String::from_utf8_lossy(&ctl.weft(&["tls-check", "client", "hello.default"])?.stdout).into_owned();
        if text.lines().filter(|l| l.contains(" SYNCED ")).count() == n && tls.contains("mTLS") {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(15) {
            anyhow::bail!("proxies not in sync after 15 s:\n{text}\n{}", ctl.logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn meshed(net: &Net, ctl: &ControllerProcess, name: &str) -> anyhow::Result<Pod> {
    let pod = net.pod(name)?;
    let token = ctl.token("default", name)?;
    pod.start_meshed_proxy(ctl.grpc, "default", &format!("app={name}"), &["--service-account", name, "--token", &token])?;
    Ok(pod)
}

fn main() -> anyhow::Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    step("network namespaces and a controller");
    let net = Net::new().context("the demo builds pods in network namespaces")?;
    let data = std::env::temp_dir().join(format!("weft-demo-{}", std::process::id()));
    let ctl = ControllerProcess::start(&net, &data)?;
    println!("controller: API {}, proxies' gRPC {}", ctl.api, ctl.grpc);
    println!("weft reaches it as its local admin: weft --controller {} --data-dir {} ...", ctl.api, ctl.data_dir.display());
    let file = data.with_extension("yaml");
    std::fs::write(&file, MESH)?;
    run_weft(&ctl, &["apply", "-f", file.to_str().unwrap_or_default()])?;

    step("two meshed pods: hello (an echo server) and client; each proxy got a certificate from the controller's CA");
    let hello = meshed(&net, &ctl, "hello")?;
    hello.start_echo(8080, "v1")?;
    let client = meshed(&net, &ctl, "client")?;
    client.set_hosts(&[("hello", "10.96.0.30")])?;
    wait_synced(&ctl, 2)?;

    step("client -> http://hello/ (curl in the client pod; its proxy opens mTLS to hello's proxy)");
    let (code, body) = client.curl("http://hello/", &[])?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    println!("HTTP {code}, answered by pod {}", v["pod"].as_str().unwrap_or("?"));
    let xfcc = v["headers"]["x-forwarded-client-cert"].as_str().unwrap_or("-");
    println!("the app saw x-forwarded-client-cert: {xfcc}");
    anyhow::ensure!(code == 200 && xfcc.contains("URI=spiffe://cluster.local/ns/default/sa/client"), "the request did not go over mTLS: {body}");

    step("a pod without a proxy is refused: PeerAuthentication default/default is STRICT");
    let outsider = net.pod("outsider")?;
    match outsider.curl(&format!("http://{}:8080/", hello.ip), &["--max-time", "2"]) {
        Err(e) => println!("refused, as it should be: {e}"),
        Ok((code, _)) => anyhow::bail!("a plaintext client got HTTP {code} through STRICT"),
    }

    step("the controller's view");
    run_weft(&ctl, &["proxy-status"])?;
    println!();
    run_weft(&ctl, &["tls-check", "client", "hello.default"])?;
    let metrics = hello.admin("/stats/prometheus")?;
    let line = metrics.lines().find(|l| l.starts_with("weft_requests_total") && l.contains("mutual_tls")).unwrap_or("-");
    println!("\nhello's proxy: {line}");

    if keep {
        step(&format!(
            "running; try `weft --controller {} --data-dir {} proxy-status` (or `check`). Ctrl-C to stop and clean up",
            ctl.api,
            ctl.data_dir.display()
        ));
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(tokio::signal::ctrl_c())?;
    }
    step("done: mTLS between meshed pods, plaintext refused; cleaning up");
    drop((client, hello, outsider, ctl));
    let _ = std::fs::remove_file(&file);
    Ok(())
}
