//! Accepting connections. Per listener: accept until the drain starts, with
//! the listener's connection limit; per connection, in [`dispatch`], the
//! one place that decides by the listener's kind where the connection goes
//! (original destination, [`orig_dst`]), what it speaks ([`detect`]), and
//! which stack serves it.

pub mod detect;
pub mod dispatch;
pub mod orig_dst;

use crate::config::Listener;
use crate::state::Proxy;
use crate::telemetry::ConnectionRecord;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Accepts connections on one listener until drain starts.
pub async fn serve_listener(proxy: Arc<Proxy>, listener: Listener, socket: TcpListener) {
    let listener = Arc::new(listener);
    let limit = proxy.snapshot().config.limits.max_connections;
    let permits = Arc::new(Semaphore::new(limit));
    loop {
        let (stream, peer) = tokio::select! {
            r = socket.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %listener.name, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = proxy.drain.signaled() => break,
        };
        let record = ConnectionRecord::accepted(proxy.metrics.clone(), listener.clone(), peer);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(listener = %listener.name, %peer, "connection limit {limit} reached; refusing");
            record.rejected("overflow");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let _open = proxy.drain.enter();
            dispatch::connection(&proxy, stream, record).await;
            drop(permit);
        });
    }
    tracing::info!(listener = %listener.name, "stopped accepting (draining)");
}
