//! The README's first command brings up the demo mesh with `weft-demo`;
//! this keeps that command true: it must show an mTLS request, a refused
//! plaintext client and both proxies SYNCED.

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
