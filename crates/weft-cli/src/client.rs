//! Talking to the controller's HTTP API from the command line: where it is
//! (`--controller`, `host:port` or `https://host:port`), and who we are. A
//! bearer token comes from `--token` / `WEFT_API_TOKEN`, else from the
//! controller's data directory on this machine (`DATA_DIR/api/admin.token`,
//! readable by the controller's user only). Over TLS the controller must
//! prove it is `spiffe://TD/ns/weft-system/sa/weft-controller` under the
//! mesh roots (`--ca-file`, else `DATA_DIR/ca/root.pem`); a client
//! certificate from the mesh CA (`--client-cert`, `--client-key`) may stand
//! in for a token.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the controller listens unless `--controller` or `WEFT_CONTROLLER` says otherwise.
pub const DEFAULT_CONTROLLER: &str = "127.0.0.1:15010";

/// How to reach and authenticate to the controller.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The controller's API address: `host:port` (plaintext, this machine only) or `https://host:port`.
    #[arg(long, global = true, env = "WEFT_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
    pub controller: String,
    /// An API token (`weft api-token create`); without one, the local admin token in --data-dir is used.
    #[arg(long, global = true, env = "WEFT_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The controller's data directory on this machine (for its local admin token and mesh root).
    #[arg(long, global = true, env = "WEFT_DATA_DIR", default_value = "./weft-data")]
    pub data_dir: PathBuf,
    /// With https: the mesh roots (PEM) the controller's certificate must chain to.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// With https: a client certificate from the mesh CA (PEM chain), instead of a token.
    #[arg(long, global = true, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    #[arg(long, global = true, value_name = "PEM")]
    pub client_key: Option<PathBuf>,
    /// The mesh's trust domain (the controller's identity is checked against it).
    #[arg(long, global = true, default_value = "cluster.local")]
    pub trust_domain: String,
}

/// The local admin token of the `weft dev` cluster on this machine, when
/// `host` is its controller: every `weft` command works against it unchanged.
fn dev_cluster_token(host: &str) -> Option<String> {
    let cfg = weft_dev::state::Config::from_env().ok()?;
    let (api, data_dir) = weft_dev::cluster::recorded_controller(&cfg)?;
    (api.to_string() == host).then(|| std::fs::read_to_string(data_dir.join("api/admin.token")).ok())?
}

pub struct ControllerClient {
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<String>,
    rt: tokio::runtime::Runtime,
}

impl ControllerClient {
    pub fn new(c: &Connection) -> anyhow::Result<ControllerClient> {
        let (tls, host) = match c.controller.strip_prefix("https://") {
            Some(h) => (true, h.trim_end_matches('/').to_string()),
            None => (false, c.controller.trim_start_matches("http://").trim_end_matches('/').to_string()),
        };
        let token = match &c.token {
            Some(t) => Some(t.trim().to_string()),
            None => std::fs::read_to_string(c.data_dir.join("api/admin.token")).ok().or_else(|| dev_cluster_token(&host)).map(|t| t.trim().to_string()),
        };
        let tls = if tls { Some(tls_config(c)?) } else { None };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(ControllerClient { host, tls, token, rt })
    }

    /// Sends a request; returns the status and the JSON body.
    pub fn call(&self, method: http::Method, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<(u16, serde_json::Value)> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let unreachable = || format!("cannot reach the controller at {scheme}://{}; is `weft controller` running? (set --controller or WEFT_CONTROLLER)", self.host);
        self.rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(&self.host).await.with_context(unreachable)?;
            let payload = body.map(|b| b.to_string()).unwrap_or_default();
            let mut req = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, &self.host)
                .header("content-type", "application/json");
            if let Some(t) = &self.token {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = req.body(Full::new(Bytes::from(payload)))?;
            let resp = match &self.tls {
                Some(config) => {
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(weft_identity::tls::mesh_server_name(), tcp)
                        .await
                        .with_context(|| format!("TLS with the controller at {}", self.host))?;
                    send(TokioIo::new(tls), req).await?
                }
                None => send(TokioIo::new(tcp), req).await?,
            };
            let (status, bytes) = resp;
            let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            if status >= 500 {
                bail!("controller error {status}: {json}");
            }
            if status == 401 || status == 403 {
                bail!("the controller refused the call ({status}): {}", json["error"].as_str().unwrap_or("not allowed"));
            }
            Ok((status, json))
        })
    }
}

async fn send<IO>(io: TokioIo<IO>, req: http::Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

fn tls_config(c: &Connection) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let roots_path = c.ca_file.clone().unwrap_or_else(|| c.data_dir.join("ca/root.pem"));
    let roots = std::fs::read_to_string(&roots_path).with_context(|| format!("the mesh roots to check the controller with: {} (give --ca-file)", roots_path.display()))?;
    let bundle = weft_identity::TrustBundle::from_pem(&c.trust_domain, &roots)?;
    let expected = vec![weft_identity::tls::controller_id(&c.trust_domain)?];
    let mut config = match (&c.client_cert, &c.client_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| p.display().to_string());
            let identity = weft_identity::Identity::from_pem(&read(cert)?, &read(key)?)?;
            (*weft_identity::tls::client_config(&identity, &bundle, expected)?).clone()
        }
        _ => (*weft_identity::tls::anonymous_client_config(&bundle, expected)?).clone(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
