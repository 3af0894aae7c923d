//! The proxy's side of the push protocol: one gRPC stream to the controller,
//! a Hello saying which workload this is, then every pushed config is
//! checked and applied atomically (ACK) or refused with the reason (NACK,
//! the running config stays). When the controller is away the proxy keeps
//! serving its last config and reconnects with jittered exponential backoff.

pub mod certs;
pub mod channel;
pub mod state_dir;

use crate::backoff::Backoff;
use crate::config::{BuildContext, ProxyConfig, Snapshot};
use crate::telemetry::{Metrics, ReloadLabels};
use channel::ControlTls;
use std::sync::Arc;
use tokio::sync::watch;
use weft_proto::v1::{proxy_config_service_client::ProxyConfigServiceClient, proxy_message, Ack, ConfigPush, Hello, ProxyMessage};

/// The largest config push the proxy accepts.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// `host:port` of the controller's gRPC endpoint.
    pub address: String,
    pub hello: Hello,
}

/// What the stream needs of the proxy: where configs go, what a new
/// snapshot is built with (including the certificate to connect with), and
/// the reload counter.
pub struct ConfigSink {
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    pub build: BuildContext,
    pub metrics: Arc<Metrics>,
    /// Where each applied config is kept for a restart without the controller.
    pub state: Option<Arc<state_dir::StateDir>>,
    /// Whether this workload takes new traffic: false while the app's
    /// readiness probes fail, and from the moment the proxy is about to drain.
    /// Each change is told to the controller at once (a Hello with `ready`),
    /// so peers stop, or start, choosing this endpoint.
    pub serving: watch::Receiver<bool>,
}

/// How long the controller has to answer a Hello.
const HELLO_ANSWER: std::time::Duration = std::time::Duration::from_secs(4);

/// Runs forever: connect, stream, and on any failure back off and retry.
pub async fn run(opts: ControlOptions, sink: ConfigSink) {
    if opts.hello.mtls {
        // Peers are told to reach this workload over mTLS as soon as it says
        // Hello, so it says Hello once it has a certificate to answer with.
        let mut cert = sink.build.certificate.clone();
        let _ = cert.wait_for(|c| c.is_some()).await;
    }
    let mut attempt: u32 = 0;
    let mut certificate = sink.build.certificate.clone();
    loop {
        // The certificate this attempt connects with counts as seen: one
        // installed while it runs (a renewal after an outage, racing a
        // refused Hello) makes the next attempt start at once, not after
        // the backoff.
        certificate.mark_unchanged();
        match session(&opts, &sink, &mut attempt).await {
            Ok(()) => tracing::warn!(controller = %opts.address, "controller closed the stream; keeping the last config"),
            Err(e) => tracing::warn!(controller = %opts.address, "controller unreachable ({e}); keeping the last config"),
        }
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(Backoff::CONTROLLER.delay(attempt, crate::random::random_u64())) => {}
            _ = certificate.changed() => {}
        }
    }
}

async fn session(opts: &ControlOptions, sink: &ConfigSink, attempt: &mut u32) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tls = ControlTls::with(sink.build.certificate.borrow().clone());
    // Configs of large meshes exceed gRPC's 4 MiB default; scoping keeps most far smaller.
    let mut client = ProxyConfigServiceClient::new(channel::connect(&opts.address, tls).await?).max_decoding_message_size(MAX_CONFIG_BYTES);
    let (out, rx) = tokio::sync::mpsc::channel::<ProxyMessage>(16);
    let mut hello = opts.hello.clone();
    hello.version = sink.snapshot.borrow().config.version.clone();
    let mut serving = sink.serving.clone();
    let announced = hello.ready;
    hello.ready = announced && *serving.borrow_and_update();
    out.send(ProxyMessage { kind: Some(proxy_message::Kind::Hello(hello.clone())) }).await?;
    // A healthy controller answers the Hello at once (even when its first push
    // waits). A connection whose handshake stalled on the controller's side
    // would otherwise wait for the controller's own 10 s handshake timeout:
    // give up sooner and reconnect.
    let answered = tokio::time::timeout(HELLO_ANSWER, client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await
        .map_err(|_| format!("the controller did not answer the Hello within {}s", HELLO_ANSWER.as_secs()))??;
    let mut pushes = answered.into_inner();
    tracing::info!(controller = %opts.address, "connected to the controller");
    *attempt = 0;
    loop {
        let push = tokio::select! {
            push = pushes.message() => match push? {
                Some(p) => p,
                None => break,
            },
            changed = serving.changed() => {
                let now = announced && changed.is_ok() && *serving.borrow();
                if now != hello.ready {
                    hello.ready = now;
                    hello.version = sink.snapshot.borrow().config.version.clone();
                    tracing::info!(ready = now, "telling the controller whether this workload takes traffic");
                    out.send(ProxyMessage { kind: Some(proxy_message::Kind::Hello(hello.clone())) }).await?;
                }
                continue;
            }
        };
        let result = apply(&push, sink);
        let outcome = if result.is_ok() { "applied" } else { "rejected" };
        let source = if push.config_json.is_empty() { "controller-delta" } else { "controller" };
        sink.metrics.config_reloads.get_or_create(&ReloadLabels { source: source.into(), result: outcome.into() }).inc();
        let ack = match result {
            Ok(()) => {
                tracing::info!(version = %push.version, "config from the controller applied");
                Ack { version: push.version, nonce: push.nonce, accepted: true, error: String::new() }
            }
            Err(reason) => {
                tracing::error!(version = %push.version, "config from the controller refused: {reason}");
                Ack { version: push.version, nonce: push.nonce, accepted: false, error: reason }
            }
        };
        out.send(ProxyMessage { kind: Some(proxy_message::Kind::Ack(ack)) }).await?;
    }
    Ok(())
}

/// Checks a pushed config (or endpoint delta) and swaps it in; the error is the NACK reason.
fn apply(push: &ConfigPush, sink: &ConfigSink) -> Result<(), String> {
    let previous = sink.snapshot.borrow().clone();
    let mut cfg: ProxyConfig = if push.config_json.is_empty() {
        if previous.config.version != push.base_version {
            return Err(format!(
                "endpoint update is for version {:?} but this proxy runs {:?}; send the whole config",
                push.base_version, previous.config.version
            ));
        }
        let delta: std::collections::BTreeMap<String, Vec<crate::config::Endpoint>> =
            serde_json::from_slice(&push.endpoints_json).map_err(|e| format!("endpoint update does not parse: {e}"))?;
        previous.config.with_endpoints(&delta)?
    } else {
        serde_json::from_slice(&push.config_json).map_err(|e| format!("config does not parse: {e}"))?
    };
    cfg.version = push.version.clone();
    cfg.check()?;
    if cfg.listeners != previous.config.listeners {
        return Err("the pushed listeners differ from the running ones; listener changes need a proxy restart".into());
    }
    let snapshot = Snapshot::build(cfg, Some(&previous), &sink.build)?;
    if let Some(state) = &sink.state {
        state.save_config(&snapshot.config);
    }
    sink.metrics.configure(&snapshot.config.telemetry, &snapshot.own_labels)?;
    sink.snapshot.send_replace(Arc::new(snapshot));
    Ok(())
}
