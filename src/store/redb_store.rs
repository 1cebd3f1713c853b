//! [`Store`] over a single redb file.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    AuditEvent, ComplaintRecord, EnrollmentPart, MasterKey, PrintVisitor, ReplayRecord,
    SpeakerChange, SpeakerMeta, SpeakerRecord, SpeakerState, SpeakerUpdate, Store, StoreError,
    Voiceprint, WatchlistEntry, WatchlistMeta,
};
use crate::score::{Channel, Prepared};

/// Speaker metadata (JSON), key `tenant \0 speaker`.
const SPEAKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("speakers");
/// Sealed voiceprints, key `tenant \0 speaker`.
const PRINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("prints");
/// Watchlist metadata (JSON), key `tenant \0 watchlist`.
const WATCHLISTS: TableDefinition<&str, &[u8]> = TableDefinition::new("watchlists");
/// Watchlist entry metadata (JSON), key `tenant \0 watchlist \0 entry`.
const WL_ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("watchlist_entries");
/// Sealed watchlist voiceprints, key `tenant \0 watchlist \0 entry`.
const WL_PRINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("watchlist_prints");
/// Audit log (JSON), key = sequence number.
/// tenant\0complaint → sealed JSON [`ComplaintRecord`].
const COMPLAINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("complaints");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// tenant\0unix seconds (20 digits)\0decision id → sealed JSON [`ReplayRecord`].
const REPLAYS: TableDefinition<&str, &[u8]> = TableDefinition::new("replays");

const STR_TABLES: [TableDefinition<&str, &[u8]>; 7] = [
    SPEAKERS, PRINTS, WATCHLISTS, WL_ENTRIES, WL_PRINTS, COMPLAINTS, REPLAYS,
];

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "voiceprint.redb";

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

fn key2(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

fn key3(a: &str, b: &str, c: &str) -> String {
    format!("{a}\0{b}\0{c}")
}

/// Half-open key range of everything under `prefix \0`.
fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}\0"), format!("{prefix}\u{1}"))
}

fn speaker_binding(tenant: &str, speaker: &str) -> Vec<u8> {
    format!("voiceprint/v1\0speaker\0{tenant}\0{speaker}").into_bytes()
}

fn complaint_binding(tenant: &str, complaint: &str) -> Vec<u8> {
    format!("voiceprint/v1\0complaint\0{tenant}\0{complaint}").into_bytes()
}

fn replay_binding(tenant: &str, decision: &str) -> Vec<u8> {
    format!("voiceprint/v1\0replay\0{tenant}\0{decision}").into_bytes()
}

fn replay_key(tenant: &str, timestamp_unix: i64, decision: &str) -> String {
    format!("{tenant}\0{:020}\0{decision}", timestamp_unix.max(0))
}

fn entry_binding(tenant: &str, watchlist: &str, entry: &str) -> Vec<u8> {
    format!("voiceprint/v1\0watchlist\0{tenant}\0{watchlist}\0{entry}").into_bytes()
}

/// The redb-backed store. Cheap to share behind an `Arc`.
pub struct RedbStore {
    path: PathBuf,
    // Write-locked only while [`Store::compact`] swaps the file.
    db: RwLock<Database>,
    key: MasterKey,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct EntryMeta {
    note: String,
    source_speaker: Option<String>,
    created_unix: i64,
}

impl RedbStore {
    /// Opens (creating if needed) `<data_dir>/voiceprint.redb` with the given master key.
    pub fn open(data_dir: &Path, key: MasterKey) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Io(data_dir.to_path_buf(), e))?;
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(db_err)?;
        create_tables(&db)?;
        Ok(Self {
            path,
            db: RwLock::new(db),
            key,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sealed (encrypted) voiceprint bytes of a speaker as they lie in the file, for audits
    /// of erasure; `None` when there are none.
    pub fn sealed_print(
        &self,
        tenant: &str,
        speaker_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let t = txn.open_table(PRINTS).map_err(db_err)?;
        Ok(t.get(key2(tenant, speaker_id).as_str())
            .map_err(db_err)?
            .map(|g| g.value().to_vec()))
    }

    fn read_db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn seal_print(
        &self,
        tenant: &str,
        speaker: &str,
        print: &Voiceprint,
    ) -> Result<Vec<u8>, StoreError> {
        self.key
            .seal(&speaker_binding(tenant, speaker), &encode_print(print))
    }

    fn open_print(
        &self,
        tenant: &str,
        speaker: &str,
        sealed: &[u8],
    ) -> Result<Voiceprint, StoreError> {
        decode_print(&self.key.open(&speaker_binding(tenant, speaker), sealed)?)
    }
}

fn create_tables(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(db_err)?;
    for def in STR_TABLES {
        txn.open_table(def).map_err(db_err)?;
    }
    txn.open_table(AUDIT).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

fn put_audit(txn: &redb::WriteTransaction, mut event: AuditEvent) -> Result<(), StoreError> {
    let mut t = txn.open_table(AUDIT).map_err(db_err)?;
    let next = t.last().map_err(db_err)?.map_or(1, |(k, _)| k.value() + 1);
    event.seq = next;
    let json = serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    t.insert(next, json.as_slice()).map_err(db_err)?;
    Ok(())
}

fn parse_meta(bytes: &[u8]) -> Result<SpeakerMeta, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("speaker metadata: {e}")))
}

impl Store for RedbStore {
    fn speaker(&self, tenant: &str, speaker_id: &str) -> Result<Option<SpeakerRecord>, StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let k = key2(tenant, speaker_id);
        let meta = match txn
            .open_table(SPEAKERS)
            .map_err(db_err)?
            .get(k.as_str())
            .map_err(db_err)?
        {
            Some(g) => parse_meta(g.value())?,
            None => return Ok(None),
        };
        let print = match txn
            .open_table(PRINTS)
            .map_err(db_err)?
            .get(k.as_str())
            .map_err(db_err)?
        {
            Some(g) => Some(self.open_print(tenant, speaker_id, g.value())?),
            None => None,
        };
        Ok(Some(SpeakerRecord { meta, print }))
    }

    fn modify_speaker(
        &self,
        tenant: &str,
        speaker_id: &str,
        change: &mut SpeakerUpdate<'_>,
    ) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        let k = key2(tenant, speaker_id);
        let audit;
        {
            let mut speakers = txn.open_table(SPEAKERS).map_err(db_err)?;
            let mut prints = txn.open_table(PRINTS).map_err(db_err)?;
            let meta = speakers
                .get(k.as_str())
                .map_err(db_err)?
                .map(|g| parse_meta(g.value()))
                .transpose()?;
            let current = match meta {
                Some(meta) => {
                    let print = prints
                        .get(k.as_str())
                        .map_err(db_err)?
                        .map(|g| self.open_print(tenant, speaker_id, g.value()))
                        .transpose()?;
                    Some(SpeakerRecord { meta, print })
                }
                None => None,
            };
            let (decided, event) = change(current)?;
            audit = event;
            match decided {
                SpeakerChange::Keep => {}
                SpeakerChange::Delete => {
                    speakers.remove(k.as_str()).map_err(db_err)?;
                    prints.remove(k.as_str()).map_err(db_err)?;
                }
                SpeakerChange::Put(rec) => {
                    let json = serde_json::to_vec(&rec.meta)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    speakers
                        .insert(k.as_str(), json.as_slice())
                        .map_err(db_err)?;
                    match &rec.print {
                        Some(p) => {
                            let sealed = self.seal_print(tenant, speaker_id, p)?;
                            prints
                                .insert(k.as_str(), sealed.as_slice())
                                .map_err(db_err)?;
                        }
                        None => {
                            prints.remove(k.as_str()).map_err(db_err)?;
                        }
                    }
                }
            }
        }
        if let Some(ev) = audit {
            put_audit(&txn, ev)?;
        }
        txn.commit().map_err(db_err)
    }

    fn for_each_enrolled(&self, visit: &mut PrintVisitor<'_>) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let speakers = txn.open_table(SPEAKERS).map_err(db_err)?;
        let prints = txn.open_table(PRINTS).map_err(db_err)?;
        for row in speakers.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let meta = parse_meta(v.value())?;
            if meta.state != SpeakerState::Enrolled {
                continue;
            }
            let key = k.value();
            let Some((tenant, speaker)) = key.split_once('\0') else {
                return Err(StoreError::Corrupt(format!("speaker key {key:?}")));
            };
            if let Some(sealed) = prints.get(key).map_err(db_err)? {
                let print = self.open_print(tenant, speaker, sealed.value())?;
                visit(tenant, speaker, print.prepared);
            }
        }
        Ok(())
    }

    fn list_speakers(&self) -> Result<Vec<(String, String, SpeakerMeta)>, StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let speakers = txn.open_table(SPEAKERS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in speakers.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let key = k.value();
            let Some((tenant, speaker)) = key.split_once('\0') else {
                return Err(StoreError::Corrupt(format!("speaker key {key:?}")));
            };
            out.push((
                tenant.to_string(),
                speaker.to_string(),
                parse_meta(v.value())?,
            ));
        }
        Ok(out)
    }

    fn create_watchlist(
        &self,
        tenant: &str,
        watchlist_id: &str,
        meta: &WatchlistMeta,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(WATCHLISTS).map_err(db_err)?;
            let k = key2(tenant, watchlist_id);
            if t.get(k.as_str()).map_err(db_err)?.is_some() {
                return Err(StoreError::WatchlistExists(watchlist_id.to_string()));
            }
            let json = serde_json::to_vec(meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            t.insert(k.as_str(), json.as_slice()).map_err(db_err)?;
        }
        put_audit(&txn, audit)?;
        txn.commit().map_err(db_err)
    }

    fn watchlists(&self, tenant: &str) -> Result<Vec<(String, WatchlistMeta)>, StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let lists = txn.open_table(WATCHLISTS).map_err(db_err)?;
        let entries = txn.open_table(WL_ENTRIES).map_err(db_err)?;
        let (lo, hi) = prefix_range(tenant);
        let mut out = Vec::new();
        for row in lists.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let mut meta: WatchlistMeta = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("watchlist metadata: {e}")))?;
            let id = k.value()[lo.len()..].to_string();
            let (elo, ehi) = prefix_range(&key2(tenant, &id));
            let n = entries
                .range(elo.as_str()..ehi.as_str())
                .map_err(db_err)?
                .count();
            meta.size = u32::try_from(n).unwrap_or(u32::MAX);
            out.push((id, meta));
        }
        Ok(out)
    }

    fn put_watchlist_entry(
        &self,
        tenant: &str,
        watchlist_id: &str,
        entry_id: &str,
        entry: &WatchlistEntry,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        {
            let lists = txn.open_table(WATCHLISTS).map_err(db_err)?;
            if lists
                .get(key2(tenant, watchlist_id).as_str())
                .map_err(db_err)?
                .is_none()
            {
                return Err(StoreError::WatchlistNotFound(watchlist_id.to_string()));
            }
            let k = key3(tenant, watchlist_id, entry_id);
            let meta = EntryMeta {
                note: entry.note.clone(),
                source_speaker: entry.source_speaker.clone(),
                created_unix: entry.created_unix,
            };
            let json = serde_json::to_vec(&meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            txn.open_table(WL_ENTRIES)
                .map_err(db_err)?
                .insert(k.as_str(), json.as_slice())
                .map_err(db_err)?;
            let sealed = self.key.seal(
                &entry_binding(tenant, watchlist_id, entry_id),
                &encode_prepared(&entry.prepared),
            )?;
            txn.open_table(WL_PRINTS)
                .map_err(db_err)?
                .insert(k.as_str(), sealed.as_slice())
                .map_err(db_err)?;
        }
        put_audit(&txn, audit)?;
        txn.commit().map_err(db_err)
    }

    fn remove_watchlist_entry(
        &self,
        tenant: &str,
        watchlist_id: &str,
        entry_id: &str,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        let removed;
        {
            let lists = txn.open_table(WATCHLISTS).map_err(db_err)?;
            if lists
                .get(key2(tenant, watchlist_id).as_str())
                .map_err(db_err)?
                .is_none()
            {
                return Err(StoreError::WatchlistNotFound(watchlist_id.to_string()));
            }
            let k = key3(tenant, watchlist_id, entry_id);
            removed = txn
                .open_table(WL_ENTRIES)
                .map_err(db_err)?
                .remove(k.as_str())
                .map_err(db_err)?
                .is_some();
            txn.open_table(WL_PRINTS)
                .map_err(db_err)?
                .remove(k.as_str())
                .map_err(db_err)?;
        }
        put_audit(&txn, audit)?;
        txn.commit().map_err(db_err)?;
        Ok(removed)
    }

    fn remove_watchlist_copies(
        &self,
        tenant: &str,
        speaker_id: &str,
        mut audit: AuditEvent,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        let mut removed = Vec::new();
        {
            let mut entries = txn.open_table(WL_ENTRIES).map_err(db_err)?;
            let mut prints = txn.open_table(WL_PRINTS).map_err(db_err)?;
            let (lo, hi) = prefix_range(tenant);
            let mut keys = Vec::new();
            for row in entries.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let meta: EntryMeta = serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(format!("watchlist entry: {e}")))?;
                if meta.source_speaker.as_deref() == Some(speaker_id) {
                    keys.push(k.value().to_string());
                }
            }
            for key in keys {
                entries.remove(key.as_str()).map_err(db_err)?;
                prints.remove(key.as_str()).map_err(db_err)?;
                let mut parts = key.splitn(3, '\0').skip(1);
                let (Some(w), Some(e)) = (parts.next(), parts.next()) else {
                    return Err(StoreError::Corrupt(format!("watchlist entry key {key:?}")));
                };
                removed.push((w.to_string(), e.to_string()));
            }
        }
        if removed.is_empty() {
            return Ok(removed);
        }
        let listed: Vec<String> = removed.iter().map(|(w, e)| format!("{w}/{e}")).collect();
        audit.detail = Some(format!("entries={}", listed.join(",")));
        put_audit(&txn, audit)?;
        txn.commit().map_err(db_err)?;
        Ok(removed)
    }

    fn for_each_watchlist_entry(
        &self,
        visit: &mut dyn FnMut(&str, &str, &str, Prepared),
    ) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let prints = txn.open_table(WL_PRINTS).map_err(db_err)?;
        for row in prints.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let key = k.value();
            let mut parts = key.splitn(3, '\0');
            let (Some(t), Some(w), Some(e)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(StoreError::Corrupt(format!("watchlist entry key {key:?}")));
            };
            let prepared = decode_prepared(&mut Reader(
                &self.key.open(&entry_binding(t, w, e), v.value())?,
            ))?;
            visit(t, w, e, prepared);
        }
        Ok(())
    }

    fn append_audit(
        &self,
        event: AuditEvent,
        touch: Option<(&str, &str, i64)>,
    ) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        if let Some((tenant, speaker, now)) = touch {
            let mut speakers = txn.open_table(SPEAKERS).map_err(db_err)?;
            let k = key2(tenant, speaker);
            let meta = speakers
                .get(k.as_str())
                .map_err(db_err)?
                .map(|g| parse_meta(g.value()))
                .transpose()?;
            if let Some(mut meta) = meta {
                meta.last_used_unix = meta.last_used_unix.max(now);
                let json =
                    serde_json::to_vec(&meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                speakers
                    .insert(k.as_str(), json.as_slice())
                    .map_err(db_err)?;
            }
        }
        put_audit(&txn, event)?;
        txn.commit().map_err(db_err)
    }

    fn audit_after(
        &self,
        after_seq: u64,
        since_unix_ms: i64,
        visit: &mut dyn FnMut(AuditEvent) -> bool,
    ) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let t = txn.open_table(AUDIT).map_err(db_err)?;
        for row in t.range(after_seq.saturating_add(1)..).map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            let ev: AuditEvent = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("audit event: {e}")))?;
            if ev.time_unix_ms >= since_unix_ms && !visit(ev) {
                break;
            }
        }
        Ok(())
    }

    fn put_complaint(
        &self,
        tenant: &str,
        complaint_id: &str,
        record: &ComplaintRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sealed = self
            .key
            .seal(&complaint_binding(tenant, complaint_id), &json)?;
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(COMPLAINTS)
            .map_err(db_err)?
            .insert(key2(tenant, complaint_id).as_str(), sealed.as_slice())
            .map_err(db_err)?;
        put_audit(&txn, audit)?;
        txn.commit().map_err(db_err)
    }

    fn remove_complaint(
        &self,
        tenant: &str,
        complaint_id: &str,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        let removed = txn
            .open_table(COMPLAINTS)
            .map_err(db_err)?
            .remove(key2(tenant, complaint_id).as_str())
            .map_err(db_err)?
            .is_some();
        put_audit(&txn, audit)?;
        txn.commit().map_err(db_err)?;
        Ok(removed)
    }

    fn for_each_complaint(
        &self,
        visit: &mut dyn FnMut(&str, &str, ComplaintRecord),
    ) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let table = txn.open_table(COMPLAINTS).map_err(db_err)?;
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let key = k.value();
            let Some((t, c)) = key.split_once('\0') else {
                return Err(StoreError::Corrupt(format!("complaint key {key:?}")));
            };
            let json = self.key.open(&complaint_binding(t, c), v.value())?;
            let record: ComplaintRecord =
                serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            visit(t, c, record);
        }
        Ok(())
    }

    fn put_replay(&self, tenant: &str, record: &ReplayRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sealed = self
            .key
            .seal(&replay_binding(tenant, &record.decision_id), &json)?;
        let db = self.read_db();
        let mut txn = db.begin_write().map_err(db_err)?;
        txn.set_durability(redb::Durability::None).map_err(db_err)?;
        txn.open_table(REPLAYS)
            .map_err(db_err)?
            .insert(
                replay_key(tenant, record.timestamp_unix, &record.decision_id).as_str(),
                sealed.as_slice(),
            )
            .map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    fn for_each_replay(&self, visit: &mut dyn FnMut(&str, ReplayRecord)) -> Result<(), StoreError> {
        let db = self.read_db();
        let txn = db.begin_read().map_err(db_err)?;
        let table = txn.open_table(REPLAYS).map_err(db_err)?;
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let key = k.value();
            let mut parts = key.splitn(3, '\0');
            let (Some(t), Some(_), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(StoreError::Corrupt(format!("replay key {key:?}")));
            };
            let json = self.key.open(&replay_binding(t, d), v.value())?;
            let record: ReplayRecord =
                serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            visit(t, record);
        }
        Ok(())
    }

    fn prune_replays(&self, before_unix: i64, keep: usize) -> Result<usize, StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        let mut doomed = Vec::new();
        {
            let mut table = txn.open_table(REPLAYS).map_err(db_err)?;
            // Keys sort by tenant, then time: walk each tenant's run newest first.
            let mut tenant_rows: Vec<(String, i64)> = Vec::new();
            let flush = |rows: &mut Vec<(String, i64)>, doomed: &mut Vec<String>| {
                let n = rows.len();
                for (i, (key, ts)) in rows.drain(..).enumerate() {
                    if ts < before_unix || n - i > keep {
                        doomed.push(key);
                    }
                }
            };
            let mut current = String::new();
            for row in table.iter().map_err(db_err)? {
                let (k, _) = row.map_err(db_err)?;
                let key = k.value();
                let mut parts = key.splitn(3, '\0');
                let (Some(t), Some(ts)) = (parts.next(), parts.next()) else {
                    return Err(StoreError::Corrupt(format!("replay key {key:?}")));
                };
                if t != current {
                    flush(&mut tenant_rows, &mut doomed);
                    current = t.to_string();
                }
                let ts = ts
                    .parse::<i64>()
                    .map_err(|_| StoreError::Corrupt(format!("replay key {key:?}")))?;
                tenant_rows.push((key.to_string(), ts));
            }
            flush(&mut tenant_rows, &mut doomed);
            for key in &doomed {
                table.remove(key.as_str()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(doomed.len())
    }

    fn remove_replays_of(&self, tenant: &str, speaker_id: &str) -> Result<Vec<String>, StoreError> {
        let db = self.read_db();
        let txn = db.begin_write().map_err(db_err)?;
        let (mut doomed, mut ids) = (Vec::new(), Vec::new());
        {
            let mut table = txn.open_table(REPLAYS).map_err(db_err)?;
            let (lo, hi) = prefix_range(tenant);
            for row in table.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let key = k.value();
                let Some(d) = key.splitn(3, '\0').nth(2) else {
                    return Err(StoreError::Corrupt(format!("replay key {key:?}")));
                };
                let json = self.key.open(&replay_binding(tenant, d), v.value())?;
                let record: ReplayRecord = serde_json::from_slice(&json)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if record.speaker_id == speaker_id {
                    doomed.push(key.to_string());
                    ids.push(record.decision_id);
                }
            }
            for key in &doomed {
                table.remove(key.as_str()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(ids)
    }

    fn compact(&self) -> Result<(), StoreError> {
        let mut guard = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tmp = self.path.with_extension("redb.compacting");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io(tmp.clone(), e)),
        }
        let fresh = Database::create(&tmp).map_err(db_err)?;
        {
            let src = guard.begin_read().map_err(db_err)?;
            let dst = fresh.begin_write().map_err(db_err)?;
            for def in STR_TABLES {
                let from = src.open_table(def).map_err(db_err)?;
                let mut to = dst.open_table(def).map_err(db_err)?;
                for row in from.iter().map_err(db_err)? {
                    let (k, v) = row.map_err(db_err)?;
                    to.insert(k.value(), v.value()).map_err(db_err)?;
                }
            }
            let from = src.open_table(AUDIT).map_err(db_err)?;
            let mut to = dst.open_table(AUDIT).map_err(db_err)?;
            for row in from.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                to.insert(k.value(), v.value()).map_err(db_err)?;
            }
            drop(to);
            dst.commit().map_err(db_err)?;
        }
        // The open handle follows the renamed inode; the old file's pages are unlinked with it.
        std::fs::rename(&tmp, &self.path).map_err(|e| StoreError::Io(self.path.clone(), e))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        *guard = fresh;
        Ok(())
    }
}

// Binary layout of the sealed payloads (little endian): version u8, prepared, part count u32,
// parts (net speech f64, embedding). Embedding = dim u32, dim × f32. Prepared = embedding, mean f32,
// std f32, and from version 2 on a channel u8 (0 unknown, 1 wideband, 2 telephone). Version 1
// payloads (written before channels were recorded) still read, with the channel unknown.

const PAYLOAD_VERSION: u8 = 2;

fn put_vec(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_prepared(out: &mut Vec<u8>, p: &Prepared) {
    put_vec(out, &p.embedding);
    out.extend_from_slice(&p.cohort_mean.to_le_bytes());
    out.extend_from_slice(&p.cohort_std.to_le_bytes());
    out.push(match p.channel {
        None => 0,
        Some(Channel::Wideband) => 1,
        Some(Channel::Telephone) => 2,
    });
}

fn encode_prepared(p: &Prepared) -> Vec<u8> {
    let mut out = vec![PAYLOAD_VERSION];
    put_prepared(&mut out, p);
    out
}

fn encode_print(print: &Voiceprint) -> Vec<u8> {
    let mut out = vec![PAYLOAD_VERSION];
    put_prepared(&mut out, &print.prepared);
    out.extend_from_slice(
        &u32::try_from(print.parts.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for part in &print.parts {
        out.extend_from_slice(&part.net_speech_seconds.to_le_bytes());
        put_vec(&mut out, &part.embedding);
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        if self.0.len() < N {
            return Err(StoreError::Corrupt("voiceprint payload truncated".into()));
        }
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        a.try_into()
            .map_err(|_| StoreError::Corrupt("voiceprint payload truncated".into()))
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.take::<4>()?))
    }
    fn f32(&mut self) -> Result<f32, StoreError> {
        Ok(f32::from_le_bytes(self.take::<4>()?))
    }
    fn vec(&mut self) -> Result<Vec<f32>, StoreError> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 4 {
            return Err(StoreError::Corrupt("voiceprint payload truncated".into()));
        }
        (0..n).map(|_| self.f32()).collect()
    }
}

fn decode_prepared(r: &mut Reader<'_>) -> Result<Prepared, StoreError> {
    let version = r.take::<1>()?[0];
    if !(1..=PAYLOAD_VERSION).contains(&version) {
        return Err(StoreError::Corrupt(
            "unknown voiceprint payload version".into(),
        ));
    }
    read_prepared(r, version)
}

fn read_prepared(r: &mut Reader<'_>, version: u8) -> Result<Prepared, StoreError> {
    let embedding = r.vec()?;
    let cohort_mean = r.f32()?;
    let cohort_std = r.f32()?;
    let channel = if version >= 2 {
        match r.take::<1>()?[0] {
            0 => None,
            1 => Some(Channel::Wideband),
            2 => Some(Channel::Telephone),
            _ => return Err(StoreError::Corrupt("unknown voiceprint channel".into())),
        }
    } else {
        None
    };
    Ok(Prepared {
        embedding,
        cohort_mean,
        cohort_std,
        channel,
    })
}

fn decode_print(bytes: &[u8]) -> Result<Voiceprint, StoreError> {
    let mut r = Reader(bytes);
    let prepared = decode_prepared(&mut r)?;
    let n = r.u32()? as usize;
    let mut parts = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let net = f64::from_le_bytes(r.take::<8>()?);
        parts.push(EnrollmentPart {
            embedding: r.vec()?,
            net_speech_seconds: net,
        });
    }
    Ok(Voiceprint { parts, prepared })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn meta(state: SpeakerState) -> SpeakerMeta {
        SpeakerMeta {
            state,
            net_speech_seconds: 25.0,
            enrollment_count: 2,
            created_unix: 1,
            updated_unix: 2,
            last_used_unix: 3,
            model_version: "m".into(),
            consent_reference: Some("c-1".into()),
        }
    }

    fn print(seed: f32) -> Voiceprint {
        let e: Vec<f32> = (0..192).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
        Voiceprint {
            parts: vec![EnrollmentPart {
                embedding: e.clone(),
                net_speech_seconds: 12.5,
            }],
            prepared: Prepared {
                embedding: e,
                cohort_mean: 0.1,
                cohort_std: 0.2,
                channel: Some(crate::score::Channel::Telephone),
            },
        }
    }

    fn audit(action: &str) -> AuditEvent {
        AuditEvent {
            seq: 0,
            time_unix_ms: 1000,
            tenant: "t".into(),
            action: action.into(),
            speaker_id: Some("alice".into()),
            watchlist_id: None,
            decision: "ok".into(),
            score: None,
            llr: None,
            threshold: None,
            model_version: "m".into(),
            calibration_version: "c".into(),
            decision_id: "d".into(),
            request_id: None,
            detail: None,
        }
    }

    fn put(store: &RedbStore, tenant: &str, speaker: &str, rec: SpeakerRecord) {
        let mut rec = Some(rec);
        store
            .modify_speaker(tenant, speaker, &mut |_| {
                Ok((
                    SpeakerChange::Put(rec.take().unwrap()),
                    Some(audit("enroll")),
                ))
            })
            .unwrap();
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Payloads written before channels were recorded (version 1) still read, channel unknown;
    /// version 2 keeps the channel; an unknown channel byte is corruption, not a guess.
    #[test]
    fn print_payload_versions() {
        let p = print(1.0);
        let v2 = encode_print(&p);
        assert_eq!(v2[0], 2);
        let back = decode_print(&v2).unwrap();
        assert_eq!(
            back.prepared.channel,
            Some(crate::score::Channel::Telephone)
        );
        assert_eq!(back.parts.len(), p.parts.len());
        // The same print as version 1: no channel byte after the prepared block.
        let channel_at = 1 + 4 + 4 * p.prepared.embedding.len() + 8;
        let mut v1 = v2.clone();
        v1.remove(channel_at);
        v1[0] = 1;
        let old = decode_print(&v1).unwrap();
        assert_eq!(old.prepared.channel, None);
        assert_eq!(old.prepared.embedding, p.prepared.embedding);
        assert_eq!(old.parts[0].embedding, p.parts[0].embedding);
        let mut bad = v2.clone();
        bad[channel_at] = 9;
        assert!(matches!(decode_print(&bad), Err(StoreError::Corrupt(_))));
        let mut future = v2;
        future[0] = 3;
        assert!(matches!(decode_print(&future), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn roundtrip_persist_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let key = [7u8; 32];
        {
            let s = RedbStore::open(dir.path(), MasterKey::from_bytes(key)).unwrap();
            put(
                &s,
                "t",
                "alice",
                SpeakerRecord {
                    meta: meta(SpeakerState::Enrolled),
                    print: Some(print(1.0)),
                },
            );
            s.append_audit(audit("verify"), Some(("t", "alice", 99)))
                .unwrap();
        }
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes(key)).unwrap();
        let rec = s.speaker("t", "alice").unwrap().unwrap();
        assert_eq!(rec.meta.last_used_unix, 99);
        let p = rec.print.unwrap();
        assert_eq!(p.prepared.embedding, print(1.0).prepared.embedding);
        assert_eq!(p.parts, print(1.0).parts);
        assert!(s.speaker("u", "alice").unwrap().is_none());
        let mut seen = Vec::new();
        s.audit_since(0, &mut |e| {
            seen.push((e.seq, e.action));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![(1, "enroll".to_string()), (2, "verify".to_string())]
        );
        let mut n = 0;
        s.for_each_enrolled(&mut |t, sp, _| {
            assert_eq!((t, sp), ("t", "alice"));
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 1);
        // A wrong master key cannot read the print.
        drop(s);
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes([8u8; 32])).unwrap();
        assert!(matches!(
            s.speaker("t", "alice"),
            Err(StoreError::Crypto(_))
        ));
    }

    #[test]
    fn swapped_records_do_not_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes([1u8; 32])).unwrap();
        put(
            &s,
            "t",
            "alice",
            SpeakerRecord {
                meta: meta(SpeakerState::Enrolled),
                print: Some(print(1.0)),
            },
        );
        put(
            &s,
            "t",
            "bob",
            SpeakerRecord {
                meta: meta(SpeakerState::Enrolled),
                print: Some(print(2.0)),
            },
        );
        put(
            &s,
            "u",
            "alice",
            SpeakerRecord {
                meta: meta(SpeakerState::Enrolled),
                print: Some(print(3.0)),
            },
        );
        let a = s.sealed_print("t", "alice").unwrap().unwrap();
        let b = s.sealed_print("t", "bob").unwrap().unwrap();
        // Write alice's ciphertext under bob and under tenant u: both must fail to open.
        {
            let db = s.read_db();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(PRINTS).unwrap();
                t.insert(key2("t", "bob").as_str(), a.as_slice()).unwrap();
                t.insert(key2("u", "alice").as_str(), a.as_slice()).unwrap();
                t.insert(key2("t", "alice").as_str(), b.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        assert!(matches!(s.speaker("t", "bob"), Err(StoreError::Crypto(_))));
        assert!(matches!(
            s.speaker("u", "alice"),
            Err(StoreError::Crypto(_))
        ));
        assert!(matches!(
            s.speaker("t", "alice"),
            Err(StoreError::Crypto(_))
        ));
    }

    #[test]
    fn delete_and_compact_erase_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes([1u8; 32])).unwrap();
        put(
            &s,
            "t",
            "alice",
            SpeakerRecord {
                meta: meta(SpeakerState::Enrolled),
                print: Some(print(1.0)),
            },
        );
        put(
            &s,
            "t",
            "bob",
            SpeakerRecord {
                meta: meta(SpeakerState::Enrolled),
                print: Some(print(2.0)),
            },
        );
        let sealed = s.sealed_print("t", "alice").unwrap().unwrap();
        let file = std::fs::read(s.path()).unwrap();
        assert!(contains(&file, &sealed[..64]));
        s.modify_speaker("t", "alice", &mut |_| {
            Ok((SpeakerChange::Delete, Some(audit("delete"))))
        })
        .unwrap();
        s.compact().unwrap();
        let file = std::fs::read(s.path()).unwrap();
        assert!(!contains(&file, &sealed[..32]));
        assert!(!contains(&file, b"t\0alice"));
        // The rest survives compaction and the store stays writable.
        assert!(s.speaker("t", "bob").unwrap().is_some());
        put(
            &s,
            "t",
            "carol",
            SpeakerRecord {
                meta: meta(SpeakerState::Enrolling),
                print: Some(print(4.0)),
            },
        );
        drop(s);
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes([1u8; 32])).unwrap();
        assert!(s.speaker("t", "carol").unwrap().is_some());
        assert!(s.speaker("t", "alice").unwrap().is_none());
    }

    #[test]
    fn watchlists() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes([1u8; 32])).unwrap();
        let wl = WatchlistMeta {
            description: "fraud".into(),
            created_unix: 5,
            size: 0,
        };
        s.create_watchlist("t", "fraud", &wl, audit("watchlist_create"))
            .unwrap();
        assert!(matches!(
            s.create_watchlist("t", "fraud", &wl, audit("watchlist_create")),
            Err(StoreError::WatchlistExists(_))
        ));
        let entry = WatchlistEntry {
            note: "n".into(),
            source_speaker: None,
            created_unix: 6,
            prepared: print(1.0).prepared,
        };
        assert!(matches!(
            s.put_watchlist_entry("t", "nope", "e1", &entry, audit("watchlist_add")),
            Err(StoreError::WatchlistNotFound(_))
        ));
        s.put_watchlist_entry("t", "fraud", "e1", &entry, audit("watchlist_add"))
            .unwrap();
        s.put_watchlist_entry("t", "fraud", "e2", &entry, audit("watchlist_add"))
            .unwrap();
        assert_eq!(s.watchlists("t").unwrap()[0].1.size, 2);
        assert!(s.watchlists("u").unwrap().is_empty());
        let mut n = 0;
        s.for_each_watchlist_entry(&mut |t, w, _, p| {
            assert_eq!((t, w), ("t", "fraud"));
            assert_eq!(p.embedding.len(), 192);
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 2);
        assert!(
            s.remove_watchlist_entry("t", "fraud", "e1", audit("watchlist_remove"))
                .unwrap()
        );
        assert!(
            !s.remove_watchlist_entry("t", "fraud", "e1", audit("watchlist_remove"))
                .unwrap()
        );
        assert_eq!(s.watchlists("t").unwrap()[0].1.size, 1);
    }

    #[test]
    fn watchlist_copies_of_a_speaker() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes([1u8; 32])).unwrap();
        let wl = WatchlistMeta {
            description: String::new(),
            created_unix: 5,
            size: 0,
        };
        for (tenant, list) in [("t", "a"), ("t", "b"), ("u", "a")] {
            s.create_watchlist(tenant, list, &wl, audit("watchlist_create"))
                .unwrap();
        }
        let entry = |source: Option<&str>| WatchlistEntry {
            note: String::new(),
            source_speaker: source.map(str::to_string),
            created_unix: 6,
            prepared: print(1.0).prepared,
        };
        let puts = [
            ("t", "a", "x1", Some("carlo")),
            ("t", "b", "x2", Some("carlo")),
            ("t", "a", "y", Some("carlos")),
            ("t", "b", "z", None),
            ("u", "a", "x3", Some("carlo")),
        ];
        for (tenant, list, id, source) in puts {
            s.put_watchlist_entry(tenant, list, id, &entry(source), audit("watchlist_add"))
                .unwrap();
        }
        let audits_before = {
            let mut n = 0;
            s.audit_since(0, &mut |_| {
                n += 1;
                true
            })
            .unwrap();
            n
        };
        let removed = s
            .remove_watchlist_copies("t", "carlo", audit("watchlist_remove"))
            .unwrap();
        assert_eq!(
            removed,
            [("a".into(), "x1".into()), ("b".into(), "x2".into())]
        );
        let mut left = Vec::new();
        s.for_each_watchlist_entry(&mut |t, w, e, _| left.push(format!("{t}/{w}/{e}")))
            .unwrap();
        assert_eq!(left, ["t/a/y", "t/b/z", "u/a/x3"]);
        assert!(
            s.remove_watchlist_copies("t", "carlo", audit("watchlist_remove"))
                .unwrap()
                .is_empty()
        );
        let mut events = Vec::new();
        s.audit_since(0, &mut |ev| {
            events.push(ev);
            true
        })
        .unwrap();
        assert_eq!(
            events.len(),
            audits_before + 1,
            "one event, none when nothing went"
        );
        assert_eq!(
            events.last().and_then(|e| e.detail.as_deref()),
            Some("entries=a/x1,b/x2")
        );
    }

    #[test]
    fn replay_fingerprints_persist_prune_and_erase() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |d: &str, sp: &str, ts: i64| ReplayRecord {
            decision_id: d.into(),
            speaker_id: sp.into(),
            timestamp_unix: ts,
            fingerprint: format!("fp-{d}").into_bytes(),
        };
        {
            let s = RedbStore::open(dir.path(), MasterKey::from_bytes([1u8; 32])).unwrap();
            for (t, d, sp, ts) in [
                ("t", "d1", "ann", 100),
                ("t", "d2", "bob", 200),
                ("t", "d3", "ann", 300),
                ("t", "d4", "bob", 400),
                ("u", "d5", "ann", 50),
            ] {
                s.put_replay(t, &rec(d, sp, ts)).unwrap();
            }
            // A durable commit after the non-durable ones, as the audit event of a decision.
            s.append_audit(audit("verify"), None).unwrap();
        }
        let s = RedbStore::open(dir.path(), MasterKey::from_bytes([1u8; 32])).unwrap();
        let list = |s: &RedbStore| {
            let mut out = Vec::new();
            s.for_each_replay(&mut |t, r| {
                assert_eq!(r.fingerprint, format!("fp-{}", r.decision_id).into_bytes());
                out.push(format!("{t}/{}", r.decision_id));
            })
            .unwrap();
            out
        };
        assert_eq!(list(&s), ["t/d1", "t/d2", "t/d3", "t/d4", "u/d5"]);
        assert!(!contains(
            &std::fs::read(dir.path().join(DB_FILE)).unwrap(),
            b"fp-d1"
        ));
        // Older than 150 s, and beyond the newest 2 per tenant.
        assert_eq!(s.prune_replays(150, 2).unwrap(), 3);
        assert_eq!(list(&s), ["t/d3", "t/d4"]);
        assert_eq!(s.remove_replays_of("t", "ann").unwrap(), ["d3"]);
        assert!(s.remove_replays_of("u", "bob").unwrap().is_empty());
        assert_eq!(list(&s), ["t/d4"]);
    }

    #[test]
    fn corrupt_payload_is_an_error() {
        assert!(decode_print(&[]).is_err());
        assert!(decode_print(&[1, 255, 255, 255, 255]).is_err());
        assert!(decode_print(&[2]).is_err());
    }
}
