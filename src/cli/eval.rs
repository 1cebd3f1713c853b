//! `voiceprint eval`: embed every file of a trial list once, score every trial with the production scoring
//! path and report EER, minDCF, FRR at fixed FAR and Cllr (JSON or a table), optionally a DET plot.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::{Value, json};

use voiceprint::audio::{ChannelSelect, DecodeOptions, decode_file};
use voiceprint::eval::{
    DcfParams, DetSystem, ScoreSet, TrialList, actual_dcf, cllr, write_det_svg,
};
use voiceprint::pipeline::{Engine, EngineConfig, ScoringSource};
use voiceprint::score::{Channel, Prepared};

/// The service's default minimum of net speech per side of a verification, seconds.
const DEFAULT_MIN_SPEECH_SECONDS: f64 = 1.0;

/// Which score of the production scoring path the headline metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScoreKind {
    /// Cosine similarity of the L2-normalised embeddings.
    Raw,
    /// Adaptive score normalisation against the cohort.
    Asnorm,
    /// The calibrated log-likelihood ratio (production).
    Calibrated,
}

impl ScoreKind {
    const ALL: [ScoreKind; 3] = [ScoreKind::Raw, ScoreKind::Asnorm, ScoreKind::Calibrated];

    fn name(self) -> &'static str {
        match self {
            ScoreKind::Raw => "raw",
            ScoreKind::Asnorm => "asnorm",
            ScoreKind::Calibrated => "calibrated",
        }
    }
}

/// Arguments of `voiceprint eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Trial list CSV with header `enroll,test,target` (paths relative to the CSV's folder) and optional
    /// `enroll_channel`, `test_channel` (`left`, `right`, `mix` or a channel index).
    #[arg(long)]
    pub trials: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Draw the DET curve (raw cosine and the normalised score) as SVG to this path.
    #[arg(long, value_name = "PATH.svg")]
    pub det: Option<PathBuf>,
    /// Which score the headline metrics use.
    #[arg(long, value_enum, default_value_t = ScoreKind::Calibrated)]
    pub score: ScoreKind,
    /// Embed the whole utterance (no voice activity detection).
    #[arg(long)]
    pub no_vad: bool,
    /// Model checkpoint (default: the fetched CAM++ model in the model directory).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Cohort and calibration directory (`cohort.npy`, `calibration.json`) instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub scoring_dir: Option<PathBuf>,
    /// Drop trials where either side fails the quality gate (net speech below `--min-speech`).
    #[arg(long)]
    pub gate: bool,
    /// Net speech in seconds below which a side fails the quality gate.
    #[arg(long, default_value_t = DEFAULT_MIN_SPEECH_SECONDS)]
    pub min_speech: f64,
    /// List every unscored and gated trial with its reason.
    #[arg(long, short)]
    pub verbose: bool,
    /// Write per-trial scores as CSV (`line,target,raw,asnorm,llr,gated`) to this path.
    #[arg(long, value_name = "PATH.csv")]
    pub scores_out: Option<PathBuf>,
    /// Calibrate every trial with the default calibration instead of the one for its channel
    /// pairing (wideband/wideband, mixed, telephone/telephone).
    #[arg(long)]
    pub single_calibration: bool,
    /// Reuse and extend a cache of per-file embeddings (JSON lines), so that a file is embedded once
    /// across runs and trial lists. Entries are keyed by model version, speech selection (VAD on/off, kept gaps), canonical path,
    /// channel, size and modification time; delete the file when the front end's code changes.
    #[arg(long, value_name = "FILE.jsonl")]
    pub embeddings_cache: Option<PathBuf>,
}

/// One line of the embeddings cache: what analysing one input gave (decode failures are not cached).
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    key: String,
    net_speech: f64,
    /// `f32::to_bits` of the L2-normalised embedding (exact round trip); `None`: too little speech.
    embedding_bits: Option<Vec<u32>>,
    /// The recording channel; absent in entries written before channels were detected.
    #[serde(default)]
    channel: Option<Channel>,
}

/// Embeddings of earlier runs, and the file new ones are appended to as they are computed (so an
/// interrupted run keeps its work).
struct EmbeddingCache {
    known: HashMap<String, CacheEntry>,
    out: Mutex<std::fs::File>,
}

impl EmbeddingCache {
    /// Loads the cache; lines that do not parse (e.g. the last one of a killed run) are skipped.
    fn open(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut known = HashMap::new();
        let mut skipped = 0usize;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<CacheEntry>(line) {
                Ok(entry) => {
                    known.insert(entry.key.clone(), entry);
                }
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 {
            eprintln!(
                "{}: skipped {skipped} unreadable cache line(s)",
                path.display()
            );
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        if !text.is_empty() && !text.ends_with('\n') {
            // Terminate a truncated last line so the next entry starts on its own line.
            file.write_all(b"\n")?;
        }
        Ok(Self {
            known,
            out: Mutex::new(file),
        })
    }

    fn get(&self, key: &str) -> Option<&CacheEntry> {
        self.known.get(key)
    }

    fn append(&self, entry: &CacheEntry) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(entry)?;
        line.push('\n');
        let mut file = self
            .out
            .lock()
            .map_err(|_| anyhow::anyhow!("embeddings cache writer poisoned"))?;
        file.write_all(line.as_bytes())
            .context("cannot append to the embeddings cache")?;
        Ok(())
    }
}

/// The cache key of an input: `None` when the file cannot be inspected (it is then analysed, and the
/// error reported, as without a cache).
fn cache_key(model: &str, vad: &str, input: &Input) -> Option<String> {
    let meta = std::fs::metadata(&input.path).ok()?;
    let canonical = std::fs::canonicalize(&input.path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!(
        "{model}\tvad={vad}\t{}\t{}\t{}\t{mtime}",
        canonical.display(),
        input.channel.as_deref().unwrap_or("-"),
        meta.len()
    ))
}

/// One distinct input: a file and the channel taken from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Input {
    path: PathBuf,
    channel: Option<String>,
}

/// What embedding one input gave.
struct Embedded {
    prepared: Option<Prepared>,
    net_speech: f64,
    error: Option<String>,
}

/// The three scores of one scored trial.
#[derive(Debug, Clone, Copy)]
struct TrialScores {
    raw: f64,
    asnorm: f64,
    llr: f64,
    /// The LLR threshold the service would apply for a 1 % target FAR (the trial's channel
    /// pairing when the scorer calibrates by channel).
    threshold_1pct: f64,
}

impl TrialScores {
    fn get(&self, kind: ScoreKind) -> f64 {
        match kind {
            ScoreKind::Raw => self.raw,
            ScoreKind::Asnorm => self.asnorm,
            ScoreKind::Calibrated => self.llr,
        }
    }
}

/// Outcome of one trial.
struct Outcome {
    line: u64,
    target: bool,
    scores: Option<TrialScores>,
    /// Why the trial could not be scored.
    unscored: Option<String>,
    /// Why the trial fails the quality gate.
    gated: Option<String>,
}

fn parse_channel(cell: Option<&str>, line: u64, column: &str) -> anyhow::Result<ChannelSelect> {
    match cell {
        None => Ok(ChannelSelect::default()),
        Some(text) => text
            .parse::<ChannelSelect>()
            .map_err(|e| anyhow::anyhow!("trial list line {line}: bad {column} `{text}`: {e}")),
    }
}

fn progress(len: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if std::io::stderr().is_terminal() {
        if let Ok(style) =
            ProgressStyle::with_template("embedding {bar:40} {pos}/{len} files [{elapsed} < {eta}]")
        {
            bar.set_style(style);
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// Metrics of one score kind over the scored trials.
fn metrics(outcomes: &[&Outcome], kind: ScoreKind, calibrated: bool) -> anyhow::Result<Value> {
    let (mut tar, mut non) = (Vec::new(), Vec::new());
    for o in outcomes {
        if let Some(s) = o.scores {
            if o.target {
                tar.push(s.get(kind))
            } else {
                non.push(s.get(kind))
            }
        }
    }
    let set = ScoreSet::new(&tar, &non).context("cannot compute metrics")?;
    let params = DcfParams::default();
    let eer = set.eer();
    let dcf = set.min_dcf(&params)?;
    let far1 = set.frr_at_far(0.01)?;
    let far01 = set.frr_at_far(0.001)?;
    let (cllr_v, act) = if kind == ScoreKind::Calibrated && calibrated {
        (
            json!(cllr(&tar, &non)?),
            json!(actual_dcf(&tar, &non, &params)?.value),
        )
    } else {
        (Value::Null, Value::Null)
    };
    Ok(json!({
        "target_trials": set.n_targets(),
        "nontarget_trials": set.n_nontargets(),
        "eer": eer.value,
        "eer_threshold": finite(eer.threshold),
        "min_dcf": dcf.value,
        "min_dcf_threshold": finite(dcf.point.threshold),
        "frr_at_far_1pct": far1.value,
        "threshold_at_far_1pct": finite(far1.point.threshold),
        "frr_at_far_0_1pct": far01.value,
        "threshold_at_far_0_1pct": finite(far01.point.threshold),
        "cllr": cllr_v,
        "act_dcf": act,
    }))
}

/// What the service's decisions at a 1 % target FAR would have been on the scored trials: the
/// actual false-accept and false-reject rates, which show whether the calibration holds.
fn decisions(kept: &[&Outcome]) -> Value {
    let (mut fa, mut non, mut fr, mut tar) = (0usize, 0usize, 0usize, 0usize);
    for s in kept.iter().filter_map(|o| o.scores.map(|s| (o.target, s))) {
        let accept = s.1.llr >= s.1.threshold_1pct;
        if s.0 {
            tar += 1;
            fr += usize::from(!accept);
        } else {
            non += 1;
            fa += usize::from(accept);
        }
    }
    let rate = |k: usize, n: usize| {
        if n == 0 {
            Value::Null
        } else {
            json!(k as f64 / n as f64)
        }
    };
    json!({ "far": rate(fa, non), "frr": rate(fr, tar) })
}

/// Runs `voiceprint eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let list = TrialList::from_path(&args.trials)?;
    // Resolve every trial to two input indices; each distinct (file, channel) is embedded once.
    let mut inputs: Vec<(Input, ChannelSelect)> = Vec::new();
    let mut index: HashMap<Input, usize> = HashMap::new();
    let mut pairs = Vec::with_capacity(list.trials.len());
    for t in &list.trials {
        let mut side =
            |path: &Path, cell: Option<&String>, column: &str| -> anyhow::Result<usize> {
                let channel = parse_channel(cell.map(String::as_str), t.line, column)?;
                let key = Input {
                    path: path.to_path_buf(),
                    channel: cell.cloned(),
                };
                Ok(*index.entry(key.clone()).or_insert_with(|| {
                    inputs.push((key, channel));
                    inputs.len() - 1
                }))
            };
        let e = side(&t.enroll, t.enroll_channel.as_ref(), "enroll_channel")?;
        let s = side(&t.test, t.test_channel.as_ref(), "test_channel")?;
        pairs.push((e, s));
    }

    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())
            .context("cannot find the model (pass --model PATH or fetch it)")?,
    };
    let mut config = EngineConfig::new(model_path);
    config.use_vad = !args.no_vad;
    // A side with too little speech after VAD is still scored (whole utterance) and flagged by the
    // quality gate; only `--gate` drops it, as the trial-list contract says.
    config.whole_utterance_fallback = true;
    config.channel_calibrations = !args.single_calibration;
    if let Some(dir) = &args.scoring_dir {
        config.scoring = ScoringSource::Dir(dir.clone());
    }
    let engine = Engine::load(config).context("cannot load the model")?;
    let scorer = engine.scorer();

    let cache = args
        .embeddings_cache
        .as_deref()
        .map(EmbeddingCache::open)
        .transpose()?;
    let thresholds_1pct = scorer.thresholds(0.01)?;
    let use_vad = !args.no_vad;
    // Cache entries are only valid for the same speech selection.
    let vad_profile = if use_vad {
        format!("true,gaps<{}", engine.config().keep_gap_frames)
    } else {
        "false".to_owned()
    };
    let min_embed = engine.config().min_embed_speech_seconds;
    let started = Instant::now();
    let bar = progress(inputs.len());
    let hits = std::sync::atomic::AtomicUsize::new(0);
    let embedded: Vec<Embedded> = inputs
        .par_iter()
        .map(|(input, channel)| -> anyhow::Result<Embedded> {
            let key = cache
                .as_ref()
                .and_then(|_| cache_key(engine.model_version(), &vad_profile, input));
            if let (Some(c), Some(k)) = (&cache, &key)
                && let Some(entry) = c.get(k)
                // Entries without an embedding predate the whole-utterance fallback.
                && entry.embedding_bits.is_some()
            {
                let opts = DecodeOptions {
                    channel: *channel,
                    ..DecodeOptions::default()
                };
                // Entries from before channel detection: find the channel (no embedding) and
                // record it.
                let detected = match entry.channel {
                    Some(c) => Some(c),
                    None => decode_file(&input.path, &opts)
                        .ok()
                        .and_then(|d| engine.detect_channel(&d).ok()),
                };
                if entry.channel.is_none()
                    && let (Some(c), Some(k), Some(ch)) = (&cache, &key, detected)
                {
                    c.append(&CacheEntry {
                        key: k.clone(),
                        net_speech: entry.net_speech,
                        embedding_bits: entry.embedding_bits.clone(),
                        channel: Some(ch),
                    })?;
                }
                hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                bar.inc(1);
                let embedding: Option<Vec<f32>> = entry
                    .embedding_bits
                    .as_ref()
                    .map(|b| b.iter().map(|&x| f32::from_bits(x)).collect());
                return Ok(Embedded {
                    net_speech: entry.net_speech,
                    error: embedding.is_none().then(|| "no speech to embed".to_owned()),
                    prepared: embedding.map(|e| scorer.prepare_from(&e, detected)),
                });
            }
            let opts = DecodeOptions {
                channel: *channel,
                ..DecodeOptions::default()
            };
            let result = engine.analyze_file(&input.path, &opts);
            bar.inc(1);
            Ok(match result {
                Ok(a) => {
                    if let (Some(c), Some(k)) = (&cache, key) {
                        c.append(&CacheEntry {
                            key: k,
                            net_speech: a.quality.net_speech_seconds,
                            embedding_bits: a
                                .embedding
                                .as_ref()
                                .map(|e| e.iter().map(|x| x.to_bits()).collect()),
                            channel: Some(a.channel),
                        })?;
                    }
                    Embedded {
                        net_speech: a.quality.net_speech_seconds,
                        error: a
                            .embedding
                            .is_none()
                            .then(|| "no speech to embed".to_owned()),
                        prepared: a
                            .embedding
                            .map(|e| scorer.prepare_from(&e, Some(a.channel))),
                    }
                }
                Err(e) => Embedded {
                    prepared: None,
                    net_speech: 0.0,
                    error: Some(format!("{e:#}")),
                },
            })
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();
    let embed_seconds = started.elapsed().as_secs_f64();

    let describe = |i: usize| {
        let input = &inputs[i].0;
        match &input.channel {
            Some(c) => format!("{} [{c}]", input.path.display()),
            None => input.path.display().to_string(),
        }
    };
    let outcomes: Vec<Outcome> = list
        .trials
        .iter()
        .zip(&pairs)
        .map(|(t, &(e, s))| {
            let (ee, ss) = (&embedded[e], &embedded[s]);
            let mut unscored = Vec::new();
            for (i, side) in [(e, ee), (s, ss)] {
                if let Some(err) = &side.error {
                    unscored.push(format!("{}: {err}", describe(i)));
                }
            }
            let mut gated = Vec::new();
            for (i, side) in [(e, ee), (s, ss)] {
                if side.error.is_none() && side.net_speech < args.min_speech {
                    gated.push(format!(
                        "{}: {:.2} s net speech < {:.2} s{}",
                        describe(i),
                        side.net_speech,
                        args.min_speech,
                        if use_vad && side.net_speech < min_embed {
                            " (whole utterance embedded)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            let scores = match (&ee.prepared, &ss.prepared) {
                (Some(a), Some(b)) => {
                    let sc = scorer.score(a, b);
                    Some(TrialScores {
                        raw: f64::from(sc.raw),
                        asnorm: sc.norm,
                        llr: sc.llr,
                        threshold_1pct: thresholds_1pct.for_pair(a.channel, b.channel),
                    })
                }
                _ => None,
            };
            Outcome {
                line: t.line,
                target: t.target,
                scores,
                unscored: (!unscored.is_empty()).then(|| unscored.join("; ")),
                gated: (!gated.is_empty()).then(|| gated.join("; ")),
            }
        })
        .collect();

    if let Some(path) = &args.scores_out {
        write_scores(path, &outcomes)?;
    }

    let kept: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.scores.is_some() && !(args.gate && o.gated.is_some()))
        .collect();
    let unscored = outcomes.iter().filter(|o| o.scores.is_none()).count();
    let gated = outcomes.iter().filter(|o| o.gated.is_some()).count();
    if !kept.iter().any(|o| o.target) || !kept.iter().any(|o| !o.target) {
        bail!(
            "{}: need at least one scored target and one scored non-target trial ({unscored} of {} unscored{})",
            args.trials.display(),
            outcomes.len(),
            if args.gate {
                format!(", {gated} gated")
            } else {
                String::new()
            }
        );
    }
    let count_channel = |c: Channel| {
        embedded
            .iter()
            .filter(|e| e.prepared.as_ref().and_then(|p| p.channel) == Some(c))
            .count()
    };
    let calibrated = scorer.is_calibrated();
    let mut configurations = serde_json::Map::new();
    for kind in ScoreKind::ALL {
        configurations.insert(kind.name().to_owned(), metrics(&kept, kind, calibrated)?);
    }
    let head = metrics(&kept, args.score, calibrated)?;
    let mut report = json!({
        "trials": outcomes.len(),
        "target_trials": outcomes.iter().filter(|o| o.target).count(),
        "nontarget_trials": outcomes.iter().filter(|o| !o.target).count(),
        "scored_trials": kept.len(),
        "unscored": unscored,
        "gated": gated,
        "gate_applied": args.gate,
        "min_speech_seconds": args.min_speech,
        "score": args.score.name(),
        "vad": !args.no_vad,
        "calibrated": calibrated,
        "model": engine.model_version(),
        "scorer": scorer.version(),
        "channel_calibrations": scorer.is_channel_aware(),
        "files": inputs.len(),
        "files_by_channel": {
            "wideband": count_channel(Channel::Wideband),
            "telephone": count_channel(Channel::Telephone),
        },
        "failed_files": embedded.iter().filter(|e| e.error.is_some()).count(),
        "embed_seconds": embed_seconds,
        "cache_hits": hits.load(std::sync::atomic::Ordering::Relaxed),
        "configurations": configurations,
        "decisions_at_target_far_1pct": decisions(&kept),
    });
    if let (Value::Object(r), Value::Object(h)) = (&mut report, head) {
        for (k, v) in h {
            // Headline counts are over scored trials; the totals above keep their names.
            let key = if k == "target_trials" || k == "nontarget_trials" {
                format!("scored_{k}")
            } else {
                k
            };
            r.insert(key, v);
        }
    }
    if args.verbose {
        let list = |pick: fn(&Outcome) -> Option<&String>| -> Vec<Value> {
            outcomes
                .iter()
                .filter_map(|o| pick(o).map(|reason| json!({"line": o.line, "reason": reason})))
                .collect()
        };
        report["unscored_trials"] = Value::Array(list(|o| o.unscored.as_ref()));
        report["gated_trials"] = Value::Array(list(|o| o.gated.as_ref()));
    }

    if let Some(path) = &args.det {
        let mut sets = Vec::new();
        for (kind, label) in [
            (ScoreKind::Raw, "raw cosine"),
            (ScoreKind::Asnorm, "AS-norm"),
        ] {
            let (tar, non): (Vec<&Outcome>, Vec<&Outcome>) = kept.iter().partition(|o| o.target);
            let get = |v: Vec<&Outcome>| {
                v.iter()
                    .filter_map(|o| o.scores.map(|s| s.get(kind)))
                    .collect::<Vec<_>>()
            };
            sets.push((label, ScoreSet::new(&get(tar), &get(non))?));
        }
        let systems: Vec<DetSystem<'_>> = sets
            .iter()
            .map(|(label, scores)| DetSystem { label, scores })
            .collect();
        write_det_svg(path, &systems)?;
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn write_scores(path: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record(["line", "target", "raw", "asnorm", "llr", "gated"])?;
    for o in outcomes {
        let s = o
            .scores
            .map(|s| [s.raw.to_string(), s.asnorm.to_string(), s.llr.to_string()]);
        let [raw, asnorm, llr] = s.unwrap_or_default();
        w.write_record([
            o.line.to_string(),
            u8::from(o.target).to_string(),
            raw,
            asnorm,
            llr,
            u8::from(o.gated.is_some()).to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{:.2} %", x * 100.0))
}

fn num(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"))
}

fn print_table(r: &Value) {
    println!(
        "trials {} ({} target, {} non-target), unscored {}, gated {}{}",
        r["trials"],
        r["target_trials"],
        r["nontarget_trials"],
        r["unscored"],
        r["gated"],
        if r["gate_applied"].as_bool() == Some(true) {
            " (dropped)"
        } else {
            ""
        }
    );
    println!(
        "model {}, scorer {}, VAD {}, {} files embedded in {:.1} s ({} from the cache)",
        r["model"].as_str().unwrap_or("?"),
        r["scorer"].as_str().unwrap_or("?"),
        if r["vad"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        },
        r["files"],
        r["embed_seconds"].as_f64().unwrap_or(0.0),
        r["cache_hits"]
    );
    println!();
    println!(
        "{:<12} {:>9} {:>10} {:>9} {:>13} {:>14} {:>8} {:>9}",
        "score", "EER", "EER thr", "minDCF", "FRR@FAR1%", "FRR@FAR0.1%", "Cllr", "actDCF"
    );
    for kind in ScoreKind::ALL {
        let c = &r["configurations"][kind.name()];
        let marker = if r["score"].as_str() == Some(kind.name()) {
            "*"
        } else {
            ""
        };
        println!(
            "{:<12} {:>9} {:>10} {:>9} {:>13} {:>14} {:>8} {:>9}",
            format!("{}{marker}", kind.name()),
            pct(&c["eer"]),
            num(&c["eer_threshold"]),
            num(&c["min_dcf"]),
            pct(&c["frr_at_far_1pct"]),
            pct(&c["frr_at_far_0_1pct"]),
            num(&c["cllr"]),
            num(&c["act_dcf"])
        );
    }
    println!(
        "(* headline score; minDCF at P_target 0.01, C_miss = C_fa = 1, normalised; Cllr in bits)"
    );
    let d = &r["decisions_at_target_far_1pct"];
    println!(
        "service decisions at a target FAR of 1 %: actual FAR {}, FRR {}",
        pct(&d["far"]),
        pct(&d["frr"])
    );
    for key in ["unscored_trials", "gated_trials"] {
        if let Some(items) = r[key].as_array() {
            for item in items {
                println!(
                    "{key}: line {}: {}",
                    item["line"],
                    item["reason"].as_str().unwrap_or("")
                );
            }
        }
    }
}
