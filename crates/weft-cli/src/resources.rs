//! `weft apply`, `weft get` and `weft delete` against the controller.

use crate::client::ControllerClient;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;
use weft_controller::store::{ObjectKey, StoredObject};

fn read_files(paths: &[PathBuf]) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            bail!("{} does not exist", p.display());
        }
        for f in weft_model::load::find_files(p).with_context(|| format!("reading {}", p.display()))? {
            let text = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            files.push(serde_json::json!({"name": f.display().to_string(), "text": text}));
        }
    }
    Ok(files)
}

fn print_messages(body: &serde_json::Value) {
    for m in body["messages"].as_array().into_iter().flatten() {
        if let Some(d) = m["display"].as_str() {
            eprintln!("{d}");
        }
    }
}

fn key_text(k: &serde_json::Value) -> String {
    serde_json::from_value::<ObjectKey>(k.clone()).map(|k| k.to_string()).unwrap_or_else(|_| k.to_string())
}

pub fn apply(client: &ControllerClient, files: &[PathBuf], dry_run: bool) -> anyhow::Result<ExitCode> {
    let req = serde_json::json!({"files": read_files(files)?, "dry_run": dry_run});
    let (status, body) = client.call(http::Method::POST, "/api/v1/apply", Some(req))?;
    print_messages(&body);
    for r in body["results"].as_array().into_iter().flatten() {
        println!("{} {}", key_text(&r["key"]), r["outcome"].as_str().unwrap_or(""));
    }
    if status >= 400 {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("apply failed"));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn delete(client: &ControllerClient, files: &[PathBuf], kind: Option<&str>, name: Option<&str>, namespace: &str) -> anyhow::Result<ExitCode> {
    let keys: Vec<ObjectKey> = if !files.is_empty() {
        let mut keys = Vec::new();
        for f in read_files(files)? {
            let (docs, _) = weft_model::load::split_documents(f["name"].as_str().unwrap_or(""), f["text"].as_str().unwrap_or(""));
            keys.extend(docs.iter().filter_map(|(_, v)| weft_controller::api::key_of(v)));
        }
        keys
    } else {
        let (Some(kind), Some(name)) = (kind, name) else { bail!("give -f FILE, or KIND NAME") };
        // Resolve the kind word against what is stored.
        let path = format!("/api/v1/resources?kind={}&namespace={}&name={}", enc(kind), enc(namespace), enc(name));
        let (_, body) = client.call(http::Method::GET, &path, None)?;
        let found: Vec<StoredObject> = serde_json::from_value(body).unwrap_or_default();
        if found.is_empty() {
            bail!("{kind} {namespace}/{name} not found");
        }
        found.into_iter().map(|o| o.key).collect()
    };
    let (status, body) = client.call(http::Method::POST, "/api/v1/delete", Some(serde_json::json!({"keys": keys})))?;
    if status >= 400 {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("delete failed"));
        return Ok(ExitCode::from(1));
    }
    for r in body["results"].as_array().into_iter().flatten() {
        println!("{} deleted", key_text(&r["key"]));
    }
    Ok(ExitCode::SUCCESS)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub fn get(client: &ControllerClient, kind: &str, name: Option<&str>, namespace: Option<&str>, output: &str) -> anyhow::Result<ExitCode> {
    let mut path = format!("/api/v1/resources?kind={}", enc(kind));
    if let Some(ns) = namespace {
        path += &format!("&namespace={}", enc(ns));
    }
    if let Some(n) = name {
        path += &format!("&name={}", enc(n));
    }
    let (_, body) = client.call(http::Method::GET, &path, None)?;
    let objects: Vec<StoredObject> = serde_json::from_value(body).context("controller answer")?;
    if objects.is_empty() {
        if name.is_some() {
            eprintln!("error: {kind} {} not found", name.unwrap_or_default());
            return Ok(ExitCode::from(1));
        }
        eprintln!("No resources found{}.", namespace.map(|n| format!(" in namespace {n}")).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    match output {
        "json" => {
            let bodies: Vec<&serde_json::Value> = objects.iter().map(|o| &o.body).collect();
            if bodies.len() == 1 && name.is_some() {
                text = serde_json::to_string_pretty(bodies[0])? + "\n";
            } else {
                text = serde_json::to_string_pretty(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": bodies}))? + "\n";
            }
        }
        "yaml" => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    text += "---\n";
                }
                text += &serde_norway::to_string(&o.body)?;
            }
        }
        wide_or_table => {
            let wide = wide_or_table == "wide";
            let mut header = vec!["NAMESPACE", "KIND", "NAME"];
            if wide {
                header.extend(["API VERSION", "RESOURCE VERSION"]);
            }
            let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            for o in &objects {
                let mut row = vec![o.key.namespace.clone(), o.key.kind.clone(), o.key.name.clone()];
                if wide {
                    row.push(o.body["apiVersion"].as_str().unwrap_or("").to_string());
                    row.push(o.resource_version.to_string());
                }
                rows.push(row);
            }
            text = table(rows);
        }
    }
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`weft get all | head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows.first().map(|r| r.len()).unwrap_or(0)).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        text += line.join("   ").trim_end();
        text.push('\n');
    }
    text
}

pub fn proxy_status(client: &ControllerClient, output: &str) -> anyhow::Result<ExitCode> {
    let (_, body) = client.call(http::Method::GET, "/api/v1/proxies", None)?;
    if output == "json" {
        write_stdout(&(serde_json::to_string_pretty(&body)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let proxies = body.as_array().cloned().unwrap_or_default();
    if proxies.is_empty() {
        eprintln!("No proxies are connected to the controller.");
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut rows = vec![["NAME", "NAMESPACE", "ADDRESS", "STATUS", "SENT", "ACKED", "LAST SEEN", "LAST NACK"].iter().map(|x| x.to_string()).collect()];
    for p in &proxies {
        rows.push(vec![
            s(&p["proxy_id"]),
            s(&p["namespace"]),
            s(&p["address"]),
            s(&p["status"]),
            s(&p["sent_version"]),
            s(&p["acked_version"]),
            format!("{}s ago", p["last_seen_seconds_ago"].as_u64().unwrap_or(0)),
            p["last_nack"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    write_stdout(&table(rows))?;
    Ok(ExitCode::SUCCESS)
}

pub fn create_api_token(client: &ControllerClient, name: &str, role: &str, ttl: &str) -> anyhow::Result<ExitCode> {
    let ttl = weft_model::values::parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let req = serde_json::json!({"name": name, "role": role, "ttl_seconds": ttl.as_secs()});
    let (status, body) = client.call(http::Method::POST, "/api/v1/api-tokens", Some(req))?;
    if status >= 400 {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("token not created"));
        return Ok(ExitCode::from(1));
    }
    println!("{}", body["token"].as_str().unwrap_or_default());
    eprintln!("API token for {name} ({role}), valid until unix time {}; pass it as --token or WEFT_API_TOKEN", body["expires_unix"]);
    Ok(ExitCode::SUCCESS)
}

pub fn create_api_cert(client: &ControllerClient, trust_domain: &str, role: &str, out: &std::path::Path, ttl: &str) -> anyhow::Result<ExitCode> {
    let ttl = weft_model::values::parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let sa = if role == "admin" { "weft-admin" } else { "weft-reader" };
    let id = weft_identity::SpiffeId::new(trust_domain, "weft-system", sa)?;
    let key = weft_identity::csr::generate(&id)?;
    let req = serde_json::json!({"role": role, "csr_pem": key.csr_pem, "ttl_seconds": ttl.as_secs()});
    let (status, body) = client.call(http::Method::POST, "/api/v1/operator-certs", Some(req))?;
    if status >= 400 {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("certificate not issued"));
        return Ok(ExitCode::from(1));
    }
    use weft_identity::files::{private_dir, write_atomic};
    private_dir(out).with_context(|| out.display().to_string())?;
    write_atomic(&out.join("key.pem"), key.key_pem.as_bytes(), 0o600)?;
    write_atomic(&out.join("cert-chain.pem"), body["chain_pem"].as_str().unwrap_or_default().as_bytes(), 0o644)?;
    write_atomic(&out.join("root-cert.pem"), body["roots_pem"].as_str().unwrap_or_default().as_bytes(), 0o644)?;
    let (serial, dir) = (body["serial"].as_str().unwrap_or("?"), out.display());
    eprintln!("{id} certificate (serial {serial}) in {dir}: use --client-cert {dir}/cert-chain.pem --client-key {dir}/key.pem --ca-file {dir}/root-cert.pem");
    Ok(ExitCode::SUCCESS)
}

pub fn create_token(client: &ControllerClient, namespace: &str, service_account: &str, ttl: &str) -> anyhow::Result<ExitCode> {
    let ttl = weft_model::values::parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let req = serde_json::json!({"namespace": namespace, "service_account": service_account, "ttl_seconds": ttl.as_secs()});
    let (status, body) = client.call(http::Method::POST, "/api/v1/tokens", Some(req))?;
    if status >= 400 {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("token not created"));
        return Ok(ExitCode::from(1));
    }
    eprintln!("token for {} (valid until unix time {})", body["spiffe_id"].as_str().unwrap_or(""), body["expires_unix"]);
    write_stdout(&format!("{}\n", body["token"].as_str().unwrap_or("")))?;
    Ok(ExitCode::SUCCESS)
}

pub fn tls_check(client: &ControllerClient, proxy: &str, host: Option<&str>, output: &str) -> anyhow::Result<ExitCode> {
    let (status, body) = client.call(http::Method::GET, &format!("/api/v1/proxies/{}/tls", enc(proxy)), None)?;
    if status == 404 {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("no such proxy"));
        return Ok(ExitCode::from(1));
    }
    let rows: Vec<&serde_json::Value> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| host.is_none_or(|h| r["cluster"].as_str().is_some_and(|c| c.contains(h))))
        .collect();
    if output == "json" {
        write_stdout(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
    } else {
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
        let mut table_rows = vec![vec![
            "CLUSTER".to_string(),
            "ENDPOINT".into(),
            "CLIENT".into(),
            "SERVER".into(),
            "TRANSPORT".into(),
            "STATUS".into(),
            "SERVER IDENTITY".into(),
            "SERVER POLICY".into(),
        ]];
        for r in &rows {
            table_rows.push(vec![
                s(&r["cluster"]),
                s(&r["endpoint"]),
                s(&r["client"]),
                s(&r["server"]),
                s(&r["transport"]),
                s(&r["status"]),
                s(&r["identity"]),
                s(&r["server_policy"]),
            ]);
        }
        write_stdout(&table(table_rows))?;
    }
    let conflicts = rows.iter().filter(|r| r["status"].as_str().is_some_and(|s| s.starts_with("CONFLICT"))).count();
    Ok(if conflicts > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

pub fn proxy_config(client: &ControllerClient, proxy: &str, section: &str, output: &str) -> anyhow::Result<ExitCode> {
    if section == "secret" {
        let (status, body) = client.call(http::Method::GET, &format!("/api/v1/proxies/{}/secret", enc(proxy)), None)?;
        if status == 404 {
            eprintln!("error: {}", body["error"].as_str().unwrap_or("no certificate"));
            return Ok(ExitCode::from(1));
        }
        if output == "json" {
            write_stdout(&(serde_json::to_string_pretty(&body)? + "\n"))?;
        } else {
            let s = |k: &str| body[k].as_str().map(str::to_string).unwrap_or_else(|| body[k].to_string());
            let roots: Vec<String> = body["root_fingerprints"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
            write_stdout(&table(vec![
                vec!["SPIFFE ID".into(), "SERIAL".into(), "NOT BEFORE (unix)".into(), "NOT AFTER (unix)".into(), "ROOT SHA-256".into()],
                vec![s("spiffe_id"), s("serial"), s("not_before_unix"), s("not_after_unix"), roots.join(",")],
            ]))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (status, body) = client.call(http::Method::GET, &format!("/api/v1/proxies/{}/config", enc(proxy)), None)?;
    if status == 404 {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("no such proxy"));
        return Ok(ExitCode::from(1));
    }
    let part = match section {
        "listeners" => body["listeners"].clone(),
        "routes" => body["routes"].clone(),
        "clusters" | "endpoints" => body["clusters"].clone(),
        _ => body.clone(),
    };
    if output == "json" {
        write_stdout(&(serde_json::to_string_pretty(&part)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(x) => x.clone(),
        other => other.to_string(),
    };
    let list = |v: &serde_json::Value| v.as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_default();
    let mut text = String::new();
    if matches!(section, "all" | "listeners") {
        let mut rows = vec![vec!["LISTENER".to_string(), "KIND".into(), "ADDRESS".into(), "PROTOCOL".into()]];
        for l in body["listeners"].as_array().into_iter().flatten() {
            rows.push(vec![s(&l["name"]), s(&l["kind"]), s(&l["address"]), s(&l["protocol"])]);
        }
        text += &table(rows);
    }
    if matches!(section, "all" | "routes") {
        let mut rows = vec![vec!["ROUTE".to_string(), "DESTINATIONS".into(), "HOSTS".into(), "CLUSTER".into()]];
        for r in body["routes"].as_array().into_iter().flatten() {
            rows.push(vec![s(&r["name"]), list(&r["destinations"]), list(&r["hosts"]), s(&r["cluster"])]);
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text += &table(rows);
    }
    if matches!(section, "all" | "clusters" | "endpoints") {
        let mut rows = vec![vec!["CLUSTER".to_string(), "LB".into(), "TLS".into(), "LIMITS".into(), "ENDPOINTS".into()]];
        // A meshed endpoint shows as `ADDRESS (mTLS)`, a weighted one as `ADDRESS (weight N)`.
        let endpoint = |e: &serde_json::Value| {
            let Some(a) = e.get("address") else { return s(e) };
            let mut notes = Vec::new();
            if e.get("identity").is_some() {
                notes.push("mTLS".to_string());
            }
            if let Some(w) = e.get("weight") {
                notes.push(format!("weight {w}"));
            }
            format!("{} ({})", s(a), notes.join(", "))
        };
        let or = |v: &serde_json::Value, default: &str| if v.is_null() { default.to_string() } else { s(v) };
        for c in body["clusters"].as_array().into_iter().flatten() {
            let eps: Vec<String> = c["endpoints"].as_array().into_iter().flatten().map(endpoint).collect();
            let mut limits = Vec::new();
            if c["pool"].is_object() {
                limits.push("pool");
            }
            if c["outlier"].is_object() {
                limits.push("outlier");
            }
            let lb = match c["hash_on"].as_object().and_then(|h| h.iter().next()) {
                Some((k, v)) => format!("ring_hash({k}={})", s(v)),
                None => or(&c["lb"], "round_robin"),
            };
            rows.push(vec![s(&c["name"]), lb, or(&c["tls"], "auto"), if limits.is_empty() { "-".into() } else { limits.join(",") }, eps.join(",")]);
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text += &table(rows);
    }
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
