//! Storage of voiceprints, watchlists and the audit log.
//!
//! [`Store`] is the interface the service uses; [`RedbStore`] implements it over a single-file
//! ACID database (`<data-dir>/voiceprint.redb`, [redb](https://docs.rs/redb)). Every commit is
//! durable (fsync) before the call returns, so nothing acknowledged to a client is lost on a crash.
//!
//! **Encryption at rest.** Biometric data (the enrolment embeddings and the merged voiceprint of a
//! speaker, the voiceprint of a watchlist entry) is sealed with AES-256-GCM under a per-record
//! data key that is itself wrapped by the master key ([`MasterKey`]); tenant, record kind and
//! identifier are bound as associated data, so a record moved under another speaker does not open.
//! Metadata (state, timestamps, consent reference) and the audit log are stored in clear.
//!
//! **Deletion.** Deleting a speaker removes its rows in one transaction and then rewrites the
//! database file ([`Store::compact`]): live data is copied into a fresh file that atomically
//! replaces the old one, so the freed pages of a copy-on-write B-tree cannot keep old ciphertext.
//! The audit log keeps the speaker identifier of past decisions (it never holds biometric data).

mod crypto;
mod redb_store;

pub use crypto::{KeySource, MASTER_KEY_ENV, MasterKey};
pub use redb_store::{DB_FILE, RedbStore};

use serde::{Deserialize, Serialize};

use crate::score::Prepared;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (I/O, corruption, transaction conflict).
    #[error("database error: {0}")]
    Database(String),
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(std::path::PathBuf, #[source] std::io::Error),
    /// The master key is missing or malformed.
    #[error("master key: {0}")]
    MasterKey(String),
    /// A sealed record did not open or could not be sealed.
    #[error("encryption: {0}")]
    Crypto(&'static str),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// An identifier is empty, too long or contains control characters.
    #[error("invalid {what}: {why}")]
    InvalidId {
        /// Which identifier (speaker id, watchlist id, ...).
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The watchlist does not exist.
    #[error("watchlist {0:?} not found")]
    WatchlistNotFound(String),
    /// The watchlist already exists.
    #[error("watchlist {0:?} already exists")]
    WatchlistExists(String),
    /// The requested change is not allowed in the record's current state.
    #[error("{0}")]
    Precondition(String),
}

/// Longest identifier accepted (tenant, speaker, watchlist, entry), in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks an identifier: non-empty, at most [`MAX_ID_LEN`] bytes, no control characters.
pub fn validate_id(what: &'static str, id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::InvalidId {
            what,
            why: "must not be empty",
        });
    }
    if id.len() > MAX_ID_LEN {
        return Err(StoreError::InvalidId {
            what,
            why: "longer than 128 bytes",
        });
    }
    if id.chars().any(char::is_control) {
        return Err(StoreError::InvalidId {
            what,
            why: "contains control characters",
        });
    }
    Ok(())
}

/// Lifecycle state of a speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeakerState {
    /// Enrolment audio received, not yet enough net speech.
    Enrolling,
    /// Enough net speech: the voiceprint is usable.
    Enrolled,
    /// The speaker withdrew consent; the voiceprint has been erased, the metadata kept.
    OptedOut,
    /// Unused for longer than the retention period; the voiceprint has been erased.
    Expired,
}

/// Speaker metadata, stored in clear. Never contains biometric data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerMeta {
    /// Lifecycle state.
    pub state: SpeakerState,
    /// Net speech accumulated over all enrolment audio, seconds.
    pub net_speech_seconds: f64,
    /// Number of enrolment audio pieces accumulated.
    pub enrollment_count: u32,
    /// Unix seconds of creation.
    pub created_unix: i64,
    /// Unix seconds of the last change.
    pub updated_unix: i64,
    /// Unix seconds of the last enrolment, verification or identification hit.
    pub last_used_unix: i64,
    /// Embedding model version the voiceprint was made with.
    pub model_version: String,
    /// Reference to the customer's recorded consent.
    pub consent_reference: Option<String>,
}

/// One enrolment audio's contribution: its embedding and net speech (the merge weight).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentPart {
    /// L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// Net speech seconds of the audio.
    pub net_speech_seconds: f64,
}

/// A speaker's biometric data: the enrolment parts and the merged, scoring-ready voiceprint.
#[derive(Debug, Clone)]
pub struct Voiceprint {
    /// Every accumulated enrolment part (kept so that later audio can be merged properly).
    pub parts: Vec<EnrollmentPart>,
    /// The merged embedding prepared for scoring.
    pub prepared: Prepared,
}

/// A speaker as stored: metadata and, unless erased, the voiceprint.
#[derive(Debug, Clone)]
pub struct SpeakerRecord {
    /// Clear-text metadata.
    pub meta: SpeakerMeta,
    /// Decrypted biometric data; `None` once opted out or expired.
    pub print: Option<Voiceprint>,
}

/// A watchlist's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchlistMeta {
    /// Free text.
    pub description: String,
    /// Unix seconds of creation.
    pub created_unix: i64,
    /// Number of entries.
    pub size: u32,
}

/// One entry of a watchlist.
#[derive(Debug, Clone)]
pub struct WatchlistEntry {
    /// Free text note.
    pub note: String,
    /// Speaker it was copied from, if any.
    pub source_speaker: Option<String>,
    /// Unix seconds of creation.
    pub created_unix: i64,
    /// The voiceprint, prepared for scoring (sealed at rest).
    pub prepared: Prepared,
}

/// A complaint's voice, kept for recurring-voice detection (`TrackComplaint`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintRecord {
    /// The customer the complaint was filed for.
    pub customer_id: String,
    /// Unix milliseconds when it was tracked; start-up replays complaints in this order.
    pub tracked_unix_ms: i64,
    /// The complainant's unit embedding (sealed at rest, with the customer id).
    pub embedding: Vec<f32>,
}

/// A verified recording's acoustic fingerprint, kept for the replay check across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayRecord {
    /// The decision it was taken for (what a later match names).
    pub decision_id: String,
    /// The speaker the caller claimed to be (its deletion erases the record).
    pub speaker_id: String,
    /// Unix seconds of the decision.
    pub timestamp_unix: i64,
    /// The serialised fingerprint (opaque here; sealed at rest with the tenant and decision id).
    pub fingerprint: Vec<u8>,
}

/// One line of the audit log. Never holds audio or embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Sequence number in the log (assigned on append).
    #[serde(default)]
    pub seq: u64,
    /// Unix milliseconds.
    pub time_unix_ms: i64,
    /// Tenant.
    pub tenant: String,
    /// What happened: `enroll`, `verify`, `identify`, `opt_out`, `delete`, `expire`,
    /// `watchlist_create`, `watchlist_add`, `watchlist_remove`.
    pub action: String,
    /// Speaker concerned, if any.
    pub speaker_id: Option<String>,
    /// Watchlist concerned, if any.
    pub watchlist_id: Option<String>,
    /// Outcome (`accept`, `reject`, `not_enrolled`, `complete`, `incomplete`, `deleted`, ...).
    pub decision: String,
    /// Normalised score, when one was computed.
    pub score: Option<f64>,
    /// Calibrated LLR, when one was computed.
    pub llr: Option<f64>,
    /// LLR threshold applied, when a decision was thresholded.
    pub threshold: Option<f64>,
    /// Embedding model version.
    pub model_version: String,
    /// Calibration version.
    pub calibration_version: String,
    /// Identifier returned to the client (`decision_id`).
    pub decision_id: String,
    /// Client request id (`x-request-id` metadata), if sent.
    pub request_id: Option<String>,
    /// Extra facts (e.g. the candidate list of an identification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a [`Store::modify_speaker`] closure decides.
pub enum SpeakerChange {
    /// Leave the speaker as it is (nothing written except the audit event).
    Keep,
    /// Write this record.
    Put(SpeakerRecord),
    /// Remove the speaker entirely.
    Delete,
}

/// The closure of [`Store::modify_speaker`]: current record in, change and audit event out.
pub type SpeakerUpdate<'a> = dyn FnMut(Option<SpeakerRecord>) -> Result<(SpeakerChange, Option<AuditEvent>), StoreError>
    + 'a;

/// Callback over stored voiceprints (tenant, id, prepared print).
pub type PrintVisitor<'a> = dyn FnMut(&str, &str, Prepared) + 'a;

/// Persistent storage of speakers, watchlists and the audit log. Every mutating call is one
/// durable transaction; the audit event passed along is committed atomically with the change.
pub trait Store: Send + Sync {
    /// Reads a speaker (decrypting its voiceprint).
    fn speaker(&self, tenant: &str, speaker_id: &str) -> Result<Option<SpeakerRecord>, StoreError>;

    /// Atomic read-modify-write of one speaker: `change` sees the current record and returns the
    /// change and the audit event describing it; both commit in one transaction.
    fn modify_speaker(
        &self,
        tenant: &str,
        speaker_id: &str,
        change: &mut SpeakerUpdate<'_>,
    ) -> Result<(), StoreError>;

    /// Calls `visit` for every enrolled speaker with a voiceprint.
    fn for_each_enrolled(&self, visit: &mut PrintVisitor<'_>) -> Result<(), StoreError>;

    /// Lists `(tenant, speaker_id, meta)` of every speaker (for the expiry sweep).
    fn list_speakers(&self) -> Result<Vec<(String, String, SpeakerMeta)>, StoreError>;

    /// Creates a watchlist.
    fn create_watchlist(
        &self,
        tenant: &str,
        watchlist_id: &str,
        meta: &WatchlistMeta,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Lists a tenant's watchlists.
    fn watchlists(&self, tenant: &str) -> Result<Vec<(String, WatchlistMeta)>, StoreError>;

    /// Adds or replaces an entry. Fails with [`StoreError::WatchlistNotFound`].
    fn put_watchlist_entry(
        &self,
        tenant: &str,
        watchlist_id: &str,
        entry_id: &str,
        entry: &WatchlistEntry,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Removes an entry; `Ok(false)` when it was not there.
    fn remove_watchlist_entry(
        &self,
        tenant: &str,
        watchlist_id: &str,
        entry_id: &str,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Removes every watchlist entry of `tenant` that was copied from `speaker_id`, in one
    /// transaction with `audit` (whose `detail` is set to the removed entries). Returns the removed
    /// `(watchlist_id, entry_id)` pairs; writes nothing, not even the audit event, when there are none.
    fn remove_watchlist_copies(
        &self,
        tenant: &str,
        speaker_id: &str,
        audit: AuditEvent,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Calls `visit(tenant, watchlist_id, entry_id, prepared)` for every watchlist entry.
    fn for_each_watchlist_entry(
        &self,
        visit: &mut dyn FnMut(&str, &str, &str, Prepared),
    ) -> Result<(), StoreError>;

    /// Appends an event to the audit log, optionally also bumping a speaker's `last_used_unix`.
    fn append_audit(
        &self,
        event: AuditEvent,
        touch: Option<(&str, &str, i64)>,
    ) -> Result<(), StoreError>;

    /// Audit events with `time_unix_ms >= since_unix_ms`, oldest first; `visit` returns false to stop.
    fn audit_since(
        &self,
        since_unix_ms: i64,
        visit: &mut dyn FnMut(AuditEvent) -> bool,
    ) -> Result<(), StoreError> {
        self.audit_after(0, since_unix_ms, visit)
    }

    /// Like [`Store::audit_since`], starting after sequence number `after_seq` (sequence numbers
    /// start at 1), for paging.
    fn audit_after(
        &self,
        after_seq: u64,
        since_unix_ms: i64,
        visit: &mut dyn FnMut(AuditEvent) -> bool,
    ) -> Result<(), StoreError>;

    /// Stores a tracked complaint, replacing one with the same id.
    fn put_complaint(
        &self,
        tenant: &str,
        complaint_id: &str,
        record: &ComplaintRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Removes a tracked complaint; `Ok(false)` when it was not there.
    fn remove_complaint(
        &self,
        tenant: &str,
        complaint_id: &str,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Calls `visit(tenant, complaint_id, record)` for every tracked complaint.
    fn for_each_complaint(
        &self,
        visit: &mut dyn FnMut(&str, &str, ComplaintRecord),
    ) -> Result<(), StoreError>;

    /// Keeps a replay fingerprint. The commit need not be durable by itself: the decision's audit
    /// event, committed right after, makes it so (a crash in between loses only this record).
    fn put_replay(&self, tenant: &str, record: &ReplayRecord) -> Result<(), StoreError>;

    /// Calls `visit(tenant, record)` for every kept fingerprint, oldest first within a tenant.
    fn for_each_replay(&self, visit: &mut dyn FnMut(&str, ReplayRecord)) -> Result<(), StoreError>;

    /// Erases fingerprints older than `before_unix`, and per tenant all but the newest `keep`.
    /// Returns how many went.
    fn prune_replays(&self, before_unix: i64, keep: usize) -> Result<usize, StoreError>;

    /// Erases the fingerprints of recordings that claimed `speaker_id`. Returns the decision ids
    /// of those that went.
    fn remove_replays_of(&self, tenant: &str, speaker_id: &str) -> Result<Vec<String>, StoreError>;

    /// Rewrites the storage so that deleted data no longer exists on disk.
    fn compact(&self) -> Result<(), StoreError>;
}
