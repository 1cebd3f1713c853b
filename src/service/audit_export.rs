//! `ExportAudit`: the caller's tenant's audit log, read while the server holds the store.
//!
//! A page is read in one short store read (the store's compaction must not wait on a slow
//! client), then streamed. The export itself is an audit event of the tenant.
//!
//! This is a child module of `handlers` so that it shares the private request helpers.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

use super::{ResponseStream, VoiceprintService, blocking, request_id};
use crate::proto::v1 as pb;
use crate::service::error::ServiceError;
use crate::store::AuditEvent;

/// Events per response when the request does not say.
const DEFAULT_LIMIT: u32 = 10_000;
/// Most events per response (a page is held in memory while it streams: ≲ 25 MB).
const MAX_LIMIT: u32 = 50_000;

impl VoiceprintService {
    pub(super) async fn export_audit_inner(
        &self,
        req: Request<pb::ExportAuditRequest>,
    ) -> Result<ResponseStream<pb::AuditRecord>, ServiceError> {
        let tenant = self.shared.auth.tenant(req.metadata())?;
        let rid = request_id(&req);
        let r = req.into_inner();
        if r.limit > MAX_LIMIT {
            return Err(ServiceError::Limit(format!(
                "limit {} is above the most events per response, {MAX_LIMIT}: page with after_seq",
                r.limit
            )));
        }
        let limit = if r.limit == 0 { DEFAULT_LIMIT } else { r.limit } as usize;
        let mut ev = self.shared.audit(&tenant, "audit_export", "exported", rid);
        ev.detail = Some(format!(
            "since_unix_ms={} after_seq={} limit={limit}",
            r.since_unix_ms, r.after_seq
        ));
        let shared = Arc::clone(&self.shared);
        let page = blocking(move || {
            shared.store.append_audit(ev, None)?;
            let mut page = Vec::new();
            shared
                .store
                .audit_after(r.after_seq, r.since_unix_ms, &mut |ev| {
                    if ev.tenant == tenant {
                        page.push(record_pb(ev));
                    }
                    page.len() < limit
                })?;
            Ok(page)
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(page.len().max(1));
        for record in page {
            // The channel holds the whole page, so this never waits or fails.
            let _ = tx.try_send(Ok(record));
        }
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

fn record_pb(ev: AuditEvent) -> pb::AuditRecord {
    pb::AuditRecord {
        seq: ev.seq,
        time_unix_ms: ev.time_unix_ms,
        tenant: ev.tenant,
        action: ev.action,
        speaker_id: ev.speaker_id.unwrap_or_default(),
        watchlist_id: ev.watchlist_id.unwrap_or_default(),
        decision: ev.decision,
        score: ev.score,
        llr: ev.llr,
        threshold: ev.threshold,
        model_version: ev.model_version,
        calibration_version: ev.calibration_version,
        decision_id: ev.decision_id,
        request_id: ev.request_id.unwrap_or_default(),
        detail: ev.detail.unwrap_or_default(),
    }
}
