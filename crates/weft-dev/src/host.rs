//! The host side of the dev cluster: commands run as root, the bridge pods
//! join, network namespaces with a veth each, per-pod hosts files (the
//! cluster's DNS), and processes started detached so they outlive `weft dev
//! up`. Everything made here is recorded in the state file first, so `weft
//! dev down` can remove it after a crash.

use anyhow::{bail, Context};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs a command to completion; its stderr in the error.
pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Root, or the one line saying what is needed.
pub fn require_root() -> anyhow::Result<()> {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).and_then(|u| u.parse::<u32>().ok()));
    if euid != Some(0) {
        bail!("weft dev needs root: it makes network namespaces, veth pairs and iptables rules (run it with sudo)");
    }
    sh("ip", &["netns", "list"]).context("weft dev needs `ip netns` (Debian package iproute2)")?;
    Ok(())
}

pub fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The bridge, with a fixed MAC and address (see weft-testkit: a bridge
/// without its own address changes its MAC as pods join, and every pod's ARP
/// entry for the gateway goes stale).
pub fn create_bridge(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> anyhow::Result<()> {
    if link_exists(name) {
        return Ok(());
    }
    sh("ip", &["link", "add", name, "type", "bridge"])?;
    let o = gateway.octets();
    sh("ip", &["link", "set", "dev", name, "address", &format!("02:77:de:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])])?;
    sh("ip", &["addr", "add", &format!("{gateway}/{prefix_len}"), "dev", name])?;
    sh("ip", &["link", "set", name, "up"])?;
    Ok(())
}

pub fn delete_link(name: &str) {
    let _ = sh("ip", &["link", "del", name]);
}

/// A network namespace with `eth0` on the bridge at `ip`.
pub fn create_netns(ns: &str, veth: &str, bridge: &str, ip: Ipv4Addr, prefix_len: u8, gateway: Ipv4Addr) -> anyhow::Result<()> {
    let peer = format!("{veth}p");
    sh("ip", &["netns", "add", ns])?;
    sh("ip", &["link", "add", veth, "type", "veth", "peer", "name", &peer])?;
    sh("ip", &["link", "set", veth, "master", bridge])?;
    sh("ip", &["link", "set", veth, "up"])?;
    sh("ip", &["link", "set", &peer, "netns", ns])?;
    let exec = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", ns];
        all.extend_from_slice(args);
        sh("ip", &all)
    };
    exec(&["ip", "link", "set", "lo", "up"])?;
    exec(&["ip", "link", "set", &peer, "name", "eth0"])?;
    exec(&["ip", "addr", "add", &format!("{ip}/{prefix_len}"), "dev", "eth0"])?;
    exec(&["ip", "link", "set", "eth0", "up"])?;
    exec(&["ip", "route", "add", "default", "via", &gateway.to_string()])?;
    Ok(())
}

pub fn delete_netns(ns: &str) {
    let _ = sh("ip", &["netns", "del", ns]);
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
}

/// `ip netns exec` bind-mounts `/etc/netns/NS/hosts` over `/etc/hosts`.
pub fn write_hosts(ns: &str, text: &str) -> anyhow::Result<()> {
    let dir = Path::new("/etc/netns").join(ns);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join("hosts.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, dir.join("hosts"))?;
    Ok(())
}

/// How one process is started in a pod.
pub struct Spawn<'a> {
    pub ns: &'a str,
    pub uid: Option<u32>,
    /// Set with a UTS namespace of its own, so the app sees its pod's name.
    pub hostname: Option<&'a str>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub cwd: Option<&'a Path>,
}

/// Starts a process in its own process group (Ctrl-C on `weft dev up` does
/// not reach it, and it outlives the command); its pid.
pub fn spawn(s: Spawn<'_>) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&s.log).with_context(|| format!("log {}", s.log.display()))?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", s.ns]);
    if let Some(uid) = s.uid {
        c.args(["setpriv", &format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"]);
    }
    if let Some(h) = s.hostname {
        c.args(["unshare", "--uts", "--", "sh", "-c", "hostname \"$0\" && exec \"$@\"", h]);
    }
    c.args(&s.argv);
    for (k, v) in &s.env {
        c.env(k, v);
    }
    if let Some(d) = s.cwd {
        c.current_dir(d);
    }
    let child = c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0).spawn().with_context(|| format!("starting {}", s.argv.join(" ")))?;
    Ok(child.id())
}

/// Whether a process is running (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| rest.trim_start()).is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X')),
        Err(_) => false,
    }
}

/// TERM, then KILL after two seconds, for each pid that is still running.
pub fn stop(pids: &[u32]) {
    let running: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for p in &running {
        let _ = sh("kill", &["-TERM", &p.to_string()]);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while running.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for p in running.iter().filter(|p| alive(**p)) {
        let _ = sh("kill", &["-KILL", &p.to_string()]);
    }
}

/// A binary installed beside `weft` (weft-proxy, weft-echo).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().map(|d| d.join(name)).unwrap_or_else(|| PathBuf::from(name));
    if !p.exists() {
        bail!("{} is missing beside {} (cargo build --workspace --bins builds it)", name, exe.display());
    }
    Ok(p)
}

/// One HTTP GET over plain TCP; the status code.
pub fn http_status(addr: std::net::SocketAddr, path: &str, timeout: std::time::Duration) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/weft-dev\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Ports a network namespace listens on (TCP).
pub fn listening(ns: &str) -> Vec<u16> {
    let out = sh("ip", &["netns", "exec", ns, "ss", "-Htln"]).unwrap_or_default();
    out.lines().filter_map(|l| l.split_whitespace().nth(3)?.rsplit(':').next()?.parse().ok()).collect()
}
