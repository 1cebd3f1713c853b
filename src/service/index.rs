//! Decrypted in-memory search index: one per tenant for its enrolled speakers and one per
//! watchlist. Rows live contiguously (`dim` floats per row) with their cohort statistics, so a
//! search is one linear pass of dot products; the top `k` are kept in a bounded heap.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use crate::score::{Channel, Prepared, Score, Scorer, Thresholds, dot};

/// One searchable set of voiceprints.
#[derive(Debug, Default, Clone)]
pub struct Index {
    keys: Vec<String>,
    pos: HashMap<String, usize>,
    dim: usize,
    matrix: Vec<f32>,
    means: Vec<f32>,
    stds: Vec<f32>,
    channels: Vec<Option<Channel>>,
}

/// A search hit.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Key of the row (speaker id or watchlist entry id).
    pub key: String,
    /// Its score against the probe.
    pub score: Score,
}

struct Ranked(f64, usize, Score);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl Index {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Inserts or replaces a row. Rows of another dimension than the first are refused.
    pub fn upsert(&mut self, key: &str, p: &Prepared) -> bool {
        if self.keys.is_empty() {
            self.dim = p.embedding.len();
        }
        if p.embedding.len() != self.dim || self.dim == 0 {
            return false;
        }
        match self.pos.get(key) {
            Some(&i) => {
                self.matrix[i * self.dim..(i + 1) * self.dim].copy_from_slice(&p.embedding);
                self.means[i] = p.cohort_mean;
                self.stds[i] = p.cohort_std;
                self.channels[i] = p.channel;
            }
            None => {
                self.pos.insert(key.to_string(), self.keys.len());
                self.keys.push(key.to_string());
                self.matrix.extend_from_slice(&p.embedding);
                self.means.push(p.cohort_mean);
                self.stds.push(p.cohort_std);
                self.channels.push(p.channel);
            }
        }
        true
    }

    /// Removes a row (the last row moves into its place); false when absent.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(i) = self.pos.remove(key) else {
            return false;
        };
        let last = self.keys.len() - 1;
        if i != last {
            let (dim, moved) = (self.dim, self.keys[last].clone());
            self.matrix
                .copy_within(last * dim..(last + 1) * dim, i * dim);
            self.means[i] = self.means[last];
            self.stds[i] = self.stds[last];
            self.channels[i] = self.channels[last];
            self.keys[i] = moved.clone();
            self.pos.insert(moved, i);
        }
        self.keys.pop();
        self.matrix.truncate(last * self.dim);
        self.means.pop();
        self.stds.pop();
        self.channels.pop();
        true
    }

    /// The best `top_k` rows whose LLR reaches the threshold of their channel pairing with the
    /// probe, best (highest normalised score) first.
    pub fn search(
        &self,
        scorer: &Scorer,
        probe: &Prepared,
        thresholds: &Thresholds,
        top_k: usize,
    ) -> Vec<Hit> {
        if top_k == 0 || self.is_empty() || probe.embedding.len() != self.dim {
            return Vec::new();
        }
        let mut heap: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(top_k + 1);
        // `score_raw` reads only the enrolled side's cohort statistics, so the row needs no
        // embedding copy: normalisation and calibration stay exactly those of 1:1 verification.
        let mut row = Prepared {
            embedding: Vec::new(),
            cohort_mean: 0.0,
            cohort_std: 1.0,
            channel: None,
        };
        for (i, chunk) in self.matrix.chunks_exact(self.dim).enumerate() {
            row.cohort_mean = self.means[i];
            row.cohort_std = self.stds[i];
            row.channel = self.channels[i];
            let s = scorer.score_raw(dot(chunk, &probe.embedding), &row, probe);
            if s.llr < thresholds.for_pair(row.channel, probe.channel) || !s.llr.is_finite() {
                continue;
            }
            if heap.len() < top_k {
                heap.push(Reverse(Ranked(s.norm, i, s)));
            } else if heap.peek().is_some_and(|Reverse(worst)| s.norm > worst.0) {
                heap.pop();
                heap.push(Reverse(Ranked(s.norm, i, s)));
            }
        }
        let mut out: Vec<Ranked> = heap.into_iter().map(|Reverse(r)| r).collect();
        out.sort_by(|a, b| b.cmp(a));
        out.into_iter()
            .map(|Ranked(_, i, score)| Hit {
                key: self.keys[i].clone(),
                score,
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn unit(seed: u32) -> Vec<f32> {
        let v: Vec<f32> = (0..192)
            .map(|i| ((i * 7 + seed * 13) as f32).sin())
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn scorer() -> Scorer {
        Scorer::raw()
    }

    #[test]
    fn upsert_remove_search() {
        let s = scorer();
        let mut idx = Index::default();
        for k in 0..50u32 {
            assert!(idx.upsert(&format!("s{k}"), &s.prepare(&unit(k))));
        }
        assert_eq!(idx.len(), 50);
        let probe = s.prepare(&unit(7));
        let hits = idx.search(&s, &probe, &Thresholds::fixed(f64::NEG_INFINITY), 3);
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].key, "s7");
        assert!(
            hits[0].score.norm >= hits[1].score.norm && hits[1].score.norm >= hits[2].score.norm
        );
        // Brute force agrees on the order.
        let mut all: Vec<(f64, String)> = (0..50u32)
            .map(|k| (s.score(&s.prepare(&unit(k)), &probe).norm, format!("s{k}")))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert_eq!(
            hits.iter().map(|h| h.key.clone()).collect::<Vec<_>>(),
            all[..3].iter().map(|a| a.1.clone()).collect::<Vec<_>>()
        );
        // Open set: a threshold above the best llr gives nothing.
        assert!(
            idx.search(&s, &probe, &Thresholds::fixed(hits[0].score.llr + 1.0), 3)
                .is_empty()
        );
        assert!(idx.remove("s7"));
        assert!(!idx.remove("s7"));
        assert_eq!(idx.len(), 49);
        let hits = idx.search(&s, &probe, &Thresholds::fixed(f64::NEG_INFINITY), 1);
        assert_ne!(hits[0].key, "s7");
        // The moved row is still found under its own key.
        assert!(idx.remove("s49"));
        assert!(idx.upsert("s49", &s.prepare(&unit(49))));
        let hits = idx.search(
            &s,
            &s.prepare(&unit(49)),
            &Thresholds::fixed(f64::NEG_INFINITY),
            1,
        );
        assert_eq!(hits[0].key, "s49");
        assert!(!idx.upsert("bad", &s.prepare(&[1.0, 0.0])));
    }
}
