//! Recurring voices across customers: find complainants who speak for more than one customer.
//!
//! Professional complaint proxies and fraudsters call on behalf of many customers. Given the
//! complaints of a period, each with the customer it was filed for and the complainant's speaker
//! embedding, this module groups the complaints by voice and reports every group whose complaints
//! span at least two distinct customer ids.
//!
//! Two forms share one decision rule, the **average cosine** between a complaint (or a group) and
//! a group:
//!
//! - [`cluster`]: agglomerative clustering with average linkage, stopped at
//!   [`ClusterOptions::threshold`]. Exact, and fit for 10k+ complaints: two groups can only merge
//!   if some pair across them scores above the threshold (an average never exceeds the maximum),
//!   so the complaints are first split into the connected components of the thresholded
//!   similarity graph (union-find over the `n²/2` dot products), and average linkage runs with
//!   the nearest-neighbour chain algorithm inside each component only.
//! - [`IncrementalClusterer`]: for real time, a new complaint joins the group with the highest
//!   average cosine above the threshold, or starts a new group.
//!
//! The threshold is a cosine of the embedder in use; pick it from the target false-alarm rate of
//! *pairs* on non-target scores of that embedder (see [`threshold_for_false_alarm_rate`]).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Errors of the recurring-voice module.
#[derive(Debug, thiserror::Error)]
pub enum RecurringError {
    /// An embedding has another dimension than the first one seen.
    #[error("complaint {complaint_id}: embedding has {got} dimensions, expected {expected}")]
    DimensionMismatch {
        /// The complaint whose embedding is off.
        complaint_id: String,
        /// Its dimension.
        got: usize,
        /// The dimension of the first complaint.
        expected: usize,
    },
    /// An embedding is empty, all zero, or holds NaN/infinity.
    #[error("complaint {0}: embedding is empty, zero or not finite")]
    InvalidEmbedding(String),
    /// Two complaints carry the same complaint id.
    #[error("duplicate complaint id {0}")]
    DuplicateComplaint(String),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
}

/// One complaint: who it was filed for, and the complainant's voice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Complaint {
    /// Unique id of the complaint.
    pub complaint_id: String,
    /// The customer the complaint was filed for.
    pub customer_id: String,
    /// Speaker embedding of the complainant (normalised to unit length here if it is not).
    pub embedding: Vec<f32>,
}

/// Options of [`cluster`] and [`IncrementalClusterer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterOptions {
    /// Groups merge while their average cosine is at least this.
    pub threshold: f64,
    /// A group is reported when it spans at least this many distinct customer ids (≥ 2).
    pub min_customers: usize,
    /// Mean cosine at which the reported confidence is 0.5.
    pub confidence_midpoint: f64,
    /// Width of the logistic map from mean cosine to confidence (cosine per unit of log-odds).
    pub confidence_scale: f64,
    /// Most pairwise scores reported per cluster (cross-customer pairs first, best first).
    pub max_pairwise: usize,
    /// Largest connected component clustered exactly; a larger one (only with a threshold far
    /// too low for the embedder) is split by raising its edge threshold in steps of 0.02 until its
    /// pieces fit, which can only separate groups, never join them.
    pub max_component: usize,
}

impl Default for ClusterOptions {
    /// Threshold 0.5, two customers, confidence 0.5 at the threshold rising to 0.95 at
    /// threshold + 0.15, 200 pairs, components up to 5000 complaints.
    fn default() -> Self {
        ClusterOptions {
            threshold: 0.5,
            min_customers: 2,
            confidence_midpoint: 0.5,
            confidence_scale: 0.05,
            max_pairwise: 200,
            max_component: 5000,
        }
    }
}

impl ClusterOptions {
    /// Options with `threshold`, the confidence map centred on it, and the other defaults.
    pub fn with_threshold(threshold: f64) -> Self {
        ClusterOptions {
            threshold,
            confidence_midpoint: threshold,
            ..ClusterOptions::default()
        }
    }

    fn validate(&self) -> Result<(), RecurringError> {
        if !(-1.0..=1.0).contains(&self.threshold) {
            return Err(RecurringError::InvalidOption(
                "threshold must be a cosine in [-1, 1]",
            ));
        }
        if self.min_customers < 2 {
            return Err(RecurringError::InvalidOption(
                "min_customers must be at least 2",
            ));
        }
        if !(self.confidence_scale.is_finite() && self.confidence_scale > 0.0) {
            return Err(RecurringError::InvalidOption(
                "confidence_scale must be positive",
            ));
        }
        if !self.confidence_midpoint.is_finite() {
            return Err(RecurringError::InvalidOption(
                "confidence_midpoint must be finite",
            ));
        }
        if self.max_component < 2 {
            return Err(RecurringError::InvalidOption(
                "max_component must be at least 2",
            ));
        }
        Ok(())
    }

    fn confidence(&self, mean: f64) -> f64 {
        1.0 / (1.0 + (-(mean - self.confidence_midpoint) / self.confidence_scale).exp())
    }
}

/// The score of one pair of complaints in a cluster (evidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairScore {
    /// First complaint id.
    pub a: String,
    /// Second complaint id.
    pub b: String,
    /// Cosine between the two complainants' embeddings.
    pub score: f64,
}

/// A voice heard under several customer ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspiciousCluster {
    /// The complaints of the cluster, in input order.
    pub complaint_ids: Vec<String>,
    /// The distinct customer ids they were filed for, sorted.
    pub customer_ids: Vec<String>,
    /// Confidence in `[0, 1]` that the complaints share one voice: a logistic map of `mean_score`.
    pub confidence: f64,
    /// Mean cosine over all pairs of the cluster (the average-linkage cohesion).
    pub mean_score: f64,
    /// Lowest pairwise cosine in the cluster.
    pub min_score: f64,
    /// Pairwise cosines, cross-customer pairs first, highest first, at most
    /// [`ClusterOptions::max_pairwise`].
    pub pairwise: Vec<PairScore>,
}

/// The cosine threshold at which a fraction `rate` of the given non-target (different-speaker)
/// scores would be accepted: the `(1 - rate)` quantile. `None` without finite scores or with a
/// rate outside `(0, 1)`.
pub fn threshold_for_false_alarm_rate(nontarget_scores: &[f64], rate: f64) -> Option<f64> {
    if !(rate > 0.0 && rate < 1.0) {
        return None;
    }
    let mut s: Vec<f64> = nontarget_scores
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let k = ((1.0 - rate) * s.len() as f64).ceil() as usize;
    Some(s[k.min(s.len() - 1)])
}

/// Unit-length copies of the embeddings, checked.
fn normalised(complaints: &[Complaint]) -> Result<Vec<Vec<f32>>, RecurringError> {
    let mut seen = BTreeSet::new();
    let dim = complaints.first().map_or(0, |c| c.embedding.len());
    complaints
        .iter()
        .map(|c| {
            if !seen.insert(c.complaint_id.as_str()) {
                return Err(RecurringError::DuplicateComplaint(c.complaint_id.clone()));
            }
            if c.embedding.len() != dim {
                return Err(RecurringError::DimensionMismatch {
                    complaint_id: c.complaint_id.clone(),
                    got: c.embedding.len(),
                    expected: dim,
                });
            }
            unit(&c.embedding)
                .ok_or_else(|| RecurringError::InvalidEmbedding(c.complaint_id.clone()))
        })
        .collect()
}

fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return None;
    }
    Some(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    // Four accumulators let the compiler vectorise; f32 is ample for 192-d unit vectors.
    let mut acc = [0f32; 4];
    let chunks = a.len() / 4 * 4;
    for (x, y) in a[..chunks].chunks_exact(4).zip(b[..chunks].chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    f64::from(acc[0] + acc[1] + acc[2] + acc[3] + tail)
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// Edges of the similarity graph at or above `threshold`, `(i, j, cosine)` with `i < j`.
fn edges_above(units: &[Vec<f32>], threshold: f64) -> Vec<(usize, usize, f64)> {
    use rayon::prelude::*;
    (0..units.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let ui = &units[i];
            units[i + 1..]
                .iter()
                .enumerate()
                .filter_map(move |(k, uj)| {
                    let s = dot(ui, uj);
                    (s >= threshold).then_some((i, i + 1 + k, s))
                })
        })
        .collect()
}

/// Connected components (with at least two members) of the graph on `members` given by `edges`.
fn components(members: &[usize], edges: &[(usize, usize, f64)], threshold: f64) -> Vec<Vec<usize>> {
    let index: HashMap<usize, usize> = members.iter().enumerate().map(|(k, &m)| (m, k)).collect();
    let mut uf = UnionFind::new(members.len());
    for &(i, j, s) in edges {
        if s >= threshold
            && let (Some(&a), Some(&b)) = (index.get(&i), index.get(&j))
        {
            uf.union(a, b);
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (k, &m) in members.iter().enumerate() {
        groups.entry(uf.find(k)).or_default().push(m);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    out.sort();
    out
}

/// Exact average-linkage clustering of `members`, stopped at `threshold`, by the
/// nearest-neighbour chain algorithm on a dense matrix of pair-score sums: `O(m²)` time and memory.
fn average_linkage(units: &[Vec<f32>], members: &[usize], threshold: f64) -> Vec<Vec<usize>> {
    let m = members.len();
    // sum[a * m + b]: sum of cosines over all pairs across clusters a and b.
    let mut sum = vec![0f64; m * m];
    for a in 0..m {
        for b in a + 1..m {
            let s = dot(&units[members[a]], &units[members[b]]);
            sum[a * m + b] = s;
            sum[b * m + a] = s;
        }
    }
    let mut size = vec![1usize; m];
    let mut active = vec![true; m];
    let mut groups: Vec<Vec<usize>> = members.iter().map(|&x| vec![x]).collect();
    let mut done: Vec<Vec<usize>> = Vec::new();
    let mut chain: Vec<usize> = Vec::new();
    let mut remaining = m;
    while remaining > 0 {
        if chain.is_empty() {
            let Some(start) = (0..m).find(|&k| active[k]) else {
                break;
            };
            chain.push(start);
        }
        let Some(&top) = chain.last() else { break };
        let prev = chain.len().checked_sub(2).map(|k| chain[k]);
        // Nearest neighbour of `top` by average score; ties go to the previous chain element so
        // the chain cannot cycle.
        let mut best: Option<(usize, f64)> = None;
        for k in 0..m {
            if k == top || !active[k] {
                continue;
            }
            let avg = sum[top * m + k] / (size[top] * size[k]) as f64;
            let better = match best {
                None => true,
                Some((bk, bs)) => avg > bs || (avg == bs && Some(k) == prev && Some(bk) != prev),
            };
            if better {
                best = Some((k, avg));
            }
        }
        match best {
            Some((nn, avg)) if avg >= threshold => {
                if Some(nn) == prev {
                    chain.pop();
                    chain.pop();
                    let (keep, gone) = (top.min(nn), top.max(nn));
                    for k in 0..m {
                        if active[k] && k != keep && k != gone {
                            let s = sum[keep * m + k] + sum[gone * m + k];
                            sum[keep * m + k] = s;
                            sum[k * m + keep] = s;
                        }
                    }
                    size[keep] += size[gone];
                    active[gone] = false;
                    let moved = std::mem::take(&mut groups[gone]);
                    groups[keep].extend(moved);
                    remaining -= 1;
                } else {
                    chain.push(nn);
                }
            }
            _ => {
                // Nothing reaches the threshold: by reducibility of average linkage no later
                // merge can change that, so `top` is final.
                chain.pop();
                active[top] = false;
                done.push(std::mem::take(&mut groups[top]));
                remaining -= 1;
            }
        }
    }
    done
}

/// Clusters of one connected component, splitting it first if it is larger than allowed.
fn cluster_component(
    units: &[Vec<f32>],
    members: &[usize],
    edges: &[(usize, usize, f64)],
    edge_threshold: f64,
    opts: &ClusterOptions,
    out: &mut Vec<Vec<usize>>,
) {
    if members.len() <= opts.max_component || edge_threshold >= 1.0 {
        out.extend(average_linkage(units, members, opts.threshold));
        return;
    }
    let raised = edge_threshold + 0.02;
    let inside: BTreeSet<usize> = members.iter().copied().collect();
    let sub_edges: Vec<(usize, usize, f64)> = edges
        .iter()
        .copied()
        .filter(|&(i, j, s)| s >= raised && inside.contains(&i) && inside.contains(&j))
        .collect();
    let parts = components(members, &sub_edges, raised);
    let covered: BTreeSet<usize> = parts.iter().flatten().copied().collect();
    out.extend(
        members
            .iter()
            .filter(|m| !covered.contains(m))
            .map(|&m| vec![m]),
    );
    for part in parts {
        cluster_component(units, &part, &sub_edges, raised, opts, out);
    }
}

/// Agglomerative clustering (average linkage, stopped at `opts.threshold`) of the complaints by
/// voice; returns the clusters spanning at least `opts.min_customers` customer ids, most
/// confident first.
pub fn cluster(
    complaints: &[Complaint],
    opts: &ClusterOptions,
) -> Result<Vec<SuspiciousCluster>, RecurringError> {
    opts.validate()?;
    let units = normalised(complaints)?;
    let edges = edges_above(&units, opts.threshold);
    let all: Vec<usize> = (0..units.len()).collect();
    let mut groups = Vec::new();
    for component in components(&all, &edges, opts.threshold) {
        cluster_component(
            &units,
            &component,
            &edges,
            opts.threshold,
            opts,
            &mut groups,
        );
    }
    let mut out: Vec<SuspiciousCluster> = groups
        .iter()
        .filter_map(|g| describe(complaints, &units, g, opts))
        .collect();
    sort_clusters(&mut out);
    Ok(out)
}

fn sort_clusters(clusters: &mut [SuspiciousCluster]) {
    clusters.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(b.customer_ids.len().cmp(&a.customer_ids.len()))
            .then(a.complaint_ids.cmp(&b.complaint_ids))
    });
}

/// The report of one group, if it spans enough customers.
fn describe(
    complaints: &[Complaint],
    units: &[Vec<f32>],
    group: &[usize],
    opts: &ClusterOptions,
) -> Option<SuspiciousCluster> {
    let customers: BTreeSet<&str> = group
        .iter()
        .map(|&i| complaints[i].customer_id.as_str())
        .collect();
    if customers.len() < opts.min_customers {
        return None;
    }
    let mut members = group.to_vec();
    members.sort_unstable();
    let mut pairs: Vec<(bool, usize, usize, f64)> = Vec::new();
    let mut total = 0.0;
    let mut min_score = f64::INFINITY;
    for (k, &i) in members.iter().enumerate() {
        for &j in &members[k + 1..] {
            let s = dot(&units[i], &units[j]);
            total += s;
            min_score = min_score.min(s);
            pairs.push((
                complaints[i].customer_id != complaints[j].customer_id,
                i,
                j,
                s,
            ));
        }
    }
    let mean = total / pairs.len().max(1) as f64;
    pairs.sort_by(|x, y| y.0.cmp(&x.0).then(y.3.total_cmp(&x.3)));
    Some(SuspiciousCluster {
        complaint_ids: members
            .iter()
            .map(|&i| complaints[i].complaint_id.clone())
            .collect(),
        customer_ids: customers.into_iter().map(str::to_owned).collect(),
        confidence: opts.confidence(mean),
        mean_score: mean,
        min_score,
        pairwise: pairs
            .into_iter()
            .take(opts.max_pairwise)
            .map(|(_, i, j, score)| PairScore {
                a: complaints[i].complaint_id.clone(),
                b: complaints[j].complaint_id.clone(),
                score,
            })
            .collect(),
    })
}

/// Where [`IncrementalClusterer::add`] put a complaint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Id of the cluster (stable for the clusterer's lifetime).
    pub cluster_id: usize,
    /// Average cosine to the cluster it joined; `None` when it started a new one.
    pub score: Option<f64>,
    /// Whether the cluster now spans enough customer ids to be reported.
    pub suspicious: bool,
    /// Whether this complaint made the cluster suspicious.
    pub newly_suspicious: bool,
}

struct Group {
    members: Vec<usize>,
    /// Sum of the members' unit embeddings: the average cosine to a unit vector `x` is
    /// `x · sum / n`.
    sum: Vec<f32>,
    customers: BTreeSet<String>,
}

/// Online clustering for real time: each complaint joins the existing cluster with the highest
/// average cosine if that reaches the threshold, or starts its own. `O(clusters × dim)` per
/// complaint; clusters never merge afterwards (run [`cluster`] over the period for that).
pub struct IncrementalClusterer {
    opts: ClusterOptions,
    complaints: Vec<Complaint>,
    units: Vec<Vec<f32>>,
    groups: Vec<Group>,
    ids: BTreeSet<String>,
}

impl IncrementalClusterer {
    /// An empty clusterer.
    pub fn new(opts: ClusterOptions) -> Result<Self, RecurringError> {
        opts.validate()?;
        Ok(IncrementalClusterer {
            opts,
            complaints: Vec::new(),
            units: Vec::new(),
            groups: Vec::new(),
            ids: BTreeSet::new(),
        })
    }

    /// Number of complaints added.
    pub fn len(&self) -> usize {
        self.complaints.len()
    }

    /// Whether no complaint was added.
    pub fn is_empty(&self) -> bool {
        self.complaints.is_empty()
    }

    /// The cluster `embedding` would join and its average cosine, without adding anything.
    pub fn best_cluster(&self, embedding: &[f32]) -> Option<(usize, f64)> {
        let u = unit(embedding)?;
        if self.units.first().is_some_and(|f| f.len() != u.len()) {
            return None;
        }
        self.nearest(&u).filter(|&(_, s)| s >= self.opts.threshold)
    }

    fn nearest(&self, u: &[f32]) -> Option<(usize, f64)> {
        self.groups
            .iter()
            .enumerate()
            .map(|(k, g)| (k, dot(u, &g.sum) / g.members.len() as f64))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
    }

    /// Adds a complaint and says where it went.
    pub fn add(&mut self, complaint: Complaint) -> Result<Assignment, RecurringError> {
        if self.ids.contains(&complaint.complaint_id) {
            return Err(RecurringError::DuplicateComplaint(complaint.complaint_id));
        }
        if let Some(first) = self.units.first()
            && first.len() != complaint.embedding.len()
        {
            return Err(RecurringError::DimensionMismatch {
                complaint_id: complaint.complaint_id,
                got: complaint.embedding.len(),
                expected: first.len(),
            });
        }
        let u = unit(&complaint.embedding)
            .ok_or_else(|| RecurringError::InvalidEmbedding(complaint.complaint_id.clone()))?;
        let index = self.complaints.len();
        let joined = self.nearest(&u).filter(|&(_, s)| s >= self.opts.threshold);
        let (cluster_id, score) = match joined {
            Some((k, s)) => (k, Some(s)),
            None => {
                self.groups.push(Group {
                    members: Vec::new(),
                    sum: vec![0.0; u.len()],
                    customers: BTreeSet::new(),
                });
                (self.groups.len() - 1, None)
            }
        };
        let group = &mut self.groups[cluster_id];
        let was = group.customers.len() >= self.opts.min_customers;
        group.members.push(index);
        for (s, x) in group.sum.iter_mut().zip(&u) {
            *s += x;
        }
        group.customers.insert(complaint.customer_id.clone());
        let now = group.customers.len() >= self.opts.min_customers;
        self.ids.insert(complaint.complaint_id.clone());
        self.complaints.push(complaint);
        self.units.push(u);
        Ok(Assignment {
            cluster_id,
            score,
            suspicious: now,
            newly_suspicious: now && !was,
        })
    }

    /// The report of cluster `cluster_id` if it is suspicious.
    pub fn cluster(&self, cluster_id: usize) -> Option<SuspiciousCluster> {
        let g = self.groups.get(cluster_id)?;
        describe(&self.complaints, &self.units, &g.members, &self.opts)
    }

    /// The complaint ids (in the order added) and the distinct customer ids (sorted) of cluster
    /// `cluster_id`, suspicious or not.
    pub fn members(&self, cluster_id: usize) -> Option<(Vec<&str>, Vec<&str>)> {
        let g = self.groups.get(cluster_id)?;
        let complaints = g
            .members
            .iter()
            .map(|&i| self.complaints[i].complaint_id.as_str())
            .collect();
        Some((complaints, g.customers.iter().map(String::as_str).collect()))
    }

    /// Whether a complaint with this id was added.
    pub fn contains(&self, complaint_id: &str) -> bool {
        self.ids.contains(complaint_id)
    }

    /// Reports of all suspicious clusters with their cluster ids, most confident first.
    pub fn suspicious_clusters_by_id(&self) -> Vec<(usize, SuspiciousCluster)> {
        let mut out: Vec<(usize, SuspiciousCluster)> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(k, g)| {
                describe(&self.complaints, &self.units, &g.members, &self.opts).map(|c| (k, c))
            })
            .collect();
        out.sort_by(|a, b| {
            b.1.confidence
                .total_cmp(&a.1.confidence)
                .then(a.0.cmp(&b.0))
        });
        out
    }

    /// Reports of all suspicious clusters, most confident first.
    pub fn suspicious_clusters(&self) -> Vec<SuspiciousCluster> {
        let mut out: Vec<SuspiciousCluster> = self
            .groups
            .iter()
            .filter_map(|g| describe(&self.complaints, &self.units, &g.members, &self.opts))
            .collect();
        sort_clusters(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
