//! Protocol detection: peek at a new connection's first bytes (without
//! consuming them) and decide HTTP/1, HTTP/2 prior knowledge (gRPC), TLS, or
//! opaque TCP. A client that sends nothing (a server-first protocol such as
//! MySQL or SMTP) is treated as TCP once the detect timeout passes, so it
//! never hangs.

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
const METHODS: &[&[u8]] = &[
    b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ",
];

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
    let mut possible = false;
    for m in METHODS {
        let n = m.len().min(buf.len());
        if buf[..n] == m[..n] {
            if buf.len() >= m.len() {
                // `GET / HTTP/1.1`: a method and a space is enough to hand it to the HTTP parser,
                // which answers 400 to anything malformed after that.
                return Some(Detected::Http1);
            }
            possible = true;
        }
    }
    if possible {
        None
    } else {
        Some(Detected::Tcp)
    }
}

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

/// Peeks until the protocol is known or `timeout` passes.
pub async fn detect(stream: &TcpStream, timeout: Duration) -> std::io::Result<Detected> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    let mut last = 0;
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
            // peek returns the same bytes until more arrive: wait for readability.
            if tokio::time::timeout_at(deadline, stream.readable()).await.is_err() {
                return Ok(Detected::Tcp);
            }
            tokio::task::yield_now().await;
        }
        last = n;
        if n == buf.len() {
            return Ok(Detected::Tcp);
        }
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
        assert_eq!(classify(b"GETX"), Some(Detected::Tcp));
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
