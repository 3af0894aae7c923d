//! Mesh mTLS end to end: meshed pods get certificates from the controller,
//! their proxies speak TLS 1.3 to each other with SPIFFE identities, and
//! PeerAuthentication decides whether a plaintext client gets in. What is
//! on the wire is checked with tcpdump on the server pod's veth.

use std::time::{Duration, Instant};
use weft_testkit::{contains_bytes, Capture, ControllerProcess, Net, Pod};

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: banner, port: 7000}]
"#;

fn peer_authentication(mode: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: default}}\nspec: {{mtls: {{mode: {mode}}}}}\n")
}

fn data_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("weft-e2e-mtls-{tag}-{}", std::process::id()))
}

fn json(out: std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Waits until `check` holds for the JSON of `weft ARGS`.
fn wait_for(ctl: &ControllerProcess, args: &[&str], what: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = json(ctl.weft(args).unwrap());
        let synced = ctl.proxy_status().lines().skip(1).all(|l| l.contains(" SYNCED "));
        if check(&v) && synced {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: still {v}\n{}", ctl.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A controller, a meshed `web` (echo on 8080, banner on 7000) and a meshed
/// `client`, each with a certificate for its own service account, and an
/// `outsider` pod without a proxy.
struct Mesh {
    _net: Net,
    ctl: ControllerProcess,
    web: Pod,
    client: Pod,
    outsider: Pod,
}

fn mesh(tag: &str, controller_args: &[&str], mode: &str) -> Mesh {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start_with(&net, &data_dir(tag), controller_args).unwrap();
    ctl.apply(&format!("{WEB}---\n{}", peer_authentication(mode))).unwrap();
    let web = net.pod("web").unwrap();
    web.start_echo(8080, "v1").unwrap();
    web.spawn(weft_testkit::workspace_bin("weft-echo"), &["banner", "--listen", "0.0.0.0:7000"]).unwrap();
    web.wait_listening(8080, Duration::from_secs(5)).unwrap();
    web.wait_listening(7000, Duration::from_secs(5)).unwrap();
    let token = ctl.token("default", "web").unwrap();
    web.start_meshed_proxy(ctl.grpc, "default", "app=web", &["--service-account", "web", "--token", &token]).unwrap();
    let client = net.pod("client").unwrap();
    client.set_hosts(&[("web", "10.96.0.20")]).unwrap();
    let token = ctl.token("default", "client").unwrap();
    client.start_meshed_proxy(ctl.grpc, "default", "app=client", &["--service-account", "client", "--token", &token]).unwrap();
    let outsider = net.pod("outsider").unwrap();
    // The client's cluster for web must carry web's identity: then it speaks mTLS.
    wait_for(&ctl, &["proxy-config", "client", "clusters", "-o", "json"], "web's endpoint identity at the client", |v| {
        v.to_string().contains("spiffe://cluster.local/ns/default/sa/web")
    });
    Mesh { _net: net, ctl, web, client, outsider }
}

const SECRET_HEADER: &str = "weft-plaintext-canary-7f3a";
const SECRET_BODY: &str = "body-canary-9c1e-never-on-the-wire";

/// A request from the meshed client carrying the canaries (the echo's answer
/// repeats the headers, so the response carries one too).
fn secret_request(client: &Pod) -> (u16, String) {
    client.curl("http://web/hello", &["-H", &format!("x-secret: {SECRET_HEADER}"), "-d", SECRET_BODY]).unwrap()
}

#[test]
fn strict_mtls_encrypts_the_wire_and_refuses_plaintext_clients() {
    let m = mesh("strict", &[], "STRICT");

    let capture = Capture::start(&m.web.veth_host, "tcp port 8080", m.web.ip).unwrap();
    let (code, body) = secret_request(&m.client);
    let pcap = capture.stop().unwrap();
    assert_eq!(code, 200, "{body}\n{}\n{}", m.client.logs(), m.web.logs());
    assert!(body.contains(SECRET_HEADER), "the app got the request in clear: {body}");
    // The app learns who called it.
    assert!(body.contains("By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/client"), "{body}");
    // The app's HTTP/1.1 stays HTTP/1.1 between the proxies by default (Istio's DO_NOT_UPGRADE).
    assert!(contains_bytes(&pcap, b"weft/http1"), "the capture shows the mesh TLS handshake (ALPN is in clear); {} bytes", pcap.len());
    assert!(!contains_bytes(&pcap, SECRET_HEADER.as_bytes()), "request header in plaintext on the wire");
    assert!(!contains_bytes(&pcap, SECRET_BODY.as_bytes()), "request body in plaintext on the wire");
    assert!(!contains_bytes(&pcap, b"x-echo-pod"), "response in plaintext on the wire");

    // h2UpgradePolicy: UPGRADE carries it as HTTP/2 streams instead, and the app still gets HTTP/1.1.
    m.ctl
        .apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: default}\nspec:\n  host: web.default.svc.cluster.local\n  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}\n")
        .unwrap();
    wait_for(&m.ctl, &["proxy-config", "client", "clusters", "-o", "json"], "h2_upgrade at the client", |v| v.to_string().contains("\"h2_upgrade\":true"));
    let capture = Capture::start(&m.web.veth_host, "tcp port 8080", m.web.ip).unwrap();
    let (code, body) = secret_request(&m.client);
    let pcap = capture.stop().unwrap();
    assert_eq!(code, 200, "{body}\n{}\n{}", m.client.logs(), m.web.logs());
    assert!(contains_bytes(&pcap, b"weft/h2"), "a new HTTP/2 mesh connection; {} bytes", pcap.len());
    assert!(!contains_bytes(&pcap, SECRET_HEADER.as_bytes()) && !contains_bytes(&pcap, SECRET_BODY.as_bytes()));
    assert!(body.contains("\"http_version\":\"HTTP/1.1\""), "the app got HTTP/1.1: {body}");
    assert!(!body.contains("x-weft-orig-proto"), "the carriage marker is the proxies' alone: {body}");

    // A client without a proxy is refused at the web pod's inbound proxy.
    let direct = format!("http://{}:8080/", m.web.ip);
    let refused = m.outsider.curl(&direct, &[]);
    assert!(refused.is_err(), "plaintext got through STRICT: {refused:?}");
    let metrics = m.web.admin("/stats/prometheus").unwrap();
    assert!(metrics.contains("reason=\"mtls_required\""), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("weft_requests_total") && l.contains("connection_security_policy=\"mutual_tls\"")), "{metrics}");

    // Opaque TCP is tunnelled in mTLS too (the banner is server-first).
    let capture = Capture::start(&m.web.veth_host, "tcp port 7000", m.web.ip).unwrap();
    let out = m.client.exec(weft_testkit::workspace_bin("weft-echo"), &["banner-client", "10.96.0.20:7000"]).unwrap();
    let pcap = capture.stop().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("weft-echo ESMTP"), "{text} {}\n{}", String::from_utf8_lossy(&out.stderr), m.client.logs());
    assert!(contains_bytes(&pcap, b"weft/tcp") && !contains_bytes(&pcap, b"weft-echo ESMTP"), "TCP was not wrapped in mTLS");

    // weft tls-check says the same.
    let out = m.ctl.weft(&["tls-check", "client", "web.default"]).unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let row = table.lines().find(|l| l.contains("outbound|80||web.default.svc.cluster.local")).unwrap_or_else(|| panic!("{table}"));
    for word in ["AUTO", "STRICT", "mTLS", "OK", "spiffe://cluster.local/ns/default/sa/web", "PeerAuthentication default/default"] {
        assert!(row.contains(word), "{word} missing in {row}");
    }

    // A DestinationRule that turns TLS off is a conflict tls-check reports (and the request fails).
    m.ctl.apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec: {host: web, trafficPolicy: {tls: {mode: DISABLE}}}\n").unwrap();
    wait_for(&m.ctl, &["proxy-config", "client", "clusters", "-o", "json"], "tls disable at the client", |v| v.to_string().contains("\"tls\":\"disable\""));
    let out = m.ctl.weft(&["tls-check", "client", "web.default"]).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CONFLICT: plaintext to a STRICT workload is refused"));
    assert!(m.client.curl("http://web/", &[]).map(|(c, _)| c != 200).unwrap_or(true), "plaintext reached a STRICT workload");
}

#[test]
fn permissive_mtls_lets_plaintext_in_and_keeps_meshed_traffic_encrypted() {
    let m = mesh("permissive", &[], "STRICT");
    let direct = format!("http://{}:8080/", m.web.ip);
    assert!(m.outsider.curl(&direct, &[]).is_err(), "STRICT first");

    m.ctl.apply(&peer_authentication("PERMISSIVE")).unwrap();
    wait_for(&m.ctl, &["proxy-config", "web", "all", "-o", "json"], "PERMISSIVE at web", |v| v["inbound"]["mtls"] == "PERMISSIVE");
    let (code, body) = m.outsider.curl(&direct, &[]).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("x-forwarded-client-cert"), "a plaintext client has no identity: {body}");
    // A plaintext client cannot claim one either.
    let (_, body) = m.outsider.curl(&direct, &["-H", "x-forwarded-client-cert: URI=spiffe://cluster.local/ns/default/sa/admin"]).unwrap();
    assert!(!body.contains("sa/admin"), "{body}");

    let capture = Capture::start(&m.web.veth_host, "tcp port 8080", m.web.ip).unwrap();
    let (code, body) = secret_request(&m.client);
    let pcap = capture.stop().unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("URI=spiffe://cluster.local/ns/default/sa/client"), "{body}");
    assert!(pcap.len() > 500, "the capture saw the request ({} bytes)", pcap.len());
    assert!(!contains_bytes(&pcap, SECRET_HEADER.as_bytes()) && !contains_bytes(&pcap, SECRET_BODY.as_bytes()), "meshed traffic in plaintext");
}

/// The certificates' serial numbers (client, web).
fn serials(m: &Mesh) -> (String, String) {
    let serial = |p: &Pod| {
        let text = p.admin("/certs").unwrap_or_default();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str::<serde_json::Value>(body.trim()).ok().and_then(|v| v["serial"].as_str().map(str::to_string)).unwrap_or_default()
    };
    (serial(&m.client), serial(&m.web))
}

#[test]
fn certificates_rotate_under_constant_load_without_failures() {
    let m = mesh("rotate", &["--cert-ttl", "20s"], "STRICT");
    let before = serials(&m);
    assert!(!before.0.is_empty() && !before.1.is_empty());
    // A constant stream of HTTP requests (multiplexed over the pooled mTLS
    // connection) and new TCP connections (each a new handshake), until both
    // certificates were renewed (at half of 20 s) and a little after.
    let start = Instant::now();
    let (mut http_ok, mut tcp_ok) = (0, 0);
    let mut rotated_at = None;
    loop {
        let (code, body) = m.client.curl("http://web/", &[]).unwrap_or((0, String::new()));
        assert_eq!(code, 200, "request {http_ok} failed after {:?}: {body}\n{}\n{}", start.elapsed(), m.client.logs(), m.web.logs());
        http_ok += 1;
        let out = m.client.exec(weft_testkit::workspace_bin("weft-echo"), &["banner-client", "10.96.0.20:7000"]).unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("weft-echo ESMTP"), "connection {tcp_ok} failed after {:?}\n{}", start.elapsed(), m.client.logs());
        tcp_ok += 1;
        let now = serials(&m);
        if rotated_at.is_none() && now.0 != before.0 && now.1 != before.1 {
            rotated_at = Some(Instant::now());
        }
        if rotated_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(25), "certificates not rotated: {before:?} -> {now:?}");
    }
    assert!(http_ok > 50 && tcp_ok > 50, "{http_ok} requests, {tcp_ok} connections");
}
