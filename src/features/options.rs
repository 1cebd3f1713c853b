//! Options of the feature extractors, with Kaldi's names and semantics.

use super::FeatureError;

/// Largest accepted analysis frame, in samples (a guard against absurd allocations).
pub(crate) const MAX_FRAME_SAMPLES: usize = 1 << 16;

/// The analysis window applied to each frame (Kaldi `--window-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowType {
    /// `(0.5 − 0.5·cos(2πn/(N−1)))^0.85`, Kaldi's default.
    #[default]
    Povey,
    /// `0.5 − 0.5·cos(2πn/(N−1))`.
    Hanning,
    /// `0.54 − 0.46·cos(2πn/(N−1))`.
    Hamming,
    /// All ones.
    Rectangular,
}

/// How the waveform is cut into frames and conditioned before the FFT (Kaldi `FrameExtractionOptions`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameOptions {
    /// Sample rate of the input, Hz.
    pub sample_rate: u32,
    /// Frame length in milliseconds (Kaldi default 25).
    pub frame_length_ms: f32,
    /// Frame shift in milliseconds (Kaldi default 10).
    pub frame_shift_ms: f32,
    /// Pre-emphasis coefficient (Kaldi default 0.97; 0 disables).
    pub preemphasis: f32,
    /// Subtract each frame's mean before pre-emphasis.
    pub remove_dc: bool,
    /// Analysis window.
    pub window: WindowType,
    /// `true`: only frames that fit entirely in the signal; `false`: Kaldi's centred frames with
    /// reflected edges.
    pub snip_edges: bool,
    /// Must be 0: this crate does not dither (features are deterministic). Other values are rejected.
    pub dither: f32,
}

impl FrameOptions {
    /// Kaldi's defaults with dither 0: 25 ms frames, 10 ms shift, pre-emphasis 0.97, DC removal,
    /// povey window, snip edges.
    pub fn kaldi(sample_rate: u32) -> Self {
        Self {
            sample_rate,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            preemphasis: 0.97,
            remove_dc: true,
            window: WindowType::Povey,
            snip_edges: true,
            dither: 0.0,
        }
    }

    /// Frame length in samples (Kaldi truncates `rate · ms / 1000`).
    pub fn frame_length_samples(&self) -> usize {
        (f64::from(self.sample_rate) * 0.001 * f64::from(self.frame_length_ms)) as usize
    }

    /// Frame shift in samples.
    pub fn frame_shift_samples(&self) -> usize {
        (f64::from(self.sample_rate) * 0.001 * f64::from(self.frame_shift_ms)) as usize
    }

    /// FFT length: the frame length rounded up to a power of two.
    pub fn padded_length(&self) -> usize {
        self.frame_length_samples().next_power_of_two()
    }

    /// Number of frames produced for `n_samples` input samples.
    pub fn num_frames(&self, n_samples: usize) -> usize {
        let len = self.frame_length_samples();
        let shift = self.frame_shift_samples();
        if shift == 0 {
            return 0;
        }
        if self.snip_edges {
            if n_samples < len {
                0
            } else {
                1 + (n_samples - len) / shift
            }
        } else {
            (n_samples + shift / 2) / shift
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FeatureError> {
        let bad = |name, reason: &str| {
            Err(FeatureError::InvalidOption {
                name,
                reason: reason.to_string(),
            })
        };
        if self.dither != 0.0 {
            return Err(FeatureError::DitherUnsupported(self.dither));
        }
        if self.sample_rate == 0 {
            return bad("sample_rate", "must be positive");
        }
        if !self.frame_length_ms.is_finite() || !self.frame_shift_ms.is_finite() {
            return bad("frame_length_ms", "frame length and shift must be finite");
        }
        let len = self.frame_length_samples();
        if len < 2 {
            return bad("frame_length_ms", "frame must span at least 2 samples");
        }
        if len > MAX_FRAME_SAMPLES {
            return bad("frame_length_ms", "frame longer than 65536 samples");
        }
        if self.frame_shift_samples() == 0 {
            return bad("frame_shift_ms", "shift must span at least 1 sample");
        }
        if !(0.0..=1.0).contains(&self.preemphasis) {
            return bad("preemphasis", "must be in [0, 1]");
        }
        Ok(())
    }
}

/// Log-mel filterbank options (Kaldi `FbankOptions` with `use_energy = false`, log, power spectrum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FbankOptions {
    /// Framing and conditioning.
    pub frame: FrameOptions,
    /// Number of triangular mel filters.
    pub num_bins: usize,
    /// Lowest filter edge, Hz.
    pub low_freq: f32,
    /// Highest filter edge, Hz; 0 or negative means that offset from the Nyquist frequency.
    pub high_freq: f32,
}

impl FbankOptions {
    /// The golden recipe (`fixtures/golden/README.md` §3): Kaldi frame defaults with dither 0,
    /// `num_bins` filters from 20 Hz to Nyquist.
    pub fn kaldi(sample_rate: u32, num_bins: usize) -> Self {
        Self {
            frame: FrameOptions::kaldi(sample_rate),
            num_bins,
            low_freq: 20.0,
            high_freq: 0.0,
        }
    }

    /// The upper filter edge in Hz after resolving Kaldi's "offset from Nyquist" convention.
    pub fn resolved_high_freq(&self) -> f32 {
        let nyquist = 0.5 * self.frame.sample_rate as f32;
        if self.high_freq > 0.0 {
            self.high_freq
        } else {
            nyquist + self.high_freq
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FeatureError> {
        self.frame.validate()?;
        let bad = |name, reason: String| Err(FeatureError::InvalidOption { name, reason });
        if self.num_bins < 3 {
            return bad(
                "num_bins",
                format!("{} is fewer than 3 filters", self.num_bins),
            );
        }
        if self.num_bins > 1024 {
            return bad(
                "num_bins",
                format!("{} is more than 1024 filters", self.num_bins),
            );
        }
        let nyquist = 0.5 * self.frame.sample_rate as f32;
        let high = self.resolved_high_freq();
        if !(self.low_freq >= 0.0 && self.low_freq < nyquist) {
            return bad(
                "low_freq",
                format!("{} Hz is outside [0, {nyquist}) Hz", self.low_freq),
            );
        }
        if !(high > self.low_freq && high <= nyquist) {
            return bad(
                "high_freq",
                format!(
                    "resolves to {high} Hz, must be in ({}, {nyquist}] Hz",
                    self.low_freq
                ),
            );
        }
        Ok(())
    }
}

/// MFCC options (Kaldi `MfccOptions`, `raw_energy = true`, `energy_floor = 0`, no HTK compatibility).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MfccOptions {
    /// The underlying log-mel filterbank.
    pub fbank: FbankOptions,
    /// Number of cepstra kept (at most `fbank.num_bins`).
    pub num_ceps: usize,
    /// Cepstral lifter `Q`: `c_k · (1 + Q/2 · sin(πk/Q))`; 0 disables.
    pub cepstral_lifter: f32,
    /// Replace `c0` by the log raw energy of the frame (after DC removal, before pre-emphasis).
    pub use_energy: bool,
}

impl MfccOptions {
    /// Kaldi `compute-mfcc-feats` defaults with dither 0: 23 bins from 20 Hz, 13 cepstra,
    /// lifter 22, energy in `c0`.
    pub fn kaldi(sample_rate: u32) -> Self {
        Self {
            fbank: FbankOptions::kaldi(sample_rate, 23),
            num_ceps: 13,
            cepstral_lifter: 22.0,
            use_energy: true,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FeatureError> {
        self.fbank.validate()?;
        if self.num_ceps == 0 || self.num_ceps > self.fbank.num_bins {
            return Err(FeatureError::InvalidOption {
                name: "num_ceps",
                reason: format!("{} is not in 1..={}", self.num_ceps, self.fbank.num_bins),
            });
        }
        if !self.cepstral_lifter.is_finite() || self.cepstral_lifter < 0.0 {
            return Err(FeatureError::InvalidOption {
                name: "cepstral_lifter",
                reason: "must be finite and non-negative".to_string(),
            });
        }
        Ok(())
    }
}
