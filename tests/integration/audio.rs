//! The audio front end through the public API only: files on disk to 16 kHz mono.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use voiceprint::audio::{
    AudioError, ChannelSelect, DecodeOptions, Encoding, Limits, StreamResampler, decode_file,
    resample,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

#[test]
fn every_fixture_format_decodes_and_resamples_to_16k() {
    for name in [
        "golden/inputs/d_8k_pcm16.wav",
        "golden/inputs/d_8k_ulaw.wav",
        "golden/inputs/d_8k_alaw.wav",
        "audio/speech_8k.flac",
        "audio/speech_8k.mp3",
        "audio/speech_8k.ogg",
        "audio/speech_8k_ima_adpcm.wav",
        "audio/speech_8k_ms_adpcm.wav",
    ] {
        let decoded = decode_file(&fixture(name), &DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.waveform.sample_rate, 8000, "{name}");
        let n = decoded.waveform.samples.len();
        assert!((19_102..=21_600).contains(&n), "{name}: {n} samples");
        let peak = decoded
            .waveform
            .samples
            .iter()
            .fold(0f32, |m, s| m.max(s.abs()));
        assert!(
            peak > 1000.0 && peak <= 32768.0,
            "{name}: peak {peak} (int16 scale)"
        );
        let wide = resample(&decoded.waveform.samples, 8000, 16000).unwrap();
        assert_eq!(wide.len(), 2 * n, "{name}");
    }
}

#[test]
fn headerless_file_with_declared_layout() {
    let opts = DecodeOptions {
        encoding: Encoding::Alaw,
        sample_rate: Some(8000),
        channel: ChannelSelect::Mix,
        ..DecodeOptions::default()
    };
    let d = decode_file(&fixture("golden/inputs/d_8k.alaw"), &opts).unwrap();
    assert_eq!(d.info.container, "raw");
    assert_eq!(d.info.codec, "pcm_alaw");
    assert_eq!(d.info.frames, 19_102);
    let missing_rate = DecodeOptions {
        sample_rate: None,
        ..opts
    };
    let err = decode_file(&fixture("golden/inputs/d_8k.alaw"), &missing_rate).unwrap_err();
    assert!(matches!(err, AudioError::MissingSampleRate) && !err.is_limit());
}

#[test]
fn limits_map_to_resource_errors() {
    let tiny = DecodeOptions {
        limits: Limits {
            max_bytes: 1000,
            ..Limits::default()
        },
        ..DecodeOptions::default()
    };
    let err = decode_file(&fixture("audio/speech_8k.flac"), &tiny).unwrap_err();
    assert!(
        matches!(err, AudioError::TooLarge { .. }) && err.is_limit(),
        "{err}"
    );
    let short = DecodeOptions {
        limits: Limits {
            max_seconds: 2.0,
            ..Limits::default()
        },
        ..DecodeOptions::default()
    };
    let err = decode_file(&fixture("audio/speech_8k.ogg"), &short).unwrap_err();
    assert!(
        matches!(err, AudioError::TooLong { .. }) && err.is_limit(),
        "{err}"
    );
}

#[test]
fn streaming_resampler_feeds_in_20ms_packets() {
    let d = decode_file(
        &fixture("golden/inputs/d_8k_ulaw.wav"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let mut stream = StreamResampler::new(8000, 16000).unwrap();
    let mut out = Vec::new();
    for packet in d.waveform.samples.chunks(160) {
        stream.push(packet, &mut out).unwrap();
    }
    stream.flush(&mut out).unwrap();
    assert_eq!(out, resample(&d.waveform.samples, 8000, 16000).unwrap());
}
