//! `voiceprint calibrate`: builds the AS-norm cohort and the score calibration from a labelled
//! development set, honestly: every trial is normalised with a cohort that holds none of its two
//! speakers, so the fitted calibration is the one unseen callers get.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use rayon::prelude::*;
use voiceprint::audio::DecodeOptions;
use voiceprint::pipeline::{Engine, EngineConfig, ScoringSource};
use voiceprint::score::{self, Calibration, Cohort, Prepared, Scorer};

/// Arguments of `voiceprint calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Corpus manifest with at least the columns `path,speaker` (paths relative to its folder):
    /// every clip becomes a cohort embedding and gives speaker labels to the trials.
    #[arg(long)]
    manifest: PathBuf,
    /// Trial lists (`enroll,test,target`, paths relative to the list's folder) to fit on.
    #[arg(long = "trials", required = true)]
    trials: Vec<PathBuf>,
    /// Also put these files (paths relative to the manifest's folder, one per line) in the cohort,
    /// with the speaker of the manifest clip they were made from (e.g. telephony copies).
    #[arg(long)]
    extra_cohort: Option<PathBuf>,
    /// How many of the highest cohort scores AS-norm uses.
    #[arg(long, default_value_t = score::DEFAULT_TOP_N)]
    top_n: usize,
    /// Effective target prior of the logistic regression (0.5 minimises Cllr).
    #[arg(long, default_value_t = 0.5)]
    prior: f64,
    /// Version string written into the calibration.
    #[arg(long, default_value = "dev")]
    version: String,
    /// Output directory for `cohort.npy` and `calibration.json`.
    #[arg(long)]
    out: PathBuf,
    /// Score normalisation the calibration is fitted for: `none` (calibrated cosine) or `asnorm`.
    #[arg(long, default_value = "none", value_parser = ["none", "asnorm"])]
    norm: String,
    /// Write every trial's scores (list, target, raw, asnorm) to this CSV.
    #[arg(long)]
    scores_out: Option<PathBuf>,
    /// The CAM++ checkpoint (default: the managed model directory).
    #[arg(long)]
    model: Option<PathBuf>,
}

/// One scored trial: (list index, target, raw cosine, AS-norm score).
type Scored = (usize, bool, f64, f64);

struct Trial {
    list: usize,
    enroll: usize,
    test: usize,
    target: bool,
}

/// Maps a file of a trial list to the manifest clip it was derived from (telephony copies live
/// under `tel/` with `.ulaw.wav` / `.alaw.wav` in place of `.wav`).
fn source_clip(rel: &str) -> String {
    let stripped = rel.strip_prefix("tel/").unwrap_or(rel);
    for suffix in [".ulaw.wav", ".alaw.wav"] {
        if let Some(base) = stripped.strip_suffix(suffix) {
            return format!("{base}.wav");
        }
    }
    stripped.to_string()
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    let model_path = match args.model {
        Some(p) => p,
        None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())?,
    };
    let mut config = EngineConfig::new(model_path);
    config.scoring = ScoringSource::Raw;
    let engine = Engine::load(config)?;

    let root = args
        .manifest
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut speaker_of: HashMap<String, String> = HashMap::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    let mut file_speaker: Vec<String> = Vec::new();
    let mut in_cohort: Vec<bool> = Vec::new();
    let mut add = |path: PathBuf,
                   speaker: String,
                   cohort: bool,
                   files: &mut Vec<PathBuf>,
                   file_speaker: &mut Vec<String>,
                   in_cohort: &mut Vec<bool>| {
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        if let Some(&i) = index.get(&path) {
            in_cohort[i] |= cohort;
            return i;
        }
        files.push(path.clone());
        file_speaker.push(speaker);
        in_cohort.push(cohort);
        index.insert(path, files.len() - 1);
        files.len() - 1
    };

    let mut reader = csv::Reader::from_path(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(pc), Some(sc)) = (col("path"), col("speaker")) else {
        bail!("{}: needs columns path,speaker", args.manifest.display());
    };
    for (line, record) in reader.records().enumerate() {
        let record =
            record.with_context(|| format!("{} line {}", args.manifest.display(), line + 2))?;
        let (path, speaker) = (record.get(pc).unwrap_or(""), record.get(sc).unwrap_or(""));
        speaker_of.insert(path.to_string(), speaker.to_string());
        add(
            root.join(path),
            speaker.to_string(),
            true,
            &mut files,
            &mut file_speaker,
            &mut in_cohort,
        );
    }
    if let Some(extra) = &args.extra_cohort {
        let text = std::fs::read_to_string(extra)
            .with_context(|| format!("reading {}", extra.display()))?;
        for rel in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Some(speaker) = speaker_of.get(&source_clip(rel)) else {
                bail!("{}: {rel} derives from no manifest clip", extra.display());
            };
            add(
                root.join(rel),
                speaker.clone(),
                true,
                &mut files,
                &mut file_speaker,
                &mut in_cohort,
            );
        }
    }
    let mut trials = Vec::new();
    for (list_index, list) in args.trials.iter().enumerate() {
        let base = list.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut reader =
            csv::Reader::from_path(list).with_context(|| format!("reading {}", list.display()))?;
        for (line, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{} line {}", list.display(), line + 2))?;
            let (Some(e), Some(t), Some(y)) = (record.get(0), record.get(1), record.get(2)) else {
                bail!(
                    "{} line {}: expected enroll,test,target",
                    list.display(),
                    line + 2
                );
            };
            let speaker = |rel: &str| -> anyhow::Result<String> {
                let rel_to_root = base.join(rel);
                let rel_to_root = rel_to_root.strip_prefix(&root).unwrap_or(&rel_to_root);
                speaker_of
                    .get(&source_clip(&rel_to_root.to_string_lossy()))
                    .cloned()
                    .with_context(|| format!("{}: no speaker label for {rel}", list.display()))
            };
            let (se, st) = (speaker(e)?, speaker(t)?);
            let enroll = add(
                base.join(e),
                se,
                false,
                &mut files,
                &mut file_speaker,
                &mut in_cohort,
            );
            let test = add(
                base.join(t),
                st,
                false,
                &mut files,
                &mut file_speaker,
                &mut in_cohort,
            );
            trials.push(Trial {
                list: list_index,
                enroll,
                test,
                target: y.trim() == "1",
            });
        }
    }

    eprintln!("embedding {} files ...", files.len());
    let progress = indicatif::ProgressBar::new(files.len() as u64);
    let opts = DecodeOptions::default();
    let embeddings: Vec<Option<Vec<f32>>> = files
        .par_iter()
        .map(|f| {
            let e = engine.analyze_file(f, &opts).ok().and_then(|a| a.embedding);
            progress.inc(1);
            e
        })
        .collect();
    progress.finish_and_clear();

    // Speaker ids as small integers, cohort rows and their speakers.
    let mut speaker_ids: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &file_speaker {
        let n = speaker_ids.len();
        speaker_ids.entry(s.as_str()).or_insert(n);
    }
    let spk: Vec<usize> = file_speaker
        .iter()
        .map(|s| speaker_ids[s.as_str()])
        .collect();
    let cohort_rows: Vec<usize> = (0..files.len())
        .filter(|&i| in_cohort[i] && embeddings[i].is_some())
        .collect();
    let dim = voiceprint::embed::CamPlusPlus::EMBEDDING_DIM;
    let mut cohort_data = Vec::with_capacity(cohort_rows.len() * dim);
    for &i in &cohort_rows {
        cohort_data.extend_from_slice(embeddings[i].as_deref().unwrap_or(&[]));
    }
    let cohort = Cohort::new(cohort_data.clone(), dim)?;

    // Per trial: AS-norm statistics from the cohort minus both trial speakers.
    let top_n = args.top_n.max(1);
    let stats = |file: usize, exclude: [usize; 2]| -> Option<Prepared> {
        let e = embeddings[file].as_ref()?;
        let mut scores: Vec<f32> = cohort_rows
            .iter()
            .filter(|&&r| !exclude.contains(&spk[r]))
            .map(|&r| score::dot(embeddings[r].as_deref().unwrap_or(&[]), e))
            .collect();
        let n = top_n.min(scores.len()).max(1);
        let split = scores.len().saturating_sub(n);
        scores.select_nth_unstable_by(split, |a, b| a.total_cmp(b));
        let top = &scores[split..];
        let mean = top.iter().map(|&x| f64::from(x)).sum::<f64>() / top.len() as f64;
        let var = top
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (top.len().saturating_sub(1).max(1)) as f64;
        Some(Prepared {
            embedding: e.clone(),
            cohort_mean: mean as f32,
            cohort_std: (var.sqrt() as f32).max(1e-4),
            channel: None,
        })
    };
    let asnorm = Scorer::new(Some(cohort), None).with_top_n(top_n);
    // (list, target, raw cosine, AS-norm) per scorable trial.
    let scored: Vec<Scored> = trials
        .par_iter()
        .filter_map(|t| {
            let ex = [spk[t.enroll], spk[t.test]];
            let (a, b) = (stats(t.enroll, ex)?, stats(t.test, ex)?);
            let s = asnorm.score(&a, &b);
            Some((t.list, t.target, f64::from(s.raw), s.norm))
        })
        .collect();
    let unscored = trials.len() - scored.len();
    let use_asnorm = args.norm == "asnorm";
    let pick = |s: &Scored| if use_asnorm { s.3 } else { s.2 };
    let tar: Vec<f64> = scored.iter().filter(|s| s.1).map(pick).collect();
    let non: Vec<f64> = scored.iter().filter(|s| !s.1).map(pick).collect();
    let calibration = Calibration {
        asnorm: use_asnorm,
        cohort_top_n: top_n,
        ..Calibration::fitted(
            &tar,
            &non,
            args.prior,
            args.version.clone(),
            engine.model_version().to_string(),
            format!(
                "{} target / {} non-target trials from {}; {}",
                tar.len(),
                non.len(),
                args.trials
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if use_asnorm {
                    format!(
                        "AS-norm (top {top_n}) against a cohort of {} embeddings from {} speakers, leaving the trial's speakers out",
                        cohort_rows.len(),
                        speaker_ids.len()
                    )
                } else {
                    "cosine scores, no normalisation".to_string()
                }
            ),
        )?
    };
    std::fs::create_dir_all(&args.out)?;
    voiceprint::npy::write_f32(
        args.out.join("cohort.npy"),
        &[cohort_rows.len(), dim],
        &cohort_data,
    )?;
    std::fs::write(
        args.out.join("calibration.json"),
        serde_json::to_string_pretty(&calibration)? + "\n",
    )?;
    if let Some(path) = &args.scores_out {
        let mut out = csv::Writer::from_path(path)?;
        out.write_record(["list", "target", "raw", "asnorm"])?;
        for (list, target, raw, norm) in &scored {
            out.write_record([
                args.trials[*list].display().to_string(),
                u8::from(*target).to_string(),
                raw.to_string(),
                norm.to_string(),
            ])?;
        }
        out.flush()?;
    }
    let llr = |s: f64| calibration.slope * s + calibration.offset;
    let report = |subset: &dyn Fn(usize) -> bool| -> anyhow::Result<serde_json::Value> {
        let part: Vec<_> = scored.iter().filter(|s| subset(s.0)).collect();
        let split = |f: &dyn Fn(&Scored) -> f64, target: bool| -> Vec<f64> {
            part.iter()
                .filter(|s| s.1 == target)
                .map(|s| f(s))
                .collect()
        };
        let (raw_t, raw_n) = (split(&|s| s.2, true), split(&|s| s.2, false));
        let (norm_t, norm_n) = (split(&|s| s.3, true), split(&|s| s.3, false));
        let (cal_t, cal_n) = (
            split(&|s| llr(pick(s)), true),
            split(&|s| llr(pick(s)), false),
        );
        Ok(serde_json::json!({
            "trials": part.len(),
            "raw": summary(&raw_t, &raw_n, false)?,
            "asnorm": summary(&norm_t, &norm_n, false)?,
            "calibrated": summary(&cal_t, &cal_n, true)?,
        }))
    };
    let mut per_list = serde_json::Map::new();
    for (i, list) in args.trials.iter().enumerate() {
        per_list.insert(list.display().to_string(), report(&|l| l == i)?);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "unscored": unscored,
            "pooled": report(&|_| true)?,
            "per_list": per_list,
            "calibration": calibration,
        }))?
    );
    Ok(())
}

/// EER, minDCF and FRR at FAR 1 % / 0.1 % of a score set (and Cllr when the scores are LLRs).
fn summary(targets: &[f64], nontargets: &[f64], llrs: bool) -> anyhow::Result<serde_json::Value> {
    use voiceprint::eval::{DcfParams, ScoreSet, cllr};
    let set = ScoreSet::new(targets, nontargets)?;
    let eer = set.eer();
    Ok(serde_json::json!({
        "eer": eer.value,
        "eer_threshold": eer.threshold,
        "min_dcf": set.min_dcf(&DcfParams::default())?.value,
        "frr_at_far_1pct": set.frr_at_far(0.01)?.value,
        "frr_at_far_0_1pct": set.frr_at_far(0.001)?.value,
        "cllr": if llrs { Some(cllr(targets, nontargets)?) } else { None },
    }))
}
