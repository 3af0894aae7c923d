//! `weft dev up` and friends: a controller on the host, a network namespace
//! per pod on one bridge, a virtual IP per Service, and for each pod the
//! sidecar injection decides on (the same rules and the same rewrite as on
//! Kubernetes: the runtime runs what `weft_kube::sidecar` put into the pod
//! spec) plus a local program per container. `up` reconciles: pods whose
//! template and replica count did not change keep running.

use crate::host::{self, Spawn};
use crate::images::{self, ImageMap, Program};
use crate::manifest::{Manifests, Workload};
use crate::state::{Config, ContainerState, ControllerState, PodState, State, WorkloadState};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weft_kube::rules::{Marks, Mode};

/// The uid proxies run as (their own traffic is not intercepted).
const PROXY_UID: u32 = 1337;
/// The Services' virtual IPs: 10.96.0.0/16, as Kubernetes' default service CIDR.
const SERVICE_NET: [u8; 2] = [10, 96];

pub struct UpOptions {
    pub images: ImageMap,
    /// How long to wait for new pods to be Ready.
    pub wait: Duration,
    /// Use this controller instead of starting one.
    pub controller: Option<ExternalController>,
}

/// A controller that already runs: its API, its proxies' gRPC port as pods
/// reach it (on the bridge), and its data directory (admin token, root).
#[derive(Debug, Clone)]
pub struct ExternalController {
    pub api: SocketAddr,
    pub grpc: SocketAddr,
    pub data_dir: PathBuf,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The characters of generated pod names, as Kubernetes' (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a: a short stable hash of a pod template, as Kubernetes' pod-template-hash.
fn template_hash(t: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in t.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (0..10).map(|i| NAME_ALPHABET[((h >> (i * 6)) % NAME_ALPHABET.len() as u64) as usize] as char).collect()
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let mut n = h.finish();
    (0..5)
        .map(|_| {
            let c = NAME_ALPHABET[(n % NAME_ALPHABET.len() as u64) as usize] as char;
            n /= NAME_ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The controller a running cluster uses (its API and data directory), as
/// its state records it; none without a cluster.
pub fn recorded_controller(cfg: &Config) -> Option<(SocketAddr, PathBuf)> {
    let c = State::load(&cfg.state_file()).ok().flatten()?.controller?;
    let data_dir = if c.data_dir.as_os_str().is_empty() { cfg.controller_dir() } else { c.data_dir };
    Some((c.api, data_dir))
}

/// The controller the cluster uses, or would start (its API and data directory).
pub fn controller_of(cfg: &Config) -> (SocketAddr, PathBuf) {
    recorded_controller(cfg).unwrap_or_else(|| (cfg.api, cfg.controller_dir()))
}

/// `weft ARGS` against the cluster's controller, as its local admin.
fn weft(cfg: &Config, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let exe = std::env::current_exe()?;
    let (api, data) = controller_of(cfg);
    let out = Command::new(exe).arg("--data-dir").arg(&data).args(["--controller", &api.to_string()]).args(args).output()?;
    Ok(out)
}

fn weft_ok(cfg: &Config, args: &[&str]) -> anyhow::Result<String> {
    let out = weft(cfg, args)?;
    if !out.status.success() {
        bail!("weft {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apply_docs(cfg: &Config, st: &mut State, docs: &[Value]) -> anyhow::Result<()> {
    if docs.is_empty() {
        return Ok(());
    }
    for d in docs {
        let at = |p: &str| d.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        let object = crate::state::AppliedObject { kind: at("/kind"), namespace: at("/metadata/namespace"), name: at("/metadata/name") };
        if !st.applied.contains(&object) {
            st.applied.push(object);
        }
    }
    st.save(&cfg.state_file())?;
    let path = cfg.dir.join("apply.yaml");
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&serde_norway::to_string(d)?);
    }
    std::fs::write(&path, text)?;
    weft_ok(cfg, &["apply", "-f", path.to_str().unwrap_or_default()]).map(|_| ())
}

fn start_controller(cfg: &Config) -> anyhow::Result<ControllerState> {
    let exe = std::env::current_exe()?;
    let grpc = SocketAddr::from((cfg.gateway(), 15012));
    let monitoring = SocketAddr::from((cfg.gateway(), 15014));
    if std::net::TcpStream::connect_timeout(&cfg.api, Duration::from_millis(200)).is_ok() {
        bail!("{} is taken (another controller?); set WEFT_DEV_API to another address", cfg.api);
    }
    std::fs::create_dir_all(cfg.controller_dir())?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(cfg.dir.join("controller.log"))?;
    use std::os::unix::process::CommandExt;
    let child = Command::new(exe)
        .arg("--data-dir")
        .arg(cfg.controller_dir())
        .args(["controller", "--listen", &cfg.api.to_string(), "--grpc-listen", &grpc.to_string(), "--monitoring-listen", &monitoring.to_string(), "--endpoint-grace", "2s"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting weft controller")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect_timeout(&cfg.api, Duration::from_millis(200)).is_err() || std::net::TcpStream::connect_timeout(&grpc, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("the controller did not start; its log: {}", cfg.dir.join("controller.log").display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ControllerState { pid: child.id(), api: cfg.api, grpc, monitoring, external: false, data_dir: cfg.controller_dir() })
}

/// The hosts file of a pod in `namespace`: every Service under its DNS names.
fn hosts_for(st: &State, pod: &PodState) -> String {
    let mut text = format!("127.0.0.1 localhost\n{} {}\n", pod.ip, pod.name);
    for (key, ip) in &st.services {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let mut names = vec![format!("{name}.{ns}.svc.cluster.local"), format!("{name}.{ns}.svc"), format!("{name}.{ns}")];
        if ns == pod.namespace {
            names.push(name.to_string());
        }
        text.push_str(&format!("{ip} {}\n", names.join(" ")));
    }
    text
}

/// Resolves a downward-API env var the way the kubelet would.
fn field_value(path: &str, pod: &PodState) -> String {
    match path {
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.clone(),
        "spec.serviceAccountName" => pod.service_account.clone(),
        "status.podIP" => pod.ip.to_string(),
        _ => String::new(),
    }
}

fn env_of(container: &Value, pod: &PodState) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in container.get("env").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = e.get("name").and_then(Value::as_str) else { continue };
        let value = match (e.get("value").and_then(Value::as_str), e.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str)) {
            (Some(v), _) => v.to_string(),
            (None, Some(path)) => field_value(path, pod),
            _ => continue,
        };
        out.push((name.to_string(), value));
    }
    out
}

fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut s = arg.to_string();
    for (k, v) in env {
        s = s.replace(&format!("$({k})"), v);
    }
    s
}

/// A container's readiness probe with a named port resolved against its
/// ports, as the kubelet resolves it (a name no port has stays, and fails).
fn readiness_of(c: &Value) -> Option<Value> {
    let mut probe = c.get("readinessProbe").cloned()?;
    for kind in ["httpGet", "tcpSocket"] {
        if let Some(p) = probe.get_mut(kind) {
            if let Ok(n) = weft_kube::probes::resolve_port(c, p.get("port")) {
                p["port"] = n.into();
            }
        }
    }
    Some(probe)
}

fn ports_of(c: &Value) -> Vec<u16> {
    c.get("ports").and_then(Value::as_array).into_iter().flatten().filter_map(|p| p.get("containerPort")?.as_u64()).filter_map(|n| u16::try_from(n).ok()).collect()
}

/// The program's argv and extra files, for one container.
fn command_line(program: &Program, pod: &PodState, c: &Value, env: &[(String, String)]) -> anyhow::Result<Vec<Vec<String>>> {
    let version = pod.labels.get("version").cloned().unwrap_or_else(|| "-".into());
    Ok(match program {
        Program::Echo { ports } => {
            let echo = host::sibling("weft-echo")?.display().to_string();
            ports.iter().map(|p| vec![echo.clone(), "serve".into(), "--listen".into(), format!("0.0.0.0:{p}"), "--name".into(), pod.name.clone(), "--version".into(), version.clone()]).collect()
        }
        Program::Nginx { ports } => {
            let service = env.iter().find(|(k, _)| k == "SERVICE_NAME").map(|(_, v)| v.clone()).unwrap_or_else(|| pod.owner.rsplit('/').next().unwrap_or_default().to_string());
            let name = c.get("name").and_then(Value::as_str).unwrap_or("nginx");
            let dir = pod.dir.join(format!("nginx-{name}"));
            std::fs::create_dir_all(dir.join("tmp"))?;
            let page = format!("<html><body><h1>{service}</h1><p>pod {} version {version}</p></body></html>", pod.name).replace('\'', "");
            let servers: String = ports.iter().map(|p| format!("  server {{ listen {p}; location / {{ default_type text/html; return 200 '{page}\\n'; }} }}\n")).collect();
            let d = dir.display();
            let conf = format!(
                "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n{servers}}}\n"
            );
            std::fs::write(dir.join("nginx.conf"), conf)?;
            vec![vec!["nginx".into(), "-p".into(), d.to_string(), "-c".into(), format!("{d}/nginx.conf")]]
        }
        Program::Redis { port } => vec![vec!["redis-server".into(), "--port".into(), port.to_string(), "--bind".into(), "0.0.0.0".into(), "--protected-mode".into(), "no".into(), "--save".into(), String::new(), "--appendonly".into(), "no".into()]],
        Program::Shell(cmd) => vec![vec!["sh".into(), "-c".into(), cmd.clone()]],
        Program::Argv(argv) => vec![argv.iter().map(|a| expand(a, env)).collect()],
        Program::Idle => vec![vec!["sleep".into(), "infinity".into()]],
    })
}

/// Creates and starts one pod; records it in `st` before each step.
#[allow(clippy::too_many_arguments)]
fn create_pod(cfg: &Config, st: &mut State, w: &Workload, name: String, hash: &str, opts: &UpOptions, tokens: &mut BTreeMap<(String, String), String>, out: &mut dyn Write) -> anyhow::Result<()> {
    let n = st.next_pod;
    st.next_pod += 1;
    let host_index = n + 2;
    if host_index > 65_000 {
        bail!("the pod subnet is full");
    }
    let ip = Ipv4Addr::new(cfg.subnet[0], cfg.subnet[1], (host_index >> 8) as u8, (host_index & 0xff) as u8);
    let labels = weft_kube::sidecar::string_map(w.template.pointer("/metadata/labels"));
    let annotations = weft_kube::sidecar::string_map(w.template.pointer("/metadata/annotations"));
    let service_account = w.template.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_string();
    let dir = cfg.dir.join("pods").join(&w.namespace).join(&name);
    std::fs::create_dir_all(&dir)?;
    let mut pod = PodState {
        name: name.clone(),
        namespace: w.namespace.clone(),
        owner: format!("{}/{}", w.kind.to_lowercase(), w.name),
        template_hash: hash.to_string(),
        netns: format!("weft-dev-{}-{n}", cfg.tag),
        veth: format!("v{}{n}", cfg.tag),
        ip,
        meshed: false,
        service_account: service_account.clone(),
        labels: labels.clone(),
        dir: dir.clone(),
        containers: vec![],
        proxy: None,
        started_unix: now_unix(),
    };
    st.pods.push(pod.clone());
    st.save(&cfg.state_file())?;
    host::create_netns(&pod.netns, &pod.veth, &cfg.bridge(), ip, 16, cfg.gateway())?;
    host::write_hosts(&pod.netns, &hosts_for(st, &pod))?;

    // The same decision and the same pod rewrite as the webhook's.
    let ns = st.namespaces.get(&w.namespace).cloned().unwrap_or_default();
    let ns_marks = Marks { labels: Some(&ns.labels), annotations: Some(&ns.annotations) };
    let mut template = w.template.clone();
    let values = weft_kube::sidecar::Values::default();
    let decision = weft_kube::sidecar::inject_template(&mut template, Mode::OptIn, &ns_marks, &w.name, &values).map_err(|e| anyhow::anyhow!("{}: {e}", w.origin))?;
    pod.meshed = decision.inject();
    let spec = template.get("spec").cloned().unwrap_or_default();
    let all_inits = spec.get("initContainers").and_then(Value::as_array).cloned().unwrap_or_default();
    let all_containers = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let find = |name: &str| all_inits.iter().chain(&all_containers).find(|c| c.get("name").and_then(Value::as_str) == Some(name)).cloned();

    if pod.meshed {
        let proxy_bin = host::sibling("weft-proxy")?.display().to_string();
        let init = find(weft_kube::sidecar::INIT_CONTAINER).context("injected pod without its init container")?;
        let mut argv = vec![proxy_bin.clone()];
        argv.extend(init.get("args").and_then(Value::as_array).into_iter().flatten().filter_map(|a| a.as_str().map(String::from)));
        let mut iargs = vec!["netns", "exec", &pod.netns];
        iargs.extend(argv.iter().map(String::as_str));
        host::sh("ip", &iargs).with_context(|| format!("{name}: weft-proxy init"))?;
        let key = (w.namespace.clone(), service_account.clone());
        if !tokens.contains_key(&key) {
            let t = weft_ok(cfg, &["token", "create", "--namespace", &w.namespace, "--service-account", &service_account])?;
            tokens.insert(key.clone(), t.trim().to_string());
        }
        let token_file = dir.join("token");
        std::fs::write(&token_file, &tokens[&key])?;
        let labels_file = dir.join("labels");
        std::fs::write(&labels_file, labels.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect::<String>())?;
        let state_dir = dir.join("proxy-state");
        std::fs::create_dir_all(&state_dir)?;
        let controller_data = controller_of(cfg).1;
        let root = controller_data.join("ca/root.pem");
        // The proxy reads these as uid 1337.
        host::sh("chown", &["-R", &format!("{PROXY_UID}:{PROXY_UID}"), &state_dir.display().to_string()])?;
        host::sh("chmod", &["0644", &token_file.display().to_string(), &labels_file.display().to_string()])?;
        for d in [cfg.dir.clone(), cfg.dir.join("pods"), cfg.dir.join("pods").join(&w.namespace), dir.clone(), controller_data.clone(), controller_data.join("ca")] {
            let _ = host::sh("chmod", &["a+x", &d.display().to_string()]);
        }
        let _ = host::sh("chmod", &["a+r", &root.display().to_string()]);
        let proxy = find(weft_kube::sidecar::PROXY_CONTAINER).context("injected pod without its proxy")?;
        let env = env_of(&proxy, &pod);
        let mut args: Vec<String> = proxy.get("args").and_then(Value::as_array).into_iter().flatten().filter_map(|a| a.as_str().map(|s| expand(s, &env))).collect();
        for i in 0..args.len().saturating_sub(1) {
            let value = match args[i].as_str() {
                "--controller" => st.controller.as_ref().map(|c| c.grpc.to_string()),
                "--token-file" => Some(token_file.display().to_string()),
                "--ca-roots" => Some(root.display().to_string()),
                "--labels-file" => Some(labels_file.display().to_string()),
                "--state-dir" => Some(state_dir.display().to_string()),
                _ => None,
            };
            if let Some(v) = value {
                args[i + 1] = v;
            }
        }
        let mut argv = vec![proxy_bin];
        argv.extend(args);
        let log = dir.join("proxy.log");
        let pid = host::spawn(Spawn { ns: &pod.netns, uid: Some(PROXY_UID), hostname: None, argv, env, log: log.clone(), cwd: None })?;
        pod.proxy = Some(ContainerState { name: weft_kube::sidecar::PROXY_CONTAINER.into(), image: "weft-proxy (this build)".into(), program: "weft-proxy".into(), pids: vec![pid], log, ports: vec![], readiness: Some(json!({ "httpGet": { "path": "/healthz/ready", "port": weft_kube::sidecar::HEALTH_PORT } })) });
    }

    let single = all_containers.len() == 1;
    for c in all_containers.iter().filter(|c| c.get("name").and_then(Value::as_str) != Some(weft_kube::sidecar::PROXY_CONTAINER)) {
        let cname = c.get("name").and_then(Value::as_str).unwrap_or("app").to_string();
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
        let program = images::program_for(c, &annotations, single, &opts.images);
        let mut env = env_of(c, &pod);
        env.push(("HOSTNAME".into(), name.clone()));
        let log = dir.join(format!("{cname}.log"));
        let mut pids = Vec::new();
        for argv in command_line(&program, &pod, c, &env)? {
            pids.push(host::spawn(Spawn { ns: &pod.netns, uid: None, hostname: Some(&name), argv, env: env.clone(), log: log.clone(), cwd: Some(&dir) })?);
        }
        let _ = writeln!(out, "  {}/{name} {cname}: {image} -> {}", w.namespace, program.describe());
        pod.containers.push(ContainerState { name: cname, image, program: program.describe(), pids, log, ports: ports_of(c), readiness: readiness_of(c) });
    }
    if let Some(p) = st.pods.iter_mut().find(|p| p.name == pod.name && p.namespace == pod.namespace) {
        *p = pod;
    }
    st.save(&cfg.state_file())?;
    Ok(())
}

/// Stops a pod as Kubernetes' endpoint removal would: its proxy first (it
/// tells the controller it is leaving, keeps serving until peers have moved
/// on, then drains), the app once the proxy is gone, so no request that
/// reached the pod finds its app stopped.
fn remove_pod(cfg: &Config, pod: &PodState) {
    let proxy: Vec<u32> = pod.proxy.iter().flat_map(|p| p.pids.clone()).collect();
    for p in &proxy {
        let _ = host::sh("kill", &["-TERM", &p.to_string()]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.iter().any(|p| host::alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut pids: Vec<u32> = pod.containers.iter().flat_map(|c| c.pids.clone()).collect();
    pids.extend(proxy);
    host::stop(&pids);
    host::delete_netns(&pod.netns);
    host::delete_link(&pod.veth);
    let _ = weft(cfg, &["delete", "Pod", &pod.name, "-n", &pod.namespace]);
    let _ = std::fs::remove_dir_all(&pod.dir);
}

/// The Pod object the controller is told about: the template's labels,
/// annotations and containers (with their named ports), and for a pod without
/// a proxy its address.
fn pod_doc(p: &PodState, workloads: &[WorkloadState]) -> Value {
    let template = workloads.iter().find(|w| w.owner() == p.owner && w.namespace == p.namespace).map(|w| w.template.clone());
    let annotations = template.as_ref().and_then(|t| t.pointer("/metadata/annotations").cloned()).unwrap_or_else(|| json!({}));
    let containers: Vec<Value> = template
        .as_ref()
        .and_then(|t| t.pointer("/spec/containers")?.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({ "name": c.get("name").cloned().unwrap_or_default(), "ports": c.get("ports").cloned().unwrap_or_else(|| json!([])) }))
        .collect();
    let mut doc = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": p.name, "namespace": p.namespace, "labels": p.labels, "annotations": annotations },
        "spec": { "serviceAccountName": p.service_account, "containers": containers },
    });
    if !p.meshed {
        doc["status"] = json!({ "podIP": p.ip.to_string() });
    }
    doc
}

/// A Service's named `targetPort`s as numbers, from the container ports of the
/// pods it selects (what Kubernetes' EndpointSlices carry); a name no pod
/// declares is left for the controller to report.
fn resolve_named_ports(doc: &mut Value, s: &crate::manifest::Service, workloads: &[Workload]) {
    let selected: Vec<&Workload> = workloads
        .iter()
        .filter(|w| w.namespace == s.namespace && !s.selector.is_empty())
        .filter(|w| {
            let labels = weft_kube::sidecar::string_map(w.template.pointer("/metadata/labels"));
            s.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    let Some(ports) = doc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else { return };
    for p in ports {
        let Some(name) = p.get("targetPort").and_then(Value::as_str).map(String::from) else { continue };
        let number = selected.iter().find_map(|w| {
            w.template.pointer("/spec/containers")?.as_array()?.iter().flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default()).find(|cp| cp.get("name").and_then(Value::as_str) == Some(name.as_str()))?.get("containerPort").cloned()
        });
        if let Some(n) = number {
            p["targetPort"] = n;
        }
    }
}

/// The name of replica `i` of a workload.
fn pod_name(w: &Workload, hash: &str, ordinal: usize) -> String {
    match w.kind.as_str() {
        "Pod" => w.name.clone(),
        "StatefulSet" => format!("{}-{ordinal}", w.name),
        "ReplicaSet" => format!("{}-{}", w.name, random_suffix()),
        _ => format!("{}-{hash}-{}", w.name, random_suffix()),
    }
}

/// Brings the cluster to what the manifests say; prints what it does.
pub fn up(cfg: &Config, m: &Manifests, opts: &UpOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    host::require_root()?;
    std::fs::create_dir_all(&cfg.dir)?;
    let mut st = State::load(&cfg.state_file())?.unwrap_or_default();
    if st.bridge.is_none() {
        st.bridge = Some(cfg.bridge());
        st.save(&cfg.state_file())?;
    }
    host::create_bridge(&cfg.bridge(), cfg.gateway(), 16)?;
    if let (Some(ext), None) = (&opts.controller, &st.controller) {
        if std::net::TcpStream::connect_timeout(&ext.api, Duration::from_secs(2)).is_err() {
            bail!("no controller answers at {} (start one, or leave out --grpc to let weft dev start its own)", ext.api);
        }
        for f in ["api/admin.token", "ca/root.pem"] {
            if !ext.data_dir.join(f).exists() {
                bail!("{} has no {f}: give the controller's --data-dir (weft dev uses its local admin token and mesh root)", ext.data_dir.display());
            }
        }
        let _ = writeln!(out, "controller: {} (proxies reach it at {})", ext.api, ext.grpc);
        st.controller = Some(ControllerState { pid: 0, api: ext.api, grpc: ext.grpc, monitoring: ext.grpc, external: true, data_dir: ext.data_dir.clone() });
        st.save(&cfg.state_file())?;
    }
    if !st.controller.as_ref().is_some_and(|c| c.external || host::alive(c.pid)) {
        let c = start_controller(cfg)?;
        let _ = writeln!(out, "controller: API {}, proxies' gRPC {} (pid {})", c.api, c.grpc, c.pid);
        st.controller = Some(c);
        st.save(&cfg.state_file())?;
    }
    for (name, marks) in &m.namespaces {
        st.namespaces.insert(name.clone(), crate::state::NamespaceState { labels: marks.labels.clone(), annotations: marks.annotations.clone() });
    }
    // Services: a virtual IP each (the one written, or the next free one), applied with it.
    let mut docs = Vec::new();
    for s in &m.services {
        let key = format!("{}/{}", s.namespace, s.name);
        let ip = match (s.cluster_ip.as_deref().and_then(|i| i.parse::<Ipv4Addr>().ok()), st.services.get(&key)) {
            (Some(ip), _) => ip,
            (None, Some(ip)) => *ip,
            (None, None) => {
                st.next_service_ip += 1;
                let n = st.next_service_ip + 9;
                Ipv4Addr::new(SERVICE_NET[0], SERVICE_NET[1], (n >> 8) as u8, (n & 0xff) as u8)
            }
        };
        st.services.insert(key.clone(), ip);
        st.service_ports.insert(key, s.ports.iter().map(|p| format!("{}/TCP", p.port)).collect::<Vec<_>>().join(","));
        let mut doc = s.doc.clone();
        doc["spec"]["clusterIP"] = ip.to_string().into();
        resolve_named_ports(&mut doc, s, &m.workloads);
        if doc.pointer("/metadata/namespace").is_none() {
            doc["metadata"]["namespace"] = s.namespace.clone().into();
        }
        docs.push(doc);
    }
    docs.extend(m.mesh.iter().cloned());
    apply_docs(cfg, &mut st, &docs)?;
    st.save(&cfg.state_file())?;
    for kind in &m.ignored {
        let _ = writeln!(out, "note: {kind} objects are not run by weft dev; left out");
    }

    if !opts.images.0.is_empty() {
        st.images = opts.images.0.clone();
    }
    // Pods: keep those whose template is unchanged, make the missing ones, remove the rest.
    let mut tokens = BTreeMap::new();
    let mut created = Vec::new();
    for w in &m.workloads {
        let state = WorkloadState { kind: w.kind.clone(), name: w.name.clone(), namespace: w.namespace.clone(), replicas: w.replicas, template: w.template.clone() };
        st.workloads.retain(|x| !(x.owner() == state.owner() && x.namespace == state.namespace));
        st.workloads.push(state);
        roll(cfg, &mut st, w, false, opts, &mut tokens, &mut created, out)?;
    }
    settle(cfg, &mut st, &created, opts.wait, out)
}

/// Makes a workload's missing pods and removes the extra ones; with
/// `replace_all`, every pod is replaced (`weft dev restart`). New pods first,
/// then the old ones go: a Service never loses all its endpoints.
#[allow(clippy::too_many_arguments)]
fn roll(cfg: &Config, st: &mut State, w: &Workload, replace_all: bool, opts: &UpOptions, tokens: &mut BTreeMap<(String, String), String>, created: &mut Vec<(String, String)>, out: &mut dyn Write) -> anyhow::Result<()> {
    let hash = template_hash(&w.template);
    let owner = format!("{}/{}", w.kind.to_lowercase(), w.name);
    let mine: Vec<PodState> = st.pods.iter().filter(|p| p.owner == owner && p.namespace == w.namespace).cloned().collect();
    let (same, stale): (Vec<PodState>, Vec<PodState>) = mine.into_iter().partition(|p| p.template_hash == hash && !replace_all);
    let keep = same.len().min(w.replicas as usize);
    let mut remove: Vec<PodState> = stale;
    remove.extend(same.iter().skip(keep).cloned());
    for i in keep..w.replicas as usize {
        // A StatefulSet's replacement keeps its ordinal name: the old pod goes first.
        if w.kind == "StatefulSet" || w.kind == "Pod" {
            let name = pod_name(w, &hash, i);
            if let Some(old) = remove.iter().position(|p| p.name == name) {
                let p = remove.remove(old);
                let _ = writeln!(out, "  removing {}/{}", p.namespace, p.name);
                remove_pod(cfg, &p);
                st.pods.retain(|q| !(q.name == p.name && q.namespace == p.namespace));
            }
        }
        let name = pod_name(w, &hash, i);
        create_pod(cfg, st, w, name.clone(), &hash, opts, tokens, out)?;
        created.push((w.namespace.clone(), name));
    }
    for p in remove {
        let _ = writeln!(out, "  removing {}/{}", p.namespace, p.name);
        remove_pod(cfg, &p);
        st.pods.retain(|q| !(q.name == p.name && q.namespace == p.namespace));
        st.save(&cfg.state_file())?;
    }
    Ok(())
}

/// After pods changed: hosts files, the controller's view of the pods, then
/// waiting for the new pods to be Ready and every proxy to be in sync.
fn settle(cfg: &Config, st: &mut State, created: &[(String, String)], wait: Duration, out: &mut dyn Write) -> anyhow::Result<()> {
    // Every pod learns the current Services. The controller learns every pod as
    // Kubernetes would tell it (labels, annotations, named ports: what Servers and
    // policies select by); unmeshed pods also by address, so Services reach them.
    let mut pod_docs = Vec::new();
    for p in &st.pods {
        host::write_hosts(&p.netns, &hosts_for(st, p))?;
        pod_docs.push(pod_doc(p, &st.workloads));
    }
    apply_docs(cfg, st, &pod_docs)?;
    st.save(&cfg.state_file())?;

    // Wait for the new pods, reporting any whose program exited.
    let deadline = Instant::now() + wait;
    loop {
        let pending: Vec<&PodState> = st.pods.iter().filter(|p| created.iter().any(|(ns, n)| *ns == p.namespace && *n == p.name)).filter(|p| !pod_status(p).ready()).collect();
        if pending.is_empty() {
            break;
        }
        let crashed: Vec<&&PodState> = pending.iter().filter(|p| pod_status(p).phase == "Error").collect();
        if Instant::now() > deadline || crashed.len() == pending.len() {
            for p in &pending {
                let s = pod_status(p);
                let _ = writeln!(out, "warning: {}/{} is not ready ({}/{} {})", p.namespace, p.name, s.ready, s.total, s.phase);
                for c in p.containers.iter().chain(&p.proxy) {
                    let tail = last_lines(&c.log, 5);
                    if !tail.is_empty() && (s.phase == "Error" || c.name == weft_kube::sidecar::PROXY_CONTAINER) {
                        let _ = writeln!(out, "  {} log:\n{}", c.name, tail);
                    }
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_synced(cfg, st, deadline.max(Instant::now() + Duration::from_secs(5)), out);
    Ok(())
}

/// `weft dev restart deploy/NAME`: every pod of the workload replaced, new ones first.
pub fn restart(cfg: &Config, target: &str, namespace: Option<&str>, out: &mut dyn Write) -> anyhow::Result<()> {
    host::require_root()?;
    let mut st = load(cfg)?;
    let (kind, name) = target.split_once('/').ok_or_else(|| anyhow::anyhow!("{target}: write deploy/NAME, statefulset/NAME or rs/NAME"))?;
    let kind = match kind {
        "deploy" | "deployment" => "deployment",
        "sts" | "statefulset" => "statefulset",
        "rs" | "replicaset" => "replicaset",
        other => bail!("{other}: weft dev restarts deploy/NAME, statefulset/NAME and rs/NAME"),
    };
    let ws = st
        .workloads
        .iter()
        .find(|w| w.owner() == format!("{kind}/{name}") && namespace.is_none_or(|n| n == w.namespace))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no {kind} {name:?} in the dev cluster"))?;
    let w = Workload { kind: ws.kind.clone(), name: ws.name.clone(), namespace: ws.namespace.clone(), replicas: ws.replicas, template: ws.template.clone(), origin: crate::manifest::Origin { file: "the dev cluster".into(), document: 0 } };
    let opts = UpOptions { images: ImageMap(st.images.clone()), wait: Duration::from_secs(60), controller: None };
    let mut created = Vec::new();
    roll(cfg, &mut st, &w, true, &opts, &mut BTreeMap::new(), &mut created, out)?;
    settle(cfg, &mut st, &created, opts.wait, out)
}

/// The meshed pod port-forwards go through, one per namespace.
const FORWARDER: &str = "weft-port-forward";

/// `weft dev port-forward svc/NAME LOCAL:PORT`: listens on 127.0.0.1:LOCAL and
/// carries each connection into a meshed pod of the Service's namespace, whose
/// proxy takes it to the Service as it would any caller's (routing, mTLS,
/// policy). Runs until interrupted; `ready` is told the bound address.
pub fn port_forward(cfg: &Config, target: &str, namespace: Option<&str>, local: u16, port: u16, out: &mut dyn Write) -> anyhow::Result<()> {
    host::require_root()?;
    let mut st = load(cfg)?;
    let name = target.strip_prefix("svc/").or_else(|| target.strip_prefix("service/")).ok_or_else(|| anyhow::anyhow!("{target}: write svc/NAME"))?;
    let (key, vip) = st
        .services
        .iter()
        .find(|(k, _)| k.split_once('/').is_some_and(|(ns, n)| n == name && namespace.is_none_or(|want| want == ns)))
        .map(|(k, ip)| (k.clone(), *ip))
        .ok_or_else(|| anyhow::anyhow!("no Service {name:?} in the dev cluster (weft dev get svc lists them)"))?;
    let ns = key.split_once('/').map(|(n, _)| n.to_string()).unwrap_or_default();
    if !st.pods.iter().any(|p| p.name == FORWARDER && p.namespace == ns) {
        let template = json!({
            "metadata": { "labels": { "app": FORWARDER }, "annotations": { "weft.dev/inject": "true" } },
            "spec": { "containers": [ { "name": "forward", "image": "busybox", "command": ["sleep", "infinity"] } ] },
        });
        let w = Workload { kind: "Pod".into(), name: FORWARDER.into(), namespace: ns.clone(), replicas: 1, template: template.clone(), origin: crate::manifest::Origin { file: "weft dev port-forward".into(), document: 0 } };
        st.workloads.push(WorkloadState { kind: w.kind.clone(), name: w.name.clone(), namespace: ns.clone(), replicas: 1, template });
        let opts = UpOptions { images: ImageMap::default(), wait: Duration::from_secs(30), controller: None };
        let mut created = Vec::new();
        roll(cfg, &mut st, &w, false, &opts, &mut BTreeMap::new(), &mut created, out)?;
        settle(cfg, &mut st, &created, opts.wait, out)?;
    }
    let pod = st.pods.iter().find(|p| p.name == FORWARDER && p.namespace == ns).cloned().context("the port-forward pod did not start")?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", local)).with_context(|| format!("127.0.0.1:{local}"))?;
    let _ = writeln!(out, "Forwarding from {} -> svc/{name}:{port} in {ns} (through pod {FORWARDER}'s sidecar)", listener.local_addr()?);
    let _ = out.flush();
    let exe = std::env::current_exe()?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (exe, netns) = (exe.clone(), pod.netns.clone());
        let dest = format!("{vip}:{port}");
        std::thread::spawn(move || {
            let child = Command::new("ip")
                .args(["netns", "exec", &netns])
                .arg(&exe)
                .args(["dev", "connect", &dest])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn();
            let Ok(mut child) = child else { return };
            let (Some(mut to_child), Some(mut from_child)) = (child.stdin.take(), child.stdout.take()) else { return };
            let Ok(mut reader) = conn.try_clone() else { return };
            let mut writer = conn;
            let up = std::thread::spawn(move || pump(&mut reader, &mut to_child));
            pump(&mut from_child, &mut writer);
            let _ = writer.shutdown(std::net::Shutdown::Both);
            let _ = up.join();
            let _ = child.kill();
            let _ = child.wait();
        });
    }
    Ok(())
}

/// Copies until EOF, writing each read at once. Not `std::io::copy`: between a
/// pipe and a socket it splices, and a splice waits for more than an
/// interactive connection sends.
fn pump(from: &mut impl std::io::Read, to: &mut impl std::io::Write) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

/// The far end of a port-forward, run inside the pod: stdin and stdout to one
/// TCP connection (made from the pod, so its sidecar intercepts it).
pub fn connect(addr: &str) -> anyhow::Result<()> {
    let stream = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    let mut reader = stream.try_clone()?;
    let mut writer = stream;
    let down = std::thread::spawn(move || pump(&mut reader, &mut std::io::stdout().lock()));
    pump(&mut std::io::stdin().lock(), &mut writer);
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
    Ok(())
}

/// Waits until the controller knows every Ready pod as ready (its proxy has
/// reported the app's readiness, so it is an endpoint) and every proxy runs
/// the latest config (SYNCED): the first request after `up` is routed by the
/// manifests to every pod that can take it.
fn wait_synced(cfg: &Config, st: &State, deadline: Instant, out: &mut dyn Write) {
    let meshed: Vec<&PodState> = st.pods.iter().filter(|p| p.meshed).collect();
    let wanted: Vec<String> = meshed.iter().map(|p| format!("{}.{}", p.name, p.namespace)).collect();
    let ready: Vec<String> = meshed.iter().filter(|p| pod_status(p).ready()).map(|p| format!("{}.{}", p.name, p.namespace)).collect();
    loop {
        let status: Vec<Value> = weft(cfg, &["proxy-status", "-o", "json"]).ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
        let synced = |id: &String| status.iter().any(|p| p["proxy_id"] == id.as_str() && p["status"] == "SYNCED");
        let known_ready = |id: &String| status.iter().any(|p| p["proxy_id"] == id.as_str() && p["ready"] == true);
        let behind: Vec<&String> = wanted.iter().filter(|id| !synced(id)).chain(ready.iter().filter(|id| !known_ready(id))).collect();
        if behind.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let _ = writeln!(out, "warning: not in sync with the controller yet: {}", behind.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// One pod's readiness, as `kubectl get pods` shows it.
pub struct PodStatus {
    pub ready: usize,
    pub total: usize,
    /// Running, or Error when a container's program exited.
    pub phase: &'static str,
}

impl PodStatus {
    pub fn ready(&self) -> bool {
        self.ready == self.total && self.phase == "Running"
    }
}

/// Runs a container's readiness probe from the host, as the kubelet would.
fn probe_ok(pod: &PodState, c: &ContainerState) -> bool {
    if !c.pids.iter().all(|p| host::alive(*p)) {
        return false;
    }
    let timeout = Duration::from_millis(500);
    // Named ports were resolved when the pod was made (readiness_of).
    let port = |v: Option<&Value>| -> Option<u16> { v?.as_u64().and_then(|n| u16::try_from(n).ok()) };
    match &c.readiness {
        Some(p) if p.get("httpGet").is_some() => {
            let g = &p["httpGet"];
            let Some(port) = port(g.get("port")) else { return false };
            let path = g.get("path").and_then(Value::as_str).unwrap_or("/");
            host::http_status(SocketAddr::from((pod.ip, port)), path, timeout).is_some_and(|s| (200..400).contains(&s))
        }
        Some(p) if p.get("tcpSocket").is_some() => port(p.pointer("/tcpSocket/port")).is_some_and(|port| std::net::TcpStream::connect_timeout(&SocketAddr::from((pod.ip, port)), timeout).is_ok()),
        // No probe: ready once it listens on the ports it declares.
        _ => {
            let open = host::listening(&pod.netns);
            c.ports.iter().all(|p| open.contains(p))
        }
    }
}

pub fn pod_status(pod: &PodState) -> PodStatus {
    let total = pod.containers.len() + usize::from(pod.proxy.is_some());
    let mut ready = 0;
    let mut phase = "Running";
    for c in pod.containers.iter().chain(&pod.proxy) {
        if !c.pids.iter().all(|p| host::alive(*p)) {
            phase = "Error";
        } else if probe_ok(pod, c) {
            ready += 1;
        }
    }
    PodStatus { ready, total, phase }
}

fn age(since: u64) -> String {
    let s = now_unix().saturating_sub(since);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

fn load(cfg: &Config) -> anyhow::Result<State> {
    State::load(&cfg.state_file())?.ok_or_else(|| anyhow::anyhow!("no dev cluster here (weft dev up -f DIR makes one; state: {})", cfg.state_file().display()))
}

/// `weft dev get pods`.
pub fn pods_table(cfg: &Config, namespace: Option<&str>) -> anyhow::Result<String> {
    let st = load(cfg)?;
    let mut out = String::from("NAMESPACE            NAME                                   READY   STATUS    IP             NODE    AGE\n");
    for p in st.pods.iter().filter(|p| namespace.is_none_or(|n| n == p.namespace)) {
        let s = pod_status(p);
        out.push_str(&format!("{:<20} {:<38} {:<7} {:<9} {:<14} {:<7} {}\n", p.namespace, p.name, format!("{}/{}", s.ready, s.total), s.phase, p.ip, "local", age(p.started_unix)));
    }
    Ok(out)
}

/// `weft dev get svc`.
pub fn services_table(cfg: &Config, namespace: Option<&str>) -> anyhow::Result<String> {
    let st = load(cfg)?;
    let mut out = String::from("NAMESPACE            NAME                     TYPE        CLUSTER-IP     PORT(S)\n");
    for (key, ip) in &st.services {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        if namespace.is_some_and(|n| n != ns) {
            continue;
        }
        out.push_str(&format!("{ns:<20} {name:<24} {:<11} {:<14} {}\n", "ClusterIP", ip, st.service_ports.get(key).cloned().unwrap_or_default()));
    }
    Ok(out)
}

/// A pod by name, or the first pod of `deploy/NAME` (`statefulset/NAME`, ...).
fn find_pod<'a>(st: &'a State, name: &str, namespace: Option<&str>) -> anyhow::Result<&'a PodState> {
    let matches = |p: &&PodState| namespace.is_none_or(|n| n == p.namespace);
    let found = if let Some((kind, owner)) = name.split_once('/') {
        let kind = match kind {
            "deploy" | "deployment" | "deployments" => "deployment",
            "sts" | "statefulset" => "statefulset",
            "rs" | "replicaset" => "replicaset",
            "pod" | "po" => "pod",
            other => bail!("{other}: use deploy/NAME, statefulset/NAME, rs/NAME or a pod's name"),
        };
        if kind == "pod" {
            st.pods.iter().filter(matches).find(|p| p.name == owner)
        } else {
            st.pods.iter().filter(matches).find(|p| p.owner == format!("{kind}/{owner}"))
        }
    } else {
        st.pods.iter().filter(matches).find(|p| p.name == name)
    };
    found.ok_or_else(|| anyhow::anyhow!("no pod {name:?} (weft dev get pods lists them)"))
}

/// `weft dev exec POD -- CMD...`: runs CMD in the pod's network namespace
/// (as root, with the pod's hosts file); its exit code.
pub fn exec(cfg: &Config, pod: &str, namespace: Option<&str>, argv: &[String]) -> anyhow::Result<i32> {
    let st = load(cfg)?;
    let p = find_pod(&st, pod, namespace)?;
    if argv.is_empty() {
        bail!("nothing to run: weft dev exec POD -- COMMAND [ARGS...]");
    }
    let status = Command::new("ip").args(["netns", "exec", &p.netns]).args(argv).env("HOSTNAME", &p.name).status()?;
    Ok(status.code().unwrap_or(1))
}

/// `weft dev logs POD [-c CONTAINER|proxy]`: the path of the log to show.
pub fn log_path(cfg: &Config, pod: &str, namespace: Option<&str>, container: Option<&str>) -> anyhow::Result<PathBuf> {
    let st = load(cfg)?;
    let p = find_pod(&st, pod, namespace)?;
    let c = match container {
        None => p.containers.first(),
        Some("proxy") | Some("weft-proxy") => p.proxy.as_ref(),
        Some(name) => p.containers.iter().find(|c| c.name == name),
    };
    c.map(|c| c.log.clone()).ok_or_else(|| anyhow::anyhow!("pod {} has no container {:?} (its containers: {}{})", p.name, container.unwrap_or("?"), p.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "), if p.proxy.is_some() { ", proxy" } else { "" }))
}

/// `weft dev down`: every process, namespace, link and file the cluster made; nothing else.
pub fn down(cfg: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    host::require_root()?;
    let Some(st) = State::load(&cfg.state_file())? else {
        let _ = writeln!(out, "no dev cluster here ({})", cfg.state_file().display());
        return Ok(());
    };
    // Everything stops at once: the whole cluster goes, nobody needs to move traffic.
    let pids: Vec<u32> = st.pods.iter().flat_map(|p| p.containers.iter().chain(&p.proxy).flat_map(|c| c.pids.clone())).collect();
    host::stop(&pids);
    for p in &st.pods {
        host::delete_netns(&p.netns);
        host::delete_link(&p.veth);
    }
    match &st.controller {
        // Someone else's controller keeps running; only what this cluster applied goes.
        Some(c) if c.external => {
            for o in st.applied.iter().rev() {
                let ns = if o.namespace.is_empty() { "default" } else { o.namespace.as_str() };
                let _ = weft(cfg, &["delete", &o.kind, &o.name, "-n", ns]);
            }
        }
        Some(c) => host::stop(&[c.pid]),
        None => {}
    }
    if let Some(b) = &st.bridge {
        host::delete_link(b);
    }
    for f in ["pods", "controller"] {
        let _ = std::fs::remove_dir_all(cfg.dir.join(f));
    }
    for f in ["controller.log", "apply.yaml", "cluster.json"] {
        let _ = std::fs::remove_file(cfg.dir.join(f));
    }
    let _ = std::fs::remove_dir(&cfg.dir);
    let controller = if st.controller.as_ref().is_some_and(|c| c.external) { "what it applied to the controller" } else { "the controller" };
    let _ = writeln!(out, "removed {} pods, {} services, {controller} and bridge {}", st.pods.len(), st.services.len(), st.bridge.as_deref().unwrap_or("-"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hashes_are_stable_and_short() {
        let a = json!({ "metadata": { "labels": { "app": "a" } } });
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_eq!(template_hash(&a).len(), 10);
        assert_ne!(template_hash(&a), template_hash(&json!({ "metadata": { "labels": { "app": "b" } } })));
    }

    #[test]
    fn readiness_probes_name_their_port_by_number() {
        let c = json!({ "name": "web", "ports": [ { "name": "metrics", "containerPort": 9090 }, { "name": "http", "containerPort": 8080 } ], "readinessProbe": { "httpGet": { "path": "/ready", "port": "http" } } });
        assert_eq!(readiness_of(&c), Some(json!({ "httpGet": { "path": "/ready", "port": 8080 } })));
        let unknown = json!({ "name": "web", "readinessProbe": { "tcpSocket": { "port": "nope" } } });
        assert_eq!(readiness_of(&unknown), Some(json!({ "tcpSocket": { "port": "nope" } })), "left as written, so it fails as the kubelet's would");
    }

    #[test]
    fn pods_resolve_services_by_kubernetes_names() {
        let mut st = State::default();
        st.services.insert("shop/cart".into(), Ipv4Addr::new(10, 96, 0, 10));
        st.services.insert("other/db".into(), Ipv4Addr::new(10, 96, 0, 11));
        let pod = PodState {
            name: "cart-1".into(), namespace: "shop".into(), owner: "pod/cart-1".into(), template_hash: String::new(), netns: String::new(), veth: String::new(),
            ip: Ipv4Addr::new(10, 244, 0, 2), meshed: true, service_account: "default".into(), labels: BTreeMap::new(), dir: PathBuf::new(), containers: vec![], proxy: None, started_unix: 0,
        };
        let hosts = hosts_for(&st, &pod);
        assert!(hosts.contains("10.96.0.10 cart.shop.svc.cluster.local cart.shop.svc cart.shop cart\n"), "{hosts}");
        assert!(hosts.contains("10.96.0.11 db.other.svc.cluster.local db.other.svc db.other\n"), "{hosts}");
    }
}
