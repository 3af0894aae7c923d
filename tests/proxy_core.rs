//! The data plane core, end to end: two pods on a bridge, each with
//! `weft-proxy init` iptables rules and a proxy running as its own uid; an
//! app in pod A calls pod B by IP and goes through A's outbound and B's
//! inbound proxy. Real curl, redis, grpcio, nginx, and the weft-echo backend.
//! Run with `cargo test --workspace` (or build the binaries first): the
//! scenarios start the `weft-proxy` and `weft-echo` binaries from the target dir.

use std::time::Duration;
use weft_testkit::{Net, Pod};

const SIDECAR: &str = r#"
version: "1"
listeners:
- {name: outbound, kind: outbound, address: "0.0.0.0:15001"}
- {name: inbound, kind: inbound, address: "0.0.0.0:15006"}
"#;

/// Two meshed pods: A (client) and B (echo on 8080).
fn meshed_pair(net: &Net) -> (Pod, Pod) {
    let a = net.pod("a").expect("pod a");
    let b = net.pod("b").expect("pod b");
    a.start_proxy(SIDECAR).expect("proxy a");
    b.start_proxy(SIDECAR).expect("proxy b");
    b.start_echo(8080, "v1").expect("echo b");
    (a, b)
}

/// The value of a metric line starting with `prefix`, summed over matches.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn http1_request_goes_through_outbound_and_inbound_proxies() {
    let net = Net::new().expect("network namespaces");
    let (a, b) = meshed_pair(&net);
    let (code, body) = a.curl(&format!("http://{}:8080/hello?x=1", b.ip), &[]).expect("curl");
    assert_eq!(code, 200, "{body}\nA:\n{}\nB:\n{}", a.logs(), b.logs());
    assert!(body.contains("\"pod\":\"b\""), "{body}");
    assert!(body.contains("\"path\":\"/hello\""), "{body}");
    assert!(body.contains("\"x-request-id\""), "the proxy adds a request id: {body}");
    let a_stats = a.admin("/stats/prometheus").unwrap();
    let b_stats = b.admin("/stats/prometheus").unwrap();
    assert_eq!(metric(&a_stats, "weft_requests_total{listener=\"outbound\""), 1.0, "{a_stats}");
    assert_eq!(metric(&b_stats, "weft_requests_total{listener=\"inbound\""), 1.0, "{b_stats}");
    assert!(a_stats.contains("response_code=\"200\""), "{a_stats}");
}

#[test]
fn h2c_prior_knowledge_is_forwarded_as_http2() {
    let net = Net::new().expect("network namespaces");
    let (a, b) = meshed_pair(&net);
    let (code, body) = a.curl(&format!("http://{}:8080/grpc.like/Method", b.ip), &["--http2-prior-knowledge", "-X", "POST", "-d", "ping"]).expect("curl");
    assert_eq!(code, 200, "{body}\n{}", b.logs());
    assert!(body.contains("\"http_version\":\"HTTP/2.0\""), "{body}");
    assert!(body.contains("\"body_bytes\":4"), "{body}");
    let stats = a.admin("/stats/prometheus").unwrap();
    assert_eq!(metric(&stats, "weft_downstream_connections_total{listener=\"outbound\",protocol=\"http2\",connection_security_policy=\"none\"}"), 1.0, "{stats}");
}

#[test]
fn redis_set_and_get_through_opaque_tcp() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    a.start_proxy(SIDECAR).unwrap();
    b.start_proxy(SIDECAR).unwrap();
    b.spawn("redis-server", &["--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]).unwrap();
    b.wait_listening(6379, Duration::from_secs(10)).expect("redis up");
    let host = b.ip.to_string();
    let set = a.exec_ok("redis-cli", &["-h", &host, "SET", "mesh", "weft"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
    let get = a.exec_ok("redis-cli", &["-h", &host, "GET", "mesh"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "weft");
    let stats = a.admin("/stats/prometheus").unwrap();
    assert_eq!(metric(&stats, "weft_downstream_connections_total{listener=\"outbound\",protocol=\"tcp\",connection_security_policy=\"none\"}"), 2.0, "{stats}");
    assert!(metric(&stats, "weft_tcp_sent_bytes_total{listener=\"outbound\"}") > 0.0, "{stats}");
}

#[test]
fn server_first_protocol_does_not_hang() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    a.start_proxy(SIDECAR).unwrap();
    b.start_proxy(SIDECAR).unwrap();
    b.spawn(weft_testkit::workspace_bin("weft-echo"), &["banner", "--listen", "0.0.0.0:2525"]).unwrap();
    b.wait_listening(2525, Duration::from_secs(10)).unwrap();
    // The client sends nothing until it hears the greeting: detection must give up and splice.
    let out = a.exec_ok(weft_testkit::workspace_bin("weft-echo"), &["banner-client", &format!("{}:2525", b.ip)]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "220 weft-echo ESMTP ready");
}

#[test]
fn malformed_request_gets_400_and_the_proxy_keeps_serving() {
    let net = Net::new().expect("network namespaces");
    let (a, b) = meshed_pair(&net);
    let target = format!("printf 'GET /a b c HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | nc -q 2 -w 5 {} 8080", b.ip);
    let out = a.exec_ok("sh", &["-c", &target]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    let (code, _) = a.curl(&format!("http://{}:8080/after", b.ip), &[]).unwrap();
    assert_eq!(code, 200);
}

#[test]
fn dead_upstream_is_answered_503_with_flag_and_reason() {
    let net = Net::new().expect("network namespaces");
    let (a, b) = meshed_pair(&net);
    let (code, headers) = a.curl(&format!("http://{}:9999/", b.ip), &["-D", "-", "-o", "/dev/null"]).unwrap();
    assert_eq!(code, 503, "{headers}");
    let headers = headers.to_ascii_lowercase();
    assert!(headers.contains("x-weft-flags: uf"), "{headers}");
    assert!(headers.contains(&format!("x-weft-error: connect to {}:9999 refused", b.ip)), "{headers}");
    let stats = b.admin("/stats/prometheus").unwrap();
    assert!(stats.contains("response_code=\"503\",response_flags=\"UF\""), "{stats}");
}

#[test]
fn websocket_echo_through_both_proxies() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    a.start_proxy(SIDECAR).unwrap();
    b.start_proxy(SIDECAR).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/ws_echo.py");
    b.spawn("python3", &[script, "server", "8765"]).unwrap();
    b.wait_listening(8765, Duration::from_secs(20)).expect("websocket server up");
    let out = a.exec("python3", &[script, "client", &format!("ws://{}:8765/chat", b.ip), "20"]).unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), b.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "websocket ok 21");
}

#[test]
fn upgraded_connection_is_tunnelled_both_ways() {
    let net = Net::new().expect("network namespaces");
    let (a, b) = meshed_pair(&net);
    let out = a
        .exec_ok(weft_testkit::workspace_bin("weft-echo"), &["upgrade", &format!("http://{}:8080/ws", b.ip), "hello over an upgraded connection"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello over an upgraded connection");
}

#[test]
fn upload_of_100_mib_streams_with_flat_proxy_memory() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    let proxy_a = a.start_proxy(SIDECAR).unwrap();
    b.start_proxy(SIDECAR).unwrap();
    b.start_echo(8080, "v1").unwrap();
    let out = a.exec_ok(weft_testkit::workspace_bin("weft-echo"), &["upload", &format!("http://{}:8080/upload", b.ip), "100"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("200 "), "{text}");
    assert!(text.contains("\"body_bytes\":104857600"), "{text}");
    let status = std::fs::read_to_string(format!("/proc/{proxy_a}/status")).unwrap();
    let peak_kib: u64 = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap();
    assert!(peak_kib < 40 * 1024, "proxy peak RSS {peak_kib} KiB: the body was buffered");
}

#[test]
fn explicit_mode_needs_no_iptables() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    let c = net.pod("c").unwrap();
    b.start_echo(8080, "v1").unwrap();
    c.start_echo(8080, "v1").unwrap();
    let config = format!(
        "listeners:\n- {{name: to-b, kind: explicit, address: \"127.0.0.1:18080\", cluster: b}}\nclusters:\n- {{name: b, endpoints: [\"{}:8080\", \"{}:8080\"]}}\n",
        b.ip, c.ip
    );
    a.start_proxy_without_init(&config).unwrap();
    let rules = a.exec_ok("iptables-save", &["-t", "nat"]).unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains("WEFT"), "explicit mode installs no rules");
    // Round robin over the cluster's two endpoints: each request to the next one.
    let mut pods = Vec::new();
    for _ in 0..4 {
        let (code, body) = a.curl("http://127.0.0.1:18080/explicit", &[]).unwrap();
        assert_eq!(code, 200, "{body}");
        pods.push(body.split("\"pod\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?").to_string());
    }
    assert_eq!(pods.iter().filter(|p| *p == "b").count(), 2, "{pods:?}");
    assert_eq!(pods.iter().filter(|p| *p == "c").count(), 2, "{pods:?}");
}

#[test]
fn init_cleanup_leaves_the_ruleset_exactly_as_before() {
    let net = Net::new().expect("network namespaces");
    let p = net.pod("p").unwrap();
    // Someone else's rule must survive.
    p.exec_ok("iptables", &["-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "RETURN"]).unwrap();
    let save = || {
        let out = p.exec_ok("iptables-save", &[]).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| if l.starts_with(':') { l.split(' ').take(2).collect::<Vec<_>>().join(" ") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = save();
    let proxy = weft_testkit::workspace_bin("weft-proxy");
    p.exec_ok(&proxy, &["init", "--exclude-inbound-ports", "22"]).unwrap();
    let during = save();
    assert!(during.contains("-A OUTPUT -p tcp -j WEFT_OUTPUT"), "{during}");
    assert!(during.contains("-A WEFT_INBOUND -p tcp -m tcp --dport 22 -j RETURN"), "{during}");
    p.exec_ok(&proxy, &["init", "--cleanup"]).unwrap();
    assert_eq!(save(), before);
}

#[test]
fn sigterm_drains_in_flight_requests_and_refuses_new_ones() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    a.start_proxy(SIDECAR).unwrap();
    let proxy_b = b.start_proxy(SIDECAR).unwrap();
    b.start_echo(8080, "v1").unwrap();
    // A slow request in flight through B's inbound proxy...
    let url = format!("http://{}:8080/delay/1500", b.ip);
    let mut cmd = a.command("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", &url]);
    let slow = std::thread::spawn(move || cmd.output());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(&b.admin("/stats/prometheus").unwrap(), "weft_downstream_connections_active{listener=\"inbound\"}") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "request never reached B's proxy");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...when B's proxy is told to stop.
    b.signal(proxy_b, "TERM").unwrap();
    let result = slow.join().unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&result.stdout), "200", "the in-flight request completes\nA:\n{}\nB:\n{}", a.logs(), b.logs());
    let status = b.wait(proxy_b, Duration::from_secs(10)).unwrap();
    assert!(status.success(), "proxy exits cleanly after draining: {status:?}\n{}", b.logs());
    // New connections find nothing listening on B's inbound port: A's proxy says so.
    let (code, headers) = a.curl(&format!("http://{}:8080/", b.ip), &["-D", "-", "-o", "/dev/null"]).unwrap();
    assert_eq!(code, 503, "{headers}");
    assert!(headers.to_ascii_lowercase().contains("x-weft-flags: uf"), "{headers}");
}

#[test]
fn config_changes_apply_live_and_a_bad_file_keeps_the_running_config() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    let c = net.pod("c").unwrap();
    b.start_echo(8080, "v1").unwrap();
    c.start_echo(8080, "v2").unwrap();
    let config = |version: &str, ep: std::net::Ipv4Addr| {
        format!("version: \"{version}\"\nlisteners:\n- {{name: app, kind: explicit, address: \"127.0.0.1:18080\", cluster: app}}\nclusters:\n- {{name: app, endpoints: [\"{ep}:8080\"]}}\n")
    };
    a.start_proxy_without_init(&config("1", b.ip)).unwrap();
    let (_, body) = a.curl("http://127.0.0.1:18080/", &[]).unwrap();
    assert!(body.contains("\"pod\":\"b\""), "{body}");
    // Replace the file atomically, as config tools do; the proxy picks it up.
    let path = a.write_file("proxy.yaml", &config("1", b.ip)).unwrap();
    let replace = |text: &str| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    replace(&config("2", c.ip));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (code, body) = a.curl("http://127.0.0.1:18080/", &[]).unwrap();
        assert_eq!(code, 200, "no request fails during the switch: {body}");
        if body.contains("\"pod\":\"c\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "config change not applied:\n{}", a.logs());
    }
    assert!(a.admin("/config_dump").unwrap().contains("\"version\": \"2\""));
    replace("listeners: [this is not: a config");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while metric(&a.admin("/stats/prometheus").unwrap(), "weft_config_reloads_total{source=\"file\",result=\"rejected\"}") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "bad config not noticed:\n{}", a.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, body) = a.curl("http://127.0.0.1:18080/", &[]).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"pod\":\"c\""), "still on the last good config: {body}");
    assert!(a.logs().contains("config reload refused, keeping the running config"), "{}", a.logs());
}

#[test]
fn oversized_request_headers_get_431() {
    let net = Net::new().expect("network namespaces");
    let (a, b) = meshed_pair(&net);
    let big = format!("x-big: {}", "a".repeat(100 * 1024));
    let (code, headers) = a.curl(&format!("http://{}:8080/", b.ip), &["-H", &big, "-D", "-", "-o", "/dev/null"]).unwrap();
    assert_eq!(code, 431);
    let headers = headers.to_ascii_lowercase();
    assert!(headers.contains("x-weft-flags: dpe"), "{headers}");
    assert!(headers.contains("x-weft-error: request headers are 10"), "{headers}");
    let (code, _) = a.curl(&format!("http://{}:8080/", b.ip), &[]).unwrap();
    assert_eq!(code, 200, "the proxy keeps serving");
}

#[test]
fn grpc_unary_and_streaming_calls_with_trailers() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    a.start_proxy(SIDECAR).unwrap();
    b.start_proxy(SIDECAR).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/grpc_echo.py");
    b.spawn("python3", &[script, "server", "50051", "b"]).unwrap();
    b.wait_listening(50051, Duration::from_secs(20)).expect("grpc server up");
    let out = a.exec("python3", &[script, "client", &format!("{}:50051", b.ip)]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\nA:\n{}\nB:\n{}", String::from_utf8_lossy(&out.stderr), a.logs(), b.logs());
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["unary hello mesh served-by b", "stream 5"]);
    let stats = a.admin("/stats/prometheus").unwrap();
    assert_eq!(metric(&stats, "weft_downstream_connections_total{listener=\"outbound\",protocol=\"http2\",connection_security_policy=\"none\"}"), 1.0, "{stats}");
}

#[test]
fn nginx_backend_behind_the_mesh() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    a.start_proxy(SIDECAR).unwrap();
    b.start_proxy(SIDECAR).unwrap();
    let root = b.write_file("index.html", "served by nginx in pod b\n").unwrap();
    let dir = root.parent().unwrap().display().to_string();
    let file = root.file_name().unwrap().to_string_lossy().into_owned();
    let conf = b
        .write_file(
            "nginx.conf",
            &format!(
                "worker_processes 1; daemon off; pid {dir}/{ns}-nginx.pid; error_log stderr;\n\
                 events {{}}\nhttp {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir};\n\
                 server {{ listen 80; root {dir}; location = / {{ try_files /{file} =404; }} }} }}\n",
                ns = b.ns
            ),
        )
        .unwrap();
    b.spawn("nginx", &["-c", conf.to_str().unwrap()]).unwrap();
    b.wait_listening(80, Duration::from_secs(10)).expect("nginx up");
    let (code, body) = a.curl(&format!("http://{}/", b.ip), &[]).unwrap();
    assert_eq!(code, 200, "{body}\n{}", b.logs());
    assert_eq!(body, "served by nginx in pod b\n");
}

#[test]
fn slowloris_connections_are_closed_after_the_header_timeout() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    let config = format!("{SIDECAR}limits: {{header_read_timeout: 1s}}\n");
    a.start_proxy(&config).unwrap();
    b.start_echo(8080, "v1").unwrap();
    // Half a request, then silence: the outbound proxy must hang up, not wait forever.
    let script = format!(
        "import socket, time\ns = socket.create_connection(('{}', 8080))\nstart = time.time()\ns.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n')\ns.settimeout(8)\ntry:\n    s.recv(1)\nexcept socket.timeout:\n    pass\nprint(int((time.time() - start) * 1000))\n",
        b.ip
    );
    let out = a.exec_ok("python3", &["-c", &script]).unwrap();
    let ms: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(ms < 5000, "connection held for {ms} ms despite a 1 s header timeout");
    assert!(ms >= 900, "closed after {ms} ms, before the timeout");
}

#[test]
fn connections_over_the_limit_are_refused_at_once() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    b.start_echo(8080, "v1").unwrap();
    let config = format!(
        "listeners:\n- {{name: app, kind: explicit, address: \"127.0.0.1:18080\", cluster: b, protocol: tcp}}\nclusters:\n- {{name: b, endpoints: [\"{}:8080\"]}}\nlimits: {{max_connections: 2}}\n",
        b.ip
    );
    a.start_proxy_without_init(&config).unwrap();
    // Two idle connections hold both slots; a third is closed immediately.
    a.spawn("sh", &["-c", "sleep 30 | nc 127.0.0.1 18080"]).unwrap();
    a.spawn("sh", &["-c", "sleep 30 | nc 127.0.0.1 18080"]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(&a.admin("/stats/prometheus").unwrap(), "weft_downstream_connections_active{listener=\"app\"}") < 2.0 {
        assert!(std::time::Instant::now() < deadline, "{}", a.admin("/stats/prometheus").unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = a.exec("curl", &["-sS", "--max-time", "5", "http://127.0.0.1:18080/"]).unwrap();
    assert!(!out.status.success(), "third connection was served");
    let stats = a.admin("/stats/prometheus").unwrap();
    assert_eq!(metric(&stats, "weft_downstream_connections_rejected_total{listener=\"app\",reason=\"overflow\"}"), 1.0, "{stats}");
}

#[test]
fn ipv6_traffic_is_intercepted_and_forwarded_too() {
    let net = Net::new().expect("network namespaces");
    let dual = format!("{SIDECAR}- {{name: outbound6, kind: outbound, address: \"[::]:15001\"}}\n- {{name: inbound6, kind: inbound, address: \"[::]:15006\"}}\n");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    a.start_proxy(&dual).unwrap();
    b.start_proxy(&dual).unwrap();
    b.spawn(weft_testkit::workspace_bin("weft-echo"), &["serve", "--listen", "[::]:8080", "--name", "b"]).unwrap();
    b.wait_listening(8080, Duration::from_secs(10)).unwrap();
    let (code, body) = a.curl(&format!("http://[{}]:8080/v6", b.ip6), &["-g"]).unwrap();
    assert_eq!(code, 200, "{body}\nA:\n{}\nB:\n{}", a.logs(), b.logs());
    assert!(body.contains("\"pod\":\"b\""), "{body}");
    let a_stats = a.admin("/stats/prometheus").unwrap();
    let b_stats = b.admin("/stats/prometheus").unwrap();
    assert_eq!(metric(&a_stats, "weft_requests_total{listener=\"outbound6\""), 1.0, "{a_stats}");
    assert_eq!(metric(&b_stats, "weft_requests_total{listener=\"inbound6\""), 1.0, "{b_stats}");
    // IPv4 still works beside it.
    let (code, _) = a.curl(&format!("http://{}:8080/v4", b.ip), &[]).unwrap();
    assert_eq!(code, 200);
}

/// User plus system CPU a process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_hundred_clients_that_send_one_byte_and_stall_cost_the_proxy_almost_no_cpu() {
    let net = Net::new().expect("network namespaces");
    let a = net.pod("a").unwrap();
    let b = net.pod("b").unwrap();
    let pid = a.start_proxy(&format!("{SIDECAR}limits: {{detect_timeout: 2s}}\n")).unwrap();
    b.start_echo(8080, "v1").unwrap();
    let before = cpu_seconds(pid);
    // One byte of a request line, then nothing, for the whole detect timeout.
    let script = format!(
        "import socket, time\nsocks = [socket.create_connection(('{}', 8080)) for _ in range(100)]\nfor s in socks:\n    s.sendall(b'G')\ntime.sleep(2.5)\n",
        b.ip
    );
    a.exec_ok("python3", &["-c", &script]).unwrap();
    let used = cpu_seconds(pid) - before;
    // Peeking in a loop would burn the proxy's one worker for the whole 2 s.
    assert!(used < 0.3, "the proxy used {used:.2} s of CPU while 100 clients stalled for 2.5 s");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let net = Net::new().expect("network namespaces");
    let (a, b) = (net.pod("a").unwrap(), net.pod("b").unwrap());
    a.start_proxy(&format!("{SIDECAR}limits: {{connection_idle_timeout: 1s}}\n")).unwrap();
    b.start_echo(8080, "v1").unwrap();
    b.spawn(weft_testkit::workspace_bin("weft-echo"), &["banner", "--listen", "0.0.0.0:2525"]).unwrap();
    b.wait_listening(2525, Duration::from_secs(5)).unwrap();
    // A keep-alive HTTP connection after one request, and an opaque TCP one after the greeting:
    // both quiet, both closed by the proxy after about a second.
    let script = |port: u16, first: &str| {
        format!(
            "import socket, time\ns = socket.create_connection(('{}', {port}))\ns.sendall(b'{first}')\ns.settimeout(10)\nstart = time.time()\ndata = s.recv(65536)\nwhile data:\n    data = s.recv(65536)\nprint(int((time.time() - start) * 1000))\n",
            b.ip
        )
    };
    for (port, first) in [(8080, "GET / HTTP/1.1\\r\\nHost: b\\r\\n\\r\\n"), (2525, "")] {
        let out = a.exec_ok("python3", &["-c", &script(port, first)]).unwrap();
        let ms: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(u64::MAX);
        assert!((800..5000).contains(&ms), "port {port}: the quiet connection was closed after {ms} ms, the idle timeout is 1 s");
    }
}
