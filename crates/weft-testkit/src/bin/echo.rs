//! `weft-echo`: the backend and client of weft's end-to-end tests.
//!
//! Server: `weft-echo serve --listen ADDR --name POD --version V` answers any
//! HTTP/1.1 or h2c request with JSON describing what it saw (pod, version,
//! method, path, headers, body size, counted while streaming, never
//! buffered); `/status/NNN` answers that status; `/delay/MS` waits first;
//! `/set-status/NNN` and `/set-latency/MS` change every later answer (0
//! resets); `/stats` reports requests served, the most in flight at once and
//! the last authority seen;
//! `Upgrade: echo` switches to a raw byte echo (the mechanism WebSockets use).
//! `weft-echo banner --listen ADDR` is a server-first TCP service (like SMTP).
//!
//! Clients, run inside a pod: `upgrade URL TEXT` (sends TEXT over an upgraded
//! connection, prints the echo), `banner ADDR` (prints the greeting line),
//! `upload URL MIB` (streams MIB mebibytes, prints the response), and
//! `load URL --rate R --connections N --duration S [--h2]`, the benchmark's
//! constant-rate load generator (see the `load` module).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

struct Identity {
    name: String,
    version: String,
}

fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            LATENCY_MS.store(arg(&args, "--latency", "0").parse()?, Ordering::SeqCst);
            let id = Arc::new(Identity { name: arg(&args, "--name", "echo"), version: arg(&args, "--version", "v1") });
            serve(&arg(&args, "--listen", "0.0.0.0:8080"), id).await
        }
        Some("banner") => banner(&arg(&args, "--listen", "0.0.0.0:2525")).await,
        Some("upgrade") => client_upgrade(&args[1], &args[2]).await,
        Some("banner-client") => client_banner(&args[1]).await,
        Some("upload") => client_upload(&args[1], args[2].parse()?).await,
        Some("count") => {
            let header = args.get(3).filter(|h| !h.starts_with("--")).map(String::as_str);
            let concurrency: usize = arg(&args, "--concurrency", "1").parse()?;
            client_count(&args[1], args[2].parse()?, header, concurrency).await
        }
        Some("load") => {
            let rate: f64 = arg(&args, "--rate", "1000").parse()?;
            let conns: usize = arg(&args, "--connections", "16").parse()?;
            let secs: f64 = arg(&args, "--duration", "10").parse()?;
            let h2 = args.iter().any(|a| a == "--h2");
            load::run(&args[1], rate, conns, std::time::Duration::from_secs_f64(secs), h2).await
        }
        _ => anyhow::bail!("usage: weft-echo serve|banner|upgrade|banner-client|upload ..."),
    }
}

async fn serve(addr: &str, id: Arc<Identity>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let id = id.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, id.clone(), peer));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

/// Requests served (all paths but /stats and /set-*), for tests that count what reached the backend.
static SERVED: AtomicU64 = AtomicU64::new(0);
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static MAX_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
/// Requests waiting in `/delay/MS` right now (tests wait on a slow request being in flight).
static DELAYED: AtomicU64 = AtomicU64::new(0);
/// Set by `/set-status/N`: every answer has this status (0: as the path says).
static STATUS: AtomicU16 = AtomicU16::new(0);
/// Set by `--latency MS` or `/set-latency/MS`: every answer waits this long.
pub static LATENCY_MS: AtomicU64 = AtomicU64::new(0);
static LAST_AUTHORITY: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(req: Request<Incoming>, id: Arc<Identity>, peer: std::net::SocketAddr) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/stats" {
        let out = serde_json::json!({
            "requests": SERVED.load(Ordering::SeqCst),
            "max_in_flight": MAX_IN_FLIGHT.load(Ordering::SeqCst),
            "delayed_in_flight": DELAYED.load(Ordering::SeqCst),
            "last_authority": LAST_AUTHORITY.lock().map(|a| a.clone()).unwrap_or_default(),
        });
        return Ok(Response::new(Full::new(Bytes::from(out.to_string() + "\n"))));
    }
    if let Some(n) = path.strip_prefix("/set-status/").and_then(|s| s.parse::<u16>().ok()) {
        STATUS.store(n, Ordering::SeqCst);
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))));
    }
    if let Some(n) = path.strip_prefix("/set-latency/").and_then(|s| s.parse::<u64>().ok()) {
        LATENCY_MS.store(n, Ordering::SeqCst);
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))));
    }
    let _in_flight = InFlight::enter();
    let authority = req.uri().authority().map(|a| a.to_string()).or_else(|| req.headers().get("host").and_then(|h| h.to_str().ok()).map(str::to_string));
    if let (Ok(mut last), Some(a)) = (LAST_AUTHORITY.lock(), authority) {
        *last = a;
    }
    let latency = LATENCY_MS.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    answer(req, id, peer, &path).await
}

async fn answer(mut req: Request<Incoming>, id: Arc<Identity>, peer: std::net::SocketAddr, path: &str) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = path.to_string();
    let served = SERVED.fetch_add(1, Ordering::SeqCst);
    // `/flaky/N`: every Nth request fails with 503.
    if let Some(n) = path.strip_prefix("/flaky/").and_then(|s| s.parse::<u64>().ok()).filter(|n| *n > 0) {
        if served % n == n - 1 {
            let mut r = Response::new(Full::new(Bytes::from_static(b"flaky failure\n")));
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert("x-echo-pod", http::HeaderValue::from_str(&id.name).unwrap_or(http::HeaderValue::from_static("?")));
            return Ok(r);
        }
    }
    if req.headers().get("upgrade").is_some_and(|v| v == "echo") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", http::HeaderValue::from_static("echo"));
        r.headers_mut().insert("connection", http::HeaderValue::from_static("upgrade"));
        return Ok(r);
    }
    if let Some(n) = path.strip_prefix("/bytes/").and_then(|s| s.parse::<usize>().ok()) {
        // Fixed-size answers for benchmarks: no JSON, no header echo.
        let _ = req.into_body().collect().await;
        return Ok(Response::new(Full::new(Bytes::from(vec![b'w'; n.min(64 << 20)]))));
    }
    if let Some(ms) = path.strip_prefix("/delay/").and_then(|s| s.parse::<u64>().ok()) {
        DELAYED.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        DELAYED.fetch_sub(1, Ordering::SeqCst);
    }
    let status = match STATUS.load(Ordering::SeqCst) {
        0 => path.strip_prefix("/status/").and_then(|s| s.parse::<u16>().ok()).unwrap_or(200),
        forced => forced,
    };
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let mut body = req.into_body();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_bytes += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
            Err(_) => break,
        }
    }
    let out = serde_json::json!({
        "pod": id.name, "version": id.version, "method": method, "path": path, "http_version": version,
        "peer": peer.to_string(), "headers": headers, "body_bytes": body_bytes,
    });
    let mut r = Response::new(Full::new(Bytes::from(out.to_string() + "\n")));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    r.headers_mut().insert("x-echo-pod", http::HeaderValue::from_str(&id.name).unwrap_or(http::HeaderValue::from_static("?")));
    Ok(r)
}

async fn banner(addr: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = s.write_all(b"220 weft-echo ESMTP ready\r\n").await;
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn client_banner(addr: &str) -> anyhow::Result<()> {
    let s = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await??;
    let mut lines = tokio::io::BufReader::new(s).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line()).await??;
    println!("{}", line.unwrap_or_default());
    Ok(())
}

async fn client_upgrade(url: &str, text: &str) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse()?;
    let addr = format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80));
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn.with_upgrades());
    let req = Request::builder()
        .uri(uri.path())
        .header("host", addr)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(http_body_util::Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(resp.status() == 101, "expected 101, got {}", resp.status());
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await?);
    io.write_all(text.as_bytes()).await?;
    let mut buf = vec![0u8; text.len()];
    io.read_exact(&mut buf).await?;
    println!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}

/// Sends `n` GETs over one keep-alive connection and prints how many each pod
/// answered (`x-echo-pod`), as JSON. `header` is `name:value`, sent with each.
/// `count URL N [NAME:VALUE] [--concurrency C]`: N GETs over C keep-alive
/// connections at once; prints how many each pod answered (200s) and how
/// many got each other status.
async fn client_count(url: &str, n: usize, header: Option<&str>, concurrency: usize) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse()?;
    let concurrency = concurrency.max(1);
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let share = n / concurrency + usize::from(c < n % concurrency);
        let (uri, header) = (uri.clone(), header.map(str::to_string));
        tasks.push(tokio::spawn(async move { count_on_one_connection(&uri, share, header.as_deref()).await }));
    }
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for t in tasks {
        for (k, v) in t.await?? {
            *counts.entry(k).or_default() += v;
        }
    }
    println!("{}", serde_json::to_string(&counts)?);
    Ok(())
}

async fn count_on_one_connection(uri: &http::Uri, n: usize, header: Option<&str>) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let addr = format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80));
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    for _ in 0..n {
        let mut req = Request::get(target).header("host", uri.host().unwrap_or(""));
        if let Some((k, v)) = header.and_then(|h| h.split_once(':')) {
            req = req.header(k, v);
        }
        sender.ready().await?;
        let key = match sender.send_request(req.body(http_body_util::Empty::<Bytes>::new())?).await {
            Ok(resp) if resp.status() == 200 => {
                let pod = resp.headers().get("x-echo-pod").and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
                let _ = resp.into_body().collect().await;
                pod
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                format!("status {status}")
            }
            Err(_) => "error".into(),
        };
        *counts.entry(key).or_default() += 1;
    }
    Ok(counts)
}

async fn client_upload(url: &str, mib: u64) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse()?;
    let addr = format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80));
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = Repeat { chunk: Bytes::from(vec![b'x'; 1024 * 1024]), left: mib };
    let req = Request::builder().method("POST").uri(uri.path()).header("host", addr).body(body)?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    println!("{} {}", status.as_u16(), String::from_utf8_lossy(&body).trim());
    Ok(())
}

/// A request body of `left` copies of `chunk`, produced one at a time so
/// the client's memory stays flat too.
struct Repeat {
    chunk: Bytes,
    left: u64,
}

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

mod load {
    //! A constant-rate load generator that does not suffer from coordinated
    //! omission: request i is due at `start + i / rate`; when a connection is
    //! still busy at a request's due time, its latency is measured from the
    //! due time, so a stall counts against every request scheduled during it. `--rate 0` means as fast as possible
    //! (closed loop, for throughput). Prints one JSON object.
    use super::*;
    use std::time::{Duration, Instant};

    pub async fn run(url: &str, rate: f64, conns: usize, duration: Duration, h2: bool) -> anyhow::Result<()> {
        let uri: http::Uri = url.parse()?;
        let addr = format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80));
        let start = Instant::now() + Duration::from_millis(50);
        let per_conn = if rate > 0.0 { rate / conns as f64 } else { 0.0 };
        let mut tasks = Vec::new();
        for c in 0..conns {
            let addr = addr.clone();
            let path = uri.path().to_string();
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&addr).await?;
                stream.set_nodelay(true)?;
                let mut lat: Vec<u32> = Vec::new();
                let mut errors = 0u64;
                // Stagger connections evenly inside one interval.
                let offset = if per_conn > 0.0 { Duration::from_secs_f64(c as f64 / (per_conn * conns as f64)) } else { Duration::ZERO };
                let mut send: Box<dyn FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send> = if h2 {
                    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    let addr = addr.clone();
                    Box::new(move || {
                        let mut s = sender.clone();
                        // A gRPC-shaped unary call: POST, application/grpc, a 5-byte frame header + payload.
                        let mut payload = vec![0u8, 0, 0, 0, 16];
                        payload.extend_from_slice(&[b'q'; 16]);
                        let req = Request::post(format!("http://{addr}{path}"))
                            .header("content-type", "application/grpc")
                            .header("te", "trailers")
                            .body(Full::new(Bytes::from(payload)))
                            .expect("request");
                        Box::pin(async move {
                            match s.send_request(req).await {
                                Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
                                Err(_) => false,
                            }
                        })
                    })
                } else {
                    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
                    let addr = addr.clone();
                    Box::new(move || {
                        let sender = sender.clone();
                        let req = Request::get(&path).header("host", &addr).body(Full::new(Bytes::new())).expect("request");
                        Box::pin(async move {
                            let mut s = sender.lock().await;
                            if s.ready().await.is_err() {
                                return false;
                            }
                            match s.send_request(req).await {
                                Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
                                Err(_) => false,
                            }
                        })
                    })
                };
                let end = start + duration;
                let mut i: u64 = 0;
                let mut prev_done = start;
                loop {
                    let due = if per_conn > 0.0 { start + offset + Duration::from_secs_f64(i as f64 / per_conn) } else { Instant::now() };
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    // If the previous request finished in time, any gap between `due` and
                    // now is this generator's timer slack (tokio's timer has 1 ms
                    // granularity), not the system's: measure from now. If it was still
                    // running at `due`, measure from `due`: that wait is the system's.
                    let origin = if prev_done <= due { Instant::now() } else { due };
                    let ok = send().await;
                    prev_done = Instant::now();
                    let micros = origin.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    if ok {
                        lat.push(micros);
                    } else {
                        errors += 1;
                    }
                    i += 1;
                }
                Ok::<_, anyhow::Error>((lat, errors))
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await??;
            all.extend(lat);
            errors += e;
        }
        all.sort_unstable();
        let pct = |p: f64| -> f64 {
            if all.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * (all.len() as f64 - 1.0)).round() as usize;
            all[i.min(all.len() - 1)] as f64 / 1000.0
        };
        let out = serde_json::json!({
            "requests": all.len(), "errors": errors,
            "achieved_rps": all.len() as f64 / duration.as_secs_f64(),
            "p50_ms": pct(50.0), "p90_ms": pct(90.0), "p99_ms": pct(99.0), "p999_ms": pct(99.9), "max_ms": pct(100.0),
        });
        println!("{out}");
        Ok(())
    }
}
