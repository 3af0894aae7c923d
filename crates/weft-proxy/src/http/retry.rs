//! Which outcomes of a try may be retried: Envoy's `retryOn` conditions,
//! HTTP statuses and gRPC statuses. The loop that retries is in
//! [`super::send`]; the backoff in `crate::backoff`, the budget in
//! `crate::budget`.

/// How one try ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// An HTTP response; `grpc` is its `grpc-status` when the headers carry one.
    Response { status: u16, grpc: Option<u32> },
    ConnectFailure,
    /// The upstream reset or closed the connection before a response.
    Reset,
    /// The per-try timeout passed.
    Timeout,
}

/// Whether a policy names a gRPC status: then it is meant for gRPC calls,
/// which are all POSTs.
pub fn names_grpc_status(retry_on: &[String]) -> bool {
    retry_on.iter().any(|c| grpc_code(c).is_some())
}

/// The gRPC status a retry condition names: Envoy's five gRPC conditions.
fn grpc_code(condition: &str) -> Option<u32> {
    const CONDITIONS: [&str; 5] = ["cancelled", "deadline-exceeded", "resource-exhausted", "internal", "unavailable"];
    CONDITIONS.contains(&condition).then(|| weft_proto::grpc::code_by_name(condition)).flatten()
}

/// Does `retry_on` allow retrying this outcome?
pub fn retriable(retry_on: &[String], outcome: TryOutcome) -> bool {
    retry_on.iter().any(|cond| match (cond.as_str(), outcome) {
        ("5xx", TryOutcome::Response { status, .. }) => status >= 500,
        ("5xx" | "gateway-error" | "reset" | "connect-failure", TryOutcome::ConnectFailure) => true,
        ("5xx" | "gateway-error" | "reset", TryOutcome::Reset | TryOutcome::Timeout) => true,
        ("refused-stream", TryOutcome::Reset) => true,
        ("gateway-error", TryOutcome::Response { status, .. }) => matches!(status, 502..=504),
        ("retriable-4xx", TryOutcome::Response { status, .. }) => status == 409,
        (name, TryOutcome::Response { grpc: Some(code), .. }) if grpc_code(name).is_some() => grpc_code(name) == Some(code),
        (code, TryOutcome::Response { status, .. }) => code.parse::<u16>() == Ok(status),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn conditions() {
        let r = |status| TryOutcome::Response { status, grpc: None };
        assert!(retriable(&on(&["5xx"]), r(503)));
        assert!(!retriable(&on(&["5xx"]), r(404)));
        assert!(retriable(&on(&["gateway-error"]), r(502)));
        assert!(!retriable(&on(&["gateway-error"]), r(500)));
        assert!(retriable(&on(&["connect-failure"]), TryOutcome::ConnectFailure));
        assert!(!retriable(&on(&["connect-failure"]), TryOutcome::Reset));
        assert!(retriable(&on(&["reset"]), TryOutcome::Reset));
        assert!(retriable(&on(&["409"]), r(409)));
        assert!(retriable(&on(&["retriable-4xx"]), r(409)));
        assert!(retriable(&on(&["unavailable"]), TryOutcome::Response { status: 200, grpc: Some(14) }));
        assert!(!retriable(&on(&["unavailable"]), TryOutcome::Response { status: 200, grpc: Some(0) }));
    }

}
