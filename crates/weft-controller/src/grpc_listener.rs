//! The proxies' gRPC port. TLS and plaintext share it, told apart by the
//! first byte (a TLS record starts with 0x16, an HTTP/2 preface with 'P').
//! Over TLS the controller presents its own certificate and asks for the
//! proxy's (optional: a proxy without one comes for its first certificate
//! with a join token); a proxy's certificate is what authenticates its Hello.
//! Plaintext is for proxies without tokens (development meshes).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use weft_identity::SpiffeId;

/// Who is on the other end of a proxy connection (a request extension).
#[derive(Debug, Clone)]
pub struct ProxyPeer {
    pub remote: SocketAddr,
    /// The SPIFFE ID of the client certificate, when it presented one.
    pub identity: Option<SpiffeId>,
    pub tls: bool,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted proxy connection, TLS or not.
pub struct ProxyStream {
    io: Io,
    peer: ProxyPeer,
}

impl tonic::transport::server::Connected for ProxyStream {
    type ConnectInfo = ProxyPeer;

    fn connect_info(&self) -> ProxyPeer {
        self.peer.clone()
    }
}

impl AsyncRead for ProxyStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS server side: the controller's certificate, client certificates
/// optional but checked when given, HTTP/2 by ALPN.
pub fn server_config(chain_pem: &str, key_pem: &str, trust_domain: &str, roots_pem: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let identity = weft_identity::Identity::from_pem(chain_pem, key_pem)?;
    let bundle = weft_identity::TrustBundle::from_pem(trust_domain, roots_pem)?;
    let mut config = (*weft_identity::tls::server_config(&identity, &bundle, false)?).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts forever; each connection is sorted (and its TLS handshake done)
/// on its own task, so a slow client cannot hold up the others.
pub fn incoming(listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<ProxyStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept on the proxies' port failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (tx, acceptor) = (tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                match sort(stream, remote, &acceptor).await {
                    Ok(s) => {
                        let _ = tx.send(Ok(s)).await;
                    }
                    Err(e) => tracing::info!(%remote, "proxy connection refused: {e}"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn sort(stream: TcpStream, remote: SocketAddr, acceptor: &tokio_rustls::TlsAcceptor) -> Result<ProxyStream, String> {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut first))
        .await
        .map_err(|_| "nothing sent within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    if n == 0 || first[0] != 0x16 {
        return Ok(ProxyStream { io: Io::Plain(stream), peer: ProxyPeer { remote, identity: None, tls: false } });
    }
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
        .await
        .map_err(|_| "TLS handshake took longer than 10 s".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let identity = weft_identity::tls::peer_identity(tls.get_ref().1.peer_certificates());
    Ok(ProxyStream { io: Io::Tls(Box::new(tls)), peer: ProxyPeer { remote, identity, tls: true } })
}
