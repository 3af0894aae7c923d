//! The request path. A connection goes, top to bottom:
//! accept (connection limit) -> original destination -> protocol detection ->
//! HTTP (hyper server -> route -> endpoint -> pooled client) or opaque TCP
//! (route -> endpoint -> bidirectional copy). Every step that fails answers
//! with a [`LocalReply`] that names the cause.

use crate::config::{Listener, ListenerKind, MtlsMode, Protocol};
use crate::mesh_tls::Carried;
use crate::detect::{detect, Detected};
use crate::local_reply::{Flag, LocalReply};
use crate::metrics::{ConnLabels, DurationLabels, ListenerLabels, Metrics, RejectLabels, RequestLabels};
use crate::snapshot::{ClusterState, RequestFacts, RouteTarget, Snapshot};
use weft_proto::config::HttpRule;
use crate::upstream::{self, empty_body, full_body, Body, HttpClients};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

/// Shared by every connection: the current config, metrics, lifecycle.
pub struct Proxy {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Clients for traffic to original destinations (passthrough, inbound).
    pub passthrough: HttpClients,
    pub ready: AtomicBool,
    pub drain: Drain,
    /// The workload certificate, once the controller has issued one.
    pub certificate: watch::Sender<Option<Arc<crate::certs::WorkloadCert>>>,
    /// The workload this proxy serves (for source matches).
    pub workload: Arc<crate::snapshot::Workload>,
}

impl Proxy {
    /// What a new snapshot is built with.
    pub fn build_context(&self) -> crate::snapshot::BuildContext {
        crate::snapshot::BuildContext { certificate: self.certificate.subscribe(), workload: self.workload.clone() }
    }
}

/// Graceful shutdown: a signal every accept loop and connection watches, and
/// a count of open connections to wait on.
pub struct Drain {
    signal: watch::Sender<bool>,
    active: AtomicUsize,
    idle: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Drain { signal: watch::channel(false).0, active: AtomicUsize::new(0), idle: Notify::new() }
    }
}

impl Drain {
    pub fn start(&self) {
        self.signal.send_replace(true);
    }
    pub fn is_draining(&self) -> bool {
        *self.signal.borrow()
    }
    pub async fn signaled(&self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
    /// Waits until no connection is open.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

impl Proxy {
    /// Counts a connection as open until the guard drops.
    fn enter(self: &Arc<Proxy>) -> ConnGuard {
        self.drain.active.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }
}

struct ConnGuard(Arc<Proxy>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.drain.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drain.idle.notify_waiters();
        }
    }
}

/// What the request path knows about one downstream connection.
#[derive(Clone)]
struct ConnInfo {
    listener: Arc<Listener>,
    peer: SocketAddr,
    /// The pre-redirect destination (transparent listeners).
    original_dst: Option<SocketAddr>,
    /// Inbound over mesh mTLS: the client's SPIFFE ID (`None` for plaintext).
    peer_identity: Option<Arc<str>>,
    mtls: bool,
}

/// Istio's `connection_security_policy` label value.
fn security_label(mtls: bool) -> &'static str {
    if mtls {
        "mutual_tls"
    } else {
        "none"
    }
}

/// Accepts connections on one listener until drain starts.
pub async fn serve_listener(proxy: Arc<Proxy>, listener: Listener, socket: TcpListener) {
    let listener = Arc::new(listener);
    let limit = proxy.snapshot.borrow().config.limits.max_connections;
    let permits = Arc::new(Semaphore::new(limit));
    let labels = ListenerLabels { listener: listener.name.clone() };
    loop {
        let (stream, peer) = tokio::select! {
            r = socket.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %listener.name, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = proxy.drain.signaled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            proxy.metrics.rejected.get_or_create(&RejectLabels { listener: listener.name.clone(), reason: "overflow".into() }).inc();
            tracing::warn!(listener = %listener.name, %peer, "connection limit {limit} reached; refusing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let listener = listener.clone();
        let labels = labels.clone();
        tokio::spawn(async move {
            let _guard = proxy.enter();
            let gauge = proxy.metrics.active_connections.get_or_create(&labels).clone();
            gauge.inc();
            handle_connection(&proxy, listener, stream, peer).await;
            gauge.dec();
            drop(permit);
        });
    }
    tracing::info!(listener = %listener.name, "stopped accepting (draining)");
}

async fn handle_connection(proxy: &Arc<Proxy>, listener: Arc<Listener>, stream: TcpStream, peer: SocketAddr) {
    let reject = |reason: &str| {
        proxy.metrics.rejected.get_or_create(&RejectLabels { listener: listener.name.clone(), reason: reason.into() }).inc();
    };
    let original_dst = match listener.kind {
        ListenerKind::Explicit => None,
        ListenerKind::Outbound | ListenerKind::Inbound => match crate::orig_dst::original_dst(&stream) {
            Ok(dst) if Some(dst) == stream.local_addr().ok() => {
                // Not redirected: someone connected to the listener itself. Forwarding
                // to ourselves would loop.
                reject("no_original_destination");
                tracing::debug!(listener = %listener.name, %peer, "direct connection to a transparent listener; closing");
                return;
            }
            Ok(dst) => Some(dst),
            Err(e) => {
                reject("no_original_destination");
                tracing::debug!(listener = %listener.name, %peer, "no original destination: {e}");
                return;
            }
        },
    };
    let limits = proxy.snapshot.borrow().config.limits.clone();
    let forced_tcp = listener.protocol == Protocol::Tcp
        || original_dst.is_some_and(|d| listener.opaque_ports.contains(&d.port()));
    let detected = if forced_tcp {
        Detected::Tcp
    } else if listener.protocol == Protocol::Http {
        match detect(&stream, limits.detect_timeout).await {
            Ok(Detected::Http2) => Detected::Http2,
            _ => Detected::Http1,
        }
    } else {
        match detect(&stream, limits.detect_timeout).await {
            Ok(d) => d,
            Err(_) => return,
        }
    };
    let protocol = match &detected {
        Detected::Http1 => "http1",
        Detected::Http2 => "http2",
        Detected::Tls { .. } => "tls",
        Detected::Tcp => "tcp",
    };
    let info = ConnInfo { listener: listener.clone(), peer, original_dst, peer_identity: None, mtls: false };
    if info.listener.kind == ListenerKind::Inbound {
        let port = original_dst.map(|d| d.port()).unwrap_or(0);
        let mode = proxy.snapshot.borrow().config.inbound.mode_for(port);
        let mesh_tls = matches!(&detected, Detected::Tls { alpn, .. } if crate::mesh_tls::is_mesh_alpn(alpn));
        if mesh_tls && mode != MtlsMode::Disable {
            return serve_mesh_tls(proxy, info, stream, &limits).await;
        }
        if mode == MtlsMode::Strict {
            reject("mtls_required");
            tracing::info!(target: "access", "{} {protocol} {peer} -> {port} refused: plaintext connection, and port {port} requires mTLS (STRICT)", info.listener.name);
            return;
        }
    }
    proxy
        .metrics
        .connections
        .get_or_create(&ConnLabels { listener: info.listener.name.clone(), protocol: protocol.into(), connection_security_policy: "none" })
        .inc();
    match detected {
        Detected::Http1 | Detected::Http2 => serve_http(proxy, info, stream, detected == Detected::Http2, &limits).await,
        Detected::Tls { .. } | Detected::Tcp => forward_tcp(proxy, info, stream).await,
    }
}

/// Inbound mesh mTLS: terminate it, learn the client's identity, and serve
/// what it carries (HTTP/2, HTTP/1.1 or TCP) to the local app.
async fn serve_mesh_tls(proxy: &Arc<Proxy>, mut info: ConnInfo, stream: TcpStream, limits: &crate::config::Limits) {
    let reject = |reason: &str| {
        proxy.metrics.rejected.get_or_create(&RejectLabels { listener: info.listener.name.clone(), reason: reason.into() }).inc();
    };
    let Some(cert) = proxy.certificate.borrow().clone() else {
        reject("no_certificate");
        tracing::warn!(target: "access", "{} mtls {} refused: this proxy has no workload certificate yet", info.listener.name, info.peer);
        return;
    };
    let (tls, peer_identity, carried) = match crate::mesh_tls::accept(stream, &cert, limits.header_read_timeout).await {
        Ok(x) => x,
        Err(e) => {
            reject("mtls_handshake");
            tracing::info!(target: "access", "{} mtls {} refused: {e}", info.listener.name, info.peer);
            return;
        }
    };
    info.peer_identity = peer_identity;
    info.mtls = true;
    let protocol = match carried {
        Carried::Http2 => "http2",
        Carried::Http1 => "http1",
        Carried::Tcp => "tcp",
    };
    proxy
        .metrics
        .connections
        .get_or_create(&ConnLabels { listener: info.listener.name.clone(), protocol: protocol.into(), connection_security_policy: "mutual_tls" })
        .inc();
    match carried {
        Carried::Http2 => serve_http(proxy, info, tls, true, limits).await,
        Carried::Http1 => serve_http(proxy, info, tls, false, limits).await,
        Carried::Tcp => forward_tcp(proxy, info, tls).await,
    }
}

// ---------------------------------------------------------------- TCP

/// A downstream connection: plain TCP, or mesh TLS terminated here.
trait Downstream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Downstream for T {}

async fn forward_tcp(proxy: &Arc<Proxy>, info: ConnInfo, mut downstream: impl Downstream) {
    let snapshot = proxy.snapshot.borrow().clone();
    let (route, cluster, endpoint, identity, index) = match tcp_target(&snapshot, &info) {
        Ok(t) => t,
        Err(reply) => {
            tracing::info!(target: "access", "{} tcp {} -> - {} {}", info.listener.name, info.peer, reply.flag.code(), reply.reason);
            return;
        }
    };
    let timeout = cluster.as_ref().map(|c| c.config.connect_timeout).unwrap_or(proxy.passthrough.connect_timeout);
    let start = Instant::now();
    // A TCP connection counts against max_connections and as load on its endpoint while it lasts.
    let _admitted = match &cluster {
        Some(c) => match c.limits(false).admit(c.name()).await {
            Ok(a) => Some(a),
            Err(reply) => {
                tracing::info!(target: "access", "{} tcp {} -> - {} {}", info.listener.name, info.peer, reply.flag.code(), reply.reason);
                return;
            }
        },
        None => None,
    };
    let in_flight = cluster.as_ref().zip(index).map(|(c, i)| c.balancer.start(i));
    let upstream = match &identity {
        Some(id) => {
            let certificate = proxy.certificate.subscribe();
            crate::mesh_tls::connect(endpoint, id, crate::mesh_tls::ALPN_TCP, &certificate, timeout).await.map(|s| TcpUpstream::Mesh(Box::new(s)))
        }
        None => upstream::connect_tcp(endpoint, timeout).await.map(TcpUpstream::Plain),
    };
    let mut upstream = match upstream {
        Ok(s) => s,
        Err(reply) => {
            if let Some(f) = in_flight {
                f.finish(crate::balance::Outcome::LocalFailure);
            }
            tracing::info!(target: "access", "{} tcp {} -> {endpoint} {} {}", info.listener.name, info.peer, reply.flag.code(), reply.reason);
            return;
        }
    };
    let labels = ListenerLabels { listener: info.listener.name.clone() };
    // copy_bidirectional propagates each side's EOF as a write shutdown (half-close).
    let result = match &mut upstream {
        TcpUpstream::Plain(s) => tokio::io::copy_bidirectional(&mut downstream, s).await,
        TcpUpstream::Mesh(s) => tokio::io::copy_bidirectional(&mut downstream, s.as_mut()).await,
    };
    let (rx, tx) = result.as_ref().map(|(a, b)| (*a, *b)).unwrap_or((0, 0));
    proxy.metrics.tcp_received_bytes.get_or_create(&labels).inc_by(rx);
    proxy.metrics.tcp_sent_bytes.get_or_create(&labels).inc_by(tx);
    let flag = if result.is_err() { "DC" } else { "-" };
    tracing::info!(
        target: "access",
        "{} tcp {} -> {endpoint} route={route} {flag} sent={tx} received={rx} duration={}ms mtls={}{}",
        info.listener.name, info.peer, start.elapsed().as_millis(),
        if info.mtls || identity.is_some() { "yes" } else { "no" },
        info.peer_identity.as_ref().map(|p| format!(" peer={p}")).unwrap_or_default()
    );
}

enum TcpUpstream {
    Plain(TcpStream),
    Mesh(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Route name, cluster, endpoint address, the identity to verify for mesh
/// mTLS, and the endpoint's index in the cluster.
type Target = (Arc<str>, Option<Arc<ClusterState>>, SocketAddr, Option<String>, Option<usize>);

fn tcp_target(snapshot: &Snapshot, info: &ConnInfo) -> Result<Target, LocalReply> {
    match info.listener.kind {
        ListenerKind::Explicit => {
            let name = info.listener.cluster.as_deref().unwrap_or("");
            let cluster = snapshot
                .cluster(name)
                .ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, format!("cluster {name:?} is not configured")))?;
            let (i, ep, id) = pick(cluster, None)?;
            Ok((Arc::from(info.listener.name.as_str()), Some(cluster.clone()), ep, id, Some(i)))
        }
        ListenerKind::Inbound => {
            let dst = info.original_dst.ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, "no original destination"))?;
            Ok((Arc::from("inbound"), None, dst, None, None))
        }
        ListenerKind::Outbound => {
            let dst = info.original_dst.ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, "no original destination"))?;
            match snapshot.route_for_destination(dst) {
                Some(t) => {
                    let (i, ep, id) = pick(&t.cluster, None)?;
                    Ok((t.route.clone(), Some(t.cluster.clone()), ep, id, Some(i)))
                }
                None => Ok((Arc::from("passthrough"), None, dst, None, None)),
            }
        }
    }
}

/// An endpoint of the cluster (its index and address), and the identity
/// to verify when the connection to it is mesh mTLS.
fn pick(cluster: &Arc<ClusterState>, hash: Option<u64>) -> Result<(usize, SocketAddr, Option<String>), LocalReply> {
    let (i, ep) = cluster
        .pick(hash)
        .ok_or_else(|| LocalReply::new(503, Flag::NoHealthyUpstream, format!("cluster {:?} has no endpoints", cluster.name())))?;
    let identity = cluster.transport(ep)?.map(str::to_string);
    Ok((i, ep.address, identity))
}

// ---------------------------------------------------------------- HTTP

async fn serve_http(proxy: &Arc<Proxy>, info: ConnInfo, stream: impl Downstream, http2: bool, limits: &crate::config::Limits) {
    let io = TokioIo::new(stream);
    let svc_proxy = proxy.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = svc_proxy.clone();
        let info = info.clone();
        async move { Ok::<_, std::convert::Infallible>(handle_request(&proxy, &info, req).await) }
    });
    let mut drained = std::pin::pin!(proxy.drain.signaled());
    if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new()).max_header_list_size(limits.max_header_bytes as u32);
        let conn = builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("http2 connection: {e}"); } }
            _ = &mut drained => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
        }
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's own limit is a backstop at twice ours: below it, handle_request
            // answers 431 itself, with a flag and a reason.
            .max_header_size(limits.max_header_bytes * 2)
            .max_buf_size((limits.max_header_bytes * 2).max(8192))
            .keep_alive(true);
        let conn = builder.serve_connection(io, service).with_upgrades();
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("http1 connection: {e}"); } }
            _ = &mut drained => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
        }
    }
}

/// Hop-by-hop headers (RFC 9110 7.6.1) are never forwarded.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"];

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let te_trailers = headers.get(http::header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for n in named {
        if !(keep_upgrade && n == http::header::UPGRADE) {
            headers.remove(n);
        }
    }
    for h in HOP_BY_HOP {
        if keep_upgrade && (*h == "upgrade" || *h == "connection") {
            continue;
        }
        headers.remove(*h);
    }
    if te_trailers {
        // gRPC needs `te: trailers` end to end.
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A fast, non-cryptographic random number (xorshift64*, seeded per thread):
/// for request ids and weighted picks.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish() | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// True for `percent` (0 to 100) of calls, in steps of 0.0001%.
fn chance(percent: f64) -> bool {
    ((random_u64() % 1_000_000) as f64) < percent * 10_000.0
}

/// A gRPC call (by its content type).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn request_id() -> HeaderValue {
    let (a, b) = (random_u64(), random_u64());
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
}

struct Chosen {
    route: Arc<str>,
    cluster_name: String,
    clients: HttpClients,
    endpoint: SocketAddr,
    /// Its place in the cluster (for load and outlier accounting).
    endpoint_index: Option<usize>,
    /// The request's consistent-hash key, for retries to pick again.
    hash: Option<u64>,
    /// The endpoint is reached over mesh mTLS.
    mesh: bool,
    /// The matched rule's actions, and the path prefix it matched on.
    actions: Option<(Arc<HttpRule>, Option<String>)>,
    /// For retries: where to pick another endpoint, and the budget they draw on.
    cluster: Option<Arc<ClusterState>>,
    budget: Option<Arc<crate::retry::BudgetState>>,
    /// Clusters that get a copy of the request (fire and forget).
    mirrors: Vec<Arc<ClusterState>>,
    /// A consistent-hash cookie made for this client, sent back with the response.
    set_cookie: Option<HeaderValue>,
}

/// What to do with a request.
enum Plan {
    Forward(Box<Chosen>),
    /// The route answers itself (redirect, direct response).
    Respond { route: Arc<str>, response: Response<Body> },
}

/// The outcome of a route's HTTP rules for one request.
struct Routed {
    route: Arc<str>,
    cluster: Option<Arc<ClusterState>>,
    actions: Option<(Arc<HttpRule>, Option<String>)>,
    budget: Option<Arc<crate::retry::BudgetState>>,
    /// Clusters this request is copied to.
    mirrors: Vec<Arc<ClusterState>>,
}

/// Applies a route's HTTP rules: the first rule that matches either answers
/// the request itself or picks a cluster by weight.
fn routed(target: &RouteTarget, req: &Request<Incoming>, port: Option<u16>) -> Result<Routed, LocalReply> {
    if target.rules.is_empty() {
        return Ok(Routed { route: target.route.clone(), cluster: Some(target.cluster.clone()), actions: None, budget: None, mirrors: vec![] });
    }
    let path = req.uri().path();
    let facts = RequestFacts { method: req.method(), path, query: req.uri().query(), headers: req.headers(), port };
    let (rule, matched) = target
        .rules
        .iter()
        .find_map(|r| {
            if r.matches.is_empty() {
                return Some((r, None));
            }
            r.matches.iter().find(|m| m.matches(&facts)).map(|m| (r, Some(m)))
        })
        .ok_or_else(|| LocalReply::new(404, Flag::NoRouteFound, format!("no rule of route {} matches {} {path}", target.route, req.method())))?;
    let route = match &rule.name {
        Some(n) => Arc::from(format!("{}/{n}", target.route)),
        None => target.route.clone(),
    };
    let actions = Some((rule.actions.clone(), matched.and_then(|m| m.prefix()).map(str::to_string)));
    if rule.actions.redirect.is_some() || rule.actions.direct_response.is_some() {
        return Ok(Routed { route, cluster: None, actions, budget: None, mirrors: vec![] });
    }
    let cluster = rule
        .pick(random_u64())
        .ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, format!("route {} has no cluster to send to", target.route)))?;
    let mirrors = rule.mirrors.iter().filter(|(_, pct)| chance(*pct)).map(|(c, _)| c.clone()).collect();
    Ok(Routed { route, cluster: Some(cluster.clone()), actions, budget: rule.budget.clone(), mirrors })
}

/// The response of a rule that answers itself.
fn own_answer(rule: &HttpRule, req: &Request<Incoming>, host: Option<&str>) -> Option<Response<Body>> {
    if let Some(d) = &rule.direct_response {
        let mut r = Response::new(full_body(d.body.clone().unwrap_or_default()));
        *r.status_mut() = http::StatusCode::from_u16(d.status).unwrap_or(http::StatusCode::OK);
        return Some(r);
    }
    let rd = rule.redirect.as_ref()?;
    let host = rd.authority.clone().or(host.map(|h| h.split(':').next().unwrap_or(h).to_string())).unwrap_or_default();
    let port = rd.port.map(|p| format!(":{p}")).unwrap_or_default();
    let path = rd.path.clone().unwrap_or_else(|| req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or("/".into()));
    let location = format!("{}://{host}{port}{path}", rd.scheme.as_deref().unwrap_or("http"));
    let mut r = Response::new(empty_body());
    *r.status_mut() = http::StatusCode::from_u16(rd.status).unwrap_or(http::StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    Some(r)
}

fn apply_header_ops(headers: &mut HeaderMap, ops: &weft_proto::config::HeaderOps) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (k, v) in &ops.set {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.insert(k, v);
        }
    }
    for (k, v) in &ops.add {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(k, v);
        }
    }
}

fn http_target(proxy: &Proxy, snapshot: &Snapshot, info: &ConnInfo, host: Option<&str>, req: &Request<Incoming>) -> Result<Plan, LocalReply> {
    let from_cluster = |route: Arc<str>, c: &Arc<ClusterState>| {
        let mut hash = crate::balance::request_hash(&c.config, req.headers(), req.uri().query(), info.peer.ip());
        let mut set_cookie = None;
        if hash.is_none() {
            if let Some((value, header)) = crate::balance::new_hash_cookie(&c.config, random_u64()) {
                hash = Some(crate::balance::hash64(value.as_bytes()));
                set_cookie = Some(header);
            }
        }
        pick(c, hash).map(|(index, endpoint, identity)| {
            Plan::Forward(Box::new(Chosen {
                route,
                cluster_name: c.name().to_string(),
                clients: c.clients.clone(),
                endpoint,
                endpoint_index: Some(index),
                hash,
                mesh: identity.is_some(),
                actions: None,
                cluster: Some(c.clone()),
                budget: None,
                mirrors: vec![],
                set_cookie,
            }))
        })
    };
    let passthrough = |name: &str, dst: SocketAddr| {
        Plan::Forward(Box::new(Chosen {
            route: Arc::from(name),
            cluster_name: name.to_string(),
            clients: proxy.passthrough.clone(),
            endpoint: dst,
            endpoint_index: None,
            hash: None,
            mesh: false,
            actions: None,
            cluster: None,
            budget: None,
            mirrors: vec![],
            set_cookie: None,
        }))
    };
    match info.listener.kind {
        ListenerKind::Explicit => {
            let route: Arc<str> = Arc::from(info.listener.name.as_str());
            let name = info.listener.cluster.as_deref().unwrap_or("");
            let c = snapshot.cluster(name).ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, format!("cluster {name:?} is not configured")))?;
            from_cluster(route, c)
        }
        ListenerKind::Inbound => {
            let dst = info.original_dst.ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, "no original destination"))?;
            Ok(passthrough("inbound", dst))
        }
        ListenerKind::Outbound => {
            let target = match host.and_then(|h| snapshot.route_for_host(h)) {
                Some(t) => t,
                None => {
                    let dst = info.original_dst.ok_or_else(|| LocalReply::new(503, Flag::NoRouteFound, "no original destination"))?;
                    match snapshot.route_for_destination(dst) {
                        Some(t) => t,
                        None => return Ok(passthrough("passthrough", dst)),
                    }
                }
            };
            let port = info.original_dst.map(|d| d.port()).or(Some(info.listener.address.port()));
            let r = routed(target, req, port)?;
            match r.cluster {
                None => {
                    let rule = r.actions.as_ref().map(|(a, _)| a.clone());
                    let response = rule.as_deref().and_then(|a| own_answer(a, req, host)).ok_or_else(|| {
                        LocalReply::new(503, Flag::NoRouteFound, format!("route {} has no cluster to send to", r.route))
                    })?;
                    Ok(Plan::Respond { route: r.route, response })
                }
                Some(cluster) => match from_cluster(r.route, &cluster)? {
                    Plan::Forward(mut c) => {
                        c.actions = r.actions;
                        c.budget = r.budget;
                        c.mirrors = r.mirrors;
                        Ok(Plan::Forward(c))
                    }
                    other => Ok(other),
                },
            }
        }
    }
}

/// The header that tells an app which mesh identity called it (Envoy's XFCC).
const XFCC: &str = "x-forwarded-client-cert";

/// What the inbound side changes before the app sees a request: a client
/// may not claim an identity itself, a mesh client's identity is added, and
/// an HTTP/1.1 request carried over HTTP/2 between proxies is HTTP/1.1 again.
fn inbound_request(proxy: &Proxy, info: &ConnInfo, req: &mut Request<Incoming>) {
    let headers = req.headers_mut();
    headers.remove(XFCC);
    if let Some(peer) = &info.peer_identity {
        let own = proxy.certificate.borrow().as_ref().map(|c| c.spiffe_id.to_string()).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&format!("By={own};URI={peer}")) {
            headers.insert(XFCC, v);
        }
    }
    if info.mtls && headers.remove(crate::mesh_tls::ORIG_PROTO).is_some_and(|v| v == "HTTP/1.1") {
        *req.version_mut() = http::Version::HTTP_11;
    }
}

async fn handle_request(proxy: &Arc<Proxy>, info: &ConnInfo, mut req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    if info.listener.kind == ListenerKind::Inbound {
        inbound_request(proxy, info, &mut req);
    }
    let snapshot = proxy.snapshot.borrow().clone();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string));
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let limit = snapshot.config.limits.max_header_bytes;
    let head_bytes: usize = path.len() + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    let chosen = if head_bytes > limit {
        Err(LocalReply::new(431, Flag::DownstreamProtocolError, format!("request headers are {head_bytes} bytes, over the {limit}-byte limit")))
    } else {
        http_target(proxy, &snapshot, info, host.as_deref(), &req)
    };
    let (route, cluster) = match &chosen {
        Ok(Plan::Forward(c)) => (c.route.clone(), c.cluster_name.clone()),
        Ok(Plan::Respond { route, .. }) => (route.clone(), "-".to_string()),
        Err(_) => (Arc::from("-"), "-".to_string()),
    };
    let mut mtls = info.mtls;
    let (outcome, endpoint) = match chosen {
        Err(reply) => (Err(reply), None),
        Ok(Plan::Respond { response, .. }) => (Ok(response), None),
        Ok(Plan::Forward(chosen)) => {
            let endpoint = chosen.endpoint;
            mtls |= chosen.mesh;
            (forward(proxy, req, *chosen, host.as_deref()).await, Some(endpoint))
        }
    };
    // A reply the proxy writes itself keeps its own status; its flag and reason go to metrics and the log.
    let (resp, flag, reason) = match outcome {
        Ok(resp) => (resp, None, None),
        Err(reply) => (reply.clone().into_response(), Some(reply.flag), Some(reply.reason)),
    };
    let status = resp.status().as_u16();
    let flags = flag.map(|f| f.code()).unwrap_or("-");
    let elapsed = start.elapsed();
    proxy
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            listener: info.listener.name.clone(),
            route: route.to_string(),
            cluster: cluster.clone(),
            response_code: status,
            response_flags: flags.to_string(),
            connection_security_policy: security_label(mtls),
        })
        .inc();
    proxy
        .metrics
        .request_duration
        .get_or_create(&DurationLabels { listener: info.listener.name.clone(), cluster: cluster.clone() })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "access",
        "{} \"{method} {path}\" {status} {flags} {} route={route} cluster={cluster} upstream={} duration={}us mtls={}{}{}",
        info.listener.name,
        info.peer,
        endpoint.map(|e| e.to_string()).unwrap_or("-".into()),
        elapsed.as_micros(),
        if mtls { "yes" } else { "no" },
        info.peer_identity.as_ref().map(|p| format!(" peer={p}")).unwrap_or_default(),
        reason.map(|r| format!(" reason=\"{r}\"")).unwrap_or_default()
    );
    resp
}

/// Sends the request to the chosen endpoint and returns its response,
/// streaming bodies both ways.
async fn forward(proxy: &Proxy, mut req: Request<Incoming>, chosen: Chosen, host: Option<&str>) -> Result<Response<Body>, LocalReply> {
    let endpoint = chosen.endpoint;
    if req.method() == http::Method::CONNECT {
        return tunnel(req, endpoint, chosen.clients.connect_timeout).await;
    }
    if let Some(fault) = chosen.actions.as_ref().and_then(|(rule, _)| rule.fault.as_ref()) {
        inject_fault(fault, &req).await?;
    }
    let upgrade = req.version() < http::Version::HTTP_2 && req.headers().contains_key(http::header::UPGRADE);
    let http2 = req.version() == http::Version::HTTP_2;
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let mut pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    if let Some((rule, prefix)) = &chosen.actions {
        if let Some(path) = rule.rewrite.as_ref().and_then(|r| r.path.as_ref().map(|p| (p, r.prefix_only))) {
            let (old_path, query) = pq.split_once('?').map(|(p, q)| (p.to_string(), format!("?{q}"))).unwrap_or((pq.clone(), String::new()));
            pq = match (path.1, prefix.as_deref()) {
                // Replace the matched prefix, keep the rest (Istio `rewrite.uri` after a prefix match).
                (true, Some(pre)) if old_path.starts_with(pre) => format!("{}{}{query}", path.0, &old_path[pre.len()..]),
                _ => format!("{}{query}", path.0),
            };
        }
    }
    parts.uri = match format!("http://{endpoint}{pq}").parse() {
        Ok(u) => u,
        Err(_) => return Err(LocalReply::new(400, Flag::NoRouteFound, format!("request target {pq:?} is not valid"))),
    };
    parts.version = if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, upgrade);
    if !headers.contains_key("x-request-id") {
        headers.insert("x-request-id", request_id());
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !http2 && !headers.contains_key(http::header::HOST) {
        if let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(http::header::HOST, h);
        }
    }
    if upgrade {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let actions = chosen.actions.as_ref().map(|(rule, _)| rule.clone());
    if let Some(rule) = &actions {
        apply_header_ops(headers, &rule.request_headers);
        if let Some(authority) = rule.rewrite.as_ref().and_then(|r| r.authority.as_deref()) {
            if let Ok(v) = HeaderValue::from_str(authority) {
                headers.insert(http::header::HOST, v);
            }
        }
    }
    let route_timeout = actions.as_ref().and_then(|r| r.timeout);
    let mut body = RequestBody::Streaming(body.boxed());
    if !chosen.mirrors.is_empty() && !upgrade {
        // A mirror needs its own copy of the body: only small ones are copied (as for retries).
        if let Some(bytes) = body.replayable().await? {
            for m in &chosen.mirrors {
                mirror(m, &parts, &pq, host, bytes.clone(), route_timeout);
            }
        }
    }
    // The authority the upstream sees: the route's rewrite, else the client's.
    let authority = actions.as_ref().and_then(|r| r.rewrite.as_ref()).and_then(|r| r.authority.clone()).or(host.map(str::to_string));
    let out = Outgoing { parts, upgrade, authority: authority.as_deref(), pq: &pq };
    let tries = send_with_retries(proxy, out, body, &chosen, actions.as_ref().and_then(|r| r.retry.as_ref()));
    let mut resp = match route_timeout {
        Some(limit) => tokio::time::timeout(limit, tries).await.map_err(|_| {
            LocalReply::new(504, Flag::UpstreamRequestTimeout, format!("{endpoint} did not respond within the route timeout of {}ms", limit.as_millis()))
        })??,
        None => tries.await?,
    };
    if let Some(rule) = &actions {
        apply_header_ops(resp.headers_mut(), &rule.response_headers);
    }
    if let Some(cookie) = chosen.set_cookie.clone() {
        resp.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        if let Some(down) = downstream_upgrade {
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(down), Ok(up)) = (down.await, up.await) {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(down), &mut TokioIo::new(up)).await;
                }
            });
        }
    } else {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    Ok(resp.map(|b| b.boxed()))
}

/// Requests at most this large are kept so they can be replayed by a retry.
const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// A request body as it came, or read into memory to be sent more than once.
enum RequestBody {
    Streaming(Body),
    Buffered(bytes::Bytes),
}

/// How long a body of unknown length (gRPC sends no content-length) is read
/// ahead to see whether it is small and complete: a unary call's message
/// arrives with its end of stream; a stream that pauses goes on unbuffered.
const READ_AHEAD: std::time::Duration = std::time::Duration::from_millis(5);

impl RequestBody {
    /// Reads the body into memory when it is small (at most
    /// [`MAX_REPLAY_BYTES`]) and complete: known-length bodies are waited
    /// for, others read ahead for [`READ_AHEAD`]. `None` means it can be
    /// sent only once (what was read ahead is sent first, nothing is lost).
    async fn replayable(&mut self) -> Result<Option<bytes::Bytes>, LocalReply> {
        let body = match self {
            RequestBody::Buffered(b) => return Ok(Some(b.clone())),
            RequestBody::Streaming(body) => body,
        };
        let hint = hyper::body::Body::size_hint(body);
        if hint.lower() > MAX_REPLAY_BYTES {
            return Ok(None);
        }
        let deadline = hint.exact().is_none().then(|| tokio::time::Instant::now() + READ_AHEAD);
        let mut rest = std::mem::replace(body, empty_body());
        let mut frames: Vec<hyper::body::Frame<bytes::Bytes>> = Vec::new();
        let mut size = 0u64;
        let complete = loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rest.frame()).await {
                    Ok(next) => next,
                    Err(_) => break false,
                },
                None => rest.frame().await,
            };
            match next {
                None => break true,
                Some(Err(e)) => return Err(LocalReply::new(400, Flag::DownstreamConnectionTermination, format!("request body: {e}"))),
                Some(Ok(frame)) => {
                    size += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                    let trailers = frame.is_trailers();
                    frames.push(frame);
                    if size > MAX_REPLAY_BYTES || trailers {
                        break false;
                    }
                }
            }
        };
        if complete {
            let mut all = bytes::BytesMut::with_capacity(size as usize);
            for f in frames {
                if let Ok(d) = f.into_data() {
                    all.extend_from_slice(&d);
                }
            }
            let bytes = all.freeze();
            *self = RequestBody::Buffered(bytes.clone());
            return Ok(Some(bytes));
        }
        // Not replayable: what was read goes first, then the rest as it comes.
        use tokio_stream::StreamExt;
        let read = tokio_stream::iter(frames.into_iter().map(Ok::<_, hyper::Error>));
        let stream = read.chain(http_body_util::BodyStream::new(rest));
        *self = RequestBody::Streaming(http_body_util::StreamBody::new(stream).boxed());
        Ok(None)
    }
}

/// Istio fault injection: delay a share of requests, abort a share with a
/// status (HTTP, or gRPC as a trailers-only 200).
async fn inject_fault(fault: &weft_proto::config::Fault, req: &Request<Incoming>) -> Result<(), LocalReply> {
    if let Some(d) = fault.delay.as_ref().filter(|d| chance(d.percent)) {
        tokio::time::sleep(d.fixed).await;
    }
    if let Some(a) = fault.abort.as_ref().filter(|a| chance(a.percent)) {
        let grpc = is_grpc(req.headers());
        let mut reply = LocalReply::new(a.http_status.unwrap_or(503), Flag::FaultInjected, "fault injected by the route");
        if let Some(code) = a.grpc_status.filter(|_| grpc || a.http_status.is_none()) {
            reply.status = 200;
            reply.grpc_status = Some(code);
        }
        return Err(reply);
    }
    Ok(())
}

/// Sends a copy of the request to a mirror cluster and forgets it: its
/// answer is read and dropped, its latency and failure never reach the
/// caller. As Istio, the copy's authority gets `-shadow` appended.
fn mirror(cluster: &Arc<ClusterState>, parts: &http::request::Parts, pq: &str, host: Option<&str>, body: bytes::Bytes, timeout: Option<std::time::Duration>) {
    let Ok((_, endpoint, identity)) = pick(cluster, None) else { return };
    let mut req = Request::new(full_body(body));
    *req.method_mut() = parts.method.clone();
    *req.version_mut() = if parts.version == http::Version::HTTP_2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    *req.headers_mut() = parts.headers.clone();
    strip_hop_by_hop(req.headers_mut(), false);
    let shadow = host.map(|h| match h.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => format!("{name}-shadow:{port}"),
        _ => format!("{h}-shadow"),
    });
    if let Some(v) = shadow.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let limit = timeout.unwrap_or(std::time::Duration::from_secs(15));
    let (clients, pq) = (cluster.clients.clone(), pq.to_string());
    tokio::spawn(async move {
        let sent = clients.send(req, endpoint, shadow.as_deref(), &pq, identity.is_some(), false);
        if let Ok(Ok(resp)) = tokio::time::timeout(limit, sent).await {
            let _ = tokio::time::timeout(limit, resp.into_body().collect()).await;
        }
    });
}

/// The request as it will be sent upstream, body apart.
struct Outgoing<'a> {
    parts: http::request::Parts,
    upgrade: bool,
    /// The authority the upstream sees (HTTP/2 `:authority`).
    authority: Option<&'a str>,
    /// Path and query.
    pq: &'a str,
}

/// Sends the request, and retries it as the route's policy allows: only
/// outcomes `retry_on` names, only idempotent methods unless the route says
/// otherwise, only bodies small enough to replay, each retry to another pick
/// of the cluster, after a jittered backoff, within the retry budget.
async fn send_with_retries(
    proxy: &Proxy,
    out: Outgoing<'_>,
    mut body: RequestBody,
    chosen: &Chosen,
    policy: Option<&weft_proto::config::RetryPolicy>,
) -> Result<Response<Incoming>, LocalReply> {
    let Outgoing { parts, upgrade, authority, pq } = out;
    use crate::retry::{retriable, TryOutcome};
    let idempotent = !matches!(parts.method, http::Method::POST | http::Method::PATCH);
    // Every gRPC call is a POST: a policy that names gRPC statuses asked for gRPC calls to be retried.
    let grpc_call = is_grpc(&parts.headers);
    let may_retry = policy.filter(|p| {
        p.attempts > 0 && (idempotent || p.non_idempotent || (grpc_call && crate::retry::names_grpc_status(&p.retry_on))) && !upgrade
    });
    let replay = match (&body, may_retry) {
        (RequestBody::Buffered(bytes), _) => Some(bytes.clone()),
        (RequestBody::Streaming(_), Some(_)) => body.replayable().await?,
        (RequestBody::Streaming(_), None) => None,
    };
    let mut body = match body {
        RequestBody::Streaming(b) if replay.is_none() => Some(b),
        _ => None,
    };
    let http2 = parts.version == http::Version::HTTP_2;
    let cluster = chosen.cluster.as_ref();
    // Circuit breaking: over the cluster's limits the request is refused at once (UO).
    let _admitted = match cluster {
        Some(c) => Some(c.limits(http2).admit(c.name()).await?),
        None => None,
    };
    let one_per_connection = cluster.is_some_and(|c| c.config.pool.max_requests_per_connection == Some(1));
    if let Some(b) = &chosen.budget {
        b.record_request();
    }
    let mut endpoint = chosen.endpoint;
    let mut index = chosen.endpoint_index;
    let mut mesh = chosen.mesh;
    let mut retries = 0u32;
    let mut retry_slot = false;
    loop {
        let this_body: Body = match (&replay, body.take()) {
            (Some(bytes), _) => full_body(bytes.clone()),
            (None, Some(b)) => b,
            (None, None) => {
                return Err(LocalReply::new(500, Flag::UpstreamConnectionTermination, "internal: a request body that cannot be replayed was needed twice"))
            }
        };
        let mut req = Request::new(this_body);
        *req.method_mut() = parts.method.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        if one_per_connection && !http2 && !upgrade {
            req.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let in_flight = cluster.zip(index).map(|(c, i)| c.balancer.start(i));
        let sent = chosen.clients.send(req, endpoint, authority, pq, mesh, upgrade);
        let per_try = may_retry.and_then(|p| p.per_try_timeout);
        let result = match per_try {
            Some(limit) => match tokio::time::timeout(limit, sent).await {
                Ok(r) => r.map_err(Some),
                Err(_) => Err(None),
            },
            None => sent.await.map_err(Some),
        };
        let outcome = match &result {
            Ok(resp) => TryOutcome::Response {
                status: resp.status().as_u16(),
                grpc: resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()),
            },
            Err(Some(e)) if e.is_connect() => TryOutcome::ConnectFailure,
            Err(Some(_)) => TryOutcome::Reset,
            Err(None) => TryOutcome::Timeout,
        };
        if let Some(f) = in_flight {
            let counted = match outcome {
                TryOutcome::Response { status, .. } => crate::balance::Outcome::Status(status),
                _ => crate::balance::Outcome::LocalFailure,
            };
            if f.finish(counted) {
                proxy.metrics.ejections.get_or_create(&RejectLabels { listener: chosen.route.to_string(), reason: chosen.cluster_name.clone() }).inc();
                tracing::warn!(cluster = %chosen.cluster_name, %endpoint, "endpoint ejected by outlier detection");
            }
        }
        if retry_slot {
            // This try was a retry: its slot under max_retries is free again.
            if let Some(c) = cluster {
                c.limits(http2).retry_done();
            }
        }
        let retry = may_retry.filter(|p| {
            (replay.is_some() || body.is_some())
                && retries < p.attempts
                && retriable(&p.retry_on, outcome)
                && chosen.budget.as_ref().is_none_or(|b| b.try_retry())
                && cluster.is_none_or(|c| c.limits(http2).try_retry())
        });
        let Some(policy) = retry else {
            let exhausted = retries > 0 && may_retry.is_some_and(|p| retriable(&p.retry_on, outcome));
            return match result {
                Ok(resp) => Ok(resp),
                Err(Some(e)) => {
                    let mut reply = e.explain(endpoint, chosen.clients.connect_timeout);
                    if exhausted {
                        reply.flag = Flag::UpstreamRetryLimitExceeded;
                        reply.reason = format!("{} (after {retries} retries)", reply.reason);
                    }
                    Err(reply)
                }
                Err(None) => Err(LocalReply::new(
                    504,
                    if exhausted { Flag::UpstreamRetryLimitExceeded } else { Flag::UpstreamRequestTimeout },
                    format!("{endpoint} did not respond within the per-try timeout of {}ms{}", per_try.unwrap_or_default().as_millis(), if exhausted { format!(" (after {retries} retries)") } else { String::new() }),
                )),
            };
        };
        retries += 1;
        retry_slot = cluster.is_some();
        proxy
            .metrics
            .retries
            .get_or_create(&RejectLabels { listener: chosen.route.to_string(), reason: chosen.cluster_name.clone() })
            .inc();
        tokio::time::sleep(crate::retry::backoff(policy.backoff.unwrap_or(std::time::Duration::from_millis(25)), retries, random_u64())).await;
        if let Some((i, next, identity)) = cluster.and_then(|c| pick(c, chosen.hash).ok()) {
            endpoint = next;
            index = Some(i);
            mesh = identity.is_some();
        }
    }
}

/// HTTP CONNECT: open a TCP tunnel to the authority (resolved to `endpoint`).
async fn tunnel(mut req: Request<Incoming>, endpoint: SocketAddr, timeout: std::time::Duration) -> Result<Response<Body>, LocalReply> {
    let mut upstream = upstream::connect_tcp(endpoint, timeout).await?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(down) = on_upgrade.await {
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(down), &mut upstream).await;
        }
    });
    let body = empty_body();
    Ok(Response::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep", "te"]);
    }

    #[test]
    fn upgrade_headers_survive_for_websockets() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn request_ids_look_like_uuids_and_differ() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.to_str().unwrap().len(), 36);
    }
}
