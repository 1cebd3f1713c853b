//! Containers through symphonia, with a RIFF pre-scan that validates WAV headers first.

use std::borrow::Cow;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use symphonia::core::audio::conv::IntoSample;
use symphonia::core::audio::sample::Sample;
use symphonia::core::audio::{Audio, AudioBuffer, GenericAudioBufferRef};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::{AudioError, ChannelSelect, DecodeOptions, Encoding, Pick, SourceInfo, check_rate};

/// Consecutive undecodable packets tolerated before the input is declared corrupt.
const MAX_CONSECUTIVE_ERRORS: usize = 32;

/// WAV format tags whose frames have a fixed size of `block_align` bytes per sample frame.
const PCM_LIKE_TAGS: [u16; 4] = [1, 3, 6, 7];
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// What the RIFF pre-scan learnt from a WAV header.
#[derive(Debug)]
struct WavHeader {
    format_tag: u16,
    channels: usize,
    sample_rate: u32,
    block_align: usize,
    bits: u16,
    /// Offset of the sample data in the bytes.
    data_offset: usize,
    /// Bytes of sample data present (after fixing placeholder sizes).
    data_len: usize,
}

impl WavHeader {
    /// The headerless encoding this WAV's data chunk is, when it is one we decode directly:
    /// PCM16 and G.711 (symphonia insists on an 18-byte fmt chunk for G.711, which many
    /// telephony recorders do not write).
    fn direct_encoding(&self) -> Option<Encoding> {
        let encoding = match (self.format_tag, self.bits) {
            (1, 16) => Encoding::Pcm16Le,
            (7, 8) => Encoding::Mulaw,
            (6, 8) => Encoding::Alaw,
            _ => return None,
        };
        (encoding.bytes_per_sample()? * self.channels == self.block_align).then_some(encoding)
    }
}

/// A validated WAV header and the bytes to decode (repaired when the data size was a placeholder).
type ScannedWav<'a> = (WavHeader, Cow<'a, [u8]>);

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Validates the chunk structure of a RIFF/WAVE file. Streaming recorders leave the data size at
/// 0 or 0xFFFFFFFF; such a placeholder is replaced by the real size in a copy of the bytes.
/// Returns `None` when the bytes are not RIFF/WAVE.
fn scan_wav<'a>(
    bytes: &'a [u8],
    opts: &DecodeOptions,
) -> Result<Option<ScannedWav<'a>>, AudioError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Ok(None);
    }
    let mut fmt: Option<(u16, usize, u32, usize, u16)> = None;
    let mut pos = 12usize;
    // Each iteration advances by at least 8 bytes, so the walk ends.
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = le32(bytes, pos + 4);
        let body = pos + 8;
        let available = bytes.len() - body;
        if id == b"fmt " {
            let size = size as usize;
            if size < 16 {
                return Err(AudioError::Corrupt(format!(
                    "WAV fmt chunk is {size} bytes, fewer than 16"
                )));
            }
            if size > available {
                return Err(AudioError::Truncated(
                    "WAV fmt chunk runs past the end of the input".into(),
                ));
            }
            let mut tag = le16(bytes, body);
            let channels = usize::from(le16(bytes, body + 2));
            let rate = le32(bytes, body + 4);
            let block_align = usize::from(le16(bytes, body + 12));
            let bits = le16(bytes, body + 14);
            if tag == WAVE_FORMAT_EXTENSIBLE && size >= 40 {
                // The sub-format GUID starts with the real format tag.
                tag = le16(bytes, body + 24);
            }
            if channels == 0 {
                return Err(AudioError::Corrupt("WAV header declares 0 channels".into()));
            }
            opts.limits.check_channels(channels)?;
            check_rate(rate)?;
            if block_align == 0 {
                return Err(AudioError::Corrupt(
                    "WAV header declares a block size of 0".into(),
                ));
            }
            fmt = Some((tag, channels, rate, block_align, bits));
        } else if id == b"data" {
            let Some((format_tag, channels, sample_rate, block_align, bits)) = fmt else {
                return Err(AudioError::Corrupt(
                    "WAV data chunk comes before the fmt chunk".into(),
                ));
            };
            let placeholder = size == 0 || size == u32::MAX;
            let declared = size as usize;
            let pcm_like = PCM_LIKE_TAGS.contains(&format_tag);
            let data_len = if placeholder {
                if pcm_like {
                    available - available % block_align
                } else {
                    available
                }
            } else if declared > available {
                return Err(AudioError::Truncated(format!(
                    "WAV data chunk declares {declared} bytes but only {available} follow"
                )));
            } else {
                declared
            };
            if pcm_like && !data_len.is_multiple_of(block_align) {
                return Err(AudioError::Truncated(format!(
                    "WAV data chunk of {data_len} bytes ends inside a {block_align}-byte frame"
                )));
            }
            if data_len == 0 {
                return Err(AudioError::Empty);
            }
            if pcm_like {
                opts.limits
                    .check_frames((data_len / block_align) as u64, sample_rate)?;
            }
            let header = WavHeader {
                format_tag,
                channels,
                sample_rate,
                block_align,
                bits,
                data_offset: body,
                data_len,
            };
            let bytes = if placeholder && data_len != declared {
                let mut owned = bytes[..body + data_len].to_vec();
                let len = u32::try_from(data_len)
                    .map_err(|_| AudioError::Unsupported("WAV data over 4 GiB".into()))?;
                owned[pos + 4..pos + 8].copy_from_slice(&len.to_le_bytes());
                Cow::Owned(owned)
            } else {
                Cow::Borrowed(bytes)
            };
            return Ok(Some((header, bytes)));
        }
        let step = (size as usize).saturating_add(size as usize & 1);
        pos = match body.checked_add(step) {
            Some(next) => next,
            None => break,
        };
    }
    if fmt.is_none() {
        Err(AudioError::Corrupt("WAV file has no fmt chunk".into()))
    } else {
        Err(AudioError::Truncated("WAV file has no data chunk".into()))
    }
}

fn map_symphonia(e: SymError, context: &str) -> AudioError {
    match e {
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Truncated(format!("{context}: unexpected end of input"))
        }
        SymError::IoError(io) => AudioError::Corrupt(format!("{context}: {io}")),
        SymError::DecodeError(msg) => AudioError::Corrupt(format!("{context}: {msg}")),
        SymError::Unsupported(msg) => AudioError::Unsupported(format!("{context}: {msg}")),
        SymError::LimitError(msg) => {
            AudioError::Corrupt(format!("{context}: decoder limit: {msg}"))
        }
        other => AudioError::Corrupt(format!("{context}: {other}")),
    }
}

/// Decodes a container. PCM16 and G.711 WAV data is decoded directly (exact G.711 tables, no
/// per-packet overhead); everything else goes through symphonia, run under `catch_unwind` so a
/// decoder bug on hostile input becomes an error instead of taking the process down.
pub(crate) fn decode_into(
    bytes: &[u8],
    opts: &DecodeOptions,
    out: &mut Vec<f32>,
    progress: &mut dyn FnMut(&[f32], u32),
) -> Result<(SourceInfo, ChannelSelect), AudioError> {
    let wav = scan_wav(bytes, opts)?;
    let (header, data) = match wav {
        Some((header, data)) => (Some(header), data),
        None => (None, Cow::Borrowed(bytes)),
    };
    if let Some(h) = &header
        && let Some(encoding) = h.direct_encoding()
    {
        let raw_opts = DecodeOptions {
            encoding,
            sample_rate: Some(h.sample_rate),
            channels: h.channels,
            ..opts.clone()
        };
        let (mut info, channel) = super::raw::decode_into(
            &data[h.data_offset..h.data_offset + h.data_len],
            encoding,
            &raw_opts,
            out,
            progress,
        )?;
        info.container = "wav".into();
        return Ok((info, channel));
    }
    match catch_unwind(AssertUnwindSafe(|| {
        decode_symphonia(&data, header.as_ref(), opts, out, progress)
    })) {
        Ok(result) => result,
        Err(_) => Err(AudioError::Corrupt(
            "the decoder failed on malformed input".into(),
        )),
    }
}

fn decode_symphonia(
    bytes: &[u8],
    wav: Option<&WavHeader>,
    opts: &DecodeOptions,
    samples: &mut Vec<f32>,
    progress: &mut dyn FnMut(&[f32], u32),
) -> Result<(SourceInfo, ChannelSelect), AudioError> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if wav.is_some() {
        hint.with_extension("wav");
    }
    let mut format = symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(_) => AudioError::Unsupported(
                "unrecognised container (supported: WAV, FLAC, MP3, Ogg Vorbis; set an encoding for headerless audio)"
                    .into(),
            ),
            other => map_symphonia(other, "reading the container"),
        })?;
    let container = match format.format_info().short_name {
        "wave" => "wav",
        other => other,
    }
    .to_string();
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::Unsupported(format!("{container} input has no audio track")))?;
    let track_id = track.id;
    let num_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| {
            AudioError::Unsupported(format!(
                "{container} audio track has unknown codec parameters"
            ))
        })?
        .clone();
    let header_rate = params.sample_rate.map(check_rate).transpose()?;
    if let Some(channels) = &params.channels {
        let count = channels.count();
        if count == 0 {
            return Err(AudioError::Corrupt(format!(
                "{container} header declares 0 channels"
            )));
        }
        opts.limits.check_channels(count)?;
    }
    if let (Some(frames), Some(rate)) = (num_frames, header_rate) {
        opts.limits.check_frames(frames, rate)?;
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| map_symphonia(e, "opening the decoder"))?;
    let codec = decoder.codec_info().short_name.to_string();

    samples.clear();
    if let (Some(frames), Some(_)) = (num_frames, header_rate) {
        // The frame count was checked against the limit above; cap the reservation anyway.
        samples.reserve(
            usize::try_from(frames)
                .unwrap_or(0)
                .min(opts.limits.max_bytes),
        );
    }
    let mut stream: Option<(u32, usize, Pick)> = None;
    let mut frames: u64 = 0;
    let mut consecutive_errors = 0usize;
    let mut last_error = String::new();
    let mut packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) | Err(SymError::ResetRequired) => break,
            // A stream that ends inside a packet keeps what was decoded so far, like every player.
            Err(SymError::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof && frames > 0 =>
            {
                break;
            }
            Err(e) => return Err(map_symphonia(e, "reading packets")),
        };
        packets += 1;
        if packets > bytes.len() + 16 {
            return Err(AudioError::Corrupt(
                "the container yields more packets than it has bytes".into(),
            ));
        }
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            Err(SymError::DecodeError(msg)) => {
                consecutive_errors += 1;
                last_error = msg.to_string();
                if consecutive_errors > MAX_CONSECUTIVE_ERRORS {
                    return Err(AudioError::Corrupt(format!(
                        "{container}/{codec}: {consecutive_errors} packets in a row failed to decode ({last_error})"
                    )));
                }
                continue;
            }
            Err(e) => return Err(map_symphonia(e, "decoding")),
        };
        consecutive_errors = 0;
        let spec = buffer.spec();
        let (rate, channels) = (spec.rate(), spec.channels().count());
        let (rate, channels, pick) = match stream {
            Some((r, c, p)) => {
                if (r, c) != (rate, channels) {
                    return Err(AudioError::Unsupported(format!(
                        "{container} stream changes from {r} Hz × {c} channels to {rate} Hz × {channels} mid-stream"
                    )));
                }
                (r, c, p)
            }
            None => {
                let rate = check_rate(rate)?;
                if channels == 0 {
                    return Err(AudioError::Corrupt(format!(
                        "{container} stream has 0 channels"
                    )));
                }
                opts.limits.check_channels(channels)?;
                let pick = Pick::resolve(opts.channel, channels)?;
                stream = Some((rate, channels, pick));
                (rate, channels, pick)
            }
        };
        let _ = channels;
        frames += buffer.frames() as u64;
        opts.limits.check_frames(frames, rate)?;
        append_channel(&buffer, pick, samples);
        progress(samples, rate);
    }
    let Some((rate, channels, pick)) = stream else {
        if consecutive_errors > 0 {
            return Err(AudioError::Corrupt(format!(
                "{container}/{codec}: no packet decoded ({last_error})"
            )));
        }
        return Err(AudioError::Empty);
    };
    if frames == 0 {
        return Err(AudioError::Empty);
    }
    if let Some(h) = wav {
        // Cross-check the WAV header with what symphonia decoded.
        if (h.sample_rate, h.channels) != (rate, channels) {
            return Err(AudioError::Corrupt(format!(
                "WAV header says {} Hz × {} channels, the decoder found {rate} Hz × {channels}",
                h.sample_rate, h.channels
            )));
        }
        if PCM_LIKE_TAGS.contains(&h.format_tag) && frames != (h.data_len / h.block_align) as u64 {
            return Err(AudioError::Truncated(format!(
                "WAV data holds {} frames but {frames} were decoded",
                h.data_len / h.block_align
            )));
        }
    }
    let info = SourceInfo {
        container,
        codec,
        sample_rate: rate,
        channels,
        frames,
        duration_seconds: frames as f64 / f64::from(rate),
    };
    Ok((info, pick.reported(channels)))
}

/// Appends the picked channel of `buffer` to `out`, converted to 16-bit integer scale.
fn append_channel(buffer: &GenericAudioBufferRef<'_>, pick: Pick, out: &mut Vec<f32>) {
    match buffer {
        GenericAudioBufferRef::U8(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::U16(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::U24(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::U32(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::S8(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::S16(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::S24(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::S32(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::F32(b) => append_typed(b, pick, out),
        GenericAudioBufferRef::F64(b) => append_typed(b, pick, out),
    }
}

/// Symphonia's sample conversion maps every format onto [-1, 1) exactly (division by a power of
/// two); multiplying by 32768 gives the 16-bit integer scale exactly for every integer format.
fn append_typed<S: Sample + IntoSample<f32>>(
    buffer: &AudioBuffer<S>,
    pick: Pick,
    out: &mut Vec<f32>,
) {
    const SCALE: f32 = 32768.0;
    let convert = |s: &S| -> f32 { (*s).into_sample() * SCALE };
    match pick {
        Pick::One(c) => {
            if let Some(plane) = buffer.plane(c) {
                out.extend(plane.iter().map(convert));
            }
        }
        Pick::Mix => {
            let planes: Vec<&[S]> = buffer.iter_planes().collect();
            let Some(first) = planes.first() else { return };
            let start = out.len();
            out.extend(first.iter().map(convert));
            for plane in &planes[1..] {
                for (o, s) in out[start..].iter_mut().zip(plane.iter()) {
                    *o += convert(s);
                }
            }
            let scale = 1.0 / planes.len() as f32;
            for o in &mut out[start..] {
                *o *= scale;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::tests::{canonical_pcm16, fixture};
    use super::super::{ChannelSelect, Encoding, Limits, decode as decode_any};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A minimal WAV writer: `fmt ` (16 bytes, or 40 for WAVE_FORMAT_EXTENSIBLE) and `data`.
    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        wav_sized(tag, channels, rate, bits, data, data.len() as u32)
    }

    fn wav_sized(
        tag: u16,
        channels: u16,
        rate: u32,
        bits: u16,
        data: &[u8],
        data_size: u32,
    ) -> Vec<u8> {
        let block_align = channels * bits.div_ceil(8);
        let extensible = tag == WAVE_FORMAT_EXTENSIBLE;
        let fmt_len: u32 = if extensible { 40 } else { 16 };
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(4 + 8 + fmt_len + 8 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&fmt_len.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        out.extend_from_slice(&block_align.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        if extensible {
            out.extend_from_slice(&22u16.to_le_bytes());
            out.extend_from_slice(&bits.to_le_bytes());
            let mask: u32 = if channels == 2 { 3 } else { 4 };
            out.extend_from_slice(&mask.to_le_bytes());
            // KSDATAFORMAT_SUBTYPE_PCM
            out.extend_from_slice(&[
                0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38,
                0x9B, 0x71,
            ]);
        }
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_size.to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn pcm16_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn auto() -> DecodeOptions {
        DecodeOptions::default()
    }

    fn with_channel(channel: ChannelSelect) -> DecodeOptions {
        DecodeOptions {
            channel,
            ..DecodeOptions::default()
        }
    }

    fn test_signal(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (((i * 7919) % 65536) as i32 - 32768) as i16)
            .collect()
    }

    /// Pearson correlation of `a` against `b` shifted by `lag`, over their overlap.
    fn correlation_at(a: &[f32], b: &[f32], lag: isize) -> f64 {
        let pairs: Vec<(f64, f64)> = (0..a.len())
            .filter_map(|i| {
                let j = i as isize + lag;
                (j >= 0 && (j as usize) < b.len())
                    .then(|| (f64::from(a[i]), f64::from(b[j as usize])))
            })
            .collect();
        let n = pairs.len() as f64;
        let (ma, mb) = pairs
            .iter()
            .fold((0.0, 0.0), |(x, y), (p, q)| (x + p / n, y + q / n));
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (p, q) in pairs {
            sab += (p - ma) * (q - mb);
            saa += (p - ma).powi(2);
            sbb += (q - mb).powi(2);
        }
        sab / (saa.sqrt() * sbb.sqrt())
    }

    fn best_correlation(a: &[f32], b: &[f32], max_lag: isize) -> (isize, f64) {
        (-max_lag..=max_lag)
            .map(|lag| (lag, correlation_at(a, b, lag)))
            .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best })
    }

    #[test]
    fn golden_pcm16_wavs_decode_exactly() {
        for (name, rate, frames) in [
            ("a_espeak_en_us", 16000, 24_300),
            ("b_espeak_en_f3", 16000, 62_095),
            ("c_flite_slt", 16000, 165_600),
            ("d_asterisk_allison_16k", 16000, 38_204),
            ("e_silence_noise", 16000, 32_000),
            ("d_8k_pcm16", 8000, 19_102),
        ] {
            let path = format!("golden/inputs/{name}.wav");
            let d = decode_any(&fixture(&path), &auto()).unwrap();
            assert_eq!(d.waveform.samples, canonical_pcm16(&path), "{name}");
            assert_eq!(d.waveform.sample_rate, rate);
            assert_eq!(d.info.frames, frames);
            assert_eq!(d.info.container, "wav");
            assert_eq!(d.info.codec, "pcm_s16le");
            assert_eq!(d.info.channels, 1);
            assert_eq!(d.channel, ChannelSelect::Index(0));
            assert!((d.info.duration_seconds - frames as f64 / f64::from(rate)).abs() < 1e-12);
        }
    }

    /// symphonia's G.711 WAV decoding is checked against sox's decoding, sample for sample, and
    /// against the headerless bytes decoded by our own tables.
    #[test]
    fn g711_wavs_match_sox_and_raw_decoding() {
        for (law, encoding, codec) in [
            ("ulaw", Encoding::Mulaw, "pcm_mulaw"),
            ("alaw", Encoding::Alaw, "pcm_alaw"),
        ] {
            let d =
                decode_any(&fixture(&format!("golden/inputs/d_8k_{law}.wav")), &auto()).unwrap();
            let expected = canonical_pcm16(&format!("golden/inputs/d_8k_{law}_decoded_pcm16.wav"));
            assert_eq!(d.waveform.samples, expected, "{law}");
            assert_eq!(d.info.codec, codec);
            assert_eq!(d.waveform.sample_rate, 8000);
            let raw_opts = DecodeOptions {
                encoding,
                sample_rate: Some(8000),
                ..DecodeOptions::default()
            };
            let raw =
                decode_any(&fixture(&format!("golden/inputs/d_8k.{law}")), &raw_opts).unwrap();
            assert_eq!(raw.waveform.samples, d.waveform.samples);
        }
        // symphonia (which needs the 18-byte fmt chunk sox writes) agrees sample for sample.
        for law in ["ulaw", "alaw"] {
            let bytes = fixture(&format!("golden/inputs/d_8k_{law}.wav"));
            let (header, data) = scan_wav(&bytes, &auto()).unwrap().unwrap();
            let mut via_symphonia = vec![1.0; 3];
            decode_symphonia(
                &data,
                Some(&header),
                &auto(),
                &mut via_symphonia,
                &mut |_, _| {},
            )
            .unwrap();
            let expected = canonical_pcm16(&format!("golden/inputs/d_8k_{law}_decoded_pcm16.wav"));
            assert_eq!(via_symphonia, expected, "symphonia {law}");
        }
        // Every code of both laws through a WAV, against the tables.
        let codes: Vec<u8> = (0..=255).collect();
        for (tag, table) in [
            (7u16, &super::super::g711::ULAW_TABLE),
            (6, &super::super::g711::ALAW_TABLE),
        ] {
            let d = decode_any(&wav(tag, 1, 8000, 8, &codes), &auto()).unwrap();
            let expected: Vec<f32> = table.iter().map(|&s| f32::from(s)).collect();
            assert_eq!(d.waveform.samples, expected, "tag {tag}");
        }
    }

    #[test]
    fn pcm_round_trips_every_sample_format() {
        let s16 = test_signal(1000);
        let d = decode_any(&wav(1, 1, 16000, 16, &pcm16_bytes(&s16)), &auto()).unwrap();
        assert_eq!(
            d.waveform.samples,
            s16.iter().map(|&s| f32::from(s)).collect::<Vec<_>>()
        );

        // 24-bit: value v becomes v / 256 in 16-bit scale.
        let s24: Vec<i32> = (0..1000)
            .map(|i| ((i * 16_777) % (1 << 24)) - (1 << 23))
            .collect();
        let bytes: Vec<u8> = s24
            .iter()
            .flat_map(|v| v.to_le_bytes()[..3].to_vec())
            .collect();
        let d = decode_any(&wav(1, 1, 16000, 24, &bytes), &auto()).unwrap();
        assert_eq!(d.info.codec, "pcm_s24le");
        assert_eq!(
            d.waveform.samples,
            s24.iter().map(|&v| v as f32 / 256.0).collect::<Vec<_>>()
        );

        // 32-bit: v / 65536 (within f32 precision).
        let s32: Vec<i32> = (0..1000)
            .map(|i: i32| i.wrapping_mul(4_294_967).wrapping_sub(1 << 30))
            .collect();
        let bytes: Vec<u8> = s32.iter().flat_map(|v| v.to_le_bytes()).collect();
        let d = decode_any(&wav(1, 1, 16000, 32, &bytes), &auto()).unwrap();
        for (got, v) in d.waveform.samples.iter().zip(&s32) {
            let want = f64::from(*v) / 65536.0;
            assert!(
                (f64::from(*got) - want).abs() <= want.abs() * 1e-6 + 1e-3,
                "{got} vs {want}"
            );
        }

        // float32 / float64 in [-1, 1): x · 32768 exactly (the values are exact in f32).
        let floats: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 512.0).collect();
        let bytes: Vec<u8> = floats.iter().flat_map(|v| v.to_le_bytes()).collect();
        let d = decode_any(&wav(3, 1, 16000, 32, &bytes), &auto()).unwrap();
        assert_eq!(
            d.waveform.samples,
            floats.iter().map(|v| v * 32768.0).collect::<Vec<_>>()
        );
        let bytes: Vec<u8> = floats
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
        let d = decode_any(&wav(3, 1, 16000, 64, &bytes), &auto()).unwrap();
        assert_eq!(
            d.waveform.samples,
            floats.iter().map(|v| v * 32768.0).collect::<Vec<_>>()
        );

        // 8-bit unsigned: (u − 128) · 256.
        let u8s: Vec<u8> = (0..=255).collect();
        let d = decode_any(&wav(1, 1, 8000, 8, &u8s), &auto()).unwrap();
        assert_eq!(
            d.waveform.samples,
            u8s.iter()
                .map(|&u| (f32::from(u) - 128.0) * 256.0)
                .collect::<Vec<_>>()
        );

        // WAVE_FORMAT_EXTENSIBLE carrying PCM16.
        let d = decode_any(
            &wav(WAVE_FORMAT_EXTENSIBLE, 1, 8000, 16, &pcm16_bytes(&s16)),
            &auto(),
        )
        .unwrap();
        assert_eq!(
            d.waveform.samples,
            s16.iter().map(|&s| f32::from(s)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn stereo_channel_selection() {
        let left = test_signal(800);
        let right: Vec<i16> = left.iter().map(|&s| s / 3 + 7).collect();
        let interleaved: Vec<i16> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l, r])
            .collect();
        let file = wav(1, 2, 8000, 16, &pcm16_bytes(&interleaved));
        let as_f32 = |v: &[i16]| v.iter().map(|&s| f32::from(s)).collect::<Vec<_>>();
        for (select, expected, reported) in [
            (ChannelSelect::Default, as_f32(&left), ChannelSelect::Left),
            (ChannelSelect::Left, as_f32(&left), ChannelSelect::Left),
            (ChannelSelect::Index(0), as_f32(&left), ChannelSelect::Left),
            (ChannelSelect::Right, as_f32(&right), ChannelSelect::Right),
            (
                ChannelSelect::Index(1),
                as_f32(&right),
                ChannelSelect::Right,
            ),
        ] {
            let d = decode_any(&file, &with_channel(select)).unwrap();
            assert_eq!(d.waveform.samples, expected, "{select}");
            assert_eq!(d.channel, reported);
            assert_eq!(d.info.channels, 2);
            assert_eq!(d.info.frames, 800);
        }
        let mix = decode_any(&file, &with_channel(ChannelSelect::Mix)).unwrap();
        assert_eq!(mix.channel, ChannelSelect::Mix);
        for ((m, l), r) in mix.waveform.samples.iter().zip(&left).zip(&right) {
            assert!((m - (f32::from(*l) + f32::from(*r)) / 2.0).abs() < 1e-3);
        }
        assert!(matches!(
            decode_any(&file, &with_channel(ChannelSelect::Index(2))),
            Err(AudioError::ChannelOutOfRange { channels: 2, .. })
        ));
        // Stereo float and G.711 go through the same pick.
        let ulaw: Vec<u8> = (0..=255u8).flat_map(|c| [c, 0xFF]).collect();
        let d = decode_any(
            &wav(7, 2, 8000, 8, &ulaw),
            &with_channel(ChannelSelect::Right),
        )
        .unwrap();
        assert!(d.waveform.samples.iter().all(|&s| s == 0.0));
        let mono = decode_any(
            &fixture("golden/inputs/d_8k_pcm16.wav"),
            &with_channel(ChannelSelect::Right),
        );
        assert!(matches!(
            mono,
            Err(AudioError::ChannelOutOfRange { channels: 1, .. })
        ));
    }

    #[test]
    fn flac_is_lossless() {
        let d = decode_any(&fixture("audio/speech_8k.flac"), &auto()).unwrap();
        assert_eq!(d.info.container, "flac");
        assert_eq!(d.info.codec, "flac");
        assert_eq!(
            d.waveform.samples,
            canonical_pcm16("golden/inputs/d_8k_pcm16.wav")
        );
    }

    #[test]
    fn lossy_and_adpcm_decode_close_to_the_source() {
        let source = canonical_pcm16("golden/inputs/d_8k_pcm16.wav");
        for (name, container, codec, max_extra, min_corr) in [
            ("audio/speech_8k.mp3", "mp3", "mp3", 2400, 0.9),
            ("audio/speech_8k.ogg", "ogg", "vorbis", 0, 0.9),
            (
                "audio/speech_8k_ima_adpcm.wav",
                "wav",
                "adpcm_ima_wav",
                1100,
                0.97,
            ),
            (
                "audio/speech_8k_ms_adpcm.wav",
                "wav",
                "adpcm_ms",
                1100,
                0.97,
            ),
        ] {
            let d = decode_any(&fixture(name), &auto()).unwrap();
            assert_eq!(d.info.container, container, "{name}");
            assert_eq!(d.info.codec, codec, "{name}");
            assert_eq!(d.waveform.sample_rate, 8000, "{name}");
            let n = d.waveform.samples.len();
            assert!(
                n >= source.len() && n <= source.len() + max_extra,
                "{name}: {n} samples"
            );
            let (lag, corr) = best_correlation(&source, &d.waveform.samples, 1200);
            assert!(corr > min_corr, "{name}: correlation {corr} at lag {lag}");
            if !name.ends_with(".mp3") {
                assert_eq!(lag, 0, "{name}");
            }
        }
    }

    #[test]
    fn duration_limit_stops_every_format() {
        let limits = Limits {
            max_seconds: 1.0,
            ..Limits::default()
        };
        let opts = DecodeOptions {
            limits,
            ..DecodeOptions::default()
        };
        for name in [
            "golden/inputs/d_8k_pcm16.wav",
            "golden/inputs/d_8k_ulaw.wav",
            "audio/speech_8k.flac",
            "audio/speech_8k.mp3",
            "audio/speech_8k.ogg",
            "audio/speech_8k_ima_adpcm.wav",
            "audio/speech_8k_ms_adpcm.wav",
        ] {
            let err = decode_any(&fixture(name), &opts).unwrap_err();
            assert!(
                matches!(err, AudioError::TooLong { max, .. } if max == 1.0),
                "{name}: {err}"
            );
            assert!(err.is_limit());
        }
    }

    #[test]
    fn hostile_wav_headers_are_typed_errors() {
        let good = wav(1, 1, 8000, 16, &pcm16_bytes(&test_signal(100)));
        let check = |bytes: &[u8], what: &str, ok: fn(&AudioError) -> bool| {
            let err = decode_any(bytes, &auto()).expect_err(what);
            assert!(ok(&err), "{what}: {err:?}");
        };
        check(&good[..12], "RIFF only", |e| {
            matches!(e, AudioError::Corrupt(_))
        });
        check(&good[..36], "fmt, no data", |e| {
            matches!(e, AudioError::Truncated(_))
        });
        check(&good[..30], "fmt cut short", |e| {
            matches!(e, AudioError::Truncated(_))
        });
        check(&good[..100], "data shorter than declared", |e| {
            matches!(e, AudioError::Truncated(_))
        });
        check(&wav(1, 1, 8000, 16, &[1, 2, 3]), "half a frame", |e| {
            matches!(e, AudioError::Truncated(_))
        });
        check(&wav(1, 0, 8000, 16, &[0; 4]), "0 channels", |e| {
            matches!(e, AudioError::Corrupt(_))
        });
        check(&wav(1, 9, 8000, 16, &[0; 18]), "9 channels", |e| {
            matches!(
                e,
                AudioError::TooManyChannels {
                    channels: 9,
                    max: 8
                }
            )
        });
        check(&wav(1, 1, 0, 16, &[0; 4]), "rate 0", |e| {
            matches!(e, AudioError::InvalidSampleRate(0))
        });
        check(&wav(1, 1, 3_000_000, 16, &[0; 4]), "rate 3 MHz", |e| {
            matches!(e, AudioError::InvalidSampleRate(3_000_000))
        });
        check(&wav(1, 1, 8000, 16, &[]), "no samples", |e| {
            matches!(e, AudioError::Empty)
        });
        check(
            &wav(0x55, 1, 8000, 16, &[0; 4]),
            "unknown format tag",
            |e| matches!(e, AudioError::Unsupported(_)),
        );
        let mut zero_align = good.clone();
        zero_align[32..34].copy_from_slice(&0u16.to_le_bytes());
        check(&zero_align, "block align 0", |e| {
            matches!(e, AudioError::Corrupt(_))
        });
        let mut short_fmt = good.clone();
        short_fmt[16..20].copy_from_slice(&8u32.to_le_bytes());
        check(&short_fmt, "fmt of 8 bytes", |e| {
            matches!(e, AudioError::Corrupt(_))
        });
        // data before fmt
        let mut swapped = b"RIFF\0\0\0\0WAVEdata\x04\0\0\0\0\0\0\0".to_vec();
        swapped.extend_from_slice(&good[12..36]);
        check(&swapped, "data before fmt", |e| {
            matches!(e, AudioError::Corrupt(_))
        });
        // A junk chunk claiming 4 GiB: the walk ends and reports the missing fmt.
        let mut junk = b"RIFF\0\0\0\0WAVEjunk\xff\xff\xff\xff".to_vec();
        junk.extend_from_slice(&good[12..]);
        check(&junk, "4 GiB junk chunk", |e| {
            matches!(e, AudioError::Corrupt(_))
        });
        // A header claiming 1 h 20 min in a short file is truncated, not a bomb.
        let lying = wav_sized(1, 1, 8000, 16, &[0; 64], 80_000_000);
        check(&lying, "size lies", |e| {
            matches!(e, AudioError::Truncated(_))
        });
    }

    #[test]
    fn streaming_placeholder_sizes_are_repaired() {
        let samples = test_signal(333);
        let mut data = pcm16_bytes(&samples);
        data.push(0x7F); // a torn final sample from a recorder that was killed
        for size in [0u32, u32::MAX] {
            let d = decode_any(&wav_sized(1, 1, 8000, 16, &data, size), &auto()).unwrap();
            assert_eq!(
                d.waveform.samples,
                samples.iter().map(|&s| f32::from(s)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn garbage_and_mutations_never_panic_or_hang() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_130);
        let garbage: Vec<u8> = (0..5000).map(|_| rng.random()).collect();
        assert!(decode_any(&garbage, &auto()).is_err());
        assert!(matches!(
            decode_any(b"hello, this is not audio", &auto()),
            Err(AudioError::Unsupported(_))
        ));
        let mut fake_flac = b"fLaC".to_vec();
        fake_flac.extend_from_slice(&garbage);
        assert!(decode_any(&fake_flac, &auto()).is_err());
        let mut fake_ogg = b"OggS".to_vec();
        fake_ogg.extend_from_slice(&garbage);
        assert!(decode_any(&fake_ogg, &auto()).is_err());

        for name in [
            "audio/speech_8k.flac",
            "audio/speech_8k.mp3",
            "audio/speech_8k.ogg",
            "audio/speech_8k_ima_adpcm.wav",
            "audio/speech_8k_ms_adpcm.wav",
            "golden/inputs/d_8k_ulaw.wav",
        ] {
            let original = fixture(name);
            // Truncations at several points: a typed error or a shorter decode, never a panic.
            for cut in [
                1,
                4,
                13,
                44,
                100,
                1000,
                original.len() / 2,
                original.len() - 1,
            ] {
                if let Ok(d) = decode_any(&original[..cut], &auto()) {
                    assert!(!d.waveform.samples.is_empty(), "{name} cut {cut}");
                }
            }
            // Random byte corruption.
            for _ in 0..40 {
                let mut bytes = original.clone();
                for _ in 0..rng.random_range(1..20) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                if let Ok(d) = decode_any(&bytes, &auto()) {
                    assert!(
                        d.waveform.samples.len() as f64
                            <= 3600.0 * f64::from(d.waveform.sample_rate)
                    );
                    assert!(
                        d.waveform
                            .samples
                            .iter()
                            .all(|s| s.is_finite() || d.info.codec.starts_with("pcm_f"))
                    );
                }
            }
        }
    }
}
