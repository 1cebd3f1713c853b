//! # voiceprint
//!
//! Speaker verification for call centres, as a library and a gRPC service.
//!
//! The crate is laid out by pipeline stage; each stage is a module with its own error type:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | decode | [`audio`] | bytes or files (WAV incl. G.711 and ADPCM, FLAC, MP3, Ogg Vorbis, headerless G.711/PCM) to mono `f32` samples, channel pick, resampling, limits against hostile input |
//! | features | [`features`] | Kaldi-compatible log-mel filterbank and MFCC, CMN/CMVN, streaming extraction |
//! | quality | [`quality`] | voice activity detection, net speech, SNR, clipping |
//! | embedding | [`embed`] | torch-free PyTorch checkpoint reader and a native CAM++ forward pass |
//! | scoring | [`score`] | cosine, AS-norm, calibration to log-likelihood ratios, thresholds by target false-accept rate |
//! | evaluation | [`eval`] | EER, minDCF, FRR at fixed FAR, Cllr, DET curves |
//! | pipeline | [`pipeline`] | the stages above glued into one call: audio in, embedding and quality out |
//! | live audio | [`live`] | the pipeline fed chunk by chunk during a call: streaming decode, features, VAD and a running embedding |
//! | storage | [`store`] | voiceprints encrypted at rest, watchlists and the audit log behind a [`store::Store`] trait |
//! | replay | [`replay`] | acoustic fingerprints that flag audio replayed from an earlier call |
//! | recurring voices | [`recurring`] | clustering of complainant voices that recur under several customer ids |
//! | service | [`service`] | the gRPC API of `proto/voiceprint/v1/voiceprint.proto` |
//!
//! Audio samples travel through the pipeline as `f32` in **16-bit integer scale** (±32768), the
//! convention of Kaldi: the log floor of the filterbank is absolute, so the scale matters.

pub mod audio;
pub mod config;
pub mod embed;
pub mod eval;
pub mod features;
pub mod live;
pub mod model;
pub mod npy;
pub mod pipeline;
pub mod proto;
pub mod quality;
pub mod recurring;
pub mod replay;
pub mod score;
pub mod service;
pub mod store;
