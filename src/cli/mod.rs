//! Subcommands of the `voiceprint` binary. Each lives in its own module with an `Args` struct and a
//! `run` function; this module only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod batch;
mod calibrate;
mod client;
mod embed;
mod eval;
mod features;
mod load;
mod manifest;
mod model;
mod probe;
mod recurring;
mod serve;

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
    /// Run the gRPC service.
    Serve(serve::ServeArgs),
    /// Enrol a speaker through a server.
    Enroll(client::EnrollArgs),
    /// Verify a claimed speaker through a server.
    Verify(client::VerifyArgs),
    /// Identify a voice among the enrolled speakers or a watchlist.
    Identify(client::IdentifyArgs),
    /// Speaker lifecycle: get, opt-out, delete.
    Speaker(client::SpeakerArgs),
    /// Watchlists: create, list, add, add-cluster (a recurring voice), remove.
    Watchlist(client::WatchlistArgs),
    /// Export the audit log of a store.
    Audit(audit::AuditArgs),
    /// Load-test Verify on a loopback server.
    Load(load::LoadArgs),
    /// Build the score-normalisation cohort and the calibration from a labelled development set.
    Calibrate(calibrate::CalibrateArgs),
    /// Kaldi fbank / MFCC of an audio file, written as a float32 `.npy` (frames × dimension).
    Features(features::FeaturesArgs),
    /// Format, duration, net speech, SNR and clipping of an audio file.
    Probe(probe::ProbeArgs),
    /// Evaluate verification accuracy on a trial list (EER, minDCF, FRR at fixed FAR, Cllr, DET plot).
    Eval(eval::EvalArgs),
    /// Print the embedding (and quality) of one audio file.
    Embed(embed::EmbedArgs),
    /// Cluster complainants by voice and report voices heard under several customer ids.
    Recurring(recurring::RecurringArgs),
    /// Post-complaint matching: verify each complainant against the customer's voiceprint and
    /// search the gallery and watchlists for the voice.
    Batch(batch::BatchArgs),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Model(args) => model::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Enroll(args) => client::run_enroll(args),
        Command::Verify(args) => client::run_verify(args),
        Command::Identify(args) => client::run_identify(args),
        Command::Speaker(args) => client::run_speaker(args),
        Command::Watchlist(args) => client::run_watchlist(args),
        Command::Audit(args) => audit::run(args),
        Command::Load(args) => load::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Features(args) => features::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Recurring(args) => recurring::run(args),
        Command::Batch(args) => batch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
