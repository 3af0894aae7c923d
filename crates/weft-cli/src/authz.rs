//! `weft authz check POD`: the policies that apply to one workload, in the
//! order they are evaluated, with their rules in words; and with `--from`,
//! `--method`, `--path`, `--port` (or `--tcp`), what the workload's proxy
//! would decide for that call, and which policy and rule decide it. The
//! policies come from the controller (what it sent the proxy) or, with
//! `-f`, from files compiled the way the controller compiles them; the
//! decision is made by `weft-policy`, the code the proxy runs.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_policy::{Authorizer, Decision, Denial, DryRun, Hit, Request};
use weft_proto::authz::{Action, Authorization, Policy, Rule};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The workload: a proxy id or workload name (`weft proxy-status`), or with -f a Pod,
    /// Deployment or WorkloadEntry name in the files.
    pod: String,
    /// Its namespace (needed when the name is not unique).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Read policies from these files instead of the controller.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    files: Vec<PathBuf>,
    /// What if this caller called: a principal (cluster.local/ns/NS/sa/SA), a SPIFFE ID, a
    /// workload (its identity), or `none` for a caller without a mesh identity.
    #[arg(long)]
    from: Option<String>,
    /// The caller's address (ipBlocks, source.ip).
    #[arg(long, default_value = "10.0.0.1")]
    source_ip: std::net::IpAddr,
    /// The workload port called.
    #[arg(long)]
    port: Option<u16>,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// Host / :authority.
    #[arg(long, default_value = "")]
    host: String,
    /// A request header, `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// A verified JWT's principal (`ISSUER/SUBJECT`).
    #[arg(long)]
    request_principal: Option<String>,
    /// A claim of that JWT, `name=value` (a JSON value or a string; repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    /// The call is opaque TCP (no method, path or headers).
    #[arg(long)]
    tcp: bool,
    /// With -f: the default inbound policy the controller runs with.
    #[arg(long, default_value = "all-unauthenticated")]
    default_inbound_policy: String,
    /// With -f: the namespace whose selector-less policies apply to the whole mesh.
    #[arg(long, default_value = weft_model::mesh::DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

/// A workload's policies, and how to call a workload of the same source by name.
struct Subject {
    name: String,
    namespace: String,
    authorization: Authorization,
    /// Workload name -> its SPIFFE ID, for `--from NAME`.
    identities: BTreeMap<String, String>,
}

pub fn check(args: CheckArgs, conn: &crate::client::Connection) -> anyhow::Result<ExitCode> {
    let subject = if args.files.is_empty() { from_controller(&args, conn)? } else { from_files(&args, &conn.trust_domain)? };
    let authorizer = Authorizer::new(&subject.authorization, Some(&conn.trust_domain)).context("the policies do not compile")?;
    let what_if = args.from.is_some() || args.port.is_some() || args.tcp || !args.headers.is_empty() || args.request_principal.is_some();
    let mut out = String::new();
    let mut json = serde_json::json!({ "workload": subject.name, "namespace": subject.namespace, "authorization": subject.authorization });
    if !what_if {
        out += &render(&subject, &authorizer);
    }
    let mut code = ExitCode::SUCCESS;
    if what_if {
        let Some(port) = args.port else { bail!("--port is needed: the workload port the caller connects to") };
        let identity = match args.from.as_deref() {
            None | Some("none") => None,
            Some(f) if f.starts_with("spiffe://") => Some(f.to_string()),
            Some(f) if f.contains("/ns/") => Some(format!("spiffe://{f}")),
            Some(name) => Some(subject.identities.get(name).cloned().with_context(|| format!("no workload {name:?} to call from (give its principal instead)"))?),
        };
        let mut headers = http::HeaderMap::new();
        for h in &args.headers {
            let (k, v) = h.split_once('=').with_context(|| format!("--header {h:?} is not NAME=VALUE"))?;
            headers.append(http::HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes())?, http::HeaderValue::from_str(v.trim())?);
        }
        let jwt = match &args.request_principal {
            None => None,
            Some(rp) => {
                let (iss, sub) = rp.rsplit_once('/').with_context(|| format!("--request-principal {rp:?} is not ISSUER/SUBJECT"))?;
                let mut claims = serde_json::json!({ "iss": iss, "sub": sub });
                for c in &args.claims {
                    let (k, v) = c.split_once('=').with_context(|| format!("--claim {c:?} is not NAME=VALUE"))?;
                    claims[k] = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
                }
                Some(weft_policy::Verified { principal: rp.clone(), claims })
            }
        };
        let (path, _) = weft_policy::path::normalize(&args.path, subject.authorization.path_normalization).context("--path")?;
        let http = (!args.tcp).then(|| weft_policy::Http {
            method: &args.method,
            path: &path,
            host: &args.host,
            headers: &headers,
            remote_ip: weft_policy::remote_ip(&headers, args.source_ip, subject.authorization.trusted_hops),
            jwt: jwt.as_ref(),
        });
        let req = Request { peer_ip: args.source_ip, identity: identity.as_deref(), port, destination_ip: None, sni: None, http };
        let d = authorizer.evaluate(&req);
        let verdict = verdict(&authorizer, &req, &d);
        json["decision"] = serde_json::json!({ "allowed": d.allowed(), "explanation": verdict });
        out += &format!("{}\n", verdict.join("\n"));
        if !d.allowed() {
            code = ExitCode::from(1);
        }
    }
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&json)?),
        _ => print!("{out}"),
    }
    Ok(code)
}

fn from_controller(args: &CheckArgs, conn: &crate::client::Connection) -> anyhow::Result<Subject> {
    let client = crate::client::ControllerClient::new(conn)?;
    let (_, body) = client.call(http::Method::GET, "/api/v1/proxies", None)?;
    let proxies = body.as_array().cloned().unwrap_or_default();
    let field = |p: &serde_json::Value, k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let matching: Vec<&serde_json::Value> = proxies
        .iter()
        .filter(|p| field(p, "proxy_id") == args.pod || field(p, "workload") == args.pod)
        .filter(|p| args.namespace.as_ref().is_none_or(|n| field(p, "namespace") == *n))
        .collect();
    let proxy = match matching.as_slice() {
        [one] => *one,
        [] => bail!("no proxy or workload {:?} is connected (see weft proxy-status), or pass -f FILES", args.pod),
        _ => bail!("{:?} names several proxies; add -n NAMESPACE or use the proxy id", args.pod),
    };
    let id = field(proxy, "proxy_id");
    let (status, cfg) = client.call(http::Method::GET, &format!("/api/v1/proxies/{id}/config"), None)?;
    if !(200..300).contains(&status) {
        bail!("{}", cfg.get("error").and_then(|e| e.as_str()).unwrap_or("no config for this proxy yet"));
    }
    let authorization: Authorization = serde_json::from_value(cfg.pointer("/inbound/authorization").cloned().unwrap_or(serde_json::json!({})))
        .context("the controller sent an authorization section this weft does not read")?;
    let identities = proxies
        .iter()
        .filter_map(|p| Some((field(p, "workload"), p.get("identity")?.as_str()?.to_string())))
        .chain(proxies.iter().filter_map(|p| Some((field(p, "proxy_id"), p.get("identity")?.as_str()?.to_string()))))
        .collect();
    Ok(Subject { name: field(proxy, "workload"), namespace: field(proxy, "namespace"), authorization, identities })
}

fn from_files(args: &CheckArgs, trust_domain: &str) -> anyhow::Result<Subject> {
    let bundle = weft_model::load_paths(&args.files);
    if let Some(e) = bundle.messages.iter().find(|m| m.severity == weft_model::Severity::Error) {
        bail!("{e}");
    }
    let mesh = weft_model::mesh::Mesh::build(&bundle.resources, &args.root_namespace);
    let candidates: Vec<&weft_model::mesh::Workload> = mesh
        .workloads
        .iter()
        .filter(|w| w.name == args.pod && args.namespace.as_ref().is_none_or(|n| w.namespace == *n))
        .collect();
    let w = match candidates.as_slice() {
        [one] => *one,
        [] => bail!("no Pod, Deployment or WorkloadEntry {:?} in the files", args.pod),
        _ => bail!("{:?} names several workloads; add -n NAMESPACE", args.pod),
    };
    let settings = weft_controller::compile::authz::MeshPolicy {
        default_inbound_policy: weft_proto::authz::DefaultPolicy::parse(&args.default_inbound_policy)
            .with_context(|| format!("--default-inbound-policy {:?} is not one of {}", args.default_inbound_policy, weft_model::mesh::DEFAULT_POLICIES.join(", ")))?,
        ..Default::default()
    };
    let workload = weft_controller::compile::authz::WorkloadRef { namespace: &w.namespace, name: Some(&w.name), labels: &w.labels };
    let authorization = weft_controller::compile::authz::authorization(&mesh, &settings, &|_| None, &workload);
    let identities = mesh.workloads.iter().map(|x| (x.name.clone(), format!("spiffe://{trust_domain}/ns/{}/sa/{}", x.namespace, x.service_account))).collect();
    Ok(Subject { name: w.name.clone(), namespace: w.namespace.clone(), authorization, identities })
}

/// The policies in evaluation order, each with its rules in words.
fn render(s: &Subject, a: &Authorizer) -> String {
    let a_ = &s.authorization;
    let mut out = format!("Workload {}/{}: policies in the order they are evaluated\n", s.namespace, s.name);
    let section = |title: &str, pick: &dyn Fn(&Policy) -> bool, out: &mut String| {
        let list: Vec<(usize, &Policy)> = a.policies().iter().enumerate().filter(|(_, p)| pick(p)).collect();
        *out += &format!("\n{title}\n");
        if list.is_empty() {
            *out += "  (none)\n";
        }
        for (_, p) in list {
            let scope = if p.ports.is_empty() { String::new() } else { format!(" (port {})", p.ports.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")) };
            *out += &format!("  {} {}/{}{scope}\n", p.kind, p.namespace, p.name);
            if p.rules.is_empty() {
                *out += &format!("    {}\n", if p.action == Action::Allow { "no rules: allows nothing" } else { "no rules: matches nothing" });
            }
            for (i, r) in p.rules.iter().enumerate() {
                *out += &format!("    rules[{i}]: {}\n", rule_text(r));
            }
        }
    };
    section("1. DENY (any match refuses)", &|p| p.action == Action::Deny && !p.dry_run, &mut out);
    section("2. ALLOW (when any applies, one must match)", &|p| p.action == Action::Allow && !p.dry_run, &mut out);
    section("AUDIT (logged and counted, never decides)", &|p| p.action == Action::Audit, &mut out);
    section("DRY RUN (evaluated and counted, never enforced)", &|p| p.dry_run && p.action != Action::Audit, &mut out);
    let ports = if a_.server_ports.is_empty() { "every port".to_string() } else { format!("ports other than {}", a_.server_ports.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")) };
    out += &format!(
        "\n3. Default inbound policy, where no ALLOW policy applies ({ports}): {}{}\n",
        a_.default_policy.as_str(),
        a_.default_source.as_ref().map(|s| format!(" (from {s})")).unwrap_or_default()
    );
    if !a_.jwt_rules.is_empty() {
        out += "\nJWT (a token that does not verify gets 401; no token passes without a request principal)\n";
        for j in &a_.jwt_rules {
            let keys = if j.jwks.is_empty() { " (no keys: every token of it is refused)" } else { "" };
            out += &format!("  issuer {} from {}{keys}\n", j.issuer, j.source);
        }
    }
    out
}

fn list(name: &str, v: &[String], not: &[String]) -> Vec<String> {
    let mut parts = Vec::new();
    if !v.is_empty() {
        parts.push(format!("{name} [{}]", v.join(", ")));
    }
    if !not.is_empty() {
        parts.push(format!("{name} not [{}]", not.join(", ")));
    }
    parts
}

/// A rule in words: `from principals [..] or namespaces [..]; to methods [GET] paths [/api/*]; when ...`.
pub fn rule_text(r: &Rule) -> String {
    if r.from.is_empty() && r.to.is_empty() && r.when.is_empty() {
        return "every request".into();
    }
    let mut parts = Vec::new();
    if !r.from.is_empty() {
        let alts: Vec<String> = r
            .from
            .iter()
            .map(|s| {
                [
                    list("principals", &s.principals, &s.not_principals),
                    list("namespaces", &s.namespaces, &s.not_namespaces),
                    list("ipBlocks", &s.ip_blocks, &s.not_ip_blocks),
                    list("remoteIpBlocks", &s.remote_ip_blocks, &s.not_remote_ip_blocks),
                    list("requestPrincipals", &s.request_principals, &s.not_request_principals),
                ]
                .concat()
                .join(" and ")
            })
            .map(|t| if t.is_empty() { "anyone".to_string() } else { t })
            .collect();
        parts.push(format!("from {}", alts.join(" or ")));
    }
    if !r.to.is_empty() {
        let ports = |p: &[u16]| p.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let alts: Vec<String> = r
            .to
            .iter()
            .map(|o| {
                [
                    list("hosts", &o.hosts, &o.not_hosts),
                    list("ports", &ports(&o.ports), &ports(&o.not_ports)),
                    list("methods", &o.methods, &o.not_methods),
                    list("paths", &o.paths, &o.not_paths),
                ]
                .concat()
                .join(" and ")
            })
            .map(|t| if t.is_empty() { "anything".to_string() } else { t })
            .collect();
        parts.push(format!("to {}", alts.join(" or ")));
    }
    if !r.when.is_empty() {
        let conds: Vec<String> = r.when.iter().map(|c| list(&c.key, &c.values, &c.not_values).join(" and ")).collect();
        parts.push(format!("when {}", conds.join(" and ")));
    }
    parts.join("; ")
}

fn hit_text(a: &Authorizer, h: Hit) -> String {
    match h.rule {
        Some(r) => format!("{} rules[{r}]", a.name(h.policy)),
        None => a.name(h.policy),
    }
}

/// The decision in words: ALLOW or DENY, by which policy and rule, and why.
fn verdict(a: &Authorizer, req: &Request<'_>, d: &Decision) -> Vec<String> {
    let mut lines = vec![match d.denial {
        None => match d.allowed_by {
            Some(h) => format!("ALLOW: {} matched", hit_text(a, h)),
            None if a.is_open() => "ALLOW: no policy applies".into(),
            None => format!("ALLOW: no ALLOW policy applies, and the default inbound policy is {}", a.default_policy().as_str()),
        },
        Some(denial @ Denial::Denied(_)) | Some(denial @ Denial::NotAllowed(_)) | Some(denial @ Denial::Default(_)) => format!("DENY: {}", a.explain(req, denial)),
    }];
    if let Some(h) = d.audit {
        lines.push(format!("AUDIT: {} matched (logged and counted)", hit_text(a, h)));
    }
    match d.dry_run {
        Some(DryRun::WouldDeny(h)) => lines.push(format!("DRY RUN: {} would deny", hit_text(a, h))),
        Some(DryRun::WouldAllow(h)) => lines.push(format!("DRY RUN: {} would allow", hit_text(a, h))),
        Some(DryRun::WouldDenyByDefault) => lines.push("DRY RUN: the default policy (audit) would deny".into()),
        None => {}
    }
    lines
}
