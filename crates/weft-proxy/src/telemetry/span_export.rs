//! Exporting finished spans to a collector, off the request path: the path
//! hands a span to a bounded queue (a full queue drops and counts it, it
//! never waits), and one thread of its own batches the queue (up to
//! [`BATCH`] spans, or what came within [`FLUSH`] of the first) and posts
//! each batch as OTLP over gRPC, OTLP over HTTP (protobuf), or Zipkin v2
//! JSON. A collector that is down or refuses a batch costs that batch
//! (counted), never a request.

use super::tracer::{Finished, Resource, SpanKind};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::mpsc;
use weft_proto::config::{TraceCollector, TraceProtocol};
use weft_proto::otlp;

/// Spans waiting for the exporter; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Spans per export call at most.
pub const BATCH: usize = 512;
/// How long a batch waits for more spans after its first.
pub const FLUSH: Duration = Duration::from_millis(500);
/// One export call (connecting included) at most.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of the spans (weft_tracing_spans_*).
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Sampled spans finished (handed to the queue or dropped at it).
    pub recorded: AtomicU64,
    pub exported: AtomicU64,
    /// The queue was full, or the collector did not take them.
    pub dropped: AtomicU64,
}

/// The queue into one collector's export thread.
pub struct Exporter {
    queue: mpsc::Sender<Finished>,
    stats: Arc<ExportStats>,
}

impl Exporter {
    /// Starts the thread exporting to `collector` as `resource`; it ends
    /// when the exporter is dropped (after sending what is queued).
    pub fn start(collector: TraceCollector, resource: Arc<Resource>, stats: Arc<ExportStats>) -> Result<Exporter, String> {
        let (queue, spans) = mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("span exporter: {e}"))?;
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("weft-span-export".into())
            .spawn(move || runtime.block_on(export_loop(collector, resource, spans, thread_stats)))
            .map_err(|e| format!("span exporter: {e}"))?;
        Ok(Exporter { queue, stats })
    }

    /// Queues a span; never waits.
    pub fn send(&self, span: Finished) {
        self.stats.recorded.fetch_add(1, Relaxed);
        if self.queue.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }
}

async fn export_loop(collector: TraceCollector, resource: Arc<Resource>, mut spans: mpsc::Receiver<Finished>, stats: Arc<ExportStats>) {
    let mut client = Client { collector, connection: None, failing: false };
    while let Some(first) = spans.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, spans.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match tokio::time::timeout(EXPORT_TIMEOUT, client.export(&resource, batch)).await {
            Ok(Ok(())) => {
                stats.exported.fetch_add(n, Relaxed);
                if std::mem::replace(&mut client.failing, false) {
                    tracing::info!(collector = %client.collector.address, "span export works again");
                }
            }
            outcome => {
                stats.dropped.fetch_add(n, Relaxed);
                client.connection = None;
                let error = match outcome {
                    Ok(Err(e)) => e,
                    _ => format!("no answer within {}s", EXPORT_TIMEOUT.as_secs()),
                };
                // Once per outage, not once per batch.
                if !std::mem::replace(&mut client.failing, true) {
                    tracing::warn!(collector = %client.collector.address, "span export failed, dropping spans until it works: {error}");
                }
            }
        }
    }
}

/// A connection to the collector, made when a batch needs it.
enum Connection {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

struct Client {
    collector: TraceCollector,
    connection: Option<Connection>,
    /// The last export failed (for logging the outage once).
    failing: bool,
}

impl Client {
    async fn export(&mut self, resource: &Resource, batch: Vec<Finished>) -> Result<(), String> {
        let (path, content_type, body) = match self.collector.protocol {
            TraceProtocol::OtlpGrpc => {
                let message = otlp_request(resource, &batch).encode_to_vec();
                // gRPC's frame: not compressed, then the length.
                let mut framed = Vec::with_capacity(5 + message.len());
                framed.push(0);
                framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                framed.extend_from_slice(&message);
                ("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "application/grpc", framed)
            }
            TraceProtocol::OtlpHttp => (self.collector.path.as_str(), "application/x-protobuf", otlp_request(resource, &batch).encode_to_vec()),
            TraceProtocol::Zipkin => (self.collector.path.as_str(), "application/json", zipkin_json(resource, &batch).into_bytes()),
        };
        // HTTP/2 names the authority in the URI; HTTP/1.1 sends the path (origin form) and Host.
        let uri = match self.collector.protocol {
            TraceProtocol::OtlpGrpc => format!("http://{}{path}", self.collector.address),
            _ => path.to_string(),
        };
        let req = Request::post(uri)
            .header(http::header::HOST, &self.collector.address)
            .header(http::header::CONTENT_TYPE, content_type)
            .header("te", "trailers")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let mut connection = match self.connection.take() {
            Some(c) if !closed(&c) => c,
            _ => self.connect().await?,
        };
        let sent = send(&mut connection, req).await;
        self.connection = Some(connection);
        let resp = sent?;
        let status = resp.status();
        let collected = resp.into_body().collect().await.map_err(|e| format!("reading the answer: {e}"))?;
        if self.collector.protocol == TraceProtocol::OtlpGrpc {
            let grpc = collected.trailers().and_then(|t| t.get("grpc-status")).and_then(|v| v.to_str().ok()).unwrap_or("");
            if status != StatusCode::OK || grpc != "0" {
                return Err(format!("the collector answered HTTP {status}, grpc-status {grpc:?}"));
            }
        } else if !status.is_success() {
            return Err(format!("the collector answered HTTP {status}"));
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Connection, String> {
        let tcp = tokio::net::TcpStream::connect(&self.collector.address).await.map_err(|e| format!("connecting: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(tcp);
        if self.collector.protocol == TraceProtocol::OtlpGrpc {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| format!("HTTP/2: {e}"))?;
            tokio::spawn(conn);
            Ok(Connection::Http2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP/1.1: {e}"))?;
            tokio::spawn(conn);
            Ok(Connection::Http1(send))
        }
    }
}

fn closed(c: &Connection) -> bool {
    match c {
        Connection::Http1(s) => s.is_closed(),
        Connection::Http2(s) => s.is_closed(),
    }
}

async fn send(c: &mut Connection, mut req: Request<Full<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, String> {
    let sent = match c {
        Connection::Http1(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
        Connection::Http2(s) => {
            *req.version_mut() = http::Version::HTTP_2;
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
    };
    sent.map_err(|e| format!("sending: {e}"))
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn string_kv(key: &str, value: &str) -> otlp::common::KeyValue {
    otlp::common::KeyValue {
        key: key.to_string(),
        value: Some(otlp::common::AnyValue { value: Some(otlp::common::any_value::Value::StringValue(value.to_string())) }),
    }
}

/// One OTLP export request: the resource, weft's scope, the spans.
pub fn otlp_request(resource: &Resource, batch: &[Finished]) -> otlp::ExportTraceServiceRequest {
    use otlp::trace::{span::SpanKind as Kind, status::StatusCode as Code, ResourceSpans, ScopeSpans, Span, Status};
    let mut attributes = vec![string_kv("service.name", &resource.service_name)];
    attributes.extend(resource.attributes.iter().map(|(k, v)| string_kv(k, v)));
    let spans = batch
        .iter()
        .map(|s| Span {
            trace_id: s.ids.trace_id.to_be_bytes().to_vec(),
            span_id: s.ids.span_id.to_be_bytes().to_vec(),
            parent_span_id: s.ids.parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
            // W3C's sampled flag (bit 0), and bit 8: the parent's remote-ness is known.
            flags: 0x1 | 0x100 | if s.ids.parent.is_some() { 0x200 } else { 0 },
            name: s.name.clone(),
            kind: match s.kind {
                SpanKind::Client => Kind::Client,
                SpanKind::Server => Kind::Server,
            } as i32,
            start_time_unix_nano: nanos(s.start),
            end_time_unix_nano: nanos(s.start + s.duration),
            attributes: s.attributes.iter().map(|(k, v)| string_kv(k, v)).collect(),
            status: Some(Status { code: if s.error { Code::Error } else { Code::Unset } as i32, message: String::new() }),
            ..Default::default()
        })
        .collect();
    otlp::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(otlp::resource::Resource { attributes, ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                scope: Some(otlp::common::InstrumentationScope { name: "weft-proxy".into(), version: env!("CARGO_PKG_VERSION").into(), ..Default::default() }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The batch as Zipkin v2 JSON (a list of spans).
pub fn zipkin_json(resource: &Resource, batch: &[Finished]) -> String {
    let spans: Vec<serde_json::Value> = batch
        .iter()
        .map(|s| {
            let micros = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
            let mut span = serde_json::json!({
                "traceId": format!("{:032x}", s.ids.trace_id),
                "id": format!("{:016x}", s.ids.span_id),
                "name": s.name,
                "kind": match s.kind { SpanKind::Client => "CLIENT", SpanKind::Server => "SERVER" },
                "timestamp": micros(s.start),
                // Zipkin reads 0 as "unknown": a span took at least a microsecond.
                "duration": (s.duration.as_micros() as u64).max(1),
                "localEndpoint": {"serviceName": resource.service_name},
                "tags": s.attributes.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            });
            if let Some(p) = s.ids.parent {
                span["parentId"] = format!("{p:016x}").into();
            }
            if let Some(remote) = s.remote {
                let ip = if remote.is_ipv4() { "ipv4" } else { "ipv6" };
                span["remoteEndpoint"] = serde_json::json!({ip: remote.ip().to_string(), "port": remote.port()});
            }
            span
        })
        .collect();
    serde_json::Value::Array(spans).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::trace_context::SpanIds;
    use super::*;

    fn span() -> Finished {
        Finished {
            ids: SpanIds { trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736, span_id: 0xabc, parent: Some(0x00f067aa0ba902b7), sampled: true },
            kind: SpanKind::Server,
            name: "reviews.prod.svc.cluster.local:80/*".into(),
            start: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            duration: Duration::from_micros(1500),
            attributes: vec![("http.status_code".into(), "503".into())],
            error: true,
            remote: Some("10.0.0.7:40000".parse().unwrap()),
        }
    }

    fn resource() -> Resource {
        Resource { service_name: "reviews.prod".into(), attributes: vec![("istio.namespace", "prod".into())] }
    }

    #[test]
    fn otlp_carries_ids_as_bytes_times_in_nanoseconds_and_the_error() {
        let req = otlp_request(&resource(), &[span()]);
        // What goes on the wire decodes back to the same message.
        let back = otlp::ExportTraceServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        let rs = &back.resource_spans[0];
        assert!(rs.resource.as_ref().unwrap().attributes.iter().any(|kv| kv.key == "service.name"));
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(s.trace_id, hex("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(s.span_id, hex("0000000000000abc"));
        assert_eq!(s.parent_span_id, hex("00f067aa0ba902b7"));
        assert_eq!(s.kind, otlp::trace::span::SpanKind::Server as i32);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 1_500_000);
        assert_eq!(s.status.as_ref().unwrap().code, otlp::trace::status::StatusCode::Error as i32);
    }

    #[test]
    fn zipkin_v2_names_ids_in_hex_and_times_in_microseconds() {
        let v: serde_json::Value = serde_json::from_str(&zipkin_json(&resource(), &[span()])).unwrap();
        let s = &v[0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["id"], "0000000000000abc");
        assert_eq!(s["parentId"], "00f067aa0ba902b7");
        assert_eq!(s["kind"], "SERVER");
        assert_eq!(s["timestamp"], 1_700_000_000_123_000u64);
        assert_eq!(s["duration"], 1500);
        assert_eq!(s["localEndpoint"]["serviceName"], "reviews.prod");
        assert_eq!(s["remoteEndpoint"]["ipv4"], "10.0.0.7");
        assert_eq!(s["tags"]["http.status_code"], "503");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
