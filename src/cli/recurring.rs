//! `voiceprint recurring`: find voices that complain for more than one customer.

use std::path::PathBuf;

use anyhow::{Context, bail};

use rayon::prelude::*;
use voiceprint::audio::DecodeOptions;
use voiceprint::pipeline::{Engine, EngineConfig};
use voiceprint::recurring::{ClusterOptions, Complaint, cluster};

use super::manifest::ComplaintRow;

/// Cluster the complainants of a manifest by voice and report voices heard under several customers.
#[derive(clap::Args)]
pub struct RecurringArgs {
    /// CSV manifest with columns `complaint_id,customer_id,audio[,channel]`; audio paths are
    /// relative to the manifest's folder.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Where to write the JSON array of suspicious clusters.
    #[arg(long)]
    pub out: PathBuf,
    /// Cosine at which two voices are taken for one (average linkage stops below it).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Distinct customer ids a voice must appear under to be reported.
    #[arg(long, default_value_t = 2)]
    pub min_customers: usize,
    /// CAM++ checkpoint; fetched into the default model folder when not given.
    #[arg(long, env = "VOICEPRINT_MODEL")]
    pub model: Option<PathBuf>,
}

/// Default clustering threshold for CAM++ cosines (pipeline embeddings). Measured with
/// `examples/recurring_devset.rs` on the µ-law copies of the dev set: different talents score
/// 0.52 ± 0.10 there (the shared telephone channel raises them), the same talent 0.78 ± 0.07, and
/// the flagged clusters reach precision 0.75 / recall 0.92 at 0.75 (0.14 / 0.37 at the former 0.6,
/// 0.85 / 0.86 at 0.8). 0.75 rather than 0.8 because clean same-speaker pairs of the fixtures
/// score down to 0.76. See docs/workflows.md.
const DEFAULT_THRESHOLD: f64 = 0.75;

/// Runs `voiceprint recurring`.
pub fn run(args: RecurringArgs) -> anyhow::Result<()> {
    let opts = ClusterOptions {
        min_customers: args.min_customers,
        ..ClusterOptions::with_threshold(args.threshold)
    };
    let manifest = super::manifest::read(&args.manifest)?;
    let mut failed = manifest.bad.len();
    for bad in &manifest.bad {
        eprintln!("{}", bad.describe());
    }
    let rows = manifest.rows;
    let model_path = match args.model {
        Some(p) => p,
        None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())
            .context("cannot locate the CAM++ model")?,
    };
    let engine =
        Engine::load(EngineConfig::new(model_path)).context("cannot load the embedding engine")?;
    let results: Vec<Result<Complaint, String>> =
        rows.par_iter().map(|row| embed_row(&engine, row)).collect();
    let mut complaints = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(c) => complaints.push(c),
            Err(msg) => {
                failed += 1;
                eprintln!("{msg}");
            }
        }
    }
    if complaints.is_empty() {
        bail!(
            "no complaint of {} could be embedded",
            args.manifest.display()
        );
    }
    let clusters = cluster(&complaints, &opts)?;
    let json = serde_json::to_string_pretty(&clusters)?;
    std::fs::write(&args.out, json + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "{} complaints embedded, {failed} skipped, {} suspicious clusters written to {}",
        complaints.len(),
        clusters.len(),
        args.out.display()
    );
    Ok(())
}

/// Embeds one manifest row; the error is the line to report.
fn embed_row(engine: &Engine, row: &ComplaintRow) -> Result<Complaint, String> {
    let fail = |msg: String| format!("complaint {}: skipped: {msg}", row.complaint_id);
    let decode = DecodeOptions {
        channel: row.channel,
        ..DecodeOptions::default()
    };
    let path = &row.audio;
    let analysis = engine
        .analyze_file(path, &decode)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let embedding = analysis.embedding.ok_or_else(|| {
        fail(format!(
            "{}: not enough speech for an embedding",
            path.display()
        ))
    })?;
    Ok(Complaint {
        complaint_id: row.complaint_id.clone(),
        customer_id: row.customer_id.clone(),
        embedding,
    })
}
