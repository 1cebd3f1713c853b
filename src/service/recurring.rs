//! `TrackComplaint`, `ListRecurringVoices`, `ForgetComplaint`: recurring voices across customers,
//! incrementally.
//!
//! Each tenant has one [`IncrementalClusterer`] in memory. A tracked complaint's embedding is
//! stored (sealed) before it joins the clustering, so the clustering survives restarts: at start-up
//! the stored complaints are added again in the order they were tracked, which gives the same
//! clusters. Forgetting a complaint erases it from the store and rebuilds the tenant's clustering
//! without it.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::ServiceError;
use super::handlers::{Shared, lock_err, now_ms, quality_pb};
use super::work::blocking;
use crate::proto::v1 as pb;
use crate::recurring::{
    ClusterOptions, Complaint, IncrementalClusterer, RecurringError, SuspiciousCluster,
};
use crate::store::{ComplaintRecord, validate_id};

impl Shared {
    fn cluster_options(&self, min_customers: usize) -> ClusterOptions {
        ClusterOptions {
            min_customers: min_customers.max(2),
            ..ClusterOptions::with_threshold(self.config.recurring.threshold)
        }
    }

    fn new_clusterer(&self) -> Result<IncrementalClusterer, ServiceError> {
        IncrementalClusterer::new(self.cluster_options(self.config.recurring.min_customers))
            .map_err(|e| ServiceError::Internal(format!("recurring options: {e}")))
    }

    /// Clusterings of `only` (or of every tenant) rebuilt from the stored complaints, with the
    /// number of complaints they hold.
    fn build_clusterers(
        &self,
        only: Option<&str>,
    ) -> Result<(HashMap<String, IncrementalClusterer>, usize), ServiceError> {
        let mut by_tenant: HashMap<String, Vec<(String, ComplaintRecord)>> = HashMap::new();
        self.store.for_each_complaint(&mut |tenant, id, rec| {
            if only.is_none_or(|t| t == tenant) {
                by_tenant
                    .entry(tenant.to_string())
                    .or_default()
                    .push((id.to_string(), rec));
            }
        })?;
        let mut total = 0;
        let mut built = HashMap::new();
        for (tenant, mut list) in by_tenant {
            list.sort_by(|a, b| {
                a.1.tracked_unix_ms
                    .cmp(&b.1.tracked_unix_ms)
                    .then(a.0.cmp(&b.0))
            });
            let mut clusterer = self.new_clusterer()?;
            for (id, rec) in list {
                let complaint = Complaint {
                    complaint_id: id,
                    customer_id: rec.customer_id,
                    embedding: rec.embedding,
                };
                // A stored complaint the clusterer refuses (e.g. of another model's dimension)
                // is skipped, not fatal: the rest still cluster.
                match clusterer.add(complaint) {
                    Ok(_) => total += 1,
                    Err(e) => tracing::warn!(tenant, error = %e, "stored complaint skipped"),
                }
            }
            built.insert(tenant, clusterer);
        }
        Ok((built, total))
    }

    /// Loads every tenant's clustering from the store (start-up). Returns the complaints loaded.
    pub(crate) fn load_complaints(&self) -> Result<usize, ServiceError> {
        let (built, total) = self.build_clusterers(None)?;
        *self.complaints.lock().map_err(lock_err)? = built;
        Ok(total)
    }
}

fn voice_from(cluster_id: usize, s: SuspiciousCluster) -> pb::RecurringVoice {
    pb::RecurringVoice {
        cluster_id: format!("v{cluster_id}"),
        complaint_ids: s.complaint_ids,
        customer_ids: s.customer_ids,
        confidence: s.confidence,
        mean_score: s.mean_score,
        min_score: s.min_score,
    }
}

fn voice_pb(c: &IncrementalClusterer, cluster_id: usize) -> pb::RecurringVoice {
    if let Some(s) = c.cluster(cluster_id) {
        return voice_from(cluster_id, s);
    }
    let (complaints, customers) = c.members(cluster_id).unwrap_or_default();
    pb::RecurringVoice {
        cluster_id: format!("v{cluster_id}"),
        complaint_ids: complaints.into_iter().map(str::to_string).collect(),
        customer_ids: customers.into_iter().map(str::to_string).collect(),
        ..Default::default()
    }
}

/// Analyses the complaint's audio, stores its voice and adds it to the tenant's clustering.
pub(super) async fn track(
    shared: &Arc<Shared>,
    tenant: String,
    rid: Option<String>,
    r: pb::TrackComplaintRequest,
) -> Result<pb::TrackComplaintResponse, ServiceError> {
    validate_id("complaint_id", &r.complaint_id)?;
    validate_id("customer_id", &r.customer_id)?;
    let audio = r
        .audio
        .ok_or_else(|| ServiceError::InvalidArgument("audio is required".into()))?;
    let mut analyses = shared.analyze(vec![audio]).await?;
    let a = analyses
        .pop()
        .ok_or_else(|| ServiceError::Internal("no analysis".into()))?;
    let mut ev = shared.audit(&tenant, "track_complaint", "", rid);
    ev.detail = Some(format!(
        "complaint_id={} customer_id={}",
        r.complaint_id, r.customer_id
    ));
    let mut resp = pb::TrackComplaintResponse {
        quality: Some(quality_pb(&a.quality)),
        decision_id: ev.decision_id.clone(),
        ..Default::default()
    };
    let Some(embedding) = a.embedding else {
        resp.decision = pb::Decision::NotEnoughSpeech as i32;
        ev.decision = "not_enough_speech".into();
        let store = Arc::clone(&shared.store);
        blocking(move || Ok(store.append_audit(ev, None)?)).await?;
        return Ok(resp);
    };
    let sh = Arc::clone(shared);
    blocking(move || {
        let mut map = sh.complaints.lock().map_err(lock_err)?;
        let clusterer = match map.entry(tenant.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(sh.new_clusterer()?),
        };
        if clusterer.contains(&r.complaint_id) {
            return Err(ServiceError::AlreadyExists(format!(
                "complaint {:?} is already tracked",
                r.complaint_id
            )));
        }
        let record = ComplaintRecord {
            customer_id: r.customer_id.clone(),
            tracked_unix_ms: now_ms(),
            embedding: embedding.clone(),
        };
        // Stored first: a complaint acknowledged is in the store before it is in memory.
        let mut ev = ev;
        ev.decision = "tracked".into();
        sh.store
            .put_complaint(&tenant, &r.complaint_id, &record, ev)?;
        let assignment = clusterer
            .add(Complaint {
                complaint_id: r.complaint_id,
                customer_id: r.customer_id,
                embedding,
            })
            .map_err(|e| match e {
                RecurringError::DuplicateComplaint(id) => {
                    ServiceError::AlreadyExists(format!("complaint {id:?} is already tracked"))
                }
                other => ServiceError::Internal(other.to_string()),
            })?;
        resp.voice = Some(voice_pb(clusterer, assignment.cluster_id));
        resp.suspicious = assignment.suspicious;
        resp.newly_suspicious = assignment.newly_suspicious;
        resp.score = assignment.score.unwrap_or(0.0);
        if assignment.newly_suspicious {
            metrics::counter!("voiceprint_recurring_voices_total").increment(1);
            tracing::info!(
                tenant,
                cluster = assignment.cluster_id,
                "voice now recurs across customers"
            );
        }
        Ok(resp)
    })
    .await
}

/// The tenant's voices heard under at least `min_customers` customer ids.
pub(super) async fn list(
    shared: &Arc<Shared>,
    tenant: String,
    r: pb::ListRecurringVoicesRequest,
) -> Result<pb::ListRecurringVoicesResponse, ServiceError> {
    let min = (r.min_customers as usize).max(shared.config.recurring.min_customers);
    let sh = Arc::clone(shared);
    blocking(move || {
        let map = sh.complaints.lock().map_err(lock_err)?;
        let Some(c) = map.get(&tenant) else {
            return Ok(pb::ListRecurringVoicesResponse::default());
        };
        let voices = c
            .suspicious_clusters_by_id()
            .into_iter()
            .filter(|(_, s)| s.customer_ids.len() >= min)
            .map(|(id, s)| voice_from(id, s))
            .collect();
        Ok(pb::ListRecurringVoicesResponse { voices })
    })
    .await
}

/// Erases a tracked complaint and rebuilds the tenant's clustering without it.
pub(super) async fn forget(
    shared: &Arc<Shared>,
    tenant: String,
    rid: Option<String>,
    r: pb::ForgetComplaintRequest,
) -> Result<pb::ForgetComplaintResponse, ServiceError> {
    validate_id("complaint_id", &r.complaint_id)?;
    let mut ev = shared.audit(&tenant, "forget_complaint", "", rid);
    ev.detail = Some(format!("complaint_id={}", r.complaint_id));
    let sh = Arc::clone(shared);
    blocking(move || {
        // Held throughout so that no complaint tracked meanwhile is lost from the rebuilt state.
        let mut map = sh.complaints.lock().map_err(lock_err)?;
        ev.decision = "forgotten".into();
        let removed = sh.store.remove_complaint(&tenant, &r.complaint_id, ev)?;
        if removed {
            let (mut built, _) = sh.build_clusterers(Some(&tenant))?;
            match built.remove(&tenant) {
                Some(c) => map.insert(tenant.clone(), c),
                None => map.remove(&tenant),
            };
            drop(map);
            sh.store.compact()?;
        }
        Ok(pb::ForgetComplaintResponse { forgotten: removed })
    })
    .await
}
