//! Subcommands of the `voiceprint` binary. Each lives in its own module with an `Args` struct and a
//! `run` function; this module only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod model;

/// Speaker verification for call centres.
#[derive(Parser)]
#[command(name = "voiceprint", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch, locate or verify the CAM++ model file.
    Model(model::ModelArgs),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Model(args) => model::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
