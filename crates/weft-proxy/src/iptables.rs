//! Transparent interception: the iptables rules `weft-proxy init` installs in
//! a pod's network namespace (the same code a Kubernetes init container will
//! run), and their exact removal. All rules live in weft's own chains, with
//! one jump from each built-in chain, so cleanup removes exactly what init added.

use std::process::Command;

pub const CHAIN_OUTPUT: &str = "WEFT_OUTPUT";
pub const CHAIN_REDIRECT: &str = "WEFT_REDIRECT";
pub const CHAIN_INBOUND: &str = "WEFT_INBOUND";
pub const CHAIN_IN_REDIRECT: &str = "WEFT_IN_REDIRECT";

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub proxy_uid: u32,
    pub proxy_gid: Option<u32>,
    pub outbound_port: u16,
    pub inbound_port: u16,
    /// Inbound destination ports that bypass the proxy (the proxy's own ports are always excluded).
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_cidrs: Vec<String>,
    /// Intercept inbound traffic too (off for a gateway or an egress-only workload).
    pub inbound: bool,
    /// Also program ip6tables.
    pub ipv6: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            proxy_uid: 1337,
            proxy_gid: None,
            outbound_port: 15001,
            inbound_port: 15006,
            exclude_inbound_ports: vec![],
            exclude_outbound_ports: vec![],
            exclude_outbound_cidrs: vec![],
            inbound: true,
            ipv6: false,
        }
    }
}

/// The `iptables -t nat` argument lists init runs, in order.
pub fn rules(o: &InitOptions, v6: bool) -> Vec<Vec<String>> {
    let mut r: Vec<Vec<String>> = Vec::new();
    let mut add = |args: &[&str]| r.push(args.iter().map(|s| s.to_string()).collect());
    let localhost = if v6 { "::1/128" } else { "127.0.0.1/32" };
    for c in [CHAIN_OUTPUT, CHAIN_REDIRECT, CHAIN_INBOUND, CHAIN_IN_REDIRECT] {
        add(&["-N", c]);
    }
    let out = o.outbound_port.to_string();
    let inp = o.inbound_port.to_string();
    add(&["-A", CHAIN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", &out]);
    add(&["-A", CHAIN_IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", &inp]);
    // Outbound: everything the app sends, except the proxy's own traffic and loopback.
    let uid = o.proxy_uid.to_string();
    add(&["-A", CHAIN_OUTPUT, "-m", "owner", "--uid-owner", &uid, "-j", "RETURN"]);
    if let Some(gid) = o.proxy_gid {
        let gid = gid.to_string();
        add(&["-A", CHAIN_OUTPUT, "-m", "owner", "--gid-owner", &gid, "-j", "RETURN"]);
    }
    add(&["-A", CHAIN_OUTPUT, "-d", localhost, "-j", "RETURN"]);
    for p in &o.exclude_outbound_ports {
        let p = p.to_string();
        add(&["-A", CHAIN_OUTPUT, "-p", "tcp", "--dport", &p, "-j", "RETURN"]);
    }
    for c in &o.exclude_outbound_cidrs {
        if c.contains(':') == v6 {
            add(&["-A", CHAIN_OUTPUT, "-d", c, "-j", "RETURN"]);
        }
    }
    add(&["-A", CHAIN_OUTPUT, "-j", CHAIN_REDIRECT]);
    add(&["-A", "OUTPUT", "-p", "tcp", "-j", CHAIN_OUTPUT]);
    if o.inbound {
        // Inbound: everything arriving, except the proxy's own ports and exclusions.
        let mut skip: Vec<u16> = vec![o.inbound_port, o.outbound_port, 15000, 15090];
        skip.extend(&o.exclude_inbound_ports);
        for p in skip {
            let p = p.to_string();
            add(&["-A", CHAIN_INBOUND, "-p", "tcp", "--dport", &p, "-j", "RETURN"]);
        }
        add(&["-A", CHAIN_INBOUND, "-p", "tcp", "-j", CHAIN_IN_REDIRECT]);
        add(&["-A", "PREROUTING", "-p", "tcp", "-j", CHAIN_INBOUND]);
    }
    r
}

/// The argument lists cleanup runs: drop the jumps, then flush and delete our chains.
pub fn cleanup_rules() -> Vec<Vec<String>> {
    let mut r: Vec<Vec<String>> = Vec::new();
    r.push(vec!["-D".into(), "OUTPUT".into(), "-p".into(), "tcp".into(), "-j".into(), CHAIN_OUTPUT.into()]);
    r.push(vec!["-D".into(), "PREROUTING".into(), "-p".into(), "tcp".into(), "-j".into(), CHAIN_INBOUND.into()]);
    for c in [CHAIN_OUTPUT, CHAIN_REDIRECT, CHAIN_INBOUND, CHAIN_IN_REDIRECT] {
        r.push(vec!["-F".into(), c.into()]);
    }
    for c in [CHAIN_OUTPUT, CHAIN_REDIRECT, CHAIN_INBOUND, CHAIN_IN_REDIRECT] {
        r.push(vec!["-X".into(), c.into()]);
    }
    r
}

fn run(binary: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(binary)
        .arg("-w")
        .args(["-t", "nat"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {binary}: {e} (is the iptables package installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{binary} -t nat {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Installs the rules. Runs cleanup first so init is idempotent; on a
/// failure part-way, removes what it added and returns the error.
pub fn init(o: &InitOptions) -> Result<(), String> {
    for (binary, v6) in binaries(o.ipv6) {
        cleanup_with(binary);
        for args in rules(o, v6) {
            if let Err(e) = run(binary, &args) {
                cleanup_with(binary);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Removes everything init added; rules already gone are not an error.
pub fn cleanup(ipv6: bool) {
    for (binary, _) in binaries(ipv6) {
        cleanup_with(binary);
    }
}

fn cleanup_with(binary: &str) {
    for args in cleanup_rules() {
        let _ = run(binary, &args);
    }
}

fn binaries(ipv6: bool) -> Vec<(&'static str, bool)> {
    let mut b = vec![("iptables", false)];
    if ipv6 {
        b.push(("ip6tables", true));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_exclude_the_proxy_itself() {
        let o = InitOptions { exclude_inbound_ports: vec![22], exclude_outbound_cidrs: vec!["10.0.0.0/8".into(), "fd00::/8".into()], ..InitOptions::default() };
        let text: Vec<String> = rules(&o, false).iter().map(|r| r.join(" ")).collect();
        assert!(text.contains(&"-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN".to_string()));
        assert!(text.contains(&"-A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports 15001".to_string()));
        assert!(text.contains(&"-A WEFT_INBOUND -p tcp --dport 22 -j RETURN".to_string()));
        assert!(text.contains(&"-A WEFT_INBOUND -p tcp --dport 15006 -j RETURN".to_string()));
        assert!(text.contains(&"-A WEFT_OUTPUT -d 10.0.0.0/8 -j RETURN".to_string()));
        assert!(!text.iter().any(|t| t.contains("fd00::/8")), "v6 CIDRs only go to ip6tables");
        // The user-visible chains get exactly one jump each; cleanup deletes exactly those.
        let jumps: Vec<&String> = text.iter().filter(|t| t.starts_with("-A OUTPUT") || t.starts_with("-A PREROUTING")).collect();
        assert_eq!(jumps.len(), 2);
        let cleanup: Vec<String> = cleanup_rules().iter().map(|r| r.join(" ")).collect();
        for j in jumps {
            assert!(cleanup.contains(&j.replacen("-A", "-D", 1)), "{j} is not undone");
        }
    }
}
