//! weft on Kubernetes, tested with what this machine has: no kubelet, no
//! container runtime and no API server, so nothing here starts a cluster.
//! What is real: `weft install` and `weft inject` output checked against
//! Kubernetes 1.30-1.34's own OpenAPI schemas (kubernetes-validate, PyPI);
//! the generated CRD schemas checked by jsonschema against the YAML users
//! write; the webhook served over TLS by a real controller and its JSONPatch
//! applied by jsonpatch (PyPI); and the sidecar's kubelet-facing health port
//! run by a real proxy in a network namespace under STRICT mTLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use weft_testkit::{workspace_bin, ControllerProcess, Net};

const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn golden_dir() -> PathBuf {
    root().join("tests/kubernetes/inject")
}

fn weft(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(workspace_bin("weft"));
    c.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("weft");
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("weft runs")
}

fn yaml_to_json(text: &str) -> Result<serde_json::Value, serde_norway::Error> {
    serde_norway::from_str(text)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Validates a manifest file with kubernetes-validate against every version, strictly.
fn kubernetes_validate(path: &Path) {
    for v in KUBERNETES_VERSIONS {
        let out = Command::new("python3").args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", v]).arg(path).output().expect("python3");
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("No module named"), "kubernetes-validate is not installed (pip install kubernetes-validate==1.34.1; .ci/run does): {stderr}");
        assert!(out.status.success(), "{} is not valid Kubernetes {v}:\n{}{}", path.display(), text(&out.stdout), text(&out.stderr));
    }
}

fn golden_cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir()).expect("golden dir").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    cases.sort();
    cases
}

/// Compares with the file kept beside the inputs (WEFT_BLESS=1 rewrites it).
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join("expected").join(name);
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("bless");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is missing; run with WEFT_BLESS=1 and review it", path.display()));
    assert_eq!(actual, expected, "{name} differs from {}", path.display());
}

#[test]
fn inject_golden_files_and_reinjection_is_a_no_op() {
    let cases = golden_cases();
    assert!(cases.len() >= 9, "{cases:?}");
    for case in cases {
        let name = case.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let out = weft(&["inject", "-f", case.to_str().expect("path")], None);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr).replace(&golden_dir().display().to_string(), "DIR"));
        golden(&format!("{name}.out"), &stdout);
        golden(&format!("{name}.stderr"), &stderr);
        // Injecting the result again changes nothing.
        let again = weft(&["inject", "-f", "-"], Some(&stdout));
        assert!(again.status.success(), "{name} again: {}", text(&again.stderr));
        assert_eq!(text(&again.stdout), stdout, "{name}: re-injection changed the output");
        let reinjected = text(&again.stderr).lines().any(|l| l.ends_with(" injected") && !l.contains(" skipped: "));
        assert!(!reinjected, "{name}: re-injection injected again: {}", text(&again.stderr));
    }
}

#[test]
fn inject_keeps_other_documents_byte_for_byte_and_reports_what_it_could_not_read() {
    let input = std::fs::read_to_string(golden_dir().join("deployment.yaml")).expect("input");
    let out = weft(&["inject", "-f", "-"], Some(&input));
    let stdout = text(&out.stdout);
    // The Service (first document) and the ConfigMap (last) are the input's own bytes.
    let first_doc = input.split("\n---\n").next().expect("service");
    let last_doc = input.rsplit("\n---\n").next().expect("configmap");
    assert!(stdout.starts_with(first_doc), "{stdout}");
    assert!(stdout.ends_with(last_doc), "{stdout}");
    assert!(stdout.contains("# quoted on purpose") && stdout.contains("# the stable name"));

    let bad = std::fs::read_to_string(golden_dir().join("bad-input.yaml")).expect("input");
    let out = weft(&["inject", "-f", "-"], Some(&bad));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), bad, "nothing weft could not inject is lost or changed");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: stdin: deployment/bad-annotation left unchanged: annotation sidecar.istio.io/proxyCPU"), "{stderr}");
    assert!(stderr.contains("warning: stdin: document 3 left unchanged: not YAML weft can read"), "{stderr}");
}

#[test]
fn injected_manifests_are_valid_kubernetes_1_30_to_1_34() {
    let dir = std::env::temp_dir().join(format!("weft-k8s-inject-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for case in golden_cases() {
        let name = case.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        if name == "bad-input.yaml" {
            continue; // not valid on purpose
        }
        let out = weft(&["inject", "-f", case.to_str().expect("path")], None);
        let path = dir.join(name.replace(".json", ".yaml"));
        std::fs::write(&path, &out.stdout).expect("write");
        kubernetes_validate(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn install_manifests_are_valid_kubernetes_1_30_to_1_34() {
    let dir = std::env::temp_dir().join(format!("weft-k8s-install-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let variants: &[(&str, &[&str])] = &[
        ("crds", &["install", "--crds"]),
        ("default", &["install"]),
        ("ha", &["install", "--ha", "--set", "proxy.nativeSidecar=false", "--set", "webhook.failurePolicy=Fail"]),
    ];
    for (name, args) in variants {
        let out = weft(args, None);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, &out.stdout).expect("write");
        kubernetes_validate(&path);
    }
    let ha = std::fs::read_to_string(dir.join("ha.yaml")).expect("ha");
    assert!(ha.contains("kind: PodDisruptionBudget") && ha.contains("replicas: 2") && ha.contains("failurePolicy: Fail"), "{ha}");
    assert!(ha.contains("proxy.nativeSidecar=false"), "the webhook injects what install was told");
    let crds = std::fs::read_to_string(dir.join("crds.yaml")).expect("crds");
    assert_eq!(crds.matches("kind: CustomResourceDefinition").count(), 21);
    // Kinds another mesh installed can be left out.
    let skipped = text(&weft(&["install", "--crds", "--skip-crds", "istio", "--skip-crds", "gateway-api"], None).stdout);
    assert!(!skipped.contains("networking.istio.io") && !skipped.contains("gateway.networking.k8s.io") && skipped.contains("split.smi-spec.io"), "{skipped}");
    let bad = weft(&["install", "--set", "proxy.imag=x"], None);
    assert!(!bad.status.success() && text(&bad.stderr).contains("valid keys: controller.image"), "{}", text(&bad.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every document of the example files and the valid corpus, as JSON.
fn user_documents() -> Vec<(String, serde_json::Value)> {
    let mut files = Vec::new();
    for dir in ["examples", "tests/corpus/valid"] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for (i, part) in text.split("\n---").enumerate() {
            if let Ok(v) = yaml_to_json(part) {
                if v.get("kind").is_some() {
                    docs.push((format!("{}#{}", f.strip_prefix(root()).unwrap_or(&f).display(), i + 1), v));
                }
            }
        }
    }
    docs
}

#[test]
fn crd_schemas_accept_the_yaml_users_write_and_reject_wrong_types() {
    let crds: Vec<serde_json::Value> = text(&weft(&["install", "--crds"], None).stdout)
        .split("\n---")
        .filter_map(|d| yaml_to_json(d).ok())
        .filter(|v| v.get("kind").is_some())
        .collect();
    let schema_for = |api_version: &str, kind: &str| -> Option<serde_json::Value> {
        let (group, version) = api_version.split_once('/')?;
        let crd = crds.iter().find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)?;
        let v = crd["spec"]["versions"].as_array()?.iter().find(|v| v["name"] == version)?;
        Some(v["schema"]["openAPIV3Schema"].clone())
    };
    let mut cases = Vec::new();
    for (name, doc) in user_documents() {
        let (Some(av), Some(kind)) = (doc["apiVersion"].as_str(), doc["kind"].as_str()) else { continue };
        if let Some(schema) = schema_for(av, kind) {
            let mut object = doc.clone();
            // The API server checks the body; metadata is its own.
            if let Some(m) = object.as_object_mut() {
                m.remove("metadata");
                m.remove("apiVersion");
                m.remove("kind");
            }
            cases.push(serde_json::json!({ "name": name, "schema": schema, "object": object, "expect": true }));
        }
    }
    let accepted = cases.len();
    assert!(accepted >= 40, "only {accepted} mesh documents found in examples/ and the corpus");
    let wrong: &[(&str, &str, serde_json::Value)] = &[
        ("networking.istio.io/v1", "VirtualService", serde_json::json!({ "spec": { "hosts": 5 } })),
        ("networking.istio.io/v1beta1", "DestinationRule", serde_json::json!({ "spec": { "host": "r", "trafficPolicy": { "loadBalancer": { "simple": "FASTEST" } } } })),
        ("security.istio.io/v1", "PeerAuthentication", serde_json::json!({ "spec": { "mtls": { "mode": "STRICT", "strictness": "very" } } })),
        ("split.smi-spec.io/v1alpha2", "TrafficSplit", serde_json::json!({ "spec": { "service": "s", "backends": [ { "service": "a", "weight": [1] } ] } })),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", serde_json::json!({ "spec": { "rules": [ { "backendRefs": [ { "name": "b", "port": "eighty" } ] } ] } })),
    ];
    for (av, kind, object) in wrong {
        let schema = schema_for(av, kind).unwrap_or_else(|| panic!("no CRD for {av} {kind}"));
        cases.push(serde_json::json!({ "name": format!("wrong {kind}"), "schema": schema, "object": object, "expect": false }));
    }
    let bundle = std::env::temp_dir().join(format!("weft-crd-cases-{}.json", std::process::id()));
    std::fs::write(&bundle, serde_json::to_vec(&cases).expect("json")).expect("write");
    let out = Command::new("python3").arg(root().join("tests/support/kube_check.py")).arg("schemas").arg(&bundle).output().expect("python3");
    let _ = std::fs::remove_file(&bundle);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("results");
    let mut problems = Vec::new();
    for (case, result) in cases.iter().zip(&results) {
        if case["expect"] != result["valid"] {
            problems.push(format!("{}: expected valid={}, got {}", case["name"], case["expect"], result["errors"]));
        }
    }
    assert!(problems.is_empty(), "{} of {} cases wrong:\n{}", problems.len(), cases.len(), problems.join("\n"));
}

fn json_of(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

/// An AdmissionReview for `pod` in `namespace`, as the API server sends it.
fn admission_review(pod: &serde_json::Value, namespace: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
            "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts", "system:authenticated"] },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" },
        },
    })
}

/// A pod as the ReplicaSet controller creates it from reviews-v1's template.
fn replicaset_pod(annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "reviews-v1-7f9c8d6b5-",
            "namespace": "bookinfo",
            "labels": { "app": "reviews", "version": "v1", "pod-template-hash": "7f9c8d6b5" },
            "annotations": annotations,
            "ownerReferences": [ { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "reviews-v1-7f9c8d6b5", "uid": "0d0b2c1e-1b7e-4f5e-8d7b-6a3d2e1f0c9b", "controller": true, "blockOwnerDeletion": true } ],
        },
        "spec": {
            "serviceAccountName": "bookinfo-reviews",
            "containers": [ {
                "name": "reviews",
                "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.1",
                "ports": [ { "name": "http", "containerPort": 9080, "protocol": "TCP" } ],
                "readinessProbe": { "httpGet": { "path": "/health", "port": "http", "scheme": "HTTP" }, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3 },
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            } ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [ { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 } ],
        },
    })
}

/// POSTs a review to the webhook over TLS, verifying its certificate for the Service name.
fn post_review(port: u16, roots: &Path, review: &serde_json::Value, out: &Path) -> u16 {
    let body = out.with_extension("request.json");
    std::fs::write(&body, serde_json::to_vec(review).expect("json")).expect("write");
    let name = "weft-controller.weft-system.svc";
    let res = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(roots)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1"), "-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("https://{name}:{port}/inject"))
        .output()
        .expect("curl");
    assert!(res.status.success(), "curl: {}", text(&res.stderr));
    text(&res.stdout).trim().parse().expect("status")
}

fn apply_patch(pod: &Path, review: &Path) -> serde_json::Value {
    let out = Command::new("python3").arg(root().join("tests/support/kube_check.py")).arg("patch").arg(pod).arg(review).output().expect("python3");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("patched pod")
}

#[test]
fn webhook_over_tls_patches_pods_exactly_as_weft_inject_does() {
    let net = Net::new().expect("network namespaces");
    let port = weft_testkit::free_port().expect("port");
    let dir = std::env::temp_dir().join(format!("weft-e2e-webhook-{}", std::process::id()));
    let listen = format!("127.0.0.1:{port}");
    let ctl = ControllerProcess::start_with(&net, &dir, &["--webhook-listen", &listen, "--inject-set", "proxy.image=registry.example.com/weft-proxy:test"]).expect("controller");
    ctl.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n",
    )
    .expect("namespaces");
    let roots = ctl.data_dir.join("ca/root.pem");
    let work = std::env::temp_dir().join(format!("weft-webhook-cases-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("dir");

    // A pod in a namespace labelled istio-injection=enabled.
    let pod = replicaset_pod(serde_json::json!({}));
    let pod_path = work.join("pod.json");
    std::fs::write(&pod_path, serde_json::to_vec(&pod).expect("json")).expect("write");
    let review_path = work.join("review.json");
    assert_eq!(post_review(port, &roots, &admission_review(&pod, "bookinfo", "7b1c"), &review_path), 200, "{}", ctl.logs());
    let review = json_of(&review_path);
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["uid"], "7b1c");
    let from_webhook = apply_patch(&pod_path, &review_path);
    // weft inject, given the same pod, makes the same pod.
    let inject = weft(&["inject", "-f", "-", "--set", "proxy.image=registry.example.com/weft-proxy:test"], Some(&serde_json::to_string_pretty(&pod).expect("json")));
    let from_cli: serde_json::Value = serde_json::from_slice(&inject.stdout).expect("weft inject output");
    assert_eq!(from_webhook, from_cli, "the webhook's pod and weft inject's differ");
    let inits = from_webhook["spec"]["initContainers"].as_array().expect("init containers");
    assert_eq!(inits[1]["name"], "weft-proxy");
    let args = inits[1]["args"].to_string();
    assert!(args.contains("\"--workload\",\"reviews-v1\""), "the Deployment's name, from the pod's generateName: {args}");
    let pod_file = work.join("patched.json");
    std::fs::write(&pod_file, serde_json::to_vec(&from_webhook).expect("json")).expect("write");

    // Re-admitting the injected pod changes nothing.
    assert_eq!(post_review(port, &roots, &admission_review(&from_webhook, "bookinfo", "a2"), &review_path), 200);
    assert!(json_of(&review_path)["response"].get("patch").is_none(), "{}", json_of(&review_path));
    // An unlabelled namespace: no sidecar, unless the pod template carries Linkerd's annotation.
    assert_eq!(post_review(port, &roots, &admission_review(&pod, "plain", "a3"), &review_path), 200);
    assert!(json_of(&review_path)["response"].get("patch").is_none(), "{}", json_of(&review_path));
    let marked = replicaset_pod(serde_json::json!({ "linkerd.io/inject": "enabled" }));
    std::fs::write(&pod_path, serde_json::to_vec(&marked).expect("json")).expect("write");
    assert_eq!(post_review(port, &roots, &admission_review(&marked, "plain", "a4"), &review_path), 200);
    assert!(apply_patch(&pod_path, &review_path)["spec"]["initContainers"][1]["name"] == "weft-proxy", "{}", json_of(&review_path));
    // Opted out in an enabled namespace.
    let out = replicaset_pod(serde_json::json!({ "sidecar.istio.io/inject": "false" }));
    assert_eq!(post_review(port, &roots, &admission_review(&out, "bookinfo", "a5"), &review_path), 200);
    assert!(json_of(&review_path)["response"].get("patch").is_none());
    // A pod the webhook cannot patch is admitted unchanged, logged and counted.
    let bad = replicaset_pod(serde_json::json!({ "sidecar.istio.io/proxyCPU": "a lot" }));
    assert_eq!(post_review(port, &roots, &admission_review(&bad, "bookinfo", "a6"), &review_path), 200);
    let answer = json_of(&review_path);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    // Not an AdmissionReview: refused outright.
    assert_eq!(post_review(port, &roots, &serde_json::json!({ "kind": "Pod" }), &review_path), 400);
    let metrics = weft_testkit::http_get(ctl.monitoring, "/metrics").expect("metrics");
    for line in ["sidecar_injection_requests_total 7", "sidecar_injection_success_total 2", "sidecar_injection_skip_total 3", "sidecar_injection_failure_total 2"] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(ctl.logs().contains("admitted a pod without a sidecar: annotation sidecar.istio.io/proxyCPU"), "{}", ctl.logs());
    // The webhook's pod is valid Kubernetes.
    let yaml = work.join("patched.yaml");
    let pod_yaml = Command::new(workspace_bin("weft")).args(["inject", "-f"]).arg(&pod_file).output().expect("weft");
    std::fs::write(&yaml, &pod_yaml.stdout).expect("write");
    kubernetes_validate(&yaml);
    let _ = std::fs::remove_dir_all(&work);
}

/// The flags injection gives the proxy, run for real: the ServiceAccount
/// token and mesh root come from files (here a join token, standing in for
/// the projected token a kubelet would write), labels from a downward-API
/// file, and the kubelet's probes reach the app through the health port
/// while the app's own port refuses plaintext under STRICT.
#[test]
fn injected_proxy_flags_serve_kubelet_probes_under_strict_mtls() {
    let net = Net::new().expect("network namespaces");
    let dir = std::env::temp_dir().join(format!("weft-e2e-probes-{}", std::process::id()));
    let ctl = ControllerProcess::start_with(&net, &dir, &[]).expect("controller");
    ctl.apply("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: default}\nspec: {mtls: {mode: STRICT}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web, version: v1}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n").expect("STRICT");
    let web = net.pod("web").expect("pod");
    let app = web.start_echo(8080, "v1").expect("echo");
    let proxy_bin = workspace_bin("weft-proxy");
    web.exec_ok(&proxy_bin, &["init", "--proxy-uid", "1337", "--exclude-inbound-ports", "15020"]).expect("init");
    let token = web.write_file("token", &ctl.token("default", "web").expect("token")).expect("token file");
    let roots = web.write_file("root-cert.pem", &std::fs::read_to_string(ctl.data_dir.join("ca/root.pem")).expect("root")).expect("root file");
    let labels = web.write_file("labels", "app=\"web\"\nversion=\"v1\"\n").expect("labels file");
    let probes = r#"WEFT_APP_PROBES={"/app-health/web/readyz":{"httpGet":{"path":"/ready","port":8080}},"/app-health/web/livez":{"tcpSocket":{"port":8080}}}"#;
    let controller = ctl.grpc.to_string();
    let address = web.ip.to_string();
    let state = web.state_dir();
    let args = [
        probes, proxy_bin.to_str().expect("path"), "run", "--controller", &controller, "--proxy-id", "web.default", "--workload", "web", "--namespace", "default",
        "--service-account", "web", "--address", &address, "--ports", "8080", "--labels-file", labels.to_str().expect("path"), "--token-file", token.to_str().expect("path"),
        "--ca-roots", roots.to_str().expect("path"), "--state-dir", state.to_str().expect("path"), "--health-listen", "0.0.0.0:15020",
    ];
    web.spawn_as(Some(1337), "env", &args).expect("proxy");
    web.wait_ready(Duration::from_secs(10)).expect("ready");
    let kubelet = net.pod("kubelet").expect("pod");
    let probe = |path: &str| kubelet.curl(&format!("http://{}:15020{path}", web.ip), &[]).map(|(c, _)| c).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe("/healthz/ready") != 200 {
        assert!(Instant::now() < deadline, "health port not ready: {}", web.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(probe("/app-health/web/readyz"), 200, "{}", web.logs());
    assert_eq!(probe("/app-health/web/livez"), 200);
    assert_eq!(probe("/app-health/other/readyz"), 404, "only the probes injection wrote are run");
    // The app's own port, from the same plaintext caller, is refused: STRICT holds.
    assert!(kubelet.curl(&format!("http://{}:8080/", web.ip), &[]).is_err(), "plaintext reached the app under STRICT");
    // The proxy proved its identity with the token file and knows its labels from the file.
    let status = ctl.weft(&["proxy-status", "-o", "json"]).expect("status");
    let status = text(&status.stdout);
    assert!(status.contains("web.default"), "{status}");
    let certs = web.admin("/certs").expect("certs");
    assert!(certs.contains("spiffe://cluster.local/ns/default/sa/web"), "{certs}");
    // Labels from the file make the pod an endpoint of the Service selecting app=web,version=v1.
    ctl.wait_for_config("web.default", "web's own endpoint", Duration::from_secs(10), |cfg| weft_testkit::controller::endpoint_count(cfg, "web.default") == 1);
    // The app stops: its probes fail, the proxy's own readiness does not.
    web.signal(app, "KILL").expect("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe("/app-health/web/livez") != 503 {
        assert!(Instant::now() < deadline, "liveness still passing with the app gone");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(probe("/app-health/web/readyz"), 503);
    assert_eq!(probe("/healthz/ready"), 200);
}

/// ServiceAccount identity on Kubernetes, against a stand-in for the API
/// server's TokenReview (tests/support/tokenreview_standin.py: no API server
/// runs here). A proxy given a projected-token file gets its ServiceAccount's
/// SPIFFE identity; a token for another audience, and one of the control
/// plane's own ServiceAccounts, get nothing.
#[test]
fn a_service_account_token_proves_a_pods_identity_through_token_review_standin_api_server() {
    let net = Net::new().expect("network namespaces");
    let work = std::env::temp_dir().join(format!("weft-tokenreview-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("dir");
    // A cluster CA and the stand-in's serving certificate from it, for the address the controller dials.
    let (ca_cert, ca_key, cert, key, csr, ext) = (work.join("ca.crt"), work.join("ca.key"), work.join("api.crt"), work.join("api.key"), work.join("api.csr"), work.join("api.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").expect("ext");
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"].map(os);
    openssl(&[&os("req"), &os("-x509"), &ec[0], &ec[1], &ec[2], &ec[3], &ec[4], &os("-days"), &os("1"), &os("-subj"), &os("/CN=kubernetes-ca"), &os("-keyout"), ca_key.as_os_str(), &os("-out"), ca_cert.as_os_str()]);
    openssl(&[&os("req"), &ec[0], &ec[1], &ec[2], &ec[3], &ec[4], &os("-subj"), &os("/CN=kube-apiserver"), &os("-keyout"), key.as_os_str(), &os("-out"), csr.as_os_str()]);
    openssl(&[&os("x509"), &os("-req"), &os("-in"), csr.as_os_str(), &os("-CA"), ca_cert.as_os_str(), &os("-CAkey"), ca_key.as_os_str(), &os("-CAcreateserial"), &os("-days"), &os("1"), &os("-extfile"), ext.as_os_str(), &os("-out"), cert.as_os_str()]);
    // Shaped like the JWTs the kubelet projects; only the stand-in reads them.
    let jwt = |who: &str| format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOi{who}In0.c2lnbmF0dXJl");
    let (web, other_audience, control_plane) = (jwt("web"), jwt("default-audience"), jwt("controller"));
    let tokens = serde_json::json!({
        web.clone(): { "username": "system:serviceaccount:default:web", "audiences": ["weft"] },
        other_audience.clone(): { "username": "system:serviceaccount:default:web", "audiences": ["https://kubernetes.default.svc.cluster.local"] },
        control_plane.clone(): { "username": "system:serviceaccount:weft-system:weft-controller", "audiences": ["weft"] },
    });
    let tokens_file = work.join("tokens.json");
    std::fs::write(&tokens_file, tokens.to_string()).expect("write");
    let bearer = "controller-sa-token-7c1d";
    let bearer_file = work.join("controller.token");
    std::fs::write(&bearer_file, bearer).expect("write");
    let port = weft_testkit::free_port().expect("port");
    let reviews = work.join("reviews.log");
    let mut standin = Command::new("python3")
        .arg(root().join("tests/support/tokenreview_standin.py"))
        .args([port.to_string().as_str(), cert.to_str().expect("path"), key.to_str().expect("path"), bearer, tokens_file.to_str().expect("path")])
        .stdout(std::fs::File::create(&reviews).expect("log"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    weft_testkit::wait_for_tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10)).expect("the stand-in listens");

    let dir = std::env::temp_dir().join(format!("weft-e2e-tokenreview-{}", std::process::id()));
    let api = format!("https://127.0.0.1:{port}");
    let ctl = ControllerProcess::start_with(&net, &dir, &["--kube-api", &api, "--kube-token-file", bearer_file.to_str().expect("path"), "--kube-ca-file", ca_cert.to_str().expect("path")]).expect("controller");
    let roots = std::fs::read_to_string(ctl.data_dir.join("ca/root.pem")).expect("root");
    let proxy_bin = workspace_bin("weft-proxy");
    let start = |pod: &weft_testkit::Pod, token: &str, ns: &str, sa: &str| {
        let token_file = pod.write_file("token", token).expect("token");
        let roots_file = pod.write_file("root-cert.pem", &roots).expect("roots");
        let controller = ctl.grpc.to_string();
        let proxy_id = format!("{}.{ns}", pod.name);
        let args = [
            "run", "--controller", &controller, "--proxy-id", &proxy_id, "--workload", &pod.name, "--namespace", ns, "--service-account", sa,
            "--token-file", token_file.to_str().expect("path"), "--ca-roots", roots_file.to_str().expect("path"), "--address", &pod.ip.to_string(),
        ];
        pod.spawn_as(Some(1337), &proxy_bin, &args).expect("proxy");
        pod.wait_ready(Duration::from_secs(10)).expect("ready");
    };
    let good = net.pod("web").expect("pod");
    start(&good, &web, "default", "web");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let certs = good.admin("/certs").unwrap_or_default();
        if certs.contains("spiffe://cluster.local/ns/default/sa/web") {
            break;
        }
        assert!(Instant::now() < deadline, "no certificate from the ServiceAccount token: {certs}\n{}\n{}", good.logs(), ctl.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&reviews).expect("reviews");
    let first = log.lines().find(|l| l.contains("tokenreviews")).unwrap_or_else(|| panic!("no review reached the stand-in: {log}"));
    assert!(first.contains("\"authorized\": true") && first.contains("\"audiences\": [\"weft\"]"), "the controller asked with its own token and weft's audience: {first}");

    for (name, token, ns, sa, why) in [
        ("wrong-audience", &other_audience, "default", "web", "token audiences"),
        ("posing", &control_plane, "weft-system", "weft-controller", "the control plane's own"),
    ] {
        let pod = net.pod(name).expect("pod");
        start(&pod, token, ns, sa);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ctl.logs().contains(why) {
            assert!(Instant::now() < deadline, "{name}: not refused with {why:?}:\n{}", ctl.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(pod.admin("/certs").unwrap_or_default().starts_with("HTTP/1.1 503"), "{name} got a certificate");
    }
    let metrics = weft_testkit::http_get(ctl.monitoring, "/metrics").expect("metrics");
    assert!(metrics.contains("citadel_server_success_cert_issuance_count 1\n"), "{metrics}");
    let _ = standin.kill();
    let _ = standin.wait();
    let _ = std::fs::remove_dir_all(&work);
}
