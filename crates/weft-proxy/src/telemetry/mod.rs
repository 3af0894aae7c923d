//! What the proxy tells about the traffic it carries. A request and a
//! connection are each described by one record ([`record`]) that the path
//! fills as it goes and that is emitted exactly once, when the request or
//! connection is done (or dropped): the metrics ([`metrics`]) and the access
//! log ([`access_log`]) read that record, so they always agree. A sampled
//! request's span ([`tracer`]) rides in the record too and is exported
//! ([`span_export`]) when it is emitted; the trace headers are read and
//! written by [`trace_context`].

pub use weft_proto::access_format;
pub mod access_log;
pub mod access_sink;
pub mod authz;
pub mod flow;
pub mod label_overrides;
pub mod metrics;
pub mod record;
pub mod span_export;
pub mod standard;
pub mod trace_context;
pub mod tracer;

pub use metrics::{EjectionLabels, Metrics, ReloadLabels, RetryLabels};
pub use record::{ConnectionRecord, Parties, Peer, RequestRecord, TcpRelay};
