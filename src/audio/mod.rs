//! Audio decoding: every call-centre format to mono `f32` samples in 16-bit integer scale.
//!
//! * Containers (probed from the bytes): WAV (PCM 8/16/24/32-bit integer, 32/64-bit float,
//!   G.711 µ-law and A-law, IMA and Microsoft ADPCM), FLAC, MP3, Ogg Vorbis, through
//!   [symphonia](https://docs.rs/symphonia).
//! * Headerless telephony audio (µ-law, A-law, PCM16LE) with a declared rate and channel count,
//!   in one piece ([`decode`]) or as a live stream split anywhere ([`RawStreamDecoder`]).
//! * One channel is kept ([`ChannelSelect`]); for stereo the default is the **left** channel.
//!   Call recorders (Amazon Connect, many SIP recorders) put the customer on one leg and the agent
//!   on the other; mixing would blend two speakers into one voiceprint, so the default keeps the
//!   first (left) leg and [`ChannelSelect::Mix`] must be asked for explicitly.
//! * Resampling ([`resample`], [`StreamResampler`]) with rubato's FFT resampler.
//!
//! Samples are `f32` in **16-bit integer scale** (±32768), the Kaldi convention: an int16 PCM
//! sample `s` becomes `s as f32`, a float sample `x` in [-1, 1] becomes `x * 32768`.
//!
//! Hostile input is expected: sizes, channel counts and durations are checked against
//! [`Limits`] before decoding (from the header, when it tells) and again while decoding, so a
//! decompression bomb stops at the limit. Every failure is a typed [`AudioError`]; nothing panics.

mod container;
pub mod g711;
mod raw;
mod resample;

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

pub use raw::RawStreamDecoder;
pub use resample::{StreamResampler, resample};

/// Lowest sample rate accepted, in Hz (below any telephony rate).
pub const MIN_SAMPLE_RATE: u32 = 4_000;
/// Highest sample rate accepted, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// Mono audio in 16-bit integer scale (±32768).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Waveform {
    /// Samples, one per frame, in 16-bit integer scale.
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
}

impl Waveform {
    /// Duration in seconds (0 when the rate is 0).
    pub fn duration_seconds(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.samples.len() as f64 / f64::from(self.sample_rate)
        }
    }
}

/// What the input was, as found while decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Container: `"wav"`, `"flac"`, `"mp3"`, `"ogg"` or `"raw"` (headerless).
    pub container: String,
    /// Codec short name, e.g. `"pcm_s16le"`, `"pcm_mulaw"`, `"pcm_alaw"`, `"adpcm_ima_wav"`,
    /// `"adpcm_ms"`, `"flac"`, `"mp3"`, `"vorbis"`.
    pub codec: String,
    /// Sample rate of the source in Hz.
    pub sample_rate: u32,
    /// Channels in the source (before the channel pick).
    pub channels: usize,
    /// Frames decoded (samples per channel).
    pub frames: u64,
    /// `frames / sample_rate`.
    pub duration_seconds: f64,
}

/// A decoded input: the mono waveform, what the source was and which channel was used.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The selected channel at the source rate.
    pub waveform: Waveform,
    /// Facts about the source.
    pub info: SourceInfo,
    /// The channel selection actually applied: `Left`/`Right` for the two channels of a stereo
    /// source, `Index(n)` otherwise (`Index(0)` for mono), `Mix` for an average of several channels.
    pub channel: ChannelSelect,
}

/// How the input bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// A container (WAV, FLAC, MP3, Ogg), probed from the bytes.
    #[default]
    Auto,
    /// Headerless signed 16-bit little-endian PCM, interleaved.
    Pcm16Le,
    /// Headerless G.711 µ-law, one byte per sample, interleaved.
    Mulaw,
    /// Headerless G.711 A-law, one byte per sample, interleaved.
    Alaw,
}

impl Encoding {
    /// Bytes per sample of a headerless encoding (`None` for [`Encoding::Auto`]).
    pub fn bytes_per_sample(self) -> Option<usize> {
        match self {
            Encoding::Auto => None,
            Encoding::Pcm16Le => Some(2),
            Encoding::Mulaw | Encoding::Alaw => Some(1),
        }
    }
}

impl FromStr for Encoding {
    type Err = AudioError;

    /// Parses `auto`, `pcm16le` (or `s16le`, `pcm`), `mulaw` (or `ulaw`), `alaw`; case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Encoding::Auto),
            "pcm16le" | "s16le" | "pcm" | "pcm_s16le" => Ok(Encoding::Pcm16Le),
            "mulaw" | "ulaw" | "pcm_mulaw" => Ok(Encoding::Mulaw),
            "alaw" | "pcm_alaw" => Ok(Encoding::Alaw),
            other => Err(AudioError::InvalidOption(format!(
                "unknown encoding {other:?} (expected auto, pcm16le, mulaw or alaw)"
            ))),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Auto => "auto",
            Encoding::Pcm16Le => "pcm16le",
            Encoding::Mulaw => "mulaw",
            Encoding::Alaw => "alaw",
        })
    }
}

/// Which channel of a multi-channel source to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelSelect {
    /// The first channel: the left one of a stereo call recording (by the common recorder
    /// convention the customer leg; mixing would blend agent and customer).
    #[default]
    Default,
    /// The average of all channels.
    Mix,
    /// Channel 0.
    Left,
    /// Channel 1 (an error on mono input).
    Right,
    /// Channel `n`, counting from 0.
    Index(usize),
}

impl FromStr for ChannelSelect {
    type Err = AudioError;

    /// Parses `default`, `mix`, `left`, `right` (case-insensitive) or a channel index `n`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "default" => Ok(ChannelSelect::Default),
            "mix" => Ok(ChannelSelect::Mix),
            "left" => Ok(ChannelSelect::Left),
            "right" => Ok(ChannelSelect::Right),
            other => other
                .parse::<usize>()
                .map(ChannelSelect::Index)
                .map_err(|_| {
                    AudioError::InvalidOption(format!(
                        "unknown channel {other:?} (expected default, mix, left, right or an index)"
                    ))
                }),
        }
    }
}

impl fmt::Display for ChannelSelect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelSelect::Default => f.write_str("default"),
            ChannelSelect::Mix => f.write_str("mix"),
            ChannelSelect::Left => f.write_str("left"),
            ChannelSelect::Right => f.write_str("right"),
            ChannelSelect::Index(n) => write!(f, "{n}"),
        }
    }
}

/// A channel selection resolved against a channel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Keep one channel.
    One(usize),
    /// Average all channels.
    Mix,
}

impl Pick {
    /// Resolves `select` for a source with `channels` channels (≥ 1).
    pub(crate) fn resolve(select: ChannelSelect, channels: usize) -> Result<Pick, AudioError> {
        let index = match select {
            ChannelSelect::Default | ChannelSelect::Left => 0,
            ChannelSelect::Mix if channels > 1 => return Ok(Pick::Mix),
            ChannelSelect::Mix => 0,
            ChannelSelect::Right => 1,
            ChannelSelect::Index(n) => n,
        };
        if index >= channels {
            return Err(AudioError::ChannelOutOfRange {
                requested: select,
                channels,
            });
        }
        Ok(Pick::One(index))
    }

    /// What to report as the selection actually used.
    pub(crate) fn reported(self, channels: usize) -> ChannelSelect {
        match (self, channels) {
            (Pick::Mix, _) => ChannelSelect::Mix,
            (Pick::One(0), 2) => ChannelSelect::Left,
            (Pick::One(1), 2) => ChannelSelect::Right,
            (Pick::One(n), _) => ChannelSelect::Index(n),
        }
    }
}

/// Resource limits applied to every input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_bytes: usize,
    /// Longest audio accepted, in seconds.
    pub max_seconds: f64,
    /// Most channels accepted.
    pub max_channels: usize,
}

impl Default for Limits {
    /// 64 MiB, one hour, 8 channels.
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 20,
            max_seconds: 3600.0,
            max_channels: 8,
        }
    }
}

impl Limits {
    /// Most frames accepted at `sample_rate`.
    pub(crate) fn max_frames(&self, sample_rate: u32) -> u64 {
        let frames = (self.max_seconds.max(0.0) * f64::from(sample_rate)).floor();
        if frames >= u64::MAX as f64 {
            u64::MAX
        } else {
            frames as u64
        }
    }

    /// `TooLong` when `frames` at `sample_rate` exceed the limit.
    pub(crate) fn check_frames(&self, frames: u64, sample_rate: u32) -> Result<(), AudioError> {
        if frames > self.max_frames(sample_rate) {
            return Err(AudioError::TooLong {
                seconds: frames as f64 / f64::from(sample_rate.max(1)),
                max: self.max_seconds,
            });
        }
        Ok(())
    }

    /// `TooManyChannels` when `channels` exceed the limit.
    pub(crate) fn check_channels(&self, channels: usize) -> Result<(), AudioError> {
        if channels > self.max_channels {
            return Err(AudioError::TooManyChannels {
                channels,
                max: self.max_channels,
            });
        }
        Ok(())
    }
}

/// Options for [`decode`] and [`decode_file`].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// How the bytes are encoded; [`Encoding::Auto`] probes a container.
    pub encoding: Encoding,
    /// Sample rate of headerless input (required there); ignored for containers, whose header
    /// gives the rate.
    pub sample_rate: Option<u32>,
    /// Interleaved channels of headerless input (default 1); ignored for containers.
    pub channels: usize,
    /// Which channel to keep.
    pub channel: ChannelSelect,
    /// Resource limits.
    pub limits: Limits,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            encoding: Encoding::Auto,
            sample_rate: None,
            channels: 1,
            channel: ChannelSelect::Default,
            limits: Limits::default(),
        }
    }
}

/// Errors of the audio module.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The input holds no audio (zero bytes, or a container without samples).
    #[error("input contains no audio")]
    Empty,
    /// The input is larger than [`Limits::max_bytes`].
    #[error("input is {bytes} bytes, larger than the limit of {max} bytes")]
    TooLarge {
        /// Size of the input.
        bytes: u64,
        /// The limit.
        max: usize,
    },
    /// The audio is longer than [`Limits::max_seconds`] (`seconds` is what was seen when
    /// decoding stopped, or the length the header declares).
    #[error("audio is longer than the limit of {max} s (at least {seconds:.3} s)")]
    TooLong {
        /// Length found (at least).
        seconds: f64,
        /// The limit.
        max: f64,
    },
    /// The input has more channels than [`Limits::max_channels`].
    #[error("input has {channels} channels, more than the limit of {max}")]
    TooManyChannels {
        /// Channels in the input.
        channels: usize,
        /// The limit.
        max: usize,
    },
    /// Headerless input was given without a sample rate.
    #[error("headerless audio needs a sample rate")]
    MissingSampleRate,
    /// A sample rate (declared or in a header) outside 4000..=192000 Hz.
    #[error("sample rate {0} Hz is outside the supported range 4000..=192000 Hz")]
    InvalidSampleRate(u32),
    /// The requested channel does not exist in the input.
    #[error("channel {requested} requested but the input has {channels} channel(s)")]
    ChannelOutOfRange {
        /// The selection asked for.
        requested: ChannelSelect,
        /// Channels in the input.
        channels: usize,
    },
    /// The input ends before its header or its frame structure says it should.
    #[error("truncated input: {0}")]
    Truncated(String),
    /// The format or codec is not supported (or not recognised).
    #[error("unsupported input: {0}")]
    Unsupported(String),
    /// The input is malformed.
    #[error("corrupt input: {0}")]
    Corrupt(String),
    /// An option value is invalid (unknown encoding or channel name, zero channels, …).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A resampler could not be built or failed.
    #[error("resampling failed: {0}")]
    Resample(String),
    /// Reading the file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl AudioError {
    /// True for resource-limit errors (`TooLarge`, `TooLong`, `TooManyChannels`), which a
    /// service reports as RESOURCE_EXHAUSTED rather than INVALID_ARGUMENT.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            AudioError::TooLarge { .. }
                | AudioError::TooLong { .. }
                | AudioError::TooManyChannels { .. }
        )
    }
}

/// Checks a sample rate against [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`].
pub(crate) fn check_rate(rate: u32) -> Result<u32, AudioError> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(AudioError::InvalidSampleRate(rate))
    }
}

/// Decodes `bytes` (a container, or headerless audio as `opts.encoding` says) to one mono channel
/// at the source sample rate.
pub fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<Decoded, AudioError> {
    let mut samples = Vec::new();
    let (info, channel) = decode_into(bytes, opts, &mut samples)?;
    Ok(Decoded {
        waveform: Waveform {
            samples,
            sample_rate: info.sample_rate,
        },
        info,
        channel,
    })
}

/// [`decode`] into a caller's buffer: `out` is cleared and receives the samples (at
/// `info.sample_rate`), keeping its allocation, so a caller decoding many inputs allocates (and
/// page-faults in) its sample buffer once. Returns what the source was and the channel selection
/// applied. On error `out` holds no meaningful samples.
pub fn decode_into(
    bytes: &[u8],
    opts: &DecodeOptions,
    out: &mut Vec<f32>,
) -> Result<(SourceInfo, ChannelSelect), AudioError> {
    decode_into_with(bytes, opts, out, &mut |_, _| {})
}

/// [`decode_into`], calling `progress(samples_so_far, sample_rate)` while the samples arrive
/// (after each block of 16,384 frames of PCM / G.711, after each packet of the other formats),
/// so that a consumer can work on the newest samples while they are still in cache
/// ([`crate::quality::FrontEnd`] runs the filterbank this way). `samples_so_far` is a growing
/// prefix of the final samples. After an error the calls made so far mean nothing.
pub fn decode_into_with(
    bytes: &[u8],
    opts: &DecodeOptions,
    out: &mut Vec<f32>,
    progress: &mut dyn FnMut(&[f32], u32),
) -> Result<(SourceInfo, ChannelSelect), AudioError> {
    out.clear();
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    if bytes.len() > opts.limits.max_bytes {
        return Err(AudioError::TooLarge {
            bytes: bytes.len() as u64,
            max: opts.limits.max_bytes,
        });
    }
    match opts.encoding {
        Encoding::Auto => container::decode_into(bytes, opts, out, progress),
        encoding => raw::decode_into(bytes, encoding, opts, out, progress),
    }
}

/// Reads and decodes a file; the file size is checked against [`Limits::max_bytes`] before
/// anything is read.
pub fn decode_file(path: &Path, opts: &DecodeOptions) -> Result<Decoded, AudioError> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let max = opts.limits.max_bytes;
    if len > max as u64 {
        return Err(AudioError::TooLarge { bytes: len, max });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow between the size check and the read: never read more than the limit + 1.
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    decode(&bytes, opts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The samples of a canonical 44-byte-header PCM16 WAV, read without the decoder under test.
    pub(crate) fn canonical_pcm16(name: &str) -> Vec<f32> {
        let bytes = fixture(name);
        assert_eq!(&bytes[36..40], b"data");
        bytes[44..]
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
            .collect()
    }

    #[test]
    fn channel_select_parses_and_displays() {
        for (text, value) in [
            ("default", ChannelSelect::Default),
            ("mix", ChannelSelect::Mix),
            ("left", ChannelSelect::Left),
            ("right", ChannelSelect::Right),
            ("3", ChannelSelect::Index(3)),
        ] {
            assert_eq!(text.parse::<ChannelSelect>().unwrap(), value);
            assert_eq!(value.to_string(), text);
        }
        assert_eq!(
            " LEFT ".parse::<ChannelSelect>().unwrap(),
            ChannelSelect::Left
        );
        assert!(matches!(
            "centre".parse::<ChannelSelect>(),
            Err(AudioError::InvalidOption(_))
        ));
        assert!("-1".parse::<ChannelSelect>().is_err());
    }

    #[test]
    fn encoding_parses_and_displays() {
        for e in [
            Encoding::Auto,
            Encoding::Pcm16Le,
            Encoding::Mulaw,
            Encoding::Alaw,
        ] {
            assert_eq!(e.to_string().parse::<Encoding>().unwrap(), e);
        }
        assert_eq!("ulaw".parse::<Encoding>().unwrap(), Encoding::Mulaw);
        assert!("gsm".parse::<Encoding>().is_err());
    }

    #[test]
    fn pick_resolution() {
        use ChannelSelect::*;
        for s in [Default, Mix, Left, Index(0)] {
            assert_eq!(Pick::resolve(s, 1).unwrap(), Pick::One(0));
        }
        assert!(matches!(
            Pick::resolve(Right, 1),
            Err(AudioError::ChannelOutOfRange { channels: 1, .. })
        ));
        assert_eq!(Pick::resolve(Default, 2).unwrap(), Pick::One(0));
        assert_eq!(Pick::resolve(Right, 2).unwrap(), Pick::One(1));
        assert_eq!(Pick::resolve(Mix, 2).unwrap(), Pick::Mix);
        assert!(Pick::resolve(Index(2), 2).is_err());
        assert_eq!(Pick::One(0).reported(2), Left);
        assert_eq!(Pick::One(1).reported(2), Right);
        assert_eq!(Pick::One(0).reported(1), Index(0));
    }

    #[test]
    fn limit_classification() {
        assert!(AudioError::TooLarge { bytes: 1, max: 0 }.is_limit());
        assert!(
            AudioError::TooLong {
                seconds: 2.0,
                max: 1.0
            }
            .is_limit()
        );
        assert!(
            AudioError::TooManyChannels {
                channels: 9,
                max: 8
            }
            .is_limit()
        );
        assert!(!AudioError::Empty.is_limit());
        assert!(!AudioError::Corrupt("x".into()).is_limit());
    }

    #[test]
    fn empty_and_too_large_are_rejected_before_decoding() {
        assert!(matches!(
            decode(&[], &DecodeOptions::default()),
            Err(AudioError::Empty)
        ));
        let opts = DecodeOptions {
            limits: Limits {
                max_bytes: 10,
                ..Limits::default()
            },
            ..DecodeOptions::default()
        };
        assert!(matches!(
            decode(&[0u8; 11], &opts),
            Err(AudioError::TooLarge { bytes: 11, max: 10 })
        ));
    }

    #[test]
    fn decode_file_checks_size_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.raw");
        std::fs::write(&path, vec![0u8; 1000]).unwrap();
        let opts = DecodeOptions {
            encoding: Encoding::Mulaw,
            sample_rate: Some(8000),
            limits: Limits {
                max_bytes: 999,
                ..Limits::default()
            },
            ..DecodeOptions::default()
        };
        assert!(matches!(
            decode_file(&path, &opts),
            Err(AudioError::TooLarge { bytes: 1000, .. })
        ));
        let ok = DecodeOptions {
            limits: Limits::default(),
            ..opts
        };
        assert_eq!(
            decode_file(&path, &ok).unwrap().waveform.samples.len(),
            1000
        );
        assert!(matches!(
            decode_file(&dir.path().join("missing.wav"), &ok),
            Err(AudioError::Io(_))
        ));
    }
}
