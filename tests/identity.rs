//! Workload identity end to end: a join token from `weft token create`, a
//! proxy that generates its key, gets its certificate from the controller
//! and renews it at half-life (proving itself with the current certificate,
//! so an expired token does not matter); a token cannot buy another identity.

use std::time::{Duration, Instant};
use weft_testkit::{ControllerProcess, Net};

fn data_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("weft-e2e-id-{tag}-{}", std::process::id()))
}

fn certs(pod: &weft_testkit::Pod) -> Option<serde_json::Value> {
    let text = pod.admin("/certs").ok()?;
    let body = text.split("\r\n\r\n").nth(1)?;
    text.starts_with("HTTP/1.1 200").then(|| serde_json::from_str(body.trim()).ok()).flatten()
}

#[test]
fn a_proxy_gets_its_certificate_with_a_token_and_renews_it_at_half_life() {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start_with(&net, &data_dir("rotate"), &["--cert-ttl", "4s"]).unwrap();
    // The token outlives only the first certificate: renewals must prove themselves with the current one.
    let out = ctl.weft(&["token", "create", "--namespace", "default", "--service-account", "reviews", "--ttl", "2s"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(String::from_utf8_lossy(&out.stderr).contains("token for spiffe://cluster.local/ns/default/sa/reviews"));

    let pod = net.pod("reviews").unwrap();
    pod.start_meshed_proxy(ctl.grpc, "default", "app=reviews", &["--service-account", "reviews", "--token", &token]).unwrap();
    let start = Instant::now();
    let first = loop {
        if let Some(c) = certs(&pod) {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no certificate:\n{}\n{}", pod.logs(), ctl.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first["spiffe_id"], "spiffe://cluster.local/ns/default/sa/reviews");
    // Its config stream is mutual TLS: the controller knows the Hello by the certificate.
    let start_hello = Instant::now();
    while !ctl.logs().lines().any(|l| l.contains("proxy connected") && l.contains("tls=true") && l.contains("identity=\"spiffe://cluster.local/ns/default/sa/reviews\"")) {
        assert!(start_hello.elapsed() < Duration::from_secs(5), "no authenticated Hello:\n{}\n{}", ctl.logs(), pod.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The controller's record says the same (weft proxy-config PROXY secret).
    let secret = ctl.weft(&["proxy-config", "reviews", "secret", "-o", "json"]).unwrap();
    let secret: serde_json::Value = serde_json::from_slice(&secret.stdout).unwrap();
    assert_eq!(secret["serial"], first["serial"]);
    assert_eq!(secret["root_fingerprints"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(secret["not_after_unix"].as_u64().unwrap() - secret["not_before_unix"].as_u64().unwrap(), 64, "4 s ttl, backdated 60 s for skew");

    // Renewed at about half-life: a new serial, the same identity, before the old one expires.
    let renewed = loop {
        let c = certs(&pod).unwrap();
        if c["serial"] != first["serial"] {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(6), "not renewed:\n{}", pod.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(renewed["spiffe_id"], first["spiffe_id"]);
    assert!(renewed["not_after_unix"].as_i64() >= first["not_after_unix"].as_i64());

    // Renewed again, after the 2 s token has certainly expired.
    let again = loop {
        let c = certs(&pod).unwrap();
        if c["serial"] != renewed["serial"] {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(9), "not renewed after the token expired:\n{}\n{}", pod.logs(), ctl.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(start.elapsed() > Duration::from_secs(3), "{:?}", start.elapsed());
    assert_eq!(again["spiffe_id"], first["spiffe_id"]);
    assert!(!pod.logs().contains("cannot get a workload certificate"), "{}", pod.logs());
}

#[test]
fn a_join_token_cannot_obtain_another_namespaces_identity() {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start(&net, &data_dir("grant")).unwrap();
    let out = ctl.weft(&["token", "create", "--namespace", "shop", "--service-account", "checkout"]).unwrap();
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let pod = net.pod("intruder").unwrap();
    // The pod claims to be bank/admin with shop/checkout's token.
    pod.start_meshed_proxy(ctl.grpc, "bank", "app=intruder", &["--service-account", "admin", "--token", &token]).unwrap();
    let start = Instant::now();
    while !pod.logs().contains("cannot get a workload certificate") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", pod.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pod.logs().contains("may only get spiffe://cluster.local/ns/shop/sa/checkout"), "{}", pod.logs());
    assert!(certs(&pod).is_none());
    assert_eq!(ctl.weft(&["proxy-config", "intruder", "secret"]).unwrap().status.code(), Some(1));
}

#[test]
fn a_controller_refuses_token_less_proxies_by_default() {
    let net = Net::new().expect("network namespaces");
    let ctl = ControllerProcess::start(&net, &data_dir("require")).unwrap();
    let anonymous = net.pod("anonymous").unwrap();
    anonymous.start_meshed_proxy(ctl.grpc, "default", "app=anonymous", &[]).unwrap();
    let token = ctl.token("default", "known").unwrap();
    let known = net.pod("known").unwrap();
    known.start_meshed_proxy(ctl.grpc, "default", "app=known", &["--service-account", "known", "--token", &token]).unwrap();
    let start = Instant::now();
    loop {
        let status = ctl.proxy_status();
        let refused = ctl.logs().lines().any(|l| l.contains("Hello refused") && l.contains("anonymous") && l.contains("admits only proxies with a workload certificate"));
        if refused && ctl.is_synced("known") {
            assert!(!status.contains("anonymous"), "{status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{status}\n{}", ctl.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}
