//! Choosing an endpoint, and what that choice depends on at run time: the
//! load balancer (round robin, random, least request and peak EWMA by power
//! of two choices, ring hash), requests in flight and latency per endpoint,
//! and outlier ejection. The cluster's limits on concurrent requests
//! (circuit breaking) are in [`limits`], hash keys and cookies in [`hash`].

pub mod hash;
pub mod limits;

pub use hash::hash64;
pub use limits::{Admitted, Limits};

use weft_proto::config::{Cluster, Endpoint, LoadBalancer, OutlierDetection};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How fast peak-EWMA forgets (Linkerd's default decay).
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// The latency assumed for an endpoint not yet measured: optimistic, so a
/// new endpoint is tried soon (one slow answer is enough to mark it slow).
const DEFAULT_RTT: Duration = Duration::from_millis(1);
/// Virtual nodes per unit of endpoint weight on the hash ring.
const RING_NODES: u32 = 128;

/// What happened to one request, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// Connect failure, reset or timeout: an error of our own making.
    LocalFailure,
}

#[derive(Default)]
struct Failures {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    ejections: u32,
}

/// Run-time state of one endpoint.
pub struct EndpointState {
    in_flight: AtomicU32,
    /// Peak-EWMA latency in nanoseconds, and when it was last updated (ns since `epoch`).
    ewma_ns: AtomicU64,
    stamp_ns: AtomicU64,
    /// Ejected until this time (ns since the balancer's epoch); 0: never ejected.
    /// An atomic, so picking an endpoint takes no lock.
    ejected_until_ns: AtomicU64,
    failures: Mutex<Failures>,
}

impl EndpointState {
    fn new() -> EndpointState {
        EndpointState {
            in_flight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(DEFAULT_RTT.as_nanos() as u64),
            stamp_ns: AtomicU64::new(0),
            ejected_until_ns: AtomicU64::new(0),
            failures: Mutex::new(Failures::default()),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The endpoints of a cluster with their state, and how to choose among them.
pub struct Balancer {
    lb: LoadBalancer,
    weights: Vec<u32>,
    states: Vec<EndpointState>,
    /// Round robin over this schedule (indices repeated by weight).
    schedule: Vec<usize>,
    next: AtomicUsize,
    /// Ring hash: sorted (point, endpoint index).
    ring: Vec<(u64, usize)>,
    outlier: Option<OutlierDetection>,
    epoch: Instant,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Balancer {
    pub fn new(cluster: &Cluster) -> Balancer {
        let eps = &cluster.endpoints;
        let weights: Vec<u32> = eps.iter().map(|e| e.weight.max(1)).collect();
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let mut schedule = Vec::new();
        // Interleave by weight (smooth: one of each, then the heavier ones again).
        let rounds = weights.iter().map(|w| w / g).max().unwrap_or(0);
        for r in 0..rounds.min(1000) {
            for (i, w) in weights.iter().enumerate() {
                if w / g > r {
                    schedule.push(i);
                }
            }
        }
        let mut ring = Vec::new();
        if cluster.lb == LoadBalancer::RingHash {
            for (i, e) in eps.iter().enumerate() {
                for v in 0..RING_NODES * weights[i].min(100) {
                    ring.push((hash64(format!("{}#{v}", e.address).as_bytes()), i));
                }
            }
            ring.sort_unstable();
        }
        Balancer {
            lb: cluster.lb.clone(),
            weights,
            states: eps.iter().map(|_| EndpointState::new()).collect(),
            schedule,
            next: AtomicUsize::new(0),
            ring,
            outlier: cluster.outlier.clone(),
            epoch: Instant::now(),
        }
    }

    pub fn state(&self, i: usize) -> &EndpointState {
        &self.states[i]
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Not ejected at `now_ns` (an ejection ends when its time runs out).
    fn available(&self, i: usize, now_ns: u64) -> bool {
        self.states[i].ejected_until_ns.load(Ordering::Relaxed) <= now_ns
    }

    /// Whether picks must skip ejected endpoints: with outlier detection,
    /// unless too few are healthy (panic mode, as Envoy: then all are used).
    fn skip_ejected(&self, now_ns: u64) -> bool {
        let Some(o) = self.outlier.as_ref() else { return false };
        let healthy = (0..self.states.len()).filter(|i| self.available(*i, now_ns)).count();
        healthy > 0 && healthy * 100 >= o.min_health_percent as usize * self.states.len()
    }

    /// Chooses an endpoint; `hash` is the request's consistent-hash key when
    /// the balancer is a ring. `None` when there are no endpoints.
    pub fn pick(&self, hash: Option<u64>, random: &mut dyn FnMut() -> u64) -> Option<usize> {
        let n = self.states.len();
        if n == 0 {
            return None;
        }
        let now_ns = self.now_ns();
        let skip = self.skip_ejected(now_ns);
        let usable = |i: usize| !skip || self.available(i, now_ns);
        match &self.lb {
            LoadBalancer::RingHash => {
                let h = hash.unwrap_or_else(&mut *random);
                let start = self.ring.partition_point(|(p, _)| *p < h);
                (0..self.ring.len()).map(|k| self.ring[(start + k) % self.ring.len()].1).find(|i| usable(*i))
            }
            LoadBalancer::RoundRobin => {
                let len = self.schedule.len().max(1);
                (0..len).map(|_| self.schedule[self.next.fetch_add(1, Ordering::Relaxed) % len]).find(|i| usable(*i))
            }
            LoadBalancer::Random => self.weighted_random(random, &usable),
            LoadBalancer::LeastRequest | LoadBalancer::PeakEwma => {
                // Two different endpoints (when there are two), the cheaper wins.
                let a = self.weighted_random(random, &usable)?;
                let b = self.weighted_random(random, &|i| i != a && usable(i)).unwrap_or(a);
                let ewma = matches!(self.lb, LoadBalancer::PeakEwma);
                Some(if self.cost(b, ewma) < self.cost(a, ewma) { b } else { a })
            }
        }
    }

    fn weighted_random(&self, random: &mut dyn FnMut() -> u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = (0..self.states.len()).filter(|i| usable(*i)).map(|i| self.weights[i] as u64).sum();
        if total == 0 {
            return None;
        }
        let mut point = random() % total;
        for i in (0..self.states.len()).filter(|i| usable(*i)) {
            let w = self.weights[i] as u64;
            if point < w {
                return Some(i);
            }
            point -= w;
        }
        None
    }

    /// Least request: requests in flight. Peak EWMA: the decayed latency
    /// times (in flight + 1). Weights are not in the cost: they already
    /// decide how often an endpoint is one of the two choices (dividing by
    /// them too would hand every tie to the heavier endpoint, starving a
    /// lighter one that is just as idle).
    fn cost(&self, i: usize, ewma: bool) -> f64 {
        let s = &self.states[i];
        if !ewma {
            return s.in_flight() as f64;
        }
        let load = s.in_flight() as f64 + 1.0;
        let elapsed = self.now_ns().saturating_sub(s.stamp_ns.load(Ordering::Relaxed)) as f64;
        let decay = (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
        // An endpoint not heard from lately looks cheaper and cheaper, so it gets probed again.
        let rtt = s.ewma_ns.load(Ordering::Relaxed) as f64 * decay;
        rtt.max(1.0) * load
    }

    /// Marks a request to endpoint `i` as in flight until the guard drops.
    pub fn start(self: &Arc<Self>, i: usize) -> InFlight {
        self.states[i].in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { balancer: self.clone(), index: i, started: Instant::now() }
    }

    fn observe_latency(&self, i: usize, rtt: Duration) {
        let s = &self.states[i];
        let now = self.now_ns();
        let rtt = rtt.as_nanos() as f64;
        let prev = s.ewma_ns.load(Ordering::Relaxed) as f64;
        let elapsed = now.saturating_sub(s.stamp_ns.swap(now, Ordering::Relaxed)) as f64;
        // Peak: a slower sample is taken at once; faster ones pull the average down gradually.
        let next = if rtt > prev {
            rtt
        } else {
            let w = (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
            prev * w + rtt * (1.0 - w)
        };
        s.ewma_ns.store(next as u64, Ordering::Relaxed);
    }

    /// Counts an outcome for outlier detection; ejects the endpoint when a
    /// threshold is reached and `maxEjectionPercent` allows. Returns true
    /// when this outcome ejected it.
    pub fn record(&self, i: usize, outcome: Outcome) -> bool {
        let Some(o) = &self.outlier else { return false };
        let now_ns = self.now_ns();
        let tripped = {
            let mut f = self.states[i].failures.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Outcome::Status(s) if s < 500 => {
                    f.consecutive_5xx = 0;
                    f.consecutive_gateway = 0;
                    f.consecutive_local = 0;
                    return false;
                }
                Outcome::Status(s) => {
                    f.consecutive_5xx += 1;
                    if matches!(s, 502..=504) {
                        f.consecutive_gateway += 1;
                    } else {
                        f.consecutive_gateway = 0;
                    }
                }
                Outcome::LocalFailure => {
                    // Envoy maps a local failure to a 503 for the 5xx and gateway counts.
                    f.consecutive_local += 1;
                    f.consecutive_5xx += 1;
                    f.consecutive_gateway += 1;
                }
            }
            let hit = |limit: Option<u32>, count: u32| limit.is_some_and(|l| l > 0 && count >= l);
            self.available(i, now_ns)
                && (hit(o.consecutive_5xx, f.consecutive_5xx)
                    || hit(o.consecutive_gateway_errors, f.consecutive_gateway)
                    || hit(o.consecutive_local_origin_failures, f.consecutive_local))
        };
        if !tripped {
            return false;
        }
        let ejected = (0..self.states.len()).filter(|j| *j != i && !self.available(*j, now_ns)).count();
        let allowed = ((self.states.len() * o.max_ejection_percent as usize) / 100).max(usize::from(o.max_ejection_percent > 0));
        if ejected >= allowed {
            return false;
        }
        let mut f = self.states[i].failures.lock().unwrap_or_else(|p| p.into_inner());
        f.ejections += 1;
        let until = now_ns.saturating_add((o.base_ejection_time * f.ejections).as_nanos() as u64).max(1);
        self.states[i].ejected_until_ns.store(until, Ordering::Relaxed);
        f.consecutive_5xx = 0;
        f.consecutive_gateway = 0;
        f.consecutive_local = 0;
        true
    }

    /// Endpoint `i` as the admin `/clusters` view shows it.
    pub fn describe(&self, i: usize) -> serde_json::Value {
        let s = &self.states[i];
        let f = s.failures.lock().unwrap_or_else(|p| p.into_inner());
        let left_ns = s.ejected_until_ns.load(Ordering::Relaxed).saturating_sub(self.now_ns());
        let ejected_for = (left_ns > 0).then(|| Duration::from_nanos(left_ns));
        serde_json::json!({
            "in_flight": s.in_flight(),
            "latency_ewma_ms": s.ewma_ns.load(Ordering::Relaxed) as f64 / 1e6,
            "consecutive_5xx": f.consecutive_5xx,
            "ejections": f.ejections,
            "ejected_for_ms": ejected_for.map(|d| d.as_millis() as u64),
        })
    }

    /// Is endpoint `i` ejected now (for the admin view and tests)?
    pub fn is_ejected(&self, i: usize) -> bool {
        !self.available(i, self.now_ns())
    }
}

/// A request in flight to one endpoint; dropping it ends it.
pub struct InFlight {
    balancer: Arc<Balancer>,
    index: usize,
    started: Instant,
}

impl InFlight {
    /// The response head arrived (or the try failed): record latency and outcome.
    pub fn finish(self, outcome: Outcome) -> bool {
        if let Outcome::Status(_) = outcome {
            self.balancer.observe_latency(self.index, self.started.elapsed());
        }
        self.balancer.record(self.index, outcome)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.balancer.states[self.index].in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Endpoints of a cluster by index, for tests and the admin view.
pub fn endpoint_index(endpoints: &[Endpoint], address: std::net::SocketAddr) -> Option<usize> {
    endpoints.iter().position(|e| e.address == address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(lb: &str, n: usize) -> Cluster {
        let eps: Vec<String> = (1..=n).map(|i| format!("\"10.0.0.{i}:80\"")).collect();
        serde_norway::from_str(&format!("{{name: c, endpoints: [{}], lb: {lb}}}", eps.join(","))).unwrap()
    }

    fn rng() -> impl FnMut() -> u64 {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn ring_hash_keeps_keys_and_moves_about_one_in_n_when_an_endpoint_joins() {
        let four = Balancer::new(&cluster("ring_hash", 4));
        let five = Balancer::new(&cluster("ring_hash", 5));
        let mut r = rng();
        let keys: Vec<u64> = (0..10_000).map(|k| hash64(format!("user-{k}").as_bytes())).collect();
        let moved = keys.iter().filter(|k| four.pick(Some(**k), &mut r) != five.pick(Some(**k), &mut r)).count();
        assert!(keys.iter().all(|k| four.pick(Some(*k), &mut r) == four.pick(Some(*k), &mut r)), "a key keeps its endpoint");
        // Ideal is 1/5 = 2,000; a ring with 128 nodes per endpoint stays close.
        assert!((1_400..2_600).contains(&moved), "{moved} of 10000 keys moved");
        let mut per = [0usize; 4];
        for k in &keys {
            per[four.pick(Some(*k), &mut r).unwrap()] += 1;
        }
        assert!(per.iter().all(|c| (1_800..3_200).contains(c)), "spread {per:?}");
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let b = Arc::new(Balancer::new(&cluster("least_request", 2)));
        let _busy: Vec<InFlight> = (0..10).map(|_| b.start(0)).collect();
        let mut r = rng();
        let picks = (0..1000).filter(|_| b.pick(None, &mut r) == Some(1)).count();
        assert_eq!(picks, 1000, "the two choices are always both endpoints");
    }

    #[test]
    fn peak_ewma_prefers_the_faster_endpoint() {
        let b = Arc::new(Balancer::new(&cluster("peak_ewma", 2)));
        b.observe_latency(0, Duration::from_millis(50));
        b.observe_latency(1, Duration::from_millis(2));
        let mut r = rng();
        let fast = (0..1000).filter(|_| b.pick(None, &mut r) == Some(1)).count();
        assert!(fast > 700, "{fast}");
    }

    #[test]
    fn weights_shape_round_robin_and_random() {
        let mut c = cluster("round_robin", 2);
        c.endpoints[0].weight = 3;
        let b = Balancer::new(&c);
        let mut r = rng();
        let first = (0..400).filter(|_| b.pick(None, &mut r) == Some(0)).count();
        assert_eq!(first, 300);
        c.lb = LoadBalancer::Random;
        let b = Balancer::new(&c);
        let first = (0..4000).filter(|_| b.pick(None, &mut r) == Some(0)).count();
        assert!((2_800..3_200).contains(&first), "{first}");
    }

    #[test]
    fn outliers_are_ejected_within_the_max_percent_and_come_back() {
        let mut c = cluster("round_robin", 3);
        c.outlier = Some(OutlierDetection {
            consecutive_5xx: Some(3),
            consecutive_gateway_errors: None,
            consecutive_local_origin_failures: None,
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_millis(50),
            max_ejection_percent: 34,
            min_health_percent: 0,
        });
        let b = Balancer::new(&c);
        assert!(!b.record(0, Outcome::Status(500)) && !b.record(0, Outcome::Status(503)));
        assert!(b.record(0, Outcome::Status(500)), "the third consecutive 5xx ejects");
        let mut r = rng();
        assert!((0..100).all(|_| b.pick(None, &mut r) != Some(0)));
        // 34% of 3 allows one ejection: the second failing endpoint stays.
        for _ in 0..3 {
            b.record(1, Outcome::LocalFailure);
        }
        assert!(!b.is_ejected(1));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!b.is_ejected(0), "back after the ejection time");
        // A success resets the count.
        b.record(2, Outcome::Status(500));
        b.record(2, Outcome::Status(200));
        b.record(2, Outcome::Status(500));
        assert!(!b.record(2, Outcome::Status(500)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn weighted(lb: LoadBalancer, weights: &[u32]) -> Cluster {
            let mut c = cluster("round_robin", weights.len());
            c.lb = lb;
            for (e, w) in c.endpoints.iter_mut().zip(weights) {
                e.weight = *w;
            }
            c
        }

        fn seeded(seed: u64) -> impl FnMut() -> u64 {
            let mut x = seed | 1;
            move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn round_robin_gives_each_endpoint_exactly_its_weight(weights in prop::collection::vec(1u32..8, 1..6)) {
                let b = Balancer::new(&weighted(LoadBalancer::RoundRobin, &weights));
                let g = weights.iter().copied().fold(0, gcd);
                let period: u32 = weights.iter().map(|w| w / g).sum();
                let mut counts = vec![0u32; weights.len()];
                let mut r = seeded(1);
                for _ in 0..period * 3 {
                    counts[b.pick(None, &mut r).unwrap()] += 1;
                }
                let want: Vec<u32> = weights.iter().map(|w| w / g * 3).collect();
                prop_assert_eq!(counts, want);
            }

            #[test]
            fn random_and_two_choices_follow_the_weights(weights in prop::collection::vec(1u32..8, 2..6), seed in any::<u64>(), least in any::<bool>()) {
                let lb = if least { LoadBalancer::LeastRequest } else { LoadBalancer::Random };
                let b = Balancer::new(&weighted(lb, &weights));
                let total: u32 = weights.iter().sum();
                let n = 20_000;
                let mut counts = vec![0u32; weights.len()];
                let mut r = seeded(seed);
                for _ in 0..n {
                    counts[b.pick(None, &mut r).unwrap()] += 1;
                }
                // Idle endpoints (nothing in flight): both follow the weights.
                for (c, w) in counts.iter().zip(&weights) {
                    let share = *c as f64 / n as f64;
                    let want = *w as f64 / total as f64;
                    prop_assert!((share - want).abs() < 0.05, "{share:.3} for weight {w} of {total}: {counts:?}");
                }
            }

            #[test]
            fn ejected_endpoints_are_never_picked_unless_too_few_are_healthy(n in 2usize..7, ejected in prop::collection::vec(any::<bool>(), 7), min_health in prop::sample::select(vec![0u32, 50]), seed in any::<u64>()) {
                let mut c = cluster("random", n);
                c.outlier = Some(OutlierDetection {
                    consecutive_5xx: Some(1),
                    consecutive_gateway_errors: None,
                    consecutive_local_origin_failures: None,
                    interval: Duration::from_secs(1),
                    base_ejection_time: Duration::from_secs(600),
                    max_ejection_percent: 100,
                    min_health_percent: min_health,
                });
                let b = Balancer::new(&c);
                for (i, eject) in ejected.iter().take(n).enumerate() {
                    if *eject {
                        b.record(i, Outcome::Status(503));
                    }
                }
                let out: Vec<usize> = (0..n).filter(|i| b.is_ejected(*i)).collect();
                let healthy = n - out.len();
                let panic = healthy == 0 || healthy * 100 < min_health as usize * n;
                let mut r = seeded(seed);
                for _ in 0..200 {
                    let i = b.pick(None, &mut r);
                    prop_assert!(i.is_some(), "a pick always finds an endpoint");
                    if !panic {
                        prop_assert!(!out.contains(&i.unwrap()), "picked ejected {:?} (ejected {out:?})", i);
                    }
                }
            }
        }
    }
}
