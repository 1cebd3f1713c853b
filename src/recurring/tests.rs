#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;

const DIM: usize = 192;

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    unit(&(0..DIM).map(|_| gaussian(rng)).collect::<Vec<_>>()).unwrap()
}

/// An utterance of `speaker`: same-speaker cosines come out near 0.6, different ones near 0.
fn utterance(rng: &mut StdRng, speaker: &[f32]) -> Vec<f32> {
    let sigma = (0.667f32 / DIM as f32).sqrt();
    unit(
        &speaker
            .iter()
            .map(|s| s + sigma * gaussian(rng))
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

/// `honest` speakers with 1–3 complaints for their own customer id, `proxies` speakers with 2
/// complaints for each of 3 customers. Returns the complaints and each complaint's speaker.
fn period(seed: u64, honest: usize, proxies: usize) -> (Vec<Complaint>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut complaints = Vec::new();
    let mut speaker_of = Vec::new();
    for s in 0..honest + proxies {
        let voice = random_unit(&mut rng);
        let customers = if s < honest {
            vec![format!("cust-{s}")]
        } else {
            (0..3).map(|k| format!("cust-{s}-{k}")).collect()
        };
        for customer in customers {
            let n = if s < honest {
                rng.random_range(1..=3)
            } else {
                2
            };
            for _ in 0..n {
                complaints.push(Complaint {
                    complaint_id: format!("c{}", complaints.len()),
                    customer_id: customer.clone(),
                    embedding: utterance(&mut rng, &voice),
                });
                speaker_of.push(s);
            }
        }
    }
    (complaints, speaker_of)
}

fn speakers_of(cluster: &SuspiciousCluster, speaker_of: &[usize]) -> BTreeSet<usize> {
    cluster
        .complaint_ids
        .iter()
        .map(|id| speaker_of[id[1..].parse::<usize>().unwrap()])
        .collect()
}

#[test]
fn proxies_are_found_and_nobody_else() {
    let (complaints, speaker_of) = period(1, 200, 4);
    let found = cluster(&complaints, &ClusterOptions::with_threshold(0.35)).unwrap();
    assert_eq!(found.len(), 4, "{found:#?}");
    let mut proxies = BTreeSet::new();
    for c in &found {
        let speakers = speakers_of(c, &speaker_of);
        assert_eq!(speakers.len(), 1, "mixed cluster {c:#?}");
        let s = *speakers.iter().next().unwrap();
        assert!(s >= 200, "honest speaker {s} flagged");
        proxies.insert(s);
        assert_eq!(c.complaint_ids.len(), 6);
        assert_eq!(c.customer_ids.len(), 3);
        assert_eq!(c.pairwise.len(), 15);
        assert!(c.pairwise.iter().take(12).all(|p| {
            let cust = |id: &str| {
                &complaints
                    .iter()
                    .find(|x| x.complaint_id == id)
                    .unwrap()
                    .customer_id
            };
            cust(&p.a) != cust(&p.b)
        }));
        assert!(
            c.mean_score > 0.5 && c.min_score > 0.35 && c.confidence > 0.9,
            "{c:#?}"
        );
    }
    assert_eq!(proxies.len(), 4);
}

/// Textbook average linkage: repeatedly merge the pair of clusters with the highest average.
fn naive_average_linkage(units: &[Vec<f32>], threshold: f64) -> BTreeSet<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = (0..units.len()).map(|i| vec![i]).collect();
    loop {
        let mut best: Option<(usize, usize, f64)> = None;
        for a in 0..groups.len() {
            for b in a + 1..groups.len() {
                let mut s = 0.0;
                for &i in &groups[a] {
                    for &j in &groups[b] {
                        s += dot(&units[i], &units[j]);
                    }
                }
                let avg = s / (groups[a].len() * groups[b].len()) as f64;
                if best.is_none_or(|(_, _, bs)| avg > bs) {
                    best = Some((a, b, avg));
                }
            }
        }
        match best {
            Some((a, b, avg)) if avg >= threshold => {
                let moved = groups.remove(b);
                groups[a].extend(moved);
            }
            _ => break,
        }
    }
    groups
        .into_iter()
        .map(|mut g| {
            g.sort_unstable();
            g
        })
        .collect()
}

#[test]
fn agrees_with_textbook_average_linkage() {
    for seed in 0..6 {
        let (complaints, _) = period(100 + seed, 25, 2);
        let units = normalised(&complaints).unwrap();
        for threshold in [0.1, 0.3, 0.45, 0.6] {
            let expected = naive_average_linkage(&units, threshold);
            let edges = edges_above(&units, threshold);
            let all: Vec<usize> = (0..units.len()).collect();
            let mut got = Vec::new();
            let comps = components(&all, &edges, threshold);
            let covered: BTreeSet<usize> = comps.iter().flatten().copied().collect();
            got.extend(
                all.iter()
                    .filter(|i| !covered.contains(i))
                    .map(|&i| vec![i]),
            );
            for comp in &comps {
                got.extend(average_linkage(&units, comp, threshold));
            }
            let got: BTreeSet<Vec<usize>> = got
                .into_iter()
                .map(|mut g| {
                    g.sort_unstable();
                    g
                })
                .collect();
            assert_eq!(got, expected, "seed {seed}, threshold {threshold}");
        }
    }
}

#[test]
fn oversized_components_are_split_not_dropped() {
    let (complaints, speaker_of) = period(7, 60, 3);
    // A threshold far too low joins everything into one component; cap it at 10.
    let opts = ClusterOptions {
        max_component: 10,
        ..ClusterOptions::with_threshold(0.05)
    };
    let found = cluster(&complaints, &opts).unwrap();
    for c in &found {
        assert!(c.complaint_ids.len() <= 10);
    }
    let exact = cluster(
        &complaints,
        &ClusterOptions {
            max_component: 100_000,
            ..opts
        },
    )
    .unwrap();
    assert!(!exact.is_empty());
    let _ = speaker_of;
}

#[test]
fn incremental_flags_proxies_once() {
    let (complaints, speaker_of) = period(3, 150, 3);
    let mut inc = IncrementalClusterer::new(ClusterOptions::with_threshold(0.35)).unwrap();
    let mut newly = 0;
    for c in complaints.iter().cloned() {
        let a = inc.add(c).unwrap();
        newly += usize::from(a.newly_suspicious);
        if a.newly_suspicious {
            assert!(a.suspicious);
            let report = inc.cluster(a.cluster_id).unwrap();
            assert_eq!(report.customer_ids.len(), 2);
        }
    }
    assert_eq!(inc.len(), complaints.len());
    let found = inc.suspicious_clusters();
    assert_eq!(newly, found.len());
    assert_eq!(found.len(), 3, "{found:#?}");
    for c in &found {
        let speakers = speakers_of(c, &speaker_of);
        assert_eq!(speakers.len(), 1);
        assert!(*speakers.iter().next().unwrap() >= 150);
        assert_eq!(c.complaint_ids.len(), 6);
    }
    // A fresh utterance of a proxy would join its cluster; a stranger joins nothing.
    let mut rng = StdRng::seed_from_u64(99);
    assert!(inc.best_cluster(&random_unit(&mut rng)).is_none());
    let proxy = &complaints[complaints.len() - 1].embedding;
    let (_, s) = inc.best_cluster(proxy).unwrap();
    assert!(s > 0.35);
}

#[test]
fn bad_input_is_an_error() {
    let c = |id: &str, e: Vec<f32>| Complaint {
        complaint_id: id.into(),
        customer_id: "x".into(),
        embedding: e,
    };
    let opts = ClusterOptions::default();
    assert!(matches!(
        cluster(&[c("a", vec![1.0, 0.0]), c("b", vec![1.0])], &opts),
        Err(RecurringError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        cluster(&[c("a", vec![f32::NAN, 0.0])], &opts),
        Err(RecurringError::InvalidEmbedding(_))
    ));
    assert!(matches!(
        cluster(&[c("a", vec![0.0, 0.0])], &opts),
        Err(RecurringError::InvalidEmbedding(_))
    ));
    assert!(matches!(
        cluster(&[c("a", vec![])], &opts),
        Err(RecurringError::InvalidEmbedding(_))
    ));
    assert!(matches!(
        cluster(&[c("a", vec![1.0]), c("a", vec![1.0])], &opts),
        Err(RecurringError::DuplicateComplaint(_))
    ));
    for bad in [
        ClusterOptions {
            threshold: 2.0,
            ..opts
        },
        ClusterOptions {
            threshold: f64::NAN,
            ..opts
        },
        ClusterOptions {
            min_customers: 1,
            ..opts
        },
        ClusterOptions {
            confidence_scale: 0.0,
            ..opts
        },
        ClusterOptions {
            max_component: 1,
            ..opts
        },
    ] {
        assert!(matches!(
            cluster(&[], &bad),
            Err(RecurringError::InvalidOption(_))
        ));
        assert!(IncrementalClusterer::new(bad).is_err());
    }
    assert!(cluster(&[], &opts).unwrap().is_empty());
    let mut inc = IncrementalClusterer::new(opts).unwrap();
    inc.add(c("a", vec![3.0, 4.0])).unwrap();
    assert!(matches!(
        inc.add(c("a", vec![1.0, 0.0])),
        Err(RecurringError::DuplicateComplaint(_))
    ));
    assert!(matches!(
        inc.add(c("b", vec![1.0])),
        Err(RecurringError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        inc.add(c("b", vec![f32::INFINITY, 1.0])),
        Err(RecurringError::InvalidEmbedding(_))
    ));
    assert!(inc.best_cluster(&[1.0]).is_none());
    // Not unit length on input: normalised, so (3, 4) and (0.6, 0.8) are the same voice.
    let a = inc
        .add(Complaint {
            complaint_id: "b".into(),
            customer_id: "y".into(),
            embedding: vec![0.6, 0.8],
        })
        .unwrap();
    assert_eq!(a.cluster_id, 0);
    assert!(a.newly_suspicious);
    assert!((a.score.unwrap() - 1.0).abs() < 1e-6);
}

#[test]
fn false_alarm_threshold_is_a_quantile() {
    let scores: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
    let t = threshold_for_false_alarm_rate(&scores, 0.01).unwrap();
    let accepted = scores.iter().filter(|&&s| s >= t).count();
    assert_eq!(accepted, 10, "threshold {t}");
    assert!(threshold_for_false_alarm_rate(&scores, 0.0).is_none());
    assert!(threshold_for_false_alarm_rate(&[f64::NAN], 0.1).is_none());
}

/// 10 000 complaints clustered exactly. Run:
/// `cargo test --release --lib recurring::tests::ten_thousand_complaints -- --ignored --nocapture`
#[test]
#[ignore = "scale check; a few seconds in release"]
fn ten_thousand_complaints() {
    let (complaints, speaker_of) = period(11, 4900, 20);
    let started = std::time::Instant::now();
    let found = cluster(&complaints, &ClusterOptions::with_threshold(0.4)).unwrap();
    println!(
        "{} complaints clustered in {:.2?}",
        complaints.len(),
        started.elapsed()
    );
    let pure = found
        .iter()
        .filter(|c| speakers_of(c, &speaker_of).iter().all(|&s| s >= 4900))
        .count();
    println!("{} flagged, {pure} of them proxies only", found.len());
    assert_eq!(found.len(), 20);
    assert_eq!(pure, 20);
}
