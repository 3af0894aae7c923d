//! `weft check`: numbered checks of the running mesh, each a pass or a
//! failure with a hint, in the style of `linkerd check`: the controller is
//! reachable and does not take proxies at their word (`--insecure-dev`),
//! the mesh root and every proxy's certificate are valid for long enough,
//! and every proxy runs the config it was sent. Exits 1 when a check fails.

use crate::client::ControllerClient;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Args {
    /// Warn about a mesh root that expires within this many days.
    #[arg(long, default_value_t = 30)]
    root_warn_days: u64,
}

/// One check's outcome.
struct Line {
    ok: bool,
    text: String,
    hint: Option<String>,
}

fn pass(text: impl Into<String>) -> Line {
    Line { ok: true, text: text.into(), hint: None }
}

fn fail(text: impl Into<String>, hint: impl Into<String>) -> Line {
    Line { ok: false, text: text.into(), hint: Some(hint.into()) }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn duration_text(secs: i64) -> String {
    match secs {
        s if s < 0 => "already".into(),
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The checks over the controller's status and proxies, as (section, lines).
fn checks(status: &serde_json::Value, proxies: &[serde_json::Value], root_warn_days: u64) -> Vec<(&'static str, Vec<Line>)> {
    let mut controller = vec![pass("the controller answers")];
    controller.push(if status["insecure_dev"].as_bool().unwrap_or(false) {
        fail(
            "the controller runs with --insecure-dev: proxies without a certificate are taken at their word about who they are",
            "a development mesh only; restart `weft controller` without --insecure-dev and give each proxy a join token (weft token create)",
        )
    } else {
        pass("proxies must prove who they are (certificates)")
    });
    let mut certs = Vec::new();
    match status["root_expires_unix"].as_i64() {
        Some(t) if t - now() < (root_warn_days * 86400) as i64 => certs.push(fail(
            format!("the mesh root expires in {}", duration_text(t - now())),
            "rotate the root: plug in a new CA with --ca-cert/--ca-key/--ca-roots (both roots in --ca-roots during the change)",
        )),
        Some(t) => certs.push(pass(format!("the mesh root is valid for {}", duration_text(t - now())))),
        None => certs.push(fail("the controller did not say when its root expires", "upgrade the controller")),
    }
    let connected: Vec<&str> = proxies.iter().filter(|p| p["status"] != "DISCONNECTED").filter_map(|p| p["proxy_id"].as_str()).collect();
    let mut soon = 0;
    if let Some(issued) = status["certificates"].as_object() {
        for (proxy, c) in issued.iter().filter(|(p, _)| connected.contains(&p.as_str())) {
            let (from, until) = (c["not_before_unix"].as_i64().unwrap_or(0), c["not_after_unix"].as_i64().unwrap_or(0));
            let (left, lifetime) = (until - now(), (until - from).max(1));
            // Renewal is due at half-life: under a quarter left means renewals have been failing.
            if left * 4 < lifetime {
                soon += 1;
                certs.push(fail(
                    format!("proxy {proxy}'s certificate ({}) expires in {}", c["spiffe_id"].as_str().unwrap_or("?"), duration_text(left)),
                    "the proxy is not renewing: see its log (`cannot get a workload certificate`), and that it reaches the controller",
                ));
            }
        }
    }
    if soon == 0 {
        certs.push(pass("every connected proxy's certificate has more than a quarter of its lifetime left"));
    }
    let mut synced = Vec::new();
    for p in proxies {
        let (id, st) = (p["proxy_id"].as_str().unwrap_or("?"), p["status"].as_str().unwrap_or("?"));
        match st {
            "SYNCED" => {}
            "NACKED" => synced.push(fail(
                format!("proxy {id} refused its config: {}", p["last_nack"].as_str().unwrap_or("")),
                "fix the configuration the proxy refused (weft analyze), or the proxy's bootstrap config",
            )),
            other => synced.push(fail(format!("proxy {id} is {other}"), "see `weft proxy-status`")),
        }
    }
    if synced.is_empty() {
        synced.push(pass(format!("{} proxies, all SYNCED", proxies.len())));
    }
    vec![("controller", controller), ("certificates", certs), ("proxies", synced)]
}

pub fn run(client: &ControllerClient, args: Args) -> anyhow::Result<ExitCode> {
    let (_, status) = client.call(http::Method::GET, "/api/v1/status", None)?;
    let (_, proxies) = client.call(http::Method::GET, "/api/v1/proxies", None)?;
    let proxies = proxies.as_array().cloned().unwrap_or_default();
    let mut failed = 0;
    let mut n = 0;
    for (section, lines) in checks(&status, &proxies, args.root_warn_days) {
        println!("{section}\n{}", "-".repeat(section.len()));
        for l in lines {
            n += 1;
            println!("{} [{n}] {}", if l.ok { "√" } else { "×" }, l.text);
            if let Some(h) = l.hint {
                println!("      hint: {h}");
            }
            failed += usize::from(!l.ok);
        }
        println!();
    }
    if failed == 0 {
        println!("Status check results are √");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Status check results are × ({failed} failed)");
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insecure_controller_and_an_expiring_certificate_fail_and_nothing_else_does() {
        let t = now();
        let status = serde_json::json!({
            "insecure_dev": true,
            "root_expires_unix": t + 3650 * 86400,
            "certificates": {
                "web": {"spiffe_id": "spiffe://cluster.local/ns/a/sa/web", "not_before_unix": t - 90, "not_after_unix": t + 10},
                "api": {"spiffe_id": "spiffe://cluster.local/ns/a/sa/api", "not_before_unix": t - 10, "not_after_unix": t + 90},
                "gone": {"spiffe_id": "spiffe://cluster.local/ns/a/sa/gone", "not_before_unix": t - 90, "not_after_unix": t + 1},
            }
        });
        let proxies = vec![
            serde_json::json!({"proxy_id": "web", "status": "SYNCED"}),
            serde_json::json!({"proxy_id": "api", "status": "SYNCED"}),
            serde_json::json!({"proxy_id": "gone", "status": "DISCONNECTED"}),
        ];
        let failures: Vec<String> = checks(&status, &proxies, 30).into_iter().flat_map(|(_, l)| l).filter(|l| !l.ok).map(|l| l.text).collect();
        assert_eq!(failures.len(), 3, "{failures:#?}");
        assert!(failures[0].contains("--insecure-dev"));
        assert!(failures[1].starts_with("proxy web's certificate (spiffe://cluster.local/ns/a/sa/web) expires in"), "{}", failures[1]);
        assert_eq!(failures[2], "proxy gone is DISCONNECTED");
    }
}
