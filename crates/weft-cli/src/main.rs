//! `weft`: the command users run for everything the mesh does. Each
//! subcommand lives in its own module; this file only parses the command line.

mod analyze;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// weft: a lightweight service mesh that reads the Istio, Gateway API and
/// Linkerd/SMI configuration you already have.
#[derive(Parser)]
#[command(name = "weft", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate mesh configuration files and find cross-resource problems.
    Analyze(analyze::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => analyze::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
