//! Channel detection and calibration by channel pairing: the real model on real telephone and
//! linear-PCM recordings, and the thresholds a real server applies to each pairing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use voiceprint::audio::{DecodeOptions, decode_file};
use voiceprint::proto::v1 as pb;
use voiceprint::score::Channel;

use crate::service::{BANK, Server, config, engine, fixture, req};

#[test]
fn telephone_audio_is_found_by_codec_and_by_spectrum() {
    let engine = engine();
    let opts = DecodeOptions::default();
    // 8 kHz linear PCM of a studio prompt: energy below 300 Hz, so wideband for calibration.
    let pcm = engine
        .analyze_file(&fixture("allison-test"), &opts)
        .unwrap();
    assert_eq!(pcm.channel, Channel::Wideband);
    // Its G.711 µ-law copy (300–3400 Hz band-pass): telephone by codec ...
    let ulaw = decode_file(&fixture("allison-test.ulaw"), &opts).unwrap();
    assert_eq!(ulaw.info.codec, "pcm_mulaw");
    assert_eq!(
        engine.analyze_decoded(&ulaw).unwrap().channel,
        Channel::Telephone
    );
    // ... and by spectrum alone once decoded to linear samples (a PCM recording of a call).
    let by_spectrum = engine.analyze_waveform(&ulaw.waveform).unwrap();
    assert_eq!(by_spectrum.channel, Channel::Telephone);
    assert_eq!(engine.detect_channel(&ulaw).unwrap(), Channel::Telephone);
    // The two copies embed close together, and the channel did not change the embedding path.
    let (a, b) = (pcm.embedding.unwrap(), by_spectrum.embedding.unwrap());
    let cos: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(cos > 0.4, "same prompt, two channels: cosine {cos}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_applies_the_threshold_of_its_channel_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), true);
    cfg.required_speech_seconds = 5.0;
    let server = Server::start(cfg).await;
    let mut c = server.client.clone();
    let clip = |name: &str| pb::Audio {
        data: std::fs::read(fixture(name)).unwrap(),
        ..Default::default()
    };
    for (speaker, name) in [("wide", "allison-enroll"), ("tel", "allison-test.ulaw")] {
        let r = c
            .enroll(req(
                pb::EnrollRequest {
                    speaker_id: speaker.into(),
                    audio: vec![clip(name)],
                    consent_reference: Some("consent".into()),
                    overwrite: false,
                },
                Some(BANK),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.required_speech_seconds, 0.0, "{speaker}: {r:?}");
    }
    let thresholds = engine().scorer().thresholds(0.01).unwrap();
    let (w, t) = (Some(Channel::Wideband), Some(Channel::Telephone));
    for (speaker, probe, expected) in [
        ("wide", "allison-test", thresholds.for_pair(w, w)),
        ("wide", "allison-test.ulaw", thresholds.for_pair(w, t)),
        ("tel", "allison-test.ulaw", thresholds.for_pair(t, t)),
        ("tel", "allison-test", thresholds.for_pair(t, w)),
    ] {
        let r = c
            .verify(req(
                pb::VerifyRequest {
                    speaker_id: speaker.into(),
                    audio: Some(clip(probe)),
                    target_far: Some(0.01),
                },
                Some(BANK),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.threshold, expected, "{speaker} vs {probe}");
        let accept = r.llr >= r.threshold;
        assert_eq!(
            r.decision == pb::Decision::Accept as i32,
            accept,
            "{speaker} vs {probe}: {r:?}"
        );
    }
    // Three distinct pairings, three distinct thresholds.
    let set = [
        thresholds.for_pair(w, w),
        thresholds.for_pair(w, t),
        thresholds.for_pair(t, t),
    ];
    assert!(
        set[0] != set[1] && set[1] != set[2] && set[0] != set[2],
        "{set:?}"
    );
    server.stop().await;
}

/// The live path keeps the same frames as the batch path (speech and the short pauses between
/// it), so one call streamed in 20 ms chunks embeds like the whole recording.
#[test]
fn live_session_embeds_like_the_batch_path() {
    use voiceprint::audio::{ChannelSelect, Encoding};
    use voiceprint::live::{LiveOptions, LiveSession};

    let engine = engine();
    let path = fixture("allison-enroll");
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"data").unwrap() + 8;
    let pcm = &bytes[at..];
    let batch = engine
        .analyze_file(&path, &DecodeOptions::default())
        .unwrap()
        .embedding
        .unwrap();
    let mut opts = LiveOptions::new(Encoding::Pcm16Le, 8_000, 1, ChannelSelect::Index(0));
    opts.segment_seconds = 600.0; // one segment: the whole call, as in the batch path
    let mut live = LiveSession::new(engine, opts).unwrap();
    for chunk in pcm.chunks(320) {
        live.push(chunk).unwrap();
    }
    let streamed = live.finish().unwrap().unwrap();
    let cos: f32 = batch.iter().zip(&streamed).map(|(a, b)| a * b).sum();
    assert!(cos > 0.99, "batch vs live cosine {cos}");
}

/// Byte inputs go through the pooled, fused `FrontEnd`; the analysis is exactly that of decoding
/// first and analysing the waveform, at 8 and 16 kHz, for G.711 and for a stereo channel pick,
/// and a reused front end gives the same again.
#[test]
fn byte_inputs_through_the_front_end_match_the_decoded_path() {
    use std::path::Path;
    use voiceprint::audio::{ChannelSelect, decode};

    let engine = engine();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let cases = [
        (fixture("allison-test"), ChannelSelect::default()),
        (fixture("allison-test.ulaw"), ChannelSelect::default()),
        (
            root.join("golden/inputs/d_asterisk_allison_16k.wav"),
            ChannelSelect::default(),
        ),
        (
            root.join("eval/stereo_allison_carlo.wav"),
            ChannelSelect::Right,
        ),
    ];
    for round in 0..2 {
        for (path, channel) in &cases {
            let bytes = std::fs::read(path).unwrap();
            let opts = DecodeOptions {
                channel: *channel,
                ..DecodeOptions::default()
            };
            let fused = engine.analyze(&bytes, &opts).unwrap();
            let decoded = engine
                .analyze_decoded(&decode(&bytes, &opts).unwrap())
                .unwrap();
            let name = path.display();
            assert_eq!(fused.quality, decoded.quality, "{name} (round {round})");
            assert_eq!(fused.channel, decoded.channel, "{name}");
            assert_eq!(fused.whole_utterance, decoded.whole_utterance, "{name}");
            let (a, b) = (fused.embedding.unwrap(), decoded.embedding.unwrap());
            assert_eq!(a, b, "{name} (round {round})");
        }
    }
}
