//! The controller as users drive it: `weft controller`, then `weft apply`,
//! `get`, `delete` and `analyze` against it. Stored state survives a
//! restart; an invalid apply changes nothing; stale writes are refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

struct Controller {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Controller {
    fn start(data: &Path, port: u16) -> Controller {
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["controller", "--data-dir", data.to_str().unwrap(), "--listen", &addr, "--grpc-listen", "127.0.0.1:0", "--monitoring-listen", "off"])
            .env("WEFT_LOG", "warn")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "controller did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Controller { child, addr, data: data.to_path_buf() }
    }

    /// `weft ARGS` as the controller's local admin (it finds the token in the data directory).
    fn weft(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_weft")).arg("--controller").arg(&self.addr).arg("--data-dir").arg(&self.data).args(args).output().unwrap()
    }

    /// `weft ARGS` with no credentials but `token` (none at all when `None`).
    fn weft_as(&self, token: Option<&str>, args: &[&str]) -> Output {
        let nowhere = self.data.join("not-a-data-dir");
        let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
        c.arg("--controller").arg(&self.addr).arg("--data-dir").arg(&nowhere).env_remove("WEFT_API_TOKEN");
        if let Some(t) = token {
            c.arg("--token").arg(t);
        }
        c.args(args).output().unwrap()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn apply_get_delete_and_restart() {
    let data = std::env::temp_dir().join(format!("weft-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let examples = repo("examples/bookinfo");
    {
        let c = Controller::start(&data, port);
        let o = c.weft(&["apply", "-f", examples.to_str().unwrap()]);
        assert!(o.status.success(), "{}", err(&o));
        assert!(text(&o).contains("VirtualService bookinfo/reviews created"), "{}", text(&o));
        assert_eq!(text(&o).lines().count(), 15);
        // Applying the same again changes nothing.
        let o = c.weft(&["apply", "-f", examples.to_str().unwrap()]);
        assert!(text(&o).lines().all(|l| l.ends_with(" unchanged")), "{}", text(&o));

        let o = c.weft(&["get", "vs", "-n", "bookinfo"]);
        assert_eq!(text(&o), "NAMESPACE   KIND             NAME\nbookinfo    VirtualService   reviews\n");
        let o = c.weft(&["get", "dr", "reviews", "-n", "bookinfo", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&text(&o)).unwrap();
        assert_eq!(v["spec"]["subsets"][2]["name"], "v3");
        assert_eq!(v["metadata"]["resourceVersion"], "1");

        // An apply with one invalid document is rejected whole, and says why.
        let before = text(&c.weft(&["get", "all", "-A", "-o", "json"]));
        let o = c.weft(&[
            "apply",
            "-f",
            repo("tests/corpus/valid/header-ab.yaml").to_str().unwrap(),
            repo("tests/corpus/invalid/unknown-field.yaml").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert!(err(&o).contains("spec.http[0].retries.perTryTimout: unknown field \"perTryTimout\" (did you mean \"perTryTimeout\"?)"), "{}", err(&o));
        assert!(err(&o).contains("nothing was applied"), "{}", err(&o));
        assert_eq!(text(&c.weft(&["get", "all", "-A", "-o", "json"])), before, "state unchanged");

        // Live analysis of the stored state.
        let o = c.weft(&["analyze"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(text(&o), "✔ No validation issues found when analyzing 15 stored resources.\n");
    }
    // Restart on the same data dir: everything is still there.
    let c = Controller::start(&data, port);
    let o = c.weft(&["get", "all", "-A"]);
    assert_eq!(text(&o).lines().count(), 16, "{}", text(&o));
    let o = c.weft(&["delete", "vs", "reviews", "-n", "bookinfo"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(text(&o), "VirtualService bookinfo/reviews deleted\n");
    let o = c.weft(&["get", "vs", "reviews", "-n", "bookinfo"]);
    assert_eq!(o.status.code(), Some(1));
    // Deleting by file removes what the file names.
    let o = c.weft(&["delete", "-f", repo("examples/bookinfo/security.yaml").to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(text(&o).lines().count(), 2);
    drop(c);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn stale_writes_are_refused_and_dry_runs_store_nothing() {
    let data = std::env::temp_dir().join(format!("weft-ctl-occ-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let c = Controller::start(&data, free_port());
    let dir = data.join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let doc = |version: Option<&str>, weight: u32| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web{}}}\nspec:\n  hosts: [web]\n  http:\n  - route:\n    - {{destination: {{host: web, subset: a}}, weight: {weight}}}\n    - {{destination: {{host: web, subset: b}}, weight: {}}}\n",
            version.map(|v| format!(", resourceVersion: \"{v}\"")).unwrap_or_default(),
            100 - weight
        )
    };
    let f = dir.join("vs.yaml");
    std::fs::write(&f, doc(None, 90)).unwrap();
    let o = c.weft(&["apply", "-f", f.to_str().unwrap(), "--dry-run"]);
    assert!(text(&o).contains("validated (dry run)"), "{}", text(&o));
    assert_eq!(c.weft(&["get", "vs"]).status.code(), Some(0));
    assert!(err(&c.weft(&["get", "vs"])).contains("No resources found"));
    assert!(c.weft(&["apply", "-f", f.to_str().unwrap()]).status.success());
    // Someone read version 1 and writes back: fine. A writer holding version 1 again: refused.
    std::fs::write(&f, doc(Some("1"), 50)).unwrap();
    let o = c.weft(&["apply", "-f", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    std::fs::write(&f, doc(Some("1"), 10)).unwrap();
    let o = c.weft(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("was changed by someone else: it is at version 2, the request expected 1"), "{}", err(&o));
    let o = c.weft(&["get", "vs", "web", "-o", "yaml"]);
    assert!(text(&o).contains("weight: 50"), "{}", text(&o));
    drop(c);
    let _ = std::fs::remove_dir_all(&data);
}

/// Raw HTTP from this machine, to see the API's status codes.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out)
}

#[test]
fn the_api_needs_credentials_and_read_only_callers_cannot_change_the_mesh() {
    let data = std::env::temp_dir().join(format!("weft-ctl-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let c = Controller::start(&data, free_port());
    let vs = repo("examples/bookinfo");
    let vs = vs.to_str().unwrap();

    // No credentials: nothing but the health check.
    assert_eq!(http(&c.addr, "GET", "/healthz", None, "").0, 200);
    for (method, path, body) in [
        ("POST", "/api/v1/apply", r#"{"files": []}"#),
        ("POST", "/api/v1/delete", r#"{"keys": []}"#),
        ("POST", "/api/v1/tokens", r#"{"namespace": "a", "service_account": "b", "ttl_seconds": 60}"#),
        ("GET", "/api/v1/resources", ""),
        ("GET", "/api/v1/proxies", ""),
    ] {
        let (code, text) = http(&c.addr, method, path, None, body);
        assert_eq!(code, 401, "{method} {path}: {text}");
        assert!(text.to_ascii_lowercase().contains("www-authenticate: bearer"), "{text}");
    }
    assert_eq!(http(&c.addr, "GET", "/api/v1/resources", Some("weft-api.forged.00"), "").0, 401);
    let o = c.weft_as(None, &["apply", "-f", vs]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("refused the call (401)") && err(&o).contains("--token"), "{}", err(&o));

    // The local admin (the token in the data directory) may do everything, including minting tokens.
    assert!(c.weft(&["apply", "-f", vs]).status.success());
    let o = c.weft(&["api-token", "create", "--name", "dashboard", "--role", "read", "--ttl", "1h"]);
    assert!(o.status.success(), "{}", err(&o));
    let reader = text(&o).trim().to_string();

    // Read-only: may get, may not apply, delete or mint.
    let o = c.weft_as(Some(&reader), &["get", "vs", "-A"]);
    assert!(o.status.success() && text(&o).contains("reviews"), "{}{}", text(&o), err(&o));
    let o = c.weft_as(Some(&reader), &["apply", "-f", vs]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("refused the call (403)") && err(&o).contains("dashboard has the read role; this needs admin"), "{}", err(&o));
    assert_eq!(http(&c.addr, "POST", "/api/v1/delete", Some(&reader), r#"{"keys": []}"#).0, 403);
    assert_eq!(c.weft_as(Some(&reader), &["token", "create", "--namespace", "a", "--service-account", "b"]).status.code(), Some(1));

    // Join tokens: never for the control plane's own identities, never for ever.
    let o = c.weft(&["token", "create", "--namespace", "weft-system", "--service-account", "weft-controller"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("weft-system is the control plane's own"), "{}", err(&o));
    let admin = std::fs::read_to_string(data.join("api/admin.token")).unwrap();
    let (code, body) = http(&c.addr, "POST", "/api/v1/tokens", Some(admin.trim()), r#"{"namespace": "a", "service_account": "b", "ttl_seconds": 18446744073709551000}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("ttl must be between 1s and 30d"), "{body}");
    let o = c.weft(&["api-token", "create", "--name", "x", "--ttl", "24000h"]);
    assert!(err(&o).contains("ttl must be between 1s and 90d"), "{}", err(&o));

    // The credential file is the controller's user's alone.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.join("api/admin.token")).unwrap().permissions().mode() & 0o777, 0o600);
    drop(c);
    let _ = std::fs::remove_dir_all(&data);
}
