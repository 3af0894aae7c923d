//! Start-up: opens the store and the CA, binds the HTTP API and the
//! proxies' gRPC port, starts the push loop, and serves until SIGTERM or
//! Ctrl-C. `weft controller` parses its flags into [`Options`] and calls
//! [`run`]; the dashboard, webhook and discovery plug in here.

use crate::identity::{MeshCa, PluggedCa};
use crate::push::push_loop;
use crate::service::PushService;
use crate::state::Controller;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Streams one proxy connection may open at once.
const MAX_STREAMS_PER_PROXY: u32 = 8;

/// Everything the controller is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the embedded store and the CA keep their files.
    pub data_dir: PathBuf,
    /// The HTTP API (`weft apply/get/delete/analyze/proxy-status`).
    pub listen: SocketAddr,
    /// The gRPC port proxies stream their config from.
    pub grpc_listen: SocketAddr,
    /// How long a disconnected proxy's workload stays an endpoint.
    pub endpoint_grace: Duration,
    /// Take token-less proxies at their word (development only).
    pub insecure_dev: bool,
    pub trust_domain: String,
    /// Lifetime of workload certificates.
    pub cert_ttl: Duration,
    /// How long after expiry a certificate may still be renewed with its key.
    pub renewal_grace: Duration,
    /// A CA plugged in by the operator (else a root kept in the data directory).
    pub plugged_ca: Option<PluggedCa>,
    /// Namespace whose selector-less policies apply to the whole mesh.
    pub root_namespace: String,
    /// How often an idle proxy connection is pinged (HTTP/2, and TCP keepalive):
    /// a proxy that does not answer within the same time is disconnected.
    pub proxy_keepalive: Duration,
    /// Authorization settings for the whole mesh.
    pub policy: crate::compile::authz::MeshPolicy,
    /// Where `/metrics` (and nothing else) is served for Prometheus.
    pub monitoring_listen: Option<SocketAddr>,
    /// Telemetry settings for every proxy (the access log).
    pub telemetry: crate::compile::telemetry::MeshTelemetry,
    /// The sidecar injection webhook, when served.
    pub webhook: Option<crate::webhook::WebhookOptions>,
    /// Check Kubernetes ServiceAccount tokens with this API server's TokenReview.
    pub token_review: Option<crate::token_review::ReviewerOptions>,
}

/// Runs the controller until it is told to stop.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let store = crate::store::RedbStore::open(&opts.data_dir)?;
    let mut ca = MeshCa::open(&opts.data_dir, &opts.trust_domain, opts.plugged_ca.as_ref(), opts.cert_ttl)?;
    ca.renewal_grace = opts.renewal_grace;
    let analysis = weft_model::analyze::Options { root_namespace: opts.root_namespace.clone(), trust_domain: opts.trust_domain.clone() };
    let auth = crate::auth::ApiAuth::open(&opts.data_dir, &opts.trust_domain)?;
    tracing::info!(token = %auth.local_token.display(), "the local admin credential for weft on this machine");
    if opts.insecure_dev {
        tracing::warn!("--insecure-dev: proxies without a certificate are taken at their word about who they are; never run a mesh like this in production");
    }
    let mesh = crate::state::MeshSettings { insecure_dev: opts.insecure_dev, policy: opts.policy.clone(), telemetry: opts.telemetry.clone() };
    let controller = Controller::new(Box::new(store), analysis, opts.endpoint_grace, ca, auth, mesh);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let reviewer = match &opts.token_review {
            Some(r) => {
                tracing::info!(api = %r.api, audience = %r.audience, "Kubernetes ServiceAccount tokens are checked with TokenReview");
                Some(std::sync::Arc::new(crate::token_review::TokenReviewer::new(r.clone())?))
            }
            None => None,
        };
        let push = PushService { registry: controller.registry.clone(), ca: controller.ca.clone(), insecure_dev: opts.insecure_dev, reviewer };
        // Both ports speak TLS (with the controller's own certificate, clients
        // authenticated by theirs) and plaintext, told apart by the first byte.
        let (chain, key) = controller.ca.serving_identity()?;
        let tls = crate::listener::server_config(&chain, &key, controller.ca.trust_domain(), &controller.ca.trust_bundle_pem())?;
        let mut api_tls = (*tls).clone();
        api_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let listener = crate::listener::ApiListener::new(tokio::net::TcpListener::bind(opts.listen).await?, std::sync::Arc::new(api_tls))?;
        tracing::info!(address = %opts.listen, data_dir = %opts.data_dir.display(), "controller listening");
        let grpc_listener = tokio::net::TcpListener::bind(opts.grpc_listen).await?;
        let grpc = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(opts.proxy_keepalive))
            .http2_keepalive_timeout(Some(opts.proxy_keepalive))
            // A proxy needs one stream (config) and now and then a second (a certificate).
            .max_concurrent_streams(Some(MAX_STREAMS_PER_PROXY))
            .add_service(weft_proto::v1::proxy_config_service_server::ProxyConfigServiceServer::new(push).max_encoding_message_size(256 * 1024 * 1024))
            .serve_with_incoming(crate::listener::incoming(grpc_listener, tls, opts.proxy_keepalive));
        tracing::info!(address = %opts.grpc_listen, "proxies stream config from here");
        tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!("gRPC server: {e}");
            }
        });
        tokio::spawn(push_loop(controller.clone(), controller.registry.clone(), Duration::from_millis(100)));
        // Key sets that failed to fetch are retried, and old ones refreshed; a change is pushed.
        let c = controller.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if c.jwks.refresh_due().await {
                    c.changed.notify_one();
                }
            }
        });
        if let Some(addr) = opts.monitoring_listen {
            // Metrics are not worth refusing to run the control plane for.
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(address = %addr, "metrics at /metrics");
                    tokio::spawn(serve_metrics(l, controller.clone()));
                }
                Err(e) => tracing::error!(address = %addr, "cannot serve metrics: {e}; running without them (see --monitoring-listen)"),
            }
        }
        if let Some(w) = opts.webhook.clone() {
            crate::webhook::spawn(w, controller.clone()).await?;
        }
        // Proxies that are already connected get the stored state at once.
        controller.changed.notify_one();
        let app = crate::api::router(controller).into_make_service_with_connect_info::<crate::listener::Peer>();
        axum::serve(listener, app).with_graceful_shutdown(stopped()).await?;
        Ok::<_, anyhow::Error>(())
    })
}

/// The monitoring port: `GET /metrics` only, read-only, with a bounded
/// header read (it is reachable from the network, as Prometheus needs).
async fn serve_metrics(listener: tokio::net::TcpListener, controller: std::sync::Arc<Controller>) {
    use axum::routing::get;
    let c = controller.clone();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let c = c.clone();
            async move {
                let body = c.registry.metrics.render(&c.registry.gauges(c.ca.root_expiry_unix()));
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("metrics server: {e}");
    }
}

/// SIGTERM or Ctrl-C.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
    }
}
