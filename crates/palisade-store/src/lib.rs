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

mod backup;
mod check;
mod compact;
mod disk;
mod error;
mod interchange;
mod keys;
mod manifest;
mod migrate;
mod node_state;
mod query;
mod read;
mod restore;
mod retention;
mod signing_history;
mod slots;
mod state_writer;
mod values;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use palisade_types::codec::{decode_exact, encode};
use palisade_types::{
    AnomalyEvent, AnomalyState, AuthorKey, Fingerprint, RecordId, RecordKind, Statement, VerifiedRecord,
};
use sled::Tree;

pub use backup::{
    BackupEnd, BackupHeader, BackupItem, BackupLine, BackupReader, BackupStream, BackupSummary,
    BACKUP_FORMAT, BACKUP_PAGE_RECORDS, BACKUP_VERSION, MAX_BACKUP_LINE_BYTES,
};
pub use check::{CheckReport, MAX_REPORTED_PROBLEMS};
pub use compact::{
    compact, compact_old_dir, compacting_dir, recover_interrupted_compaction, AutoCompact, CompactReport,
    CompactionUsage, COMPACT_CHECK_INTERVAL, COMPACT_ROOM_FACTOR, DEFAULT_COMPACT_ABOVE_BYTES,
    DEFAULT_COMPACT_ABOVE_RATIO, MAX_CAPTURE_BYTES,
};
pub use disk::{
    free_bytes, DiskLevel, DiskWatermarks, DEFAULT_MIN_FREE_DISK_BYTES, DEFAULT_WARN_FREE_DISK_BYTES,
    DISK_SAMPLE_INTERVAL, MAX_RELEASE_MARGIN_BYTES,
};
pub use error::{Result, StoreError};
pub use interchange::{Interchange, MAX_INTERCHANGE_BYTES};
pub use manifest::{Acknowledged, ManifestCheck, MANIFEST_FILE};
pub use query::{Cursor, Page, Query, QUERY_LIMIT_MAX, QUERY_SCAN_BUDGET};
pub use restore::{RestoreError, RestoreReport, MAX_LISTED_REFUSALS};
pub use retention::{
    StoreUsage, DEFAULT_MAX_STORE_BYTES, EVICTION_BATCH_RECORDS, EVICTION_LOG_INTERVAL, EVICTION_SCAN_BUDGET,
    MARKER_COST, MIN_MAX_STORE_BYTES, RETENTION_INTERVAL,
};
pub use signing_history::{Signed, SigningHistory, SigningHistoryError, SIGNING_HISTORY_FILE};
pub use state_writer::{
    QueueFull, StateWriter, StateWriterStats, Ticket, WaitError, MAX_PENDING_STATE_CHANGES,
};
pub(crate) use values::{decode_record_value, encode_record_value, state_from_byte, state_to_byte};
pub use values::{
    AnomalyStatus, BanRecord, EquivocationProof, EvictionMarker, FeedHead, InsertOutcome, Inserted,
    PeerBookEntry, Refusal, Source, StoredMeta, StoredRecord,
};

/// Version of the on-disk layout. Bump on any incompatible change to keys or values.
///
/// - 1: first layout.
/// - 2: no global time index (queries without a selective filter merge the kind indexes);
///   a version-1 store is migrated on open by deleting its time-index entries.
/// - 3: the received-order index and the byte counter of the store quota (`retention.rs`);
///   a version-2 store is migrated on open by building both from its records.
/// - 4: counters of the records ever stored, by kind (the store manifest's figures,
///   `manifest.rs`); a version-3 store is migrated on open by starting them at its counts.
pub const SCHEMA_VERSION: u32 = 4;

/// zstd level of `store.compression` (levels 1 and 3 measured the same size; 1 is faster).
const COMPRESSION_LEVEL: i32 = 1;

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
    /// The store quota in logical bytes of records (`store.max_bytes`, see `retention.rs`).
    pub max_bytes: u64,
    /// zstd-compress sled's pages (`store.compression`): about 2.4x less disk, about 2.4x
    /// slower writes (measured in `docs/operations.md`). Applies when the store is created;
    /// an existing store keeps the setting it was created with.
    pub compression: bool,
    /// The store manifest (`<data-dir>/store-manifest`, outside `db/` so that deleting or
    /// replacing `db/` does not take it along): raised with every flush, compared with the
    /// store at open ([`Store::manifest_check`]). `None` keeps no manifest.
    pub manifest_path: Option<PathBuf>,
    /// When the store compacts itself online to give back the space of what it evicted
    /// (`store.compact_above_bytes`, `store.compact_above_ratio`).
    pub auto_compact: AutoCompact,
}

impl StoreConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            watermarks: DiskWatermarks::default(),
            max_bytes: DEFAULT_MAX_STORE_BYTES,
            compression: false,
            manifest_path: None,
            auto_compact: AutoCompact::default(),
        }
    }
}

/// sled's handles. An online compaction (`compact.rs`) swaps them whole, so every use takes
/// them through [`Store::trees`] and holds them for one call only: a handle kept longer
/// would go on reading (or, worse, writing) a database that has been replaced, whose unlinked
/// files keep their disk space until it lets go.
pub(crate) struct Trees {
    db: sled::Db,
    /// Records, indexes, feeds, equivocations, anomaly states, counters (see `keys.rs`).
    data: Tree,
    /// The schema version and the own author.
    meta: Tree,
    bans: Tree,
    peers: Tree,
}

/// The trees of the store, by name (what an online compaction's capture records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeName {
    Data,
    Meta,
    Bans,
    Peers,
}

impl TreeName {
    fn as_str(self) -> &'static str {
        match self {
            TreeName::Data => "data",
            TreeName::Meta => "meta",
            TreeName::Bans => "bans",
            TreeName::Peers => "peers",
        }
    }
}

impl Trees {
    fn tree(&self, name: TreeName) -> &Tree {
        match name {
            TreeName::Data => &self.data,
            TreeName::Meta => &self.meta,
            TreeName::Bans => &self.bans,
            TreeName::Peers => &self.peers,
        }
    }

    fn open(db: sled::Db) -> std::result::Result<Trees, sled::Error> {
        Ok(Trees {
            data: db.open_tree(TreeName::Data.as_str())?,
            meta: db.open_tree(TreeName::Meta.as_str())?,
            bans: db.open_tree(TreeName::Bans.as_str())?,
            peers: db.open_tree(TreeName::Peers.as_str())?,
            db,
        })
    }
}

struct Inner {
    path: PathBuf,
    /// sled's page cache (an online compaction reopens the swapped database with it).
    cache_capacity_bytes: u64,
    /// The open database; an online compaction replaces it (`compact.rs`).
    trees: std::sync::RwLock<Arc<Trees>>,
    /// Held by every writer of the database (records, evictions, bans, the peer book, the own
    /// author): it makes the read-check-write of equivocation detection and feed heads
    /// race-free, and an online compaction holds it while it copies.
    write_lock: Mutex<()>,
    /// Feed heads of recently written authors, exactly as in `data` (see [`CachedHead`]).
    heads: Mutex<HashMap<AuthorKey, CachedHead>>,
    /// Free-space level and I/O health, sampled by the disk watch thread.
    disk: Arc<disk::DiskState>,
    /// The store quota's state (see `retention.rs`).
    retention: retention::Retention,
    /// sled compresses its pages (`store.compression`, as the store was created).
    compressed: bool,
    /// Mirror of the records-ever-stored counters, in [`RecordKind::ALL`] order (written
    /// under the write lock after the batch that raised them is applied).
    stored_ever: [std::sync::atomic::AtomicU64; 4],
    /// The author whose node runs on this store, once known (see `node_state.rs`).
    own: Mutex<Option<AuthorKey>>,
    /// Online compaction: its policy and what it has done (see `compact.rs`).
    compaction: compact::CompactionState,
    /// While an online compaction copies: every write since the copy began, in order,
    /// replayed onto the copy before the swap (written under `write_lock`).
    capture: Mutex<Option<compact::Capture>>,
    /// The store manifest, if configured, and how the store compared with it at open (set
    /// once, by [`Store::open`]).
    manifest: std::sync::OnceLock<(manifest::Manifest, ManifestCheck)>,
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

/// Records ever stored of `kind` (schema 4): only grows, whatever the quota evicts.
fn stored_ever_key(kind: RecordKind) -> Vec<u8> {
    keys::spaced(keys::SPACE_META, &[b'n', kind.tag()])
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

/// How sled is opened: no background flusher (durability is the caller's flush).
fn sled_config(path: &Path, cache_capacity_bytes: u64, compression: bool) -> sled::Config {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .use_compression(compression)
        .compression_factor(COMPRESSION_LEVEL)
}

/// sled's page cache while a compaction writes its copy (written once, never read back).
const COPY_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Opens sled, retrying a lock that is still held for up to [`LOCK_WAIT`]. sled 0.34
/// releases its file lock from a background thread a moment after the last handle is
/// dropped, so a reopen right after a close in the same process (a restart, a migration, a
/// compaction's swap, a test) can find it still held. Another process holding it keeps it:
/// the error then surfaces after the wait.
fn open_sled_waiting_for_lock(config: &sled::Config) -> std::result::Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(LOCK_RETRY_INTERVAL);
            }
            other => return other,
        }
    }
}

impl Inner {
    /// How to open the database at `path` as this store was opened.
    fn sled_config(&self, path: &Path) -> sled::Config {
        sled_config(path, self.cache_capacity_bytes, self.compressed)
    }
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
        let compression = disk::effective_compression(&config.path, config.compression);
        disk::remove_unfinished_snapshots(&config.path);
        // Before anything could create an empty store where a compaction's swap was cut short.
        compact::recover_interrupted_compaction(&config.path).map_err(|e| io(sled::Error::Io(e)))?;
        let db =
            open_sled_waiting_for_lock(&sled_config(&config.path, config.cache_capacity_bytes, compression))
                .map_err(io)?;
        let trees = Trees::open(db).map_err(io)?;
        let disk = Arc::new(disk::DiskState::new(&path, config.watermarks));
        disk::spawn_watch(Arc::downgrade(&disk));
        match trees.meta.get(META_SCHEMA).map_err(io)? {
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0);
                if !(1..=SCHEMA_VERSION).contains(&found) {
                    return Err(StoreError::SchemaMismatch { path, found, expected: SCHEMA_VERSION });
                }
                if found == 1 {
                    migrate::migrate_v1(&trees).map_err(io)?;
                }
                if found <= 2 {
                    tracing::info!(path = %path.display(), "migrating the store to schema 3 (the quota's index)");
                    migrate::migrate_v2(&trees).map_err(io)?;
                }
                if found <= 3 {
                    tracing::info!(path = %path.display(), "migrating the store to schema 4 (the manifest's counters)");
                    migrate::migrate_v3(&trees).map_err(io)?;
                }
            }
            None => {
                if !trees.data.is_empty() {
                    return Err(StoreError::SchemaMismatch { path, found: 0, expected: SCHEMA_VERSION });
                }
                trees.meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()).map_err(io)?;
                trees.db.flush().map_err(io)?;
            }
        }
        let quota_bytes = migrate::quota_bytes(&trees, &path).map_err(io)?;
        let trees = Arc::new(trees);
        let inner = Inner {
            path: path.clone(),
            cache_capacity_bytes: config.cache_capacity_bytes,
            trees: std::sync::RwLock::new(trees.clone()),
            write_lock: Mutex::new(()),
            heads: Mutex::new(HashMap::new()),
            disk,
            retention: retention::Retention::new(config.max_bytes, 0),
            compaction: compact::CompactionState::new(config.auto_compact),
            capture: Mutex::new(None),
            compressed: compression,
            stored_ever: Default::default(),
            own: Mutex::new(None),
            manifest: std::sync::OnceLock::new(),
        };
        inner.retention.set_bytes(quota_bytes);
        manifest::load_figures(&inner, &trees).map_err(io)?;
        drop(trees);
        let store = Store { inner: Arc::new(inner) };
        if let Some(manifest_path) = &config.manifest_path {
            store.open_manifest(manifest_path)?;
        }
        retention::spawn_retention(Arc::downgrade(&store.inner));
        compact::spawn_auto_compact(Arc::downgrade(&store.inner));
        Ok(store)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// sled's handles, for one call (an online compaction may swap them between two calls).
    pub(crate) fn trees(&self) -> Arc<Trees> {
        self.inner.trees.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `batch` to one tree: the one way every writer writes (the caller holds
    /// `write_lock`). While an online compaction copies, the batch is also captured for the
    /// copy; `bytes` is its size as the caller counts it, which bounds the capture.
    pub(crate) fn apply(&self, tree: TreeName, batch: sled::Batch, bytes: u64) -> Result<()> {
        if let Some(capture) = lock(&self.inner.capture).as_mut() {
            capture.push(tree, &batch, bytes);
        }
        self.trees().tree(tree).apply_batch(batch).map_err(|e| self.io(e))
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
        self.trees()
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

    /// `Err(StoreError::DiskLow)` below the flood stage: the one refusal every writer of new
    /// records (the store's own insert, an import deciding before it reads its body) gives.
    pub fn check_disk_room(&self) -> Result<()> {
        if !self.disk_low() {
            return Ok(());
        }
        Err(StoreError::DiskLow {
            path: self.inner.path.clone(),
            free_bytes: self.disk_free_bytes().unwrap_or(0),
            min_free_bytes: self.inner.disk.marks().min_free_bytes,
        })
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
        self.trees().data.get(key).map_err(|e| self.io(e))
    }

    /// The value at `key` of the `data` tree, decoded; a value that does not decode is
    /// reported as damage (`what` names it).
    pub(crate) fn get_decoded<T: bincode::Decode<()>>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>> {
        match self.get_raw(key)? {
            Some(v) => {
                decode_exact(&v, what).map(Some).map_err(|e| StoreError::corrupt("data", key, e.to_string()))
            }
            None => Ok(None),
        }
    }

    /// Makes every write so far durable (fsync), then raises the store manifest to the
    /// figures taken before the flush (so it never claims more than is durable). Returns
    /// when it is on disk.
    pub fn flush(&self) -> Result<()> {
        let before = self.manifest_figures();
        self.trees().db.flush().map_err(|e| self.io(e))?;
        self.raise_manifest(before);
        Ok(())
    }

    /// [`flush`](Self::flush) without blocking the async runtime.
    pub async fn flush_async(&self) -> Result<()> {
        let before = self.manifest_figures();
        let trees = self.trees();
        trees.db.flush_async().await.map_err(|e| self.io(e))?;
        self.raise_manifest(before);
        Ok(())
    }

    /// The cached head of `author`, if it is in memory.
    fn cached_head(&self, author: &AuthorKey) -> Option<CachedHead> {
        lock(&self.inner.heads).get(author).copied()
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
