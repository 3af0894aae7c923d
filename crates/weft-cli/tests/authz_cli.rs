//! `weft authz check -f` as users run it: the listing of a workload's
//! policies, and the what-if answer with its exit status, compiled from
//! files exactly as the controller compiles them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/valid/authz-three-tier.yaml")
}

fn check(args: &[&str]) -> Output {
    let f = corpus();
    let mut all = vec!["authz", "check"];
    all.extend_from_slice(args);
    all.extend(["-f", f.to_str().unwrap()]);
    Command::new(env!("CARGO_BIN_EXE_weft")).args(&all).output().expect("run weft")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_listing_shows_every_section_in_evaluation_order() {
    let o = check(&["api-service"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Workload backend/api-service: policies in the order they are evaluated

1. DENY (any match refuses)
  (none)

2. ALLOW (when any applies, one must match)
  AuthorizationPolicy backend/deny-all
    no rules: allows nothing
  AuthorizationPolicy backend/frontend-to-api
    rules[0]: from principals [cluster.local/ns/frontend/sa/frontend-app]; to methods [GET, POST] and paths [/api/*]
    rules[1]: from requestPrincipals [https://issuer.example.com/*]; to methods [GET] and paths [/reports/*]; when request.auth.claims[groups] [finance]

AUDIT (logged and counted, never decides)
  (none)

DRY RUN (evaluated and counted, never enforced)
  AuthorizationPolicy backend/audit-writes
    rules[0]: to methods [POST]

3. Default inbound policy, where no ALLOW policy applies (every port): all-unauthenticated

JWT (a token that does not verify gets 401; no token passes without a request principal)
  issuer https://issuer.example.com from RequestAuthentication backend/company-jwt (no keys: every token of it is refused)
"
    );
}

#[test]
fn what_if_names_the_deciding_policy_and_exits_by_the_answer() {
    let allow = check(&["api-service", "--from", "frontend-app", "--method", "POST", "--path", "/api/orders", "--port", "8080"]);
    assert_eq!(allow.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&allow.stdout),
        "ALLOW: AuthorizationPolicy backend/frontend-to-api rules[0] matched\nDRY RUN: AuthorizationPolicy backend/audit-writes rules[0] would deny\n"
    );
    let deny = check(&["api-service", "--from", "worker-service", "--path", "/api/orders", "--port", "8080"]);
    assert_eq!(deny.status.code(), Some(1));
    assert!(text(&deny).contains("principal cluster.local/ns/backend/sa/worker-service not in [cluster.local/ns/frontend/sa/frontend-app]"), "{}", text(&deny));
    // A token's claims decide through `when`.
    let finance = ["api-service", "--path", "/reports/q3", "--port", "8080", "--request-principal", "https://issuer.example.com/ann"];
    assert_eq!(check(&[&finance[..], &["--claim", r#"groups=["finance"]"#]].concat()).status.code(), Some(0));
    assert_eq!(check(&[&finance[..], &["--claim", r#"groups=["sales"]"#]].concat()).status.code(), Some(1));
    // Opaque TCP to the database: the api may, the frontend may not.
    assert_eq!(check(&["database-proxy", "--from", "api-service", "--tcp", "--port", "5432"]).status.code(), Some(0));
    assert_eq!(check(&["database-proxy", "--from", "frontend-app", "--tcp", "--port", "5432"]).status.code(), Some(1));
    // Linkerd: the Server's port for service account default only; a plaintext caller is refused.
    assert_eq!(check(&["web", "--from", "cluster.local/ns/emojivoto/sa/default", "--port", "8080"]).status.code(), Some(0));
    let anon = check(&["web", "--from", "none", "--port", "8080"]);
    assert_eq!(anon.status.code(), Some(1));
    assert!(text(&anon).contains("no principal (the caller is not meshed)"), "{}", text(&anon));
}

#[test]
fn bad_questions_get_clear_errors() {
    let o = check(&["nobody"]);
    assert!(text(&o).contains("no Pod, Deployment or WorkloadEntry \"nobody\" in the files"), "{}", text(&o));
    let o = check(&["api-service", "--from", "frontend-app"]);
    assert!(text(&o).contains("--port is needed"), "{}", text(&o));
    let o = check(&["api-service", "--from", "stranger", "--port", "80"]);
    assert!(text(&o).contains("no workload \"stranger\" to call from"), "{}", text(&o));
}
