//! `weft-proxy` as an operator runs it, without root: the rules `init` would
//! install, refusal of bad config files, and explicit mode on loopback.
//! (Also makes `cargo test --workspace` build the binary the end-to-end tests use.)

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_weft-proxy");

#[test]
fn init_dry_run_prints_the_rules_and_cleanup_undoes_them() {
    let out = Command::new(BIN).args(["init", "--dry-run", "--exclude-inbound-ports", "22,8443", "--proxy-gid", "1337"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("iptables -t nat -A WEFT_OUTPUT -m owner --gid-owner 1337 -j RETURN"), "{text}");
    assert!(text.contains("iptables -t nat -A WEFT_INBOUND -p tcp --dport 8443 -j RETURN"), "{text}");
    assert!(text.contains("iptables -t nat -A OUTPUT -p tcp -j WEFT_OUTPUT"), "{text}");
    let out = Command::new(BIN).args(["init", "--dry-run", "--cleanup"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("iptables -t nat -D OUTPUT -p tcp -j WEFT_OUTPUT"), "{text}");
    assert!(text.contains("iptables -t nat -X WEFT_INBOUND"), "{text}");
}

#[test]
fn a_bad_config_file_is_refused_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("weft-proxy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "listeners:\n- {name: a, kind: explicit, address: \"127.0.0.1:0\", cluster: missing}\n").unwrap();
    let out = Command::new(BIN).args(["run", "--config", path.to_str().unwrap(), "--admin", "127.0.0.1:0", "--stats", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listener \"a\" refers to unknown cluster \"missing\""), "{err}");
    std::fs::write(&path, "listners: []\n").unwrap();
    let out = Command::new(BIN).args(["run", "--config", path.to_str().unwrap(), "--admin", "127.0.0.1:0", "--stats", "127.0.0.1:0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `listners`"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_port_cannot_be_bound_where_other_machines_reach_it() {
    let out = Command::new(BIN).args(["run", "--controller", "127.0.0.1:1", "--admin", "0.0.0.0:15000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin 0.0.0.0:15000: the admin port serves /config_dump and /logging, so it binds loopback only"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn explicit_mode_on_loopback_without_root() {
    // A tiny upstream: answers one HTTP request per connection.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in upstream.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream");
        }
    });
    let port = free_port();
    let admin = free_port();
    let dir = std::env::temp_dir().join(format!("weft-proxy-explicit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.yaml");
    std::fs::write(
        &path,
        format!("listeners:\n- {{name: app, kind: explicit, address: \"127.0.0.1:{port}\", cluster: up}}\nclusters:\n- {{name: up, endpoints: [\"127.0.0.1:{up_port}\"]}}\n"),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", path.to_str().unwrap(), "--admin", &format!("127.0.0.1:{admin}"), "--stats", "127.0.0.1:0", "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            break out;
        }
        assert!(Instant::now() < deadline, "proxy did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("upstream"), "{response}");
}
