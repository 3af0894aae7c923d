//! The workload side of issuance: an ECDSA P-256 key generated where it is
//! used (it never leaves the proxy) and a CSR naming the identity asked for.

use crate::{IdentityError, SpiffeId};

/// A fresh key and a CSR for `id`, both PEM.
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

pub fn generate(id: &SpiffeId) -> Result<KeyAndCsr, IdentityError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let uri = rcgen::string::Ia5String::try_from(id.to_string()).map_err(|e| IdentityError::Certificate(e.to_string()))?;
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    let csr = params.serialize_request(&key)?;
    Ok(KeyAndCsr { key_pem: key.serialize_pem(), csr_pem: csr.pem()? })
}

/// Proof of possession for a renewal: the current key's signature over
/// `message` (the new CSR), ECDSA P-256 with SHA-256.
pub fn prove(key_pem: &str, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
    use rcgen::SigningKey;
    let key = rcgen::KeyPair::from_pem(key_pem)?;
    Ok(key.sign(message)?)
}
