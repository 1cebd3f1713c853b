//! Kaldi-compatible acoustic features: log-mel filterbank ([`Fbank`]), MFCC ([`Mfcc`]), streaming
//! extraction for live audio ([`StreamingFbank`]) and per-utterance normalisation ([`apply_cmn`],
//! [`apply_cmvn`]).
//!
//! The recipe is Kaldi's `compute-fbank-feats` / `compute-mfcc-feats` (and kaldi-native-fbank) with
//! dither 0, checked against the golden fixtures of `fixtures/golden/` (README §3, §6, §7). Input
//! samples are `f32` in 16-bit integer scale (±32768): the log floor is absolute, so scale matters.
//!
//! Everything per frame is precomputed once in [`Fbank::new`] (window, sparse mel weights, DCT and
//! lifter, the real-FFT plan); [`Fbank::compute`] allocates its output and a small workspace once per
//! call and nothing per frame.

pub(crate) mod fastmath;
mod fbank;
mod matrix;
mod norm;
mod options;
pub(crate) mod simd;

#[cfg(test)]
pub(crate) mod tests;

pub use fbank::{Fbank, Mfcc, StreamingFbank};
pub(crate) use fbank::{FusedCursor, Workspace};
pub use matrix::FeatureMatrix;
pub use norm::{apply_cmn, apply_cmvn};
pub(crate) use norm::{apply_cmn_at, apply_cmn_with_sums};
pub use options::{FbankOptions, FrameOptions, MfccOptions, WindowType};

/// Errors of the feature extractors.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FeatureError {
    /// An option is out of range or the options contradict each other.
    #[error("invalid feature option `{name}`: {reason}")]
    InvalidOption {
        /// The option's field name.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// Dithering was requested; this crate is deterministic and only supports `dither = 0`.
    #[error("dither {0} is not supported: features must be deterministic, set dither to 0")]
    DitherUnsupported(f32),
    /// The data of a matrix does not split into rows of the given width.
    #[error("matrix data of length {len} does not split into rows of width {dim}")]
    ShapeMismatch {
        /// Number of values given.
        len: usize,
        /// Requested row width.
        dim: usize,
    },
}
