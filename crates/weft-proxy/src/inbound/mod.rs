//! Traffic for the workload, as decisions and transformations without the
//! I/O around them: whether a new connection is let in by its port's
//! PeerAuthentication mode ([`admit`]), mesh TLS termination that learns the
//! peer's identity ([`tls`]), and what the app is handed ([`app`]). Every
//! inbound request and connection goes to the local app at its original
//! destination ([`target`]), between the [`parties`] its metrics name. Who
//! may call it is decided by [`authz`].

pub mod app;
pub mod authz;
pub mod tls;

use crate::config::{MtlsMode, Snapshot};
use crate::connection::Connection;
use crate::target::Target;
use crate::telemetry::standard::Reporter;
use crate::telemetry::Parties;
use std::net::SocketAddr;

/// Who an inbound request or connection is between, in the standard
/// metrics: the peer (as its certificate names it), this workload, and the
/// Service `host` names (else the one sending to `port`).
pub fn parties(snapshot: &Snapshot, conn: &Connection, host: Option<&str>, port: u16) -> Parties {
    Parties {
        reporter: Reporter::Destination,
        source: conn.peer.labels.clone(),
        destination: snapshot.own_labels.clone(),
        service: snapshot.inbound_service(host, port),
        mtls: conn.peer.mtls,
    }
}

/// What happens to a new inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Mesh TLS from another proxy: terminate it here.
    MeshTls,
    /// Plaintext (or the app's own TLS) is allowed on this port.
    Plaintext,
    /// Plaintext on a STRICT port.
    Refuse,
}

/// By the port's mode and whether the connection opened with mesh TLS.
/// DISABLE never terminates mesh TLS (Istio): the bytes go to the app.
pub fn admit(mode: MtlsMode, mesh_tls: bool) -> Admission {
    match (mode, mesh_tls) {
        (MtlsMode::Strict | MtlsMode::Permissive, true) => Admission::MeshTls,
        (MtlsMode::Strict, false) => Admission::Refuse,
        (MtlsMode::Permissive | MtlsMode::Disable, _) => Admission::Plaintext,
    }
}

/// Inbound traffic goes to the app, at the address the client connected to.
pub fn target(app: SocketAddr) -> Target {
    Target::original("inbound", app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_refuses_plaintext_and_disable_never_terminates() {
        assert_eq!(admit(MtlsMode::Strict, true), Admission::MeshTls);
        assert_eq!(admit(MtlsMode::Strict, false), Admission::Refuse);
        assert_eq!(admit(MtlsMode::Permissive, true), Admission::MeshTls);
        assert_eq!(admit(MtlsMode::Permissive, false), Admission::Plaintext);
        assert_eq!(admit(MtlsMode::Disable, true), Admission::Plaintext);
        assert_eq!(admit(MtlsMode::Disable, false), Admission::Plaintext);
    }
}
