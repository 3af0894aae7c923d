//! The controller's own metrics, under the names Istio's control plane uses
//! so its dashboards and alerts work unchanged (`pilot_proxy_convergence_time`,
//! `pilot_xds_pushes`, `pilot_xds`, `pilot_total_xds_rejects`,
//! `citadel_server_*`), plus weft's. Served on the monitoring port
//! (`/metrics`, Istio's 15014), read-only. Written by hand: Istio's counters
//! carry no `_total` suffix, which a client library would add.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Istio's convergence buckets (seconds).
const CONVERGENCE: &[f64] = &[0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];

/// What a push carried, in Istio's xDS types: a whole config is all four, an
/// endpoint delta is `eds`.
pub const FULL_PUSH: &[&str] = &["cds", "eds", "lds", "rds"];
pub const ENDPOINT_PUSH: &[&str] = &["eds"];
const TYPES: &[&str] = &["cds", "eds", "lds", "rds"];

#[derive(Default)]
pub struct ControlMetrics {
    /// Per bucket (not cumulative; the last is over every bound), sum in µs.
    convergence: [AtomicU64; 9],
    convergence_sum_us: AtomicU64,
    pushes: [AtomicU64; 4],
    rejects: [AtomicU64; 4],
    csr: AtomicU64,
    issued: AtomicU64,
    csr_refused: AtomicU64,
    applies: AtomicU64,
    /// Webhook requests by outcome: injected, skipped, failed.
    injections: [AtomicU64; 3],
}

fn type_index(t: &str) -> Option<usize> {
    TYPES.iter().position(|x| *x == t)
}

/// What is read at scrape time from the rest of the controller.
pub struct Gauges {
    /// Proxies with an open stream.
    pub connected: u64,
    /// When the trust bundle's first root expires (unix seconds).
    pub root_expiry_unix: Option<i64>,
    /// Proxies whose running config is not the one wanted, and ones that refused theirs.
    pub stale: u64,
    pub nacked: u64,
}

impl ControlMetrics {
    /// A proxy acknowledged the config made for a change first seen `since` ago.
    pub fn converged(&self, since: Duration) {
        let secs = since.as_secs_f64();
        let i = CONVERGENCE.partition_point(|b| *b < secs);
        self.convergence[i].fetch_add(1, Relaxed);
        self.convergence_sum_us.fetch_add(since.as_micros() as u64, Relaxed);
    }

    pub fn pushed(&self, types: &[&str]) {
        for t in types {
            if let Some(i) = type_index(t) {
                self.pushes[i].fetch_add(1, Relaxed);
            }
        }
    }

    pub fn rejected(&self, types: &[&str]) {
        for t in types {
            if let Some(i) = type_index(t) {
                self.rejects[i].fetch_add(1, Relaxed);
            }
        }
    }

    /// A certificate request arrived; `issued` says whether it was signed.
    pub fn csr(&self, issued: bool) {
        self.csr.fetch_add(1, Relaxed);
        if issued {
            self.issued.fetch_add(1, Relaxed);
        } else {
            self.csr_refused.fetch_add(1, Relaxed);
        }
    }

    /// The injection webhook answered one request.
    pub fn injection(&self, outcome: &weft_kube::admission::Outcome) {
        use weft_kube::admission::Outcome;
        let i = match outcome {
            Outcome::Injected => 0,
            Outcome::Skipped(_) => 1,
            Outcome::Failed(_) => 2,
        };
        self.injections[i].fetch_add(1, Relaxed);
    }

    pub fn applied(&self) {
        self.applies.fetch_add(1, Relaxed);
    }

    /// Prometheus text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "pilot_proxy_convergence_time", "histogram", "Seconds from a config change to the proxy's ACK of the config it led to");
        let mut cumulative = 0;
        for (i, b) in CONVERGENCE.iter().enumerate() {
            cumulative += self.convergence[i].load(Relaxed);
            let _ = writeln!(out, "pilot_proxy_convergence_time_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.convergence[CONVERGENCE.len()].load(Relaxed);
        let _ = writeln!(out, "pilot_proxy_convergence_time_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "pilot_proxy_convergence_time_sum {}", self.convergence_sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "pilot_proxy_convergence_time_count {cumulative}");
        head(&mut out, "pilot_xds_pushes", "counter", "Pushes to proxies, by xDS type (a whole config counts as cds, eds, lds and rds; an endpoint delta as eds)");
        for (i, t) in TYPES.iter().enumerate() {
            let _ = writeln!(out, "pilot_xds_pushes{{type=\"{t}\"}} {}", self.pushes[i].load(Relaxed));
        }
        head(&mut out, "pilot_total_xds_rejects", "counter", "Pushes proxies refused (NACK), by xDS type");
        for (i, t) in TYPES.iter().enumerate() {
            let _ = writeln!(out, "pilot_total_xds_rejects{{type=\"{t}\"}} {}", self.rejects[i].load(Relaxed));
        }
        head(&mut out, "pilot_xds", "gauge", "Proxies connected to this controller");
        let _ = writeln!(out, "pilot_xds{{version=\"{}\"}} {}", env!("CARGO_PKG_VERSION"), g.connected);
        head(&mut out, "citadel_server_csr_count", "counter", "Certificate signing requests received");
        let _ = writeln!(out, "citadel_server_csr_count {}", self.csr.load(Relaxed));
        head(&mut out, "citadel_server_success_cert_issuance_count", "counter", "Certificates issued");
        let _ = writeln!(out, "citadel_server_success_cert_issuance_count {}", self.issued.load(Relaxed));
        head(&mut out, "weft_controller_csr_refused", "counter", "Certificate requests refused (bad token, identity not granted)");
        let _ = writeln!(out, "weft_controller_csr_refused_total {}", self.csr_refused.load(Relaxed));
        if let Some(t) = g.root_expiry_unix {
            head(&mut out, "citadel_server_root_cert_expiry_timestamp", "gauge", "When the mesh root certificate expires (unix seconds)");
            let _ = writeln!(out, "citadel_server_root_cert_expiry_timestamp {t}");
        }
        head(&mut out, "weft_controller_proxies", "gauge", "Connected proxies by sync state");
        let synced = g.connected.saturating_sub(g.stale + g.nacked);
        let _ = writeln!(out, "weft_controller_proxies{{state=\"synced\"}} {synced}\nweft_controller_proxies{{state=\"stale\"}} {}\nweft_controller_proxies{{state=\"nacked\"}} {}", g.stale, g.nacked);
        head(&mut out, "weft_controller_applies", "counter", "Configuration changes committed (apply and delete)");
        let _ = writeln!(out, "weft_controller_applies_total {}", self.applies.load(Relaxed));
        // Istio's injector metrics (`sidecar_injection_*_total`).
        let [injected, skipped, failed] = [0, 1, 2].map(|i| self.injections[i].load(Relaxed));
        for (name, help, n) in [
            ("sidecar_injection_requests_total", "Injection webhook requests", injected + skipped + failed),
            ("sidecar_injection_success_total", "Pods given a sidecar", injected),
            ("sidecar_injection_skip_total", "Pods the injection rules left alone", skipped),
            ("sidecar_injection_failure_total", "Requests that could not be injected (pods admitted unchanged)", failed),
        ] {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_names_render_with_their_buckets() {
        let m = ControlMetrics::default();
        m.converged(Duration::from_millis(80));
        m.converged(Duration::from_millis(700));
        m.pushed(FULL_PUSH);
        m.pushed(ENDPOINT_PUSH);
        m.rejected(FULL_PUSH);
        m.csr(true);
        m.csr(false);
        let out = m.render(&Gauges { connected: 3, root_expiry_unix: Some(1_900_000_000), stale: 1, nacked: 0 });
        for line in [
            "pilot_proxy_convergence_time_bucket{le=\"0.1\"} 1",
            "pilot_proxy_convergence_time_bucket{le=\"1\"} 2",
            "pilot_proxy_convergence_time_count 2",
            "pilot_proxy_convergence_time_sum 0.78",
            "pilot_xds_pushes{type=\"eds\"} 2",
            "pilot_xds_pushes{type=\"cds\"} 1",
            "pilot_total_xds_rejects{type=\"lds\"} 1",
            "citadel_server_csr_count 2",
            "citadel_server_success_cert_issuance_count 1",
            "citadel_server_root_cert_expiry_timestamp 1900000000",
            "weft_controller_proxies{state=\"synced\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        assert!(out.contains(&format!("pilot_xds{{version=\"{}\"}} 3", env!("CARGO_PKG_VERSION"))));
    }
}
