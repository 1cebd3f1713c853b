//! TEMPORARY stand-in for the pipeline API (audio, quality, score, pipeline) until `main` lands it.
//! Mirrors the announced signatures; deleted after the merge.
#![allow(dead_code, missing_docs)]

pub mod audio {
    pub use crate::audio::{DecodeOptions, Limits};
    #[derive(Debug, thiserror::Error)]
    pub enum AudioError {
        #[error("unsupported audio format")]
        Unsupported,
        #[error("audio too long")]
        TooLong,
    }
    impl AudioError {
        pub fn is_limit(&self) -> bool {
            matches!(self, Self::TooLong)
        }
    }
}

pub mod pipeline {
    use super::audio;
    use crate::quality;
    use crate::score;
    use std::path::PathBuf;
    pub struct EngineConfig {
        pub model_path: PathBuf,
        pub limits: audio::Limits,
        pub min_embed_speech_seconds: f64,
    }
    impl EngineConfig {
        pub fn new(model_path: PathBuf) -> Self {
            Self {
                model_path,
                limits: audio::Limits::default(),
                min_embed_speech_seconds: 1.0,
            }
        }
    }
    pub struct Engine {
        scorer: score::Scorer,
    }
    pub struct Analysis {
        pub embedding: Option<Vec<f32>>,
        pub quality: quality::Quality,
    }
    #[derive(Debug, thiserror::Error)]
    pub enum PipelineError {
        #[error(transparent)]
        Audio(#[from] audio::AudioError),
        #[error("embedding failed: {0}")]
        Embed(String),
    }
    impl PipelineError {
        pub fn is_limit(&self) -> bool {
            matches!(self, Self::Audio(a) if a.is_limit())
        }
    }
    impl Engine {
        pub fn load(_config: EngineConfig) -> Result<Engine, PipelineError> {
            Ok(Engine {
                scorer: score::Scorer::raw(),
            })
        }
        pub fn analyze(
            &self,
            bytes: &[u8],
            opts: &audio::DecodeOptions,
        ) -> Result<Analysis, PipelineError> {
            if bytes.len() < 44 {
                return Err(audio::AudioError::Unsupported.into());
            }
            if bytes.len() > opts.limits.max_bytes {
                return Err(audio::AudioError::TooLong.into());
            }
            let secs = bytes.len() as f64 / 16000.0;
            let mut hist = vec![0f32; 192];
            for w in bytes.windows(2).step_by(7) {
                hist[(usize::from(w[0]) * 3 + usize::from(w[1])) % 192] += 1.0;
            }
            let n = hist.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            hist.iter_mut().for_each(|x| *x /= n);
            Ok(Analysis {
                embedding: (secs >= 1.0).then_some(hist),
                quality: quality::Quality {
                    duration_seconds: secs,
                    net_speech_seconds: secs * 0.8,
                    snr_db: 30.0,
                    clipping_ratio: 0.0,
                },
            })
        }
        pub fn scorer(&self) -> &score::Scorer {
            &self.scorer
        }
        pub fn model_version(&self) -> &str {
            "shim-model"
        }
    }
}
