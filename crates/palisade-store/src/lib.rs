//! # palisade-store
//!
//! Durable storage of verified records on sled, with the indexes queries need, the author
//! feeds sync needs, and the node's persistent safety state (equivocation proofs, bans, the
//! peer book). The store's API hides sled: callers see [`Store`], [`Query`] and plain values,
//! so a storage change touches this crate only.
//!
//! ## Trees
//! - `data`: everything about records, in key spaces (see `keys.rs`): records (id →
//!   [`StoredMeta`] + envelope bytes), secondary indexes, feed heads ([`FeedHead`]),
//!   equivocation proofs ([`EquivocationProof`]), anomaly states ([`AnomalyStatus`]) and
//!   counters. One tree means a group of records with all their index entries is one atomic
//!   `apply_batch` — much cheaper than a multi-tree transaction.
//! - `meta`: the schema version.
//! - `bans`, `peers`: guard and network state, written on their own.
//!
//! ## Durability
//! Writes are atomic (one batch per insert call) but not durable until [`Store::flush`]
//! returns. sled's own background flush is off: the caller's group-commit policy (or the
//! admin API's flush-before-acknowledge) is the only thing that makes writes durable, so
//! durability is explicit and measurable. Writers are serialised by a mutex, which makes
//! the read-check-write of equivocation detection and feed heads race-free.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod check;
mod disk;
mod error;
mod keys;
mod node_state;
mod query;
mod signing_history;
mod state_writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bincode::{Decode, Encode};
use palisade_types::codec::{decode_exact, encode};
use palisade_types::{
    AnomalyEvent, AnomalyState, AuthorKey, Fingerprint, RecordId, RecordKind, Statement, VerifiedRecord,
};
use sled::Tree;

pub use check::{CheckReport, MAX_REPORTED_PROBLEMS};
pub use disk::{
    free_bytes, DiskLevel, DiskWatermarks, DEFAULT_MIN_FREE_DISK_BYTES, DEFAULT_WARN_FREE_DISK_BYTES,
    DISK_SAMPLE_INTERVAL, MAX_RELEASE_MARGIN_BYTES,
};
pub use error::{Result, StoreError};
pub use query::{Cursor, Page, Query, QUERY_LIMIT_MAX, QUERY_SCAN_BUDGET};
pub use signing_history::{Signed, SigningHistory, SigningHistoryError, SIGNING_HISTORY_FILE};
pub use state_writer::{
    QueueFull, StateWriter, StateWriterStats, Ticket, WaitError, MAX_PENDING_STATE_CHANGES,
};

/// Version of the on-disk layout. Bump on any incompatible change to keys or values.
///
/// - 1: first layout.
/// - 2: no global time index (queries without a selective filter merge the kind indexes);
///   a version-1 store is migrated on open by deleting its time-index entries.
pub const SCHEMA_VERSION: u32 = 2;

/// Schema 1 → 2: drops the time-index entries (in bounded batches), then records version 2.
fn migrate_v1(inner: &Inner) -> std::result::Result<(), sled::Error> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        for item in inner.data.scan_prefix(keys::time_prefix()).take(10_000) {
            let (k, _) = item?;
            batch.remove(k);
            n += 1;
        }
        if n == 0 {
            break;
        }
        inner.data.apply_batch(batch)?;
    }
    inner.meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
    inner.db.flush()?;
    Ok(())
}

/// Default sled page-cache size. sled's own default is 1 GiB, far more than a node needs;
/// 64 MiB keeps the hot part of the indexes cached while a node with a million records stays
/// well under the 256 MiB RSS goal.
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// Most entries kept in the peer book; the least recently seen are evicted beyond it.
pub const MAX_PEER_BOOK_ENTRIES: usize = 1024;

/// Most anomaly events re-read when an out-of-order update forces a full re-fold of one
/// fingerprint's state. Bounded so a flood of updates to one fingerprint costs bounded work.
pub const MAX_FOLD_EVENTS: usize = 10_000;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// sled page-cache size in bytes.
    pub cache_capacity_bytes: u64,
    /// Free-space thresholds of the filesystem under `path` (see [`DiskWatermarks`]).
    pub watermarks: DiskWatermarks,
}

impl StoreConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            watermarks: DiskWatermarks::default(),
        }
    }
}

/// How a record reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Signed by this node (admin API).
    Local,
    /// Received by gossip.
    Gossip,
    /// Pulled by anti-entropy sync.
    Sync,
    /// Imported from an NDJSON file.
    Import,
}

impl Source {
    fn to_byte(self) -> u8 {
        match self {
            Source::Local => 0,
            Source::Gossip => 1,
            Source::Sync => 2,
            Source::Import => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Source> {
        Some(match b {
            0 => Source::Local,
            1 => Source::Gossip,
            2 => Source::Sync,
            3 => Source::Import,
            _ => return None,
        })
    }
}

/// Local facts about a stored record (not part of the signed record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMeta {
    /// When this node stored it (ms since epoch).
    pub received_at_ms: u64,
    /// How it arrived.
    pub source: Source,
}

const RECORD_VALUE_FORMAT: u8 = 1;
const RECORD_META_LEN: usize = 1 + 8 + 1;

fn encode_record_value(meta: StoredMeta, wire: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_META_LEN + wire.len());
    v.push(RECORD_VALUE_FORMAT);
    v.extend_from_slice(&meta.received_at_ms.to_le_bytes());
    v.push(meta.source.to_byte());
    v.extend_from_slice(wire);
    v
}

fn decode_record_value(id: &RecordId, value: &[u8]) -> Result<(StoredMeta, VerifiedRecord)> {
    let key = keys::record_key(id);
    let corrupt = |d: &str| StoreError::corrupt("data", &key, d);
    let (head, wire) = value.split_at_checked(RECORD_META_LEN).ok_or_else(|| corrupt("value too short"))?;
    let [format, t @ .., source] = head else { return Err(corrupt("value too short")) };
    if *format != RECORD_VALUE_FORMAT {
        return Err(corrupt("unknown value format"));
    }
    let t: [u8; 8] = t.try_into().map_err(|_| corrupt("bad timestamp"))?;
    let source = Source::from_byte(*source).ok_or_else(|| corrupt("unknown source"))?;
    let record = VerifiedRecord::from_trusted_bytes(wire.to_vec()).map_err(|e| corrupt(&e.to_string()))?;
    if record.id() != *id {
        return Err(corrupt("record id does not match its key"));
    }
    Ok((StoredMeta { received_at_ms: u64::from_le_bytes(t), source }, record))
}

/// A record as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The verified record.
    pub record: VerifiedRecord,
    /// Local facts.
    pub meta: StoredMeta,
    /// The revocation that withdrew this record, if its author revoked it.
    pub revoked_by: Option<RecordId>,
}

/// The state of one author's feed on this node.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize,
)]
pub struct FeedHead {
    /// Highest seq such that every seq from 1 to it is stored. Sync advertises this.
    pub contiguous_seq: u64,
    /// Highest seq stored (above `contiguous_seq` there are gaps).
    pub max_seq: u64,
    /// Records stored for this author (equivocating copies included).
    pub records: u64,
}

/// Two different records by one author at one seq: a self-verifying proof that the author
/// forked its feed. Both records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EquivocationProof {
    /// The author.
    pub author: AuthorKey,
    /// The seq used twice.
    pub seq: u64,
    /// The record stored first.
    pub first: RecordId,
    /// The conflicting record.
    pub second: RecordId,
    /// When this node detected it.
    pub detected_at_ms: u64,
}

/// The folded state of one anomaly (all reports and updates with its fingerprint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AnomalyStatus {
    /// The fingerprint.
    pub fingerprint: Fingerprint,
    /// Current state.
    pub state: AnomalyState,
    /// Latest report (anomaly record) with this fingerprint.
    pub latest_report: Option<RecordId>,
    /// Reports and updates seen.
    pub events: u64,
    /// `issued_at_ms` of the last event applied.
    pub last_event_ms: u64,
    /// Id of the last event applied (tie-breaker).
    pub last_event_id: RecordId,
}

/// Result of [`Store::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored for the first time.
    Inserted(Inserted),
    /// Already stored; nothing changed.
    Duplicate,
}

/// Details of a fresh insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The author's feed head after the insert.
    pub feed_head: FeedHead,
    /// Set when this record conflicts with a stored one at the same (author, seq).
    pub equivocation: Option<EquivocationProof>,
    /// The stored record at `seq - 1` is not the one `prev` names (a fork further back, or a
    /// record we have not seen). Stored anyway; sync will fetch the other branch.
    pub prev_mismatch: bool,
}

/// A ban as persisted. The guard decides what `target` means (e.g. `peer:<id>`, `ip:<addr>`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct BanRecord {
    /// What is banned.
    pub target: String,
    /// Ban ends at this time (ms since epoch); `u64::MAX` = until unbanned.
    pub until_ms: u64,
    /// When the ban was made.
    pub created_ms: u64,
    /// Why.
    pub reason: String,
}

/// A known peer and where it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct PeerBookEntry {
    /// Peer id (base58).
    pub peer_id: String,
    /// Multiaddrs it was reached at (bounded by the caller).
    pub addrs: Vec<String>,
    /// Last time it was connected (ms since epoch).
    pub last_seen_ms: u64,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    /// Records, indexes, feeds, equivocations, anomaly states, counters (see `keys.rs`).
    data: Tree,
    /// The schema version only.
    meta: Tree,
    bans: Tree,
    peers: Tree,
    write_lock: Mutex<()>,
    /// Feed heads of recently written authors, exactly as in `data` (see [`CachedHead`]).
    heads: Mutex<HashMap<AuthorKey, CachedHead>>,
    /// Free-space level and I/O health, sampled by the disk watch thread.
    disk: Arc<disk::DiskState>,
}

/// Most authors whose feed heads are kept in memory; the map is cleared when full (the
/// store answers beyond it).
pub const HEAD_CACHE_ENTRIES: usize = 65_536;

/// A feed head as stored, plus the id of the record at `max_seq` when exactly one is known
/// to be there. Only writers fill the cache, under the write lock and after their batch is
/// applied, so an entry is never older than the tree; readers may see it lag the tree by
/// one batch, which only ever makes them look a record up (never miss one).
#[derive(Debug, Clone, Copy)]
struct CachedHead {
    head: FeedHead,
    tip: Option<RecordId>,
}

/// The record store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish()
    }
}

const META_SCHEMA: &[u8] = b"schema_version";

fn count_key(kind: RecordKind) -> Vec<u8> {
    keys::spaced(keys::SPACE_META, &[b'c', kind.tag()])
}

fn authors_key() -> Vec<u8> {
    keys::spaced(keys::SPACE_META, b"authors")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn u64_value(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// State read and written while one group of records is inserted: reads see the group's own
/// earlier writes before they hit the tree.
#[derive(Default)]
struct Overlay {
    new_ids: HashSet<RecordId>,
    at: HashMap<(AuthorKey, u64), Vec<RecordId>>,
    heads: HashMap<AuthorKey, CachedHead>,
    anomalies: HashMap<Fingerprint, AnomalyStatus>,
    fp_events: HashMap<Fingerprint, Vec<(AnomalyEvent, bool)>>,
    counts: HashMap<RecordKind, u64>,
    new_authors: u64,
    proofs: HashSet<(AuthorKey, u64)>,
}

/// How long [`Store::open`] keeps retrying a database lock that is still held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Pause between two lock attempts.
const LOCK_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

impl Store {
    /// Opens (or creates) the store, checking the schema version. A database lock that is
    /// still held is retried for up to 3 s before [`StoreError::Locked`].
    pub fn open(config: &StoreConfig) -> Result<Store> {
        let path = config.path.clone();
        let io = |source: sled::Error| {
            let text = source.to_string();
            if text.contains("could not acquire lock") {
                StoreError::Locked { path: path.clone() }
            } else if text.contains("earlier than 0.29") || matches!(source, sled::Error::Corruption { .. }) {
                // sled's words for files it cannot read at open ("created using a sled version
                // earlier than 0.29" for a garbage `conf`): damage, not an old version.
                StoreError::Damaged { path: path.clone(), detail: text }
            } else {
                StoreError::Io { path: path.clone(), source }
            }
        };
        let sled_config = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None);
        // sled 0.34 releases its file lock from a background thread a moment after the last
        // handle is dropped, so a reopen right after a close in the same process (a restart,
        // a migration, a test) can find it still held. Another process holding it keeps it:
        // the error then surfaces after the wait.
        disk::remove_unfinished_snapshots(&config.path);
        let lock_deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled_config.open().map_err(io) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < lock_deadline => {
                    std::thread::sleep(LOCK_RETRY_INTERVAL);
                }
                other => break other?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(io);
        let disk = Arc::new(disk::DiskState::new(&path, config.watermarks));
        disk::spawn_watch(Arc::downgrade(&disk));
        let inner = Inner {
            data: tree("data")?,
            meta: tree("meta")?,
            bans: tree("bans")?,
            peers: tree("peers")?,
            path: path.clone(),
            db,
            write_lock: Mutex::new(()),
            heads: Mutex::new(HashMap::new()),
            disk,
        };
        match inner.meta.get(META_SCHEMA).map_err(io)? {
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0);
                if found == 1 {
                    migrate_v1(&inner).map_err(io)?;
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaMismatch { path, found, expected: SCHEMA_VERSION });
                }
            }
            None => {
                if !inner.data.is_empty() {
                    return Err(StoreError::SchemaMismatch { path, found: 0, expected: SCHEMA_VERSION });
                }
                inner.meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()).map_err(io)?;
                inner.db.flush().map_err(io)?;
            }
        }
        Ok(Store { inner: Arc::new(inner) })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn io(&self, source: sled::Error) -> StoreError {
        if matches!(
            source,
            sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)
        ) {
            self.inner.disk.mark_failed(&source.to_string());
        }
        StoreError::Io { path: self.inner.path.clone(), source }
    }

    /// Bytes the database's files take on disk (a metric; a failure here never marks the
    /// store failed).
    pub fn size_on_disk(&self) -> Result<u64> {
        self.inner
            .db
            .size_on_disk()
            .map_err(|source| StoreError::Io { path: self.inner.path.clone(), source })
    }

    /// Where the free space of the store's filesystem stands (sampled every
    /// [`DISK_SAMPLE_INTERVAL`]).
    pub fn disk_level(&self) -> DiskLevel {
        self.inner.disk.level()
    }

    /// Whether new records are refused for lack of disk space (the flood stage). One atomic
    /// load: the ingest pipeline asks it before any other work.
    pub fn disk_low(&self) -> bool {
        self.disk_level() == DiskLevel::FloodStage
    }

    /// Free bytes of the store's filesystem at the last sample.
    pub fn disk_free_bytes(&self) -> Option<u64> {
        self.inner.disk.free_bytes()
    }

    /// The store's watermarks.
    pub fn disk_watermarks(&self) -> DiskWatermarks {
        self.inner.disk.marks()
    }

    /// Samples the free space now (the watch thread does it every second; tests and the
    /// readiness check may not want to wait).
    pub fn sample_disk(&self) {
        self.inner.disk.sample();
    }

    /// The first I/O failure of this store, if any. sled 0.34 keeps failing after one (its
    /// error state is sticky until the database is reopened), so a node whose store has
    /// failed must restart; nothing acknowledged is lost by it (acknowledgements wait for
    /// the flush).
    pub fn failure(&self) -> Option<String> {
        self.inner.disk.failure()
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        self.inner.data.get(key).map_err(|e| self.io(e))
    }

    /// Makes every write so far durable (fsync). Returns when it is on disk.
    pub fn flush(&self) -> Result<()> {
        self.inner.db.flush().map(|_| ()).map_err(|e| self.io(e))
    }

    /// [`flush`](Self::flush) without blocking the async runtime.
    pub async fn flush_async(&self) -> Result<()> {
        self.inner.db.flush_async().await.map(|_| ()).map_err(|e| self.io(e))
    }

    /// Whether a record is stored. One point lookup: the dedup check behind the seen-cache.
    pub fn contains(&self, id: &RecordId) -> Result<bool> {
        self.inner.data.contains_key(keys::record_key(id)).map_err(|e| self.io(e))
    }

    /// Stores a verified record with its indexes, feed head and anomaly state, atomically.
    /// Idempotent: storing the same id again returns [`InsertOutcome::Duplicate`]. Detects
    /// equivocation (same author and seq, different id): both are kept and a proof stored.
    ///
    /// Not durable until [`flush`](Self::flush).
    pub fn insert(&self, record: &VerifiedRecord, meta: StoredMeta) -> Result<InsertOutcome> {
        let mut out = self.insert_many(&[(record, meta)])?;
        out.pop().ok_or_else(|| StoreError::corrupt("data", record.id().as_bytes(), "empty insert result"))
    }

    /// Stores a group of records in one atomic batch (all or nothing), with the same checks
    /// and outcomes as [`insert`](Self::insert) for each, in order. The ingest pipeline's store
    /// thread writes whatever it has queued this way: one batch costs about as much as a
    /// single insert plus the per-record key writes.
    pub fn insert_many(&self, items: &[(&VerifiedRecord, StoredMeta)]) -> Result<Vec<InsertOutcome>> {
        if self.disk_low() {
            return Err(self.disk_low_error());
        }
        let _guard = self.inner.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut ov = Overlay::default();
        let mut batch = sled::Batch::default();
        let mut outcomes = Vec::with_capacity(items.len());
        for (record, meta) in items {
            outcomes.push(self.stage(&mut ov, &mut batch, record, *meta)?);
        }
        for (kind, added) in &ov.counts {
            let key = count_key(*kind);
            let now = self.get_raw(&key)?.map(|v| u64_value(&v)).unwrap_or(0);
            batch.insert(key, &now.saturating_add(*added).to_be_bytes());
        }
        if ov.new_authors > 0 {
            let key = authors_key();
            let now = self.get_raw(&key)?.map(|v| u64_value(&v)).unwrap_or(0);
            batch.insert(key, &now.saturating_add(ov.new_authors).to_be_bytes());
        }
        self.inner.data.apply_batch(batch).map_err(|e| self.io(e))?;
        let mut cache = lock(&self.inner.heads);
        if cache.len() + ov.heads.len() > HEAD_CACHE_ENTRIES {
            cache.clear();
        }
        cache.extend(ov.heads);
        Ok(outcomes)
    }

    fn disk_low_error(&self) -> StoreError {
        StoreError::DiskLow {
            path: self.inner.path.clone(),
            free_bytes: self.disk_free_bytes().unwrap_or(0),
            min_free_bytes: self.inner.disk.marks().min_free_bytes,
        }
    }

    /// The cached head of `author`, if it is in memory.
    fn cached_head(&self, author: &AuthorKey) -> Option<CachedHead> {
        lock(&self.inner.heads).get(author).copied()
    }

    /// Whether the record `id`, which is `author`'s record at `seq`, is stored. Like
    /// [`contains`](Self::contains), but free of I/O when the author's feed head is in memory
    /// and shows `seq` beyond everything stored (the usual case for a new record): the id
    /// covers the author and seq, so no stored record can have it.
    pub fn contains_record(&self, id: &RecordId, author: &AuthorKey, seq: u64) -> Result<bool> {
        match self.cached_head(author) {
            Some(c) if seq > c.head.max_seq => Ok(false),
            _ => self.contains(id),
        }
    }

    /// Checks one record against stored and staged state and adds its writes to `batch`.
    fn stage(
        &self,
        ov: &mut Overlay,
        batch: &mut sled::Batch,
        record: &VerifiedRecord,
        meta: StoredMeta,
    ) -> Result<InsertOutcome> {
        let id = record.id();
        let pos = &record.record().position;
        let author = pos.author;
        // The author's head (staged, cached or stored) decides how much must be looked up:
        // a record beyond the highest stored seq cannot be stored yet and has no rival at
        // its seq, and its `prev` is checked against the cached tip.
        let current = match ov.heads.get(&author) {
            Some(c) => Some(*c),
            None => match self.cached_head(&author) {
                Some(c) => Some(c),
                None => self.feed_head(&author)?.map(|head| CachedHead { head, tip: None }),
            },
        };
        let beyond = current.is_none_or(|c| pos.seq > c.head.max_seq);
        if !beyond && (ov.new_ids.contains(&id) || self.contains(&id)?) {
            return Ok(InsertOutcome::Duplicate);
        }

        // Equivocation: another record at (author, seq)?
        let same_seq = if beyond { Vec::new() } else { self.staged_ids_at(ov, &author, pos.seq)? };
        let equivocation = same_seq.first().map(|first| EquivocationProof {
            author,
            seq: pos.seq,
            first: *first,
            second: id,
            detected_at_ms: meta.received_at_ms,
        });
        if let Some(proof) = &equivocation {
            let key = keys::equivocation_key(&author, pos.seq);
            if !ov.proofs.contains(&(author, pos.seq)) && self.get_raw(&key)?.is_none() {
                batch.insert(key, encode(proof));
                ov.proofs.insert((author, pos.seq));
            }
        }
        let prev_mismatch = match (pos.seq.checked_sub(1), pos.prev) {
            (Some(prev_seq), Some(prev)) if prev_seq >= 1 => match current {
                Some(CachedHead { head, tip: Some(tip) }) if head.max_seq == prev_seq => tip != prev,
                _ => {
                    let stored = self.staged_ids_at(ov, &author, prev_seq)?;
                    !stored.is_empty() && !stored.contains(&prev)
                }
            },
            _ => false,
        };
        ov.at.entry((author, pos.seq)).or_insert(same_seq).push(id);
        ov.new_ids.insert(id);

        // Feed head: advance the contiguous prefix through any records that were waiting.
        let (mut head, old_tip) = match current {
            Some(c) => (c.head, c.tip),
            None => {
                ov.new_authors += 1;
                (FeedHead::default(), None)
            }
        };
        let tip = match pos.seq.cmp(&head.max_seq) {
            std::cmp::Ordering::Greater => Some(id),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Less => old_tip,
        };
        // Counters read back from disk may be corrupt (u64::MAX): saturate, never overflow.
        head.records = head.records.saturating_add(1);
        head.max_seq = head.max_seq.max(pos.seq);
        if head.contiguous_seq.checked_add(1) == Some(pos.seq) {
            head.contiguous_seq = pos.seq;
            while head.contiguous_seq < head.max_seq
                && !self.staged_ids_at(ov, &author, head.contiguous_seq + 1)?.is_empty()
            {
                head.contiguous_seq += 1;
            }
        }
        ov.heads.insert(author, CachedHead { head, tip });
        batch.insert(keys::feed_key(&author), encode(&head));

        if let Some(status) = self.next_anomaly_status(ov, record)? {
            batch.insert(keys::anomaly_key(&status.fingerprint), encode(&status));
            ov.anomalies.insert(status.fingerprint, status);
        }
        for (k, v) in index_entries(record) {
            batch.insert(k, v);
        }
        batch.insert(keys::record_key(&id), encode_record_value(meta, record.wire_bytes()));
        *ov.counts.entry(record.kind()).or_default() += 1;
        Ok(InsertOutcome::Inserted(Inserted { feed_head: head, equivocation, prev_mismatch }))
    }

    fn staged_ids_at(&self, ov: &Overlay, author: &AuthorKey, seq: u64) -> Result<Vec<RecordId>> {
        match ov.at.get(&(*author, seq)) {
            Some(ids) => Ok(ids.clone()),
            None => self.ids_at(author, seq),
        }
    }

    /// Record ids stored at (author, seq): normally zero or one, more after equivocation.
    pub fn ids_at(&self, author: &AuthorKey, seq: u64) -> Result<Vec<RecordId>> {
        let mut out = Vec::new();
        for item in self.inner.data.scan_prefix(keys::author_seq_prefix(author, seq)) {
            let (k, _) = item.map_err(|e| self.io(e))?;
            out.push(
                keys::trailing_id(&k).ok_or_else(|| StoreError::corrupt("data", &k, "short index key"))?,
            );
        }
        Ok(out)
    }

    /// Gets a record by id.
    pub fn get(&self, id: &RecordId) -> Result<Option<StoredRecord>> {
        match self.record_by_id_raw(id)? {
            Some((meta, record)) => self.stored(meta, record).map(Some),
            None => Ok(None),
        }
    }

    /// The revocation of `record` by its own author, if any.
    fn revoked_by(&self, record: &VerifiedRecord) -> Result<Option<RecordId>> {
        for item in self.inner.data.scan_prefix(keys::revocation_prefix(&record.id())) {
            let (k, v) = item.map_err(|e| self.io(e))?;
            if v.as_ref() == record.author().as_bytes().as_slice() {
                return Ok(keys::trailing_id(&k));
            }
        }
        Ok(None)
    }

    /// The feed head of one author (from memory when it was written recently).
    pub fn feed_head(&self, author: &AuthorKey) -> Result<Option<FeedHead>> {
        if let Some(c) = self.cached_head(author) {
            return Ok(Some(c.head));
        }
        let key = keys::feed_key(author);
        match self.get_raw(&key)? {
            Some(v) => decode_exact(&v, "feed head")
                .map(Some)
                .map_err(|e| StoreError::corrupt("data", &key, e.to_string())),
            None => Ok(None),
        }
    }

    /// Entries of one key space after `after` (a key suffix), at most `limit`.
    fn space_page(
        &self,
        space: u8,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(keys::spaced(space, a)),
            None => std::ops::Bound::Included(vec![space]),
        };
        let end = std::ops::Bound::Excluded(vec![space + 1]);
        let mut out = Vec::new();
        for item in self.inner.data.range::<Vec<u8>, _>((start, end)).take(limit) {
            out.push(item.map_err(|e| self.io(e))?);
        }
        Ok(out)
    }

    /// Feed heads in author order, starting after `after`, at most `limit`. Sync pages
    /// through this.
    pub fn feed_heads(&self, after: Option<&AuthorKey>, limit: usize) -> Result<Vec<(AuthorKey, FeedHead)>> {
        let mut out = Vec::new();
        for (k, v) in self.space_page(keys::SPACE_FEED, after.map(|a| a.as_bytes().as_slice()), limit)? {
            let author: [u8; 32] = k
                .get(1..)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::corrupt("data", &k, "feed key is not 32 bytes"))?;
            let head =
                decode_exact(&v, "feed head").map_err(|e| StoreError::corrupt("data", &k, e.to_string()))?;
            out.push((AuthorKey(author), head));
        }
        Ok(out)
    }

    /// Number of authors with at least one stored record.
    pub fn author_count(&self) -> usize {
        self.get_raw(&authors_key()).ok().flatten().map(|v| u64_value(&v) as usize).unwrap_or(0)
    }

    /// Records of `author` with `from_seq <= seq <= to_seq`, in seq order, stopping after
    /// `max_records` records or once `max_bytes` of envelopes are collected (at least one
    /// record is returned if any exists). Sync serves pages from this.
    pub fn feed_range(
        &self,
        author: &AuthorKey,
        from_seq: u64,
        to_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<VerifiedRecord>> {
        let start = keys::author_seq_prefix(author, from_seq);
        let end = match to_seq.checked_add(1) {
            Some(s) => keys::author_seq_prefix(author, s),
            None => keys::prefix_successor(&keys::author_prefix(author)).unwrap_or_default(),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.inner.data.range(start..end) {
            if out.len() >= max_records {
                break;
            }
            let (k, _) = item.map_err(|e| self.io(e))?;
            let id =
                keys::trailing_id(&k).ok_or_else(|| StoreError::corrupt("data", &k, "short index key"))?;
            let Some((_, record)) = self.record_by_id_raw(&id)? else { continue };
            bytes += record.wire_bytes().len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(record);
        }
        Ok(out)
    }

    /// The latest record of `author`'s feed as (seq, id): where a [`FeedWriter`] resumes.
    ///
    /// [`FeedWriter`]: palisade_types::FeedWriter
    pub fn latest_in_feed(&self, author: &AuthorKey) -> Result<Option<(u64, RecordId)>> {
        match self.inner.data.scan_prefix(keys::author_prefix(author)).next_back() {
            Some(item) => {
                let (k, _) = item.map_err(|e| self.io(e))?;
                let corrupt = || StoreError::corrupt("data", &k, "short index key");
                let seq = keys::author_key_seq(&k).ok_or_else(corrupt)?;
                let id = keys::trailing_id(&k).ok_or_else(corrupt)?;
                Ok(Some((seq, id)))
            }
            None => Ok(None),
        }
    }

    /// Stored equivocation proofs, in (author, seq) order, after `after`, at most `limit`.
    pub fn equivocations(
        &self,
        after: Option<(AuthorKey, u64)>,
        limit: usize,
    ) -> Result<Vec<EquivocationProof>> {
        let after = after.map(|(a, s)| {
            let mut k = a.as_bytes().to_vec();
            k.extend_from_slice(&s.to_be_bytes());
            k
        });
        let mut out = Vec::new();
        for (k, v) in self.space_page(keys::SPACE_EQUIVOCATION, after.as_deref(), limit)? {
            out.push(
                decode_exact(&v, "equivocation proof")
                    .map_err(|e| StoreError::corrupt("data", &k, e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// Whether `author` has been caught equivocating.
    pub fn is_flagged(&self, author: &AuthorKey) -> Result<bool> {
        let prefix = keys::spaced(keys::SPACE_EQUIVOCATION, author.as_bytes());
        Ok(self.inner.data.scan_prefix(prefix).next().transpose().map_err(|e| self.io(e))?.is_some())
    }

    /// Stored record counts by kind.
    pub fn record_counts(&self) -> Result<BTreeMap<RecordKind, u64>> {
        let mut out = BTreeMap::new();
        for kind in RecordKind::ALL {
            let n = self.get_raw(&count_key(kind))?.map(|v| u64_value(&v)).unwrap_or(0);
            out.insert(kind, n);
        }
        Ok(out)
    }

    /// Total stored records.
    pub fn record_count(&self) -> usize {
        self.record_counts()
            .map(|c| c.values().fold(0u64, |sum, n| sum.saturating_add(*n)))
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .unwrap_or(0)
    }

    /// The folded state of one anomaly.
    pub fn anomaly_status(&self, fingerprint: &Fingerprint) -> Result<Option<AnomalyStatus>> {
        let key = keys::anomaly_key(fingerprint);
        match self.get_raw(&key)? {
            Some(v) => decode_exact(&v, "anomaly status")
                .map(Some)
                .map_err(|e| StoreError::corrupt("data", &key, e.to_string())),
            None => Ok(None),
        }
    }

    /// Anomaly states in fingerprint order after `after`, optionally only those in `state`,
    /// at most `limit`, scanning at most [`QUERY_SCAN_BUDGET`] entries. Returns the last
    /// fingerprint scanned when the scan stopped early (the cursor of the next page).
    pub fn anomaly_statuses(
        &self,
        state: Option<AnomalyState>,
        after: Option<&Fingerprint>,
        limit: usize,
    ) -> Result<(Vec<AnomalyStatus>, Option<Fingerprint>)> {
        let page =
            self.space_page(keys::SPACE_ANOMALY, after.map(|f| f.as_bytes().as_slice()), QUERY_SCAN_BUDGET)?;
        let mut out = Vec::new();
        let mut last = None;
        let scanned = page.len();
        for (k, v) in page {
            if out.len() >= limit {
                return Ok((out, last));
            }
            let status: AnomalyStatus = decode_exact(&v, "anomaly status")
                .map_err(|e| StoreError::corrupt("data", &k, e.to_string()))?;
            last = Some(status.fingerprint);
            if state.is_none_or(|s| s == status.state) {
                out.push(status);
            }
        }
        Ok((out, if scanned >= QUERY_SCAN_BUDGET { last } else { None }))
    }

    /// The new status of the anomaly `record` reports or updates, if it is one.
    fn next_anomaly_status(
        &self,
        ov: &mut Overlay,
        record: &VerifiedRecord,
    ) -> Result<Option<AnomalyStatus>> {
        let (fingerprint, state, is_report) = match &record.record().statement {
            Statement::Anomaly(a) => (a.fingerprint(), AnomalyState::Open, true),
            Statement::AnomalyUpdate(u) => (u.fingerprint, u.state, false),
            _ => return Ok(None),
        };
        let t = record.record().position.issued_at_ms;
        let id = record.id();
        let event = AnomalyEvent { issued_at_ms: t, id, state };
        let current = match ov.anomalies.get(&fingerprint) {
            Some(s) => Some(*s),
            None => self.anomaly_status(&fingerprint)?,
        };
        let status = match current {
            None => AnomalyStatus {
                fingerprint,
                state,
                latest_report: is_report.then_some(id),
                events: 1,
                last_event_ms: t,
                last_event_id: id,
            },
            // The common case: the event is newer than everything folded so far.
            Some(cur) if (t, id) > (cur.last_event_ms, cur.last_event_id) => AnomalyStatus {
                state: if cur.state.can_become(state) { state } else { cur.state },
                latest_report: if is_report { Some(id) } else { cur.latest_report },
                events: cur.events.saturating_add(1),
                last_event_ms: t,
                last_event_id: id,
                ..cur
            },
            // Out of order: re-fold every event of this fingerprint (stored and staged).
            Some(cur) => {
                let mut events: Vec<(AnomalyEvent, bool)> = vec![(event, is_report)];
                events.extend(ov.fp_events.get(&fingerprint).into_iter().flatten().copied());
                let prefix = keys::fingerprint_prefix(&fingerprint);
                for item in self.inner.data.scan_prefix(&prefix).take(MAX_FOLD_EVENTS) {
                    let (k, v) = item.map_err(|e| self.io(e))?;
                    let corrupt = || StoreError::corrupt("data", &k, "bad anomaly index entry");
                    let ev_id = keys::trailing_id(&k).ok_or_else(corrupt)?;
                    let ev_t = k
                        .get(prefix.len()..prefix.len() + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(corrupt)?;
                    let (ev_state, ev_is_report) = match v.as_ref() {
                        [s, r] => (state_from_byte(*s).ok_or_else(corrupt)?, *r == 1),
                        _ => return Err(corrupt()),
                    };
                    events.push((
                        AnomalyEvent { issued_at_ms: ev_t, id: ev_id, state: ev_state },
                        ev_is_report,
                    ));
                }
                let latest_report = events
                    .iter()
                    .filter(|(_, r)| *r)
                    .map(|(e, _)| (e.issued_at_ms, e.id))
                    .max()
                    .map(|(_, id)| id);
                let last = events.iter().map(|(e, _)| (e.issued_at_ms, e.id)).max().unwrap_or((t, id));
                let mut plain: Vec<AnomalyEvent> = events.iter().map(|(e, _)| *e).collect();
                let folded = palisade_types::fold_anomaly_state(&mut plain).unwrap_or(state);
                AnomalyStatus {
                    fingerprint,
                    state: folded,
                    latest_report,
                    events: cur.events.saturating_add(1),
                    last_event_ms: last.0,
                    last_event_id: last.1,
                }
            }
        };
        ov.fp_events.entry(fingerprint).or_default().push((event, is_report));
        Ok(Some(status))
    }

    pub(crate) fn index_tree(&self) -> &Tree {
        &self.inner.data
    }

    pub(crate) fn record_by_id_raw(&self, id: &RecordId) -> Result<Option<(StoredMeta, VerifiedRecord)>> {
        let key = keys::record_key(id);
        match self.get_raw(&key)? {
            Some(v) => decode_record_value(id, &v).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn stored(&self, meta: StoredMeta, record: VerifiedRecord) -> Result<StoredRecord> {
        let revoked_by = self.revoked_by(&record)?;
        Ok(StoredRecord { record, meta, revoked_by })
    }

    pub(crate) fn io_err(&self, e: sled::Error) -> StoreError {
        self.io(e)
    }
}

fn state_to_byte(s: AnomalyState) -> u8 {
    match s {
        AnomalyState::Open => 0,
        AnomalyState::Acknowledged => 1,
        AnomalyState::Resolved => 2,
        AnomalyState::Suppressed => 3,
    }
}

fn state_from_byte(b: u8) -> Option<AnomalyState> {
    Some(match b {
        0 => AnomalyState::Open,
        1 => AnomalyState::Acknowledged,
        2 => AnomalyState::Resolved,
        3 => AnomalyState::Suppressed,
        _ => return None,
    })
}

/// Every index entry of a record.
fn index_entries(record: &VerifiedRecord) -> Vec<(Vec<u8>, Vec<u8>)> {
    let r = record.record();
    let id = record.id();
    let t = r.position.issued_at_ms;
    let mut out = vec![
        (keys::author_seq(&r.position.author, r.position.seq, &id), Vec::new()),
        (keys::timed(&keys::kind_prefix(r.kind()), t, &id), Vec::new()),
    ];
    match &r.statement {
        Statement::Attestation(a) => {
            for d in a.subject.digests.iter() {
                out.push((keys::timed(&keys::subject_prefix(d), t, &id), Vec::new()));
            }
        }
        Statement::Anomaly(a) => {
            out.push((
                keys::timed(&keys::fingerprint_prefix(&a.fingerprint()), t, &id),
                vec![state_to_byte(AnomalyState::Open), 1],
            ));
            out.push((keys::timed(&keys::source_prefix(&a.source), t, &id), Vec::new()));
        }
        Statement::AnomalyUpdate(u) => {
            out.push((
                keys::timed(&keys::fingerprint_prefix(&u.fingerprint), t, &id),
                vec![state_to_byte(u.state), 0],
            ));
        }
        Statement::Revocation(rv) => {
            let mut k = keys::revocation_prefix(&rv.target);
            k.extend_from_slice(id.as_bytes());
            out.push((k, r.position.author.as_bytes().to_vec()));
        }
    }
    out
}
