//! The mesh certificate authority. By default a self-signed ECDSA P-256 root
//! made on first start; or plugged in from what an organisation exports from
//! Vault PKI, cert-manager, cfssl or openssl: a signing certificate (usually
//! an intermediate) with its key, the chain up to the root, and the roots.
//! It signs workload CSRs into short-lived X.509 SVIDs carrying exactly the
//! SPIFFE ID the caller was granted, whatever the CSR asked for.

use crate::{IdentityError, SpiffeId};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::time::{Duration, SystemTime};

pub struct CertificateAuthority {
    trust_domain: String,
    /// The certificate that signs leaves (the root itself, or an intermediate).
    signing_cert_pem: String,
    key: KeyPair,
    /// Certificates between the signing certificate and the root, nearest first.
    chain_pem: Vec<String>,
    /// The trust bundle: every root peers accept (more than one during a root rotation).
    roots_pem: Vec<String>,
    /// Whether the signing certificate is itself one of the roots.
    signs_with_root: bool,
}

/// A signed workload certificate.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// Leaf first, then the intermediates a peer needs to reach a root.
    pub chain_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Hexadecimal serial number.
    pub serial: String,
}

fn split_pem(pem: &str) -> Result<Vec<String>, IdentityError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| IdentityError::Pem(e.to_string()))?;
    Ok(certs.iter().map(|c| to_pem(c.as_ref())).collect())
}

pub(crate) fn to_pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn serial() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    // Two independently keyed hashes of the time: unique serials (RFC 5280 asks for
    // uniqueness per CA, not secrecy); the top bit is cleared so it stays positive.
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut out = [0u8; 16];
    for half in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        out[half * 8..half * 8 + 8].copy_from_slice(&h.finish().to_be_bytes());
    }
    out[0] &= 0x7f;
    out
}

impl CertificateAuthority {
    /// A new self-signed root for `trust_domain`, valid ten years.
    pub fn generate_root(trust_domain: &str) -> Result<CertificateAuthority, IdentityError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::OrganizationName, trust_domain);
        params.distinguished_name.push(DnType::CommonName, "weft root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(serial().to_vec().into());
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        Ok(CertificateAuthority {
            trust_domain: trust_domain.to_string(),
            signing_cert_pem: pem.clone(),
            key,
            chain_pem: vec![],
            roots_pem: vec![pem],
            signs_with_root: true,
        })
    }

    /// A plugged-in CA: the signing certificate and its key, the chain from it
    /// up to (not including) the root, and the root(s) peers trust.
    pub fn from_pem(trust_domain: &str, signing_cert_pem: &str, key_pem: &str, chain_pem: &str, roots_pem: &str) -> Result<CertificateAuthority, IdentityError> {
        let key = KeyPair::from_pem(key_pem)?;
        let signing = split_pem(signing_cert_pem)?;
        let signing_cert_pem = signing.into_iter().next().ok_or_else(|| IdentityError::Pem("no signing certificate".into()))?;
        let roots_pem = split_pem(roots_pem)?;
        if roots_pem.is_empty() {
            return Err(IdentityError::Pem("no root certificate in the trust bundle".into()));
        }
        let signs_with_root = roots_pem.contains(&signing_cert_pem);
        // The key must belong to the signing certificate, or every leaf would be unverifiable.
        let der = CertificateDer::from_pem_slice(signing_cert_pem.as_bytes()).map_err(|e| IdentityError::Pem(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| IdentityError::Certificate(e.to_string()))?;
        if parsed.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
            return Err(IdentityError::Certificate("the CA key does not belong to the signing certificate".into()));
        }
        Ok(CertificateAuthority {
            trust_domain: trust_domain.to_string(),
            signing_cert_pem,
            key,
            chain_pem: split_pem(chain_pem)?,
            roots_pem,
            signs_with_root,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The signing certificate, PEM (to persist a generated root).
    pub fn signing_cert_pem(&self) -> &str {
        &self.signing_cert_pem
    }

    /// The signing key, PKCS#8 PEM (to persist a generated root; keep it private).
    pub fn signing_key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The roots peers must trust, PEM, one after another.
    pub fn trust_bundle_pem(&self) -> String {
        self.roots_pem.concat()
    }

    /// Adds a root to the bundle (root rotation: trust old and new while leaves roll over).
    pub fn add_trusted_root(&mut self, pem: &str) -> Result<(), IdentityError> {
        for r in split_pem(pem)? {
            if !self.roots_pem.contains(&r) {
                self.roots_pem.push(r);
            }
        }
        Ok(())
    }

    /// Signs a CSR for `granted`, valid `ttl` from now (backdated a minute for clock skew).
    pub fn sign_csr(&self, csr_pem: &str, granted: &SpiffeId, ttl: Duration) -> Result<IssuedCertificate, IdentityError> {
        let now = SystemTime::now();
        self.sign_csr_valid(csr_pem, granted, now - Duration::from_secs(60), now + ttl)
    }

    /// Signs a CSR for `granted` carrying `workload` (the workload's telemetry
    /// metadata, see [`crate::tls::workload_of`]) in weft's extension.
    pub fn sign_csr_for_workload(&self, csr_pem: &str, granted: &SpiffeId, ttl: Duration, workload: &str) -> Result<IssuedCertificate, IdentityError> {
        let now = SystemTime::now();
        self.sign(csr_pem, granted, now - Duration::from_secs(60), now + ttl, Some(workload))
    }

    /// A key and a server certificate for DNS names (the admission webhook,
    /// which the Kubernetes API server reaches as `SERVICE.NAMESPACE.svc`):
    /// chain and key as PEM. Not a workload identity: no SPIFFE ID, server use only.
    pub fn issue_dns_server(&self, dns_names: &[String], ttl: Duration) -> Result<(String, String), IdentityError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(first) = dns_names.first() {
            params.distinguished_name.push(DnType::CommonName, first.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        params.not_before = time::OffsetDateTime::from(now - Duration::from_secs(300));
        params.not_after = time::OffsetDateTime::from(now + ttl);
        params.serial_number = Some(serial().to_vec().into());
        params.use_authority_key_identifier_extension = true;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.signing_cert_pem, &self.key)?;
        let leaf = params.signed_by(&key, &issuer)?;
        Ok((self.chain_for(leaf.pem()), key.serialize_pem()))
    }

    /// A leaf's chain as peers need it: the leaf, then (when the CA signs with
    /// an intermediate) the signing certificate and the ones above it.
    fn chain_for(&self, leaf_pem: String) -> String {
        let mut chain_pem = leaf_pem;
        if !self.signs_with_root {
            chain_pem.push_str(&self.signing_cert_pem);
            for c in &self.chain_pem {
                chain_pem.push_str(c);
            }
        }
        chain_pem
    }

    /// Signs a CSR with explicit validity (tests use it to make expired certificates).
    pub fn sign_csr_valid(&self, csr_pem: &str, granted: &SpiffeId, not_before: SystemTime, not_after: SystemTime) -> Result<IssuedCertificate, IdentityError> {
        self.sign(csr_pem, granted, not_before, not_after, None)
    }

    fn sign(&self, csr_pem: &str, granted: &SpiffeId, not_before: SystemTime, not_after: SystemTime, workload: Option<&str>) -> Result<IssuedCertificate, IdentityError> {
        if granted.trust_domain != self.trust_domain {
            return Err(IdentityError::IdentityNotGranted { asked: granted.to_string(), granted: format!("identities in trust domain {}", self.trust_domain) });
        }
        // Parsing verifies the CSR's signature: the caller holds the key.
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        for san in &csr.params.subject_alt_names {
            let asked = match san {
                SanType::URI(u) => u.as_str().to_string(),
                other => format!("{other:?}"),
            };
            if asked != granted.to_string() {
                return Err(IdentityError::IdentityNotGranted { asked, granted: granted.to_string() });
            }
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let uri = rcgen::string::Ia5String::try_from(granted.to_string()).map_err(|e| IdentityError::Certificate(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, self.trust_domain.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time::OffsetDateTime::from(not_before);
        params.not_after = time::OffsetDateTime::from(not_after);
        let serial = serial();
        params.serial_number = Some(serial.to_vec().into());
        params.use_authority_key_identifier_extension = true;
        if let Some(w) = workload.filter(|w| !w.is_empty()) {
            params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(crate::tls::WORKLOAD_OID, der_utf8_string(w)));
        }
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.signing_cert_pem, &self.key)?;
        let leaf = params.signed_by(&csr.public_key, &issuer)?;
        Ok(IssuedCertificate {
            chain_pem: self.chain_for(leaf.pem()),
            not_before,
            not_after,
            serial: crate::token::hex(&serial),
        })
    }
}

/// DER `UTF8String` holding `text`.
fn der_utf8_string(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = vec![0x0c];
    match bytes.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_metadata_is_signed_into_the_certificate_and_read_back() {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
        let id = SpiffeId::new("cluster.local", "prod", "reviews").unwrap();
        let leaf = |chain: &str| CertificateDer::from_pem_slice(chain.as_bytes()).unwrap();
        for text in [r#"{"name":"reviews-v1","namespace":"prod"}"#.to_string(), "x".repeat(300), "y".repeat(1024)] {
            let kc = crate::csr::generate(&id).unwrap();
            let issued = ca.sign_csr_for_workload(&kc.csr_pem, &id, Duration::from_secs(60), &text).unwrap();
            assert_eq!(crate::tls::workload_of(&leaf(&issued.chain_pem)).as_deref(), Some(text.as_str()));
            assert_eq!(crate::tls::spiffe_id_of(&leaf(&issued.chain_pem)).unwrap(), id);
        }
        let kc = crate::csr::generate(&id).unwrap();
        let plain = ca.sign_csr(&kc.csr_pem, &id, Duration::from_secs(60)).unwrap();
        assert_eq!(crate::tls::workload_of(&leaf(&plain.chain_pem)), None);
    }

    #[test]
    fn pem_encoding_round_trips() {
        let ca = CertificateAuthority::generate_root("cluster.local").unwrap();
        let again = split_pem(&ca.trust_bundle_pem()).unwrap();
        assert_eq!(again, ca.roots_pem);
    }
}
