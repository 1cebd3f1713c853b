//! Scoring: from two embeddings to a calibrated decision.
//!
//! The chain, as in current speaker-recognition practice:
//!
//! 1. **cosine** of L2-normalised embeddings ([`cosine`]);
//! 2. **adaptive symmetric score normalisation** (AS-norm): each side's score is standardised by the
//!    mean and standard deviation of its `top_n` highest scores against a cohort of impostor
//!    embeddings, and the two are averaged. The enrolled side's statistics are computed once, at
//!    enrolment ([`Scorer::prepare`]), so 1:N search costs one dot product per print;
//! 3. **calibration**: a logistic-regression map `llr = slope · norm + offset` fitted on labelled trials,
//!    giving a natural-log likelihood ratio whose meaning does not depend on the model's score range;
//! 4. **threshold by target false-accept rate**: the non-target normalised scores of the calibration
//!    set are summarised by a Gaussian (AS-norm makes them close to one), so the threshold for a
//!    FAR of `p` is `mean + std · Φ⁻¹(1 − p)`, expressed as an LLR.
//!
//! The cohort and the calibration are data: a `.npy` matrix and a small versioned JSON file,
//! rebuilt with `voiceprint calibrate` (see the README). Defaults built from the development set ship
//! inside the binary.

mod calibrate;
mod stats;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use calibrate::{CalibrationFit, fit_calibration};
pub use stats::{normal_cdf, probit};

/// Errors of the scoring stage.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The cohort matrix could not be read.
    #[error("cannot read the score-normalisation cohort {path}: {source}")]
    Cohort {
        /// The file.
        path: String,
        /// What went wrong.
        source: crate::npy::NpyError,
    },
    /// The cohort matrix has the wrong shape or non-finite values.
    #[error("invalid cohort: {0}")]
    InvalidCohort(String),
    /// The calibration file could not be read or parsed.
    #[error("cannot read the calibration {path}: {message}")]
    Calibration {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The calibration is of another format version than this build reads.
    #[error("calibration format version {found} is not supported (this build reads {expected})")]
    CalibrationVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// A target false-accept rate outside (0, 0.5].
    #[error("target false-accept rate {0} must be in (0, 0.5]")]
    InvalidFar(f64),
    /// Embeddings of different dimensions were compared.
    #[error("embedding dimension {found} does not match {expected}")]
    DimensionMismatch {
        /// The dimension given.
        found: usize,
        /// The dimension expected.
        expected: usize,
    },
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (&x, &y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let denom = (na * nb).sqrt();
    if denom > 0.0 { dot / denom } else { 0.0 }
}

/// Dot product, for vectors already L2-normalised.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales `v` to unit L2 norm in place (an all-zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Merges several embeddings of one speaker into one voiceprint: the average of the unit vectors
/// weighted by each part's net speech, renormalised.
pub fn merge_embeddings(parts: &[(Vec<f32>, f64)]) -> Vec<f32> {
    let dim = parts.first().map_or(0, |(e, _)| e.len());
    let mut out = vec![0.0f32; dim];
    for (embedding, weight) in parts {
        let mut unit = embedding.clone();
        l2_normalize(&mut unit);
        let w = weight.max(1e-3) as f32;
        out.iter_mut().zip(&unit).for_each(|(o, u)| *o += w * u);
    }
    l2_normalize(&mut out);
    out
}

/// The recording channel of one side of a comparison, as far as calibration cares.
///
/// Two telephone recordings share a band-pass and a codec, and that shared channel raises the
/// cosine of *different* speakers: on the development set non-target cosines average 0.43 between
/// two G.711 copies and 0.16 when one side is wideband. A calibration fitted on one pairing
/// misstates the false-accept rate of another, so the scorer picks the calibration by the pair
/// ([`ChannelPair`]) when both sides' channels are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// Not telephone-band: studio, app or 16 kHz recordings, and linear PCM at 8 kHz whose
    /// spectrum reaches below 300 Hz.
    Wideband,
    /// G.711 (µ-law/A-law) audio, or audio band-limited to the telephone band (300–3400 Hz).
    Telephone,
}

impl Channel {
    /// Lower-case name (`wideband`, `telephone`), as in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Wideband => "wideband",
            Channel::Telephone => "telephone",
        }
    }
}

/// The channels of a compared pair; cosine is symmetric, so the order does not matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelPair {
    /// Both sides wideband.
    Wideband,
    /// One side wideband, the other telephone.
    Mixed,
    /// Both sides telephone.
    Telephone,
}

impl ChannelPair {
    /// The pair of two channels.
    pub fn of(a: Channel, b: Channel) -> Self {
        match (a, b) {
            (Channel::Wideband, Channel::Wideband) => ChannelPair::Wideband,
            (Channel::Telephone, Channel::Telephone) => ChannelPair::Telephone,
            _ => ChannelPair::Mixed,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An embedding made ready for scoring: unit length, with its AS-norm cohort statistics.
///
/// This is what the store keeps per voiceprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// The L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// Mean of the embedding's `top_n` highest cohort scores.
    pub cohort_mean: f32,
    /// Standard deviation of those scores.
    pub cohort_std: f32,
    /// The channel of the audio it came from; `None` when unknown (voiceprints stored before
    /// channels were recorded), which scores with the scorer's default calibration.
    #[serde(default)]
    pub channel: Option<Channel>,
}

/// The outcome of comparing two prepared embeddings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Cosine similarity.
    pub raw: f32,
    /// AS-norm score (the raw score when no cohort is loaded).
    pub norm: f64,
    /// Calibrated natural-log likelihood ratio (the normalised score when uncalibrated).
    pub llr: f64,
}

/// Impostor embeddings for score normalisation, unit rows.
#[derive(Clone, Debug)]
pub struct Cohort {
    dim: usize,
    data: Vec<f32>,
}

impl Cohort {
    /// Builds a cohort from row-major embeddings of dimension `dim`; rows are L2-normalised.
    pub fn new(mut data: Vec<f32>, dim: usize) -> Result<Self, ScoreError> {
        if dim == 0 || data.is_empty() || !data.len().is_multiple_of(dim) {
            return Err(ScoreError::InvalidCohort(format!(
                "{} values do not make rows of {dim}",
                data.len()
            )));
        }
        if data.iter().any(|x| !x.is_finite()) {
            return Err(ScoreError::InvalidCohort("non-finite value".into()));
        }
        data.chunks_exact_mut(dim).for_each(l2_normalize);
        Ok(Self { dim, data })
    }

    /// Reads a cohort from a float32 `.npy` matrix (N × dim).
    pub fn from_npy_bytes(bytes: &[u8], origin: &str) -> Result<Self, ScoreError> {
        let (shape, data) =
            crate::npy::read_npy_bytes(bytes).map_err(|source| ScoreError::Cohort {
                path: origin.to_string(),
                source,
            })?;
        match shape.as_slice() {
            [_, dim] => Self::new(data, *dim),
            shape => Err(ScoreError::InvalidCohort(format!(
                "{origin}: expected a 2-D matrix, found shape {shape:?}"
            ))),
        }
    }

    /// Number of cohort embeddings.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether the cohort is empty (never true for a constructed cohort).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Mean and standard deviation of the `top_n` highest scores of `unit` against the cohort.
    fn top_stats(&self, unit: &[f32], top_n: usize, scratch: &mut Vec<f32>) -> (f32, f32) {
        scratch.clear();
        scratch.extend(self.data.chunks_exact(self.dim).map(|row| dot(row, unit)));
        let n = top_n.clamp(1, scratch.len());
        let split = scratch.len() - n;
        scratch.select_nth_unstable_by(split, |a, b| a.total_cmp(b));
        let top = &scratch[split..];
        let mean = top.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let var = top
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (n.saturating_sub(1).max(1)) as f64;
        (mean as f32, (var.sqrt() as f32).max(1e-4))
    }
}

fn default_true() -> bool {
    true
}

/// Current format version of the calibration file.
pub const CALIBRATION_FORMAT: u32 = 1;

/// Calibration parameters and the non-target score model, as stored in `calibration.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    /// File format version ([`CALIBRATION_FORMAT`]).
    pub format: u32,
    /// Identifier of this calibration (e.g. `dev-2026-11-30`), recorded in every audit entry.
    pub version: String,
    /// The model the calibration was fitted for ([`crate::embed::CamPlusPlus::version`]).
    pub model: String,
    /// Whether scores are AS-normalised against the cohort before calibration (otherwise the
    /// calibration maps the cosine directly).
    #[serde(default = "default_true")]
    pub asnorm: bool,
    /// How many of the highest cohort scores AS-norm uses.
    pub cohort_top_n: usize,
    /// `llr = slope · norm + offset`.
    pub slope: f64,
    /// See `slope`.
    pub offset: f64,
    /// Mean of the non-target normalised scores of the calibration trials.
    pub nontarget_mean: f64,
    /// Standard deviation of those scores.
    pub nontarget_std: f64,
    /// What the calibration was fitted on (free text, for people).
    pub trained_on: String,
    /// Empirical tail of the non-target scores: `[far, score]` pairs, FAR decreasing, where
    /// `score` is the lowest score that at most `far` of the non-targets reach. Used where it
    /// is more conservative than the Gaussian model (non-target tails are heavier than Gaussian).
    #[serde(default)]
    pub nontarget_tail: Vec<[f64; 2]>,
}

/// FARs at which [`Calibration::nontarget_tail`] is tabulated (where the calibration set has at
/// least ten non-targets beyond the point).
pub const TAIL_FARS: [f64; 7] = [0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];

/// The empirical non-target tail of a set of scores, for [`Calibration::nontarget_tail`].
pub fn nontarget_tail(nontargets: &[f64]) -> Vec<[f64; 2]> {
    let mut sorted: Vec<f64> = nontargets
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let n = sorted.len() as f64;
    TAIL_FARS
        .iter()
        .filter(|&&far| far * n >= 10.0)
        .map(|&far| [far, sorted[((far * n).ceil() as usize).max(1) - 1]])
        .collect()
}

impl Calibration {
    /// A calibration of plain cosines (no AS-norm) fitted to labelled trial scores: logistic
    /// regression at effective target prior `prior` ([`fit_calibration`]; 0.5 minimises Cllr) and
    /// the non-target tail for target-FAR thresholds. Set `asnorm` and `cohort_top_n` afterwards
    /// for normalised scores.
    pub fn fitted(
        targets: &[f64],
        nontargets: &[f64],
        prior: f64,
        version: String,
        model: String,
        trained_on: String,
    ) -> Result<Self, ScoreError> {
        let fit = fit_calibration(targets, nontargets, prior)?;
        Ok(Self {
            format: CALIBRATION_FORMAT,
            version,
            model,
            asnorm: false,
            cohort_top_n: DEFAULT_TOP_N,
            slope: fit.slope,
            offset: fit.offset,
            nontarget_mean: fit.nontarget_mean,
            nontarget_std: fit.nontarget_std,
            trained_on,
            nontarget_tail: nontarget_tail(nontargets),
        })
    }

    /// Parses and checks a calibration file's contents.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, ScoreError> {
        let calibration: Calibration =
            serde_json::from_str(text).map_err(|e| ScoreError::Calibration {
                path: origin.to_string(),
                message: e.to_string(),
            })?;
        if calibration.format != CALIBRATION_FORMAT {
            return Err(ScoreError::CalibrationVersion {
                found: calibration.format,
                expected: CALIBRATION_FORMAT,
            });
        }
        let finite = [
            calibration.slope,
            calibration.offset,
            calibration.nontarget_mean,
            calibration.nontarget_std,
        ]
        .iter()
        .all(|x| x.is_finite());
        if !finite || calibration.nontarget_std <= 0.0 || calibration.cohort_top_n == 0 {
            return Err(ScoreError::Calibration {
                path: origin.to_string(),
                message: "parameters must be finite, nontarget_std > 0, cohort_top_n > 0".into(),
            });
        }
        Ok(calibration)
    }
}

/// How many cohort scores AS-norm uses when no calibration says otherwise.
pub const DEFAULT_TOP_N: usize = 200;

/// Default target false-accept rate of a decision when the request names none.
pub const DEFAULT_TARGET_FAR: f64 = 0.01;

/// The scoring chain: cohort, calibration and the thresholds they imply.
#[derive(Clone, Debug)]
pub struct Scorer {
    cohort: Option<Cohort>,
    calibration: Option<Calibration>,
    /// Calibrations by [`ChannelPair`] (indexed by `ChannelPair::index`), used when both sides'
    /// channels are known; `calibration` covers the rest.
    by_pair: [Option<Calibration>; 3],
    top_n: usize,
    version: String,
}

/// LLR thresholds for one target false-accept rate: one per channel pair, and the default one for
/// comparisons whose channels are not both known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// The target false-accept rate they were computed for.
    pub far: f64,
    default: f64,
    by_pair: [Option<f64>; 3],
}

impl Thresholds {
    /// One LLR threshold for every pairing (an explicit threshold rather than a target FAR;
    /// `far` is then NaN).
    pub fn fixed(llr: f64) -> Self {
        Self {
            far: f64::NAN,
            default: llr,
            by_pair: [None; 3],
        }
    }

    /// The threshold that applies to an enrolled print and a probe.
    pub fn for_pair(&self, enrolled: Option<Channel>, test: Option<Channel>) -> f64 {
        match (enrolled, test) {
            (Some(a), Some(b)) => {
                self.by_pair[ChannelPair::of(a, b).index()].unwrap_or(self.default)
            }
            _ => self.default,
        }
    }

    /// The threshold for comparisons without known channels.
    pub fn default_threshold(&self) -> f64 {
        self.default
    }
}

const BUILTIN_CALIBRATION: &str = include_str!("../../data/calibration.json");
const BUILTIN_TELEPHONE_CALIBRATION: &str =
    include_str!("../../data/scoring/telephone-enrolment/calibration.json");
/// Built-in calibrations by channel pair, in `ChannelPair` order.
const BUILTIN_PAIR_CALIBRATIONS: [(&str, &str); 3] = [
    (
        "<builtin scoring/wideband/calibration.json>",
        include_str!("../../data/scoring/wideband/calibration.json"),
    ),
    (
        "<builtin scoring/mixed/calibration.json>",
        include_str!("../../data/scoring/mixed/calibration.json"),
    ),
    (
        "<builtin scoring/telephone-enrolment/calibration.json>",
        BUILTIN_TELEPHONE_CALIBRATION,
    ),
];

impl Scorer {
    /// Plain cosine scoring: no normalisation, no calibration (for experiments and evaluation).
    pub fn raw() -> Self {
        Self {
            cohort: None,
            calibration: None,
            by_pair: [None, None, None],
            top_n: DEFAULT_TOP_N,
            version: "raw-cosine".into(),
        }
    }

    /// A scorer with a cohort and, optionally, a calibration. A calibration fitted on plain cosine
    /// scores (`asnorm: false`) switches the cohort off.
    pub fn new(cohort: Option<Cohort>, calibration: Option<Calibration>) -> Self {
        let cohort = cohort.filter(|_| calibration.as_ref().is_none_or(|c| c.asnorm));
        let top_n = calibration
            .as_ref()
            .map_or(DEFAULT_TOP_N, |c| c.cohort_top_n);
        let version = match (&cohort, &calibration) {
            (_, Some(c)) => c.version.clone(),
            (Some(_), None) => "asnorm-uncalibrated".into(),
            (None, None) => "raw-cosine".into(),
        };
        Self {
            cohort,
            calibration,
            by_pair: [None, None, None],
            top_n,
            version,
        }
    }

    /// Loads `cohort.npy` and `calibration.json` from a directory (either may be absent).
    pub fn from_dir(dir: &Path) -> Result<Self, ScoreError> {
        let cohort_path = dir.join("cohort.npy");
        let cohort = if cohort_path.exists() {
            let bytes = std::fs::read(&cohort_path).map_err(|e| ScoreError::Cohort {
                path: cohort_path.display().to_string(),
                source: crate::npy::NpyError::Io(e),
            })?;
            Some(Cohort::from_npy_bytes(
                &bytes,
                &cohort_path.display().to_string(),
            )?)
        } else {
            None
        };
        let calibration_path = dir.join("calibration.json");
        let calibration = if calibration_path.exists() {
            let text = std::fs::read_to_string(&calibration_path).map_err(|e| {
                ScoreError::Calibration {
                    path: calibration_path.display().to_string(),
                    message: e.to_string(),
                }
            })?;
            Some(Calibration::from_json(
                &text,
                &calibration_path.display().to_string(),
            )?)
        } else {
            None
        };
        Ok(Self::new(cohort, calibration))
    }

    /// The calibration shipped in the binary (`data/calibration.json`, built from the development
    /// set with `voiceprint calibrate`; see the README). It calibrates plain cosine scores, so no
    /// cohort is needed; a calibration fitted with AS-norm comes with its `cohort.npy` through
    /// [`Scorer::from_dir`].
    pub fn builtin() -> Result<Self, ScoreError> {
        Self::builtin_from(BUILTIN_CALIBRATION)
    }

    /// The calibration shipped for voiceprints enrolled from telephone calls and tested on
    /// telephone calls (`data/scoring/telephone-enrolment/calibration.json`). Non-target cosines are
    /// much higher between two narrowband G.711 recordings than between a wideband enrolment and a
    /// call, so the built-in [`Scorer::builtin`] would accept far more impostors there than its
    /// target FAR says.
    pub fn builtin_telephone() -> Result<Self, ScoreError> {
        Self::builtin_from(BUILTIN_TELEPHONE_CALIBRATION)
    }

    fn builtin_from(json: &str) -> Result<Self, ScoreError> {
        let calibration = builtin_calibration("<builtin calibration.json>", json)?;
        Ok(Self::new(None, Some(calibration)))
    }

    /// Adds the built-in calibrations by channel pair (`data/scoring/{wideband,mixed,
    /// telephone-enrolment}`): a comparison whose two channels are known is calibrated for its
    /// pairing, the rest with this scorer's calibration. Only for scorers of plain cosines (the
    /// pair calibrations are fitted without AS-norm); others are returned unchanged.
    pub fn with_builtin_channel_calibrations(mut self) -> Result<Self, ScoreError> {
        if self.cohort.is_some() || self.calibration.as_ref().is_some_and(|c| c.asnorm) {
            return Ok(self);
        }
        for (slot, (origin, json)) in self.by_pair.iter_mut().zip(BUILTIN_PAIR_CALIBRATIONS) {
            *slot = Some(builtin_calibration(origin, json)?);
        }
        self.version = format!(
            "{}+channels({})",
            self.version,
            self.by_pair
                .iter()
                .flatten()
                .map(|c| c.version.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(self)
    }

    /// Whether comparisons of known channels use calibrations by channel pair.
    pub fn is_channel_aware(&self) -> bool {
        self.by_pair.iter().any(Option::is_some)
    }

    /// The calibration a comparison of these channels uses.
    pub fn calibration_for(
        &self,
        enrolled: Option<Channel>,
        test: Option<Channel>,
    ) -> Option<&Calibration> {
        match (enrolled, test) {
            (Some(a), Some(b)) => self.by_pair[ChannelPair::of(a, b).index()]
                .as_ref()
                .or(self.calibration.as_ref()),
            _ => self.calibration.as_ref(),
        }
    }

    /// Uses only the `top_n` highest cohort scores for AS-norm.
    pub fn with_top_n(mut self, top_n: usize) -> Self {
        self.top_n = top_n.max(1);
        self
    }

    /// Drops the calibration (scores stay AS-normalised; LLR = normalised score).
    pub fn without_calibration(mut self) -> Self {
        self.calibration = None;
        self.by_pair = [None, None, None];
        self.version = if self.cohort.is_some() {
            "asnorm-uncalibrated".into()
        } else {
            "raw-cosine".into()
        };
        self
    }

    /// Identifier of the cohort + calibration in use, for the audit log.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether LLRs are calibrated.
    pub fn is_calibrated(&self) -> bool {
        self.calibration.is_some()
    }

    /// Whether AS-norm is applied.
    pub fn is_normalised(&self) -> bool {
        self.cohort.is_some()
    }

    /// The calibration in use, if any.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// Normalises an embedding of audio from `channel` (`None`: unknown) and computes its cohort
    /// statistics.
    pub fn prepare_from(&self, embedding: &[f32], channel: Option<Channel>) -> Prepared {
        Prepared {
            channel,
            ..self.prepare(embedding)
        }
    }

    /// Normalises an embedding (channel unknown) and computes its cohort statistics.
    pub fn prepare(&self, embedding: &[f32]) -> Prepared {
        let mut unit = embedding.to_vec();
        l2_normalize(&mut unit);
        let (cohort_mean, cohort_std) = match &self.cohort {
            Some(cohort) if cohort.dim() == unit.len() => {
                cohort.top_stats(&unit, self.top_n, &mut Vec::with_capacity(cohort.len()))
            }
            _ => (0.0, 1.0),
        };
        Prepared {
            embedding: unit,
            cohort_mean,
            cohort_std,
            channel: None,
        }
    }

    /// Scores a test embedding against an enrolled one.
    pub fn score(&self, enrolled: &Prepared, test: &Prepared) -> Score {
        self.score_raw(dot(&enrolled.embedding, &test.embedding), enrolled, test)
    }

    /// Completes a score from a cosine already computed (1:N search computes the dot products in bulk).
    pub fn score_raw(&self, raw: f32, enrolled: &Prepared, test: &Prepared) -> Score {
        let norm = if self.cohort.is_some() {
            let s = f64::from(raw);
            0.5 * ((s - f64::from(enrolled.cohort_mean)) / f64::from(enrolled.cohort_std)
                + (s - f64::from(test.cohort_mean)) / f64::from(test.cohort_std))
        } else {
            f64::from(raw)
        };
        let llr = match self.calibration_for(enrolled.channel, test.channel) {
            Some(c) => c.slope * norm + c.offset,
            None => norm,
        };
        Score { raw, norm, llr }
    }

    /// Maps a normalised score to a calibrated LLR with the default calibration (identity when
    /// uncalibrated).
    pub fn llr(&self, norm: f64) -> f64 {
        match &self.calibration {
            Some(c) => c.slope * norm + c.offset,
            None => norm,
        }
    }

    /// The LLR thresholds for a target false-accept rate, per channel pair.
    pub fn thresholds(&self, target_far: f64) -> Result<Thresholds, ScoreError> {
        let default = self.llr_threshold(target_far)?;
        let mut by_pair = [None; 3];
        for (slot, c) in by_pair.iter_mut().zip(&self.by_pair) {
            if let Some(c) = c {
                *slot = Some(threshold_of(Some(c), target_far));
            }
        }
        Ok(Thresholds {
            far: target_far,
            default,
            by_pair,
        })
    }

    /// The LLR threshold whose expected false-accept rate is `target_far`.
    ///
    /// Uncalibrated scorers have no non-target model; they fall back to a standard-normal one on the
    /// normalised score, which is what AS-norm aims at.
    pub fn llr_threshold(&self, target_far: f64) -> Result<f64, ScoreError> {
        if !(target_far > 0.0 && target_far <= 0.5) {
            return Err(ScoreError::InvalidFar(target_far));
        }
        Ok(threshold_of(self.calibration.as_ref(), target_far))
    }
}

/// A built-in calibration file, which must calibrate plain cosines (no cohort is built in).
fn builtin_calibration(origin: &str, json: &str) -> Result<Calibration, ScoreError> {
    let calibration = Calibration::from_json(json, origin)?;
    if calibration.asnorm {
        return Err(ScoreError::Calibration {
            path: origin.into(),
            message: "the built-in calibration expects AS-norm, but no cohort is built in".into(),
        });
    }
    Ok(calibration)
}

/// The LLR threshold of one calibration (or of none: a standard-normal non-target model on the
/// normalised score) for a FAR already checked to be in (0, 0.5].
fn threshold_of(calibration: Option<&Calibration>, target_far: f64) -> f64 {
    let (mean, std) = calibration.map_or((0.0, 1.0), |c| (c.nontarget_mean, c.nontarget_std));
    let gaussian = mean + std * probit(1.0 - target_far);
    let empirical = calibration.and_then(|c| tail_score(&c.nontarget_tail, target_far));
    let norm = empirical.map_or(gaussian, |e| e.max(gaussian));
    calibration.map_or(norm, |c| c.slope * norm + c.offset)
}

/// The score at `far` on a tabulated tail, interpolated linearly in log FAR; `None` outside it.
fn tail_score(tail: &[[f64; 2]], far: f64) -> Option<f64> {
    let first = tail.first()?;
    let last = tail.last()?;
    if far > first[0] || far < last[0] {
        return None;
    }
    tail.windows(2)
        .find(|w| far <= w[0][0] && far >= w[1][0])
        .map(|w| {
            let (f0, s0, f1, s1) = (w[0][0].ln(), w[0][1], w[1][0].ln(), w[1][1]);
            s0 + (far.ln() - f0) / (f1 - f0) * (s1 - s0)
        })
        .or(Some(first[1]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The shipped telephone-enrolment calibration loads, and its 1 % FAR threshold sits at a
    /// much higher cosine than the built-in one: telephone-to-telephone non-targets score higher.
    #[test]
    fn telephone_enrolment_calibration_is_stricter() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/scoring/telephone-enrolment");
        let tel = Scorer::from_dir(&dir).unwrap();
        let builtin = Scorer::builtin().unwrap();
        let cos_at = |s: &Scorer| {
            let c = s.calibration.as_ref().unwrap();
            (s.llr_threshold(0.01).unwrap() - c.offset) / c.slope
        };
        assert_ne!(tel.version(), builtin.version());
        assert_eq!(
            Scorer::builtin_telephone().unwrap().version(),
            tel.version()
        );
        assert!(
            (cos_at(&builtin) - 0.473).abs() < 0.01,
            "{}",
            cos_at(&builtin)
        );
        assert!((cos_at(&tel) - 0.725).abs() < 0.01, "{}", cos_at(&tel));
    }

    /// With the built-in channel calibrations, each pairing is calibrated and thresholded on its
    /// own: telephone/telephone needs the highest cosine for 1 % FAR (its non-targets score
    /// highest), and unknown channels fall back to the default calibration.
    #[test]
    fn channel_pairs_pick_their_own_calibration() {
        let plain = Scorer::builtin().unwrap();
        let s = Scorer::builtin()
            .unwrap()
            .with_builtin_channel_calibrations()
            .unwrap();
        assert!(s.is_channel_aware() && !plain.is_channel_aware());
        let (w, t) = (Some(Channel::Wideband), Some(Channel::Telephone));
        let th = s.thresholds(0.01).unwrap();
        let cos_at = |e, p| {
            let c = s.calibration_for(e, p).unwrap();
            (th.for_pair(e, p) - c.offset) / c.slope
        };
        assert!(
            cos_at(t, t) > cos_at(w, w) + 0.1,
            "{} {}",
            cos_at(t, t),
            cos_at(w, w)
        );
        assert!(cos_at(t, t) > cos_at(w, t) + 0.1);
        // Cosine is symmetric: so is the pairing.
        assert_eq!(th.for_pair(w, t), th.for_pair(t, w));
        assert_eq!(th.for_pair(None, t), plain.llr_threshold(0.01).unwrap());
        assert_eq!(th.default_threshold(), plain.llr_threshold(0.01).unwrap());

        // Scores: the pair's calibration when both channels are known, the default otherwise.
        let e = unit(1, 192);
        let mut a = s.prepare_from(&e, Some(Channel::Telephone));
        let b = s.prepare_from(&unit(2, 192), Some(Channel::Telephone));
        let c = s.calibration_for(t, t).unwrap();
        let sc = s.score(&a, &b);
        assert!((sc.llr - (c.slope * sc.norm + c.offset)).abs() < 1e-12);
        a.channel = None;
        assert_eq!(s.score(&a, &b).llr, plain.score(&a, &b).llr);
        // Dropping the calibration drops the pair calibrations too.
        let raw = s.clone().without_calibration();
        assert!(!raw.is_channel_aware());
        assert_eq!(
            raw.score(&s.prepare_from(&e, Some(Channel::Wideband)), &b)
                .llr,
            raw.score(&a, &b).norm
        );
        // A fixed threshold applies to every pairing.
        assert_eq!(Thresholds::fixed(2.5).for_pair(t, t), 2.5);
    }

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        // xorshift: deterministic pseudo-random vectors without a dependency on rand's API.
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s as f64 / u64::MAX as f64 - 0.5) as f32
            })
            .collect();
        l2_normalize(&mut v);
        v
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn merge_weights_by_speech() {
        let merged = merge_embeddings(&[(vec![1.0, 0.0], 3.0), (vec![0.0, 2.0], 1.0)]);
        assert!((merged[0] / merged[1] - 3.0).abs() < 1e-5);
        assert!((merged.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn asnorm_matches_its_definition() {
        let dim = 16;
        let rows: Vec<f32> = (0..50).flat_map(|i| unit(i + 100, dim)).collect();
        let cohort = Cohort::new(rows.clone(), dim).unwrap();
        let scorer = Scorer::new(Some(cohort), None).with_top_n(10);
        let (a, b) = (unit(1, dim), unit(2, dim));
        let (pa, pb) = (scorer.prepare(&a), scorer.prepare(&b));
        // Naive oracle: sort all cohort scores, take the ten best.
        let stats = |v: &[f32]| {
            let mut s: Vec<f64> = rows.chunks(dim).map(|r| f64::from(dot(r, v))).collect();
            s.sort_by(|x, y| y.total_cmp(x));
            let top = &s[..10];
            let m = top.iter().sum::<f64>() / 10.0;
            let sd = (top.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 9.0).sqrt();
            (m, sd)
        };
        let ((ma, sa), (mb, sb)) = (stats(&a), stats(&b));
        let s = f64::from(dot(&a, &b));
        let expected = 0.5 * ((s - ma) / sa + (s - mb) / sb);
        let got = scorer.score(&pa, &pb);
        assert!(
            (got.norm - expected).abs() < 1e-4,
            "{} vs {expected}",
            got.norm
        );
        assert_eq!(
            got.llr, got.norm,
            "uncalibrated LLR is the normalised score"
        );
        // Symmetric.
        assert!((scorer.score(&pb, &pa).norm - got.norm).abs() < 1e-9);
    }

    #[test]
    fn threshold_follows_far() {
        let calibration = Calibration {
            format: CALIBRATION_FORMAT,
            version: "t".into(),
            model: "m".into(),
            asnorm: true,
            cohort_top_n: 10,
            slope: 2.0,
            offset: -1.0,
            nontarget_mean: 0.5,
            nontarget_std: 2.0,
            trained_on: String::new(),
            nontarget_tail: vec![],
        };
        let scorer = Scorer::new(None, Some(calibration));
        let t1 = scorer.llr_threshold(0.01).unwrap();
        let t01 = scorer.llr_threshold(0.001).unwrap();
        assert!((t1 - (2.0 * (0.5 + 2.0 * 2.326_347_874) - 1.0)).abs() < 1e-6);
        assert!(t01 > t1);
        assert!(scorer.llr_threshold(0.0).is_err());
        assert!(scorer.llr_threshold(0.7).is_err());
        assert!(scorer.llr_threshold(f64::NAN).is_err());
    }

    #[test]
    fn builtin_calibration_loads_and_orders_thresholds() {
        let scorer = Scorer::builtin().unwrap();
        assert!(scorer.is_calibrated());
        let (t1, t01) = (
            scorer.llr_threshold(0.01).unwrap(),
            scorer.llr_threshold(0.001).unwrap(),
        );
        assert!(t01 > t1, "{t01} <= {t1}");
        // A cosine of 1 (same recording) is far above the 0.1 % FAR threshold.
        assert!(scorer.llr(1.0) > t01);
    }

    #[test]
    fn empirical_tail_is_used_where_heavier() {
        // 10,000 non-targets: uniform on [0, 1), so the score at FAR f is about 1 − f.
        let non: Vec<f64> = (0..10_000).map(|i| f64::from(i) / 10_000.0).collect();
        let tail = nontarget_tail(&non);
        assert_eq!(
            tail.len(),
            6,
            "0.05 … 0.001 have ≥ 10 points, 0.0005 does not"
        );
        assert!((tail[2][1] - 0.99).abs() < 1e-3, "{tail:?}");
        assert!((tail_score(&tail, 0.01).unwrap() - 0.99).abs() < 1e-3);
        let mid = tail_score(&tail, 0.003).unwrap();
        assert!(mid > 0.995 && mid < 0.998, "{mid}");
        assert!(tail_score(&tail, 0.2).is_none() && tail_score(&tail, 1e-5).is_none());
        let calibration = Calibration {
            format: CALIBRATION_FORMAT,
            version: "t".into(),
            model: "m".into(),
            asnorm: false,
            cohort_top_n: 10,
            slope: 1.0,
            offset: 0.0,
            nontarget_mean: 0.5,
            nontarget_std: 0.01,
            trained_on: String::new(),
            nontarget_tail: tail,
        };
        let scorer = Scorer::new(None, Some(calibration));
        // The Gaussian (0.5 + 0.01·2.33) is far below the empirical 0.99: the tail wins.
        assert!((scorer.llr_threshold(0.01).unwrap() - 0.99).abs() < 1e-3);
        // Outside the table the Gaussian model applies.
        assert!((scorer.llr_threshold(0.0001).unwrap() - (0.5 + 0.01 * 3.719)).abs() < 1e-3);
    }

    #[test]
    fn bad_calibration_files_are_rejected() {
        assert!(Calibration::from_json("{", "x").is_err());
        let wrong_version = r#"{"format":99,"version":"v","model":"m","cohort_top_n":1,"slope":1,"offset":0,"nontarget_mean":0,"nontarget_std":1,"trained_on":""}"#;
        assert!(matches!(
            Calibration::from_json(wrong_version, "x"),
            Err(ScoreError::CalibrationVersion { found: 99, .. })
        ));
        let bad_std = wrong_version
            .replace("99", "1")
            .replace("\"nontarget_std\":1", "\"nontarget_std\":0");
        assert!(Calibration::from_json(&bad_std, "x").is_err());
    }

    #[test]
    fn cohort_rejects_bad_shapes() {
        assert!(Cohort::new(vec![1.0; 5], 2).is_err());
        assert!(Cohort::new(vec![], 2).is_err());
        assert!(Cohort::new(vec![f32::NAN, 1.0], 2).is_err());
    }
}
