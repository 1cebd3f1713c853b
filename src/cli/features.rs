//! `voiceprint features`: Kaldi fbank / MFCC of an audio file to a float32 `.npy` matrix.
//!
//! PCM16 / G.711 WAV files and headerless input are streamed (decode → optional resample →
//! features in blocks), so memory stays at the output matrix plus a few megabytes whatever the
//! length; other containers are decoded whole first.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use voiceprint::audio::{
    ChannelSelect, DecodeOptions, Encoding, Limits, RawStreamDecoder, StreamResampler, decode_file,
    resample,
};
use voiceprint::features::{
    Fbank, FbankOptions, FeatureMatrix, FrameOptions, Mfcc, MfccOptions, apply_cmn,
};

/// Feature recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// 80-bin log-mel filterbank (CAM++ input; meant for 16 kHz).
    Fbank80,
    /// 23-bin log-mel filterbank (Kaldi's default bin count; 8 kHz telephony).
    Fbank23,
    /// 13 MFCCs from 23 bins, c0 = log energy (Kaldi defaults).
    Mfcc13,
}

/// Arguments of `voiceprint features`.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// Input audio: WAV (PCM, G.711, ADPCM), FLAC, MP3, Ogg Vorbis, or headerless with --encoding.
    pub audio: PathBuf,
    /// Which features.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Subtract each dimension's mean over the utterance (the CAM++ input convention).
    #[arg(long)]
    pub cmn: bool,
    /// Resample to this rate (Hz) first; default: the file's own rate.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Channel to use: default (first), left, right, mix or an index.
    #[arg(long, default_value = "default")]
    pub channel: ChannelSelect,
    /// Input encoding: auto (container) or headerless pcm16le, mulaw, alaw.
    #[arg(long, default_value = "auto")]
    pub encoding: Encoding,
    /// Sample rate of headerless input, Hz.
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Interleaved channels of headerless input.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Output `.npy` file (float32, frames × dimension).
    #[arg(long)]
    pub out: PathBuf,
}

/// Limits for an offline tool run on the operator's own files: generous, but still bounded.
pub(crate) fn offline_limits() -> Limits {
    Limits {
        max_bytes: 16 << 30,
        max_seconds: 8.0 * 3600.0,
        max_channels: 64,
    }
}

enum Extractor {
    Fbank(Fbank),
    Mfcc(Mfcc),
}

impl Extractor {
    fn new(kind: Kind, rate: u32) -> anyhow::Result<Self> {
        let ex = match kind {
            Kind::Fbank80 => Extractor::Fbank(Fbank::new(&FbankOptions::kaldi(rate, 80))?),
            Kind::Fbank23 => Extractor::Fbank(Fbank::new(&FbankOptions::kaldi(rate, 23))?),
            Kind::Mfcc13 => Extractor::Mfcc(Mfcc::new(&MfccOptions::kaldi(rate))?),
        };
        Ok(ex)
    }

    fn frame(&self) -> &FrameOptions {
        match self {
            Extractor::Fbank(f) => &f.options().frame,
            Extractor::Mfcc(m) => &m.options().fbank.frame,
        }
    }

    fn dim(&self) -> usize {
        match self {
            Extractor::Fbank(f) => f.dim(),
            Extractor::Mfcc(m) => m.dim(),
        }
    }

    fn compute(&self, samples: &[f32]) -> FeatureMatrix {
        match self {
            Extractor::Fbank(f) => f.compute(samples),
            Extractor::Mfcc(m) => m.compute(samples),
        }
    }
}

/// Block-wise extraction: buffers samples and computes every complete frame once a block is full.
struct Blocks<'a> {
    ex: &'a Extractor,
    pending: Vec<f32>,
    out: Vec<f32>,
}

const BLOCK: usize = 1 << 16;

impl<'a> Blocks<'a> {
    fn new(ex: &'a Extractor) -> Self {
        Self {
            ex,
            pending: Vec::with_capacity(2 * BLOCK),
            out: Vec::new(),
        }
    }

    fn push(&mut self, samples: &[f32]) {
        self.pending.extend_from_slice(samples);
        if self.pending.len() >= BLOCK {
            self.drain();
        }
    }

    fn drain(&mut self) {
        let m = self.ex.compute(&self.pending);
        let consumed = m.num_frames() * self.ex.frame().frame_shift_samples();
        self.out.extend_from_slice(m.as_slice());
        self.pending.drain(..consumed.min(self.pending.len()));
    }

    fn finish(mut self) -> anyhow::Result<FeatureMatrix> {
        self.drain();
        Ok(FeatureMatrix::new(self.out, self.ex.dim())?)
    }
}

/// Where the samples of a streamable file are: encoding, rate, channels, data byte range.
struct RawLayout {
    encoding: Encoding,
    sample_rate: u32,
    channels: usize,
    offset: u64,
    len: u64,
}

/// Finds the data chunk of a PCM16 / G.711 WAV; `None` for anything else (decoded whole instead).
fn wav_layout(path: &Path) -> anyhow::Result<Option<RawLayout>> {
    let mut f = BufReader::new(File::open(path).with_context(|| format!("open {path:?}"))?);
    let file_len = f.get_ref().metadata()?.len();
    let mut head = [0u8; 12];
    if f.read_exact(&mut head).is_err() || &head[..4] != b"RIFF" || &head[8..] != b"WAVE" {
        return Ok(None);
    }
    let mut pos = 12u64;
    let mut fmt: Option<(Encoding, usize, u32)> = None;
    loop {
        let mut ch = [0u8; 8];
        if f.read_exact(&mut ch).is_err() {
            return Ok(None);
        }
        let len = u64::from(u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]));
        let body = pos + 8;
        match &ch[..4] {
            b"fmt " => {
                let mut b = vec![0u8; len.min(64) as usize];
                f.read_exact(&mut b)?;
                if b.len() < 16 {
                    return Ok(None);
                }
                let mut tag = u16::from_le_bytes([b[0], b[1]]);
                let channels = usize::from(u16::from_le_bytes([b[2], b[3]]));
                let rate = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                let bits = u16::from_le_bytes([b[14], b[15]]);
                if tag == 0xFFFE && b.len() >= 26 {
                    tag = u16::from_le_bytes([b[24], b[25]]);
                }
                fmt = match (tag, bits) {
                    (1, 16) => Some((Encoding::Pcm16Le, channels, rate)),
                    (6, 8) => Some((Encoding::Alaw, channels, rate)),
                    (7, 8) => Some((Encoding::Mulaw, channels, rate)),
                    _ => return Ok(None),
                };
            }
            b"data" => {
                let Some((encoding, channels, sample_rate)) = fmt else {
                    return Ok(None);
                };
                // Streaming writers leave 0 or 0xFFFFFFFF: take the rest of the file.
                let avail = file_len.saturating_sub(body);
                let len = if len == 0 || len == 0xFFFF_FFFF {
                    avail
                } else {
                    len.min(avail)
                };
                return Ok(Some(RawLayout {
                    encoding,
                    sample_rate,
                    channels,
                    offset: body,
                    len,
                }));
            }
            _ => {}
        }
        pos = body + len + (len & 1);
        if pos >= file_len {
            return Ok(None);
        }
        f.seek(SeekFrom::Start(pos))?;
    }
}

fn stream_features(
    path: &Path,
    layout: &RawLayout,
    args: &FeaturesArgs,
) -> anyhow::Result<FeatureMatrix> {
    let limits = offline_limits();
    if layout.channels == 0 || layout.channels > limits.max_channels {
        bail!("{} channels", layout.channels);
    }
    let target = args.rate.unwrap_or(layout.sample_rate);
    let ex = Extractor::new(args.kind, target)
        .with_context(|| format!("{:?} at {target} Hz", args.kind))?;
    let mut decoder = RawStreamDecoder::new(layout.encoding, layout.channels, args.channel)?;
    let mut resampler = if target != layout.sample_rate {
        Some(StreamResampler::new(layout.sample_rate, target)?)
    } else {
        None
    };
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(layout.offset))?;
    let mut reader = file.take(layout.len);
    let mut bytes = vec![0u8; 1 << 18];
    let mut samples = Vec::with_capacity(1 << 18);
    let mut resampled = Vec::with_capacity(1 << 18);
    let mut blocks = Blocks::new(&ex);
    loop {
        let n = reader.read(&mut bytes)?;
        if n == 0 {
            break;
        }
        samples.clear();
        decoder.push(&bytes[..n], &mut samples);
        match resampler.as_mut() {
            Some(r) => {
                resampled.clear();
                r.push(&samples, &mut resampled)?;
                blocks.push(&resampled);
            }
            None => blocks.push(&samples),
        }
    }
    if let Some(r) = resampler.as_mut() {
        resampled.clear();
        r.flush(&mut resampled)?;
        blocks.push(&resampled);
    }
    blocks.finish()
}

fn whole_file_features(args: &FeaturesArgs) -> anyhow::Result<FeatureMatrix> {
    let opts = DecodeOptions {
        encoding: args.encoding,
        sample_rate: args.sample_rate,
        channels: args.channels,
        channel: args.channel,
        limits: offline_limits(),
    };
    let decoded =
        decode_file(&args.audio, &opts).with_context(|| format!("decode {:?}", args.audio))?;
    let mut wave = decoded.waveform;
    if let Some(rate) = args.rate.filter(|&r| r != wave.sample_rate) {
        wave.samples = resample(&wave.samples, wave.sample_rate, rate)?;
        wave.sample_rate = rate;
    }
    let ex = Extractor::new(args.kind, wave.sample_rate)
        .with_context(|| format!("{:?} at {} Hz", args.kind, wave.sample_rate))?;
    Ok(ex.compute(&wave.samples))
}

/// Runs `voiceprint features`.
pub fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    let layout = match args.encoding {
        Encoding::Auto => wav_layout(&args.audio)?,
        encoding => {
            let Some(sample_rate) = args.sample_rate else {
                bail!("headerless input needs --sample-rate");
            };
            let len = std::fs::metadata(&args.audio)
                .with_context(|| format!("open {:?}", args.audio))?
                .len();
            Some(RawLayout {
                encoding,
                sample_rate,
                channels: args.channels,
                offset: 0,
                len,
            })
        }
    };
    let mut m = match &layout {
        Some(l) => stream_features(&args.audio, l, &args)?,
        None => whole_file_features(&args)?,
    };
    if args.cmn {
        apply_cmn(&mut m);
    }
    voiceprint::npy::write_f32_matrix(&args.out, &m)
        .with_context(|| format!("write {:?}", args.out))?;
    eprintln!(
        "{} frames × {} → {}",
        m.num_frames(),
        m.dim(),
        args.out.display()
    );
    Ok(())
}
