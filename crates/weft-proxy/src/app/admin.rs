//! The admin server, on its own thread and runtime so that a slow scrape or
//! a big config dump never competes with requests on the workers. Two
//! surfaces, as Istio splits them:
//!
//! - the admin port (`127.0.0.1:15000`, loopback only): `/ready`, `/live`,
//!   `/certs`, `/config_dump`, `/clusters`, `/stats/prometheus`, and
//!   `POST /logging?level=` (the only change it accepts);
//! - the stats port (`0.0.0.0:15090`, what Prometheus scrapes from other
//!   machines): `/stats/prometheus` and nothing else;
//! - the health port (`--health-listen`, 15020 in injected pods, what the
//!   kubelet probes): `/healthz/ready` and the app's rewritten probes
//!   `/app-health/...`, nothing else.
//!
//! Both read each request's head within a few seconds and hold a bounded
//! number of connections, so a peer cannot pin the admin thread.

use super::app_probes::{self, AppProbes};
use crate::state::Proxy;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Changes the log filter at runtime (`POST /logging?level=debug`).
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Connections each admin listener serves at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
/// A request's head must arrive within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything; loopback addresses only.
    Admin,
    /// `/stats/prometheus` only.
    Stats,
    /// `/healthz/ready` and `/app-health/...` only.
    Health,
}

/// The addresses the admin thread binds.
#[derive(Debug, Clone)]
pub struct AdminAddresses {
    pub admin: Vec<SocketAddr>,
    pub stats: Vec<SocketAddr>,
    pub health: Vec<SocketAddr>,
    /// The app's probes the health port runs.
    pub app_probes: Arc<AppProbes>,
}

impl AdminAddresses {
    /// Refuses an admin address another machine could reach.
    pub fn check(&self) -> Result<(), String> {
        match self.admin.iter().find(|a| !a.ip().is_loopback()) {
            Some(a) => Err(format!(
                "--admin {a}: the admin port serves /config_dump and /logging, so it binds loopback only (127.0.0.1 or [::1]); Prometheus scrapes /stats/prometheus on --stats"
            )),
            None => Ok(()),
        }
    }
}

/// Binds the admin addresses now (so a port clash fails start-up) and serves
/// them on a dedicated thread.
pub fn spawn(addrs: AdminAddresses, proxy: Arc<Proxy>, set_level: SetLogLevel) -> anyhow::Result<std::thread::JoinHandle<()>> {
    addrs.check().map_err(|e| anyhow::anyhow!(e))?;
    let bind = |a: &SocketAddr, surface: Surface| -> anyhow::Result<(std::net::TcpListener, Surface)> {
        let l = std::net::TcpListener::bind(a).map_err(|e| anyhow::anyhow!("admin address {a}: {e}"))?;
        l.set_nonblocking(true)?;
        Ok((l, surface))
    };
    let listeners = addrs
        .admin
        .iter()
        .map(|a| bind(a, Surface::Admin))
        .chain(addrs.stats.iter().map(|a| bind(a, Surface::Stats)))
        .chain(addrs.health.iter().map(|a| bind(a, Surface::Health)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let handle = std::thread::Builder::new().name("weft-admin".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("admin runtime: {e}");
                return;
            }
        };
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for (l, surface) in listeners {
                let Ok(l) = tokio::net::TcpListener::from_std(l) else { continue };
                tasks.push(tokio::spawn(serve(l, surface, proxy.clone(), set_level.clone(), addrs.app_probes.clone())));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    })?;
    Ok(handle)
}

async fn serve(listener: tokio::net::TcpListener, surface: Surface, proxy: Arc<Proxy>, set_level: SetLogLevel, probes: Arc<AppProbes>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Wait for a slot before accepting: excess connections queue in the backlog.
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (proxy, set_level, probes) = (proxy.clone(), set_level.clone(), probes.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (proxy, set_level, probes) = (proxy.clone(), set_level.clone(), probes.clone());
                async move {
                    let resp = match surface {
                        Surface::Health => health(&proxy, &probes, req).await,
                        _ => route(surface, &proxy, &set_level, req),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

fn readiness(proxy: &Proxy) -> Response<Full<Bytes>> {
    if proxy.ready.load(Ordering::SeqCst) && !proxy.drain.is_draining() {
        text(StatusCode::OK, "ready\n", "text/plain")
    } else if proxy.drain.is_draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n", "text/plain")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "starting\n", "text/plain")
    }
}

/// The health port: the proxy's readiness, and the app's probes by path.
async fn health(proxy: &Proxy, probes: &AppProbes, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n", "text/plain");
    }
    let path = req.uri().path();
    if path == "/healthz/ready" {
        return readiness(proxy);
    }
    match probes.get(path) {
        Some(p) => {
            let status = app_probes::run(p).await;
            text(status, format!("{}\n", status.as_u16()), "text/plain")
        }
        None => text(StatusCode::NOT_FOUND, "weft-proxy health port: /healthz/ready, /app-health/CONTAINER/livez|readyz|startupz\n", "text/plain"),
    }
}

fn route(surface: Surface, proxy: &Proxy, set_level: &SetLogLevel, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let stats = || text(StatusCode::OK, proxy.render_metrics(), "text/plain; version=0.0.4");
    if surface == Surface::Stats {
        return match (req.method(), req.uri().path()) {
            (&Method::GET, "/stats/prometheus") => stats(),
            _ => text(StatusCode::NOT_FOUND, "weft-proxy stats port: /stats/prometheus\n", "text/plain"),
        };
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ready") | (&Method::GET, "/healthz/ready") => readiness(proxy),
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n", "text/plain"),
        (&Method::GET, "/certs") => match proxy.certificate.borrow().clone() {
            Some(c) => text(
                StatusCode::OK,
                serde_json::json!({"spiffe_id": c.spiffe_id.to_string(), "serial": c.serial, "not_after_unix": c.not_after_unix}).to_string() + "\n",
                "application/json",
            ),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no workload certificate yet\n", "text/plain"),
        },
        (&Method::GET, "/config_dump") => {
            let snapshot = proxy.snapshot();
            match serde_json::to_string_pretty(&*snapshot.config) {
                Ok(j) => text(StatusCode::OK, j + "\n", "application/json"),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "text/plain"),
            }
        }
        (&Method::GET, "/clusters") => text(StatusCode::OK, clusters(proxy) + "\n", "application/json"),
        (&Method::GET, "/stats/prometheus") | (&Method::GET, "/metrics") => stats(),
        (&Method::POST, "/logging") => {
            let level = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level=")));
            match level {
                Some(l) => match set_level(l) {
                    Ok(()) => text(StatusCode::OK, format!("log level set to {l}\n"), "text/plain"),
                    Err(e) => text(StatusCode::BAD_REQUEST, format!("invalid level {l:?}: {e}\n"), "text/plain"),
                },
                None => text(StatusCode::BAD_REQUEST, "use POST /logging?level=debug (or info, warn, error, trace, or a filter like weft_proxy=debug)\n", "text/plain"),
            }
        }
        (_, "/logging") => text(StatusCode::METHOD_NOT_ALLOWED, "the log level changes by POST /logging?level=LEVEL\n", "text/plain"),
        _ => text(
            StatusCode::NOT_FOUND,
            "weft-proxy admin: /ready /live /certs /config_dump /clusters /stats/prometheus, POST /logging?level=LEVEL\n",
            "text/plain",
        ),
    }
}

/// Envoy's /clusters, as JSON: each endpoint's load, latency and outlier state.
fn clusters(proxy: &Proxy) -> String {
    let snapshot = proxy.snapshot();
    let mut clusters: Vec<serde_json::Value> = snapshot
        .clusters()
        .map(|c| {
            let endpoints: Vec<serde_json::Value> = c
                .config
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut v = c.balancer.describe(i);
                    v["address"] = e.address.to_string().into();
                    v["mtls"] = (c.transport(e).ok().flatten().is_some()).into();
                    v
                })
                .collect();
            serde_json::json!({"name": c.name(), "lb": c.config.lb, "endpoints": endpoints})
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::to_string_pretty(&clusters).unwrap_or_default()
}
