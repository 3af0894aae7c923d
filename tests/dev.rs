//! `weft dev` end to end: the EdTech manifests in examples/edtech run as
//! real network-namespace pods with sidecars (real proxies, iptables, mTLS,
//! a real controller), the split, scaling and policies checked with real
//! requests, and `weft dev down` leaving the host exactly as it was. Each test
//! runs its own cluster (its own state directory, interface tag, subnet and
//! API port) so they can run beside each other and beside a user's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use weft_testkit::workspace_bin;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One dev cluster's environment.
struct Cluster {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn new(tag: &str, subnet: u8) -> Cluster {
        let dir = std::env::temp_dir().join(format!("weft-dev-test-{tag}-{}", std::process::id()));
        let api = format!("127.0.0.1:{}", weft_testkit::free_port().expect("port"));
        let env = vec![
            ("WEFT_DEV_DIR".to_string(), dir.display().to_string()),
            ("WEFT_DEV_TAG".to_string(), tag.to_string()),
            ("WEFT_DEV_SUBNET".to_string(), format!("10.{subnet}.0.0/16")),
            ("WEFT_DEV_API".to_string(), api.clone()),
            ("WEFT_CONTROLLER".to_string(), api),
        ];
        Cluster { dir, env }
    }

    fn weft(&self, args: &[&str]) -> Output {
        Command::new(workspace_bin("weft")).args(args).envs(self.env.iter().map(|(k, v)| (k, v))).output().expect("weft runs")
    }

    fn weft_ok(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(out.status.success(), "weft {}: {}{}", args.join(" "), text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// Pods by name from `weft dev get pods`: (READY, STATUS).
    fn pods(&self) -> Vec<(String, String, String)> {
        self.weft_ok(&["dev", "get", "pods"]).lines().skip(1).filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.to_string(), f.get(2)?.to_string(), f.get(3)?.to_string()))
        }).collect()
    }

    /// Requests answered per pod (and `status NNN` for failures), from the portal pod.
    fn count(&self, url: &str, n: usize) -> serde_json::Map<String, serde_json::Value> {
        let echo = workspace_bin("weft-echo");
        let out = self.weft_ok(&["dev", "exec", "deploy/student-portal", "-n", "edtech-production", "--", echo.to_str().expect("path"), "count", url, &n.to_string(), "--concurrency", "4"]);
        serde_json::from_str::<serde_json::Value>(&out).ok().and_then(|v| v.as_object().cloned()).unwrap_or_else(|| panic!("count: {out}"))
    }

    fn curl(&self, pod: &str, url: &str) -> (u16, String) {
        let out = self.weft_ok(&["dev", "exec", pod, "-n", "edtech-production", "--", "curl", "-sS", "-m", "5", "-w", "\n%{http_code}", url]);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.weft(&["dev", "down"]);
    }
}

/// What `weft dev down` must leave as it found: namespaces, links, the host's
/// iptables rules, and no process of the cluster's.
#[derive(Debug, PartialEq)]
struct Host {
    netns: String,
    links: BTreeSet<String>,
    iptables: String,
}

fn host() -> Host {
    let run = |p: &str, a: &[&str]| text(&Command::new(p).args(a).output().expect(p).stdout);
    let links = run("ip", &["-o", "link"]).lines().filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string())).collect();
    // The counters and the generation comments change on their own.
    let iptables = run("iptables-save", &[]).lines().filter(|l| !l.starts_with('#')).map(|l| l.split(" [").next().unwrap_or(l).to_string()).collect::<Vec<_>>().join("\n");
    Host { netns: run("ip", &["netns", "list"]), links, iptables }
}

/// Checks the host after `down` against `before`: namespaces and iptables
/// exactly as they were, no link added. A link may only have gone if it is
/// another test's pod's (weft-testkit's `wv…` veths): the kernel removes those
/// late, in the background, after their namespace was deleted; weft dev only
/// ever deletes the links its state names.
fn assert_host_as_before(before: &Host) {
    let after = settled_host();
    assert_eq!(after.netns, before.netns, "weft dev down left network namespaces changed");
    assert_eq!(after.iptables, before.iptables, "weft dev down left the host's iptables changed");
    let added: Vec<&String> = after.links.difference(&before.links).collect();
    assert!(added.is_empty(), "weft dev down left links behind: {added:?}");
    let gone: Vec<&String> = before.links.difference(&after.links).filter(|l| !l.starts_with("wv")).collect();
    assert!(gone.is_empty(), "links that were there before are gone: {gone:?}");
}

/// The host once it stopped changing: the kernel removes the veths of
/// network namespaces other tests deleted in the background, seconds later,
/// and a snapshot taken meanwhile would count that as this test's doing.
fn settled_host() -> Host {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = host();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = host();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn cluster_pids(state: &Path) -> Vec<u32> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).expect("state")).expect("json");
    let mut pids: Vec<u32> = v["pods"].as_array().into_iter().flatten().flat_map(|p| {
        let mut c: Vec<serde_json::Value> = p["containers"].as_array().cloned().unwrap_or_default();
        c.extend(p.get("proxy").filter(|x| !x.is_null()).cloned());
        c
    }).flat_map(|c| c["pids"].as_array().cloned().unwrap_or_default()).filter_map(|p| p.as_u64().map(|p| p as u32)).collect();
    pids.extend(v["controller"]["pid"].as_u64().map(|p| p as u32));
    pids
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')))
}

/// The tests compare the whole host before and after: one at a time.
static HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn share(counts: &serde_json::Map<String, serde_json::Value>, prefix: &str) -> u64 {
    counts.iter().filter(|(k, _)| k.starts_with(prefix)).filter_map(|(_, v)| v.as_u64()).sum()
}

#[test]
fn the_edtech_platform_comes_up_splits_scales_and_leaves_nothing_behind() {
    let _one = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = settled_host();
    let c = Cluster::new("e1", 246);
    let manifests = root().join("examples/edtech/manifests");
    let portal = root().join("examples/edtech/portal.yaml");
    let start = Instant::now();
    let up = c.weft_ok(&["dev", "up", "-f", manifests.to_str().expect("path"), "-f", portal.to_str().expect("path")]);
    let took = start.elapsed();
    // Images cannot be pulled: the output says what each became.
    assert!(up.contains("registry.example.com/edtech/exam-service:3.1.0 -> weft-echo on 8080"), "{up}");
    assert!(up.contains("curlimages/curl:8.10.1 -> sleep infinity"), "{up}");
    let pods = c.pods();
    assert_eq!(pods.len(), 9, "{pods:?}");
    assert!(pods.iter().all(|(_, ready, status)| ready == "2/2" && status == "Running"), "{pods:?}");
    assert!(took < Duration::from_secs(15), "up took {took:?}");
    let services = c.weft_ok(&["dev", "get", "svc"]);
    assert_eq!(services.lines().filter(|l| l.contains("ClusterIP")).count(), 5, "{services}");

    // The TrafficSplit: 10% +-3 to v2 over 2,000 requests, none failed.
    let counts = c.count("http://exam-service.edtech-production/", 2000);
    let (v2, all) = (share(&counts, "exam-service-v2-"), share(&counts, "exam-service-"));
    assert_eq!(all, 2000, "every request answered: {counts:?}");
    assert!((140..=260).contains(&v2), "v2 got {v2} of 2000: {counts:?}");
    // mTLS on the edge, and the caller's identity the app sees.
    let (code, body) = c.curl("deploy/student-portal", "http://user-service/users/7");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("URI=spiffe://cluster.local/ns/edtech-production/sa/student-portal"), "{body}");
    // The ServiceProfile's route timeout.
    let (code, _) = c.curl("deploy/student-portal", "http://user-service/delay/3000");
    assert_eq!(code, 504);
    // The Server/ServerAuthorization: the portal is refused, exam-service is not.
    assert_eq!(c.curl("deploy/student-portal", "http://content-service/").0, 403);
    assert_eq!(c.curl("deploy/exam-service", "http://content-service/").0, 200);
    // `weft` commands reach the dev controller unchanged.
    let status = c.weft_ok(&["proxy-status"]);
    assert_eq!(status.lines().filter(|l| l.contains(" SYNCED ")).count(), 9, "{status}");

    // Scale exam-service 3 -> 1 under load: no request fails, traffic moves.
    let scaled = c.dir.with_extension("scaled");
    std::fs::create_dir_all(&scaled).expect("dir");
    for f in std::fs::read_dir(&manifests).expect("manifests").flatten() {
        let text = std::fs::read_to_string(f.path()).expect("read");
        let text = if f.file_name() == "exam-service.yaml" { text.replacen("replicas: 3", "replicas: 1", 1) } else { text };
        std::fs::write(scaled.join(f.file_name()), text).expect("write");
    }
    let load = {
        let env = c.env.clone();
        let echo = workspace_bin("weft-echo");
        std::thread::spawn(move || {
            Command::new(workspace_bin("weft")).args(["dev", "exec", "deploy/student-portal", "-n", "edtech-production", "--"]).arg(echo).args(["count", "http://exam-service/", "4000", "--concurrency", "4"]).envs(env).output().expect("load")
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let applied = c.weft_ok(&["dev", "apply", "-f", scaled.to_str().expect("path")]);
    assert_eq!(applied.matches("removing edtech-production/exam-service-").count(), 2, "{applied}");
    let load = load.join().expect("load thread");
    let during: serde_json::Value = serde_json::from_slice(&load.stdout).unwrap_or_else(|_| panic!("{}", text(&load.stderr)));
    assert!(during.as_object().is_some_and(|m| m.keys().all(|k| !k.starts_with("status"))), "requests failed while scaling: {during}");
    let v1_pods: Vec<String> = c.pods().into_iter().map(|p| p.0).filter(|n| n.starts_with("exam-service-") && !n.starts_with("exam-service-v2-")).collect();
    assert_eq!(v1_pods.len(), 1, "{v1_pods:?}");
    let after = c.count("http://exam-service/", 200);
    assert!(after.keys().filter(|k| k.starts_with("exam-service-") && !k.starts_with("exam-service-v2-")).all(|k| *k == v1_pods[0]), "traffic still reaches removed pods: {after:?}");
    let _ = std::fs::remove_dir_all(&scaled);

    // A pod whose app is not ready takes no traffic: user-service's first pod
    // starts failing its readiness probe, and every request goes to the other.
    let users: Vec<String> = c.pods().into_iter().map(|p| p.0).filter(|n| n.starts_with("user-service-")).collect();
    assert_eq!(users.len(), 2);
    c.weft_ok(&["dev", "exec", &users[0], "-n", "edtech-production", "--", "curl", "-sS", "http://127.0.0.1:8080/set-status/503"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = c.count("http://user-service/users/1", 50);
        if counts.get(&users[1]).and_then(|v| v.as_u64()) == Some(50) {
            break;
        }
        assert!(Instant::now() < deadline, "the unready pod still gets traffic: {counts:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.pods().iter().any(|p| p.0 == users[0] && p.1 == "1/2"), "{:?}", c.pods());
    c.weft_ok(&["dev", "exec", &users[0], "-n", "edtech-production", "--", "curl", "-sS", "http://127.0.0.1:8080/set-status/0"]);

    // restart: new pods for user-service, the old ones gone.
    let restarted = c.weft_ok(&["dev", "restart", "deploy/user-service", "-n", "edtech-production"]);
    let now: Vec<(String, String, String)> = c.pods().into_iter().filter(|p| p.0.starts_with("user-service-")).collect();
    assert_eq!(now.len(), 2, "{restarted}");
    assert!(now.iter().all(|p| !users.contains(&p.0) && p.1 == "2/2"), "{now:?}\n{restarted}");

    // port-forward: the host reaches a Service through a meshed pod's sidecar.
    let local = weft_testkit::free_port().expect("port");
    let mut forward = Command::new(workspace_bin("weft"))
        .args(["dev", "port-forward", "svc/user-service", &format!("{local}:80"), "-n", "edtech-production"])
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("port-forward");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(forward.stdout.take().expect("stdout")));
    let mut seen = Vec::new();
    loop {
        let line = lines.next().and_then(Result::ok).unwrap_or_else(|| panic!("port-forward ended: {seen:?}"));
        if line.starts_with("Forwarding from") {
            break;
        }
        seen.push(line);
    }
    let got = Command::new("curl").args(["-sS", "-m", "5", &format!("http://127.0.0.1:{local}/users/3")]).output().expect("curl");
    let body = text(&got.stdout);
    assert!(body.contains("\"pod\":\"user-service-") && body.contains("URI=spiffe://cluster.local/ns/edtech-production/sa/default"), "{body}{}", text(&got.stderr));
    let _ = forward.kill();
    let _ = forward.wait();

    // Down: every process gone, and namespaces, links and iptables as before.
    let pids = cluster_pids(&c.dir.join("cluster.json"));
    assert_eq!(pids.len(), 8 * 2 + 1, "a proxy and an app per pod (7 and the port-forward pod), and the controller: {pids:?}");
    let down = c.weft_ok(&["dev", "down"]);
    assert!(down.contains("removed 8 pods"), "{down}");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert_host_as_before(&before);
    assert!(!c.dir.exists(), "state left in {}", c.dir.display());
}

#[test]
fn bad_manifests_start_nothing_and_a_crashing_program_is_reported() {
    let _one = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = settled_host();
    let c = Cluster::new("e2", 247);
    let dir = c.dir.with_extension("input");
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: many\n  template: {spec: {containers: [{name: web, image: nginx}]}}\n").expect("write");
    let out = c.weft(&["dev", "up", "-f", bad.to_str().expect("path")]);
    assert!(!out.status.success());
    assert_eq!(text(&out.stderr).trim(), format!("error: {}#1: spec.replicas: must be a number 0-64, not \"many\"", bad.display()));
    assert!(!c.dir.exists(), "a bad manifest started something");
    assert_host_as_before(&before);

    // One pod's program exits: it is reported with its log, the others keep running.
    let mixed = dir.join("mixed.yaml");
    std::fs::write(
        &mixed,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: crasher, labels: {app: crasher}, annotations: {weft.dev/run: \"echo cannot open the database; exit 3\"}}\nspec: {containers: [{name: app, image: registry.example.com/db-client:1}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec: {containers: [{name: web, image: nginx:1.27, ports: [{containerPort: 8080}]}]}\n",
    )
    .expect("write");
    let out = c.weft(&["dev", "up", "-f", mixed.to_str().expect("path"), "--wait", "5s"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("warning: default/crasher is not ready (0/1 Error)") && stdout.contains("cannot open the database"), "{stdout}");
    let pods = c.pods();
    assert!(pods.contains(&("crasher".into(), "0/1".into(), "Error".into())), "{pods:?}");
    assert!(pods.contains(&("web".into(), "1/1".into(), "Running".into())), "the namespace is not meshed, so web has no sidecar: {pods:?}");
    // The nginx image became the local nginx, serving a page naming the pod.
    let page = c.weft_ok(&["dev", "exec", "web", "--", "curl", "-sS", "http://127.0.0.1:8080/"]);
    assert!(page.contains("pod web"), "{page}");
    c.weft_ok(&["dev", "down"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_host_as_before(&before);
}

#[test]
fn without_root_weft_dev_says_what_it_needs_in_one_line() {
    let c = Cluster::new("e3", 248);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(workspace_bin("weft"))
        .args(["dev", "up", "-f"])
        .arg(root().join("examples/edtech/manifests"))
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("weft dev needs root: it makes network namespaces, veth pairs and iptables rules"), "{stderr}");
}

#[test]
fn a_cluster_can_use_a_controller_that_already_runs_and_leaves_it_running_without_its_objects() {
    let _one = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = settled_host();
    let mut c = Cluster::new("e4", 250);
    // Someone's controller, listening for proxies on every address.
    let data = c.dir.with_extension("controller");
    let port = || weft_testkit::free_port().expect("port");
    let (api, grpc, monitoring) = (format!("127.0.0.1:{}", port()), port(), format!("127.0.0.1:{}", port()));
    let mut controller = Command::new(workspace_bin("weft"))
        .arg("--data-dir")
        .arg(&data)
        .args(["controller", "--listen", &api, "--grpc-listen", &format!("0.0.0.0:{grpc}"), "--monitoring-listen", &monitoring])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("weft controller");
    weft_testkit::wait_for_tcp(api.parse().expect("addr"), Duration::from_secs(10)).expect("the controller listens");
    c.env.retain(|(k, _)| k != "WEFT_CONTROLLER");
    c.env.push(("WEFT_CONTROLLER".into(), api.clone()));
    let data_dir = data.to_str().expect("path").to_string();
    let manifests = root().join("examples/edtech/manifests");
    let portal = root().join("examples/edtech/portal.yaml");
    let up = c.weft_ok(&["--data-dir", &data_dir, "dev", "up", "--grpc", &format!("10.250.0.1:{grpc}"), "-f", manifests.to_str().expect("path"), "-f", portal.to_str().expect("path")]);
    assert!(up.contains(&format!("controller: {api} (proxies reach it at 10.250.0.1:{grpc})")), "{up}");
    let pods = c.pods();
    assert!(pods.len() == 9 && pods.iter().all(|(_, ready, _)| ready == "2/2"), "{pods:?}");
    let (code, body) = c.curl("deploy/student-portal", "http://user-service/users/1");
    assert!(code == 200 && body.contains("URI=spiffe://cluster.local/ns/edtech-production/sa/student-portal"), "{code} {body}");
    let stored = c.weft_ok(&["--data-dir", &data_dir, "get", "svc", "-n", "edtech-production"]);
    assert!(stored.contains("exam-service-v2"), "{stored}");

    let down = c.weft_ok(&["--data-dir", &data_dir, "dev", "down"]);
    assert!(down.contains("what it applied to the controller"), "{down}");
    assert!(controller.try_wait().expect("status").is_none(), "down stopped a controller it did not start");
    let stored = c.weft_ok(&["--data-dir", &data_dir, "get", "all", "-n", "edtech-production"]);
    assert!(!stored.contains("exam-service") && !stored.contains("student-portal"), "the cluster's objects were left in the controller: {stored}");
    assert_host_as_before(&before);
    let _ = controller.kill();
    let _ = controller.wait();
    let _ = std::fs::remove_dir_all(&data);
}
