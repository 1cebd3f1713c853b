//! Fits a score calibration from the trial scores that `voiceprint eval --scores-out` wrote, without
//! embedding anything again, and writes `calibration.json` for `scoring_dir` / `eval --scoring-dir`.
//!
//! ```text
//! cargo run --release --example fit_calibration -- SCORES.csv OUT_DIR VERSION "what it was fitted on"
//! ```
//!
//! The calibration maps the raw cosine (the `raw` column; no AS-norm) to a log-likelihood ratio by
//! prior-weighted logistic regression (prior 0.5), and keeps the non-target tail that the
//! service's target-FAR thresholds come from. Unscored trials (empty `raw`) are skipped.

use std::path::PathBuf;

use anyhow::{Context, bail};
use voiceprint::embed::CamPlusPlus;
use voiceprint::score::Calibration;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scores, out, version, trained_on] = args.as_slice() else {
        bail!("usage: fit_calibration SCORES.csv OUT_DIR VERSION TRAINED_ON");
    };
    let mut reader = csv::Reader::from_path(scores).with_context(|| format!("reading {scores}"))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{scores} has no `{name}` column"))
    };
    let (target_col, raw_col) = (col("target")?, col("raw")?);
    let (mut tar, mut non) = (Vec::new(), Vec::new());
    for row in reader.records() {
        let row = row?;
        let raw = row.get(raw_col).unwrap_or_default();
        if raw.is_empty() {
            continue;
        }
        let raw: f64 = raw.parse().with_context(|| format!("bad score {raw:?}"))?;
        match row.get(target_col) {
            Some("1") => tar.push(raw),
            Some("0") => non.push(raw),
            other => bail!("bad target value {other:?}"),
        }
    }
    let calibration = Calibration::fitted(
        &tar,
        &non,
        0.5,
        version.clone(),
        // The pinned checkpoint's identifier, as the engine reports it.
        CamPlusPlus::version_for_digest(voiceprint::model::MODEL_SHA256),
        format!(
            "{} target / {} non-target trials: {trained_on}; cosine scores, no normalisation",
            tar.len(),
            non.len()
        ),
    )?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("calibration.json"),
        serde_json::to_string_pretty(&calibration)? + "\n",
    )?;
    println!(
        "llr = {:.3}·cos {:+.3}; FAR 1 % at cos {:?}",
        calibration.slope,
        calibration.offset,
        calibration
            .nontarget_tail
            .iter()
            .find(|p| p[0] == 0.01)
            .map(|p| p[1])
    );
    Ok(())
}
