//! Audio quality: voice activity detection, net speech, SNR and clipping.
//!
//! The VAD is energy based with an adaptive noise floor: every analysis frame (the same snip-edges
//! grid as the filterbank, 25 ms / 10 ms by default) gets its DC-free log energy; the noise floor is
//! a low percentile of those energies; a frame is speech when it is `threshold_db` above the floor
//! and above an absolute level. Speech runs shorter than `min_speech_frames` are dropped (clicks),
//! then each speech run is extended by a hangover on both sides.
//!
//! Samples are `f32` in 16-bit integer scale (±32768), as everywhere in the crate.

use crate::features::fastmath::{sum_sq_dev8, sum8};
use crate::features::simd::{self, Level, dispatch};
use crate::features::{Fbank, FeatureMatrix};

mod frontend;
mod streaming;
pub use frontend::{FrontEnd, FrontEndOutput};
pub use streaming::StreamingVad;

/// Frame powers (mean square per sample) are floored here: the power of int16 quantisation noise,
/// 1/12 LSB², so digital silence reads about −10.8 dB.
const POWER_FLOOR: f64 = 1.0 / 12.0;

/// Options of [`speech_mask`] and [`assess`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadOptions {
    /// Analysis frame length, ms (same grid as the filterbank by default: 25).
    pub frame_length_ms: f32,
    /// Frame shift, ms (default 10).
    pub frame_shift_ms: f32,
    /// Percentile (0–100) of the frame energies taken as the noise floor (default 10).
    pub noise_percentile: f32,
    /// How far above the noise floor a frame must be to count as speech, dB (default 12).
    pub threshold_db: f32,
    /// Absolute minimum level of speech, dB relative to 1 LSB RMS (default 30 dB ≈ −60 dBFS).
    pub min_level_db: f32,
    /// Speech runs shorter than this many frames are discarded as clicks (default 3).
    pub min_speech_frames: usize,
    /// Frames added after each speech run (default 8 = 80 ms).
    pub hangover_frames: usize,
    /// Frames added before each speech run (default 3 = 30 ms).
    pub onset_frames: usize,
    /// Samples with `|x| >= clip_level · 32767` count as clipped (default 0.99).
    pub clip_level: f32,
    /// Runs of at least this many identical samples at the signal's own peak count as clipped
    /// (flat tops from clipping before a gain stage; default 3).
    pub clip_run: usize,
}

impl Default for VadOptions {
    fn default() -> Self {
        Self {
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            noise_percentile: 10.0,
            threshold_db: 12.0,
            min_level_db: 30.0,
            min_speech_frames: 3,
            hangover_frames: 8,
            onset_frames: 3,
            clip_level: 0.99,
            clip_run: 3,
        }
    }
}

impl VadOptions {
    /// Frame length and shift in samples at `sample_rate` (each at least 1).
    pub fn frame_samples(&self, sample_rate: u32) -> (usize, usize) {
        let samples = |ms: f32| {
            let v = f64::from(sample_rate) * 0.001 * f64::from(ms);
            if v.is_finite() && v >= 1.0 {
                v as usize
            } else {
                1
            }
        };
        (samples(self.frame_length_ms), samples(self.frame_shift_ms))
    }
}

/// Summary figures of one recording.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Quality {
    /// Length of the audio, seconds.
    pub duration_seconds: f64,
    /// Speech frames × frame shift, seconds.
    pub net_speech_seconds: f64,
    /// Mean power of speech frames over mean power of non-speech frames, dB. Without non-speech
    /// frames the noise is the 5th percentile of all frame powers; without speech it is 0.
    pub snr_db: f64,
    /// Fraction of samples that are clipped (at full scale, or in flat runs at the signal's peak).
    pub clipping_ratio: f64,
}

/// [`Quality`] plus the per-frame speech decisions it was computed from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QualityReport {
    /// The summary figures.
    pub quality: Quality,
    /// One decision per snip-edges analysis frame (the filterbank's frame grid).
    pub speech: Vec<bool>,
}

/// Mean square (per sample) of each snip-edges frame after removing the frame's mean.
fn frame_powers(level: Level, samples: &[f32], len: usize, hop: usize) -> Vec<f64> {
    dispatch!(level,
        avx2: frame_powers_avx2(samples, len, hop),
        scalar: frame_powers_body(samples, len, hop),
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn frame_powers_avx2(samples: &[f32], len: usize, hop: usize) -> Vec<f64> {
    frame_powers_body(samples, len, hop)
}

/// The frame sums are never fused, so the powers (and every VAD decision) are bit-identical at
/// every dispatch level, and to the filterbank's `compute_with_energies`.
#[inline(always)]
fn frame_powers_body(samples: &[f32], len: usize, hop: usize) -> Vec<f64> {
    if samples.len() < len || hop == 0 {
        return Vec::new();
    }
    let n = 1 + (samples.len() - len) / hop;
    let mut powers = Vec::with_capacity(n);
    for t in 0..n {
        let f = &samples[t * hop..t * hop + len];
        let mean = sum8(f) / len as f32;
        powers.push(power_of(sum_sq_dev8(f, mean), len));
    }
    powers
}

/// A frame's power (mean square per sample, floored) from its energy `Σ (x − mean)²`.
#[inline(always)]
fn power_of(energy: f32, len: usize) -> f64 {
    (f64::from(energy) / len as f64).max(POWER_FLOOR)
}

fn percentile(values: &[f64], pct: f32) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let p = f64::from(pct.clamp(0.0, 100.0)) / 100.0;
    let k = ((v.len() - 1) as f64 * p).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    *x
}

fn mask_from_powers(powers: &[f64], opts: &VadOptions) -> Vec<bool> {
    let db: Vec<f64> = powers.iter().map(|p| 10.0 * p.log10()).collect();
    let floor = percentile(&db, opts.noise_percentile);
    let threshold = (floor + f64::from(opts.threshold_db)).max(f64::from(opts.min_level_db));
    let raw: Vec<bool> = db.iter().map(|&d| d > threshold).collect();

    // Drop short runs (clicks), then extend the surviving runs by onset / hangover.
    let mut kept = vec![false; raw.len()];
    let mut t = 0;
    while t < raw.len() {
        if !raw[t] {
            t += 1;
            continue;
        }
        let start = t;
        while t < raw.len() && raw[t] {
            t += 1;
        }
        if t - start >= opts.min_speech_frames {
            let lo = start.saturating_sub(opts.onset_frames);
            let hi = (t + opts.hangover_frames).min(raw.len());
            kept[lo..hi].iter_mut().for_each(|k| *k = true);
        }
    }
    kept
}

/// Speech / non-speech decision for each snip-edges analysis frame of `samples` (frame `t` covers
/// samples `t·shift .. t·shift + length`, the filterbank's grid). Empty when the input is shorter
/// than one frame.
pub fn speech_mask(samples: &[f32], sample_rate: u32, opts: &VadOptions) -> Vec<bool> {
    let (len, hop) = opts.frame_samples(sample_rate);
    mask_from_powers(&frame_powers(simd::level(), samples, len, hop), opts)
}

/// Fraction of samples that are clipped: at or beyond `clip_level · 32767`, or inside a run of at
/// least `clip_run` identical samples at the signal's own peak magnitude (when that peak is at least
/// 1/4 of full scale, so quiet flat stretches are not mistaken for clipping).
pub fn clipping_ratio(samples: &[f32], opts: &VadOptions) -> f64 {
    clipping_ratio_at(simd::level(), samples, opts)
}

/// [`clipping_ratio`] at a given dispatch level (the result is the same at every level).
fn clipping_ratio_at(level: Level, samples: &[f32], opts: &VadOptions) -> f64 {
    dispatch!(level,
        avx2: clipping_ratio_avx2(samples, opts),
        scalar: clipping_ratio_body(samples, opts),
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn clipping_ratio_avx2(samples: &[f32], opts: &VadOptions) -> f64 {
    clipping_ratio_body(samples, opts)
}

#[inline(always)]
fn clipping_ratio_body(samples: &[f32], opts: &VadOptions) -> f64 {
    const BLOCK: usize = 64;
    let mut scan = ClipScan::new(opts, BLOCK, samples.len());
    for block in samples.chunks(BLOCK) {
        scan.push_body(block);
    }
    scan.finish(samples, opts)
}

/// The clipping count in one pass over consecutive blocks of the signal (all `block` samples
/// long but the last), so it can run inside another pass while the samples are in cache
/// ([`FrontEnd`] feeds it the filterbank's frame-shift pieces). Per block it counts the samples at
/// or beyond full scale and records the peak magnitude; [`finish`](Self::finish) then looks for
/// flat runs at the signal's own peak only in the blocks holding that peak. The answer is
/// [`clipping_ratio`]'s exactly, whatever the block length.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClipScan {
    full: f32,
    block: usize,
    clipped: usize,
    block_peaks: Vec<f32>,
}

impl ClipScan {
    /// A scan of a signal of about `len` samples (a capacity hint) in blocks of `block` samples.
    pub(crate) fn new(opts: &VadOptions, block: usize, len: usize) -> Self {
        let mut scan = Self::default();
        scan.reset(opts, block, len);
        scan
    }

    /// Starts over, keeping the allocation.
    pub(crate) fn reset(&mut self, opts: &VadOptions, block: usize, len: usize) {
        self.full = opts.clip_level * 32767.0;
        self.block = block.max(1);
        self.clipped = 0;
        self.block_peaks.clear();
        self.block_peaks.reserve(len.div_ceil(self.block));
    }

    /// The next blocks: `blocks` starts at a block boundary and holds whole blocks (but for the
    /// signal's very last, shorter one). At the CPU's dispatch level (the result is the same at
    /// every level).
    #[inline]
    pub(crate) fn push(&mut self, level: Level, blocks: &[f32]) {
        dispatch!(level, avx2: self.push_avx2(blocks), scalar: self.push_blocks(blocks));
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn push_avx2(&mut self, blocks: &[f32]) {
        self.push_blocks(blocks);
    }

    #[inline(always)]
    fn push_blocks(&mut self, blocks: &[f32]) {
        for block in blocks.chunks(self.block) {
            self.push_body(block);
        }
    }

    /// Branch-free and vectorised: the count at or beyond full scale and the block's peak.
    #[inline(always)]
    fn push_body(&mut self, block: &[f32]) {
        const LANES: usize = 8;
        let full = self.full;
        let mut peak8 = [0.0f32; LANES];
        let mut over8 = [0u32; LANES];
        let chunks = block.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for ((p, o), x) in peak8.iter_mut().zip(&mut over8).zip(c) {
                let a = x.abs();
                *p = p.max(a);
                *o += u32::from(a >= full);
            }
        }
        let mut peak = peak8.iter().fold(0.0f32, |m, &p| m.max(p));
        let mut clipped = over8.iter().map(|&o| o as usize).sum::<usize>();
        for x in rest {
            peak = peak.max(x.abs());
            clipped += usize::from(x.abs() >= full);
        }
        self.clipped += clipped;
        self.block_peaks.push(peak);
    }

    /// The clipped fraction of `samples`, the signal whose blocks were pushed.
    pub(crate) fn finish(&self, samples: &[f32], opts: &VadOptions) -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let block = self.block;
        let mut clipped = self.clipped;
        let peak = self.block_peaks.iter().fold(0.0f32, |m, &p| m.max(p));
        // Flat runs at the signal's own peak below full scale (at full scale every sample is
        // already counted): each maximal run of identical samples at ±peak at least `clip_run`
        // long. Only blocks that hold a peak sample are visited.
        if peak >= 8192.0 && opts.clip_run >= 2 && peak < self.full {
            let mut i = 0;
            while i < samples.len() {
                let b = i / block;
                let end = ((b + 1) * block).min(samples.len());
                if self.block_peaks.get(b).is_none_or(|&p| p != peak) {
                    i = end;
                    continue;
                }
                while i < end {
                    let x = samples[i];
                    if x.abs() != peak {
                        i += 1;
                        continue;
                    }
                    let start = i;
                    while i < samples.len() && samples[i] == x {
                        i += 1;
                    }
                    if i - start >= opts.clip_run {
                        clipped += i - start;
                    }
                }
            }
        }
        clipped as f64 / samples.len() as f64
    }
}

/// Duration, net speech, SNR and clipping of `samples` (the original decoded samples: clipping is
/// only meaningful before resampling), with the frame-level speech mask.
pub fn assess(samples: &[f32], sample_rate: u32, opts: &VadOptions) -> QualityReport {
    assess_at(simd::level(), samples, sample_rate, opts)
}

fn assess_at(level: Level, samples: &[f32], sample_rate: u32, opts: &VadOptions) -> QualityReport {
    let (len, hop) = opts.frame_samples(sample_rate);
    let powers = frame_powers(level, samples, len, hop);
    let clipping = clipping_ratio_at(level, samples, opts);
    report_from_powers(samples.len(), sample_rate, opts, &powers, clipping)
}

/// Whether `fbank` frames audio at `sample_rate` on the VAD's grid (same rate, frame length and
/// shift, snip edges: the defaults at every rate), so the VAD can take its frame energies.
fn same_grid(fbank: &Fbank, sample_rate: u32, opts: &VadOptions) -> bool {
    let (len, hop) = opts.frame_samples(sample_rate);
    let f = &fbank.options().frame;
    f.sample_rate == sample_rate
        && f.snip_edges
        && f.frame_length_samples() == len
        && f.frame_shift_samples() == hop
}

/// [`assess`] and `fbank.compute(samples)` together. When the extractor frames `samples` on the
/// VAD's grid (same sample rate, frame length and shift, snip edges, DC removal: the defaults at
/// every rate), the VAD reuses the filterbank's frame energies instead of a second pass over the
/// signal. The results are identical to calling the two separately.
pub fn assess_with_fbank(
    samples: &[f32],
    sample_rate: u32,
    opts: &VadOptions,
    fbank: &Fbank,
) -> (QualityReport, FeatureMatrix) {
    let (len, _) = opts.frame_samples(sample_rate);
    if !same_grid(fbank, sample_rate, opts) {
        return (assess(samples, sample_rate, opts), fbank.compute(samples));
    }
    let (feats, energies) = fbank.compute_with_energies(samples);
    let powers: Vec<f64> = energies.iter().map(|&e| power_of(e, len)).collect();
    let level = simd::level();
    let clipping = clipping_ratio_at(level, samples, opts);
    let report = report_from_powers(samples.len(), sample_rate, opts, &powers, clipping);
    (report, feats)
}

/// The report of `n_samples` samples at `sample_rate` from their frame powers and clipped fraction.
fn report_from_powers(
    n_samples: usize,
    sample_rate: u32,
    opts: &VadOptions,
    powers: &[f64],
    clipping_ratio: f64,
) -> QualityReport {
    let duration_seconds = if sample_rate == 0 {
        0.0
    } else {
        n_samples as f64 / f64::from(sample_rate)
    };
    let (_, hop) = opts.frame_samples(sample_rate);
    let speech = mask_from_powers(powers, opts);
    let shift_s = if sample_rate == 0 {
        0.0
    } else {
        hop as f64 / f64::from(sample_rate)
    };
    let n_speech = speech.iter().filter(|&&s| s).count();
    let mean_of = |want: bool| {
        let (sum, n) = powers
            .iter()
            .zip(&speech)
            .filter(|(_, s)| **s == want)
            .fold((0.0, 0usize), |(s, n), (p, _)| (s + p, n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    let snr_db = match mean_of(true) {
        None => 0.0,
        Some(sp) => {
            let noise = mean_of(false).unwrap_or_else(|| percentile(powers, 5.0));
            10.0 * (sp / noise.max(POWER_FLOOR)).log10()
        }
    };
    QualityReport {
        quality: Quality {
            duration_seconds,
            net_speech_seconds: n_speech as f64 * shift_s,
            snr_db,
            clipping_ratio,
        },
        speech,
    }
}

#[cfg(test)]
mod tests;
