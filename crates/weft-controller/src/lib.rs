//! weft-controller: the control plane. The config store ([`store`]), the
//! HTTP API behind `weft apply/get/delete/analyze/proxy-status` ([`api`]),
//! per-proxy config compiled from the mesh model ([`compile`]), and the
//! streaming push with ACK/NACK to every proxy ([`push`]) on a port that
//! authenticates proxies by their certificates ([`grpc_listener`]).

pub mod api;
pub mod store;
pub mod compile;
pub mod grpc_listener;
pub mod identity;
pub mod push;
