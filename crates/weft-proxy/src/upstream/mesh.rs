//! The client side of mesh mTLS: the proxy opens TLS 1.3 to the
//! destination's original address (the destination pod's iptables hands it
//! to that pod's inbound listener), presents its workload certificate,
//! checks the server's SPIFFE ID against the one the controller said the
//! endpoint has, and names the carried protocol in ALPN (see `mesh_alpn`).

use crate::local_reply::{Flag, LocalReply};
use crate::workload_cert::Certificate;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Opens mesh mTLS to `endpoint`, which must prove it is `identity`.
pub async fn connect(
    endpoint: SocketAddr,
    identity: &str,
    alpn: &'static [u8],
    certificate: &Certificate,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, LocalReply> {
    let cert = certificate.borrow().clone().ok_or_else(|| {
        LocalReply::new(503, Flag::UpstreamConnectFailure, format!("no workload certificate yet: cannot open mTLS to {endpoint}"))
    })?;
    let config = cert
        .client_config(identity, alpn)
        .map_err(|e| LocalReply::new(503, Flag::UpstreamConnectFailure, format!("mTLS to {endpoint}: {e}")))?;
    let tcp = super::connect::connect_tcp(endpoint, timeout).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout(timeout, connector.connect(weft_identity::tls::mesh_server_name(), tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("mTLS handshake with {endpoint} failed: {e}"))),
        Err(_) => Err(LocalReply::new(
            503,
            Flag::UpstreamConnectFailure,
            format!("mTLS handshake with {endpoint} timed out after {}ms", timeout.as_millis()),
        )),
    }
}

/// A hyper connector for a cluster's meshed endpoints: the URI's authority
/// is the endpoint, its expected identity comes from the cluster's config.
#[derive(Clone)]
pub struct MeshConnector {
    pub certificate: Certificate,
    pub identities: Arc<HashMap<SocketAddr, String>>,
    pub alpn: &'static [u8],
    pub connect_timeout: Duration,
}

/// Why a mesh connection could not be made (carries the proxy's reply).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.reason)]
pub struct MeshConnectError(pub LocalReply);

impl tower_service::Service<Uri> for MeshConnector {
    type Response = TokioIo<MeshStream>;
    type Error = MeshConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let endpoint: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| MeshConnectError(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("{uri} is not an endpoint address"))))?;
            let identity = this.identities.get(&endpoint).ok_or_else(|| {
                MeshConnectError(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("{endpoint} has no mesh identity to verify")))
            })?;
            let tls = connect(endpoint, identity, this.alpn, &this.certificate, this.connect_timeout).await.map_err(MeshConnectError)?;
            Ok(TokioIo::new(MeshStream(tls)))
        })
    }
}

/// A client-side mesh TLS connection, as hyper's pool wants it.
pub struct MeshStream(TlsStream<TcpStream>);

impl Connection for MeshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for MeshStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for MeshStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

