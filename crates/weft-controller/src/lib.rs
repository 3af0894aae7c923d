//! weft-controller: the control plane. Layered bottom up (a test checks the
//! `use` lines): the config store ([`store`]), per-proxy config compiled
//! from the mesh model ([`compile`]), the mesh CA ([`identity`]) and the
//! proxies' port that authenticates them by certificate ([`listener`]);
//! the registry of proxies ([`registry`]); the shared state ([`state`]); the
//! gRPC service proxies stream with ([`service`]) and the push loop
//! ([`push`]); the HTTP API behind `weft apply/get/delete/analyze/
//! proxy-status` ([`api`]); and start-up ([`server`]).

pub mod auth;
pub mod compile;
pub mod listener;
pub mod identity;
pub mod jwks;
pub mod metrics;
pub mod token_review;
pub mod store;

pub mod registry;

pub mod state;

pub mod push;
pub mod service;

pub mod api;

pub mod server;
pub mod webhook;
