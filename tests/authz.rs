//! Authorization end to end: real pods with proven identities (join
//! tokens, mesh mTLS), real curl, redis-cli and Python clients, the
//! policies users already write (Istio AuthorizationPolicy and
//! RequestAuthentication, Linkerd Server and ServerAuthorization), and for
//! every case the same question put to `weft authz check`, which must
//! answer as the proxy did.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};
use weft_testkit::{tcp_resets_from, Capture, ControllerProcess, Net, Pod};

fn start(tag: &str) -> (Net, ControllerProcess) {
    let net = Net::new().expect("network namespaces");
    let dir = std::env::temp_dir().join(format!("weft-e2e-authz-{tag}-{}", std::process::id()));
    // Access logs are off by default; these tests read weft's own lines.
    let ctl = ControllerProcess::start_with(&net, &dir, &["--access-log-file", "/dev/stdout", "--access-log-encoding", "WEFT"]).expect("weft controller");
    (net, ctl)
}

/// A meshed pod with the identity `spiffe://cluster.local/ns/NS/sa/SA`, proven by a join token.
fn meshed(net: &Net, ctl: &ControllerProcess, name: &str, ns: &str, sa: &str, labels: &str, hosts: &[(&str, &str)]) -> Pod {
    let pod = net.pod(name).unwrap();
    let token = ctl.token(ns, sa).unwrap();
    pod.start_meshed_proxy(ctl.grpc, ns, labels, &["--service-account", sa, "--token", &token]).unwrap();
    pod.set_hosts(hosts).unwrap();
    pod
}

/// `curl -X METHOD URL` from `pod`: (status, headers and body).
fn call(pod: &Pod, method: &str, url: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec!["-X", method, "-D", "-"];
    args.extend_from_slice(extra);
    pod.curl(url, &args).unwrap_or_else(|e| panic!("{e}\n{}", pod.logs()))
}

/// Waits until the proxy `pod` runs a config with `n` authorization policies.
fn wait_policies(ctl: &ControllerProcess, pod: &str, n: usize) {
    ctl.wait_for_config(pod, &format!("{n} authorization policies"), Duration::from_secs(15), |c| {
        c["inbound"]["authorization"]["policies"].as_array().map(|a| a.len()).unwrap_or(0) == n
    });
}

/// `weft authz check WORKLOAD -n NS ARGS`: (allowed, what it printed).
fn authz_check(ctl: &ControllerProcess, workload: &str, ns: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["authz", "check", workload, "-n", ns];
    all.extend_from_slice(args);
    let out = ctl.weft(&all).unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.code() == Some(0) || out.status.code() == Some(1), "weft authz check failed: {text}");
    (out.status.success(), text)
}

/// The value of one Prometheus series on the pod's admin port, 0 when absent.
fn metric(pod: &Pod, series: &str) -> u64 {
    let text = pod.admin("/stats/prometheus").unwrap();
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

const THREE_TIER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api-service, namespace: backend}
spec: {clusterIP: 10.96.1.10, selector: {app: api-service}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: database-proxy, namespace: backend}
spec: {clusterIP: 10.96.1.20, selector: {app: database-proxy}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: backend}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: backend}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: frontend-to-api, namespace: backend}
spec:
  selector: {matchLabels: {app: api-service}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/frontend/sa/frontend-app"]}}]
    to: [{operation: {methods: ["GET", "POST"], paths: ["/api/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-database, namespace: backend}
spec:
  selector: {matchLabels: {app: database-proxy}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/backend/sa/api-service", "cluster.local/ns/backend/sa/worker-service"]}}]
"#;

/// `weft authz check api-service -n backend`, as users read it.
const API_SERVICE_POLICIES: &str = "Workload backend/api-service: policies in the order they are evaluated

1. DENY (any match refuses)
  (none)

2. ALLOW (when any applies, one must match)
  AuthorizationPolicy backend/deny-all
    no rules: allows nothing
  AuthorizationPolicy backend/frontend-to-api
    rules[0]: from principals [cluster.local/ns/frontend/sa/frontend-app]; to methods [GET, POST] and paths [/api/*]

AUDIT (logged and counted, never decides)
  (none)

DRY RUN (evaluated and counted, never enforced)
  (none)

3. Default inbound policy, where no ALLOW policy applies (every port): all-unauthenticated
";

#[test]
fn the_three_tier_story_frontend_may_get_and_post_the_api_and_only_api_and_worker_reach_the_database() {
    let (net, ctl) = start("three-tier");
    ctl.apply(THREE_TIER).unwrap();
    let hosts = [("api-service.backend", "10.96.1.10"), ("database-proxy.backend", "10.96.1.20")];
    let frontend = meshed(&net, &ctl, "frontend-app", "frontend", "frontend-app", "app=frontend-app", &hosts);
    let api = meshed(&net, &ctl, "api-service", "backend", "api-service", "app=api-service", &hosts);
    api.start_echo(8080, "v1").unwrap();
    let worker = meshed(&net, &ctl, "worker-service", "backend", "worker-service", "app=worker-service", &hosts);
    let db = meshed(&net, &ctl, "database-proxy", "backend", "database-proxy", "app=database-proxy", &hosts);
    db.start_echo(8080, "v1").unwrap();
    wait_policies(&ctl, "api-service", 2);
    wait_policies(&ctl, "database-proxy", 2);
    for client in ["frontend-app", "api-service", "worker-service"] {
        ctl.wait_for_config(client, "both services' endpoints with identities", Duration::from_secs(15), |c| {
            let s = c.to_string();
            s.contains("spiffe://cluster.local/ns/backend/sa/api-service") && s.contains("spiffe://cluster.local/ns/backend/sa/database-proxy")
        });
    }

    let api_url = "http://api-service.backend/api/items";
    let cases: &[(&Pod, &str, &str, &str, u16)] = &[
        (&frontend, "GET", api_url, "/api/items", 200),
        (&frontend, "POST", api_url, "/api/items", 200),
        (&frontend, "DELETE", api_url, "/api/items", 403),
        (&frontend, "GET", "http://api-service.backend/admin", "/admin", 403),
        (&frontend, "GET", "http://database-proxy.backend/query", "/query", 403),
        (&worker, "GET", api_url, "/api/items", 403),
        (&api, "GET", "http://database-proxy.backend/query", "/query", 200),
        (&worker, "GET", "http://database-proxy.backend/query", "/query", 200),
    ];
    for (client, method, url, path, want) in cases {
        let (code, text) = call(client, method, url, &[]);
        assert_eq!(code, *want, "{} {method} {url}:\n{text}\nserver logs:\n{}\n{}", client.name, api.logs(), db.logs());
        if code == 403 {
            assert!(text.to_ascii_lowercase().contains("x-weft-flags: rbac"), "{text}");
            assert!(text.ends_with("RBAC: access denied\n"), "the caller is told nothing more: {text}");
        }
        // The same question, offline from the controller's state: the same answer.
        let server = if url.contains("database-proxy") { "database-proxy" } else { "api-service" };
        let (allowed, said) = authz_check(&ctl, server, "backend", &["--from", &client.name, "--method", method, "--path", path, "--port", "8080"]);
        assert_eq!(allowed, code == 200, "weft authz check disagrees with the proxy on {} {method} {url}: {said}", client.name);
    }

    // The server's access log and log say which policy refused, and why.
    let logs = api.logs();
    assert!(
        logs.lines().any(|l| l.contains("\"DELETE /api/items\" 403 RBAC")
            && l.contains("AuthorizationPolicy backend/frontend-to-api rules[0]: method DELETE not in [GET, POST]")),
        "{logs}"
    );
    assert!(logs.contains("principal cluster.local/ns/backend/sa/worker-service not in [cluster.local/ns/frontend/sa/frontend-app]"), "{logs}");
    // Counted per policy and rule.
    let allow = r#"weft_inbound_http_authz_allow_total{authz_kind="AuthorizationPolicy",authz_namespace="backend",authz_name="frontend-to-api",authz_rule="rules[0]"}"#;
    let deny = r#"weft_inbound_http_authz_deny_total{authz_kind="AuthorizationPolicy",authz_namespace="backend",authz_name="deny-all",authz_rule="-"}"#;
    assert_eq!((metric(&api, allow), metric(&api, deny)), (2, 3), "{}", api.admin("/stats/prometheus").unwrap());

    // The listing, pinned.
    let out = ctl.weft(&["authz", "check", "api-service", "-n", "backend"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), API_SERVICE_POLICIES);
    // A path that normalises into /admin is /admin, for the proxy and for the check.
    let (code, _) = call(&frontend, "GET", "http://api-service.backend/api/../admin", &["--path-as-is"]);
    assert_eq!(code, 403);
    let (allowed, said) = authz_check(&ctl, "api-service", "backend", &["--from", "frontend-app", "--path", "/api/../admin", "--port", "8080"]);
    assert!(!allowed && said.contains("path /admin not in [/api/*]"), "{said}");
}

#[test]
fn linkerd_server_authorization_admits_service_account_default_and_the_default_policy_deny_refuses_the_rest() {
    let (net, ctl) = start("linkerd");
    ctl.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: emojivoto, annotations: {config.linkerd.io/default-inbound-policy: deny}}
---
apiVersion: v1
kind: Service
metadata: {name: web-svc, namespace: emojivoto}
spec: {clusterIP: 10.96.2.10, selector: {app: web-svc}, ports: [{name: http, port: 80, targetPort: 8080}, {name: admin, port: 9090, targetPort: 9090}]}
---
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: web-http, namespace: emojivoto}
spec: {podSelector: {matchLabels: {app: web-svc}}, port: 8080, proxyProtocol: HTTP/1}
---
apiVersion: policy.linkerd.io/v1beta1
kind: ServerAuthorization
metadata: {name: web-from-default, namespace: emojivoto}
spec:
  server: {name: web-http}
  client: {meshTLS: {serviceAccounts: [{name: default}]}}
"#,
    )
    .unwrap();
    let hosts = [("web-svc.emojivoto", "10.96.2.10")];
    let web = meshed(&net, &ctl, "web", "emojivoto", "web", "app=web-svc", &hosts);
    web.start_echo(8080, "v1").unwrap();
    web.start_echo(9090, "admin").unwrap();
    let good = meshed(&net, &ctl, "vote-bot", "emojivoto", "default", "app=vote-bot", &hosts);
    let intruder = meshed(&net, &ctl, "intruder", "emojivoto", "intruder", "app=intruder", &hosts);
    let unmeshed = net.pod("unmeshed").unwrap();
    wait_policies(&ctl, "web", 2);
    for c in ["vote-bot", "intruder"] {
        ctl.wait_for_config(c, "web's endpoint", Duration::from_secs(15), |c| c.to_string().contains("spiffe://cluster.local/ns/emojivoto/sa/web"));
    }

    let (code, text) = call(&good, "GET", "http://web-svc.emojivoto/", &[]);
    assert_eq!(code, 200, "{text}\n{}", web.logs());
    let (code, text) = call(&intruder, "GET", "http://web-svc.emojivoto/", &[]);
    assert_eq!(code, 403, "{text}");
    assert!(text.to_ascii_lowercase().contains("x-weft-flags: rbac"), "{text}");
    let logs = web.logs();
    assert!(
        logs.lines().any(|l| l.contains("403 RBAC") && l.contains("ServerAuthorization emojivoto/web-from-default rules[0]: principal cluster.local/ns/emojivoto/sa/intruder")),
        "the access log names the policy: {logs}"
    );
    // A client without a proxy has no identity: refused.
    let (code, _) = unmeshed.curl(&format!("http://{}:8080/", web.ip), &[]).unwrap();
    assert_eq!(code, 403);
    // Port 9090 has no Server: the namespace's default policy (deny) refuses even `default`.
    let (code, _) = call(&good, "GET", "http://web-svc.emojivoto:9090/", &[]);
    assert_eq!(code, 403);
    assert!(web.logs().contains("the default inbound policy is deny"), "{}", web.logs());
    // weft authz check answers the same for each.
    for (from, port, want) in [("vote-bot", "8080", true), ("intruder", "8080", false), ("none", "8080", false), ("vote-bot", "9090", false)] {
        let (allowed, said) = authz_check(&ctl, "web", "emojivoto", &["--from", from, "--port", port]);
        assert_eq!(allowed, want, "{from} -> {port}: {said}");
    }
    let denied = r#"weft_inbound_http_authz_deny_total{authz_kind="default",authz_namespace="",authz_name="deny",authz_rule="-"}"#;
    assert_eq!(metric(&web, denied), 1);
}

/// A test JWT issuer: an ES256 key (ring), its JWKS, tokens signed with it.
mod issuer {
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    pub struct Issuer {
        pub jwks: String,
        pair: EcdsaKeyPair,
        rng: ring::rand::SystemRandom,
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    impl Issuer {
        pub fn new() -> Issuer {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
            let p = pair.public_key().as_ref();
            let jwks = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"test","alg":"ES256","x":"{}","y":"{}"}}]}}"#, b64(&p[1..33]), b64(&p[33..]));
            Issuer { jwks, pair, rng }
        }

        /// A compact JWS (RFC 7515) over `claims`, signed ES256.
        pub fn sign(&self, claims: serde_json::Value) -> String {
            let input = format!("{}.{}", b64(br#"{"alg":"ES256","typ":"JWT","kid":"test"}"#), b64(claims.to_string().as_bytes()));
            let sig = self.pair.sign(&self.rng, input.as_bytes()).unwrap();
            format!("{input}.{}", b64(sig.as_ref()))
        }
    }
}

/// Serves `body` at any path over HTTP on 127.0.0.1 (for the controller, which fetches jwksUri).
fn serve_once_per_request(body: String) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes());
        }
    });
    addr
}

#[test]
fn jwt_a_valid_token_passes_and_its_claim_decides_bad_tokens_get_401_and_no_token_gets_403() {
    let (net, ctl) = start("jwt");
    let iss = issuer::Issuer::new();
    let jwks = serve_once_per_request(iss.jwks.clone());
    ctl.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: books, namespace: shop}}
spec: {{clusterIP: 10.96.3.10, selector: {{app: books}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: books}}}}
  jwtRules:
  - issuer: https://issuer.test
    jwksUri: http://{jwks}/keys.json
    outputClaimToHeaders: [{{header: x-user, claim: sub}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: books-readers, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: books}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["https://issuer.test/*"]}}}}]
    to: [{{operation: {{paths: ["/books*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/admin*"]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: [admins]}}]
"#
    ))
    .unwrap();
    let hosts = [("books.shop", "10.96.3.10")];
    let books = meshed(&net, &ctl, "books", "shop", "books", "app=books", &hosts);
    books.start_echo(8080, "v1").unwrap();
    let client = meshed(&net, &ctl, "reader", "shop", "reader", "app=reader", &hosts);
    ctl.wait_for_config("books", "the issuer's fetched keys", Duration::from_secs(15), |c| {
        c["inbound"]["authorization"]["jwt_rules"][0]["jwks"].as_str().is_some_and(|k| k.contains("P-256"))
    });
    ctl.wait_for_config("reader", "books' endpoint", Duration::from_secs(15), |c| c.to_string().contains("spiffe://cluster.local/ns/shop/sa/books"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let token = |sub: &str, groups: &[&str], exp: u64| iss.sign(serde_json::json!({"iss": "https://issuer.test", "sub": sub, "exp": exp, "groups": groups}));
    let bearer = |t: &str| format!("Authorization: Bearer {t}");

    let alice = token("alice", &["admins"], now + 600);
    let (code, body) = call(&client, "GET", "http://books.shop/books/1", &["-H", &bearer(&alice), "-H", "x-user: mallory"]);
    assert_eq!(code, 200, "{body}\n{}", books.logs());
    assert!(body.contains(r#""x-user":"alice""#), "the app gets the verified claim, never the caller's own header: {body}");
    assert!(!body.to_ascii_lowercase().contains("bearer"), "the token is not forwarded by default: {body}");
    // The claim decides through `when`.
    assert_eq!(call(&client, "GET", "http://books.shop/admin/stats", &["-H", &bearer(&alice)]).0, 200);
    let bob = token("bob", &["readers"], now + 600);
    assert_eq!(call(&client, "GET", "http://books.shop/admin/stats", &["-H", &bearer(&bob)]).0, 403);
    // Expired, or signed by someone else: 401 with Envoy's words.
    let (code, text) = call(&client, "GET", "http://books.shop/books/1", &["-H", &bearer(&token("alice", &["admins"], now - 3600))]);
    assert_eq!(code, 401);
    assert!(text.contains("Jwt is expired"), "{text}");
    let forged = issuer::Issuer::new().sign(serde_json::json!({"iss": "https://issuer.test", "sub": "alice", "exp": now + 600, "groups": ["admins"]}));
    let (code, text) = call(&client, "GET", "http://books.shop/books/1", &["-H", &bearer(&forged)]);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("Jwt verification fails"), "{text}");
    // No token at all: authentication passes, the requestPrincipals rule does not.
    assert_eq!(call(&client, "GET", "http://books.shop/books/1", &[]).0, 403);

    // weft authz check, with the verified principal and claims the proxy would have.
    let check = |path: &str, rp: Option<&str>, claim: &str| {
        let mut args = vec!["--from", "reader", "--path", path, "--port", "8080"];
        if let Some(rp) = rp {
            args.extend(["--request-principal", rp, "--claim", claim]);
        }
        authz_check(&ctl, "books", "shop", &args).0
    };
    assert!(check("/books/1", Some("https://issuer.test/alice"), r#"groups=["admins"]"#));
    assert!(check("/admin/stats", Some("https://issuer.test/alice"), r#"groups=["admins"]"#));
    assert!(!check("/admin/stats", Some("https://issuer.test/bob"), r#"groups=["readers"]"#));
    assert!(!check("/books/1", None, ""));
}

#[test]
fn a_deny_by_source_namespace_resets_redis_connections_and_http_fields_do_not_soften_it() {
    let (net, ctl) = start("tcp");
    let policy = |extra: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: no-frontend, namespace: cache}}\n\
             spec: {{selector: {{matchLabels: {{app: redis}}}}, action: DENY, rules: [{{from: [{{source: {{namespaces: [frontend]}}}}]{extra}}}]}}\n"
        )
    };
    ctl.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: redis, namespace: cache}}\nspec: {{clusterIP: 10.96.4.10, selector: {{app: redis}}, ports: [{{name: tcp-redis, port: 6379}}]}}\n---\n{}",
        policy("")
    ))
    .unwrap();
    let hosts = [("redis.cache", "10.96.4.10")];
    let redis = meshed(&net, &ctl, "redis", "cache", "redis", "app=redis", &hosts);
    redis.spawn("redis-server", &["--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]).unwrap();
    redis.wait_listening(6379, Duration::from_secs(20)).unwrap();
    let frontend = meshed(&net, &ctl, "web", "frontend", "web", "app=web", &hosts);
    let backend = meshed(&net, &ctl, "worker", "backend", "worker", "app=worker", &hosts);
    wait_policies(&ctl, "redis", 1);
    for c in ["web", "worker"] {
        ctl.wait_for_config(c, "redis' endpoint", Duration::from_secs(15), |c| c.to_string().contains("spiffe://cluster.local/ns/cache/sa/redis"));
    }
    let ping = |pod: &Pod| {
        let out = pod.exec("redis-cli", &["-h", "redis.cache", "-p", "6379", "echo", "weft-canary"]).unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    assert!(ping(&backend).contains("weft-canary"), "{}", redis.logs());
    let capture = Capture::start(&redis.veth_host, "tcp port 6379", redis.ip).unwrap();
    let refused = ping(&frontend);
    let pcap = capture.stop().unwrap();
    assert!(!refused.contains("weft-canary"), "frontend reached redis: {refused}");
    assert!(tcp_resets_from(&pcap, redis.ip) >= 1, "the refused connection was closed, not reset");
    assert!(redis.logs().contains("TCP to port 6379 denied: AuthorizationPolicy cache/no-frontend rules[0] matched (DENY)"), "{}", redis.logs());
    let denied = r#"weft_inbound_tcp_authz_deny_total{authz_kind="AuthorizationPolicy",authz_namespace="cache",authz_name="no-frontend",authz_rule="rules[0]"}"#;
    assert_eq!(metric(&redis, denied), 1);
    let (allowed, _) = authz_check(&ctl, "redis", "cache", &["--from", "web", "--tcp", "--port", "6379"]);
    assert!(!allowed);

    // The same DENY with an HTTP-only field: Istio ignores the field for TCP, so it still refuses.
    ctl.apply(&policy(", to: [{operation: {paths: [/admin]}}]")).unwrap();
    ctl.wait_for_config("redis", "the DENY with paths", Duration::from_secs(15), |c| c.to_string().contains("/admin"));
    assert!(!ping(&frontend).contains("weft-canary"));
    assert!(ping(&backend).contains("weft-canary"));
    assert!(!authz_check(&ctl, "redis", "cache", &["--from", "web", "--tcp", "--port", "6379"]).0);
    assert!(authz_check(&ctl, "redis", "cache", &["--from", "worker", "--tcp", "--port", "6379"]).0);
    // And weft analyze says so.
    let out = ctl.weft(&["analyze"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("WEFT0126") && text.contains("this DENY rule refuses every TCP connection its other fields match"), "{text}");
}

#[test]
fn a_dry_run_deny_lets_traffic_through_and_counts_what_it_would_refuse() {
    let (net, ctl) = start("dry-run");
    ctl.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.5.10, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-deletes, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"#,
    )
    .unwrap();
    let hosts = [("web", "10.96.5.10")];
    let web = meshed(&net, &ctl, "web", "default", "web", "app=web", &hosts);
    web.start_echo(8080, "v1").unwrap();
    let client = meshed(&net, &ctl, "client", "default", "client", "app=client", &hosts);
    wait_policies(&ctl, "web", 1);
    ctl.wait_for_config("client", "web's endpoint", Duration::from_secs(15), |c| c.to_string().contains("spiffe://cluster.local/ns/default/sa/web"));
    for _ in 0..3 {
        assert_eq!(call(&client, "DELETE", "http://web/x", &[]).0, 200, "{}", web.logs());
    }
    assert_eq!(call(&client, "GET", "http://web/x", &[]).0, 200);
    let would = r#"weft_inbound_authz_dry_run_total{authz_kind="AuthorizationPolicy",authz_namespace="default",authz_name="no-deletes",authz_rule="rules[0]",protocol="http",would="deny"}"#;
    assert_eq!(metric(&web, would), 3, "{}", web.admin("/stats/prometheus").unwrap());
    assert!(web.logs().lines().any(|l| l.contains("\"DELETE /x\" 200") && l.contains("authz=\"dry run: AuthorizationPolicy default/no-deletes rules[0] would deny\"")), "{}", web.logs());
    let (allowed, said) = authz_check(&ctl, "web", "default", &["--from", "client", "--method", "DELETE", "--path", "/x", "--port", "8080"]);
    assert!(allowed && said.contains("DRY RUN: AuthorizationPolicy default/no-deletes rules[0] would deny"), "{said}");
}

#[test]
fn a_policy_change_applies_to_an_open_keep_alive_connection_on_its_next_request() {
    let (net, ctl) = start("live");
    let web = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.96.6.10, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}\n";
    ctl.apply(web).unwrap();
    let hosts = [("web", "10.96.6.10")];
    let server = meshed(&net, &ctl, "web", "default", "web", "app=web", &hosts);
    server.start_echo(8080, "v1").unwrap();
    let client = meshed(&net, &ctl, "client", "default", "client", "app=client", &hosts);
    ctl.wait_for_config("client", "web's endpoint", Duration::from_secs(15), |c| c.to_string().contains("spiffe://cluster.local/ns/default/sa/web"));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/keepalive.py");
    let mut child = client.command("python3").args([script, "web", "80"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |path: &str| -> (String, String) {
        writeln!(stdin, "{path}").unwrap();
        let line = lines.next().unwrap().unwrap();
        let (status, port) = line.split_once(' ').unwrap();
        (status.to_string(), port.to_string())
    };
    let (status, port) = ask("/before");
    assert_eq!(status, "200");

    let applied = Instant::now();
    ctl.apply("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: lockdown, namespace: default}\nspec: {selector: {matchLabels: {app: web}}, action: DENY, rules: [{}]}\n").unwrap();
    // Ask on the same connection until the proxy has the policy: the very connection gets 403.
    let (status, same) = loop {
        let (s, p) = ask("/after");
        if s == "403" || applied.elapsed() > Duration::from_secs(10) {
            break (s, p);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = applied.elapsed();
    assert_eq!(status, "403", "the policy never reached the open connection:\n{}", server.logs());
    assert_eq!(same, port, "the connection was replaced");
    eprintln!("policy applied to an open connection {}ms after weft apply", took.as_millis());
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(stdin);
    let _ = child.wait();
}
