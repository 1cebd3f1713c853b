//! Recurring voices tracked complaint by complaint (`TrackComplaint`, `ListRecurringVoices`,
//! `ForgetComplaint`) against a real server, across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tonic::Code;
use tonic::transport::Channel;

use voiceprint::proto::v1 as pb;
use voiceprint::proto::v1::voiceprint_client::VoiceprintClient;

use crate::service::{BANK, Server, audio, config, req};

fn eval_clip(name: &str) -> pb::Audio {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/eval")
        .join(name);
    pb::Audio {
        data: std::fs::read(p).expect("fixture"),
        ..Default::default()
    }
}

async fn track(
    c: &mut VoiceprintClient<Channel>,
    complaint: &str,
    customer: &str,
    a: pb::Audio,
) -> Result<pb::TrackComplaintResponse, tonic::Status> {
    c.track_complaint(req(
        pb::TrackComplaintRequest {
            complaint_id: complaint.into(),
            customer_id: customer.into(),
            audio: Some(a),
        },
        Some(BANK),
    ))
    .await
    .map(tonic::Response::into_inner)
}

async fn voices(c: &mut VoiceprintClient<Channel>) -> Vec<pb::RecurringVoice> {
    c.list_recurring_voices(req(pb::ListRecurringVoicesRequest::default(), Some(BANK)))
        .await
        .expect("list")
        .into_inner()
        .voices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_cluster_incrementally_and_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fixtures are clean studio prompts: same-speaker cosines between different prompts start
    // near 0.76, at the telephony default of 0.75; 0.6 keeps the test about the mechanism.
    let mut cfg = config(dir.path(), true);
    cfg.recurring.threshold = 0.6;
    let mut s = Server::start(cfg.clone()).await;
    let c = &mut s.client;

    // One voice (Allison) complains for two customers; Carlo for a third.
    let first = track(c, "c1", "cust-A", audio("allison-test"))
        .await
        .expect("track");
    assert!(!first.suspicious && first.score == 0.0, "{first:?}");
    let carlo = track(c, "c2", "cust-C", audio("carlo-test"))
        .await
        .expect("track");
    assert!(!carlo.suspicious);
    assert_ne!(
        carlo.voice.as_ref().expect("voice").cluster_id,
        first.voice.as_ref().expect("voice").cluster_id
    );
    let again = track(c, "c3", "cust-B", eval_clip("allison_a.wav"))
        .await
        .expect("track");
    assert!(again.suspicious && again.newly_suspicious, "{again:?}");
    let v = again.voice.expect("voice");
    assert_eq!(v.complaint_ids, vec!["c1", "c3"]);
    assert_eq!(v.customer_ids, vec!["cust-A", "cust-B"]);
    assert!(v.confidence > 0.5 && again.score >= 0.6, "{v:?}");

    // The same complaint twice is refused; silence is a non-answer, not tracked.
    let dup = track(c, "c3", "cust-B", eval_clip("allison_a.wav")).await;
    assert_eq!(dup.expect_err("duplicate").code(), Code::AlreadyExists);
    let silent = track(
        c,
        "c4",
        "cust-D",
        pb::Audio {
            data: vec![0xFF; 16000],
            encoding: pb::Encoding::Mulaw as i32,
            sample_rate: 8000,
            ..Default::default()
        },
    )
    .await
    .expect("non-answer");
    assert_eq!(silent.decision, pb::Decision::NotEnoughSpeech as i32);

    // Bad requests are typed errors.
    let no_audio = c
        .track_complaint(req(
            pb::TrackComplaintRequest {
                complaint_id: "c5".into(),
                customer_id: "cust-E".into(),
                audio: None,
            },
            Some(BANK),
        ))
        .await;
    assert_eq!(
        no_audio.expect_err("no audio").code(),
        Code::InvalidArgument
    );
    let no_id = track(c, "", "cust-E", audio("carlo-test")).await;
    assert_eq!(no_id.expect_err("empty id").code(), Code::InvalidArgument);
    let unknown = c
        .forget_complaint(req(
            pb::ForgetComplaintRequest {
                complaint_id: "never-tracked".into(),
            },
            Some(BANK),
        ))
        .await
        .expect("forget")
        .into_inner();
    assert!(!unknown.forgotten);

    let listed = voices(c).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].customer_ids, vec!["cust-A", "cust-B"]);

    // The clustering is rebuilt from the store after a restart.
    s.stop().await;
    let mut s = Server::start(cfg).await;
    let c = &mut s.client;
    assert_eq!(voices(c).await, listed);

    // Forgetting a complaint erases it and the voice no longer recurs.
    let f = c
        .forget_complaint(req(
            pb::ForgetComplaintRequest {
                complaint_id: "c3".into(),
            },
            Some(BANK),
        ))
        .await
        .expect("forget")
        .into_inner();
    assert!(f.forgotten);
    assert!(voices(c).await.is_empty());
    // Another tenant sees nothing.
    let other = c
        .list_recurring_voices(req(
            pb::ListRecurringVoicesRequest::default(),
            Some(crate::service::OTHER),
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(other.voices.is_empty());
    s.stop().await;
}
