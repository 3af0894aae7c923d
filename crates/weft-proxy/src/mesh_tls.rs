//! Mesh mTLS between proxies. The client proxy opens TLS 1.3 to the
//! destination's original address (the destination pod's iptables hands it to
//! that pod's inbound listener), presents its workload certificate, checks
//! the server's SPIFFE ID against the one the controller said the endpoint
//! has, and names the carried protocol in ALPN:
//!
//! - `weft/h2`: HTTP/2; application HTTP/1.1 requests are carried as HTTP/2
//!   streams too (multiplexed on one connection), marked with
//!   [`ORIG_PROTO`] so the server side hands them to the app as HTTP/1.1;
//! - `weft/http1`: HTTP/1.1, for requests that upgrade (WebSocket);
//! - `weft/tcp`: the opaque bytes of a TCP connection.
//!
//! The inbound side recognises mesh TLS by these ALPN values in the peeked
//! ClientHello: a TLS connection without them is the app's own TLS and is
//! passed through untouched.

use crate::certs::WorkloadCert;
use crate::local_reply::{Flag, LocalReply};
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
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;

pub const ALPN_H2: &[u8] = b"weft/h2";
pub const ALPN_HTTP1: &[u8] = b"weft/http1";
pub const ALPN_TCP: &[u8] = b"weft/tcp";
/// What the server side accepts, in its order of preference.
pub const ALPNS: &[&[u8]] = &[ALPN_H2, ALPN_HTTP1, ALPN_TCP];

/// Set by the client proxy on an HTTP/1.1 request it carries over HTTP/2
/// (as Linkerd's `l5d-orig-proto`); removed by the server proxy.
pub const ORIG_PROTO: &str = "x-weft-orig-proto";

/// Does a ClientHello's ALPN list say it is mesh TLS?
pub fn is_mesh_alpn(alpn: &[Vec<u8>]) -> bool {
    alpn.iter().any(|a| ALPNS.contains(&a.as_slice()))
}

pub type Certificate = watch::Receiver<Option<Arc<WorkloadCert>>>;

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
    let tcp = crate::upstream::connect_tcp(endpoint, timeout).await?;
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

/// The carried protocol the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Http2,
    Http1,
    Tcp,
}

/// The inbound side's handshake: who the peer is and what it carries.
pub async fn accept(
    stream: TcpStream,
    cert: &WorkloadCert,
    timeout: Duration,
) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, Option<Arc<str>>, Carried), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server.clone());
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("mTLS handshake failed: {e}")),
        Err(_) => return Err(format!("mTLS handshake took longer than {}ms", timeout.as_millis())),
    };
    let (_, conn) = tls.get_ref();
    let peer = weft_identity::tls::peer_identity(conn.peer_certificates()).map(|id| Arc::from(id.to_string()));
    let carried = match conn.alpn_protocol() {
        Some(ALPN_H2) => Carried::Http2,
        Some(ALPN_HTTP1) => Carried::Http1,
        _ => Carried::Tcp,
    };
    Ok((tls, peer, carried))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use weft_identity::{csr, CertificateAuthority, SpiffeId, TrustBundle};

    const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

    fn workload(ca: &CertificateAuthority, bundle_of: &CertificateAuthority, sa: &str, expired: bool) -> Arc<WorkloadCert> {
        let id = SpiffeId::new(ca.trust_domain(), "default", sa).unwrap();
        let kc = csr::generate(&id).unwrap();
        let now = SystemTime::now();
        let issued = if expired {
            ca.sign_csr_valid(&kc.csr_pem, &id, now - Duration::from_secs(7200), now - Duration::from_secs(3600)).unwrap()
        } else {
            ca.sign_csr(&kc.csr_pem, &id, Duration::from_secs(3600)).unwrap()
        };
        let bundle = TrustBundle::from_pem(bundle_of.trust_domain(), &bundle_of.trust_bundle_pem()).unwrap();
        Arc::new(WorkloadCert::new(&issued.chain_pem, &kc.key_pem, bundle, issued.serial, 0).unwrap())
    }

    /// One handshake through the proxy's own client and server paths:
    /// (client result, server result with the peer it saw).
    async fn handshake(server: Arc<WorkloadCert>, client: Arc<WorkloadCert>, expect: &str) -> (Result<(), String>, Result<Option<String>, String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            accept(stream, &server, Duration::from_secs(2)).await.map(|(_, peer, carried)| {
                assert_eq!(carried, Carried::Http2);
                peer.map(|p| p.to_string())
            })
        });
        let cert = watch::channel(Some(client)).1;
        let connected = connect(addr, expect, ALPN_H2, &cert, Duration::from_secs(2)).await.map(|_| ()).map_err(|r| r.reason);
        (connected, accepted.await.unwrap())
    }

    #[tokio::test]
    async fn peers_must_chain_to_our_root_be_valid_and_be_who_the_controller_said() {
        let ours = CertificateAuthority::generate_root("cluster.local").unwrap();
        let web = workload(&ours, &ours, "web", false);

        let (c, s) = handshake(web.clone(), workload(&ours, &ours, "client", false), WEB).await;
        assert_eq!(c, Ok(()));
        assert_eq!(s, Ok(Some("spiffe://cluster.local/ns/default/sa/client".into())));

        // Another trust domain, trusting only its own root: neither side accepts the other.
        let evil = CertificateAuthority::generate_root("evil.example").unwrap();
        let (c, s) = handshake(web.clone(), workload(&evil, &evil, "client", false), WEB).await;
        assert!(c.is_err() && s.is_err(), "{c:?} {s:?}");
        // Even one that trusts our root, and even a look-alike root with our trust domain name.
        let (c, s) = handshake(web.clone(), workload(&evil, &ours, "client", false), WEB).await;
        assert!(s.as_ref().is_err_and(|e| e.contains("mTLS handshake failed")), "{c:?} {s:?}");
        let twin = CertificateAuthority::generate_root("cluster.local").unwrap();
        let (_, s) = handshake(web.clone(), workload(&twin, &ours, "client", false), WEB).await;
        assert!(s.is_err(), "a certificate from another root with our trust domain: {s:?}");

        // An expired client certificate.
        let (_, s) = handshake(web.clone(), workload(&ours, &ours, "client", true), WEB).await;
        assert!(s.is_err(), "an expired client certificate was accepted");

        // A valid server that is not the identity the controller gave for the endpoint.
        let (c, _) = handshake(workload(&ours, &ours, "impostor", false), workload(&ours, &ours, "client", false), WEB).await;
        let e = c.unwrap_err();
        assert!(e.contains("server is spiffe://cluster.local/ns/default/sa/impostor, expected spiffe://cluster.local/ns/default/sa/web"), "{e}");
    }
}
