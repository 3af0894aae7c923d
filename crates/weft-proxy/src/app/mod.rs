//! The process: start-up and lifecycle ([`run`]: config, listeners, reload,
//! drain) and the admin server ([`admin`]), both above everything the
//! request path is made of.

pub mod admin;
pub mod run;
