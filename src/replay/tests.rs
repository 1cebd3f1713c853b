#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::audio::g711;

/// Reads a mono PCM16 WAV (walks the chunks; enough for the canonical files of the dev set).
pub(crate) fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let mut pos = 12;
    let mut rate = 0;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM");
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit");
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect();
            return (samples, rate);
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{}: no data chunk", path.display());
}

fn fixture(name: &str) -> (Vec<f32>, u32) {
    read_wav(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/replay")
            .join(name),
    )
}

const CLIPS: [&str; 4] = [
    "en-agent-newlocation.wav",
    "en-call-fwd-no-ans.wav",
    "en-conf-getchannel.wav",
    "en-conf-invalidpin.wav",
];

/// G.711 µ-law round trip through the audio module's codec.
fn ulaw_roundtrip(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&s| {
            f32::from(g711::ulaw_to_linear(g711::linear_to_ulaw(
                s.clamp(-32768.0, 32767.0) as i16,
            )))
        })
        .collect()
}

/// G.711 A-law round trip through the audio module's codec.
fn alaw_roundtrip(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&s| {
            f32::from(g711::alaw_to_linear(g711::linear_to_alaw(
                s.clamp(-32768.0, 32767.0) as i16,
            )))
        })
        .collect()
}

fn scale(x: &[f32], gain: f32) -> Vec<f32> {
    x.iter()
        .map(|s| (s * gain).clamp(-32768.0, 32767.0))
        .collect()
}

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn add_noise(x: &[f32], snr_db: f64, seed: u64) -> Vec<f32> {
    let power = x.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>() / x.len() as f64;
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    let mut rng = StdRng::seed_from_u64(seed);
    x.iter()
        .map(|s| (s + sigma * gaussian(&mut rng)).clamp(-32768.0, 32767.0))
        .collect()
}

fn delay(x: &[f32], rate: u32, seconds: f64, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = (seconds * f64::from(rate)).round() as usize;
    let mut out: Vec<f32> = (0..n).map(|_| 30.0 * gaussian(&mut rng)).collect();
    out.extend_from_slice(x);
    out
}

fn upsample2(x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() * 2);
    for (i, &s) in x.iter().enumerate() {
        out.push(s);
        out.push(0.5 * (s + x.get(i + 1).copied().unwrap_or(s)));
    }
    out
}

fn transforms(x: &[f32], rate: u32) -> Vec<(&'static str, Vec<f32>, u32)> {
    let cut_from = (0.5 * f64::from(rate)) as usize;
    let cut_to = x.len() - (0.3 * f64::from(rate)) as usize;
    vec![
        ("identical", x.to_vec(), rate),
        ("mu-law", ulaw_roundtrip(x), rate),
        ("A-law", alaw_roundtrip(x), rate),
        ("delayed 0.37 s", delay(x, rate, 0.37, 1), rate),
        (
            "excerpt 0.5 s .. end-0.3 s",
            x[cut_from..cut_to].to_vec(),
            rate,
        ),
        ("gain x0.3", scale(x, 0.3), rate),
        ("gain x2 clipped", scale(x, 2.0), rate),
        ("white noise 15 dB", add_noise(x, 15.0, 2), rate),
        (
            "mu-law + 0.37 s + 15 dB noise",
            ulaw_roundtrip(&add_noise(&delay(x, rate, 0.37, 3), 15.0, 4)),
            rate,
        ),
        ("upsampled to 16 kHz", upsample2(x), rate * 2),
    ]
}

#[test]
fn copies_are_flagged() {
    for clip in CLIPS {
        let (x, rate) = fixture(clip);
        let original = Fingerprint::compute(&x, rate).unwrap();
        assert!(
            original.peak_count() > 20,
            "{clip}: {} peaks",
            original.peak_count()
        );
        for (name, y, r) in transforms(&x, rate) {
            let copy = Fingerprint::compute(&y, r).unwrap();
            let m = similarity(&original, &copy);
            let risk = spoof_risk(&m);
            assert!(risk > 0.9, "{clip} / {name}: {m:?}, risk {risk}");
        }
    }
}

#[test]
fn offsets_are_recovered() {
    let (x, rate) = fixture(CLIPS[0]);
    let original = Fingerprint::compute(&x, rate).unwrap();
    let delayed = Fingerprint::compute(&delay(&x, rate, 0.37, 7), rate).unwrap();
    let m = similarity(&original, &delayed);
    assert!((m.offset_seconds - 0.37).abs() <= 0.02, "{m:?}");
    let m = similarity(&delayed, &original);
    assert!((m.offset_seconds + 0.37).abs() <= 0.02, "{m:?}");
    let excerpt = Fingerprint::compute(&x[4000..], rate).unwrap();
    let m = similarity(&excerpt, &original);
    assert!((m.offset_seconds - 0.5).abs() <= 0.02, "{m:?}");
}

#[test]
fn different_utterances_of_one_speaker_are_not_flagged() {
    let fps: Vec<Fingerprint> = CLIPS
        .iter()
        .map(|c| {
            let (x, rate) = fixture(c);
            Fingerprint::compute(&x, rate).unwrap()
        })
        .collect();
    for i in 0..fps.len() {
        for j in 0..fps.len() {
            if i != j {
                let m = similarity(&fps[i], &fps[j]);
                assert!(spoof_risk(&m) < 0.01, "{} vs {}: {m:?}", CLIPS[i], CLIPS[j]);
            }
        }
    }
}

#[test]
fn index_finds_the_replayed_recording() {
    let mut index = ReplayIndex::new(ReplayConfig::default());
    for (k, clip) in CLIPS.iter().enumerate() {
        let (x, rate) = fixture(clip);
        index.insert(
            clip.to_string(),
            Fingerprint::compute(&x, rate).unwrap(),
            1000 + k as u64,
        );
    }
    assert_eq!(index.len(), CLIPS.len());
    for (k, clip) in CLIPS.iter().enumerate() {
        let (x, rate) = fixture(clip);
        let replay = ulaw_roundtrip(&add_noise(
            &delay(&scale(&x, 0.5), rate, 0.21, k as u64),
            15.0,
            9,
        ));
        let (id, m) = index
            .query(&Fingerprint::compute(&replay, rate).unwrap())
            .unwrap();
        assert_eq!(id, *clip);
        assert!(spoof_risk(&m) > 0.9, "{m:?}");
    }
    // A fresh utterance (the remaining fixture directory has none: use a spliced, reversed clip).
    let (x, rate) = fixture(CLIPS[0]);
    let reversed: Vec<f32> = x.iter().rev().copied().collect();
    let fresh = Fingerprint::compute(&reversed, rate).unwrap();
    if let Some((_, m)) = index.query(&fresh) {
        assert!(spoof_risk(&m) < 0.01, "{m:?}");
    }
}

#[test]
fn index_evicts_by_capacity_and_retention() {
    let (x, rate) = fixture(CLIPS[1]);
    let fp = Fingerprint::compute(&x, rate).unwrap();
    let mut index = ReplayIndex::new(ReplayConfig {
        capacity: 2,
        retention_seconds: 100,
    });
    index.insert("a".into(), fp.clone(), 10);
    index.insert(
        "b".into(),
        Fingerprint::compute(&x[..x.len() / 2], rate).unwrap(),
        20,
    );
    assert_eq!(index.query(&fp).unwrap().0, "a");
    index.insert(
        "c".into(),
        Fingerprint::compute(&[0.0; 8000], rate).unwrap(),
        30,
    );
    assert_eq!(index.len(), 2);
    // "a" is gone; the best remaining match is the half clip.
    assert_eq!(index.query(&fp).unwrap().0, "b");
    index.evict_expired(125);
    assert_eq!(index.len(), 1);
    assert!(index.query(&fp).is_none());
    // Retention is applied on insert, relative to the newest timestamp.
    index.insert("d".into(), fp.clone(), 1000);
    assert_eq!(index.len(), 1);
    assert_eq!(index.query(&fp).unwrap().0, "d");
    assert!(
        index
            .postings
            .values()
            .all(|l| l.iter().all(|s| index.entries.contains_key(s)))
    );
}

#[test]
fn fingerprint_is_compact_and_round_trips() {
    let (x, rate) = fixture(CLIPS[2]);
    let fp = Fingerprint::compute(&x, rate).unwrap();
    let per_minute = fp.to_bytes().len() as f64 * 60.0 / fp.duration_seconds();
    assert!(per_minute < 3000.0, "{per_minute} bytes per minute");
    let json = serde_json::to_string(&fp).unwrap();
    let back: Fingerprint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, fp);
    assert_eq!(
        Fingerprint::from_bytes(&fp.to_bytes(), fp.frames).unwrap(),
        fp
    );
}

#[test]
fn hostile_input_is_rejected_not_panicking() {
    assert!(matches!(
        Fingerprint::compute(&[0.0; 100], 4000),
        Err(ReplayError::UnsupportedSampleRate(4000))
    ));
    assert!(matches!(
        Fingerprint::compute(&[0.0, f32::NAN], 8000),
        Err(ReplayError::NonFiniteSample(1))
    ));
    let empty = Fingerprint::compute(&[], 8000).unwrap();
    assert_eq!(empty.peak_count(), 0);
    assert_eq!(similarity(&empty, &empty).score, 0.0);
    let silent = Fingerprint::compute(&[0.0; 16000], 8000).unwrap();
    assert_eq!(silent.peak_count(), 0);
    for bytes in [
        &[0x80u8][..],
        &[0x01],
        &[0x01, 250],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00],
        &[5, 1, 0, 1],
    ] {
        assert!(Fingerprint::from_bytes(bytes, 100).is_err(), "{bytes:?}");
    }
    assert!(
        serde_json::from_str::<Fingerprint>(r#"{"version":1,"frames":10,"peaks":"zz"}"#).is_err()
    );
    assert!(
        serde_json::from_str::<Fingerprint>(r#"{"version":9,"frames":10,"peaks":""}"#).is_err()
    );
    assert_eq!(
        spoof_risk(&Match {
            score: f64::NAN,
            offset_seconds: 0.0,
            aligned: 3
        }),
        0.0
    );
}

fn devset_clips(talent: &str, n: usize) -> Vec<PathBuf> {
    let dir = PathBuf::from("/work/devset/asterisk").join(talent);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (build the dev set first)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    paths.sort();
    paths.into_iter().take(n).collect()
}

/// False alarms over all pairs of 50 different utterances of one talent, and the scores of
/// degraded copies of the same clips. Run:
/// `cargo test --lib replay::tests::false_alarms_on_devset -- --ignored --nocapture`
#[test]
#[ignore = "needs /work/devset; prints the figures of docs/workflows.md"]
fn false_alarms_on_devset() {
    for talent in ["allison", "june"] {
        let clips = devset_clips(talent, 50);
        let audio: Vec<(Vec<f32>, u32)> = clips.iter().map(|p| read_wav(p)).collect();
        let fps: Vec<Fingerprint> = audio
            .iter()
            .map(|(x, r)| Fingerprint::compute(x, *r).unwrap())
            .collect();
        let mut pairs = 0;
        let mut alarms = 0;
        let mut max_score = 0.0f64;
        let mut max_risk = 0.0f64;
        for i in 0..fps.len() {
            for j in i + 1..fps.len() {
                let m = similarity(&fps[i], &fps[j]);
                pairs += 1;
                max_score = max_score.max(m.score);
                max_risk = max_risk.max(spoof_risk(&m));
                if spoof_risk(&m) >= 0.5 {
                    alarms += 1;
                    println!(
                        "alarm: {} vs {}: {m:?}",
                        clips[i].display(),
                        clips[j].display()
                    );
                }
            }
        }
        println!(
            "{talent}: {pairs} different-utterance pairs, {alarms} alarms, max score {max_score:.4}, max risk {max_risk:.2e}"
        );
        let mut worst: Vec<(&str, f64, usize)> = Vec::new();
        let mut misses = 0;
        let mut copies = 0;
        for (k, (x, rate)) in audio.iter().enumerate() {
            if x.len() < 2 * *rate as usize {
                continue; // the excerpt transform needs > 0.8 s
            }
            for (name, y, r) in transforms(x, *rate) {
                let m = similarity(&fps[k], &Fingerprint::compute(&y, r).unwrap());
                copies += 1;
                if spoof_risk(&m) < 0.5 {
                    misses += 1;
                }
                match worst.iter_mut().find(|w| w.0 == name) {
                    Some(w) if m.score < w.1 => *w = (name, m.score, k),
                    Some(_) => {}
                    None => worst.push((name, m.score, k)),
                }
            }
        }
        println!("{talent}: {copies} degraded copies, {misses} missed (risk < 0.5)");
        assert_eq!(alarms, 0, "{talent}: false alarms");
        assert_eq!(misses, 0, "{talent}: missed copies");
        for (name, s, k) in worst {
            println!("  lowest score {s:.3} for {name} ({})", clips[k].display());
        }
    }
}
