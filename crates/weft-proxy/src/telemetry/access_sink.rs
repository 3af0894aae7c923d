//! Where access-log lines go: off by default (Istio's default); when the
//! config turns it on, lines are rendered in the configured encoding
//! (Istio's default text or JSON, a custom Envoy format, or weft's own
//! line) and handed to a writer thread through a bounded queue. The request
//! path never waits on the file: a full queue drops the line and counts it
//! (`weft_access_log_dropped_total`).

use super::access_format::{self, Format};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use weft_proto::config::{AccessLog, AccessLogEncoding};

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 8192;

/// How lines are rendered.
#[derive(Debug)]
pub enum Encoding {
    Text(Format),
    Json(Vec<(String, Format)>),
    /// weft's own line (`LISTENER "METHOD PATH" STATUS FLAGS PEER route=...`).
    Weft,
}

/// A configured access log: its encoding and its writer.
pub struct AccessSink {
    pub encoding: Encoding,
    /// Request and response headers the encoding reads, captured per request.
    pub request_headers: Vec<String>,
    pub response_headers: Vec<String>,
    /// Only requests with a response code at least this are logged (the
    /// Telemetry API's `response.code >= N` filter), 0: all.
    pub min_code: u16,
    writer: Arc<Writer>,
    config: AccessLog,
}

impl std::fmt::Debug for AccessSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessSink").field("path", &self.config.path).finish()
    }
}

/// The thread writing one file's lines, and what it could not take.
struct Writer {
    path: String,
    queue: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn start(path: &str, dropped: Arc<AtomicU64>) -> Result<Writer, String> {
        let out: Box<dyn Write + Send> = match path {
            "" | "/dev/stdout" => Box::new(std::io::stdout()),
            "/dev/stderr" => Box::new(std::io::stderr()),
            p => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| format!("access log {p}: {e}"))?),
        };
        let (queue, lines) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
                while let Ok(line) = lines.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Drain what else is queued, then flush: one write per burst.
                    while let Ok(more) = lines.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .map_err(|e| format!("access log writer: {e}"))?;
        Ok(Writer { path: path.to_string(), queue, dropped })
    }
}

impl AccessSink {
    /// The sink for `config`, reusing `previous`'s writer when the path is the same.
    pub fn new(config: &AccessLog, previous: Option<&AccessSink>, dropped: Arc<AtomicU64>) -> Result<AccessSink, String> {
        let encoding = match config.encoding {
            AccessLogEncoding::Text => Encoding::Text(Format::parse(config.format.as_deref().unwrap_or(access_format::ISTIO_TEXT))?),
            AccessLogEncoding::Json => Encoding::Json(match &config.json_format {
                Some(fields) => fields.iter().map(|(k, v)| Ok((k.clone(), Format::parse(v).map_err(|e| format!("json field {k:?}: {e}"))?))).collect::<Result<_, String>>()?,
                None => access_format::ISTIO_JSON.iter().map(|(k, v)| Ok((k.to_string(), Format::parse(v)?))).collect::<Result<_, String>>()?,
            }),
            AccessLogEncoding::Weft => Encoding::Weft,
        };
        let (request_headers, response_headers) = match &encoding {
            Encoding::Text(f) => (f.request_headers().map(str::to_string).collect(), f.response_headers().map(str::to_string).collect()),
            Encoding::Json(fields) => (
                fields.iter().flat_map(|(_, f)| f.request_headers().map(str::to_string).collect::<Vec<_>>()).collect(),
                fields.iter().flat_map(|(_, f)| f.response_headers().map(str::to_string).collect::<Vec<_>>()).collect(),
            ),
            Encoding::Weft => (vec![], vec![]),
        };
        let writer = match previous.filter(|p| p.writer.path == config.path) {
            Some(p) => p.writer.clone(),
            None => Arc::new(Writer::start(&config.path, dropped)?),
        };
        Ok(AccessSink { encoding, request_headers, response_headers, min_code: config.min_response_code, writer, config: config.clone() })
    }

    pub fn is_for(&self, config: &AccessLog) -> bool {
        self.config == *config
    }

    /// Queues a line; never waits.
    pub fn write(&self, line: String) {
        match self.writer.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.writer.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}
