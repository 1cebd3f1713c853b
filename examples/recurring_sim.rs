//! Simulated complaint periods for the recurring-voice detector: precision and recall of the
//! flagged clusters, and the false-positive identification rate against galleries of 1k, 10k and
//! 100k voices. Synthetic 192-d embeddings: a speaker is a random unit vector, an utterance is the
//! speaker plus Gaussian noise, so that same-speaker cosines are 0.6 ± 0.08 (0.4 – 0.8) and
//! different-speaker cosines 0 ± 0.07.
//!
//! `cargo run --example recurring_sim` (add `--release` for speed; the figures are the same).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use voiceprint::recurring::{
    ClusterOptions, Complaint, IncrementalClusterer, SuspiciousCluster, cluster,
};

const DIM: usize = 192;

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn normalise(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn speaker(rng: &mut StdRng) -> Vec<f32> {
    normalise((0..DIM).map(|_| gaussian(rng)).collect())
}

/// Noise power relative to the voice drawn per utterance, so that the cosine of two utterances
/// `1 / sqrt((1 + r1)(1 + r2))` spreads over 0.4 – 0.8 (mean 0.6).
fn utterance(rng: &mut StdRng, voice: &[f32]) -> Vec<f32> {
    let r: f32 = rng.random_range(0.25..1.5);
    let sigma = (r / DIM as f32).sqrt();
    normalise(voice.iter().map(|s| s + sigma * gaussian(rng)).collect())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct Period {
    complaints: Vec<Complaint>,
    speaker_of: BTreeMap<String, usize>,
    proxies: BTreeSet<usize>,
}

/// `honest` speakers with 1–3 complaints for their own customer; `proxies` speakers with 1–2
/// complaints for each of 2–5 customers; shuffled into arrival order.
fn period(seed: u64, honest: usize, proxies: usize) -> Period {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut complaints = Vec::new();
    let mut speaker_of = BTreeMap::new();
    for s in 0..honest + proxies {
        let voice = speaker(&mut rng);
        let customers = if s < honest {
            1
        } else {
            rng.random_range(2..=5)
        };
        for k in 0..customers {
            let n = if s < honest {
                rng.random_range(1..=3)
            } else {
                rng.random_range(1..=2)
            };
            for _ in 0..n {
                let id = format!("c{}", complaints.len());
                speaker_of.insert(id.clone(), s);
                complaints.push(Complaint {
                    complaint_id: id,
                    customer_id: format!("cust-{s}-{k}"),
                    embedding: utterance(&mut rng, &voice),
                });
            }
        }
    }
    // Fisher–Yates: arrival order matters to the incremental form.
    for i in (1..complaints.len()).rev() {
        let j = rng.random_range(0..=i);
        complaints.swap(i, j);
    }
    Period {
        complaints,
        speaker_of,
        proxies: (honest..honest + proxies).collect(),
    }
}

/// A flagged cluster is correct when its majority speaker is a proxy heard under ≥ 2 of the
/// cluster's customers and no other speaker is in it. Returns (precision, recall).
fn score(p: &Period, found: &[SuspiciousCluster]) -> (f64, f64, usize) {
    let mut correct = 0;
    let mut caught = BTreeSet::new();
    for c in found {
        let speakers: BTreeSet<usize> = c
            .complaint_ids
            .iter()
            .filter_map(|id| p.speaker_of.get(id).copied())
            .collect();
        if speakers.len() == 1 && speakers.iter().all(|s| p.proxies.contains(s)) {
            correct += 1;
            caught.extend(speakers);
        }
    }
    let precision = if found.is_empty() {
        1.0
    } else {
        correct as f64 / found.len() as f64
    };
    (
        precision,
        caught.len() as f64 / p.proxies.len() as f64,
        found.len(),
    )
}

fn main() {
    println!("## Flagged clusters (precision / recall), synthetic period\n");
    println!("| complaints | proxies | threshold | form | flagged | precision | recall | time |");
    println!("|---|---|---|---|---|---|---|---|");
    for (honest, proxies, seed) in [(1000usize, 20usize, 1u64), (4500, 50, 2)] {
        let p = period(seed, honest, proxies);
        for threshold in [0.3, 0.35, 0.4, 0.45] {
            let opts = ClusterOptions::with_threshold(threshold);
            let t = Instant::now();
            let Ok(found) = cluster(&p.complaints, &opts) else {
                return;
            };
            let elapsed = t.elapsed();
            let (prec, rec, n) = score(&p, &found);
            println!(
                "| {} | {proxies} | {threshold} | agglomerative | {n} | {prec:.3} | {rec:.3} | {:.1} s |",
                p.complaints.len(),
                elapsed.as_secs_f64()
            );
            let t = Instant::now();
            let Ok(mut inc) = IncrementalClusterer::new(opts) else {
                return;
            };
            for c in &p.complaints {
                if inc.add(c.clone()).is_err() {
                    return;
                }
            }
            let elapsed = t.elapsed();
            let (prec, rec, n) = score(&p, &inc.suspicious_clusters());
            println!(
                "| {} | {proxies} | {threshold} | incremental | {n} | {prec:.3} | {rec:.3} | {:.1} s |",
                p.complaints.len(),
                elapsed.as_secs_f64()
            );
        }
    }

    println!("\n## Open-set identification against a gallery of one utterance per voice\n");
    println!(
        "FPIR: share of 1000 probes of unseen voices whose best gallery cosine reaches the threshold."
    );
    println!(
        "FNIR: share of 1000 probes of gallery voices (a fresh utterance) whose own entry does not.\n"
    );
    println!("| gallery | threshold | FPIR | FNIR |");
    println!("|---|---|---|---|");
    let mut rng = StdRng::seed_from_u64(42);
    let probes = 1000;
    let max_gallery = 100_000;
    let voices: Vec<Vec<f32>> = (0..max_gallery).map(|_| speaker(&mut rng)).collect();
    let gallery: Vec<Vec<f32>> = voices.iter().map(|v| utterance(&mut rng, v)).collect();
    let strangers: Vec<Vec<f32>> = (0..probes)
        .map(|_| {
            let voice = speaker(&mut rng);
            utterance(&mut rng, &voice)
        })
        .collect();
    let returning: Vec<(usize, Vec<f32>)> = (0..probes)
        .map(|k| (k, utterance(&mut rng, &voices[k])))
        .collect();
    for size in [1_000, 10_000, 100_000] {
        let g = &gallery[..size];
        let best: Vec<f32> = strangers
            .par_iter()
            .map(|q| g.iter().map(|e| dot(q, e)).fold(f32::MIN, f32::max))
            .collect();
        for threshold in [0.3f32, 0.35, 0.4, 0.45] {
            let fp = best.iter().filter(|&&s| s >= threshold).count();
            let fn_ = returning
                .iter()
                .filter(|(k, q)| dot(q, &g[*k]) < threshold)
                .count();
            println!(
                "| {size} | {threshold} | {:.4} | {:.4} |",
                fp as f64 / probes as f64,
                fn_ as f64 / probes as f64
            );
        }
    }
}
