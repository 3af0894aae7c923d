//! The registry of proxies: who each one is (its Hello), what was sent to
//! it and what it acknowledged, and whether it is connected; the live
//! endpoints of the mesh are the workloads of these proxies. A disconnected
//! proxy stays an endpoint for a grace period so a controller or network
//! blip does not empty a service.

use crate::compile::Endpoint;
use serde::Serialize;
use std::net::IpAddr;
use weft_identity::SpiffeId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{watch, Notify};
use weft_proto::v1::{ConfigPush, Hello};

/// Sync state as `weft proxy-status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SyncStatus {
    /// The proxy runs the config the controller wants it to run.
    Synced,
    /// The proxy runs something older: a push is in flight, or could not be delivered.
    Stale,
    /// The proxy refused the latest push; it runs an older config.
    Nacked,
    Disconnected,
}

pub(crate) struct Entry {
    pub(crate) hello: Hello,
    /// Who the proxy proved to be.
    pub(crate) proven: Proven,
    /// The proxy's next push: a slot, not a queue. A slow proxy is sent only
    /// the latest config when it reads again; nothing waits for it.
    pub(crate) sender: Option<watch::Sender<Option<ConfigPush>>>,
    /// Which stream this entry belongs to (a reconnect replaces it).
    pub(crate) session: u64,
    pub(crate) disconnected_at: Option<Instant>,
    pub(crate) last_seen: SystemTime,
    /// The version the controller last computed for this proxy: SYNCED means acked this.
    pub(crate) wanted_version: String,
    pub(crate) sent_version: String,
    pub(crate) sent_nonce: String,
    /// The config last sent whole or by delta, to compute the next delta from.
    pub(crate) sent_config: Option<Arc<weft_proto::config::ProxyConfig>>,
    /// The last push was an endpoint delta (a NACK of it asks for the whole config).
    pub(crate) sent_delta: bool,
    pub(crate) acked_version: String,
    pub(crate) last_nack: Option<String>,
    pub(crate) config: Option<Arc<serde_json::Value>>,
    /// When the change behind the pushes not yet acknowledged was first seen.
    pub(crate) change_seen: Option<Instant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub proxy_id: String,
    pub workload: String,
    pub namespace: String,
    pub address: String,
    /// The SPIFFE ID the proxy proved with its certificate (none under `--insecure-dev` without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub status: SyncStatus,
    /// Whether the workload takes traffic: false while its app's readiness
    /// probes fail and once its proxy said it is leaving (then it is no endpoint).
    pub ready: bool,
    pub sent_version: String,
    pub acked_version: String,
    pub last_nack: Option<String>,
    /// Seconds since the proxy was last heard from.
    pub last_seen_seconds_ago: u64,
}

/// Who a proxy proved to be when it said Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proven {
    /// Its workload certificate: this SPIFFE ID.
    Identity(SpiffeId),
    /// Nothing (`--insecure-dev` only): known by the address it connects from.
    Unverified(IpAddr),
}

impl std::fmt::Display for Proven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proven::Identity(id) => write!(f, "{id}"),
            Proven::Unverified(ip) => write!(f, "an unverified proxy at {ip}"),
        }
    }
}

pub struct Registry {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Wakes the push loop: the store or the registry changed.
    pub changed: Notify,
    pub(crate) next_session: std::sync::atomic::AtomicU64,
    pub(crate) next_nonce: std::sync::atomic::AtomicU64,
    /// How long a disconnected proxy's workload stays an endpoint.
    pub grace: Duration,
    /// Pushes, ACKs, NACKs, certificates: the controller's metrics.
    pub metrics: crate::metrics::ControlMetrics,
}

impl Registry {
    pub fn new(grace: Duration) -> Arc<Registry> {
        Arc::new(Registry {
            entries: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            next_session: 1.into(),
            next_nonce: 1.into(),
            grace,
            metrics: Default::default(),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn statuses(&self) -> Vec<ProxyStatus> {
        self.lock()
            .iter()
            .map(|(id, e)| ProxyStatus {
                proxy_id: id.clone(),
                workload: e.hello.workload.clone(),
                namespace: e.hello.namespace.clone(),
                address: e.hello.address.clone(),
                identity: match &e.proven {
                    Proven::Identity(id) => Some(id.to_string()),
                    Proven::Unverified(_) => None,
                },
                status: if e.sender.is_none() {
                    SyncStatus::Disconnected
                } else if e.last_nack.is_some() {
                    SyncStatus::Nacked
                } else if !e.wanted_version.is_empty() && e.wanted_version == e.acked_version {
                    SyncStatus::Synced
                } else {
                    SyncStatus::Stale
                },
                ready: e.hello.ready,
                sent_version: e.sent_version.clone(),
                acked_version: e.acked_version.clone(),
                last_nack: e.last_nack.clone(),
                last_seen_seconds_ago: e.last_seen.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            })
            .collect()
    }

    /// The config last sent to a proxy, as sent.
    pub fn sent_config_of(&self, proxy_id: &str) -> Option<Arc<weft_proto::config::ProxyConfig>> {
        self.lock().get(proxy_id).and_then(|e| e.sent_config.clone())
    }

    /// The config last sent to a proxy.
    pub fn config_of(&self, proxy_id: &str) -> Option<Arc<serde_json::Value>> {
        self.lock().get(proxy_id).and_then(|e| e.config.clone())
    }

    /// Workloads of connected proxies, and of disconnected ones within the grace period.
    pub fn endpoints(&self, trust_domain: &str) -> Vec<Endpoint> {
        let grace = self.grace;
        self.lock()
            .values()
            .filter(|e| e.disconnected_at.is_none_or(|t| t.elapsed() < grace))
            // A proxy that said it is leaving (draining) takes no new traffic.
            .filter(|e| e.hello.ready)
            .filter_map(|e| {
                Some(Endpoint {
                    namespace: e.hello.namespace.clone(),
                    labels: e.hello.labels.clone().into_iter().collect(),
                    address: e.hello.address.parse().ok()?,
                    identity: e
                        .hello
                        .mtls
                        .then(|| format!("spiffe://{trust_domain}/ns/{}/sa/{}", e.hello.namespace, e.hello.service_account)),
                    weight: 1,
                    verified: matches!(e.proven, Proven::Identity(_)),
                    workload: Some({
                        let mut m = weft_proto::config::WorkloadMeta::from_labels(&e.hello.workload, &e.hello.namespace, &e.hello.labels);
                        m.cluster = e.hello.cluster_id.clone();
                        m
                    }),
                })
            })
            .collect()
    }

    /// The gauges of the controller's metrics: connected proxies and their sync state.
    pub fn gauges(&self, root_expiry_unix: Option<i64>) -> crate::metrics::Gauges {
        let entries = self.lock();
        let connected: Vec<&Entry> = entries.values().filter(|e| e.sender.is_some()).collect();
        crate::metrics::Gauges {
            connected: connected.len() as u64,
            root_expiry_unix,
            stale: connected.iter().filter(|e| e.last_nack.is_none() && e.acked_version != e.wanted_version).count() as u64,
            nacked: connected.iter().filter(|e| e.last_nack.is_some()).count() as u64,
        }
    }

    /// Forgets proxies disconnected for longer than the grace period.
    pub(crate) fn expire(&self) -> bool {
        let grace = self.grace;
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.disconnected_at.is_none_or(|t| t.elapsed() < grace));
        before != entries.len()
    }
}

