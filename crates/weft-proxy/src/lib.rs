//! weft-proxy: the data plane. A sidecar that intercepts a workload's traffic
//! (iptables, or explicit localhost listeners), detects the protocol, and
//! forwards HTTP/1.1, HTTP/2, gRPC and opaque TCP with metrics, access logs
//! and error responses that say what went wrong.
//!
//! Start reading at [`proxy`]: the request path top to bottom.

pub mod admin;
pub mod certs;
pub mod config {
    //! The proxy config types, shared with the controller (defined in weft-proto).
    pub use weft_proto::config::*;
}
pub mod balance;
pub mod control;
pub mod detect;
pub mod iptables;
pub mod local_reply;
pub mod mesh_tls;
pub mod metrics;
pub mod orig_dst;
pub mod proxy;
pub mod retry;
pub mod run;
pub mod snapshot;
pub mod upstream;
