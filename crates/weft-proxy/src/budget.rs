//! Retry budgets (Linkerd's): retries may add at most `ratio` of the
//! requests, plus `min_per_second`, over a `ttl` window, so retries can
//! never multiply an outage. One budget is shared by every request of a
//! route rule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use weft_proto::config::RetryBudget;

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
    use std::time::Duration;

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
