//! The controller's side of the push protocol: a registry of connected
//! proxies (who they are, what was sent, what was acknowledged), the gRPC
//! service each proxy streams with, and the loop that recomputes and pushes
//! configs when the store or the set of workloads changes.
//!
//! Bursts of changes are debounced; a proxy only gets a push when its config
//! actually changed (same config, same version); a disconnected proxy stays
//! an endpoint for a grace period so a controller or network blip does not
//! empty a service.

use crate::api::Controller;
use crate::compile::{self, Endpoint};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, Notify};
use tonic::{Request, Response, Status, Streaming};
use weft_proto::v1::{proxy_config_service_server::ProxyConfigService, proxy_message, CertifyRequest, CertifyResponse, ConfigPush, Hello, ProxyMessage};

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

struct Entry {
    hello: Hello,
    sender: Option<mpsc::Sender<Result<ConfigPush, Status>>>,
    /// Which stream this entry belongs to (a reconnect replaces it).
    session: u64,
    disconnected_at: Option<Instant>,
    last_seen: SystemTime,
    /// The version the controller last computed for this proxy: SYNCED means acked this.
    wanted_version: String,
    sent_version: String,
    sent_nonce: String,
    /// The config last sent whole or by delta, to compute the next delta from.
    sent_config: Option<Arc<weft_proto::config::ProxyConfig>>,
    /// The last push was an endpoint delta (a NACK of it asks for the whole config).
    sent_delta: bool,
    acked_version: String,
    last_nack: Option<String>,
    config: Option<Arc<serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub proxy_id: String,
    pub workload: String,
    pub namespace: String,
    pub address: String,
    pub status: SyncStatus,
    pub sent_version: String,
    pub acked_version: String,
    pub last_nack: Option<String>,
    /// Seconds since the proxy was last heard from.
    pub last_seen_seconds_ago: u64,
}

pub struct Registry {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Wakes the push loop: the store or the registry changed.
    pub changed: Notify,
    next_session: std::sync::atomic::AtomicU64,
    next_nonce: std::sync::atomic::AtomicU64,
    /// How long a disconnected proxy's workload stays an endpoint.
    pub grace: Duration,
}

impl Registry {
    pub fn new(grace: Duration) -> Arc<Registry> {
        Arc::new(Registry {
            entries: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            next_session: 1.into(),
            next_nonce: 1.into(),
            grace,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
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
                status: if e.sender.is_none() {
                    SyncStatus::Disconnected
                } else if e.last_nack.is_some() {
                    SyncStatus::Nacked
                } else if !e.wanted_version.is_empty() && e.wanted_version == e.acked_version {
                    SyncStatus::Synced
                } else {
                    SyncStatus::Stale
                },
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
                })
            })
            .collect()
    }

    /// Forgets proxies disconnected for longer than the grace period.
    fn expire(&self) -> bool {
        let grace = self.grace;
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.disconnected_at.is_none_or(|t| t.elapsed() < grace));
        before != entries.len()
    }
}

/// Whether a Hello may say what it says. A proxy connected with its
/// certificate may speak only for that identity's namespace and service
/// account; only such a proxy may say it serves mTLS (peers would be told to
/// expect that identity at its address). A proxy without a certificate is
/// taken at its word otherwise (development meshes without tokens), unless
/// the controller requires certificates.
fn admit(hello: &Hello, peer: Option<&crate::grpc_listener::ProxyPeer>, require_certificate: bool) -> Result<(), String> {
    match peer.and_then(|p| p.identity.as_ref()) {
        Some(id) if id.namespace != hello.namespace || id.service_account != hello.service_account => Err(format!(
            "the proxy's certificate is {id}, but its Hello speaks for namespace {:?} service account {:?}",
            hello.namespace, hello.service_account
        )),
        Some(_) => Ok(()),
        None if hello.mtls => Err("a proxy that serves mTLS must connect with its workload certificate".into()),
        None if require_certificate => {
            Err("this controller requires a workload certificate (--require-proxy-certificates): start the proxy with --token".into())
        }
        None => Ok(()),
    }
}

/// The gRPC service proxies stream with (and get their certificates from).
pub struct PushService {
    pub registry: Arc<Registry>,
    pub ca: Arc<crate::identity::MeshCa>,
    /// Only proxies that connect with a workload certificate may stream.
    pub require_certificates: bool,
}

#[tonic::async_trait]
impl ProxyConfigService for PushService {
    type StreamStream = tokio_stream::wrappers::ReceiverStream<Result<ConfigPush, Status>>;

    async fn certify(&self, request: Request<CertifyRequest>) -> Result<Response<CertifyResponse>, Status> {
        let tls = request.extensions().get::<crate::grpc_listener::ProxyPeer>().is_some_and(|p| p.tls);
        let r = request.into_inner();
        tracing::debug!(proxy = %r.proxy_id, tls, renewal = !r.current_chain_pem.is_empty(), "certificate requested");
        let (issued, id, roots_pem) = self.ca.prove(&r.token, &r.csr_pem, &r.current_chain_pem, &r.proof).and_then(|id| self.ca.certify(&r.proxy_id, id, &r.csr_pem)).map_err(|e| {
            tracing::warn!(proxy = %r.proxy_id, "certificate refused: {e}");
            Status::permission_denied(e)
        })?;
        Ok(Response::new(CertifyResponse {
            spiffe_id: id.to_string(),
            chain_pem: issued.chain_pem,
            roots_pem,
            not_after_unix: issued.not_after.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
            serial: issued.serial,
        }))
    }

    async fn stream(&self, request: Request<Streaming<ProxyMessage>>) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request.extensions().get::<crate::grpc_listener::ProxyPeer>().cloned();
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| Status::invalid_argument("the stream closed before Hello"))?;
        let Some(proxy_message::Kind::Hello(hello)) = first.kind else {
            return Err(Status::invalid_argument("the first message must be Hello"));
        };
        if hello.proxy_id.is_empty() {
            return Err(Status::invalid_argument("Hello.proxy_id is empty"));
        }
        admit(&hello, peer.as_ref(), self.require_certificates).map_err(|e| {
            tracing::warn!(proxy = %hello.proxy_id, "Hello refused: {e}");
            Status::permission_denied(e)
        })?;
        let (tx, rx) = mpsc::channel(4);
        let registry = self.registry.clone();
        let session = registry.next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = hello.proxy_id.clone();
        let (tls, peer_id) = peer.as_ref().map(|p| (p.tls, p.identity.as_ref().map(|i| i.to_string()))).unwrap_or((false, None));
        tracing::info!(proxy = %id, address = %hello.address, running = %hello.version, tls, identity = peer_id.as_deref().unwrap_or("-"), "proxy connected");
        {
            // The proxy says which version it runs (after a controller restart, or a
            // reconnect): a push is owed only if that is not the current one.
            let mut entries = registry.lock();
            let (config, wanted_version, sent_config) = entries
                .remove(&id)
                .map(|p| (p.config, p.wanted_version, p.sent_config))
                .unwrap_or_default();
            // Deltas may build on what the proxy says it runs, if we know that config.
            let sent_config = sent_config.filter(|c| c.version == hello.version);
            entries.insert(
                id.clone(),
                Entry {
                    wanted_version,
                    sent_config,
                    sent_delta: false,
                    sent_version: hello.version.clone(),
                    acked_version: hello.version.clone(),
                    sent_nonce: String::new(),
                    last_nack: None,
                    config,
                    hello,
                    sender: Some(tx),
                    session,
                    disconnected_at: None,
                    last_seen: SystemTime::now(),
                },
            );
        }
        registry.changed.notify_one();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(ProxyMessage { kind: Some(proxy_message::Kind::Ack(ack)) })) => {
                        let mut entries = registry.lock();
                        if let Some(e) = entries.get_mut(&id).filter(|e| e.session == session) {
                            e.last_seen = SystemTime::now();
                            if ack.nonce != e.sent_nonce {
                                continue; // An answer to an older push.
                            }
                            if ack.accepted {
                                e.acked_version = ack.version;
                                e.last_nack = None;
                            } else if e.sent_delta {
                                // The proxy did not run the delta's base: send it the whole config.
                                tracing::info!(proxy = %id, "endpoint update refused ({}); sending the whole config", ack.error);
                                e.sent_version.clear();
                                e.sent_config = None;
                                drop(entries);
                                registry.changed.notify_one();
                            } else {
                                tracing::warn!(proxy = %id, version = %ack.version, "proxy refused config: {}", ack.error);
                                e.last_nack = Some(ack.error);
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            tracing::info!(proxy = %id, "proxy disconnected");
            {
                let mut entries = registry.lock();
                if let Some(e) = entries.get_mut(&id).filter(|e| e.session == session) {
                    e.sender = None;
                    e.disconnected_at = Some(Instant::now());
                }
            }
            registry.changed.notify_one();
            // Recompute once the grace period is over, to drop the endpoint.
            let grace = registry.grace;
            tokio::time::sleep(grace + Duration::from_millis(10)).await;
            registry.changed.notify_one();
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// Proxies in one namespace under one Sidecar (by its name) and with the same
/// inbound policy get the same config.
type ScopeKey = (String, Option<String>, weft_proto::config::InboundPolicy);

/// One compiled config, encoded once and shared by every push of it.
#[derive(Clone)]
struct Compiled {
    version: String,
    config: Arc<weft_proto::config::ProxyConfig>,
    json: bytes::Bytes,
    value: Option<Arc<serde_json::Value>>,
}

/// Recomputes and pushes, forever. Changes within `debounce` of each other
/// are handled together.
///
/// A controller that restarts with stored state knows the configuration but
/// not yet the endpoints: those are the proxies, which are still
/// reconnecting. Pushing now would send them clusters without endpoints, so
/// the first push waits one grace period (the proxies keep serving meanwhile).
pub async fn push_loop(controller: Arc<Controller>, registry: Arc<Registry>, debounce: Duration) {
    if controller.store.revision().unwrap_or(0) > 0 {
        tracing::info!("restarted with stored state: first push in {}ms, once proxies have reconnected", registry.grace.as_millis());
        tokio::time::sleep(registry.grace).await;
    }
    loop {
        tokio::select! {
            _ = registry.changed.notified() => {}
            _ = controller.changed.notified() => {}
        }
        tokio::time::sleep(debounce).await;
        registry.expire();
        let resources = match controller.loaded() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read the store: {e}");
                continue;
            }
        };
        let mesh = weft_model::mesh::Mesh::build(&resources, &controller.analysis.root_namespace);
        let mut endpoints = compile::declared_endpoints(&mesh);
        endpoints.extend(registry.endpoints(controller.ca.trust_domain()));
        endpoints.sort();
        endpoints.dedup();
        // Proxies under the same Sidecar scope (and namespace) share one config.
        let mut configs: BTreeMap<ScopeKey, Compiled> = BTreeMap::new();
        let mut sends = Vec::new();
        {
            let mut entries = registry.lock();
            for (id, e) in entries.iter_mut() {
                let Some(sender) = e.sender.clone() else { continue };
                let labels: BTreeMap<String, String> = e.hello.labels.clone().into_iter().collect();
                let scope = mesh.sidecar_for(&e.hello.namespace, &labels);
                let inbound = compile::inbound_policy(&mesh, &e.hello.namespace, &labels);
                let key = (e.hello.namespace.clone(), scope.map(|s| s.source.to_string()), inbound.clone());
                let Compiled { version, config, json, value } = configs
                    .entry(key)
                    .or_insert_with(|| {
                        let mut config = compile::compile(&mesh, &endpoints, &e.hello.namespace, scope);
                        config.inbound = inbound;
                        let version = compile::version_of(&config);
                        config.version = version.clone();
                        Compiled {
                            version,
                            json: serde_json::to_vec(&config).unwrap_or_default().into(),
                            value: serde_json::to_value(&config).ok().map(Arc::new),
                            config: Arc::new(config),
                        }
                    })
                    .clone();
                e.wanted_version = version.clone();
                if e.sent_version == version {
                    continue;
                }
                let nonce = registry.next_nonce.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string();
                // When only endpoints changed since the config the proxy runs, send just those.
                let delta = e
                    .sent_config
                    .as_ref()
                    .filter(|_| e.acked_version == e.sent_version)
                    .and_then(|prev| prev.endpoint_delta(&config))
                    .and_then(|d| serde_json::to_vec(&d).ok());
                let push = match delta {
                    Some(endpoints) => ConfigPush {
                        version: version.clone(),
                        nonce: nonce.clone(),
                        config_json: bytes::Bytes::new(),
                        endpoints_json: endpoints.into(),
                        base_version: e.sent_version.clone(),
                    },
                    None => ConfigPush {
                        version: version.clone(),
                        nonce: nonce.clone(),
                        config_json: json,
                        endpoints_json: bytes::Bytes::new(),
                        base_version: String::new(),
                    },
                };
                e.sent_delta = push.config_json.is_empty();
                e.sent_version = version;
                e.sent_nonce = nonce;
                e.sent_config = Some(config);
                e.config = value;
                sends.push((id.clone(), sender, push));
            }
        }
        for (id, sender, push) in sends {
            if sender.send(Ok(push)).await.is_err() {
                tracing::debug!(proxy = %id, "push to a closed stream");
            }
        }
    }
}

#[cfg(test)]
mod admit_tests {
    use super::*;
    use crate::grpc_listener::ProxyPeer;

    fn hello(ns: &str, sa: &str, mtls: bool) -> Hello {
        Hello { proxy_id: "p".into(), namespace: ns.into(), service_account: sa.into(), mtls, ..Hello::default() }
    }

    fn peer(id: Option<&str>) -> ProxyPeer {
        ProxyPeer { remote: "10.0.0.1:5000".parse().unwrap(), identity: id.map(|i| i.parse().unwrap()), tls: true }
    }

    #[test]
    fn a_hello_speaks_only_for_the_certificate_it_came_with() {
        let reviews = peer(Some("spiffe://cluster.local/ns/prod/sa/reviews"));
        assert!(admit(&hello("prod", "reviews", true), Some(&reviews), true).is_ok());
        let e = admit(&hello("bank", "admin", true), Some(&reviews), false).unwrap_err();
        assert!(e.contains("certificate is spiffe://cluster.local/ns/prod/sa/reviews"), "{e}");
        // Without a certificate, no mTLS claim (peers would expect that identity there).
        assert!(admit(&hello("prod", "reviews", true), Some(&peer(None)), false).unwrap_err().contains("must connect with its workload certificate"));
        assert!(admit(&hello("prod", "reviews", true), None, false).is_err());
        // A development proxy without certificate or claim is taken at its word...
        assert!(admit(&hello("prod", "reviews", false), None, false).is_ok());
        // ...unless the controller requires certificates.
        assert!(admit(&hello("prod", "reviews", false), Some(&peer(None)), true).unwrap_err().contains("--require-proxy-certificates"));
    }
}
