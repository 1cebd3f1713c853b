//! `StreamVerify`: verification while the call goes on.
//!
//! The first message configures the stream; the speaker is looked up at once, so a caller who
//! cannot be verified (not enrolled, opted out, ...) gets the final non-answer before any audio is
//! processed. Audio chunks then run through a [`LiveSession`]: the cheap stages (decode, resample,
//! filterbank, VAD) on the connection's task, the embedding on the bounded analysis pool. A
//! running decision goes out each time enough new speech has accumulated, a final one
//! (`final = true`) when the client half-closes. The final decision is the one audited.
//!
//! A stream with no message for `idle_timeout_seconds` gets its final decision on what was heard
//! and is then closed with `DEADLINE_EXCEEDED`; a stream longer than `max_seconds` likewise with
//! `RESOURCE_EXHAUSTED`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::error::ServiceError;
use super::handlers::{
    ResponseStream, Shared, channel_from_pb, count_decision, decision_name, encoding_from_pb,
    lock_err, now_unix, quality_pb,
};
use super::work::blocking;
use crate::audio::Encoding;
use crate::live::{LiveError, LiveOptions, LiveSession};
use crate::proto::v1 as pb;
use crate::replay::Fingerprint;
use crate::score::{Channel, Thresholds};
use crate::store::{AuditEvent, Voiceprint, validate_id};

/// Responses buffered towards a slow client before the stream stops reading audio.
const OUTBOUND_BUFFER: usize = 8;

/// Validates the first message, looks the speaker up and starts the stream's task.
pub(super) async fn start(
    shared: Arc<Shared>,
    tenant: String,
    rid: Option<String>,
    mut inbound: Streaming<pb::StreamVerifyRequest>,
) -> Result<ResponseStream<pb::VerifyResponse>, ServiceError> {
    let permit = Arc::clone(&shared.streams)
        .try_acquire_owned()
        .map_err(|_| ServiceError::Overloaded("too many open streams, retry later"))?;
    let idle = Duration::from_secs_f64(shared.config.stream.idle_timeout_seconds);
    let first = match tokio::time::timeout(idle, inbound.message()).await {
        Err(_) => return Err(ServiceError::DeadlineExceeded),
        Ok(Err(status)) => return Err(inbound_error(status)),
        Ok(Ok(None)) => {
            return Err(ServiceError::InvalidArgument(
                "the stream ended before its config message".into(),
            ));
        }
        Ok(Ok(Some(m))) => m,
    };
    let Some(pb::stream_verify_request::Message::Config(cfg)) = first.message else {
        return Err(ServiceError::InvalidArgument(
            "the first message of a stream must be its config".into(),
        ));
    };
    validate_id("speaker_id", &cfg.speaker_id)?;
    let opts = live_options(&shared, &cfg)?;
    // Built before the speaker lookup so that a bad stream layout is refused in any case.
    let session = LiveSession::new(Arc::clone(&shared.engine), opts).map_err(live_error)?;
    let thresholds = shared.thresholds(cfg.target_far)?;
    let threshold = thresholds.default_threshold();
    // G.711 is telephone whatever it carries; linear PCM streams are scored as of unknown channel.
    let channel = matches!(
        encoding_from_pb(cfg.encoding),
        Ok(Encoding::Mulaw | Encoding::Alaw)
    )
    .then_some(Channel::Telephone);

    let mut ev = shared.audit(&tenant, "stream_verify", "", rid);
    ev.speaker_id = Some(cfg.speaker_id.clone());
    ev.threshold = Some(threshold);
    let template = pb::VerifyResponse {
        threshold,
        target_far: thresholds.far,
        decision_id: ev.decision_id.clone(),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
    let print = shared.print_for_verify(&tenant, &cfg.speaker_id).await?;
    let print = match print {
        Ok(p) => p,
        Err(decision) => {
            // Nothing to verify against: answer at once and end the stream.
            let resp = pb::VerifyResponse {
                decision: decision as i32,
                r#final: true,
                ..template
            };
            finish_audit(&shared, ev, decision, None, &tenant, &cfg.speaker_id).await?;
            let _ = tx.send(Ok(resp)).await;
            return Ok(Box::pin(ReceiverStream::new(rx)));
        }
    };
    let every = shared.config.stream.decision_every_seconds;
    let call = Call {
        shared,
        tenant,
        speaker: cfg.speaker_id,
        print,
        template,
        thresholds,
        channel,
        session: Arc::new(Mutex::new(session)),
        tx,
        ev: Some(ev),
        last_chunk: Instant::now(),
        scored: false,
        progress_at: 0.0,
        every,
    };
    tokio::spawn(async move {
        let _permit = permit;
        call.run(inbound, idle).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

fn live_options(
    shared: &Shared,
    cfg: &pb::StreamVerifyConfig,
) -> Result<LiveOptions, ServiceError> {
    let bad = ServiceError::InvalidArgument;
    // AUTO, the rate range and the channel layout are checked by `LiveSession::new`.
    let encoding = encoding_from_pb(cfg.encoding).map_err(bad)?;
    let channel = channel_from_pb(cfg.channel, cfg.channel_index).map_err(bad)?;
    let st = &shared.config.stream;
    let mut opts = LiveOptions::new(
        encoding,
        cfg.sample_rate,
        (cfg.channels as usize).max(1),
        channel,
    );
    opts.first_decision_seconds = st.first_decision_seconds;
    opts.decision_every_seconds = st.decision_every_seconds;
    opts.segment_seconds = st.segment_seconds;
    opts.max_seconds = st.max_seconds;
    if !shared.config.replay.enabled {
        opts.replay_seconds = 0.0;
    }
    Ok(opts)
}

fn live_error(e: LiveError) -> ServiceError {
    match e {
        LiveError::InvalidStream(m) => ServiceError::InvalidArgument(m),
        LiveError::TooLong { limit } => {
            ServiceError::Limit(format!("stream longer than {limit} s of audio"))
        }
        LiveError::Audio(e) => ServiceError::InvalidArgument(e.to_string()),
        LiveError::Pipeline(e) => ServiceError::Internal(e.to_string()),
    }
}

/// Appends the audit event of a stream's final decision (and marks the print used if scored).
async fn finish_audit(
    shared: &Arc<Shared>,
    mut ev: AuditEvent,
    decision: pb::Decision,
    touch: Option<i64>,
    tenant: &str,
    speaker: &str,
) -> Result<(), ServiceError> {
    ev.decision = decision_name(decision).to_string();
    let (store, t, sp) = (
        Arc::clone(&shared.store),
        tenant.to_string(),
        speaker.to_string(),
    );
    blocking(move || Ok(store.append_audit(ev, touch.map(|now| (t.as_str(), sp.as_str(), now)))?))
        .await?;
    count_decision("stream_verify", decision);
    Ok(())
}

/// One verification stream after its config.
struct Call {
    shared: Arc<Shared>,
    tenant: String,
    speaker: String,
    print: Voiceprint,
    template: pb::VerifyResponse,
    thresholds: Thresholds,
    /// The stream's channel, when its encoding tells.
    channel: Option<Channel>,
    session: Arc<Mutex<LiveSession>>,
    tx: mpsc::Sender<Result<pb::VerifyResponse, Status>>,
    /// The audit event of the final decision; taken when it is written.
    ev: Option<AuditEvent>,
    last_chunk: Instant,
    /// Whether a scored running decision has gone out.
    scored: bool,
    /// Audio seconds at the last not-enough-speech progress answer.
    progress_at: f64,
    /// Seconds between progress answers.
    every: f64,
}

/// How the inbound side ended.
enum End {
    /// Half-close: the normal end.
    Closed,
    /// An error to report after the final decision.
    Error(ServiceError),
    /// The client went away: nobody to answer.
    Gone,
}

impl Call {
    async fn run(mut self, mut inbound: Streaming<pb::StreamVerifyRequest>, idle: Duration) {
        let max_chunk = self.shared.config.stream.max_chunk_bytes;
        let end = loop {
            let msg = match tokio::time::timeout(idle, inbound.message()).await {
                Err(_) => {
                    break End::Error(ServiceError::IdleStream(idle.as_secs_f64()));
                }
                Ok(Err(status)) if status.code() == tonic::Code::OutOfRange => {
                    break End::Error(inbound_error(status));
                }
                Ok(Err(status)) => {
                    tracing::debug!(message = status.message(), "stream_verify: client error");
                    break End::Gone;
                }
                Ok(Ok(None)) => break End::Closed,
                Ok(Ok(Some(m))) => m,
            };
            let chunk = match msg.message {
                Some(pb::stream_verify_request::Message::Audio(a)) => a,
                Some(pb::stream_verify_request::Message::Config(_)) => {
                    break End::Error(ServiceError::InvalidArgument(
                        "config may only be sent once, as the first message".into(),
                    ));
                }
                None => {
                    break End::Error(ServiceError::InvalidArgument(
                        "empty stream message: send audio bytes".into(),
                    ));
                }
            };
            if chunk.len() > max_chunk {
                break End::Error(ServiceError::Limit(format!(
                    "audio chunk of {} bytes exceeds {max_chunk}",
                    chunk.len()
                )));
            }
            self.last_chunk = Instant::now();
            let (due, audio_seconds, quality) = {
                let mut s = match self.session.lock() {
                    Ok(s) => s,
                    Err(e) => break End::Error(lock_err(e)),
                };
                match s.push(&chunk) {
                    Ok(()) => (s.decision_due(), s.audio_seconds(), s.quality()),
                    Err(e) => break End::Error(live_error(e)),
                }
            };
            if due {
                self.scored = true;
                match self.running_decision().await {
                    Ok(true) => {}
                    Ok(false) => break End::Gone,
                    Err(e) => break End::Error(e),
                }
            } else if !self.scored && audio_seconds >= self.progress_at + self.every {
                // Until the first decision, tell the agent's desktop how far the call has got.
                self.progress_at = audio_seconds;
                let mut resp = self.response(quality_pb(&quality), false);
                resp.decision = pb::Decision::NotEnoughSpeech as i32;
                if self.tx.send(Ok(resp)).await.is_err() {
                    break End::Gone;
                }
            }
        };
        if matches!(end, End::Gone) {
            // The final decision is still audited: the call happened.
            if let Err(e) = self.final_decision().await {
                tracing::warn!(error = %e, "stream_verify: final decision of an abandoned stream");
            }
            return;
        }
        match self.final_decision().await {
            Ok(resp) => {
                if self.tx.send(Ok(resp)).await.is_ok()
                    && let End::Error(e) = end
                {
                    let _ = self.tx.send(Err(e.into())).await;
                }
            }
            Err(e) => {
                let _ = self.tx.send(Err(e.into())).await;
            }
        }
    }

    /// Computes and sends a running decision. Returns false when the client is gone.
    async fn running_decision(&mut self) -> Result<bool, ServiceError> {
        let session = Arc::clone(&self.session);
        let r = self
            .shared
            .pool
            .run(move || {
                let mut s = session.lock().map_err(lock_err)?;
                let embedding = s.update().map_err(live_error)?;
                Ok::<_, ServiceError>((embedding, s.quality()))
            })
            .await;
        let (embedding, quality) = match r {
            // A busy server skips a running decision rather than failing the call; the speech
            // stays in the open segment for the next one.
            Err(ServiceError::Overloaded(_)) => return Ok(true),
            other => other??,
        };
        let mut resp = self.response(quality_pb(&quality), false);
        match embedding {
            None => resp.decision = pb::Decision::NotEnoughSpeech as i32,
            Some(e) => {
                self.shared
                    .decide(&self.print, &e, self.channel, &self.thresholds, &mut resp);
            }
        }
        metrics::histogram!("voiceprint_stream_decision_seconds")
            .record(self.last_chunk.elapsed().as_secs_f64());
        Ok(self.tx.send(Ok(resp)).await.is_ok())
    }

    /// Flushes the session, decides, runs the replay check on the start of the call and audits.
    async fn final_decision(&mut self) -> Result<pb::VerifyResponse, ServiceError> {
        let session = Arc::clone(&self.session);
        let (embedding, quality, fingerprint) = self
            .shared
            .pool
            .run(move || {
                let mut s = session.lock().map_err(lock_err)?;
                let embedding = s.finish().map_err(live_error)?;
                let (head, rate) = s.head_audio();
                let fp = (!head.is_empty())
                    .then(|| Fingerprint::compute(head, rate).ok())
                    .flatten();
                Ok::<_, ServiceError>((embedding, s.quality(), fp))
            })
            .await??;
        let mut resp = self.response(quality_pb(&quality), true);
        let mut ev = self
            .ev
            .take()
            .ok_or_else(|| ServiceError::Internal("final decision taken twice".into()))?;
        let mut touch = None;
        match embedding {
            None => {
                resp.decision = pb::Decision::NotEnoughSpeech as i32;
                resp.reason = pb::DecisionReason::ReasonLowQuality as i32;
            }
            Some(e) => {
                let score =
                    self.shared
                        .decide(&self.print, &e, self.channel, &self.thresholds, &mut resp);
                ev.threshold = Some(resp.threshold);
                ev.score = Some(score.norm);
                ev.llr = Some(score.llr);
                touch = Some(now_unix());
            }
        }
        if let Some(fp) = fingerprint
            && self
                .shared
                .check_replay(&self.tenant, fp, &mut resp, &mut ev)
                .await?
        {
            touch = None;
        }
        ev.detail = Some(match ev.detail.take() {
            Some(d) => format!("{d}; net_speech_seconds={:.2}", quality.net_speech_seconds),
            None => format!("net_speech_seconds={:.2}", quality.net_speech_seconds),
        });
        let decision = pb::Decision::try_from(resp.decision).unwrap_or(pb::Decision::Unspecified);
        finish_audit(
            &self.shared,
            ev,
            decision,
            touch,
            &self.tenant,
            &self.speaker,
        )
        .await?;
        metrics::histogram!("voiceprint_stream_decision_seconds")
            .record(self.last_chunk.elapsed().as_secs_f64());
        Ok(resp)
    }

    fn response(&self, quality: pb::Quality, last: bool) -> pb::VerifyResponse {
        pb::VerifyResponse {
            quality: Some(quality),
            r#final: last,
            ..self.template.clone()
        }
    }
}

/// What an unreadable inbound message becomes: a too-large one is over a limit, anything else is a
/// malformed request.
fn inbound_error(status: Status) -> ServiceError {
    let status = super::limits::too_large_to_exhausted(status);
    if status.code() == tonic::Code::ResourceExhausted {
        ServiceError::Limit(status.message().to_string())
    } else {
        ServiceError::InvalidArgument(status.message().into())
    }
}
