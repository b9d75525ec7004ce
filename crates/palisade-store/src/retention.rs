//! The store quota and trust-tiered retention (issue 16): `store.max_bytes` bounds what the
//! records of a node take, whoever writes them.
//!
//! **Accounting.** Every record costs the bytes of every key and value it writes (record,
//! indexes, received-order entry): [`record_cost`], a function of the record alone, so the
//! insert that adds it and the eviction that removes it agree to the byte. The running total
//! is a counter in the `data` tree, changed in the same atomic batch as the records, so it
//! survives a SIGKILL exactly. sled's files take more than these logical bytes (its pages,
//! its log); `Store::usage` reports both.
//!
//! **Eviction.** Above the quota the store evicts, oldest received first, records of authors
//! it does not protect, until the total is at the low mark (15/16 of the quota). It never
//! evicts: records of its own author or received from the admin API, records of a protected
//! author (named by a trust policy or `store.retain_authors`, see
//! [`Store::set_protected_authors`]), either half of an equivocation proof, an anomaly report
//! or update of an anomaly that is still open or acknowledged, or a revocation whose target
//! is still stored. Eviction runs in the writer that crossed the quota (bounded work per
//! call, under the write lock) and on a timer, so the store stays under the quota plus one
//! write group whenever something is evictable.
//!
//! **Markers.** Each author with evicted records keeps an [`EvictionMarker`] (the highest
//! evicted seq and totals; [`MARKER_COST`] bytes against the quota, for good) and its feed
//! head unchanged, so anti-entropy sync does not ask for
//! the range again, and a record at an evicted seq is refused ([`Refusal::Evicted`]) rather than
//! stored again. Equivocation detection keeps working for every seq still stored; at an
//! evicted seq there is no first record left to prove a fork with.
//!
//! **Quota full.** When nothing is evictable and the total is over the quota, records of
//! unprotected authors are refused ([`Refusal::QuotaFull`]) while own and protected authors'
//! records are still stored (they are the ones the operator asked to keep).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use palisade_types::{AnomalyState, AuthorKey, RecordKind, Statement, VerifiedRecord};
use tracing::{info, warn};

use super::*;
use crate::values::{EvictionMarker, Refusal, RECORD_META_LEN};

/// Default `store.max_bytes`: the records' logical bytes a node keeps before it evicts.
pub const DEFAULT_MAX_STORE_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// Smallest `store.max_bytes` a node accepts (a quota below a few groups of records would
/// evict on every write).
pub const MIN_MAX_STORE_BYTES: u64 = 1024 * 1024;

/// Most records evicted while one writer holds the write lock beyond what it inserted, so a
/// writer that crossed the quota pays a bounded price.
pub const EVICTION_BATCH_RECORDS: usize = 512;

/// Most received-index entries one eviction call looks at (protected records are skipped, so
/// a store full of them must not make every call walk all of them).
pub const EVICTION_SCAN_BUDGET: usize = 65_536;

/// How often the retention thread checks the quota (a node restarted with a smaller quota,
/// or one whose writers stopped mid-eviction, gets under it without new writes).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(1);

/// The bytes a record costs against the quota: every key and value it writes.
pub(crate) fn record_cost(record: &VerifiedRecord) -> u64 {
    cost_of(&crate::write::index_entries(record), record.wire_bytes().len())
}

/// [`record_cost`] from the index entries the writer computed anyway.
pub(crate) fn cost_of(index_entries: &[(Vec<u8>, Vec<u8>)], wire_len: usize) -> u64 {
    let indexes: usize = index_entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    let own = 1 + 32 + RECORD_META_LEN + wire_len + keys::RECEIVED_KEY_LEN;
    (indexes + own) as u64
}

/// What an eviction marker costs against the quota, for good: its entry and the feed head it
/// keeps (key and value of each, rounded up). Markers are never removed (removing one would
/// let sync fetch the range again), so they are counted: a flood of fresh Sybil authors, each
/// evicted whole, fills the quota with markers at about a quarter of the rate its records
/// would, and then meets the full quota (`Refusal::QuotaFull`) instead of an unbounded disk.
pub const MARKER_COST: u64 = 128;

/// The quota's low mark: eviction frees down to it, so it does not run for every group.
pub(crate) fn low_mark(max_bytes: u64) -> u64 {
    max_bytes - max_bytes / 16
}

pub(crate) fn bytes_key() -> Vec<u8> {
    keys::spaced(keys::SPACE_META, b"bytes")
}

/// The store's figures for `palisade store usage` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreUsage {
    /// Logical bytes of the stored records (what the quota counts).
    pub bytes_used: u64,
    /// The quota (`store.max_bytes`).
    pub max_bytes: u64,
    /// Records evicted since the store was opened.
    pub evicted_records: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// Records refused since the store was opened, because the quota was full
    /// ([`Refusal::QuotaFull`]).
    pub refused_quota_full: u64,
    /// Records refused since the store was opened, because their seq was evicted
    /// ([`Refusal::Evicted`]).
    pub refused_evicted: u64,
    /// Authors whose records are never evicted (own author not included).
    pub protected_authors: u64,
    /// The last eviction found nothing more to evict while over the quota.
    pub quota_full: bool,
    /// sled compresses the store's pages (`store.compression` when it was created).
    pub compressed: bool,
    /// What online compaction did (sled keeps the space of evicted records until then).
    pub compaction: crate::CompactionUsage,
}

/// The quota's state, shared by writers and the retention thread.
pub(crate) struct Retention {
    max_bytes: u64,
    /// Mirror of the `bytes` counter (written under the write lock, read without it).
    bytes: AtomicU64,
    protected: RwLock<Arc<HashSet<AuthorKey>>>,
    /// The received-index key the next eviction starts at (`None`: the oldest).
    cursor: Mutex<Option<Vec<u8>>>,
    quota_full: AtomicBool,
    evicted_records: AtomicU64,
    evicted_bytes: AtomicU64,
    refused_quota_full: AtomicU64,
    refused_evicted: AtomicU64,
    /// Evictions not yet logged: (last log line, records, bytes). Under a steady flood every
    /// write evicts; one line per [`EVICTION_LOG_INTERVAL`] says what went.
    unlogged: Mutex<(Option<Instant>, u64, u64)>,
}

/// How often evictions are summarised in the log.
pub const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Retention {
    fn log_evictions(&self, records: u64, bytes: u64) {
        let mut u = lock(&self.unlogged);
        u.1 += records;
        u.2 += bytes;
        // The first eviction is logged at once, then a summary per interval.
        let due = u.0.is_none_or(|last| last.elapsed() >= EVICTION_LOG_INTERVAL);
        if due {
            info!(
                records = u.1,
                bytes = u.2,
                since_last_secs = u.0.map_or(0, |last| last.elapsed().as_secs()),
                bytes_used = self.bytes(),
                max_bytes = self.max_bytes,
                "store quota: evicted the oldest records of unprotected authors"
            );
            *u = (Some(Instant::now()), 0, 0);
        }
    }

    pub(crate) fn new(max_bytes: u64, bytes: u64) -> Retention {
        Retention {
            max_bytes,
            bytes: AtomicU64::new(bytes),
            protected: RwLock::new(Arc::new(HashSet::new())),
            cursor: Mutex::new(None),
            quota_full: AtomicBool::new(false),
            evicted_records: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            refused_quota_full: AtomicU64::new(0),
            refused_evicted: AtomicU64::new(0),
            unlogged: Mutex::new((None, 0, 0)),
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn over_quota(&self) -> bool {
        self.bytes() > self.max_bytes
    }

    /// The last eviction pass found nothing to evict while over the quota.
    pub(crate) fn known_full(&self) -> bool {
        self.quota_full.load(Ordering::Relaxed)
    }

    pub(crate) fn protected(&self) -> Arc<HashSet<AuthorKey>> {
        self.protected.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn refused(&self, why: Refusal) {
        let counter = match why {
            Refusal::QuotaFull => &self.refused_quota_full,
            Refusal::Evicted => &self.refused_evicted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one eviction pass writes, gathered before its one batch.
#[derive(Default)]
struct Eviction {
    batch: sled::Batch,
    heads: HashMap<AuthorKey, FeedHead>,
    markers: HashMap<AuthorKey, EvictionMarker>,
    counts: HashMap<RecordKind, u64>,
    /// Received-order entries whose record was gone (removed too).
    dangling: usize,
}

/// What one eviction call did.
#[derive(Debug, Default)]
struct Pass {
    evicted: u64,
    freed: u64,
    /// The scan reached the newest record.
    reached_end: bool,
    /// Bytes of the markers this pass created (see [`MARKER_COST`]).
    marker_bytes: u64,
    /// The pass started at the cursor, not at the oldest record.
    started_mid: bool,
}

impl Store {
    /// Sets the authors whose records are never evicted (trust-policy authors and
    /// `store.retain_authors`; the store's own author is always protected). Called at start
    /// and on every configuration reload; the next eviction scans from the oldest record
    /// again, since records it skipped may now be evictable.
    pub fn set_protected_authors(&self, authors: HashSet<AuthorKey>) {
        let r = &self.inner.retention;
        *r.protected.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(authors);
        *lock(&r.cursor) = None;
        r.quota_full.store(false, Ordering::Relaxed);
    }

    /// The quota's figures.
    pub fn usage(&self) -> StoreUsage {
        let r = &self.inner.retention;
        StoreUsage {
            bytes_used: r.bytes(),
            max_bytes: r.max_bytes,
            evicted_records: r.evicted_records.load(Ordering::Relaxed),
            evicted_bytes: r.evicted_bytes.load(Ordering::Relaxed),
            refused_quota_full: r.refused_quota_full.load(Ordering::Relaxed),
            refused_evicted: r.refused_evicted.load(Ordering::Relaxed),
            protected_authors: r.protected().len() as u64,
            quota_full: r.quota_full.load(Ordering::Relaxed) && r.over_quota(),
            compressed: self.inner.compressed,
            compaction: self.inner.compaction.usage(),
        }
    }

    /// What the quota evicted of `author`'s feed, if anything.
    pub fn eviction_marker(&self, author: &AuthorKey) -> Result<Option<EvictionMarker>> {
        self.get_decoded(&keys::evicted_key(author), "eviction marker")
    }

    /// Whether the quota keeps every record of `author` (own author or protected).
    pub(crate) fn is_protected(&self, author: &AuthorKey, own: Option<&AuthorKey>) -> bool {
        own == Some(author) || self.inner.retention.protected().contains(author)
    }

    /// Evicts until the quota's low mark, at most `max_records`, if over the quota. The
    /// caller holds the write lock. Returns the records evicted.
    pub(crate) fn evict_locked(&self, max_records: usize) -> Result<u64> {
        let r = &self.inner.retention;
        if !r.over_quota() {
            r.quota_full.store(false, Ordering::Relaxed);
            return Ok(0);
        }
        let mut pass = self.evict_pass(max_records)?;
        if pass.evicted == 0 && pass.reached_end && pass.started_mid {
            // Nothing after the cursor: look again from the oldest record before calling the
            // quota full (what the cursor skipped may be evictable now).
            pass = self.evict_pass(max_records)?;
        }
        if pass.evicted > 0 {
            r.quota_full.store(false, Ordering::Relaxed);
            r.evicted_records.fetch_add(pass.evicted, Ordering::Relaxed);
            r.evicted_bytes.fetch_add(pass.freed, Ordering::Relaxed);
            r.log_evictions(pass.evicted, pass.freed);
        }
        let full = r.over_quota() && pass.evicted == 0 && pass.reached_end;
        if full && !r.quota_full.swap(true, Ordering::Relaxed) {
            warn!(
                bytes_used = r.bytes(),
                max_bytes = r.max_bytes,
                "store quota full and nothing left to evict: records of unprotected authors are \
                 refused. Raise store.max_bytes, or name fewer authors in trust policies and \
                 store.retain_authors"
            );
        }
        Ok(pass.evicted)
    }

    /// One bounded walk of the received index from the cursor, evicting what may go.
    fn evict_pass(&self, max_records: usize) -> Result<Pass> {
        let r = &self.inner.retention;
        let protected = r.protected();
        let own = self.own_author()?;
        let target = low_mark(r.max_bytes);
        let mut cursor = lock(&r.cursor);
        let start = cursor.clone().unwrap_or_else(keys::received_prefix);
        let end = keys::prefix_successor(&keys::received_prefix()).unwrap_or_default();
        let mut pass = Pass { started_mid: cursor.is_some(), ..Pass::default() };
        let mut eviction = Eviction::default();
        let mut scanned = 0usize;
        pass.reached_end = true;
        for item in self.trees().data.range(start..end) {
            let (key, _) = item.map_err(|e| self.io(e))?;
            scanned += 1;
            let mut next = key.to_vec();
            next.push(0);
            *cursor = Some(next);
            let Some(id) = keys::trailing_id(&key) else { continue };
            let Some((meta, record)) = self.record_by_id_raw(&id)? else {
                eviction.batch.remove(key); // an entry whose record is gone: nothing to keep it for
                eviction.dangling += 1;
                continue;
            };
            if !self.evictable(&record, meta, &protected, own.as_ref())? {
                if scanned >= EVICTION_SCAN_BUDGET {
                    pass.reached_end = false;
                    break;
                }
                continue;
            }
            let cost = self.stage_eviction(&mut eviction, &mut pass, &key, &record)?;
            pass.evicted += 1;
            pass.freed = pass.freed.saturating_add(cost);
            if r.bytes().saturating_sub(pass.freed).saturating_add(pass.marker_bytes) <= target
                || pass.evicted as usize >= max_records
                || scanned >= EVICTION_SCAN_BUDGET
            {
                pass.reached_end = false;
                break;
            }
        }
        if pass.reached_end {
            // Wrap: the next call starts again at the oldest record (a record skipped as an
            // open anomaly or a revocation's target may have become evictable).
            *cursor = None;
        }
        if pass.evicted == 0 && eviction.dangling == 0 {
            return Ok(pass);
        }
        self.commit_eviction(eviction, &pass)?;
        Ok(pass)
    }

    /// Stages the removal of one record (its index entries, its received-order entry `key`)
    /// and its author's head and marker updates; returns the bytes it frees.
    fn stage_eviction(
        &self,
        ev: &mut Eviction,
        pass: &mut Pass,
        key: &[u8],
        record: &VerifiedRecord,
    ) -> Result<u64> {
        let author = record.author();
        let entries = crate::write::index_entries(record);
        let cost = cost_of(&entries, record.wire_bytes().len());
        for (k, _) in entries {
            ev.batch.remove(k);
        }
        ev.batch.remove(keys::record_key(&record.id()));
        ev.batch.remove(key);
        let head = match ev.heads.get_mut(&author) {
            Some(h) => h,
            None => ev.heads.entry(author).or_insert(self.feed_head(&author)?.unwrap_or_default()),
        };
        head.records = head.records.saturating_sub(1);
        let marker = match ev.markers.get_mut(&author) {
            Some(m) => m,
            None => {
                let stored = self.eviction_marker(&author)?;
                if stored.is_none() {
                    // A new marker stays for good: it is paid for against the quota.
                    pass.marker_bytes = pass.marker_bytes.saturating_add(MARKER_COST);
                }
                ev.markers.entry(author).or_insert(stored.unwrap_or_default())
            }
        };
        marker.through_seq = marker.through_seq.max(record.record().position.seq);
        marker.records = marker.records.saturating_add(1);
        marker.bytes = marker.bytes.saturating_add(cost);
        *ev.counts.entry(record.kind()).or_default() += 1;
        Ok(cost)
    }

    /// Writes one pass's removals, heads, markers, counters and byte count in one batch.
    fn commit_eviction(&self, ev: Eviction, pass: &Pass) -> Result<()> {
        let r = &self.inner.retention;
        let mut batch = ev.batch;
        for (author, head) in &ev.heads {
            batch.insert(keys::feed_key(author), encode(head));
        }
        for (author, marker) in &ev.markers {
            batch.insert(keys::evicted_key(author), encode(marker));
        }
        for (kind, n) in &ev.counts {
            let key = count_key(*kind);
            let now = self.get_raw(&key)?.map(|v| u64_value(&v)).unwrap_or(0);
            batch.insert(key, &now.saturating_sub(*n).to_be_bytes());
        }
        let bytes = r.bytes().saturating_sub(pass.freed).saturating_add(pass.marker_bytes);
        batch.insert(bytes_key(), &bytes.to_be_bytes());
        // Removals are keys only: about a quarter of the records' logical bytes.
        self.apply(crate::TreeName::Data, batch, pass.freed / 4 + pass.marker_bytes)?;
        r.set_bytes(bytes);
        let mut cache = lock(&self.inner.heads);
        for author in ev.heads.keys() {
            cache.remove(author);
        }
        Ok(())
    }

    /// Whether the quota may evict this record (see the module docs for what it keeps).
    fn evictable(
        &self,
        record: &VerifiedRecord,
        meta: StoredMeta,
        protected: &HashSet<AuthorKey>,
        own: Option<&AuthorKey>,
    ) -> Result<bool> {
        let author = record.author();
        if meta.source == Source::Local || own == Some(&author) || protected.contains(&author) {
            return Ok(false);
        }
        let seq = record.record().position.seq;
        if self.get_raw(&keys::equivocation_key(&author, seq))?.is_some() {
            return Ok(false);
        }
        Ok(match &record.record().statement {
            Statement::Anomaly(a) => !self.anomaly_active(&a.fingerprint())?,
            Statement::AnomalyUpdate(u) => !self.anomaly_active(&u.fingerprint)?,
            Statement::Revocation(rv) => !self.contains(&rv.target)?,
            Statement::Attestation(_) => true,
        })
    }

    /// An anomaly still open or acknowledged (its reports and updates are kept).
    fn anomaly_active(&self, fingerprint: &palisade_types::Fingerprint) -> Result<bool> {
        Ok(self
            .anomaly_status(fingerprint)?
            .is_some_and(|s| matches!(s.state, AnomalyState::Open | AnomalyState::Acknowledged)))
    }
}

/// Evicts on a timer while the store is over its quota; ends when the store is dropped.
pub(crate) fn spawn_retention(inner: Weak<Inner>) {
    let spawned = std::thread::Builder::new().name("palisade-retention".into()).spawn(move || loop {
        std::thread::sleep(RETENTION_INTERVAL);
        let Some(inner) = inner.upgrade() else { break };
        if !inner.retention.over_quota() {
            continue;
        }
        let store = Store { inner };
        let _guard = lock(&store.inner.write_lock);
        if let Err(e) = store.evict_locked(EVICTION_BATCH_RECORDS * 8) {
            warn!(error = %e, "store quota: eviction failed; the next write or tick tries again");
        }
    });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the retention thread; the quota is enforced by writers only");
    }
}
