//! The controller's certificate authority service: the mesh CA (a root made
//! on first start and kept in the data directory, or one plugged in from
//! files), join tokens that grant one identity, and CSR signing for proxies
//! that present a valid token. The record of what was issued to which proxy
//! backs `weft proxy-config PROXY secret`.

use ring::hmac;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_identity::{CertificateAuthority, SpiffeId};

/// Files of a CA plugged in by the operator.
#[derive(Debug, Clone)]
pub struct PluggedCa {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub chain: Option<PathBuf>,
    pub roots: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct IssuedInfo {
    pub spiffe_id: String,
    pub serial: String,
    pub not_before_unix: u64,
    pub not_after_unix: u64,
    /// SHA-256 of each trusted root (DER), hex.
    pub root_fingerprints: Vec<String>,
}

/// The namespace of the control plane's own identities.
pub const CONTROL_PLANE_NAMESPACE: &str = "weft-system";

/// The longest an operator's API client certificate lives.
pub const MAX_OPERATOR_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest a join token may be used to obtain certificates.
pub const MAX_JOIN_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct MeshCa {
    ca: CertificateAuthority,
    token_key: hmac::Key,
    pub cert_ttl: Duration,
    /// How long after its certificate expired a proxy may still renew with it
    /// (its key proves it): longer outages need a new join token.
    pub renewal_grace: Duration,
    issued: Mutex<BTreeMap<String, IssuedInfo>>,
}

/// The default [`MeshCa::renewal_grace`].
pub const DEFAULT_RENEWAL_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub use weft_identity::files::{private_dir, write_atomic};

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic(path, contents, 0o600)
}

/// A 32-byte secret kept in `path`: read, or made and written when the file
/// does not exist. A file that exists but is not a key stops start-up:
/// silently making a new one would invalidate everything signed with it.
pub fn secret_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(s) if s.len() == 32 => Ok(s),
        Ok(s) => anyhow::bail!(
            "{} is damaged ({} bytes, a key is 32): restore it from a backup, or remove it to make a new one (every join token and API token signed with it stops working)",
            path.display(),
            s.len()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut s = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s).map_err(|_| anyhow::anyhow!("no randomness"))?;
            write_private(path, &s)?;
            Ok(s)
        }
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    }
}

impl MeshCa {
    /// Loads the CA: plugged-in files, else the root kept in `DATA_DIR/ca`, else a new root saved there.
    pub fn open(data_dir: &Path, trust_domain: &str, plugged: Option<&PluggedCa>, cert_ttl: Duration) -> anyhow::Result<MeshCa> {
        let dir = data_dir.join("ca");
        private_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
        let ca = match plugged {
            Some(p) => CertificateAuthority::from_pem(
                trust_domain,
                &read(&p.cert)?,
                &read(&p.key)?,
                &p.chain.as_deref().map(read).transpose()?.unwrap_or_default(),
                &read(&p.roots)?,
            )?,
            None if dir.join("root.pem").exists() => {
                let root = read(&dir.join("root.pem"))?;
                CertificateAuthority::from_pem(trust_domain, &root, &read(&dir.join("root-key.pem"))?, "", &root)?
            }
            None => {
                let ca = CertificateAuthority::generate_root(trust_domain)?;
                // The key first: a root on disk without its key would be read back as a CA that cannot sign.
                write_private(&dir.join("root-key.pem"), ca.signing_key_pem().as_bytes())?;
                write_atomic(&dir.join("root.pem"), ca.signing_cert_pem().as_bytes(), 0o644)?;
                tracing::info!(dir = %dir.display(), "created a new mesh root CA");
                ca
            }
        };
        let secret = secret_key(&dir.join("token.key"))?;
        Ok(MeshCa { ca, token_key: hmac::Key::new(hmac::HMAC_SHA256, &secret), cert_ttl, renewal_grace: DEFAULT_RENEWAL_GRACE, issued: Mutex::new(BTreeMap::new()) })
    }

    pub fn trust_domain(&self) -> &str {
        self.ca.trust_domain()
    }

    /// SHA-256 of the first root of the trust bundle: what join tokens pin.
    pub fn root_fingerprint(&self) -> Option<String> {
        let bundle = weft_identity::TrustBundle::from_pem(self.trust_domain(), &self.ca.trust_bundle_pem()).ok()?;
        bundle.roots.first().map(weft_identity::tls::fingerprint)
    }

    /// The controller's own certificate and key (PEM) for the proxies' gRPC
    /// port: `spiffe://TD/ns/weft-system/sa/weft-controller`, with the roots
    /// appended to the chain so a proxy holding only a pin can verify it.
    pub fn serving_identity(&self) -> anyhow::Result<(String, String)> {
        let id = weft_identity::tls::controller_id(self.trust_domain())?;
        let kc = weft_identity::csr::generate(&id)?;
        let issued = self.ca.sign_csr(&kc.csr_pem, &id, Duration::from_secs(365 * 24 * 3600))?;
        Ok((format!("{}{}", issued.chain_pem, self.ca.trust_bundle_pem()), kc.key_pem))
    }

    /// A server certificate and key (PEM) for DNS names: the admission webhook's.
    pub fn dns_serving_identity(&self, dns_names: &[String]) -> anyhow::Result<(String, String)> {
        Ok(self.ca.issue_dns_server(dns_names, Duration::from_secs(365 * 24 * 3600))?)
    }

    /// The trust bundle as PEM.
    pub fn trust_bundle_pem(&self) -> String {
        self.ca.trust_bundle_pem()
    }

    /// A join token granting `namespace/service_account` until `ttl` from now
    /// (at most [`MAX_JOIN_TOKEN_TTL`]). The control plane's own namespace is
    /// never granted: its identities are the controller's and its operators'.
    pub fn create_token(&self, namespace: &str, service_account: &str, ttl: Duration) -> anyhow::Result<(String, SpiffeId, u64)> {
        let id = SpiffeId::new(self.trust_domain(), namespace, service_account)?;
        if namespace == CONTROL_PLANE_NAMESPACE {
            anyhow::bail!("namespace {CONTROL_PLANE_NAMESPACE} is the control plane's own: no join token grants its identities");
        }
        if ttl.is_zero() || ttl > MAX_JOIN_TOKEN_TTL {
            anyhow::bail!("ttl must be between 1s and {}d", MAX_JOIN_TOKEN_TTL.as_secs() / 86400);
        }
        let expires = unix(SystemTime::now() + ttl);
        // The root's fingerprint rides along, so the proxy can check it talks to this CA's
        // controller before it has a trust bundle (covered by the HMAC like the rest).
        let payload = format!("{namespace}/{service_account}/{expires}/{}", self.root_fingerprint().unwrap_or_default());
        let tag = hmac::sign(&self.token_key, payload.as_bytes());
        Ok((weft_identity::token::join(payload.as_bytes(), tag.as_ref()), id, expires))
    }

    /// The identity a Kubernetes ServiceAccount proven by TokenReview gets;
    /// never one of the control plane's own.
    pub fn grant_service_account(&self, namespace: &str, service_account: &str) -> Result<SpiffeId, String> {
        if namespace == CONTROL_PLANE_NAMESPACE {
            return Err(format!("namespace {CONTROL_PLANE_NAMESPACE} is the control plane's own: its ServiceAccounts get no workload identity"));
        }
        SpiffeId::new(self.trust_domain(), namespace, service_account).map_err(|e| e.to_string())
    }

    /// The identity a token grants, if it is genuine and unexpired.
    pub fn verify_token(&self, token: &str) -> Result<SpiffeId, String> {
        let (payload, tag) = weft_identity::token::split(token).ok_or("malformed token")?;
        hmac::verify(&self.token_key, &payload, &tag).map_err(|_| "token not issued by this controller")?;
        let text = String::from_utf8(payload).map_err(|_| "malformed token")?;
        let mut parts = text.split('/');
        let (ns, sa, exp) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let exp: u64 = exp.parse().map_err(|_| "malformed token")?;
        if exp < unix(SystemTime::now()) {
            return Err("token expired; create a new one with `weft token create`".into());
        }
        SpiffeId::new(self.trust_domain(), ns, sa).map_err(|e| e.to_string())
    }

    /// The identity a Certify request proves: its current certificate (a
    /// renewal, signed with the current key) or its join token.
    pub fn prove(&self, token: &str, csr_pem: &str, current_chain_pem: &str, proof: &[u8]) -> Result<SpiffeId, String> {
        if !current_chain_pem.is_empty() {
            let bundle = weft_identity::TrustBundle::from_pem(self.trust_domain(), &self.ca.trust_bundle_pem()).map_err(|e| e.to_string())?;
            match weft_identity::tls::verify_proof_within(&bundle, current_chain_pem, csr_pem.as_bytes(), proof, self.renewal_grace) {
                Ok(id) => return Ok(id),
                Err(e) if token.is_empty() => return Err(format!("renewal refused: {e}")),
                // An expired current certificate (a long outage): the token may still be valid.
                Err(_) => {}
            }
        }
        if token.is_empty() {
            return Err("give a join token (weft token create), or the current certificate to renew".into());
        }
        self.verify_token(token)
    }

    /// Signs a proxy's CSR for the identity it proves (see [`MeshCa::prove`]),
    /// with the workload metadata it names (`workload_json`, may be empty).
    pub fn certify(&self, proxy_id: &str, id: SpiffeId, csr_pem: &str, workload_json: &str) -> Result<(weft_identity::IssuedCertificate, SpiffeId, String), String> {
        let workload = workload_extension(&id, workload_json)?;
        let issued = self.ca.sign_csr_for_workload(csr_pem, &id, self.cert_ttl, &workload).map_err(|e| e.to_string())?;
        let roots = self.ca.trust_bundle_pem();
        let fingerprints = weft_identity::TrustBundle::from_pem(self.trust_domain(), &roots)
            .map(|b| b.roots.iter().map(weft_identity::tls::fingerprint).collect())
            .unwrap_or_default();
        self.issued.lock().unwrap_or_else(|e| e.into_inner()).insert(
            proxy_id.to_string(),
            IssuedInfo {
                spiffe_id: id.to_string(),
                serial: issued.serial.clone(),
                not_before_unix: unix(issued.not_before),
                not_after_unix: unix(issued.not_after),
                root_fingerprints: fingerprints,
            },
        );
        tracing::info!(proxy = proxy_id, identity = %id, serial = %issued.serial, "certificate issued");
        Ok((issued, id, roots))
    }

    /// A client certificate for an operator of the API: the control-plane
    /// identity `weft-system/SERVICE_ACCOUNT` (`weft-admin` or `weft-reader`,
    /// see `auth`), for at most [`MAX_OPERATOR_CERT_TTL`]. Only the API (admin role) asks.
    pub fn certify_operator(&self, sa: &str, csr_pem: &str, ttl: Duration) -> Result<(weft_identity::IssuedCertificate, String), String> {
        if ttl.is_zero() || ttl > MAX_OPERATOR_CERT_TTL {
            return Err(format!("ttl must be between 1s and {}h", MAX_OPERATOR_CERT_TTL.as_secs() / 3600));
        }
        if !matches!(sa, "weft-admin" | "weft-reader") {
            return Err(format!("{sa:?} is not an operator identity"));
        }
        let id = SpiffeId::new(self.trust_domain(), CONTROL_PLANE_NAMESPACE, sa).map_err(|e| e.to_string())?;
        let issued = self.ca.sign_csr(csr_pem, &id, ttl).map_err(|e| e.to_string())?;
        Ok((issued, self.ca.trust_bundle_pem()))
    }

    /// Every proxy's last certificate, by proxy id.
    pub fn issued(&self) -> BTreeMap<String, IssuedInfo> {
        self.issued.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// When the first root of the trust bundle expires (unix seconds).
    pub fn root_expiry_unix(&self) -> Option<i64> {
        let bundle = weft_identity::TrustBundle::from_pem(self.trust_domain(), &self.ca.trust_bundle_pem()).ok()?;
        weft_identity::tls::serial_and_expiry(bundle.roots.first()?).ok().map(|(_, t)| t)
    }

    pub fn issued_to(&self, proxy_id: &str) -> Option<IssuedInfo> {
        self.issued.lock().unwrap_or_else(|e| e.into_inner()).get(proxy_id).cloned()
    }
}

/// What goes into a certificate's workload extension: the proxy's metadata,
/// read strictly (bounded, well-formed) and put in the granted namespace.
/// It names the workload in peers' metrics; it is never used to authorize.
fn workload_extension(id: &SpiffeId, workload_json: &str) -> Result<String, String> {
    use weft_proto::config::WorkloadMeta;
    if workload_json.is_empty() {
        return Ok(String::new());
    }
    if workload_json.len() > WorkloadMeta::MAX_ENCODED {
        return Err(format!("workload metadata is {} bytes; at most {} are signed", workload_json.len(), WorkloadMeta::MAX_ENCODED));
    }
    let mut meta: WorkloadMeta = serde_json::from_str(workload_json).map_err(|e| format!("workload metadata is not valid: {e}"))?;
    meta.namespace = id.namespace.clone();
    serde_json::to_string(&meta).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(tag: &str) -> (MeshCa, PathBuf) {
        let dir = std::env::temp_dir().join(format!("weft-meshca-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (MeshCa::open(&dir, "cluster.local", None, Duration::from_secs(60)).unwrap(), dir)
    }

    #[test]
    fn tokens_grant_one_identity_and_cannot_be_forged() {
        let (m, dir) = ca("tokens");
        let (token, id, _) = m.create_token("shop", "checkout", Duration::from_secs(60)).unwrap();
        assert_eq!(m.verify_token(&token).unwrap(), id);
        assert_eq!(m.prove(&token, "", "", &[]).unwrap(), id);
        // Changing the granted identity breaks the signature.
        let (payload, tag) = token.split_once('.').unwrap();
        let forged_payload = weft_identity::token::hex(
            String::from_utf8(weft_identity::token::unhex(payload).unwrap()).unwrap().replace("shop", "bank").as_bytes(),
        );
        assert_eq!(m.verify_token(&format!("{forged_payload}.{tag}")).unwrap_err(), "token not issued by this controller");
        let (old, _, _) = m.create_token("shop", "checkout", Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert!(m.verify_token(&old).unwrap_err().contains("expired"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tokens_are_never_minted_for_the_control_plane_or_for_ever() {
        let (m, dir) = ca("limits");
        let e = m.create_token("weft-system", "weft-controller", Duration::from_secs(60)).unwrap_err().to_string();
        assert!(e.contains("weft-system is the control plane's own"), "{e}");
        let e = m.create_token("shop", "checkout", Duration::from_secs(u64::MAX - 1)).unwrap_err().to_string();
        assert!(e.contains("ttl must be between 1s and 30d"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_root_and_token_secret_survive_a_restart() {
        let (m, dir) = ca("restart");
        let (token, _, _) = m.create_token("a", "b", Duration::from_secs(60)).unwrap();
        let root = m.ca.trust_bundle_pem();
        let again = MeshCa::open(&dir, "cluster.local", None, Duration::from_secs(60)).unwrap();
        assert_eq!(again.ca.trust_bundle_pem(), root);
        assert!(again.verify_token(&token).is_ok());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("ca/root-key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.join("ca")).unwrap().permissions().mode() & 0o777, 0o700);
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("ca")).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
        assert!(leftovers.is_empty(), "atomic writes leave no temporary files");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_damaged_token_key_stops_the_controller_instead_of_invalidating_every_token() {
        let (m, dir) = ca("damaged");
        let (token, _, _) = m.create_token("a", "b", Duration::from_secs(60)).unwrap();
        std::fs::write(dir.join("ca/token.key"), b"half a ke").unwrap();
        let e = MeshCa::open(&dir, "cluster.local", None, Duration::from_secs(60)).err().unwrap().to_string();
        assert!(e.contains("token.key is damaged (9 bytes, a key is 32)"), "{e}");
        // Removed on purpose: a new key, and the old token no longer verifies.
        std::fs::remove_file(dir.join("ca/token.key")).unwrap();
        let fresh = MeshCa::open(&dir, "cluster.local", None, Duration::from_secs(60)).unwrap();
        assert!(fresh.verify_token(&token).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_token_for_one_namespace_cannot_certify_another() {
        let (m, dir) = ca("grant");
        let (token, _, _) = m.create_token("shop", "checkout", Duration::from_secs(60)).unwrap();
        let kc = weft_identity::csr::generate(&SpiffeId::new("cluster.local", "bank", "admin").unwrap()).unwrap();
        let e = m.certify("p", m.prove(&token, &kc.csr_pem, "", &[]).unwrap(), &kc.csr_pem, "").unwrap_err();
        assert!(e.contains("may only get spiffe://cluster.local/ns/shop/sa/checkout"), "{e}");
        let kc = weft_identity::csr::generate(&SpiffeId::new("cluster.local", "shop", "checkout").unwrap()).unwrap();
        let (cert, id, _) = m.certify("p", m.prove(&token, &kc.csr_pem, "", &[]).unwrap(), &kc.csr_pem, "").unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/checkout");
        assert_eq!(m.issued_to("p").unwrap().serial, cert.serial);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_renewal_is_proven_by_the_current_certificate_not_the_token() {
        let (m, dir) = ca("renew");
        let (token, id, _) = m.create_token("shop", "checkout", Duration::from_secs(60)).unwrap();
        let first = weft_identity::csr::generate(&id).unwrap();
        let (issued, _, _) = m.certify("p1", m.prove(&token, &first.csr_pem, "", &[]).unwrap(), &first.csr_pem, "").unwrap();
        let next = weft_identity::csr::generate(&id).unwrap();
        let proof = weft_identity::csr::prove(&first.key_pem, next.csr_pem.as_bytes()).unwrap();
        // No token at all (it may have expired): the certificate and the proof are enough.
        assert_eq!(m.prove("", &next.csr_pem, &issued.chain_pem, &proof).unwrap(), id);
        // A proof over another CSR, or by another key, is refused.
        let other = weft_identity::csr::generate(&id).unwrap();
        assert!(m.prove("", &other.csr_pem, &issued.chain_pem, &proof).unwrap_err().contains("not signed by the current certificate's key"));
        let wrong_key = weft_identity::csr::prove(&other.key_pem, next.csr_pem.as_bytes()).unwrap();
        assert!(m.prove("", &next.csr_pem, &issued.chain_pem, &wrong_key).is_err());
        // Expired, but within the renewal grace (a long outage): its key still proves it.
        let (short, sdir) = ca("renew-expired");
        let (stoken, _, _) = short.create_token("shop", "checkout", Duration::from_secs(60)).unwrap();
        let kc = weft_identity::csr::generate(&id).unwrap();
        let now = std::time::SystemTime::now();
        let old = short.ca.sign_csr_valid(&kc.csr_pem, &id, now - Duration::from_secs(7200), now - Duration::from_secs(3600)).unwrap();
        let fresh = weft_identity::csr::generate(&id).unwrap();
        let proof = weft_identity::csr::prove(&kc.key_pem, fresh.csr_pem.as_bytes()).unwrap();
        assert_eq!(short.prove("", &fresh.csr_pem, &old.chain_pem, &proof).unwrap(), id, "an hour past expiry, within 7 days");
        let mut strict = MeshCa::open(&sdir, "cluster.local", None, Duration::from_secs(60)).unwrap();
        strict.renewal_grace = Duration::from_secs(60);
        assert!(strict.prove("", &fresh.csr_pem, &old.chain_pem, &proof).unwrap_err().contains("renewal refused"), "beyond the grace");
        assert_eq!(strict.prove(&stoken, &fresh.csr_pem, &old.chain_pem, &proof).unwrap(), id, "a valid join token still works");
        let _ = std::fs::remove_dir_all(sdir);
        // A certificate from another CA is refused.
        let (foreign, fdir) = ca("renew-foreign");
        let (ftoken, _, _) = foreign.create_token("shop", "checkout", Duration::from_secs(60)).unwrap();
        let (fissued, _, _) = foreign.certify("p2", foreign.prove(&ftoken, &first.csr_pem, "", &[]).unwrap(), &first.csr_pem, "").unwrap();
        assert!(m.prove("", &next.csr_pem, &fissued.chain_pem, &proof).unwrap_err().contains("does not verify"));
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(fdir);
    }
}
