//! The proxy's workload certificate: a key generated here (it never leaves
//! the process), a CSR sent to the controller with the join token, and
//! renewal at half the certificate's lifetime. Failures are retried with
//! backoff while the current certificate, if any, stays in use.

use crate::proxy::Proxy;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_identity::{csr, Identity, SpiffeId, TrustBundle};
use weft_proto::v1::{proxy_config_service_client::ProxyConfigServiceClient, CertifyRequest};

#[derive(Debug, Clone)]
pub struct CertOptions {
    pub controller: String,
    pub proxy_id: String,
    pub token: String,
    pub id: SpiffeId,
}

/// Client configs by (expected peer identity, ALPN).
type ClientConfigs = std::collections::HashMap<(String, &'static [u8]), Arc<rustls::ClientConfig>>;

/// The certificate in use and what it is trusted against, with the TLS
/// configs made from it (built once per certificate, not per connection).
pub struct WorkloadCert {
    pub identity: Identity,
    /// The chain and key as PEM: a renewal proves itself with them.
    pub chain_pem: String,
    key_pem: String,
    pub bundle: TrustBundle,
    pub spiffe_id: SpiffeId,
    pub serial: String,
    pub not_after_unix: i64,
    /// The inbound side of mesh mTLS: a client certificate is required.
    pub server: Arc<rustls::ServerConfig>,
    clients: std::sync::Mutex<ClientConfigs>,
}

impl WorkloadCert {
    pub fn new(chain_pem: &str, key_pem: &str, bundle: TrustBundle, serial: String, not_after_unix: i64) -> Result<WorkloadCert, String> {
        let identity = Identity::from_pem(chain_pem, key_pem).map_err(|e| e.to_string())?;
        let spiffe_id = identity.spiffe_id().map_err(|e| e.to_string())?;
        let mut server = (*weft_identity::tls::server_config(&identity, &bundle, true).map_err(|e| e.to_string())?).clone();
        server.alpn_protocols = crate::mesh_tls::ALPNS.iter().map(|a| a.to_vec()).collect();
        Ok(WorkloadCert {
            identity,
            chain_pem: chain_pem.to_string(),
            key_pem: key_pem.to_string(),
            bundle,
            spiffe_id,
            serial,
            not_after_unix,
            server: Arc::new(server),
            clients: Default::default(),
        })
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

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Keeps a valid certificate in `proxy.certificate`, forever.
pub async fn run(opts: CertOptions, proxy: Arc<Proxy>) {
    let mut failures: u32 = 0;
    loop {
        let current = proxy.certificate.borrow().clone();
        match fetch(&opts, current).await {
            Ok(cert) => {
                failures = 0;
                let lifetime = (cert.not_after_unix - now_unix()).max(0) as u64;
                tracing::info!(identity = %cert.spiffe_id, serial = %cert.serial, "workload certificate installed; renewing in {}s", lifetime / 2);
                proxy.certificate.send_replace(Some(Arc::new(cert)));
                tokio::time::sleep(Duration::from_secs((lifetime / 2).max(1))).await;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = Duration::from_millis((250u64 << failures.min(5)).min(5_000));
                tracing::warn!("cannot get a workload certificate ({e}); retrying in {}ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// File-mounted certificates (Istio's names): `cert-chain.pem` (leaf first),
/// `key.pem`, `root-cert.pem` (the trust bundle). For workloads whose
/// certificates come from elsewhere (SPIRE, cert-manager, a benchmark).
pub fn load_dir(dir: &std::path::Path, trust_domain: &str) -> Result<WorkloadCert, String> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    let (chain, key) = (read("cert-chain.pem")?, read("key.pem")?);
    let identity = Identity::from_pem(&chain, &key).map_err(|e| e.to_string())?;
    let bundle = TrustBundle::from_pem(trust_domain, &read("root-cert.pem")?).map_err(|e| e.to_string())?;
    let (serial, not_after) = weft_identity::tls::serial_and_expiry(&identity.chain[0]).map_err(|e| e.to_string())?;
    WorkloadCert::new(&chain, &key, bundle, serial, not_after)
}

/// Gets a new certificate: the first with the join token, renewals proven by
/// the current certificate (the token may have expired by then; it is sent
/// too, for when the current certificate expired during a long outage).
async fn fetch(opts: &CertOptions, current: Option<Arc<WorkloadCert>>) -> Result<WorkloadCert, String> {
    let kc = csr::generate(&opts.id).map_err(|e| e.to_string())?;
    let (current_chain_pem, proof) = match &current {
        Some(c) => (c.chain_pem.clone(), csr::prove(&c.key_pem, kc.csr_pem.as_bytes()).map_err(|e| e.to_string())?),
        None => (String::new(), Vec::new()),
    };
    let tls = match (current, weft_identity::token::root_pin(&opts.token)) {
        (Some(c), _) => crate::control::ControlTls::Mutual(c),
        (None, Some(pin)) => crate::control::ControlTls::Pinned { root_sha256: pin, trust_domain: opts.id.trust_domain.clone() },
        (None, None) => crate::control::ControlTls::Plain,
    };
    let channel = crate::control::channel(&opts.controller, tls).await.map_err(|e| format!("controller unreachable: {e}"))?;
    let mut client = ProxyConfigServiceClient::new(channel);
    let resp = client
        .certify(CertifyRequest { proxy_id: opts.proxy_id.clone(), token: opts.token.clone(), csr_pem: kc.csr_pem, current_chain_pem, proof })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let bundle = TrustBundle::from_pem(&opts.id.trust_domain, &resp.roots_pem).map_err(|e| e.to_string())?;
    let cert = WorkloadCert::new(&resp.chain_pem, &kc.key_pem, bundle, resp.serial, resp.not_after_unix)?;
    if cert.spiffe_id != opts.id {
        return Err(format!("the controller issued {}, this proxy serves {}", cert.spiffe_id, opts.id));
    }
    Ok(cert)
}
