//! `voiceprint recurring` on real voices: three Asterisk talents under four customer ids, one of
//! them (Allison) complaining for two customers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recurring")
}

fn run(manifest: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_voiceprint"))
        .arg("recurring")
        .arg("--manifest")
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run voiceprint")
}

#[test]
fn the_proxy_is_flagged_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clusters.json");
    let result = run(&fixtures().join("complaints.csv"), &out, &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let clusters: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let clusters = clusters.as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{clusters:#?}\n{stderr}");
    let c = &clusters[0];
    assert_eq!(
        c["complaint_ids"],
        serde_json::json!(["c1", "c2", "c3"]),
        "{c:#}"
    );
    assert_eq!(c["customer_ids"], serde_json::json!(["cust-A", "cust-B"]));
    let confidence = c["confidence"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&confidence), "{c:#}");
    let pairs = c["pairwise"].as_array().unwrap();
    assert_eq!(pairs.len(), 3);
    // Cross-customer evidence first.
    assert!(pairs[0]["a"] == "c2" || pairs[0]["b"] == "c2", "{c:#}");
    assert!(pairs.iter().all(|p| p["score"].as_f64().unwrap() > 0.0));
}

#[test]
fn bad_rows_are_skipped_and_a_strict_threshold_flags_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.csv");
    let f = fixtures();
    let abs = |name: &str| f.join(name).display().to_string();
    std::fs::write(
        &manifest,
        format!(
            "complaint_id,customer_id,audio,channel\n\
             c1,cust-A,{},\n\
             c2,cust-B,{},left\n\
             c3,cust-C,missing.wav,\n\
             c4,cust-D,{},bogus-channel\n",
            abs("en-conf-noempty.wav"),
            abs("en-cannot-complete-as-dialed.wav"),
            abs("fr-agent-pass.wav"),
        ),
    )
    .unwrap();
    let out = dir.path().join("clusters.json");
    let result = run(&manifest, &out, &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("complaint c3: skipped"), "{stderr}");
    assert!(stderr.contains("complaint c4: skipped"), "{stderr}");
    let clusters: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(clusters.as_array().unwrap().len(), 1, "{clusters:#}");
    let result = run(&manifest, &out, &["--threshold", "0.999"]);
    assert!(result.status.success());
    let clusters: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(clusters, serde_json::json!([]));
    // A manifest with nothing usable is an error, not an empty report.
    std::fs::write(
        &manifest,
        "complaint_id,customer_id,audio\nc9,x,missing.wav\n",
    )
    .unwrap();
    assert!(!run(&manifest, &out, &[]).status.success());
}
