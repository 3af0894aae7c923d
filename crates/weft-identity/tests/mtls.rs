//! Issuance and mutual TLS as the mesh uses them: real certificates from the
//! CA, real rustls handshakes (over an in-memory pipe), and `openssl verify`
//! as the independent judge of the chains.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_identity::{csr, tls, CertificateAuthority, Identity, SpiffeId, TrustBundle};

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).unwrap()
}

fn issue(ca: &CertificateAuthority, who: &SpiffeId) -> (Identity, String) {
    let kc = csr::generate(who).unwrap();
    let cert = ca.sign_csr(&kc.csr_pem, who, Duration::from_secs(3600)).unwrap();
    (Identity::from_pem(&cert.chain_pem, &kc.key_pem).unwrap(), cert.chain_pem)
}

fn bundle(ca: &CertificateAuthority) -> TrustBundle {
    TrustBundle::from_pem(ca.trust_domain(), &ca.trust_bundle_pem()).unwrap()
}

/// One handshake and a byte each way; the client's and server's results and
/// the identity the server saw.
fn handshake(client: std::sync::Arc<rustls::ClientConfig>, server: std::sync::Arc<rustls::ServerConfig>) -> (Result<(), String>, Result<Option<SpiffeId>, String>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let srv = tokio::spawn(async move {
            let mut s = tokio_rustls::TlsAcceptor::from(server).accept(b).await.map_err(|e| e.to_string())?;
            let peer = tls::peer_identity(s.get_ref().1.peer_certificates());
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            s.write_all(&buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(peer)
        });
        let cli = async move {
            let mut c = tokio_rustls::TlsConnector::from(client).connect(tls::mesh_server_name(), a).await.map_err(|e| e.to_string())?;
            c.write_all(b"x").await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 1];
            c.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        }
        .await;
        let srv = srv.await.unwrap_or_else(|e| Err(e.to_string()));
        (cli, srv)
    })
}

#[test]
fn mutual_tls_between_two_workloads_with_spiffe_ids() {
    let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
    let (client_id, server_id) = (id("shop", "checkout"), id("shop", "ledger"));
    let (client, _) = issue(&ca, &client_id);
    let (server, _) = issue(&ca, &server_id);
    assert_eq!(server.spiffe_id().unwrap(), server_id);
    let cc = tls::client_config(&client, &bundle(&ca), vec![server_id.clone()]).unwrap();
    let sc = tls::server_config(&server, &bundle(&ca), true).unwrap();
    let (c, s) = handshake(cc, sc);
    assert_eq!(c, Ok(()));
    assert_eq!(s, Ok(Some(client_id)), "the server knows who called");
}

#[test]
fn a_server_with_another_identity_is_refused() {
    let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
    let (client, _) = issue(&ca, &id("shop", "checkout"));
    let (impostor, _) = issue(&ca, &id("shop", "attacker"));
    let cc = tls::client_config(&client, &bundle(&ca), vec![id("shop", "ledger")]).unwrap();
    let sc = tls::server_config(&impostor, &bundle(&ca), true).unwrap();
    let (c, _) = handshake(cc, sc);
    let e = c.unwrap_err();
    assert!(e.contains("server is spiffe://cluster.local/ns/shop/sa/attacker, expected spiffe://cluster.local/ns/shop/sa/ledger"), "{e}");
}

#[test]
fn a_certificate_from_another_trust_domain_is_refused_both_ways() {
    let ours = CertificateAuthority::generate_root("cluster.local").unwrap();
    let theirs = CertificateAuthority::generate_root("other.example").unwrap();
    let other_id = SpiffeId::new("other.example", "shop", "ledger").unwrap();
    let (client, _) = issue(&ours, &id("shop", "checkout"));
    let (foreign_server, _) = issue(&theirs, &other_id);
    let cc = tls::client_config(&client, &bundle(&ours), vec![other_id.clone()]).unwrap();
    let sc = tls::server_config(&foreign_server, &bundle(&theirs), true).unwrap();
    let (c, _) = handshake(cc, sc);
    assert!(c.unwrap_err().to_lowercase().contains("unknown"), "the client does not know their root");
    // A foreign client against our server.
    let (foreign_client, _) = issue(&theirs, &other_id);
    let (server, _) = issue(&ours, &id("shop", "ledger"));
    let cc = tls::client_config(&foreign_client, &bundle(&theirs), vec![id("shop", "ledger")]).unwrap();
    let mut theirs_trusting_ours = bundle(&theirs);
    theirs_trusting_ours.roots.extend(bundle(&ours).roots);
    let cc2 = tls::client_config(&foreign_client, &theirs_trusting_ours, vec![id("shop", "ledger")]).unwrap();
    let sc = tls::server_config(&server, &bundle(&ours), true).unwrap();
    let (_, s) = handshake(cc, sc.clone());
    assert!(s.is_err());
    let (_, s) = handshake(cc2, sc);
    assert!(s.unwrap_err().to_lowercase().contains("unknown"), "our server does not know their root");
}

#[test]
fn an_expired_certificate_is_refused() {
    let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
    let (client, _) = issue(&ca, &id("shop", "checkout"));
    let server_id = id("shop", "ledger");
    let kc = csr::generate(&server_id).unwrap();
    let now = SystemTime::now();
    let old = ca.sign_csr_valid(&kc.csr_pem, &server_id, now - Duration::from_secs(7200), now - Duration::from_secs(3600)).unwrap();
    let expired = Identity::from_pem(&old.chain_pem, &kc.key_pem).unwrap();
    let cc = tls::client_config(&client, &bundle(&ca), vec![server_id]).unwrap();
    let sc = tls::server_config(&expired, &bundle(&ca), true).unwrap();
    let (c, _) = handshake(cc, sc);
    assert!(c.unwrap_err().to_lowercase().contains("expired"));
}

#[test]
fn a_client_without_a_certificate_needs_a_permissive_server() {
    let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
    let server_id = id("shop", "ledger");
    let (server, _) = issue(&ca, &server_id);
    let anchors = bundle(&ca);
    let mut roots = rustls::RootCertStore::empty();
    for r in &anchors.roots {
        roots.add(r.clone()).unwrap();
    }
    // A plain TLS client with no client certificate (it skips our SPIFFE check: what matters is the server's answer).
    let plain = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
            .with_no_client_auth(),
    );
    let (_, strict) = handshake(plain.clone(), tls::server_config(&server, &anchors, true).unwrap());
    assert!(strict.is_err(), "STRICT refuses");
    let (c, permissive) = handshake(plain, tls::server_config(&server, &anchors, false).unwrap());
    assert_eq!(c, Ok(()));
    assert_eq!(permissive, Ok(None), "PERMISSIVE accepts, with no peer identity");
}

#[derive(Debug)]
struct AcceptAny;
impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(&self, _: &rustls::pki_types::CertificateDer<'_>, _: &[rustls::pki_types::CertificateDer<'_>], _: &rustls::pki_types::ServerName<'_>, _: &[u8], _: rustls::pki_types::UnixTime) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, _: &[u8], _: &rustls::pki_types::CertificateDer<'_>, _: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(&self, _: &[u8], _: &rustls::pki_types::CertificateDer<'_>, _: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

#[test]
fn a_csr_cannot_obtain_an_identity_it_was_not_granted() {
    let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
    let asked = id("payments", "admin");
    let kc = csr::generate(&asked).unwrap();
    let e = ca.sign_csr(&kc.csr_pem, &id("shop", "checkout"), Duration::from_secs(60)).unwrap_err().to_string();
    assert_eq!(e, "the CSR asks for spiffe://cluster.local/ns/payments/sa/admin, but the caller may only get spiffe://cluster.local/ns/shop/sa/checkout");
    let foreign = SpiffeId::new("other.example", "shop", "checkout").unwrap();
    let kc = csr::generate(&foreign).unwrap();
    assert!(ca.sign_csr(&kc.csr_pem, &foreign, Duration::from_secs(60)).is_err(), "outside the CA's trust domain");
    assert!(ca.sign_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", &id("a", "b"), Duration::from_secs(60)).is_err());
}

#[test]
fn during_a_root_rotation_leaves_from_both_roots_are_trusted() {
    let mut old = CertificateAuthority::generate_root("cluster.local").unwrap();
    let new = CertificateAuthority::generate_root("cluster.local").unwrap();
    old.add_trusted_root(&new.trust_bundle_pem()).unwrap();
    let both = bundle(&old);
    assert_eq!(both.roots.len(), 2);
    let (client, _) = issue(&new, &id("shop", "checkout"));
    let (server, _) = issue(&old, &id("shop", "ledger"));
    let cc = tls::client_config(&client, &both, vec![id("shop", "ledger")]).unwrap();
    let sc = tls::server_config(&server, &both, true).unwrap();
    let (c, s) = handshake(cc, sc);
    assert_eq!(c, Ok(()));
    assert_eq!(s, Ok(Some(id("shop", "checkout"))));
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-identity-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed (.ci/run installs it)");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_plugged_in_openssl_intermediate_issues_chains_openssl_verifies() {
    // An organisation's PKI, made with openssl: a root and an intermediate CA for the mesh.
    let (root_key, root_crt, int_key, int_csr, int_crt, ext) =
        (tmp("root.key"), tmp("root.crt"), tmp("int.key"), tmp("int.csr"), tmp("int.crt"), tmp("ext.cnf"));
    let p = |x: &PathBuf| x.to_str().unwrap().to_string();
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &p(&root_key)]);
    openssl(&["req", "-x509", "-new", "-key", &p(&root_key), "-subj", "/O=example/CN=Example Root", "-days", "30", "-out", &p(&root_crt)]);
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &p(&int_key)]);
    // rcgen reads PKCS#8 keys.
    let int_key_pk8 = tmp("int.pk8");
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &p(&int_key), "-out", &p(&int_key_pk8)]);
    openssl(&["req", "-new", "-key", &p(&int_key), "-subj", "/O=example/CN=Mesh Intermediate", "-out", &p(&int_csr)]);
    std::fs::write(&ext, "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n").unwrap();
    openssl(&["x509", "-req", "-in", &p(&int_csr), "-CA", &p(&root_crt), "-CAkey", &p(&root_key), "-CAcreateserial", "-days", "30", "-extfile", &p(&ext), "-out", &p(&int_crt)]);

    let read = |x: &PathBuf| std::fs::read_to_string(x).unwrap();
    let ca = CertificateAuthority::from_pem("cluster.local", &read(&int_crt), &read(&int_key_pk8), "", &read(&root_crt)).unwrap();
    let who = id("shop", "ledger");
    let (identity, chain_pem) = issue(&ca, &who);
    assert_eq!(identity.chain.len(), 2, "leaf and intermediate");
    let (leaf_file, chain_file) = (tmp("leaf.pem"), tmp("chain.pem"));
    let leaf_pem = chain_pem.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap();
    std::fs::write(&leaf_file, leaf_pem).unwrap();
    std::fs::write(&chain_file, &chain_pem).unwrap();
    let out = openssl(&["verify", "-CAfile", &p(&root_crt), "-untrusted", &p(&chain_file), &p(&leaf_file)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    let text = String::from_utf8_lossy(&openssl(&["x509", "-in", &p(&leaf_file), "-noout", "-ext", "subjectAltName"]).stdout).into_owned();
    assert!(text.contains("URI:spiffe://cluster.local/ns/shop/sa/ledger"), "{text}");
    // The chain works for mTLS, too.
    let (client, _) = issue(&ca, &id("shop", "checkout"));
    let b = bundle(&ca);
    let (c, s) = handshake(tls::client_config(&client, &b, vec![who.clone()]).unwrap(), tls::server_config(&identity, &b, true).unwrap());
    assert_eq!(c, Ok(()));
    assert_eq!(s, Ok(Some(id("shop", "checkout"))));
    // A key that does not belong to the signing certificate is refused up front.
    assert!(CertificateAuthority::from_pem("cluster.local", &read(&int_crt), &read(&tmp_key()), "", &read(&root_crt)).is_err());
    let _ = std::fs::remove_dir_all(leaf_file.parent().unwrap());
}

fn tmp_key() -> PathBuf {
    let k = tmp("other.pk8");
    let raw = tmp("other.key");
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", raw.to_str().unwrap()]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", raw.to_str().unwrap(), "-out", k.to_str().unwrap()]);
    k
}

#[test]
fn a_self_signed_root_issues_what_openssl_verifies() {
    let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
    let (_, chain) = issue(&ca, &id("prod", "reviews"));
    let (root, leaf) = (tmp("self-root.pem"), tmp("self-leaf.pem"));
    std::fs::write(&root, ca.trust_bundle_pem()).unwrap();
    std::fs::write(&leaf, &chain).unwrap();
    let out = openssl(&["verify", "-CAfile", root.to_str().unwrap(), leaf.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

#[test]
fn a_pinned_root_lets_a_new_workload_check_its_controller_before_it_has_a_bundle() {
    let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
    let controller = tls::controller_id("cluster.local").unwrap();
    let kc = csr::generate(&controller).unwrap();
    let cert = ca.sign_csr(&kc.csr_pem, &controller, Duration::from_secs(3600)).unwrap();
    // The controller sends its root along; the client knows only the root's SHA-256.
    let served = Identity::from_pem(&format!("{}{}", cert.chain_pem, ca.trust_bundle_pem()), &kc.key_pem).unwrap();
    let server = tls::server_config(&served, &bundle(&ca), false).unwrap();
    let pin = tls::fingerprint(&bundle(&ca).roots[0]);

    let (c, s) = handshake(tls::pinned_client_config(&pin, controller.clone()).unwrap(), server.clone());
    assert_eq!(c, Ok(()));
    assert_eq!(s, Ok(None), "no client certificate before the first one is issued");

    // Another root's pin, or another identity: refused.
    let other = CertificateAuthority::generate_root("cluster.local").unwrap();
    let (c, _) = handshake(tls::pinned_client_config(&tls::fingerprint(&bundle(&other).roots[0]), controller.clone()).unwrap(), server.clone());
    assert!(c.unwrap_err().contains("no root with SHA-256"));
    let (c, _) = handshake(tls::pinned_client_config(&pin, id("prod", "reviews")).unwrap(), server.clone());
    assert!(c.unwrap_err().contains("expected spiffe://cluster.local/ns/prod/sa/reviews"));
    // A look-alike controller from another CA can only send its own root: the pin does not match.
    let kc2 = csr::generate(&controller).unwrap();
    let cert2 = other.sign_csr(&kc2.csr_pem, &controller, Duration::from_secs(3600)).unwrap();
    let fake = Identity::from_pem(&format!("{}{}", cert2.chain_pem, other.trust_bundle_pem()), &kc2.key_pem).unwrap();
    let (c, _) = handshake(tls::pinned_client_config(&pin, controller).unwrap(), tls::server_config(&fake, &bundle(&other), false).unwrap());
    assert!(c.is_err());
}
