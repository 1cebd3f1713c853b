//! Subcommands of the `voiceprint` binary. Each lives in its own module with an `Args` struct and a
//! `run` function; this module only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Speaker verification for call centres.
#[derive(Parser)]
#[command(name = "voiceprint", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

/// Parses the command line and runs the subcommand.
#[allow(unreachable_code, unused_variables)] // until the first subcommand lands
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {};
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
