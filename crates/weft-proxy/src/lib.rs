//! weft-proxy: the data plane. A sidecar that intercepts a workload's traffic
//! (iptables, or explicit localhost listeners), detects the protocol, and
//! forwards HTTP/1.1, HTTP/2, gRPC and opaque TCP with metrics, access logs
//! and error responses that say what went wrong.
//!
//! Modules are layered: each may use only those listed before it (a test,
//! `tests/layers.rs`, checks the `use` lines). Start reading at [`listen`]
//! for a connection, [`http`] and [`tcp`] for the stacks per direction.

// The standard metrics' label sets, below everything that names a peer.
pub mod metric_labels;
// Leaves: no dependencies inside the crate.
pub mod backoff;
pub mod body;
pub mod budget;
pub mod connection;
pub mod drain;
pub mod idle;
pub mod iptables;
pub mod local_reply;
pub mod mesh_alpn;
pub mod random;
pub mod workload_cert;
// What a request is sent to and with.
pub mod balance;
pub mod upstream;
pub mod config;
// What is told about it.
pub mod telemetry;
// What every connection shares, and where it is sent.
pub mod state;
pub mod target;
// Decisions per direction.
pub mod inbound;
pub mod outbound;
// The stacks per protocol.
pub mod http;
pub mod tcp;
// Accepting connections.
pub mod listen;
// The controller, and the process.
pub mod control;
pub mod app;
