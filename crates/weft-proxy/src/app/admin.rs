//! The admin server (`/ready`, `/live`, `/config_dump`, `/stats/prometheus`,
//! `/logging`), on its own thread and runtime so that a slow scrape or a big
//! config dump never competes with requests on the workers.

use crate::state::Proxy;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Changes the log filter at runtime (`/logging?level=debug`).
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Binds the admin addresses now (so a port clash fails start-up) and serves
/// them on a dedicated thread.
pub fn spawn(addrs: Vec<SocketAddr>, proxy: Arc<Proxy>, set_level: SetLogLevel) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listeners = addrs
        .iter()
        .map(|a| {
            let l = std::net::TcpListener::bind(a).map_err(|e| anyhow::anyhow!("admin address {a}: {e}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
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
            for l in listeners {
                let Ok(l) = tokio::net::TcpListener::from_std(l) else { continue };
                let proxy = proxy.clone();
                let set_level = set_level.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = l.accept().await else { continue };
                        let proxy = proxy.clone();
                        let set_level = set_level.clone();
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                let proxy = proxy.clone();
                                let set_level = set_level.clone();
                                async move { Ok::<_, std::convert::Infallible>(route(&proxy, &set_level, req)) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                        });
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    })?;
    Ok(handle)
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

fn route(proxy: &Proxy, set_level: &SetLogLevel, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ready") | (&Method::GET, "/healthz/ready") => {
            if proxy.ready.load(Ordering::SeqCst) && !proxy.drain.is_draining() {
                text(StatusCode::OK, "ready\n", "text/plain")
            } else if proxy.drain.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n", "text/plain")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting\n", "text/plain")
            }
        }
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
            let snapshot = proxy.snapshot.borrow().clone();
            match serde_json::to_string_pretty(&*snapshot.config) {
                Ok(j) => text(StatusCode::OK, j + "\n", "application/json"),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "text/plain"),
            }
        }
        (&Method::GET, "/clusters") => {
            // Envoy's /clusters, as JSON: each endpoint's load, latency and outlier state.
            let snapshot = proxy.snapshot.borrow().clone();
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
            text(StatusCode::OK, serde_json::to_string_pretty(&clusters).unwrap_or_default() + "\n", "application/json")
        }
        (&Method::GET, "/stats/prometheus") | (&Method::GET, "/metrics") => {
            text(StatusCode::OK, proxy.metrics.render(), "text/plain; version=0.0.4")
        }
        (&Method::GET | &Method::POST, "/logging") => {
            let level = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level=")));
            match level {
                Some(l) => match set_level(l) {
                    Ok(()) => text(StatusCode::OK, format!("log level set to {l}\n"), "text/plain"),
                    Err(e) => text(StatusCode::BAD_REQUEST, format!("invalid level {l:?}: {e}\n"), "text/plain"),
                },
                None => text(StatusCode::BAD_REQUEST, "use /logging?level=debug (or info, warn, error, trace, or a filter like weft_proxy=debug)\n", "text/plain"),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "weft-proxy admin: /ready /live /certs /config_dump /clusters /stats/prometheus /logging?level=LEVEL\n",
            "text/plain",
        ),
    }
}
