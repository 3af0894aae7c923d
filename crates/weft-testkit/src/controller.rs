//! A `weft controller` process for a test: started on the host, reachable
//! from pods at the bridge's address, driven with the `weft` CLI, and
//! asked whether a proxy runs the config a test needs before the test goes on.

use crate::{free_port, wait_for_tcp, workspace_bin, Net};
use anyhow::bail;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A `weft controller` process on the host, reachable from pods at the
/// bridge's address. Killed on drop; its data directory survives restarts
/// within one test.
pub struct ControllerProcess {
    child: Option<Child>,
    /// Extra `weft controller` arguments.
    extra: Vec<String>,
    /// Where `weft` on the host reaches the API.
    pub api: SocketAddr,
    /// Where pods reach the API (over TLS), when it listens beyond loopback.
    pub api_reachable: Option<SocketAddr>,
    /// What the API binds.
    listen: SocketAddr,
    pub grpc: SocketAddr,
    /// `/metrics`, at the bridge's address (Prometheus on the host scrapes it).
    pub monitoring: SocketAddr,
    pub data_dir: PathBuf,
}

impl ControllerProcess {
    pub fn start(net: &Net, data_dir: &std::path::Path) -> anyhow::Result<ControllerProcess> {
        Self::start_with(net, data_dir, &[])
    }

    pub fn start_with(net: &Net, data_dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<ControllerProcess> {
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        Self::start_at(net, data_dir, api, None, extra)
    }

    /// A controller whose API listens on every address, so pods reach it
    /// (at the bridge's address, over TLS) as other machines would.
    pub fn start_reachable(net: &Net, data_dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<ControllerProcess> {
        let port = free_port()?;
        let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        Self::start_at(net, data_dir, listen, Some(SocketAddr::from((net.gateway(), port))), extra)
    }

    fn start_at(net: &Net, data_dir: &std::path::Path, listen: SocketAddr, reachable: Option<SocketAddr>, extra: &[&str]) -> anyhow::Result<ControllerProcess> {
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port()));
        let grpc = SocketAddr::from((net.gateway(), free_port()?));
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let monitoring = SocketAddr::from((net.gateway(), free_port()?));
        let mut c = ControllerProcess { child: None, extra, api, api_reachable: reachable, listen, grpc, monitoring, data_dir: data_dir.to_path_buf() };
        c.restart()?;
        Ok(c)
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.with_extension("log"))?;
        let child = Command::new(workspace_bin("weft"))
            .args(["controller", "--data-dir", self.data_dir.to_str().unwrap_or_default()])
            .args(["--listen", &self.listen.to_string(), "--grpc-listen", &self.grpc.to_string(), "--endpoint-grace", "2s"])
            .args(["--monitoring-listen", &self.monitoring.to_string()])
            .args(&self.extra)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        wait_for_tcp(self.api, Duration::from_secs(10))?;
        wait_for_tcp(self.grpc, Duration::from_secs(10))?;
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running controller's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Runs `weft ARGS` against this controller.
    /// As the controller's local admin: `weft` reads the token in its data directory.
    pub fn weft(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(workspace_bin("weft")).arg("--controller").arg(self.api.to_string()).arg("--data-dir").arg(&self.data_dir).args(args).output()?)
    }

    /// `weft proxy-status`, as printed.
    pub fn proxy_status(&self) -> String {
        self.weft(&["proxy-status"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    /// Has `proxy` acknowledged the config the controller wants it to run?
    pub fn is_synced(&self, proxy: &str) -> bool {
        self.proxy_status().lines().any(|l| l.starts_with(&format!("{proxy} ")) && l.contains(" SYNCED "))
    }

    /// How many proxies are SYNCED.
    pub fn synced_count(&self) -> usize {
        self.proxy_status().lines().filter(|l| l.contains(" SYNCED ")).count()
    }

    /// A join token for `namespace`/`service_account` (`weft token create`).
    pub fn token(&self, namespace: &str, service_account: &str) -> anyhow::Result<String> {
        let out = self.weft(&["token", "create", "--namespace", namespace, "--service-account", service_account])?;
        if !out.status.success() {
            bail!("weft token create failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `weft apply -f` of YAML text.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        let f = self.data_dir.with_extension(format!("apply-{}.yaml", std::process::id()));
        std::fs::write(&f, yaml)?;
        let out = self.weft(&["apply", "-f", f.to_str().unwrap_or_default()])?;
        let _ = std::fs::remove_file(&f);
        if !out.status.success() {
            bail!("weft apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
    }
}


impl ControllerProcess {
    /// Every proxy's row of `weft proxy-status -o json`.
    pub fn proxies(&self) -> Vec<serde_json::Value> {
        self.weft(&["proxy-status", "-o", "json"])
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// The config the controller last sent `proxy` (`weft proxy-config PROXY all -o json`).
    pub fn sent_config(&self, proxy: &str) -> Option<serde_json::Value> {
        let out = self.weft(&["proxy-config", proxy, "all", "-o", "json"]).ok()?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    /// Waits until `proxy` runs a config in which `check` holds: the config
    /// the controller sent it satisfies `check`, and the proxy acknowledged
    /// exactly that config's version. Returns the config.
    pub fn wait_for_config(&self, proxy: &str, what: &str, within: Duration, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(cfg) = self.sent_config(proxy).filter(|c| check(c)) {
                let acked = self.proxies().into_iter().find(|p| p["proxy_id"] == proxy).map(|p| p["acked_version"].clone());
                if acked.is_some_and(|v| v == cfg["version"]) {
                    return cfg;
                }
            }
            assert!(
                start.elapsed() < within,
                "{proxy} never acknowledged a config with {what} within {within:?}:\n{}\n{}",
                self.sent_config(proxy).map(|c| c.to_string()).unwrap_or_default(),
                self.proxy_status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The clusters of a config (as `weft proxy-config -o json` shows it) whose name contains `part`.
pub fn clusters<'a>(cfg: &'a serde_json::Value, part: &'a str) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    cfg["clusters"].as_array().into_iter().flatten().filter(move |c| c["name"].as_str().is_some_and(|n| n.contains(part)))
}

/// The endpoints of the config's clusters whose name contains `part`.
pub fn endpoint_count(cfg: &serde_json::Value, part: &str) -> usize {
    clusters(cfg, part).map(|c| c["endpoints"].as_array().map(Vec::len).unwrap_or(0)).sum()
}
