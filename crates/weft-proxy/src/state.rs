//! What every connection shares: the current config snapshot, the metrics,
//! the clients for traffic to original destinations, the workload
//! certificate and the drain signal. Built once by `app::run`; the request
//! path reads it, never changes it (config changes arrive as new snapshots).

use crate::config::{BuildContext, Snapshot, Workload};
use crate::drain::Drain;
use crate::telemetry::authz::AuthzCounters;
use crate::telemetry::Metrics;
use crate::upstream::HttpClients;
use crate::workload_cert::WorkloadCert;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::watch;

pub struct Proxy {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Clients for traffic to original destinations (passthrough, inbound).
    pub passthrough: HttpClients,
    /// `/ready` answers 200 (listeners bound, not draining).
    pub ready: AtomicBool,
    pub drain: Drain,
    /// The workload certificate, once there is one.
    pub certificate: watch::Sender<Option<Arc<WorkloadCert>>>,
    /// The workload this proxy serves (for source matches).
    pub workload: Arc<Workload>,
    /// Mirrored copies in flight (see `http::mirror`).
    pub mirrors: Arc<tokio::sync::Semaphore>,
    /// The authorization counters of the current config's policies.
    pub authz_counters: std::sync::RwLock<Option<Arc<AuthzCounters>>>,
}

impl Proxy {
    /// What a new snapshot is built with.
    pub fn build_context(&self) -> BuildContext {
        BuildContext { certificate: self.certificate.subscribe(), workload: self.workload.clone() }
    }

    /// The config in force now; a request keeps the one it started with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The Prometheus text, with the gauges that are read at scrape time set.
    pub fn render_metrics(&self) -> String {
        let left = self.certificate.borrow().as_ref().map(|c| c.seconds_left()).unwrap_or(0);
        self.metrics.certificate_expiry.set(left);
        self.metrics.render()
    }

    /// The counters for a snapshot's policies: made once per config, shared by its requests.
    pub fn authz_counters(&self, snapshot: &Snapshot) -> Arc<AuthzCounters> {
        if let Some(c) = self.authz_counters.read().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|c| c.is_for(&snapshot.authorizer)) {
            return c.clone();
        }
        let fresh = Arc::new(AuthzCounters::new(self.metrics.clone(), snapshot.authorizer.clone()));
        *self.authz_counters.write().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        fresh
    }

    /// This proxy's own SPIFFE ID, once it has a certificate.
    pub fn own_identity(&self) -> Option<String> {
        self.certificate.borrow().as_ref().map(|c| c.spiffe_id.to_string())
    }
}
