//! The energy VAD and quality measures of [`assess`](super::assess), computed as samples arrive.
//!
//! The batch VAD sets its noise floor from the whole recording; live audio has no whole recording,
//! so the floor here is the same percentile over the frames heard so far (kept in a histogram, so
//! memory stays constant), and each frame is judged only once `LOOKAHEAD` later frames have joined
//! the floor. The run rules (minimum run, onset, hangover) are the batch ones, applied online: a
//! frame's decision is final once no later run could reach back to it.

use std::collections::VecDeque;

use super::{POWER_FLOOR, Quality, VadOptions};
use crate::features::fastmath::{sum_sq_dev8, sum8};

/// Frames a decision waits for so the noise floor also knows a little of what follows.
const LOOKAHEAD: usize = 50;
/// Histogram resolution of frame levels, dB.
const BIN_DB: f64 = 0.25;
/// Lowest level in the histogram, dB (the power floor of 1/12 is −10.8 dB).
const LOW_DB: f64 = -12.0;
/// Histogram bins: up to 100 dB (full-scale 16-bit audio is about 90 dB).
const BINS: usize = 448;

/// Online voice activity detection and quality for one live stream.
///
/// Feed samples (mono, 16-bit integer scale) with [`push`](Self::push); speech decisions come out
/// in frame order, one per 25 ms / 10 ms frame (the [`VadOptions`] grid), about 0.5 s behind the
/// input. [`finish`](Self::finish) decides the frames still pending at the end of the stream.
#[derive(Debug, Clone)]
pub struct StreamingVad {
    opts: VadOptions,
    sample_rate: u32,
    frame_len: usize,
    hop: usize,
    /// Samples not yet consumed by framing.
    pending: Vec<f32>,
    /// Powers of frames not yet given a raw decision.
    undecided: VecDeque<f64>,
    histogram: Vec<u32>,
    frames_seen: u64,
    /// Index of the next frame to get a raw decision.
    next_raw: u64,
    /// Speech flags of frames that a later run could still mark, from `held_base` on.
    held: VecDeque<(bool, f64)>,
    held_base: u64,
    run_len: usize,
    hang_until: u64,
    samples_seen: u64,
    clipped: u64,
    clip_run: usize,
    last_sample: f32,
    stats: FrameStats,
}

#[derive(Debug, Clone, Copy, Default)]
struct FrameStats {
    frames: u64,
    speech: u64,
    speech_power: f64,
    noise_power: f64,
}

impl StreamingVad {
    /// A detector for audio at `sample_rate` Hz.
    pub fn new(sample_rate: u32, opts: VadOptions) -> Self {
        let (frame_len, hop) = opts.frame_samples(sample_rate);
        Self {
            opts,
            sample_rate,
            frame_len,
            hop,
            pending: Vec::with_capacity(frame_len * 2),
            undecided: VecDeque::with_capacity(LOOKAHEAD + 1),
            histogram: vec![0; BINS],
            frames_seen: 0,
            next_raw: 0,
            held: VecDeque::new(),
            held_base: 0,
            run_len: 0,
            hang_until: 0,
            samples_seen: 0,
            clipped: 0,
            clip_run: 0,
            last_sample: 0.0,
            stats: FrameStats::default(),
        }
    }

    /// Appends `samples` and writes the speech decision of every frame that became final to the
    /// end of `out`, in frame order.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<bool>) {
        self.count_clipping(samples);
        self.samples_seen += samples.len() as u64;
        self.pending.extend_from_slice(samples);
        let mut start = 0;
        while self.pending.len() - start >= self.frame_len {
            let frame = &self.pending[start..start + self.frame_len];
            let mean = sum8(frame) / self.frame_len as f32;
            let power =
                (f64::from(sum_sq_dev8(frame, mean)) / self.frame_len as f64).max(POWER_FLOOR);
            self.histogram[bin_of(power)] += 1;
            self.frames_seen += 1;
            self.undecided.push_back(power);
            start += self.hop;
        }
        self.pending.drain(..start);
        while self.undecided.len() > LOOKAHEAD {
            self.decide_next(out);
        }
    }

    /// Decides every pending frame (end of stream).
    pub fn finish(&mut self, out: &mut Vec<bool>) {
        while !self.undecided.is_empty() {
            self.decide_next(out);
        }
        while let Some((speech, power)) = self.held.pop_front() {
            self.emit(speech, power, out);
        }
        self.held_base = self.next_raw;
    }

    /// Duration, net speech, SNR and clipping of the audio so far (net speech and SNR over the
    /// frames already decided).
    pub fn quality(&self) -> Quality {
        let rate = f64::from(self.sample_rate.max(1));
        let shift = self.hop as f64 / rate;
        let s = &self.stats;
        let snr_db = if s.speech == 0 {
            0.0
        } else {
            let speech = s.speech_power / s.speech as f64;
            let noise = if s.frames > s.speech {
                s.noise_power / (s.frames - s.speech) as f64
            } else {
                10f64.powf(self.percentile_db(5.0) / 10.0)
            };
            10.0 * (speech / noise.max(POWER_FLOOR)).log10()
        };
        Quality {
            duration_seconds: self.samples_seen as f64 / rate,
            net_speech_seconds: s.speech as f64 * shift,
            snr_db,
            clipping_ratio: if self.samples_seen == 0 {
                0.0
            } else {
                self.clipped as f64 / self.samples_seen as f64
            },
        }
    }

    /// Seconds of speech among the frames decided so far.
    pub fn speech_seconds(&self) -> f64 {
        self.stats.speech as f64 * self.hop as f64 / f64::from(self.sample_rate.max(1))
    }

    /// Samples at full scale, or in a run of identical samples above a quarter of full scale (the
    /// batch measure looks for runs at the recording's own peak, unknown while it streams).
    fn count_clipping(&mut self, samples: &[f32]) {
        let full = self.opts.clip_level * 32767.0;
        for &x in samples {
            if x.abs() >= full {
                self.clipped += 1;
                self.clip_run = 0;
            } else if x == self.last_sample && x.abs() >= 8192.0 && self.opts.clip_run >= 2 {
                self.clip_run += 1;
                if self.clip_run + 1 == self.opts.clip_run {
                    self.clipped += self.clip_run as u64 + 1;
                } else if self.clip_run + 1 > self.opts.clip_run {
                    self.clipped += 1;
                }
            } else {
                self.clip_run = 0;
            }
            self.last_sample = x;
        }
    }

    fn percentile_db(&self, pct: f32) -> f64 {
        let n = self.frames_seen;
        if n == 0 {
            return LOW_DB;
        }
        let p = f64::from(pct.clamp(0.0, 100.0)) / 100.0;
        let k = ((n - 1) as f64 * p).round() as u64;
        let mut seen = 0u64;
        for (i, &c) in self.histogram.iter().enumerate() {
            seen += u64::from(c);
            if seen > k {
                return LOW_DB + (i as f64 + 0.5) * BIN_DB;
            }
        }
        LOW_DB + BINS as f64 * BIN_DB
    }

    fn decide_next(&mut self, out: &mut Vec<bool>) {
        let Some(power) = self.undecided.pop_front() else {
            return;
        };
        let floor = self.percentile_db(self.opts.noise_percentile);
        let threshold =
            (floor + f64::from(self.opts.threshold_db)).max(f64::from(self.opts.min_level_db));
        let raw = 10.0 * power.log10() > threshold;
        let f = self.next_raw;
        self.next_raw += 1;
        self.held.push_back((false, power));
        let min = self.opts.min_speech_frames.max(1);
        if raw {
            self.run_len += 1;
            if self.run_len == min {
                let start = f + 1 - min as u64;
                let lo = start
                    .saturating_sub(self.opts.onset_frames as u64)
                    .max(self.held_base);
                for i in lo..=f {
                    self.mark(i);
                }
            } else if self.run_len > min || f < self.hang_until {
                self.mark(f);
            }
        } else {
            if self.run_len >= min {
                self.hang_until = f + self.opts.hangover_frames as u64;
            }
            self.run_len = 0;
            if f < self.hang_until {
                self.mark(f);
            }
        }
        // A run starting at s reaches back to s − onset and is confirmed at s + min − 1, so frame
        // h can still change until frame h + onset + min − 1 has been judged.
        let reach = (self.opts.onset_frames + min - 1) as u64;
        while self.held_base + reach <= f {
            let Some((speech, power)) = self.held.pop_front() else {
                break;
            };
            self.held_base += 1;
            self.emit(speech, power, out);
        }
    }

    fn mark(&mut self, frame: u64) {
        if let Some(i) = frame.checked_sub(self.held_base)
            && let Some(slot) = self.held.get_mut(i as usize)
        {
            slot.0 = true;
        }
    }

    fn emit(&mut self, speech: bool, power: f64, out: &mut Vec<bool>) {
        self.stats.frames += 1;
        if speech {
            self.stats.speech += 1;
            self.stats.speech_power += power;
        } else {
            self.stats.noise_power += power;
        }
        out.push(speech);
    }
}

fn bin_of(power: f64) -> usize {
    let db = 10.0 * power.log10();
    let i = ((db - LOW_DB) / BIN_DB).floor();
    if i.is_finite() && i > 0.0 {
        (i as usize).min(BINS - 1)
    } else {
        0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::quality::speech_mask;

    /// Silence with low noise, then a tone burst, then silence: the shape of a short utterance.
    fn utterance(rate: u32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        let mut state = 12345u32;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 20.0;
                let t = i as f32 / rate as f32;
                let burst = (1.0..2.5).contains(&t) || (3.0..4.2).contains(&t);
                let tone = if burst {
                    6000.0 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                } else {
                    0.0
                };
                tone + noise
            })
            .collect()
    }

    fn stream(samples: &[f32], rate: u32, chunk: usize) -> (Vec<bool>, StreamingVad) {
        let mut vad = StreamingVad::new(rate, VadOptions::default());
        let mut out = Vec::new();
        for c in samples.chunks(chunk) {
            vad.push(c, &mut out);
        }
        vad.finish(&mut out);
        (out, vad)
    }

    #[test]
    fn agrees_with_batch_vad_on_a_clear_utterance() {
        let rate = 8000;
        let x = utterance(rate, 5.0);
        let batch = speech_mask(&x, rate, &VadOptions::default());
        let (online, _) = stream(&x, rate, 160);
        assert_eq!(online.len(), batch.len());
        let differ = online.iter().zip(&batch).filter(|(a, b)| a != b).count();
        // The floor is learnt from the first 0.5 s only at the start; on a clean signal the
        // decisions agree almost everywhere.
        assert!(differ <= 3, "{differ} frames differ");
        let speech = online.iter().filter(|s| **s).count();
        assert!((260..=300).contains(&speech), "speech frames {speech}");
    }

    #[test]
    fn chunking_does_not_change_decisions() {
        let rate = 16000;
        let x = utterance(rate, 4.5);
        let (a, va) = stream(&x, rate, 320);
        let (b, vb) = stream(&x, rate, 7);
        let (c, _) = stream(&x, rate, x.len());
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(va.quality(), vb.quality());
    }

    #[test]
    fn decisions_trail_the_input_by_a_bounded_delay() {
        let rate = 8000;
        let x = utterance(rate, 5.0);
        let mut vad = StreamingVad::new(rate, VadOptions::default());
        let mut out = Vec::new();
        vad.push(&x, &mut out);
        let frames = 1 + (x.len() - 200) / 80;
        assert!(
            frames - out.len() <= LOOKAHEAD + 5,
            "{} of {frames}",
            out.len()
        );
    }

    #[test]
    fn quality_matches_the_batch_measures() {
        let rate = 8000;
        let x = utterance(rate, 5.0);
        let (_, vad) = stream(&x, rate, 400);
        let q = vad.quality();
        let b = crate::quality::assess(&x, rate, &VadOptions::default()).quality;
        assert!((q.duration_seconds - 5.0).abs() < 1e-9);
        assert!((q.net_speech_seconds - b.net_speech_seconds).abs() <= 0.03);
        assert!(
            (q.snr_db - b.snr_db).abs() < 1.0,
            "{} vs {}",
            q.snr_db,
            b.snr_db
        );
        assert_eq!(q.clipping_ratio, 0.0);
    }

    #[test]
    fn counts_full_scale_samples_as_clipped() {
        let mut vad = StreamingVad::new(8000, VadOptions::default());
        let mut x = vec![0.0f32; 1000];
        x[10..20].iter_mut().for_each(|s| *s = 32767.0);
        let mut out = Vec::new();
        vad.push(&x, &mut out);
        assert!((vad.quality().clipping_ratio - 0.01).abs() < 1e-12);
    }

    #[test]
    fn silence_has_no_speech() {
        let (out, vad) = stream(&vec![0.0; 16000], 8000, 160);
        assert!(out.iter().all(|s| !s));
        assert_eq!(vad.quality().net_speech_seconds, 0.0);
        assert_eq!(vad.quality().snr_db, 0.0);
    }
}
