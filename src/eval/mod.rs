//! Evaluation of a speaker-verification system from trial scores: equal error rate, minimum detection
//! cost, false-reject rate at a fixed false-accept rate, Cllr, DET curves (with an SVG plot) and the
//! trial-list format read by `voiceprint eval`.
//!
//! Conventions: a trial is **accepted** when its score is `>=` the threshold. `P_miss(t)` is the share of
//! target trials scoring below `t` (false rejects), `P_fa(t)` the share of non-target trials scoring at or
//! above `t` (false accepts). Every metric is computed from one sort of the scores, O(n log n).

mod det;
mod metrics;
mod trials;

pub use det::{DetSystem, probit, render_det_svg, write_det_svg};
pub use metrics::{DcfParams, DetPoint, Eer, OperatingPoint, ScoreSet, actual_dcf, cllr};
pub use trials::{Trial, TrialList, TrialListError};

/// Errors of the evaluation metrics and plots.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// No target trials were given; miss rates are undefined.
    #[error("no target trials: miss rates are undefined")]
    NoTargets,
    /// No non-target trials were given; false-accept rates are undefined.
    #[error("no non-target trials: false-accept rates are undefined")]
    NoNonTargets,
    /// A score or log-likelihood ratio was NaN or infinite.
    #[error("score {index} is not finite ({value})")]
    NonFiniteScore {
        /// Position of the offending score in its input slice.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A rate argument (target FAR, prior) was outside its valid range.
    #[error("{name} must be in {range}, got {value}")]
    OutOfRange {
        /// Which argument.
        name: &'static str,
        /// The valid range, for the message.
        range: &'static str,
        /// The value given.
        value: f64,
    },
    /// Nothing to plot: no system has any trials.
    #[error("nothing to plot: no system given")]
    NoSystems,
    /// Writing the plot failed.
    #[error("cannot write DET plot to {path}: {source}")]
    Write {
        /// The output path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
