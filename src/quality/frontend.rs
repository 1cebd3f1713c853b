//! The whole front end (decode, filterbank, VAD / quality, CMN) as one reusable object.
//!
//! [`FrontEnd::process`] does what `audio::decode`, then
//! [`assess_with_fbank`](super::assess_with_fbank) and `features::apply_cmn` do, with the same
//! results, but
//! * it owns the decoded signal, the feature matrix and the filterbank's scratch buffers and reuses
//!   them from call to call, so a warm front end allocates nothing large and takes no page faults
//!   (on a fresh 38 MB signal and 19 MB matrix per 10 minutes at 16 kHz these were ~15 % of the
//!   time);
//! * the filterbank runs on each block of samples as the decoder produces it
//!   (`audio::decode_into_with`), while the block is in cache, and the clipping scan reads each
//!   frame-shift piece of the signal right after the frames over it, instead of separate passes
//!   over the whole signal;
//! * frame means and energies are summed four frames at a time (the same sums, more of them in
//!   flight);
//! * the CMN column sums are accumulated while the rows are produced, so CMN is one subtract pass.

use super::{
    ClipScan, QualityReport, VadOptions, assess_at, power_of, report_from_powers, same_grid,
};
use crate::audio::{self, AudioError, ChannelSelect, DecodeOptions, SourceInfo};
use crate::features::simd::{self, Level};
use crate::features::{
    Fbank, FeatureMatrix, FusedCursor, Workspace, apply_cmn_at, apply_cmn_with_sums,
};

/// Decode + filterbank + VAD / quality + CMN with buffers kept across calls. One per thread (or
/// per worker); [`process`](Self::process) takes `&mut self`.
pub struct FrontEnd {
    fbank: Fbank,
    vad: VadOptions,
    cmn: bool,
    level: Level,
    signal: Vec<f32>,
    features: FeatureMatrix,
    energies: Vec<f32>,
    powers: Vec<f64>,
    col_sums: Vec<f64>,
    clip: ClipScan,
    ws: Workspace,
}

impl std::fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontEnd")
            .field("fbank", &self.fbank)
            .field("vad", &self.vad)
            .field("cmn", &self.cmn)
            .field("signal_capacity", &self.signal.capacity())
            .finish_non_exhaustive()
    }
}

/// What [`FrontEnd::process`] found; borrows the front end's buffers until the next call.
#[derive(Debug)]
pub struct FrontEndOutput<'a> {
    /// The decoded channel at the source rate, 16-bit integer scale.
    pub samples: &'a [f32],
    /// What the source was (its `sample_rate` is the rate of `samples`).
    pub info: SourceInfo,
    /// The channel selection applied.
    pub channel: ChannelSelect,
    /// Duration, net speech, SNR, clipping and the per-frame speech mask, measured on `samples`.
    pub quality: QualityReport,
    /// The filterbank's features of the whole signal (at the filterbank's rate, resampled first
    /// when the source rate differs), mean-normalised when CMN is on.
    pub features: &'a FeatureMatrix,
}

impl FrontEnd {
    /// A front end with this filterbank and VAD; CMN over all frames is on.
    pub fn new(fbank: Fbank, vad: VadOptions) -> Self {
        let ws = fbank.workspace();
        Self {
            fbank,
            vad,
            cmn: true,
            level: simd::level(),
            signal: Vec::new(),
            features: FeatureMatrix::default(),
            energies: Vec::new(),
            powers: Vec::new(),
            col_sums: Vec::new(),
            clip: ClipScan::default(),
            ws,
        }
    }

    /// Turns cepstral mean normalisation of the features (over all frames) on or off.
    pub fn with_cmn(mut self, cmn: bool) -> Self {
        self.cmn = cmn;
        self
    }

    /// The filterbank.
    pub fn fbank(&self) -> &Fbank {
        &self.fbank
    }

    /// The VAD options.
    pub fn vad_options(&self) -> &VadOptions {
        &self.vad
    }

    /// Decodes `bytes` and analyses the result: the same samples as `audio::decode`, the same
    /// report as `quality::assess` on them, the same features as `Fbank::compute` (+ `apply_cmn`)
    /// on them (after `audio::resample` to the filterbank's rate when the rates differ).
    ///
    /// When the source is at the filterbank's rate and on the VAD's grid (the defaults), the
    /// filterbank runs on each block of samples as the decoder produces it, while the block is
    /// still in cache.
    pub fn process(
        &mut self,
        bytes: &[u8],
        opts: &DecodeOptions,
    ) -> Result<FrontEndOutput<'_>, AudioError> {
        let level = self.level;
        let Self {
            fbank,
            vad,
            signal,
            features,
            energies,
            col_sums,
            clip,
            ws,
            ..
        } = self;
        let fbank_rate = fbank.options().frame.sample_rate;
        let mut data = std::mem::take(features).into_vec();
        let mut cursor = FusedCursor::default();
        // Whether the blocks go through the fused pass: decided on the first block (its rate).
        let mut fused: Option<bool> = None;
        let mut progress = |so_far: &[f32], rate: u32| {
            let on = *fused.get_or_insert_with(|| {
                let on = rate == fbank_rate && same_grid(fbank, rate, vad);
                if on {
                    let (_, hop) = vad.frame_samples(rate);
                    clip.reset(vad, hop, 0);
                    fbank.fused_begin(&mut data, energies, col_sums, 0);
                }
                on
            });
            if on {
                fbank.fused_advance(
                    so_far,
                    false,
                    &mut cursor,
                    ws,
                    (&mut data, energies, col_sums),
                    |piece| clip.push(level, piece),
                );
            }
        };
        let decoded = audio::decode_into_with(bytes, opts, signal, &mut progress);
        let fused = fused == Some(true);
        if fused {
            fbank.fused_advance(
                signal,
                true,
                &mut cursor,
                ws,
                (&mut data, energies, col_sums),
                |piece| clip.push(level, piece),
            );
        }
        *features = FeatureMatrix::from_rows_unchecked(data, fbank.dim());
        let (info, channel) = decoded?;
        let signal = std::mem::take(&mut self.signal);
        let analysed = if fused && info.sample_rate == fbank_rate {
            Ok(self.finish_fused(&signal, info.sample_rate))
        } else {
            self.analyse(&signal, info.sample_rate)
        };
        self.signal = signal;
        Ok(FrontEndOutput {
            samples: &self.signal,
            info,
            channel,
            quality: analysed?,
            features: &self.features,
        })
    }

    /// Analyses already decoded samples at `sample_rate` (16-bit integer scale): the quality report
    /// (as `quality::assess`) and the features (as `Fbank::compute` + `apply_cmn`, after
    /// resampling to the filterbank's rate when the rates differ).
    pub fn process_samples(
        &mut self,
        samples: &[f32],
        sample_rate: u32,
    ) -> Result<(QualityReport, &FeatureMatrix), AudioError> {
        let report = self.analyse(samples, sample_rate)?;
        Ok((report, &self.features))
    }

    fn analyse(&mut self, samples: &[f32], rate: u32) -> Result<QualityReport, AudioError> {
        let level = self.level;
        let fbank_rate = self.fbank.options().frame.sample_rate;
        if fbank_rate != rate {
            // Quality on the source samples (clipping is only meaningful before resampling),
            // features at the filterbank's rate.
            let report = assess_at(level, samples, rate, &self.vad);
            let resampled = audio::resample(samples, rate, fbank_rate)?;
            self.features = self.fbank.compute(&resampled);
            if self.cmn {
                apply_cmn_at(level, &mut self.features);
            }
            return Ok(report);
        }
        if !same_grid(&self.fbank, rate, &self.vad) {
            let report = assess_at(level, samples, rate, &self.vad);
            self.features = self.fbank.compute(samples);
            if self.cmn {
                apply_cmn_at(level, &mut self.features);
            }
            return Ok(report);
        }
        let (_, hop) = self.vad.frame_samples(rate);
        let Self {
            fbank,
            vad,
            features,
            energies,
            col_sums,
            clip,
            ws,
            ..
        } = self;
        clip.reset(vad, hop, samples.len());
        let mut data = std::mem::take(features).into_vec();
        fbank.compute_fused(samples, ws, &mut data, energies, col_sums, |piece| {
            clip.push(level, piece)
        });
        *features = FeatureMatrix::from_rows_unchecked(data, fbank.dim());
        Ok(self.finish_fused(samples, rate))
    }

    /// The report and CMN after the fused pass over `samples` filled the features, energies,
    /// column sums and clipping scan.
    fn finish_fused(&mut self, samples: &[f32], rate: u32) -> QualityReport {
        let (len, _) = self.vad.frame_samples(rate);
        self.powers.clear();
        self.powers
            .extend(self.energies.iter().map(|&e| power_of(e, len)));
        let clipping = self.clip.finish(samples, &self.vad);
        let report = report_from_powers(samples.len(), rate, &self.vad, &self.powers, clipping);
        if self.cmn {
            apply_cmn_with_sums(self.level, &mut self.features, &self.col_sums);
        }
        report
    }
}

#[cfg(test)]
impl FrontEnd {
    /// The dispatch level of the clipping scan and CMN (for tests comparing the paths; the
    /// filterbank has its own, `Fbank::with_level`).
    pub(crate) fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }
}
