//! The downstream side of HTTP: hyper serving one connection (HTTP/1.1 with
//! upgrades, or HTTP/2), with the header-read timeout and header size
//! limits, closed gracefully when the drain starts or when no byte moved
//! for the connection idle timeout (HTTP/1 after the in-flight request,
//! HTTP/2 after GOAWAY).

use crate::body::{Body, Downstream};
use crate::drain::Drain;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use weft_proto::config::Limits;

/// Serves `stream` until it closes or the drain ends it, answering every request with `handle`.
pub async fn serve<F, Fut>(stream: impl Downstream, http2: bool, limits: &Limits, drain: &Drain, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = crate::idle::Activity::default();
    let io = TokioIo::new(activity.track(stream));
    let mut quiet = std::pin::pin!(activity.expired(limits.connection_idle_timeout));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handle = handle.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req).await) }
    });
    let mut drained = std::pin::pin!(drain.signaled());
    if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new()).max_header_list_size(limits.max_header_bytes as u32);
        let conn = builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("http2 connection: {e}"); } }
            _ = &mut drained => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
            _ = &mut quiet => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
        }
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's own limit is a backstop at twice ours: below it, the stack
            // answers 431 itself, with a flag and a reason.
            .max_header_size(limits.max_header_bytes * 2)
            .max_buf_size((limits.max_header_bytes * 2).max(8192))
            .keep_alive(true);
        let conn = builder.serve_connection(io, service).with_upgrades();
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("http1 connection: {e}"); } }
            _ = &mut drained => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
            _ = &mut quiet => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
        }
    }
}
