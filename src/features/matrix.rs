//! The row-major `T × D` feature matrix.

use super::FeatureError;

/// A row-major matrix of `f32` features: one row per frame (`T` rows), `D` values per row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureMatrix {
    data: Vec<f32>,
    dim: usize,
}

impl FeatureMatrix {
    /// Wraps row-major data of width `dim`. Fails when `dim` is 0 (with non-empty data) or when
    /// the length is not a multiple of `dim`.
    pub fn new(data: Vec<f32>, dim: usize) -> Result<Self, FeatureError> {
        if (dim == 0 && !data.is_empty()) || (dim != 0 && !data.len().is_multiple_of(dim)) {
            return Err(FeatureError::ShapeMismatch {
                len: data.len(),
                dim,
            });
        }
        Ok(Self { data, dim })
    }

    /// Wraps row-major data whose length the caller made a multiple of `dim` (extractors).
    pub(crate) fn from_rows_unchecked(data: Vec<f32>, dim: usize) -> Self {
        debug_assert!(dim != 0 && data.len().is_multiple_of(dim));
        Self { data, dim }
    }

    /// A `frames × dim` matrix of zeros.
    pub fn zeros(frames: usize, dim: usize) -> Self {
        Self {
            data: vec![0.0; frames.saturating_mul(dim)],
            dim,
        }
    }

    /// Number of rows (frames).
    pub fn num_frames(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Number of columns (feature dimension).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the matrix has no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`. Panics if `i >= num_frames()` (like slice indexing).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterator over the rows.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// Mutable iterator over the rows.
    pub fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, f32> {
        self.data.chunks_exact_mut(self.dim.max(1))
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// All values, row-major, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The row-major data, consuming the matrix.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The rows whose `mask` entry is `true`, in order. Rows beyond the end of `mask` are dropped.
    pub fn select_rows(&self, mask: &[bool]) -> FeatureMatrix {
        let kept = mask.iter().take(self.num_frames()).filter(|&&m| m).count();
        let mut data = Vec::with_capacity(kept * self.dim);
        for (row, _) in self.rows().zip(mask).filter(|(_, m)| **m) {
            data.extend_from_slice(row);
        }
        FeatureMatrix {
            data,
            dim: self.dim,
        }
    }
}
