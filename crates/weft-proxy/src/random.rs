//! Fast, non-cryptographic randomness for the request path: request ids,
//! weighted picks, fault and mirror percentages, backoff jitter. Never for
//! anything secret (keys and tokens come from `ring`).

use std::hash::{BuildHasher, Hasher};

/// A random number (xorshift64*, seeded per thread from the OS's hasher keys).
pub fn random_u64() -> u64 {
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

/// True for `percent` (0 to 100) of calls, in steps of 0.0001%, given a uniform `random`.
pub fn chance_of(percent: f64, random: u64) -> bool {
    ((random % 1_000_000) as f64) < percent * 10_000.0
}

/// True for `percent` (0 to 100) of calls.
pub fn chance(percent: f64) -> bool {
    chance_of(percent, random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_is_exact_at_the_edges_and_close_in_between() {
        assert!((0..1000).all(|i| !chance_of(0.0, i * 7919)));
        assert!((0..1000).all(|i| chance_of(100.0, i * 7919)));
        let hits = (0..100_000).filter(|_| chance(10.0)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
    }
}
