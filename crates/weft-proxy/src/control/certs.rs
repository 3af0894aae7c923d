//! The proxy's workload certificate: a key generated here (it never leaves
//! the process), a CSR sent to the controller with the join token, and
//! renewal at half the certificate's lifetime. Failures are retried with
//! backoff while the current certificate, if any, stays in use.

use crate::backoff::{Backoff, Jitter};
use crate::workload_cert::WorkloadCert;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use weft_identity::{csr, SpiffeId, TrustBundle};
use weft_proto::v1::{proxy_config_service_client::ProxyConfigServiceClient, CertifyRequest};

#[derive(Debug, Clone)]
pub struct CertOptions {
    pub controller: String,
    pub proxy_id: String,
    pub token: String,
    pub id: SpiffeId,
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Failed certificate requests are retried from 250 ms, doubling to 5 s.
const RETRY: Backoff = Backoff { base: Duration::from_millis(250), max: Duration::from_secs(5), jitter: Jitter::Half };

/// Keeps a valid certificate in `certificate`, forever. It needs nothing
/// else of the proxy: the channel is what every connection reads.
pub async fn run(opts: CertOptions, certificate: watch::Sender<Option<Arc<WorkloadCert>>>) {
    let mut failures: u32 = 0;
    loop {
        let current = certificate.borrow().clone();
        match fetch(&opts, current).await {
            Ok(cert) => {
                failures = 0;
                let lifetime = (cert.not_after_unix - now_unix()).max(0) as u64;
                tracing::info!(identity = %cert.spiffe_id, serial = %cert.serial, "workload certificate installed; renewing in {}s", lifetime / 2);
                certificate.send_replace(Some(Arc::new(cert)));
                tokio::time::sleep(Duration::from_secs((lifetime / 2).max(1))).await;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = RETRY.delay(failures, crate::random::random_u64());
                tracing::warn!("cannot get a workload certificate ({e}); retrying in {}ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Gets a new certificate: the first with the join token, renewals proven by
/// the current certificate (the token may have expired by then; it is sent
/// too, for when the current certificate expired during a long outage).
async fn fetch(opts: &CertOptions, current: Option<Arc<WorkloadCert>>) -> Result<WorkloadCert, String> {
    let kc = csr::generate(&opts.id).map_err(|e| e.to_string())?;
    let (current_chain_pem, proof) = match &current {
        Some(c) => (c.chain_pem.clone(), csr::prove(c.key_pem(), kc.csr_pem.as_bytes()).map_err(|e| e.to_string())?),
        None => (String::new(), Vec::new()),
    };
    let tls = match (current, weft_identity::token::root_pin(&opts.token)) {
        (Some(c), _) => crate::control::channel::ControlTls::Mutual(c),
        (None, Some(pin)) => crate::control::channel::ControlTls::Pinned { root_sha256: pin, trust_domain: opts.id.trust_domain.clone() },
        (None, None) => crate::control::channel::ControlTls::Plain,
    };
    let channel = crate::control::channel::connect(&opts.controller, tls).await.map_err(|e| format!("controller unreachable: {e}"))?;
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
