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
    let store = weft_controller::store::RedbStore::open(&args.data_dir)?;
    let plugged = match (&args.ca_cert, &args.ca_key, &args.ca_roots) {
        (Some(cert), Some(key), Some(roots)) => Some(weft_controller::identity::PluggedCa {
            cert: cert.clone(),
            key: key.clone(),
            chain: args.ca_chain.clone(),
            roots: roots.clone(),
        }),
        _ => None,
    };
    let ca = weft_controller::identity::MeshCa::open(&args.data_dir, &args.trust_domain, plugged.as_ref(), args.cert_ttl)?;
    let controller = weft_controller::api::Controller::new(
        Box::new(store),
        weft_model::analyze::Options { root_namespace: args.root_namespace },
        args.endpoint_grace,
        ca,
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(address = %args.listen, data_dir = %args.data_dir.display(), "controller listening");
        let push = weft_controller::push::PushService {
            registry: controller.registry.clone(),
            ca: controller.ca.clone(),
            require_certificates: args.require_proxy_certificates,
        };
        // The proxies' port speaks TLS (with the controller's own certificate, proxies
        // authenticated by theirs) and plaintext, told apart by the first byte.
        let (chain, key) = controller.ca.serving_identity()?;
        let tls = weft_controller::grpc_listener::server_config(&chain, &key, controller.ca.trust_domain(), &controller.ca.trust_bundle_pem())?;
        let grpc_listener = tokio::net::TcpListener::bind(args.grpc_listen).await?;
        let grpc = tonic::transport::Server::builder()
            .add_service(
                weft_proto::v1::proxy_config_service_server::ProxyConfigServiceServer::new(push).max_encoding_message_size(256 * 1024 * 1024),
            )
            .serve_with_incoming(weft_controller::grpc_listener::incoming(grpc_listener, tls));
        tracing::info!(address = %args.grpc_listen, "proxies stream config from here");
        tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!("gRPC server: {e}");
            }
        });
        tokio::spawn(weft_controller::push::push_loop(controller.clone(), controller.registry.clone(), std::time::Duration::from_millis(100)));
        // Proxies that are already connected get the stored state at once.
        controller.changed.notify_one();
        axum::serve(listener, weft_controller::api::router(controller))
            .with_graceful_shutdown(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
                }
            })
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    weft_model::values::parse_duration(s)
}
