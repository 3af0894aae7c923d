//! Exponential backoff with jitter: one rule for every retry loop in the
//! proxy (route retries, the controller stream, certificate requests), so
//! a restarted controller or a failing endpoint is never hit in lockstep.

use std::time::Duration;

/// How much of each delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Anywhere between zero and the delay (AWS's "full jitter"): retries of
    /// one request spread out the most.
    Full,
    /// Between half the delay and the delay: reconnects never come too soon.
    Half,
}

/// `base` doubling per attempt up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// Reconnecting to the controller: 100 ms doubling to 5 s.
    pub const CONTROLLER: Backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(5), jitter: Jitter::Half };

    /// A route's retries (Envoy's rule: full jitter, capped at ten times the base).
    pub fn retries(base: Duration) -> Backoff {
        Backoff { base, max: base.saturating_mul(10), jitter: Jitter::Full }
    }

    /// The wait before attempt `n` (0 is the first retry), given a uniform `random`.
    pub fn delay(&self, n: u32, random: u64) -> Duration {
        let base = self.base.as_micros() as u64;
        let ceiling = base.saturating_mul(1u64 << n.min(20)).min(self.max.as_micros() as u64).max(1);
        let micros = match self.jitter {
            Jitter::Full => random % ceiling,
            Jitter::Half => ceiling / 2 + random % (ceiling / 2 + 1),
        };
        Duration::from_micros(micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_below_the_capped_ceiling() {
        let b = Backoff::retries(Duration::from_millis(25));
        for n in 0..12 {
            for r in [0, 1, 12345, u64::MAX] {
                assert!(b.delay(n, r) < Duration::from_millis(250));
            }
        }
        assert!(b.delay(0, 24_999) < Duration::from_millis(25));
    }

    #[test]
    fn half_jitter_grows_is_capped_and_never_comes_too_soon() {
        for n in 0..20 {
            for r in [0, 7, 999_999, u64::MAX] {
                let d = Backoff::CONTROLLER.delay(n, r).as_millis() as u64;
                let ceiling = (100u64 << n.min(6)).min(5_000);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {n}: {d} ms");
            }
        }
    }
}
