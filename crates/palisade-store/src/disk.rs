//! Free-space watermarks and store health (issue 16): the store stops taking new records well
//! before the disk fills, resumes by itself when space returns, and remembers an I/O failure
//! so the node never keeps serving a half-failed store behind a ready flag.
//!
//! sled 0.34 does not recover from a failed write (its error state is sticky until the
//! database is reopened), so the only safe way through a full disk is never to reach it:
//! below `min_free_bytes` (the flood stage) [`Store::insert_many`](crate::Store::insert_many)
//! refuses records with [`StoreError::DiskLow`](crate::StoreError::DiskLow), every read keeps
//! working, and the node reports not ready. Levels follow Elasticsearch's disk watermarks:
//! a warning level, a flood stage, and an automatic release with a margin so the state does
//! not flap around the threshold.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tracing::{error, info, warn};

/// Default flood stage: below this many free bytes on the store's filesystem the store
/// refuses new records (`store.min_free_disk_bytes`).
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 256 * 1024 * 1024;

/// Default warning level: below this many free bytes the node logs a warning and the
/// `palisade_store_disk_level` gauge says 1 (`store.warn_free_disk_bytes`).
pub const DEFAULT_WARN_FREE_DISK_BYTES: u64 = 1024 * 1024 * 1024;

/// How often the free space is sampled. At the highest ingest rate measured (~12,500
/// records/s of ~400 bytes, ~10× that on disk in sled) one interval writes ~50 MiB, well
/// under the default flood stage, so sled never meets ENOSPC between two samples.
pub const DISK_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Largest margin above the flood stage before writes resume (see
/// [`DiskWatermarks::release_bytes`]).
pub const MAX_RELEASE_MARGIN_BYTES: u64 = 64 * 1024 * 1024;

/// Free-space thresholds of the store's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskWatermarks {
    /// Flood stage: fewer free bytes than this and new records are refused.
    pub min_free_bytes: u64,
    /// Warning level (>= `min_free_bytes`).
    pub warn_free_bytes: u64,
}

impl Default for DiskWatermarks {
    fn default() -> Self {
        DiskWatermarks {
            min_free_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            warn_free_bytes: DEFAULT_WARN_FREE_DISK_BYTES,
        }
    }
}

impl DiskWatermarks {
    /// Free bytes at which a flood stage ends: the flood stage plus an eighth of it (at most
    /// [`MAX_RELEASE_MARGIN_BYTES`]), so a node hovering at the threshold does not flip
    /// between refusing and taking records.
    pub fn release_bytes(&self) -> u64 {
        self.min_free_bytes.saturating_add((self.min_free_bytes / 8).min(MAX_RELEASE_MARGIN_BYTES))
    }

    fn level_for(&self, free: u64, was: DiskLevel) -> DiskLevel {
        let flood = match was {
            DiskLevel::FloodStage => free < self.release_bytes(),
            _ => free < self.min_free_bytes,
        };
        if flood {
            DiskLevel::FloodStage
        } else if free < self.warn_free_bytes {
            DiskLevel::Warning
        } else {
            DiskLevel::Ok
        }
    }
}

/// Where the free space of the store's filesystem stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskLevel {
    /// Above the warning level.
    Ok,
    /// Below the warning level, above the flood stage: records are still taken.
    Warning,
    /// Below the flood stage: new records are refused until space returns.
    FloodStage,
}

impl DiskLevel {
    /// 0, 1 or 2 (the `palisade_store_disk_level` gauge).
    pub fn as_gauge(self) -> i64 {
        match self {
            DiskLevel::Ok => 0,
            DiskLevel::Warning => 1,
            DiskLevel::FloodStage => 2,
        }
    }

    fn from_u8(v: u8) -> DiskLevel {
        match v {
            0 => DiskLevel::Ok,
            1 => DiskLevel::Warning,
            _ => DiskLevel::FloodStage,
        }
    }
}

/// The store's view of its disk and of its own health, shared by every clone of the store.
#[derive(Debug)]
pub(crate) struct DiskState {
    path: PathBuf,
    marks: DiskWatermarks,
    level: AtomicU8,
    /// Free bytes at the last sample; `u64::MAX` before the first one.
    free: AtomicU64,
    /// Set once a sled write or read failed with an I/O error (sticky in sled 0.34).
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl DiskState {
    pub(crate) fn new(path: &Path, marks: DiskWatermarks) -> DiskState {
        let state = DiskState {
            path: path.to_path_buf(),
            marks,
            level: AtomicU8::new(0),
            free: AtomicU64::new(u64::MAX),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        };
        state.sample();
        state
    }

    pub(crate) fn marks(&self) -> DiskWatermarks {
        self.marks
    }

    pub(crate) fn level(&self) -> DiskLevel {
        DiskLevel::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// Free bytes at the last sample, if one succeeded.
    pub(crate) fn free_bytes(&self) -> Option<u64> {
        Some(self.free.load(Ordering::Relaxed)).filter(|f| *f != u64::MAX)
    }

    /// Reads the filesystem's free space (for unprivileged users) and moves the level,
    /// logging each change once. A failed sample keeps the last level.
    pub(crate) fn sample(&self) {
        let free = match free_bytes(&self.path) {
            Ok(f) => f,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot read the free disk space of the store");
                return;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let was = self.level();
        let now = self.marks.level_for(free, was);
        if now == was {
            return;
        }
        self.level.store(now.as_gauge() as u8, Ordering::Relaxed);
        let min = self.marks.min_free_bytes;
        match now {
            DiskLevel::FloodStage => error!(
                free_bytes = free,
                min_free_disk_bytes = min,
                path = %self.path.display(),
                "disk flood stage: new records are refused (submissions and imports get 507) until \
                 free space is back above store.min_free_disk_bytes plus an eighth (at most 64 MiB); \
                 reads go on. Free disk space or move the data directory to a larger disk"
            ),
            _ if was == DiskLevel::FloodStage => info!(
                free_bytes = free,
                level = ?now,
                path = %self.path.display(),
                "disk flood stage over: new records are taken again"
            ),
            DiskLevel::Warning => warn!(
                free_bytes = free,
                warn_free_disk_bytes = self.marks.warn_free_bytes,
                min_free_disk_bytes = min,
                path = %self.path.display(),
                "disk space is low: the node will refuse new records below store.min_free_disk_bytes"
            ),
            DiskLevel::Ok => {
                info!(free_bytes = free, path = %self.path.display(), "disk space is fine again")
            }
        }
    }

    pub(crate) fn mark_failed(&self, what: &str) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            error!(path = %self.path.display(), error = what, "the store failed an I/O operation; it cannot be trusted until reopened");
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(what.to_string());
        }
    }

    pub(crate) fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Relaxed) {
            return None;
        }
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Free bytes of the filesystem holding `path`, as an unprivileged user may use them.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let (avail, frsize) = (u64::from(st.blocks_available()), u64::from(st.fragment_size()));
    Ok(avail.saturating_mul(frsize))
}

/// Samples the disk every [`DISK_SAMPLE_INTERVAL`] for as long as the store is open (the
/// thread holds only a weak reference and ends within one interval of the last close).
pub(crate) fn spawn_watch(state: Weak<DiskState>) {
    let spawned = std::thread::Builder::new().name("palisade-disk-watch".into()).spawn(move || loop {
        std::thread::sleep(DISK_SAMPLE_INTERVAL);
        match state.upgrade() {
            Some(s) => s.sample(),
            None => break,
        }
    });
    if let Err(e) = spawned {
        // Without the thread the level stays at its opening sample; the store still works.
        warn!(error = %e, "cannot start the disk watch thread; free space is checked only at open");
    }
}

/// Whether sled's pages are compressed in the store at `db_dir`: as recorded in sled's `conf`
/// file for an existing store (sled refuses to open a store with the other setting), else
/// `wanted`. A difference is logged with what to do.
pub(crate) fn effective_compression(db_dir: &Path, wanted: bool) -> bool {
    // sled's `conf` is text lines followed by a binary checksum.
    let Ok(conf) = std::fs::read(db_dir.join("conf")) else { return wanted };
    let conf = String::from_utf8_lossy(&conf);
    let recorded = conf.lines().find_map(|l| l.strip_prefix("use_compression: ")).map(|v| v.trim() == "true");
    match recorded {
        Some(existing) if existing != wanted => {
            warn!(
                path = %db_dir.display(),
                configured = wanted,
                store = existing,
                "store.compression applies when a store is created; this store keeps its own setting. \
                 To change it: export the records, start on a new data directory, import them"
            );
            existing
        }
        Some(existing) => existing,
        None => wanted,
    }
}

/// Removes `snap.*.generating` files sled left behind when it was killed (or the disk
/// filled) while writing a snapshot: sled writes a snapshot under that name and renames it
/// when complete, so a leftover is never needed, and an empty one stops the next open with
/// "Read corrupted data". Returns how many were removed.
pub(crate) fn remove_unfinished_snapshots(db_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(db_dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    warn!(file = %entry.path().display(), "removed an unfinished sled snapshot left by a crash or a full disk");
                    removed += 1;
                }
                Err(e) => {
                    warn!(file = %entry.path().display(), error = %e, "cannot remove an unfinished sled snapshot")
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn levels_follow_the_watermarks_with_a_release_margin() {
        let m = DiskWatermarks { min_free_bytes: 80 * MIB, warn_free_bytes: 200 * MIB };
        assert_eq!(m.level_for(500 * MIB, DiskLevel::Ok), DiskLevel::Ok);
        assert_eq!(m.level_for(150 * MIB, DiskLevel::Ok), DiskLevel::Warning);
        assert_eq!(m.level_for(79 * MIB, DiskLevel::Warning), DiskLevel::FloodStage);
        // Back above the flood stage but inside the margin (80 + 10 MiB): still flooded.
        assert_eq!(m.level_for(85 * MIB, DiskLevel::FloodStage), DiskLevel::FloodStage);
        assert_eq!(m.level_for(90 * MIB, DiskLevel::FloodStage), DiskLevel::Warning);
        // The same free space entered from above is not a flood stage.
        assert_eq!(m.level_for(85 * MIB, DiskLevel::Warning), DiskLevel::Warning);
        assert_eq!(m.level_for(300 * MIB, DiskLevel::FloodStage), DiskLevel::Ok);
        // A large flood stage releases at most 64 MiB above it.
        let big = DiskWatermarks { min_free_bytes: 10_000 * MIB, warn_free_bytes: 20_000 * MIB };
        assert_eq!(big.release_bytes(), 10_064 * MIB);
    }

    #[test]
    fn free_space_is_read_from_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn unfinished_snapshots_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snap.000000000042.generating"), b"").unwrap();
        std::fs::write(dir.path().join("snap.000000000041"), b"keep").unwrap();
        std::fs::write(dir.path().join("db"), b"keep").unwrap();
        assert_eq!(remove_unfinished_snapshots(dir.path()), 1);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec!["db", "snap.000000000041"]);
    }
}
