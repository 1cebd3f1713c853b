//! `voiceprint embed`: one file to one embedding, for debugging and parity checks.

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::json;

use voiceprint::audio::{ChannelSelect, DecodeOptions};
use voiceprint::pipeline::{Engine, EngineConfig};

/// Arguments of `voiceprint embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Audio file (any supported format).
    pub audio: PathBuf,
    /// Print `{"embedding": [...], "quality": {...}, "model": "..."}`.
    #[arg(long)]
    pub json: bool,
    /// Embed the whole utterance exactly as the reference does (16 kHz fbank80 of all samples, mean
    /// removed; no VAD, no L2 normalisation) instead of the production path.
    #[arg(long)]
    pub raw: bool,
    /// Channel of a multi-channel file: `left`, `right`, `mix` or an index.
    #[arg(long)]
    pub channel: Option<ChannelSelect>,
    /// Model checkpoint (default: the fetched CAM++ model in the model directory).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
}

/// Runs `voiceprint embed`.
pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())
            .context("cannot find the model (pass --model PATH or fetch it)")?,
    };
    let engine = Engine::load(EngineConfig::new(model_path)).context("cannot load the model")?;
    let opts = DecodeOptions {
        channel: args.channel.unwrap_or_default(),
        ..DecodeOptions::default()
    };
    let decoded = voiceprint::audio::decode_file(&args.audio, &opts)
        .with_context(|| format!("cannot decode {}", args.audio.display()))?;
    let analysis = engine
        .analyze_decoded(&decoded)
        .with_context(|| format!("cannot analyse {}", args.audio.display()))?;
    let embedding = if args.raw {
        engine
            .embed_raw(&decoded.waveform)
            .with_context(|| format!("cannot embed {}", args.audio.display()))?
    } else {
        analysis
            .embedding
            .context("no speech found to embed (try --raw)")?
    };
    let q = &analysis.quality;
    let quality = json!({
        "duration_seconds": q.duration_seconds,
        "net_speech_seconds": q.net_speech_seconds,
        "snr_db": q.snr_db,
        "clipping_ratio": q.clipping_ratio,
    });
    if args.json {
        let out = json!({
            "embedding": embedding,
            "quality": quality,
            "model": engine.model_version(),
            "mode": if args.raw { "raw" } else { "production" },
            "channel": analysis.channel.name(),
        });
        println!("{out}");
    } else {
        println!(
            "model {} ({} path)",
            engine.model_version(),
            if args.raw { "raw" } else { "production" }
        );
        println!(
            "duration {:.2} s, net speech {:.2} s, SNR {:.1} dB, clipping {:.4}, channel {}",
            q.duration_seconds,
            q.net_speech_seconds,
            q.snr_db,
            q.clipping_ratio,
            analysis.channel.name()
        );
        let values: Vec<String> = embedding.iter().map(|v| format!("{v:.6}")).collect();
        println!("embedding ({} dims): {}", embedding.len(), values.join(" "));
    }
    Ok(())
}
