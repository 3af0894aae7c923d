//! Proxy-to-proxy mTLS with rustls (TLS 1.3 only, one crypto provider: ring).
//! Certificates carry SPIFFE IDs, not DNS names, so the checks are ours:
//! the server requires a client certificate that chains to the trust bundle
//! and names an identity in the trust domain; the client verifies the chain
//! and that the server is one of the identities expected for the destination.

use crate::{IdentityError, SpiffeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A workload's certificate chain and private key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Identity, IdentityError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| IdentityError::Pem(e.to_string()))?;
        if chain.is_empty() {
            return Err(IdentityError::Pem("no certificate in the chain".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| IdentityError::Pem(e.to_string()))?;
        Ok(Identity { chain, key })
    }

    /// The SPIFFE ID in the leaf certificate.
    pub fn spiffe_id(&self) -> Result<SpiffeId, IdentityError> {
        spiffe_id_of(&self.chain[0])
    }
}

/// The roots peers are verified against, and the trust domain they must be in.
#[derive(Clone)]
pub struct TrustBundle {
    pub trust_domain: String,
    pub roots: Vec<CertificateDer<'static>>,
}

impl TrustBundle {
    pub fn from_pem(trust_domain: &str, roots_pem: &str) -> Result<TrustBundle, IdentityError> {
        let roots: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(roots_pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| IdentityError::Pem(e.to_string()))?;
        if roots.is_empty() {
            return Err(IdentityError::Pem("no root certificate in the trust bundle".into()));
        }
        Ok(TrustBundle { trust_domain: trust_domain.to_string(), roots })
    }

    /// The roots as webpki trust anchors.
    fn anchors(&self) -> Result<Vec<rustls::pki_types::TrustAnchor<'static>>, IdentityError> {
        self.roots
            .iter()
            .map(|r| webpki::anchor_from_trusted_cert(r).map(|a| a.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Tls(format!("root certificate: {e}")))
    }

    fn root_store(&self) -> Result<Arc<rustls::RootCertStore>, IdentityError> {
        let mut store = rustls::RootCertStore::empty();
        for r in &self.roots {
            store.add(r.clone()).map_err(|e| IdentityError::Tls(format!("root certificate: {e}")))?;
        }
        Ok(Arc::new(store))
    }
}

/// Checks a renewal: `chain_pem` (leaf first) is a current workload
/// certificate under `bundle`, and `signature` over `message` was made with
/// its key. Returns the identity it proves.
pub fn verify_proof(bundle: &TrustBundle, chain_pem: &str, message: &[u8], signature: &[u8]) -> Result<SpiffeId, IdentityError> {
    verify_proof_within(bundle, chain_pem, message, signature, std::time::Duration::ZERO)
}

/// As [`verify_proof`], also for a certificate that expired at most `grace`
/// ago: it is checked as of just before it expired. This is how a proxy
/// re-proves itself after an outage longer than its certificate's life,
/// with the same key, without a new join token.
pub fn verify_proof_within(bundle: &TrustBundle, chain_pem: &str, message: &[u8], signature: &[u8], grace: std::time::Duration) -> Result<SpiffeId, IdentityError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| IdentityError::Pem(e.to_string()))?;
    let leaf = chain.first().ok_or_else(|| IdentityError::Pem("no certificate in the chain".into()))?;
    let anchors = bundle.anchors()?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| IdentityError::Certificate(format!("{e:?}")))?;
    let algorithms = provider().signature_verification_algorithms;
    let now = UnixTime::now();
    let (_, not_after) = serial_and_expiry(leaf)?;
    let expired_for = now.as_secs() as i64 - not_after;
    let at = if expired_for >= 0 && (expired_for as u64) <= grace.as_secs() {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs((not_after - 1).max(0) as u64))
    } else {
        now
    };
    ee.verify_for_usage(algorithms.all, &anchors, &chain[1..], at, webpki::KeyUsage::client_auth(), None, None)
        .map_err(|e| IdentityError::Certificate(format!("the current certificate does not verify: {e:?}")))?;
    ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, signature)
        .map_err(|_| IdentityError::Certificate("the proof is not signed by the current certificate's key".into()))?;
    let id = spiffe_id_of(leaf)?;
    if id.trust_domain != bundle.trust_domain {
        return Err(IdentityError::Certificate(format!("{id} is not in trust domain {}", bundle.trust_domain)));
    }
    Ok(id)
}

/// A certificate's serial number (hexadecimal) and expiry (unix seconds).
pub fn serial_and_expiry(cert: &CertificateDer<'_>) -> Result<(String, i64), IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| IdentityError::Certificate(e.to_string()))?;
    Ok((parsed.raw_serial_as_string().replace(':', ""), parsed.validity().not_after.timestamp()))
}

/// When a certificate starts and stops being valid (unix seconds).
pub fn validity(cert: &CertificateDer<'_>) -> Result<(i64, i64), IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| IdentityError::Certificate(e.to_string()))?;
    Ok((parsed.validity().not_before.timestamp(), parsed.validity().not_after.timestamp()))
}

/// The SPIFFE ID (URI SAN) of a certificate.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| IdentityError::Certificate(e.to_string()))?;
    spiffe_id_in(&parsed)
}

fn spiffe_id_in(parsed: &x509_parser::certificate::X509Certificate<'_>) -> Result<SpiffeId, IdentityError> {
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| IdentityError::Certificate(e.to_string()))?
        .ok_or_else(|| IdentityError::Certificate("the certificate has no subject alternative name".into()))?;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if uri.starts_with("spiffe://") {
                return uri.parse();
            }
        }
    }
    Err(IdentityError::Certificate("the certificate has no spiffe:// URI".into()))
}

/// weft's certificate extension (a private OID, non-critical): the workload's
/// telemetry metadata as JSON in a DER UTF8String, signed by the mesh CA. A
/// mesh peer learns who its caller is in the handshake, with no extra bytes
/// on the wire and nothing a caller can add per request.
pub const WORKLOAD_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59423, 1, 1];

/// The workload metadata in a certificate's weft extension, if it has one.
pub fn workload_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    workload_in(&parsed)
}

/// The peer's SPIFFE ID and workload metadata after a handshake, from one parse of its certificate.
pub fn peer_identity_and_workload(certs: Option<&[CertificateDer<'_>]>) -> (Option<SpiffeId>, Option<String>) {
    let Some(leaf) = certs.and_then(|c| c.first()) else { return (None, None) };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else { return (None, None) };
    (spiffe_id_in(&parsed).ok(), workload_in(&parsed))
}

fn workload_in(parsed: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    let ext = parsed.extensions().iter().find(|e| e.oid.iter().is_some_and(|mut it| it.by_ref().eq(WORKLOAD_OID.iter().copied())))?;
    let v = ext.value;
    let (&tag, rest) = v.split_first()?;
    if tag != 0x0c {
        return None;
    }
    let (len, body) = match rest.split_first()? {
        (&n, body) if n < 0x80 => (n as usize, body),
        (&0x81, [n, body @ ..]) => (*n as usize, body),
        (&0x82, [hi, lo, body @ ..]) => (((*hi as usize) << 8) | *lo as usize, body),
        _ => return None,
    };
    std::str::from_utf8(body.get(..len)?).ok().map(str::to_string)
}

/// The peer's SPIFFE ID after a handshake, from its certificates.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    certs.and_then(|c| c.first()).and_then(|c| spiffe_id_of(c).ok())
}

/// The server side. `require_client_cert: false` is PERMISSIVE: plaintext is
/// handled before TLS, and a TLS client without a certificate is accepted too.
pub fn server_config(identity: &Identity, bundle: &TrustBundle, require_client_cert: bool) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
    let provider = provider();
    let mut builder = rustls::server::WebPkiClientVerifier::builder_with_provider(bundle.root_store()?, provider.clone());
    if !require_client_cert {
        builder = builder.allow_unauthenticated();
    }
    let webpki = builder.build().map_err(|e| IdentityError::Tls(e.to_string()))?;
    let verifier = Arc::new(SpiffeClientVerifier { inner: webpki, trust_domain: bundle.trust_domain.clone() });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client config builder whose server must present one of `expected`, chained to `bundle`.
fn client_builder(bundle: &TrustBundle, expected: Vec<SpiffeId>) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, IdentityError> {
    let provider = provider();
    let anchors = bundle.anchors()?;
    let verifier = Arc::new(SpiffeServerVerifier { trust: ServerTrust::Anchors(anchors), expected, algorithms: provider.signature_verification_algorithms });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier))
}

/// The client side: the server must present one of `expected`.
pub fn client_config(identity: &Identity, bundle: &TrustBundle, expected: Vec<SpiffeId>) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
    let config = client_builder(bundle, expected)?
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The client side without a certificate of its own (an operator's CLI
/// with a bearer token, a proxy whose certificate expired): the server must
/// present one of `expected`, chained to `bundle`.
pub fn anonymous_client_config(bundle: &TrustBundle, expected: Vec<SpiffeId>) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
    Ok(Arc::new(client_builder(bundle, expected)?.with_no_client_auth()))
}

/// The first certificate of a PEM bundle.
pub fn first_certificate(pem: &[u8]) -> Result<CertificateDer<'static>, IdentityError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).next().ok_or_else(|| IdentityError::Pem("no certificate".into()))?.map_err(|e| IdentityError::Pem(e.to_string()))
}

/// SHA-256 of a certificate, hex: how a join token pins the mesh's root.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    crate::token::hex(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref())
}

/// The identity the controller serves its proxies' port with.
pub fn controller_id(trust_domain: &str) -> Result<SpiffeId, IdentityError> {
    SpiffeId::new(trust_domain, "weft-system", "weft-controller")
}

/// A client config for a workload that has no certificate yet (its first
/// request, with a join token): no client certificate; the server must be
/// `expected`, with a chain that includes a root whose SHA-256 is
/// `root_sha256` (the token carries it, as kubeadm's join does).
pub fn pinned_client_config(root_sha256: &str, expected: SpiffeId) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        trust: ServerTrust::PinnedRoot(root_sha256.to_ascii_lowercase()),
        expected: vec![expected],
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Any name works for the TLS layer: identity is checked by SPIFFE ID.
pub fn mesh_server_name() -> ServerName<'static> {
    ServerName::try_from("weft.mesh").expect("a valid DNS name")
}

fn webpki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let c = match e {
        W::CertExpired { .. } => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(rustls::OtherError(Arc::new(IdentityError::Tls(format!("{other:?}"))))),
    };
    rustls::Error::InvalidCertificate(c)
}

fn identity_error(msg: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(IdentityError::Tls(msg)))))
}

/// What a server's chain must lead to.
#[derive(Debug)]
enum ServerTrust {
    /// The trust bundle's roots.
    Anchors(Vec<rustls::pki_types::TrustAnchor<'static>>),
    /// A root the server sends itself, accepted by its SHA-256 (hex).
    PinnedRoot(String),
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    trust: ServerTrust,
    expected: Vec<SpiffeId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned;
        let anchors = match &self.trust {
            ServerTrust::Anchors(a) => a.as_slice(),
            ServerTrust::PinnedRoot(pin) => {
                let root = intermediates
                    .iter()
                    .find(|c| fingerprint(c) == *pin)
                    .ok_or_else(|| identity_error(format!("the server's chain has no root with SHA-256 {pin}")))?;
                pinned = [webpki::anchor_from_trusted_cert(root).map_err(webpki_error)?];
                &pinned[..]
            }
        };
        let ee = webpki::EndEntityCert::try_from(end_entity).map_err(webpki_error)?;
        ee.verify_for_usage(self.algorithms.all, anchors, intermediates, now, webpki::KeyUsage::server_auth(), None, None)
            .map_err(webpki_error)?;
        let id = spiffe_id_of(end_entity).map_err(|e| identity_error(e.to_string()))?;
        if !self.expected.contains(&id) {
            let want: Vec<String> = self.expected.iter().map(|e| e.to_string()).collect();
            return Err(identity_error(format!("server is {id}, expected {}", want.join(" or "))));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// webpki's client verification (chain, validity, clientAuth), plus: the
/// client's SPIFFE ID is in our trust domain.
#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let id = spiffe_id_of(end_entity).map_err(|e| identity_error(e.to_string()))?;
        if id.trust_domain != self.trust_domain {
            return Err(identity_error(format!("client {id} is not in trust domain {}", self.trust_domain)));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
