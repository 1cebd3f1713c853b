//! The stages glued together: audio in, speaker embedding and quality out.
//!
//! ```text
//! bytes ─ decode (audio) ─ quality (original rate) ─ resample to 16 kHz ─ fbank80 ─ VAD mask ─ CMN ─ CAM++ ─ L2
//!                                                     channel (G.711 or telephone band) ─┘ (picks the calibration)
//! ```
//!
//! One [`Engine`] holds the model, the feature extractor and the scorer. It is `Send + Sync` and
//! meant to be shared (`Arc<Engine>`) by every thread. Decode, quality and filterbank run in a
//! pooled [`FrontEnd`] (one cache-warm pass, buffers reused across calls); the embedding's scratch
//! memory comes from a small pool of reusable workspaces. Every call is CPU-bound: async callers run it on a blocking
//! pool. One embedding may use several threads ([`EngineConfig::embed_threads`], or per call
//! [`with_embed_threads`]).

use std::borrow::Cow;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::audio::{self, AudioError, DecodeOptions, Decoded, Waveform};
use crate::embed::{CamPlusPlus, EmbedError, Workspace};
use crate::features::{self, Fbank, FbankOptions, FeatureMatrix, StreamingFbank};
use crate::quality::{self, FrontEnd, Quality, QualityReport, VadOptions};
use crate::score::{Channel, ScoreError, Scorer, l2_normalize};

/// The sample rate the embedding network expects.
pub const MODEL_SAMPLE_RATE: u32 = 16_000;

/// Errors of the pipeline: whichever stage failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The audio could not be decoded or broke a limit.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The feature extractor could not be built.
    #[error(transparent)]
    Features(#[from] features::FeatureError),
    /// The model could not be loaded or run.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The cohort or calibration could not be loaded.
    #[error(transparent)]
    Score(#[from] ScoreError),
}

impl PipelineError {
    /// Whether the error is a size or duration limit (rather than bad data).
    pub fn is_limit(&self) -> bool {
        matches!(self, PipelineError::Audio(e) if e.is_limit())
    }
}

/// Where the scorer's cohort and calibration come from.
#[derive(Clone, Debug, Default)]
pub enum ScoringSource {
    /// The defaults shipped in the binary, fitted for wideband enrolment ([`Scorer::builtin`]).
    #[default]
    Builtin,
    /// The calibration shipped for telephone enrolment and telephone tests
    /// ([`Scorer::builtin_telephone`]).
    BuiltinTelephone,
    /// `cohort.npy` and `calibration.json` in a directory.
    Dir(PathBuf),
    /// Plain cosine: no normalisation, no calibration.
    Raw,
}

/// How an [`Engine`] is built.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The CAM++ checkpoint (see [`crate::model::ensure_model`]).
    pub model_path: PathBuf,
    /// Cohort and calibration.
    pub scoring: ScoringSource,
    /// Drop non-speech frames before embedding.
    pub use_vad: bool,
    /// Voice activity detection settings.
    pub vad: VadOptions,
    /// Below this much net speech no embedding is computed (unless
    /// [`whole_utterance_fallback`](Self::whole_utterance_fallback) is set).
    pub min_embed_speech_seconds: f64,
    /// Non-speech stretches shorter than this many frames (10 ms each) stay in the embedding's
    /// input: only longer silences, hold music and the far side's turns are cut. Cutting every
    /// pause splices the network's convolution context and cost 0.3–1 EER points on the
    /// development set; default 50 (0.5 s). 0 drops every non-speech frame.
    pub keep_gap_frames: usize,
    /// When the VAD keeps less than `min_embed_speech_seconds`, embed every frame instead of
    /// returning no embedding. Off in the service, whose gate answers `NOT_ENOUGH_SPEECH`; on in
    /// evaluation, where a short side is a reported quality flag and not a reason to drop a trial.
    pub whole_utterance_fallback: bool,
    /// With a built-in scoring source, calibrate each comparison for its channel pairing
    /// ([`crate::score::Scorer::with_builtin_channel_calibrations`]) when both channels are known.
    pub channel_calibrations: bool,
    /// Threads one embedding uses: 1 runs it on the calling thread, more split its time axis over
    /// the rayon pool (0 counts as 1). [`with_embed_threads`] overrides it per call.
    pub embed_threads: usize,
}

impl EngineConfig {
    /// The production configuration for a model file.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            scoring: ScoringSource::Builtin,
            use_vad: true,
            vad: VadOptions::default(),
            min_embed_speech_seconds: 0.5,
            whole_utterance_fallback: false,
            keep_gap_frames: DEFAULT_KEEP_GAP_FRAMES,
            channel_calibrations: true,
            embed_threads: 1,
        }
    }
}

/// What the pipeline learns from one piece of audio.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// The L2-normalised embedding; `None` when there was too little speech to compute one.
    pub embedding: Option<Vec<f32>>,
    /// The VAD kept too little speech and the embedding is of the whole utterance
    /// ([`EngineConfig::whole_utterance_fallback`]).
    pub whole_utterance: bool,
    /// The recording channel, which picks the calibration ([`crate::score::Channel`]): telephone
    /// when the source is G.711 or its speech has no energy below the telephone band.
    pub channel: Channel,
    /// Signal quality measured on the decoded audio.
    pub quality: Quality,
}

thread_local! {
    static EMBED_THREADS: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` with every embedding that an [`Engine`] computes on this thread inside it using
/// `threads` threads (0 counts as 1) instead of [`EngineConfig::embed_threads`]. Scopes nest; the
/// previous setting is restored when `f` returns or unwinds. The service uses it to give a request
/// the cores that are idle when it starts.
pub fn with_embed_threads<T>(threads: usize, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            EMBED_THREADS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(EMBED_THREADS.with(|c| c.replace(Some(threads.max(1)))));
    f()
}

/// The thread count set by the innermost [`with_embed_threads`] running on this thread, if any.
pub fn scoped_embed_threads() -> Option<usize> {
    EMBED_THREADS.with(Cell::get)
}

/// Workspaces kept for reuse: more than this many are dropped when returned.
const MAX_POOLED_WORKSPACES: usize = 16;
/// A workspace holding more scratch than this (an input over about two minutes) is not kept.
const MAX_POOLED_WORKSPACE_BYTES: usize = 192 << 20;

/// The loaded pipeline.
pub struct Engine {
    model: CamPlusPlus,
    fbank: Fbank,
    scorer: Scorer,
    config: EngineConfig,
    workspaces: Mutex<Vec<Workspace>>,
    /// Reusable front ends (decode buffer, filterbank scratch, feature matrix) for byte inputs.
    front_ends: Mutex<Vec<FrontEnd>>,
}

impl Engine {
    /// Loads the model and the scorer.
    pub fn load(config: EngineConfig) -> Result<Self, PipelineError> {
        let model = CamPlusPlus::load(&config.model_path)?;
        let fbank = Fbank::new(&FbankOptions::kaldi(MODEL_SAMPLE_RATE, 80))?;
        let scorer = match &config.scoring {
            ScoringSource::Builtin => Scorer::builtin()?,
            ScoringSource::Dir(dir) => Scorer::from_dir(dir)?,
            ScoringSource::BuiltinTelephone => Scorer::builtin_telephone()?,
            ScoringSource::Raw => Scorer::raw(),
        };
        let scorer = match &config.scoring {
            ScoringSource::Builtin | ScoringSource::BuiltinTelephone
                if config.channel_calibrations =>
            {
                scorer.with_builtin_channel_calibrations()?
            }
            _ => scorer,
        };
        Ok(Self {
            model,
            fbank,
            scorer,
            config,
            workspaces: Mutex::new(Vec::new()),
            front_ends: Mutex::new(Vec::new()),
        })
    }

    /// The scorer (cohort + calibration) this engine was built with.
    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    /// Replaces the scorer (for experiments and calibration).
    pub fn with_scorer(mut self, scorer: Scorer) -> Self {
        self.scorer = scorer;
        self
    }

    /// Identifier of the embedding model.
    pub fn model_version(&self) -> &str {
        self.model.version()
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Decodes `bytes` and analyses the result, with a pooled [`FrontEnd`]: the filterbank runs
    /// on each decoded block while it is in cache, and warm buffers are reused across calls.
    /// Gives the same analysis as [`analyze_decoded`](Self::analyze_decoded) of
    /// [`audio::decode`]'s output.
    pub fn analyze(&self, bytes: &[u8], opts: &DecodeOptions) -> Result<Analysis, PipelineError> {
        Ok(self.analyze_inspect(bytes, opts, |_, _| ())?.0)
    }

    /// [`analyze`](Self::analyze), also handing the decoded samples of the selected channel
    /// (source rate, int16 scale) and their rate to `inspect` (e.g. for a replay fingerprint)
    /// without copying them.
    pub fn analyze_inspect<T>(
        &self,
        bytes: &[u8],
        opts: &DecodeOptions,
        inspect: impl FnOnce(&[f32], u32) -> T,
    ) -> Result<(Analysis, T), PipelineError> {
        self.with_front_end(|fe| self.analyze_with(fe, bytes, opts, inspect))
    }

    /// Runs `f` with a front end from the pool (a new one when all are busy), returned after.
    fn with_front_end<T>(&self, f: impl FnOnce(&mut FrontEnd) -> T) -> T {
        // A poisoned pool only means another call panicked; its front ends are plain buffers.
        let pooled = match self.front_ends.lock() {
            Ok(mut pool) => pool.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        let mut fe = pooled
            .unwrap_or_else(|| FrontEnd::new(self.fbank.clone(), self.config.vad).with_cmn(false));
        let out = f(&mut fe);
        match self.front_ends.lock() {
            Ok(mut pool) => pool.push(fe),
            Err(poisoned) => poisoned.into_inner().push(fe),
        }
        out
    }

    fn analyze_with<T>(
        &self,
        fe: &mut FrontEnd,
        bytes: &[u8],
        opts: &DecodeOptions,
        inspect: impl FnOnce(&[f32], u32) -> T,
    ) -> Result<(Analysis, T), PipelineError> {
        let out = fe.process(bytes, opts)?;
        let g711 = is_g711_codec(&out.info.codec);
        let inspected = inspect(out.samples, out.info.sample_rate);
        let analysis = self.conclude(
            out.quality,
            out.features,
            || self.model_rate_mask(out.samples, out.info.sample_rate),
            g711,
            true,
        )?;
        Ok((analysis, inspected))
    }

    /// Analyses decoded audio; a G.711 source counts as telephone whatever its spectrum.
    pub fn analyze_decoded(&self, decoded: &Decoded) -> Result<Analysis, PipelineError> {
        self.analyze_inner(&decoded.waveform, is_g711(decoded), true)
    }

    /// The channel of decoded audio, as [`analyze_decoded`](Self::analyze_decoded) finds it,
    /// without computing the embedding.
    pub fn detect_channel(&self, decoded: &Decoded) -> Result<Channel, PipelineError> {
        Ok(self
            .analyze_inner(&decoded.waveform, is_g711(decoded), false)?
            .channel)
    }

    /// Reads and decodes a file and analyses the result.
    pub fn analyze_file(
        &self,
        path: &Path,
        opts: &DecodeOptions,
    ) -> Result<Analysis, PipelineError> {
        let decoded = audio::decode_file(path, opts)?;
        self.analyze_decoded(&decoded)
    }

    /// Analyses decoded mono audio (any sample rate, int16 scale); the channel comes from the
    /// spectrum alone (use [`analyze_decoded`](Self::analyze_decoded) when the codec is known).
    pub fn analyze_waveform(&self, waveform: &Waveform) -> Result<Analysis, PipelineError> {
        self.analyze_inner(waveform, false, true)
    }

    fn analyze_inner(
        &self,
        waveform: &Waveform,
        g711: bool,
        embed: bool,
    ) -> Result<Analysis, PipelineError> {
        let (samples, rate) = (&waveform.samples, waveform.sample_rate);
        self.with_front_end(|fe| {
            let (report, features) = fe.process_samples(samples, rate)?;
            self.conclude(
                report,
                features,
                || self.model_rate_mask(samples, rate),
                g711,
                embed,
            )
        })
    }

    /// The speech mask on the 16 kHz filterbank grid, for the rare input whose source-rate mask
    /// does not line up with it.
    fn model_rate_mask(&self, samples: &[f32], rate: u32) -> Result<Vec<bool>, PipelineError> {
        let at_model_rate = self.to_model_rate(samples, rate)?;
        Ok(quality::speech_mask(
            &at_model_rate,
            MODEL_SAMPLE_RATE,
            &self.config.vad,
        ))
    }

    /// The common end of every analysis: gate, speech selection, channel, embedding. `features`
    /// are the 16 kHz filterbank frames (not mean-normalised), `fallback_mask` gives the speech
    /// mask on their grid when the report's is on another.
    fn conclude(
        &self,
        report: QualityReport,
        features: &FeatureMatrix,
        fallback_mask: impl FnOnce() -> Result<Vec<bool>, PipelineError>,
        g711: bool,
        embed: bool,
    ) -> Result<Analysis, PipelineError> {
        let quality = report.quality;
        let too_short = self.config.use_vad
            && quality.net_speech_seconds < self.config.min_embed_speech_seconds;
        if too_short && !self.config.whole_utterance_fallback {
            return Ok(Analysis {
                embedding: None,
                whole_utterance: false,
                channel: if g711 {
                    Channel::Telephone
                } else {
                    Channel::Wideband
                },
                quality,
            });
        }
        let feats = if self.config.use_vad && !too_short {
            // The VAD grid (25 ms / 10 ms) gives the same frame count at every rate, so the mask
            // measured at the original rate lines up with the 16 kHz filterbank frames.
            let mut mask = if report.speech.len() == features.num_frames() {
                report.speech
            } else {
                fallback_mask()?
            };
            keep_short_gaps(&mut mask, self.config.keep_gap_frames);
            features.select_rows(&mask)
        } else {
            features.clone()
        };
        let channel = if g711 || telephone_band(&feats, self.fbank.options()) {
            Channel::Telephone
        } else {
            Channel::Wideband
        };
        if !embed || (too_short && feats.num_frames() < crate::embed::CamPlusPlus::MIN_FRAMES) {
            return Ok(Analysis {
                embedding: None,
                whole_utterance: too_short,
                channel,
                quality,
            });
        }
        let embedding = self.embed_features(feats)?;
        Ok(Analysis {
            embedding: Some(embedding),
            whole_utterance: too_short,
            channel,
            quality,
        })
    }

    /// Embeds the whole utterance exactly as the reference implementation does: fbank80 of every
    /// sample at 16 kHz, mean removal, CAM++; no VAD and no length normalisation.
    pub fn embed_raw(&self, waveform: &Waveform) -> Result<Vec<f32>, PipelineError> {
        let samples = self.to_model_rate(&waveform.samples, waveform.sample_rate)?;
        let mut feats = self.fbank.compute(&samples);
        features::apply_cmn(&mut feats);
        Ok(self.embed_cmn(&feats)?)
    }

    fn to_model_rate<'s>(
        &self,
        samples: &'s [f32],
        rate: u32,
    ) -> Result<Cow<'s, [f32]>, PipelineError> {
        if rate == MODEL_SAMPLE_RATE {
            Ok(Cow::Borrowed(samples))
        } else {
            Ok(Cow::Owned(audio::resample(
                samples,
                rate,
                MODEL_SAMPLE_RATE,
            )?))
        }
    }

    /// A streaming extractor of the engine's features (fbank-80 at 16 kHz), for live audio.
    pub fn streaming_fbank(&self) -> Result<StreamingFbank, PipelineError> {
        Ok(StreamingFbank::from_fbank(self.fbank.clone())?)
    }

    /// Embeds 16 kHz fbank-80 frames (already chosen by the VAD, if wanted): mean removal, CAM++,
    /// L2 normalisation. The frames of [`streaming_fbank`](Self::streaming_fbank) fit.
    pub fn embed_fbank(&self, feats: FeatureMatrix) -> Result<Vec<f32>, PipelineError> {
        self.embed_features(feats)
    }

    fn embed_features(&self, mut feats: FeatureMatrix) -> Result<Vec<f32>, PipelineError> {
        features::apply_cmn(&mut feats);
        let mut embedding = self.embed_cmn(&feats)?;
        l2_normalize(&mut embedding);
        Ok(embedding)
    }

    /// The thread count an embedding started now on this thread uses.
    pub fn embed_threads(&self) -> usize {
        scoped_embed_threads()
            .unwrap_or(self.config.embed_threads)
            .max(1)
    }

    /// CAM++ on mean-normalised frames, with a pooled workspace.
    fn embed_cmn(&self, feats: &FeatureMatrix) -> Result<Vec<f32>, EmbedError> {
        // A poisoned pool only means another call panicked; its workspaces are plain buffers.
        let pooled = match self.workspaces.lock() {
            Ok(mut pool) => pool.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        let mut ws = pooled.unwrap_or_default();
        let out = self.model.embed_frames_par(
            &mut ws,
            feats.as_slice(),
            feats.dim(),
            self.embed_threads(),
        );
        if ws.bytes() <= MAX_POOLED_WORKSPACE_BYTES {
            let mut pool = match self.workspaces.lock() {
                Ok(pool) => pool,
                Err(poisoned) => poisoned.into_inner(),
            };
            if pool.len() < MAX_POOLED_WORKSPACES {
                pool.push(ws);
            }
        }
        out
    }
}

/// Default of [`EngineConfig::keep_gap_frames`].
pub const DEFAULT_KEEP_GAP_FRAMES: usize = 50;

/// Marks as speech every non-speech run shorter than `max_gap` frames, at the edges too.
pub fn keep_short_gaps(mask: &mut [bool], max_gap: usize) {
    let mut i = 0;
    while i < mask.len() {
        if mask[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < mask.len() && !mask[i] {
            i += 1;
        }
        if i - start < max_gap {
            mask[start..i].fill(true);
        }
    }
}

fn is_g711(decoded: &Decoded) -> bool {
    is_g711_codec(&decoded.info.codec)
}

fn is_g711_codec(codec: &str) -> bool {
    matches!(codec, "pcm_mulaw" | "pcm_alaw")
}

/// Below this power ratio (dB) between the mel bins centred under 200 Hz and those of 500–3000 Hz
/// (mean power per bin over the speech frames), speech counts as telephone-band. On the development
/// set the ratio was −22 dB or more on 90 studio and synthetic clips (median −8 dB: the voice's
/// fundamental and first harmonics) and −36.5 dB or less on 40 G.711 copies band-passed to
/// 300–3400 Hz and decoded to linear PCM (median −46 dB: the codec's noise floor).
const TELEPHONE_LOW_BAND_DB: f64 = -30.0;

/// Whether log-mel frames (speech only, before mean removal) lack the energy below 300 Hz that
/// every wideband and linear-PCM recording of a voice has: the telephone band-pass.
fn telephone_band(feats: &FeatureMatrix, opts: &FbankOptions) -> bool {
    let bins = opts.num_bins;
    if feats.num_frames() == 0 || feats.dim() != bins {
        return false;
    }
    // Centre frequencies of the Kaldi mel bins.
    let mel = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    let (lo, hi) = (
        mel(f64::from(opts.low_freq)),
        mel(f64::from(opts.resolved_high_freq())),
    );
    let step = (hi - lo) / (bins + 1) as f64;
    let centre = |k: usize| 700.0 * (((lo + step * (k + 1) as f64) / 1127.0).exp() - 1.0);
    let mut power = vec![0.0f64; bins];
    for row in feats.rows() {
        for (p, &v) in power.iter_mut().zip(row) {
            *p += f64::from(v).exp();
        }
    }
    let mean_of = |range: std::ops::Range<f64>| {
        let (sum, n) = (0..bins)
            .filter(|&k| range.contains(&centre(k)))
            .fold((0.0, 0usize), |(s, n), k| (s + power[k], n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    match (mean_of(0.0..200.0), mean_of(500.0..3000.0)) {
        (Some(low), Some(mid)) if mid > 0.0 => {
            10.0 * (low / mid).max(1e-30).log10() < TELEPHONE_LOW_BAND_DB
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn current() -> Option<usize> {
        EMBED_THREADS.with(Cell::get)
    }

    #[test]
    fn embed_threads_scope_nests_and_restores() {
        assert_eq!(current(), None);
        let inner = with_embed_threads(3, || {
            assert_eq!(current(), Some(3));
            with_embed_threads(0, current)
        });
        assert_eq!(inner, Some(1), "0 counts as 1");
        assert_eq!(current(), None);
        let caught = std::panic::catch_unwind(|| with_embed_threads(2, || panic!("job failed")));
        assert!(caught.is_err());
        assert_eq!(current(), None, "restored after unwinding");
        // another thread does not see this thread's setting
        with_embed_threads(4, || {
            assert_eq!(std::thread::spawn(current).join().unwrap(), None);
        });
    }
}
