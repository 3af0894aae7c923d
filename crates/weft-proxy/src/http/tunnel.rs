//! Connections that stop being HTTP: CONNECT tunnels to the authority, and
//! upgrades (WebSocket) spliced both ways once the upstream said 101.

use crate::body::{empty_body, Body};
use crate::local_reply::LocalReply;
use crate::upstream::connect_tcp;
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// HTTP CONNECT: opens a TCP tunnel to `endpoint` (the resolved authority).
pub async fn connect(mut req: Request<Body>, endpoint: SocketAddr, timeout: Duration) -> Result<Response<Body>, LocalReply> {
    let mut upstream = connect_tcp(endpoint, timeout).await?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(down) = on_upgrade.await {
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(down), &mut upstream).await;
        }
    });
    Ok(Response::new(empty_body()))
}

/// Once both sides have upgraded, copies bytes between them until either closes.
pub fn splice<B>(downstream: OnUpgrade, resp: &mut Response<B>) {
    let up = hyper::upgrade::on(resp);
    tokio::spawn(async move {
        if let (Ok(down), Ok(up)) = (downstream.await, up.await) {
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(down), &mut TokioIo::new(up)).await;
        }
    });
}
