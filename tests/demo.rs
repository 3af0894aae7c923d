//! The README's first command (the EdTech platform on `weft dev`, and its
//! tour) and the two-pod demo (`examples/demo/run`, `weft-demo`) stay true:
//! each must show what it says it shows.

use std::process::Command;

#[test]
fn the_readme_demo_shows_mtls_between_meshed_pods() {
    let out = Command::new(weft_testkit::workspace_bin("weft-demo")).output().expect("weft-demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("HTTP 200, answered by pod hello"), "{text}");
    assert!(text.contains("URI=spiffe://cluster.local/ns/default/sa/client"), "{text}");
    assert!(text.contains("refused, as it should be"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(" SYNCED ")).count(), 2, "{text}");
    assert!(text.contains("connection_security_policy=\"mutual_tls\""), "{text}");
}

/// README command 1: the EdTech platform on `weft dev`, and its tour. Run
/// here with the tour script the command runs after building, on a cluster
/// of its own (state directory, interface tag, subnet, API port).
#[test]
fn the_readme_edtech_tour_shows_the_split_timeout_mtls_denial_and_sync() {
    let bin = weft_testkit::workspace_bin("weft");
    let dir = std::env::temp_dir().join(format!("weft-tour-{}", std::process::id()));
    let api = format!("127.0.0.1:{}", weft_testkit::free_port().expect("port"));
    let tour = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/edtech/tour");
    let out = Command::new("bash")
        .arg(tour)
        .arg(bin.parent().expect("bin dir"))
        .env("WEFT_DEV_DIR", &dir)
        .env("WEFT_DEV_TAG", "tr")
        .env("WEFT_DEV_SUBNET", "10.249.0.0/16")
        .env("WEFT_DEV_API", &api)
        .output()
        .expect("the tour runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains(" 2/2 ") && l.contains("Running")).count(), 9, "{text}");
    let v2: u64 = text.lines().find_map(|l| l.strip_prefix("exam-service-v2 answered ")).and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).expect("the split line");
    assert!((140..=260).contains(&v2), "v2 answered {v2} of 2000\n{text}");
    assert!(text.contains("GET /delay/2000 -> HTTP 504 after 0.3"), "{text}");
    assert!(text.contains("URI=spiffe://cluster.local/ns/edtech-production/sa/student-portal"), "{text}");
    assert!(text.contains("RBAC: access denied") && text.contains("(HTTP 403)") && text.contains("from exam-service: HTTP 200"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(" SYNCED ")).count(), 9, "{text}");
    assert!(text.contains("removed 9 pods, 5 services, the controller and bridge wefttr"), "{text}");
    assert!(!dir.exists());
}
