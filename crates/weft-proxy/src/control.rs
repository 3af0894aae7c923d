//! The proxy's side of the push protocol: one gRPC stream to the controller,
//! a Hello saying which workload this is, then every pushed config is
//! checked and applied atomically (ACK) or refused with the reason (NACK,
//! the running config stays). When the controller is away the proxy keeps
//! serving its last config and reconnects with jittered exponential backoff.

use crate::config::ProxyConfig;
use crate::metrics::RejectLabels;
use crate::proxy::Proxy;
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weft_proto::v1::{proxy_config_service_client::ProxyConfigServiceClient, proxy_message, Ack, ConfigPush, Hello, ProxyMessage};

/// How the proxy's connection to the controller is secured.
pub enum ControlTls {
    /// No certificate and no pin: plaintext (development meshes).
    Plain,
    /// Before the first certificate: TLS to a controller whose chain holds
    /// the root pinned by the join token; no client certificate.
    Pinned { root_sha256: String, trust_domain: String },
    /// With a workload certificate: mutual TLS; the certificate is what
    /// authenticates this proxy's Hello.
    Mutual(Arc<crate::certs::WorkloadCert>),
}

/// A gRPC channel to the controller at `address`, secured as `tls` says;
/// the controller must prove it is `spiffe://TD/ns/weft-system/sa/weft-controller`.
pub async fn channel(address: &str, tls: ControlTls) -> Result<tonic::transport::Channel, Box<dyn std::error::Error + Send + Sync>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect_timeout(Duration::from_secs(5));
    let config = match tls {
        ControlTls::Plain => return Ok(endpoint.connect().await?),
        ControlTls::Pinned { root_sha256, trust_domain } => {
            weft_identity::tls::pinned_client_config(&root_sha256, weft_identity::tls::controller_id(&trust_domain)?)?
        }
        ControlTls::Mutual(cert) => {
            let id = weft_identity::tls::controller_id(&cert.spiffe_id.trust_domain)?;
            weft_identity::tls::client_config(&cert.identity, &cert.bundle, vec![id])?
        }
    };
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(endpoint.connect_with_connector(ControllerConnector { config: Arc::new(config) }).await?)
}

#[derive(Clone)]
struct ControllerConnector {
    config: Arc<rustls::ClientConfig>,
}

type ControllerIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for ControllerConnector {
    type Response = ControllerIo;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<ControllerIo, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let authority = uri.authority().map(|a| a.to_string()).ok_or_else(|| std::io::Error::other("no controller address"))?;
            let tcp = tokio::net::TcpStream::connect(authority).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config).connect(weft_identity::tls::mesh_server_name(), tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// The largest config push the proxy accepts.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// `host:port` of the controller's gRPC endpoint.
    pub address: String,
    pub hello: Hello,
}

/// Runs forever: connect, stream, and on any failure back off and retry.
pub async fn run(opts: ControlOptions, proxy: Arc<Proxy>, tx: watch::Sender<Arc<Snapshot>>) {
    if opts.hello.mtls {
        // Peers are told to reach this workload over mTLS as soon as it says
        // Hello, so it says Hello once it has a certificate to answer with.
        let mut cert = proxy.certificate.subscribe();
        let _ = cert.wait_for(|c| c.is_some()).await;
    }
    let mut attempt: u32 = 0;
    loop {
        match session(&opts, &proxy, &tx, &mut attempt).await {
            Ok(()) => tracing::warn!(controller = %opts.address, "controller closed the stream; keeping the last config"),
            Err(e) => tracing::warn!(controller = %opts.address, "controller unreachable ({e}); keeping the last config"),
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// 100 ms doubling to at most 5 s, each delay jittered down by up to half so
/// a restarted controller is not hit by every proxy at the same instant.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = (nanos as u64 % 1000) as f64 / 1000.0;
    Duration::from_millis((base as f64 * (0.5 + jitter / 2.0)) as u64)
}

async fn session(opts: &ControlOptions, proxy: &Arc<Proxy>, tx: &watch::Sender<Arc<Snapshot>>, attempt: &mut u32) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Configs of large meshes exceed gRPC's 4 MiB default; scoping keeps most far smaller.
    let tls = match proxy.certificate.borrow().clone() {
        Some(cert) => ControlTls::Mutual(cert),
        None => ControlTls::Plain,
    };
    let mut client = ProxyConfigServiceClient::new(channel(&opts.address, tls).await?).max_decoding_message_size(MAX_CONFIG_BYTES);
    let (out, rx) = tokio::sync::mpsc::channel::<ProxyMessage>(16);
    let mut hello = opts.hello.clone();
    hello.version = proxy.snapshot.borrow().config.version.clone();
    out.send(ProxyMessage { kind: Some(proxy_message::Kind::Hello(hello)) }).await?;
    let mut pushes = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    tracing::info!(controller = %opts.address, "connected to the controller");
    *attempt = 0;
    while let Some(push) = pushes.message().await? {
        let result = apply(&push, proxy, tx);
        let outcome = if result.is_ok() { "applied" } else { "rejected" };
        let source = if push.config_json.is_empty() { "controller-delta" } else { "controller" };
        proxy.metrics.config_reloads.get_or_create(&RejectLabels { listener: source.into(), reason: outcome.into() }).inc();
        let ack = match result {
            Ok(()) => {
                tracing::info!(version = %push.version, "config from the controller applied");
                Ack { version: push.version, nonce: push.nonce, accepted: true, error: String::new() }
            }
            Err(reason) => {
                tracing::error!(version = %push.version, "config from the controller refused: {reason}");
                Ack { version: push.version, nonce: push.nonce, accepted: false, error: reason }
            }
        };
        out.send(ProxyMessage { kind: Some(proxy_message::Kind::Ack(ack)) }).await?;
    }
    Ok(())
}

/// Checks a pushed config (or endpoint delta) and swaps it in; the error is the NACK reason.
fn apply(push: &ConfigPush, proxy: &Proxy, tx: &watch::Sender<Arc<Snapshot>>) -> Result<(), String> {
    let previous = proxy.snapshot.borrow().clone();
    let mut cfg: ProxyConfig = if push.config_json.is_empty() {
        if previous.config.version != push.base_version {
            return Err(format!(
                "endpoint update is for version {:?} but this proxy runs {:?}; send the whole config",
                push.base_version, previous.config.version
            ));
        }
        let delta: std::collections::BTreeMap<String, Vec<crate::config::Endpoint>> =
            serde_json::from_slice(&push.endpoints_json).map_err(|e| format!("endpoint update does not parse: {e}"))?;
        previous.config.with_endpoints(&delta)?
    } else {
        serde_json::from_slice(&push.config_json).map_err(|e| format!("config does not parse: {e}"))?
    };
    cfg.version = push.version.clone();
    cfg.check()?;
    if cfg.listeners != previous.config.listeners {
        return Err("the pushed listeners differ from the running ones; listener changes need a proxy restart".into());
    }
    tx.send_replace(Arc::new(Snapshot::build(cfg, Some(&previous), &proxy.build_context())));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_and_jittered() {
        for attempt in 0..20 {
            let d = backoff(attempt).as_millis() as u64;
            let base = (100u64 << attempt.min(6)).min(5_000);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d} ms");
        }
    }
}
