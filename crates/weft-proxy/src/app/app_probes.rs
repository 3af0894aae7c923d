//! The app's kubelet probes, run by the proxy. Injection rewrites each HTTP
//! and TCP probe to `/app-health/CONTAINER/livez|readyz|startupz` on the
//! health port (never intercepted, so the kubelet's plaintext probes work
//! under STRICT mTLS) and passes the originals in `WEFT_APP_PROBES`; this
//! module runs the original against the app over loopback and answers with
//! its outcome, as Istio's agent does.

use http::StatusCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// The environment variable injection sets.
pub const ENV: &str = "WEFT_APP_PROBES";

/// One original probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http { port: u16, path: String, headers: Vec<(String, String)>, timeout: Duration },
    Tcp { port: u16, timeout: Duration },
}

/// The probes by rewritten path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppProbes(BTreeMap<String, Probe>);

impl AppProbes {
    /// Parses `WEFT_APP_PROBES` (`{"/app-health/web/readyz": {"httpGet": {"path": "/", "port": 8080}, "timeoutSeconds": 1}}`).
    pub fn parse(text: &str) -> Result<AppProbes, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{ENV} is not JSON: {e}"))?;
        let map = v.as_object().ok_or_else(|| format!("{ENV} must be an object of probes by path"))?;
        let mut out = BTreeMap::new();
        for (path, p) in map {
            if !path.starts_with("/app-health/") {
                return Err(format!("{ENV}: {path:?} is not an /app-health/ path"));
            }
            let bad = |why: &str| format!("{ENV}: {path}: {why}");
            let port = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64).and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0).ok_or_else(|| bad("port must be 1-65535"));
            // The kubelet's default timeout is one second.
            let timeout = Duration::from_secs(p.get("timeoutSeconds").and_then(serde_json::Value::as_u64).unwrap_or(1).clamp(1, 60));
            let probe = if let Some(g) = p.get("httpGet") {
                let path = g.get("path").and_then(serde_json::Value::as_str).unwrap_or("/");
                if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                    return Err(bad("httpGet.path must be an absolute path without spaces"));
                }
                let mut headers = Vec::new();
                for h in g.get("httpHeaders").and_then(serde_json::Value::as_array).into_iter().flatten() {
                    let (Some(n), Some(v)) = (h.get("name").and_then(serde_json::Value::as_str), h.get("value").and_then(serde_json::Value::as_str)) else {
                        return Err(bad("httpHeaders entries need name and value"));
                    };
                    if http::HeaderName::from_bytes(n.as_bytes()).is_err() || http::HeaderValue::from_str(v).is_err() {
                        return Err(bad("a header name or value is not valid HTTP"));
                    }
                    headers.push((n.to_string(), v.to_string()));
                }
                Probe::Http { port: port(g.get("port"))?, path: path.to_string(), headers, timeout }
            } else if let Some(t) = p.get("tcpSocket") {
                Probe::Tcp { port: port(t.get("port"))?, timeout }
            } else {
                return Err(bad("only httpGet and tcpSocket probes are run by the proxy"));
            };
            out.insert(path.clone(), probe);
        }
        Ok(AppProbes(out))
    }

    pub fn get(&self, path: &str) -> Option<&Probe> {
        self.0.get(path)
    }

    /// The app's readiness probes (`/app-health/*/readyz`).
    fn readiness(&self) -> impl Iterator<Item = &Probe> {
        self.0.iter().filter(|(p, _)| p.ends_with("/readyz")).map(|(_, probe)| probe)
    }

    pub fn has_readiness(&self) -> bool {
        self.readiness().next().is_some()
    }
}

/// How often the app's readiness is checked for the controller (the
/// kubelet's own probes come on top, through the health port).
const READINESS_PERIOD: Duration = Duration::from_secs(1);

/// Runs the app's readiness probes every second and says whether all pass,
/// until the proxy is leaving: its endpoint then takes traffic only while
/// the app is ready, as a Kubernetes Service sends only to Ready pods.
pub async fn track_readiness(probes: std::sync::Arc<AppProbes>, serving: tokio::sync::watch::Sender<bool>, leaving: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    loop {
        let mut ready = true;
        for p in probes.readiness() {
            ready &= run(p).await == StatusCode::OK;
        }
        if leaving.load(Ordering::SeqCst) {
            return;
        }
        serving.send_if_modified(|v| std::mem::replace(v, ready) != ready);
        tokio::time::sleep(READINESS_PERIOD).await;
    }
}

/// Runs one probe against the app; the status the kubelet should see
/// (200 on success, the app's own status or 503 on failure).
pub async fn run(probe: &Probe) -> StatusCode {
    match probe {
        Probe::Tcp { port, timeout } => match tokio::time::timeout(*timeout, tokio::net::TcpStream::connect(("127.0.0.1", *port))).await {
            Ok(Ok(_)) => StatusCode::OK,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
        Probe::Http { port, path, headers, timeout } => match tokio::time::timeout(*timeout, http_get(*port, path, headers)).await {
            // The kubelet counts 200-399 as success.
            Ok(Ok(s)) if (200..400).contains(&s.as_u16()) => StatusCode::OK,
            Ok(Ok(s)) => s,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
    }
}

async fn http_get(port: u16, path: &str, headers: &[(String, String)]) -> anyhow::Result<StatusCode> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header(http::header::HOST, format!("127.0.0.1:{port}")).header(http::header::USER_AGENT, "kube-probe/weft");
    for (n, v) in headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let resp = send.send_request(req.body(http_body_util::Empty::<bytes::Bytes>::new())?).await?;
    Ok(resp.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_and_bad_ones_are_refused() {
        let p = AppProbes::parse(r#"{"/app-health/web/readyz":{"httpGet":{"path":"/ready","port":8080,"httpHeaders":[{"name":"X-A","value":"1"}]},"timeoutSeconds":2},"/app-health/web/livez":{"tcpSocket":{"port":8080}}}"#).unwrap();
        assert_eq!(p.get("/app-health/web/readyz"), Some(&Probe::Http { port: 8080, path: "/ready".into(), headers: vec![("X-A".into(), "1".into())], timeout: Duration::from_secs(2) }));
        assert_eq!(p.get("/app-health/web/livez"), Some(&Probe::Tcp { port: 8080, timeout: Duration::from_secs(1) }));
        for bad in [r#"[]"#, r#"{"/x":{"tcpSocket":{"port":1}}}"#, r#"{"/app-health/a/livez":{"tcpSocket":{"port":0}}}"#, r#"{"/app-health/a/livez":{"httpGet":{"path":"/a b","port":1}}}"#, r#"{"/app-health/a/livez":{"exec":{}}}"#] {
            assert!(AppProbes::parse(bad).is_err(), "{bad}");
        }
    }
}
