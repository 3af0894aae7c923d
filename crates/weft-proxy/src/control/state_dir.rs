//! What a proxy keeps on disk (`--state-dir`, owner-only, in the pod's own
//! volume): its last workload certificate and key, and the last config the
//! controller pushed. A proxy restarted while the controller is away starts
//! with them, while the certificate is valid, instead of with nothing.

use crate::config::ProxyConfig;
use crate::workload_cert::WorkloadCert;
use std::path::{Path, PathBuf};
use weft_identity::SpiffeId;

pub struct StateDir {
    dir: PathBuf,
}

const CONFIG: &str = "config.json";

impl StateDir {
    /// Opens (creating, 0700) the directory.
    pub fn open(dir: &Path) -> std::io::Result<StateDir> {
        weft_identity::files::private_dir(dir)?;
        Ok(StateDir { dir: dir.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Keeps `cert` (failures are logged: serving matters more than keeping).
    pub fn save_certificate(&self, cert: &WorkloadCert) {
        if let Err(e) = cert.save(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "cannot keep the workload certificate: {e}");
        }
    }

    /// The kept certificate, if it is `expected`'s and still valid.
    pub fn load_certificate(&self, expected: &SpiffeId) -> Option<WorkloadCert> {
        if !self.dir.join("key.pem").exists() {
            return None;
        }
        match crate::workload_cert::load_dir(&self.dir, &expected.trust_domain) {
            Ok(c) if c.spiffe_id != *expected => {
                tracing::warn!("the kept certificate is {}, this proxy serves {expected}: not used", c.spiffe_id);
                None
            }
            Ok(c) if c.seconds_left() <= 0 => {
                tracing::info!(identity = %c.spiffe_id, "the kept certificate has expired: renewing it with the controller");
                // An expired certificate still proves the key to the controller (within its grace).
                Some(c)
            }
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "the kept certificate cannot be read: {e}");
                None
            }
        }
    }

    /// Keeps the config in force.
    pub fn save_config(&self, cfg: &ProxyConfig) {
        let result = serde_json::to_vec(cfg).map_err(std::io::Error::other).and_then(|json| weft_identity::files::write_atomic(&self.dir.join(CONFIG), &json, 0o600));
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot keep the config: {e}");
        }
    }

    /// The kept config, if it parses and checks.
    pub fn load_config(&self) -> Option<ProxyConfig> {
        let bytes = std::fs::read(self.dir.join(CONFIG)).ok()?;
        match serde_json::from_slice::<ProxyConfig>(&bytes).map_err(|e| e.to_string()).and_then(|c| c.check().map(|_| c)) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "the kept config is not usable ({e}); starting without it");
                None
            }
        }
    }
}
