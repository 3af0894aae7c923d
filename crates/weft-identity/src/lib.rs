//! weft-identity: who a workload is and how peers prove it.
//!
//! - [`SpiffeId`], the identity: `spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT`.
//! - [`CertificateAuthority`]: the mesh CA, self-signed by default or plugged in
//!   from files (root, intermediate and key, chain), signing workload CSRs into
//!   short-lived X.509 SVIDs for exactly the identity granted.
//! - [`csr`]: a workload's key (generated where it is used, never sent) and CSR.
//! - [`tls`]: rustls client and server configs for proxy-to-proxy mTLS that
//!   verify chains against a [`TrustBundle`] (several roots during a rotation)
//!   and check SPIFFE IDs instead of DNS names.
//! - [`token`]: the text of join tokens.
//! - [`files`]: keys and certificates written atomically, owner-only.

pub mod ca;
pub mod csr;
pub mod files;
pub mod spiffe;
pub mod tls;
pub mod token;

pub use ca::{CertificateAuthority, IssuedCertificate};
pub use spiffe::SpiffeId;
pub use tls::{Identity, TrustBundle};

/// The default trust domain, as in Istio and Kubernetes.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid SPIFFE ID {0:?}: {1}")]
    InvalidSpiffeId(String, &'static str),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("the CSR asks for {asked}, but the caller may only get {granted}")]
    IdentityNotGranted { asked: String, granted: String },
    #[error("PEM input: {0}")]
    Pem(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl From<rcgen::Error> for IdentityError {
    fn from(e: rcgen::Error) -> Self {
        IdentityError::Certificate(e.to_string())
    }
}
