//! The server side of mesh mTLS: the handshake that terminates a peer
//! proxy's TLS with this workload's certificate (a client certificate is
//! required and must chain to the trust bundle), and learns the peer's
//! SPIFFE ID, its workload (for metrics, from weft's certificate extension)
//! and what the connection carries.

use crate::mesh_alpn::Carried;
use crate::metric_labels::{self, Shared};
use crate::workload_cert::WorkloadCert;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// What the handshake learnt of the peer.
pub struct MeshPeer {
    pub identity: Option<Arc<str>>,
    pub labels: Shared<metric_labels::Workload>,
}

/// The inbound side's handshake: who the peer is and what it carries.
pub async fn accept(stream: TcpStream, cert: &WorkloadCert, timeout: Duration) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, MeshPeer, Carried), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server.clone());
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("mTLS handshake failed: {e}")),
        Err(_) => return Err(format!("mTLS handshake took longer than {}ms", timeout.as_millis())),
    };
    let (_, conn) = tls.get_ref();
    let (id, workload) = weft_identity::tls::peer_identity_and_workload(conn.peer_certificates());
    let identity: Option<Arc<str>> = id.map(|id| Arc::from(id.to_string()));
    // The metadata names the peer in metrics only; a certificate without it (an
    // older proxy) is still the identity it proves.
    let meta = workload.and_then(|w| serde_json::from_str::<weft_proto::config::WorkloadMeta>(&w).ok());
    let labels = match (&meta, &identity) {
        (None, None) => metric_labels::unknown_workload(),
        _ => metric_labels::workload(meta.as_ref(), identity.as_deref()),
    };
    let carried = Carried::from_alpn(conn.alpn_protocol());
    Ok((tls, MeshPeer { identity, labels }, carried))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh_alpn::ALPN_H2;
    use crate::upstream::mesh::connect;
    use std::time::SystemTime;
    use tokio::sync::watch;
    use weft_identity::{csr, CertificateAuthority, SpiffeId};

    const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

    fn workload(ca: &CertificateAuthority, bundle_of: &CertificateAuthority, sa: &str, expired: bool) -> Arc<WorkloadCert> {
        let id = SpiffeId::new(ca.trust_domain(), "default", sa).unwrap();
        let kc = csr::generate(&id).unwrap();
        let now = SystemTime::now();
        let issued = if expired {
            ca.sign_csr_valid(&kc.csr_pem, &id, now - Duration::from_secs(7200), now - Duration::from_secs(3600)).unwrap()
        } else {
            ca.sign_csr(&kc.csr_pem, &id, Duration::from_secs(3600)).unwrap()
        };
        Arc::new(WorkloadCert::new(&issued.chain_pem, &kc.key_pem, bundle_of.trust_domain(), &bundle_of.trust_bundle_pem()).unwrap())
    }

    /// One handshake through the proxy's own client and server paths:
    /// (client result, server result with the peer it saw).
    async fn handshake(server: Arc<WorkloadCert>, client: Arc<WorkloadCert>, expect: &str) -> (Result<(), String>, Result<Option<String>, String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            accept(stream, &server, Duration::from_secs(2)).await.map(|(_, peer, carried)| {
                assert_eq!(carried, Carried::Http2);
                peer.identity.map(|p| p.to_string())
            })
        });
        let cert = watch::channel(Some(client)).1;
        let connected = connect(addr, expect, ALPN_H2, &cert, Duration::from_secs(2)).await.map(|_| ()).map_err(|r| r.reason);
        (connected, accepted.await.unwrap())
    }

    #[tokio::test]
    async fn peers_must_chain_to_our_root_be_valid_and_be_who_the_controller_said() {
        let ours = CertificateAuthority::generate_root("cluster.local").unwrap();
        let web = workload(&ours, &ours, "web", false);

        let (c, s) = handshake(web.clone(), workload(&ours, &ours, "client", false), WEB).await;
        assert_eq!(c, Ok(()));
        assert_eq!(s, Ok(Some("spiffe://cluster.local/ns/default/sa/client".into())));

        // Another trust domain, trusting only its own root: neither side accepts the other.
        let evil = CertificateAuthority::generate_root("evil.example").unwrap();
        let (c, s) = handshake(web.clone(), workload(&evil, &evil, "client", false), WEB).await;
        assert!(c.is_err() && s.is_err(), "{c:?} {s:?}");
        // Even one that trusts our root, and even a look-alike root with our trust domain name.
        let (c, s) = handshake(web.clone(), workload(&evil, &ours, "client", false), WEB).await;
        assert!(s.as_ref().is_err_and(|e| e.contains("mTLS handshake failed")), "{c:?} {s:?}");
        let twin = CertificateAuthority::generate_root("cluster.local").unwrap();
        let (_, s) = handshake(web.clone(), workload(&twin, &ours, "client", false), WEB).await;
        assert!(s.is_err(), "a certificate from another root with our trust domain: {s:?}");

        // An expired client certificate.
        let (_, s) = handshake(web.clone(), workload(&ours, &ours, "client", true), WEB).await;
        assert!(s.is_err(), "an expired client certificate was accepted");

        // A valid server that is not the identity the controller gave for the endpoint.
        let (c, _) = handshake(workload(&ours, &ours, "impostor", false), workload(&ours, &ours, "client", false), WEB).await;
        let e = c.unwrap_err();
        assert!(e.contains("server is spiffe://cluster.local/ns/default/sa/impostor, expected spiffe://cluster.local/ns/default/sa/web"), "{e}");
    }
}
