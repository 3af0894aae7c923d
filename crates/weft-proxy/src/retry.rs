//! Retries: which outcomes may be retried (Envoy's `retryOn` conditions),
//! jittered exponential backoff, and a Linkerd-style budget so retries can
//! never multiply an outage: they may add at most `ratio` of the requests
//! (plus `min_per_second`) over a `ttl` window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_proto::config::RetryBudget;

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

/// Does `retry_on` allow retrying this outcome?
/// Whether a policy names a gRPC status: then it is meant for gRPC calls,
/// which are all POSTs.
pub fn names_grpc_status(retry_on: &[String]) -> bool {
    retry_on.iter().any(|c| grpc_code(c).is_some())
}

/// The gRPC status code a retry condition names.
fn grpc_code(condition: &str) -> Option<u32> {
    Some(match condition {
        "cancelled" => 1,
        "deadline-exceeded" => 4,
        "resource-exhausted" => 8,
        "internal" => 13,
        "unavailable" => 14,
        _ => return None,
    })
}

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

/// The wait before retry number `n` (1-based): full jitter over `base * 2^(n-1)`, capped at 10x base.
pub fn backoff(base: Duration, n: u32, random: u64) -> Duration {
    let ceiling = (base.as_micros() as u64).saturating_mul(1 << (n.saturating_sub(1)).min(10)).min(base.as_micros() as u64 * 10);
    Duration::from_micros(random % ceiling.max(1))
}

/// Request and retry counts in the current window.
#[derive(Debug)]
pub struct BudgetState {
    config: RetryBudget,
    window: Mutex<Instant>,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl BudgetState {
    pub fn new(config: RetryBudget) -> BudgetState {
        BudgetState { config, window: Mutex::new(Instant::now()), requests: 0.into(), retries: 0.into() }
    }

    fn roll(&self) {
        let mut start = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if start.elapsed() >= self.config.ttl {
            *start = Instant::now();
            self.requests.store(0, Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
    }

    /// Counts an original request.
    pub fn record_request(&self) {
        self.roll();
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_retry(&self) -> bool {
        self.roll();
        let allowed = (self.requests.load(Ordering::Relaxed) as f64 * self.config.ratio) as u64
            + self.config.min_per_second as u64 * self.config.ttl.as_secs().max(1);
        let taken = self.retries.fetch_add(1, Ordering::Relaxed);
        if taken < allowed {
            true
        } else {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
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

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let base = Duration::from_millis(25);
        for n in 1..8 {
            for r in [0, 1, 12345, u64::MAX] {
                assert!(backoff(base, n, r) < base * 10);
            }
        }
        assert!(backoff(base, 1, 24_999) < base);
    }

    #[test]
    fn the_budget_caps_retries_at_the_ratio_plus_the_minimum() {
        let b = BudgetState::new(RetryBudget { ratio: 0.2, min_per_second: 0, ttl: Duration::from_secs(10) });
        for _ in 0..100 {
            b.record_request();
        }
        let granted = (0..100).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 20);
        let with_min = BudgetState::new(RetryBudget { ratio: 0.0, min_per_second: 2, ttl: Duration::from_secs(1) });
        assert_eq!((0..10).filter(|_| with_min.try_retry()).count(), 2);
    }
}
