//! The gRPC service proxies stream their config with and get their
//! certificates from: who may say what in a Hello (admission), the stream
//! of pushes and ACK/NACKs of one proxy, and CSR signing.

use crate::listener::Peer;
use crate::registry::{Entry, Proven, Registry};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use weft_proto::v1::{proxy_config_service_server::ProxyConfigService, proxy_message, CertifyRequest, CertifyResponse, ConfigPush, Hello, ProxyMessage};

/// Whether a Hello may say what it says, and who said it. A proxy must
/// connect with its workload certificate and may speak only for that
/// identity's namespace and service account; the address it announces (and
/// would be an endpoint at) must be the one it connects from. Only with
/// `--insecure-dev` is a proxy without a certificate taken at its word, and
/// then it may not claim mTLS (peers would be told to expect an identity).
pub fn admit(hello: &Hello, peer: Option<&Peer>, insecure_dev: bool) -> Result<Proven, String> {
    let remote = peer.map(|p| p.remote.ip());
    if let (Some(claimed), Some(remote)) = (hello.address.parse::<IpAddr>().ok(), remote) {
        if claimed != remote {
            return Err(format!("the Hello claims address {claimed}, but the proxy connects from {remote}: a proxy is an endpoint only at its own address"));
        }
    } else if !hello.address.is_empty() && hello.address.parse::<IpAddr>().is_err() {
        return Err(format!("Hello.address {:?} is not an IP address", hello.address));
    }
    match peer.and_then(|p| p.identity.as_ref()) {
        Some(id) if id.namespace != hello.namespace || id.service_account != hello.service_account => Err(format!(
            "the proxy's certificate is {id}, but its Hello speaks for namespace {:?} service account {:?}",
            hello.namespace, hello.service_account
        )),
        Some(id) => Ok(Proven::Identity(id.clone())),
        None if hello.mtls => Err("a proxy that serves mTLS must connect with its workload certificate".into()),
        None if !insecure_dev => Err(
            "this controller admits only proxies with a workload certificate: start the proxy with --token (weft token create), or run a development controller with --insecure-dev"
                .into(),
        ),
        None => remote.map(Proven::Unverified).ok_or_else(|| "no peer address".to_string()),
    }
}

/// The gRPC service proxies stream with (and get their certificates from).
pub struct PushService {
    pub registry: Arc<Registry>,
    pub ca: Arc<crate::identity::MeshCa>,
    /// Proxies without a workload certificate may stream (development only).
    pub insecure_dev: bool,
    /// Checks Kubernetes ServiceAccount tokens (`--kube-api`), if configured.
    pub reviewer: Option<Arc<crate::token_review::TokenReviewer>>,
}

#[tonic::async_trait]
impl ProxyConfigService for PushService {
    type StreamStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ConfigPush, Status>> + Send>>;

    async fn certify(&self, request: Request<CertifyRequest>) -> Result<Response<CertifyResponse>, Status> {
        let tls = request.extensions().get::<crate::listener::Peer>().is_some_and(|p| p.tls);
        let r = request.into_inner();
        tracing::debug!(proxy = %r.proxy_id, tls, renewal = !r.current_chain_pem.is_empty(), "certificate requested");
        let proven = if crate::token_review::looks_like_service_account_token(&r.token) {
            // A renewal proven by the current certificate needs no TokenReview.
            match self.ca.prove("", &r.csr_pem, &r.current_chain_pem, &r.proof) {
                Ok(id) => Ok(id),
                Err(_) => match &self.reviewer {
                    Some(reviewer) => match reviewer.review(&r.token).await {
                        Ok((ns, sa)) => self.ca.grant_service_account(&ns, &sa),
                        Err(e) => Err(e),
                    },
                    None => Err("a Kubernetes ServiceAccount token, but this controller does not check them (start it with --kube-api)".into()),
                },
            }
        } else {
            self.ca.prove(&r.token, &r.csr_pem, &r.current_chain_pem, &r.proof)
        };
        let signed = proven.and_then(|id| self.ca.certify(&r.proxy_id, id, &r.csr_pem, &r.workload_json));
        self.registry.metrics.csr(signed.is_ok());
        let (issued, id, roots_pem) = signed.map_err(|e| {
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
        let peer = request.extensions().get::<crate::listener::Peer>().cloned();
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| Status::invalid_argument("the stream closed before Hello"))?;
        let Some(proxy_message::Kind::Hello(hello)) = first.kind else {
            return Err(Status::invalid_argument("the first message must be Hello"));
        };
        if hello.proxy_id.is_empty() {
            return Err(Status::invalid_argument("Hello.proxy_id is empty"));
        }
        let proven = admit(&hello, peer.as_ref(), self.insecure_dev).map_err(|e| {
            tracing::warn!(proxy = %hello.proxy_id, "Hello refused: {e}");
            Status::permission_denied(e)
        })?;
        let (tx, rx) = watch::channel(None::<ConfigPush>);
        let registry = self.registry.clone();
        let session = registry.next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = hello.proxy_id.clone();
        let (tls, peer_id) = peer.as_ref().map(|p| (p.tls, p.identity.as_ref().map(|i| i.to_string()))).unwrap_or((false, None));
        tracing::info!(proxy = %id, address = %hello.address, running = %hello.version, tls, identity = peer_id.as_deref().unwrap_or("-"), "proxy connected");
        {
            // The proxy says which version it runs (after a controller restart, or a
            // reconnect): a push is owed only if that is not the current one.
            let mut entries = registry.lock();
            // A proxy id belongs to whoever holds it: a connected proxy is superseded only by itself.
            if let Some(held) = entries.get(&id).filter(|e| e.sender.is_some() && e.proven != proven) {
                let e = format!("proxy id {id:?} is connected as {}; {proven} may not take it over", held.proven);
                tracing::warn!(proxy = %id, "Hello refused: {e}");
                return Err(Status::already_exists(e));
            }
            if let Proven::Unverified(ip) = &proven {
                tracing::warn!(proxy = %id, %ip, "a proxy without a certificate is taken at its word (--insecure-dev)");
            }
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
                    change_seen: None,
                    config,
                    hello,
                    proven,
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
                                if let Some(seen) = e.change_seen.take() {
                                    registry.metrics.converged(seen.elapsed());
                                }
                            } else if e.sent_delta {
                                registry.metrics.rejected(crate::metrics::ENDPOINT_PUSH);
                                // The proxy did not run the delta's base: send it the whole config.
                                tracing::info!(proxy = %id, "endpoint update refused ({}); sending the whole config", ack.error);
                                e.sent_version.clear();
                                e.sent_config = None;
                                drop(entries);
                                registry.changed.notify_one();
                            } else {
                                tracing::warn!(proxy = %id, version = %ack.version, "proxy refused config: {}", ack.error);
                                registry.metrics.rejected(crate::metrics::FULL_PUSH);
                                e.change_seen = None;
                                e.last_nack = Some(ack.error);
                            }
                        }
                    }
                    // A later Hello only says whether the proxy still takes traffic
                    // (false when it is about to drain): nothing else may change.
                    Ok(Some(ProxyMessage { kind: Some(proxy_message::Kind::Hello(h)) })) => {
                        let mut entries = registry.lock();
                        if let Some(e) = entries.get_mut(&id).filter(|e| e.session == session) {
                            e.last_seen = SystemTime::now();
                            if e.hello.ready != h.ready {
                                tracing::info!(proxy = %id, ready = h.ready, "proxy readiness changed");
                                e.hello.ready = h.ready;
                                drop(entries);
                                registry.changed.notify_one();
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
        let pushes = tokio_stream::wrappers::WatchStream::new(rx).filter_map(|p| p.map(Ok));
        Ok(Response::new(Box::pin(pushes)))
    }
}

#[cfg(test)]
mod admit_tests {
    use super::*;
    use crate::listener::Peer;

    fn hello(ns: &str, sa: &str, mtls: bool) -> Hello {
        Hello { proxy_id: "p".into(), namespace: ns.into(), service_account: sa.into(), mtls, ..Hello::default() }
    }

    fn peer(id: Option<&str>) -> Peer {
        Peer { remote: "10.0.0.1:5000".parse().unwrap(), identity: id.map(|i| i.parse().unwrap()), tls: true }
    }

    #[test]
    fn a_hello_speaks_only_for_the_certificate_it_came_with() {
        let reviews = peer(Some("spiffe://cluster.local/ns/prod/sa/reviews"));
        let proven = admit(&hello("prod", "reviews", true), Some(&reviews), false).unwrap();
        assert_eq!(proven.to_string(), "spiffe://cluster.local/ns/prod/sa/reviews");
        let e = admit(&hello("bank", "admin", true), Some(&reviews), false).unwrap_err();
        assert!(e.contains("certificate is spiffe://cluster.local/ns/prod/sa/reviews"), "{e}");
        // Without a certificate, no mTLS claim (peers would expect that identity there).
        assert!(admit(&hello("prod", "reviews", true), Some(&peer(None)), true).unwrap_err().contains("must connect with its workload certificate"));
        assert!(admit(&hello("prod", "reviews", true), None, true).is_err());
    }

    #[test]
    fn token_less_proxies_are_refused_unless_the_controller_is_a_development_one() {
        let e = admit(&hello("prod", "reviews", false), Some(&peer(None)), false).unwrap_err();
        assert!(e.contains("admits only proxies with a workload certificate") && e.contains("--insecure-dev"), "{e}");
        let proven = admit(&hello("prod", "reviews", false), Some(&peer(None)), true).unwrap();
        assert_eq!(proven, Proven::Unverified("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_proxy_is_an_endpoint_only_at_the_address_it_connects_from() {
        let reviews = peer(Some("spiffe://cluster.local/ns/prod/sa/reviews"));
        let mut h = hello("prod", "reviews", true);
        h.address = "10.0.0.1".into();
        assert!(admit(&h, Some(&reviews), false).is_ok());
        h.address = "10.0.0.77".into();
        let e = admit(&h, Some(&reviews), false).unwrap_err();
        assert!(e.contains("claims address 10.0.0.77, but the proxy connects from 10.0.0.1"), "{e}");
        h.address = "not-an-ip".into();
        assert!(admit(&h, Some(&reviews), false).unwrap_err().contains("is not an IP address"));
    }
}
