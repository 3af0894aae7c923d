//! `weft controller`: run the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The store, the CA and the API key live in the global `--data-dir`.
#[derive(clap::Args)]
pub struct Args {
    /// Address of the HTTP API used by `weft apply/get/delete/analyze`.
    #[arg(long, default_value = crate::client::DEFAULT_CONTROLLER)]
    listen: SocketAddr,
    /// Address of the gRPC endpoint proxies stream their config from.
    #[arg(long, default_value = "0.0.0.0:15012")]
    grpc_listen: SocketAddr,
    /// How long a disconnected proxy's workload stays an endpoint (e.g. `10s`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    endpoint_grace: std::time::Duration,
    /// Development only: also admit proxies without a workload certificate, taking
    /// them at their word about who they are (never endpoints beside verified ones).
    #[arg(long)]
    insecure_dev: bool,
    /// The default now (kept so existing scripts run): proxies must prove who they are.
    #[arg(long, hide = true, conflicts_with = "insecure_dev")]
    require_proxy_certificates: bool,
    /// The trust domain of workload identities (spiffe://TRUST-DOMAIN/ns/NS/sa/SA).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Lifetime of workload certificates; proxies renew at about half of it.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    cert_ttl: std::time::Duration,
    /// How long after its certificate expired a proxy may still renew it with its key
    /// (an outage longer than a certificate's life locks nobody out); beyond it, a new join token.
    #[arg(long, default_value = "168h", value_parser = parse_duration)]
    renewal_grace: std::time::Duration,
    /// A plugged-in CA: the signing certificate (usually an intermediate)...
    #[arg(long, requires_all = ["ca_key", "ca_roots"])]
    ca_cert: Option<PathBuf>,
    /// ...its private key (PKCS#8 PEM)...
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// ...the certificates between it and the root...
    #[arg(long)]
    ca_chain: Option<PathBuf>,
    /// ...and the root(s) workloads trust. Without --ca-cert, a root is created in DATA_DIR/ca.
    #[arg(long)]
    ca_roots: Option<PathBuf>,
    /// How often idle proxy connections are pinged; a proxy that does not answer within
    /// as long again is disconnected (its grace period then starts).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    proxy_keepalive: std::time::Duration,
    /// Namespace whose selector-less policies apply to the whole mesh.
    #[arg(long, default_value = weft_model::mesh::DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    /// Linkerd's default inbound policy, for ports no Server or ALLOW policy covers
    /// (a Namespace's or Pod's config.linkerd.io/default-inbound-policy annotation wins).
    #[arg(long, default_value = "all-unauthenticated", value_parser = ["all-unauthenticated", "all-authenticated", "cluster-authenticated", "deny", "audit"])]
    default_inbound_policy: String,
    /// Tell meshed (mTLS) callers which policy refused them and why, in the 403 body.
    /// For debugging: it shows policy details to callers. Plaintext callers never see them.
    #[arg(long)]
    authz_debug: bool,
    /// How request paths are normalised before authorization and forwarding (Istio's
    /// meshConfig.pathNormalization).
    #[arg(long, default_value = "BASE", value_parser = ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"])]
    path_normalization: String,
    /// Where Prometheus scrapes the controller's metrics (`/metrics` only, Istio's
    /// monitoring port); `off` to serve none. A port already taken is reported and skipped.
    #[arg(long, default_value = "0.0.0.0:15014")]
    monitoring_listen: String,
    /// Where every proxy writes its access log (Istio's meshConfig.accessLogFile):
    /// `/dev/stdout`, `/dev/stderr` or a file. Empty (the default, as Istio's): no access log.
    #[arg(long, default_value = "")]
    access_log_file: String,
    /// TEXT (Envoy's format language), JSON, or WEFT (weft's own line).
    #[arg(long, default_value = "TEXT", value_parser = ["TEXT", "JSON", "WEFT"])]
    access_log_encoding: String,
    /// The TEXT format (Envoy's operators: %START_TIME%, %REQ(X)%, %RESPONSE_CODE%, ...);
    /// default Istio's.
    #[arg(long)]
    access_log_format: Option<String>,
    /// A tracing collector, NAME=URL (Istio's meshConfig.extensionProviders), repeatable:
    /// `otlp://HOST:4317` (OTLP/gRPC), `otlp+http://HOST:4318[/v1/traces]` (OTLP/HTTP,
    /// protobuf) or `zipkin://HOST:9411[/api/v2/spans]` (Zipkin v2 JSON). Telemetry
    /// resources pick one by name.
    #[arg(long = "tracing-provider", value_name = "NAME=URL")]
    tracing_providers: Vec<String>,
    /// The provider every workload traces to (Istio's meshConfig.defaultProviders.tracing).
    /// Without one (the default), only workloads a Telemetry resource names a provider for are traced.
    #[arg(long)]
    tracing_default_provider: Option<String>,
    /// Percentage of new traces sampled, 0 to 100 (Istio's default 1); a Telemetry
    /// resource's randomSamplingPercentage wins. A caller's decision is always followed.
    #[arg(long, default_value = "1")]
    tracing_sampling: f64,
    /// Serve the sidecar injection webhook (POST /inject, HTTPS) here; `weft install`
    /// sets 0.0.0.0:15017. Off by default.
    #[arg(long, value_name = "ADDR")]
    webhook_listen: Option<SocketAddr>,
    /// DNS names in the webhook's certificate, as the Kubernetes API server calls it (repeatable).
    #[arg(long = "webhook-dns-name", value_name = "NAME", default_values = ["weft-controller.weft-system.svc"])]
    webhook_dns_names: Vec<String>,
    /// What the webhook injects, KEY=VALUE as for `weft install --set` (proxy.image,
    /// proxy.nativeSidecar, proxy.memoryLimit, ...), repeatable.
    #[arg(long = "inject-set", value_name = "KEY=VALUE")]
    inject_set: Vec<String>,
    /// Accept Kubernetes ServiceAccount tokens from proxies, checked with this API
    /// server's TokenReview: `auto` in a pod (the API server and credentials the
    /// kubelet provides), or `https://HOST:PORT` with --kube-token-file and --kube-ca-file.
    #[arg(long, value_name = "auto|URL")]
    kube_api: Option<String>,
    /// The controller's own token for the API server (with a URL --kube-api).
    #[arg(long, requires = "kube_api")]
    kube_token_file: Option<PathBuf>,
    /// The API server's CA bundle (with a URL --kube-api).
    #[arg(long, requires = "kube_api")]
    kube_ca_file: Option<PathBuf>,
    /// The audience proxies' ServiceAccount tokens must be minted for.
    #[arg(long, default_value = "weft")]
    token_audience: String,
}

pub fn run(args: Args, data_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    // Colours only on a terminal: logs written to files stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let plugged_ca = match (args.ca_cert, args.ca_key, args.ca_roots) {
        (Some(cert), Some(key), Some(roots)) => Some(weft_controller::identity::PluggedCa { cert, key, chain: args.ca_chain, roots }),
        _ => None,
    };
    let telemetry = weft_proto::config::Telemetry {
        access_log: (!args.access_log_file.is_empty()).then(|| weft_proto::config::AccessLog {
            path: args.access_log_file.clone(),
            encoding: match args.access_log_encoding.as_str() {
                "JSON" => weft_proto::config::AccessLogEncoding::Json,
                "WEFT" => weft_proto::config::AccessLogEncoding::Weft,
                _ => weft_proto::config::AccessLogEncoding::Text,
            },
            format: args.access_log_format.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(a) = &telemetry.access_log {
        a.check().map_err(|e| anyhow::anyhow!("--access-log-format: {e}"))?;
    }
    let telemetry = mesh_telemetry(telemetry, &args.tracing_providers, args.tracing_default_provider.as_deref(), args.tracing_sampling)?;
    let webhook = match args.webhook_listen {
        Some(listen) => {
            let mut values = weft_kube::install::InstallValues::default();
            values.sidecar.trust_domain = args.trust_domain.clone();
            for kv in &args.inject_set {
                let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--inject-set {kv:?}: expected KEY=VALUE"))?;
                values.set(k.trim(), v.trim()).map_err(|e| anyhow::anyhow!("--inject-set {kv}: {e}"))?;
            }
            Some(weft_controller::webhook::WebhookOptions { listen, dns_names: args.webhook_dns_names.clone(), sidecar: values.sidecar })
        }
        None => None,
    };
    let token_review = match args.kube_api.as_deref() {
        None => None,
        Some("auto") => Some(weft_controller::token_review::ReviewerOptions::in_cluster(&args.token_audience).map_err(|e| anyhow::anyhow!("--kube-api auto: {e}"))?),
        Some(url) => {
            let (Some(token_file), Some(ca_file)) = (args.kube_token_file.clone(), args.kube_ca_file.clone()) else {
                anyhow::bail!("--kube-api {url}: also give --kube-token-file and --kube-ca-file (or use --kube-api auto in a pod)");
            };
            Some(weft_controller::token_review::ReviewerOptions { api: url.to_string(), token_file, ca_file, audience: args.token_audience.clone() })
        }
    };
    weft_controller::server::run(weft_controller::server::Options {
        data_dir: data_dir.to_path_buf(),
        listen: args.listen,
        grpc_listen: args.grpc_listen,
        endpoint_grace: args.endpoint_grace,
        insecure_dev: args.insecure_dev,
        trust_domain: args.trust_domain,
        cert_ttl: args.cert_ttl,
        renewal_grace: args.renewal_grace,
        plugged_ca,
        root_namespace: args.root_namespace,
        proxy_keepalive: args.proxy_keepalive,
        telemetry,
        webhook,
        token_review,
        monitoring_listen: match args.monitoring_listen.as_str() {
            "off" | "" => None,
            a => Some(a.parse().map_err(|e| anyhow::anyhow!("--monitoring-listen {a:?}: {e}"))?),
        },
        policy: weft_controller::compile::authz::MeshPolicy {
            default_inbound_policy: weft_proto::authz::DefaultPolicy::parse(&args.default_inbound_policy).unwrap_or_default(),
            explain_denials: args.authz_debug,
            path_normalization: serde_json::from_value(serde_json::Value::String(args.path_normalization)).unwrap_or_default(),
        },
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The tracing flags on top of `base`: a named provider that does not parse,
/// or a default that names none of them, stops the controller.
fn mesh_telemetry(mut base: weft_proto::config::Telemetry, providers: &[String], default: Option<&str>, sampling: f64) -> anyhow::Result<weft_controller::compile::telemetry::MeshTelemetry> {
    use weft_proto::config::{TraceCollector, Tracing};
    let sampling_ppm = Tracing::ppm(sampling).map_err(|e| anyhow::anyhow!("--tracing-sampling: {e}"))?;
    let mut named = std::collections::BTreeMap::new();
    for p in providers {
        let (name, url) = p.split_once('=').filter(|(n, _)| !n.is_empty()).ok_or_else(|| anyhow::anyhow!("--tracing-provider {p:?}: write NAME=URL, e.g. otel=otlp://otel-collector:4317"))?;
        let collector = TraceCollector::parse(url).map_err(|e| anyhow::anyhow!("--tracing-provider {name}: {e}"))?;
        if named.insert(name.to_string(), collector).is_some() {
            anyhow::bail!("--tracing-provider {name}: given twice");
        }
    }
    if let Some(d) = default {
        let collector = named.get(d).ok_or_else(|| anyhow::anyhow!("--tracing-default-provider {d:?}: no --tracing-provider has that name"))?;
        base.tracing = Some(Tracing { sampling_ppm, ..Tracing::to(collector.clone()) });
    }
    Ok(weft_controller::compile::telemetry::MeshTelemetry { base, providers: named, sampling_ppm })
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    weft_model::values::parse_duration(s)
}
