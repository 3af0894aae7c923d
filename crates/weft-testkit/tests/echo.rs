//! The test backend itself must be right, or every end-to-end result is
//! suspect. (Also makes `cargo test --workspace` build `weft-echo`.)

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nX-Test: 1\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn echo_describes_the_request_and_honours_status_and_size() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft-echo"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--name", "pod-x", "--version", "v7"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "echo did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = get(port, "/hello");
    let s = get(port, "/status/503");
    let b = get(port, "/bytes/1024");
    let _ = child.kill();
    let _ = child.wait();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"pod\":\"pod-x\"") && r.contains("\"version\":\"v7\"") && r.contains("\"x-test\":\"1\""), "{r}");
    assert!(s.starts_with("HTTP/1.1 503"), "{s}");
    assert!(b.to_ascii_lowercase().contains("content-length: 1024"), "{b}");
}
