//! `voiceprint eval` and `voiceprint embed` end to end: the built binary on the committed trial list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/eval")
}

fn voiceprint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voiceprint"))
        .args(args)
        .output()
        .expect("run voiceprint")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "voiceprint failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn fraction(v: &serde_json::Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` missing or not a number in {v}"));
    assert!((0.0..=1.0).contains(&x), "`{key}` = {x} not in [0, 1]");
    x
}

#[test]
fn eval_reports_metrics_on_the_fixture_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let det = dir.path().join("det.svg");
    let scores = dir.path().join("scores.csv");
    let trials = fixtures().join("trials.csv");
    let out = voiceprint(&[
        "eval",
        "--trials",
        trials.to_str().expect("utf-8 path"),
        "--json",
        "--verbose",
        "--det",
        det.to_str().expect("utf-8 path"),
        "--scores-out",
        scores.to_str().expect("utf-8 path"),
    ]);
    let r = json_of(&out);
    assert_eq!(r["trials"], 13);
    assert_eq!(r["target_trials"], 5);
    assert_eq!(r["nontarget_trials"], 8);
    // corrupt.wav cannot be decoded: exactly its one trial (line 14) is unscored, with the reason listed.
    assert_eq!(r["unscored"], 1);
    let listed = r["unscored_trials"]
        .as_array()
        .expect("--verbose lists unscored trials");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["line"], 14);
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("corrupt.wav"),
        "{listed:?}"
    );
    assert_eq!(r["scored_trials"], 12);
    for key in ["eer", "min_dcf", "frr_at_far_1pct", "frr_at_far_0_1pct"] {
        fraction(&r, key);
    }
    assert!(
        r["eer"].as_f64().unwrap_or(1.0) < 0.5,
        "EER no better than chance: {r}"
    );
    assert!(
        r["cllr"].is_null() || r["cllr"].as_f64().is_some_and(|c| c >= 0.0),
        "{r}"
    );
    assert_eq!(
        r["calibrated"].as_bool().is_some_and(|c| !c),
        r["cllr"].is_null()
    );
    for kind in ["raw", "asnorm", "calibrated"] {
        fraction(&r["configurations"][kind], "eer");
    }
    assert_eq!(r["gate_applied"], false);
    // Studio prompts in linear PCM: every decodable input is wideband, so every trial is
    // calibrated as wideband/wideband; the service's 1 % decisions are reported.
    assert_eq!(r["files_by_channel"]["telephone"], 0, "{r}");
    assert_eq!(
        r["files_by_channel"]["wideband"].as_u64(),
        Some(r["files"].as_u64().unwrap() - r["failed_files"].as_u64().unwrap())
    );
    assert_eq!(r["channel_calibrations"], true);
    fraction(&r["decisions_at_target_far_1pct"], "far");
    fraction(&r["decisions_at_target_far_1pct"], "frr");

    // Per-trial scores: targets outscore non-targets on average, on every score.
    let text = std::fs::read_to_string(&scores).expect("scores written");
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let (mut sum, mut n) = ([[0.0f64; 3]; 2], [0usize; 2]);
    for row in rows.records() {
        let row = row.expect("csv row");
        if row[2].is_empty() {
            continue;
        }
        let t = usize::from(&row[1] == "1");
        n[t] += 1;
        for (k, acc) in sum[t].iter_mut().enumerate() {
            *acc += row[2 + k].parse::<f64>().expect("score");
        }
    }
    assert_eq!(n, [7, 5]);
    for (k, (tar, non)) in sum[1].iter().zip(&sum[0]).enumerate() {
        assert!(
            tar / 5.0 > non / 7.0,
            "score {k}: targets do not outscore non-targets"
        );
    }
    let svg = std::fs::read_to_string(&det).expect("DET written");
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2);

    // The table form runs too and shows the same counts.
    let out = voiceprint(&[
        "eval",
        "--trials",
        trials.to_str().expect("utf-8 path"),
        "--score",
        "raw",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("trials 13 (5 target, 8 non-target), unscored 1"),
        "{table}"
    );
}

#[test]
fn eval_rejects_malformed_lists_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "enroll,test,target\na.wav,b.wav,1\na.wav,b.wav,maybe\n",
    )
    .expect("write");
    let out = voiceprint(&[
        "eval",
        "--trials",
        bad.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("maybe"), "{err}");

    std::fs::write(&bad, "enroll,target\na.wav,1\n").expect("write");
    let out = voiceprint(&["eval", "--trials", bad.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing column `test`"));

    let out = voiceprint(&["eval", "--trials", "/nonexistent/trials.csv"]);
    assert!(!out.status.success());
}

#[test]
fn embed_prints_192_floats() {
    let clip = fixtures().join("allison_a.wav");
    let clip = clip.to_str().expect("utf-8 path");
    let prod = json_of(&voiceprint(&["embed", clip, "--json"]));
    let raw = json_of(&voiceprint(&["embed", clip, "--json", "--raw"]));
    let vec_of = |v: &serde_json::Value| -> Vec<f64> {
        v["embedding"]
            .as_array()
            .expect("embedding array")
            .iter()
            .map(|x| x.as_f64().expect("float"))
            .collect()
    };
    let (p, r) = (vec_of(&prod), vec_of(&raw));
    assert_eq!((p.len(), r.len()), (192, 192));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        (norm(&p) - 1.0).abs() < 1e-3,
        "production embedding is L2-normalised"
    );
    assert!(r.iter().all(|x| x.is_finite()) && norm(&r) > 0.0);
    assert!(prod["model"].is_string());
    assert!(
        prod["quality"]["net_speech_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.5)
    );
    // Stereo channel selection is accepted; garbage is a clear failure.
    let stereo = fixtures().join("stereo_allison_carlo.wav");
    let left = json_of(&voiceprint(&[
        "embed",
        stereo.to_str().expect("utf-8 path"),
        "--json",
        "--channel",
        "left",
    ]));
    assert_eq!(vec_of(&left).len(), 192);
    let out = voiceprint(&[
        "embed",
        fixtures().join("corrupt.wav").to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(!out.status.success());
}

#[test]
fn eval_embeddings_cache_reuses_every_file_and_gives_the_same_scores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache.jsonl");
    let trials = fixtures().join("trials.csv");
    let run = |scores: &Path| {
        json_of(&voiceprint(&[
            "eval",
            "--trials",
            trials.to_str().expect("utf-8 path"),
            "--json",
            "--embeddings-cache",
            cache.to_str().expect("utf-8 path"),
            "--scores-out",
            scores.to_str().expect("utf-8 path"),
        ]))
    };
    let (first_scores, second_scores) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let first = run(&first_scores);
    assert_eq!(first["cache_hits"], 0);
    let files = first["files"].as_u64().expect("files");
    let failed = first["failed_files"].as_u64().expect("failed_files");
    let text = std::fs::read_to_string(&cache).expect("cache written");
    // Every file that decoded is cached (corrupt.wav is not), one line each.
    let cached_lines = text.lines().count() as u64;
    assert!(
        cached_lines >= files - failed && cached_lines < files,
        "{text}"
    );

    // A truncated last line (an interrupted run) is skipped, not fatal, and the file stays usable.
    let mut torn = text.clone();
    torn.push_str("{\"key\":\"torn");
    std::fs::write(&cache, &torn).expect("write torn cache");
    let second = run(&second_scores);
    assert_eq!(second["cache_hits"].as_u64(), Some(cached_lines));
    let read = |p: &Path| std::fs::read_to_string(p).expect("scores");
    assert_eq!(read(&first_scores), read(&second_scores));
    for key in ["eer", "min_dcf", "unscored", "scored_trials"] {
        assert_eq!(first[key], second[key], "{key}");
    }
    // Nothing new was embedded, so nothing but the line break after the torn line was appended.
    assert_eq!(
        std::fs::read_to_string(&cache).expect("cache"),
        format!("{torn}\n")
    );

    // Without VAD the key differs: nothing is reused.
    let out = voiceprint(&[
        "eval",
        "--trials",
        trials.to_str().expect("utf-8 path"),
        "--json",
        "--no-vad",
        "--embeddings-cache",
        cache.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(json_of(&out)["cache_hits"], 0);
}

/// 16-bit mono PCM WAV bytes.
fn pcm16_wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The samples of a 16-bit mono fixture WAV (its `data` chunk).
fn pcm16_samples(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("read fixture");
    let at = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    bytes[at + 8..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

#[test]
fn eval_scores_a_side_with_too_little_speech_and_only_gate_drops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["allison_a.wav", "allison_b.wav", "carlo_a.wav"] {
        std::fs::copy(fixtures().join(name), dir.path().join(name)).expect("copy fixture");
    }
    // 0.3 s of Allison's speech between two seconds of silence: under the 0.5 s the VAD path
    // needs for an embedding, so the whole utterance is embedded and the side is gated.
    let speech = pcm16_samples(&fixtures().join("allison_b.wav"));
    let mid = speech.len() / 2;
    let mut short = vec![0i16; 16_000];
    short.splice(8_000..8_000, speech[mid..mid + 2_400].iter().copied());
    std::fs::write(dir.path().join("short.wav"), pcm16_wav(&short, 8_000)).expect("write");
    let trials = dir.path().join("trials.csv");
    std::fs::write(
        &trials,
        "enroll,test,target\nallison_a.wav,allison_b.wav,1\nallison_a.wav,short.wav,1\n\
         carlo_a.wav,allison_b.wav,0\ncarlo_a.wav,short.wav,0\n",
    )
    .expect("write list");
    let trials = trials.to_str().expect("utf-8 path");

    let r = json_of(&voiceprint(&[
        "eval",
        "--trials",
        trials,
        "--json",
        "--verbose",
    ]));
    assert_eq!(r["unscored"], 0, "{r}");
    assert_eq!(r["scored_trials"], 4, "{r}");
    assert_eq!(r["gated"], 2, "{r}");
    let gated = r["gated_trials"]
        .as_array()
        .expect("--verbose lists gated trials");
    assert!(
        gated
            .iter()
            .all(|g| g["reason"].as_str().unwrap_or("").contains("short.wav")
                && g["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("whole utterance embedded")),
        "{gated:?}"
    );

    let r = json_of(&voiceprint(&[
        "eval", "--trials", trials, "--json", "--gate",
    ]));
    assert_eq!(r["scored_trials"], 2, "{r}");
    assert_eq!(r["gate_applied"], true);
}
