//! Recurring-voice detection measured on real audio: simulated complaint periods built from the
//! telephony (µ-law, 300–3400 Hz) copies of the development set, clustered with the same
//! pipeline and clustering code as `voiceprint recurring`, scored against the ground truth.
//!
//! ```sh
//! cargo run --release --example recurring_devset -- run --devset /work/devset --out target/recurring-devset
//! target/release/voiceprint recurring --manifest target/recurring-devset/complaints.csv \
//!     --out target/recurring-devset/clusters.json
//! cargo run --release --example recurring_devset -- score \
//!     --manifest target/recurring-devset/complaints.csv --clusters target/recurring-devset/clusters.json
//! ```
//!
//! `run` embeds the µ-law telephony copies of the dev set once (clips ≥ `--min-seconds`, at most
//! `--max-per-speaker` per voice; cached in `OUT/embeddings.{csv,npy}`, delete them to recompute
//! with other settings), then:
//! - simulates `--periods` complaint periods: every voice of the set complains, honest voices 1–3
//!   times for their own customer id, `--real-proxies` of the 7 real talents and `--synth-proxies`
//!   of the 20 synthetic voices 1–2 times for each of 2–4 customer ids (clips drawn without
//!   replacement, arrival order shuffled), and reports precision / recall of the flagged clusters
//!   per threshold, for the agglomerative and the incremental form;
//! - measures the real CAM++ score distributions on the telephony copies of the 7 real talents
//!   (all pairs of clips: same talent = target, different talents = non-target) and the FPIR at
//!   gallery sizes 1k / 10k / 100k implied by the non-target tail;
//! - writes period 0 as `OUT/complaints.csv` (manifest columns plus the ground truth `speaker`
//!   and `role`) for an end-to-end run of `voiceprint recurring`, which `score` then scores.
//!
//! The dev set has only 7 real voices (and 20 synthetic ones, which CAM++ separates easily), so a
//! period holds at most 27 distinct voices; the periods differ in who is a proxy and which clips
//! are used. Large-period behaviour is read from the non-target score tail, not simulated.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use serde::Deserialize;
use voiceprint::audio::DecodeOptions;
use voiceprint::pipeline::{Engine, EngineConfig};
use voiceprint::recurring::{
    ClusterOptions, Complaint, IncrementalClusterer, SuspiciousCluster, cluster,
};
use voiceprint::score::dot;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Embed (or load the cache), simulate periods, print the tables, write period 0.
    Run(RunArgs),
    /// Score a `voiceprint recurring` output against the ground truth of a generated manifest.
    Score {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        clusters: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, default_value = "/work/devset")]
    devset: PathBuf,
    #[arg(long, default_value = "target/recurring-devset")]
    out: PathBuf,
    /// CAM++ checkpoint (default: the one `voiceprint model` fetches).
    #[arg(long, env = "VOICEPRINT_MODEL")]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    periods: u64,
    #[arg(long, default_value_t = 2)]
    real_proxies: usize,
    #[arg(long, default_value_t = 1)]
    synth_proxies: usize,
    /// Only clips at least this long (seconds, as listed in manifest.csv) become complaints.
    #[arg(long, default_value_t = 2.0)]
    min_seconds: f64,
    /// At most this many clips per voice are embedded (a seeded draw among those ≥ --min-seconds),
    /// to bound the embedding time on a small machine.
    #[arg(long, default_value_t = 120)]
    max_per_speaker: usize,
    #[arg(long, default_value_t = 20261130)]
    seed: u64,
    /// Thresholds to report.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.5,0.6,0.65,0.7,0.725,0.75,0.775,0.8,0.825,0.85,0.9"
    )]
    thresholds: Vec<f64>,
}

#[derive(Deserialize)]
struct ManifestRow {
    path: String,
    speaker: String,
    kind: String,
    seconds: f64,
}

/// One embedded telephony clip.
struct Clip {
    /// Path of the µ-law copy relative to the dev set.
    audio: String,
    speaker: String,
    real: bool,
    seconds: f64,
    embedding: Vec<f32>,
}

fn tel_path(path: &str) -> String {
    format!("tel/{}.ulaw.wav", path.trim_end_matches(".wav"))
}

fn load_or_embed(args: &RunArgs) -> anyhow::Result<Vec<Clip>> {
    std::fs::create_dir_all(&args.out)?;
    let list = args.out.join("embeddings.csv");
    let npy = args.out.join("embeddings.npy");
    if list.exists() && npy.exists() {
        eprintln!(
            "using cached embeddings {} (delete to recompute)",
            npy.display()
        );
        let (shape, data) = voiceprint::npy::read_f32(&npy)?;
        let mut reader = csv::Reader::from_path(&list)?;
        let mut clips = Vec::new();
        for (i, row) in reader
            .deserialize::<(String, String, String, f64)>()
            .enumerate()
        {
            let (audio, speaker, kind, seconds) = row?;
            let dim = shape[1];
            let embedding = data
                .get(i * dim..(i + 1) * dim)
                .context("embeddings.npy shorter than embeddings.csv")?
                .to_vec();
            clips.push(Clip {
                audio,
                speaker,
                real: kind == "asterisk",
                seconds,
                embedding,
            });
        }
        if clips.len() != shape[0] {
            bail!("embeddings.csv and embeddings.npy disagree; delete both");
        }
        return Ok(clips);
    }
    let mut reader = csv::Reader::from_path(args.devset.join("manifest.csv"))
        .with_context(|| format!("reading {}/manifest.csv", args.devset.display()))?;
    let mut by_speaker: BTreeMap<String, Vec<ManifestRow>> = BTreeMap::new();
    for row in reader.deserialize::<ManifestRow>() {
        let row = row?;
        if row.seconds >= args.min_seconds && args.devset.join(tel_path(&row.path)).exists() {
            by_speaker.entry(row.speaker.clone()).or_default().push(row);
        }
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut rows = Vec::new();
    for (_, mut list) in by_speaker {
        list.shuffle(&mut rng);
        list.truncate(args.max_per_speaker);
        rows.extend(list);
    }
    let model = match &args.model {
        Some(p) => p.clone(),
        None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())?,
    };
    let engine = Engine::load(EngineConfig::new(model))?;
    eprintln!("embedding {} telephony clips…", rows.len());
    let t = Instant::now();
    let embedded: Vec<Option<Clip>> = rows
        .par_iter()
        .map(|row| {
            let audio = tel_path(&row.path);
            let a = engine
                .analyze_file(&args.devset.join(&audio), &DecodeOptions::default())
                .ok()?;
            Some(Clip {
                audio,
                speaker: row.speaker.clone(),
                real: row.kind == "asterisk",
                seconds: row.seconds,
                embedding: a.embedding?,
            })
        })
        .collect();
    let skipped = embedded.iter().filter(|c| c.is_none()).count();
    let clips: Vec<Clip> = embedded.into_iter().flatten().collect();
    eprintln!(
        "embedded {} clips in {:.0} s ({skipped} without enough speech or undecodable)",
        clips.len(),
        t.elapsed().as_secs_f64()
    );
    let dim = clips.first().map_or(0, |c| c.embedding.len());
    let flat: Vec<f32> = clips
        .iter()
        .flat_map(|c| c.embedding.iter().copied())
        .collect();
    voiceprint::npy::write_f32(&npy, &[clips.len(), dim], &flat)?;
    let mut w = csv::Writer::from_path(&list)?;
    w.write_record(["audio", "speaker", "kind", "seconds"])?;
    for c in &clips {
        let kind = if c.real { "asterisk" } else { "synth" };
        w.write_record([&c.audio, &c.speaker, kind, &c.seconds.to_string()])?;
    }
    w.flush()?;
    Ok(clips)
}

/// A simulated period: complaints in arrival order and who really spoke.
struct Period {
    complaints: Vec<Complaint>,
    audio: Vec<String>,
    speaker_of: BTreeMap<String, String>,
    proxies: BTreeSet<String>,
    real: BTreeSet<String>,
}

fn period(
    by_speaker: &BTreeMap<String, Vec<&Clip>>,
    args: &RunArgs,
    index: u64,
) -> anyhow::Result<Period> {
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(index));
    let mut real: Vec<&String> = Vec::new();
    let mut synth: Vec<&String> = Vec::new();
    for (s, clips) in by_speaker {
        if clips[0].real {
            real.push(s);
        } else {
            synth.push(s);
        }
    }
    if real.len() < args.real_proxies || synth.len() < args.synth_proxies {
        bail!("not enough voices for the requested proxies");
    }
    real.shuffle(&mut rng);
    synth.shuffle(&mut rng);
    let proxies: BTreeSet<String> = real[..args.real_proxies]
        .iter()
        .chain(&synth[..args.synth_proxies])
        .map(|s| (*s).clone())
        .collect();
    let mut p = Period {
        complaints: Vec::new(),
        audio: Vec::new(),
        speaker_of: BTreeMap::new(),
        real: real.iter().map(|s| (*s).clone()).collect(),
        proxies,
    };
    for (si, (speaker, clips)) in by_speaker.iter().enumerate() {
        let mut pool: Vec<&Clip> = clips.clone();
        pool.shuffle(&mut rng);
        let mut pool = pool.into_iter();
        let plan: Vec<usize> = if p.proxies.contains(speaker) {
            (0..rng.random_range(2..=4))
                .map(|_| rng.random_range(1..=2))
                .collect()
        } else {
            vec![rng.random_range(1..=3)]
        };
        for (k, n) in plan.into_iter().enumerate() {
            for _ in 0..n {
                let Some(clip) = pool.next() else { break };
                let id = format!("c{}", p.complaints.len());
                p.speaker_of.insert(id.clone(), speaker.clone());
                p.audio.push(clip.audio.clone());
                p.complaints.push(Complaint {
                    complaint_id: id,
                    customer_id: format!("cust-{si}-{k}"),
                    embedding: clip.embedding.clone(),
                });
            }
        }
    }
    // Fisher–Yates on (complaint, audio) together: arrival order matters to the incremental form.
    for i in (1..p.complaints.len()).rev() {
        let j = rng.random_range(0..=i);
        p.complaints.swap(i, j);
        p.audio.swap(i, j);
    }
    Ok(p)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    flagged: usize,
    correct: usize,
    proxies: usize,
    caught: usize,
    real_proxies: usize,
    real_caught: usize,
}

/// A flagged cluster is correct when all its complaints are one speaker and that speaker is a
/// proxy (as in `examples/recurring_sim.rs`); a proxy is caught by a correct cluster.
fn tally(
    speaker_of: &BTreeMap<String, String>,
    proxies: &BTreeSet<String>,
    real: &BTreeSet<String>,
    found: &[SuspiciousCluster],
) -> Tally {
    let mut t = Tally {
        flagged: found.len(),
        proxies: proxies.len(),
        real_proxies: proxies.iter().filter(|s| real.contains(*s)).count(),
        ..Tally::default()
    };
    let mut caught = BTreeSet::new();
    for c in found {
        let speakers: BTreeSet<&String> = c
            .complaint_ids
            .iter()
            .filter_map(|id| speaker_of.get(id))
            .collect();
        if speakers.len() == 1 && speakers.iter().all(|s| proxies.contains(*s)) {
            t.correct += 1;
            caught.extend(speakers);
        }
    }
    t.caught = caught.len();
    t.real_caught = caught.iter().filter(|s| real.contains(**s)).count();
    t
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.flagged += o.flagged;
        self.correct += o.correct;
        self.proxies += o.proxies;
        self.caught += o.caught;
        self.real_proxies += o.real_proxies;
        self.real_caught += o.real_caught;
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Complementary error function (Numerical Recipes `erfcc`, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let clips = load_or_embed(args)?;
    let mut by_speaker: BTreeMap<String, Vec<&Clip>> = BTreeMap::new();
    for c in clips.iter().filter(|c| c.seconds >= args.min_seconds) {
        by_speaker.entry(c.speaker.clone()).or_default().push(c);
    }
    let used: usize = by_speaker.values().map(Vec::len).sum();
    println!(
        "{} embedded µ-law clips, {used} of them ≥ {} s, {} voices ({} real)\n",
        clips.len(),
        args.min_seconds,
        by_speaker.len(),
        by_speaker.values().filter(|v| v[0].real).count()
    );

    // Periods: precision / recall per threshold and form.
    let periods: Vec<Period> = (0..args.periods)
        .map(|i| period(&by_speaker, args, i))
        .collect::<anyhow::Result<_>>()?;
    let complaints: usize = periods.iter().map(|p| p.complaints.len()).sum();
    println!(
        "## {} periods, {:.1} complaints per period on average, {} real + {} synthetic proxies each\n",
        periods.len(),
        complaints as f64 / periods.len() as f64,
        args.real_proxies,
        args.synth_proxies
    );
    println!(
        "| threshold | form | flagged / period | precision | recall | recall (real proxies) | recall (synthetic proxies) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &threshold in &args.thresholds {
        let opts = ClusterOptions::with_threshold(threshold);
        for form in ["agglomerative", "incremental"] {
            let tallies: Vec<Tally> = periods
                .par_iter()
                .map(|p| {
                    let found = if form == "agglomerative" {
                        cluster(&p.complaints, &opts).expect("valid options")
                    } else {
                        let mut inc = IncrementalClusterer::new(opts).expect("options");
                        for c in &p.complaints {
                            inc.add(c.clone()).expect("same dimension");
                        }
                        inc.suspicious_clusters()
                    };
                    tally(&p.speaker_of, &p.proxies, &p.real, &found)
                })
                .collect();
            let mut t = Tally::default();
            for x in tallies {
                t += x;
            }
            println!(
                "| {threshold} | {form} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} |",
                t.flagged as f64 / periods.len() as f64,
                ratio(t.correct, t.flagged),
                ratio(t.caught, t.proxies),
                ratio(t.real_caught, t.real_proxies),
                ratio(t.caught - t.real_caught, t.proxies - t.real_proxies),
            );
        }
    }

    // Real CAM++ scores, telephony vs telephony, the 7 real talents only.
    let real: Vec<&Clip> = by_speaker
        .values()
        .flatten()
        .filter(|c| c.real)
        .copied()
        .collect();
    let (mut targets, mut nontargets): (Vec<f32>, Vec<f32>) = (0..real.len())
        .into_par_iter()
        .map(|i| {
            let (mut t, mut n) = (Vec::new(), Vec::new());
            for j in i + 1..real.len() {
                let s = dot(&real[i].embedding, &real[j].embedding);
                if real[i].speaker == real[j].speaker {
                    t.push(s);
                } else {
                    n.push(s);
                }
            }
            (t, n)
        })
        .reduce(
            || (Vec::new(), Vec::new()),
            |mut a, b| {
                a.0.extend(b.0);
                a.1.extend(b.1);
                a
            },
        );
    targets.sort_by(f32::total_cmp);
    nontargets.sort_by(f32::total_cmp);
    let stats = |v: &[f32]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    };
    let q = |v: &[f32], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (tm, ts) = stats(&targets);
    let (nm, ns) = stats(&nontargets);
    println!(
        "\n## Real CAM++ cosines, µ-law telephony copies, the 7 real talents, clips ≥ {} s\n",
        args.min_seconds
    );
    println!("| pairs | count | mean | std | 1 % | 50 % | 99 % | 99.9 % | max |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, v, m, s) in [
        ("same talent (target)", &targets, tm, ts),
        ("different talents (non-target)", &nontargets, nm, ns),
    ] {
        println!(
            "| {name} | {} | {m:.3} | {s:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            v.len(),
            q(v, 0.01),
            q(v, 0.5),
            q(v, 0.99),
            q(v, 0.999),
            v[v.len() - 1]
        );
    }
    println!(
        "\nFPIR(N) = 1 − (1 − p)^N: the chance that an unrelated voice reaches the threshold against at \
         least one of N gallery voices, each compared once, scores independent; p = share of \
         non-target pairs ≥ threshold, empirical (resolution 1/{}) and from a normal fit to the \
         non-target scores (mean {nm:.3}, std {ns:.3}). FNR = share of target pairs below the threshold.\n",
        nontargets.len()
    );
    println!(
        "| threshold | FNR (pairs) | p empirical | FPIR 1k | FPIR 10k | FPIR 100k | p normal fit | FPIR 1k | FPIR 10k | FPIR 100k |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let fpir = |p: f64, n: f64| 1.0 - (1.0 - p).powf(n);
    for &threshold in &args.thresholds {
        let t = threshold as f32;
        let fnr = targets.partition_point(|&s| s < t) as f64 / targets.len() as f64;
        let above = nontargets.len() - nontargets.partition_point(|&s| s < t);
        let pn = 0.5 * erfc((threshold - nm) / (ns * std::f64::consts::SQRT_2));
        // No non-target pair above: only an upper bound (rule of three, 95 %).
        let (pe, bound) = if above == 0 {
            (3.0 / nontargets.len() as f64, "< ")
        } else {
            (above as f64 / nontargets.len() as f64, "")
        };
        println!(
            "| {threshold} | {fnr:.3} | {bound}{pe:.2e} ({above}) | {bound}{:.4} | {bound}{:.4} | {bound}{:.4} | {pn:.2e} | {:.4} | {:.4} | {:.4} |",
            fpir(pe, 1e3),
            fpir(pe, 1e4),
            fpir(pe, 1e5),
            fpir(pn, 1e3),
            fpir(pn, 1e4),
            fpir(pn, 1e5)
        );
    }
    // Per talent pair: where the non-target tail comes from.
    let mut by_pair: BTreeMap<(String, String), (usize, f32)> = BTreeMap::new();
    for i in 0..real.len() {
        for j in i + 1..real.len() {
            let (a, b) = (&real[i].speaker, &real[j].speaker);
            if a == b {
                continue;
            }
            let key = if a < b {
                (a.clone(), b.clone())
            } else {
                (b.clone(), a.clone())
            };
            let s = dot(&real[i].embedding, &real[j].embedding);
            let e = by_pair.entry(key).or_insert((0, f32::MIN));
            e.0 += 1;
            e.1 = e.1.max(s);
        }
    }
    let mut worst: Vec<_> = by_pair.into_iter().collect();
    worst.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
    println!("\nHighest non-target cosine per talent pair (top 5):\n");
    for ((a, b), (n, max)) in worst.iter().take(5) {
        println!("- {a} / {b}: {max:.3} over {n} pairs");
    }

    // Period 0 as a manifest for the end-to-end CLI run.
    let p = &periods[0];
    let manifest = args.out.join("complaints.csv");
    let devset = std::path::absolute(&args.devset)?;
    let mut w = csv::Writer::from_path(&manifest)?;
    w.write_record([
        "complaint_id",
        "customer_id",
        "audio",
        "channel",
        "speaker",
        "role",
    ])?;
    for (c, audio) in p.complaints.iter().zip(&p.audio) {
        let speaker = &p.speaker_of[&c.complaint_id];
        let role = if p.proxies.contains(speaker) {
            "proxy"
        } else {
            "honest"
        };
        let path = devset.join(audio).display().to_string();
        w.write_record([
            c.complaint_id.as_str(),
            &c.customer_id,
            &path,
            "",
            speaker,
            role,
        ])?;
    }
    w.flush()?;
    println!(
        "\nperiod 0 ({} complaints, proxies {:?}) written to {}",
        p.complaints.len(),
        p.proxies,
        manifest.display()
    );
    Ok(())
}

#[derive(Deserialize)]
struct TruthRow {
    complaint_id: String,
    audio: String,
    speaker: String,
    role: String,
}

fn score(manifest: &Path, clusters: &Path) -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_path(manifest)?;
    let (mut speaker_of, mut proxies, mut real) =
        (BTreeMap::new(), BTreeSet::new(), BTreeSet::new());
    for row in reader.deserialize::<TruthRow>() {
        let row = row?;
        if row.role == "proxy" {
            proxies.insert(row.speaker.clone());
        }
        if row.audio.contains("/tel/asterisk/") {
            real.insert(row.speaker.clone());
        }
        speaker_of.insert(row.complaint_id, row.speaker);
    }
    let found: Vec<SuspiciousCluster> = serde_json::from_slice(&std::fs::read(clusters)?)?;
    let t = tally(&speaker_of, &proxies, &real, &found);
    for c in &found {
        let speakers: BTreeSet<&String> = c
            .complaint_ids
            .iter()
            .filter_map(|id| speaker_of.get(id))
            .collect();
        println!(
            "cluster of {} complaints, {} customers, confidence {:.3}, mean {:.3}: speakers {speakers:?}",
            c.complaint_ids.len(),
            c.customer_ids.len(),
            c.confidence,
            c.mean_score
        );
    }
    println!(
        "flagged {}, correct {}, precision {:.3}, recall {:.3} ({} of {} proxies: {proxies:?})",
        t.flagged,
        t.correct,
        ratio(t.correct, t.flagged),
        ratio(t.caught, t.proxies),
        t.caught,
        t.proxies
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run(args) => run(&args),
        Cmd::Score { manifest, clusters } => score(&manifest, &clusters),
    }
}
