//! Decode and resampling throughput of `voiceprint::audio` on the 2.39 s 8 kHz golden prompt.
//!
//! `cargo bench --bench audio`; real-time factors are in benches/README.md.
#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use voiceprint::audio::{
    ChannelSelect, DecodeOptions, Encoding, RawStreamDecoder, StreamResampler, decode, resample,
};

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("audio");
    // 19,102 samples at 8 kHz = 2.388 s of audio per iteration.
    group.throughput(Throughput::Elements(19_102));
    for (label, name) in [
        ("wav_pcm16", "golden/inputs/d_8k_pcm16.wav"),
        ("wav_ulaw", "golden/inputs/d_8k_ulaw.wav"),
        ("flac", "audio/speech_8k.flac"),
        ("mp3", "audio/speech_8k.mp3"),
        ("ogg_vorbis", "audio/speech_8k.ogg"),
        ("wav_ima_adpcm", "audio/speech_8k_ima_adpcm.wav"),
    ] {
        let bytes = read(name);
        let opts = DecodeOptions::default();
        group.bench_function(label, |b| b.iter(|| decode(black_box(&bytes), &opts)));
    }
    let ulaw = read("golden/inputs/d_8k.ulaw");
    let raw = DecodeOptions {
        encoding: Encoding::Mulaw,
        sample_rate: Some(8000),
        ..DecodeOptions::default()
    };
    group.bench_function("raw_ulaw", |b| b.iter(|| decode(black_box(&ulaw), &raw)));
    group.bench_function("raw_ulaw_stream_160B", |b| {
        b.iter(|| {
            let mut dec = RawStreamDecoder::new(Encoding::Mulaw, 1, ChannelSelect::Default)
                .expect("valid layout");
            let mut out = Vec::with_capacity(ulaw.len());
            for chunk in ulaw.chunks(160) {
                dec.push(black_box(chunk), &mut out);
            }
            out
        })
    });
    let samples: Vec<f32> = ulaw
        .iter()
        .map(|&b| f32::from(voiceprint::audio::g711::ulaw_to_linear(b)))
        .collect();
    group.bench_function("resample_8k_to_16k", |b| {
        b.iter(|| resample(black_box(&samples), 8000, 16000))
    });
    let mut reused = StreamResampler::new(8000, 16000).expect("valid rates");
    group.bench_function("stream_resampler_reused_8k_to_16k", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(2 * samples.len());
            let pushed = reused.push(black_box(&samples), &mut out);
            let flushed = reused.flush(&mut out);
            (pushed, flushed, out)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
