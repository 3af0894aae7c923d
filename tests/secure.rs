//! Secure by default, end to end: a proxy cannot claim an identity, labels,
//! an address or a proxy id it did not prove; an app never sees an identity
//! header a caller forged, however the request is shaped; the admin port is
//! closed to other machines; the controller's API needs credentials and
//! speaks TLS to other machines; and a controller outage longer than a
//! certificate's life locks no proxy out. Real pods, real mTLS, raw sockets.

use std::time::{Duration, Instant};
use weft_testkit::controller::endpoint_count;
use weft_testkit::{workspace_bin, ControllerProcess, Net, Pod, PROXY_UID};

fn data_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("weft-e2e-secure-{tag}-{}", std::process::id()))
}

const REVIEWS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec: {clusterIP: 10.96.0.10, selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 8080}]}\n";

/// `web` serves HTTP on 8080 behind Service port 80 named `http` (declared HTTP); STRICT mTLS.
const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.96.0.20, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}\n---\n\
    apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: default}\nspec: {mtls: {mode: STRICT}}\n";

/// A meshed pod with a join token for service account `name`.
fn meshed(net: &Net, ctl: &ControllerProcess, name: &str, labels: &str, extra: &[&str]) -> Pod {
    let pod = net.pod(name).unwrap();
    let token = ctl.token("default", name).unwrap();
    let mut args = vec!["--service-account", name, "--token", token.as_str()];
    args.extend_from_slice(extra);
    pod.start_meshed_proxy(ctl.grpc, "default", labels, &args).unwrap();
    pod
}

/// Waits until `what` holds, or fails with `context`.
fn wait(what: &str, within: Duration, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} not within {within:?}:\n{}", context());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A proxy started by hand (no iptables): for Hellos that claim something.
fn bare_proxy(pod: &Pod, ctl: &ControllerProcess, args: &[&str]) {
    let controller = ctl.grpc.to_string();
    let mut all = vec!["run", "--controller", controller.as_str(), "--namespace", "default", "--log", "info"];
    all.extend_from_slice(args);
    pod.spawn_as(Some(PROXY_UID), workspace_bin("weft-proxy"), &all).unwrap();
}

#[test]
fn a_token_less_proxy_claiming_reviews_labels_is_refused_and_receives_no_traffic() {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start(&net, &data_dir("admission")).unwrap();
    ctl.apply(REVIEWS).unwrap();
    let reviews = meshed(&net, &ctl, "reviews", "app=reviews", &[]);
    reviews.start_echo(8080, "v1").unwrap();
    // The impostor runs the same app and says it is reviews, without a token.
    let impostor = net.pod("impostor").unwrap();
    impostor.start_echo(8080, "v1").unwrap();
    impostor.start_meshed_proxy(ctl.grpc, "default", "app=reviews", &[]).unwrap();
    let client = meshed(&net, &ctl, "client", "app=client", &[]);
    client.set_hosts(&[("reviews", "10.96.0.10")]).unwrap();
    wait("the impostor's Hello refused", Duration::from_secs(10), || ctl.logs().lines().any(|l| l.contains("Hello refused") && l.contains("admits only proxies with a workload certificate")), || ctl.logs());
    let cfg = ctl.wait_for_config("client", "reviews with its one real endpoint", Duration::from_secs(10), |c| {
        endpoint_count(c, "reviews") == 1 && c.to_string().contains("spiffe://cluster.local/ns/default/sa/reviews")
    });
    assert!(!cfg.to_string().contains(&impostor.ip.to_string()), "the impostor is an endpoint: {cfg}");
    assert!(!ctl.proxy_status().contains("impostor"), "{}", ctl.proxy_status());
    let counts = client.count("http://reviews:9080/", 50, None, 1);
    assert_eq!(counts.get("reviews"), Some(&50), "{counts:?}");
    // And every request crossed mTLS: the app saw the client's proven identity.
    let (code, body) = client.curl("http://reviews:9080/", &[]).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("URI=spiffe://cluster.local/ns/default/sa/client"), "{body}");
}

#[test]
fn a_proxy_cannot_claim_another_pods_address_or_take_over_another_proxys_id() {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start(&net, &data_dir("claims")).unwrap();
    ctl.apply(REVIEWS).unwrap();
    let reviews = meshed(&net, &ctl, "reviews", "app=reviews", &[]);
    reviews.start_echo(8080, "v1").unwrap();
    wait("reviews SYNCED", Duration::from_secs(10), || ctl.is_synced("reviews"), || ctl.proxy_status());

    // A proxy with a valid certificate of its own, announcing reviews' address.
    let liar = net.pod("liar").unwrap();
    let token = ctl.token("default", "liar").unwrap();
    let address = reviews.ip.to_string();
    bare_proxy(&liar, &ctl, &["--proxy-id", "liar", "--service-account", "liar", "--token", &token, "--labels", "app=reviews", "--address", &address]);
    let claim = format!("claims address {}, but the proxy connects from {}", reviews.ip, liar.ip);
    wait("the liar's Hello refused", Duration::from_secs(10), || ctl.logs().contains(&claim), || format!("{}\n{}", ctl.logs(), liar.logs()));

    // Another identity taking over the proxy id `reviews`.
    let twin = net.pod("twin").unwrap();
    let token = ctl.token("default", "twin").unwrap();
    let twin_address = twin.ip.to_string();
    bare_proxy(&twin, &ctl, &["--proxy-id", "reviews", "--service-account", "twin", "--token", &token, "--labels", "app=reviews", "--address", &twin_address]);
    let taken = "proxy id \"reviews\" is connected as spiffe://cluster.local/ns/default/sa/reviews; spiffe://cluster.local/ns/default/sa/twin may not take it over";
    wait("the twin's Hello refused", Duration::from_secs(10), || ctl.logs().contains(taken), || format!("{}\n{}", ctl.logs(), twin.logs()));
    // The original keeps its registration, and is the only endpoint.
    let proxies = ctl.proxies();
    let row = proxies.iter().find(|p| p["proxy_id"] == "reviews").unwrap();
    assert_eq!(row["address"], reviews.ip.to_string(), "{proxies:?}");
    assert!(ctl.is_synced("reviews"), "{}", ctl.proxy_status());
    let client = meshed(&net, &ctl, "client", "app=client", &[]);
    let cfg = ctl.wait_for_config("client", "reviews", Duration::from_secs(10), |c| endpoint_count(c, "reviews") >= 1);
    assert_eq!(endpoint_count(&cfg, "reviews"), 1, "{cfg}");
    drop(client);
}

/// `web` (STRICT, HTTP port declared), a meshed `client`, and a raw pod
/// without a proxy holding a copy of the client's certificate.
struct Stage {
    _net: Net,
    ctl: ControllerProcess,
    web: Pod,
    client: Pod,
    raw: Pod,
}

fn stage(tag: &str) -> Stage {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start(&net, &data_dir(tag)).unwrap();
    ctl.apply(WEB).unwrap();
    let web = meshed(&net, &ctl, "web", "app=web", &[]);
    web.start_echo(8080, "v1").unwrap();
    let client = meshed(&net, &ctl, "client", "app=client", &[]);
    client.set_hosts(&[("web", "10.96.0.20")]).unwrap();
    ctl.wait_for_config("client", "web's identity", Duration::from_secs(10), |c| c.to_string().contains("spiffe://cluster.local/ns/default/sa/web"));
    let raw = net.pod("raw").unwrap();
    wait("the client's kept certificate", Duration::from_secs(10), || client.state_dir().join("key.pem").exists(), || client.logs());
    Stage { _net: net, ctl, web, client, raw }
}

/// The x-forwarded-client-cert the app saw, from weft-echo's JSON answer.
fn seen_xfcc(response: &str) -> String {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or(response);
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("not an echo answer ({e}): {response}"));
    assert!(v["headers"].get("x-weft-orig-proto").is_none(), "an x-weft header reached the app: {response}");
    v["headers"]["x-forwarded-client-cert"].as_str().unwrap_or("-").to_string()
}

#[test]
fn an_app_behind_strict_never_sees_a_forged_client_certificate_header() {
    let s = stage("xfcc");
    let proven = "By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/client";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/raw_http.py");
    // Raw requests from the meshed client's app, shaped to slip past detection.
    for mode in ["get", "propfind", "blank-line", "slow"] {
        let out = s.client.exec_ok("python3", &[script, "10.96.0.20", "80", mode]).unwrap();
        let response = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(response.starts_with("HTTP/1.1 200"), "{mode}: {response}\n{}", s.client.logs());
        assert_eq!(seen_xfcc(&response), proven, "{mode}: {response}");
    }
    // Mesh TLS straight to web's pod with a real workload certificate, naming
    // the carried protocol opaque TCP (weft/tcp): still parsed, header replaced.
    let creds = s.client.state_dir();
    let request = "GET /who HTTP/1.1\\r\\nHost: web\\r\\nx-forwarded-client-cert: By=x;URI=spiffe://cluster.local/ns/bank/sa/admin\\r\\nConnection: close\\r\\n\\r\\n";
    let command = format!(
        "printf '{request}' | openssl s_client -quiet -connect {}:8080 -alpn weft/tcp -cert {d}/cert-chain.pem -key {d}/key.pem -CAfile {d}/root-cert.pem 2>/dev/null",
        s.web.ip,
        d = creds.display()
    );
    let out = s.raw.exec_ok("sh", &["-c", &command]).unwrap();
    let response = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(response.starts_with("HTTP/1.1 200"), "weft/tcp: {response}\n{}", s.web.logs());
    assert_eq!(seen_xfcc(&response), proven, "weft/tcp: {response}");
    // Without a certificate, STRICT refuses the raw pod outright.
    assert!(s.raw.curl(&format!("http://{}:8080/", s.web.ip), &["--max-time", "2"]).is_err());
    drop(s.ctl);
}

#[test]
fn from_another_pod_the_stats_port_answers_only_metrics_and_the_admin_port_is_closed() {
    let s = stage("admin");
    let stats = |path: &str| s.raw.curl(&format!("http://{}:15090{path}", s.web.ip), &[]);
    let (code, body) = stats("/stats/prometheus").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("weft_requests_total") || body.contains("weft_downstream_connections"), "{body}");
    for path in ["/logging?level=off", "/config_dump", "/clusters", "/certs", "/ready"] {
        assert_eq!(stats(path).unwrap().0, 404, "{path} on the stats port");
    }
    let (code, _) = s.raw.curl(&format!("http://{}:15090/logging?level=off", s.web.ip), &["-X", "POST"]).unwrap();
    assert_eq!(code, 404, "no log level changes from the network");
    let admin = s.raw.curl(&format!("http://{}:15000/config_dump", s.web.ip), &["--max-time", "2"]);
    assert!(admin.is_err(), "the admin port answered another pod: {admin:?}");
    // Inside the pod it is there, and changes only by POST.
    assert!(s.web.admin("/config_dump").unwrap().starts_with("HTTP/1.1 200"));
    assert!(s.web.admin("/logging?level=debug").unwrap().starts_with("HTTP/1.1 405"));
    drop(s.client);
}

/// (serial, not_after) of the proxy's certificate, from its admin port.
fn certificate(pod: &Pod) -> Option<(String, i64)> {
    let text = pod.admin("/certs").ok()?;
    let v: serde_json::Value = serde_json::from_str(text.split("\r\n\r\n").nth(1)?.trim()).ok()?;
    Some((v["serial"].as_str()?.to_string(), v["not_after_unix"].as_i64()?))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn a_controller_outage_three_times_a_certificates_life_locks_no_proxy_out() {
    let net = Net::new().expect("network namespaces");
    let mut ctl = ControllerProcess::start_with(&net, &data_dir("outage"), &["--cert-ttl", "10s"]).unwrap();
    ctl.apply(WEB).unwrap();
    // Tokens that expire long before the outage ends: only the certificates' keys can prove the proxies.
    let token = |sa: &str| {
        let out = ctl.weft(&["token", "create", "--namespace", "default", "--service-account", sa, "--ttl", "5s"]).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let web = net.pod("web").unwrap();
    web.start_echo(8080, "v1").unwrap();
    let web_token = token("web");
    web.start_meshed_proxy(ctl.grpc, "default", "app=web", &["--service-account", "web", "--token", &web_token]).unwrap();
    let client = net.pod("client").unwrap();
    client.set_hosts(&[("web", "10.96.0.20")]).unwrap();
    let client_token = token("client");
    let client_args = ["--service-account", "client", "--token", client_token.as_str()];
    let client_pid = client.start_meshed_proxy(ctl.grpc, "default", "app=client", &client_args).unwrap();
    ctl.wait_for_config("client", "web's identity", Duration::from_secs(10), |c| c.to_string().contains("spiffe://cluster.local/ns/default/sa/web"));
    wait("both SYNCED", Duration::from_secs(10), || ctl.synced_count() == 2, || ctl.proxy_status());
    assert_eq!(client.curl("http://web/", &[]).unwrap().0, 200);

    ctl.stop();
    let outage = Instant::now();
    // Restarted while the controller is down: it serves with its kept certificate and config.
    client.signal(client_pid, "KILL").unwrap();
    let _ = client.wait(client_pid, Duration::from_secs(5));
    client.start_meshed_proxy(ctl.grpc, "default", "app=client", &client_args).unwrap();
    let (code, body) = client.curl("http://web/", &[]).unwrap();
    assert_eq!(code, 200, "the restarted proxy did not serve with its kept state: {body}\n{}", client.logs());
    assert!(body.contains("URI=spiffe://cluster.local/ns/default/sa/client"), "not over mTLS: {body}");
    let before = (certificate(&web).unwrap().0, certificate(&client).unwrap().0);

    // Three certificate lifetimes without a controller: every certificate has expired.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
    for p in [&web, &client] {
        let (_, not_after) = certificate(p).unwrap();
        assert!(not_after < unix_now(), "{}'s certificate should have expired by now", p.name);
    }
    ctl.restart().unwrap();
    let back = Instant::now();
    wait(
        "fresh certificates and live config streams",
        Duration::from_secs(5),
        || {
            let fresh = |p: &Pod, old: &str| certificate(p).is_some_and(|(serial, not_after)| serial != old && not_after > unix_now());
            fresh(&web, &before.0) && fresh(&client, &before.1) && ctl.synced_count() == 2
        },
        || format!("{}\nweb:\n{}\nclient:\n{}\ncontroller:\n{}", ctl.proxy_status(), web.logs(), client.logs(), ctl.logs()),
    );
    eprintln!("certificates renewed and streams SYNCED {:?} after the controller came back", back.elapsed());
    assert_eq!(client.curl("http://web/", &[]).unwrap().0, 200);
}

#[test]
fn the_api_speaks_tls_to_other_machines_and_weft_check_names_an_insecure_controller() {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start_reachable(&net, &data_dir("api"), &["--insecure-dev"]).unwrap();
    let ops = net.pod("ops").unwrap();
    let remote = ctl.api_reachable.expect("reachable");
    // Plaintext from another machine: refused before any credential crosses the wire.
    let (code, body) = ops.curl(&format!("http://{remote}/api/v1/resources"), &[]).unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("over TLS only"), "{body}");
    // TLS with the mesh root and a read token works; without the token, 401.
    let out = ctl.weft(&["api-token", "create", "--name", "ops", "--role", "read"]).unwrap();
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let root = ctl.data_dir.join("ca/root.pem");
    let weft = workspace_bin("weft");
    let url = format!("https://{remote}");
    let nowhere = ops.state_dir();
    let base = ["--controller", url.as_str(), "--ca-file", root.to_str().unwrap(), "--data-dir", nowhere.to_str().unwrap()];
    let mut with_token = base.to_vec();
    with_token.extend(["--token", token.as_str(), "proxy-status"]);
    let out = ops.exec(&weft, &with_token).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut without = base.to_vec();
    without.push("proxy-status");
    let out = ops.exec(&weft, &without).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the call (401)"), "{}", String::from_utf8_lossy(&out.stderr));
    // A client certificate from the mesh CA stands in for a token, with its role.
    let certs = ctl.data_dir.with_extension("operator");
    let out = ctl.weft(&["api-cert", "create", "--role", "read", "--out", certs.to_str().unwrap()]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (chain, key, roots) = (certs.join("cert-chain.pem"), certs.join("key.pem"), certs.join("root-cert.pem"));
    let with_cert = ["--controller", url.as_str(), "--ca-file", roots.to_str().unwrap(), "--data-dir", nowhere.to_str().unwrap(), "--client-cert", chain.to_str().unwrap(), "--client-key", key.to_str().unwrap()];
    let mut get = with_cert.to_vec();
    get.extend(["get", "all", "-A"]);
    let out = ops.exec(&weft, &get).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut create = with_cert.to_vec();
    create.extend(["api-token", "create", "--name", "x"]);
    let out = ops.exec(&weft, &create).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("spiffe://cluster.local/ns/weft-system/sa/weft-reader has the read role; this needs admin"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&certs);
    // `weft check` says the controller takes proxies at their word.
    let out = ctl.weft(&["check"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("× [2] the controller runs with --insecure-dev"), "{text}");
}
