//! `voiceprint recurring` on real voices: three Asterisk talents under four customer ids, one of
//! them (Allison) complaining for two customers; and the flagged voice sent to a watchlist of a
//! real server with `voiceprint watchlist add-cluster`.
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
    // Clean studio prompts of one talent score about 0.75 against each other, right at the
    // telephony default; 0.7 keeps this test about skipping bad rows.
    let result = run(&manifest, &out, &["--threshold", "0.7"]);
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

/// `voiceprint watchlist --server URL --token T ARGS…`, run off the async runtime.
async fn watchlist_cli(url: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voiceprint"));
    cmd.args(["watchlist", "--server", url, "--token", "bank-token"])
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run voiceprint"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_voice_goes_to_a_watchlist_in_one_command() {
    use std::sync::Arc;
    use voiceprint::config::{Config, TenantConfig};
    use voiceprint::pipeline::{Engine, EngineConfig};
    use voiceprint::proto::v1 as pb;
    use voiceprint::proto::v1::voiceprint_client::VoiceprintClient;

    let dir = tempfile::tempdir().unwrap();
    let manifest = fixtures().join("complaints.csv");
    let clusters = dir.path().join("clusters.json");
    let (m, c) = (manifest.clone(), clusters.clone());
    let result = tokio::task::spawn_blocking(move || run(&m, &c, &[]))
        .await
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );

    let model = voiceprint::model::ensure_model(&voiceprint::model::default_model_dir()).unwrap();
    let engine = Arc::new(Engine::load(EngineConfig::new(model)).unwrap());
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        master_key_file: Some(dir.path().join("master.key")),
        tenants: vec![TenantConfig {
            name: "bank".into(),
            tokens: vec!["bank-token".into()],
        }],
        ..Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = voiceprint::service::serve(config, engine, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (clusters_arg, manifest_arg) = (
        clusters.display().to_string(),
        manifest.display().to_string(),
    );
    let add = |cluster: &'static str, create: bool| {
        let mut a = vec![
            "add-cluster",
            "proxies",
            "--clusters",
            clusters_arg.as_str(),
            "--cluster",
            cluster,
            "--manifest",
            manifest_arg.as_str(),
        ];
        if create {
            a.push("--create");
        }
        a
    };

    // The watchlist must exist unless --create is given; a cluster index past the end is refused.
    let out = watchlist_cli(&url, &add("0", false)).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("proxies"), "{stderr}");
    let out = watchlist_cli(&url, &add("1", true)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("holds 1 clusters"), "{stderr}");

    let out = watchlist_cli(&url, &add("0", true)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created proxies"), "{stdout}");
    assert!(
        stdout.contains("3 of 3 complaints of cluster 0 added to proxies"),
        "{stdout}"
    );
    // Running it again replaces the same entries instead of duplicating them.
    let out = watchlist_cli(&url, &add("0", true)).await;
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("created"));

    let mut client = VoiceprintClient::connect(url.clone()).await.unwrap();
    fn auth<T>(msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert("authorization", "Bearer bank-token".parse().unwrap());
        r
    }
    let lists = client
        .list_watchlists(auth(pb::ListWatchlistsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lists.watchlists.len(), 1);
    assert_eq!(lists.watchlists[0].watchlist_id, "proxies");
    assert_eq!(lists.watchlists[0].size, 3);

    // A new call of the proxy (another recording of Allison) is found on the watchlist; a
    // different talent scores lower against it.
    let speakers = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speakers");
    let mut best = Vec::new();
    for name in ["allison-test.wav", "carlo-test.wav"] {
        let r = client
            .identify(auth(pb::IdentifyRequest {
                audio: Some(pb::Audio {
                    data: std::fs::read(speakers.join(name)).unwrap(),
                    ..Default::default()
                }),
                top_k: 3,
                watchlist_id: Some("proxies".into()),
                target_far: Some(0.5),
            }))
            .await
            .unwrap()
            .into_inner();
        best.push(
            r.candidates
                .first()
                .map(|c| (c.speaker_id.clone(), c.score)),
        );
    }
    let (allison_hit, allison_score) = best[0].clone().expect("the proxy is found");
    assert!(allison_hit.starts_with("recurring-0-c"), "{allison_hit}");
    if let Some((_, carlo_score)) = &best[1] {
        assert!(*carlo_score < allison_score, "{best:?}");
    }
    drop(client);
    let _ = stop.send(());
    server.wait().await.unwrap();
}
