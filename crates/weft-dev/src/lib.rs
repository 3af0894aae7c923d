//! `weft dev`: a user's Kubernetes manifests run as a meshed local cluster.
//! Each pod is a network namespace on one bridge with the sidecar the
//! injection rules give it ([`weft_kube`], as on Kubernetes), each container
//! a local program ([`images`]: images cannot be pulled here), each Service a
//! virtual IP the proxies route and every pod's hosts file names. What it
//! reads is [`manifest`]; what it makes is recorded in [`state`] so [`cluster`]'s
//! `down` removes exactly that; [`host`] runs the commands.

pub mod cluster;
pub mod host;
pub mod images;
pub mod manifest;
pub mod state;
