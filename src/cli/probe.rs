//! `voiceprint probe`: what an audio file is and how usable it is for verification.

use std::path::PathBuf;

use anyhow::Context;
use voiceprint::audio::{ChannelSelect, DecodeOptions, Encoding, decode_file};
use voiceprint::quality::{VadOptions, assess};

/// Arguments of `voiceprint probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Input audio: WAV (PCM, G.711, ADPCM), FLAC, MP3, Ogg Vorbis, or headerless with --encoding.
    pub audio: PathBuf,
    /// Channel to assess: default (first), left, right, mix or an index.
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
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `voiceprint probe`.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let opts = DecodeOptions {
        encoding: args.encoding,
        sample_rate: args.sample_rate,
        channels: args.channels,
        channel: args.channel,
        limits: super::features::offline_limits(),
    };
    let decoded =
        decode_file(&args.audio, &opts).with_context(|| format!("decode {:?}", args.audio))?;
    let wave = &decoded.waveform;
    let q = assess(&wave.samples, wave.sample_rate, &VadOptions::default()).quality;
    let info = &decoded.info;
    if args.json {
        let v = serde_json::json!({
            "path": args.audio,
            "container": info.container,
            "codec": info.codec,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "channel_used": decoded.channel.to_string(),
            "frames": info.frames,
            "duration_seconds": q.duration_seconds,
            "net_speech_seconds": q.net_speech_seconds,
            "snr_db": q.snr_db,
            "clipping_ratio": q.clipping_ratio,
        });
        println!("{v}");
    } else {
        println!("file        {}", args.audio.display());
        println!("format      {} / {}", info.container, info.codec);
        println!(
            "rate        {} Hz, {} channel(s), using {}",
            info.sample_rate, info.channels, decoded.channel
        );
        println!("duration    {:.3} s", q.duration_seconds);
        println!("net speech  {:.2} s", q.net_speech_seconds);
        println!("snr         {:.1} dB", q.snr_db);
        println!("clipping    {:.4} %", q.clipping_ratio * 100.0);
    }
    Ok(())
}
