//! Istio fault injection: delay a share of requests, abort a share with a
//! status (HTTP, or for gRPC calls a trailers-only 200 with `grpc-status`).

use super::headers::is_grpc;
use crate::local_reply::{Flag, LocalReply};
use crate::random::chance;
use http::HeaderMap;

/// Waits out the fault's delay when it hits; the abort, when it hits, is the reply.
pub async fn inject(fault: &weft_proto::config::Fault, headers: &HeaderMap) -> Result<(), LocalReply> {
    if let Some(d) = fault.delay.as_ref().filter(|d| chance(d.percent)) {
        tokio::time::sleep(d.fixed).await;
    }
    if let Some(a) = fault.abort.as_ref().filter(|a| chance(a.percent)) {
        return Err(abort_reply(a, is_grpc(headers)));
    }
    Ok(())
}

/// The reply of an abort: its HTTP status, or as gRPC when the call is gRPC
/// (or the abort names only a gRPC status).
fn abort_reply(a: &weft_proto::config::FaultAbort, grpc: bool) -> LocalReply {
    let mut reply = LocalReply::new(a.http_status.unwrap_or(503), Flag::FaultInjected, "fault injected by the route");
    if let Some(code) = a.grpc_status.filter(|_| grpc || a.http_status.is_none()) {
        reply.status = 200;
        reply.grpc_status = Some(code);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::config::FaultAbort;

    #[test]
    fn a_grpc_call_is_aborted_as_grpc_and_http_with_the_status() {
        let both = FaultAbort { http_status: Some(503), grpc_status: Some(14), percent: 100.0 };
        assert_eq!((abort_reply(&both, false).status, abort_reply(&both, false).grpc_status), (503, None));
        assert_eq!((abort_reply(&both, true).status, abort_reply(&both, true).grpc_status), (200, Some(14)));
        let grpc_only = FaultAbort { http_status: None, grpc_status: Some(4), percent: 100.0 };
        assert_eq!(abort_reply(&grpc_only, false).grpc_status, Some(4));
        assert_eq!(abort_reply(&both, false).flag, Flag::FaultInjected);
    }
}
