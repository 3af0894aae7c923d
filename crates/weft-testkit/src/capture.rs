//! Packet captures with tcpdump on a pod's veth: what actually crossed the wire.

use anyhow::{bail, Context};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A packet capture with tcpdump on a host interface (a pod's veth), to show
/// what actually crossed the wire.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    log: PathBuf,
    /// Where the end-of-capture marker is sent (UDP port 9, discard).
    target: Ipv4Addr,
}

/// The UDP port the end-of-capture marker goes to.
const MARKER_PORT: u16 = 9;

impl Capture {
    /// Starts capturing on `interface` with a pcap `filter`; returns once
    /// tcpdump says it is listening, so nothing sent afterwards is missed.
    /// `target` is an address behind the interface (the pod's).
    pub fn start(interface: &str, filter: &str, target: Ipv4Addr) -> anyhow::Result<Capture> {
        static NEXT_CAPTURE: AtomicU32 = AtomicU32::new(0);
        let n = NEXT_CAPTURE.fetch_add(1, Ordering::SeqCst);
        let file = std::env::temp_dir().join(format!("weft-capture-{}-{n}.pcap", std::process::id()));
        let log = file.with_extension("log");
        let filter = format!("({filter}) or udp port {MARKER_PORT}");
        let child = Command::new("tcpdump")
            .args(["-i", interface, "--immediate-mode", "-U", "-n", "-s", "0", "-w", file.to_str().unwrap_or_default(), &filter])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("tcpdump (Debian package tcpdump) is needed to capture traffic")?;
        let cap = Capture { child: Some(child), file, log, target };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&cap.log).unwrap_or_default();
            if text.contains("listening on") {
                return Ok(cap);
            }
            if Instant::now() > deadline {
                bail!("tcpdump did not start: {text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the capture and returns the pcap file's bytes. Everything sent
    /// before is in it: a marker packet is sent through the same interface
    /// and the capture ends only once the marker is in the file.
    pub fn stop(mut self) -> anyhow::Result<Vec<u8>> {
        let marker = format!("weft-capture-end-{}", self.file.display());
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        'wait: loop {
            socket.send_to(marker.as_bytes(), (self.target, MARKER_PORT))?;
            let resend = Instant::now() + Duration::from_millis(100);
            while Instant::now() < resend {
                if contains_bytes(&std::fs::read(&self.file).unwrap_or_default(), marker.as_bytes()) {
                    break 'wait;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if Instant::now() > deadline {
                bail!("the capture never saw its end marker");
            }
        }
        if let Some(mut c) = self.child.take() {
            // SIGINT makes tcpdump flush and close the file.
            let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
            c.wait()?;
        }
        Ok(std::fs::read(&self.file)?)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Does `haystack` contain `needle` anywhere?
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// TCP segments with RST set sent by `from` in a pcap capture (Ethernet,
/// IPv4): how a test sees that a connection was reset rather than closed.
pub fn tcp_resets_from(pcap: &[u8], from: Ipv4Addr) -> usize {
    let mut n = 0;
    let mut at = 24; // the pcap global header
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes([pcap[at + 8], pcap[at + 9], pcap[at + 10], pcap[at + 11]]) as usize;
        let frame = &pcap[(at + 16).min(pcap.len())..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ip[9] != 6 || ip[12..16] != from.octets() || ip.len() < ihl + 14 {
            continue;
        }
        if ip[ihl + 13] & 0x04 != 0 {
            n += 1;
        }
    }
    n
}
