//! `weft analyze` as users run it: exit statuses, thresholds and formats.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().expect("run weft")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn clean_examples_exit_zero() {
    let o = weft(&["analyze", "-f", repo("examples").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o), "✔ No validation issues found when analyzing 36 resources.\n");
}

#[test]
fn errors_exit_79_like_istioctl() {
    let f = repo("tests/corpus/invalid/weights-not-100.yaml");
    let o = weft(&["analyze", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(79));
    let out = stdout(&o);
    assert!(out.starts_with("Error [WEFT0105] (VirtualService default/reviews, "), "{out}");
    assert!(out.trim_end().ends_with("spec.http[0].route: weights of 2 destinations sum to 90, not 100"), "{out}");
}

#[test]
fn thresholds_decide_exit_status_and_output() {
    let f = repo("tests/corpus/invalid/port-without-protocol.yaml");
    let f = f.to_str().unwrap();
    // Only an info: passes at the default threshold, fails at `info`.
    assert_eq!(weft(&["analyze", "-f", f]).status.code(), Some(0));
    assert_eq!(weft(&["analyze", "-f", f, "--failure-threshold", "info"]).status.code(), Some(79));
    let o = weft(&["analyze", "-f", f, "--output-threshold", "warning"]);
    assert!(!stdout(&o).contains("WEFT0108"), "{}", stdout(&o));
    assert!(stdout(&weft(&["analyze", "-f", f])).contains("Info [WEFT0108]"));
}

#[test]
fn json_output_is_machine_readable() {
    let f = repo("tests/corpus/invalid/unknown-field.yaml");
    let o = weft(&["analyze", "-f", f.to_str().unwrap(), "-o", "json"]);
    assert_eq!(o.status.code(), Some(79));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let m = &v[0];
    assert_eq!(m["code"], "WEFT0003");
    assert_eq!(m["severity"], "Error");
    assert_eq!(m["istio_code"], "IST0106");
    assert_eq!(m["field"], "spec.http[0].retries.perTryTimout");
    assert_eq!(m["resource"]["kind"], "VirtualService");
    assert_eq!(m["origin"]["document"], 0);
}

#[test]
fn yaml_output_and_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["analyze", "-f", "-", "-o", "yaml"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {mtls: {mode: STRICTLY}}\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(79));
    let out = stdout(&o);
    assert!(out.contains("code: WEFT0004"), "{out}");
    assert!(out.contains("file: '-'") || out.contains("file: -"), "{out}");
}

#[test]
fn missing_file_is_a_usage_error() {
    let o = weft(&["analyze", "-f", "/nonexistent/mesh.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/mesh.yaml does not exist"));
}
