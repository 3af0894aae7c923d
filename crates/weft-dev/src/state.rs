//! What a dev cluster is made of, on disk (`STATE_DIR/cluster.json`, written
//! after every step): the bridge, the controller, each pod's namespace, veth,
//! address and processes, each Service's virtual IP. `weft dev down` removes
//! exactly these, also after `weft dev up` crashed half-way.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where a cluster lives and what it may use; from the environment so tests
/// can run one beside a user's (`WEFT_DEV_DIR`, `WEFT_DEV_TAG`, `WEFT_DEV_SUBNET`,
/// `WEFT_DEV_API`).
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    /// Short name in every link and namespace this cluster makes (`weftd0`, `vd0-3`).
    pub tag: String,
    /// The first two octets of the pods' /16.
    pub subnet: [u8; 2],
    /// The controller's API (the address `weft` uses by default).
    pub api: SocketAddr,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let dir = std::env::var_os("WEFT_DEV_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib/weft-dev"));
        let tag = std::env::var("WEFT_DEV_TAG").unwrap_or_else(|_| "d0".into());
        if tag.is_empty() || tag.len() > 4 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
            anyhow::bail!("WEFT_DEV_TAG {tag:?}: 1-4 letters or digits (it goes into interface names)");
        }
        let subnet = match std::env::var("WEFT_DEV_SUBNET") {
            Ok(s) => {
                let ip: Ipv4Addr = s.trim_end_matches(".0.0/16").parse::<Ipv4Addr>().or_else(|_| format!("{}.0.0", s.trim_end_matches(".0.0/16")).parse()).map_err(|_| anyhow::anyhow!("WEFT_DEV_SUBNET {s:?}: write A.B.0.0/16"))?;
                [ip.octets()[0], ip.octets()[1]]
            }
            Err(_) => [10, 244],
        };
        let api = std::env::var("WEFT_DEV_API").unwrap_or_else(|_| "127.0.0.1:15010".into()).parse().map_err(|e| anyhow::anyhow!("WEFT_DEV_API: {e}"))?;
        Ok(Config { dir, tag, subnet, api })
    }

    pub fn bridge(&self) -> String {
        format!("weft{}", self.tag)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], 0, 1)
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    pub fn controller_dir(&self) -> PathBuf {
        self.dir.join("controller")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerState {
    /// The embedded controller's process (0 for an external one).
    pub pid: u32,
    pub api: SocketAddr,
    /// Where pods reach its proxies' gRPC port.
    pub grpc: SocketAddr,
    pub monitoring: SocketAddr,
    /// A controller the cluster uses but did not start: `down` leaves it running
    /// and removes only what the cluster applied to it.
    #[serde(default)]
    pub external: bool,
    /// Its data directory (local admin token, mesh root).
    #[serde(default)]
    pub data_dir: PathBuf,
}

/// An object the cluster applied to the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedObject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    /// What runs for it, as `weft dev up` reported.
    pub program: String,
    pub pids: Vec<u32>,
    pub log: PathBuf,
    pub ports: Vec<u16>,
    /// The readiness probe the runtime checks (after injection's rewrite).
    pub readiness: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub namespace: String,
    /// `deployment/exam-service`.
    pub owner: String,
    /// Of the template it was made from: a changed template replaces the pod.
    pub template_hash: String,
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
    pub meshed: bool,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub dir: PathBuf,
    pub containers: Vec<ContainerState>,
    pub proxy: Option<ContainerState>,
    pub started_unix: u64,
}

/// A workload as last applied: `restart` and the controller's view of its pods need its template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadState {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub replicas: u32,
    pub template: serde_json::Value,
}

impl WorkloadState {
    /// `deployment/exam-service`, as pods name their owner.
    pub fn owner(&self) -> String {
        format!("{}/{}", self.kind.to_lowercase(), self.name)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamespaceState {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub bridge: Option<String>,
    pub controller: Option<ControllerState>,
    pub next_pod: u32,
    pub next_service_ip: u32,
    /// `namespace/name` -> ClusterIP.
    pub services: BTreeMap<String, Ipv4Addr>,
    /// Service ports, for `weft dev get svc`: `namespace/name` -> `80/TCP,...`.
    pub service_ports: BTreeMap<String, String>,
    /// Namespaces' labels and annotations: what the injection rules read.
    pub namespaces: BTreeMap<String, NamespaceState>,
    pub pods: Vec<PodState>,
    #[serde(default)]
    pub workloads: Vec<WorkloadState>,
    /// The `--images` map `up` was given, for pods made later (restart, port-forward).
    #[serde(default)]
    pub images: Vec<(String, String)>,
    /// What was applied to the controller (removed from an external one by `down`).
    #[serde(default)]
    pub applied: Vec<AppliedObject>,
}

impl State {
    pub fn load(path: &Path) -> anyhow::Result<Option<State>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| anyhow::anyhow!("{}: {e} (remove it by hand if no cluster is running)", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    /// Written atomically, so a crash leaves the previous or the new state.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }
}
