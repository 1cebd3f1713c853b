//! `voiceprint load` against a real server, with the in-process anchor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use super::service::{BANK, Server, config, fixture};

#[tokio::test(flavor = "multi_thread")]
async fn load_cli_reports_levels_and_anchor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(config(dir.path(), true)).await;
    let url = s.url();
    let (enroll, probe) = (fixture("allison-enroll"), fixture("allison-test"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_voiceprint"))
            .arg("load")
            .args(["--server", &url, "--token", BANK, "--enroll"])
            .arg(&enroll)
            .arg("--probe")
            .arg(&probe)
            .args(["--concurrency", "1,2", "--requests", "2", "--anchor"])
            .env_remove("VOICEPRINT_TOKEN")
            .output()
            .expect("run voiceprint load")
    })
    .await
    .expect("join");
    s.stop().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for level in ["1", "2"] {
        let row: Vec<&str> = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {level} |")))
            .unwrap_or_else(|| panic!("no row for concurrency {level}:\n{stdout}"))
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(row.len(), 10, "{row:?}");
        assert_eq!(
            (row[1], row[2]),
            ("2", "0"),
            "2 requests, no errors: {row:?}"
        );
        let num = |i: usize| row[i].trim_end_matches(" %").parse::<f64>().unwrap();
        // Server p50, anchor one-core p50 and rate, and the share are all real measurements.
        assert!(
            num(3) > 0.0 && num(7) > 0.0 && num(8) > 0.0 && num(9) > 0.0,
            "{row:?}"
        );
        if level == "1" {
            assert!(num(6) > 0.0, "all-core anchor at concurrency 1: {row:?}");
        } else {
            assert_eq!(row[6], "–", "{row:?}");
        }
    }
}
