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
enum Command {
    /// Run the proxy from a config file (YAML or JSON; reloaded on change or SIGHUP).
    Run {
        /// Listeners, routes, clusters and limits (see docs/proxy.md).
        #[arg(long)]
        config: PathBuf,
        /// Admin server addresses (/ready, /config_dump, /stats/prometheus, /logging).
        #[arg(long, default_values = ["127.0.0.1:15000", "0.0.0.0:15090"])]
        admin: Vec<SocketAddr>,
        /// Worker threads for the request path. One is plenty for a sidecar at
        /// thousands of requests per second (see docs/benchmarks.md); raise it for gateways.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Log filter (`info`, `debug`, `weft_proxy=debug,access=off`); also settable at /logging.
        #[arg(long, default_value = "info", env = "WEFT_LOG")]
        log: String,
    },
    /// Install iptables rules redirecting this network namespace's TCP traffic
    /// to the proxy (outbound to --outbound-port, inbound to --inbound-port).
    Init {
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
    },
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
        Command::Run { config, admin, workers, log } => {
            let filter = EnvFilter::try_new(&log).with_context(|| format!("log filter {log:?}"))?;
            let (filter, handle) = reload::Layer::new(filter);
            tracing_subscriber::registry().with(filter).with(tracing_subscriber::fmt::layer().with_target(true)).init();
            let set_log_level = Arc::new(move |level: &str| {
                let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                handle.reload(f).map_err(|e| e.to_string())
            });
            weft_proxy::run::run(weft_proxy::run::RunOptions { config, admin, workers, set_log_level })
        }
        Command::Init {
            cleanup,
            proxy_uid,
            proxy_gid,
            outbound_port,
            inbound_port,
            exclude_inbound_ports,
            exclude_outbound_ports,
            exclude_outbound_cidrs,
            no_inbound,
            ipv6,
            dry_run,
        } => {
            let o = InitOptions {
                proxy_uid,
                proxy_gid,
                outbound_port,
                inbound_port,
                exclude_inbound_ports,
                exclude_outbound_ports,
                exclude_outbound_cidrs,
                inbound: !no_inbound,
                ipv6,
            };
            if dry_run {
                let rules = if cleanup { iptables::cleanup_rules() } else { iptables::rules(&o, false) };
                for r in rules {
                    println!("iptables -t nat {}", r.join(" "));
                }
                return Ok(());
            }
            if cleanup {
                iptables::cleanup(ipv6);
                Ok(())
            } else {
                iptables::init(&o).map_err(|e| anyhow::anyhow!(e))
            }
        }
    }
}
