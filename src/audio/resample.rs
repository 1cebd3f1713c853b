//! Sample-rate conversion with rubato's FFT resampler, one-shot and streaming.
//!
//! Both paths use the same fixed-input-chunk resampler, so the streaming output equals the
//! one-shot output whatever the chunk sizes pushed. The resampler's delay is trimmed, so output
//! sample `k` is at time `k / to_hz` like input sample `k` is at `k / from_hz`, and a clip of `n`
//! samples becomes `round(n · to / from)` samples. (When rubato's FFT block is odd-sized on the
//! input side, e.g. 44.1 kHz, a residual lag of half an input sample remains: 11 µs.)

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::{AudioError, check_rate};

/// Input frames per resampler call (rubato rounds it to a multiple of the FFT block).
const CHUNK: usize = 1024;

/// `round(frames · to / from)` in exact integer arithmetic.
fn output_len(frames: u64, from: u32, to: u32) -> u64 {
    let num = u128::from(frames) * u128::from(to);
    let den = u128::from(from);
    ((num + den / 2) / den) as u64
}

/// Resamples mono `samples` from `from_hz` to `to_hz`; a copy when the rates are equal.
///
/// Both rates must be within [`MIN_SAMPLE_RATE`](super::MIN_SAMPLE_RATE)..=
/// [`MAX_SAMPLE_RATE`](super::MAX_SAMPLE_RATE). The output has `round(n · to / from)` samples.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    let mut resampler = StreamResampler::new(from_hz, to_hz)?;
    let expected = output_len(samples.len() as u64, from_hz, to_hz);
    let mut out = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    resampler.push(samples, &mut out)?;
    resampler.flush(&mut out)?;
    Ok(out)
}

/// An incremental mono resampler for live audio.
///
/// [`push`](Self::push) any number of samples and collect what is ready; [`flush`](Self::flush)
/// at the end of the stream emits the tail so that the total output is `round(n · to / from)`
/// samples for `n` pushed, and resets the resampler for a new stream.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal (identity).
    inner: Option<Inner>,
}

struct Inner {
    resampler: Fft<f32>,
    chunk_in: usize,
    /// Input not yet processed (fewer than `chunk_in` samples between calls).
    pending: Vec<f32>,
    /// Output scratch of `output_frames_max` samples.
    scratch: Vec<f32>,
    /// Output samples still to drop at the start (the resampler's delay).
    delay_left: usize,
    /// Input samples pushed since the last flush.
    pushed: u64,
    /// Output samples emitted since the last flush.
    emitted: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .finish_non_exhaustive()
    }
}

fn resample_error(e: impl std::fmt::Display) -> AudioError {
    AudioError::Resample(e.to_string())
}

impl StreamResampler {
    /// A resampler from `from_hz` to `to_hz` (both in the supported range).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        check_rate(from_hz)?;
        check_rate(to_hz)?;
        let inner = if from_hz == to_hz {
            None
        } else {
            let resampler =
                Fft::<f32>::new(from_hz as usize, to_hz as usize, CHUNK, 1, FixedSync::Input)
                    .map_err(resample_error)?;
            Some(Inner {
                chunk_in: resampler.input_frames_next(),
                scratch: vec![0.0; resampler.output_frames_max()],
                delay_left: resampler.output_delay(),
                pending: Vec::new(),
                pushed: 0,
                emitted: 0,
                resampler,
            })
        };
        Ok(StreamResampler {
            from_hz,
            to_hz,
            inner,
        })
    }

    /// Input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Adds `input` and appends every output sample that is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        inner.pushed += input.len() as u64;
        inner.pending.extend_from_slice(input);
        let mut offset = 0;
        while inner.pending.len() - offset >= inner.chunk_in {
            inner.process(offset, None, out)?;
            offset += inner.chunk_in;
        }
        inner.pending.drain(..offset);
        Ok(())
    }

    /// Ends the stream: emits the remaining output (total `round(n · to / from)` for `n` samples
    /// pushed since the last flush) and resets for a new stream.
    pub fn flush(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let (from, to) = (self.from_hz, self.to_hz);
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let target = output_len(inner.pushed, from, to);
        let start = out.len();
        if !inner.pending.is_empty() {
            let partial = inner.pending.len();
            inner.process(0, Some(partial), out)?;
        }
        // Pump silence through until the delayed tail is out.
        while inner.emitted < target {
            let before = inner.emitted;
            inner.process(0, Some(0), out)?;
            if inner.emitted == before && inner.delay_left == 0 {
                return Err(AudioError::Resample("resampler produced no output".into()));
            }
        }
        let excess = usize::try_from(inner.emitted - target).unwrap_or(usize::MAX);
        out.truncate(out.len().saturating_sub(excess).max(start));
        inner.pending.clear();
        inner.resampler.reset();
        inner.delay_left = inner.resampler.output_delay();
        inner.pushed = 0;
        inner.emitted = 0;
        Ok(())
    }
}

impl Inner {
    /// Runs one chunk starting at `pending[offset]` (`partial`: how many real samples, the rest
    /// zeros) and appends the output after the startup delay.
    fn process(
        &mut self,
        offset: usize,
        partial: Option<usize>,
        out: &mut Vec<f32>,
    ) -> Result<(), AudioError> {
        let available = self.pending.len() - offset;
        let input =
            SequentialSlice::new(&self.pending[offset..], 1, available).map_err(resample_error)?;
        let frames_out = self.scratch.len();
        let mut output = SequentialSlice::new_mut(&mut self.scratch[..], 1, frames_out)
            .map_err(resample_error)?;
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len: partial,
            active_channels_mask: None,
        };
        let (_, produced) = self
            .resampler
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(resample_error)?;
        let skip = self.delay_left.min(produced);
        self.delay_left -= skip;
        out.extend_from_slice(&self.scratch[skip..produced]);
        self.emitted += (produced - skip) as u64;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    /// Frequency from the count of rising zero crossings over the middle of the signal.
    fn zero_crossing_freq(x: &[f32], rate: u32) -> f64 {
        let mid = &x[x.len() / 10..x.len() * 9 / 10];
        let crossings: Vec<usize> = (1..mid.len())
            .filter(|&i| mid[i - 1] < 0.0 && mid[i] >= 0.0)
            .collect();
        let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
        (crossings.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
    }

    fn rms(x: &[f32]) -> f64 {
        let mid = &x[x.len() / 10..x.len() * 9 / 10];
        (mid.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / mid.len() as f64).sqrt()
    }

    #[test]
    fn lengths_are_rounded_ratio() {
        for (from, to) in [
            (8000, 16000),
            (44100, 16000),
            (22050, 16000),
            (16000, 8000),
            (48000, 16000),
            (11025, 16000),
        ] {
            for n in [0usize, 1, 7, 100, 1023, 1024, 1025, 5000, 44_101] {
                let x = vec![0.5f32; n];
                let y = resample(&x, from, to).unwrap();
                let expected = ((n as f64) * f64::from(to) / f64::from(from)).round() as usize;
                assert_eq!(y.len(), expected, "{from}->{to} n={n}");
            }
        }
    }

    #[test]
    fn identity_when_rates_equal() {
        let x = sine(440.0, 16000, 1000, 1000.0);
        assert_eq!(resample(&x, 16000, 16000).unwrap(), x);
    }

    #[test]
    fn invalid_rates_are_rejected() {
        assert!(matches!(
            resample(&[0.0], 0, 16000),
            Err(AudioError::InvalidSampleRate(0))
        ));
        assert!(matches!(
            resample(&[0.0], 8000, 1_000_000),
            Err(AudioError::InvalidSampleRate(_))
        ));
    }

    #[test]
    fn sine_keeps_frequency_amplitude_and_alignment() {
        for (from, to, freq) in [
            (8000u32, 16000u32, 1000.0),
            (44100, 16000, 440.0),
            (22050, 16000, 3000.0),
            (16000, 8000, 1500.0),
        ] {
            let n = from as usize * 2;
            let amp = 10_000.0;
            let x = sine(freq, from, n, amp);
            let y = resample(&x, from, to).unwrap();
            let f = zero_crossing_freq(&y, to);
            assert!(
                (f - freq).abs() / freq < 0.002,
                "{from}->{to}: {f} Hz vs {freq}"
            );
            let ratio = rms(&y) / rms(&x);
            assert!(
                (ratio - 1.0).abs() < 0.01,
                "{from}->{to}: amplitude ratio {ratio}"
            );
            // Time alignment: the output matches the ideal sine at the output rate. The FFT
            // resampler may lag by up to half an input sample (odd FFT block), which moves a sine
            // by at most amp·2πf·0.5/from; allow that plus 1 %.
            let ideal = sine(freq, to, y.len(), amp);
            let mid = y.len() / 4..y.len() * 3 / 4;
            let err = y[mid.clone()]
                .iter()
                .zip(&ideal[mid])
                .map(|(a, b)| f64::from(a - b).abs())
                .fold(0.0, f64::max);
            let bound = amp * (2.0 * std::f64::consts::PI * freq * 0.5 / f64::from(from) + 0.01);
            assert!(err < bound, "{from}->{to}: max deviation {err} > {bound}");
        }
    }

    #[test]
    fn stream_matches_one_shot_for_random_chunks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x: Vec<f32> = (0..30_000)
            .map(|_| rng.random_range(-8000.0..8000.0))
            .collect();
        for (from, to) in [(8000, 16000), (44100, 16000), (22050, 16000)] {
            let one_shot = resample(&x, from, to).unwrap();
            let mut stream = StreamResampler::new(from, to).unwrap();
            for _round in 0..2 {
                let mut out = Vec::new();
                let mut i = 0;
                while i < x.len() {
                    let len = rng.random_range(1..3000).min(x.len() - i);
                    stream.push(&x[i..i + len], &mut out).unwrap();
                    i += len;
                }
                stream.flush(&mut out).unwrap();
                assert_eq!(out.len(), one_shot.len());
                let max_diff = out
                    .iter()
                    .zip(&one_shot)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(max_diff < 1e-2, "{from}->{to}: {max_diff}");
            }
        }
    }
}
