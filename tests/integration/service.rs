//! The gRPC service end to end: a real server on an ephemeral loopback port, a temporary store,
//! the real model and real speech from `fixtures/speakers/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request};

use voiceprint::config::{Config, ReplaySettings, TenantConfig};
use voiceprint::pipeline::{Engine, EngineConfig};
use voiceprint::proto::v1 as pb;
use voiceprint::proto::v1::voiceprint_client::VoiceprintClient;
use voiceprint::service::{RunningServer, serve};
use voiceprint::store::{MasterKey, RedbStore, Store};

pub(crate) const BANK: &str = "bank-token";
pub(crate) const OTHER: &str = "other-token";

pub(crate) fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    Arc::clone(ENGINE.get_or_init(|| {
        let model = voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())
            .expect("model available (fetched on first use)");
        Arc::new(Engine::load(EngineConfig::new(model)).expect("engine loads"))
    }))
}

pub(crate) fn config(dir: &Path, tenants: bool) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        master_key_file: Some(dir.join("master.key")),
        tenants: if tenants {
            vec![
                TenantConfig {
                    name: "bank".into(),
                    tokens: vec![BANK.into()],
                },
                TenantConfig {
                    name: "other".into(),
                    tokens: vec![OTHER.into()],
                },
            ]
        } else {
            Vec::new()
        },
        required_speech_seconds: 10.0,
        max_audio_seconds: 120.0,
        max_message_bytes: 4 << 20,
        // The tests verify the same clips again and again, which is exactly what replay detection
        // flags; its own test turns it on.
        replay: ReplaySettings {
            enabled: false,
            ..ReplaySettings::default()
        },
        ..Config::default()
    }
}

pub(crate) struct Server {
    stop: Option<oneshot::Sender<()>>,
    running: Option<RunningServer>,
    pub(crate) client: VoiceprintClient<Channel>,
}

impl Server {
    pub(crate) async fn start(config: Config) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let running = serve(config, engine(), async {
            let _ = rx.await;
        })
        .await
        .expect("server starts");
        let url = format!("http://{}", running.local_addr());
        let channel = Channel::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let client = VoiceprintClient::new(channel).max_encoding_message_size(64 << 20);
        Self {
            stop: Some(tx),
            running: Some(running),
            client,
        }
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> String {
        self.running
            .as_ref()
            .map(|r| format!("http://{}", r.local_addr()))
            .unwrap_or_default()
    }

    pub(crate) async fn stop(self) {
        let Server {
            stop,
            running,
            client,
        } = self;
        drop(client);
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
        if let Some(r) = running {
            r.wait().await.expect("clean shutdown");
        }
    }
}

pub(crate) fn req<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("metadata"),
        );
    }
    r
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/speakers")
        .join(format!("{name}.wav"))
}

pub(crate) fn audio(name: &str) -> pb::Audio {
    pb::Audio {
        data: std::fs::read(fixture(name)).expect("fixture"),
        ..Default::default()
    }
}

pub(crate) fn raw_mulaw(seconds: f64) -> pb::Audio {
    // Digital silence in µ-law (0xFF): decodable, but no speech.
    pb::Audio {
        data: vec![0xFF; (seconds * 8000.0) as usize],
        encoding: pb::Encoding::Mulaw as i32,
        sample_rate: 8000,
        ..Default::default()
    }
}

pub(crate) async fn enroll(
    c: &mut VoiceprintClient<Channel>,
    token: &str,
    speaker: &str,
    clip: &str,
) -> pb::EnrollResponse {
    c.enroll(req(
        pb::EnrollRequest {
            speaker_id: speaker.into(),
            audio: vec![audio(clip)],
            consent_reference: Some(format!("consent-{speaker}")),
            overwrite: false,
        },
        Some(token),
    ))
    .await
    .expect("enroll")
    .into_inner()
}

async fn verify(
    c: &mut VoiceprintClient<Channel>,
    token: &str,
    speaker: &str,
    a: pb::Audio,
) -> pb::VerifyResponse {
    c.verify(req(
        pb::VerifyRequest {
            speaker_id: speaker.into(),
            audio: Some(a),
            target_far: None,
        },
        Some(token),
    ))
    .await
    .expect("verify")
    .into_inner()
}

async fn identify(
    c: &mut VoiceprintClient<Channel>,
    token: &str,
    clip: &str,
    watchlist: Option<&str>,
) -> Vec<String> {
    c.identify(req(
        pb::IdentifyRequest {
            audio: Some(audio(clip)),
            top_k: 3,
            watchlist_id: watchlist.map(str::to_string),
            target_far: None,
        },
        Some(token),
    ))
    .await
    .expect("identify")
    .into_inner()
    .candidates
    .into_iter()
    .map(|c| c.speaker_id)
    .collect()
}

pub(crate) fn decision(r: &pb::VerifyResponse) -> pb::Decision {
    pb::Decision::try_from(r.decision).expect("known decision")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Enrolment, verification, identification, watchlists, tenants, restart, opt-out, deletion, audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(config(dir.path(), true)).await;
    let c = &mut s.client;
    // Thresholded outcomes need a calibrated scorer; an uncalibrated build still must rank.
    let calibrated = engine().scorer().is_calibrated();

    // Not enrolled is a decision, not an error.
    let r = verify(c, BANK, "allison", audio("allison-test")).await;
    assert_eq!(decision(&r), pb::Decision::NotEnrolled);
    assert!(!r.decision_id.is_empty());

    let e = enroll(c, BANK, "allison", "allison-enroll").await;
    assert_eq!(
        e.status,
        pb::EnrollmentStatus::EnrollmentComplete as i32,
        "{e:?}"
    );
    assert!(e.net_speech_seconds >= 10.0 && e.required_speech_seconds == 0.0);
    assert_eq!(e.quality.len(), 1);
    let e = enroll(c, BANK, "carlo", "carlo-enroll").await;
    assert_eq!(
        e.status,
        pb::EnrollmentStatus::EnrollmentComplete as i32,
        "{e:?}"
    );

    // Incomplete enrolment: a short clip is not enough, and verification says so.
    let e = enroll(c, BANK, "june", "june-test").await;
    assert_eq!(
        e.status,
        pb::EnrollmentStatus::EnrollmentIncomplete as i32,
        "{e:?}"
    );
    assert!(e.required_speech_seconds > 0.0);
    let r = verify(c, BANK, "june", audio("june-test")).await;
    assert_eq!(decision(&r), pb::Decision::EnrollmentIncomplete);

    // Same speaker accepted, another rejected.
    let same = verify(c, BANK, "allison", audio("allison-test")).await;
    let other = verify(c, BANK, "allison", audio("carlo-test")).await;
    assert!(same.score > other.score + 0.2, "{same:?} {other:?}");
    assert_eq!(decision(&other), pb::Decision::Reject, "{other:?}");
    let r = verify(c, BANK, "carlo", audio("carlo-test")).await;
    if calibrated {
        assert_eq!(decision(&same), pb::Decision::Accept, "{same:?}");
        assert!(same.llr >= same.threshold);
        assert_eq!(decision(&r), pb::Decision::Accept, "{r:?}");
    }
    // Silence cannot be verified.
    let r = verify(c, BANK, "carlo", raw_mulaw(3.0)).await;
    assert_eq!(decision(&r), pb::Decision::NotEnoughSpeech, "{r:?}");

    // Identify: the right speaker first; an unknown voice (june is not enrolled) finds nobody.
    if calibrated {
        assert_eq!(
            identify(c, BANK, "allison-test", None)
                .await
                .first()
                .map(String::as_str),
            Some("allison")
        );
        assert_eq!(
            identify(c, BANK, "carlo-test", None)
                .await
                .first()
                .map(String::as_str),
            Some("carlo")
        );
    }
    let hits = identify(c, BANK, "june-enroll", None).await;
    assert!(hits.is_empty(), "open set: {hits:?}");

    // Tenant isolation.
    let r = verify(c, OTHER, "allison", audio("allison-test")).await;
    assert_eq!(decision(&r), pb::Decision::NotEnrolled);
    assert!(identify(c, OTHER, "allison-test", None).await.is_empty());
    let err = c
        .get_speaker(req(
            pb::GetSpeakerRequest {
                speaker_id: "allison".into(),
            },
            Some(OTHER),
        ))
        .await;
    assert_eq!(err.expect_err("other tenant").code(), Code::NotFound);

    let sp = c
        .get_speaker(req(
            pb::GetSpeakerRequest {
                speaker_id: "allison".into(),
            },
            Some(BANK),
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(sp.state, pb::SpeakerState::SpeakerEnrolled as i32);
    assert_eq!(sp.consent_reference, "consent-allison");
    assert!(sp.expires_unix > sp.last_used_unix);

    // Watchlists.
    c.create_watchlist(req(
        pb::CreateWatchlistRequest {
            watchlist_id: "fraud".into(),
            description: "known fraudsters".into(),
        },
        Some(BANK),
    ))
    .await
    .expect("create");
    let dup = c
        .create_watchlist(req(
            pb::CreateWatchlistRequest {
                watchlist_id: "fraud".into(),
                description: String::new(),
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(dup.expect_err("duplicate").code(), Code::AlreadyExists);
    use pb::add_to_watchlist_request::Source;
    c.add_to_watchlist(req(
        pb::AddToWatchlistRequest {
            watchlist_id: "fraud".into(),
            entry_id: "e-carlo".into(),
            source: Some(Source::SpeakerId("carlo".into())),
            note: "copied".into(),
        },
        Some(BANK),
    ))
    .await
    .expect("add from speaker");
    let added = c
        .add_to_watchlist(req(
            pb::AddToWatchlistRequest {
                watchlist_id: "fraud".into(),
                entry_id: "e-june".into(),
                source: Some(Source::Audio(audio("june-enroll"))),
                note: "from audio".into(),
            },
            Some(BANK),
        ))
        .await
        .expect("add from audio")
        .into_inner();
    assert!(added.quality.is_some());
    let lists = c
        .list_watchlists(req(pb::ListWatchlistsRequest {}, Some(BANK)))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(lists.watchlists.len(), 1);
    assert_eq!(lists.watchlists[0].size, 2);
    let other = c
        .list_watchlists(req(pb::ListWatchlistsRequest {}, Some(OTHER)))
        .await
        .expect("list")
        .into_inner();
    assert!(other.watchlists.is_empty());
    if calibrated {
        assert_eq!(
            identify(c, BANK, "june-test", Some("fraud"))
                .await
                .first()
                .map(String::as_str),
            Some("e-june")
        );
        assert_eq!(
            identify(c, BANK, "carlo-test", Some("fraud"))
                .await
                .first()
                .map(String::as_str),
            Some("e-carlo")
        );
    }
    let removed = c
        .remove_from_watchlist(req(
            pb::RemoveFromWatchlistRequest {
                watchlist_id: "fraud".into(),
                entry_id: "e-carlo".into(),
            },
            Some(BANK),
        ))
        .await
        .expect("remove")
        .into_inner();
    assert!(removed.removed);
    assert!(
        !identify(c, BANK, "carlo-test", Some("fraud"))
            .await
            .contains(&"e-carlo".to_string())
    );
    let missing = c
        .identify(req(
            pb::IdentifyRequest {
                audio: Some(audio("carlo-test")),
                top_k: 1,
                watchlist_id: Some("nope".into()),
                target_far: None,
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(
        missing.expect_err("unknown watchlist").code(),
        Code::NotFound
    );

    // Persistence across a restart; grab carlo's ciphertext while the store is closed.
    s.stop().await;
    let sealed = {
        let key = MasterKey::resolve(&dir.path().join("master.key"))
            .expect("key")
            .0;
        let store = RedbStore::open(dir.path(), key).expect("store");
        store
            .sealed_print("bank", "carlo")
            .expect("read")
            .expect("carlo has a print")
    };
    let mut s = Server::start(config(dir.path(), true)).await;
    let c = &mut s.client;
    let r = verify(c, BANK, "allison", audio("allison-test")).await;
    assert_eq!(
        r.score, same.score,
        "after restart the same print scores the same: {r:?}"
    );
    if calibrated {
        assert_eq!(decision(&r), pb::Decision::Accept, "after restart: {r:?}");
        assert_eq!(
            identify(c, BANK, "carlo-test", None)
                .await
                .first()
                .map(String::as_str),
            Some("carlo")
        );
    }

    // Opt-out: the voiceprint is erased, verification says so, re-enrolment is refused.
    let o = c
        .opt_out_speaker(req(
            pb::OptOutSpeakerRequest {
                speaker_id: "allison".into(),
            },
            Some(BANK),
        ))
        .await
        .expect("opt out")
        .into_inner();
    assert_eq!(
        o.speaker.map(|s| s.state),
        Some(pb::SpeakerState::SpeakerOptedOut as i32)
    );
    let r = verify(c, BANK, "allison", audio("allison-test")).await;
    assert_eq!(decision(&r), pb::Decision::OptedOut);
    let again = c
        .enroll(req(
            pb::EnrollRequest {
                speaker_id: "allison".into(),
                audio: vec![audio("allison-enroll")],
                ..Default::default()
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(
        again.expect_err("opted out").code(),
        Code::FailedPrecondition
    );
    assert!(
        !identify(c, BANK, "allison-test", None)
            .await
            .contains(&"allison".to_string())
    );

    // Delete: gone from the service and from the file, with its copy in a watchlist.
    c.add_to_watchlist(req(
        pb::AddToWatchlistRequest {
            watchlist_id: "fraud".into(),
            entry_id: "e-carlo-2".into(),
            source: Some(pb::add_to_watchlist_request::Source::SpeakerId(
                "carlo".into(),
            )),
            note: "copied again".into(),
        },
        Some(BANK),
    ))
    .await
    .expect("add from speaker");
    let d = c
        .delete_speaker(req(
            pb::DeleteSpeakerRequest {
                speaker_id: "carlo".into(),
                ..Default::default()
            },
            Some(BANK),
        ))
        .await
        .expect("delete")
        .into_inner();
    assert!(d.deleted);
    let copies: Vec<(String, String)> = d
        .watchlist_copies_removed
        .iter()
        .map(|r| (r.watchlist_id.clone(), r.entry_id.clone()))
        .collect();
    assert_eq!(copies, [("fraud".to_string(), "e-carlo-2".to_string())]);
    let lists = c
        .list_watchlists(req(pb::ListWatchlistsRequest {}, Some(BANK)))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(lists.watchlists[0].size, 1, "only june's entry is left");
    assert!(
        !identify(c, BANK, "carlo-test", Some("fraud"))
            .await
            .contains(&"e-carlo-2".to_string())
    );
    let r = verify(c, BANK, "carlo", audio("carlo-test")).await;
    assert_eq!(decision(&r), pb::Decision::NotEnrolled);
    assert!(
        !identify(c, BANK, "carlo-test", None)
            .await
            .contains(&"carlo".to_string())
    );
    let d = c
        .delete_speaker(req(
            pb::DeleteSpeakerRequest {
                speaker_id: "carlo".into(),
                ..Default::default()
            },
            Some(BANK),
        ))
        .await
        .expect("delete again")
        .into_inner();
    assert!(!d.deleted);

    // The audit log can be read while the server holds the store: only the caller's tenant, in
    // pages, and the export is itself audited.
    let export = |after_seq: u64, limit: u32, token: &'static str| {
        let mut c = c.clone();
        async move {
            let mut stream = c
                .export_audit(req(
                    pb::ExportAuditRequest {
                        since_unix_ms: 0,
                        after_seq,
                        limit,
                    },
                    Some(token),
                ))
                .await
                .expect("export")
                .into_inner();
            let mut out = Vec::new();
            while let Some(r) = stream.message().await.expect("record") {
                out.push(r);
            }
            out
        }
    };
    let all = export(0, 0, BANK).await;
    assert!(all.iter().all(|r| r.tenant == "bank"), "tenant isolation");
    assert!(
        all.iter()
            .any(|r| r.action == "delete" && r.speaker_id == "carlo" && r.decision == "deleted")
    );
    assert!(all.iter().any(|r| r.action == "watchlist_remove"
        && r.decision == "deleted_with_speaker"
        && r.detail == "entries=fraud/e-carlo-2"));
    assert_eq!(all.last().map(|r| r.action.as_str()), Some("audit_export"));
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let first = export(0, 2, BANK).await;
    let next = export(first[1].seq, 2, BANK).await;
    assert_eq!(
        first.iter().chain(&next).map(|r| r.seq).collect::<Vec<_>>(),
        all.iter().take(4).map(|r| r.seq).collect::<Vec<_>>()
    );
    assert!(
        export(0, 0, OTHER)
            .await
            .iter()
            .all(|r| r.tenant == "other")
    );
    let too_many = c
        .export_audit(req(
            pb::ExportAuditRequest {
                limit: 1_000_000,
                ..Default::default()
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(too_many.expect_err("limit").code(), Code::ResourceExhausted);
    s.stop().await;

    let file = std::fs::read(dir.path().join(voiceprint::store::DB_FILE)).expect("store file");
    assert!(
        !contains(&file, &sealed[..48]),
        "carlo's ciphertext is still in the store file"
    );
    assert!(
        !contains(&file, b"bank\0carlo"),
        "carlo's record key is still in the store file"
    );
    assert!(
        !contains(&file, b"bank\0fraud\0e-carlo-2"),
        "carlo's watchlist copy is still in the store file"
    );

    // The audit log has every decision, and no biometric data.
    let key = MasterKey::resolve(&dir.path().join("master.key"))
        .expect("key")
        .0;
    let store = RedbStore::open(dir.path(), key).expect("store");
    let mut actions = Vec::new();
    store
        .audit_since(0, &mut |ev| {
            actions.push(format!(
                "{}:{}:{}",
                ev.action,
                ev.speaker_id.unwrap_or_default(),
                ev.decision
            ));
            true
        })
        .expect("audit");
    for want in [
        "verify:allison:not_enrolled",
        "enroll:allison:complete",
        "enroll:june:incomplete",
        "verify:allison:reject",
        "opt_out:allison:opted_out",
        "delete:carlo:deleted",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "audit lacks {want}: {actions:?}"
        );
    }
    assert!(actions.iter().any(|a| a.starts_with("identify:")));
    assert!(actions.iter().any(|a| a.starts_with("watchlist_add:")));
}

/// Authentication, every class of bad input, limits and deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), true);
    cfg.max_audio_seconds = 30.0;
    cfg.max_message_bytes = 1 << 20;
    let mut s = Server::start(cfg).await;
    let c = &mut s.client;
    let get = |token: Option<&str>| {
        req(
            pb::GetSpeakerRequest {
                speaker_id: "x".into(),
            },
            token,
        )
    };

    // Authentication.
    assert_eq!(
        c.get_speaker(get(None)).await.expect_err("no token").code(),
        Code::Unauthenticated
    );
    assert_eq!(
        c.get_speaker(get(Some("wrong")))
            .await
            .expect_err("bad token")
            .code(),
        Code::Unauthenticated
    );
    let mut raw = Request::new(pb::GetSpeakerRequest {
        speaker_id: "x".into(),
    });
    raw.metadata_mut()
        .insert("authorization", BANK.parse().expect("md"));
    assert_eq!(
        c.get_speaker(raw).await.expect_err("no Bearer").code(),
        Code::Unauthenticated
    );
    assert_eq!(
        c.get_speaker(get(Some(BANK)))
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );

    let enroll_err = |a: pb::Audio, speaker: &str| {
        req(
            pb::EnrollRequest {
                speaker_id: speaker.into(),
                audio: vec![a],
                ..Default::default()
            },
            Some(BANK),
        )
    };
    let mut cases: Vec<(&str, Request<pb::EnrollRequest>, Code)> = vec![
        (
            "empty speaker id",
            enroll_err(audio("june-test"), ""),
            Code::InvalidArgument,
        ),
        (
            "control chars in id",
            enroll_err(audio("june-test"), "a\u{1}b"),
            Code::InvalidArgument,
        ),
        (
            "empty audio",
            enroll_err(pb::Audio::default(), "s"),
            Code::InvalidArgument,
        ),
        (
            "garbage bytes",
            enroll_err(
                pb::Audio {
                    data: vec![0x5a; 5000],
                    ..Default::default()
                },
                "s",
            ),
            Code::InvalidArgument,
        ),
        (
            "unknown encoding",
            enroll_err(
                pb::Audio {
                    data: vec![0; 100],
                    encoding: 42,
                    ..Default::default()
                },
                "s",
            ),
            Code::InvalidArgument,
        ),
        (
            "headerless without sample rate",
            enroll_err(
                pb::Audio {
                    data: vec![0; 100],
                    encoding: pb::Encoding::Mulaw as i32,
                    ..Default::default()
                },
                "s",
            ),
            Code::InvalidArgument,
        ),
        (
            "too long",
            enroll_err(raw_mulaw(40.0), "s"),
            Code::ResourceExhausted,
        ),
    ];
    let mut truncated = std::fs::read(fixture("june-test")).expect("fixture");
    truncated.truncate(30);
    cases.push((
        "truncated wav",
        enroll_err(
            pb::Audio {
                data: truncated,
                ..Default::default()
            },
            "s",
        ),
        Code::InvalidArgument,
    ));
    cases.push((
        "right channel of mono",
        enroll_err(
            pb::Audio {
                channel: pb::Channel::Right as i32,
                ..audio("june-test")
            },
            "s",
        ),
        Code::InvalidArgument,
    ));
    cases.push((
        "no audio at all",
        req(
            pb::EnrollRequest {
                speaker_id: "s".into(),
                ..Default::default()
            },
            Some(BANK),
        ),
        Code::InvalidArgument,
    ));
    for (what, r, code) in cases {
        let got = c.enroll(r).await.expect_err(what);
        assert_eq!(got.code(), code, "{what}: {got:?}");
        assert!(
            !got.message().is_empty(),
            "{what}: the message names the problem"
        );
    }
    // Over the message size limit (tonic refuses it before the handler; the server says
    // RESOURCE_EXHAUSTED, not tonic's OUT_OF_RANGE).
    let big = c
        .enroll(enroll_err(
            pb::Audio {
                data: vec![0xFF; 2 << 20],
                encoding: 2,
                sample_rate: 8000,
                ..Default::default()
            },
            "s",
        ))
        .await;
    let big = big.expect_err("too big");
    assert_eq!(big.code(), Code::ResourceExhausted, "{big:?}");
    assert!(big.message().contains("too large"), "{big:?}");

    let bad_far = c
        .verify(req(
            pb::VerifyRequest {
                speaker_id: "s".into(),
                audio: Some(audio("june-test")),
                target_far: Some(0.9),
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(bad_far.expect_err("far").code(), Code::InvalidArgument);
    let no_audio = c
        .verify(req(
            pb::VerifyRequest {
                speaker_id: "s".into(),
                audio: None,
                target_far: None,
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(
        no_audio.expect_err("no audio").code(),
        Code::InvalidArgument
    );
    let top_k = c
        .identify(req(
            pb::IdentifyRequest {
                audio: Some(audio("june-test")),
                top_k: 100_000,
                ..Default::default()
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(top_k.expect_err("top_k").code(), Code::InvalidArgument);
    let wl = c
        .add_to_watchlist(req(
            pb::AddToWatchlistRequest {
                watchlist_id: "nope".into(),
                entry_id: "e".into(),
                source: Some(pb::add_to_watchlist_request::Source::Audio(audio(
                    "june-test",
                ))),
                note: String::new(),
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(wl.expect_err("watchlist").code(), Code::NotFound);
    let stream = c
        .batch_match(req(pb::BatchMatchRequest::default(), Some(BANK)))
        .await;
    assert_eq!(
        stream.expect_err("no complaints").code(),
        Code::InvalidArgument
    );

    // A deadline too short for the analysis.
    let mut r = req(
        pb::IdentifyRequest {
            audio: Some(audio("june-enroll")),
            top_k: 1,
            ..Default::default()
        },
        Some(BANK),
    );
    r.set_timeout(Duration::from_millis(20));
    // DEADLINE_EXCEEDED from the handler; tonic's own timer (CANCELLED) can win on a loaded machine.
    let code = c.identify(r).await.expect_err("deadline").code();
    assert!(
        matches!(code, Code::DeadlineExceeded | Code::Cancelled),
        "{code:?}"
    );
    s.stop().await;

    // Without tokens only loopback may be bound.
    let mut open = config(dir.path(), false);
    open.listen = "0.0.0.0:0".parse().expect("addr");
    assert!(serve(open, engine(), std::future::pending()).await.is_err());
}
