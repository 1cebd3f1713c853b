//! Batch post-complaint matching: the `BatchMatch` RPC on a real server and `voiceprint batch`
//! through it (`--server`) and on its data directory (`--data-dir`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tonic::Code;

use voiceprint::proto::v1 as pb;
use voiceprint::store::{MasterKey, RedbStore, Store};

use super::service::{BANK, OTHER, Server, audio, config, engine, enroll, fixture, raw_mulaw, req};

/// allison and carlo enrolled in tenant `bank`; june's voice on its `fraud` watchlist.
async fn populated(dir: &Path, max_batch: usize, workers: usize) -> Server {
    let mut cfg = config(dir, true);
    cfg.max_batch_complaints = max_batch;
    cfg.workers = workers;
    let mut s = Server::start(cfg).await;
    let c = &mut s.client;
    for who in ["allison", "carlo"] {
        let e = enroll(c, BANK, who, &format!("{who}-enroll")).await;
        assert_eq!(
            e.status,
            pb::EnrollmentStatus::EnrollmentComplete as i32,
            "{e:?}"
        );
    }
    c.create_watchlist(req(
        pb::CreateWatchlistRequest {
            watchlist_id: "fraud".into(),
            description: String::new(),
        },
        Some(BANK),
    ))
    .await
    .expect("create watchlist");
    c.add_to_watchlist(req(
        pb::AddToWatchlistRequest {
            watchlist_id: "fraud".into(),
            entry_id: "e-june".into(),
            source: Some(pb::add_to_watchlist_request::Source::Audio(audio(
                "june-enroll",
            ))),
            note: String::new(),
        },
        Some(BANK),
    ))
    .await
    .expect("add to watchlist");
    s
}

fn complaint(id: &str, customer: &str, a: Option<pb::Audio>) -> pb::Complaint {
    pb::Complaint {
        complaint_id: id.into(),
        customer_id: customer.into(),
        audio: a,
    }
}

fn decision(r: &pb::BatchMatchResult) -> pb::Decision {
    pb::Decision::try_from(r.decision).expect("known decision")
}

fn audit_actions(dir: &Path) -> Vec<(String, String, String)> {
    // A complaint abandoned by its client may still be finishing its analysis on the blocking
    // pool after the server stopped; it holds the store until then.
    let mut tries = 0;
    let store = loop {
        let key = MasterKey::resolve(&dir.join("master.key")).expect("key").0;
        match RedbStore::open(dir, key) {
            Ok(store) => break store,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("store: {e}"),
        }
    };
    let mut out = Vec::new();
    store
        .audit_since(0, &mut |ev| {
            if ev.action == "batch_match" {
                out.push((
                    ev.speaker_id.unwrap_or_default(),
                    ev.decision,
                    ev.detail.unwrap_or_default(),
                ));
            }
            true
        })
        .expect("audit");
    out
}

/// Verification and gallery/watchlist search per complaint, streamed; bad complaints are rows
/// with `error`; request limits; one audit event per complaint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_match_rpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = populated(dir.path(), 8, 2).await;
    let calibrated = engine().scorer().is_calibrated();
    let c = &mut s.client;
    let complaints = vec![
        complaint("same", "allison", Some(audio("allison-test"))),
        complaint("other", "allison", Some(audio("carlo-test"))),
        complaint("unknown-customer", "nobody", Some(audio("june-test"))),
        complaint(
            "garbage",
            "carlo",
            Some(pb::Audio {
                data: vec![0x5a; 4000],
                ..Default::default()
            }),
        ),
        complaint("no-audio", "carlo", None),
        complaint("bad-customer", "", Some(audio("carlo-test"))),
        complaint("silence", "carlo", Some(raw_mulaw(3.0))),
    ];
    let mut stream = c
        .batch_match(req(
            pb::BatchMatchRequest {
                complaints,
                top_k: 3,
                target_far: None,
            },
            Some(BANK),
        ))
        .await
        .expect("batch match")
        .into_inner();
    let mut results: HashMap<String, pb::BatchMatchResult> = HashMap::new();
    while let Some(r) = stream.message().await.expect("stream") {
        assert!(
            results.insert(r.complaint_id.clone(), r).is_none(),
            "one result per complaint"
        );
    }
    assert_eq!(results.len(), 7, "{results:#?}");

    let same = &results["same"];
    let other = &results["other"];
    assert!(same.error.is_empty() && other.error.is_empty());
    assert_eq!(decision(other), pb::Decision::Reject, "{other:?}");
    assert!(same.score > other.score + 0.2, "{same:?} {other:?}");
    assert!(same.quality.is_some() && other.quality.is_some());
    for r in results.values() {
        let hits: Vec<f64> = r.top_hits.iter().map(|h| h.score).collect();
        assert!(hits.len() <= 3);
        assert!(hits.windows(2).all(|w| w[0] >= w[1]), "best first: {r:?}");
    }
    if calibrated {
        assert_eq!(decision(same), pb::Decision::Accept, "{same:?}");
        assert_eq!(same.top_hits[0].id, "speaker:allison", "{same:?}");
        assert_eq!(other.top_hits[0].id, "speaker:carlo", "{other:?}");
        assert!(same.top_hits[0].llr >= same.llr - 1e-9);
    }

    // Not enrolled is a decision, and the voice is still searched: june is on the watchlist.
    let unknown = &results["unknown-customer"];
    assert_eq!(decision(unknown), pb::Decision::NotEnrolled, "{unknown:?}");
    assert_eq!((unknown.score, unknown.llr), (0.0, 0.0));
    if calibrated {
        assert_eq!(
            unknown.top_hits.first().map(|h| h.id.as_str()),
            Some("watchlist:fraud/e-june"),
            "{unknown:?}"
        );
    }
    assert!(
        !unknown
            .top_hits
            .iter()
            .any(|h| h.id.starts_with("speaker:")),
        "june is enrolled nowhere: {unknown:?}"
    );

    let silence = &results["silence"];
    assert_eq!(
        decision(silence),
        pb::Decision::NotEnoughSpeech,
        "{silence:?}"
    );
    assert!(silence.top_hits.is_empty());

    for (id, needle) in [
        ("garbage", "audio #3"),
        ("no-audio", "audio is required"),
        ("bad-customer", "customer_id"),
    ] {
        let r = &results[id];
        assert!(r.error.contains(needle), "{id}: {r:?}");
        assert_eq!(r.decision, 0, "{id}: {r:?}");
        assert!(r.quality.is_none() && r.top_hits.is_empty(), "{id}: {r:?}");
    }
    assert_eq!(results["garbage"].customer_id, "carlo");

    // Another tenant sees none of bank's speakers or watchlists.
    let mut stream = c
        .batch_match(req(
            pb::BatchMatchRequest {
                complaints: vec![complaint("t", "allison", Some(audio("allison-test")))],
                ..Default::default()
            },
            Some(OTHER),
        ))
        .await
        .expect("other tenant")
        .into_inner();
    let r = stream.message().await.expect("stream").expect("one result");
    assert_eq!(decision(&r), pb::Decision::NotEnrolled);
    assert!(r.top_hits.is_empty(), "{r:?}");
    assert!(stream.message().await.expect("end").is_none());

    // Request-level errors.
    let too_many = (0..9)
        .map(|i| complaint(&format!("c{i}"), "allison", Some(audio("june-test"))))
        .collect();
    let cases = [
        (
            "empty",
            pb::BatchMatchRequest::default(),
            Some(BANK),
            Code::InvalidArgument,
        ),
        (
            "over max_batch_complaints",
            pb::BatchMatchRequest {
                complaints: too_many,
                ..Default::default()
            },
            Some(BANK),
            Code::ResourceExhausted,
        ),
        (
            "bad far",
            pb::BatchMatchRequest {
                complaints: vec![complaint("x", "allison", Some(audio("june-test")))],
                target_far: Some(0.9),
                ..Default::default()
            },
            Some(BANK),
            Code::InvalidArgument,
        ),
        (
            "no token",
            pb::BatchMatchRequest {
                complaints: vec![complaint("x", "allison", Some(audio("june-test")))],
                ..Default::default()
            },
            None,
            Code::Unauthenticated,
        ),
    ];
    for (what, r, token, code) in cases {
        let got = c.batch_match(req(r, token)).await.expect_err(what);
        assert_eq!(got.code(), code, "{what}: {got:?}");
    }
    s.stop().await;

    // One audit event per complaint, failures included.
    let events = audit_actions(dir.path());
    assert_eq!(events.len(), 8, "{events:#?}");
    let find = |complaint: &str| {
        events
            .iter()
            .find(|e| e.2.contains(&format!("complaint={complaint:?}")))
            .unwrap_or_else(|| panic!("no audit event for {complaint}: {events:#?}"))
    };
    assert_eq!(find("other").1, "reject");
    assert_eq!(find("unknown-customer").0, "nobody");
    assert_eq!(find("unknown-customer").1, "not_enrolled");
    assert_eq!(find("silence").1, "not_enough_speech");
    assert_eq!(find("garbage").1, "error");
}

/// A client that goes away stops the work: complaints not yet started never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_match_stops_when_the_client_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), true);
    cfg.workers = 1;
    let mut s = Server::start(cfg).await;
    let complaints: Vec<_> = (0..12)
        .map(|i| complaint(&format!("c{i}"), "nobody", Some(audio("june-test"))))
        .collect();
    let mut stream = s
        .client
        .batch_match(req(
            pb::BatchMatchRequest {
                complaints,
                ..Default::default()
            },
            Some(BANK),
        ))
        .await
        .expect("batch match")
        .into_inner();
    let first = stream.message().await.expect("stream").expect("a result");
    assert_eq!(decision(&first), pb::Decision::NotEnrolled);
    drop(stream);
    // Long enough for the rest to finish if the server kept going (each takes > 0.1 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.stop().await;
    let done = audit_actions(dir.path()).len();
    assert!((1..=4).contains(&done), "{done} of 12 complaints ran");
}

fn batch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voiceprint"))
        .arg("batch")
        .args(args)
        .env_remove("VOICEPRINT_SERVER")
        .env_remove("VOICEPRINT_TOKEN")
        .env_remove("VOICEPRINT_TOKENS")
        .output()
        .expect("run voiceprint batch")
}

async fn batch_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        batch(&args)
    })
    .await
    .expect("join")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A manifest in its own folder: one relative audio path, absolute ones, and bad rows.
fn manifest(dir: &Path) -> PathBuf {
    std::fs::copy(fixture("allison-test"), dir.join("allison-test.wav")).expect("copy");
    std::fs::write(dir.join("garbage.wav"), vec![0x5a; 3000]).expect("garbage");
    let path = dir.join("complaints.csv");
    std::fs::write(
        &path,
        format!(
            "complaint_id,customer_id,audio,channel\n\
             c1,allison,allison-test.wav,\n\
             c2,allison,{carlo},\n\
             c3,nobody,{june},mix\n\
             c4,allison,missing.wav,\n\
             c5,allison,{carlo},sideways\n\
             ,allison,{carlo},\n\
             c7,carlo,garbage.wav,\n",
            carlo = s(&fixture("carlo-test")),
            june = s(&fixture("june-test")),
        ),
    )
    .expect("manifest");
    path
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect()
}

fn by_id(rows: &[serde_json::Value]) -> HashMap<String, serde_json::Value> {
    rows.iter()
        .map(|r| (r["complaint_id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `voiceprint batch` through a server and on its data directory: formats, resume, bad rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let server = populated(&data, 256, 2).await;
    let calibrated = engine().scorer().is_calibrated();
    let m = manifest(&work);
    let out = work.join("results.jsonl");
    let server_args = |out: &Path| {
        vec![
            "--server".to_string(),
            server.url(),
            "--token".into(),
            BANK.into(),
            "--manifest".into(),
            s(&m),
            "--out".into(),
            s(out),
            "--batch-size".into(),
            "2".into(),
            "--concurrency".into(),
            "2".into(),
        ]
    };

    let o = batch_async(server_args(&out)).await;
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let rows = jsonl(&out);
    assert_eq!(rows.len(), 7, "{rows:#?}");
    let rows_by_id = by_id(&rows);
    let c1 = &rows_by_id["c1"];
    let c2 = &rows_by_id["c2"];
    assert_eq!(c2["decision"], "DECISION_REJECT", "{c2}");
    assert!(c1["score"].as_f64().unwrap() > c2["score"].as_f64().unwrap() + 0.2);
    assert!(c1["llr"].is_f64() && c1["net_speech_seconds"].as_f64().unwrap() > 1.0);
    assert_eq!(c1["manifest_line"], 2);
    assert!(c1["error"].is_null());
    if calibrated {
        assert_eq!(c1["decision"], "DECISION_ACCEPT", "{c1}");
        assert_eq!(c1["top_hits"][0]["id"], "speaker:allison", "{c1}");
        assert!(c1["top_hits"][0]["llr"].is_f64());
        assert_eq!(
            rows_by_id["c3"]["top_hits"][0]["id"], "watchlist:fraud/e-june",
            "{}",
            rows_by_id["c3"]
        );
    }
    assert_eq!(rows_by_id["c3"]["decision"], "DECISION_NOT_ENROLLED");
    assert!(rows_by_id["c3"]["score"].is_null());
    for (id, needle) in [
        ("c4", "missing.wav"),
        ("c5", "sideways"),
        ("", "complaint_id"),
        ("c7", "audio #"),
    ] {
        let r = &rows_by_id[id];
        assert!(
            r["error"].as_str().is_some_and(|e| e.contains(needle)),
            "{id}: {r}"
        );
        assert!(r["decision"].is_null(), "{id}: {r}");
    }
    assert_eq!(rows_by_id[""]["manifest_line"], 7);
    assert!(err.contains("3 complaints decided"), "{err}");
    assert!(err.contains("4 failed"), "{err}");
    assert!(err.contains("complaint c4"), "{err}");

    // Resume: nothing new to do, nothing appended.
    let before = std::fs::read(&out).unwrap();
    let o = batch_async(server_args(&out)).await;
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    assert!(err.contains("7 skipped"), "{err}");

    // A complaint added to the manifest is the only one appended.
    let mut text = std::fs::read_to_string(&m).unwrap();
    text.push_str(&format!("c8,carlo,{}\n", s(&fixture("carlo-test"))));
    std::fs::write(&m, text).unwrap();
    let o = batch_async(server_args(&out)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = jsonl(&out);
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[7]["complaint_id"], "c8");
    assert!(rows[7]["decision"].is_string(), "{}", rows[7]);

    // CSV, with the header once across runs.
    let csv_out = work.join("results.csv");
    let o = batch_async(server_args(&csv_out)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = batch_async(server_args(&csv_out)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&csv_out).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("complaint_id,"))
            .count(),
        1,
        "{text}"
    );
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 8);
    let c1 = records
        .iter()
        .find(|r| &r[col("complaint_id")] == "c1")
        .unwrap();
    assert!(c1[col("score")].parse::<f64>().is_ok(), "{c1:?}");
    if calibrated {
        assert_eq!(&c1[col("decision")], "DECISION_ACCEPT");
        assert!(
            c1[col("top_hits")].starts_with("speaker:allison:"),
            "{c1:?}"
        );
    }
    let c4 = records
        .iter()
        .find(|r| &r[col("complaint_id")] == "c4")
        .unwrap();
    assert!(c4[col("error")].contains("missing.wav"));

    // --data-dir while the server holds the store: refused with a clear message.
    let local_args = |out: &Path| {
        vec![
            "--data-dir".to_string(),
            s(&data),
            "--tenant".into(),
            "bank".into(),
            "--manifest".into(),
            s(&m),
            "--out".into(),
            s(out),
            "--quiet".into(),
        ]
    };
    let local_out = work.join("local.jsonl");
    let o = batch_async(local_args(&local_out)).await;
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is a server running on it"),
        "{}",
        stderr(&o)
    );
    server.stop().await;

    // --data-dir on the same store gives the same decisions.
    let _ = std::fs::remove_file(&local_out);
    let o = batch_async(local_args(&local_out)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let local = by_id(&jsonl(&local_out));
    let served = by_id(&jsonl(&out));
    assert_eq!(local.len(), 8);
    for (id, row) in &served {
        assert_eq!(local[id]["decision"], row["decision"], "{id}");
        assert_eq!(local[id]["top_hits"], row["top_hits"], "{id}");
    }

    // Nothing processable: non-zero exit. No store: a clear error.
    let bad = work.join("bad.csv");
    std::fs::write(
        &bad,
        "complaint_id,customer_id,audio\nz1,allison,missing.wav\n",
    )
    .unwrap();
    let o = batch(&[
        "--data-dir",
        &s(&data),
        "--manifest",
        &s(&bad),
        "--out",
        &s(&work.join("bad.jsonl")),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no complaint could be processed"),
        "{}",
        stderr(&o)
    );
    let o = batch(&[
        "--data-dir",
        &s(&work),
        "--manifest",
        &s(&m),
        "--out",
        &s(&work.join("x.jsonl")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no voiceprint store"), "{}", stderr(&o));
}
