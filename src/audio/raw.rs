//! Headerless telephony audio: G.711 µ-law / A-law and PCM16LE, whole or streamed.

use super::g711::{ALAW_TABLE, ULAW_TABLE};
use super::{AudioError, ChannelSelect, DecodeOptions, Encoding, Pick, SourceInfo, check_rate};
use crate::features::simd::{self, Level, dispatch};

/// Converts whole interleaved frames of `encoding` to the picked channel, appending to `out`.
/// `bytes.len()` must be a multiple of `channels * bytes_per_sample`. Runs the AVX2 copy where the
/// CPU has it (integer to `f32` conversion is exact: both copies give the same samples).
fn convert_frames(
    bytes: &[u8],
    encoding: Encoding,
    channels: usize,
    pick: Pick,
    out: &mut Vec<f32>,
) {
    convert_frames_at(simd::level(), bytes, encoding, channels, pick, out);
}

/// [`convert_frames`] at a given dispatch level.
fn convert_frames_at(
    level: Level,
    bytes: &[u8],
    encoding: Encoding,
    channels: usize,
    pick: Pick,
    out: &mut Vec<f32>,
) {
    dispatch!(level,
        avx2: convert_frames_avx2(bytes, encoding, channels, pick, out),
        scalar: convert_frames_body(bytes, encoding, channels, pick, out),
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn convert_frames_avx2(
    bytes: &[u8],
    encoding: Encoding,
    channels: usize,
    pick: Pick,
    out: &mut Vec<f32>,
) {
    convert_frames_body(bytes, encoding, channels, pick, out);
}

#[inline(always)]
fn convert_frames_body(
    bytes: &[u8],
    encoding: Encoding,
    channels: usize,
    pick: Pick,
    out: &mut Vec<f32>,
) {
    #[inline(always)]
    fn run(
        bytes: &[u8],
        bps: usize,
        channels: usize,
        pick: Pick,
        out: &mut Vec<f32>,
        sample: impl Fn(&[u8]) -> f32,
    ) {
        let frame = bps * channels;
        match pick {
            Pick::One(_) if channels == 1 => out.extend(bytes.chunks_exact(bps).map(&sample)),
            Pick::One(c) => out.extend(bytes.chunks_exact(frame).map(|f| sample(&f[c * bps..]))),
            Pick::Mix => {
                let scale = 1.0 / channels as f32;
                out.extend(
                    bytes
                        .chunks_exact(frame)
                        .map(|f| f.chunks_exact(bps).map(&sample).sum::<f32>() * scale),
                );
            }
        }
    }
    match encoding {
        Encoding::Mulaw => run(bytes, 1, channels, pick, out, |b| {
            f32::from(ULAW_TABLE[usize::from(b[0])])
        }),
        Encoding::Alaw => run(bytes, 1, channels, pick, out, |b| {
            f32::from(ALAW_TABLE[usize::from(b[0])])
        }),
        Encoding::Pcm16Le => run(bytes, 2, channels, pick, out, |b| {
            f32::from(i16::from_le_bytes([b[0], b[1]]))
        }),
        // Callers never pass Auto (rejected at construction); produce nothing rather than panic.
        Encoding::Auto => {}
    }
}

fn codec_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Pcm16Le => "pcm_s16le",
        Encoding::Mulaw => "pcm_mulaw",
        Encoding::Alaw => "pcm_alaw",
        Encoding::Auto => "unknown",
    }
}

/// Validates a headerless layout; returns bytes per frame.
fn frame_bytes(encoding: Encoding, channels: usize) -> Result<usize, AudioError> {
    let bps = encoding.bytes_per_sample().ok_or_else(|| {
        AudioError::InvalidOption("headerless decoding needs a concrete encoding, not auto".into())
    })?;
    if channels == 0 {
        return Err(AudioError::InvalidOption(
            "channel count must be at least 1".into(),
        ));
    }
    Ok(bps * channels)
}

/// Frames converted between two calls of the progress callback (64 KiB of `f32` output: the
/// consumer reads them from the L2 cache).
const PROGRESS_FRAMES: usize = 16_384;

/// Decodes a whole headerless buffer (already checked to be non-empty and within `max_bytes`)
/// into `out` (cleared first, allocation kept), calling `progress` with the samples so far after
/// each block of [`PROGRESS_FRAMES`] frames.
pub(crate) fn decode_into(
    bytes: &[u8],
    encoding: Encoding,
    opts: &DecodeOptions,
    out: &mut Vec<f32>,
    progress: &mut dyn FnMut(&[f32], u32),
) -> Result<(SourceInfo, ChannelSelect), AudioError> {
    let rate = check_rate(opts.sample_rate.ok_or(AudioError::MissingSampleRate)?)?;
    let channels = opts.channels;
    let frame = frame_bytes(encoding, channels)?;
    opts.limits.check_channels(channels)?;
    let pick = Pick::resolve(opts.channel, channels)?;
    if !bytes.len().is_multiple_of(frame) {
        return Err(AudioError::Truncated(format!(
            "{} bytes is not a whole number of {channels}-channel {encoding} frames ({frame} bytes each)",
            bytes.len()
        )));
    }
    let frames = (bytes.len() / frame) as u64;
    opts.limits.check_frames(frames, rate)?;
    out.clear();
    out.reserve(bytes.len() / frame);
    for block in bytes.chunks(PROGRESS_FRAMES * frame) {
        convert_frames(block, encoding, channels, pick, out);
        progress(out, rate);
    }
    let info = SourceInfo {
        container: "raw".into(),
        codec: codec_name(encoding).into(),
        sample_rate: rate,
        channels,
        frames,
        duration_seconds: frames as f64 / f64::from(rate),
    };
    Ok((info, pick.reported(channels)))
}

/// Incremental decoder for live headerless telephony audio (e.g. RTP payloads of G.711).
///
/// Chunks may split a sample or a frame anywhere; the incomplete tail is kept until the next
/// [`push`](Self::push). Output is the selected channel in 16-bit integer scale.
#[derive(Debug, Clone)]
pub struct RawStreamDecoder {
    encoding: Encoding,
    channels: usize,
    pick: Pick,
    frame: usize,
    /// Bytes of an incomplete frame (always fewer than `frame`).
    carry: Vec<u8>,
}

impl RawStreamDecoder {
    /// A decoder for `encoding` (not [`Encoding::Auto`]) with `channels` interleaved channels,
    /// keeping the channel `channel` selects.
    pub fn new(
        encoding: Encoding,
        channels: usize,
        channel: ChannelSelect,
    ) -> Result<Self, AudioError> {
        let frame = frame_bytes(encoding, channels)?;
        let pick = Pick::resolve(channel, channels)?;
        Ok(RawStreamDecoder {
            encoding,
            channels,
            pick,
            frame,
            carry: Vec::with_capacity(frame),
        })
    }

    /// Decodes `chunk`, appending every completed frame's sample to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<f32>) {
        if !self.carry.is_empty() {
            let need = (self.frame - self.carry.len()).min(chunk.len());
            self.carry.extend_from_slice(&chunk[..need]);
            chunk = &chunk[need..];
            if self.carry.len() < self.frame {
                return;
            }
            convert_frames(&self.carry, self.encoding, self.channels, self.pick, out);
            self.carry.clear();
        }
        let whole = chunk.len() - chunk.len() % self.frame;
        convert_frames(
            &chunk[..whole],
            self.encoding,
            self.channels,
            self.pick,
            out,
        );
        self.carry.extend_from_slice(&chunk[whole..]);
    }

    /// Bytes held back because they do not complete a frame yet.
    pub fn pending_bytes(&self) -> usize {
        self.carry.len()
    }

    /// The channel selection actually applied (see [`Decoded::channel`](super::Decoded::channel)).
    pub fn channel(&self) -> ChannelSelect {
        self.pick.reported(self.channels)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::tests::{canonical_pcm16, fixture};
    use super::super::{Limits, decode as decode_any};
    use super::*;

    fn raw_opts(
        encoding: Encoding,
        rate: u32,
        channels: usize,
        channel: ChannelSelect,
    ) -> DecodeOptions {
        DecodeOptions {
            encoding,
            sample_rate: Some(rate),
            channels,
            channel,
            limits: Limits::default(),
        }
    }

    #[test]
    fn golden_raw_g711_matches_sox_decoding() {
        for (raw, decoded, encoding) in [
            (
                "golden/inputs/d_8k.ulaw",
                "golden/inputs/d_8k_ulaw_decoded_pcm16.wav",
                Encoding::Mulaw,
            ),
            (
                "golden/inputs/d_8k.alaw",
                "golden/inputs/d_8k_alaw_decoded_pcm16.wav",
                Encoding::Alaw,
            ),
        ] {
            let d = decode_any(
                &fixture(raw),
                &raw_opts(encoding, 8000, 1, ChannelSelect::Default),
            )
            .unwrap();
            assert_eq!(d.waveform.samples, canonical_pcm16(decoded), "{raw}");
            assert_eq!(d.waveform.sample_rate, 8000);
            assert_eq!(d.info.container, "raw");
            assert_eq!(d.info.frames, 19_102);
            assert_eq!(d.channel, ChannelSelect::Index(0));
        }
    }

    #[test]
    fn raw_pcm16_equals_wav_payload() {
        let wav = fixture("golden/inputs/d_8k_pcm16.wav");
        let d = decode_any(
            &wav[44..],
            &raw_opts(Encoding::Pcm16Le, 8000, 1, ChannelSelect::Default),
        )
        .unwrap();
        assert_eq!(
            d.waveform.samples,
            canonical_pcm16("golden/inputs/d_8k_pcm16.wav")
        );
        assert_eq!(d.info.codec, "pcm_s16le");
    }

    #[test]
    fn stereo_raw_channel_picks() {
        // Frames (L, R): (100, -100), (200, 50), (-300, 0) as PCM16LE.
        let pcm: Vec<u8> = [100i16, -100, 200, 50, -300, 0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let pick = |c| decode_any(&pcm, &raw_opts(Encoding::Pcm16Le, 8000, 2, c));
        let left = pick(ChannelSelect::Default).unwrap();
        assert_eq!(left.waveform.samples, [100.0, 200.0, -300.0]);
        assert_eq!(left.channel, ChannelSelect::Left);
        assert_eq!(
            pick(ChannelSelect::Right).unwrap().waveform.samples,
            [-100.0, 50.0, 0.0]
        );
        assert_eq!(
            pick(ChannelSelect::Mix).unwrap().waveform.samples,
            [0.0, 125.0, -150.0]
        );
        assert_eq!(
            pick(ChannelSelect::Index(1)).unwrap().channel,
            ChannelSelect::Right
        );
        assert!(matches!(
            pick(ChannelSelect::Index(2)),
            Err(AudioError::ChannelOutOfRange { channels: 2, .. })
        ));
    }

    #[test]
    fn hostile_raw_inputs_are_typed_errors() {
        let o =
            |rate, channels| raw_opts(Encoding::Pcm16Le, rate, channels, ChannelSelect::Default);
        assert!(matches!(
            decode_any(&[1, 2, 3], &o(8000, 1)),
            Err(AudioError::Truncated(_))
        ));
        assert!(matches!(
            decode_any(&[1, 2], &o(8000, 2)),
            Err(AudioError::Truncated(_))
        ));
        assert!(matches!(
            decode_any(&[1, 2], &o(3999, 1)),
            Err(AudioError::InvalidSampleRate(3999))
        ));
        assert!(matches!(
            decode_any(&[1, 2], &o(192_001, 1)),
            Err(AudioError::InvalidSampleRate(_))
        ));
        assert!(matches!(
            decode_any(&[1, 2], &o(0, 1)),
            Err(AudioError::InvalidSampleRate(0))
        ));
        assert!(matches!(
            decode_any(&[1, 2], &o(8000, 0)),
            Err(AudioError::InvalidOption(_))
        ));
        assert!(matches!(
            decode_any(&[0; 18], &o(8000, 9)),
            Err(AudioError::TooManyChannels {
                channels: 9,
                max: 8
            })
        ));
        let no_rate = DecodeOptions {
            sample_rate: None,
            ..o(8000, 1)
        };
        assert!(matches!(
            decode_any(&[1, 2], &no_rate),
            Err(AudioError::MissingSampleRate)
        ));
        let right_on_mono = raw_opts(Encoding::Mulaw, 8000, 1, ChannelSelect::Right);
        assert!(matches!(
            decode_any(&[1], &right_on_mono),
            Err(AudioError::ChannelOutOfRange { .. })
        ));
        // 2 s of µ-law at 8 kHz against a 1 s limit: rejected from the length before decoding.
        let short = DecodeOptions {
            limits: Limits {
                max_seconds: 1.0,
                ..Limits::default()
            },
            ..raw_opts(Encoding::Mulaw, 8000, 1, ChannelSelect::Default)
        };
        let err = decode_any(&[0xFF; 16_000], &short).unwrap_err();
        assert!(
            matches!(err, AudioError::TooLong { .. }) && err.is_limit(),
            "{err}"
        );
        assert!(decode_any(&[0xFF; 8_000], &short).is_ok());
    }

    #[test]
    fn stream_decoder_handles_any_split() {
        let ulaw = fixture("golden/inputs/d_8k.ulaw");
        // Interleave as stereo: left = speech, right = its bitwise inverse.
        let stereo: Vec<u8> = ulaw.iter().flat_map(|&b| [b, !b]).collect();
        let whole = decode_any(
            &stereo,
            &raw_opts(Encoding::Mulaw, 8000, 2, ChannelSelect::Right),
        )
        .unwrap();
        let pcm: Vec<u8> = canonical_pcm16("golden/inputs/d_8k_pcm16.wav")
            .iter()
            .flat_map(|&s| (s as i16).to_le_bytes())
            .collect();
        for chunk in [1usize, 2, 3, 7, 160, 161, 1000] {
            let mut dec = RawStreamDecoder::new(Encoding::Mulaw, 2, ChannelSelect::Right).unwrap();
            let mut out = Vec::new();
            for c in stereo.chunks(chunk) {
                dec.push(c, &mut out);
                assert!(dec.pending_bytes() < 2);
            }
            assert_eq!(out, whole.waveform.samples, "chunk {chunk}");
            assert_eq!(dec.channel(), ChannelSelect::Right);

            let mut dec =
                RawStreamDecoder::new(Encoding::Pcm16Le, 1, ChannelSelect::Default).unwrap();
            let mut out = Vec::new();
            for c in pcm.chunks(chunk) {
                dec.push(c, &mut out);
            }
            assert_eq!(
                out,
                canonical_pcm16("golden/inputs/d_8k_pcm16.wav"),
                "pcm chunk {chunk}"
            );
            assert_eq!(dec.pending_bytes(), 0);
        }
        let mut dec = RawStreamDecoder::new(Encoding::Pcm16Le, 1, ChannelSelect::Mix).unwrap();
        let mut out = Vec::new();
        dec.push(&[0x01], &mut out);
        assert!(out.is_empty());
        assert_eq!(dec.pending_bytes(), 1);
        dec.push(&[0x02, 0x03], &mut out);
        assert_eq!(out, [f32::from(0x0201i16)]);
        assert_eq!(dec.pending_bytes(), 1);
    }

    #[test]
    fn avx2_and_baseline_conversions_are_identical() {
        if !simd::avx2_fma_available() {
            eprintln!("AVX2 + FMA not available: nothing to compare");
            return;
        }
        // Every byte value and every int16 value, odd lengths, 1–3 channels, every pick.
        let bytes: Vec<u8> = (0..=255u8)
            .chain((0..=255u8).rev())
            .cycle()
            .take(3 * 65_539)
            .collect();
        let pcm: Vec<u8> = (i16::MIN..=i16::MAX)
            .flat_map(|s| s.to_le_bytes())
            .collect();
        for encoding in [Encoding::Mulaw, Encoding::Alaw, Encoding::Pcm16Le] {
            let input = if encoding == Encoding::Pcm16Le {
                &pcm
            } else {
                &bytes
            };
            for channels in 1..=3usize {
                let frame = channels * encoding.bytes_per_sample().unwrap();
                for len in [input.len(), input.len() - 7 * frame] {
                    let whole = &input[..len - len % frame];
                    let mut picks = vec![Pick::Mix];
                    picks.extend((0..channels).map(Pick::One));
                    for pick in picks {
                        let (mut a, mut b) = (vec![1.0], vec![1.0]);
                        convert_frames_at(Level::Scalar, whole, encoding, channels, pick, &mut a);
                        convert_frames_at(Level::Avx2Fma, whole, encoding, channels, pick, &mut b);
                        assert_eq!(a.len(), whole.len() / frame + 1);
                        assert!(
                            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{encoding} {channels} {pick:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn progress_sees_growing_prefixes_of_the_samples() {
        let pcm: Vec<u8> = (0..40_000i32)
            .flat_map(|i| ((i * 7 % 65_536 - 32_768) as i16).to_le_bytes())
            .collect();
        let opts = raw_opts(Encoding::Pcm16Le, 8000, 1, ChannelSelect::Default);
        let mut seen: Vec<Vec<f32>> = Vec::new();
        let mut out = Vec::new();
        super::super::decode_into_with(&pcm, &opts, &mut out, &mut |so_far, rate| {
            assert_eq!(rate, 8000);
            seen.push(so_far.to_vec());
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.last(), Some(&out));
        for w in seen.windows(2) {
            assert!(w[0].len() < w[1].len() && w[1].starts_with(&w[0]));
        }
    }

    #[test]
    fn decode_into_reuses_the_buffer() {
        let wav = fixture("golden/inputs/d_8k_pcm16.wav");
        let mut out = vec![5.0; 100_000];
        let ptr = out.as_ptr();
        let (info, channel) =
            super::super::decode_into(&wav, &DecodeOptions::default(), &mut out).unwrap();
        assert_eq!(out, canonical_pcm16("golden/inputs/d_8k_pcm16.wav"));
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!((info.frames, info.container.as_str()), (19_102, "wav"));
        assert_eq!(channel, ChannelSelect::Index(0));
        assert!(super::super::decode_into(&[], &DecodeOptions::default(), &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn stream_decoder_rejects_bad_setup() {
        assert!(matches!(
            RawStreamDecoder::new(Encoding::Auto, 1, ChannelSelect::Default),
            Err(AudioError::InvalidOption(_))
        ));
        assert!(matches!(
            RawStreamDecoder::new(Encoding::Alaw, 0, ChannelSelect::Default),
            Err(AudioError::InvalidOption(_))
        ));
        assert!(matches!(
            RawStreamDecoder::new(Encoding::Alaw, 1, ChannelSelect::Right),
            Err(AudioError::ChannelOutOfRange { .. })
        ));
    }
}
