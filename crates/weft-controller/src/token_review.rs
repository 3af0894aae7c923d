//! Kubernetes ServiceAccount identity: an injected proxy presents its pod's
//! projected ServiceAccount token (audience `weft`), and the controller asks
//! the API server who it belongs to with a TokenReview, the way Istio's CA
//! does. Only an authenticated `system:serviceaccount:NS:SA` whose token was
//! minted for weft's audience is granted `spiffe://TD/ns/NS/sa/SA`; anything
//! else (another audience, a user, the API server unreachable) is refused.

use http_body_util::{BodyExt, Full, Limited};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The largest TokenReview answer read.
const MAX_BODY: usize = 1024 * 1024;
/// How long the API server has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the API server is and how the controller authenticates to it.
#[derive(Debug, Clone)]
pub struct ReviewerOptions {
    /// `https://HOST:PORT` of the API server.
    pub api: String,
    /// The controller's own ServiceAccount token (re-read each time: the kubelet rotates it).
    pub token_file: PathBuf,
    /// The API server's CA bundle.
    pub ca_file: PathBuf,
    /// The audience proxies' tokens must be minted for.
    pub audience: String,
}

impl ReviewerOptions {
    /// In a pod: the API server from the environment the kubelet sets, the
    /// credentials from the ServiceAccount mount.
    pub fn in_cluster(audience: &str) -> Result<ReviewerOptions, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| "KUBERNETES_SERVICE_HOST is not set: not running in a pod (give --kube-api https://HOST:PORT)".to_string())?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let sa = PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount");
        Ok(ReviewerOptions { api: format!("https://{host}:{port}"), token_file: sa.join("token"), ca_file: sa.join("ca.crt"), audience: audience.to_string() })
    }
}

pub struct TokenReviewer {
    opts: ReviewerOptions,
    host: String,
    port: u16,
    server_name: rustls::pki_types::ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

/// Is this a Kubernetes token rather than a weft join token? (Join tokens are
/// `HEX.HEX`; ServiceAccount tokens are JWTs, three base64url parts.)
pub fn looks_like_service_account_token(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

impl TokenReviewer {
    pub fn new(opts: ReviewerOptions) -> anyhow::Result<TokenReviewer> {
        let uri: http::Uri = opts.api.parse().map_err(|e| anyhow::anyhow!("--kube-api {:?}: {e}", opts.api))?;
        if uri.scheme_str() != Some("https") {
            anyhow::bail!("--kube-api {:?}: the API server is reached over https only", opts.api);
        }
        let host = uri.host().ok_or_else(|| anyhow::anyhow!("--kube-api {:?} has no host", opts.api))?.trim_matches(['[', ']']).to_string();
        let port = uri.port_u16().unwrap_or(443);
        let pem = std::fs::read(&opts.ca_file).map_err(|e| anyhow::anyhow!("the API server's CA {}: {e}", opts.ca_file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider())).with_safe_default_protocol_versions()?.with_root_certificates(roots).with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
        Ok(TokenReviewer { opts, host, port, server_name, tls: Arc::new(tls) })
    }

    /// The namespace and ServiceAccount a token proves, or why not.
    pub async fn review(&self, token: &str) -> Result<(String, String), String> {
        tokio::time::timeout(TIMEOUT, self.ask(token)).await.map_err(|_| "the Kubernetes API server did not answer the TokenReview in time".to_string())?
    }

    async fn ask(&self, token: &str) -> Result<(String, String), String> {
        let bearer = std::fs::read_to_string(&self.opts.token_file).map_err(|e| format!("the controller's ServiceAccount token {}: {e}", self.opts.token_file.display()))?;
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": { "token": token, "audiences": [self.opts.audience] },
        });
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| format!("the Kubernetes API server {}: {e}", self.opts.api))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(self.server_name.clone(), tcp).await.map_err(|e| format!("TLS to the Kubernetes API server: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
            .header(http::header::HOST, format!("{}:{}", self.host, self.port))
            .header(http::header::AUTHORIZATION, format!("Bearer {}", bearer.trim()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(bytes::Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| format!("TokenReview: {e}"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|e| format!("TokenReview answer: {e}"))?.to_bytes();
        if !status.is_success() {
            return Err(format!("the Kubernetes API server refused the TokenReview (HTTP {status}; does the controller's ServiceAccount may create tokenreviews?)"));
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("TokenReview answer is not JSON: {e}"))?;
        decide(&answer, &self.opts.audience)
    }
}

/// What a TokenReview answer grants: only an authenticated ServiceAccount
/// whose token carries our audience.
pub fn decide(answer: &serde_json::Value, audience: &str) -> Result<(String, String), String> {
    let status = &answer["status"];
    if status["authenticated"] != true {
        let why = status["error"].as_str().filter(|e| !e.is_empty()).unwrap_or("not authenticated");
        return Err(format!("the ServiceAccount token was refused by Kubernetes: {why}"));
    }
    // An API server that ignores spec.audiences answers without them: refuse rather than trust.
    let audiences = status["audiences"].as_array().cloned().unwrap_or_default();
    if !audiences.iter().any(|a| a.as_str() == Some(audience)) {
        return Err(format!("the ServiceAccount token is not for audience {audience:?}"));
    }
    let user = status["user"]["username"].as_str().unwrap_or_default();
    let rest = user.strip_prefix("system:serviceaccount:").ok_or_else(|| format!("{user:?} is not a ServiceAccount"))?;
    let (ns, sa) = rest.split_once(':').ok_or_else(|| format!("{user:?} is not a ServiceAccount"))?;
    if ns.is_empty() || sa.is_empty() || sa.contains(':') {
        return Err(format!("{user:?} is not a ServiceAccount"));
    }
    Ok((ns.to_string(), sa.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_authenticated_service_accounts_with_our_audience_are_granted() {
        let ok = json!({ "status": { "authenticated": true, "audiences": ["weft"], "user": { "username": "system:serviceaccount:prod:reviews" } } });
        assert_eq!(decide(&ok, "weft"), Ok(("prod".into(), "reviews".into())));
        let other_audience = json!({ "status": { "authenticated": true, "audiences": ["https://kubernetes.default.svc"], "user": { "username": "system:serviceaccount:prod:reviews" } } });
        assert!(decide(&other_audience, "weft").unwrap_err().contains("audience"));
        let no_audiences = json!({ "status": { "authenticated": true, "user": { "username": "system:serviceaccount:prod:reviews" } } });
        assert!(decide(&no_audiences, "weft").is_err());
        let user = json!({ "status": { "authenticated": true, "audiences": ["weft"], "user": { "username": "alice@example.com" } } });
        assert!(decide(&user, "weft").unwrap_err().contains("not a ServiceAccount"));
        let refused = json!({ "status": { "authenticated": false, "error": "token has expired" } });
        assert!(decide(&refused, "weft").unwrap_err().contains("token has expired"));
    }

    #[test]
    fn service_account_tokens_are_told_from_join_tokens() {
        assert!(looks_like_service_account_token("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_service_account_token("6e732f73612f3137.00ff"));
    }
}
