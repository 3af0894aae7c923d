//! weft-testkit: real pods for end-to-end tests. A [`Net`] is a Linux bridge
//! with its own /24; a [`Pod`] is a network namespace with a veth on that
//! bridge and its own IP, in which tests run real processes (the proxy with
//! its iptables rules, echo servers, curl, redis). Everything is removed on
//! drop, also when a test panics.
//!
//! Needs root (network namespaces, veth, iptables). Without it, [`Net::new`]
//! fails with the reason: end-to-end tests fail rather than pass silently.

pub mod capture;
pub mod controller;
pub mod layers;
pub mod mesh;

pub use capture::{contains_bytes, tcp_resets_from, Capture};
pub use controller::ControllerProcess;
pub use mesh::TestMesh;

use anyhow::{bail, Context};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// The uid the proxy runs as in tests (its traffic is exempt from redirection).
pub const PROXY_UID: u32 = 1337;

fn sh(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// Path of a binary built in this workspace (`weft-proxy`, `weft-echo`), next
/// to the running test executable's directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| if d.ends_with("deps") { d.parent() } else { Some(d) }).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built; run the tests with `cargo test --workspace`", p.display());
    p
}

/// A bridge and subnet that pods join.
pub struct Net {
    pub bridge: String,
    prefix: [u8; 3],
    next_host: AtomicU32,
}

impl Net {
    pub fn new() -> anyhow::Result<Net> {
        if unsafe_geteuid() != 0 {
            bail!("end-to-end tests need root (network namespaces, veth, iptables); run them as root");
        }
        sh("ip", &["netns", "list"]).context("end-to-end tests need `ip netns` (package iproute2)")?;
        let n = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let bridge = format!("wb{}x{}", pid % 100_000, n);
        let prefix = [10, 100 + (pid % 100) as u8, (n % 250) as u8];
        let _ = sh("ip", &["link", "del", &bridge]);
        sh("ip", &["link", "add", &bridge, "type", "bridge"]).context("creating a bridge")?;
        // A bridge without an address of its own takes the lowest of its ports'
        // and changes it when a pod with a lower one joins: every pod's ARP entry
        // for the gateway (where the controller listens) goes stale, and their
        // packets to it are dropped for seconds. A fixed address never changes.
        let mac = format!("02:77:{:02x}:{:02x}:{:02x}:{:02x}", (pid >> 16) & 0xff, (pid >> 8) & 0xff, pid & 0xff, n & 0xff);
        sh("ip", &["link", "set", "dev", &bridge, "address", &mac])?;
        let net = Net { bridge, prefix, next_host: AtomicU32::new(2) };
        sh("ip", &["addr", "add", &format!("{}/24", net.gateway()), "dev", &net.bridge])?;
        sh("ip", &["addr", "add", &format!("{}/64", net.gateway6()), "dev", &net.bridge, "nodad"])?;
        sh("ip", &["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// The host's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], 1)
    }

    /// The host's IPv6 address on the bridge.
    pub fn gateway6(&self) -> Ipv6Addr {
        self.ip6(1)
    }

    fn ip6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, self.prefix[1] as u16, self.prefix[2] as u16, 0, 0, 0, 0, host)
    }

    /// A new pod with the next free address.
    pub fn pod(&self, name: &str) -> anyhow::Result<Pod> {
        let host = self.next_host.fetch_add(1, Ordering::SeqCst);
        if host > 250 {
            bail!("subnet full");
        }
        let ip = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host as u8);
        let id = format!("{}p{host}", self.bridge.trim_start_matches("wb"));
        let ns = format!("weft-{id}");
        let veth_host = format!("wv{id}");
        let veth_pod = format!("wp{id}");
        let _ = sh("ip", &["netns", "del", &ns]);
        sh("ip", &["netns", "add", &ns])?;
        let pod = Pod {
            name: name.to_string(),
            ns: ns.clone(),
            ip,
            ip6: self.ip6(host as u16),
            veth_host: veth_host.clone(),
            children: Mutex::new(Vec::new()),
            files: Mutex::new(Vec::new()),
        };
        sh("ip", &["link", "add", &veth_host, "type", "veth", "peer", "name", &veth_pod])?;
        sh("ip", &["link", "set", &veth_host, "master", &self.bridge])?;
        sh("ip", &["link", "set", &veth_host, "up"])?;
        sh("ip", &["link", "set", &veth_pod, "netns", &ns])?;
        pod.exec_ok("ip", &["link", "set", "lo", "up"])?;
        pod.exec_ok("ip", &["link", "set", &veth_pod, "name", "eth0"])?;
        pod.exec_ok("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        pod.exec_ok("ip", &["link", "set", "eth0", "up"])?;
        pod.exec_ok("ip", &["route", "add", "default", "via", &self.gateway().to_string()])?;
        // IPv6 too, without duplicate address detection so the address is usable at once.
        pod.exec_ok("ip", &["addr", "add", &format!("{}/64", pod.ip6), "dev", "eth0", "nodad"])?;
        Ok(pod)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = sh("ip", &["link", "del", &self.bridge]);
    }
}

fn unsafe_geteuid() -> u32 {
    // No libc dependency for one call: /proc tells the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).and_then(|u| u.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// A network namespace with one address, and the processes running in it.
pub struct Pod {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
    /// The host end of the pod's veth: where a capture sees all of its traffic.
    pub veth_host: String,
    children: Mutex<Vec<Child>>,
    files: Mutex<Vec<PathBuf>>,
}

impl Pod {
    /// A command that runs inside the pod.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs a command in the pod to completion.
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> anyhow::Result<Output> {
        Ok(self.command(program).args(args).output()?)
    }

    /// Runs a command in the pod and fails unless it succeeds.
    pub fn exec_ok(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> anyhow::Result<Output> {
        let p = program.as_ref().to_string_lossy().into_owned();
        let out = self.exec(&p, args)?;
        if !out.status.success() {
            bail!("[{}] {p} {}: {}", self.name, args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out)
    }

    /// Starts a long-running process in the pod; it is killed when the pod drops.
    /// Its output goes to a log file shown by [`Pod::logs`].
    pub fn spawn(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> anyhow::Result<u32> {
        self.spawn_as(None, program, args)
    }

    /// Like [`Pod::spawn`], as another uid/gid (via setpriv), e.g. the proxy's.
    pub fn spawn_as(&self, uid: Option<u32>, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> anyhow::Result<u32> {
        let log = self.log_path();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut c = match uid {
            Some(uid) => {
                let mut c = self.command("setpriv");
                c.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()]).arg(program);
                c
            }
            None => self.command(program),
        };
        let child = c.args(args).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?;
        let pid = child.id();
        self.children.lock().unwrap_or_else(|e| e.into_inner()).push(child);
        Ok(pid)
    }

    fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}.log", self.ns))
    }

    /// Everything the pod's processes printed (for failure messages).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes a file readable by every uid and removes it with the pod.
    pub fn write_file(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let p = std::env::temp_dir().join(format!("{}-{name}", self.ns));
        std::fs::write(&p, contents)?;
        self.files.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone());
        Ok(p)
    }

    /// Sends a signal to a process started with spawn.
    pub fn signal(&self, pid: u32, signal: &str) -> anyhow::Result<()> {
        sh("kill", &[&format!("-{signal}"), &pid.to_string()]).map(|_| ())
    }

    /// Waits for a process started with spawn to exit; its status.
    pub fn wait(&self, pid: u32, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = children.iter_mut().find(|c| c.id() == pid) {
                    if let Some(status) = c.try_wait()? {
                        return Ok(status);
                    }
                } else {
                    bail!("no child {pid}");
                }
            }
            if Instant::now() > deadline {
                bail!("process {pid} still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `weft-echo serve` on `port` and waits until it accepts.
    pub fn start_echo(&self, port: u16, version: &str) -> anyhow::Result<u32> {
        let listen = format!("0.0.0.0:{port}");
        let pid = self.spawn(workspace_bin("weft-echo"), &["serve", "--listen", &listen, "--name", &self.name, "--version", version])?;
        self.wait_listening(port, Duration::from_secs(10))?;
        Ok(pid)
    }

    /// Waits until a process in the pod listens on TCP `port`. Checked with
    /// `ss` inside the pod: a connection from outside would be accepted by
    /// the pod's inbound proxy long before the app is up.
    pub fn wait_listening(&self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let filter = format!("sport = :{port}");
        loop {
            let out = self.exec("ss", &["-Hltn", &filter])?;
            if out.status.success() && !out.stdout.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("[{}] nothing listening on port {port} after {timeout:?}; logs:\n{}", self.name, self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Installs interception (`weft-proxy init`) and starts the proxy as
    /// [`PROXY_UID`] with `config` (YAML); waits for `/ready`.
    pub fn start_proxy(&self, config: &str) -> anyhow::Result<u32> {
        let proxy = workspace_bin("weft-proxy");
        self.exec_ok(&proxy, &["init", "--proxy-uid", &PROXY_UID.to_string(), "--ipv6"])?;
        self.start_proxy_without_init(config)
    }

    /// Starts the proxy without touching iptables (explicit mode).
    pub fn start_proxy_without_init(&self, config: &str) -> anyhow::Result<u32> {
        self.start_proxy_with_args(config, &["--log", "info"])
    }

    /// Starts the proxy (no iptables changes) with extra `weft-proxy run` arguments.
    pub fn start_proxy_with_args(&self, config: &str, extra: &[&str]) -> anyhow::Result<u32> {
        let proxy = workspace_bin("weft-proxy");
        let path = self.write_file("proxy.yaml", config)?;
        let mut args = vec!["run", "--config", path.to_str().unwrap_or_default()];
        args.extend_from_slice(extra);
        let pid = self.spawn_as(Some(PROXY_UID), &proxy, &args)?;
        self.wait_ready(Duration::from_secs(10))?;
        Ok(pid)
    }

    /// Starts a proxy configured by the controller at `controller` (gRPC),
    /// announcing this pod's workload with `labels` (`app=reviews,version=v1`).
    /// Installs interception first.
    pub fn start_meshed_proxy(&self, controller: SocketAddr, namespace: &str, labels: &str, extra: &[&str]) -> anyhow::Result<u32> {
        let proxy = workspace_bin("weft-proxy");
        self.exec_ok(&proxy, &["init", "--proxy-uid", &PROXY_UID.to_string()])?;
        self.spawn_meshed_proxy(controller, namespace, labels, extra)
    }

    /// As [`Pod::start_meshed_proxy`], without installing interception again:
    /// a proxy restarted in a pod whose rules are in place.
    pub fn spawn_meshed_proxy(&self, controller: SocketAddr, namespace: &str, labels: &str, extra: &[&str]) -> anyhow::Result<u32> {
        let proxy = workspace_bin("weft-proxy");
        let controller = controller.to_string();
        let address = self.ip.to_string();
        let state = self.state_dir();
        let mut args = vec![
            "run", "--controller", &controller, "--proxy-id", &self.name, "--workload", &self.name, "--namespace", namespace,
            "--labels", labels, "--address", &address, "--log", "info", "--state-dir", state.to_str().unwrap_or_default(),
        ];
        args.extend_from_slice(extra);
        let pid = self.spawn_as(Some(PROXY_UID), &proxy, &args)?;
        self.wait_ready(Duration::from_secs(10))?;
        Ok(pid)
    }

    /// Where the pod's proxy keeps its certificate and config (`--state-dir`).
    pub fn state_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}-state", self.ns))
    }

    /// Name resolution inside the pod: `ip netns exec` bind-mounts
    /// `/etc/netns/NS/hosts` over `/etc/hosts`.
    pub fn set_hosts(&self, entries: &[(&str, &str)]) -> anyhow::Result<()> {
        let dir = PathBuf::from("/etc/netns").join(&self.ns);
        std::fs::create_dir_all(&dir)?;
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, ip) in entries {
            text += &format!("{ip} {name}\n");
        }
        std::fs::write(dir.join("hosts"), text)?;
        Ok(())
    }

    /// Waits until the proxy's `/ready` answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.admin("/ready").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("[{}] proxy not ready after {timeout:?}; logs:\n{}", self.name, self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GETs a path of the proxy's admin port (loopback only: from inside
    /// the pod) as the raw response: status line, headers and body.
    pub fn admin(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:15000{path}");
        let out = self.exec("curl", &["-sS", "-i", "--max-time", "5", &url])?;
        if !out.status.success() {
            bail!("[{}] admin {path}: {}", self.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What the pod's `weft-echo serve` on 8080 counted (`/stats`): requests
    /// served, most in flight at once, last authority seen.
    pub fn echo_stats(&self) -> anyhow::Result<serde_json::Value> {
        let (_, body) = self.curl("http://127.0.0.1:8080/stats", &[])?;
        Ok(serde_json::from_str(&body)?)
    }

    /// `n` GETs of `url` from inside the pod with `weft-echo count`, `concurrency`
    /// at once (`header` as `name:value`): answers by the pod that served them,
    /// failures as `status NNN`.
    pub fn count(&self, url: &str, n: usize, header: Option<&str>, concurrency: usize) -> std::collections::BTreeMap<String, u64> {
        let (n, c) = (n.to_string(), concurrency.to_string());
        let mut args = vec!["count", url, n.as_str()];
        if let Some(h) = header {
            args.push(h);
        }
        args.extend(["--concurrency", c.as_str()]);
        let out = self.exec_ok(workspace_bin("weft-echo"), &args).unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("weft-echo count: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs curl inside the pod; returns (status code, body). Extra args go before the URL.
    pub fn curl(&self, url: &str, extra: &[&str]) -> anyhow::Result<(u16, String)> {
        let mut args = vec!["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"];
        args.extend_from_slice(extra);
        args.push(url);
        let out = self.exec("curl", &args)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        let code: u16 = code.trim().parse().unwrap_or(0);
        if code == 0 {
            bail!("[{}] curl {url} failed: {}", self.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok((code, body.to_string()))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for c in self.children.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespace removes its veth (and the peer on the bridge) and its iptables rules.
        let _ = sh("ip", &["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.ns));
        for f in self.files.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_file(self.log_path());
        let _ = std::fs::remove_dir_all(self.state_dir());
    }
}

/// Polls until something accepts TCP connections at `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listening on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A minimal HTTP/1.1 GET from the host (status line, headers and body as text).
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

