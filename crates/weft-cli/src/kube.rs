//! `weft install`, `weft uninstall` and `weft inject`: manifests for
//! `kubectl apply -f -`, printed on stdout; what happened goes to stderr.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use weft_kube::install::{self, CaSource, InstallValues};

/// What `--set` and `-f` share between install and inject.
#[derive(clap::Args)]
pub struct ValuesArgs {
    /// Change a default, KEY=VALUE (repeatable): proxy.image, proxy.nativeSidecar,
    /// proxy.cpuRequest, proxy.memoryLimit, controller.ha, webhook.failurePolicy, ...
    /// (an unknown key lists them all).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A values file: the same keys, as nested YAML (`proxy: {image: ...}`); --set wins.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    values: Vec<PathBuf>,
}

impl ValuesArgs {
    fn read(&self) -> anyhow::Result<InstallValues> {
        let mut v = InstallValues::default();
        for f in &self.values {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            v.set_from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        }
        for kv in &self.set {
            let (k, val) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--set {kv:?}: expected KEY=VALUE"))?;
            v.set(k.trim(), val.trim()).map_err(|e| anyhow::anyhow!("--set {kv}: {e}"))?;
        }
        Ok(v)
    }
}

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Print only the CustomResourceDefinitions (apply them first, as with Linkerd).
    #[arg(long)]
    crds: bool,
    /// Leave out the CRDs of kinds another mesh already installed: istio, gateway-api,
    /// linkerd, smi, or an API group (repeatable).
    #[arg(long = "skip-crds", value_name = "FAMILY")]
    skip_crds: Vec<String>,
    /// Two controller replicas on different nodes, with a PodDisruptionBudget.
    #[arg(long)]
    ha: bool,
    #[command(flatten)]
    values: ValuesArgs,
    /// A CA of your own instead of a new self-signed root: its certificate (PEM)...
    #[arg(long, requires_all = ["ca_key"], conflicts_with = "cert_manager_issuer")]
    ca_cert: Option<PathBuf>,
    /// ...its key (PKCS#8 PEM)...
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// ...and the roots workloads trust (default: the certificate itself).
    #[arg(long)]
    ca_roots: Option<PathBuf>,
    /// Have cert-manager issue the CA from this issuer, KIND/NAME (ClusterIssuer/mesh-root).
    #[arg(long, value_name = "KIND/NAME")]
    cert_manager_issuer: Option<String>,
}

fn skip_groups(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for n in names {
        out.extend(weft_kube::crd::groups_of(n).map_err(|e| anyhow::anyhow!("--skip-crds: {e}"))?);
    }
    Ok(out)
}

fn print(objects: &[serde_json::Value]) -> anyhow::Result<ExitCode> {
    let text = install::to_yaml(objects).map_err(|e| anyhow::anyhow!("cannot write YAML: {e}"))?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn install(args: InstallArgs, trust_domain: &str) -> anyhow::Result<ExitCode> {
    let skip = skip_groups(&args.skip_crds)?;
    if args.crds {
        return print(&weft_kube::crd::all(&skip));
    }
    let mut values = args.values.read()?;
    if args.ha {
        values.ha = true;
    }
    if values.sidecar.trust_domain == weft_kube::sidecar::Values::default().trust_domain {
        values.sidecar.trust_domain = trust_domain.to_string();
    }
    let ca = match (&args.ca_cert, &args.ca_key, &args.cert_manager_issuer) {
        (Some(cert), Some(key), _) => {
            let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
            let (cert, key) = (read(cert)?, read(key)?);
            let roots = match &args.ca_roots {
                Some(r) => read(r)?,
                None => cert.clone(),
            };
            // The same checks the controller makes at start: fail here, not in the cluster.
            weft_identity::CertificateAuthority::from_pem(&values.sidecar.trust_domain, &cert, &key, "", &roots).context("--ca-cert/--ca-key")?;
            CaSource::Pem { cert, key, roots }
        }
        (_, _, Some(issuer)) => {
            let (kind, name) = issuer.split_once('/').filter(|(k, n)| !k.is_empty() && !n.is_empty()).ok_or_else(|| anyhow::anyhow!("--cert-manager-issuer {issuer:?}: expected KIND/NAME"))?;
            CaSource::CertManager { issuer_kind: kind.into(), issuer_name: name.into() }
        }
        _ => {
            let ca = weft_identity::CertificateAuthority::generate_root(&values.sidecar.trust_domain)?;
            eprintln!("weft install: a new self-signed mesh root is in secret {}/{} (use --ca-cert/--ca-key to keep one across installs)", install::NAMESPACE, install::CA_SECRET);
            CaSource::Pem { cert: ca.signing_cert_pem().to_string(), key: ca.signing_key_pem(), roots: ca.trust_bundle_pem() }
        }
    };
    print(&install::control_plane(&values, &ca))
}

#[derive(clap::Args)]
pub struct UninstallArgs {
    /// Also delete the CRDs, and with them every mesh resource stored in the cluster.
    #[arg(long)]
    crds: bool,
    #[arg(long = "skip-crds", value_name = "FAMILY")]
    skip_crds: Vec<String>,
}

pub fn uninstall(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    print(&install::uninstall(args.crds, &skip_groups(&args.skip_crds)?))
}

#[derive(clap::Args)]
pub struct InjectArgs {
    /// Files or directories of manifests (YAML or JSON), or - for stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Change a default, KEY=VALUE, as for `weft install` (proxy.image, proxy.nativeSidecar=false for
    /// clusters before Kubernetes 1.29, ...).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A values file, as for `weft install`.
    #[arg(long = "values", value_name = "FILE")]
    values: Vec<PathBuf>,
    /// Say nothing on stderr about what was injected (problems are still reported).
    #[arg(short, long)]
    quiet: bool,
}

pub fn inject(args: InjectArgs) -> anyhow::Result<ExitCode> {
    let values = ValuesArgs { set: args.set, values: args.values }.read()?.sidecar;
    let mut inputs: Vec<(String, String)> = Vec::new();
    for f in &args.files {
        if f.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read stdin")?;
            inputs.push(("stdin".into(), text));
            continue;
        }
        let paths = weft_model::load::find_files(f).with_context(|| format!("cannot read {}", f.display()))?;
        if paths.is_empty() {
            bail!("{}: no .yaml, .yml or .json files", f.display());
        }
        for p in paths {
            let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            inputs.push((p.display().to_string(), text));
        }
    }
    let mut out = std::io::stdout().lock();
    for (i, (name, text)) in inputs.iter().enumerate() {
        let (injected, notices) = weft_kube::manifests::inject_stream(text, &values);
        if i > 0 && !injected.starts_with("---") {
            out.write_all(b"---\n")?;
        }
        out.write_all(injected.as_bytes())?;
        if !injected.is_empty() && !injected.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        for n in notices {
            let problem = matches!(n.outcome, weft_kube::manifests::Outcome::Failed(_));
            if problem {
                eprintln!("warning: {name}: {n}");
            } else if !args.quiet {
                eprintln!("{name}: {n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
