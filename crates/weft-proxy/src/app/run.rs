//! Process lifecycle: load the config, bind listeners, serve, reload on
//! SIGHUP or file change (atomically; a bad file is refused and the old
//! config stays), and drain on SIGTERM/SIGINT.

use super::admin::{self, SetLogLevel};
use crate::config::{BuildContext, ProxyConfig, Snapshot, Workload};
use crate::control::state_dir::StateDir;
use crate::drain::Drain;
use crate::listen::serve_listener;
use crate::state::Proxy;
use crate::telemetry::{Metrics, ReloadLabels};
use crate::upstream::HttpClients;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct RunOptions {
    /// A config file; without one the proxy starts as a plain sidecar (outbound
    /// and inbound listeners, no routes) and waits for the controller.
    pub config: Option<PathBuf>,
    pub controller: Option<crate::control::ControlOptions>,
    /// Obtain and renew a workload certificate from the controller.
    pub certificates: Option<crate::control::certs::CertOptions>,
    /// A certificate loaded from files (`--cert-dir`).
    pub cert_files: Option<crate::workload_cert::WorkloadCert>,
    /// The workload served (namespace and labels, for source matches).
    pub workload: Workload,
    /// Where the last certificate and config are kept for a restart without the controller.
    pub state_dir: Option<PathBuf>,
    pub admin: admin::AdminAddresses,
    pub workers: usize,
    pub set_log_level: SetLogLevel,
}

pub fn run(mut opts: RunOptions) -> anyhow::Result<()> {
    let state = match &opts.state_dir {
        Some(dir) => Some(Arc::new(StateDir::open(dir).with_context(|| format!("--state-dir {}", dir.display()))?)),
        None => None,
    };
    let kept = state.as_ref().filter(|_| opts.config.is_none() && opts.controller.is_some()).and_then(|s| s.load_config());
    let config = match &opts.config {
        Some(path) => ProxyConfig::load(path).context("loading the proxy config")?,
        None if opts.controller.is_some() => match kept {
            Some(cfg) => {
                tracing::info!(version = %cfg.version, "starting with the config kept from the controller");
                cfg
            }
            None => ProxyConfig::sidecar_default(),
        },
        None => anyhow::bail!("give --config FILE, or --controller ADDR to be configured by the controller"),
    };
    // The certificate kept from the controller, while it is this workload's: mTLS from the first connection.
    if let (Some(s), Some(c), None) = (&state, &opts.certificates, &opts.cert_files) {
        opts.cert_files = s.load_certificate(&c.id);
    }
    let rt = if opts.workers <= 1 && std::env::var_os("WEFT_MULTI_THREAD").is_none() {
        tokio::runtime::Builder::new_current_thread().thread_name("weft-worker").enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(opts.workers.max(1)).thread_name("weft-worker").enable_all().build()?
    };
    // One worker: a current-thread runtime (fewer cross-thread wake-ups; measured in
    // docs/benchmarks.md). The admin server has its own thread either way.
    rt.block_on(serve(config, opts, state))
}

async fn serve(config: ProxyConfig, mut opts: RunOptions, state: Option<Arc<StateDir>>) -> anyhow::Result<()> {
    let listeners = config.listeners.clone();
    let idle_timeout = config.limits.idle_timeout;
    let (certificate, certificate_rx) = watch::channel(opts.cert_files.take().map(Arc::new));
    let workload = Arc::new(opts.workload.clone());
    let cx = BuildContext { certificate: certificate_rx, workload: workload.clone() };
    let (tx, rx) = watch::channel(Arc::new(Snapshot::build(config, None, &cx).map_err(|e| anyhow::anyhow!("the proxy config: {e}"))?));
    let metrics = Arc::new(Metrics::new());
    let configured = {
        let first = rx.borrow();
        metrics.configure(&first.config.telemetry, &first.own_labels)
    };
    configured.map_err(|e| anyhow::anyhow!("the proxy config: {e}"))?;
    let proxy = Arc::new(Proxy {
        snapshot: rx,
        metrics,
        passthrough: HttpClients::new(Duration::from_secs(5), idle_timeout),
        ready: false.into(),
        drain: Drain::default(),
        certificate,
        workload,
        mirrors: Arc::new(tokio::sync::Semaphore::new(crate::http::mirror::MAX_MIRRORS)),
        authz_counters: Default::default(),
    });
    let _admin = admin::spawn(opts.admin.clone(), proxy.clone(), opts.set_log_level.clone())?;
    let mut tasks = Vec::new();
    for l in listeners {
        let socket = bind(l.address).with_context(|| format!("listener {:?} on {}", l.name, l.address))?;
        tracing::info!(listener = %l.name, address = %l.address, kind = ?l.kind, "listening");
        tasks.push(tokio::spawn(serve_listener(proxy.clone(), l, socket)));
    }
    if let Some(c) = opts.certificates.clone() {
        tokio::spawn(crate::control::certs::run(c, proxy.certificate.clone(), state.clone()));
    }
    // Takes traffic while the app's readiness probes pass (at once when it has
    // none) and until the proxy is about to drain.
    let probes = opts.admin.app_probes.clone();
    let (serving, serving_rx) = watch::channel(!probes.has_readiness());
    let leaving = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if probes.has_readiness() {
        tasks.push(tokio::spawn(super::app_probes::track_readiness(probes, serving.clone(), leaving.clone())));
    }
    if let Some(control) = opts.controller.clone() {
        let sink = crate::control::ConfigSink { snapshot: tx.clone(), build: proxy.build_context(), metrics: proxy.metrics.clone(), state: state.clone(), serving: serving_rx };
        tokio::spawn(crate::control::run(control, sink));
    }
    proxy.ready.store(true, Ordering::SeqCst);
    tracing::info!("ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut modified = opts.config.as_ref().and_then(|c| std::fs::metadata(c).and_then(|m| m.modified()).ok());
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => if let Some(path) = &opts.config { reload(&proxy, &tx, path, "sighup") },
            _ = poll.tick(), if opts.config.is_some() && opts.controller.is_none() => {
                let path = opts.config.as_deref().unwrap_or(std::path::Path::new(""));
                let now = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if now.is_some() && now != modified {
                    modified = now;
                    reload(&proxy, &tx, path, "file");
                }
            }
        }
    }
    // Readiness goes false first, then listeners stop accepting and open
    // connections finish (HTTP/1 after the in-flight request, HTTP/2 after GOAWAY).
    let drain_timeout = proxy.snapshot.borrow().config.limits.drain_timeout;
    proxy.ready.store(false, Ordering::SeqCst);
    if opts.controller.is_some() {
        // Peers learn from the controller that this endpoint is leaving; until
        // they do, new connections are still accepted, so none is refused.
        leaving.store(true, Ordering::SeqCst);
        serving.send_replace(false);
        tokio::time::sleep(LEAVE_NOTICE.min(drain_timeout)).await;
    }
    tracing::info!(active = proxy.drain.active(), "draining for up to {}ms", drain_timeout.as_millis());
    proxy.drain.start();
    if tokio::time::timeout(drain_timeout, proxy.drain.idle()).await.is_err() {
        tracing::warn!(active = proxy.drain.active(), "drain timeout reached; closing remaining connections");
    }
    for t in tasks {
        t.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long a proxy with a controller keeps accepting after it said it is
/// leaving: the controller's push to its peers takes a few hundred ms.
const LEAVE_NOTICE: Duration = Duration::from_secs(1);

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        // IPv6 listeners take IPv6 only, so `[::]:15001` can sit beside `0.0.0.0:15001`
        // and every accepted socket's family matches its original destination's.
        set_v6_only(&socket)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

fn reload(proxy: &Proxy, tx: &watch::Sender<Arc<Snapshot>>, path: &std::path::Path, source: &str) {
    let previous = proxy.snapshot();
    let built = ProxyConfig::load(path).map_err(|e| e.to_string()).and_then(|cfg| {
        if *previous.config == cfg {
            return Ok(None);
        }
        Snapshot::build(cfg, Some(&previous), &proxy.build_context()).map(Some)
    });
    let result = match built {
        Ok(None) => return,
        Ok(Some(snapshot)) => {
            if snapshot.config.listeners != previous.config.listeners {
                tracing::warn!("listener changes need a restart; routes, clusters and limits were applied");
            }
            let version = snapshot.config.version.clone();
            if let Err(e) = proxy.metrics.configure(&snapshot.config.telemetry, &snapshot.own_labels) {
                tracing::error!("config reload refused, keeping the running config: {e}");
                proxy.metrics.config_reloads.get_or_create(&crate::telemetry::ReloadLabels { source: source.to_string(), result: "rejected".into() }).inc();
                return;
            }
            tx.send_replace(Arc::new(snapshot));
            tracing::info!(%version, "config reloaded ({source})");
            "applied"
        }
        Err(e) => {
            tracing::error!("config reload refused, keeping the running config: {e}");
            "rejected"
        }
    };
    proxy.metrics.config_reloads.get_or_create(&ReloadLabels { source: source.into(), result: result.into() }).inc();
}

fn set_v6_only(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            &on as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
