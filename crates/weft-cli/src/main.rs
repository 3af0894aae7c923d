//! `weft`: the command users run for everything the mesh does. Each
//! subcommand lives in its own module; this file only parses the command line.

mod analyze;
mod authz;
mod check;
mod client;
mod controller;
mod dev;
mod kube;
mod resources;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// weft: a lightweight service mesh that reads the Istio, Gateway API and
/// Linkerd/SMI configuration you already have.
#[derive(Parser)]
#[command(name = "weft", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    conn: client::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Validate mesh configuration files (or, without -f, the controller's live state)
    /// and find cross-resource problems.
    Analyze(analyze::Args),
    /// Run the control plane: config store and API.
    Controller(controller::Args),
    /// Validate and store configuration; one invalid document rejects the whole apply.
    Apply {
        /// Files or directories (*.yaml, *.yml, *.json).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Validate and analyze, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show stored configuration: `weft get vs`, `weft get dr reviews -n prod -o yaml`, `weft get all -A`.
    Get {
        /// Kind: a name (VirtualService), plural, short name (vs, dr, gw, se, pa, ap, ts, sp), KIND.GROUP, or `all`.
        kind: String,
        name: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short, long, default_value = "table", value_parser = ["table", "wide", "yaml", "json"])]
        output: String,
    },
    /// Every proxy the controller knows: config version sent and acknowledged,
    /// SYNCED / STALE / NACKED / DISCONNECTED, the last refusal's reason.
    ProxyStatus {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// The configuration the controller last sent to one proxy.
    ProxyConfig {
        /// The proxy's id, as `weft proxy-status` lists it.
        proxy: String,
        #[arg(default_value = "all", value_parser = ["all", "listeners", "routes", "clusters", "endpoints", "secret"])]
        section: String,
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// How a proxy reaches each endpoint it may call: client TLS mode (auto-mTLS,
    /// ISTIO_MUTUAL, DISABLE), the destination's PeerAuthentication mode, mTLS or
    /// plaintext, and CONFLICT where the destination will refuse the connection.
    TlsCheck {
        /// The proxy's id, as `weft proxy-status` lists it.
        proxy: String,
        /// Only clusters whose name contains this (a host, `reviews.prod`).
        host: Option<String>,
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Join tokens: `weft token create --namespace NS --service-account SA` grants a
    /// proxy that identity's certificate (pass it as `weft-proxy run --token`).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Tokens for the controller's API: `weft api-token create --name alice --role read`
    /// (admin only; `read` may get, `admin` may also apply, delete and mint tokens).
    ApiToken {
        #[command(subcommand)]
        action: ApiTokenAction,
    },
    /// Client certificates for the controller's API, from the mesh CA:
    /// `weft api-cert create --role read --out DIR` writes cert-chain.pem, key.pem, root-cert.pem
    /// (use them as --client-cert, --client-key, --ca-file with an https:// controller).
    ApiCert {
        #[command(subcommand)]
        action: ApiCertAction,
    },
    /// Authorization: `weft authz check POD` lists the policies that apply to a workload
    /// in evaluation order; with --from/--port/--method/--path it answers ALLOW or DENY
    /// and names the deciding policy and rule (exit 1 on DENY), by the proxy's own code.
    Authz {
        #[command(subcommand)]
        action: AuthzAction,
    },
    /// Experimental commands, as istioctl spells them (`weft x authz check`).
    #[command(hide = true)]
    X {
        #[command(subcommand)]
        command: Experimental,
    },
    /// Checks the mesh: the controller's mode, certificate expiry, proxies in sync.
    /// Exits 1 when a check fails.
    Check(check::Args),
    /// Kubernetes manifests for the control plane, to pipe into `kubectl apply -f -`
    /// (`weft install --crds | kubectl apply -f -` first, then `weft install | kubectl apply -f -`).
    Install(kube::InstallArgs),
    /// What to delete to remove weft from a cluster: `weft uninstall | kubectl delete -f -`.
    Uninstall(kube::UninstallArgs),
    /// Add the sidecar to the workloads in manifests, leaving every other document as it was:
    /// `kubectl get deploy -o yaml | weft inject -f - | kubectl apply -f -`.
    Inject(kube::InjectArgs),
    /// A local cluster from your Kubernetes manifests, each pod a meshed network namespace:
    /// `weft dev up -f k8s/`, `weft dev get pods`, `weft dev exec POD -- curl ...`, `weft dev down`.
    Dev {
        #[command(subcommand)]
        command: dev::DevCommand,
    },
    /// Delete configuration named in files, or by KIND NAME.
    Delete {
        #[arg(short = 'f', long = "filename", num_args = 1..)]
        files: Vec<PathBuf>,
        kind: Option<String>,
        name: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Subcommand)]
enum AuthzAction {
    /// The policies that apply to a workload; with a caller and a request, the decision.
    Check(authz::CheckArgs),
}

#[derive(Subcommand)]
enum Experimental {
    Authz {
        #[command(subcommand)]
        action: AuthzAction,
    },
}

#[derive(Subcommand)]
enum ApiTokenAction {
    /// Create a token for one caller of the API.
    Create {
        /// Who the token is for (shown in the controller's audit log).
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "read", value_parser = ["read", "admin"])]
        role: String,
        /// How long the token is valid (at most 90d).
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

#[derive(Subcommand)]
enum ApiCertAction {
    /// Create a key here and have the controller certify it for a role.
    Create {
        #[arg(long, default_value = "read", value_parser = ["read", "admin"])]
        role: String,
        /// Where to write the files (created 0700; the key 0600).
        #[arg(long)]
        out: PathBuf,
        /// How long the certificate is valid (at most 168h).
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token granting one namespace/service-account identity.
    Create {
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        service_account: String,
        /// How long the token can be used to obtain certificates.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let conn = &cli.conn;
    let client = || client::ControllerClient::new(conn);
    let result = (|| match cli.command {
        Command::Analyze(args) => analyze::run(args, conn),
        Command::Controller(args) => controller::run(args, &conn.data_dir),
        Command::Apply { files, dry_run } => resources::apply(&client()?, &files, dry_run),
        Command::Get { kind, name, namespace, all_namespaces, output } => {
            let ns = (!all_namespaces).then_some(namespace.as_str());
            resources::get(&client()?, &kind, name.as_deref(), ns, &output)
        }
        Command::Token { action: TokenAction::Create { namespace, service_account, ttl } } => {
            resources::create_token(&client()?, &namespace, &service_account, &ttl)
        }
        Command::ApiToken { action: ApiTokenAction::Create { name, role, ttl } } => resources::create_api_token(&client()?, &name, &role, &ttl),
        Command::ApiCert { action: ApiCertAction::Create { role, out, ttl } } => resources::create_api_cert(&client()?, &conn.trust_domain, &role, &out, &ttl),
        Command::Check(args) => check::run(&client()?, args),
        Command::Authz { action: AuthzAction::Check(args) } | Command::X { command: Experimental::Authz { action: AuthzAction::Check(args) } } => authz::check(args, conn),
        Command::ProxyStatus { output } => resources::proxy_status(&client()?, &output),
        Command::ProxyConfig { proxy, section, output } => resources::proxy_config(&client()?, &proxy, &section, &output),
        Command::TlsCheck { proxy, host, output } => resources::tls_check(&client()?, &proxy, host.as_deref(), &output),
        Command::Install(args) => kube::install(args, &conn.trust_domain),
        Command::Uninstall(args) => kube::uninstall(args),
        Command::Inject(args) => kube::inject(args),
        Command::Dev { command } => dev::run(command, conn),
        Command::Delete { files, kind, name, namespace } => resources::delete(&client()?, &files, kind.as_deref(), name.as_deref(), &namespace),
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
