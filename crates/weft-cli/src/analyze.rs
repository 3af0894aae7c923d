//! `weft analyze`: parse and validate configuration files, run the
//! cross-resource analyzers, print the messages, and fail at a threshold.

use anyhow::{bail, Context};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_model::{analyze, Severity};

/// Exit status when messages at or above the failure threshold were found
/// (the same status `istioctl analyze` uses, so CI scripts keep working).
pub const EXIT_ANALYSIS_FAILED: u8 = 79;

#[derive(clap::Args)]
#[command(after_help = "Exit status: 0 when no message reaches --failure-threshold, 79 when one does, 1 on usage errors.\n\
Message codes are stable: WEFT00xx are per-document problems, WEFT01xx cross-resource ones.\n\
Checks that need Services, workloads or Secrets run only when the input contains them.")]
pub struct Args {
    /// Files or directories (recursively, *.yaml *.yml *.json) to analyze; `-` reads stdin.
    /// Without -f, the controller's stored configuration is analyzed.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, default_value = "text", value_parser = ["text", "json", "yaml"])]
    output: String,
    /// Exit non-zero when a message at or above this severity is found.
    #[arg(long, default_value = "error", value_parser = ["info", "warning", "error"])]
    failure_threshold: String,
    /// Print only messages at or above this severity.
    #[arg(long, default_value = "info", value_parser = ["info", "warning", "error"])]
    output_threshold: String,
    /// Namespace whose selector-less policies apply to the whole mesh.
    #[arg(long, default_value = weft_model::mesh::DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
}

pub fn run(args: Args, controller: &crate::client::Connection) -> anyhow::Result<ExitCode> {
    let failure = Severity::parse(&args.failure_threshold).context("failure threshold")?;
    let shown = Severity::parse(&args.output_threshold).context("output threshold")?;
    if args.files.is_empty() {
        return live(controller, failure, shown, &args.output);
    }
    for f in &args.files {
        if f.as_os_str() != "-" && !f.exists() {
            bail!("{} does not exist", f.display());
        }
    }
    let bundle = weft_model::load_paths(&args.files);
    let opts = analyze::Options { root_namespace: args.root_namespace, trust_domain: controller.trust_domain.clone() };
    let mut messages = bundle.messages;
    messages.extend(analyze::analyze(&bundle.resources, &opts));
    weft_model::diag::sort_messages(&mut messages);
    let failed = messages.iter().any(|m| m.severity >= failure);
    messages.retain(|m| m.severity >= shown);

    let mut out = std::io::stdout().lock();
    match args.output.as_str() {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(&messages)?)?,
        "yaml" => write!(out, "{}", serde_norway::to_string(&messages)?)?,
        _ => {
            for m in &messages {
                writeln!(out, "{m}")?;
            }
            if messages.is_empty() {
                writeln!(out, "✔ No validation issues found when analyzing {} resources.", bundle.resources.len())?;
            }
        }
    }
    Ok(if failed { ExitCode::from(EXIT_ANALYSIS_FAILED) } else { ExitCode::SUCCESS })
}

/// Analysis of what the controller has stored.
fn live(controller: &crate::client::Connection, failure: Severity, shown: Severity, output: &str) -> anyhow::Result<ExitCode> {
    let client = crate::client::ControllerClient::new(controller)?;
    let (_, body) = client.call(http::Method::GET, "/api/v1/analyze", None)?;
    let all = body["messages"].as_array().cloned().unwrap_or_default();
    let sev = |m: &serde_json::Value| m["severity"].as_str().and_then(Severity::parse).unwrap_or(Severity::Info);
    let failed = all.iter().any(|m| sev(m) >= failure);
    let mut messages: Vec<serde_json::Value> = all.into_iter().filter(|m| sev(m) >= shown).collect();
    for m in &mut messages {
        if let Some(o) = m.as_object_mut() {
            o.remove("display");
        }
    }
    let mut out = std::io::stdout().lock();
    match output {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(&messages)?)?,
        "yaml" => write!(out, "{}", serde_norway::to_string(&messages)?)?,
        _ => {
            let shown_msgs = body["messages"].as_array().cloned().unwrap_or_default();
            for m in shown_msgs.iter().filter(|m| sev(m) >= shown) {
                writeln!(out, "{}", m["display"].as_str().unwrap_or(""))?;
            }
            if messages.is_empty() {
                writeln!(out, "✔ No validation issues found when analyzing {} stored resources.", body["resources"].as_u64().unwrap_or(0))?;
            }
        }
    }
    Ok(if failed { ExitCode::from(EXIT_ANALYSIS_FAILED) } else { ExitCode::SUCCESS })
}
