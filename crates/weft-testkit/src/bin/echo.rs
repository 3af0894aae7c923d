//! `weft-echo`: the backend and client of weft's end-to-end tests.
//!
//! Server: `weft-echo serve --listen ADDR --name POD --version V` answers any
//! HTTP/1.1 or h2c request with JSON describing what it saw (pod, version,
//! method, path, headers, body size, counted while streaming, never
//! buffered); `/status/NNN` answers that status; `/delay/MS` waits first;
//! `Upgrade: echo` switches to a raw byte echo (the mechanism WebSockets use).
//! `weft-echo banner --listen ADDR` is a server-first TCP service (like SMTP).
//!
//! Clients, run inside a pod: `upgrade URL TEXT` (sends TEXT over an upgraded
//! connection, prints the echo), `banner ADDR` (prints the greeting line),
//! `upload URL MIB` (streams MIB mebibytes, prints the response).

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
            let id = Arc::new(Identity { name: arg(&args, "--name", "echo"), version: arg(&args, "--version", "v1") });
            serve(&arg(&args, "--listen", "0.0.0.0:8080"), id).await
        }
        Some("banner") => banner(&arg(&args, "--listen", "0.0.0.0:2525")).await,
        Some("upgrade") => client_upgrade(&args[1], &args[2]).await,
        Some("banner-client") => client_banner(&args[1]).await,
        Some("upload") => client_upload(&args[1], args[2].parse()?).await,
        _ => anyhow::bail!("usage: weft-echo serve|banner|upgrade|banner-client|upload ..."),
    }
}

async fn serve(addr: &str, id: Arc<Identity>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let id = id.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, id.clone(), peer));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(mut req: Request<Incoming>, id: Arc<Identity>, peer: std::net::SocketAddr) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
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
    if let Some(ms) = path.strip_prefix("/delay/").and_then(|s| s.parse::<u64>().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let status = path.strip_prefix("/status/").and_then(|s| s.parse::<u16>().ok()).unwrap_or(200);
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
