//! `weft-proxy`: run the data plane, or set up (and tear down) traffic
//! interception in the current network namespace.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::{prelude::*, reload, EnvFilter};
use weft_proxy::iptables::{self, InitOptions};

/// weft-proxy: the weft sidecar and gateway proxy.
#[derive(Parser)]
#[command(name = "weft-proxy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Run the proxy from a config file (YAML or JSON; reloaded on change or SIGHUP).
    Run {
        /// Listeners, routes, clusters and limits (see docs/proxy.md). With --controller
        /// it is only the starting point; without it, the proxy starts as a sidecar.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The controller's gRPC address (`host:15012`): receive config from it.
        #[arg(long)]
        controller: Option<String>,
        /// This proxy's name in `weft proxy-status` (default: WORKLOAD.NAMESPACE).
        #[arg(long)]
        proxy_id: Option<String>,
        /// The workload this proxy serves.
        #[arg(long, default_value = "unknown")]
        workload: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, default_value = "default")]
        service_account: String,
        /// The workload's labels, `app=reviews,version=v1`.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Also read labels from FILE, in the Kubernetes downward API's format
        /// (`app="reviews"` per line), as injected pods mount them.
        #[arg(long, value_name = "FILE")]
        labels_file: Option<PathBuf>,
        /// The workload's IP address, as other workloads reach it.
        #[arg(long, default_value = "")]
        address: String,
        /// Join token from `weft token create`: obtain (and renew) this workload's
        /// certificate from the controller.
        #[arg(long, env = "WEFT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Use the certificate in DIR (cert-chain.pem, key.pem, root-cert.pem) instead
        /// of one from the controller's CA; read at start.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["token", "token_file"])]
        cert_dir: Option<PathBuf>,
        /// Read the token from FILE at each certificate request (a projected ServiceAccount
        /// token the kubelet rotates, in injected pods).
        #[arg(long, value_name = "FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// The mesh root(s), PEM: the controller's certificate must chain to the first
        /// (instead of the root pinned in a join token).
        #[arg(long, value_name = "PEM")]
        ca_roots: Option<PathBuf>,
        /// Addresses serving the kubelet's probes, /healthz/ready and the app's probes
        /// rewritten by injection (/app-health/..., from WEFT_APP_PROBES); none by default.
        #[arg(long = "health-listen", value_name = "ADDR")]
        health: Vec<SocketAddr>,
        /// Keep the last certificate (key 0600) and config from the controller in DIR, so a
        /// restart while the controller is away serves with them (the pod's own volume).
        #[arg(long, value_name = "DIR", env = "WEFT_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Trust domain of the workload's SPIFFE ID.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// The cluster the workload runs in: the `source_cluster` / `destination_cluster`
        /// of its metrics (Istio's CLUSTER_ID, which defaults to this name too).
        #[arg(long, default_value = "Kubernetes")]
        cluster_id: String,
        /// Ports the workload serves (comma-separated).
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u32>,
        /// Admin addresses (/ready, /config_dump, /clusters, /certs, POST /logging): loopback only.
        #[arg(long, default_values = ["127.0.0.1:15000"])]
        admin: Vec<SocketAddr>,
        /// Addresses serving /stats/prometheus and nothing else (what Prometheus scrapes).
        #[arg(long, default_values = ["0.0.0.0:15090"])]
        stats: Vec<SocketAddr>,
        /// Worker threads for the request path. One is plenty for a sidecar at
        /// thousands of requests per second (see docs/benchmarks.md); raise it for gateways.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Log filter (`info`, `debug`, `weft_proxy=debug,connections=off`); also settable by POST
        /// /logging. The access log is not part of it: see the config's telemetry.access_log.
        #[arg(long, default_value = "info", env = "WEFT_LOG")]
        log: String,
    },
    /// Install iptables rules redirecting this network namespace's TCP traffic
    /// to the proxy (outbound to --outbound-port, inbound to --inbound-port).
    Init(InitArgs),
    /// Wait until the proxy is ready (a postStart hook holds the app's start until then
    /// on clusters without native sidecars); exit 1 on timeout.
    Wait {
        #[arg(long, default_value = "http://127.0.0.1:15020/healthz/ready")]
        url: String,
        /// Seconds, or a duration such as 120s or 2m.
        #[arg(long, default_value = "120s")]
        timeout: String,
    },
}

/// Reads a downward API labels file: `key="value"` per line, values Go-quoted.
fn read_labels_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--labels-file {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=').with_context(|| format!("--labels-file {}: {line:?} is not key=\"value\"", path.display()))?;
        let v = v.trim();
        let inner = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        let mut value = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(other) => value.push(other),
                None => {}
            }
        }
        out.push((k.trim().to_string(), value));
    }
    Ok(out)
}

/// Polls `url` (plain http://HOST:PORT/PATH) until it answers 200.
fn wait_ready(url: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").with_context(|| format!("--url {url:?}: only http:// URLs"))?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let ok = (|| -> std::io::Result<bool> {
            let mut s = std::net::TcpStream::connect(authority)?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            write!(s, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)?;
            Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
        })()
        .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("the proxy was not ready at {url} within {timeout:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[derive(clap::Args)]
struct InitArgs {
    /// Remove exactly the rules init added, and nothing else.
    #[arg(long)]
    cleanup: bool,
    /// The uid the proxy runs as; its own traffic is never redirected.
    #[arg(long, default_value_t = 1337)]
    proxy_uid: u32,
    /// Also exempt traffic from this gid.
    #[arg(long)]
    proxy_gid: Option<u32>,
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// Inbound ports that bypass the proxy (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports that bypass the proxy (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_outbound_ports: Vec<u16>,
    /// Outbound destination CIDRs that bypass the proxy (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_outbound_cidrs: Vec<String>,
    /// Do not intercept inbound traffic.
    #[arg(long)]
    no_inbound: bool,
    /// Also program ip6tables.
    #[arg(long)]
    ipv6: bool,
    /// Print the iptables commands instead of running them.
    #[arg(long)]
    dry_run: bool,
}

impl From<InitArgs> for InitOptions {
    fn from(a: InitArgs) -> InitOptions {
        InitOptions {
            proxy_uid: a.proxy_uid,
            proxy_gid: a.proxy_gid,
            outbound_port: a.outbound_port,
            inbound_port: a.inbound_port,
            exclude_inbound_ports: a.exclude_inbound_ports,
            exclude_outbound_ports: a.exclude_outbound_ports,
            exclude_outbound_cidrs: a.exclude_outbound_cidrs,
            inbound: !a.no_inbound,
            ipv6: a.ipv6,
        }
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-proxy: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run { config, controller, proxy_id, workload, namespace, service_account, labels, labels_file, address, ports, token, cert_dir, token_file, ca_roots, health, state_dir, trust_domain, cluster_id, admin, stats, workers, log } => {
            let app_probes = match std::env::var(weft_proxy::app::app_probes::ENV) {
                Ok(text) => weft_proxy::app::app_probes::AppProbes::parse(&text).map_err(|e| anyhow::anyhow!(e))?,
                Err(_) => Default::default(),
            };
            let admin = weft_proxy::app::admin::AdminAddresses { admin, stats, health, app_probes: Arc::new(app_probes) };
            admin.check().map_err(|e| anyhow::anyhow!(e))?;
            let filter = EnvFilter::try_new(&log).with_context(|| format!("log filter {log:?}"))?;
            let (filter, handle) = reload::Layer::new(filter);
            tracing_subscriber::registry().with(filter).with(tracing_subscriber::fmt::layer().with_target(true).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))).init();
            let set_log_level = Arc::new(move |level: &str| {
                let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                handle.reload(f).map_err(|e| e.to_string())
            });
            let proxy_id = proxy_id.unwrap_or_else(|| format!("{workload}.{namespace}"));
            let root_pin = match &ca_roots {
                Some(p) => {
                    let pem = std::fs::read(p).with_context(|| format!("--ca-roots {}", p.display()))?;
                    let first = weft_identity::tls::first_certificate(&pem).map_err(|e| anyhow::anyhow!("--ca-roots {}: {e}", p.display()))?;
                    Some(weft_identity::tls::fingerprint(&first))
                }
                None => None,
            };
            let token = token.or_else(|| token_file.as_ref().map(|_| String::new()));
            let mtls = token.is_some() || cert_dir.is_some();
            let cert_files = match &cert_dir {
                Some(dir) => Some(weft_proxy::workload_cert::load_dir(dir, &trust_domain).map_err(|e| anyhow::anyhow!("--cert-dir: {e}"))?),
                None => None,
            };
            let mut labels: std::collections::BTreeMap<String, String> =
                labels.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            if let Some(f) = &labels_file {
                // The pod's own labels; --labels, given explicitly, win.
                for (k, v) in read_labels_file(f)? {
                    labels.entry(k).or_insert(v);
                }
            }
            let mut meta = weft_proto::config::WorkloadMeta::from_labels(&workload, &namespace, &labels);
            meta.cluster = cluster_id.clone();
            let certificates = match (&controller, token) {
                (Some(addr), Some(token)) => Some(weft_proxy::control::certs::CertOptions {
                    controller: addr.clone(),
                    proxy_id: proxy_id.clone(),
                    token,
                    token_file,
                    root_pin,
                    id: weft_identity::SpiffeId::new(&trust_domain, &namespace, &service_account)?,
                    workload_json: serde_json::to_string(&meta)?,
                }),
                (None, Some(_)) => anyhow::bail!("--token needs --controller"),
                _ => None,
            };
            let principal = mtls.then(|| weft_identity::SpiffeId::new(&trust_domain, &namespace, &service_account).map(|id| id.to_string())).transpose()?;
            let workload_info = weft_proxy::config::Workload { namespace: namespace.clone(), labels: labels.clone(), meta, principal };
            let controller = controller.map(|controller_address| {
                let labels = labels.into_iter().collect();
                weft_proxy::control::ControlOptions {
                    address: controller_address,
                    hello: weft_proto::v1::Hello {
                        proxy_id: proxy_id.clone(),
                        workload,
                        namespace,
                        service_account,
                        labels,
                        address,
                        ports,
                        ready: true,
                        version: String::new(),
                        mtls,
                        cluster_id: cluster_id.clone(),
                    },
                }
            });
            weft_proxy::app::run::run(weft_proxy::app::run::RunOptions { config, controller, certificates, cert_files, workload: workload_info, state_dir, admin, workers, set_log_level })
        }
        Command::Wait { url, timeout } => {
            let t = timeout.strip_suffix('s').unwrap_or(&timeout);
            let secs: u64 = match t.strip_suffix('m') {
                Some(m) => m.parse::<u64>().map(|m| m * 60),
                None => t.parse(),
            }
            .with_context(|| format!("--timeout {timeout:?}: seconds, 120s or 2m"))?;
            wait_ready(&url, std::time::Duration::from_secs(secs))
        }
        Command::Init(args) => {
            let (cleanup, dry_run) = (args.cleanup, args.dry_run);
            let o = InitOptions::from(args);
            if dry_run {
                let rules = if cleanup { iptables::cleanup_rules() } else { iptables::rules(&o, false) };
                for r in rules {
                    println!("iptables -t nat {}", r.join(" "));
                }
                return Ok(());
            }
            if cleanup {
                iptables::cleanup(o.ipv6);
                Ok(())
            } else {
                iptables::init(&o).map_err(|e| anyhow::anyhow!(e))
            }
        }
    }
}
