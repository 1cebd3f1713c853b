//! Subcommands of the `voiceprint` binary. Each lives in its own module with an `Args` struct and a
//! `run` function; this module only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod calibrate;
pub mod model;
pub mod recurring;

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
    /// Build the score-normalisation cohort and the calibration from a labelled development set.
    Calibrate(calibrate::CalibrateArgs),
    /// Cluster complainants by voice and report voices heard under several customer ids.
    Recurring(recurring::RecurringArgs),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Model(args) => model::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Recurring(args) => recurring::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
