//! The proxy's workload certificate from the controller: a key generated
//! here (it never leaves the process, or its state directory), a CSR sent
//! with the join token the first time, renewals proven by the current
//! certificate's key. Renewal is due at half the lifetime; failures are
//! retried with backoff while the current certificate, if any, stays in use,
//! with a warning once a quarter of its life is left. A certificate that
//! expired during a long outage still proves the key (the controller
//! accepts it within its renewal grace), so the proxy gets a new one as soon
//! as the controller is back, without a restart or a new token.

use super::state_dir::StateDir;
use crate::backoff::{Backoff, Jitter};
use crate::workload_cert::{now_unix, WorkloadCert};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weft_identity::{csr, SpiffeId};
use weft_proto::v1::{proxy_config_service_client::ProxyConfigServiceClient, CertifyRequest};

#[derive(Debug, Clone)]
pub struct CertOptions {
    pub controller: String,
    pub proxy_id: String,
    pub token: String,
    /// A token file read at each request instead (a projected ServiceAccount
    /// token the kubelet rotates).
    pub token_file: Option<std::path::PathBuf>,
    /// SHA-256 of the root the controller's certificate must chain to, from
    /// `--ca-roots`; otherwise the token's own pin.
    pub root_pin: Option<String>,
    pub id: SpiffeId,
    /// Who the workload is (`WorkloadMeta` as JSON), signed into the certificate for peers' metrics.
    pub workload_json: String,
}

/// Failed certificate requests are retried from 250 ms, doubling to 4 s: a
/// controller that comes back is reached within seconds.
const RETRY: Backoff = Backoff { base: Duration::from_millis(250), max: Duration::from_secs(4), jitter: Jitter::Half };

/// When the next renewal is due: at half of what is left of `cert`'s life.
fn renewal_due(cert: &WorkloadCert) -> Duration {
    Duration::from_secs((cert.seconds_left().max(0) as u64 / 2).max(1))
}

/// Keeps a valid certificate in `certificate`, forever. It needs nothing
/// else of the proxy: the channel is what every connection reads. Each new
/// certificate is also kept in `state` (when given).
pub async fn run(opts: CertOptions, certificate: watch::Sender<Option<Arc<WorkloadCert>>>, state: Option<Arc<StateDir>>) {
    let mut failures: u32 = 0;
    // A certificate loaded from the state directory is renewed on its own schedule.
    let kept = certificate.borrow().clone();
    if let Some(c) = kept.filter(|c| c.seconds_left() > 0) {
        tokio::time::sleep(renewal_due(&c)).await;
    }
    loop {
        let current = certificate.borrow().clone();
        match fetch(&opts, current.clone()).await {
            Ok(cert) => {
                failures = 0;
                tracing::info!(identity = %cert.spiffe_id, serial = %cert.serial, "workload certificate installed; renewing in {}s", renewal_due(&cert).as_secs());
                if let Some(s) = &state {
                    s.save_certificate(&cert);
                }
                let due = renewal_due(&cert);
                certificate.send_replace(Some(Arc::new(cert)));
                tokio::time::sleep(due).await;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = RETRY.delay(failures, crate::random::random_u64());
                match &current {
                    Some(c) if c.seconds_left() <= 0 => {
                        tracing::warn!(identity = %c.spiffe_id, "the workload certificate has expired and cannot be renewed yet ({e}); retrying in {}ms", delay.as_millis())
                    }
                    Some(c) if c.seconds_left() * 4 < c.lifetime() => tracing::warn!(
                        identity = %c.spiffe_id,
                        "the workload certificate expires in {}s (under a quarter of its life) and cannot be renewed ({e}); retrying in {}ms",
                        c.seconds_left(),
                        delay.as_millis()
                    ),
                    _ => tracing::warn!("cannot get a workload certificate ({e}); retrying in {}ms", delay.as_millis()),
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Gets a new certificate: the first with the join token, renewals proven by
/// the current certificate's key (the token may have expired by then; it is
/// sent too, for a controller that no longer accepts the old certificate).
async fn fetch(opts: &CertOptions, current: Option<Arc<WorkloadCert>>) -> Result<WorkloadCert, String> {
    let kc = csr::generate(&opts.id).map_err(|e| e.to_string())?;
    let (current_chain_pem, proof) = match &current {
        Some(c) => (c.chain_pem.clone(), csr::prove(c.key_pem(), kc.csr_pem.as_bytes()).map_err(|e| e.to_string())?),
        None => (String::new(), Vec::new()),
    };
    use super::channel::ControlTls;
    let token = match &opts.token_file {
        Some(f) => std::fs::read_to_string(f).map(|t| t.trim().to_string()).map_err(|e| format!("token file {}: {e}", f.display()))?,
        None => opts.token.clone(),
    };
    let tls = match (current, opts.root_pin.clone().or_else(|| weft_identity::token::root_pin(&token))) {
        (Some(c), _) => ControlTls::with(Some(c)),
        (None, Some(pin)) => ControlTls::Pinned { root_sha256: pin, trust_domain: opts.id.trust_domain.clone() },
        (None, None) => ControlTls::Plain,
    };
    let channel = super::channel::connect(&opts.controller, tls).await.map_err(|e| format!("controller unreachable: {e}"))?;
    let mut client = ProxyConfigServiceClient::new(channel);
    let resp = client
        .certify(CertifyRequest { proxy_id: opts.proxy_id.clone(), token, csr_pem: kc.csr_pem, current_chain_pem, proof, workload_json: opts.workload_json.clone() })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let cert = WorkloadCert::new(&resp.chain_pem, &kc.key_pem, &opts.id.trust_domain, &resp.roots_pem)?;
    if cert.spiffe_id != opts.id {
        return Err(format!("the controller issued {}, this proxy serves {}", cert.spiffe_id, opts.id));
    }
    if cert.not_after_unix <= now_unix() {
        return Err("the controller issued a certificate that has already expired (are the clocks in step?)".into());
    }
    Ok(cert)
}
