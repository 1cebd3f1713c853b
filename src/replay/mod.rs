//! Replay detection: a compact acoustic fingerprint of audio seen at verification, and an index
//! that flags new audio which is a near-duplicate of earlier audio.
//!
//! A recording played back into the phone is the cheapest attack on voice verification. The
//! fingerprint is a Wang-style landmark hash ("Shazam"): a constellation of spectral peaks of the
//! telephone band (300–3400 Hz) of a log-magnitude STFT, pairs of peaks hashed to 32-bit keys that
//! carry the time of their anchor. Two recordings of the same audio share many hashes *at one
//! consistent time offset*; different utterances, even of the same speaker, share few and at
//! scattered offsets. The peaks survive G.711 re-encoding, volume change, clipping and moderate
//! noise, and the offset histogram makes the match independent of where the copy starts.
//!
//! The analysis grid is fixed in seconds and hertz (64 ms frames, 16 ms hop, 15.625 Hz bins), so a
//! copy at 8 kHz matches an original at 16 kHz: only the telephone band is used.
//!
//! What is stored is the peak list (about 2 bytes per peak, 15 peaks per second: under 2 KB per
//! minute of audio); the hashes are derived from it when needed.

use std::collections::{BTreeSet, HashMap};

use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

/// Errors of the replay module.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The sample rate cannot carry the telephone band or is beyond what the analysis accepts.
    #[error("unsupported sample rate {0} Hz (need 8000..=192000)")]
    UnsupportedSampleRate(u32),
    /// A sample is NaN or infinite.
    #[error("audio contains a non-finite sample at index {0}")]
    NonFiniteSample(usize),
    /// The audio is longer than a fingerprint may describe.
    #[error("audio too long for a fingerprint: {seconds:.0} s (limit {limit:.0} s)")]
    TooLong {
        /// Length of the audio in seconds.
        seconds: f64,
        /// The limit in seconds.
        limit: f64,
    },
    /// A serialized fingerprint could not be decoded.
    #[error("malformed fingerprint: {0}")]
    Malformed(&'static str),
}

/// Seconds per analysis frame.
const FRAME_SECONDS: f64 = 0.064;
/// Seconds between analysis frames (the time resolution of peaks and offsets).
pub const HOP_SECONDS: f64 = 0.016;
/// Hertz per frequency bin of the fingerprint grid (8000 Hz / 512).
const BIN_HZ: f64 = 15.625;
/// Lowest and highest fingerprint bins: the telephone band, 300–3400 Hz.
const LOW_BIN: usize = 20; // 312.5 Hz
const HIGH_BIN: usize = 217; // 3390.6 Hz
const N_BINS: usize = HIGH_BIN - LOW_BIN + 1;
/// Half-sizes of the neighbourhood in which a peak must be the maximum.
const PEAK_HALF_FRAMES: usize = 4;
const PEAK_HALF_BINS: usize = 6;
/// A peak is kept if fewer than this many stronger peaks lie within ±`DENSITY_HALF_FRAMES`.
const PEAKS_PER_WINDOW: usize = 15;
const DENSITY_HALF_FRAMES: u32 = 31;
/// Peaks weaker than the strongest peak of the recording by more than this (natural log of power,
/// 11.5 ≈ 50 dB) are background, not signal.
const DYNAMIC_RANGE: f32 = 11.5;
/// Peaks below this log power are digital silence, not signal (a full-scale int16 sine gives
/// about 30; one least significant bit about 10).
const ABSOLUTE_FLOOR: f32 = 0.0;
/// Target zone of a landmark pair: frames after the anchor, and bins either side.
const PAIR_MAX_FRAMES: u32 = 40;
const PAIR_MAX_BINS: i32 = 64;
/// Pairs formed per anchor.
const FAN_OUT: usize = 4;
/// Longest audio a fingerprint describes (frame indices must fit and memory stay bounded).
const MAX_SECONDS: f64 = 4.0 * 3600.0;
/// Serialization format version.
const FORMAT_VERSION: u8 = 1;

/// One spectral peak: analysis frame and fingerprint bin (offset from 312.5 Hz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Peak {
    frame: u32,
    bin: u8,
}

/// A landmark hash and the frame of its anchor peak.
#[derive(Debug, Clone, Copy)]
struct Landmark {
    hash: u32,
    frame: u32,
}

/// Acoustic fingerprint of one recording: its constellation of spectral peaks.
///
/// Serializes (serde) as `{"version": 1, "frames": N, "peaks": "<hex>"}`, the peaks delta-coded:
/// about 2 bytes per peak, 15 peaks per second of sound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FingerprintWire", try_from = "FingerprintWire")]
pub struct Fingerprint {
    /// Peaks sorted by (frame, bin).
    peaks: Vec<Peak>,
    /// Number of analysis frames of the recording.
    frames: u32,
}

#[derive(Serialize, Deserialize)]
struct FingerprintWire {
    version: u8,
    frames: u32,
    peaks: String,
}

impl From<Fingerprint> for FingerprintWire {
    fn from(fp: Fingerprint) -> Self {
        FingerprintWire {
            version: FORMAT_VERSION,
            frames: fp.frames,
            peaks: hex::encode(fp.to_bytes()),
        }
    }
}

impl TryFrom<FingerprintWire> for Fingerprint {
    type Error = ReplayError;
    fn try_from(w: FingerprintWire) -> Result<Self, Self::Error> {
        if w.version != FORMAT_VERSION {
            return Err(ReplayError::Malformed("unknown fingerprint version"));
        }
        let bytes =
            hex::decode(&w.peaks).map_err(|_| ReplayError::Malformed("peaks are not hex"))?;
        Fingerprint::from_bytes(&bytes, w.frames)
    }
}

impl Fingerprint {
    /// Fingerprints `samples` (mono, 16-bit integer scale; the analysis is volume-invariant above
    /// digital silence) recorded at
    /// `sample_rate` Hz (8 kHz to 192 kHz). Silence or audio too short for one frame gives an
    /// empty fingerprint, which matches nothing.
    pub fn compute(samples: &[f32], sample_rate: u32) -> Result<Fingerprint, ReplayError> {
        if !(8000..=192_000).contains(&sample_rate) {
            return Err(ReplayError::UnsupportedSampleRate(sample_rate));
        }
        let seconds = samples.len() as f64 / f64::from(sample_rate);
        if seconds > MAX_SECONDS {
            return Err(ReplayError::TooLong {
                seconds,
                limit: MAX_SECONDS,
            });
        }
        if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
            return Err(ReplayError::NonFiniteSample(i));
        }
        let spec = log_spectrogram(samples, sample_rate);
        let frames = u32::try_from(spec.len() / N_BINS).unwrap_or(u32::MAX);
        let peaks = pick_peaks(&spec, frames as usize);
        Ok(Fingerprint { peaks, frames })
    }

    /// Duration the fingerprint describes, in seconds.
    pub fn duration_seconds(&self) -> f64 {
        f64::from(self.frames) * HOP_SECONDS
    }

    /// Number of spectral peaks (a measure of how much the fingerprint can match).
    pub fn peak_count(&self) -> usize {
        self.peaks.len()
    }

    /// Compact binary form of the peaks: per peak a LEB128 frame delta and one bin byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.peaks.len() * 2);
        let mut prev = 0u32;
        for p in &self.peaks {
            let mut d = p.frame - prev;
            prev = p.frame;
            loop {
                let byte = (d & 0x7f) as u8;
                d >>= 7;
                if d == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.push(p.bin);
        }
        out
    }

    /// Reads the form written by [`Fingerprint::to_bytes`]; `frames` is the recording's frame
    /// count ([`Fingerprint::duration_seconds`] / 16 ms).
    pub fn from_bytes(bytes: &[u8], frames: u32) -> Result<Fingerprint, ReplayError> {
        let mut peaks = Vec::with_capacity(bytes.len() / 2);
        let mut i = 0;
        let mut frame = 0u32;
        while i < bytes.len() {
            let mut d = 0u32;
            let mut shift = 0;
            loop {
                let b = *bytes
                    .get(i)
                    .ok_or(ReplayError::Malformed("truncated frame delta"))?;
                i += 1;
                if shift > 28 {
                    return Err(ReplayError::Malformed("frame delta too long"));
                }
                d |= u32::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            frame = frame
                .checked_add(d)
                .ok_or(ReplayError::Malformed("frame overflow"))?;
            let bin = *bytes
                .get(i)
                .ok_or(ReplayError::Malformed("truncated peak"))?;
            i += 1;
            if usize::from(bin) >= N_BINS {
                return Err(ReplayError::Malformed("peak bin out of range"));
            }
            if frame >= frames {
                return Err(ReplayError::Malformed("peak beyond the recording"));
            }
            let peak = Peak { frame, bin };
            if peaks.last().is_some_and(|last| *last >= peak) {
                return Err(ReplayError::Malformed("peaks not sorted"));
            }
            peaks.push(peak);
        }
        Ok(Fingerprint { peaks, frames })
    }

    /// Landmark hashes: each peak paired with the next few peaks in its target zone.
    fn landmarks(&self) -> Vec<Landmark> {
        let mut out = Vec::with_capacity(self.peaks.len() * FAN_OUT);
        for (i, a) in self.peaks.iter().enumerate() {
            let mut n = 0;
            for b in &self.peaks[i + 1..] {
                let dt = b.frame - a.frame;
                if dt > PAIR_MAX_FRAMES {
                    break;
                }
                if dt == 0 || (i32::from(b.bin) - i32::from(a.bin)).abs() > PAIR_MAX_BINS {
                    continue;
                }
                let hash = (u32::from(a.bin) << 16) | (u32::from(b.bin) << 8) | dt;
                out.push(Landmark {
                    hash,
                    frame: a.frame,
                });
                n += 1;
                if n == FAN_OUT {
                    break;
                }
            }
        }
        out
    }
}

/// Log power spectrogram of the telephone band on the fixed grid, `frames × N_BINS`, row-major.
fn log_spectrogram(samples: &[f32], sample_rate: u32) -> Vec<f32> {
    let sr = f64::from(sample_rate);
    let n_fft = ((sr * FRAME_SECONDS).round() as usize).max(2);
    let hop = ((sr * HOP_SECONDS).round() as usize).max(1);
    if samples.len() < n_fft {
        return Vec::new();
    }
    let frames = (samples.len() - n_fft) / hop + 1;
    let window: Vec<f32> = (0..n_fft)
        .map(|i| {
            let x = std::f64::consts::TAU * i as f64 / n_fft as f64;
            (0.5 - 0.5 * x.cos()) as f32
        })
        .collect();
    // Map each fingerprint bin to the nearest FFT bin of this rate (identical at 8 and 16 kHz).
    let hz_per_fft_bin = sr / n_fft as f64;
    let fft_bins: Vec<usize> = (LOW_BIN..=HIGH_BIN)
        .map(|b| ((b as f64 * BIN_HZ) / hz_per_fft_bin).round() as usize)
        .collect();
    let mut planner = RealFftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(n_fft);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut out = Vec::with_capacity(frames * N_BINS);
    for t in 0..frames {
        let start = t * hop;
        let chunk = &samples[start..start + n_fft];
        let mean = chunk.iter().sum::<f32>() / n_fft as f32;
        for ((dst, &s), &w) in input.iter_mut().zip(chunk).zip(&window) {
            *dst = (s - mean) * w;
        }
        // Lengths come from the plan, so this cannot fail; a failure would leave silence.
        if fft
            .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
            .is_err()
        {
            out.extend(std::iter::repeat_n(f32::MIN, N_BINS));
            continue;
        }
        for &k in &fft_bins {
            let p = spectrum.get(k).map_or(0.0, |c| c.norm_sqr());
            out.push((p + 1e-10).ln());
        }
    }
    out
}

/// Constellation: local maxima of the spectrogram, thinned to the strongest few per second.
fn pick_peaks(spec: &[f32], frames: usize) -> Vec<Peak> {
    if frames == 0 {
        return Vec::new();
    }
    // Separable max filter: over bins, then over frames.
    let mut by_bin = vec![f32::MIN; spec.len()];
    for t in 0..frames {
        let row = &spec[t * N_BINS..(t + 1) * N_BINS];
        for f in 0..N_BINS {
            let lo = f.saturating_sub(PEAK_HALF_BINS);
            let hi = (f + PEAK_HALF_BINS).min(N_BINS - 1);
            by_bin[t * N_BINS + f] = row[lo..=hi].iter().copied().fold(f32::MIN, f32::max);
        }
    }
    let global_max = spec.iter().copied().fold(f32::MIN, f32::max);
    let floor = (global_max - DYNAMIC_RANGE).max(ABSOLUTE_FLOOR);
    let mut candidates: Vec<(Peak, f32)> = Vec::new();
    for t in 0..frames {
        let lo = t.saturating_sub(PEAK_HALF_FRAMES);
        let hi = (t + PEAK_HALF_FRAMES).min(frames - 1);
        for f in 0..N_BINS {
            let v = spec[t * N_BINS + f];
            if v < floor {
                continue;
            }
            let is_max = (lo..=hi).all(|u| by_bin[u * N_BINS + f] <= v);
            if is_max {
                candidates.push((
                    Peak {
                        frame: t as u32,
                        bin: f as u8,
                    },
                    v,
                ));
            }
        }
    }
    // Keep a peak if fewer than PEAKS_PER_WINDOW stronger ones lie within ±DENSITY_HALF_FRAMES:
    // a sliding rule, so the selection does not depend on where the recording starts.
    let mut kept = Vec::new();
    let mut start = 0;
    for (i, &(p, v)) in candidates.iter().enumerate() {
        while candidates[start].0.frame + DENSITY_HALF_FRAMES < p.frame {
            start += 1;
        }
        let stronger = candidates[start..]
            .iter()
            .take_while(|(q, _)| q.frame <= p.frame + DENSITY_HALF_FRAMES)
            .enumerate()
            .filter(|&(j, &(_, w))| w > v || (w == v && start + j < i))
            .count();
        if stronger < PEAKS_PER_WINDOW {
            kept.push(p);
        }
    }
    kept
}

/// The result of comparing two fingerprints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// Share of the shorter recording's landmarks found in the other at one consistent time
    /// offset, in `[0, 1]`. Copies of the same audio score well above 0.1 even after G.711,
    /// volume change and 15 dB of noise; different utterances score near 0.
    pub score: f64,
    /// Where the first recording starts within the second, in seconds (negative: the second
    /// starts within the first).
    pub offset_seconds: f64,
    /// Number of landmarks aligned at that offset (the evidence behind `score`).
    pub aligned: u32,
}

impl Match {
    const NONE: Match = Match {
        score: 0.0,
        offset_seconds: 0.0,
        aligned: 0,
    };
}

/// Compares two fingerprints: the best-aligned share of common landmarks.
pub fn similarity(a: &Fingerprint, b: &Fingerprint) -> Match {
    let la = a.landmarks();
    let lb = b.landmarks();
    let mut table: HashMap<u32, Vec<u32>> = HashMap::with_capacity(lb.len());
    for l in &lb {
        table.entry(l.hash).or_default().push(l.frame);
    }
    let mut offsets: HashMap<i64, u32> = HashMap::new();
    for l in &la {
        if let Some(frames) = table.get(&l.hash) {
            for &fb in frames {
                *offsets
                    .entry(i64::from(fb) - i64::from(l.frame))
                    .or_default() += 1;
            }
        }
    }
    best_alignment(&offsets, la.len(), lb.len())
}

/// Peak of the offset histogram, tolerating one frame of jitter (a copy shifted by a fraction of
/// the hop lands its landmarks on two neighbouring offsets).
fn best_alignment(offsets: &HashMap<i64, u32>, na: usize, nb: usize) -> Match {
    let denom = na.min(nb);
    if denom == 0 {
        return Match::NONE;
    }
    let mut best = (0u32, 0i64);
    for (&d, &c) in offsets {
        let next = offsets.get(&(d + 1)).copied().unwrap_or(0);
        let total = c + next;
        let centre = if next > c { d + 1 } else { d };
        if total > best.0 || (total == best.0 && centre < best.1) {
            best = (total, centre);
        }
    }
    Match {
        score: (f64::from(best.0) / denom as f64).min(1.0),
        offset_seconds: best.1 as f64 * HOP_SECONDS,
        aligned: best.0,
    }
}

/// Probability-like risk in `[0, 1]` that a match is a replay of the earlier audio.
///
/// A logistic map of the score, damped when few landmarks align (short or nearly silent audio
/// cannot prove a copy); 0.5 is reached at a score of about 0.1. Measured on 50 + 50 dev-set
/// clips: degraded copies (G.711, gain, clipping, 15 dB noise, shifts, excerpts) score 0.12 – 1.0,
/// different utterances of one speaker at most 0.07 (see `docs/workflows.md`).
pub fn spoof_risk(m: &Match) -> f64 {
    if !m.score.is_finite() {
        return 0.0;
    }
    let logistic = 1.0 / (1.0 + (-(m.score - 0.095) / 0.01).exp());
    let evidence = 1.0 - (-f64::from(m.aligned) / 4.0).exp();
    (logistic * evidence).clamp(0.0, 1.0)
}

/// Limits of a [`ReplayIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Most recordings kept; inserting beyond evicts the oldest.
    pub capacity: usize,
    /// Recordings older than this (seconds before the newest timestamp seen) are evicted.
    pub retention_seconds: u64,
}

impl Default for ReplayConfig {
    /// 10 000 recordings, 90 days.
    fn default() -> Self {
        ReplayConfig {
            capacity: 10_000,
            retention_seconds: 90 * 24 * 3600,
        }
    }
}

struct Entry {
    id: String,
    timestamp: u64,
    fingerprint: Fingerprint,
    hashes: Vec<u32>,
}

/// Fingerprints of one tenant's recent audio, searchable for near-duplicates.
///
/// An inverted index from landmark hash to recordings, so a query touches only recordings that
/// share hashes with it, then scores the few best candidates exactly. Memory is bounded by
/// [`ReplayConfig::capacity`] and [`ReplayConfig::retention_seconds`].
pub struct ReplayIndex {
    config: ReplayConfig,
    next_seq: u64,
    newest: u64,
    entries: HashMap<u64, Entry>,
    order: BTreeSet<(u64, u64)>,
    postings: HashMap<u32, Vec<u64>>,
}

/// Candidates scored exactly per query.
const QUERY_CANDIDATES: usize = 8;

impl ReplayIndex {
    /// An empty index with the given limits.
    pub fn new(config: ReplayConfig) -> Self {
        ReplayIndex {
            config,
            next_seq: 0,
            newest: 0,
            entries: HashMap::new(),
            order: BTreeSet::new(),
            postings: HashMap::new(),
        }
    }

    /// Number of recordings held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no recording.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the fingerprint of recording `id` seen at `timestamp` (seconds, e.g. Unix time), then
    /// evicts what the retention and capacity no longer allow.
    pub fn insert(&mut self, id: String, fingerprint: Fingerprint, timestamp: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut hashes: Vec<u32> = fingerprint.landmarks().iter().map(|l| l.hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        for &h in &hashes {
            self.postings.entry(h).or_default().push(seq);
        }
        self.entries.insert(
            seq,
            Entry {
                id,
                timestamp,
                fingerprint,
                hashes,
            },
        );
        self.order.insert((timestamp, seq));
        self.newest = self.newest.max(timestamp);
        self.evict_expired(self.newest);
        while self.entries.len() > self.config.capacity {
            let Some(&(_, oldest)) = self.order.iter().next() else {
                break;
            };
            self.remove(oldest);
        }
    }

    /// Evicts recordings older than the retention period before `now` (seconds).
    pub fn evict_expired(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.config.retention_seconds);
        while let Some(&(ts, seq)) = self.order.iter().next() {
            if ts >= cutoff {
                break;
            }
            self.remove(seq);
        }
    }

    /// Forgets the recordings with these ids (e.g. erased from storage with their speaker).
    pub fn remove_ids(&mut self, ids: &[String]) {
        let doomed: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| ids.contains(&e.id))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in doomed {
            self.remove(seq);
        }
    }

    fn remove(&mut self, seq: u64) {
        let Some(entry) = self.entries.remove(&seq) else {
            return;
        };
        self.order.remove(&(entry.timestamp, seq));
        for h in &entry.hashes {
            if let Some(list) = self.postings.get_mut(h) {
                list.retain(|&s| s != seq);
                if list.is_empty() {
                    self.postings.remove(h);
                }
            }
        }
    }

    /// The held recording most similar to `fingerprint`, if any shares a landmark with it.
    pub fn query(&self, fingerprint: &Fingerprint) -> Option<(String, Match)> {
        let mut hashes: Vec<u32> = fingerprint.landmarks().iter().map(|l| l.hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut shared: HashMap<u64, u32> = HashMap::new();
        for h in &hashes {
            if let Some(list) = self.postings.get(h) {
                for &seq in list {
                    *shared.entry(seq).or_default() += 1;
                }
            }
        }
        let mut candidates: Vec<(u64, u32)> = shared.into_iter().collect();
        candidates.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        candidates
            .iter()
            .take(QUERY_CANDIDATES)
            .filter_map(|(seq, _)| {
                let entry = self.entries.get(seq)?;
                Some((entry, similarity(fingerprint, &entry.fingerprint)))
            })
            .filter(|(_, m)| m.aligned > 0)
            .max_by(|a, b| {
                a.1.score
                    .total_cmp(&b.1.score)
                    .then(b.0.timestamp.cmp(&a.0.timestamp))
            })
            .map(|(entry, m)| (entry.id.clone(), m))
    }
}

#[cfg(test)]
mod tests;
