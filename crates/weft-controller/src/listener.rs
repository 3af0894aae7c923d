//! TLS and plaintext on one port, told apart by the first byte (a TLS record
//! starts with 0x16, HTTP with a letter): the proxies' gRPC port and the
//! HTTP API both listen this way. Over TLS the controller presents its own
//! certificate and asks for the client's (optional: a proxy without one
//! comes for its first certificate with a join token, a CLI may use a bearer
//! token); a client certificate is what authenticates a proxy's Hello or an
//! operator's API call. Each connection is sorted on its own task, so a slow
//! client cannot hold up the others.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use weft_identity::SpiffeId;

/// Who is on the other end of a connection (a request extension).
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote: SocketAddr,
    /// The SPIFFE ID of the client certificate, when it presented one.
    pub identity: Option<SpiffeId>,
    pub tls: bool,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection, TLS or not.
pub struct PeerStream {
    io: Io,
    peer: Peer,
    /// Its place under the port's connection limit, given back on drop.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl PeerStream {
    fn holding(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> PeerStream {
        self._slot = Some(slot);
        self
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
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

/// Which clients may speak plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plaintext {
    /// Anyone (the proxies' port: token-less proxies, and a proxy's first
    /// certificate request over TLS pinned by its token).
    Anyone,
    /// Only clients on this machine (the API: bearer tokens never cross the
    /// network in clear). Others are answered 403 and closed.
    LoopbackOnly,
}

/// Accepts forever; each connection is sorted (and its TLS handshake done)
/// on its own task, so a slow client cannot hold up the others.
pub fn incoming(listener: TcpListener, tls: Arc<rustls::ServerConfig>, keepalive: Duration) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<PeerStream>> {
    incoming_with(listener, tls, Plaintext::Anyone, Some(keepalive))
}

/// Connections one port holds at once; more are closed as they come (and logged).
pub const MAX_CONNECTIONS: usize = 20_000;

/// Probes an idle connection's peer every `every`, giving up after 3 unanswered probes.
fn set_keepalive(stream: &TcpStream, every: Duration) {
    let keepalive = socket2::TcpKeepalive::new().with_time(every).with_interval(every).with_retries(3);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!("TCP keepalive: {e}");
    }
}

/// As [`incoming`], with a rule for plaintext clients.
pub fn incoming_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    plaintext: Plaintext,
    keepalive: Option<Duration>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<PeerStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%remote, "{MAX_CONNECTIONS} connections open: refusing another");
                continue;
            };
            let _ = stream.set_nodelay(true);
            if let Some(every) = keepalive {
                set_keepalive(&stream, every);
            }
            let (tx, acceptor) = (tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                match sort(stream, remote, &acceptor).await.map(|s| s.holding(slot)) {
                    Ok(s) if !s.peer.tls && plaintext == Plaintext::LoopbackOnly && !remote.ip().is_loopback() => refuse_plaintext(s).await,
                    Ok(s) => {
                        let _ = tx.send(Ok(s)).await;
                    }
                    Err(e) => tracing::info!(%remote, "connection refused: {e}"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Tells a remote plaintext client to use TLS, and closes.
async fn refuse_plaintext(mut s: PeerStream) {
    use tokio::io::AsyncWriteExt;
    tracing::info!(remote = %s.peer.remote, "plaintext API connection from another machine refused");
    let body = "{\"error\":\"this controller takes API calls from other machines over TLS only: use --controller https://HOST:PORT\"}";
    let resp = format!("HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(resp.as_bytes())).await;
    let _ = s.shutdown().await;
}

async fn sort(stream: TcpStream, remote: SocketAddr, acceptor: &tokio_rustls::TlsAcceptor) -> Result<PeerStream, String> {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut first))
        .await
        .map_err(|_| "nothing sent within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    if n == 0 || first[0] != 0x16 {
        return Ok(PeerStream { io: Io::Plain(stream), peer: Peer { remote, identity: None, tls: false }, _slot: None });
    }
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
        .await
        .map_err(|_| "TLS handshake took longer than 10 s".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let identity = weft_identity::tls::peer_identity(tls.get_ref().1.peer_certificates());
    Ok(PeerStream { io: Io::Tls(Box::new(tls)), peer: Peer { remote, identity, tls: true }, _slot: None })
}

/// The API's connections for `axum::serve`, with the peer as connect info.
pub struct ApiListener {
    incoming: tokio_stream::wrappers::ReceiverStream<std::io::Result<PeerStream>>,
    local: SocketAddr,
}

impl ApiListener {
    pub fn new(listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> std::io::Result<ApiListener> {
        let local = listener.local_addr()?;
        Ok(ApiListener { incoming: incoming_with(listener, tls, Plaintext::LoopbackOnly, None), local })
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = PeerStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (PeerStream, Peer) {
        use tokio_stream::StreamExt;
        loop {
            match self.incoming.next().await {
                Some(Ok(s)) => {
                    let peer = s.peer.clone();
                    return (s, peer);
                }
                Some(Err(_)) => continue,
                // The accept task never ends; if it did, there is nothing left to serve.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer { remote: self.local, identity: None, tls: false })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ApiListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, ApiListener>) -> Peer {
        stream.remote_addr().clone()
    }
}
