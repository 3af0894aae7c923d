//! Typed forms of the resources users write, one module per API family.

pub mod common;
pub mod core;
pub mod gateway_api;
pub mod istio;
pub mod linkerd;
