//! Talking to the controller's HTTP API from the command line.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Where the controller listens unless `--controller` or `WEFT_CONTROLLER` says otherwise.
pub const DEFAULT_CONTROLLER: &str = "127.0.0.1:15010";

pub struct ControllerClient {
    base: String,
    rt: tokio::runtime::Runtime,
}

impl ControllerClient {
    pub fn new(addr: &str) -> anyhow::Result<ControllerClient> {
        let base = if addr.starts_with("http://") { addr.trim_end_matches('/').to_string() } else { format!("http://{addr}") };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(ControllerClient { base, rt })
    }

    /// Sends a request; returns the status and the JSON body.
    pub fn call(&self, method: http::Method, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let payload = body.map(|b| b.to_string()).unwrap_or_default();
            let req = http::Request::builder()
                .method(method)
                .uri(&url)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(payload)))?;
            let resp = client
                .request(req)
                .await
                .with_context(|| format!("cannot reach the controller at {}; is `weft controller` running? (set --controller or WEFT_CONTROLLER)", self.base))?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            if status >= 500 {
                bail!("controller error {status}: {json}");
            }
            Ok((status, json))
        })
    }
}
