//! The sidecar injection webhook: `POST /inject` over TLS (the Kubernetes
//! API server only calls webhooks over HTTPS), with a certificate for the
//! controller Service's DNS names issued by the mesh CA, whose root `weft
//! install` puts in the webhook's caBundle. The decision and the patch are
//! weft-kube's, the same code `weft inject` runs; this module only serves it,
//! reads namespaces' labels from the store, and counts outcomes under Istio's
//! metric names.

use crate::state::Controller;
use crate::store::ObjectKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use weft_kube::admission::{self, NamespaceMarks, Outcome};

/// The largest AdmissionReview accepted (the API server's own limit on objects is 1.5 MiB).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// A TLS handshake and a request must arrive within this time.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, Clone)]
pub struct WebhookOptions {
    pub listen: SocketAddr,
    /// Names the API server reaches the webhook by (`weft-controller.weft-system.svc`).
    pub dns_names: Vec<String>,
    /// What is injected.
    pub sidecar: weft_kube::sidecar::Values,
}

/// A namespace's labels and annotations, from the store (applied Namespaces,
/// and with Kubernetes discovery the cluster's).
fn namespace_marks(controller: &Controller, name: &str) -> Option<NamespaceMarks> {
    let key = ObjectKey { group: String::new(), kind: "Namespace".into(), namespace: String::new(), name: name.to_string() };
    let obj = controller.store.get(&key).ok()??;
    let map = |field: &str| weft_kube::sidecar::string_map(obj.body.pointer(&format!("/metadata/{field}")));
    Some(NamespaceMarks { labels: map("labels"), annotations: map("annotations") })
}

fn tls_config(chain_pem: &str, key_pem: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds the webhook's port now (a clash fails start-up) and serves it on a task.
pub async fn spawn(opts: WebhookOptions, controller: Arc<Controller>) -> anyhow::Result<()> {
    let (chain, key) = controller.ca.dns_serving_identity(&opts.dns_names)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(&chain, &key)?);
    let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|e| anyhow::anyhow!("--webhook-listen {}: {e}", opts.listen))?;
    tracing::info!(address = %opts.listen, names = ?opts.dns_names, "sidecar injection webhook at POST /inject");
    let values = Arc::new(opts.sidecar);
    let app = axum::Router::new()
        .route(
            "/inject",
            axum::routing::post(move |axum::extract::State(c): axum::extract::State<Arc<Controller>>, body: axum::body::Bytes| {
                let values = values.clone();
                async move { inject(&c, &values, &body) }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(controller);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("webhook accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(tcp)).await else { return };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(CLIENT_TIMEOUT);
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

fn inject(controller: &Controller, values: &weft_kube::sidecar::Values, body: &[u8]) -> axum::response::Response {
    use axum::response::IntoResponse;
    let metrics = &controller.registry.metrics;
    match admission::review(body, |ns| namespace_marks(controller, ns), values) {
        Ok((review, outcome)) => {
            match &outcome {
                Outcome::Injected => tracing::info!("injected a sidecar"),
                Outcome::Skipped(why) => tracing::debug!("not injected: {why}"),
                // Admitted unchanged: a deploy is never blocked by the mesh, but it is not silent.
                Outcome::Failed(why) => tracing::warn!("admitted a pod without a sidecar: {why}"),
            }
            metrics.injection(&outcome);
            axum::Json(review).into_response()
        }
        Err(e) => {
            metrics.injection(&Outcome::Failed(e.to_string()));
            (axum::http::StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}
