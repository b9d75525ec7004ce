//! Compaction: copies every tree into a fresh database and swaps it in, like `etcdctl
//! defrag`. Offline (`palisade store compact`, [`compact`]) or online, by the store itself
//! when its files outgrow what it keeps ([`AutoCompact`], [`Store::compact_online`]).
//!
//! Why it is needed: sled 0.34 does not give back the space of what was deleted or
//! overwritten. Under the store quota's churn (records stored and evicted at the rate a Sybil
//! flood brings them) its files grew by about 1.9 KB per record written while the records'
//! logical bytes stayed at the quota (measured: 4 MiB of records, 185 MiB of files after
//! 102,400 records written, whether sled's background flusher and its segment cleaner ran
//! or not). The quota bounds what a node keeps; compaction gives the disk back.
//!
//! Crash safety: the copy is written beside the store (`db.compacting`), flushed and
//! checked (same entries in every tree) before anything is renamed. The swap is two renames:
//! `db` → `db.compact-old`, `db.compacting` → `db`; then `db.compact-old` is deleted. A crash
//! between the renames leaves no `db` but a complete `db.compact-old`:
//! [`recover_interrupted_compaction`] puts it back, and `Store::open` calls it before anything
//! else, so no command can create an empty store in its place.
//!
//! Online ([`Store::compact_online`]), in two phases. First, with writers going on, every
//! write is captured as well as applied (`Store::apply` is the one way writers write) while
//! the trees are copied; the copy is closed and reopened (sled writes its snapshot at open).
//! Then, with writers waiting on the write lock, the captured writes are replayed onto the
//! copy in order (a key written during the copy ends with its last value whether the copy's
//! scan saw it or not), the copy is flushed and closed, and the renames above are made while
//! the old database is still open (sled 0.34 writes by path only when it opens a database;
//! everything after goes through file handles, which follow a rename); the copy is opened at
//! the store's path and the handles swapped. Readers never wait but for that pointer swap,
//! and keep the old database for the call they are in. Writers wait for the replay and the
//! reopen: 97 ms for a store of 100,000 records (release), against 7.1 s when they waited
//! for the whole copy. If the copy cannot be opened in place, the renames are undone and the
//! old database stays in service. The capture is bounded ([`MAX_CAPTURE_BYTES`]): a store
//! written faster than that for as long as the copy takes is compacted at a later check.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::{disk, Inner, Result, Store, StoreConfig, StoreError, TreeName, Trees};

/// Default of `store.compact_above_bytes`: files smaller than this are never compacted
/// automatically, whatever their ratio to what they hold.
pub const DEFAULT_COMPACT_ABOVE_BYTES: u64 = 256 * 1024 * 1024;

/// Default of `store.compact_above_ratio`: the store compacts itself online when its files
/// exceed this many times the logical bytes it keeps. Measured (release, 100,000
/// attestations): written once, in groups of 64 with a flush each, sled's files are 5.3x
/// the logical bytes; compacted, 2.7x (about 4.5x for a store of 1 MiB, sled's segments
/// being a fixed cost). So a store that only grows never reaches 6x; one whose quota evicts
/// does, and a compaction then gives back more than half of its files.
pub const DEFAULT_COMPACT_ABOVE_RATIO: u32 = 6;

/// How often the store measures its files to decide whether to compact.
pub const COMPACT_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Free space an online compaction needs beyond the flood stage, as a multiple of the
/// logical bytes it copies (or what the last copy took, if more). Measured compacted stores
/// are 2.7x their logical bytes at 100,000 records; a small store's copy can take more (about
/// 4.5x at 1 MiB, sled's segments being a fixed cost): if the room runs out anyway, the copy
/// fails on its own files, is removed, and the store goes on.
pub const COMPACT_ROOM_FACTOR: u64 = 4;

/// When the store compacts itself online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCompact {
    /// `store.compact_above_bytes`: files below this are never compacted automatically;
    /// 0 turns automatic compaction off.
    pub above_bytes: u64,
    /// `store.compact_above_ratio`: compact when the files exceed this many times the
    /// logical bytes of what the store keeps (and `above_bytes`).
    pub above_ratio: u32,
}

impl Default for AutoCompact {
    fn default() -> Self {
        AutoCompact { above_bytes: DEFAULT_COMPACT_ABOVE_BYTES, above_ratio: DEFAULT_COMPACT_ABOVE_RATIO }
    }
}

impl AutoCompact {
    /// No automatic compaction (offline commands, which open the store for one job).
    pub const OFF: AutoCompact = AutoCompact { above_bytes: 0, above_ratio: DEFAULT_COMPACT_ABOVE_RATIO };

    /// Whether files of `files` bytes holding `logical` bytes call for a compaction.
    pub fn due(&self, files: u64, logical: u64) -> bool {
        self.above_bytes > 0
            && files >= self.above_bytes
            && files >= logical.saturating_mul(u64::from(self.above_ratio))
    }
}

/// Online compaction's policy and figures (since the store was opened).
pub(crate) struct CompactionState {
    policy: AutoCompact,
    /// Bytes of the store's files at the last measurement.
    files_bytes: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    no_room: AtomicU64,
    reclaimed_bytes: AtomicU64,
    /// How long writers waited in the last online compaction.
    last_pause_ms: AtomicU64,
    /// Bytes of the files right after the last compaction: the next is due only once they
    /// have grown by half (a store whose compacted files already exceed the ratio, a small
    /// one mostly, must not compact on every check).
    last_after_bytes: AtomicU64,
}

/// What online compaction has done since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CompactionUsage {
    /// Bytes of the store's files at the last measurement (every
    /// [`COMPACT_CHECK_INTERVAL`]).
    pub files_bytes: u64,
    /// Online compactions completed.
    pub done: u64,
    /// Online compactions that failed (the old database stayed in service).
    pub failed: u64,
    /// Compactions due but not started: too little free space for the copy.
    pub skipped_no_room: u64,
    /// Bytes of files given back.
    pub reclaimed_bytes: u64,
    /// Milliseconds writers waited during the last online compaction.
    pub last_pause_ms: u64,
}

impl CompactionState {
    pub(crate) fn new(policy: AutoCompact) -> CompactionState {
        CompactionState {
            policy,
            files_bytes: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            no_room: AtomicU64::new(0),
            reclaimed_bytes: AtomicU64::new(0),
            last_pause_ms: AtomicU64::new(0),
            last_after_bytes: AtomicU64::new(0),
        }
    }

    pub(crate) fn usage(&self) -> CompactionUsage {
        CompactionUsage {
            files_bytes: self.files_bytes.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped_no_room: self.no_room.load(Ordering::Relaxed),
            reclaimed_bytes: self.reclaimed_bytes.load(Ordering::Relaxed),
            last_pause_ms: self.last_pause_ms.load(Ordering::Relaxed),
        }
    }
}

/// Where the copy is written, beside the store.
pub fn compacting_dir(db: &Path) -> PathBuf {
    db.with_extension("compacting")
}

/// Where the old store waits during the swap.
pub fn compact_old_dir(db: &Path) -> PathBuf {
    db.with_extension("compact-old")
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Bytes of the store's files before.
    pub before_bytes: u64,
    /// Bytes after.
    pub after_bytes: u64,
    /// Entries copied (every tree).
    pub entries: u64,
}

/// Puts back a store whose compaction was interrupted between its two renames, and removes
/// what a compaction cut short left beside a store in place (an unfinished copy; the old
/// database of a swap that completed). Returns whether it put a store back.
pub fn recover_interrupted_compaction(db: &Path) -> std::io::Result<bool> {
    let old = compact_old_dir(db);
    let put_back = !db.exists() && old.exists();
    if put_back {
        std::fs::rename(&old, db)?;
        let parent = db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(parent)?.sync_all()?;
        warn!(path = %db.display(), "put back the store of an interrupted compaction");
    }
    for leftover in [compacting_dir(db), old] {
        if db.exists() && leftover.exists() {
            std::fs::remove_dir_all(&leftover)?;
            warn!(path = %leftover.display(), "removed what an interrupted compaction left beside the store");
        }
    }
    Ok(put_back)
}

/// Makes the renames in `db`'s parent directory durable: without it a power cut after the
/// swap could bring the old directory entry back, and with it a database without the
/// records written (and acknowledged) after the swap.
fn sync_parent(db: &Path) -> Result<()> {
    let parent = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io { path: path.to_path_buf(), source: sled::Error::Io(e) }
}

/// An error of the copy: never marks the store failed (the copy is not the store).
fn copy_err(copy: &Path) -> impl Fn(sled::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: copy.to_path_buf(), source }
}

/// Compacts the store at `config.path` (which must not be open anywhere: the lock is taken).
pub fn compact(config: &StoreConfig) -> Result<CompactReport> {
    let db = config.path.clone();
    recover_interrupted_compaction(&db).map_err(io(&db))?;
    let copy = compacting_dir(&db);
    if copy.exists() {
        // A copy an earlier run did not finish: never swapped in, so never needed.
        std::fs::remove_dir_all(&copy).map_err(io(&copy))?;
    }
    let store = Store::open(config)?;
    let before_bytes = store.size_on_disk()?;
    let trees = store.trees();
    let copied = copy_into(&trees, &copy, store.inner.compressed, Counts::Checked).map(|(fresh, n)| {
        drop(fresh);
        n
    });
    drop((trees, store));
    let entries = match copied {
        Ok(entries) => entries,
        Err(e) => {
            // A half-written copy (a full disk, most likely) must not keep the space it took.
            let _ = std::fs::remove_dir_all(&copy);
            return Err(e);
        }
    };
    std::fs::rename(&db, compact_old_dir(&db)).map_err(io(&db))?;
    std::fs::rename(&copy, &db).map_err(io(&copy))?;
    sync_parent(&db)?;
    std::fs::remove_dir_all(compact_old_dir(&db)).map_err(io(&db))?;
    disk::remove_unfinished_snapshots(&db);
    let after_bytes = Store::open(config)?.size_on_disk()?;
    Ok(CompactReport { before_bytes, after_bytes, entries })
}

/// Entries written per batch into the copy.
const COPY_BATCH: usize = 10_000;

/// Copies every tree of `from` into a fresh database at `copy` (in bounded batches, every
/// error returned: sled's own `import` panics on an I/O error such as a full disk), checks
/// the entry counts, flushes the copy and closes it. Returns the entries copied. A failed
/// read of the store itself is returned as the store's error; nothing here marks the store
/// failed.
fn copy_into(from: &Trees, copy: &Path, compressed: bool, counts: Counts) -> Result<(sled::Db, u64)> {
    let err = copy_err(copy);
    let fresh = crate::sled_config(copy, crate::COPY_CACHE_BYTES, compressed).open().map_err(&err)?;
    let mut entries = 0u64;
    for name in from.db.tree_names() {
        let source = from.db.open_tree(&name).map_err(&err)?;
        let to = fresh.open_tree(&name).map_err(&err)?;
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        let mut copied = 0u64;
        for item in source.iter() {
            let (k, v) = item.map_err(&err)?;
            batch.insert(k, v);
            pending += 1;
            copied += 1;
            if pending == COPY_BATCH {
                to.apply_batch(std::mem::take(&mut batch)).map_err(&err)?;
                pending = 0;
            }
        }
        to.apply_batch(batch).map_err(&err)?;
        if counts == Counts::Checked && source.len() != to.len() {
            return Err(StoreError::corrupt(
                "compaction",
                &name,
                format!("the copy has {} entries, the store {}", to.len(), source.len()),
            ));
        }
        entries += copied;
    }
    fresh.flush().map_err(&err)?;
    Ok((fresh, entries))
}

/// Whether [`copy_into`] compares entry counts (only a store nothing writes to can be compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counts {
    Checked,
    Unchecked,
}

/// Most bytes of writes captured while an online compaction copies. Beyond, the compaction
/// gives up (and is tried again at the next check): the capture is memory, and a store
/// written that fast for that long is better compacted when it is calmer.
pub const MAX_CAPTURE_BYTES: u64 = 64 * 1024 * 1024;

/// Writes applied while an online compaction copies, in order.
#[derive(Default)]
pub(crate) struct Capture {
    batches: Vec<(TreeName, sled::Batch)>,
    bytes: u64,
    overflowed: bool,
}

impl Capture {
    pub(crate) fn push(&mut self, tree: TreeName, batch: &sled::Batch, bytes: u64) {
        if self.overflowed {
            return;
        }
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > MAX_CAPTURE_BYTES {
            self.overflowed = true;
            self.batches = Vec::new();
            return;
        }
        self.batches.push((tree, batch.clone()));
    }

    /// Applies every captured write to the copy, in order: a key written after the copy
    /// began ends with its last value whether the copy's scan saw it or not.
    fn replay(self, fresh: &sled::Db) -> std::result::Result<(), sled::Error> {
        for (tree, batch) in self.batches {
            fresh.open_tree(tree.as_str())?.apply_batch(batch)?;
        }
        Ok(())
    }
}

impl Store {
    /// Compacts the open store: copies every tree into a fresh database beside it while
    /// writers wait (readers go on), then swaps the copy in (see the module's notes). On any
    /// failure the old database stays in service and the half-made copy is removed.
    pub fn compact_online(&self) -> Result<CompactReport> {
        let state = &self.inner.compaction;
        let result = self.compact_online_locked();
        match &result {
            Ok(report) => {
                state.done.fetch_add(1, Ordering::Relaxed);
                let reclaimed = report.before_bytes.saturating_sub(report.after_bytes);
                state.reclaimed_bytes.fetch_add(reclaimed, Ordering::Relaxed);
                state.files_bytes.store(report.after_bytes, Ordering::Relaxed);
                state.last_after_bytes.store(report.after_bytes, Ordering::Relaxed);
            }
            Err(e) => {
                state.failed.fetch_add(1, Ordering::Relaxed);
                warn!(path = %self.inner.path.display(), error = %e, "online compaction failed; the store goes on as it was");
            }
        }
        result
    }

    fn compact_online_locked(&self) -> Result<CompactReport> {
        let db = self.inner.path.clone();
        let copy = compacting_dir(&db);
        if let Some(failure) = self.failure() {
            return Err(io(&db)(std::io::Error::other(format!(
                "the store has failed ({failure}); not compacting"
            ))));
        }
        let before_bytes = self.size_on_disk()?;
        let started = Instant::now();
        // Phase 1, writers going on: start capturing their writes, then copy.
        let old = {
            let _writers = crate::lock(&self.inner.write_lock);
            let old = self.trees();
            *crate::lock(&self.inner.capture) = Some(Capture::default());
            old
        };
        let copied = self.copy_for_swap(&old, &copy);
        // Phase 2, writers waiting: replay what they wrote meanwhile, swap.
        let writers = crate::lock(&self.inner.write_lock);
        let paused = Instant::now();
        let capture = crate::lock(&self.inner.capture).take();
        let swapped = copied.and_then(|(fresh, entries)| {
            let capture = capture.ok_or_else(|| io(&copy)(std::io::Error::other("the capture is gone")))?;
            if capture.overflowed {
                return Err(io(&copy)(std::io::Error::other(format!(
                    "writers wrote more than {MAX_CAPTURE_BYTES} bytes while the copy was made; retried at the next check"
                ))));
            }
            capture.replay(&fresh).map_err(copy_err(&copy))?;
            fresh.flush().map_err(copy_err(&copy))?;
            drop(fresh);
            self.swap_in(&old, &db, &copy)?;
            Ok(entries)
        });
        let entries = match swapped {
            Ok(entries) => entries,
            Err(e) => {
                // A half-written copy (a full disk, most likely) must not keep the space it took.
                let _ = std::fs::remove_dir_all(&copy);
                return Err(e);
            }
        };
        let pause = paused.elapsed();
        drop(writers);
        drop(old);
        let old_dir = compact_old_dir(&db);
        // A reader may still hold the old database for its call: its files are unlinked,
        // their space comes back when it lets go.
        if let Err(e) = std::fs::remove_dir_all(&old_dir) {
            warn!(path = %old_dir.display(), error = %e, "cannot remove the old database after an online compaction (the next start removes it)");
        }
        let after_bytes = self.size_on_disk().unwrap_or(0);
        self.inner.compaction.last_pause_ms.store(pause.as_millis() as u64, Ordering::Relaxed);
        info!(
            path = %db.display(),
            before_bytes,
            after_bytes,
            entries,
            copy_ms = started.elapsed().as_millis() as u64,
            writers_paused_ms = pause.as_millis() as u64,
            "online compaction gave back {} bytes",
            before_bytes.saturating_sub(after_bytes)
        );
        Ok(CompactReport { before_bytes, after_bytes, entries })
    }

    /// Copies the open database into a fresh one at `copy`, then closes and reopens the copy
    /// (sled writes its snapshot at open, so the swap's own open has little log to read).
    fn copy_for_swap(&self, old: &Trees, copy: &Path) -> Result<(sled::Db, u64)> {
        if copy.exists() {
            std::fs::remove_dir_all(copy).map_err(io(copy))?;
        }
        let (fresh, entries) = copy_into(old, copy, self.inner.compressed, Counts::Unchecked)?;
        drop(fresh);
        let fresh =
            crate::open_sled_waiting_for_lock(&self.inner.sled_config(copy)).map_err(copy_err(copy))?;
        Ok((fresh, entries))
    }

    /// Renames the flushed, closed copy into the store's place and swaps the handles (the
    /// caller holds `write_lock`). On failure the renames are undone and `old` stays in service.
    fn swap_in(&self, old: &Trees, db: &Path, copy: &Path) -> Result<()> {
        let old_dir = compact_old_dir(db);
        // The old database complete on disk too: a crash between the renames puts it back.
        old.db.flush().map_err(|e| self.io_err(e))?;
        std::fs::rename(db, &old_dir).map_err(io(db))?;
        if let Err(e) = std::fs::rename(copy, db) {
            std::fs::rename(&old_dir, db).map_err(io(db))?;
            return Err(io(copy)(e));
        }
        // Durable before anything is written to the copy in its new place.
        let reopened = sync_parent(db).and_then(|()| {
            crate::open_sled_waiting_for_lock(&self.inner.sled_config(db))
                .and_then(Trees::open)
                .map_err(copy_err(db))
        });
        match reopened {
            Ok(fresh) => {
                *self.inner.trees.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
                Ok(())
            }
            Err(e) => {
                // Undo the renames: the old database, still open, stays in service.
                std::fs::rename(db, copy).map_err(io(db))?;
                std::fs::rename(&old_dir, db).map_err(io(db))?;
                sync_parent(db)?;
                Err(e)
            }
        }
    }

    /// Online compaction's figures since the store was opened.
    pub fn compaction_usage(&self) -> CompactionUsage {
        self.inner.compaction.usage()
    }

    /// Measures the files and compacts if [`AutoCompact`] says so and the disk has room for
    /// the copy. Returns whether it compacted.
    pub fn compact_if_due(&self) -> bool {
        let state = &self.inner.compaction;
        let Ok(files) = self.size_on_disk() else { return false };
        state.files_bytes.store(files, Ordering::Relaxed);
        let logical = self.inner.retention.bytes();
        let last_after = state.last_after_bytes.load(Ordering::Relaxed);
        if !state.policy.due(files, logical) || files < last_after.saturating_add(last_after / 2) {
            return false;
        }
        // The copy is what the store keeps, compacted: at most COMPACT_ROOM_FACTOR times the
        // logical bytes, or what the last copy took if that was more.
        let copy = logical.saturating_mul(COMPACT_ROOM_FACTOR).max(last_after);
        let needed = copy.saturating_add(self.inner.disk.marks().min_free_bytes);
        let free = disk::free_bytes(&self.inner.path).unwrap_or(0);
        if free < needed {
            let skipped = state.no_room.fetch_add(1, Ordering::Relaxed);
            if skipped.is_multiple_of(30) {
                warn!(
                    path = %self.inner.path.display(),
                    files_bytes = files,
                    logical_bytes = logical,
                    free_bytes = free,
                    needed_bytes = needed,
                    "the store's files call for a compaction but the disk has no room for the copy; \
                     free disk space, or stop the node and run `palisade store compact`"
                );
            }
            return false;
        }
        self.compact_online().is_ok()
    }
}

/// How often the compaction thread looks whether its store is still open: it ends within
/// this of the last handle being dropped (a process that opens many stores, a fuzzer or a
/// test, must not keep a sleeping thread per closed store for a whole check interval).
const COMPACT_THREAD_TICK: Duration = Duration::from_secs(1);

/// Measures the files every [`COMPACT_CHECK_INTERVAL`] and compacts when due; ends within
/// [`COMPACT_THREAD_TICK`] of the store's last handle being dropped.
pub(crate) fn spawn_auto_compact(inner: Weak<Inner>) {
    let spawned = std::thread::Builder::new().name("palisade-compact".into()).spawn(move || {
        let mut last_check = Instant::now();
        loop {
            std::thread::sleep(COMPACT_THREAD_TICK);
            let Some(inner) = inner.upgrade() else { break };
            if last_check.elapsed() < COMPACT_CHECK_INTERVAL {
                continue;
            }
            last_check = Instant::now();
            // Measures even with automatic compaction off (the files gauge).
            Store { inner }.compact_if_due();
        }
    });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the compaction thread; run `palisade store compact` offline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_past_its_bound_drops_what_it_held_and_says_so() {
        let mut capture = Capture::default();
        let mut batch = sled::Batch::default();
        batch.insert(b"k".to_vec(), b"v".to_vec());
        capture.push(TreeName::Data, &batch, MAX_CAPTURE_BYTES / 2);
        capture.push(TreeName::Bans, &batch, MAX_CAPTURE_BYTES / 2);
        assert!(!capture.overflowed);
        assert_eq!(capture.batches.len(), 2);
        // One byte more: the compaction that made this capture gives up (and is retried).
        capture.push(TreeName::Data, &batch, 1);
        assert!(capture.overflowed);
        assert!(capture.batches.is_empty(), "an overflowed capture keeps no memory");
        capture.push(TreeName::Data, &batch, 1);
        assert!(capture.batches.is_empty());
    }

    #[test]
    fn compaction_is_due_above_both_thresholds_and_never_when_off() {
        let policy = AutoCompact { above_bytes: 100, above_ratio: 4 };
        assert!(policy.due(400, 100));
        assert!(!policy.due(399, 100), "under the ratio");
        assert!(!policy.due(99, 10), "under the size floor");
        assert!(!AutoCompact::OFF.due(u64::MAX, 0));
        assert!(policy.due(u64::MAX, u64::MAX / 2), "no overflow");
    }
}
