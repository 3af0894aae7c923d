//! Envoy's access-log format language, for the operators Istio's default
//! formats and the adoption guides use: a format string is compiled once
//! per config into [`Op`]s (an unknown operator refuses the config), and a
//! line is rendered from a [`LogFields`] view of one request or connection.
//! Text lines print `-` for what is not known; JSON lines print numbers as
//! numbers and what is not known as `null`, as Envoy does.

use std::fmt::Write;
use std::time::SystemTime;

/// Istio's default text format (meshConfig.accessLogFormat unset).
pub const ISTIO_TEXT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON keys (accessLogEncoding: JSON).
pub const ISTIO_JSON: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("route_name", "%ROUTE_NAME%"),
];

/// A request or response header an operator reads (lower case; `:method`,
/// `:path`, `:authority`, `:scheme` are the pseudo-headers).
pub type HeaderKey = String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Text(String),
    StartTime,
    /// `%REQ(X?Y):N%`: header X, else Y, at most N characters.
    Req { name: HeaderKey, alt: Option<HeaderKey>, max: Option<usize> },
    Resp { name: HeaderKey, alt: Option<HeaderKey>, max: Option<usize> },
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    DownstreamLocalAddress,
    DownstreamRemoteAddress,
    DownstreamPeerUriSan,
    RequestedServerName,
    RouteName,
}

/// A compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub ops: Vec<Op>,
}

impl Format {
    /// Compiles an Envoy format string; the error names the operator.
    pub fn parse(text: &str) -> Result<Format, String> {
        let mut ops = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            // `%%` is a literal percent sign.
            if let Some(stripped) = after.strip_prefix('%') {
                literal.push('%');
                rest = stripped;
                continue;
            }
            let Some(end) = after.find('%') else { return Err(format!("unterminated operator at {:?}", &rest[i..])) };
            let op = operator(&after[..end])?;
            if !literal.is_empty() {
                ops.push(Op::Text(std::mem::take(&mut literal)));
            }
            ops.push(op);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            ops.push(Op::Text(literal));
        }
        Ok(Format { ops })
    }

    /// The request headers it reads (lower case).
    pub fn request_headers(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().flat_map(|o| match o {
            Op::Req { name, alt, .. } => vec![name.as_str()].into_iter().chain(alt.as_deref()),
            _ => vec![].into_iter().chain(None),
        })
    }

    /// The response headers it reads (lower case).
    pub fn response_headers(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().flat_map(|o| match o {
            Op::Resp { name, alt, .. } => vec![name.as_str()].into_iter().chain(alt.as_deref()),
            _ => vec![].into_iter().chain(None),
        })
    }
}

fn header_op(args: &str, req: bool) -> Result<Op, String> {
    // `REQ(X?Y):N` arrives here as `X?Y):N` without the `REQ(`.
    let (inner, max) = match args.rsplit_once(')') {
        Some((inner, tail)) => (inner, tail.strip_prefix(':').map(|n| n.parse::<usize>().map_err(|_| format!("length {n:?} is not a number"))).transpose()?),
        None => return Err(format!("{} needs a closing parenthesis", if req { "REQ(" } else { "RESP(" })),
    };
    let (name, alt) = match inner.split_once('?') {
        Some((a, b)) => (a.to_ascii_lowercase(), Some(b.to_ascii_lowercase())),
        None => (inner.to_ascii_lowercase(), None),
    };
    if name.is_empty() {
        return Err("a header operator needs a header name".into());
    }
    Ok(if req { Op::Req { name, alt, max } } else { Op::Resp { name, alt, max } })
}

fn operator(name: &str) -> Result<Op, String> {
    if let Some(args) = name.strip_prefix("REQ(") {
        return header_op(args, true);
    }
    if let Some(args) = name.strip_prefix("RESP(") {
        return header_op(args, false);
    }
    Ok(match name {
        "START_TIME" => Op::StartTime,
        "PROTOCOL" => Op::Protocol,
        "RESPONSE_CODE" => Op::ResponseCode,
        "RESPONSE_FLAGS" => Op::ResponseFlags,
        "RESPONSE_CODE_DETAILS" => Op::ResponseCodeDetails,
        "CONNECTION_TERMINATION_DETAILS" => Op::ConnectionTerminationDetails,
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Op::UpstreamTransportFailureReason,
        "BYTES_RECEIVED" => Op::BytesReceived,
        "BYTES_SENT" => Op::BytesSent,
        "DURATION" => Op::Duration,
        "UPSTREAM_HOST" => Op::UpstreamHost,
        "UPSTREAM_CLUSTER" => Op::UpstreamCluster,
        "UPSTREAM_LOCAL_ADDRESS" => Op::UpstreamLocalAddress,
        "DOWNSTREAM_LOCAL_ADDRESS" => Op::DownstreamLocalAddress,
        "DOWNSTREAM_REMOTE_ADDRESS" => Op::DownstreamRemoteAddress,
        "DOWNSTREAM_PEER_URI_SAN" => Op::DownstreamPeerUriSan,
        "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
        "ROUTE_NAME" => Op::RouteName,
        other => return Err(format!("%{other}% is not an access-log operator weft knows (START_TIME, REQ(X), RESP(X), PROTOCOL, RESPONSE_CODE, RESPONSE_FLAGS, BYTES_RECEIVED, BYTES_SENT, DURATION, UPSTREAM_HOST, UPSTREAM_CLUSTER, DOWNSTREAM_REMOTE_ADDRESS, ROUTE_NAME, ...)")),
    })
}

/// What a line is rendered from.
pub trait LogFields {
    fn start(&self) -> SystemTime;
    /// A request header (lower case name; pseudo-headers too), when it had one.
    fn request_header(&self, name: &str) -> Option<&str>;
    fn response_header(&self, name: &str) -> Option<&str>;
    /// `HTTP/1.1`, `HTTP/2`; `None` for opaque TCP.
    fn protocol(&self) -> Option<&'static str>;
    /// 0 when there was no response (TCP).
    fn response_code(&self) -> u16;
    fn response_flags(&self) -> &str;
    fn response_code_details(&self) -> Option<&str>;
    fn failure_reason(&self) -> Option<&str>;
    fn bytes_received(&self) -> u64;
    fn bytes_sent(&self) -> u64;
    fn duration_ms(&self) -> u64;
    fn upstream_host(&self) -> Option<String>;
    fn upstream_cluster(&self) -> Option<&str>;
    fn downstream_local(&self) -> Option<String>;
    fn downstream_remote(&self) -> String;
    fn peer_uri_san(&self) -> Option<&str>;
    fn server_name(&self) -> Option<&str>;
    fn route(&self) -> Option<&str>;
}

/// One operator's value: text, a number, or nothing known.
enum Value<'a> {
    Str(std::borrow::Cow<'a, str>),
    Num(u64),
    Missing,
}

fn value<'a>(op: &'a Op, f: &'a dyn LogFields) -> Value<'a> {
    use std::borrow::Cow::{Borrowed, Owned};
    let s = |v: Option<&'a str>| v.map(|v| Value::Str(Borrowed(v))).unwrap_or(Value::Missing);
    let owned = |v: Option<String>| v.map(|v| Value::Str(Owned(v))).unwrap_or(Value::Missing);
    let header = |get: &dyn Fn(&str) -> Option<&'a str>, name: &str, alt: &Option<String>, max: &Option<usize>| {
        let v = get(name).or_else(|| alt.as_deref().and_then(get));
        match (v, max) {
            (Some(v), Some(n)) => Value::Str(Borrowed(&v[..v.char_indices().nth(*n).map(|(i, _)| i).unwrap_or(v.len())])),
            (Some(v), None) => Value::Str(Borrowed(v)),
            (None, _) => Value::Missing,
        }
    };
    match op {
        Op::Text(t) => Value::Str(Borrowed(t)),
        Op::StartTime => Value::Str(Owned(rfc3339_millis(f.start()))),
        Op::Req { name, alt, max } => header(&|n| f.request_header(n), name, alt, max),
        Op::Resp { name, alt, max } => header(&|n| f.response_header(n), name, alt, max),
        Op::Protocol => s(f.protocol()),
        Op::ResponseCode => Value::Num(f.response_code() as u64),
        Op::ResponseFlags => Value::Str(Borrowed(f.response_flags())),
        Op::ResponseCodeDetails => s(f.response_code_details()),
        Op::ConnectionTerminationDetails => Value::Missing,
        Op::UpstreamTransportFailureReason => s(f.failure_reason()),
        Op::BytesReceived => Value::Num(f.bytes_received()),
        Op::BytesSent => Value::Num(f.bytes_sent()),
        Op::Duration => Value::Num(f.duration_ms()),
        Op::UpstreamHost => owned(f.upstream_host()),
        Op::UpstreamCluster => s(f.upstream_cluster()),
        Op::UpstreamLocalAddress => Value::Missing,
        Op::DownstreamLocalAddress => owned(f.downstream_local()),
        Op::DownstreamRemoteAddress => Value::Str(Owned(f.downstream_remote())),
        Op::DownstreamPeerUriSan => s(f.peer_uri_san()),
        Op::RequestedServerName => s(f.server_name()),
        Op::RouteName => s(f.route()),
    }
}

/// One text line (the format's own line ending, or a newline added).
pub fn text_line(format: &Format, f: &dyn LogFields) -> String {
    let mut out = String::with_capacity(256);
    for op in &format.ops {
        match value(op, f) {
            Value::Str(v) => out.push_str(&v),
            Value::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Missing => out.push('-'),
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// One JSON object per line, keys in the order given.
pub fn json_line(fields: &[(String, Format)], f: &dyn LogFields) -> String {
    let mut out = String::with_capacity(512);
    out.push('{');
    for (i, (key, format)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, key);
        out.push(':');
        match format.ops.as_slice() {
            // A lone operator keeps its type: a number, or null when not known.
            [op] if !matches!(op, Op::Text(_)) => match value(op, f) {
                Value::Num(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Str(v) => json_string(&mut out, &v),
                Value::Missing => out.push_str("null"),
            },
            _ => json_string(&mut out, text_line(format, f).trim_end_matches('\n')),
        }
    }
    out.push_str("}\n");
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-12-01T12:00:00.123Z`, as Envoy prints START_TIME.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Fake;
    impl LogFields for Fake {
        fn start(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_590_400_123)
        }
        fn request_header(&self, name: &str) -> Option<&str> {
            match name {
                ":method" => Some("GET"),
                ":path" => Some("/api/items?x=1"),
                ":authority" => Some("reviews.prod:80"),
                "user-agent" => Some("curl/8.5.0"),
                "x-request-id" => Some("abc-123"),
                _ => None,
            }
        }
        fn response_header(&self, _: &str) -> Option<&str> {
            None
        }
        fn protocol(&self) -> Option<&'static str> {
            Some("HTTP/1.1")
        }
        fn response_code(&self) -> u16 {
            503
        }
        fn response_flags(&self) -> &str {
            "UF"
        }
        fn response_code_details(&self) -> Option<&str> {
            Some("upstream_connect_failure")
        }
        fn failure_reason(&self) -> Option<&str> {
            Some("connect to 10.0.0.7:8080 refused")
        }
        fn bytes_received(&self) -> u64 {
            0
        }
        fn bytes_sent(&self) -> u64 {
            91
        }
        fn duration_ms(&self) -> u64 {
            3
        }
        fn upstream_host(&self) -> Option<String> {
            Some("10.0.0.7:8080".into())
        }
        fn upstream_cluster(&self) -> Option<&str> {
            Some("outbound|80||reviews.prod.svc.cluster.local")
        }
        fn downstream_local(&self) -> Option<String> {
            Some("10.96.0.10:80".into())
        }
        fn downstream_remote(&self) -> String {
            "10.0.0.9:40000".into()
        }
        fn peer_uri_san(&self) -> Option<&str> {
            None
        }
        fn server_name(&self) -> Option<&str> {
            None
        }
        fn route(&self) -> Option<&str> {
            Some("reviews.prod.svc.cluster.local:80")
        }
    }

    #[test]
    fn istio_default_text_format_renders_as_envoy_does() {
        let line = text_line(&Format::parse(ISTIO_TEXT).unwrap(), &Fake);
        assert_eq!(
            line,
            "[2025-12-01T12:00:00.123Z] \"GET /api/items?x=1 HTTP/1.1\" 503 UF upstream_connect_failure - \"connect to 10.0.0.7:8080 refused\" 0 91 3 - \"-\" \"curl/8.5.0\" \"abc-123\" \"reviews.prod:80\" \"10.0.0.7:8080\" outbound|80||reviews.prod.svc.cluster.local - 10.96.0.10:80 10.0.0.9:40000 - reviews.prod.svc.cluster.local:80\n"
        );
    }

    #[test]
    fn json_keeps_numbers_numbers_and_unknowns_null() {
        let fields: Vec<(String, Format)> = ISTIO_JSON.iter().map(|(k, v)| (k.to_string(), Format::parse(v).unwrap())).collect();
        let line = json_line(&fields, &Fake);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["response_code"], 503);
        assert_eq!(v["bytes_sent"], 91);
        assert_eq!(v["path"], "/api/items?x=1");
        assert_eq!(v["x_forwarded_for"], serde_json::Value::Null);
        assert_eq!(v["start_time"], "2025-12-01T12:00:00.123Z");
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
    }

    #[test]
    fn header_operators_take_alternatives_and_lengths_and_bad_operators_are_named() {
        let f = Format::parse("%REQ(X-MISSING?:METHOD)% %REQ(:PATH):4% 100%% %RESP(CONTENT-TYPE)%").unwrap();
        assert_eq!(text_line(&f, &Fake), "GET /api 100% -\n");
        assert_eq!(f.request_headers().collect::<Vec<_>>(), ["x-missing", ":method", ":path"]);
        let e = Format::parse("%UPSTREAM_PEER_SUBJECT%").unwrap_err();
        assert!(e.contains("%UPSTREAM_PEER_SUBJECT% is not an access-log operator"), "{e}");
        assert!(Format::parse("%START_TIME").unwrap_err().contains("unterminated"));
        assert!(Format::parse("%REQ(:PATH):x%").unwrap_err().contains("not a number"));
    }

    #[test]
    fn start_time_is_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
