//! The workload certificate the proxy serves and connects with: its chain
//! and key, the trust bundle it checks peers against, and the TLS configs
//! made from them once per certificate (not per connection). Certificates
//! come from the controller (`control::certs`) or from files (`--cert-dir`).

use std::sync::Arc;
use tokio::sync::watch;
use weft_identity::{Identity, SpiffeId, TrustBundle};

/// The current workload certificate, as every connection reads it; `None`
/// until the first one is installed.
pub type Certificate = watch::Receiver<Option<Arc<WorkloadCert>>>;

/// Client configs by (expected peer identity, ALPN).
type ClientConfigs = std::collections::HashMap<(String, &'static [u8]), Arc<rustls::ClientConfig>>;

/// The certificate in use and what it is trusted against, with the TLS
/// configs made from it (built once per certificate, not per connection).
pub struct WorkloadCert {
    pub identity: Identity,
    /// The chain and key as PEM: a renewal proves itself with them.
    pub chain_pem: String,
    key_pem: String,
    /// The trust bundle as PEM, as it came.
    pub roots_pem: String,
    pub bundle: TrustBundle,
    pub spiffe_id: SpiffeId,
    pub serial: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// The inbound side of mesh mTLS: a client certificate is required.
    pub server: Arc<rustls::ServerConfig>,
    clients: std::sync::Mutex<ClientConfigs>,
}

impl WorkloadCert {
    /// From PEM: the chain (leaf first), its key, and the roots of `trust_domain`.
    pub fn new(chain_pem: &str, key_pem: &str, trust_domain: &str, roots_pem: &str) -> Result<WorkloadCert, String> {
        let identity = Identity::from_pem(chain_pem, key_pem).map_err(|e| e.to_string())?;
        let bundle = TrustBundle::from_pem(trust_domain, roots_pem).map_err(|e| e.to_string())?;
        let spiffe_id = identity.spiffe_id().map_err(|e| e.to_string())?;
        let leaf = identity.chain.first().ok_or("no certificate in the chain")?;
        let (serial, _) = weft_identity::tls::serial_and_expiry(leaf).map_err(|e| e.to_string())?;
        let (not_before_unix, not_after_unix) = weft_identity::tls::validity(leaf).map_err(|e| e.to_string())?;
        let mut server = (*weft_identity::tls::server_config(&identity, &bundle, true).map_err(|e| e.to_string())?).clone();
        server.alpn_protocols = crate::mesh_alpn::ALPNS.iter().map(|a| a.to_vec()).collect();
        Ok(WorkloadCert {
            identity,
            chain_pem: chain_pem.to_string(),
            key_pem: key_pem.to_string(),
            roots_pem: roots_pem.to_string(),
            bundle,
            spiffe_id,
            serial,
            not_before_unix,
            not_after_unix,
            server: Arc::new(server),
            clients: Default::default(),
        })
    }

    /// The private key (PEM): a renewal signs its new CSR with it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A client config that accepts only `expected` as the server, offering `alpn`.
    pub fn client_config(&self, expected: &str, alpn: &'static [u8]) -> Result<Arc<rustls::ClientConfig>, String> {
        let key = (expected.to_string(), alpn);
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let id: SpiffeId = expected.parse().map_err(|e: weft_identity::IdentityError| e.to_string())?;
        let mut config = (*weft_identity::tls::client_config(&self.identity, &self.bundle, vec![id]).map_err(|e| e.to_string())?).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let config = Arc::new(config);
        cache.insert(key, config.clone());
        Ok(config)
    }
}

/// File-mounted certificates (Istio's names): `cert-chain.pem` (leaf first),
/// `key.pem`, `root-cert.pem` (the trust bundle). For workloads whose
/// certificates come from elsewhere (SPIRE, cert-manager, a benchmark), and
/// for the certificate a proxy keeps in its state directory.
pub fn load_dir(dir: &std::path::Path, trust_domain: &str) -> Result<WorkloadCert, String> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    WorkloadCert::new(&read("cert-chain.pem")?, &read("key.pem")?, trust_domain, &read("root-cert.pem")?)
}

impl WorkloadCert {
    /// Writes the certificate in the layout [`load_dir`] reads: the key 0600,
    /// each file replaced atomically (the key last, so a crash between files
    /// leaves an old key with a chain it does not match, which load refuses).
    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        use weft_identity::files::write_atomic;
        write_atomic(&dir.join("root-cert.pem"), self.roots_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join("cert-chain.pem"), self.chain_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join("key.pem"), self.key_pem.as_bytes(), 0o600)
    }

    /// Seconds until it expires (negative once it has).
    pub fn seconds_left(&self) -> i64 {
        self.not_after_unix - now_unix()
    }

    /// Its whole validity, in seconds.
    pub fn lifetime(&self) -> i64 {
        (self.not_after_unix - self.not_before_unix).max(1)
    }
}

/// Now, in unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
