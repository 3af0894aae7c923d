//! The process: start-up and lifecycle ([`run`]: config, listeners, reload,
//! drain) and the admin server ([`admin`], with the kubelet's health port
//! and the app probes it runs, [`app_probes`]), all above everything the
//! request path is made of.

pub mod admin;
pub mod app_probes;
pub mod run;
