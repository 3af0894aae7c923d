//! The decision table, case by case, as Istio and Linkerd document it.

use super::*;
use crate::request::Http;
use std::net::IpAddr;
use weft_proto::authz::{Authorization, DefaultPolicy};

fn authz(json: &str) -> Authorizer {
    let a: Authorization = serde_json::from_str(json).unwrap();
    Authorizer::new(&a, Some("cluster.local")).unwrap()
}

fn policy(name: &str, action: &str, rules: &str) -> String {
    format!(r#"{{"kind":"AuthorizationPolicy","namespace":"backend","name":"{name}","action":"{action}","rules":{rules}}}"#)
}

fn policies(list: &[String]) -> Authorizer {
    authz(&format!(r#"{{"policies":[{}]}}"#, list.join(",")))
}

struct Call {
    identity: Option<&'static str>,
    ip: &'static str,
    port: u16,
    method: &'static str,
    path: &'static str,
    headers: http::HeaderMap,
    tcp: bool,
}

fn call(identity: Option<&'static str>, method: &'static str, path: &'static str) -> Call {
    Call { identity, ip: "10.0.0.5", port: 8080, method, path, headers: http::HeaderMap::new(), tcp: false }
}

const FRONTEND: &str = "spiffe://cluster.local/ns/frontend/sa/frontend-app";
const WORKER: &str = "spiffe://cluster.local/ns/backend/sa/worker";

fn decide(a: &Authorizer, c: &Call) -> (Decision, String) {
    let ip: IpAddr = c.ip.parse().unwrap();
    let http = (!c.tcp).then_some(Http { method: c.method, path: c.path, host: "api-service.backend:8080", headers: &c.headers, remote_ip: ip, jwt: None });
    let req = Request { peer_ip: ip, identity: c.identity, port: c.port, destination_ip: None, sni: None, http };
    let d = a.evaluate(&req);
    let why = d.denial.map(|x| a.explain(&req, x)).unwrap_or_default();
    (d, why)
}

fn allowed(a: &Authorizer, c: &Call) -> bool {
    decide(a, c).0.allowed()
}

#[test]
fn no_policy_allows_everything_and_allow_nothing_denies_everything() {
    assert!(policies(&[]).is_open());
    assert!(allowed(&policies(&[]), &call(None, "GET", "/")));
    let deny_all = policies(&[policy("deny-all", "ALLOW", "[]")]);
    let (d, why) = decide(&deny_all, &call(Some(FRONTEND), "GET", "/"));
    assert_eq!(d.denial, Some(Denial::NotAllowed(Hit { policy: 0, rule: None })));
    assert_eq!(why, "no ALLOW policy matched: AuthorizationPolicy backend/deny-all allows nothing");
    // `rules: [{}]` matches everything.
    assert!(allowed(&policies(&[policy("allow-all", "ALLOW", "[{}]")]), &call(None, "DELETE", "/x")));
}

#[test]
fn the_three_tier_story() {
    let a = policies(&[
        policy("deny-all", "ALLOW", "[]"),
        policy(
            "frontend-to-api",
            "ALLOW",
            r#"[{"from":[{"principals":["cluster.local/ns/frontend/sa/frontend-app"]}],"to":[{"methods":["GET","POST"],"paths":["/api/*"]}]}]"#,
        ),
    ]);
    assert!(allowed(&a, &call(Some(FRONTEND), "GET", "/api/items")));
    assert!(allowed(&a, &call(Some(FRONTEND), "POST", "/api/items")));
    let (d, why) = decide(&a, &call(Some(FRONTEND), "DELETE", "/api/items"));
    assert!(!d.allowed());
    assert!(why.contains("AuthorizationPolicy backend/frontend-to-api rules[0]: method DELETE not in [GET, POST]"), "{why}");
    let (_, why) = decide(&a, &call(Some(FRONTEND), "GET", "/admin"));
    assert!(why.contains("path /admin not in [/api/*]"), "{why}");
    let (_, why) = decide(&a, &call(Some(WORKER), "GET", "/api/items"));
    assert!(why.contains("principal cluster.local/ns/backend/sa/worker not in [cluster.local/ns/frontend/sa/frontend-app]"), "{why}");
    let (_, why) = decide(&a, &call(None, "GET", "/api/items"));
    assert!(why.contains("no principal (the caller is not meshed)"), "{why}");
    assert_eq!(decide(&a, &call(Some(FRONTEND), "GET", "/api/x")).0.allowed_by, Some(Hit { policy: 1, rule: Some(0) }));
}

#[test]
fn deny_wins_over_allow_and_audit_only_reports() {
    let a = policies(&[
        policy("allow-all", "ALLOW", "[{}]"),
        policy("no-admin", "DENY", r#"[{"to":[{"paths":["/admin*"]}]}]"#),
        policy("watch-posts", "AUDIT", r#"[{"to":[{"methods":["POST"]}]}]"#),
    ]);
    let (d, why) = decide(&a, &call(Some(FRONTEND), "GET", "/admin/users"));
    assert_eq!(d.denial, Some(Denial::Denied(Hit { policy: 1, rule: Some(0) })));
    assert_eq!(why, "AuthorizationPolicy backend/no-admin rules[0] matched (DENY)");
    let (d, _) = decide(&a, &call(Some(FRONTEND), "POST", "/orders"));
    assert!(d.allowed());
    assert_eq!(d.audit, Some(Hit { policy: 2, rule: Some(0) }));
}

#[test]
fn opaque_tcp_follows_istio_for_http_only_fields() {
    let tcp = |identity: Option<&'static str>| Call { tcp: true, port: 6379, ..call(identity, "", "") };
    // An ALLOW rule with a path never matches TCP: the connection is refused.
    let allow_paths = policies(&[policy("a", "ALLOW", r#"[{"to":[{"paths":["/x"],"ports":[6379]}]}]"#)]);
    let (d, why) = decide(&allow_paths, &tcp(Some(FRONTEND)));
    assert!(!d.allowed());
    assert!(why.contains("uses HTTP fields and the connection is opaque TCP"), "{why}");
    // The same rule as L4 only allows it.
    assert!(allowed(&policies(&[policy("a", "ALLOW", r#"[{"to":[{"ports":[6379]}]}]"#)]), &tcp(Some(FRONTEND))));
    // A DENY rule by namespace refuses TCP; with a path too, the path is ignored and it still refuses.
    let deny_ns = policies(&[policy("d", "DENY", r#"[{"from":[{"namespaces":["frontend"]}]}]"#)]);
    assert!(!allowed(&deny_ns, &tcp(Some(FRONTEND))));
    assert!(allowed(&deny_ns, &tcp(Some(WORKER))));
    let deny_ns_path = policies(&[policy("d", "DENY", r#"[{"from":[{"namespaces":["frontend"]}],"to":[{"paths":["/admin"]}]}]"#)]);
    assert!(!allowed(&deny_ns_path, &tcp(Some(FRONTEND))), "Istio: HTTP-only fields of a DENY rule are ignored for TCP");
    assert!(allowed(&deny_ns_path, &tcp(Some(WORKER))));
    // For HTTP the path does count.
    assert!(allowed(&deny_ns_path, &call(Some(FRONTEND), "GET", "/api")));
}

#[test]
fn not_values_sources_and_conditions() {
    let a = policies(&[policy(
        "p",
        "ALLOW",
        r#"[{"from":[{"not_namespaces":["frontend"],"ip_blocks":["10.0.0.0/24"]}],"when":[{"key":"request.headers[x-tenant]","values":["acme","beta*"]},{"key":"destination.port","not_values":["9090"]}]}]"#,
    )]);
    let mut c = call(Some(WORKER), "GET", "/");
    c.headers.insert("x-tenant", "beta-2".parse().unwrap());
    assert!(allowed(&a, &c));
    c.headers.insert("x-tenant", "other".parse().unwrap());
    let (_, why) = decide(&a, &c);
    assert!(why.contains("request.headers[x-tenant] other not in [acme, beta*]"), "{why}");
    c.headers.insert("x-tenant", "acme".parse().unwrap());
    c.port = 9090;
    let (_, why) = decide(&a, &c);
    assert!(why.contains("destination.port 9090 in not-values [9090]"), "{why}");
    c.port = 8080;
    c.ip = "10.0.1.5";
    let (_, why) = decide(&a, &c);
    assert!(why.contains("source address 10.0.1.5 not in [10.0.0.0/24]"), "{why}");
    c.ip = "10.0.0.5";
    c.identity = Some(FRONTEND);
    let (_, why) = decide(&a, &c);
    assert!(why.contains("namespace frontend in not-values [frontend]"), "{why}");
    // A plaintext caller has no namespace: notNamespaces passes it.
    c.identity = None;
    assert!(allowed(&a, &c));
}

#[test]
fn dry_run_reports_and_never_enforces() {
    let a = authz(&format!(
        r#"{{"policies":[{}]}}"#,
        r#"{"kind":"AuthorizationPolicy","namespace":"backend","name":"try-deny","action":"DENY","dry_run":true,"rules":[{"to":[{"methods":["DELETE"]}]}]}"#
    ));
    let (d, _) = decide(&a, &call(Some(FRONTEND), "DELETE", "/x"));
    assert!(d.allowed());
    assert_eq!(d.dry_run, Some(DryRun::WouldDeny(Hit { policy: 0, rule: Some(0) })));
    assert_eq!(decide(&a, &call(Some(FRONTEND), "GET", "/x")).0.dry_run, None);
}

#[test]
fn linkerd_servers_and_default_policies() {
    let server = r#"{"kind":"Server","namespace":"emojivoto","name":"web-http","action":"ALLOW","ports":[8080],"rules":[{"from":[{"principals":["cluster.local/ns/emojivoto/sa/default"]}]}]}"#;
    let with_default = |d: &str| authz(&format!(r#"{{"policies":[{server}],"server_ports":[8080],"default_policy":"{d}"}}"#));
    let default_sa = Some("spiffe://cluster.local/ns/emojivoto/sa/default");
    let intruder = Some("spiffe://cluster.local/ns/emojivoto/sa/intruder");
    let a = with_default("deny");
    assert!(allowed(&a, &call(default_sa, "GET", "/")));
    assert!(!allowed(&a, &call(intruder, "GET", "/")));
    assert!(!allowed(&a, &call(None, "GET", "/")));
    // Port 9000 has no Server: the default decides.
    let other = |id| Call { port: 9000, ..call(id, "GET", "/") };
    let (d, why) = decide(&a, &other(default_sa));
    assert_eq!(d.denial, Some(Denial::Default(DefaultPolicy::Deny)));
    assert_eq!(why, "the default inbound policy is deny");
    let a = with_default("all-authenticated");
    assert!(allowed(&a, &other(intruder)) && !allowed(&a, &other(None)));
    let a = with_default("cluster-authenticated");
    assert!(allowed(&a, &other(intruder)));
    assert!(!allowed(&a, &other(Some("spiffe://other.example/ns/x/sa/y"))));
    let a = with_default("audit");
    let (d, _) = decide(&a, &other(None));
    assert!(d.allowed() && d.dry_run == Some(DryRun::WouldDenyByDefault));
    assert!(!allowed(&a, &call(intruder, "GET", "/")), "audit is the default; the Server still decides its port");
}

#[test]
fn bad_policies_are_refused_with_the_policy_rule_and_field() {
    let bad = |rules: &str| {
        let a: Authorization = serde_json::from_str(&format!(r#"{{"policies":[{}]}}"#, policy("p", "ALLOW", rules))).unwrap();
        Authorizer::new(&a, None).unwrap_err().to_string()
    };
    assert_eq!(
        bad(r#"[{},{"from":[{"principals":["spiffe://cluster.local/ns/a/sa/b"]}]}]"#),
        "AuthorizationPolicy backend/p rules[1]: principal \"spiffe://cluster.local/ns/a/sa/b\" is written with spiffe://; Istio principals are written without it (cluster.local/ns/NS/sa/SA)"
    );
    assert!(bad(r#"[{"from":[{"ip_blocks":["10.0.0.0/40"]}]}]"#).contains("\"10.0.0.0/40\" is not an address or CIDR"));
    assert!(bad(r#"[{"to":[{"paths":["/a*b"]}]}]"#).contains("is not a pattern"));
    assert!(bad(r#"[{"when":[{"key":"request.regex","values":["x"]}]}]"#).contains("not a condition key"));
    assert!(bad(r#"[{"when":[{"key":"request.headers[x]"}]}]"#).contains("needs values or notValues"));
}

#[test]
fn a_prefilter_never_changes_a_decision() {
    let a = policies(&[
        policy("deny-ns", "DENY", r#"[{"from":[{"namespaces":["quarantine"]}]},{"from":[{"ip_blocks":["10.9.0.0/16"]}],"to":[{"paths":["/x"]}]}]"#),
        policy("api", "ALLOW", r#"[{"from":[{"principals":["cluster.local/ns/frontend/sa/*"]}],"to":[{"methods":["GET"]}]},{"from":[{"not_namespaces":["frontend"]}],"to":[{"paths":["/health"]}]},{"to":[{"paths":["/public/*"]}]}]"#),
        policy("audit", "AUDIT", r#"[{"from":[{"principals":["*"]}]}]"#),
    ]);
    let identities = [None, Some(FRONTEND), Some(WORKER), Some("spiffe://cluster.local/ns/quarantine/sa/x")];
    let ips = ["10.0.0.5", "10.9.1.1"];
    let requests = [("GET", "/x"), ("POST", "/x"), ("GET", "/health"), ("DELETE", "/public/a")];
    let mut seen_deny = 0;
    for id in identities {
        for ip in ips {
            for (m, p) in requests {
                for tcp in [false, true] {
                    let headers = http::HeaderMap::new();
                    let addr: IpAddr = ip.parse().unwrap();
                    let http = (!tcp).then_some(Http { method: m, path: p, host: "api", headers: &headers, remote_ip: addr, jwt: None });
                    let req = Request { peer_ip: addr, identity: id, port: 8080, destination_ip: None, sni: None, http };
                    let brute = a.evaluate_with(&Prefilter::all(&a), &req);
                    assert_eq!(a.evaluate(&req), brute, "{id:?} {ip} {m} {p} tcp={tcp}");
                    // Kept from another request of the same caller: the same answer.
                    let kept = a.prefilter(&Request { http: None, ..req });
                    assert_eq!(a.evaluate_with(&kept, &req), brute);
                    seen_deny += !brute.allowed() as u32;
                }
            }
        }
    }
    assert!(seen_deny > 0, "the table tried no denial");
}

#[test]
fn a_prefilter_is_for_its_authorizer_only() {
    let one = policies(&[policy("p", "ALLOW", "[{}]")]);
    let two = policies(&[policy("p", "ALLOW", "[{}]")]);
    let req = Request { peer_ip: "10.0.0.1".parse().unwrap(), identity: None, port: 80, destination_ip: None, sni: None, http: None };
    let cache = PrefilterCache::default();
    let p1 = cache.get(&one, &req);
    assert!(p1.is_for(&one) && !p1.is_for(&two));
    assert!(cache.get(&two, &req).is_for(&two), "a new config gets a new prefilter");
}
