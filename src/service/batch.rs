//! `BatchMatch`: post-complaint matching pushed by a platform.
//!
//! For each complaint the complainant is verified against the customer's voiceprint with the rules
//! of `Verify` (same early non-answers, same threshold for the target FAR, same refresh of the
//! print's last use) and searched for in the tenant's whole gallery and in every watchlist of the
//! tenant. Complaints of one request run concurrently on the analysis pool, at most `workers` of
//! them at a time, and each result is streamed as soon as it is ready. A complaint that cannot be
//! processed (bad id, missing or undecodable audio) becomes a result with `error` set; the others
//! go on. When the client goes away or its deadline passes, complaints not yet started never start.
//!
//! This is a child module of `handlers` so that it shares the private helpers of Verify and
//! Identify instead of copying them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use super::{
    ResponseStream, Shared, VoiceprintService, blocking, count_decision, deadline, decision_name,
    lock_err, now_unix, quality_pb, request_id,
};
use crate::pipeline::Analysis;
use crate::proto::v1 as pb;
use crate::score::{Prepared, Score, Thresholds};
use crate::service::error::ServiceError;
use crate::store::validate_id;

/// First wait after the analysis queue refused a complaint; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// Longest wait between two tries of a complaint refused by a full analysis queue.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Longest complaint id quoted in an audit event of a failed complaint.
const MAX_QUOTED_ID: usize = 128;

/// What every complaint of one request shares.
struct Job {
    shared: Arc<Shared>,
    tenant: String,
    request_id: Option<String>,
    thresholds: Thresholds,
    top_k: usize,
}

/// The CPU part of one complaint: analysis, verification score and searches.
struct Matched {
    analysis: Analysis,
    /// Score against the customer's print (only when there is one and an embedding).
    score: Option<Score>,
    hits: Vec<pb::Hit>,
}

impl VoiceprintService {
    /// Checks the request and starts streaming one result per complaint.
    pub(super) async fn batch_match_inner(
        &self,
        req: Request<pb::BatchMatchRequest>,
    ) -> Result<ResponseStream<pb::BatchMatchResult>, ServiceError> {
        let s = &self.shared;
        let tenant = s.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let ends = deadline(req.metadata()).map(|d| tokio::time::Instant::now() + d);
        let r = req.into_inner();
        if r.complaints.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "at least one complaint is required".into(),
            ));
        }
        if r.complaints.len() > s.config.max_batch_complaints {
            return Err(ServiceError::Limit(format!(
                "{} complaints in one request; at most {} are allowed (split the batch)",
                r.complaints.len(),
                s.config.max_batch_complaints
            )));
        }
        let thresholds = s.thresholds(r.target_far)?;
        let top_k = s.top_k(r.top_k)?;
        let in_flight = s.config.effective_workers().max(1);
        let job = Arc::new(Job {
            shared: Arc::clone(&self.shared),
            tenant,
            request_id: rid,
            thresholds,
            top_k,
        });
        let (tx, rx) = mpsc::channel(in_flight);
        tokio::spawn(drive(job, r.complaints, in_flight, tx, ends));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// Runs the complaints, `in_flight` at a time, and sends each result as it finishes. Stops (and
/// aborts the complaints in progress) when the receiver is dropped or the deadline passes.
async fn drive(
    job: Arc<Job>,
    complaints: Vec<pb::Complaint>,
    in_flight: usize,
    tx: mpsc::Sender<Result<pb::BatchMatchResult, Status>>,
    ends: Option<tokio::time::Instant>,
) {
    let started = Instant::now();
    let total = complaints.len();
    let work = async {
        let mut pending = complaints.into_iter().enumerate();
        let mut running = JoinSet::new();
        // Task id → (complaint_id, customer_id), to answer for a task that failed.
        let mut names = HashMap::new();
        loop {
            while running.len() < in_flight {
                let Some((index, c)) = pending.next() else {
                    break;
                };
                let name = (c.complaint_id.clone(), c.customer_id.clone());
                let handle = running.spawn(match_one(Arc::clone(&job), index, c));
                names.insert(handle.id(), name);
            }
            let result = match running.join_next_with_id().await {
                None => break,
                Some(Ok((id, result))) => {
                    names.remove(&id);
                    result
                }
                Some(Err(e)) => {
                    let (complaint_id, customer_id) = names.remove(&e.id()).unwrap_or_default();
                    tracing::error!(error = %e, %complaint_id, "batch complaint task failed");
                    pb::BatchMatchResult {
                        complaint_id,
                        customer_id,
                        error: "internal error".into(),
                        ..Default::default()
                    }
                }
            };
            if tx.send(Ok(result)).await.is_err() {
                // The client went away: dropping `running` aborts the rest.
                return false;
            }
        }
        true
    };
    let until = async {
        match ends {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        finished = work => {
            if !finished {
                tracing::debug!(total, "batch match: client went away");
            }
        }
        () = tx.closed() => tracing::debug!(total, "batch match: client went away"),
        () = until => {
            let _ = tx
                .send(Err(Status::from(ServiceError::DeadlineExceeded)))
                .await;
        }
    }
    metrics::histogram!("voiceprint_batch_seconds").record(started.elapsed().as_secs_f64());
}

/// Processes one complaint; every failure becomes a result with `error` set.
async fn match_one(job: Arc<Job>, index: usize, c: pb::Complaint) -> pb::BatchMatchResult {
    let (complaint_id, customer_id) = (c.complaint_id.clone(), c.customer_id.clone());
    match try_match(&job, index, c).await {
        Ok(r) => r,
        Err(e) => {
            let message = Status::from(e).message().to_string();
            let mut ev =
                job.shared
                    .audit(&job.tenant, "batch_match", "error", job.request_id.clone());
            if validate_id("customer_id", &customer_id).is_ok() {
                ev.speaker_id = Some(customer_id.clone());
            }
            let quoted: String = complaint_id.chars().take(MAX_QUOTED_ID).collect();
            ev.detail = Some(format!("complaint={quoted:?}; error={message}"));
            let store = Arc::clone(&job.shared.store);
            if let Err(e) = blocking(move || Ok(store.append_audit(ev, None)?)).await {
                tracing::error!(error = %e, "batch match: audit of a failed complaint not written");
            }
            metrics::counter!("voiceprint_decisions_total", "method" => "batch_match", "decision" => "error").increment(1);
            pb::BatchMatchResult {
                complaint_id,
                customer_id,
                error: message,
                ..Default::default()
            }
        }
    }
}

async fn try_match(
    job: &Arc<Job>,
    index: usize,
    c: pb::Complaint,
) -> Result<pb::BatchMatchResult, ServiceError> {
    let s = &job.shared;
    validate_id("complaint_id", &c.complaint_id)?;
    validate_id("customer_id", &c.customer_id)?;
    let audio = c.audio.ok_or_else(|| {
        ServiceError::InvalidArgument(format!("complaint #{index}: audio is required"))
    })?;
    let opts = s.decode_options(index, &audio)?;

    let (early, print) = match s.print_for_verify(&job.tenant, &c.customer_id).await? {
        Ok(p) => (None, Some(p.prepared)),
        Err(d) => (Some(d), None),
    };
    let print_channel = print.as_ref().and_then(|p| p.channel);

    let matched = analyze_and_search(job, index, Arc::new(audio), opts, print).await?;
    let mut ev = s.audit(&job.tenant, "batch_match", "", job.request_id.clone());
    ev.speaker_id = Some(c.customer_id.clone());
    let threshold = job
        .thresholds
        .for_pair(print_channel, Some(matched.analysis.channel));
    ev.threshold = Some(threshold);
    let mut result = pb::BatchMatchResult {
        complaint_id: c.complaint_id,
        customer_id: c.customer_id,
        quality: Some(quality_pb(&matched.analysis.quality)),
        top_hits: matched.hits,
        ..Default::default()
    };
    let mut touch = None;
    let decision = match (early, matched.analysis.embedding.is_some(), matched.score) {
        (Some(d), _, _) => d,
        (None, false, _) => pb::Decision::NotEnoughSpeech,
        (None, true, Some(score)) => {
            result.score = score.norm;
            result.llr = score.llr;
            ev.score = Some(score.norm);
            ev.llr = Some(score.llr);
            touch = Some(now_unix());
            if score.llr >= threshold {
                pb::Decision::Accept
            } else {
                pb::Decision::Reject
            }
        }
        (None, true, None) => {
            return Err(ServiceError::Internal(
                "enrolled speaker scored without a print".into(),
            ));
        }
    };
    result.decision = decision as i32;
    ev.decision = decision_name(decision).to_string();
    let hits = result
        .top_hits
        .iter()
        .map(|h| format!("{}:{:.3}", h.id, h.llr))
        .collect::<Vec<_>>()
        .join(",");
    ev.detail = Some(format!("complaint={:?}; hits={hits}", result.complaint_id));
    let (store, t4, sp4) = (
        Arc::clone(&s.store),
        job.tenant.clone(),
        result.customer_id.clone(),
    );
    blocking(
        move || Ok(store.append_audit(ev, touch.map(|now| (t4.as_str(), sp4.as_str(), now)))?),
    )
    .await?;
    count_decision("batch_match", decision);
    Ok(result)
}

/// Analyses the audio on the pool, scores it against `print` and searches the tenant's gallery and
/// watchlists. A full analysis queue is waited out with back-off: batch work yields to live calls
/// instead of failing.
async fn analyze_and_search(
    job: &Arc<Job>,
    index: usize,
    audio: Arc<pb::Audio>,
    opts: crate::audio::DecodeOptions,
    print: Option<Prepared>,
) -> Result<Matched, ServiceError> {
    let print = Arc::new(print);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (j, audio, opts, print) = (
            Arc::clone(job),
            Arc::clone(&audio),
            opts.clone(),
            Arc::clone(&print),
        );
        let started = Instant::now();
        let outcome = job
            .shared
            .pool
            .run(move || -> Result<Matched, ServiceError> {
                let s = &j.shared;
                let analysis = s
                    .engine
                    .analyze(&audio.data, &opts)
                    .map_err(|source| ServiceError::Audio { index, source })?;
                let Some(embedding) = &analysis.embedding else {
                    return Ok(Matched {
                        analysis,
                        score: None,
                        hits: Vec::new(),
                    });
                };
                let scorer = s.engine.scorer();
                let probe = scorer.prepare_from(embedding, Some(analysis.channel));
                let print: &Option<Prepared> = &print;
                let score = print.as_ref().map(|p| scorer.score(p, &probe));
                let hits = search_all(&j, &probe)?;
                Ok(Matched {
                    analysis,
                    score,
                    hits,
                })
            })
            .await;
        match outcome {
            Err(ServiceError::Overloaded(_)) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
            Ok(result) => {
                metrics::histogram!("voiceprint_analysis_seconds")
                    .record(started.elapsed().as_secs_f64());
                return result;
            }
        }
    }
}

/// The best `top_k` hits above the threshold over the tenant's speakers and all its watchlists,
/// best (highest normalised score) first.
fn search_all(job: &Job, probe: &Prepared) -> Result<Vec<pb::Hit>, ServiceError> {
    let s = &job.shared;
    let scorer = s.engine.scorer();
    let mut hits: Vec<(String, Score)> = Vec::new();
    if let Some(index) = s.speakers.read().map_err(lock_err)?.get(&job.tenant) {
        hits.extend(
            index
                .search(scorer, probe, &job.thresholds, job.top_k)
                .into_iter()
                .map(|h| (format!("speaker:{}", h.key), h.score)),
        );
    }
    for ((tenant, watchlist), index) in s.watchlists.read().map_err(lock_err)?.iter() {
        if *tenant != job.tenant {
            continue;
        }
        hits.extend(
            index
                .search(scorer, probe, &job.thresholds, job.top_k)
                .into_iter()
                .map(|h| (format!("watchlist:{watchlist}/{}", h.key), h.score)),
        );
    }
    hits.sort_by(|a, b| b.1.norm.total_cmp(&a.1.norm).then_with(|| a.0.cmp(&b.0)));
    hits.truncate(job.top_k);
    Ok(hits
        .into_iter()
        .map(|(id, score)| pb::Hit {
            id,
            score: score.norm,
            llr: score.llr,
        })
        .collect())
}
