//! `voiceprint features` / `voiceprint probe` end to end on the golden fixtures.

use std::process::Command;

use voiceprint::npy::read_f32;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_voiceprint"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn voiceprint: {e}"))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn features_cli_matches_golden_fbank80_cmn_and_g711_mfcc() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("c.npy");
    let out_s = out.to_string_lossy().to_string();
    let wav = format!("{GOLDEN}/inputs/c_flite_slt.wav");
    let o = run(&[
        "features", &wav, "--kind", "fbank80", "--cmn", "--out", &out_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, mine) = read_f32(&out).unwrap_or_else(|e| panic!("{e}"));
    let (gshape, gold) =
        read_f32(format!("{GOLDEN}/c_flite_slt/fbank80_cmn.npy")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shape, gshape);
    assert!(max_abs_diff(&mine, &gold) <= 1e-2);

    // Headerless A-law input decodes to the same samples as sox's decoded WAV.
    let raw = format!("{GOLDEN}/inputs/d_8k.alaw");
    let o = run(&[
        "features",
        &raw,
        "--encoding",
        "alaw",
        "--sample-rate",
        "8000",
        "--kind",
        "fbank23",
        "--out",
        &out_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, from_alaw) = read_f32(&out).unwrap_or_else(|e| panic!("{e}"));
    let dec = format!("{GOLDEN}/inputs/d_8k_alaw_decoded_pcm16.wav");
    let o = run(&["features", &dec, "--kind", "fbank23", "--out", &out_s]);
    assert!(o.status.success());
    let (shape2, from_wav) = read_f32(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shape, vec![237, 23]);
    assert_eq!(shape, shape2);
    assert_eq!(from_alaw, from_wav);

    // MFCC of the 8 kHz PCM original against the golden.
    let pcm = format!("{GOLDEN}/inputs/d_8k_pcm16.wav");
    let o = run(&["features", &pcm, "--kind", "mfcc13", "--out", &out_s]);
    assert!(o.status.success());
    let (_, mfcc) = read_f32(&out).unwrap_or_else(|e| panic!("{e}"));
    let (_, gold) =
        read_f32(format!("{GOLDEN}/d_8k_pcm16/mfcc13.npy")).unwrap_or_else(|e| panic!("{e}"));
    assert!(max_abs_diff(&mfcc, &gold) <= 1e-2);

    // Bad input fails cleanly.
    let o = run(&[
        "features",
        &format!("{GOLDEN}/README.md"),
        "--kind",
        "fbank80",
        "--out",
        &out_s,
    ]);
    assert!(!o.status.success());
}

#[test]
fn probe_reports_format_and_quality() {
    let wav = format!("{GOLDEN}/inputs/e_silence_noise.wav");
    let o = run(&["probe", "--json", &wav]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["sample_rate"], 16_000);
    assert_eq!(v["codec"], "pcm_s16le");
    assert_eq!(v["duration_seconds"], 2.0);
    assert_eq!(v["net_speech_seconds"], 0.0);
    let wav = format!("{GOLDEN}/inputs/c_flite_slt.wav");
    let o = run(&["probe", "--json", &wav]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    let speech = v["net_speech_seconds"].as_f64().unwrap_or(0.0);
    assert!(speech > 5.0 && speech <= 10.35, "{speech}");
}
