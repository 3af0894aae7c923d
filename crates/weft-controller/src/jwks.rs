//! Key sets of JWT issuers, fetched by the controller (as istiod does) so
//! proxies get them inline and never reach out themselves: a `jwksUri`, or
//! the `jwks_uri` of the issuer's OpenID discovery document. A key set is
//! refetched after 20 minutes; one that could not be fetched is retried
//! every 15 seconds, and meanwhile its issuer's tokens are refused (the
//! proxy gets no keys), never accepted.

use http_body_util::{BodyExt, Empty, Limited};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(20 * 60);
const RETRY: Duration = Duration::from_secs(15);
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone)]
struct Entry {
    body: Option<String>,
    error: Option<String>,
    at: Instant,
}

/// The key sets fetched so far, by the URL they were asked for.
#[derive(Debug, Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl JwksCache {
    /// The key set for `uri`, when one was fetched.
    pub fn get(&self, uri: &str) -> Option<String> {
        self.lock().get(uri).and_then(|e| e.body.clone())
    }

    /// Why `uri` has no key set, when fetching it failed.
    pub fn error(&self, uri: &str) -> Option<String> {
        self.lock().get(uri).and_then(|e| e.error.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn due(&self, uri: &str) -> bool {
        match self.lock().get(uri) {
            None => true,
            Some(e) if e.body.is_some() => e.at.elapsed() >= REFRESH,
            Some(e) => e.at.elapsed() >= RETRY,
        }
    }

    /// Fetches the key sets never fetched before (the push loop waits for
    /// these, so a new issuer's first config has its keys); returns whether any changed.
    pub async fn fetch_new(&self, uris: Vec<(String, Duration)>) -> bool {
        let new: Vec<(String, Duration)> = uris.into_iter().filter(|(u, _)| !self.lock().contains_key(u)).collect();
        self.fetch(new).await
    }

    /// Refetches the known key sets that are due (old, or failed), in the
    /// background of the push loop; returns whether any changed.
    pub async fn refresh_due(&self) -> bool {
        let due: Vec<(String, Duration)> = {
            let entries = self.lock();
            entries.keys().cloned().collect::<Vec<_>>()
        }
        .into_iter()
        .filter(|u| self.due(u))
        .map(|u| (u, Duration::from_secs(5)))
        .collect();
        self.fetch(due).await
    }

    /// Fetches key sets, all at once, each within its timeout.
    async fn fetch(&self, uris: Vec<(String, Duration)>) -> bool {
        let mut set = tokio::task::JoinSet::new();
        for (uri, timeout) in uris {
            set.spawn(async move {
                let r = match tokio::time::timeout(timeout, fetch_keys(&uri)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
                };
                (uri, r)
            });
        }
        let mut changed = false;
        while let Some(Ok((uri, r))) = set.join_next().await {
            let mut entries = self.lock();
            let before = entries.get(&uri).and_then(|e| e.body.clone());
            let entry = match r {
                Ok(body) => Entry { body: Some(body), error: None, at: Instant::now() },
                Err(e) => {
                    tracing::warn!(%uri, "cannot fetch the JWT key set: {e}; tokens of this issuer are refused until it can");
                    // A key set fetched before stays in use while the issuer is unreachable.
                    Entry { body: before.clone(), error: Some(e), at: Instant::now() }
                }
            };
            changed |= entry.body != before;
            entries.insert(uri, entry);
        }
        changed
    }
}

/// A key set: the document at `uri`, or, for a discovery document, the one its `jwks_uri` names.
async fn fetch_keys(uri: &str) -> Result<String, String> {
    let body = get(uri).await?;
    let doc: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))?;
    if doc.get("keys").is_some_and(|k| k.is_array()) {
        return Ok(body);
    }
    match doc.get("jwks_uri").and_then(|u| u.as_str()) {
        Some(next) if uri.ends_with("/.well-known/openid-configuration") => {
            let keys = get(next).await?;
            let parsed: serde_json::Value = serde_json::from_str(&keys).map_err(|e| format!("{next}: not JSON: {e}"))?;
            if parsed.get("keys").is_some_and(|k| k.is_array()) {
                Ok(keys)
            } else {
                Err(format!("{next} is not a key set (no \"keys\" array)"))
            }
        }
        _ => Err("not a key set (no \"keys\" array)".into()),
    }
}

/// One GET over HTTP/1.1, plain or TLS (system roots), body up to 1 MiB.
async fn get(uri: &str) -> Result<String, String> {
    let parsed: http::Uri = uri.parse().map_err(|e| format!("{uri:?} is not a URL: {e}"))?;
    let tls = match parsed.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{uri:?} is not http:// or https://")),
    };
    let host = parsed.host().ok_or_else(|| format!("{uri:?} has no host"))?.trim_matches(['[', ']']).to_string();
    let port = parsed.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let path = parsed.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let authority = parsed.authority().map(|a| a.as_str().to_string()).unwrap_or(host.clone());
    if tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("TLS to {host}: {e}"))?;
        request(stream, &authority, &path).await
    } else {
        request(tcp, &authority, &path).await
    }
}

async fn request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(stream: S, authority: &str, path: &str) -> Result<String, String> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|e| format!("reading the body: {e}"))?.to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-file HTTP server: answers every request with `body` at /keys, a discovery document at /.well-known/...
    async fn serve(body: &'static str) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else { return };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let text = if head.starts_with("GET /.well-known/openid-configuration") {
                    format!(r#"{{"issuer":"x","jwks_uri":"http://{addr}/keys"}}"#)
                } else if head.starts_with("GET /keys") {
                    body.to_string()
                } else {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
                    continue;
                };
                let _ = s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len()).as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn key_sets_are_fetched_directly_or_by_discovery_and_failures_are_remembered() {
        let addr = serve(r#"{"keys":[]}"#).await;
        let cache = JwksCache::default();
        let direct = format!("http://{addr}/keys");
        let discovered = format!("http://{addr}/.well-known/openid-configuration");
        let missing = format!("http://{addr}/nothing");
        let t = Duration::from_secs(5);
        assert!(cache.fetch_new(vec![(direct.clone(), t), (discovered.clone(), t), (missing.clone(), t)]).await);
        assert_eq!(cache.get(&direct).as_deref(), Some(r#"{"keys":[]}"#));
        assert_eq!(cache.get(&discovered).as_deref(), Some(r#"{"keys":[]}"#));
        assert_eq!(cache.get(&missing), None);
        assert_eq!(cache.error(&missing).as_deref(), Some("HTTP 404 Not Found"));
        // Known ones are not fetched again as new, and nothing is due right away.
        assert!(!cache.fetch_new(vec![(direct, t)]).await);
        assert!(!cache.refresh_due().await);
    }
}
