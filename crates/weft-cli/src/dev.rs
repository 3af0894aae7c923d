//! `weft dev`: run Kubernetes manifests as a meshed local cluster of
//! network-namespace pods (weft-dev does the work; this parses and prints).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum DevCommand {
    /// Start (or bring up to date) the cluster from manifests: Namespaces, Deployments,
    /// StatefulSets, ReplicaSets, Pods, Services, ServiceAccounts and mesh resources.
    /// Pods whose template and count did not change keep running.
    Up(UpArgs),
    /// The same as `up`: apply changed manifests (scale, add a workload, change a TrafficSplit).
    Apply(UpArgs),
    /// Remove every process, network namespace, link and file the cluster made.
    Down,
    /// `weft dev get pods` or `weft dev get svc`.
    Get {
        #[arg(value_parser = ["pods", "pod", "po", "services", "service", "svc"])]
        what: String,
        #[arg(short, long)]
        namespace: Option<String>,
        /// Every namespace (the default).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Run a command in a pod's network namespace: `weft dev exec POD -- curl -s http://svc/`.
    Exec {
        /// A pod's name, or deploy/NAME for its first pod.
        pod: String,
        #[arg(short, long)]
        namespace: Option<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Replace every pod of a workload, new ones first: `weft dev restart deploy/NAME`.
    Restart {
        /// deploy/NAME, statefulset/NAME or rs/NAME.
        workload: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Reach a Service from this machine, through the mesh: `weft dev port-forward
    /// svc/exam-service 8080:80` (a meshed pod carries the connections, so routing,
    /// mTLS and policies apply as to any caller).
    PortForward {
        /// svc/NAME.
        service: String,
        /// LOCAL:PORT (PORT: the Service's port).
        ports: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// (internal) the pod end of a port-forward.
    #[command(hide = true)]
    Connect { addr: String },
    /// A container's output (`-c proxy` for the sidecar's).
    Logs {
        pod: String,
        #[arg(short, long)]
        namespace: Option<String>,
        #[arg(short, long)]
        container: Option<String>,
        /// Keep printing as it grows.
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Files or directories (*.yaml, *.yml, *.json), or - for stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Image pattern -> command, as YAML (`"registry.example.com/pay/*": ./pay-server`).
    #[arg(long)]
    images: Option<PathBuf>,
    /// How long to wait for new pods to be Ready.
    #[arg(long, default_value = "60s")]
    wait: String,
    /// Use the controller at the global --controller (with the global --data-dir for its
    /// admin token and mesh root) instead of starting one; this is where pods reach its
    /// proxies' gRPC port, e.g. 10.244.0.1:15012 (the bridge's address) for a controller
    /// listening on 0.0.0.0:15012.
    #[arg(long, value_name = "HOST:PORT")]
    grpc: Option<std::net::SocketAddr>,
}

pub fn run(cmd: DevCommand, conn: &crate::client::Connection) -> anyhow::Result<ExitCode> {
    let cfg = weft_dev::state::Config::from_env()?;
    let mut out = std::io::stdout();
    match cmd {
        DevCommand::Up(a) | DevCommand::Apply(a) => {
            let manifests = weft_dev::manifest::Manifests::read(&a.files)?;
            let images = match &a.images {
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("--images {}: {e}", p.display()))?;
                    weft_dev::images::ImageMap::parse(&text).map_err(|e| anyhow::anyhow!("--images {}: {e}", p.display()))?
                }
                None => Default::default(),
            };
            let wait = weft_model::values::parse_duration(&a.wait).map_err(|e| anyhow::anyhow!("--wait: {e}"))?;
            let controller = match a.grpc {
                Some(grpc) => {
                    let api = conn.controller.trim_start_matches("http://").parse().map_err(|e| anyhow::anyhow!("--controller {:?}: a plaintext HOST:PORT on this machine ({e})", conn.controller))?;
                    Some(weft_dev::cluster::ExternalController { api, grpc, data_dir: conn.data_dir.clone() })
                }
                None => None,
            };
            weft_dev::cluster::up(&cfg, &manifests, &weft_dev::cluster::UpOptions { images, wait, controller }, &mut out)?;
            print!("{}", weft_dev::cluster::pods_table(&cfg, None)?);
            let (api, data_dir) = weft_dev::cluster::controller_of(&cfg);
            if api.to_string() != crate::client::DEFAULT_CONTROLLER {
                println!("weft commands reach this cluster with --controller {api} --data-dir {}", data_dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        DevCommand::Down => {
            weft_dev::cluster::down(&cfg, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        DevCommand::Get { what, namespace, all_namespaces } => {
            let ns = if all_namespaces { None } else { namespace.as_deref() };
            let table = match what.as_str() {
                "pods" | "pod" | "po" => weft_dev::cluster::pods_table(&cfg, ns)?,
                _ => weft_dev::cluster::services_table(&cfg, ns)?,
            };
            print!("{table}");
            Ok(ExitCode::SUCCESS)
        }
        DevCommand::Exec { pod, namespace, command } => {
            let code = weft_dev::cluster::exec(&cfg, &pod, namespace.as_deref(), &command)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        DevCommand::Restart { workload, namespace } => {
            weft_dev::cluster::restart(&cfg, &workload, namespace.as_deref(), &mut out)?;
            print!("{}", weft_dev::cluster::pods_table(&cfg, namespace.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        DevCommand::PortForward { service, ports, namespace } => {
            let (local, port) = ports.split_once(':').ok_or_else(|| anyhow::anyhow!("{ports}: write LOCAL:PORT, e.g. 8080:80"))?;
            let parse = |p: &str| p.parse::<u16>().map_err(|_| anyhow::anyhow!("{p:?} is not a port number"));
            weft_dev::cluster::port_forward(&cfg, &service, namespace.as_deref(), parse(local)?, parse(port)?, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        DevCommand::Connect { addr } => {
            weft_dev::cluster::connect(&addr)?;
            Ok(ExitCode::SUCCESS)
        }
        DevCommand::Logs { pod, namespace, container, follow } => {
            let path = weft_dev::cluster::log_path(&cfg, &pod, namespace.as_deref(), container.as_deref())?;
            if follow {
                let status = std::process::Command::new("tail").args(["-n", "+1", "-f"]).arg(&path).status()?;
                return Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            print!("{}", std::fs::read_to_string(&path).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
    }
}
