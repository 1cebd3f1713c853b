//! Live verification (`StreamVerify`) and replay detection against a real server: a stereo call
//! (agent left, customer right) built from real speech, sent as G.711 µ-law chunks paced like RTP
//! (accelerated ten times).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

use voiceprint::audio::{self, DecodeOptions, g711};
use voiceprint::config::{Config, ReplaySettings};
use voiceprint::proto::v1 as pb;
use voiceprint::proto::v1::voiceprint_client::VoiceprintClient;

use crate::service::{
    BANK, Server, audio as clip_audio, config, decision, engine, enroll, fixture, req,
};

/// 8 kHz samples of a fixture clip.
fn samples(name: &str) -> Vec<f32> {
    audio::decode_file(&fixture(name), &DecodeOptions::default())
        .expect("decode fixture")
        .waveform
        .samples
}

fn mulaw(x: f32) -> u8 {
    g711::linear_to_ulaw(x.clamp(-32768.0, 32767.0) as i16)
}

/// Interleaved stereo µ-law: `left` on channel 0, `right` on channel 1, the shorter one padded
/// with silence.
fn stereo_call(left: &[f32], right: &[f32]) -> Vec<u8> {
    let n = left.len().max(right.len());
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        out.push(mulaw(left.get(i).copied().unwrap_or(0.0)));
        out.push(mulaw(right.get(i).copied().unwrap_or(0.0)));
    }
    out
}

fn stream_config(speaker: &str, channel: pb::Channel) -> pb::StreamVerifyRequest {
    pb::StreamVerifyRequest {
        message: Some(pb::stream_verify_request::Message::Config(
            pb::StreamVerifyConfig {
                speaker_id: speaker.into(),
                encoding: pb::Encoding::Mulaw as i32,
                sample_rate: 8000,
                channels: 2,
                channel: channel as i32,
                channel_index: 0,
                target_far: None,
            },
        )),
    }
}

fn chunk(bytes: &[u8]) -> pb::StreamVerifyRequest {
    pb::StreamVerifyRequest {
        message: Some(pb::stream_verify_request::Message::Audio(bytes.to_vec())),
    }
}

/// Sends `first` then `audio` in `chunk_bytes` pieces, sleeping `pace` between them, and collects
/// every response until the server ends the stream. Returns the responses, the final status
/// (OK or the error) and the time from the half-close to the last response.
async fn run_stream(
    c: &mut VoiceprintClient<Channel>,
    first: pb::StreamVerifyRequest,
    audio: Vec<u8>,
    chunk_bytes: usize,
    pace: Duration,
    half_close: bool,
) -> (Vec<pb::VerifyResponse>, Result<(), tonic::Status>, Duration) {
    let (tx, rx) = mpsc::channel(16);
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<Instant>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        for piece in audio.chunks(chunk_bytes.max(1)) {
            if tx.send(chunk(piece)).await.is_err() {
                return;
            }
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
        let _ = closed_tx.send(Instant::now());
        if half_close {
            drop(tx);
        } else {
            // Keep the request side open without sending until the server has answered: its
            // idle timer must fire.
            let _ = done_rx.await;
            drop(tx);
        }
    });
    let mut responses = Vec::new();
    let result = match c
        .stream_verify(req(ReceiverStream::new(rx), Some(BANK)))
        .await
    {
        Err(status) => Err(status),
        Ok(resp) => {
            let mut inbound = resp.into_inner();
            loop {
                match inbound.message().await {
                    Ok(Some(r)) => responses.push(r),
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            }
        }
    };
    drop(done_tx);
    let latency = match closed_rx.await {
        Ok(t) => t.elapsed(),
        Err(_) => Duration::ZERO,
    };
    (responses, result, latency)
}

fn streaming_config(dir: &std::path::Path) -> Config {
    let mut c = config(dir, true);
    c.stream.idle_timeout_seconds = 1.0;
    c
}

/// Running decisions as speech accumulates, a final one at half-close; the customer's channel is
/// accepted, the agent's rejected; chunk size does not change the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_verify_running_and_final_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(streaming_config(dir.path())).await;
    let c = &mut s.client;
    let calibrated = engine().scorer().is_calibrated();
    enroll(c, BANK, "allison", "allison-enroll").await;

    // Agent (carlo) on the left, customer (allison) on the right: about 7 s of speech each.
    let call = stereo_call(&samples("carlo-test"), &samples("allison-test"));
    // 20 ms RTP packets of stereo µ-law (320 bytes), sent at ten times real time.
    let (rs, status, latency) = run_stream(
        c,
        stream_config("allison", pb::Channel::Right),
        call.clone(),
        320,
        Duration::from_millis(2),
        true,
    )
    .await;
    status.expect("stream ends OK");
    let last = rs.last().expect("a final decision");
    assert!(last.r#final, "{rs:?}");
    assert!(rs[..rs.len() - 1].iter().all(|r| !r.r#final));
    let running: Vec<_> = rs
        .iter()
        .filter(|r| !r.r#final && decision(r) != pb::Decision::NotEnoughSpeech)
        .collect();
    assert!(!running.is_empty(), "running decisions expected: {rs:?}");
    // Not enough speech is all the stream can say before 3 s of speech.
    let first_scored = rs
        .iter()
        .position(|r| decision(r) != pb::Decision::NotEnoughSpeech)
        .expect("a scored decision");
    assert!(
        rs[first_scored]
            .quality
            .as_ref()
            .expect("quality")
            .net_speech_seconds
            >= 3.0
    );
    for r in &rs[..first_scored] {
        assert!(r.quality.as_ref().expect("quality").net_speech_seconds < 3.0);
    }
    let q = last.quality.as_ref().expect("quality");
    assert!(
        q.net_speech_seconds > 4.0 && q.duration_seconds > 6.0,
        "{q:?}"
    );
    assert!(!last.decision_id.is_empty());
    if calibrated {
        assert_eq!(decision(last), pb::Decision::Accept, "{last:?}");
    }
    eprintln!(
        "stream_verify: {} responses, final {:?} llr {:.2}, half-close → final {:?}",
        rs.len(),
        decision(last),
        last.llr,
        latency
    );

    // The agent's channel is somebody else.
    let (rs_agent, status, _) = run_stream(
        c,
        stream_config("allison", pb::Channel::Left),
        call.clone(),
        320,
        Duration::ZERO,
        true,
    )
    .await;
    status.expect("stream ends OK");
    let agent = rs_agent.last().expect("final");
    assert_eq!(decision(agent), pb::Decision::Reject, "{agent:?}");
    assert!(last.score > agent.score + 0.2);

    // Any chunk size, including ones that split a stereo frame, gives the same final decision.
    for size in [7usize, 4093, call.len()] {
        let (rs2, status, _) = run_stream(
            c,
            stream_config("allison", pb::Channel::Right),
            call.clone(),
            size,
            Duration::ZERO,
            true,
        )
        .await;
        status.expect("stream ends OK");
        let f = rs2.last().expect("final");
        assert!(f.r#final);
        assert!(
            (f.score - last.score).abs() < 1e-3,
            "chunk {size}: {} vs {}",
            f.score,
            last.score
        );
    }
    s.stop().await;
}

/// Non-answers, bad streams and the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_verify_errors_and_timeouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(streaming_config(dir.path())).await;
    let c = &mut s.client;
    let call = stereo_call(&samples("carlo-test"), &samples("allison-test"));

    // Not enrolled: one final answer, no audio needed.
    let (rs, status, _) = run_stream(
        c,
        stream_config("nobody", pb::Channel::Right),
        call.clone(),
        320,
        Duration::ZERO,
        true,
    )
    .await;
    status.expect("a non-answer is not an error");
    assert_eq!(rs.len(), 1);
    assert_eq!(decision(&rs[0]), pb::Decision::NotEnrolled);
    assert!(rs[0].r#final);

    enroll(c, BANK, "allison", "allison-enroll").await;

    // Audio before the config.
    let (_, status, _) = run_stream(
        c,
        chunk(&call[..320]),
        Vec::new(),
        320,
        Duration::ZERO,
        true,
    )
    .await;
    assert_eq!(status.expect_err("no config").code(), Code::InvalidArgument);

    // AUTO is not a stream encoding.
    let mut bad = stream_config("allison", pb::Channel::Right);
    if let Some(pb::stream_verify_request::Message::Config(cfg)) = &mut bad.message {
        cfg.encoding = pb::Encoding::Auto as i32;
    }
    let (_, status, _) = run_stream(c, bad, call.clone(), 320, Duration::ZERO, true).await;
    assert_eq!(status.expect_err("auto").code(), Code::InvalidArgument);

    // A rate the stream cannot take, and a message with neither config nor audio.
    let mut bad = stream_config("allison", pb::Channel::Right);
    if let Some(pb::stream_verify_request::Message::Config(cfg)) = &mut bad.message {
        cfg.sample_rate = 0;
    }
    let (_, status, _) = run_stream(c, bad, call.clone(), 320, Duration::ZERO, true).await;
    assert_eq!(status.expect_err("rate 0").code(), Code::InvalidArgument);
    let (tx, rx) = mpsc::channel(4);
    tx.send(stream_config("allison", pb::Channel::Right))
        .await
        .unwrap();
    tx.send(pb::StreamVerifyRequest { message: None })
        .await
        .unwrap();
    let mut inbound = c
        .stream_verify(req(ReceiverStream::new(rx), Some(BANK)))
        .await
        .expect("stream starts")
        .into_inner();
    let err = loop {
        match inbound.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("expected an error"),
            Err(e) => break e,
        }
    };
    drop(tx);
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // A second config mid-stream: the final decision on what was heard, then the error.
    let (tx, rx) = mpsc::channel(4);
    tx.send(stream_config("allison", pb::Channel::Right))
        .await
        .unwrap();
    tx.send(chunk(&call[..8000])).await.unwrap();
    tx.send(stream_config("allison", pb::Channel::Right))
        .await
        .unwrap();
    let mut inbound = c
        .stream_verify(req(ReceiverStream::new(rx), Some(BANK)))
        .await
        .expect("stream starts")
        .into_inner();
    let mut got_final = false;
    let err = loop {
        match inbound.message().await {
            Ok(Some(r)) => got_final |= r.r#final,
            Ok(None) => panic!("expected an error"),
            Err(e) => break e,
        }
    };
    drop(tx);
    assert!(got_final);
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // A chunk over the server's message limit (4 MiB here) is refused as over a limit.
    let (_, status, _) = run_stream(
        c,
        stream_config("allison", pb::Channel::Right),
        vec![0xFF; 5 << 20],
        5 << 20,
        Duration::ZERO,
        true,
    )
    .await;
    let err = status.expect_err("oversized chunk");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Silence: never enough speech.
    let silence = vec![0xFFu8; 2 * 8000 * 4];
    let (rs, status, _) = run_stream(
        c,
        stream_config("allison", pb::Channel::Right),
        silence,
        320,
        Duration::ZERO,
        true,
    )
    .await;
    status.expect("ends OK");
    assert!(
        rs.iter()
            .all(|r| decision(r) == pb::Decision::NotEnoughSpeech),
        "{rs:?}"
    );
    assert!(rs.last().expect("final").r#final);

    // Idle: the client stops sending without closing; the server gives its final decision and
    // closes with DEADLINE_EXCEEDED after the idle limit (1 s here).
    let started = Instant::now();
    let (rs, status, _) = run_stream(
        c,
        stream_config("allison", pb::Channel::Right),
        call[..2 * 8000 * 2].to_vec(),
        320,
        Duration::ZERO,
        false,
    )
    .await;
    assert_eq!(status.expect_err("idle").code(), Code::DeadlineExceeded);
    assert!(rs.last().expect("final decision before the close").r#final);
    assert!(started.elapsed() < Duration::from_secs(10));
    s.stop().await;
}

/// Replay: the same recording verified again (after µ-law re-encoding, a gain change and a time
/// offset) is rejected as a replay; another utterance of the same speaker is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_flags_replayed_audio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), true);
    cfg.replay = ReplaySettings::default();
    let mut s = Server::start(cfg.clone()).await;
    let c = &mut s.client;
    enroll(c, BANK, "allison", "allison-enroll").await;
    let verify = |c: &mut VoiceprintClient<Channel>, a: pb::Audio| {
        let mut c = c.clone();
        async move {
            c.verify(req(
                pb::VerifyRequest {
                    speaker_id: "allison".into(),
                    audio: Some(a),
                    target_far: None,
                },
                Some(BANK),
            ))
            .await
            .expect("verify")
            .into_inner()
        }
    };

    let first = verify(c, clip_audio("allison-test")).await;
    assert!(first.spoof_risk < 0.5, "{first:?}");
    assert_ne!(
        first.reason,
        pb::DecisionReason::ReasonReplaySuspected as i32
    );

    // The same recording played back: 0.3 s later, 6 dB quieter, through a µ-law channel.
    let x = samples("allison-test");
    let mut copy: Vec<u8> = vec![mulaw(0.0); 2400];
    copy.extend(x.iter().map(|&v| mulaw(v * 0.5)));
    let replayed = verify(
        c,
        pb::Audio {
            data: copy,
            encoding: pb::Encoding::Mulaw as i32,
            sample_rate: 8000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(decision(&replayed), pb::Decision::Reject, "{replayed:?}");
    assert_eq!(
        replayed.reason,
        pb::DecisionReason::ReasonReplaySuspected as i32
    );
    assert!(replayed.spoof_risk >= 0.5);

    // Another utterance of the same speaker is new audio, not a replay.
    let other_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/eval/allison_a.wav");
    let other = verify(
        c,
        pb::Audio {
            data: std::fs::read(other_path).expect("fixture"),
            ..Default::default()
        },
    )
    .await;
    assert!(other.spoof_risk < 0.5, "{other:?}");
    assert_ne!(
        other.reason,
        pb::DecisionReason::ReasonReplaySuspected as i32
    );
    s.stop().await;

    // The history survives a restart: the first clip played again is still caught.
    let mut s = Server::start(cfg.clone()).await;
    let c = &mut s.client;
    let again = verify(c, clip_audio("allison-test")).await;
    assert_eq!(
        again.reason,
        pb::DecisionReason::ReasonReplaySuspected as i32,
        "{again:?}"
    );

    // Deleting the speaker erases the fingerprints of the calls that claimed it.
    let d = c
        .delete_speaker(req(
            pb::DeleteSpeakerRequest {
                speaker_id: "allison".into(),
                ..Default::default()
            },
            Some(BANK),
        ))
        .await
        .expect("delete")
        .into_inner();
    assert!(d.deleted);
    enroll(c, BANK, "allison", "allison-enroll").await;
    let fresh = verify(c, clip_audio("allison-test")).await;
    assert!(fresh.spoof_risk < 0.5, "{fresh:?}");
    s.stop().await;
}
