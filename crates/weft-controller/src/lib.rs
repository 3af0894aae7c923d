//! weft-controller: the control plane. Today: the config store and the
//! HTTP API behind `weft apply/get/delete` and `weft analyze --controller`.
//! Next: the workload registry and the streaming push to proxies.

pub mod api;
pub mod store;
