//! Protocol detection: peek at a new connection's first bytes (without
//! consuming them) and decide HTTP/1, HTTP/2 prior knowledge (gRPC), TLS, or
//! opaque TCP. Any HTTP/1.x request line is HTTP, whatever its method (RFC
//! 9110 lets a method be any token: PROPFIND, PURGE, extension methods) and
//! after empty lines (RFC 9112 2.2): a request the proxy did not recognise
//! would reach the app unparsed, with whatever headers the client forged. A
//! client that sends nothing (a server-first protocol such as MySQL or
//! SMTP) is treated as TCP once the detect timeout passes, so it never
//! hangs; one that stalls mid-prefix is re-peeked with backoff, never in a
//! busy loop.

use std::time::Duration;
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    /// A TLS ClientHello: the SNI and the ALPN protocols the client offered.
    Tls { sni: Option<String>, alpn: Vec<Vec<u8>> },
    Tcp,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// RFC 9110 5.6.2 `tchar`: what a method token is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Is `buf` the start of an HTTP/1.x request? `Some(true)`: yes (its request
/// line, or as much of one as a buffer holds); `Some(false)`: no; `None`:
/// too short to tell.
fn http1_request_line(buf: &[u8]) -> Option<bool> {
    // Empty lines before the request line are allowed (RFC 9112 2.2).
    let mut i = 0;
    while i < buf.len() && (buf[i] == b'\r' || buf[i] == b'\n') {
        i += 1;
    }
    let start = i;
    while i < buf.len() && is_tchar(buf[i]) {
        i += 1;
    }
    if i == buf.len() {
        return None;
    }
    if i == start || buf[i] != b' ' {
        return Some(false);
    }
    i += 1;
    // The request target: visible characters up to the next space.
    let target = i;
    while i < buf.len() && buf[i] > b' ' && buf[i] < 0x7f {
        i += 1;
    }
    if i == buf.len() {
        return None;
    }
    if i == target || buf[i] != b' ' {
        return Some(false);
    }
    i += 1;
    let version = b"HTTP/1.";
    let rest = &buf[i..];
    let n = rest.len().min(version.len());
    if rest[..n] != version[..n] {
        return Some(false);
    }
    if rest.len() < version.len() + 1 {
        return None;
    }
    Some(rest[version.len()].is_ascii_digit())
}

/// Classifies a prefix; `None` means "need more bytes".
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    if H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
        return (buf.len() >= H2_PREFACE.len()).then_some(Detected::Http2);
    }
    if buf[0] == 0x16 {
        if buf.len() < 6 {
            return None;
        }
        if buf[1] == 0x03 && buf[5] == 0x01 {
            let record_len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
            if buf.len() < 5 + record_len && buf.len() < 4096 {
                return None;
            }
            let hello = client_hello(&buf[5..]);
            return Some(Detected::Tls { sni: hello.sni, alpn: hello.alpn });
        }
        return Some(Detected::Tcp);
    }
    match http1_request_line(buf) {
        Some(true) => Some(Detected::Http1),
        Some(false) => Some(Detected::Tcp),
        // A request line longer than the peek buffer is still HTTP-shaped: hand it to the parser.
        None if buf.len() >= PEEK_BYTES => Some(Detected::Http1),
        None => None,
    }
}

/// How much of a connection detection looks at.
const PEEK_BYTES: usize = 4096;

#[derive(Default)]
struct ClientHello {
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
}

/// Reads server_name and ALPN from a ClientHello handshake message; what
/// cannot be parsed is left empty (the connection is then plain TLS).
fn client_hello(hs: &[u8]) -> ClientHello {
    let mut out = ClientHello::default();
    let _ = parse_client_hello(hs, &mut out);
    out
}

fn parse_client_hello(hs: &[u8], out: &mut ClientHello) -> Option<()> {
    // handshake: type(1) len(3) version(2) random(32) session_id(1+n) ciphers(2+n) compression(1+n) ext(2+n)
    let be16 = |p: usize| -> Option<usize> { Some(u16::from_be_bytes([*hs.get(p)?, *hs.get(p + 1)?]) as usize) };
    let mut p = 4 + 2 + 32;
    let sid = *hs.get(p)? as usize;
    p += 1 + sid;
    p += 2 + be16(p)?;
    let comp = *hs.get(p)? as usize;
    p += 1 + comp;
    let ext_len = be16(p)?;
    p += 2;
    let end = (p + ext_len).min(hs.len());
    while p + 4 <= end {
        let ty = be16(p)?;
        let len = be16(p + 2)?;
        p += 4;
        let ext = hs.get(p..p + len)?;
        match ty {
            0 => {
                // server_name_list: len(2) type(1) name_len(2) name
                let name_len = u16::from_be_bytes([*ext.get(3)?, *ext.get(4)?]) as usize;
                let name = ext.get(5..5 + name_len)?;
                out.sni = std::str::from_utf8(name).ok().map(str::to_string);
            }
            16 => {
                // protocol_name_list: len(2) then len(1)+name entries
                let mut q = 2;
                while q < ext.len() {
                    let n = *ext.get(q)? as usize;
                    out.alpn.push(ext.get(q + 1..q + 1 + n)?.to_vec());
                    q += 1 + n;
                }
            }
            _ => {}
        }
        p += len;
    }
    Some(())
}

/// Peeks until the protocol is known or `timeout` passes. Peeking does not
/// consume, so the socket stays readable while a prefix is incomplete: the
/// next peek waits a little longer each time (1 ms doubling to 16 ms).
pub async fn detect(stream: &TcpStream, timeout: Duration) -> std::io::Result<Detected> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; PEEK_BYTES];
    let mut last = 0;
    let mut wait = Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(Detected::Tcp),
        };
        if n == 0 {
            // The client closed before saying anything.
            return Ok(Detected::Tcp);
        }
        if let Some(d) = classify(&buf[..n]) {
            return Ok(d);
        }
        if n == last {
            if tokio::time::Instant::now() + wait >= deadline {
                tokio::time::sleep_until(deadline).await;
                return Ok(Detected::Tcp);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(16));
        } else {
            wait = Duration::from_millis(1);
        }
        last = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixes() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http1));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"POST /x HTTP/1.1"), Some(Detected::Http1));
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http2));
        assert_eq!(classify(&H2_PREFACE[..10]), None);
        assert_eq!(classify(b"*2\r\n$3\r\nGET\r\n"), Some(Detected::Tcp)); // redis RESP
        assert_eq!(classify(b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), Some(Detected::Tcp)); // postgres SSLRequest
        assert_eq!(classify(b"GETX"), None, "any token may be a method: wait for the space");
        assert_eq!(classify(b"GETX\r\n"), Some(Detected::Tcp));
    }

    #[test]
    fn any_token_method_and_leading_empty_lines_are_http() {
        for line in [&b"PROPFIND /dav HTTP/1.1\r\n"[..], b"PURGE /cache HTTP/1.1\r\n", b"M-SEARCH * HTTP/1.1\r\n", b"\r\n\r\nGET / HTTP/1.1\r\n", b"get / HTTP/1.0\r\n"] {
            assert_eq!(classify(line), Some(Detected::Http1), "{}", String::from_utf8_lossy(line));
        }
        // Not enough to tell yet, at every cut of a request line.
        let line = b"PROPFIND /a/b HTTP/1.1\r\n";
        for cut in 1..("PROPFIND /a/b HTTP/1.".len() + 1) {
            assert_eq!(classify(&line[..cut]), None, "cut at {cut}");
        }
        // Text protocols that are not HTTP stay opaque.
        assert_eq!(classify(b"get key\r\n"), Some(Detected::Tcp), "memcached");
        assert_eq!(classify(b"EHLO mail.example\r\n"), Some(Detected::Tcp), "SMTP");
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Some(Detected::Tcp));
        assert_eq!(classify(b"GET  / HTTP/1.1\r\n"), Some(Detected::Tcp), "two spaces");
        assert_eq!(classify(b"\x00\x01"), Some(Detected::Tcp));
        // A request line longer than what detection looks at is still HTTP.
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', PEEK_BYTES));
        assert_eq!(classify(&long), Some(Detected::Http1));
    }

    #[test]
    fn reads_sni_from_a_client_hello() {
        // A minimal TLS 1.2 ClientHello with SNI "example.com" and ALPN weft/h2, h2.
        let name = b"example.com";
        let mut sni_ext = vec![0, 0];
        let list_len = (3 + name.len()) as u16;
        let ext_len = 2 + list_len;
        sni_ext.extend_from_slice(&ext_len.to_be_bytes());
        sni_ext.extend_from_slice(&list_len.to_be_bytes());
        sni_ext.push(0);
        sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni_ext.extend_from_slice(name);
        sni_ext.extend_from_slice(&[0, 16, 0, 13, 0, 11, 7]);
        sni_ext.extend_from_slice(b"weft/h2");
        sni_ext.extend_from_slice(&[2]);
        sni_ext.extend_from_slice(b"h2");
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&sni_ext);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        assert_eq!(
            classify(&rec),
            Some(Detected::Tls { sni: Some("example.com".into()), alpn: vec![b"weft/h2".to_vec(), b"h2".to_vec()] })
        );
        assert_eq!(classify(&rec[..20]), None, "a partial record waits for more");
    }
}
