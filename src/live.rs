//! Live audio: the pipeline fed chunk by chunk while a call goes on.
//!
//! ```text
//! chunks ─ RawStreamDecoder ─┬─ StreamingVad (original rate) ──────────────┐
//!                            └─ StreamResampler ─ StreamingFbank (16 kHz) ─ pair by frame ─ speech frames
//! speech frames ─ segments of ≤ segment_seconds ─ CAM++ once each ─ weighted mean ─ running embedding
//! ```
//!
//! Every stage keeps only the state it needs for what comes next, so a [`LiveSession`]'s memory
//! does not grow with the call: the VAD and filterbank carry a frame or two, the speech frames of
//! the open segment (at most `segment_seconds`), the sum of the closed segments' embeddings, and the
//! first `replay_seconds` of audio for the replay fingerprint.
//!
//! CAM++ pools statistics over the whole input, so an embedding cannot be extended frame by frame.
//! The session embeds closed segments once and keeps their duration-weighted sum; each update
//! embeds only the open segment (at most `segment_seconds` of speech), so the cost of a decision is
//! bounded however long the call. The VAD frames and the filterbank frames share the 25 ms / 10 ms
//! grid, so frame *t* of one is frame *t* of the other at any input rate.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::audio::{AudioError, ChannelSelect, Encoding, RawStreamDecoder, StreamResampler};
use crate::features::{FeatureMatrix, StreamingFbank};
use crate::pipeline::{Engine, MODEL_SAMPLE_RATE, PipelineError};
use crate::quality::{Quality, StreamingVad};
use crate::score::l2_normalize;

/// Errors of a live session.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The stream description is not usable (encoding, rate, channels).
    #[error("invalid stream: {0}")]
    InvalidStream(String),
    /// The audio stage failed (e.g. a resampler could not be built).
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Feature extraction or the embedding failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The stream ran past its longest allowed duration.
    #[error("stream longer than {limit} s")]
    TooLong {
        /// The limit, seconds.
        limit: f64,
    },
}

/// How a live stream is encoded and when it gets decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveOptions {
    /// Headerless encoding of the chunks (not [`Encoding::Auto`]).
    pub encoding: Encoding,
    /// Sample rate of the chunks, Hz (8 kHz – 48 kHz).
    pub sample_rate: u32,
    /// Interleaved channels in the chunks.
    pub channels: usize,
    /// Which channel is the speaker to verify.
    pub channel: ChannelSelect,
    /// Net speech before the first decision, seconds.
    pub first_decision_seconds: f64,
    /// New net speech between two running decisions, seconds.
    pub decision_every_seconds: f64,
    /// Net speech per embedded segment, seconds (longer: closer to a whole-call embedding, dearer
    /// updates).
    pub segment_seconds: f64,
    /// Longest stream accepted, seconds of audio.
    pub max_seconds: f64,
    /// Audio kept from the start of the stream for the replay fingerprint, seconds.
    pub replay_seconds: f64,
}

impl LiveOptions {
    /// Defaults for a stream: first decision after 3 s of speech, then every 2 s, segments of
    /// 6 s, at most 2 hours, the first 60 s kept for replay detection.
    pub fn new(
        encoding: Encoding,
        sample_rate: u32,
        channels: usize,
        channel: ChannelSelect,
    ) -> Self {
        Self {
            encoding,
            sample_rate,
            channels,
            channel,
            first_decision_seconds: 3.0,
            decision_every_seconds: 2.0,
            segment_seconds: 6.0,
            max_seconds: 7200.0,
            replay_seconds: 60.0,
        }
    }
}

/// Frames per second of the feature grid (10 ms shift).
const FRAMES_PER_SECOND: f64 = 100.0;

/// One live stream's incremental pipeline state.
pub struct LiveSession {
    engine: Arc<Engine>,
    opts: LiveOptions,
    decoder: RawStreamDecoder,
    resampler: Option<StreamResampler>,
    fbank: StreamingFbank,
    vad: StreamingVad,
    dim: usize,
    /// Scratch: decoded samples of the current chunk (original rate), then at 16 kHz.
    decoded: Vec<f32>,
    resampled: Vec<f32>,
    /// Filterbank rows waiting for their VAD decision.
    fbank_rows: Vec<f32>,
    /// VAD decisions waiting for their filterbank row.
    decisions: VecDeque<bool>,
    scratch_decisions: Vec<bool>,
    /// Speech frames of the open segment (with the short pauses between them, as in
    /// [`crate::pipeline::EngineConfig::keep_gap_frames`]).
    open: Vec<f32>,
    /// Rows of the current non-speech run while it is still short enough to keep.
    gap: Vec<f32>,
    /// Length of the current non-speech run, frames.
    gap_frames: usize,
    /// Frames the VAD called speech so far (the kept pauses do not count).
    speech_frames: u64,
    /// Sum of the closed segments' unit embeddings, each weighted by its speech seconds.
    closed_sum: Vec<f64>,
    /// Net speech at the last decision, seconds.
    decided_at: Option<f64>,
    /// Start of the stream, original rate, for the replay fingerprint.
    head: Vec<f32>,
    samples_in: u64,
    finished: bool,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("opts", &self.opts)
            .field("samples_in", &self.samples_in)
            .field("speech_seconds", &self.speech_seconds())
            .finish_non_exhaustive()
    }
}

impl LiveSession {
    /// A session decoding `opts.encoding` and embedding with `engine`.
    pub fn new(engine: Arc<Engine>, opts: LiveOptions) -> Result<Self, LiveError> {
        if opts.encoding == Encoding::Auto {
            return Err(LiveError::InvalidStream(
                "a stream needs a headerless encoding (PCM16LE, MULAW or ALAW), not AUTO".into(),
            ));
        }
        if !(8000..=48_000).contains(&opts.sample_rate) {
            return Err(LiveError::InvalidStream(format!(
                "sample rate {} Hz is outside 8000 – 48000",
                opts.sample_rate
            )));
        }
        if !(1..=8).contains(&opts.channels) {
            return Err(LiveError::InvalidStream(format!(
                "{} channels: 1 to 8 supported",
                opts.channels
            )));
        }
        let valid = |x: f64| x.is_finite() && x > 0.0;
        if !(valid(opts.first_decision_seconds)
            && valid(opts.decision_every_seconds)
            && valid(opts.segment_seconds)
            && valid(opts.max_seconds)
            && opts.replay_seconds.is_finite()
            && opts.replay_seconds >= 0.0)
        {
            return Err(LiveError::InvalidStream(
                "decision, segment and duration settings must be positive".into(),
            ));
        }
        let decoder = RawStreamDecoder::new(opts.encoding, opts.channels, opts.channel)?;
        let resampler = if opts.sample_rate == MODEL_SAMPLE_RATE {
            None
        } else {
            Some(StreamResampler::new(opts.sample_rate, MODEL_SAMPLE_RATE)?)
        };
        let fbank = engine.streaming_fbank()?;
        let dim = fbank.dim();
        let vad = StreamingVad::new(opts.sample_rate, engine.config().vad);
        Ok(Self {
            engine,
            decoder,
            resampler,
            fbank,
            vad,
            dim,
            decoded: Vec::new(),
            resampled: Vec::new(),
            fbank_rows: Vec::new(),
            decisions: VecDeque::new(),
            scratch_decisions: Vec::new(),
            open: Vec::new(),
            gap: Vec::new(),
            gap_frames: 0,
            speech_frames: 0,
            closed_sum: Vec::new(),
            decided_at: None,
            head: Vec::new(),
            samples_in: 0,
            finished: false,
            opts,
        })
    }

    /// The options the session runs with.
    pub fn options(&self) -> &LiveOptions {
        &self.opts
    }

    /// Decodes a chunk and runs the cheap stages (resampling, filterbank, VAD) on it. Chunks may
    /// split samples and frames anywhere. The embedding is left to [`update`](Self::update).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), LiveError> {
        if self.finished {
            return Err(LiveError::InvalidStream(
                "audio after the end of the stream".into(),
            ));
        }
        self.decoded.clear();
        self.decoder.push(chunk, &mut self.decoded);
        self.samples_in += self.decoded.len() as u64;
        let seconds = self.samples_in as f64 / f64::from(self.opts.sample_rate);
        if seconds > self.opts.max_seconds {
            return Err(LiveError::TooLong {
                limit: self.opts.max_seconds,
            });
        }
        let keep = (self.opts.replay_seconds * f64::from(self.opts.sample_rate)) as usize;
        if self.head.len() < keep {
            let take = (keep - self.head.len()).min(self.decoded.len());
            self.head.extend_from_slice(&self.decoded[..take]);
        }
        self.scratch_decisions.clear();
        self.vad.push(&self.decoded, &mut self.scratch_decisions);
        self.decisions.extend(self.scratch_decisions.drain(..));
        match &mut self.resampler {
            None => {
                self.fbank.push(&self.decoded, &mut self.fbank_rows);
            }
            Some(r) => {
                self.resampled.clear();
                r.push(&self.decoded, &mut self.resampled)?;
                self.fbank.push(&self.resampled, &mut self.fbank_rows);
            }
        }
        self.pair();
        Ok(())
    }

    /// Net speech heard so far (frames the VAD has decided are speech), seconds.
    pub fn speech_seconds(&self) -> f64 {
        self.speech_frames as f64 / FRAMES_PER_SECOND
    }

    /// Audio received so far, seconds.
    pub fn audio_seconds(&self) -> f64 {
        self.samples_in as f64 / f64::from(self.opts.sample_rate)
    }

    /// Quality of the audio so far.
    pub fn quality(&self) -> Quality {
        self.vad.quality()
    }

    /// Whether enough new speech has come in since the last decision for another one.
    pub fn decision_due(&self) -> bool {
        let speech = self.speech_seconds();
        match self.decided_at {
            None => speech >= self.opts.first_decision_seconds,
            Some(at) => speech >= at + self.opts.decision_every_seconds,
        }
    }

    /// Embeds what the next decision needs and returns the running embedding (unit length), or
    /// `None` while there is less speech than the engine's minimum. This is the expensive step
    /// (one CAM++ pass over at most two segments); call it off the async runtime.
    pub fn update(&mut self) -> Result<Option<Vec<f32>>, LiveError> {
        self.close_full_segments()?;
        self.decided_at = Some(self.speech_seconds());
        self.current_embedding()
    }

    /// Ends the stream: flushes every stage, decides the last frames and returns the final
    /// embedding (as [`update`](Self::update)). Further pushes are refused.
    pub fn finish(&mut self) -> Result<Option<Vec<f32>>, LiveError> {
        if !self.finished {
            self.finished = true;
            self.scratch_decisions.clear();
            self.vad.finish(&mut self.scratch_decisions);
            self.decisions.extend(self.scratch_decisions.drain(..));
            if let Some(r) = &mut self.resampler {
                self.resampled.clear();
                r.flush(&mut self.resampled)?;
                self.fbank.push(&self.resampled, &mut self.fbank_rows);
            }
            self.pair();
            // A short pause at the end stays, as in the batch path.
            if self.gap_frames < self.engine.config().keep_gap_frames && self.speech_seconds() > 0.0
            {
                self.open.append(&mut self.gap);
            }
        }
        self.update()
    }

    /// The first `replay_seconds` of the stream (original rate, 16-bit scale) and its rate.
    pub fn head_audio(&self) -> (&[f32], u32) {
        (&self.head, self.opts.sample_rate)
    }

    fn open_seconds(&self) -> f64 {
        (self.open.len() / self.dim.max(1)) as f64 / FRAMES_PER_SECOND
    }

    /// Moves every frame that has both its filterbank row and its VAD decision on: speech frames
    /// into the open segment, non-speech runs too when they end within `keep_gap_frames`, the
    /// rest dropped. Both sides count frames from the start of the stream, so the oldest row
    /// always pairs with the oldest decision.
    fn pair(&mut self) {
        let dim = self.dim;
        let keep = self.engine.config().keep_gap_frames;
        let n = (self.fbank_rows.len() / dim).min(self.decisions.len());
        for (row, speech) in self
            .fbank_rows
            .chunks_exact(dim)
            .zip(self.decisions.drain(..n))
        {
            if speech {
                if self.gap_frames < keep {
                    self.open.append(&mut self.gap);
                }
                self.gap.clear();
                self.gap_frames = 0;
                self.speech_frames += 1;
                self.open.extend_from_slice(row);
            } else {
                self.gap_frames += 1;
                if self.gap_frames < keep {
                    self.gap.extend_from_slice(row);
                } else {
                    self.gap.clear();
                }
            }
        }
        self.fbank_rows.drain(..n * dim);
    }

    fn segment_frames(&self) -> usize {
        ((self.opts.segment_seconds * FRAMES_PER_SECOND) as usize).max(1)
    }

    fn close_full_segments(&mut self) -> Result<(), LiveError> {
        let seg = self.segment_frames() * self.dim;
        while self.open.len() >= seg {
            let rest = self.open.split_off(seg);
            let frames = std::mem::replace(&mut self.open, rest);
            let seconds = (frames.len() / self.dim) as f64 / FRAMES_PER_SECOND;
            let e = self.embed(frames)?;
            if self.closed_sum.is_empty() {
                self.closed_sum = vec![0.0; e.len()];
            }
            for (s, x) in self.closed_sum.iter_mut().zip(&e) {
                *s += seconds * f64::from(*x);
            }
        }
        Ok(())
    }

    fn current_embedding(&self) -> Result<Option<Vec<f32>>, LiveError> {
        let min = self.engine.config().min_embed_speech_seconds;
        let open_seconds = self.open_seconds();
        let mut sum = self.closed_sum.clone();
        // A sliver of speech after the last closed segment adds noise, not evidence.
        if open_seconds >= min {
            let e = self.embed(self.open.clone())?;
            sum.resize(e.len(), 0.0);
            for (s, x) in sum.iter_mut().zip(&e) {
                *s += open_seconds * f64::from(*x);
            }
        }
        if sum.is_empty() {
            return Ok(None);
        }
        let mut out: Vec<f32> = sum.iter().map(|&x| x as f32).collect();
        l2_normalize(&mut out);
        Ok(Some(out))
    }

    fn embed(&self, frames: Vec<f32>) -> Result<Vec<f32>, LiveError> {
        let m = FeatureMatrix::new(frames, self.dim).map_err(PipelineError::from)?;
        Ok(self.engine.embed_fbank(m)?)
    }
}
