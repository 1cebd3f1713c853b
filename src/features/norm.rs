//! Per-utterance normalisation of feature matrices.

use super::FeatureMatrix;
use super::simd::{self, Level, dispatch};

/// Per-dimension mean over all rows, accumulated in `f64` (no fused operations: the result is
/// bit-identical at every dispatch level).
#[inline(always)]
fn column_means(m: &FeatureMatrix) -> Vec<f64> {
    let mut sums = vec![0.0f64; m.dim()];
    for row in m.rows() {
        for (s, &x) in sums.iter_mut().zip(row) {
            *s += f64::from(x);
        }
    }
    let n = m.num_frames().max(1) as f64;
    sums.iter_mut().for_each(|s| *s /= n);
    sums
}

/// Cepstral mean normalisation: subtracts each dimension's mean over time (mean in `f64`, result
/// rounded to `f32`; the golden `fbank80_cmn` recipe and CAM++'s input). No-op on an empty matrix.
pub fn apply_cmn(m: &mut FeatureMatrix) {
    apply_cmn_at(simd::level(), m);
}

/// [`apply_cmn`] at a given dispatch level (the result is the same at every level).
pub(crate) fn apply_cmn_at(level: Level, m: &mut FeatureMatrix) {
    dispatch!(level, avx2: apply_cmn_avx2(m), scalar: apply_cmn_body(m));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn apply_cmn_avx2(m: &mut FeatureMatrix) {
    apply_cmn_body(m);
}

#[inline(always)]
fn apply_cmn_body(m: &mut FeatureMatrix) {
    if m.is_empty() {
        return;
    }
    let means = column_means(m);
    subtract_means_body(m, &means);
}

#[inline(always)]
fn subtract_means_body(m: &mut FeatureMatrix, means: &[f64]) {
    for row in m.rows_mut() {
        for (x, &mu) in row.iter_mut().zip(means) {
            *x = (f64::from(*x) - mu) as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn subtract_means_avx2(m: &mut FeatureMatrix, means: &[f64]) {
    subtract_means_body(m, means);
}

/// [`apply_cmn`] given each column's sum over all rows, accumulated in `f64` in row order (as
/// `Fbank::compute_fused` does while producing the rows): one pass over the matrix instead of two,
/// with a result bit-identical to [`apply_cmn`]'s. Sums of the wrong length leave `m` unchanged.
pub(crate) fn apply_cmn_with_sums(level: Level, m: &mut FeatureMatrix, sums: &[f64]) {
    if m.is_empty() || sums.len() != m.dim() {
        return;
    }
    let n = m.num_frames().max(1) as f64;
    let means: Vec<f64> = sums.iter().map(|s| s / n).collect();
    dispatch!(level,
        avx2: subtract_means_avx2(m, &means),
        scalar: subtract_means_body(m, &means),
    );
}

/// Mean and variance normalisation: each dimension to zero mean and unit (population) variance
/// over time. Dimensions with (near-)zero variance are only mean-normalised. No-op on an empty matrix.
pub fn apply_cmvn(m: &mut FeatureMatrix) {
    if m.is_empty() {
        return;
    }
    let means = column_means(m);
    let mut vars = vec![0.0f64; m.dim()];
    for row in m.rows() {
        for ((v, &x), &mu) in vars.iter_mut().zip(row).zip(&means) {
            let d = f64::from(x) - mu;
            *v += d * d;
        }
    }
    let n = m.num_frames() as f64;
    let scales: Vec<f64> = vars
        .iter()
        .map(|v| {
            let sd = (v / n).sqrt();
            if sd > 1e-10 { 1.0 / sd } else { 1.0 }
        })
        .collect();
    for row in m.rows_mut() {
        for ((x, &mu), &s) in row.iter_mut().zip(&means).zip(&scales) {
            *x = ((f64::from(*x) - mu) * s) as f32;
        }
    }
}
