//! The proxy's connection to the controller: plaintext for development
//! meshes, TLS pinned by the join token's root fingerprint before the first
//! certificate, mutual TLS with the workload certificate after it. The
//! controller must always prove it is `spiffe://TD/ns/weft-system/sa/weft-controller`.

use std::sync::Arc;
use std::time::Duration;

/// How the proxy's connection to the controller is secured.
pub enum ControlTls {
    /// No certificate and no pin: plaintext (development meshes).
    Plain,
    /// Before the first certificate: TLS to a controller whose chain holds
    /// the root pinned by the join token; no client certificate.
    Pinned { root_sha256: String, trust_domain: String },
    /// With a workload certificate: mutual TLS; the certificate is what
    /// authenticates this proxy's Hello.
    Mutual(Arc<crate::workload_cert::WorkloadCert>),
    /// With a certificate that has expired (the controller would refuse it in
    /// the handshake): TLS to a controller under the certificate's trust
    /// bundle, no client certificate; the renewal request proves the key.
    Anonymous(Arc<crate::workload_cert::WorkloadCert>),
}

/// A gRPC channel to the controller at `address`, secured as `tls` says;
/// the controller must prove it is `spiffe://TD/ns/weft-system/sa/weft-controller`.
pub async fn connect(address: &str, tls: ControlTls) -> Result<tonic::transport::Channel, Box<dyn std::error::Error + Send + Sync>> {
    // HTTP/2 pings find a controller that went away without closing (a host
    // gone, a partition): the stream fails and the proxy reconnects.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let config = match tls {
        ControlTls::Plain => return Ok(endpoint.connect().await?),
        ControlTls::Pinned { root_sha256, trust_domain } => {
            weft_identity::tls::pinned_client_config(&root_sha256, weft_identity::tls::controller_id(&trust_domain)?)?
        }
        ControlTls::Mutual(cert) => {
            let id = weft_identity::tls::controller_id(&cert.spiffe_id.trust_domain)?;
            weft_identity::tls::client_config(&cert.identity, &cert.bundle, vec![id])?
        }
        ControlTls::Anonymous(cert) => {
            let id = weft_identity::tls::controller_id(&cert.spiffe_id.trust_domain)?;
            weft_identity::tls::anonymous_client_config(&cert.bundle, vec![id])?
        }
    };
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(endpoint.connect_with_connector(ControllerConnector { config: Arc::new(config) }).await?)
}

/// TCP connect and TLS handshake with the controller, at most.
const HANDSHAKE: Duration = Duration::from_secs(3);

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
            // The endpoint's connect timeout does not cover a custom connector: bound
            // the TCP connect and the handshake here, so a handshake that stalls is
            // retried in seconds instead of waiting for the controller to give up on it.
            let handshake = async {
                let tcp = tokio::net::TcpStream::connect(authority).await?;
                let _ = tcp.set_nodelay(true);
                tokio_rustls::TlsConnector::from(config).connect(weft_identity::tls::mesh_server_name(), tcp).await
            };
            let tls = tokio::time::timeout(HANDSHAKE, handshake)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the TLS handshake with the controller took longer than {}s", HANDSHAKE.as_secs())))??;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}


impl ControlTls {
    /// How to reach the controller holding `cert`: mutual TLS while it is valid.
    pub fn with(cert: Option<Arc<crate::workload_cert::WorkloadCert>>) -> ControlTls {
        match cert {
            Some(c) if c.seconds_left() > 0 => ControlTls::Mutual(c),
            Some(c) => ControlTls::Anonymous(c),
            None => ControlTls::Plain,
        }
    }
}
