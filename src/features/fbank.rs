//! The filterbank and MFCC extractors: precomputed tables, one real FFT per frame, no allocation
//! per frame.
//!
//! The real FFT of a padded frame of `N` samples is a complex FFT of `N/2` points (rustfft) on the
//! even/odd sample pairs, followed by the usual split step; the split step is fused with the
//! power spectrum and written over separate, precomputed twiddle tables so that it vectorises.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::fastmath::{ln_fast, ln_in_place, sum_sq_dev8, sum_sq_dev8_n, sum8, sum8_n};
use super::options::{FbankOptions, FrameOptions, MfccOptions, WindowType};
use super::simd::{self, Level, dispatch, madd};
use super::{FeatureError, FeatureMatrix};

/// Kaldi's log floor: `log(max(energy, FLT_EPSILON))`.
const ENERGY_FLOOR: f32 = f32::EPSILON;

/// Kaldi's mel scale, in `f32` like kaldi-native-fbank so the set of non-zero FFT bins matches.
fn mel_scale(freq: f32) -> f32 {
    1127.0 * (1.0 + freq / 700.0).ln()
}

/// Lanes of the mel dot products: each filter's weights are zero-padded to a multiple of this so
/// the products vectorise (the power spectrum buffer is padded to match).
const MEL_LANES: usize = 8;

/// Triangular mel filters stored sparsely: filter `b` covers power bins
/// `starts[b] .. starts[b] + lens[b]` with weights `weights[offsets[b] ..][.. lens[b]]`, where
/// `lens[b]` is the filter's support rounded up to a multiple of [`MEL_LANES`] (zero weights).
#[derive(Debug, Clone)]
struct MelBanks {
    starts: Vec<usize>,
    lens: Vec<usize>,
    offsets: Vec<usize>,
    weights: Vec<f32>,
    /// Power spectrum length the padded filters may read.
    power_len: usize,
}

impl MelBanks {
    fn new(opts: &FbankOptions, padded: usize) -> Result<Self, FeatureError> {
        let num_fft_bins = padded / 2;
        let sample_freq = opts.frame.sample_rate as f32;
        let fft_bin_width = sample_freq / padded as f32;
        let mel_low = mel_scale(opts.low_freq);
        let mel_high = mel_scale(opts.resolved_high_freq());
        let delta = (mel_high - mel_low) / (opts.num_bins as f32 + 1.0);
        let bin_mels: Vec<f32> = (0..num_fft_bins)
            .map(|i| mel_scale(fft_bin_width * i as f32))
            .collect();
        let mut banks = MelBanks {
            starts: Vec::with_capacity(opts.num_bins),
            lens: Vec::with_capacity(opts.num_bins),
            offsets: Vec::with_capacity(opts.num_bins),
            weights: Vec::new(),
            power_len: num_fft_bins + 1,
        };
        for b in 0..opts.num_bins {
            let left = mel_low + b as f32 * delta;
            let center = mel_low + (b as f32 + 1.0) * delta;
            let right = mel_low + (b as f32 + 2.0) * delta;
            let mut first = None;
            let mut last = 0;
            let mut row = Vec::new();
            for (i, &mel) in bin_mels.iter().enumerate() {
                let weight = if mel > left && mel < right {
                    if mel <= center {
                        (mel - left) / (center - left)
                    } else {
                        (right - mel) / (right - center)
                    }
                } else {
                    0.0
                };
                row.push(weight);
                if weight > 0.0 {
                    first.get_or_insert(i);
                    last = i;
                }
            }
            let Some(first) = first else {
                return Err(FeatureError::InvalidOption {
                    name: "num_bins",
                    reason: format!(
                        "mel filter {b} of {} covers no FFT bin (too many bins for the FFT size)",
                        opts.num_bins
                    ),
                });
            };
            let len = (last + 1 - first).div_ceil(MEL_LANES) * MEL_LANES;
            banks.starts.push(first);
            banks.lens.push(len);
            banks.offsets.push(banks.weights.len());
            banks.weights.extend_from_slice(&row[first..=last]);
            banks
                .weights
                .resize(banks.weights.len() + len - (last + 1 - first), 0.0);
            banks.power_len = banks.power_len.max(first + len);
        }
        Ok(banks)
    }

    /// Mel energies of one power spectrum (at least `power_len` long, zero past the last FFT
    /// bin), floored at [`ENERGY_FLOOR`] (not yet logged).
    #[inline(always)]
    fn apply<const FMA: bool>(&self, power: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if FMA {
            // SAFETY: `FMA` is only true in code compiled with the `avx2,fma` target features
            // (`frame_log_mel_avx2`), which runs only after they were detected on this CPU.
            unsafe { self.apply_avx2(power, out) };
            return;
        }
        let iter = self.starts.iter().zip(&self.lens).zip(&self.offsets);
        for (o, ((&start, &len), &offset)) in out.iter_mut().zip(iter) {
            let p = &power[start..start + len];
            let w = &self.weights[offset..offset + len];
            let mut acc = [0.0f32; MEL_LANES];
            for (pc, wc) in p.chunks_exact(MEL_LANES).zip(w.chunks_exact(MEL_LANES)) {
                for ((a, &x), &y) in acc.iter_mut().zip(pc).zip(wc) {
                    *a = madd::<FMA>(x, y, *a);
                }
            }
            let e =
                ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            *o = e.max(ENERGY_FLOOR);
        }
    }

    /// [`apply`](Self::apply) with fused multiply-adds, eight filters at a time: each filter's
    /// eight lanes accumulate exactly as in `apply::<true>` would, and the eight horizontal sums
    /// are done together (the same additions in the same order,
    /// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`, so the energies are bit-identical to the
    /// per-filter loop's) instead of one shuffle-and-add chain per filter. The filters' bounds are
    /// checked once per call, not per filter.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn apply_avx2(&self, power: &[f32], out: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = self.starts.len().min(out.len());
        // Every filter reads power[start .. start + len] with start + len <= power_len, and the
        // weights are stored back to back: filter b's at offsets[b] = Σ lens[..b].
        if power.len() < self.power_len || self.weights.len() < self.lens.iter().sum::<usize>() {
            return;
        }
        let p0 = power.as_ptr();
        let mut w = self.weights.as_ptr();
        let dot = |b: usize, w: &mut *const f32| -> __m128 {
            let (start, len) = (self.starts[b], self.lens[b]);
            let mut acc = _mm256_setzero_ps();
            let mut c = 0;
            while c + MEL_LANES <= len {
                // SAFETY: start + c + 8 <= start + len <= power_len (`MelBanks::new` makes
                // power_len the largest start + len) <= power.len() (checked above), and the
                // weight pointer stays inside filter b's `len` weights (checked above).
                unsafe {
                    let x = _mm256_loadu_ps(p0.add(start + c));
                    let y = _mm256_loadu_ps(w.add(c));
                    acc = _mm256_fmadd_ps(x, y, acc);
                }
                c += MEL_LANES;
            }
            // SAFETY: advances past filter b's weights, at most to one past the end.
            *w = unsafe { w.add(len) };
            _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc))
        };
        let floor = _mm_set1_ps(ENERGY_FLOOR);
        let mut b = 0;
        while b < n {
            let group = (n - b).min(8);
            let mut h = [_mm_setzero_ps(); 8];
            if group == 8 {
                h[0] = dot(b, &mut w);
                h[1] = dot(b + 1, &mut w);
                h[2] = dot(b + 2, &mut w);
                h[3] = dot(b + 3, &mut w);
                h[4] = dot(b + 4, &mut w);
                h[5] = dot(b + 5, &mut w);
                h[6] = dot(b + 6, &mut w);
                h[7] = dot(b + 7, &mut w);
            } else {
                for (j, hj) in h.iter_mut().enumerate().take(group) {
                    *hj = dot(b + j, &mut w);
                }
            }
            // hadd(h_j, h_k) = [h_j0 + h_j1, h_j2 + h_j3, h_k0 + h_k1, h_k2 + h_k3].
            let q01 = _mm_hadd_ps(h[0], h[1]);
            let q23 = _mm_hadd_ps(h[2], h[3]);
            let q45 = _mm_hadd_ps(h[4], h[5]);
            let q67 = _mm_hadd_ps(h[6], h[7]);
            let lo = _mm_max_ps(_mm_hadd_ps(q01, q23), floor);
            let hi = _mm_max_ps(_mm_hadd_ps(q45, q67), floor);
            if group == 8 {
                let o = &mut out[b..b + 8];
                // SAFETY: `o` holds 8 f32s: two unaligned 4-lane stores at 0 and 4.
                unsafe {
                    _mm_storeu_ps(o.as_mut_ptr(), lo);
                    _mm_storeu_ps(o.as_mut_ptr().add(4), hi);
                }
            } else {
                let mut sums = [0.0f32; 8];
                // SAFETY: `sums` holds 8 f32s.
                unsafe {
                    _mm_storeu_ps(sums.as_mut_ptr(), lo);
                    _mm_storeu_ps(sums.as_mut_ptr().add(4), hi);
                }
                out[b..b + group].copy_from_slice(&sums[..group]);
            }
            b += group;
        }
    }
}

fn make_window(kind: WindowType, len: usize) -> Vec<f32> {
    let a = 2.0 * std::f64::consts::PI / (len as f64 - 1.0);
    (0..len)
        .map(|i| {
            let c = (a * i as f64).cos();
            let w = match kind {
                WindowType::Povey => (0.5 - 0.5 * c).powf(0.85),
                WindowType::Hanning => 0.5 - 0.5 * c,
                WindowType::Hamming => 0.54 - 0.46 * c,
                WindowType::Rectangular => 1.0,
            };
            w as f32
        })
        .collect()
}

/// Per-call scratch buffers; one per thread / stream, reused for every frame (and, held by a
/// [`crate::quality::FrontEnd`], across calls).
pub(crate) struct Workspace {
    /// The conditioned, zero-padded frame (`padded` samples) as `padded / 2` complex pairs
    /// (`x[2n] + i·x[2n+1]`), written through [`as_f32_mut`].
    packed: Vec<Complex<f32>>,
    /// The half-length complex FFT of `packed`.
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    power: Vec<f32>,
    mel: Vec<f32>,
    /// Mel energies, then their logs, padded to a multiple of [`MEL_LANES`] with ones (whose log
    /// is 0) so that the log runs on whole vectors only.
    logmel: Vec<f32>,
    /// Centred frames (no snip edges) with reflected edges are gathered here.
    gather: Vec<f32>,
}

/// Real FFT power spectrum of an even length `n`: `|X[k]|²` for `k = 0 ..= n/2`.
#[derive(Clone)]
struct PowerSpectrum {
    /// Complex FFT of `n / 2` points.
    fft: Arc<dyn Fft<f32>>,
    /// Split-step twiddles `cos(2πk/n)` and `sin(2πk/n)` for `k = 0 .. n/2`.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl PowerSpectrum {
    fn new(n: usize) -> Self {
        let half = n / 2;
        let fft = FftPlanner::<f32>::new().plan_fft_forward(half);
        let angle = |k: usize| 2.0 * std::f64::consts::PI * k as f64 / n as f64;
        Self {
            fft,
            cos: (0..half).map(|k| angle(k).cos() as f32).collect(),
            sin: (0..half).map(|k| angle(k).sin() as f32).collect(),
        }
    }

    /// `power[k] = |X[k]|²` for `k = 0 ..= n/2` from the frame packed in `ws.packed` (which the
    /// FFT leaves as garbage).
    ///
    /// Never fused: a weak bin's `X[k]` is a difference of strong terms here, and fused rounding
    /// moved such bins of golden input (d) by 1e-3 after CMN (the README §7 limit). Unfused, the
    /// AVX2 copy computes exactly what the baseline computes.
    #[inline(always)]
    fn compute(&self, ws: &mut Workspace) {
        let m = ws.packed.len();
        self.fft
            .process_outofplace_with_scratch(&mut ws.packed, &mut ws.spectrum, &mut ws.scratch);
        let z = &ws.spectrum;
        let (Some(z0), Some(power)) = (z.first(), ws.power.get_mut(..=m)) else {
            return;
        };
        power[0] = (z0.re + z0.im) * (z0.re + z0.im);
        power[m] = (z0.re - z0.im) * (z0.re - z0.im);
        // With a = Z[k], b = Z[m − k]: 2·X[k] = (a + b̄) − i·e^{−2πik/n}·(a − b̄). Everything is
        // computed at twice the scale and the power divided by 4 (exact) at the end.
        let mid = &mut power[1..m];
        let fwd = &z[1..m];
        let rev = z[1..m].iter().rev();
        let tw = self.cos[1..m].iter().zip(&self.sin[1..m]);
        for (((p, a), b), (&c, &s)) in mid.iter_mut().zip(fwd).zip(rev).zip(tw) {
            let even_re = a.re + b.re;
            let even_im = a.im - b.im;
            let odd_re = a.re - b.re;
            let odd_im = a.im + b.im;
            let x_re = even_re + c * odd_im - s * odd_re;
            let x_im = even_im - c * odd_re - s * odd_im;
            *p = 0.25 * (x_re * x_re + x_im * x_im);
        }
    }
}

/// Kaldi-compatible log-mel filterbank extractor (`compute-fbank-feats` with dither 0).
///
/// Construct once and share: it is `Clone + Send + Sync` and [`compute`](Self::compute) takes
/// `&self`.
#[derive(Clone)]
pub struct Fbank {
    opts: FbankOptions,
    frame_len: usize,
    shift: usize,
    padded: usize,
    window: Vec<f32>,
    mel: MelBanks,
    spectrum: PowerSpectrum,
    /// Which copy of the per-frame code runs (detected once, [`simd::level`]).
    level: Level,
}

impl std::fmt::Debug for Fbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fbank")
            .field("opts", &self.opts)
            .field("padded", &self.padded)
            .finish_non_exhaustive()
    }
}

impl Fbank {
    /// Validates the options and precomputes the window, the sparse mel filters and the FFT plan.
    pub fn new(opts: &FbankOptions) -> Result<Self, FeatureError> {
        opts.validate()?;
        let frame_len = opts.frame.frame_length_samples();
        let padded = opts.frame.padded_length();
        Ok(Self {
            opts: *opts,
            frame_len,
            shift: opts.frame.frame_shift_samples(),
            padded,
            window: make_window(opts.frame.window, frame_len),
            mel: MelBanks::new(opts, padded)?,
            spectrum: PowerSpectrum::new(padded),
            level: simd::level(),
        })
    }

    /// The options this extractor was built with.
    pub fn options(&self) -> &FbankOptions {
        &self.opts
    }

    /// Feature dimension (number of mel bins).
    pub fn dim(&self) -> usize {
        self.opts.num_bins
    }

    /// Number of frames [`compute`](Self::compute) returns for `n_samples` samples.
    pub fn num_frames(&self, n_samples: usize) -> usize {
        self.opts.frame.num_frames(n_samples)
    }

    /// Log-mel filterbank of `samples` (16-bit scale): a `num_frames × num_bins` matrix.
    pub fn compute(&self, samples: &[f32]) -> FeatureMatrix {
        self.compute_frames(samples, None)
    }

    /// [`compute`](Self::compute) plus each frame's energy `Σ (x − mean)²` over its raw samples
    /// (frame mean removed, before pre-emphasis and window), summed exactly as the VAD sums it
    /// (`quality::frame_powers`), so the VAD can reuse it when the frame grids agree.
    pub(crate) fn compute_with_energies(&self, samples: &[f32]) -> (FeatureMatrix, Vec<f32>) {
        let mut energies = Vec::with_capacity(self.num_frames(samples.len()));
        let m = self.compute_frames(samples, Some(&mut energies));
        (m, energies)
    }

    fn compute_frames(
        &self,
        samples: &[f32],
        mut energies: Option<&mut Vec<f32>>,
    ) -> FeatureMatrix {
        let frames = self.num_frames(samples.len());
        let dim = self.dim();
        // Rows are appended, not zero-filled and then overwritten.
        let mut data = Vec::with_capacity(frames * dim);
        let mut ws = self.workspace();
        let mut mel = std::mem::take(&mut ws.mel);
        let mut gather = Vec::new();
        let energy = if energies.is_some() {
            Energy::DcFree
        } else {
            Energy::None
        };
        for i in 0..frames {
            let frame = extract_frame(&self.opts.frame, self.frame_len, samples, i, &mut gather);
            let e = self.frame_log_mel(frame, &mut ws, &mut mel, energy, None);
            data.extend_from_slice(&mel);
            if let Some(es) = energies.as_deref_mut() {
                es.push(e);
            }
        }
        FeatureMatrix::from_rows_unchecked(data, dim)
    }

    /// The whole-recording pass of [`crate::quality::FrontEnd`]: the log-mel rows of `samples`
    /// (appended to `data`, which is cleared first), each frame's energy as
    /// [`compute_with_energies`](Self::compute_with_energies) gives it (to `energies`, cleared
    /// first), each column's sum over all rows in `f64` and in row order (to `col_sums`, so that
    /// CMN needs no second pass to find the means: the sums are bit-identical to the ones
    /// `apply_cmn` computes), and `segment` called on consecutive, non-overlapping runs of whole
    /// frame-shift pieces of `samples` (the very last run may end in a shorter piece) that together
    /// cover it exactly once, in order, each soon after the frames reading it (so it is still in
    /// cache).
    ///
    /// The rows are identical to [`compute`](Self::compute)'s.
    pub(crate) fn compute_fused(
        &self,
        samples: &[f32],
        ws: &mut Workspace,
        data: &mut Vec<f32>,
        energies: &mut Vec<f32>,
        col_sums: &mut Vec<f64>,
        segment: impl FnMut(&[f32]),
    ) {
        let mut cursor = FusedCursor::default();
        self.fused_begin(data, energies, col_sums, samples.len());
        self.fused_advance(
            samples,
            true,
            &mut cursor,
            ws,
            (data, energies, col_sums),
            segment,
        );
    }

    /// Starts an incremental [`compute_fused`](Self::compute_fused) of a signal of about
    /// `expected` samples: clears the outputs (keeping their allocations).
    pub(crate) fn fused_begin(
        &self,
        data: &mut Vec<f32>,
        energies: &mut Vec<f32>,
        col_sums: &mut Vec<f64>,
        expected: usize,
    ) {
        let frames = self.num_frames(expected);
        data.clear();
        data.reserve(frames * self.dim());
        energies.clear();
        energies.reserve(frames);
        col_sums.clear();
        col_sums.resize(self.dim(), 0.0);
    }

    /// Advances an incremental [`compute_fused`](Self::compute_fused): `samples` is the signal so
    /// far (a growing prefix of the final signal; `last` when it is complete). Works on the frames
    /// and pieces that lie inside the prefix and have not been done yet (with snip edges: centred
    /// frames depend on the signal's end, so without snip edges everything waits for `last`).
    /// The outputs are those of one `compute_fused` call on the whole signal, however the signal
    /// arrived.
    pub(crate) fn fused_advance(
        &self,
        samples: &[f32],
        last: bool,
        cursor: &mut FusedCursor,
        ws: &mut Workspace,
        (data, energies, col_sums): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f64>),
        mut segment: impl FnMut(&[f32]),
    ) {
        let snip = self.opts.frame.snip_edges;
        if !snip && !last {
            return;
        }
        let total = self.num_frames(samples.len());
        let dim = self.dim();
        let mut mel = std::mem::take(&mut ws.mel);
        mel.resize(dim, 0.0);
        let mut gather = std::mem::take(&mut ws.gather);
        let shift = self.shift.max(1);
        let mut emit_pieces = |upto: usize, cursor: &mut FusedCursor| {
            let end = upto.min(samples.len() / shift);
            if cursor.pieces < end {
                segment(&samples[cursor.pieces * shift..end * shift]);
                cursor.pieces = end;
            }
        };
        let mut i = cursor.frames;
        while i < total {
            if snip && i + 4 <= total {
                self.frames4(samples, i, ws, &mut mel, col_sums, data, energies);
                i += 4;
            } else if last {
                let frame =
                    extract_frame(&self.opts.frame, self.frame_len, samples, i, &mut gather);
                let e = self.frame_log_mel(frame, ws, &mut mel, Energy::DcFree, Some(col_sums));
                data.extend_from_slice(&mel);
                energies.push(e);
                i += 1;
            } else {
                break;
            }
            emit_pieces(i, cursor);
        }
        cursor.frames = i;
        if last {
            emit_pieces(usize::MAX, cursor);
            let done = cursor.pieces * shift;
            if done < samples.len() {
                segment(&samples[done..]);
                cursor.pieces += 1;
            }
        }
        ws.mel = mel;
        ws.gather = gather;
    }

    /// The four snip-edges frames `i .. i + 4` of `samples` (all complete) in one call at the
    /// extractor's dispatch level: their means and energies summed together
    /// ([`frame_stats4_body`](Self::frame_stats4_body)), then each frame's log-mel row appended to `data`,
    /// its energy to `energies` and its values added to `sums`, exactly as four
    /// `frame_log_mel(…, Energy::DcFree, Some(sums))` calls would.
    #[allow(clippy::too_many_arguments)]
    fn frames4(
        &self,
        samples: &[f32],
        i: usize,
        ws: &mut Workspace,
        mel: &mut [f32],
        sums: &mut [f64],
        data: &mut Vec<f32>,
        energies: &mut Vec<f32>,
    ) {
        dispatch!(self.level,
            avx2: self.frames4_avx2(samples, i, ws, mel, sums, data, energies),
            scalar: {
                let stats = self.frame_stats4_body(samples, i);
                self.frames4_rows::<false>(stats, samples, i, ws, mel, sums, data, energies);
            },
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    fn frames4_avx2(
        &self,
        samples: &[f32],
        i: usize,
        ws: &mut Workspace,
        mel: &mut [f32],
        sums: &mut [f64],
        data: &mut Vec<f32>,
        energies: &mut Vec<f32>,
    ) {
        let stats = self.frame_stats4_avx2(samples, i);
        self.frames4_rows::<true>(stats, samples, i, ws, mel, sums, data, energies);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn frames4_rows<const FMA: bool>(
        &self,
        stats: [(f32, f32); 4],
        samples: &[f32],
        i: usize,
        ws: &mut Workspace,
        mel: &mut [f32],
        sums: &mut [f64],
        data: &mut Vec<f32>,
        energies: &mut Vec<f32>,
    ) {
        for (k, (mean, energy)) in stats.into_iter().enumerate() {
            let start = (i + k) * self.shift;
            let frame = &samples[start..start + self.frame_len];
            let energy = Energy::Given { mean, energy };
            let e = self.frame_log_mel_body::<FMA>(frame, ws, mel, energy, Some(&mut *sums));
            data.extend_from_slice(mel);
            energies.push(e);
        }
    }

    /// [`frame_stats4_body`](Self::frame_stats4_body) written out with AVX2 intrinsics (left to
    /// itself the compiler vectorises across the four frames, with a shuffle per element): one
    /// 8-lane accumulator per frame, the lanes adding exactly what `sum_lanes_n`'s lanes add, in
    /// the same order, never fused.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn frame_stats4_avx2(&self, samples: &[f32], i: usize) -> [(f32, f32); 4] {
        use super::fastmath::{finish_lanes, identity, sq_dev};
        use std::arch::x86_64::*;
        let (len, shift) = (self.frame_len, self.shift);
        let frames = [0, 1, 2, 3].map(|k| &samples[(i + k) * shift..(i + k) * shift + len]);
        let full = len / 8 * 8;
        let lanes_of = |acc: __m256| {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds 8 f32s.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
            lanes
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut k = 0;
        while k + 8 <= full {
            for (a, f) in acc.iter_mut().zip(&frames) {
                // SAFETY: k + 8 <= full <= len = f.len().
                *a = _mm256_add_ps(*a, unsafe { _mm256_loadu_ps(f.as_ptr().add(k)) });
            }
            k += 8;
        }
        let mut means = [0.0f32; 4];
        for ((m, a), f) in means.iter_mut().zip(acc).zip(&frames) {
            *m = finish_lanes(&lanes_of(a), &f[full..], 0.0, identity) / len as f32;
        }
        let mut acc = [_mm256_setzero_ps(); 4];
        let mv = means.map(|m| _mm256_set1_ps(m));
        let mut k = 0;
        while k + 8 <= full {
            for ((a, f), m) in acc.iter_mut().zip(&frames).zip(&mv) {
                // SAFETY: k + 8 <= full <= len = f.len().
                let d = _mm256_sub_ps(unsafe { _mm256_loadu_ps(f.as_ptr().add(k)) }, *m);
                *a = _mm256_add_ps(*a, _mm256_mul_ps(d, d));
            }
            k += 8;
        }
        let remove_dc = self.opts.frame.remove_dc;
        let mut out = [(0.0, 0.0); 4];
        for (((o, a), f), &m) in out.iter_mut().zip(acc).zip(&frames).zip(&means) {
            let e = finish_lanes(&lanes_of(a), &f[full..], m, sq_dev);
            *o = (if remove_dc { m } else { 0.0 }, e);
        }
        out
    }

    /// The mean to remove (0 without DC removal) and the [`Energy::DcFree`] energy of the four
    /// snip-edges frames `i .. i + 4` of `samples` (which must all be complete); bit-identical to
    /// what `frame_log_mel` computes per frame.
    #[inline(always)]
    fn frame_stats4_body(&self, samples: &[f32], i: usize) -> [(f32, f32); 4] {
        let (len, shift) = (self.frame_len, self.shift);
        let frames = [0, 1, 2, 3].map(|k| &samples[(i + k) * shift..(i + k) * shift + len]);
        let means = sum8_n(frames).map(|s| s / len as f32);
        let energies = sum_sq_dev8_n(frames, means);
        let remove_dc = self.opts.frame.remove_dc;
        [0, 1, 2, 3].map(|k| (if remove_dc { means[k] } else { 0.0 }, energies[k]))
    }

    /// The dispatch level of the per-frame code (for tests comparing the paths).
    #[cfg(test)]
    pub(crate) fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Length of the power spectrum the mel filters read (tests).
    #[cfg(test)]
    pub(crate) fn mel_power_len(&self) -> usize {
        self.workspace().power.len()
    }

    /// Frame length in samples (tests).
    #[cfg(test)]
    pub(crate) fn frame_len_samples(&self) -> usize {
        self.frame_len
    }

    /// The power spectrum of one conditioned frame, padded as the mel filters read it (tests).
    #[cfg(test)]
    pub(crate) fn power_of_frame(&self, frame: &[f32]) -> Vec<f32> {
        let mut ws = self.workspace();
        let mut out = vec![0.0; self.dim()];
        self.frame_log_mel_body::<false>(frame, &mut ws, &mut out, Energy::None, None);
        ws.power
    }

    /// The grouped AVX2 mel sums (tests; the caller checked the CPU has AVX2 + FMA).
    #[cfg(all(test, target_arch = "x86_64"))]
    pub(crate) fn mel_avx2(&self, power: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.dim()];
        // SAFETY: the test checked `simd::avx2_fma_available()` first.
        unsafe { self.mel.apply_avx2(power, &mut out) };
        out
    }

    /// The per-filter mel sums with each lane fused (`mul_add`), reduced as `MelBanks::apply`
    /// reduces them (tests).
    #[cfg(test)]
    pub(crate) fn mel_reference(&self, power: &[f32]) -> Vec<f32> {
        let m = &self.mel;
        (0..m.starts.len())
            .map(|b| {
                let p = &power[m.starts[b]..m.starts[b] + m.lens[b]];
                let w = &m.weights[m.offsets[b]..m.offsets[b] + m.lens[b]];
                let mut acc = [0.0f32; MEL_LANES];
                for (pc, wc) in p.chunks_exact(MEL_LANES).zip(w.chunks_exact(MEL_LANES)) {
                    for ((a, &x), &y) in acc.iter_mut().zip(pc).zip(wc) {
                        *a = x.mul_add(y, *a);
                    }
                }
                let e = ((acc[0] + acc[4]) + (acc[1] + acc[5]))
                    + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
                e.max(ENERGY_FLOOR)
            })
            .collect()
    }

    /// Scratch buffers sized for this extractor.
    pub(crate) fn workspace(&self) -> Workspace {
        let fft = &self.spectrum.fft;
        let zero = Complex::new(0.0, 0.0);
        Workspace {
            packed: vec![zero; self.padded / 2],
            spectrum: vec![zero; self.padded / 2],
            scratch: vec![zero; fft.get_outofplace_scratch_len()],
            power: vec![0.0; self.mel.power_len.max(self.padded / 2 + 1)],
            mel: vec![0.0; self.opts.num_bins],
            logmel: vec![1.0; self.opts.num_bins.div_ceil(MEL_LANES) * MEL_LANES],
            gather: Vec::new(),
        }
    }

    /// Conditions one frame, writes its log-mel energies to `out` and returns the frame energy
    /// asked for (0 for [`Energy::None`]), at the extractor's dispatch level. With `sums`, each
    /// log-mel value is also added (in `f64`) to its column's running sum.
    #[inline]
    fn frame_log_mel(
        &self,
        frame: &[f32],
        ws: &mut Workspace,
        out: &mut [f32],
        energy: Energy,
        sums: Option<&mut [f64]>,
    ) -> f32 {
        dispatch!(self.level,
            avx2: self.frame_log_mel_avx2(frame, ws, out, energy, sums),
            scalar: self.frame_log_mel_body::<false>(frame, ws, out, energy, sums),
        )
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn frame_log_mel_avx2(
        &self,
        frame: &[f32],
        ws: &mut Workspace,
        out: &mut [f32],
        energy: Energy,
        sums: Option<&mut [f64]>,
    ) -> f32 {
        self.frame_log_mel_body::<true>(frame, ws, out, energy, sums)
    }

    #[inline(always)]
    fn frame_log_mel_body<const FMA: bool>(
        &self,
        frame: &[f32],
        ws: &mut Workspace,
        out: &mut [f32],
        energy: Energy,
        sums: Option<&mut [f64]>,
    ) -> f32 {
        let n = frame.len();
        let fopts = &self.opts.frame;
        let frame_mean = || sum8(frame) / n as f32;
        let mean = match energy {
            Energy::Given { .. } => 0.0,
            _ if fopts.remove_dc => frame_mean(),
            _ => 0.0,
        };
        let (mean, e) = match energy {
            Energy::None => (mean, 0.0),
            Energy::Kaldi => (mean, sum_sq_dev8(frame, mean)),
            Energy::DcFree if fopts.remove_dc => (mean, sum_sq_dev8(frame, mean)),
            Energy::DcFree => (mean, sum_sq_dev8(frame, frame_mean())),
            Energy::Given { mean, energy } => (mean, energy),
        };
        let p = fopts.preemphasis;
        let (head, tail) = as_f32_mut(&mut ws.packed).split_at_mut(n);
        // DC removal, pre-emphasis (Kaldi's y[0] = x[0] − p·x[0]) and window in one pass; never
        // fused, for the reason given at `PowerSpectrum::compute`.
        if let (Some(h), Some(&x0), Some(&w0)) =
            (head.first_mut(), frame.first(), self.window.first())
        {
            *h = (x0 - mean) * (1.0 - p) * w0;
        }
        let pairs = frame[1..].iter().zip(&frame[..n - 1]);
        for ((o, (&cur, &prev)), &w) in head[1..].iter_mut().zip(pairs).zip(&self.window[1..]) {
            *o = ((cur - mean) - p * (prev - mean)) * w;
        }
        tail.fill(0.0);
        self.spectrum.compute(ws);
        let dim = out.len().min(ws.logmel.len());
        self.mel.apply::<FMA>(&ws.power, &mut ws.logmel[..dim]);
        ln_in_place::<FMA>(&mut ws.logmel);
        out.copy_from_slice(&ws.logmel[..out.len()]);
        if let Some(sums) = sums {
            // Unfused adds in row order: the same sums as `norm::column_means`.
            for (s, &x) in sums.iter_mut().zip(out.iter()) {
                *s += f64::from(x);
            }
        }
        e
    }
}

/// How far an incremental [`Fbank::fused_advance`] pass has got.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FusedCursor {
    /// Frames done.
    frames: usize,
    /// Frame-shift pieces of the signal handed to the segment callback.
    pieces: usize,
}

/// Which frame energy [`Fbank::frame_log_mel`] also returns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Energy {
    /// None (returns 0).
    None,
    /// Kaldi's raw energy: `Σ x²` after DC removal if the options remove DC, before pre-emphasis.
    Kaldi,
    /// `Σ (x − mean)²` whatever the options say (the VAD's frame energy).
    DcFree,
    /// [`Energy::DcFree`] and the mean removed before pre-emphasis (0 without DC removal),
    /// already computed ([`Fbank::frames4`]).
    Given {
        /// The mean to subtract.
        mean: f32,
        /// The frame energy to return.
        energy: f32,
    },
}

/// The interleaved `re, im` view of a complex buffer.
#[inline(always)]
fn as_f32_mut(c: &mut [Complex<f32>]) -> &mut [f32] {
    // SAFETY: `Complex<f32>` is `#[repr(C)] { re: f32, im: f32 }` (size 8, align 4, no padding),
    // so `c` is exactly `2 · c.len()` initialised, aligned `f32`s, borrowed mutably for the result's
    // lifetime.
    unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr().cast::<f32>(), c.len() * 2) }
}

/// Frame `i` of `samples`: a sub-slice with snip edges, else Kaldi's centred frame with reflected
/// edges gathered into `gather`.
#[inline]
fn extract_frame<'a>(
    opts: &FrameOptions,
    frame_len: usize,
    samples: &'a [f32],
    i: usize,
    gather: &'a mut Vec<f32>,
) -> &'a [f32] {
    let shift = opts.frame_shift_samples();
    if opts.snip_edges {
        let start = i * shift;
        return &samples[start..start + frame_len];
    }
    let n = samples.len() as i64;
    let start = (shift * i + shift / 2) as i64 - (frame_len / 2) as i64;
    gather.clear();
    gather.extend((0..frame_len as i64).map(|s| {
        let mut j = start + s;
        while j < 0 || j >= n {
            j = if j < 0 { -j - 1 } else { 2 * n - 1 - j };
        }
        samples[j as usize]
    }));
    gather
}

/// Kaldi-compatible MFCC extractor (`compute-mfcc-feats`, dither 0).
#[derive(Clone, Debug)]
pub struct Mfcc {
    fbank: Fbank,
    opts: MfccOptions,
    /// `num_ceps × num_bins` DCT-II rows, each already multiplied by its lifter coefficient.
    dct: Vec<f32>,
}

impl Mfcc {
    /// Validates the options and precomputes the filterbank, DCT and lifter tables.
    pub fn new(opts: &MfccOptions) -> Result<Self, FeatureError> {
        opts.validate()?;
        let fbank = Fbank::new(&opts.fbank)?;
        let n = opts.fbank.num_bins;
        let q = f64::from(opts.cepstral_lifter);
        let mut dct = Vec::with_capacity(opts.num_ceps * n);
        for k in 0..opts.num_ceps {
            let norm = if k == 0 {
                (1.0 / n as f64).sqrt()
            } else {
                (2.0 / n as f64).sqrt()
            };
            let lifter = if q != 0.0 {
                1.0 + 0.5 * q * (std::f64::consts::PI * k as f64 / q).sin()
            } else {
                1.0
            };
            for j in 0..n {
                let c = (std::f64::consts::PI / n as f64 * (j as f64 + 0.5) * k as f64).cos();
                dct.push((norm * c * lifter) as f32);
            }
        }
        Ok(Self {
            fbank,
            opts: *opts,
            dct,
        })
    }

    /// The dispatch level of the per-frame code (for tests comparing the paths).
    #[cfg(test)]
    pub(crate) fn with_level(mut self, level: Level) -> Self {
        self.fbank = self.fbank.with_level(level);
        self
    }

    /// The options this extractor was built with.
    pub fn options(&self) -> &MfccOptions {
        &self.opts
    }

    /// Feature dimension (number of cepstra).
    pub fn dim(&self) -> usize {
        self.opts.num_ceps
    }

    /// Number of frames [`compute`](Self::compute) returns for `n_samples` samples.
    pub fn num_frames(&self, n_samples: usize) -> usize {
        self.fbank.num_frames(n_samples)
    }

    /// MFCCs of `samples` (16-bit scale): a `num_frames × num_ceps` matrix.
    pub fn compute(&self, samples: &[f32]) -> FeatureMatrix {
        let fb = &self.fbank;
        let mut out = FeatureMatrix::zeros(self.num_frames(samples.len()), self.dim());
        let mut ws = fb.workspace();
        let mut mel = std::mem::take(&mut ws.mel);
        let mut gather = Vec::new();
        let nb = fb.opts.num_bins;
        let want = if self.opts.use_energy {
            Energy::Kaldi
        } else {
            Energy::None
        };
        for (i, row) in out.rows_mut().enumerate() {
            let frame = extract_frame(&fb.opts.frame, fb.frame_len, samples, i, &mut gather);
            let energy = fb.frame_log_mel(frame, &mut ws, &mut mel, want, None);
            for (c, d) in row.iter_mut().zip(self.dct.chunks_exact(nb)) {
                *c = d.iter().zip(&mel).map(|(a, b)| a * b).sum();
            }
            if self.opts.use_energy
                && let Some(c0) = row.first_mut()
            {
                *c0 = ln_fast(energy.max(ENERGY_FLOOR));
            }
        }
        out
    }
}

/// Incremental filterbank for live audio: feed samples as they arrive, get exactly the frames the
/// batch [`Fbank::compute`] would produce for the concatenated input (snip-edges framing only).
pub struct StreamingFbank {
    fbank: Fbank,
    ws: Workspace,
    pending: Vec<f32>,
    frames: u64,
}

impl std::fmt::Debug for StreamingFbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingFbank")
            .field("fbank", &self.fbank)
            .field("pending", &self.pending.len())
            .field("frames", &self.frames)
            .finish()
    }
}

impl StreamingFbank {
    /// A streaming extractor with these options; `snip_edges` must be `true` (centred frames
    /// would need samples from the future at the start).
    pub fn new(opts: &FbankOptions) -> Result<Self, FeatureError> {
        Self::from_fbank(Fbank::new(opts)?)
    }

    /// A streaming extractor around an existing [`Fbank`] (its tables are shared, not rebuilt).
    pub fn from_fbank(fbank: Fbank) -> Result<Self, FeatureError> {
        if !fbank.opts.frame.snip_edges {
            return Err(FeatureError::InvalidOption {
                name: "snip_edges",
                reason: "streaming extraction needs snip_edges = true".to_string(),
            });
        }
        let ws = fbank.workspace();
        let pending = Vec::with_capacity(fbank.frame_len * 2);
        Ok(Self {
            fbank,
            ws,
            pending,
            frames: 0,
        })
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.fbank.dim()
    }

    /// Frames emitted so far.
    pub fn frames_emitted(&self) -> u64 {
        self.frames
    }

    /// Appends `samples` and writes every newly complete frame to the end of `out` (row-major,
    /// [`dim`](Self::dim) values per frame). Returns the number of frames appended.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        self.pending.extend_from_slice(samples);
        let len = self.fbank.frame_len;
        let shift = self.fbank.shift;
        if self.pending.len() < len {
            return 0;
        }
        let n = 1 + (self.pending.len() - len) / shift;
        let dim = self.dim();
        let base = out.len();
        out.resize(base + n * dim, 0.0);
        for (i, row) in out[base..].chunks_exact_mut(dim).enumerate() {
            let frame = &self.pending[i * shift..i * shift + len];
            self.fbank
                .frame_log_mel(frame, &mut self.ws, row, Energy::None, None);
        }
        self.pending.drain(..n * shift);
        self.frames += n as u64;
        n
    }

    /// Drops buffered samples and restarts framing from the next pushed sample.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.frames = 0;
    }
}
