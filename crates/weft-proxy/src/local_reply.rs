//! Responses the proxy writes itself. Each carries an Envoy-style response
//! flag and a one-line reason, in headers and in the access log, so a 503
//! from the mesh always says why.

use crate::body::Body;

/// Header with the short response flag (`UF`, `UH`, ...).
pub const FLAGS_HEADER: &str = "x-weft-flags";
/// Header with the human reason.
pub const ERROR_HEADER: &str = "x-weft-error";

/// Envoy's response flags, the subset weft produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// UF: upstream connection failure.
    UpstreamConnectFailure,
    /// UC: upstream connection terminated before a response.
    UpstreamConnectionTermination,
    /// UH: no healthy upstream (no endpoints).
    NoHealthyUpstream,
    /// UO: upstream overflow (circuit breaking).
    UpstreamOverflow,
    /// UT: upstream request timeout.
    UpstreamRequestTimeout,
    /// NR: no route configured.
    NoRouteFound,
    /// DC: downstream connection termination.
    DownstreamConnectionTermination,
    /// UPE: upstream protocol error.
    UpstreamProtocolError,
    /// DPE: downstream protocol error (a request the proxy will not forward).
    DownstreamProtocolError,
    /// URX: the retry limit was reached and the last try still failed.
    UpstreamRetryLimitExceeded,
    /// FI: the route's fault injection aborted the request.
    FaultInjected,
    /// RBAC: an authorization policy refused the request or connection.
    Rbac,
    /// JWT: the request's JWT did not verify (weft's flag; Envoy sets none).
    JwtRejected,
}

impl Flag {
    pub fn code(self) -> &'static str {
        match self {
            Flag::UpstreamConnectFailure => "UF",
            Flag::UpstreamConnectionTermination => "UC",
            Flag::NoHealthyUpstream => "UH",
            Flag::UpstreamOverflow => "UO",
            Flag::UpstreamRequestTimeout => "UT",
            Flag::NoRouteFound => "NR",
            Flag::DownstreamConnectionTermination => "DC",
            Flag::UpstreamProtocolError => "UPE",
            Flag::DownstreamProtocolError => "DPE",
            Flag::UpstreamRetryLimitExceeded => "URX",
            Flag::FaultInjected => "FI",
            Flag::Rbac => "RBAC",
            Flag::JwtRejected => "JWT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub flag: Flag,
    pub reason: String,
    /// Answer as gRPC: HTTP 200 with this `grpc-status` (a trailers-only response).
    pub grpc_status: Option<u32>,
    /// What the caller is told instead of `reason`, which then goes only to
    /// the proxy's log and access log (a denial never explains policy to the caller).
    pub public: Option<&'static str>,
}

impl LocalReply {
    pub fn new(status: u16, flag: Flag, reason: impl Into<String>) -> LocalReply {
        LocalReply { status, flag, reason: reason.into(), grpc_status: None, public: None }
    }

    /// A reply whose `reason` is logged, while the caller reads only `public`.
    pub fn private(status: u16, flag: Flag, public: &'static str, reason: impl Into<String>) -> LocalReply {
        LocalReply { public: Some(public), ..LocalReply::new(status, flag, reason) }
    }

    pub fn into_response(self) -> http::Response<Body> {
        if let Some(code) = self.grpc_status {
            let mut resp = http::Response::new(crate::body::empty_body());
            let h = resp.headers_mut();
            h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", http::HeaderValue::from(code));
            if let Ok(v) = http::HeaderValue::from_str(self.public.unwrap_or(&self.reason)) {
                h.insert("grpc-message", v);
            }
            h.insert(FLAGS_HEADER, http::HeaderValue::from_static(self.flag.code()));
            return resp;
        }
        let body = crate::body::full_body(format!("{}\n", self.public.unwrap_or(&self.reason)));
        let mut resp = http::Response::new(body);
        *resp.status_mut() = http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let h = resp.headers_mut();
        h.insert(FLAGS_HEADER, http::HeaderValue::from_static(self.flag.code()));
        // Reasons are built from addresses and error texts; drop anything not valid in a header.
        if self.public.is_none() {
            let clean: String = self.reason.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect();
            if let Ok(v) = http::HeaderValue::from_str(&clean) {
                h.insert(ERROR_HEADER, v);
            }
        }
        h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        resp
    }
}
