//! HTTP/1.1 keep-alive connections the proxy owns, per endpoint, driven by
//! the task of the request that uses them. hyper-util's pooled client runs
//! each connection as a task of its own and hands every request to it
//! through a channel and every response back: two task hand-offs and a
//! pool checkout per request. Here the request's task polls the connection
//! itself (while the request and response head are in flight, then from the
//! response body), so socket readiness wakes the one task that waits for
//! it; when the response body ends, the connection goes back to the pool.
//!
//! An idle connection is not polled: a server that closed it is noticed at
//! the next checkout (the connection reports itself done), and the request,
//! not yet sent, goes to another connection. Idle connections unused for
//! the idle timeout are closed at the next checkout after it.

use super::UpstreamError;
use crate::body::Body;
use crate::local_reply::{Flag, LocalReply};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use sync_wrapper::SyncWrapper;
use hyper::client::conn::http1;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What an upstream HTTP/1.1 connection runs over: plain TCP or mesh TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Idle connections kept per endpoint at most; more are closed when released.
const MAX_IDLE_PER_ENDPOINT: usize = 256;
/// Above this many endpoints with idle connections, the pool starts over rather than grow.
const MAX_ENDPOINTS: usize = 1024;

/// HTTP/1.1 connections by endpoint, each used by one request at a time.
pub struct Http1Pool<T: Io> {
    state: Arc<Mutex<Idle<T>>>,
    idle_timeout: Duration,
    max_buf_size: usize,
}

impl<T: Io> Clone for Http1Pool<T> {
    fn clone(&self) -> Self {
        Http1Pool { state: self.state.clone(), idle_timeout: self.idle_timeout, max_buf_size: self.max_buf_size }
    }
}

struct Idle<T: Io> {
    conns: HashMap<SocketAddr, Vec<(Owned<T>, Instant)>>,
    swept: Instant,
}

/// One connection: the handle requests are sent on, and the connection
/// future that does its I/O (polled by whoever uses it, never spawned).
struct Owned<T: Io> {
    sender: http1::SendRequest<Body>,
    conn: Pin<Box<http1::Connection<TokioIo<T>, Body>>>,
    /// The connection future finished (closed, or failed): never poll it again.
    done: bool,
}

impl<T: Io> Owned<T> {
    /// Drives the connection's I/O; true once it has finished.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done {
            if let Poll::Ready(r) = self.conn.as_mut().poll(cx) {
                if let Err(e) = r {
                    tracing::debug!("upstream HTTP/1.1 connection: {e}");
                }
                self.done = true;
            }
        }
        self.done
    }

    /// Ready for a request: Ok(true), or the connection is gone: Ok(false).
    async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            if self.drive(cx) {
                return Poll::Ready(false);
            }
            match self.sender.poll_ready(cx) {
                Poll::Ready(r) => Poll::Ready(r.is_ok()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

impl<T: Io> Http1Pool<T> {
    /// `idle_timeout`: how long an unused connection is kept; `max_buf_size`: hyper's read buffer limit.
    pub fn new(idle_timeout: Duration, max_buf_size: usize) -> Http1Pool<T> {
        Http1Pool { state: Arc::new(Mutex::new(Idle { conns: HashMap::new(), swept: Instant::now() })), idle_timeout, max_buf_size }
    }

    /// Sends `req` (origin-form URI, Host set) on an idle connection to
    /// `endpoint`, or on a new one `connect` opens.
    pub(super) async fn send<Fut>(&self, endpoint: SocketAddr, req: http::Request<Body>, connect: impl Fn() -> Fut) -> Result<Response<Body>, UpstreamError>
    where
        Fut: Future<Output = Result<T, LocalReply>>,
    {
        let mut req = req;
        loop {
            let (mut owned, reused) = match self.checkout(endpoint) {
                Some(o) => (o, true),
                // Boxed: a new connection is the rare case, and its futures (TLS handshake
                // included) would otherwise make every request's future, moved on each
                // await of its callers, kilobytes larger.
                None => (Box::pin(async { self.open(endpoint, connect().await.map_err(UpstreamError::Connect)?).await }).await?, false),
            };
            if !owned.ready().await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Connect(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("{endpoint} closed the connection at once"))));
            }
            let mut sent = std::pin::pin!(owned.sender.try_send_request(req));
            let result = std::future::poll_fn(|cx| {
                // The connection first: it writes the request and reads the response the future waits for.
                owned.drive(cx);
                sent.as_mut().poll(cx)
            })
            .await;
            return match result {
                Ok(resp) => Ok(resp.map(|body| PooledBody { body, conn: Some(SyncWrapper::new(owned)), pool: self.clone(), endpoint }.boxed())),
                // Not sent: a reused connection the server had closed. Another one gets it.
                Err(mut e) if reused && e.message().is_some() => {
                    req = e.take_message().expect("checked above");
                    continue;
                }
                Err(e) => Err(UpstreamError::Http1(e.into_error())),
            };
        }
    }

    async fn open(&self, endpoint: SocketAddr, io: T) -> Result<Owned<T>, UpstreamError> {
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(self.max_buf_size)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| UpstreamError::Connect(LocalReply::new(503, Flag::UpstreamConnectFailure, format!("HTTP/1.1 handshake with {endpoint} failed: {e}"))))?;
        Ok(Owned { sender, conn: Box::pin(conn), done: false })
    }

    /// The most recently used idle connection to `endpoint`, if any.
    fn checkout(&self, endpoint: SocketAddr) -> Option<Owned<T>> {
        let mut idle = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let timeout = self.idle_timeout;
        // Now and then (at most once a second): connections unused for the idle timeout are closed.
        if now.duration_since(idle.swept) >= timeout.min(Duration::from_secs(1)) {
            idle.swept = now;
            idle.conns.retain(|_, list| {
                list.retain(|(_, since)| now.duration_since(*since) < timeout);
                !list.is_empty()
            });
        }
        idle.conns.get_mut(&endpoint).and_then(|list| list.pop()).map(|(owned, _)| owned)
    }

    fn release(&self, endpoint: SocketAddr, owned: Owned<T>) {
        if owned.done || owned.sender.is_closed() {
            return;
        }
        let mut idle = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if idle.conns.len() >= MAX_ENDPOINTS && !idle.conns.contains_key(&endpoint) {
            idle.conns.clear();
        }
        let list = idle.conns.entry(endpoint).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push((owned, Instant::now()));
        }
    }
}

/// A response body read from an owned connection: polling it drives the
/// connection; once it has ended, the connection goes back to the pool.
struct PooledBody<T: Io> {
    body: Incoming,
    /// Only ever used through `&mut` (so the body may be `Sync`, as boxed bodies must be).
    conn: Option<SyncWrapper<Owned<T>>>,
    pool: Http1Pool<T>,
    endpoint: SocketAddr,
}

impl<T: Io> hyper::body::Body for PooledBody<T> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(owned) = &mut this.conn {
            owned.get_mut().drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            this.give_back();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<T: Io> PooledBody<T> {
    fn give_back(&mut self) {
        if let Some(owned) = self.conn.take() {
            self.pool.release(self.endpoint, owned.into_inner());
        }
    }
}

impl<T: Io> Drop for PooledBody<T> {
    fn drop(&mut self) {
        // A body that ended without its last poll (hyper does not poll an
        // empty one) still frees its connection; one dropped midway closes it.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::empty_body;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// An HTTP/1.1 server answering `answers` in turn, one per request and
    /// connection order; counts connections. Each answer is raw bytes.
    async fn server(answers: Vec<&'static str>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        let Some(answer) = answers.lock().unwrap().next() else { return };
                        if answer.is_empty() {
                            return; // close without answering
                        }
                        let _ = s.write_all(answer.as_bytes()).await;
                        if answer.contains("connection: close") {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(endpoint: SocketAddr) -> http::Request<Body> {
        let mut req = http::Request::new(empty_body());
        *req.uri_mut() = "/x".parse().unwrap();
        req.headers_mut().insert(http::header::HOST, endpoint.to_string().parse().unwrap());
        req
    }

    async fn text(resp: Response<Body>) -> String {
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn pool() -> Http1Pool<TcpStream> {
        Http1Pool::new(Duration::from_secs(10), 64 * 1024)
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_body_has_ended() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (addr, accepted) = server(vec![ok, ok, ok]).await;
        let pool = pool();
        for _ in 0..3 {
            let resp = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
            assert_eq!(text(resp).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one keep-alive connection for all three");
    }

    #[tokio::test]
    async fn a_body_still_being_read_keeps_its_connection_so_a_second_request_opens_another() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (addr, accepted) = server(vec![ok, ok]).await;
        let pool = pool();
        let first = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
        let second = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(text(first).await, "ok");
        assert_eq!(text(second).await, "ok");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_used_and_the_request_goes_on_a_new_one() {
        let close = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok2";
        let (addr, accepted) = server(vec![close, ok]).await;
        let pool = pool();
        let resp = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
        assert_eq!(text(resp).await, "ok");
        let resp = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
        assert_eq!(text(resp).await, "ok2");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_server_that_closes_without_answering_is_an_error_not_a_hang() {
        let (addr, _) = server(vec![""]).await;
        let err = pool().send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap_err();
        assert!(!err.is_connect(), "the request was sent: not safe to retry elsewhere");
    }

    #[tokio::test]
    async fn chunked_bodies_stream_and_an_empty_body_frees_its_connection_unpolled() {
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
        let empty = "HTTP/1.1 204 No Content\r\n\r\n";
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (addr, accepted) = server(vec![chunked, empty, ok]).await;
        let pool = pool();
        let resp = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
        assert_eq!(text(resp).await, "abc");
        let resp = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
        assert_eq!(resp.status(), 204);
        assert!(resp.body().is_end_stream());
        drop(resp);
        let resp = pool.send(addr, get(addr), || crate::upstream::connect_tcp(addr, Duration::from_secs(1))).await.unwrap();
        assert_eq!(text(resp).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
