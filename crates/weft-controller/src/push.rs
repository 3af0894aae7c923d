//! The push loop: when the store or the set of workloads changes, it
//! recomputes each proxy's config (shared by proxies of one scope) and
//! pushes it to the proxies whose config changed, whole or as an endpoint
//! delta. Bursts of changes are debounced; a proxy only gets a push when
//! its config actually changed (same config, same version).

use crate::compile;
use crate::registry::Registry;
use crate::state::Controller;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use weft_proto::v1::ConfigPush;

/// Proxies in one namespace under one Sidecar (by its name) and with the same
/// inbound policy and telemetry settings (as JSON) get the same config.
type ScopeKey = (String, Option<String>, weft_proto::config::InboundPolicy, String);

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
        let seen = std::time::Instant::now();
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
        controller.jwks.fetch_new(compile::authz::key_set_urls(&mesh)).await;
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
                let mut inbound = compile::inbound_policy(&mesh, &e.hello.namespace, &labels);
                inbound.port_protocols = compile::port_protocols(&mesh, &e.hello.namespace, &labels);
                inbound.services = compile::inbound_services(&mesh, &e.hello.namespace, &labels);
                let workload = compile::authz::WorkloadRef { namespace: &e.hello.namespace, name: Some(&e.hello.workload).filter(|w| !w.is_empty()).map(|w| w.as_str()), labels: &labels };
                inbound.authorization = compile::authz::authorization(&mesh, &controller.policy, &|uri| controller.jwks.get(uri), &workload);
                let telemetry = compile::telemetry::telemetry(&mesh, &controller.telemetry, &e.hello.namespace, &labels);
                let key = (e.hello.namespace.clone(), scope.map(|s| s.source.to_string()), inbound.clone(), serde_json::to_string(&telemetry).unwrap_or_default());
                let Compiled { version, config, json, value } = configs
                    .entry(key)
                    .or_insert_with(|| {
                        let mut config = compile::compile(&mesh, &endpoints, &e.hello.namespace, scope);
                        config.inbound = inbound;
                        config.telemetry = telemetry;
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
                registry.metrics.pushed(if e.sent_delta { crate::metrics::ENDPOINT_PUSH } else { crate::metrics::FULL_PUSH });
                e.change_seen.get_or_insert(seen);
                e.sent_version = version;
                e.sent_nonce = nonce;
                e.sent_config = Some(config);
                e.config = value;
                sends.push((id.clone(), sender, push));
            }
        }
        // Never waits on a proxy: each gets its latest push in its slot.
        for (id, sender, push) in sends {
            if sender.send(Some(push)).is_err() {
                tracing::debug!(proxy = %id, "push to a closed stream");
            }
        }
    }
}

