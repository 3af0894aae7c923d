//! `weft controller`: run the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(clap::Args)]
pub struct Args {
    /// Where the embedded store keeps its file (weft.redb).
    #[arg(long, default_value = "./weft-data")]
    data_dir: PathBuf,
    /// Address of the HTTP API used by `weft apply/get/delete/analyze`.
    #[arg(long, default_value = crate::client::DEFAULT_CONTROLLER)]
    listen: SocketAddr,
    /// Address of the gRPC endpoint proxies stream their config from.
    #[arg(long, default_value = "0.0.0.0:15012")]
    grpc_listen: SocketAddr,
    /// How long a disconnected proxy's workload stays an endpoint (e.g. `10s`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    endpoint_grace: std::time::Duration,
    /// Refuse config streams from proxies without a workload certificate (production):
    /// without it, token-less proxies may stream in plaintext and are taken at their word.
    #[arg(long)]
    require_proxy_certificates: bool,
    /// The trust domain of workload identities (spiffe://TRUST-DOMAIN/ns/NS/sa/SA).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Lifetime of workload certificates; proxies renew at about half of it.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    cert_ttl: std::time::Duration,
    /// A plugged-in CA: the signing certificate (usually an intermediate)...
    #[arg(long, requires_all = ["ca_key", "ca_roots"])]
    ca_cert: Option<PathBuf>,
    /// ...its private key (PKCS#8 PEM)...
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// ...the certificates between it and the root...
    #[arg(long)]
    ca_chain: Option<PathBuf>,
    /// ...and the root(s) workloads trust. Without --ca-cert, a root is created in DATA_DIR/ca.
    #[arg(long)]
    ca_roots: Option<PathBuf>,
    /// Namespace whose selector-less policies apply to the whole mesh.
    #[arg(long, default_value = weft_model::mesh::DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Colours only on a terminal: logs written to files stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let plugged_ca = match (args.ca_cert, args.ca_key, args.ca_roots) {
        (Some(cert), Some(key), Some(roots)) => Some(weft_controller::identity::PluggedCa { cert, key, chain: args.ca_chain, roots }),
        _ => None,
    };
    weft_controller::server::run(weft_controller::server::Options {
        data_dir: args.data_dir,
        listen: args.listen,
        grpc_listen: args.grpc_listen,
        endpoint_grace: args.endpoint_grace,
        require_proxy_certificates: args.require_proxy_certificates,
        trust_domain: args.trust_domain,
        cert_ttl: args.cert_ttl,
        plugged_ca,
        root_namespace: args.root_namespace,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    weft_model::values::parse_duration(s)
}
