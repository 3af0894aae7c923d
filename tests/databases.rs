//! Databases through the mesh, with real servers and clients: PostgreSQL
//! (client-first, on a port proxies never sniff), MariaDB (server-first: it
//! speaks before the client does) and Redis (client-first, on a default
//! opaque port and on a sniffed one), all meshed, under STRICT and then
//! PERMISSIVE. Meshed traffic to such ports used to be forced to opaque TCP
//! before mesh TLS was recognised: reset under STRICT, raw TLS bytes for
//! the app under PERMISSIVE. tcpdump on the server pod's veth sees only mesh
//! TLS.

use std::time::Duration;
use weft_testkit::{contains_bytes, Capture, ControllerProcess, Net, Pod};

const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: pg, namespace: default}\nspec: {clusterIP: 10.96.0.40, selector: {app: db}, ports: [{name: db, port: 5432}]}\n---\n\
    apiVersion: v1\nkind: Service\nmetadata: {name: mysql, namespace: default}\nspec: {clusterIP: 10.96.0.41, selector: {app: db}, ports: [{name: db, port: 3306}]}\n---\n\
    apiVersion: v1\nkind: Service\nmetadata: {name: cache, namespace: default}\nspec: {clusterIP: 10.96.0.42, selector: {app: db}, ports: [{name: cache, port: 6379}, {name: opaque, port: 27017}]}\n";

fn peer_authentication(mode: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: default}}\nspec: {{mtls: {{mode: {mode}}}}}\n")
}

fn uid_of(user: &str) -> u32 {
    let out = std::process::Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("no user {user} (Debian's postgresql package makes it)"))
}

fn postgres_bin(name: &str) -> String {
    let dir = std::fs::read_dir("/usr/lib/postgresql").expect("Debian's postgresql package").filter_map(|e| e.ok()).map(|e| e.path()).max().unwrap();
    dir.join("bin").join(name).display().to_string()
}

/// PostgreSQL on 5432 (trust auth: the mesh is what is under test), MariaDB on 3306, Redis on 6379 and 27017.
fn start_databases(db: &Pod) {
    let pg = std::env::temp_dir().join(format!("{}-pg", db.ns));
    let _ = std::fs::remove_dir_all(&pg);
    std::fs::create_dir_all(&pg).unwrap();
    let uid = uid_of("postgres");
    std::process::Command::new("chown").args([&format!("{uid}"), pg.to_str().unwrap()]).status().unwrap();
    let out = db
        .command("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), postgres_bin("initdb")])
        .args(["-D", pg.to_str().unwrap(), "--auth=trust", "-U", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    // Connections arrive from the pod's own address (its inbound proxy hands them over).
    let hba = pg.join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba).unwrap();
    rules.push_str("host all all 0.0.0.0/0 trust\n");
    std::fs::write(&hba, rules).unwrap();
    db.spawn_as(Some(uid), postgres_bin("postgres"), &["-D", pg.to_str().unwrap(), "-k", pg.to_str().unwrap(), "-c", "listen_addresses=*", "-p", "5432"]).unwrap();

    let my = std::env::temp_dir().join(format!("{}-my", db.ns));
    let _ = std::fs::remove_dir_all(&my);
    let out = db.exec("mariadb-install-db", &[&format!("--datadir={}", my.display()), "--user=root", "--auth-root-authentication-method=normal"]).unwrap();
    assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
    let sock = format!("--socket={}/mysqld.sock", my.display());
    db.spawn("mariadbd", &[&format!("--datadir={}", my.display()), "--user=root", "--port=3306", "--bind-address=0.0.0.0", &sock, "--skip-grant-tables", "--skip-name-resolve", "--skip-log-error"]).unwrap();

    for port in ["6379", "27017"] {
        db.spawn("redis-server", &["--port", port, "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]).unwrap();
    }
    for port in [5432, 3306, 6379, 27017] {
        db.wait_listening(port, Duration::from_secs(30)).unwrap();
    }
}

/// The client's queries; each answer names its canary. Returns what each printed.
fn queries(client: &Pod) -> Vec<(String, String)> {
    let run = |what: &str, program: &str, args: &[&str]| {
        let out = client.exec(program, args).unwrap();
        (what.to_string(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    vec![
        run("postgres", "psql", &["-h", "pg", "-p", "5432", "-U", "postgres", "-tA", "-c", "select 'weft-canary-' || 'pg'"]),
        run("mariadb", "mariadb", &["-h", "mysql", "-P", "3306", "-u", "root", "--skip-ssl", "-N", "-e", "select concat('weft-canary-', 'my')"]),
        run("redis", "redis-cli", &["-h", "cache", "-p", "6379", "echo", "weft-canary-redis"]),
        run("redis on an opaque port", "redis-cli", &["-h", "cache", "-p", "27017", "echo", "weft-canary-opaque"]),
    ]
}

#[test]
fn meshed_postgres_mariadb_and_redis_work_under_strict_and_permissive_and_the_wire_is_encrypted() {
    let net = Net::new().expect("network namespaces");
    let data = std::env::temp_dir().join(format!("weft-e2e-db-{}", std::process::id()));
    let ctl = ControllerProcess::start(&net, &data).unwrap();
    ctl.apply(&format!("{SERVICES}---\n{}", peer_authentication("STRICT"))).unwrap();
    let db = net.pod("db").unwrap();
    start_databases(&db);
    let token = ctl.token("default", "db").unwrap();
    db.start_meshed_proxy(ctl.grpc, "default", "app=db", &["--service-account", "db", "--token", &token]).unwrap();
    let client = net.pod("client").unwrap();
    client.set_hosts(&[("pg", "10.96.0.40"), ("mysql", "10.96.0.41"), ("cache", "10.96.0.42")]).unwrap();
    let token = ctl.token("default", "client").unwrap();
    client.start_meshed_proxy(ctl.grpc, "default", "app=client", &["--service-account", "client", "--token", &token]).unwrap();

    for mode in ["STRICT", "PERMISSIVE"] {
        ctl.apply(&peer_authentication(mode)).unwrap();
        ctl.wait_for_config("db", &format!("{mode} inbound"), Duration::from_secs(10), |c| c["inbound"]["mtls"].as_str().unwrap_or("PERMISSIVE") == mode);
        ctl.wait_for_config("client", "the db's identity", Duration::from_secs(10), |c| c.to_string().contains("spiffe://cluster.local/ns/default/sa/db"));
        let capture = Capture::start(&db.veth_host, "tcp port 5432 or tcp port 3306 or tcp port 6379 or tcp port 27017", db.ip).unwrap();
        let answers = queries(&client);
        let pcap = capture.stop().unwrap();
        for (what, printed) in &answers {
            let canary = format!("weft-canary-{}", match what.as_str() { "postgres" => "pg", "mariadb" => "my", "redis" => "redis", _ => "opaque" });
            assert!(printed.contains(&canary), "{mode}: {what} answered {printed:?}\nclient:\n{}\ndb:\n{}", client.logs(), db.logs());
            assert!(!contains_bytes(&pcap, canary.as_bytes()), "{mode}: {what}'s answer crossed the wire in plaintext");
        }
        assert!(contains_bytes(&pcap, b"weft/tcp"), "{mode}: the connections were not mesh TLS");
    }

    // PERMISSIVE also takes a client without a proxy, in plaintext, on the same opaque ports.
    let outsider = net.pod("outsider").unwrap();
    let out = outsider.exec("psql", &["-h", &db.ip.to_string(), "-U", "postgres", "-tA", "-c", "select 40 + 2"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42", "{}", String::from_utf8_lossy(&out.stderr));
}
