//! The `voiceprint.v1.Voiceprint` RPCs.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::Auth;
use super::error::ServiceError;
use super::index::{Hit, Index};
use super::work::{WorkPool, blocking};
use crate::audio::{ChannelSelect, DecodeOptions, Encoding, Limits};
use crate::config::Config;
use crate::pipeline::{Analysis, Engine};
use crate::proto::v1 as pb;
use crate::quality::Quality;
use crate::replay::{self, Fingerprint, ReplayConfig, ReplayIndex};
use crate::score::{Channel, Prepared, Score, Thresholds, merge_embeddings};
use crate::store::{
    AuditEvent, EnrollmentPart, ReplayRecord, SpeakerChange, SpeakerMeta, SpeakerRecord,
    SpeakerState, Store, StoreError, Voiceprint, WatchlistEntry, WatchlistMeta, validate_id,
};

// BatchMatch lives in its own file; as a child module it shares the private helpers below.
#[path = "audit_export.rs"]
mod audit_export;
#[path = "batch.rs"]
mod batch;

/// Most audio pieces in one Enroll request.
const MAX_ENROLL_AUDIO: usize = 32;
/// Candidates returned by Identify when the request asks for 0.
const DEFAULT_TOP_K: usize = 5;

/// State shared by all requests.
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) auth: Auth,
    pub(crate) config: Config,
    pub(crate) pool: WorkPool,
    /// tenant → enrolled speakers.
    pub(crate) speakers: RwLock<HashMap<String, Index>>,
    /// (tenant, watchlist) → entries.
    pub(crate) watchlists: RwLock<HashMap<(String, String), Index>>,
    /// Serialises store writes with the index updates that follow them.
    pub(crate) write_lock: Mutex<()>,
    /// tenant → fingerprints of recent verification audio (replay detection; memory only).
    pub(crate) replay: Mutex<HashMap<String, ReplayIndex>>,
    /// Open StreamVerify calls.
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    /// tenant → incremental clustering of tracked complaints.
    pub(crate) complaints: Mutex<HashMap<String, crate::recurring::IncrementalClusterer>>,
}

pub(super) fn lock_err<T>(_: T) -> ServiceError {
    ServiceError::Internal("lock poisoned".into())
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(super) fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

impl Shared {
    /// Loads the in-memory indexes from the store.
    pub(crate) fn load_indexes(&self) -> Result<(usize, usize), ServiceError> {
        let mut speakers: HashMap<String, Index> = HashMap::new();
        let mut n = 0;
        self.store.for_each_enrolled(&mut |tenant, speaker, p| {
            n += usize::from(
                speakers
                    .entry(tenant.to_string())
                    .or_default()
                    .upsert(speaker, &p),
            );
        })?;
        let mut lists: HashMap<(String, String), Index> = HashMap::new();
        let mut m = 0;
        self.store
            .for_each_watchlist_entry(&mut |tenant, wl, entry, p| {
                m += usize::from(
                    lists
                        .entry((tenant.to_string(), wl.to_string()))
                        .or_default()
                        .upsert(entry, &p),
                );
            })?;
        *self.speakers.write().map_err(lock_err)? = speakers;
        *self.watchlists.write().map_err(lock_err)? = lists;
        Ok((n, m))
    }

    pub(crate) fn audit(
        &self,
        tenant: &str,
        action: &str,
        decision: &str,
        request_id: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            seq: 0,
            time_unix_ms: now_ms(),
            tenant: tenant.to_string(),
            action: action.to_string(),
            speaker_id: None,
            watchlist_id: None,
            decision: decision.to_string(),
            score: None,
            llr: None,
            threshold: None,
            model_version: self.engine.model_version().to_string(),
            calibration_version: self.engine.scorer().version().to_string(),
            decision_id: uuid::Uuid::new_v4().to_string(),
            request_id,
            detail: None,
        }
    }

    fn expiry_seconds(&self) -> i64 {
        i64::from(self.config.expiry_days) * 86_400
    }

    fn is_stale(&self, meta: &SpeakerMeta, now: i64) -> bool {
        matches!(meta.state, SpeakerState::Enrolled | SpeakerState::Enrolling)
            && now.saturating_sub(meta.last_used_unix) > self.expiry_seconds()
    }

    fn set_speaker_index(
        &self,
        tenant: &str,
        speaker: &str,
        prepared: Option<&Prepared>,
    ) -> Result<(), ServiceError> {
        let mut idx = self.speakers.write().map_err(lock_err)?;
        match prepared {
            Some(p) => {
                idx.entry(tenant.to_string())
                    .or_default()
                    .upsert(speaker, p);
            }
            None => {
                if let Some(i) = idx.get_mut(tenant) {
                    i.remove(speaker);
                }
            }
        }
        Ok(())
    }

    /// Erases the voiceprint of a speaker unused past the retention period. Returns true if it did.
    pub(crate) fn expire(&self, tenant: &str, speaker: &str) -> Result<bool, ServiceError> {
        let _w = self.write_lock.lock().map_err(lock_err)?;
        let now = now_unix();
        let mut expired = false;
        let mut ev = self.audit(tenant, "expire", "expired", None);
        ev.speaker_id = Some(speaker.to_string());
        let mut ev = Some(ev);
        self.store
            .modify_speaker(tenant, speaker, &mut |cur| match cur {
                Some(mut rec) if self.is_stale(&rec.meta, now) => {
                    expired = true;
                    rec.meta.state = SpeakerState::Expired;
                    rec.meta.updated_unix = now;
                    rec.print = None;
                    Ok((SpeakerChange::Put(rec), ev.take()))
                }
                _ => Ok((SpeakerChange::Keep, None)),
            })?;
        if expired {
            self.set_speaker_index(tenant, speaker, None)?;
            tracing::info!(tenant, speaker, "voiceprint expired and erased");
        }
        Ok(expired)
    }

    /// Expires every stale speaker; returns how many.
    pub(crate) fn sweep_expired(&self) -> Result<usize, ServiceError> {
        let now = now_unix();
        let mut n = 0;
        for (tenant, speaker, meta) in self.store.list_speakers()? {
            if self.is_stale(&meta, now) && self.expire(&tenant, &speaker)? {
                n += 1;
            }
        }
        if n > 0 {
            self.store.compact()?;
        }
        Ok(n)
    }

    fn speaker_pb(&self, id: &str, meta: &SpeakerMeta) -> pb::Speaker {
        let state = match meta.state {
            SpeakerState::Enrolling => pb::SpeakerState::SpeakerEnrolling,
            SpeakerState::Enrolled => pb::SpeakerState::SpeakerEnrolled,
            SpeakerState::OptedOut => pb::SpeakerState::SpeakerOptedOut,
            SpeakerState::Expired => pb::SpeakerState::SpeakerExpired,
        };
        let expires = match meta.state {
            SpeakerState::Enrolling | SpeakerState::Enrolled => {
                meta.last_used_unix.saturating_add(self.expiry_seconds())
            }
            _ => 0,
        };
        pb::Speaker {
            speaker_id: id.to_string(),
            state: state as i32,
            net_speech_seconds: meta.net_speech_seconds,
            enrollment_audio_count: meta.enrollment_count,
            created_unix: meta.created_unix,
            updated_unix: meta.updated_unix,
            last_used_unix: meta.last_used_unix,
            expires_unix: expires,
            model_version: meta.model_version.clone(),
            consent_reference: meta.consent_reference.clone().unwrap_or_default(),
        }
    }

    fn decode_options(
        &self,
        index: usize,
        audio: &pb::Audio,
    ) -> Result<DecodeOptions, ServiceError> {
        let bad = |m: String| ServiceError::InvalidArgument(format!("audio #{index}: {m}"));
        if audio.data.is_empty() {
            return Err(bad("no audio data".into()));
        }
        if audio.data.len() > self.config.max_message_bytes {
            return Err(ServiceError::Limit(format!(
                "audio #{index} is larger than {} bytes",
                self.config.max_message_bytes
            )));
        }
        let encoding = encoding_from_pb(audio.encoding).map_err(bad)?;
        if encoding != Encoding::Auto && audio.sample_rate == 0 {
            return Err(bad("sample_rate is required for headerless audio".into()));
        }
        let channel = channel_from_pb(audio.channel, audio.channel_index).map_err(bad)?;
        Ok(DecodeOptions {
            encoding,
            sample_rate: (audio.sample_rate > 0).then_some(audio.sample_rate),
            channels: (audio.channels as usize).max(1),
            channel,
            limits: Limits {
                max_bytes: self.config.max_message_bytes,
                max_seconds: self.config.max_audio_seconds,
                ..Limits::default()
            },
        })
    }

    /// Decodes and embeds audio pieces on the bounded pool.
    pub(crate) async fn analyze(
        &self,
        audio: Vec<pb::Audio>,
    ) -> Result<Vec<Analysis>, ServiceError> {
        let opts = audio
            .iter()
            .enumerate()
            .map(|(i, a)| self.decode_options(i, a))
            .collect::<Result<Vec<_>, _>>()?;
        let engine = Arc::clone(&self.engine);
        let started = Instant::now();
        let out = self
            .pool
            .run(move || {
                audio
                    .iter()
                    .zip(&opts)
                    .enumerate()
                    .map(|(index, (a, o))| {
                        engine
                            .analyze(&a.data, o)
                            .map_err(|source| ServiceError::Audio { index, source })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        metrics::histogram!("voiceprint_analysis_seconds").record(started.elapsed().as_secs_f64());
        out
    }

    /// Decodes and analyses one audio piece on the bounded pool, with the acoustic fingerprint of
    /// the decoded audio when replay detection is on.
    pub(crate) async fn analyze_with_fingerprint(
        &self,
        audio: pb::Audio,
    ) -> Result<(Analysis, Option<Fingerprint>), ServiceError> {
        let opts = self.decode_options(0, &audio)?;
        let engine = Arc::clone(&self.engine);
        let fingerprint = self.config.replay.enabled;
        let started = Instant::now();
        let out = self
            .pool
            .run(move || {
                // Audio the fingerprinter refuses (too long, odd rate) is simply not checked.
                let (analysis, fp) = engine
                    .analyze_inspect(&audio.data, &opts, |samples, rate| {
                        fingerprint
                            .then(|| Fingerprint::compute(samples, rate).ok())
                            .flatten()
                    })
                    .map_err(|source| ServiceError::Audio { index: 0, source })?;
                Ok((analysis, fp))
            })
            .await?;
        metrics::histogram!("voiceprint_analysis_seconds").record(started.elapsed().as_secs_f64());
        out
    }

    /// Compares `fingerprint` with the tenant's recent verification audio, then remembers it
    /// under `id`. Returns the spoof risk and the id of the closest earlier audio, if any shares
    /// landmarks with it.
    pub(crate) fn replay_check(
        &self,
        tenant: &str,
        id: &str,
        speaker: &str,
        fingerprint: Fingerprint,
    ) -> Result<Option<(f64, String)>, ServiceError> {
        let now = now_unix();
        let record = ReplayRecord {
            decision_id: id.to_string(),
            speaker_id: speaker.to_string(),
            timestamp_unix: now,
            fingerprint: serde_json::to_vec(&fingerprint)
                .map_err(|e| ServiceError::Internal(format!("fingerprint: {e}")))?,
        };
        let hit = {
            let mut map = self.replay.lock().map_err(lock_err)?;
            let index = map
                .entry(tenant.to_string())
                .or_insert_with(|| self.replay_index());
            let hit = index
                .query(&fingerprint)
                .map(|(earlier, m)| (replay::spoof_risk(&m), earlier));
            index.insert(id.to_string(), fingerprint, u64::try_from(now).unwrap_or(0));
            hit
        };
        self.store.put_replay(tenant, &record)?;
        Ok(hit)
    }

    fn replay_index(&self) -> ReplayIndex {
        ReplayIndex::new(ReplayConfig {
            capacity: self.config.replay.capacity,
            retention_seconds: self.replay_retention_seconds(),
        })
    }

    fn replay_retention_seconds(&self) -> u64 {
        u64::from(self.config.replay.retention_days) * 86_400
    }

    /// Erases stored replay fingerprints past the retention period or beyond the capacity.
    pub(crate) fn prune_replays(&self) -> Result<usize, ServiceError> {
        let retention = i64::try_from(self.replay_retention_seconds()).unwrap_or(i64::MAX);
        Ok(self.store.prune_replays(
            now_unix().saturating_sub(retention),
            self.config.replay.capacity,
        )?)
    }

    /// Rebuilds the in-memory replay indexes from the store, so the replay check survives a
    /// restart. Returns the number of fingerprints loaded.
    pub(crate) fn load_replays(&self) -> Result<usize, ServiceError> {
        let mut fresh: HashMap<String, ReplayIndex> = HashMap::new();
        let mut n = 0;
        let mut unreadable = 0;
        self.store.for_each_replay(&mut |tenant, rec| {
            let Ok(fp) = serde_json::from_slice::<Fingerprint>(&rec.fingerprint) else {
                unreadable += 1;
                return;
            };
            fresh
                .entry(tenant.to_string())
                .or_insert_with(|| self.replay_index())
                .insert(
                    rec.decision_id,
                    fp,
                    u64::try_from(rec.timestamp_unix).unwrap_or(0),
                );
            n += 1;
        })?;
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "stored replay fingerprints of another format were skipped"
            );
        }
        *self.replay.lock().map_err(lock_err)? = fresh;
        Ok(n)
    }

    /// Erases the replay fingerprints of calls that claimed `speaker`, in the store and in the
    /// tenant's index. Returns how many went.
    fn forget_replays_of(&self, tenant: &str, speaker: &str) -> Result<usize, ServiceError> {
        let ids = self.store.remove_replays_of(tenant, speaker)?;
        if !ids.is_empty()
            && let Some(index) = self.replay.lock().map_err(lock_err)?.get_mut(tenant)
        {
            index.remove_ids(&ids);
        }
        Ok(ids.len())
    }

    /// The voiceprint to verify `speaker` against, or the non-answer when there is none. A
    /// voiceprint found stale is expired on the spot.
    pub(crate) async fn print_for_verify(
        self: &Arc<Self>,
        tenant: &str,
        speaker: &str,
    ) -> Result<Result<Voiceprint, pb::Decision>, ServiceError> {
        let (store, t2, sp2) = (
            Arc::clone(&self.store),
            tenant.to_string(),
            speaker.to_string(),
        );
        let Some(rec) = blocking(move || Ok(store.speaker(&t2, &sp2)?)).await? else {
            return Ok(Err(pb::Decision::NotEnrolled));
        };
        Ok(match rec.meta.state {
            SpeakerState::OptedOut => Err(pb::Decision::OptedOut),
            SpeakerState::Expired => Err(pb::Decision::Expired),
            _ if self.is_stale(&rec.meta, now_unix()) => {
                let (sh, t3, sp3) = (Arc::clone(self), tenant.to_string(), speaker.to_string());
                blocking(move || {
                    sh.expire(&t3, &sp3)?;
                    Ok(sh.store.compact()?)
                })
                .await?;
                Err(pb::Decision::Expired)
            }
            SpeakerState::Enrolling => Err(pb::Decision::EnrollmentIncomplete),
            SpeakerState::Enrolled => rec.print.ok_or(pb::Decision::NotEnrolled),
        })
    }

    /// Scores `embedding` (audio of `channel`, if known) against `print` and fills the decision, reason,
    /// score, LLR and the threshold of their channel pairing in `resp`.
    pub(crate) fn decide(
        &self,
        print: &Voiceprint,
        embedding: &[f32],
        channel: Option<Channel>,
        thresholds: &Thresholds,
        resp: &mut pb::VerifyResponse,
    ) -> Score {
        let scorer = self.engine.scorer();
        let probe = scorer.prepare_from(embedding, channel);
        let score = scorer.score(&print.prepared, &probe);
        let threshold = thresholds.for_pair(print.prepared.channel, channel);
        resp.threshold = threshold;
        resp.score = score.norm;
        resp.llr = score.llr;
        let accept = score.llr >= threshold;
        (resp.decision, resp.reason) = if accept {
            (
                pb::Decision::Accept as i32,
                pb::DecisionReason::ReasonScoreAboveThreshold as i32,
            )
        } else {
            (
                pb::Decision::Reject as i32,
                pb::DecisionReason::ReasonScoreBelowThreshold as i32,
            )
        };
        score
    }

    /// Replay check of a verification's audio: sets `spoof_risk`, and when it reaches the
    /// threshold turns a scored decision into REJECT / REPLAY_SUSPECTED (returns true then).
    pub(crate) async fn check_replay(
        self: &Arc<Self>,
        tenant: &str,
        fingerprint: Fingerprint,
        resp: &mut pb::VerifyResponse,
        ev: &mut AuditEvent,
    ) -> Result<bool, ServiceError> {
        let (sh, t, id, sp) = (
            Arc::clone(self),
            tenant.to_string(),
            resp.decision_id.clone(),
            ev.speaker_id.clone().unwrap_or_default(),
        );
        let Some((risk, earlier)) =
            blocking(move || sh.replay_check(&t, &id, &sp, fingerprint)).await?
        else {
            return Ok(false);
        };
        resp.spoof_risk = risk;
        let scored =
            [pb::Decision::Accept as i32, pb::Decision::Reject as i32].contains(&resp.decision);
        if risk < self.config.replay.threshold || !scored {
            return Ok(false);
        }
        resp.decision = pb::Decision::Reject as i32;
        resp.reason = pb::DecisionReason::ReasonReplaySuspected as i32;
        ev.detail = Some(format!(
            "replay suspected: spoof_risk={risk:.3}, matches decision {earlier}"
        ));
        metrics::counter!("voiceprint_replays_suspected_total").increment(1);
        Ok(true)
    }

    /// The number of candidates a search returns: the default for 0, at most `max_top_k`.
    pub(super) fn top_k(&self, requested: u32) -> Result<usize, ServiceError> {
        match requested {
            0 => Ok(DEFAULT_TOP_K),
            k if k > self.config.max_top_k => Err(ServiceError::InvalidArgument(format!(
                "top_k must be at most {}",
                self.config.max_top_k
            ))),
            k => Ok(k as usize),
        }
    }

    /// The LLR thresholds for a request's target FAR (the configured default when absent).
    pub(super) fn thresholds(&self, target_far: Option<f64>) -> Result<Thresholds, ServiceError> {
        let far = target_far.unwrap_or(self.config.default_target_far);
        self.engine
            .scorer()
            .thresholds(far)
            .map_err(|e| ServiceError::InvalidArgument(format!("target_far: {e}")))
    }
}

/// The channel all of `channels` share; `None` when they differ, any is unknown, or there are none.
fn common_channel(channels: impl IntoIterator<Item = Option<Channel>>) -> Option<Channel> {
    let mut it = channels.into_iter();
    let first = it.next()??;
    it.all(|c| c == Some(first)).then_some(first)
}

/// The audio encoding a proto `Encoding` value names.
pub(super) fn encoding_from_pb(value: i32) -> Result<Encoding, String> {
    match pb::Encoding::try_from(value) {
        Ok(pb::Encoding::Auto) => Ok(Encoding::Auto),
        Ok(pb::Encoding::Pcm16le) => Ok(Encoding::Pcm16Le),
        Ok(pb::Encoding::Mulaw) => Ok(Encoding::Mulaw),
        Ok(pb::Encoding::Alaw) => Ok(Encoding::Alaw),
        Err(_) => Err(format!("unknown encoding {value}")),
    }
}

/// The channel selection a proto `Channel` value (and its index) names.
pub(super) fn channel_from_pb(value: i32, index: u32) -> Result<ChannelSelect, String> {
    match pb::Channel::try_from(value) {
        Ok(pb::Channel::Default) => Ok(ChannelSelect::Default),
        Ok(pb::Channel::Mix) => Ok(ChannelSelect::Mix),
        Ok(pb::Channel::Left) => Ok(ChannelSelect::Left),
        Ok(pb::Channel::Right) => Ok(ChannelSelect::Right),
        Ok(pb::Channel::Index) => Ok(ChannelSelect::Index(index as usize)),
        Err(_) => Err(format!("unknown channel {value}")),
    }
}

pub(super) fn quality_pb(q: &Quality) -> pb::Quality {
    let mut warnings = Vec::new();
    if q.net_speech_seconds < 3.0 {
        warnings.push("short".to_string());
    }
    if q.snr_db < 10.0 {
        warnings.push("low_snr".to_string());
    }
    if q.clipping_ratio > 0.01 {
        warnings.push("clipping".to_string());
    }
    pb::Quality {
        duration_seconds: q.duration_seconds,
        net_speech_seconds: q.net_speech_seconds,
        snr_db: q.snr_db,
        clipping_ratio: q.clipping_ratio,
        warnings,
    }
}

pub(super) fn request_id<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(128).collect())
}

pub(super) fn decision_name(d: pb::Decision) -> &'static str {
    match d {
        pb::Decision::Unspecified => "unspecified",
        pb::Decision::Accept => "accept",
        pb::Decision::Reject => "reject",
        pb::Decision::NotEnoughSpeech => "not_enough_speech",
        pb::Decision::NotEnrolled => "not_enrolled",
        pb::Decision::EnrollmentIncomplete => "enrollment_incomplete",
        pb::Decision::OptedOut => "opted_out",
        pb::Decision::Expired => "expired",
    }
}

/// The service implementation; cheap to clone.
#[derive(Clone)]
pub struct VoiceprintService {
    pub(crate) shared: Arc<Shared>,
}

pub(super) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Records request count and latency for one RPC and converts its error.
fn finish<T>(
    method: &'static str,
    started: Instant,
    result: Result<T, ServiceError>,
) -> Result<Response<T>, Status> {
    let result = result.map_err(Status::from);
    let code = match &result {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}", s.code()).to_lowercase(),
    };
    metrics::counter!("voiceprint_requests_total", "method" => method, "code" => code.clone())
        .increment(1);
    metrics::histogram!("voiceprint_request_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
    if let Err(s) = &result {
        tracing::debug!(method, code, message = s.message(), "request failed");
    }
    result.map(Response::new)
}

/// The client's deadline from `grpc-timeout` (e.g. `100m` = 100 ms), if any.
fn deadline(md: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = md.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs a handler within the client's deadline. tonic's own timeout answers CANCELLED; firing a
/// little earlier gives the client the DEADLINE_EXCEEDED that gRPC specifies.
async fn within<T>(
    budget: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    match budget {
        None => fut.await,
        Some(d) => {
            let margin = (d / 20).max(Duration::from_millis(2));
            tokio::time::timeout(d.saturating_sub(margin), fut)
                .await
                .map_err(|_| ServiceError::DeadlineExceeded)?
        }
    }
}

pub(super) fn count_decision(method: &'static str, d: pb::Decision) {
    metrics::counter!("voiceprint_decisions_total", "method" => method, "decision" => decision_name(d)).increment(1);
}

impl VoiceprintService {
    async fn enroll_inner(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<pb::EnrollResponse, ServiceError> {
        let s = &self.shared;
        let tenant = s.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        validate_id("speaker_id", &r.speaker_id)?;
        if r.audio.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "at least one audio is required".into(),
            ));
        }
        if r.audio.len() > MAX_ENROLL_AUDIO {
            return Err(ServiceError::Limit(format!(
                "at most {MAX_ENROLL_AUDIO} audio pieces per request"
            )));
        }
        if let Some(c) = &r.consent_reference
            && c.len() > 256
        {
            return Err(ServiceError::InvalidArgument(
                "consent_reference longer than 256 bytes".into(),
            ));
        }
        // Refuse before spending CPU on audio.
        let (store, t2, sp2) = (Arc::clone(&s.store), tenant.clone(), r.speaker_id.clone());
        if let Some(rec) = blocking(move || Ok(store.speaker(&t2, &sp2)?)).await?
            && rec.meta.state == SpeakerState::OptedOut
        {
            return Err(ServiceError::FailedPrecondition(format!(
                "speaker {:?} has opted out",
                r.speaker_id
            )));
        }
        let analyses = s.analyze(r.audio).await?;
        let quality: Vec<pb::Quality> = analyses.iter().map(|a| quality_pb(&a.quality)).collect();
        let new_channel = common_channel(
            analyses
                .iter()
                .filter(|a| a.embedding.is_some())
                .map(|a| Some(a.channel)),
        );
        let new_parts: Vec<EnrollmentPart> = analyses
            .into_iter()
            .filter_map(|a| {
                a.embedding.map(|e| EnrollmentPart {
                    embedding: e,
                    net_speech_seconds: a.quality.net_speech_seconds,
                })
            })
            .collect();

        let shared = Arc::clone(&self.shared);
        let (speaker_id, overwrite, consent) =
            (r.speaker_id.clone(), r.overwrite, r.consent_reference);
        let (net, complete, decision_id) = blocking(move || {
            let s = &*shared;
            let _w = s.write_lock.lock().map_err(lock_err)?;
            let now = now_unix();
            let model = s.engine.model_version().to_string();
            let required = s.config.required_speech_seconds;
            let mut outcome: Option<(f64, bool, Option<Prepared>)> = None;
            let mut ev = s.audit(&tenant, "enroll", "", rid);
            ev.speaker_id = Some(speaker_id.clone());
            let decision_id = ev.decision_id.clone();
            let mut ev = Some(ev);
            let mut change = |cur: Option<SpeakerRecord>| -> Result<(SpeakerChange, Option<AuditEvent>), StoreError> {
                let (mut meta, mut parts, old_channel) = match cur {
                    Some(rec) if rec.meta.state == SpeakerState::OptedOut => {
                        return Err(StoreError::Precondition(format!("speaker {speaker_id:?} has opted out")));
                    }
                    // Embeddings of another model are not comparable: start over.
                    Some(rec) if !overwrite && rec.meta.state != SpeakerState::Expired && rec.meta.model_version == model => {
                        let channel = rec.print.as_ref().and_then(|p| p.prepared.channel);
                        (rec.meta, rec.print.map(|p| p.parts).unwrap_or_default(), channel)
                    }
                    Some(rec) => (rec.meta, Vec::new(), None),
                    None => (
                        SpeakerMeta {
                            state: SpeakerState::Enrolling,
                            net_speech_seconds: 0.0,
                            enrollment_count: 0,
                            created_unix: now,
                            updated_unix: now,
                            last_used_unix: now,
                            model_version: model.clone(),
                            consent_reference: None,
                        },
                        Vec::new(),
                        None,
                    ),
                };
                // A print merged from audio of different channels has no single pairing.
                let channel = if parts.is_empty() {
                    new_channel
                } else if new_parts.is_empty() {
                    old_channel
                } else {
                    common_channel([old_channel, new_channel])
                };
                parts.extend(new_parts.iter().cloned());
                let net: f64 = parts.iter().map(|p| p.net_speech_seconds).sum();
                let complete = net >= required;
                meta.state = if complete { SpeakerState::Enrolled } else { SpeakerState::Enrolling };
                meta.net_speech_seconds = net;
                meta.enrollment_count = u32::try_from(parts.len()).unwrap_or(u32::MAX);
                meta.updated_unix = now;
                meta.last_used_unix = now;
                meta.model_version = model.clone();
                if consent.is_some() {
                    meta.consent_reference = consent.clone();
                }
                let print = if parts.is_empty() {
                    None
                } else {
                    let weighted: Vec<(Vec<f32>, f64)> =
                        parts.iter().map(|p| (p.embedding.clone(), p.net_speech_seconds)).collect();
                    let prepared = s.engine.scorer().prepare_from(&merge_embeddings(&weighted), channel);
                    Some(Voiceprint { parts, prepared })
                };
                outcome = Some((net, complete, print.as_ref().filter(|_| complete).map(|p| p.prepared.clone())));
                let mut ev = ev.take();
                if let Some(ev) = ev.as_mut() {
                    ev.decision = if complete { "complete" } else { "incomplete" }.to_string();
                    ev.detail = Some(format!("net_speech_seconds={net:.2}"));
                }
                Ok((SpeakerChange::Put(SpeakerRecord { meta, print }), ev))
            };
            s.store.modify_speaker(&tenant, &speaker_id, &mut change)?;
            let (net, complete, prepared) =
                outcome.take().ok_or_else(|| ServiceError::Internal("enrolment produced no outcome".into()))?;
            s.set_speaker_index(&tenant, &speaker_id, prepared.as_ref())?;
            Ok((net, complete, decision_id))
        })
        .await?;
        metrics::counter!("voiceprint_decisions_total", "method" => "enroll", "decision" => if complete { "complete" } else { "incomplete" }).increment(1);
        let required = s.config.required_speech_seconds;
        Ok(pb::EnrollResponse {
            speaker_id: r.speaker_id,
            status: if complete {
                pb::EnrollmentStatus::EnrollmentComplete
            } else {
                pb::EnrollmentStatus::EnrollmentIncomplete
            } as i32,
            net_speech_seconds: net,
            required_speech_seconds: (required - net).max(0.0),
            quality,
            decision_id,
        })
    }

    async fn verify_inner(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<pb::VerifyResponse, ServiceError> {
        let s = &self.shared;
        let tenant = s.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        validate_id("speaker_id", &r.speaker_id)?;
        let audio = r
            .audio
            .ok_or_else(|| ServiceError::InvalidArgument("audio is required".into()))?;
        let thresholds = s.thresholds(r.target_far)?;
        let threshold = thresholds.default_threshold();
        // Reject malformed audio fields even when the speaker turns out not to be enrolled.
        s.decode_options(0, &audio)?;

        let print = s.print_for_verify(&tenant, &r.speaker_id).await?;
        let mut resp = pb::VerifyResponse {
            threshold,
            target_far: thresholds.far,
            r#final: true,
            ..Default::default()
        };
        let mut ev = s.audit(&tenant, "verify", "", rid);
        ev.speaker_id = Some(r.speaker_id.clone());
        ev.threshold = Some(threshold);
        resp.decision_id = ev.decision_id.clone();

        let mut touch = None;
        match print {
            Err(d) => resp.decision = d as i32,
            Ok(print) => {
                let (a, fingerprint) = s.analyze_with_fingerprint(audio).await?;
                resp.quality = Some(quality_pb(&a.quality));
                match a.embedding {
                    None => {
                        resp.decision = pb::Decision::NotEnoughSpeech as i32;
                        resp.reason = pb::DecisionReason::ReasonLowQuality as i32;
                    }
                    Some(e) => {
                        let score = s.decide(&print, &e, Some(a.channel), &thresholds, &mut resp);
                        ev.threshold = Some(resp.threshold);
                        ev.score = Some(score.norm);
                        ev.llr = Some(score.llr);
                        touch = Some(now_unix());
                    }
                }
                if let Some(fp) = fingerprint
                    && s.check_replay(&tenant, fp, &mut resp, &mut ev).await?
                {
                    touch = None;
                }
            }
        }
        let decision = pb::Decision::try_from(resp.decision).unwrap_or(pb::Decision::Unspecified);
        ev.decision = decision_name(decision).to_string();
        let (store, t4, sp4) = (Arc::clone(&s.store), tenant, r.speaker_id);
        blocking(move || {
            Ok(store.append_audit(ev, touch.map(|now| (t4.as_str(), sp4.as_str(), now)))?)
        })
        .await?;
        count_decision("verify", decision);
        Ok(resp)
    }

    async fn identify_inner(
        &self,
        req: Request<pb::IdentifyRequest>,
    ) -> Result<pb::IdentifyResponse, ServiceError> {
        let s = &self.shared;
        let tenant = s.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        let audio = r
            .audio
            .ok_or_else(|| ServiceError::InvalidArgument("audio is required".into()))?;
        let thresholds = s.thresholds(r.target_far)?;
        let top_k = s.top_k(r.top_k)?;
        if let Some(wl) = &r.watchlist_id {
            validate_id("watchlist_id", wl)?;
            let (store, t2) = (Arc::clone(&s.store), tenant.clone());
            let lists = blocking(move || Ok(store.watchlists(&t2)?)).await?;
            if !lists.iter().any(|(id, _)| id == wl) {
                return Err(ServiceError::WatchlistNotFound(wl.clone()));
            }
        }
        let mut a = s.analyze(vec![audio]).await?;
        let a = a
            .pop()
            .ok_or_else(|| ServiceError::Internal("no analysis".into()))?;
        // Rows are thresholded for their own pairing with the probe; the response states the one
        // for prints enrolled from the probe's channel.
        let threshold = thresholds.for_pair(Some(a.channel), Some(a.channel));
        let mut resp = pb::IdentifyResponse {
            threshold,
            quality: Some(quality_pb(&a.quality)),
            ..Default::default()
        };
        let mut ev = s.audit(&tenant, "identify", "", rid);
        ev.watchlist_id = r.watchlist_id.clone();
        ev.threshold = Some(threshold);
        resp.decision_id = ev.decision_id.clone();
        match a.embedding {
            None => {
                resp.decision = pb::Decision::NotEnoughSpeech as i32;
                ev.decision = "not_enough_speech".into();
            }
            Some(e) => {
                let shared = Arc::clone(&self.shared);
                let (t2, wl) = (tenant.clone(), r.watchlist_id.clone());
                let channel = a.channel;
                let hits: Vec<Hit> = s
                    .pool
                    .run(move || -> Result<Vec<Hit>, ServiceError> {
                        let scorer = shared.engine.scorer();
                        let probe = scorer.prepare_from(&e, Some(channel));
                        Ok(match wl {
                            Some(wl) => {
                                let idx = shared.watchlists.read().map_err(lock_err)?;
                                idx.get(&(t2, wl))
                                    .map(|i| i.search(scorer, &probe, &thresholds, top_k))
                                    .unwrap_or_default()
                            }
                            None => {
                                let idx = shared.speakers.read().map_err(lock_err)?;
                                idx.get(&t2)
                                    .map(|i| i.search(scorer, &probe, &thresholds, top_k))
                                    .unwrap_or_default()
                            }
                        })
                    })
                    .await??;
                ev.decision = if hits.is_empty() { "no_match" } else { "match" }.into();
                ev.detail = Some(
                    hits.iter()
                        .map(|h| format!("{}:{:.3}", h.key, h.score.llr))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                if let Some(best) = hits.first() {
                    ev.score = Some(best.score.norm);
                    ev.llr = Some(best.score.llr);
                }
                resp.candidates = hits
                    .into_iter()
                    .map(|h| pb::Candidate {
                        speaker_id: h.key,
                        score: h.score.norm,
                        llr: h.score.llr,
                    })
                    .collect();
            }
        }
        let store = Arc::clone(&s.store);
        blocking(move || Ok(store.append_audit(ev, None)?)).await?;
        metrics::counter!("voiceprint_decisions_total", "method" => "identify", "decision" => if resp.candidates.is_empty() { "no_match" } else { "match" }).increment(1);
        Ok(resp)
    }

    async fn create_watchlist_inner(
        &self,
        req: Request<pb::CreateWatchlistRequest>,
    ) -> Result<pb::Watchlist, ServiceError> {
        let s = &self.shared;
        let tenant = s.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        validate_id("watchlist_id", &r.watchlist_id)?;
        if r.description.len() > 1024 {
            return Err(ServiceError::InvalidArgument(
                "description longer than 1024 bytes".into(),
            ));
        }
        let meta = WatchlistMeta {
            description: r.description.clone(),
            created_unix: now_unix(),
            size: 0,
        };
        let mut ev = s.audit(&tenant, "watchlist_create", "created", rid);
        ev.watchlist_id = Some(r.watchlist_id.clone());
        let (shared, id, m2) = (
            Arc::clone(&self.shared),
            r.watchlist_id.clone(),
            meta.clone(),
        );
        blocking(move || {
            let _w = shared.write_lock.lock().map_err(lock_err)?;
            shared.store.create_watchlist(&tenant, &id, &m2, ev)?;
            shared
                .watchlists
                .write()
                .map_err(lock_err)?
                .entry((tenant, id))
                .or_default();
            Ok(())
        })
        .await?;
        Ok(pb::Watchlist {
            watchlist_id: r.watchlist_id,
            description: meta.description,
            size: 0,
            created_unix: meta.created_unix,
        })
    }

    async fn add_to_watchlist_inner(
        &self,
        req: Request<pb::AddToWatchlistRequest>,
    ) -> Result<pb::AddToWatchlistResponse, ServiceError> {
        use pb::add_to_watchlist_request::Source;
        let s = &self.shared;
        let tenant = s.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        validate_id("watchlist_id", &r.watchlist_id)?;
        validate_id("entry_id", &r.entry_id)?;
        if r.note.len() > 1024 {
            return Err(ServiceError::InvalidArgument(
                "note longer than 1024 bytes".into(),
            ));
        }
        let (store, t2) = (Arc::clone(&s.store), tenant.clone());
        let lists = blocking(move || Ok(store.watchlists(&t2)?)).await?;
        if !lists.iter().any(|(id, _)| *id == r.watchlist_id) {
            return Err(ServiceError::WatchlistNotFound(r.watchlist_id));
        }
        let (prepared, quality, source_speaker) = match r.source {
            None => {
                return Err(ServiceError::InvalidArgument(
                    "audio or speaker_id is required".into(),
                ));
            }
            Some(Source::Audio(audio)) => {
                let mut a = s.analyze(vec![audio]).await?;
                let a = a
                    .pop()
                    .ok_or_else(|| ServiceError::Internal("no analysis".into()))?;
                let Some(e) = a.embedding else {
                    return Err(ServiceError::InvalidArgument(format!(
                        "audio #0: not enough speech for a voiceprint ({:.1} s net)",
                        a.quality.net_speech_seconds
                    )));
                };
                (
                    s.engine.scorer().prepare_from(&e, Some(a.channel)),
                    Some(quality_pb(&a.quality)),
                    None,
                )
            }
            Some(Source::SpeakerId(sp)) => {
                validate_id("speaker_id", &sp)?;
                let (store, t2, sp2) = (Arc::clone(&s.store), tenant.clone(), sp.clone());
                let rec = blocking(move || Ok(store.speaker(&t2, &sp2)?)).await?;
                match rec {
                    Some(SpeakerRecord {
                        meta,
                        print: Some(p),
                    }) if meta.state == SpeakerState::Enrolled => (p.prepared, None, Some(sp)),
                    Some(_) => {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "speaker {sp:?} is not enrolled"
                        )));
                    }
                    None => return Err(ServiceError::SpeakerNotFound(sp)),
                }
            }
        };
        let mut ev = s.audit(&tenant, "watchlist_add", "added", rid);
        ev.watchlist_id = Some(r.watchlist_id.clone());
        ev.speaker_id = source_speaker.clone();
        ev.detail = Some(format!("entry={}", r.entry_id));
        let entry = WatchlistEntry {
            note: r.note,
            source_speaker,
            created_unix: now_unix(),
            prepared,
        };
        let (shared, wl, en) = (
            Arc::clone(&self.shared),
            r.watchlist_id.clone(),
            r.entry_id.clone(),
        );
        blocking(move || {
            let _w = shared.write_lock.lock().map_err(lock_err)?;
            shared
                .store
                .put_watchlist_entry(&tenant, &wl, &en, &entry, ev)?;
            shared
                .watchlists
                .write()
                .map_err(lock_err)?
                .entry((tenant, wl))
                .or_default()
                .upsert(&en, &entry.prepared);
            Ok(())
        })
        .await?;
        Ok(pb::AddToWatchlistResponse {
            watchlist_id: r.watchlist_id,
            entry_id: r.entry_id,
            quality,
        })
    }

    async fn remove_from_watchlist_inner(
        &self,
        req: Request<pb::RemoveFromWatchlistRequest>,
    ) -> Result<pb::RemoveFromWatchlistResponse, ServiceError> {
        let s = &self.shared;
        let tenant = s.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        validate_id("watchlist_id", &r.watchlist_id)?;
        validate_id("entry_id", &r.entry_id)?;
        let mut ev = s.audit(&tenant, "watchlist_remove", "removed", rid);
        ev.watchlist_id = Some(r.watchlist_id.clone());
        ev.detail = Some(format!("entry={}", r.entry_id));
        let shared = Arc::clone(&self.shared);
        let removed = blocking(move || {
            let _w = shared.write_lock.lock().map_err(lock_err)?;
            let removed =
                shared
                    .store
                    .remove_watchlist_entry(&tenant, &r.watchlist_id, &r.entry_id, ev)?;
            if let Some(i) = shared
                .watchlists
                .write()
                .map_err(lock_err)?
                .get_mut(&(tenant, r.watchlist_id))
            {
                i.remove(&r.entry_id);
            }
            if removed {
                shared.store.compact()?;
            }
            Ok(removed)
        })
        .await?;
        Ok(pb::RemoveFromWatchlistResponse { removed })
    }

    async fn list_watchlists_inner(
        &self,
        req: Request<pb::ListWatchlistsRequest>,
    ) -> Result<pb::ListWatchlistsResponse, ServiceError> {
        let tenant = self.shared.auth.tenant(req.metadata())?;
        let store = Arc::clone(&self.shared.store);
        let lists = blocking(move || Ok(store.watchlists(&tenant)?)).await?;
        Ok(pb::ListWatchlistsResponse {
            watchlists: lists
                .into_iter()
                .map(|(id, m)| pb::Watchlist {
                    watchlist_id: id,
                    description: m.description,
                    size: m.size,
                    created_unix: m.created_unix,
                })
                .collect(),
        })
    }

    async fn get_speaker_inner(
        &self,
        req: Request<pb::GetSpeakerRequest>,
    ) -> Result<pb::Speaker, ServiceError> {
        let tenant = self.shared.auth.tenant(req.metadata())?;
        let r = req.into_inner();
        validate_id("speaker_id", &r.speaker_id)?;
        let (store, sp) = (Arc::clone(&self.shared.store), r.speaker_id.clone());
        let rec = blocking(move || Ok(store.speaker(&tenant, &sp)?)).await?;
        match rec {
            Some(rec) => Ok(self.shared.speaker_pb(&r.speaker_id, &rec.meta)),
            None => Err(ServiceError::SpeakerNotFound(r.speaker_id)),
        }
    }

    async fn opt_out_inner(
        &self,
        req: Request<pb::OptOutSpeakerRequest>,
    ) -> Result<pb::OptOutSpeakerResponse, ServiceError> {
        let tenant = self.shared.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        validate_id("speaker_id", &r.speaker_id)?;
        let shared = Arc::clone(&self.shared);
        let sp = r.speaker_id.clone();
        let meta = blocking(move || {
            let s = &*shared;
            let _w = s.write_lock.lock().map_err(lock_err)?;
            let now = now_unix();
            let mut ev = s.audit(&tenant, "opt_out", "opted_out", rid);
            ev.speaker_id = Some(sp.clone());
            let mut ev = Some(ev);
            let mut result = None;
            let model = s.engine.model_version().to_string();
            // Opting out an unknown speaker leaves a tombstone so that they cannot be enrolled later.
            s.store.modify_speaker(&tenant, &sp, &mut |cur| {
                let mut meta = cur.map(|r| r.meta).unwrap_or_else(|| SpeakerMeta {
                    state: SpeakerState::OptedOut,
                    net_speech_seconds: 0.0,
                    enrollment_count: 0,
                    created_unix: now,
                    updated_unix: now,
                    last_used_unix: now,
                    model_version: model.clone(),
                    consent_reference: None,
                });
                meta.state = SpeakerState::OptedOut;
                meta.updated_unix = now;
                meta.net_speech_seconds = 0.0;
                meta.enrollment_count = 0;
                result = Some(meta.clone());
                Ok((
                    SpeakerChange::Put(SpeakerRecord { meta, print: None }),
                    ev.take(),
                ))
            })?;
            s.set_speaker_index(&tenant, &sp, None)?;
            s.forget_replays_of(&tenant, &sp)?;
            s.store.compact()?;
            result.ok_or_else(|| ServiceError::Internal("opt-out produced no record".into()))
        })
        .await?;
        count_decision("opt_out", pb::Decision::OptedOut);
        Ok(pb::OptOutSpeakerResponse {
            speaker: Some(self.shared.speaker_pb(&r.speaker_id, &meta)),
        })
    }

    async fn delete_inner(
        &self,
        req: Request<pb::DeleteSpeakerRequest>,
    ) -> Result<pb::DeleteSpeakerResponse, ServiceError> {
        let tenant = self.shared.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let rid_copy = rid.clone();
        let r = req.into_inner();
        validate_id("speaker_id", &r.speaker_id)?;
        let shared = Arc::clone(&self.shared);
        let deleted = blocking(move || {
            let s = &*shared;
            let _w = s.write_lock.lock().map_err(lock_err)?;
            let mut existed = false;
            let mut ev = s.audit(&tenant, "delete", "", rid);
            ev.speaker_id = Some(r.speaker_id.clone());
            let mut ev = Some(ev);
            s.store.modify_speaker(&tenant, &r.speaker_id, &mut |cur| {
                existed = cur.is_some();
                let mut ev = ev.take();
                if let Some(ev) = ev.as_mut() {
                    ev.decision = if existed { "deleted" } else { "not_found" }.into();
                }
                Ok((
                    if existed {
                        SpeakerChange::Delete
                    } else {
                        SpeakerChange::Keep
                    },
                    ev,
                ))
            })?;
            s.set_speaker_index(&tenant, &r.speaker_id, None)?;
            let replays = s.forget_replays_of(&tenant, &r.speaker_id)?;
            // Runs even when the speaker is already gone, so a retried delete that was interrupted
            // between the two transactions still erases the copies.
            let copies = if r.keep_watchlist_copies {
                Vec::new()
            } else {
                let mut ev = s.audit(
                    &tenant,
                    "watchlist_remove",
                    "deleted_with_speaker",
                    rid_copy,
                );
                ev.speaker_id = Some(r.speaker_id.clone());
                let copies = s
                    .store
                    .remove_watchlist_copies(&tenant, &r.speaker_id, ev)?;
                let mut lists = s.watchlists.write().map_err(lock_err)?;
                for (w, e) in &copies {
                    if let Some(i) = lists.get_mut(&(tenant.clone(), w.clone())) {
                        i.remove(e);
                    }
                }
                copies
            };
            if existed || !copies.is_empty() || replays > 0 {
                s.store.compact()?;
            }
            Ok((existed, copies))
        })
        .await?;
        Ok(pb::DeleteSpeakerResponse {
            deleted: deleted.0,
            watchlist_copies_removed: deleted
                .1
                .into_iter()
                .map(|(watchlist_id, entry_id)| pb::WatchlistEntryRef {
                    watchlist_id,
                    entry_id,
                })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl pb::voiceprint_server::Voiceprint for VoiceprintService {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish("enroll", t, within(d, self.enroll_inner(req)).await)
    }

    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish("verify", t, within(d, self.verify_inner(req)).await)
    }

    async fn identify(
        &self,
        req: Request<pb::IdentifyRequest>,
    ) -> Result<Response<pb::IdentifyResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish("identify", t, within(d, self.identify_inner(req)).await)
    }

    async fn create_watchlist(
        &self,
        req: Request<pb::CreateWatchlistRequest>,
    ) -> Result<Response<pb::Watchlist>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish(
            "create_watchlist",
            t,
            within(d, self.create_watchlist_inner(req)).await,
        )
    }

    async fn add_to_watchlist(
        &self,
        req: Request<pb::AddToWatchlistRequest>,
    ) -> Result<Response<pb::AddToWatchlistResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish(
            "add_to_watchlist",
            t,
            within(d, self.add_to_watchlist_inner(req)).await,
        )
    }

    async fn remove_from_watchlist(
        &self,
        req: Request<pb::RemoveFromWatchlistRequest>,
    ) -> Result<Response<pb::RemoveFromWatchlistResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish(
            "remove_from_watchlist",
            t,
            within(d, self.remove_from_watchlist_inner(req)).await,
        )
    }

    async fn list_watchlists(
        &self,
        req: Request<pb::ListWatchlistsRequest>,
    ) -> Result<Response<pb::ListWatchlistsResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish(
            "list_watchlists",
            t,
            within(d, self.list_watchlists_inner(req)).await,
        )
    }

    async fn get_speaker(
        &self,
        req: Request<pb::GetSpeakerRequest>,
    ) -> Result<Response<pb::Speaker>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish(
            "get_speaker",
            t,
            within(d, self.get_speaker_inner(req)).await,
        )
    }

    async fn opt_out_speaker(
        &self,
        req: Request<pb::OptOutSpeakerRequest>,
    ) -> Result<Response<pb::OptOutSpeakerResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish(
            "opt_out_speaker",
            t,
            within(d, self.opt_out_inner(req)).await,
        )
    }

    async fn delete_speaker(
        &self,
        req: Request<pb::DeleteSpeakerRequest>,
    ) -> Result<Response<pb::DeleteSpeakerResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        finish("delete_speaker", t, within(d, self.delete_inner(req)).await)
    }

    type StreamVerifyStream = ResponseStream<pb::VerifyResponse>;

    async fn stream_verify(
        &self,
        req: Request<tonic::Streaming<pb::StreamVerifyRequest>>,
    ) -> Result<Response<Self::StreamVerifyStream>, Status> {
        let t = Instant::now();
        let r = async {
            let tenant = self.shared.auth.tenant(req.metadata())?;
            let rid = request_id(&req);
            super::stream::start(Arc::clone(&self.shared), tenant, rid, req.into_inner()).await
        }
        .await;
        finish("stream_verify", t, r)
    }

    type ExportAuditStream = ResponseStream<pb::AuditRecord>;

    async fn export_audit(
        &self,
        req: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        let t = Instant::now();
        finish("export_audit", t, self.export_audit_inner(req).await)
    }

    type BatchMatchStream = ResponseStream<pb::BatchMatchResult>;

    async fn batch_match(
        &self,
        req: Request<pb::BatchMatchRequest>,
    ) -> Result<Response<Self::BatchMatchStream>, Status> {
        let t = Instant::now();
        finish("batch_match", t, self.batch_match_inner(req).await)
    }

    async fn track_complaint(
        &self,
        req: Request<pb::TrackComplaintRequest>,
    ) -> Result<Response<pb::TrackComplaintResponse>, Status> {
        let t = Instant::now();
        let d = deadline(req.metadata());
        let r = within(d, async {
            let tenant = self.shared.auth.tenant(req.metadata())?;
            let rid = request_id(&req);
            super::recurring::track(&self.shared, tenant, rid, req.into_inner()).await
        })
        .await;
        finish("track_complaint", t, r)
    }

    async fn list_recurring_voices(
        &self,
        req: Request<pb::ListRecurringVoicesRequest>,
    ) -> Result<Response<pb::ListRecurringVoicesResponse>, Status> {
        let t = Instant::now();
        let r = async {
            let tenant = self.shared.auth.tenant(req.metadata())?;
            super::recurring::list(&self.shared, tenant, req.into_inner()).await
        }
        .await;
        finish("list_recurring_voices", t, r)
    }

    async fn forget_complaint(
        &self,
        req: Request<pb::ForgetComplaintRequest>,
    ) -> Result<Response<pb::ForgetComplaintResponse>, Status> {
        let t = Instant::now();
        let r = async {
            let tenant = self.shared.auth.tenant(req.metadata())?;
            let rid = request_id(&req);
            super::recurring::forget(&self.shared, tenant, rid, req.into_inner()).await
        }
        .await;
        finish("forget_complaint", t, r)
    }
}
